"""DDNM+'s observed-coefficient threshold: s_i > f·σ for f = 1 (before), 2 (the default now: ``ddnm.OBSERVED``)
and 3, across sizes and step counts. A report, not a test.

    python benchmarks/bench_ddnm_observed.py [--sizes 64 128] [--steps 20 50 100] [--factors 1 2 3]
                                             [--tasks gaussian_blur sr4] [--images chelsea coffee] [--merge]

The tuning photos chelsea and coffee (the held-out ones are left to ``bench_methods.py photos``), σ = 0.05, the
``patches`` model, DDNM+ at its defaults with the threshold set to f·σ. Only the blurs and SR have singular values
between σ and 3σ; a mask's are all 1, so the inpaintings do not depend on f. Cell: mean PSNR dB / data
consistency ‖A x̂ − y‖/(σ√m), with Tikhonov (λ picked by PSNR, an oracle) as the reference. Writes
``results/ddnm-observed.{md,json}`` (``--merge`` keeps the rows of other sizes, step counts and tasks).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_dps import write_results  # noqa: E402
from bench_methods import RESULTS, SIGMA, machine, photo_problems  # noqa: E402

OUT = RESULTS / "ddnm-observed"


def run(sizes: list[int], steps: list[int], factors: list[float], tasks: list[str], images: list[str]) -> list[dict]:
    import diffsolve.solvers.ddnm as ddnm_module
    from diffsolve.methods import restore
    from diffsolve.metrics import data_consistency, scores
    from diffsolve.models import load_default

    default = ddnm_module.OBSERVED
    model = load_default("patches")
    rows = []
    for size in sizes:
        for task, op, x, y in photo_problems(images, size, tasks):
            xt, _ = restore("tikhonov", model, op, y, steps=1, sigma=SIGMA, x_true=x)
            rows.append({"size": size, "task": task, "steps": 0, "factor": None,
                         "psnr": float(scores(xt, x)["psnr"].mean()), "dc": float(data_consistency(op, xt, y, SIGMA).mean())})
            for n in steps:
                for f in factors:
                    ddnm_module.OBSERVED = f
                    try:
                        gens = [torch.Generator().manual_seed(i) for i in range(len(images))]
                        xr = ddnm_module.ddnm(model, op, y, steps=n, sigma=SIGMA, generator=gens)
                    finally:
                        ddnm_module.OBSERVED = default
                    rows.append({"size": size, "task": task, "steps": n, "factor": f,
                                 "psnr": float(scores(xr, x)["psnr"].mean()),
                                 "dc": float(data_consistency(op, xr, y, SIGMA).mean())})
                    print(rows[-1], flush=True)
    return rows


def render(res: dict) -> str:
    rows = res["rows"]
    factors = sorted({r["factor"] for r in rows if r["factor"] is not None})
    tasks = sorted({r["task"] for r in rows})
    lines = ["# DDNM+'s observed-coefficient threshold", "",
             f"`python benchmarks/bench_ddnm_observed.py` — {res['machine']}. Tuning photos "
             f"{', '.join(res['images'])}, σ = 0.05, `patches` model, DDNM+ at its defaults with the coefficients "
             "s_i > f·σ treated as observed (f = 1: before; f = 2: the default now). Cell: mean PSNR dB / data "
             "consistency ‖A x̂ − y‖/(σ√m).", "",
             "| size | steps | task | Tikhonov | " + " | ".join(f"f = {f:g}" for f in factors) + " |",
             "|---|---|---|---|" + "---|" * len(factors)]
    keys = sorted({(r["size"], r["steps"]) for r in rows if r["factor"] is not None})
    for size, n in keys:
        for task in tasks:
            ref = next((r for r in rows if r["size"] == size and r["task"] == task and r["factor"] is None), None)
            cells = []
            for f in factors:
                r = next((r for r in rows if (r["size"], r["steps"], r["task"], r["factor"]) == (size, n, task, f)), None)
                cells.append("—" if r is None else f"{r['psnr']:.2f} / {r['dc']:.2f}")
            if ref is not None and any(c != "—" for c in cells):
                lines.append(f"| {size}² | {n} | {task} | {ref['psnr']:.2f} / {ref['dc']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--steps", type=int, nargs="+", default=[20, 50, 100])
    parser.add_argument("--factors", type=float, nargs="+", default=[1.0, 2.0, 3.0])
    parser.add_argument("--tasks", nargs="+", default=["gaussian_blur", "sr4"])
    parser.add_argument("--images", nargs="+", default=["chelsea", "coffee"])
    parser.add_argument("--merge", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = run(args.sizes, args.steps, args.factors, args.tasks, args.images)
    path = OUT.with_suffix(".json")
    old = json.loads(path.read_text())["rows"] if args.merge and path.exists() else []
    new_keys = {(r["size"], r["steps"], r["task"], r["factor"]) for r in rows}
    rows = [r for r in old if (r["size"], r["steps"], r["task"], r["factor"]) not in new_keys] + rows
    res = {"machine": machine(), "images": args.images, "rows": rows}
    print(write_results("ddnm-observed", res, render(res)))


if __name__ == "__main__":
    main()
