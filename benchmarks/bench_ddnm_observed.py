"""DDNM+'s observed-coefficient threshold: s_i > f·σ for f = 1 (before), 2 (the default now: ``ddnm.OBSERVED``)
and 3, across sizes and step counts. A report, not a test.

    python benchmarks/bench_ddnm_observed.py [--sizes 64 128] [--steps 20 50 100] [--factors 1 2 3]
                                             [--tasks gaussian_blur sr4] [--images chelsea coffee] [--merge]

The tuning photos chelsea and coffee (the held-out ones are left to ``bench_methods.py photos``), σ = 0.05, the
``patches`` model, DDNM+ at its defaults with the threshold set to f·σ. Only the blurs and SR have singular values
between σ and 3σ; a mask's are all 1, so the inpaintings do not depend on f. Cell: mean PSNR dB / data
consistency ‖A x̂ − y‖/(σ√m), with Tikhonov (λ picked by PSNR, an oracle) as the reference
(``_factor_sweep.py``). Writes ``results/ddnm-observed.{md,json}`` (``--merge`` keeps the rows of other sizes,
step counts and tasks).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _factor_sweep import main  # noqa: E402
from bench_methods import SIGMA  # noqa: E402

INTRO = ("`python benchmarks/bench_ddnm_observed.py` — {machine}. Tuning photos {images}, σ = 0.05, `patches` "
         "model, DDNM+ at its defaults with the coefficients s_i > f·σ treated as observed (f = 1: before; f = 2: "
         "the default now). Cell: mean PSNR dB / data consistency ‖A x̂ − y‖/(σ√m).")


def run_ddnm(model, op, y: torch.Tensor, steps: int, f: float, generators: list) -> torch.Tensor:
    """DDNM+ at its defaults with the threshold at f·σ."""
    ddnm_module = importlib.import_module("diffsolve.solvers.ddnm")  # the package attribute is the function

    default, ddnm_module.OBSERVED = ddnm_module.OBSERVED, f
    try:
        return ddnm_module.ddnm(model, op, y, steps=steps, sigma=SIGMA, generator=generators)
    finally:
        ddnm_module.OBSERVED = default


if __name__ == "__main__":
    main("ddnm-observed", __doc__.splitlines()[0], run_ddnm, sizes=[64, 128], steps=[20, 50, 100],
         factors=[1.0, 2.0, 3.0], tasks=["gaussian_blur", "sr4"], title="DDNM+'s observed-coefficient threshold",
         intro=INTRO, factor_format="{:g}")
