"""CG budgets sized from κ: the Chebyshev iteration bound, operators' bounds on ‖AᵀA‖, and C-DPS with a
reflect motion blur, whose last step of a short schedule is ill-conditioned (κ ≈ 1 + w‖AᵀA‖/c in the
thousands; see benchmarks/results/cg-motion.md)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from diffsolve.kernels import batched_cg
from diffsolve.kernels.cg import cg_iteration_bound
from diffsolve.models import GaussianPrior, operator_matrix
from diffsolve.operators import CallableOperator, GaussianBlur, LinearOperator, MotionBlur
from diffsolve.solvers import CG, CGNotConvergedWarning, cdps
from diffsolve.solvers._loop import select_schedule
from diffsolve.solvers.cdps import CG_DEFAULT_ITERS, cdps_step, cg_budget, precisions, transition

D = torch.float64
SIZE = (12, 12)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def dense_gram(op: LinearOperator, size=SIZE) -> torch.Tensor:
    m = operator_matrix(op, (1, *size))
    return m.T @ m


def test_iteration_bound_values_and_errors():
    assert cg_iteration_bound(1.0, 1e-5) == 1
    ks = [cg_iteration_bound(k, 1e-5) for k in (2.0, 10.0, 100.0, 1e4)]
    assert ks == sorted(ks) and ks[-1] > 10 * ks[0]
    assert cg_iteration_bound(100.0, 1e-10) > cg_iteration_bound(100.0, 1e-5)
    # ½√κ·ln(2√κ/tol) for large κ
    assert abs(cg_iteration_bound(1e4, 1e-5) - 0.5 * 100 * math.log(2e7)) <= 2
    for bad in (0.5, float("inf"), True, "3"):
        with pytest.raises(ValueError, match="kappa"):
            cg_iteration_bound(bad, 1e-5)
    with pytest.raises(ValueError, match="tol"):
        cg_iteration_bound(10.0, 0.0)


@pytest.mark.parametrize("op", [MotionBlur(7, 0.8, seed=5), MotionBlur(7, 0.8, seed=5, boundary="zero"),
                                MotionBlur(7, 0.8, seed=5, boundary="circular"), GaussianBlur(5, 1.0)],
                         ids=["motion-reflect", "motion-zero", "motion-circular", "gaussian-reflect"])
def test_gram_norm_bound_is_an_upper_bound_within_2x(op):
    lam_max = float(torch.linalg.eigvalsh(dense_gram(op))[-1])
    bound = op.gram_norm_bound(SIZE)
    assert lam_max <= bound * (1 + 1e-12) and bound <= 2 * lam_max


def test_gram_norm_bound_default_and_errors():
    op = CallableOperator(lambda v: 2 * v, input_shape=(1, *SIZE))
    assert op.gram_norm_bound(SIZE) is None
    assert cg_budget(op, SIZE, 1.0, 400.0, 1e-5) == CG_DEFAULT_ITERS
    with pytest.raises(ValueError, match="size"):
        MotionBlur(7, 0.5).gram_norm_bound((12, 0))
    with pytest.raises(ValueError, match="size"):
        MotionBlur(7, 0.5).gram_norm_bound(12)


def test_budget_solves_an_ill_conditioned_step_like_dense_float64():
    """c, w of the last step of a 2-step schedule (σ = 0.05): κ in the thousands."""
    op = MotionBlur(7, 0.8, seed=5)
    gram = dense_gram(op)
    c, w = 0.0853, 400.0
    k = c * torch.eye(gram.shape[0], dtype=D) + w * gram
    eig = torch.linalg.eigvalsh(k)
    assert float(eig[-1] / eig[0]) > 1000
    rhs = torch.randn(3, 1, *SIZE, generator=gen(1), dtype=D)
    tol = 1e-9
    budget = cg_budget(op, SIZE, c, w, tol)
    out = batched_cg(op.gram, rhs, c, w, max_iters=budget, tol=tol, backend="torch")
    exact = torch.linalg.solve(k, rhs.reshape(3, -1).T).T.reshape(rhs.shape)
    assert bool(out.converged.all()) and int(out.iterations.max()) > CG_DEFAULT_ITERS
    torch.testing.assert_close(out.x, exact, rtol=0, atol=1e-6 * float(exact.abs().max()))
    short = batched_cg(op.gram, rhs, c, w, max_iters=CG_DEFAULT_ITERS, tol=tol, backend="torch")
    assert not bool(short.converged.any())


def test_cdps_step_default_budget_matches_dense_posterior_mean():
    op = MotionBlur(7, 0.8, seed=5)
    a_t, a_s, sigma = 0.25, 1.0, 0.05  # last step: c = ᾱ_t/(1 − ᾱ_t) = 1/3, w = 400
    x_t, eps = (torch.randn(2, 1, *SIZE, generator=gen(s), dtype=D) for s in (2, 3))
    y_s = op.A(torch.randn(2, 1, *SIZE, generator=gen(4), dtype=D))
    x, info = cdps_step(op, x_t, eps, y_s, a_t, a_s, sigma=sigma, e1=None, e2=None, method="cg", want_info=True)
    k_x, k_e, _ = transition("reverse", 1.0, a_t, a_s)
    c, w = precisions("reverse", 1.0, a_t, a_s, sigma)
    mat = operator_matrix(op, (1, *SIZE))
    target = y_s + (1 - a_s) / math.sqrt(1 - a_t) * op.A(eps)
    rhs = c * (k_x * x_t + k_e * eps).reshape(2, -1) + w * target.reshape(2, -1) @ mat
    exact = torch.linalg.solve(c * torch.eye(mat.shape[1], dtype=D) + w * mat.T @ mat, rhs.T).T
    assert bool(info.converged.all()) and int(info.iterations.max()) > CG_DEFAULT_ITERS
    torch.testing.assert_close(x.reshape(2, -1), exact, rtol=0, atol=1e-7 * float(exact.abs().max()))


def smooth_prior(h: int, w: int) -> GaussianPrior:
    idx = torch.arange(h * w)
    d2 = ((idx // w)[:, None] - (idx // w)[None]) ** 2 + ((idx % w)[:, None] - (idx % w)[None]) ** 2
    cov = 0.25 * torch.exp(-d2.double() / 4.0) + 1e-2 * torch.eye(h * w, dtype=D)
    return GaussianPrior(0.1 * torch.randn(1, h, w, generator=gen(3), dtype=D), cov)


def test_budgets_of_a_30_step_schedule_are_small():
    """The fixed budget ran 100 iterations at every step; κ-sized budgets need ≤ 40 at 30 steps."""
    op, prior = MotionBlur(9, 0.5, seed=0), smooth_prior(16, 16)
    sch = select_schedule(prior, 30)
    budgets = [cg_budget(op, (16, 16), *precisions("reverse", 1.0, float(a), float(b), 0.05), 1e-5)
               for a, b in zip(sch.alpha_t, sch.alpha_s)]
    assert max(budgets) <= 40 and sum(budgets) < 30 * CG_DEFAULT_ITERS / 4


def test_cdps_motion_blur_short_schedule_converges_float32():
    """The demo's digit motion blur (9×9 kernel, reflect, 16×16, float32, σ = 0.05) with 2 steps:
    the last step needs ~200 iterations. The old fixed budget of 100 warns; the κ budget does not."""
    op, prior = MotionBlur(9, 0.5, seed=0), smooth_prior(16, 16)
    x = prior.mean.expand(2, 1, 16, 16) + 0.3 * torch.randn(2, 1, 16, 16, generator=gen(5), dtype=D)
    y = (op.A(x) + 0.05 * torch.randn(2, 1, 16, 16, generator=gen(6), dtype=D)).float()
    with pytest.warns(CGNotConvergedWarning, match="iters=100"):
        cdps(prior, op, y, steps=2, sigma=0.05, solver=CG(iters=100), generator=gen(0), last_step="mean")
    with warnings.catch_warnings():
        warnings.simplefilter("error", CGNotConvergedWarning)
        out, info = cdps(prior, op, y, steps=2, sigma=0.05, generator=gen(0), last_step="mean", return_info=True)
    assert out.dtype == torch.float32 and bool(torch.isfinite(out).all())
    assert bool(info["cg_converged"][-1].all()) and bool((info["cg_residual"][-1] <= 1e-5).all())
    assert int(info["cg_iterations"][-1].max()) > 100
