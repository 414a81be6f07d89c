"""MMPS: the corrected x̂0 against the exact Gaussian posterior mean E[x0 | x_t, y] (dense algebra), the sample
mean against the exact posterior mean, bad input (every backend and batch independence: tests/test_methods_contract.py)."""

from __future__ import annotations

import pytest
import torch

from diffsolve.methods import METHODS
from diffsolve.models import GaussianPrior
from diffsolve.operators import CallableOperator, Inpainting, LinearOperator, SuperResolution
from diffsolve.solvers.mmps import measurement_cg, mmps, posterior_mean

D = torch.float64
SHAPE = (1, 3, 4)  # per-sample (C, H, W), n = 12
N = 12
M = 6


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def prior() -> GaussianPrior:
    g = gen(3)
    root = torch.randn(N, N, generator=g, dtype=D) / N**0.5
    cov = root @ root.T + 0.05 * torch.eye(N, dtype=D)
    return GaussianPrior(0.3 * torch.randn(*SHAPE, generator=g, dtype=D), cov)


def matrix() -> torch.Tensor:
    return torch.randn(M, N, generator=gen(4), dtype=D) / N**0.5


def dense_operator(mat: torch.Tensor) -> LinearOperator:
    return CallableOperator(lambda v: (v.reshape(v.shape[0], -1) @ mat.T).view(v.shape[0], 1, 1, -1),
                                        adjoint=lambda u: (u.reshape(u.shape[0], -1) @ mat).view(u.shape[0], *SHAPE),
                                        input_shape=SHAPE)


def exact_mean_given_xt(p: GaussianPrior, mat, x_t, y, a, sigma):
    """E[x0 | x_t, y] for x0 ~ N(μ, S), x_t = √a x0 + √(1−a) ε, y = A x0 + σ n (dense)."""
    s_inv = torch.linalg.inv(p.cov)
    prec = s_inv + a / (1 - a) * torch.eye(N, dtype=D) + mat.T @ mat / sigma**2
    rhs = (s_inv @ p.mean.reshape(-1))[None] + a**0.5 / (1 - a) * x_t.flatten(1) + y.flatten(1) @ mat / sigma**2
    return torch.linalg.solve(prec, rhs.T).T.reshape(x_t.shape)


@pytest.mark.parametrize("t", [100, 500, 900])
def test_corrected_mean_is_exact_gaussian_posterior_mean(t):
    p, mat, op, sigma = prior(), matrix(), None, 0.1
    op = dense_operator(mat)
    a = float(p.alphas_cumprod[t])
    x_t = torch.randn(2, *SHAPE, generator=gen(5), dtype=D)
    y = op.A(p.sample(2, generator=gen(6))) + sigma * torch.randn(2, 1, 1, M, generator=gen(7), dtype=D)
    xg = x_t.clone().requires_grad_(True)
    eps = p(xg, torch.full((2,), t))
    x0 = (xg - (1 - a) ** 0.5 * eps) / a**0.5
    x0y, r = posterior_mean(op, xg, x0, y, (1 - a) / a**0.5, sigma, cg_iters=M)
    ref = exact_mean_given_xt(p, mat, x_t, y, a, sigma)
    assert torch.allclose(x0y, ref, atol=1e-8, rtol=0), (x0y - ref).abs().max()
    assert torch.allclose(r, y - op.A(x0.detach()))


def test_measurement_cg_solves_spd_per_sample():
    g = gen(8)
    mats = [torch.randn(5, 5, generator=g, dtype=D) for _ in range(3)]
    spd = torch.stack([m @ m.T + torch.eye(5, dtype=D) for m in mats])
    rhs = torch.randn(3, 5, generator=g, dtype=D)
    u = measurement_cg(lambda v: torch.einsum("bij,bj->bi", spd, v), rhs, 5)
    assert torch.allclose(u, torch.linalg.solve(spd, rhs), atol=1e-10)
    # zero right-hand side: stays zero, no NaN
    assert torch.equal(measurement_cg(lambda v: 2 * v, torch.zeros(2, 4, dtype=D), 3), torch.zeros(2, 4, dtype=D))


def test_sample_mean_near_exact_posterior_mean():
    p, mat, sigma = prior(), matrix(), 0.1
    op = dense_operator(mat)
    x = p.sample(1, generator=gen(9))
    y1 = op.A(x) + sigma * torch.randn(1, 1, 1, M, generator=gen(10), dtype=D)
    b = 400
    out = mmps(p, op, y1.expand(b, 1, 1, M).contiguous(), steps=50, sigma=sigma, cg_iters=M, generator=gen(11))
    post = p.posterior(mat, y1.reshape(-1), sigma=sigma)
    std = post.cov.diagonal().sqrt().reshape(SHAPE)
    err = ((out.mean(0) - post.mean.reshape(SHAPE)) / std).abs().max()
    assert err < 4.5 / b**0.5, err  # z-score of the batch mean
    assert (out.var(0) / std**2).mean().sub(1).abs() < 0.25


def _image_problem():
    p = GaussianPrior(torch.zeros(3, 8, 8, dtype=D), 0.3)
    x = p.sample(2, generator=gen(12))
    return p, x


def test_return_info_and_registry():
    p, x = _image_problem()
    op = Inpainting.box(8, box=4, margin=2)
    out, info = mmps(p, op, op.A(x), steps=3, sigma=0.05, generator=gen(1), return_info=True)
    assert info["residual"].shape == (3, 2) and info["residual_posterior"].shape == (3, 2)
    assert info["timesteps"].shape == (3,)
    m_y = op.measured_entries(op.A(x))  # the observed pixels
    assert torch.allclose(info["final_residual"], (op.A(out) - op.A(x)).flatten(1).norm(dim=1) / m_y.sqrt())
    assert torch.allclose(info["data_consistency"], info["final_residual"] / 0.05)
    m = METHODS["mmps"]
    assert m.backward and m.required == ("sigma",) and m.kind == "inverse"


@pytest.mark.parametrize("options, error, words", [
    (dict(sigma=0.0), ValueError, "sigma"),
    (dict(sigma="a"), TypeError, "sigma"),
    (dict(sigma=0.1, cg_iters=0), ValueError, "cg_iters"),
    (dict(sigma=0.1, cg_iters=1.5), TypeError, "cg_iters"),
    (dict(sigma=0.1, eta=2.0), ValueError, "eta"),
])
def test_bad_input_rejected_before_the_loop(options, error, words):
    p, x = _image_problem()
    op = Inpainting.box(8, box=4, margin=2)
    calls = []

    def den(x_t, t):
        calls.append(1)
        return p(x_t, t)

    den.alphas_cumprod = p.alphas_cumprod
    with pytest.raises(error, match=words):
        mmps(den, op, op.A(x), steps=3, **options)
    assert not calls


def test_sigma_is_required():
    p, x = _image_problem()
    op = Inpainting.box(8, box=4, margin=2)
    with pytest.raises(TypeError, match="sigma"):
        mmps(p, op, op.A(x), steps=3)
