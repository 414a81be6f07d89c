"""Every inverse method at few steps (3, 5, 10) on the photo tasks, against Tikhonov (a report, not a test).

    python benchmarks/bench_few_steps.py [--images chelsea coffee] [--size 64] [--steps 3 5 10] [--methods ...]

Each method at its defaults (σ = 0.05 given, the ``patches`` model, y as ``bench_methods.measure`` makes it; one
draw per photo, generator i for photo i): mean PSNR and the worst data consistency ‖A x̂ − y‖/(σ√m). Tikhonov's λ
is picked by PSNR (an oracle), as in ``bench_methods.py``. The tables' bar is theirs (PSNR ≥ Tikhonov − 0.5 dB and
consistency in [0.5, 1.5]), read here at step counts below the ones the defaults were set at; where a method is
meant for more steps (``diffsolve info``) a miss says how far below that count it still holds.
Writes ``results/few-steps.{md,json}``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_dps import write_results  # noqa: E402
from bench_methods import SIGMA, machine, measure, meets_bar, task_operator  # noqa: E402

from diffsolve.methods import METHODS, restore  # noqa: E402

TASKS = ("gaussian_blur", "motion_blur", "box", "random", "sr4")
INVERSE = ("mpgd", "cdps", "dps", "pigdm", "diffpir", "ddrm", "ddnm", "daps", "reddiff", "mmps")


def run(args) -> list[dict]:
    from diffsolve.data import photo
    from diffsolve.metrics import data_consistency, scores
    from diffsolve.models import load_default

    model = load_default("patches")
    x = torch.stack([photo(name, size=args.size) for name in args.images])
    rows = []
    for task in TASKS:
        op = task_operator(task, args.size)
        y = measure(op, x, seed=args.size)
        for name, steps in [("tikhonov", 0)] + [(m, n) for m in args.methods for n in args.steps]:
            if METHODS[name].unsupported(op, (args.size, args.size), SIGMA):
                continue
            gens = [torch.Generator().manual_seed(i) for i in range(len(args.images))]
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out, _ = restore(name, model, op, y, steps=max(steps, 1), sigma=SIGMA, x_true=x, generator=gens)
            out = out.detach()
            dc = data_consistency(op, out, y, SIGMA)
            rows.append({"task": task, "method": name, "steps": steps, "psnr": float(scores(out, x)["psnr"].mean()),
                         "dc_max": float(dc.max()), "warned": sorted({type(w.message).__name__ for w in caught})})
            print(rows[-1], flush=True)
    return rows


def markdown(rows: list[dict], args, seconds: float) -> str:
    lines = ["# Every method at few steps", "",
             f"`python benchmarks/bench_few_steps.py --images {' '.join(args.images)} --size {args.size} --steps "
             f"{' '.join(map(str, args.steps))}` ({machine()}, {seconds:.0f} s). σ = {SIGMA}, the `patches` model, "
             "each method at its defaults, one draw per photo. Cell: mean PSNR dB / worst data consistency; **bold**: "
             "PSNR ≥ Tikhonov − 0.5 dB and consistency in [0.5, 1.5]; † the run warned (a `DataConsistencyWarning` or "
             "a method's steps warning).", ""]
    for task in TASKS:
        cell = [r for r in rows if r["task"] == task]
        tik = next(r for r in cell if r["method"] == "tikhonov")
        lines += [f"## {task} (Tikhonov {tik['psnr']:.2f} dB)", "",
                  "| method | " + " | ".join(f"N = {n}" for n in args.steps) + " |",
                  "|---|" + "---|" * len(args.steps)]
        for name in args.methods:
            got = {r["steps"]: r for r in cell if r["method"] == name}
            if not got:
                lines.append(f"| {name} | " + " | ".join("—" for _ in args.steps) + " |")
                continue
            out = []
            for n in args.steps:
                r = got[n]
                text = f"{r['psnr']:.2f} / {r['dc_max']:.2f}" + (" †" if r["warned"] else "")
                out.append(f"**{text}**" if meets_bar(r["psnr"], tik["psnr"], r["dc_max"]) else text)
            lines.append(f"| {name} | " + " | ".join(out) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="+", default=["chelsea", "coffee"])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, nargs="+", default=[3, 5, 10])
    parser.add_argument("--methods", nargs="+", default=list(INVERSE), choices=INVERSE)
    args = parser.parse_args()
    start = time.perf_counter()
    rows = run(args)
    write_results("few-steps", {"machine": machine(), "args": vars(args), "rows": rows},
                  markdown(rows, args, time.perf_counter() - start))


if __name__ == "__main__":
    main()
