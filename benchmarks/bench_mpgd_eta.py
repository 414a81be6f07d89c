"""MPGD's DDIM η, the share of fresh noise per step: η = 0.5 (the reference code's, the old default), 0.75 and 1.
A report, not a test.

    python benchmarks/bench_mpgd_eta.py [--sizes 64 128 256] [--steps 20 30 50 100] [--factors 0.5 0.75 1]
                                        [--tasks ...] [--images chelsea coffee] [--merge]

The tuning photos chelsea and coffee (the held-out ones are left to ``bench_methods.py photos``), σ = 0.05, the
``patches`` model, the demo's five tasks, MPGD at its defaults with ``sigma`` (as the command line runs it) and
``eta`` = f. Cell: mean PSNR dB / data consistency ‖A x̂ − y‖/(σ√m), with Tikhonov (λ picked by PSNR, an oracle)
as the reference (``_factor_sweep.py``). Writes ``results/mpgd-eta.{md,json}`` (``--merge`` keeps rows of other
sizes, step counts and factors).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _factor_sweep import main  # noqa: E402
from bench_methods import SIGMA  # noqa: E402

INTRO = ("`python benchmarks/bench_mpgd_eta.py` — {machine}. Tuning photos {images}, σ = 0.05, `patches` model, "
         "MPGD at its defaults with σ and DDIM η = f (f = 0.5: the reference code's). Cell: mean PSNR dB / data "
         "consistency ‖A x̂ − y‖/(σ√m).")


def run_mpgd(model, op, y: torch.Tensor, steps: int, f: float, generators: list) -> torch.Tensor:
    """MPGD at its defaults with η = f."""
    from diffsolve.solvers import mpgd

    return mpgd(model, op, y, steps=steps, sigma=SIGMA, eta=f, generator=generators)


if __name__ == "__main__":
    main("mpgd-eta", __doc__.splitlines()[0], run_mpgd, sizes=[64, 128, 256], steps=[20, 30, 50, 100],
         factors=[0.5, 0.75, 1.0], tasks=["gaussian_blur", "motion_blur", "box", "random", "sr4"],
         title="MPGD's DDIM η", intro=INTRO)
