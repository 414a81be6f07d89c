"""Exact priors at their edges: a singular measurement covariance, posterior draws at tiny or zero σ, and
non-finite parameters (an audit's findings; each case failed before)."""
import pytest
import torch

from diffsolve.models import GaussianMixturePrior, GaussianPrior

D = torch.float64


def _mixture():
    gen = torch.Generator().manual_seed(9)
    means = torch.randn(2, 6, generator=gen, dtype=D).reshape(2, 1, 2, 3)
    b = torch.randn(2, 6, 6, generator=gen, dtype=D)
    return GaussianMixturePrior(means, b @ b.transpose(1, 2) / 6 + 0.1 * torch.eye(6, dtype=D))


def test_sigma_zero_with_dependent_rows_is_refused_for_every_seed():
    prior = _mixture()
    for seed in range(40):
        gen = torch.Generator().manual_seed(seed)
        a = torch.randn(3, 6, generator=gen, dtype=D)
        a = torch.cat([a, a[:1]])  # rank 3: the 4th row repeats the 1st
        y = a @ torch.randn(6, generator=gen, dtype=D)
        with pytest.raises(ValueError, match="singular"):
            prior.posterior(a, y, sigma=0.0)


@pytest.mark.parametrize("sigma", [0.0, 1e-7])
def test_posterior_draws_at_tiny_or_zero_sigma(sigma):
    idx = torch.arange(16)
    d2 = ((idx // 4)[:, None] - (idx // 4)[None]) ** 2 + ((idx % 4)[:, None] - (idx % 4)[None]) ** 2
    prior = GaussianPrior(torch.zeros(1, 4, 4, dtype=D), 0.3 * torch.exp(-d2.double() / 3.0) + 1e-2 * torch.eye(16))
    gen = torch.Generator().manual_seed(0)
    a = torch.eye(16, dtype=D) + 0.3 * torch.randn(16, 16, generator=gen, dtype=D)  # square, invertible
    x = torch.randn(16, generator=gen, dtype=D)
    post = prior.posterior(a, a @ x, sigma=sigma)
    assert torch.linalg.eigvalsh(post.cov).min() > -1e-12 * post.cov.abs().max()
    draws = post.sample(8, generator=gen)
    assert torch.isfinite(draws).all()
    if sigma == 0:
        torch.testing.assert_close(draws.reshape(8, -1), x.expand(8, 16), rtol=0, atol=1e-8)


@pytest.mark.parametrize("what", ["nan cov", "inf cov", "nan mean"])
def test_non_finite_parameters_are_named(what):
    cov = torch.eye(4, dtype=D).expand(1, 4, 4).clone()
    means = torch.zeros(1, 1, 2, 2, dtype=D)
    if what == "nan cov":
        cov[0, 0, 1] = cov[0, 1, 0] = float("nan")
    elif what == "inf cov":
        cov[0, 0, 0] = float("inf")
    else:
        means[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        GaussianMixturePrior(means, cov)


def test_tensor_alpha_bar_and_nan_sigma_are_checked():
    prior = GaussianPrior(torch.zeros(1, 2, 2, dtype=D), 0.5)
    with pytest.raises(ValueError, match="alpha_bar"):
        prior.eps(torch.zeros(1, 1, 2, 2, dtype=D), torch.tensor([1.5], dtype=D))
    with pytest.raises(ValueError, match="finite"):
        prior.posterior(torch.eye(4, dtype=D), torch.zeros(4, dtype=D), sigma=float("nan"))
