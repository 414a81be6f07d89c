"""DiffPIR's cap on x̂0's error variance (``x0_variance_cap``, v = 1) against the paper's ρ_t (v = None), on the
held-out photos at few and many steps (a report, not a test).

    python benchmarks/bench_diffpir_cap.py [--size 64] [--steps 1 2 3 5 10 30 50] [--images camera grass hopper raccoon]

The paper's ρ_t = λσ²/σ̄_t² goes to 0 where ᾱ_t → 0, so with 1–3 steps the result is a noise-amplified least-squares
fit; the cap ρ_t = λσ²/min(σ̄_t², 1) changes only the steps with ᾱ_t < 1/2. Each cell: mean PSNR (dB) over the photos
and the worst data consistency ‖A x̂ − y‖/(σ√m), DiffPIR at its other defaults (σ = 0.05, the ``patches`` model, y as
``bench_methods.measure`` makes it, generator i for photo i, the same draws for both). Writes
``results/diffpir-cap.{md,json}``.
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
from bench_methods import SIGMA, machine, measure, task_operator  # noqa: E402

import diffsolve  # noqa: E402

TASKS = ("gaussian_blur", "motion_blur", "box", "random", "sr4")
VARIANTS = {"paper (v = None)": None, "capped (v = 1, default)": 1.0}


def run(args) -> list[dict]:
    from diffsolve.data import photo
    from diffsolve.metrics import data_consistency, scores
    from diffsolve.models import load_default

    model = load_default("patches")
    x = torch.stack([photo(name, size=args.size) for name in args.images])
    rows = []
    for task in TASKS:
        op = task_operator(task, args.size)
        y = measure(op, x, 0)
        for steps in args.steps:
            for label, cap in VARIANTS.items():
                gens = [torch.Generator().manual_seed(i) for i in range(len(x))]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    xr = diffsolve.solve("diffpir", model, op, y, sigma=SIGMA, steps=steps, generator=gens,
                                         x0_variance_cap=cap)
                psnr = scores(xr, x)["psnr"]
                dc = data_consistency(op, xr, y, SIGMA)
                rows.append({"task": task, "steps": steps, "variant": label, "psnr": float(psnr.mean()),
                             "psnr_min": float(psnr.min()), "dc_max": float(dc.max())})
                print(f"{task:13s} N={steps:3d} {label:24s} {rows[-1]['psnr']:6.2f} dB  dc ≤ {rows[-1]['dc_max']:.2f}",
                      flush=True)
    return rows


def report(rows: list[dict], args, seconds: float) -> str:
    lines = ["# DiffPIR: x̂0's error variance capped at 1 vs the paper's ρ_t", "",
             f"`python benchmarks/bench_diffpir_cap.py --size {args.size} --steps {' '.join(map(str, args.steps))} "
             f"--images {' '.join(args.images)}` ({machine()}, {seconds:.0f} s). Held-out photos at {args.size}², "
             f"σ = {SIGMA}, the `patches` model, DiffPIR's other defaults. Cell: mean PSNR dB / worst data "
             "consistency; the same draws for both rows.", ""]
    for task in TASKS:
        lines += [f"## {task}", "", "| variant | " + " | ".join(f"N = {n}" for n in args.steps) + " |",
                  "|---|" + "---|" * len(args.steps)]
        for label in VARIANTS:
            cells = {r["steps"]: r for r in rows if r["task"] == task and r["variant"] == label}
            lines.append(f"| {label} | " + " | ".join(f"{cells[n]['psnr']:.2f} / {cells[n]['dc_max']:.2f}"
                                                       for n in args.steps) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, nargs="+", default=[1, 2, 3, 5, 10, 30, 50])
    p.add_argument("--images", nargs="+", default=["camera", "grass", "hopper", "raccoon"])
    p.add_argument("--name", default="diffpir-cap")
    args = p.parse_args()
    t0 = time.time()
    rows = run(args)
    write_results(args.name, {"rows": rows, "args": vars(args)}, report(rows, args, time.time() - t0))


if __name__ == "__main__":
    main()
