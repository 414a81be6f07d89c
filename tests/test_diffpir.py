"""DiffPIR: the proximal data step and the re-noising against dense linear algebra on an exact Gaussian prior,
the σ → 0 limit, bad inputs (every backend and batch independence: tests/test_methods_contract.py)."""

from __future__ import annotations

import math

import pytest
import torch
from _small_problem import D, OPS, SHAPE, gen, measure, prior

from diffsolve.models.priors import operator_matrix
from diffsolve.operators import GaussianBlur
from diffsolve.solvers._loop import select_schedule
from diffsolve.solvers.diffpir import DEFAULT_LAM, data_rho, diffpir, reproject_step

def dense_loop(pr, a, y, x_T, steps, sigma, lam, zeta_noise=None):
    """ζ = 0 (or ζ = 1 with the given per-step noise): Algorithm 1 with dense solves."""
    sched = select_schedule(pr, steps, "trailing")
    x = x_T.clone()
    for i, (a_t, a_s) in enumerate(zip(sched.alpha_t.tolist(), sched.alpha_s.tolist())):
        t = sched.timesteps[i].expand(x.shape[0])
        eps = pr(x, t)
        x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
        if sigma > 0:
            rho = lam * sigma**2 / ((1 - a_t) / a_t)
            k = rho * torch.eye(16, dtype=D) + a.T @ a
            x0p = torch.linalg.solve(k, (y.flatten(1) @ a + rho * x0.flatten(1)).T).T.view_as(x)
        else:
            pinv = torch.linalg.pinv(a)
            x0p = x0 - ((x0.flatten(1) @ a.T - y.flatten(1)) @ pinv.T).view_as(x)
        eps_p = (x - math.sqrt(a_t) * x0p) / math.sqrt(1 - a_t)
        x = math.sqrt(a_s) * x0p + (math.sqrt(1 - a_s) * eps_p if zeta_noise is None
                                    else math.sqrt(1 - a_s) * zeta_noise[i])
    return x


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("sigma", [0.05, 0.0])
def test_loop_matches_dense(name, sigma):
    pr, op = prior(), OPS[name]()
    y = measure(op) if sigma > 0 else op.A(torch.randn(2, *SHAPE, generator=gen(5), dtype=D))
    x_T = torch.randn(2, *SHAPE, generator=gen(7), dtype=D)
    out = diffpir(pr, op, y, steps=4, x_T=x_T, sigma=sigma, zeta=0.0)
    ref = dense_loop(pr, operator_matrix(op, SHAPE), y, x_T, 4, sigma, DEFAULT_LAM)
    assert torch.allclose(out, ref, atol=1e-8)
    if sigma == 0:  # the ρ → 0 limit ends on A x = y exactly (last step: x = x̂0')
        assert torch.allclose(op.A(out), y, atol=1e-8)


def test_zeta_one_is_fresh_noise():
    """ζ = 1: x_s = √ᾱ_s x̂0' + √(1−ᾱ_s) z with z the generator's draws after x_T."""
    pr, op = prior(), OPS["blur"]()
    y = measure(op)
    x_T = torch.randn(2, *SHAPE, generator=gen(7), dtype=D)
    g = gen(4)
    out = diffpir(pr, op, y, steps=3, x_T=x_T, sigma=0.05, lam=2.0, zeta=1.0, generator=g)
    g = gen(4)
    noise = [torch.randn(2, *SHAPE, generator=g, dtype=D) for _ in range(3)]
    ref = dense_loop(pr, operator_matrix(op, SHAPE), y, x_T, 3, 0.05, 2.0, zeta_noise=noise)
    assert torch.allclose(out, ref, atol=1e-8)


def test_reproject_step_algebra():
    x, eps, corr = (torch.randn(2, *SHAPE, generator=gen(s), dtype=D) for s in (1, 2, 3))
    z = torch.randn(2, *SHAPE, generator=gen(4), dtype=D)
    a_t, a_s, k_e, k_z = 0.3, 0.6, 0.4, 0.2
    out, x0p = reproject_step(x, eps, corr, a_t, a_s, k_e, k_z, noise=z, return_x0=True)
    ref_x0p = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t) - corr
    eps_p = (x - math.sqrt(a_t) * ref_x0p) / math.sqrt(1 - a_t)
    assert torch.allclose(x0p, ref_x0p, atol=1e-12)
    assert torch.allclose(out, math.sqrt(a_s) * ref_x0p + k_e * eps_p + k_z * z, atol=1e-12)


def test_rho_rule():
    assert data_rho(2.0, 0.1, 0.5) == pytest.approx(2.0 * 0.01 / 1.0)


def test_return_info_and_scale_free():
    pr, op = prior(), OPS["sr"]()
    y = measure(op)
    x, info = diffpir(pr, op, y, steps=3, sigma=0.05, generator=gen(0), return_info=True)
    assert set(info) == {"residual", "timesteps", "final_residual", "data_consistency"}
    assert info["residual"].shape == (3, 2)
    # A → kA, y → ky, σ → kσ: the same samples
    k = 3.0

    class Scaled:
        def __init__(self, base):
            self.base = base

        def A(self, v):
            return k * self.base.A(v)

        def A_adjoint(self, v):
            return k * self.base.A_adjoint(v)

        def solve(self, rhs, shift, scale):
            return self.base.solve(rhs, shift=shift, scale=scale * k * k)

    x2 = diffpir(pr, Scaled(op), k * y, steps=3, sigma=k * 0.05, generator=gen(0))
    assert torch.allclose(x, x2, atol=1e-10)


def test_bad_inputs():
    op, pr = OPS["sr"](), prior()
    y = measure(op)
    with pytest.raises(TypeError, match="sigma"):
        diffpir(pr, op, y, steps=3)
    with pytest.raises(ValueError, match="sigma"):
        diffpir(pr, op, y, steps=3, sigma=float("nan"))
    with pytest.raises(ValueError, match="lam"):
        diffpir(pr, op, y, steps=3, sigma=0.1, lam=0.0)
    with pytest.raises(ValueError, match="zeta"):
        diffpir(pr, op, y, steps=3, sigma=0.1, zeta=1.5)
    with pytest.raises(TypeError, match="zeta"):
        diffpir(pr, op, y, steps=3, sigma=0.1, zeta=True)

    class Bare:  # A and Aᵀ only
        A, A_adjoint = op.A, op.A_adjoint

    with pytest.raises(TypeError, match="operator.solve"):
        diffpir(pr, Bare(), y, steps=3, sigma=0.1)
    with pytest.raises(TypeError, match="operator.pseudo_inverse"):
        diffpir(pr, Bare(), y, steps=3, sigma=0.0)
