"""MMPS's measurement-space solver with a learned denoiser: CG against GMRES (a report, not a test).

    OMP_NUM_THREADS=1 python benchmarks/bench_mmps_solvers.py        # → results/mmps-solvers.{md,json}

For a learned denoiser the Jacobian behind Σ_t is neither symmetric nor PSD, so K = σ²I + A Σ_t Aᵀ is not what
CG assumes. Problem: four bundled photos (chelsea, coffee, camera, grass) at 64² and 128², random inpainting (70 %
missing), σ = 0.05, the shipped `patches` UNet, 20 steps, one x_T; each solver × iterations × η. "CG×1, no
floor" is CG without the skip of directions with ⟨p, K p⟩ ≤ ½σ²⟨p, p⟩ (``measurement_cg(floor=0)``, the code
before that skip). Every run is ``discrepancy=False``: the solver's own result, no pull towards y after the last
step (the pull would hide a lost sample's residual). Cell: mean PSNR dB / samples lost (data consistency > 3, the DataConsistencyWarning's bar)
/ the lowest PSNR.
"""

from __future__ import annotations

import importlib
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_dps import write_results  # noqa: E402
from bench_methods import machine  # noqa: E402
from bench_peers import SIGMA, problem  # noqa: E402

import diffsolve  # noqa: E402
from diffsolve.metrics import data_consistency, psnr  # noqa: E402
from diffsolve.models import load_default  # noqa: E402

mmps_module = importlib.import_module("diffsolve.solvers.mmps")
CONFIGS = [("gmres", 1, "GMRES×1"), ("gmres", 4, "GMRES×4 (default)"), ("cg", 1, "CG×1"), ("cg", 1, "CG×1, no floor"),
           ("cg", 3, "CG×3")]


def run_one(model, p: dict, solver: str, iters: int, eta: float, floor: bool) -> dict:
    cg = mmps_module.SOLVERS["cg"]
    if not floor:  # the code before the skip: only ⟨p, K p⟩ ≤ 0 is skipped
        mmps_module.SOLVERS["cg"] = lambda *a, floor=0.0, **k: cg(*a, floor=0.0, **k)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x = diffsolve.solve("mmps", model, p["mask_op"], p["y_mask"], steps=20, x_T=p["x_T"].clone(),
                                sigma=SIGMA, solver=solver, iters=iters, eta=eta, discrepancy=False,
                                generator=torch.Generator().manual_seed(0))
    finally:
        mmps_module.SOLVERS["cg"] = cg
    ps = psnr(x.nan_to_num(), p["x"])
    dc = data_consistency(p["mask_op"], x.nan_to_num(), p["y_mask"], SIGMA)
    return dict(psnr=[round(float(v), 2) for v in ps], dc=[round(float(v), 2) for v in dc])


def main() -> None:
    model = load_default("patches")
    rows, t0 = [], time.time()
    for size in (64, 128):
        p = problem(size, 4)
        for eta in (0.0, 1.0):
            for solver, iters, label in CONFIGS:
                r = run_one(model, p, solver, iters, eta, floor="no floor" not in label)
                rows.append(dict(size=size, eta=eta, config=label, **r))
                print(rows[-1], flush=True)
    res = dict(rows=rows, machine=machine(), seconds=round(time.time() - t0))
    head = ["size", "η"] + [c for _, _, c in CONFIGS]
    lines = ["# MMPS with a learned denoiser: CG against GMRES (benchmarks/bench_mmps_solvers.py)", "",
             f"{res['machine']}, {res['seconds']} s. " + __doc__.split("\n\n")[2].replace("\n", " "), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for size in (64, 128):
        for eta in (0.0, 1.0):
            cells = []
            for _, _, label in CONFIGS:
                r = next(r for r in rows if r["size"] == size and r["eta"] == eta and r["config"] == label)
                lost = sum(d > 3 for d in r["dc"])
                cells.append(f"{sum(r['psnr']) / 4:.2f} / {lost} / {min(r['psnr']):.2f}")
            lines.append(f"| {size}² | {eta:g} | " + " | ".join(cells) + " |")
    print(write_results("mmps-solvers", res, "\n".join(lines) + "\n"))


if __name__ == "__main__":
    main()
