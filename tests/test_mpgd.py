"""MPGD (none / AE / Z / LDM): analytic gradient, variant algebra, batch independence, tiny diffusers models."""

from __future__ import annotations

import importlib
import math

import pytest
import torch
from _small_problem import correlated_prior
from _tiny_models import SCHEDULER, tiny_kl, tiny_unet, tiny_unet_cond, tiny_vq

from diffsolve.models import Autoencoder, DiffusersDenoiser, GaussianPrior
from diffsolve.operators import (CallableOperator, GaussianBlur, Inpainting, LinearOperator, MotionBlur,
                                 SuperResolution)
from diffsolve.solvers import Projection, mpgd, mpgd_ldm
from diffsolve.solvers._inverse import DISCREPANCY_SHARE, measurement_grad

D = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def smooth_prior(c: int, h: int, w: int) -> GaussianPrior:
    n = c * h * w
    idx = torch.arange(h * w)
    d2 = ((idx // w)[:, None] - (idx // w)[None]) ** 2 + ((idx % w)[:, None] - (idx % w)[None]) ** 2
    k = 0.25 * torch.exp(-d2.double() / 4.0)
    cov = torch.kron(torch.eye(c, dtype=D), k) + 1e-2 * torch.eye(n, dtype=D)
    mean = 0.1 * torch.randn(c, h, w, generator=gen(3), dtype=D)
    return GaussianPrior(mean, cov)


def problem(op, shape, seed=1):
    x = torch.randn(shape, generator=gen(seed), dtype=D)
    y = op.A(x)
    return y + 0.05 * torch.randn(y.shape, generator=gen(seed + 1), dtype=D)


OPERATORS = {
    "inpaint": lambda: Inpainting.random((7, 9), 0.6, seed=2),
    "blur": lambda: GaussianBlur(5, 1.0),
    "sr": lambda: SuperResolution(2, input_size=(7, 9)),
    "callable": lambda: dense_operator(torch.randn(40, 2 * 7 * 9, generator=gen(9), dtype=D), (2, 7, 9)),
}


def dense_operator(mat: torch.Tensor, shape: tuple[int, int, int]) -> LinearOperator:
    """A user operator y = M vec(x), measurements (B, 1, 1, m); adjoint by autograd."""
    return CallableOperator(lambda v: (v.reshape(v.shape[0], -1) @ mat.T).view(v.shape[0], 1, 1, -1),
                                        input_shape=shape)


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_analytic_gradient_equals_autograd(name):
    op = OPERATORS[name]()
    x = torch.randn(3, 2, 7, 9, generator=gen(5), dtype=D)
    y = problem(op, (3, 2, 7, 9))
    g, norm = measurement_grad(op, x, y)
    xg = x.clone().requires_grad_(True)
    per_sample = op.data_part(y - op.A(xg)).flatten(1).norm(dim=1)  # measured entries (y has noise in holes)
    (ref,) = torch.autograd.grad(per_sample.sum(), xg)
    torch.testing.assert_close(norm, per_sample.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g, ref, rtol=1e-10, atol=1e-12)
    # per sample: sample 0's gradient ignores the others
    g0, _ = measurement_grad(op, x[:1], y[:1])
    torch.testing.assert_close(g0, g[:1], rtol=1e-12, atol=1e-14)


def test_zero_residual_gives_zero_gradient():
    op = Inpainting.random((5, 5), 0.5, seed=0)
    x = torch.randn(2, 1, 5, 5, generator=gen(0), dtype=D)
    g, norm = measurement_grad(op, x, op.A(x))
    assert torch.equal(norm, torch.zeros(2, dtype=D)) and torch.equal(g, torch.zeros_like(g))


@pytest.mark.parametrize("variant", ["none", "loss"])
def test_eta0_batch_of_four_equals_each_alone(variant):
    prior = smooth_prior(1, 5, 6)
    op = Inpainting.random((5, 6), 0.5, seed=1)
    y = problem(op, (4, 1, 5, 6))
    x_T = torch.randn(4, 1, 5, 6, generator=gen(7), dtype=D)
    kw = dict(steps=6, eta=0.0, rho=0.3)
    if variant == "loss":
        kw["loss"] = lambda x, yy=y: (yy - op.A(x)).flatten(1).norm(dim=1)
    batch = mpgd(prior, op, y, x_T=x_T, **kw)
    for b in range(4):
        if variant == "loss":
            kw["loss"] = lambda x, yy=y[b:b + 1]: (yy - op.A(x)).flatten(1).norm(dim=1)
        alone = mpgd(prior, op, y[b:b + 1], x_T=x_T[b:b + 1], **kw)
        torch.testing.assert_close(alone, batch[b:b + 1], rtol=1e-11, atol=1e-12)


def test_one_step_matches_dense_formula():
    """steps=1 to ᾱ_s = 1: x_0 = x̂0 − ρ Aᵀr/‖r‖ (DDIM with x̂0*, no noise at the last step)."""
    prior = smooth_prior(1, 4, 5)
    op = GaussianBlur(3, 0.8)
    y = problem(op, (2, 1, 4, 5))
    x_T = torch.randn(2, 1, 4, 5, generator=gen(2), dtype=D)
    t = 300
    out = mpgd(prior, op, y, steps=1, timesteps=[t], x_T=x_T, rho=0.7)
    a = float(prior.alphas_cumprod[t])
    eps = prior(x_T, torch.full((2,), t))
    x0 = (x_T - math.sqrt(1 - a) * eps) / math.sqrt(a)
    r = op.A(x0) - y
    expect = x0 - 0.7 * op.A_adjoint(r) / r.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    torch.testing.assert_close(out, expect, rtol=1e-10, atol=1e-12)


def test_black_box_loss_matches_measurement_path():
    prior = smooth_prior(1, 5, 6)
    op = SuperResolution(2, input_size=(5, 6))
    y = problem(op, (2, 1, 5, 6))
    a = mpgd(prior, op, y, steps=5, eta=0.5, rho=0.2, generator=gen(4))
    b = mpgd(prior, None, None, shape=(2, 1, 5, 6), dtype=D, steps=5, eta=0.5, rho=0.2, generator=gen(4),
             loss=lambda x: (y - op.A(x)).flatten(1).norm(dim=1))
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


class ScaledAE:
    """A linear, exactly invertible 'autoencoder' E(x) = 2x, D(z) = z/2 (+ counters)."""

    def __init__(self):
        self.encodes = self.decodes = 0

    def encode(self, x):
        self.encodes += 1
        return 2 * x

    def decode(self, z):
        self.decodes += 1
        return z / 2


@pytest.mark.parametrize("variant, factor", [("ae", 1.0), ("z", 0.25)])
def test_projected_variants_reduce_to_plain_steps_for_an_invertible_ae(variant, factor):
    """AE: ∇ L(D(E(x))) = ∇ L(x); Z: z* = z − s·∇_z L(z/2) = z − (s/2)∇L, x̂0* = x̂0 − (s/4)∇L."""
    prior = smooth_prior(1, 5, 6)
    op = Inpainting.random((5, 6), 0.5, seed=3)
    y = problem(op, (3, 1, 5, 6))
    ae = ScaledAE()
    got, info = mpgd(prior, op, y, steps=6, rho=0.4, projection=Projection(ae, variant, (0.0, 1.0), 0.5),
                     generator=gen(1), return_info=True)
    ref = mpgd(prior, op, y, steps=6, rho=0.4 * 0.5 * factor, generator=gen(1))
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
    assert bool(info["projected"].all()) and ae.decodes > 0 and info["residual"].shape == (6, 3)


def test_window_selects_projected_steps():
    prior = smooth_prior(1, 4, 4)
    op = Inpainting.random((4, 4), 0.5, seed=3)
    y = problem(op, (1, 1, 4, 4))
    _, info = mpgd(prior, op, y, steps=10, projection=Projection(ScaledAE()), return_info=True,
                   generator=gen(0))
    frac = info["timesteps"].double() / 1000
    assert torch.equal(info["projected"], (frac > 0.3) & (frac < 0.5)) and int(info["projected"].sum()) == 2


def _count_backward(module: torch.nn.Module) -> list[int]:
    calls = [0]

    def hook(*_):
        calls[0] += 1

    for m in module.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.register_full_backward_hook(hook)
    return calls


@pytest.mark.parametrize("variant, kind", [("ae", "kl"), ("z", "vq"), ("z", "kl")])
def test_ae_and_z_with_tiny_diffusers_models_never_backprop_the_unet(kind, variant):
    unet = tiny_unet(3)
    denoiser = DiffusersDenoiser(unet, SCHEDULER)
    vae = tiny_kl() if kind == "kl" else tiny_vq()
    ae = Autoencoder(vae)
    unet_calls, dec_calls = _count_backward(unet), _count_backward(vae.decoder)
    op = Inpainting.box(8, box=4, margin=1)
    y = op.A(torch.rand(2, 3, 8, 8, generator=gen(0)) * 2 - 1)
    x, info = mpgd(denoiser, op, y, steps=3, projection=Projection(ae, variant, (0.0, 1.0)),
                   generator=gen(1), return_info=True)
    assert x.shape == (2, 3, 8, 8) and bool(torch.isfinite(x).all())
    assert unet_calls[0] == 0 and all(p.grad is None for p in unet.parameters())
    assert dec_calls[0] > 0  # the measurement gradient went through the decoder
    assert all(p.grad is None for p in vae.parameters())  # ... without accumulating into its weights
    assert info["residual"].shape == (3, 2)


@pytest.mark.parametrize("model", ["cond", "plain"])
def test_ldm_with_tiny_diffusers_models(model):
    if model == "cond":
        unet = tiny_unet_cond(2, cross_dim=8)
        denoiser = DiffusersDenoiser(unet, SCHEDULER, encoder_hidden_states=torch.randn(1, 3, 8, generator=gen(5)))
    else:
        unet = tiny_unet(2)
        denoiser = DiffusersDenoiser(unet, SCHEDULER)
    vae = tiny_kl()
    ae = Autoencoder(vae)
    unet_calls, dec_calls, enc_calls = _count_backward(unet), _count_backward(vae.decoder), _count_backward(vae.encoder)
    op = SuperResolution(2, input_size=(8, 8))
    y = op.A(torch.rand(2, 3, 8, 8, generator=gen(0)) * 2 - 1)
    x, info = mpgd_ldm(denoiser, ae, op, y, steps=3, generator=gen(2), return_info=True)
    assert x.shape == (2, 3, 8, 8) and bool(torch.isfinite(x).all())
    assert unet_calls[0] == 0 and all(p.grad is None for p in unet.parameters())
    assert dec_calls[0] > 0 and enc_calls[0] == 0
    assert info["residual"].shape == (3, 2)
    again = mpgd_ldm(denoiser, ae, op, y, steps=3, generator=gen(2))
    torch.testing.assert_close(again, x)  # the generator is the only randomness


def test_bad_inputs():
    prior = smooth_prior(1, 4, 4)
    op = Inpainting.random((4, 4), 0.5, seed=0)
    y = problem(op, (1, 1, 4, 4))
    with pytest.raises(ValueError, match="space"):
        Projection(ScaledAE(), "latent")
    with pytest.raises(TypeError, match="projection"):
        mpgd(prior, op, y, steps=2, projection="z")
    with pytest.raises(TypeError, match="autoencoder"):
        Projection(object(), "ae")
    with pytest.raises(ValueError, match="scale"):
        Projection(ScaledAE(), "ae", scale=-1.0)
    with pytest.raises(ValueError, match="y of shape"):
        mpgd(prior, op, torch.zeros(1, 1, 5, 4, dtype=D), steps=2)
    with pytest.raises(ValueError, match="rho"):
        mpgd(prior, op, y, steps=2, rho=-1.0)
    with pytest.raises(ValueError, match="window"):
        Projection(ScaledAE(), window=(0.6, 0.2))
    with pytest.raises(ValueError, match="operator and y"):
        mpgd(prior, None, None, steps=2)
    with pytest.raises(ValueError, match=r"\(B,\)"):
        mpgd(prior, op, y, steps=2, loss=lambda x: x.sum())
    with pytest.raises(TypeError, match="y must be"):
        mpgd(prior, op, y.float().numpy(), steps=2)
    with pytest.raises(TypeError, match="autoencoder"):
        mpgd_ldm(prior, None, op, y, steps=2)


def test_capped_step_stops_at_the_noise_level():
    """κ = min(limit, κ_σ): the step never takes ‖A x̂0* − y‖ below σ√m, and never exceeds the limit."""
    from diffsolve.solvers.mpgd import capped_grad

    op = Inpainting.random((6, 7), 0.4, seed=1)
    x0 = torch.randn(3, 1, 6, 7, generator=gen(1), dtype=D)
    y = op.A(torch.randn(3, 1, 6, 7, generator=gen(2), dtype=D))
    m = op.measured_entries(y)
    floor = torch.tensor([0.5, 100.0, 0.01], dtype=D) * m.sqrt() / 10
    limit = torch.tensor([1e3, 1e3, 1e-3], dtype=D)
    step, norm = capped_grad(op, x0, y, limit, floor)
    after = (op.A(x0 - step) - y).flatten(1).norm(dim=1)
    torch.testing.assert_close(after[0], floor[0])  # stopped exactly at the noise level
    assert torch.equal(step[1], torch.zeros_like(step[1]))  # already below it: no step
    kappa = step[2].norm() / (op.A_adjoint(op.A(x0[2:]) - y[2:]).norm() / norm[2])
    torch.testing.assert_close(kappa, limit[2])  # the limit binds


def test_mpgd_with_sigma_fits_the_data_to_the_noise_level():
    prior = smooth_prior(1, 8, 8)
    op = Inpainting.random((8, 8), 0.5, seed=3)
    x_true = prior.sample(4, gen(4))
    y = op.A(x_true + 0.05 * torch.randn(x_true.shape, generator=gen(5), dtype=D))  # noise on observed pixels
    x, info = mpgd(prior, op, y, steps=30, sigma=0.05, generator=gen(0), return_info=True)
    # the cap keeps ‖r‖ ≥ σ√(κ m) for x̂0 (κ = DISCREPANCY_SHARE); the last DDIM step leaves x near it
    low = DISCREPANCY_SHARE**0.5 - 0.05
    assert bool((info["data_consistency"] > low).all()) and bool((info["data_consistency"] < 1.5).all())
    with pytest.raises(ValueError, match="sigma"):
        mpgd(prior, None, None, steps=2, sigma=0.05, loss=lambda v: v.flatten(1).sum(1), shape=(1, 1, 8, 8))


def test_default_eta_is_one_given_sigma_and_the_reference_half_without():
    """η = None: 1 with σ (the capped step, mpgd-eta.md), 0.5 without (the reference code's, with its ρ)."""
    prior = smooth_prior(1, 8, 8)
    op = Inpainting.random((8, 8), 0.5, seed=3)
    y = op.A(prior.sample(2, gen(4)))
    for sigma, eta in ((0.05, 1.0), (None, 0.5)):
        got = mpgd(prior, op, y, steps=4, sigma=sigma, generator=gen(0))
        assert torch.equal(got, mpgd(prior, op, y, steps=4, sigma=sigma, eta=eta, generator=gen(0)))
        assert not torch.equal(got, mpgd(prior, op, y, steps=4, sigma=sigma, eta=1.5 - eta, generator=gen(0)))


def test_a_smaller_noise_level_does_not_weaken_the_steps():
    """ρ ∝ σ alone made MPGD's steps vanish as σ → 0: at σ = 1e-3 its own steps (``discrepancy=False``) ended
    further from the exact posterior mean (a 16×16 Gaussian prior, random inpainting) than at σ = 1e-2, which was
    already further than at 0.05. With ρ's noise scale at least RHO_SIGMA_FLOOR of y's RMS, σ = 1e-3 ends as near
    as 1e-2 does."""
    n = 16
    pr = correlated_prior(n)
    op = Inpainting.random((n, n), 0.7, seed=0)
    x = pr.sample(4, generator=gen(1))

    def gap(sigma):
        y = op.A(x) + sigma * torch.randn(op.A(x).shape, generator=gen(2), dtype=D)
        mu = torch.stack([pr.posterior(op, y[i:i + 1], sigma=sigma).mean.reshape(1, n, n) for i in range(4)])
        with pytest.warns(Warning):  # the result does not fit y within σ = 1e-3 or 1e-2: it says so
            out = mpgd(pr, op, y, steps=30, sigma=sigma, discrepancy=False, generator=gen(3))
        return float(((out - mu).flatten(1).norm(dim=1) / (pr.mean - mu).flatten(1).norm(dim=1)).mean())

    tiny, small = gap(1e-3), gap(1e-2)
    assert tiny < 0.9 and tiny < 1.1 * small, (tiny, small)


def test_the_stability_cap_keeps_a_noisy_blur_near_the_posterior_mean(monkeypatch):
    """At σ comparable with the prior's scale the residual is mostly noise, and the line minimum of a blur
    overshoots its strong directions, amplifying y's noise into x̂0 at every step. Capped at ‖r‖/L where ‖r‖ ≤ σ√m,
    MPGD ends much nearer the exact posterior mean (16×16 Gaussian prior, 9-tap motion blur, σ = 0.5)."""
    mpgd_module = importlib.import_module("diffsolve.solvers.mpgd")
    n = 16
    pr = correlated_prior(n)
    op = MotionBlur(9, 0.5, seed=1)
    x = pr.sample(4, generator=gen(1))
    y = op.A(x) + 0.5 * torch.randn(op.A(x).shape, generator=gen(2), dtype=D)
    mu = torch.stack([pr.posterior(op, y[i:i + 1], sigma=0.5).mean.reshape(1, n, n) for i in range(4)])

    def gap():
        out = mpgd(pr, op, y, steps=30, sigma=0.5, generator=gen(3))
        return float(((out - mu).flatten(1).norm(dim=1) / (pr.mean - mu).flatten(1).norm(dim=1)).mean())

    capped = gap()
    monkeypatch.setattr(mpgd_module, "LANDWEBER_BELOW", 0.0)
    assert capped < 0.75 * gap() and capped < 0.5, capped


def test_a_per_sample_mask_keeps_each_sample_independent_of_its_batch():
    """A mask whose weights differ per sample (1 and 0.3): L, and with it ρ and the noise-level cap ‖r‖/L, is each
    sample's own, so sample 1 in the batch equals sample 1 alone (with one L for the batch they differed by 0.3)."""
    pr = correlated_prior(8)
    keep = (torch.rand(1, 1, 8, 8, generator=gen(4), dtype=D) > 0.4).to(D)
    weights = torch.cat([keep, 0.3 * keep])
    x = pr.sample(2, generator=gen(1))
    op = Inpainting(weights)
    y = op.A(x) + 0.3 * torch.randn(op.A(x).shape, generator=gen(2), dtype=D)
    both = mpgd(pr, op, y, steps=10, sigma=0.3, generator=[gen(5), gen(6)])
    alone = mpgd(pr, Inpainting(weights[1:]), y[1:], steps=10, sigma=0.3, generator=[gen(6)])
    torch.testing.assert_close(both[1:], alone, rtol=0, atol=1e-12)
