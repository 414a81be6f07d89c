"""DDNM / DDNM+: range-null-space step against dense linear algebra on an exact Gaussian prior, A x = y exactly
without noise, the DDNM+ noise budget, time-travel, bad inputs (every backend and batch independence: tests/test_methods_contract.py)."""

from __future__ import annotations

import math

import pytest
import torch
from _small_problem import D, OPS, SHAPE, dense_discrepancy_pull, dense_pinv, dense_svd, gen, negligible, prior

from diffsolve.models.priors import operator_matrix
from diffsolve.solvers._inverse import measured_entries
from diffsolve.solvers._loop import select_schedule
from diffsolve.solvers.ddnm import ddnm, ddnm_coefficients, ddnm_plus_lambdas, travel_plan
from diffsolve.solvers.ddrm import SINGULAR_CUTOFF


def clean(op, batch=2, seed=5):
    return op.A(torch.randn(batch, *SHAPE, generator=gen(seed), dtype=D))


@pytest.mark.parametrize("name", sorted(OPS))
def test_noiseless_loop_matches_dense(name):
    """σ = 0, η = 0: x̂0' = x̂0 − A⁺(A x̂0 − y) (dense pinv), x_s = √ᾱ_s x̂0' + √(1−ᾱ_s) ε̂ (the model's ε̂, as
    DDNM's code); A x = y at the end."""
    pr, op = prior(), OPS[name]()
    y = clean(op)
    x_T = torch.randn(2, *SHAPE, generator=gen(7), dtype=D)
    out = ddnm(pr, op, y, steps=4, x_T=x_T, eta=0.0)
    a = operator_matrix(op, SHAPE)
    pinv = dense_pinv(op, SINGULAR_CUTOFF)  # the blur's per-axis values below 3e-2 of the largest count as zero
    sched = select_schedule(pr, 4, "trailing")
    x = x_T.clone()
    for i, (a_t, a_s) in enumerate(zip(sched.alpha_t.tolist(), sched.alpha_s.tolist())):
        eps = pr(x, sched.timesteps[i].expand(2))
        x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
        x0p = x0 - ((x0.flatten(1) @ a.T - y.flatten(1)) @ pinv.T).view_as(x)
        x = math.sqrt(a_s) * x0p + math.sqrt(1 - a_s) * eps
    assert torch.allclose(out, x, atol=1e-8)
    kept = a @ pinv  # the projector onto the range A⁺ keeps: there A x = y
    assert torch.allclose((op.A(out) - y).flatten(1) @ kept.T, torch.zeros_like(y.flatten(1)), atol=1e-8)
    exact = ddnm(pr, op, y, steps=4, x_T=x_T, eta=0.0, singular_cutoff=0.0)  # A's exact A⁺: A x = y everywhere
    assert torch.allclose(op.A(exact), y, atol=1e-8)


@pytest.mark.parametrize("name", sorted(OPS))
def test_noiseless_consistency_stochastic(name):
    op = OPS[name]()
    y = clean(op)
    out = ddnm(prior(), op, y, steps=5, generator=gen(1), sigma=None, singular_cutoff=0.0)
    assert torch.allclose(op.A(out), y, atol=1e-8)
    out0 = ddnm(prior(), op, y, steps=5, generator=gen(1), sigma=0.0, singular_cutoff=0.0)
    assert torch.equal(out, out0)


@pytest.mark.parametrize("eta", [0.85, 0.5, 1.0])
def test_noise_budget(eta):
    """DDNM: k_ε² + k_z² = 1 − ᾱ_s. DDNM+: λ ∈ [0, 1]; where λ < 1 the noise a λ σ/s that ȳ carries is
    σ_t √(1−η²), ε̂'s share (x_s stays at the step's noise level), and λ = 1 exactly where a σ/s ≤ σ_t."""
    s = torch.tensor([0.0, 1e-3, 0.05, 0.2, 0.5, 1.0], dtype=D)
    for a_s in (0.01, 0.3, 0.9, 0.999, 1.0):
        k_eps, k_z = ddnm_coefficients(a_s, eta)
        assert k_eps**2 + k_z**2 == pytest.approx(1 - a_s) and k_z == pytest.approx(eta * math.sqrt(1 - a_s))
        for sigma in (0.01, 0.3):
            lam = ddnm_plus_lambdas(a_s, eta, sigma, s)
            sigma_t, a = math.sqrt(1 - a_s), math.sqrt(a_s)
            assert lam[0] == 0 and ((lam >= 0) & (lam <= 1)).all()
            full = s * sigma_t >= a * sigma
            assert (lam[1:][full[1:]] == 1).all()
            part = ~full & (s > 0)
            torch.testing.assert_close(a * lam[part] * sigma / s[part],
                                       torch.full_like(s[part], sigma_t * math.sqrt(1 - eta**2)))


@pytest.mark.parametrize("eta", [0.85, 0.4])
@pytest.mark.parametrize("name", ["sr", "blur", "inpaint", "denoise", "cs"])
def test_ddnm_plus_matches_dense(name, eta):
    """DDNM+ as the authors' code (``Lambda`` / ``Lambda_noise``) against the dense SVD A = U S Vᵀ, per coefficient
    with σ_t = √(1−ᾱ_s), a = √ᾱ_s: λ = 1 where s σ_t ≥ aσ else s σ_t √(1−η²)/(aσ), x̄0' = x̄0 + λ(ȳ − x̄0),
    x̄_s = a x̄0' + c ê + d z̄ with (c, d) = (σ_t√(1−η²), σ_t η) on s = 0, (0, σ_t η) where λ < 1 and
    (0, √(σ_t² − a²σ²/s²)) where λ = 1; from x_T itself. Where the basis is complete (the blur) the draw z is read
    as the coefficients z̄, in the solver's basis; elsewhere z̄ = Vᵀz."""
    pr, op, sigma = prior(), OPS[name](), 0.2
    y0 = clean(op)
    y = y0 + sigma * torch.randn(y0.shape, generator=gen(9), dtype=D)
    x_T = torch.randn(2, *SHAPE, generator=gen(7), dtype=D)
    out, info = ddnm(pr, op, y, steps=3, x_T=x_T, sigma=sigma, eta=eta, generator=gen(4), return_info=True,
                     discrepancy=False)
    g = gen(4)
    a_mat, u, s_m, v, complete = dense_svd(op)
    k = s_m.numel()
    s = torch.zeros(a_mat.shape[1], dtype=D)
    s[:k] = s_m
    s = torch.where(negligible(s, complete, SINGULAR_CUTOFF), 0.0, s)  # the reference code's ZERO (DDRM's)
    pos = s > 1e-12
    inv = torch.where(pos, 1 / torch.where(pos, s, 1.0), 0.0)
    y_bar = torch.zeros(2, a_mat.shape[1], dtype=D)
    y_bar[:, :k] = (y.flatten(1) @ u[:, :k]) * inv[:k]  # ȳ = S⁺Uᵀy
    sched = select_schedule(pr, 3, "trailing")
    x = x_T.clone()
    for i, (a_t, a_s) in enumerate(zip(sched.alpha_t.tolist(), sched.alpha_s.tolist())):
        sigma_t, a = math.sqrt(1 - a_s), math.sqrt(a_s)
        full = pos & (s * sigma_t >= a * sigma)
        lam = torch.where(full, 1.0, torch.where(pos, s * sigma_t * math.sqrt(1 - eta**2) / (a * sigma), 0.0))
        c = torch.where(pos, 0.0, sigma_t * math.sqrt(1 - eta**2))
        d = torch.where(full, (sigma_t**2 - (a * sigma * inv) ** 2).clamp_min(0).sqrt(), sigma_t * eta)
        assert info["lambda"][i] == pytest.approx(float(lam[pos].mean()))
        eps = pr(x, sched.timesteps[i].expand(2))
        x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
        x0_bar = x0.flatten(1) @ v
        x_bar = a * (x0_bar + lam * (y_bar - x0_bar)) + c * (eps.flatten(1) @ v)
        if sigma_t > 0:
            z = torch.randn(2, *SHAPE, generator=g, dtype=D).flatten(1)
            x_bar = x_bar + d * (z if complete else z @ v)
        x = (x_bar @ v.T).view_as(x)
    torch.testing.assert_close(out, x, rtol=0, atol=1e-7)  # x̂0 at ᾱ_T = 4e-5 scales rounding by 1/√ᾱ_T
    # a callback sees every step and leaves x unchanged
    seen = []
    out_cb = ddnm(pr, op, y, steps=3, x_T=x_T, sigma=sigma, eta=eta, generator=gen(4),
                  callback=lambda *args: seen.append(args), discrepancy=False)
    assert len(seen) == 3 and torch.allclose(out_cb, out, atol=1e-12)
    # the default: that run held to the discrepancy principle (dense bisection)
    held = ddnm(pr, op, y, steps=3, x_T=x_T, sigma=sigma, eta=eta, generator=gen(4))
    pulled = dense_discrepancy_pull(a_mat, x, y, sigma, 1 - sched.alpha_t[-1].item(), measured_entries(op, y))
    torch.testing.assert_close(held, pulled, rtol=0, atol=1e-7)


def test_ddnm_plus_refuses_kernel_noise():
    """DDNM+ maps image-space draws to A's spectral space (as DDRM): noise_source="kernel" is named and refused
    before the loop; plain DDNM takes it."""
    pr, op = prior(), OPS["blur"]()
    y = clean(op) + 0.05 * torch.randn(2, *SHAPE, generator=gen(9), dtype=D)
    with pytest.raises(ValueError, match="noise_source='kernel' is not supported"):
        ddnm(pr, op, y, steps=4, sigma=0.05, noise_source="kernel", generator=gen(1))
    k1 = ddnm(pr, op, clean(op), steps=4, noise_source="kernel", generator=gen(1))
    assert torch.isfinite(k1).all()


def test_ddnm_plus_needs_an_svd():
    """σ > 0 without an SVD: a ValueError naming the supported operators (σ = 0 still runs)."""
    op = OPS["sr"]()
    y = clean(op)

    class NoSVD:  # A, Aᵀ and a pseudo-inverse, but no spectrum
        A, A_adjoint, pseudo_inverse, solve = op.A, op.A_adjoint, op.pseudo_inverse, op.solve

    with pytest.raises(ValueError, match="Inpainting"):
        ddnm(prior(), NoSVD(), y, steps=3, sigma=0.05)
    assert torch.allclose(op.A(ddnm(prior(), NoSVD(), y, steps=3, generator=gen(1))), y, atol=1e-8)


def test_travel_plan_and_run():
    assert travel_plan(4, 0, 3) == [("step", i) for i in range(4)]
    assert travel_plan(4, 2, 1) == [("step", i) for i in range(4)]
    assert travel_plan(4, 2, 2) == [("step", 0), ("step", 1), ("back", 1), ("step", 0), ("step", 1),
                                    ("step", 2), ("step", 3)]
    op = OPS["inpaint"]()
    y = clean(op)
    for source in ("generator", "kernel"):
        out, info = ddnm(prior(), op, y, steps=4, generator=gen(2), travel_length=2, travel_repeat=2,
                         noise_source=source, return_info=True)
        assert info["residual"].shape == (6, 2) and info["timesteps"].shape == (6,)
        assert "data_consistency" not in info and torch.allclose(info["final_residual"], torch.zeros(2, dtype=D),
                                                                 atol=1e-8)
        assert torch.allclose(op.A(out), y, atol=1e-8)
    noisy = y + 0.05 * torch.randn(y.shape, generator=gen(3), dtype=D)  # DDNM+ travels in DDRM's spectral loop
    out, info = ddnm(prior(), op, noisy, steps=4, sigma=0.05, generator=gen(2), travel_length=2, travel_repeat=2,
                     return_info=True)
    assert torch.isfinite(out).all() and info["residual"].shape == (6, 2) and info["lambda"].shape == (6,)
    plain = ddnm(prior(), op, noisy, steps=4, sigma=0.05, generator=gen(2))
    assert not torch.allclose(out, plain)


def test_bad_inputs():
    op, pr = OPS["sr"](), prior()
    y = clean(op)
    with pytest.raises(ValueError, match="sigma"):
        ddnm(pr, op, y, steps=3, sigma=-1.0)
    with pytest.raises(ValueError, match="eta"):
        ddnm(pr, op, y, steps=3, eta=-0.1)
    with pytest.raises(ValueError, match="travel_length"):
        ddnm(pr, op, y, steps=3, travel_length=-1)
    with pytest.raises(ValueError, match="travel_length"):
        ddnm(pr, op, y, steps=3, travel_length=4)
    with pytest.raises(TypeError, match="travel_repeat"):
        ddnm(pr, op, y, steps=3, travel_repeat=1.5)
    with pytest.raises(ValueError, match="travel_repeat"):
        ddnm(pr, op, y, steps=3, travel_repeat=0)
    for sigma in (None, 0.1):
        with pytest.raises(ValueError, match="singular_cutoff must be < 1"):
            ddnm(pr, op, y, steps=3, sigma=sigma, singular_cutoff=1.0)

    class Bare:  # A and Aᵀ only
        A, A_adjoint = op.A, op.A_adjoint

    with pytest.raises(TypeError, match="operator.pseudo_inverse"):
        ddnm(pr, Bare(), y, steps=3)
