"""DPS: the step against dense algebra on a Gaussian prior, per-sample norms, diagnostics, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from _tiny_models import SCHEDULER, tiny_unet

from diffsolve.models import DiffusersDenoiser, GaussianPrior, operator_matrix
from diffsolve.operators import GaussianBlur, Inpainting, SuperResolution
from diffsolve.solvers import dps

D = torch.float64


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


@pytest.mark.parametrize("make_op", [lambda: GaussianBlur(3, 0.8), lambda: SuperResolution(2, input_size=(5, 6))])
def test_single_step_matches_dense_jacobian(make_op):
    """steps=1 to ᾱ_s = 1: x_0 = x̂0 − ζ Jᵀ Aᵀ(A x̂0 − y)/‖A x̂0 − y‖, with J = ∂x̂0/∂x_t in closed form
    for a Gaussian prior: x̂0 = (x_t − (1−ᾱ) C⁻¹(x_t − √ᾱ μ))/√ᾱ, C = ᾱ Σ + (1−ᾱ) I."""
    prior = smooth_prior(5, 6)
    op = make_op()
    y = measure(op, (2, 1, 5, 6))
    x_T = torch.randn(2, 1, 5, 6, generator=gen(2), dtype=D)
    t, zeta = 400, 0.8
    out = dps(prior, op, y, steps=1, timesteps=[t], x_T=x_T, zeta=zeta)
    a = float(prior.alphas_cumprod[t])
    n = 30
    cinv = torch.linalg.inv(a * prior.cov + (1 - a) * torch.eye(n, dtype=D))
    jac = (torch.eye(n, dtype=D) - (1 - a) * cinv) / math.sqrt(a)
    mu = prior.mean.reshape(-1)
    mat = operator_matrix(op, (1, 5, 6))
    xt = x_T.reshape(2, -1)
    x0 = (xt - (1 - a) * (xt - math.sqrt(a) * mu) @ cinv.T) / math.sqrt(a)
    r = x0 @ mat.T - y.reshape(2, -1)
    grad = (r @ mat @ jac) / r.norm(dim=1, keepdim=True)
    torch.testing.assert_close(out.reshape(2, -1), x0 - zeta * grad, rtol=1e-9, atol=1e-11)


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
