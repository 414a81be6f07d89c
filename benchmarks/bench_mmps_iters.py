"""MMPS: how many GMRES iterations per step by default (``mmps(iters=...)``).

Not a test. Two parts, at 50 steps, σ = 0.05:

- ``photos``: the demo photos chelsea and coffee (``diffsolve.data.PHOTOS``, the tuning set; the held-out
  photos are left to ``bench_methods.py photos``) at 64², the shipped ``patches`` model, the five demo tasks,
  iters ∈ {1, 2, 4}: mean PSNR and data consistency ‖A x̂ − y‖/(σ√m);
- ``prior``: bench_posterior's exact Gaussian prior (16², 64 draws of one y), box inpainting, Gaussian blur,
  motion blur, SR ×4, iters ∈ {1, 2, 4, 8}: mean gap to the exact posterior mean and trace ratio.

Writes ``benchmarks/results/mmps-iters.{md,json}``. Usage: ``python benchmarks/bench_mmps_iters.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_dps import _machine, write_results  # noqa: E402

SIGMA, STEPS = 0.05, 50


def run_photos() -> list[dict]:
    from bench_methods import photo_problems

    from diffsolve.metrics import scores
    from diffsolve.models import load_default
    from diffsolve.solvers.mmps import mmps
    from diffsolve.tasks import DEMO_TASKS

    model = load_default("patches")
    names = ("chelsea", "coffee")
    rows = []
    for task, op, x, y in photo_problems(names, 64, DEMO_TASKS):
        for iters in (1, 2, 4):
            gens = [torch.Generator().manual_seed(i) for i in range(len(names))]
            start = time.perf_counter()
            xr, info = mmps(model, op, y, steps=STEPS, sigma=SIGMA, iters=iters, generator=gens, return_info=True)
            rows.append({"task": task, "iters": iters, "psnr": float(scores(xr, x)["psnr"].mean()),
                         "dc": float(info["data_consistency"].mean()),
                         "sec": (time.perf_counter() - start) / len(names)})
            print(rows[-1], flush=True)
    return rows


def run_prior() -> list[dict]:
    from bench_posterior import exact_problem, metrics, mixture_mean, priors, probe_directions, tasks

    from diffsolve.solvers.mmps import mmps

    size = 16
    dirs = probe_directions(size)
    prior = priors(size)["gaussian"]
    prior_mean = mixture_mean(prior)
    rows = []
    for task in ("box inpaint", "gaussian blur", "motion blur", "sr x4"):
        op = tasks(size)[task]
        y, post, reference, spaces = exact_problem(prior, op, 64)
        for iters in (1, 2, 4, 8):
            out = mmps(prior, op, y, steps=STEPS, sigma=SIGMA, iters=iters,
                       generator=torch.Generator().manual_seed(1000 + STEPS))
            m = metrics(out, post, prior_mean, reference, op, y, dirs, *spaces)
            rows.append({"task": task, "iters": iters, "gap": m["mean_gap"], "trace": m["var_ratio"]})
            print(rows[-1], flush=True)
    return rows


def render(res: dict) -> str:
    lines = ["# MMPS: GMRES iterations per step", "", f"`python benchmarks/bench_mmps_iters.py` — {res['machine']}. "
             f"{STEPS} steps, σ = {SIGMA}, η = 1.", "",
             "## Demo photos (chelsea, coffee; the tuning set), 64², `patches` model", "",
             "Cell: mean PSNR dB / data consistency / s per image.", "",
             "| task | iters=1 | iters=2 | iters=4 |", "|---|---|---|---|"]
    for task in dict.fromkeys(r["task"] for r in res["photos"]):
        cells = [next(f"{r['psnr']:.2f} / {r['dc']:.2f} / {r['sec']:.1f}" for r in res["photos"]
                      if (r["task"], r["iters"]) == (task, k)) for k in (1, 2, 4)]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    lines += ["", "## Exact Gaussian prior, 16², 64 draws", "", "Cell: mean gap / trace ratio.", "",
              "| task | iters=1 | iters=2 | iters=4 | iters=8 |", "|---|---|---|---|---|"]
    for task in dict.fromkeys(r["task"] for r in res["prior"]):
        cells = [next(f"{r['gap']:.3f} / {r['trace']:.2f}" for r in res["prior"] if (r["task"], r["iters"]) == (task, k))
                 for k in (1, 2, 4, 8)]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    res = {"machine": _machine(), "prior": run_prior(), "photos": run_photos()}
    print(write_results("mmps-iters", res, render(res)))


if __name__ == "__main__":
    main()
