"""MPGD's discrepancy cap: the floor ‖A x̂0* − y‖ ≥ f·σ√m below which no step fits y, for f = 1 (the old cap),
0.85 and √½ (DPS's κ = 1/2, the default now: ``_inverse.DISCREPANCY_SHARE``). A report, not a test.

    python benchmarks/bench_mpgd_floor.py [--sizes 64 128 256] [--steps 30] [--factors 1 0.85 0.7071]
                                          [--images chelsea coffee] [--merge]

The tuning photos chelsea and coffee (the held-out ones are left to ``bench_methods.py photos``), σ = 0.05, the
``patches`` model, the demo's five tasks, MPGD at its defaults with ``sigma`` (as the command line runs it) and
the floor scaled by f. Cell: mean PSNR dB / data consistency ‖A x̂ − y‖/(σ√m), with Tikhonov (λ picked by PSNR,
an oracle) as the reference. Writes ``results/mpgd-floor.{md,json}`` (``--merge`` keeps rows of other sizes and
step counts).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_dps import write_results  # noqa: E402
from bench_methods import RESULTS, SIGMA, machine, photo_problems  # noqa: E402

OUT = RESULTS / "mpgd-floor"
TASKS = ("gaussian_blur", "motion_blur", "box", "random", "sr4")


def run(sizes: list[int], steps: list[int], factors: list[float], images: list[str]) -> list[dict]:
    from diffsolve.methods import restore
    from diffsolve.metrics import data_consistency, scores
    from diffsolve.models import load_default
    from diffsolve.solvers._inverse import DISCREPANCY_SHARE

    mpgd_module = importlib.import_module("diffsolve.solvers.mpgd")
    capped = mpgd_module.capped_grad
    default = DISCREPANCY_SHARE**0.5  # the floor factor the default applies to σ√m
    model = load_default("patches")
    rows = []
    for size in sizes:
        for task, op, x, y in photo_problems(images, size, TASKS):
            xt, _ = restore("tikhonov", model, op, y, steps=1, sigma=SIGMA, x_true=x)
            rows.append({"size": size, "task": task, "steps": 0, "factor": None,
                         "psnr": float(scores(xt, x)["psnr"].mean()), "dc": float(data_consistency(op, xt, y, SIGMA).mean())})
            for n in steps:
                for f in factors:
                    # the default passes floor = √κ·σ√m; rescale it to f·σ√m
                    mpgd_module.capped_grad = (lambda o, x0, yy, limit, floor, s=f / default:
                                               capped(o, x0, yy, limit, floor * s))
                    try:
                        gens = [torch.Generator().manual_seed(i) for i in range(len(images))]
                        xr = mpgd_module.mpgd(model, op, y, steps=n, sigma=SIGMA, generator=gens)
                    finally:
                        mpgd_module.capped_grad = capped
                    rows.append({"size": size, "task": task, "steps": n, "factor": f,
                                 "psnr": float(scores(xr, x)["psnr"].mean()),
                                 "dc": float(data_consistency(op, xr, y, SIGMA).mean())})
                    print(rows[-1], flush=True)
    return rows


def render(res: dict) -> str:
    rows = res["rows"]
    factors = sorted({r["factor"] for r in rows if r["factor"] is not None}, reverse=True)
    lines = ["# MPGD's discrepancy floor", "",
             f"`python benchmarks/bench_mpgd_floor.py` — {res['machine']}. Tuning photos {', '.join(res['images'])}, "
             "σ = 0.05, `patches` model, MPGD at its defaults with σ, the cap's floor at f·σ√m (f = 1: the old cap; "
             "f = √½ ≈ 0.71: DPS's κ = 1/2, the default now). Cell: mean PSNR dB / data consistency "
             "‖A x̂ − y‖/(σ√m).", "",
             "| size | steps | task | Tikhonov | " + " | ".join(f"f = {f:.2f}" for f in factors) + " |",
             "|---|---|---|---|" + "---|" * len(factors)]
    keys = sorted({(r["size"], r["steps"]) for r in rows if r["factor"] is not None})
    for size, n in keys:
        for task in TASKS:
            ref = next((r for r in rows if r["size"] == size and r["task"] == task and r["factor"] is None), None)
            cells = []
            for f in factors:
                r = next((r for r in rows if (r["size"], r["steps"], r["task"], r["factor"]) == (size, n, task, f)), None)
                cells.append("—" if r is None else f"{r['psnr']:.2f} / {r['dc']:.2f}")
            if ref is not None:
                lines.append(f"| {size}² | {n} | {task} | {ref['psnr']:.2f} / {ref['dc']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--steps", type=int, nargs="+", default=[30])
    parser.add_argument("--factors", type=float, nargs="+", default=[1.0, 0.85, 0.5**0.5])
    parser.add_argument("--images", nargs="+", default=["chelsea", "coffee"])
    parser.add_argument("--merge", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = run(args.sizes, args.steps, args.factors, args.images)
    old = json.loads((OUT.with_suffix(".json")).read_text())["rows"] if args.merge and OUT.with_suffix(".json").exists() else []
    new_keys = {(r["size"], r["steps"], r["task"], r["factor"]) for r in rows}
    rows = [r for r in old if (r["size"], r["steps"], r["task"], r["factor"]) not in new_keys] + rows
    res = {"machine": machine(), "images": args.images, "rows": rows}
    print(write_results("mpgd-floor", res, render(res)))


if __name__ == "__main__":
    main()
