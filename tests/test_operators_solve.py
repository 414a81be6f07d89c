"""solve, pseudo_inverse and tikhonov against dense float64 linear algebra on 1×2×12×10 (and odd
sizes), and the exact solve paths against the CG path."""

from __future__ import annotations

import pytest
import torch

from diffsolve.operators import GaussianBlur, Inpainting, MotionBlur, SuperResolution
from diffsolve.operators._validate import SolveNotConvergedWarning

from _operator_cases import dense_matrix, operator_cases

F64 = torch.float64
SHAPE = (1, 2, 12, 10)
CASES = operator_cases(SHAPE[-2:])


@pytest.fixture(scope="module")
def dense():
    return {name: dense_matrix(op, SHAPE) for name, op in CASES.items()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_solve_matches_dense_solve(name, dense):
    op, m = CASES[name], dense[name]
    gen = torch.Generator().manual_seed(0)
    rhs = torch.randn(SHAPE, generator=gen, dtype=F64)
    for shift, scale in [(0.3, 2.0), (1.0, 0.5)]:
        k = shift * torch.eye(m.shape[1], dtype=F64) + scale * m.T @ m
        ref = torch.linalg.solve(k, rhs.flatten()).reshape(SHAPE)
        x, info = op.solve(rhs, shift, scale, check_every=10, return_info=True)
        torch.testing.assert_close(x, ref, rtol=1e-9, atol=1e-9 * ref.abs().max().item())
        assert info.method == ("exact" if op.exact_solve else "cg")
        assert bool(info.converged.all()) and float(info.residual.max()) <= 1e-10


@pytest.mark.parametrize("name", sorted(n for n, op in CASES.items() if op.exact_solve))
def test_exact_solve_equals_cg_to_cg_tolerance(name):
    op = CASES[name]
    gen = torch.Generator().manual_seed(1)
    rhs = torch.randn(3, *SHAPE[1:], generator=gen, dtype=F64)
    shift, scale = torch.tensor([0.2, 0.5, 1.0], dtype=F64), torch.tensor([1.0, 3.0, 0.0], dtype=F64)
    exact = op.solve(rhs, shift, scale, method="exact")
    cg, info = op.solve(rhs, shift, scale, method="cg", tol=1e-11, max_iters=400, check_every=20, return_info=True)
    assert info.method == "cg" and bool(info.converged.all())
    cond = 50.0  # κ(K) <= 1 + scale·‖A‖²/shift, ‖A‖ <= ~1.5 here: the error is at most κ·tol·‖rhs‖
    torch.testing.assert_close(cg, exact, rtol=0, atol=cond * 1e-11 * rhs.abs().max().item())


def test_per_sample_shift_and_scale_are_independent_of_the_batch():
    op = GaussianBlur(9, 1.2)
    gen = torch.Generator().manual_seed(2)
    rhs = torch.randn(3, 2, 12, 10, generator=gen, dtype=F64)
    shift, scale = torch.tensor([0.1, 0.5, 2.0], dtype=F64), torch.tensor([1.0, 2.0, 0.5], dtype=F64)
    together = op.solve(rhs, shift, scale)
    for b in range(3):
        alone = op.solve(rhs[b:b + 1], float(shift[b]), float(scale[b]))
        torch.testing.assert_close(together[b:b + 1], alone, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["identity", "inpaint_random", "sr_bicubic_2", "sr_bicubic_3", "sr_average_2",
                                  "gaussian_circular", "user_callable"])
def test_pseudo_inverse_matches_dense_pinv(name, dense):
    op, m = CASES[name], dense[name]
    y = op.A(torch.randn(SHAPE, generator=torch.Generator().manual_seed(3), dtype=F64))
    ref = (torch.linalg.pinv(m) @ y.flatten()).reshape(SHAPE)
    torch.testing.assert_close(op.pseudo_inverse(y), ref, rtol=1e-8, atol=1e-8)


def test_pseudo_inverse_of_ill_conditioned_blur_is_a_least_squares_solution():
    """A⁺ of the separable Gaussian uses per-axis thresholds; it must still satisfy A A⁺ A = A."""
    op = CASES["gaussian_reflect"]
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(4), dtype=F64)
    y = op.A(x)
    torch.testing.assert_close(op.A(op.pseudo_inverse(y)), y, rtol=1e-7, atol=1e-7)


def test_pseudo_inverse_of_a_dense_kernel_runs_cg_in_float64_and_says_when_it_stops_short():
    """CG on AᵀA squares A's condition number: in float32 it stopped at float32's tolerance with A⁺y of this blur off
    by the image's range. A float32 y now gets the float64 solve, cast back; a CG that stops short warns."""
    op = MotionBlur(5, 0.5)  # reflect boundary, dense kernel: no SVD, A⁺ by CG
    x = torch.randn(2, 3, 16, 24, generator=torch.Generator().manual_seed(8), dtype=F64)
    y = op.A(x).float()
    got = op.pseudo_inverse(y)
    assert got.dtype == torch.float32
    wide = op.pseudo_inverse(y.double())
    torch.testing.assert_close(got, wide.float(), rtol=0, atol=0)
    torch.testing.assert_close(op.A(wide), y.double(), rtol=0, atol=1e-6)  # a least-squares solution: A A⁺ y = y
    with pytest.warns(SolveNotConvergedWarning, match=r"pseudo_inverse: CG on AᵀA stopped .* after 3 iterations"):
        op.pseudo_inverse(y, max_iters=3)


@pytest.mark.parametrize("name", ["inpaint_box", "sr_bicubic_2", "motion_reflect", "dense_zero"])
def test_tikhonov_matches_dense_regularized_least_squares(name, dense):
    op, m = CASES[name], dense[name]
    y = torch.randn(op.A(torch.zeros(SHAPE, dtype=F64)).shape, generator=torch.Generator().manual_seed(5), dtype=F64)
    lam = 0.05
    ref = torch.linalg.solve(m.T @ m + lam * torch.eye(m.shape[1], dtype=F64), m.T @ y.flatten()).reshape(SHAPE)
    got = op.tikhonov(y, lam, max_iters=600, tol=1e-12, check_every=20)
    torch.testing.assert_close(got, ref, rtol=1e-7, atol=1e-7 * ref.abs().max().item())


def test_singular_gram_refuses_zero_shift_and_unknown_methods():
    rhs = torch.randn(SHAPE, dtype=F64)
    with pytest.raises(ValueError, match="shift must be > 0 .*pseudo_inverse"):
        SuperResolution(2, "average").solve(rhs, 0.0, 1.0)
    with pytest.raises(ValueError, match="shift must be > 0"):
        Inpainting.box((12, 10), box=4, margin=1).solve(rhs, 0, 1.0)
    with pytest.raises(ValueError, match="no exact solve"):
        MotionBlur(7, 0.5).solve(rhs, 1.0, 1.0, method="exact")
    with pytest.raises(ValueError, match="method must be"):
        GaussianBlur(9, 1.2).solve(rhs, 1.0, 1.0, method="lu")
    with pytest.raises(ValueError, match="lam must be finite and > 0"):
        GaussianBlur(9, 1.2).tikhonov(rhs, 0.0)


def test_cg_solve_reports_unconverged_samples_honestly():
    op = MotionBlur(7, 0.8, seed=5)
    rhs = torch.randn(2, 2, 12, 10, generator=torch.Generator().manual_seed(6), dtype=F64)
    _, info = op.solve(rhs, 1e-4, 1.0, max_iters=3, return_info=True)
    assert info.method == "cg" and info.iterations.tolist() == [3, 3]
    assert not info.converged.any() and bool((info.residual > 1e-10).all())
