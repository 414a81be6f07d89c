"""⟨A x, y⟩ = ⟨x, Aᵀ y⟩ in float64 for every operator × boundary × odd/even size × batch > 1, and
hypothesis properties (adjointness, linearity, solve inverting shift·I + scale·AᵀA)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffsolve.operators import Blur, Inpainting, SuperResolution

from _operator_cases import BOUNDARIES, operator_cases

SIZES = [(12, 10), (13, 11), (9, 14)]


def _rel_gap(op, x, y) -> float:
    lhs = (op.A(x) * y).sum()
    rhs = (x * op.A_adjoint(y)).sum()
    return float((lhs - rhs).abs() / (lhs.abs() + rhs.abs()))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_adjointness_every_operator(size):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, *size, generator=gen, dtype=torch.float64)
    cases = operator_cases(size)
    assert sum(k.startswith(("gaussian", "motion", "dense", "separable")) for k in cases) == 12
    for name, op in cases.items():
        y = torch.randn(op.A(x).shape, generator=gen, dtype=torch.float64)
        assert _rel_gap(op, x, y) <= 1e-12, name
        assert torch.allclose(op.gram(x), op.A_adjoint(op.A(x)), rtol=1e-12, atol=1e-13), name


@pytest.mark.parametrize("name", ["gaussian_reflect", "motion_circular", "sr_bicubic_2", "inpaint_random"])
def test_float32_runs_and_is_adjoint(name):
    op = operator_cases((12, 10))[name]
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 2, 12, 10, generator=gen)
    y = torch.randn(op.A(x).shape, generator=gen)
    assert op.A(x).dtype == torch.float32 and op.A_adjoint(y).dtype == torch.float32
    assert _rel_gap(op, x, y) <= 1e-5
    assert op.solve(x, 0.5, 1.0).dtype == torch.float32


# ----------------------------------------------------------------------------- hypothesis properties
@st.composite
def blur_problems(draw):
    kh, kw = draw(st.sampled_from([1, 3, 5])), draw(st.sampled_from([1, 3, 5, 7]))
    boundary = draw(st.sampled_from(BOUNDARIES))
    h = draw(st.integers(kh // 2 + 1, 11))
    w = draw(st.integers(kw // 2 + 1, 11))
    batch, channels = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**16))
    kernel = torch.randn(kh, kw, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    kernel = kernel / kernel.abs().sum()  # ‖A‖ <= 1, so CG converges in a few dozen iterations
    separable = draw(st.booleans())
    op = Blur.separable(kernel[:, 0], kernel[0, :], boundary) if separable else Blur(kernel, boundary)
    return op, (batch, channels, h, w), seed


@st.composite
def other_problems(draw):
    h, w = draw(st.integers(2, 12)), draw(st.integers(2, 12))
    batch, channels = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**16))
    kind = draw(st.sampled_from(["mask", "bicubic", "average"]))
    if kind == "mask":
        m = torch.rand(draw(st.sampled_from([1, channels])), h, w, generator=torch.Generator().manual_seed(seed))
        op = Inpainting((m > 0.5).double() * m * 2)
    elif kind == "bicubic":
        op = SuperResolution(draw(st.integers(1, 4)), "bicubic", input_size=(h, w))
    else:
        s = draw(st.integers(1, 3))
        h, w = h - h % s or s, w - w % s or s
        op = SuperResolution(s, "average")
    return op, (batch, channels, h, w), seed


def _check_properties(op, shape, seed):
    gen = torch.Generator().manual_seed(seed)
    x1, x2 = (torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(2))
    y = torch.randn(op.A(x1).shape, generator=gen, dtype=torch.float64)
    lhs, rhs = (op.A(x1) * y).sum(), (x1 * op.A_adjoint(y)).sum()
    assert (lhs - rhs).abs() <= 1e-12 * (op.A(x1).norm() * y.norm() + x1.norm() * op.A_adjoint(y).norm())
    a, b = 0.7, -1.3
    lin = op.A(a * x1 + b * x2)
    assert torch.allclose(lin, a * op.A(x1) + b * op.A(x2), rtol=1e-12, atol=1e-12)
    shift = torch.rand(shape[0], generator=gen, dtype=torch.float64) + 0.2
    scale = torch.rand(shape[0], generator=gen, dtype=torch.float64) * 3
    sol = op.solve(x1, shift, scale, tol=1e-12, max_iters=300, check_every=10)
    back = shift.view(-1, 1, 1, 1) * sol + scale.view(-1, 1, 1, 1) * op.gram(sol)
    assert torch.allclose(back, x1, rtol=1e-9, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(blur_problems())
def test_blur_properties(problem):
    _check_properties(*problem)


@settings(max_examples=25, deadline=None)
@given(other_problems())
def test_mask_and_resampling_properties(problem):
    _check_properties(*problem)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)")
def test_cuda_matches_cpu_for_every_operator():
    size = (13, 12)
    x = torch.randn(2, 2, *size, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for name, op in operator_cases(size).items():
        y = op.A(x)
        torch.testing.assert_close(op.A(x.cuda()).cpu(), y, rtol=1e-10, atol=1e-10, msg=name)
        torch.testing.assert_close(op.A_adjoint(y.cuda()).cpu(), op.A_adjoint(y), rtol=1e-10, atol=1e-10, msg=name)
        got = op.solve(x.cuda(), 0.5, 1.0, check_every=10).cpu()
        torch.testing.assert_close(got, op.solve(x, 0.5, 1.0, check_every=10), rtol=1e-8, atol=1e-8, msg=name)


@pytest.mark.parametrize("name", ["mask", "matrix"])
def test_an_operator_first_used_in_inference_mode_still_differentiates(name):
    """Its cache (the float mask, the matrix's factors) was built as inference tensors, and every later backward
    through the operator failed with torch's raw error (DPS after a measurement simulated under inference_mode)."""
    from diffsolve.operators import Inpainting, MatrixOperator

    op = Inpainting.random(8, missing=0.5, seed=0) if name == "mask" else MatrixOperator.gaussian(20, (1, 8, 8), seed=0)
    x = torch.rand(2, 1, 8, 8, dtype=torch.float32)
    with torch.inference_mode():
        op.A(x)
    xx = x.clone().requires_grad_()
    op.A(xx).sum().backward()
    assert xx.grad is not None and torch.isfinite(xx.grad).all()
