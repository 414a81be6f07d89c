"""DPS: the step against dense algebra on a Gaussian prior, per-sample norms, the step-size rule and
normalisation, the defaults on an exact prior from 10 to 1000 steps, diagnostics, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from _tiny_models import SCHEDULER, tiny_unet

from diffsolve.models import DiffusersDenoiser, GaussianPrior, operator_matrix
from diffsolve.operators import CallableOperator, GaussianBlur, Inpainting, SuperResolution
from diffsolve.solvers import dps
from diffsolve.solvers.dps import (DISCREPANCY_SHARE, MIN_STEPS, REFERENCE_NUMEL, REFERENCE_STEPS, STEP_POWER,
                                   DPSStepsWarning, step_size)

D = torch.float64
# few-step runs below test mechanics, not quality: the warning is checked where it is meant
pytestmark = pytest.mark.filterwarnings("ignore::diffsolve.solvers.dps.DPSStepsWarning")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def smooth_prior(h: int, w: int) -> GaussianPrior:
    idx = torch.arange(h * w)
    d2 = ((idx // w)[:, None] - (idx // w)[None]) ** 2 + ((idx % w)[:, None] - (idx % w)[None]) ** 2
    cov = 0.25 * torch.exp(-d2.double() / 4.0) + 1e-2 * torch.eye(h * w, dtype=D)
    return GaussianPrior(0.1 * torch.randn(1, h, w, generator=gen(3), dtype=D), cov)


def measure(op, shape, seed=1):
    y = op.A(torch.randn(shape, generator=gen(seed), dtype=D))
    return y + 0.05 * torch.randn(y.shape, generator=gen(seed + 1), dtype=D)


@pytest.mark.parametrize("normalize", ["residual", "adjoint", "gradient"])
@pytest.mark.parametrize("make_op", [lambda: GaussianBlur(3, 0.8), lambda: SuperResolution(2, input_size=(5, 6))])
def test_single_step_matches_dense_jacobian(make_op, normalize):
    """steps=1 to ᾱ_s = 1: x_0 = x̂0 − ζ_N Jᵀ Aᵀ(A x̂0 − y)/n, n = ‖A x̂0 − y‖ (residual), ‖Aᵀ(A x̂0 − y)‖
    (adjoint) or ‖Jᵀ Aᵀ(A x̂0 − y)‖ (gradient), ζ_N = ζ√(1000/1)·√(d/d_ref), with J = ∂x̂0/∂x_t in closed form for a Gaussian prior:
    x̂0 = (x_t − (1−ᾱ) C⁻¹(x_t − √ᾱ μ))/√ᾱ, C = ᾱ Σ + (1−ᾱ) I."""
    prior = smooth_prior(5, 6)
    op = make_op()
    y = measure(op, (2, 1, 5, 6))
    x_T = torch.randn(2, 1, 5, 6, generator=gen(2), dtype=D)
    t, zeta = 400, 0.8
    out = dps(prior, op, y, steps=1, timesteps=[t], x_T=x_T, zeta=zeta / math.sqrt(1000), normalize=normalize,
              step_rule="sqrt")
    a = float(prior.alphas_cumprod[t])
    n = 30
    cinv = torch.linalg.inv(a * prior.cov + (1 - a) * torch.eye(n, dtype=D))
    jac = (torch.eye(n, dtype=D) - (1 - a) * cinv) / math.sqrt(a)
    mu = prior.mean.reshape(-1)
    mat = operator_matrix(op, (1, 5, 6))
    xt = x_T.reshape(2, -1)
    x0 = (xt - (1 - a) * (xt - math.sqrt(a) * mu) @ cinv.T) / math.sqrt(a)
    r = x0 @ mat.T - y.reshape(2, -1)
    n = {"residual": r, "adjoint": r @ mat, "gradient": r @ mat @ jac}[normalize].norm(dim=1, keepdim=True)
    grad = (r @ mat @ jac) / n
    size = math.sqrt(30 / REFERENCE_NUMEL)  # the step per pixel is the same at every image size
    torch.testing.assert_close(out.reshape(2, -1), x0 - zeta * size * grad, rtol=1e-9, atol=1e-11)


def test_eta0_batch_of_four_equals_each_alone():
    prior = smooth_prior(5, 6)
    op = Inpainting.random((5, 6), 0.5, seed=1)
    y = measure(op, (4, 1, 5, 6))
    x_T = torch.randn(4, 1, 5, 6, generator=gen(7), dtype=D)
    batch = dps(prior, op, y, steps=6, eta=0.0, x_T=x_T)
    for b in range(4):
        alone = dps(prior, op, y[b:b + 1], steps=6, eta=0.0, x_T=x_T[b:b + 1])
        torch.testing.assert_close(alone, batch[b:b + 1], rtol=1e-11, atol=1e-12)


def test_info_and_reproducibility():
    prior = smooth_prior(4, 4)
    op = Inpainting.random((4, 4), 0.5, seed=2)
    y = measure(op, (3, 1, 4, 4))
    x, info = dps(prior, op, y, steps=5, generator=gen(5), return_info=True)
    assert info["residual"].shape == (5, 3) and info["timesteps"].shape == (5,)
    assert bool((info["residual"] > 0).all())
    again = dps(prior, op, y, steps=5, generator=gen(5))
    torch.testing.assert_close(again, x, rtol=0, atol=0)
    other = dps(prior, op, y, steps=5, generator=gen(6))
    assert not torch.allclose(other, x)


def test_dps_backpropagates_through_the_unet():
    """The contrast with MPGD: DPS's gradient goes through the UNet (its only cost driver)."""
    unet = tiny_unet(3)
    calls = [0]
    for m in unet.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_full_backward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    op = Inpainting.box(8, box=4, margin=1)
    y = op.A(torch.rand(2, 3, 8, 8, generator=gen(0)) * 2 - 1)
    x = dps(DiffusersDenoiser(unet, SCHEDULER), op, y, steps=2, generator=gen(1))
    assert x.shape == (2, 3, 8, 8) and calls[0] > 0
    assert all(p.grad is None for p in unet.parameters())  # gradients w.r.t. x only


def test_step_size_rules():
    assert step_size("sqrt", 0.5, 10, 1000) == pytest.approx(5.0)
    assert step_size("sqrt", 0.5, 1000, 1000) == 0.5 and step_size("constant", 0.5, 10, 1000) == 0.5
    # scale-free in the image size: the same step per pixel (x2 per side doubles the total step)
    assert step_size("sqrt", 0.5, 10, 1000, numel=4 * 3 * 64 * 64) == pytest.approx(10.0)
    assert step_size("constant", 0.5, 10, 1000, numel=3 * 32 * 32) == pytest.approx(0.25)
    # "power" (default): the sqrt rule's step at N₀ = REFERENCE_STEPS, ∝ N^(−3/4) elsewhere
    at_n0 = step_size("sqrt", 0.5, REFERENCE_STEPS, 1000)
    assert step_size("power", 0.5, REFERENCE_STEPS, 1000) == pytest.approx(at_n0)
    assert step_size("power", 0.5, 100, 1000) / step_size("power", 0.5, 1000, 1000) == pytest.approx(10**STEP_POWER)
    assert step_size("power", 1.0, 1000, 1000) == pytest.approx(math.sqrt(1000 / 30) * (30 / 1000) ** 0.75)
    assert step_size("power", 0.5, 10, 1000, numel=4 * 3 * 64 * 64) == pytest.approx(
        2 * step_size("power", 0.5, 10, 1000))


@pytest.mark.parametrize("normalize", ["adjoint", "gradient"])
def test_scale_free_normalisations_ignore_the_operator_scale(normalize):
    """A → kA, y → ky leaves ∇½‖r‖²/‖Aᵀr‖ and ∇½‖r‖²/‖∇½‖r‖²‖ unchanged: the same samples (the paper's
    ∇‖r‖ shrinks by k)."""
    prior = smooth_prior(4, 4)
    op = SuperResolution(2, input_size=(4, 4))
    k = 0.25
    scaled = CallableOperator(lambda v: k * op.A(v), adjoint=lambda u: k * op.A_adjoint(u),
                                          input_shape=(1, 4, 4))
    y = measure(op, (2, 1, 4, 4))
    a = dps(prior, op, y, steps=4, normalize=normalize, generator=gen(3))
    b = dps(prior, scaled, k * y, steps=4, normalize=normalize, generator=gen(3))
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    c = dps(prior, scaled, k * y, steps=4, normalize="residual", generator=gen(3))
    assert not torch.allclose(a, c, atol=1e-3)


@pytest.mark.parametrize("var", [1.0, 1e-3])
def test_gradient_normalisation_steps_a_fixed_length_whatever_the_jacobian(var):
    """``"gradient"``: the step in x_t is ζ_N long per sample, also where the denoiser's Jacobian
    (here a prior of small variance, which shrinks every direction) nearly cancels Aᵀr; ``"adjoint"``'s
    step shrinks with the Jacobian."""
    prior = GaussianPrior(torch.zeros(1, 4, 4, dtype=D), var * torch.eye(16, dtype=D))
    op = Inpainting.random((4, 4), 0.7, seed=1)
    y = measure(op, (2, 1, 4, 4))
    x_T = torch.randn(2, 1, 4, 4, generator=gen(2), dtype=D)
    kw = dict(steps=1, timesteps=[400], x_T=x_T, zeta=0.3 / math.sqrt(1000), step_rule="sqrt")
    x0 = dps(prior, op, y, **{**kw, "zeta": 0.0})
    zeta_n = 0.3 * math.sqrt(16 / REFERENCE_NUMEL)
    moved = (dps(prior, op, y, normalize="gradient", **kw) - x0).flatten(1).norm(dim=1)
    torch.testing.assert_close(moved, torch.full((2,), zeta_n, dtype=D), rtol=1e-9, atol=0)
    adjoint = (dps(prior, op, y, normalize="adjoint", **kw) - x0).flatten(1).norm(dim=1)
    assert bool((adjoint < (0.01 if var < 1 else 1.0) * zeta_n).all())


def test_defaults_never_diverge_from_10_to_1000_steps():
    """Exact 8×8 Gaussian prior, 16 draws: finite, bounded and near the posterior at the defaults
    (the 16×16 sweep over every task: benchmarks/results/posterior_dps_steps.md)."""
    prior = smooth_prior(8, 8)
    op = SuperResolution(2, input_size=(8, 8))
    x_true = prior.sample(1, gen(1))
    y1 = op.A(x_true) + 0.05 * torch.randn(1, 1, 4, 4, generator=gen(2), dtype=D)
    post = prior.posterior(op, y1, sigma=0.05)
    mu, shift = post.mean.reshape(-1), (prior.mean - post.mean).reshape(-1).norm()
    y = y1.expand(16, 1, 4, 4).contiguous()
    with pytest.warns(DPSStepsWarning, match=f"steps=10 < {MIN_STEPS}"):
        dps(prior, op, y, steps=10, generator=gen(4))
    for steps in (10, 100, 1000):
        x = dps(prior, op, y, steps=steps, generator=gen(steps)).reshape(16, -1)
        assert float(x.abs().max()) < 3, steps
        assert float((x.mean(0) - mu).norm() / shift) < 0.5, steps


def test_bad_inputs():
    prior = smooth_prior(4, 4)
    op = Inpainting.random((4, 4), 0.5, seed=0)
    y = measure(op, (1, 1, 4, 4))
    with pytest.raises(ValueError, match="y of shape"):
        dps(prior, op, torch.zeros(1, 1, 4, 5, dtype=D), steps=2)
    with pytest.raises(ValueError, match="zeta"):
        dps(prior, op, y, steps=2, zeta=-0.1)
    with pytest.raises(ValueError, match="eta"):
        dps(prior, op, y, steps=2, eta=1.5)
    with pytest.raises(TypeError, match="operator"):
        dps(prior, lambda v: v, y, steps=2)
    with pytest.raises(TypeError, match="float32 or float64"):
        dps(prior, op, y.half(), steps=2)
    with pytest.raises(ValueError, match="steps"):
        dps(prior, op, y, steps=0)
    with pytest.raises(ValueError, match="step_rule"):
        dps(prior, op, y, steps=2, step_rule="linear")
    with pytest.raises(ValueError, match="normalize"):
        dps(prior, op, y, steps=2, normalize="none")
    for bad in (0.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="sigma"):
            dps(prior, op, y, steps=2, sigma=bad)


@pytest.mark.filterwarnings("ignore:dps. steps=")
def test_discrepancy_factor():
    """σ given: each step is scaled by (1 − κmσ²/‖r‖²)₊ per sample, κ = DISCREPANCY_SHARE. A σ far above the
    residual switches the guidance off (the unguided sample), a negligible σ changes nothing, and in between one
    exact step (dense Jacobian of a Gaussian prior) is the unscaled step times that factor."""
    prior = smooth_prior(5, 6)
    op = Inpainting.random((5, 6), 0.5, seed=0)
    y = measure(op, (2, 1, 5, 6))
    x_T = torch.randn(2, 1, 5, 6, generator=gen(2), dtype=D)
    def run(**extra):  # a fresh generator per call: the same noise
        return dps(prior, op, y, steps=4, x_T=x_T, generator=gen(3), **extra)

    torch.testing.assert_close(run(sigma=50.0), run(zeta=0.0))
    torch.testing.assert_close(run(sigma=1e-12, discrepancy=False), run(), rtol=1e-12, atol=1e-12)
    one = dict(steps=1, timesteps=[400], x_T=x_T)
    base = dps(prior, op, y, zeta=0.0, **one)
    full = dps(prior, op, y, **one) - base
    a = float(prior.alphas_cumprod[400])
    x0 = (x_T - (1 - a) ** 0.5 * prior(x_T, torch.full((2,), 400))) / a**0.5
    r2 = op.data_part(y - op.A(x0)).flatten(1).pow(2).sum(1)  # the observed pixels (y has noise in the holes)
    sigma = 0.5 * float((r2 / op.measured_entries(y)).min().sqrt())  # ‖r‖ above σ√m for both samples
    factor = (1 - DISCREPANCY_SHARE * op.measured_entries(y) * sigma**2 / r2).view(2, 1, 1, 1)
    assert bool(((factor > 0) & (factor < 1)).all())
    torch.testing.assert_close(dps(prior, op, y, sigma=sigma, discrepancy=False, **one) - base, factor * full,
                               rtol=1e-10, atol=1e-12)
    _, info = run(sigma=0.05, return_info=True)
    torch.testing.assert_close(info["data_consistency"], info["final_residual"] / 0.05)
