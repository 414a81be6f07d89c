"""Every inverse method's defaults are free of the operator's scale: A → kA, y → ky, σ → kσ gives the same result
(float64, the same seed), for a separable and a dense blur and a weighted mask."""

from __future__ import annotations

import pytest
import torch
from _small_problem import D, SHAPE, gen, prior

import diffsolve
from diffsolve.methods import METHODS
from diffsolve.operators import Blur, Inpainting, MotionBlur

INVERSE = [name for name, m in METHODS.items() if m.kind == "inverse"]


def _pair(name: str, k: float):
    """(A, kA) with the same structure."""
    if name == "separable blur":
        h, w = torch.tensor([0.2, 0.5, 0.3], dtype=D), torch.tensor([0.1, 0.7, 0.2], dtype=D)
        return Blur.separable(h, w), Blur.separable(k * h, w)
    if name == "dense blur":
        kernel = MotionBlur(3, 0.5, seed=0).kernel.to(D)
        return Blur(kernel), Blur(k * kernel)
    weights = (torch.rand(*SHAPE[-2:], generator=gen(5), dtype=D) > 0.4).to(D)
    return Inpainting(weights), Inpainting(k * weights)


# the SVD methods take no dense reflect-boundary blur (they refuse it before the loop: tests/test_ddrm.py)
CASES = [(m, o) for m in INVERSE for o in ("separable blur", "dense blur", "mask")
         if not (o == "dense blur" and METHODS[m].unsupported(_pair(o, 1.0)[0], SHAPE[-2:], 0.05))]


@pytest.mark.parametrize("method, op_name", CASES)
@pytest.mark.parametrize("k", [2.0, 0.1])
@pytest.mark.parametrize("sigma", [0.05, 0.3])  # 0.3: past RED-diff's reference level, MPGD's noise-level cap
def test_operator_scale_leaves_the_result(method, op_name, k, sigma):
    pr, (op, op_k) = prior(), _pair(op_name, k)
    x = torch.randn(2, *SHAPE, generator=gen(1), dtype=D)
    y = op.A(x) + sigma * torch.randn(op.A(x).shape, generator=gen(2), dtype=D)
    with torch.enable_grad() if METHODS[method].backward else torch.no_grad():
        out = diffsolve.solve(method, pr, op, y, steps=6, sigma=sigma, generator=gen(3))
        out_k = diffsolve.solve(method, pr, op_k, k * y, steps=6, sigma=sigma * k, generator=gen(3))
    assert float((out - out_k).norm() / out.norm()) < 1e-8
