"""Exact priors: ε equals the autograd score of the exact log density; posteriors equal dense Bayes."""

import math

import pytest
import torch

from diffsolve.models import GaussianMixturePrior, GaussianPrior, operator_matrix
from diffsolve.schedules import make_alphas_cumprod

SHAPE = (1, 3, 2)
N = 6
D = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _spd(k, g, n=N):
    m = torch.randn(k, n, n, generator=g, dtype=D)
    return m @ m.transpose(-1, -2) / n + 0.2 * torch.eye(n, dtype=D)


def _mixture(kind, g):
    means = 1.5 * torch.randn(3, *SHAPE, generator=g, dtype=D)
    weights = torch.tensor([0.2, 0.5, 0.3], dtype=D)
    vars_ = {"full": _spd(3, g), "diag": torch.rand(3, *SHAPE, generator=g, dtype=D) + 0.1,
             "iso": torch.tensor([0.3, 0.7, 1.2], dtype=D), "scalar": 0.5}[kind]
    prior = GaussianMixturePrior(means, vars_, weights)
    if kind == "full":
        dense = vars_
    elif kind == "diag":
        dense = torch.diag_embed(vars_.reshape(3, N))
    else:
        dense = torch.as_tensor(vars_, dtype=D).reshape(-1, 1, 1) * torch.eye(N, dtype=D).expand(3, N, N)
    prior.oracle_covs = dense  # the covariances as given, for the independent oracles below
    return prior, means, weights


def _oracle_log_density(prior, means, weights, x, a):
    """log p_t(x) with torch.distributions: Σ_k w_k N(√ᾱ μ_k, ᾱ Σ_k + (1−ᾱ) I)."""
    a4 = a[:, None, None, None]
    cov = a4 * prior.oracle_covs[None] + (1 - a4) * torch.eye(N, dtype=D)
    mvn = torch.distributions.MultivariateNormal(a.sqrt()[:, None, None] * means.reshape(1, -1, N),
                                                 covariance_matrix=cov)
    return torch.logsumexp(mvn.log_prob(x.reshape(-1, 1, N)) + weights.log(), dim=1)


@pytest.mark.parametrize("kind", ["full", "diag", "iso", "scalar"])
def test_mixture_eps_is_autograd_score(kind):
    g = _gen(1)
    prior, means, weights = _mixture(kind, g)
    x = 2 * torch.randn(5, *SHAPE, generator=g, dtype=D)
    a = torch.tensor([0.999, 0.9, 0.5, 0.1, 1e-3], dtype=D)
    xg = x.clone().requires_grad_()
    logp = _oracle_log_density(prior, means, weights, xg, a)
    (score,) = torch.autograd.grad(logp.sum(), xg)
    eps = prior.eps(x, a)
    torch.testing.assert_close(eps, -(1 - a).sqrt()[:, None, None, None] * score, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(prior.score(x, a), score, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(prior.log_prob(x, a), logp.detach(), rtol=1e-12, atol=1e-10)


def test_gaussian_eps_at_timesteps_of_a_table():
    g = _gen(2)
    table = make_alphas_cumprod(num_train_timesteps=50, beta_schedule="squaredcos_cap_v2")
    mean, cov = torch.randn(*SHAPE, generator=g, dtype=D), _spd(1, g)[0]
    prior = GaussianPrior(mean, cov, alphas_cumprod=table)
    x = torch.randn(3, *SHAPE, generator=g, dtype=D)
    t = torch.tensor([49, 20, 0])
    a = table[t]
    c = a[:, None, None] * cov + (1 - a[:, None, None]) * torch.eye(N, dtype=D)
    r = (x.reshape(3, N) - a.sqrt()[:, None] * mean.reshape(1, N))[..., None]
    expected = (1 - a).sqrt()[:, None] * torch.linalg.solve(c, r)[..., 0]
    torch.testing.assert_close(prior(x, t), expected.reshape(x.shape), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(prior(x, 20), prior.eps(x, float(table[20])), rtol=0, atol=0)
    assert prior(x.float(), t).dtype == torch.float32


def test_sample_moments():
    g = _gen(3)
    mean, cov = torch.randn(*SHAPE, generator=g, dtype=D), _spd(1, g)[0]
    prior = GaussianPrior(mean, cov)
    draws = prior.sample(40000, generator=_gen(4)).reshape(-1, N)
    torch.testing.assert_close(draws.mean(0), mean.reshape(N), rtol=0, atol=0.03)
    torch.testing.assert_close(torch.cov(draws.T), cov, rtol=0, atol=0.04)
    noisy = prior.sample(40000, generator=_gen(5), alpha_bar=0.3).reshape(-1, N)
    torch.testing.assert_close(torch.cov(noisy.T), 0.3 * cov + 0.7 * torch.eye(N, dtype=D), rtol=0, atol=0.04)
    mix, means, weights = _mixture("diag", g)
    draws = mix.sample(40000, generator=_gen(6)).reshape(-1, N)
    torch.testing.assert_close(draws.mean(0), weights @ means.reshape(3, N), rtol=0, atol=0.05)



def _sqrtm(cov):
    from scipy.linalg import sqrtm

    return torch.from_numpy(sqrtm(cov.numpy()).real)


def test_seeded_draws_use_the_principal_square_root():
    """A seeded draw is mean + sqrtm(cov) z, z the generator's normals: the same on every thread count and
    LAPACK build (an eigenvector root V √Λ changes with the signs and the repeated-eigenvalue basis LAPACK picks;
    this covariance has a three-fold eigenvalue)."""
    g = _gen(7)
    u = torch.randn(N, 2, generator=g, dtype=D)
    cov = 0.5 * torch.eye(N, dtype=D) + u @ u.T  # eigenvalue 0.5 repeated N − 2 times
    mean = torch.randn(*SHAPE, generator=g, dtype=D)
    gen = _gen(8)
    torch.multinomial(torch.ones(1, dtype=D), 5, replacement=True, generator=gen)  # the component draw comes first
    z = torch.randn(5, N, generator=gen, dtype=D)
    for a in (1.0, 0.3):
        expected = math.sqrt(a) * mean.reshape(1, N) + z @ _sqrtm(a * cov + (1 - a) * torch.eye(N, dtype=D))
        draws = GaussianPrior(mean, cov).sample(5, generator=_gen(8), alpha_bar=a).reshape(5, N)
        torch.testing.assert_close(draws, expected, rtol=0, atol=1e-12)
    post = GaussianPrior(mean, cov).posterior(torch.eye(N, dtype=D)[:3], torch.ones(3, dtype=D), sigma=0.5)
    z = torch.randn(4, N, generator=_gen(9), dtype=D)
    expected = post.mean.reshape(1, N) + z @ _sqrtm(post.cov)
    torch.testing.assert_close(post.sample(4, generator=_gen(9)).reshape(4, N), expected, rtol=0, atol=1e-12)


def _problem(g, m=4):
    a_mat = torch.randn(m, N, generator=g, dtype=D)
    return a_mat, torch.randn(m, generator=g, dtype=D)


def test_gaussian_posterior_equals_dense_bayes():
    g = _gen(7)
    mean, cov = torch.randn(*SHAPE, generator=g, dtype=D), _spd(1, g)[0]
    a_mat, y = _problem(g)
    sigma = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=D)
    post = GaussianPrior(mean, cov).posterior(a_mat, y, sigma=sigma)
    # precision form: Λ = Σ⁻¹ + Aᵀ Σ_n⁻¹ A, Λ μ' = Σ⁻¹ μ + Aᵀ Σ_n⁻¹ y
    noise_prec = torch.diag(sigma**-2)
    prec = torch.linalg.inv(cov) + a_mat.T @ noise_prec @ a_mat
    exp_cov = torch.linalg.inv(prec)
    exp_mean = exp_cov @ (torch.linalg.solve(cov, mean.reshape(N)) + a_mat.T @ noise_prec @ y)
    torch.testing.assert_close(post.cov, exp_cov, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(post.mean.reshape(N), exp_mean, rtol=1e-9, atol=1e-11)
    assert post.mean.shape == SHAPE
    evidence = torch.distributions.MultivariateNormal(a_mat @ mean.reshape(N), a_mat @ cov @ a_mat.T
                                                      + torch.diag(sigma**2)).log_prob(y)
    torch.testing.assert_close(post.log_evidence, evidence, rtol=1e-10, atol=1e-10)
    draws = post.sample(40000, generator=_gen(8)).reshape(-1, N)
    torch.testing.assert_close(torch.cov(draws.T), exp_cov, rtol=0, atol=0.02)


def test_diagonal_prior_inpainting_posterior_is_elementwise():
    g = _gen(9)
    mean, var = torch.randn(*SHAPE, generator=g, dtype=D), torch.rand(*SHAPE, generator=g, dtype=D) + 0.5
    mask = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0], dtype=D).reshape(SHAPE)
    y = torch.randn(*SHAPE, generator=g, dtype=D) * mask
    post = GaussianPrior(mean, var).posterior(lambda x: x * mask, y, sigma=0.1)
    prec = 1 / var + mask / 0.01
    torch.testing.assert_close(post.mean, (mean / var + mask * y / 0.01) / prec, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(post.cov.diagonal().reshape(SHAPE), 1 / prec, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("kind", ["full", "diag"])
def test_mixture_posterior_equals_dense_bayes(kind):
    g = _gen(10)
    prior, means, weights = _mixture(kind, g)
    a_mat, y = _problem(g, m=3)
    noise_cov = _spd(1, g, 3)[0] * 0.1
    post = prior.posterior(a_mat, y, noise_cov=noise_cov)
    assert post.weights.shape == (3,) and float(post.weights.sum()) == pytest.approx(1.0)
    # Bayes: log p(x|y) = log p(x) + log p(y|x) − log p(y), at random points
    x = torch.randn(7, *SHAPE, generator=g, dtype=D)
    lik = torch.distributions.MultivariateNormal(x.reshape(7, N) @ a_mat.T, covariance_matrix=noise_cov).log_prob(y)
    log_prior = _oracle_log_density(prior, means, weights, x, torch.ones(7, dtype=D))
    evidence = torch.logsumexp(torch.stack([
        torch.distributions.MultivariateNormal(a_mat @ means[k].reshape(N), a_mat @ prior.oracle_covs[k] @ a_mat.T
                                               + noise_cov).log_prob(y) for k in range(3)]) + weights.log(), 0)
    torch.testing.assert_close(post.log_prob(x), log_prior + lik - evidence, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(post.log_evidence, evidence, rtol=1e-10, atol=1e-10)
    draws = post.sample(40000, generator=_gen(11)).reshape(-1, N)
    torch.testing.assert_close(draws.mean(0), post.mean.reshape(N), rtol=0, atol=0.03)
    torch.testing.assert_close(torch.cov(draws.T), post.cov, rtol=0, atol=0.05)


def test_operator_matrix_from_callable_and_object():
    g = _gen(12)
    a_mat = torch.randn(5, N, generator=g, dtype=D)

    def apply(x):
        return (x.reshape(x.shape[0], N) @ a_mat.T).reshape(x.shape[0], 5)

    class Op:
        def A(self, x):  # noqa: N802 - the operators' method name
            return apply(x)

    torch.testing.assert_close(operator_matrix(apply, SHAPE), a_mat, rtol=0, atol=1e-14)
    torch.testing.assert_close(operator_matrix(Op(), SHAPE), a_mat, rtol=0, atol=1e-14)
    assert operator_matrix(a_mat.float(), SHAPE).dtype == torch.float64


def test_bad_input():
    g = _gen(13)
    means = torch.zeros(2, *SHAPE, dtype=D)
    with pytest.raises(ValueError, match="vars must be"):
        GaussianMixturePrior(means, torch.ones(3, dtype=D))
    with pytest.raises(ValueError, match="sum to 1"):
        GaussianMixturePrior(means, 1.0, torch.tensor([0.5, 0.6], dtype=D))
    with pytest.raises(ValueError, match="positive semi-definite"):
        GaussianPrior(torch.zeros(*SHAPE, dtype=D), -torch.eye(N, dtype=D))
    with pytest.raises(ValueError, match="symmetric"):
        GaussianPrior(torch.zeros(*SHAPE, dtype=D), torch.triu(torch.ones(N, N, dtype=D)))
    with pytest.raises(ValueError, match="var must be"):
        GaussianPrior(torch.zeros(*SHAPE, dtype=D), torch.ones(5, dtype=D))
    with pytest.raises(TypeError, match="means"):
        GaussianMixturePrior([[0.0]], 1.0)
    prior = GaussianPrior(torch.zeros(*SHAPE, dtype=D), 1.0)
    with pytest.raises(ValueError, match=r"x must have shape \(B, \*\(1, 3, 2\)\)"):
        prior.eps(torch.zeros(2, 6, dtype=D), 0.5)
    with pytest.raises(ValueError, match="alpha_bar"):
        prior.eps(torch.zeros(2, *SHAPE, dtype=D), 1.5)
    a_mat, y = _problem(g)
    with pytest.raises(ValueError, match="exactly one of sigma"):
        prior.posterior(a_mat, y)
    with pytest.raises(ValueError, match="m = 4"):
        prior.posterior(a_mat, torch.zeros(5, dtype=D), sigma=0.1)
    with pytest.raises(ValueError, match=r"\(m, 6\)"):
        prior.posterior(torch.zeros(4, 5, dtype=D), y, sigma=0.1)
    with pytest.raises(ValueError, match="singular"):
        prior.posterior(torch.zeros(4, N, dtype=D), y, sigma=0.0)
    assert math.isfinite(float(prior.log_prob(torch.zeros(1, *SHAPE, dtype=D))))
