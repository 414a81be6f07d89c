"""DAPS default-step experiments on photos (results/daps-defaults.md, "SR×4: the Langevin noise budget").

    python benchmarks/bench_daps_sr.py --images chelsea coffee --tasks sr4 motion_blur --steps 20 \
        --variants old new t0.35c0.5 tikhonov

Variants: ``new`` the shipped defaults; ``old`` the previous rule (τ = σ, no noise budget: η_i = f·2/(1/r_i² +
L/σ²)); ``t{κ}c{c}`` τ = κσ and the budget c (``daps.LIKELIHOOD_RATIO``, ``daps.NOISE_BUDGET``);
``tikhonov`` λ picked by PSNR (``methods.restore``). Tune on ``diffsolve.data.PHOTOS`` (chelsea, coffee);
confirm on the held-out photos (hopper, camera as in bench_methods.py). Same y as ``bench_methods.py photos``
(noise seed 1000 + size), generators seeded 0, 1, …; prints one JSON row per run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")
import torch  # noqa: E402

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).parent))
from bench_methods import SIGMA, measure  # noqa: E402

from diffsolve.data import photo  # noqa: E402
from diffsolve.methods import restore  # noqa: E402
from diffsolve.metrics import data_consistency, scores  # noqa: E402
from diffsolve.models import load_default  # noqa: E402
daps_mod = importlib.import_module("diffsolve.solvers.daps")  # the package attribute is the function
from diffsolve.tasks import make_operator  # noqa: E402

SHIPPED = (daps_mod.LIKELIHOOD_RATIO, daps_mod.NOISE_BUDGET)


def constants(variant: str) -> tuple[float, float]:
    """(LIKELIHOOD_RATIO, NOISE_BUDGET) of a variant."""
    if variant == "new":
        return SHIPPED
    if variant == "old":
        return 1.0, float("inf")
    kappa, c = variant[1:].split("c")
    return float(kappa), float(c)


def run(images, tasks, sizes, steps, variants):
    model = load_default("patches")
    for size in sizes:
        x = torch.stack([photo(n, size=size) for n in images])
        for task in tasks:
            op = make_operator(task, (size, size))
            y = measure(op, x, seed=size)
            for n in steps:
                for v in variants:
                    t0 = time.perf_counter()
                    if v == "tikhonov":
                        xr, _ = restore("tikhonov", model, op, y, steps=1, sigma=SIGMA, x_true=x)
                    else:
                        daps_mod.LIKELIHOOD_RATIO, daps_mod.NOISE_BUDGET = constants(v)
                        try:
                            xr = daps_mod.daps(model, op, y, steps=n, sigma=SIGMA,
                                               generator=[torch.Generator().manual_seed(i) for i in range(len(images))])
                        finally:
                            daps_mod.LIKELIHOOD_RATIO, daps_mod.NOISE_BUDGET = SHIPPED
                    sec = (time.perf_counter() - t0) / len(images)
                    s, dc = scores(xr, x), data_consistency(op, xr, y, SIGMA)
                    print(json.dumps(dict(size=size, task=task, steps=n, variant=v,
                                          psnr=round(float(s["psnr"].mean()), 2), ssim=round(float(s["ssim"].mean()), 3), dc=round(float(dc.mean()), 2),
                                          psnr_each=[round(float(p), 2) for p in s["psnr"]],
                                          dc_each=[round(float(d), 2) for d in dc], sec=round(sec, 1))), flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", nargs="+", default=["chelsea", "coffee"])
    ap.add_argument("--tasks", nargs="+", default=["sr4"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[64])
    ap.add_argument("--steps", nargs="+", type=int, default=[20])
    ap.add_argument("--variants", nargs="+", default=["old", "new"])
    a = ap.parse_args()
    run(a.images, a.tasks, a.sizes, a.steps, a.variants)
