"""The fused-step and diagonal-posterior public functions (torch backend) against independent math."""

import pytest
import torch
from diffusers import DDIMScheduler

from diffsolve.kernels import ddim_step, diagonal_posterior_step, fused_step, ge_step, mpgd_step


def _scheduler(steps: int = 10) -> DDIMScheduler:
    sched = DDIMScheduler(num_train_timesteps=1000, clip_sample=False, set_alpha_to_one=False,
                          timestep_spacing="trailing")
    sched.set_timesteps(steps)
    return sched


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_step_equals_diffusers(eta):
    sched = _scheduler()
    g = torch.Generator().manual_seed(0)
    x, eps, z = (torch.randn(3, 2, 5, 7, generator=g, dtype=torch.float64) for _ in range(3))
    for t in sched.timesteps[:-1]:
        prev = int(t) - 100
        ref = sched.step(eps, t, x, eta=eta, variance_noise=z).prev_sample
        out = ddim_step(x, eps, sched.alphas_cumprod[t].item(), sched.alphas_cumprod[prev].item(),
                        eta=eta, noise=z, backend="torch")
        # diffusers keeps alphas_cumprod in float32: agreement to float32 rounding
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_per_sample_coefficients_match_separate_calls():
    g = torch.Generator().manual_seed(1)
    x, eps, z, grad = (torch.randn(3, 1, 4, 5, generator=g, dtype=torch.float64) for _ in range(4))
    a_t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    a_s = torch.tensor([0.3, 0.7, 0.95], dtype=torch.float64)
    lam = torch.tensor([0.0, 0.2, 1.5], dtype=torch.float64)
    batch, x0 = mpgd_step(x, eps, grad, a_t, a_s, step_size=lam, eta=0.5, noise=z, return_x0=True)
    for i in range(3):
        one, one_x0 = mpgd_step(x[i:i + 1], eps[i:i + 1], grad[i:i + 1], a_t[i].item(), a_s[i].item(),
                                step_size=lam[i].item(), eta=0.5, noise=z[i:i + 1], return_x0=True)
        torch.testing.assert_close(batch[i:i + 1], one, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(x0[i:i + 1], one_x0, rtol=1e-12, atol=1e-12)


def test_mpgd_step_is_ddim_from_moved_x0():
    g = torch.Generator().manual_seed(2)
    x, eps, grad = (torch.randn(2, 3, 6, 5, generator=g, dtype=torch.float64) for _ in range(3))
    a_t, a_s, lam = 0.2, 0.6, 0.7
    x0 = (x - (1 - a_t) ** 0.5 * eps) / a_t**0.5 - lam * grad
    expected = a_s**0.5 * x0 + (1 - a_s) ** 0.5 * eps
    out, out_x0 = mpgd_step(x, eps, grad, a_t, a_s, step_size=lam, eta=0.0, return_x0=True)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out_x0, x0, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mu", [0.0, 0.5])
def test_ge_step_matches_ve_update(mu):
    g = torch.Generator().manual_seed(3)
    x, eps, eps_prev, z = (torch.randn(2, 1, 3, 3, generator=g, dtype=torch.float64) for _ in range(4))
    a_t, a_s, gamma = 0.25, 0.64, 2.0
    s_t, s_s = (1 / a_t - 1) ** 0.5, (1 / a_s - 1) ** 0.5
    s_p = (s_s / s_t**mu) ** (1 / (1 - mu))
    e_bar = gamma * eps + (1 - gamma) * eps_prev
    x_ve = x / a_t**0.5 - (s_t - s_p) * e_bar + (s_s**2 - s_p**2) ** 0.5 * z
    out = ge_step(x, eps, eps_prev, a_t, a_s, gamma=gamma, mu=mu, noise=z)
    torch.testing.assert_close(out, a_s**0.5 * x_ve, rtol=1e-12, atol=1e-12)
    # gamma = 1 and the first step (no eps_prev) are DDIM(0)
    torch.testing.assert_close(ge_step(x, eps, eps_prev, a_t, a_s, gamma=1.0), ddim_step(x, eps, a_t, a_s))
    torch.testing.assert_close(ge_step(x, eps, None, a_t, a_s), ddim_step(x, eps, a_t, a_s))


def test_seeded_noise_is_reproducible_and_standard():
    x = torch.zeros(4, 3, 32, 32, dtype=torch.float64)
    coefs = torch.zeros(4, 8, dtype=torch.float64)
    coefs[:, 4] = 1.0  # x_s = z
    a = fused_step(x, x, coefs, seed=7, offset=3)
    torch.testing.assert_close(a, fused_step(x, x, coefs, seed=7, offset=3), rtol=0, atol=0)
    assert not torch.equal(a, fused_step(x, x, coefs, seed=7, offset=4))
    assert abs(a.mean().item()) < 0.05 and abs(a.std().item() - 1) < 0.05


def test_diagonal_posterior_matches_dense_gaussian_algebra():
    g = torch.Generator().manual_seed(4)
    b, c_, h, w = 2, 1, 3, 4
    mean, target, e1, e2 = (torch.randn(b, c_, h, w, generator=g, dtype=torch.float64) for _ in range(4))
    diag = torch.rand(1, 1, h, w, generator=g, dtype=torch.float64)
    prec = torch.tensor([2.0, 0.5], dtype=torch.float64)
    wprec = torch.tensor([10.0, 3.0], dtype=torch.float64)
    out_mean = diagonal_posterior_step(mean, prec, diag, target, wprec)
    out = diagonal_posterior_step(mean, prec, diag, target, wprec, noise=(e1, e2))
    for i in range(b):
        a = torch.diag(diag.flatten())
        lam = prec[i] * torch.eye(h * w, dtype=torch.float64) + wprec[i] * a.T @ a
        rhs = prec[i] * mean[i].flatten() + wprec[i] * a.T @ target[i].flatten()
        torch.testing.assert_close(out_mean[i].flatten(), torch.linalg.solve(lam, rhs))
        rhs = rhs + prec[i].sqrt() * e1[i].flatten() + wprec[i].sqrt() * a.T @ e2[i].flatten()
        torch.testing.assert_close(out[i].flatten(), torch.linalg.solve(lam, rhs))


def test_bad_input_is_named():
    x = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match="eps must have the shape"):
        ddim_step(x, torch.zeros(2, 1, 4, 5), 0.5, 0.6)
    with pytest.raises(TypeError, match="x_t must be a floating tensor"):
        ddim_step(x.long(), x.long(), 0.5, 0.6)
    with pytest.raises(ValueError, match="alpha_bar_t must lie in"):
        ddim_step(x, x, 1.5, 0.6)
    with pytest.raises(ValueError, match=r"alpha_bar_s must be a number or have shape \(2,\)"):
        ddim_step(x, x, 0.5, torch.rand(3))
    with pytest.raises(ValueError, match="backend must be one of"):
        ddim_step(x, x, 0.5, 0.6, backend="cuda")
    with pytest.raises(ValueError, match="noise.*or seed"):
        ddim_step(x, x, 0.5, 0.6, eta=1.0, noise=x, seed=1)
    with pytest.raises(ValueError, match="diag must have shape"):
        diagonal_posterior_step(x, 1.0, torch.ones(1, 1, 3, 4), x, 1.0)
