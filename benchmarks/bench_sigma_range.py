"""Every method far from the tuned noise level: σ = 0.001, 0.1, 0.2 and 0.5 (a report, not a test).

    python benchmarks/bench_sigma_range.py [--steps 20] [--size 64] [--images chelsea coffee] [--sigmas ...] [--tag ""]

The tuning photos chelsea and coffee, the five photo tasks, y = A x + σ n (seed 3, on every entry), each method at
its defaults given σ, one draw per photo (generator i), Tikhonov with λ picked by PSNR (an oracle). Cell: mean PSNR
dB / worst data consistency ‖A x̂ − y‖/(σ√m); **bold**: PSNR ≥ Tikhonov − 0.5 dB and consistency in [0.5, 1.5].
``--images`` replaces the photos (held-out ones: hopper camera grass raccoon), ``--sigmas`` the noise levels;
writes ``results/sigma-range{tag}.{md,json}``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _noise_sweep import noisy_measurements  # noqa: E402
from bench_dps import write_results  # noqa: E402
from bench_few_steps import INVERSE, TASKS  # noqa: E402
from bench_methods import machine, meets_bar  # noqa: E402

from diffsolve.methods import METHODS, restore  # noqa: E402

SIGMAS = (0.001, 0.1, 0.2, 0.5)


def run(args) -> list[dict]:
    from diffsolve.metrics import data_consistency, scores
    from diffsolve.models import load_default

    model = load_default("patches")
    rows = []
    for _, size, task, sigma, op, x, y in noisy_measurements([(args.images, args.size)], TASKS, args.sigmas):
        for name in ("tikhonov",) + INVERSE:
            if METHODS[name].unsupported(op, (size, size), sigma):
                continue
            gens = [torch.Generator().manual_seed(i) for i in range(len(args.images))]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out, _ = restore(name, model, op, y, steps=args.steps, sigma=sigma, x_true=x, generator=gens)
            psnr = float(scores(out, x)["psnr"].mean())
            rows.append({"sigma": sigma, "task": task, "method": name, "psnr": psnr,
                         "dc_max": float(data_consistency(op, out, y, sigma).max())})
            print(rows[-1], flush=True)
    return rows


def command(args) -> str:
    """The options of this run as they would be typed (the defaults' left out)."""
    words = [f"--steps {args.steps} --size {args.size}"]
    if list(args.images) != ["chelsea", "coffee"]:
        words.append("--images " + " ".join(args.images))
    if list(args.sigmas) != list(SIGMAS):
        words.append("--sigmas " + " ".join(f"{s:g}" for s in args.sigmas))
    return " ".join(words + ([f"--tag {args.tag}"] if args.tag else []))


def photos(names) -> str:
    """Which photos these are: all held out from tuning, or (any of) the tuning photos."""
    from diffsolve.data import HELDOUT

    return "held out from every tuning run" if set(names) <= set(HELDOUT) else "the tuning photos"


def markdown(rows: list[dict], args, seconds: float) -> str:
    lines = ["# Every method far from the tuned noise level", "",
             f"`python benchmarks/bench_sigma_range.py {command(args)}` ({machine()}, {seconds:.0f} s). "
             f"{', '.join(args.images)} ({photos(args.images)}), each method at its defaults given σ. Cell: "
             "mean PSNR dB / worst data consistency; **bold**: PSNR ≥ Tikhonov − 0.5 dB and consistency in "
             "[0.5, 1.5].",
             "", "| σ | task | " + " | ".join(("tikhonov",) + INVERSE) + " |",
             "|---|---|" + "---|" * (1 + len(INVERSE))]
    for sigma in args.sigmas:
        for task in TASKS:
            cell = {r["method"]: r for r in rows if r["sigma"] == sigma and r["task"] == task}
            tik = cell["tikhonov"]["psnr"]
            out = []
            for name in ("tikhonov",) + INVERSE:
                r = cell.get(name)
                if r is None:
                    out.append("—")
                    continue
                text = f"{r['psnr']:.1f} / {r['dc_max']:.2f}"
                out.append(f"**{text}**" if name != "tikhonov" and meets_bar(r["psnr"], tik, r["dc_max"]) else text)
            lines.append(f"| {sigma:g} | {task} | " + " | ".join(out) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--images", nargs="+", default=["chelsea", "coffee"])
    parser.add_argument("--sigmas", type=float, nargs="+", default=list(SIGMAS))
    parser.add_argument("--tag", default="", help="suffix of the output files (e.g. _heldout128)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    rows = run(args)
    write_results(f"sigma-range{args.tag}", {"machine": machine(), "args": vars(args), "rows": rows},
                  markdown(rows, args, time.perf_counter() - start))


if __name__ == "__main__":
    main()
