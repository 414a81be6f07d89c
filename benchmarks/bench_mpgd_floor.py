"""MPGD's discrepancy cap: the floor ‖A x̂0* − y‖ ≥ f·σ√m below which no step fits y, for f = 1 (the old cap),
0.85 and √½ (DPS's κ = 1/2, the default now: ``_inverse.DISCREPANCY_SHARE``). A report, not a test.

    python benchmarks/bench_mpgd_floor.py [--sizes 64 128 256] [--steps 30] [--factors 1 0.85 0.7071]
                                          [--tasks ...] [--images chelsea coffee] [--merge]

The tuning photos chelsea and coffee (the held-out ones are left to ``bench_methods.py photos``), σ = 0.05, the
``patches`` model, the demo's five tasks, MPGD at its defaults with ``sigma`` (as the command line runs it) and
the floor scaled by f. Cell: mean PSNR dB / data consistency ‖A x̂ − y‖/(σ√m), with Tikhonov (λ picked by PSNR,
an oracle) as the reference (``_factor_sweep.py``). Writes ``results/mpgd-floor.{md,json}`` (``--merge`` keeps
rows of other sizes and step counts).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _factor_sweep import main  # noqa: E402
from bench_methods import SIGMA  # noqa: E402

INTRO = ("`python benchmarks/bench_mpgd_floor.py` — {machine}. Tuning photos {images}, σ = 0.05, `patches` model, "
         "MPGD at its defaults with σ, the cap's floor at f·σ√m (f = 1: the old cap; f = √½ ≈ 0.71: DPS's κ = 1/2, "
         "the default now). Cell: mean PSNR dB / data consistency ‖A x̂ − y‖/(σ√m).")


def run_mpgd(model, op, y: torch.Tensor, steps: int, f: float, generators: list) -> torch.Tensor:
    """MPGD at its defaults with the floor at f·σ√m (the default passes √κ·σ√m to ``capped_grad``)."""
    from diffsolve.solvers._inverse import DISCREPANCY_SHARE

    mpgd_module = importlib.import_module("diffsolve.solvers.mpgd")
    capped, scale = mpgd_module.capped_grad, f / DISCREPANCY_SHARE**0.5
    mpgd_module.capped_grad = lambda o, x0, yy, limit, floor, *cap: capped(o, x0, yy, limit, floor * scale, *cap)
    try:
        return mpgd_module.mpgd(model, op, y, steps=steps, sigma=SIGMA, generator=generators)
    finally:
        mpgd_module.capped_grad = capped


if __name__ == "__main__":
    main("mpgd-floor", __doc__.splitlines()[0], run_mpgd, sizes=[64, 128, 256], steps=[30],
         factors=[1.0, 0.85, 0.5**0.5], tasks=["gaussian_blur", "motion_blur", "box", "random", "sr4"],
         title="MPGD's discrepancy floor", intro=INTRO, descending=True)
