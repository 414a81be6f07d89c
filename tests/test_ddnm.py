"""DDNM / DDNM+: range-null-space step against dense linear algebra on an exact Gaussian prior, A x = y exactly
without noise, the DDNM+ noise budget, time-travel, bad inputs (every backend and batch independence: tests/test_methods_contract.py)."""

from __future__ import annotations

import math

import pytest
import torch
from _small_problem import D, OPS, SHAPE, dense_svd, gen, prior

from diffsolve.models.priors import operator_matrix
from diffsolve.solvers._loop import select_schedule
from diffsolve.solvers.ddnm import OBSERVED, ddnm, ddnm_coefficients, travel_plan


def clean(op, batch=2, seed=5):
    return op.A(torch.randn(batch, *SHAPE, generator=gen(seed), dtype=D))


@pytest.mark.parametrize("name", sorted(OPS))
def test_noiseless_loop_matches_dense(name):
    """σ = 0, η = 0: x̂0' = x̂0 − A⁺(A x̂0 − y) (dense pinv), x_s = √ᾱ_s x̂0' + √(1−ᾱ_s) ε̂'; A x = y at the end."""
    pr, op = prior(), OPS[name]()
    y = clean(op)
    x_T = torch.randn(2, *SHAPE, generator=gen(7), dtype=D)
    out = ddnm(pr, op, y, steps=4, x_T=x_T, eta=0.0)
    a = operator_matrix(op, SHAPE)
    pinv = torch.linalg.pinv(a)
    sched = select_schedule(pr, 4, "trailing")
    x = x_T.clone()
    for i, (a_t, a_s) in enumerate(zip(sched.alpha_t.tolist(), sched.alpha_s.tolist())):
        eps = pr(x, sched.timesteps[i].expand(2))
        x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
        x0p = x0 - ((x0.flatten(1) @ a.T - y.flatten(1)) @ pinv.T).view_as(x)
        eps_p = (x - math.sqrt(a_t) * x0p) / math.sqrt(1 - a_t)
        x = math.sqrt(a_s) * x0p + math.sqrt(1 - a_s) * eps_p
    assert torch.allclose(out, x, atol=1e-8)
    assert torch.allclose(op.A(out), y, atol=1e-8)


@pytest.mark.parametrize("name", sorted(OPS))
def test_noiseless_consistency_stochastic(name):
    op = OPS[name]()
    y = clean(op)
    out = ddnm(prior(), op, y, steps=5, generator=gen(1), sigma=None)
    assert torch.allclose(op.A(out), y, atol=1e-8)
    out0 = ddnm(prior(), op, y, steps=5, generator=gen(1), sigma=0.0)
    assert torch.equal(out, out0)


@pytest.mark.parametrize("eta", [1.0, 0.5])
@pytest.mark.parametrize("sigma", [0.01, 0.3])
def test_noise_budget(eta, sigma):
    """DDNM+: (a_t λ_t σ)² + γ_t = σ_t² when λ_t = 1 fits, else γ_t = 0 and a_t λ_t σ = σ_t; λ_t ∈ [0, 1]."""
    for a_t, a_s in [(0.1, 0.3), (0.5, 0.9), (0.9, 0.999)]:
        lam, k_eps, k_z = ddnm_coefficients(a_t, a_s, eta, sigma)
        var = eta**2 * (1 - a_s) / (1 - a_t) * (1 - a_t / a_s)
        weight = math.sqrt(a_s) - k_eps * math.sqrt(a_t / (1 - a_t))
        assert 0 <= lam <= 1 and k_eps == pytest.approx(math.sqrt(1 - a_s - var))
        assert (weight * lam * sigma) ** 2 + k_z**2 == pytest.approx(var)
        if eta == 1.0:  # DDPM posterior: a_t = √ᾱ_s β/(1−ᾱ_t)
            assert weight == pytest.approx(math.sqrt(a_s) * (1 - a_t / a_s) / (1 - a_t))
    assert ddnm_coefficients(0.5, 0.9, 1.0, 0.0)[0] == 1.0


@pytest.mark.parametrize("name", ["sr", "blur", "inpaint", "denoise"])
def test_ddnm_plus_step_matches_dense(name):
    """DDNM+ (eqs. 17-19 per singular value) with noise from the generator against the dense SVD A = U S Vᵀ:
    x̂0' = x̂0 − V diag(λ/s) Uᵀ(A x̂0 − y), x_s = √ᾱ_s x̂0' + k_ε ε̂' + V diag(√γ) Vᵀ z; where the basis is complete
    (the blur) the draw z is read as the coefficients, V diag(√γ) z, in the solver's basis."""
    pr, op, sigma = prior(), OPS[name](), 0.2
    y0 = clean(op)
    y = y0 + sigma * torch.randn(y0.shape, generator=gen(9), dtype=D)
    x_T = torch.randn(2, *SHAPE, generator=gen(7), dtype=D)
    out, info = ddnm(pr, op, y, steps=3, x_T=x_T, sigma=sigma, generator=gen(4), return_info=True)
    g = gen(4)
    a, u, s_m, v, complete = dense_svd(op)  # the solver's basis where it reads its noise as coefficients
    k = s_m.numel()
    s = torch.zeros(a.shape[1], dtype=D)
    s[:k] = s_m
    seen = s > OBSERVED * sigma  # the observed coefficients; the rest (the blur's small s_i) follow the prior
    if name == "blur":  # the 4×4 blur has s_i between σ and 2σ: treated as null, not pulled towards ȳ_i/s_i
        assert ((s > sigma) & ~seen).any()
    sched = select_schedule(pr, 3, "trailing")
    x = x_T.clone()
    assert 0 < int(seen.sum()) < 16 or name in ("inpaint", "denoise")
    for i, (a_t, a_s) in enumerate(zip(sched.alpha_t.tolist(), sched.alpha_s.tolist())):
        var = (1 - a_s) / (1 - a_t) * (1 - a_t / a_s)
        k_eps = math.sqrt(max(1 - a_s - var, 0.0))
        weight = math.sqrt(a_s) * (1 - a_t / a_s) / (1 - a_t)  # η = 1: the DDPM posterior's weight of x̂0
        carried = weight * sigma / torch.where(seen, s, 1.0)
        lam = torch.where(seen, torch.clamp(math.sqrt(var) / carried, max=1.0), 0.0)
        gamma = torch.where(seen, (var - (lam * carried) ** 2).clamp_min(0), var)
        assert (gamma[seen & (lam < 1)].abs() < 1e-12).all()
        assert info["lambda"][i] == pytest.approx(float(lam[seen].mean()))
        eps = pr(x, sched.timesteps[i].expand(2))
        x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
        filt = v[:, :k] @ torch.diag(torch.where(seen, lam / torch.where(seen, s, 1.0), 0.0)[:k]) @ u[:, :k].T
        x0p = x0 - ((x0.flatten(1) @ a.T - y.flatten(1)) @ filt.T).view_as(x)
        eps_p = (x - math.sqrt(a_t) * x0p) / math.sqrt(1 - a_t)
        if var > 0:
            z = torch.randn(2, *SHAPE, generator=g, dtype=D).flatten(1)
            noise = v @ torch.diag(gamma.sqrt()) @ (torch.eye(16, dtype=D) if complete else v.T)
            x = math.sqrt(a_s) * x0p + k_eps * eps_p + (z @ noise.T).view_as(x)
        else:
            x = math.sqrt(a_s) * x0p + k_eps * eps_p
    assert torch.allclose(out, x, atol=1e-8)
    # with a callback the fresh noise is not folded into the correction's transform (x̂0' is reported): same x
    seen_x0 = []
    out_cb = ddnm(pr, op, y, steps=3, x_T=x_T, sigma=sigma, generator=gen(4),
                  callback=lambda *args, **kw: seen_x0.append(args))
    assert len(seen_x0) == 3 and torch.allclose(out_cb, out, atol=1e-12)


def test_ddnm_plus_kernel_noise():
    """DDNM+ on a blur with noise_source="kernel": the kernel's z, shaped per coefficient, same seed same sample."""
    pr, op = prior(), OPS["blur"]()
    y = clean(op) + 0.05 * torch.randn(2, *SHAPE, generator=gen(9), dtype=D)
    k1 = ddnm(pr, op, y, steps=4, sigma=0.05, noise_source="kernel", generator=gen(1))
    k2 = ddnm(pr, op, y, steps=4, sigma=0.05, noise_source="kernel", generator=gen(1))
    assert torch.isfinite(k1).all() and torch.equal(k1, k2)


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

    class Bare:  # A and Aᵀ only
        A, A_adjoint = op.A, op.A_adjoint

    with pytest.raises(TypeError, match="operator.pseudo_inverse"):
        ddnm(pr, Bare(), y, steps=3)
