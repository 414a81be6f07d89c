"""DAPS at few annealing levels: where its default result starts to fit y (a report, not a test).

    python benchmarks/bench_daps_levels.py [--sizes 64] [--steps 2 3 5 10 20] [--images hopper camera]

The held-out photos, every task, σ = 0.05, the ``patches`` model, DAPS at its defaults (the closing discrepancy pull
included) with N = ``--steps`` annealing levels (5 model calls each), one draw per photo (seeds 0…B−1), beside
Tikhonov with λ picked by PSNR (an oracle). Cell: mean PSNR dB / worst data consistency ‖A x̂ − y‖/(σ√m) over the
photos. Writes ``results/daps-levels.{md,json}``; ``diffsolve info`` states the level count it supports.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path


sys.path.insert(0, str(Path(__file__).parent))
from _paired import add_photo_args, run_variants  # noqa: E402
from bench_dps import write_results  # noqa: E402
from bench_methods import SIGMA, machine  # noqa: E402

import diffsolve  # noqa: E402

TASKS = ("gaussian_blur", "motion_blur", "box", "random", "sr4")


def daps_default(model, op, y, x, n, generators):
    with warnings.catch_warnings():  # the unfit results are the measurement here, not a surprise
        warnings.simplefilter("ignore", diffsolve.solvers.DataConsistencyWarning)
        return diffsolve.solve("daps", model, op, y, sigma=SIGMA, steps=n, generator=generators)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_photo_args(parser, TASKS)
    parser.set_defaults(steps=[2, 3, 5, 10, 20])  # annealing levels
    args = parser.parse_args()
    start = time.perf_counter()
    rows = run_variants(args.sizes, args.steps, args.images, args.tasks, {"daps": daps_default}, SIGMA)
    seconds = time.perf_counter() - start
    lines = ["# DAPS at few annealing levels", "",
             f"`python benchmarks/bench_daps_levels.py --sizes {' '.join(map(str, args.sizes))} --steps "
             f"{' '.join(map(str, args.steps))}` ({machine()}, {seconds:.0f} s); images {', '.join(args.images)} "
             f"(held out), σ = {SIGMA}, DAPS at its defaults, one draw per photo. Cell: mean PSNR dB / worst data "
             "consistency ‖A x̂ − y‖/(σ√m); **bold**: PSNR ≥ Tikhonov − 0.5 dB and consistency in [0.5, 1.5].", "",
             "| size | task | Tikhonov | " + " | ".join(f"N = {n}" for n in args.steps) + " |",
             "|---|---|---|" + "---|" * len(args.steps)]
    for size in args.sizes:
        for task in args.tasks:
            cell = {r["steps"]: r for r in rows if (r["size"], r["task"]) == (size, task)}
            tik = cell[0]
            out = []
            for n in args.steps:
                r = cell[n]
                text = f"{r['psnr']:.2f} / {r['dc_max']:.2f}"
                ok = r["psnr"] >= tik["psnr"] - 0.5 and 0.5 <= r["dc_min"] and r["dc_max"] <= 1.5
                out.append(f"**{text}**" if ok else text)
            lines.append(f"| {size}² | {task} | {tik['psnr']:.2f} / {tik['dc_max']:.2f} | " + " | ".join(out) + " |")
    write_results("daps-levels", {"machine": machine(), "args": vars(args), "rows": rows}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
