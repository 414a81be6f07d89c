"""DAPS (solvers/daps.py): levels, the exact-prior sanity check, bad inputs (every backend and batch independence: tests/test_methods_contract.py)."""

from __future__ import annotations

import importlib

import pytest
import torch
from _small_problem import correlated_prior

from diffsolve.models import GaussianPrior
from diffsolve.operators import GaussianBlur, Inpainting, MotionBlur, SuperResolution
from diffsolve.solvers.daps import daps, edm_sigmas, langevin_rates

daps_module = importlib.import_module("diffsolve.solvers.daps")  # the package attribute is the function

D = torch.float64


def _prior(shape=(1, 6, 6)):
    mean = 0.3 * torch.randn(*shape, dtype=D, generator=torch.Generator().manual_seed(5))
    return GaussianPrior(mean, 0.25)


def _problem(op, prior, sigma, batch, seed=1):
    x = prior.sample(1, torch.Generator().manual_seed(seed))
    y = op.A(x)
    y = y + sigma * torch.randn(y.shape, dtype=D, generator=torch.Generator().manual_seed(seed + 1))
    return y, y.expand(batch, *y.shape[1:]).contiguous()


def test_edm_levels():
    s = edm_sigmas(100.0, 0.1, 200)
    assert s[0] == pytest.approx(100.0) and s[-1] == pytest.approx(0.1)
    assert all(a > b for a, b in zip(s, s[1:]))


def test_levels_and_nfe():
    prior, op = _prior(), Inpainting.random((6, 6), 0.5)
    _, y = _problem(op, prior, 0.1, 1)
    calls = []

    class Counting:
        alphas_cumprod = prior.alphas_cumprod

        def __call__(self, x, t):
            calls.append(t[0].item())
            return prior(x, t)

    out, info = daps(Counting(), op, y, steps=7, sigma=0.1, ode_steps=3, langevin_steps=2, return_info=True)
    assert len(calls) == 7 * 3
    ts = info["timesteps"]
    assert ts.shape == (7,) and bool((ts[1:] < ts[:-1]).all())
    sig = ((1 - prior.alphas_cumprod) / prior.alphas_cumprod).sqrt()
    low = max(0.01, float(sig.min()))  # the default σ_min, clipped to the table
    assert float(sig[ts[0]]) == pytest.approx(100.0, rel=0.05) and float(sig[ts[-1]]) == pytest.approx(low, rel=0.05)
    assert info["residual"].shape == (7, 1)


@pytest.mark.parametrize("lr", [2e-3, None], ids=["lr", "default-step"])
@pytest.mark.parametrize("op", [Inpainting.random((6, 6), 0.5), GaussianBlur(3, 0.8)], ids=["inpaint", "blur"])
def test_mean_near_exact_posterior(op, lr):
    prior, sigma = _prior(), 0.1
    y1, y = _problem(op, prior, sigma, 200)
    post = prior.posterior(op, y1[0], sigma=sigma)
    out = daps(prior, op, y, steps=20, sigma=sigma, ode_steps=2, langevin_steps=40, lr=lr,
               generator=torch.Generator().manual_seed(0))
    err = (out.mean(0) - post.mean).norm() / post.mean.norm()
    assert err < 0.25, err


def test_bad_inputs():
    prior, op = _prior(), Inpainting.random((6, 6), 0.5)
    y = torch.zeros(1, 1, 6, 6, dtype=D)
    with pytest.raises(ValueError, match="sigma must be"):
        daps(prior, op, y, steps=3, sigma=0.0)
    with pytest.raises(ValueError, match="ode_steps must be >= 1"):
        daps(prior, op, y, steps=3, sigma=0.1, ode_steps=0)
    with pytest.raises(TypeError, match="langevin_steps must be an int"):
        daps(prior, op, y, steps=3, sigma=0.1, langevin_steps=1.5)
    with pytest.raises(ValueError, match="lr must be > 0"):
        daps(prior, op, y, steps=3, sigma=0.1, lr=0.0)
    with pytest.raises(ValueError, match="lr_min_ratio must lie"):
        daps(prior, op, y, steps=3, sigma=0.1, lr_min_ratio=2.0)
    with pytest.raises(ValueError, match="unstable.*use lr <"):
        daps(prior, op, y, steps=3, sigma=1e-4, lr=1e-4)
    with pytest.raises(ValueError, match="noise_source"):
        daps(prior, op, y, steps=3, sigma=0.1, noise_source="kernel")
    with pytest.raises(ValueError, match="sigma_min=.*below sigma_max"):
        daps(prior, op, y, steps=3, sigma=0.1, sigma_max=0.05, sigma_min=0.1)
    with pytest.raises(TypeError, match="own options"):
        daps(prior, op, y, steps=3, sigma=0.1, eta=1.0)


def test_return_info_data_consistency():
    prior, op = _prior(), SuperResolution(2, "average")
    _, y = _problem(op, prior, 0.05, 2)
    out, info = daps(prior, op, y, steps=4, sigma=0.05, langevin_steps=3, return_info=True)
    final = (op.A(out) - y).flatten(1).norm(dim=1) / y[0].numel() ** 0.5
    torch.testing.assert_close(info["final_residual"], final)
    torch.testing.assert_close(info["data_consistency"], final / 0.05)


@pytest.mark.parametrize("steps", [20, 50, 200])
def test_default_levels_fit(steps):
    prior, op = _prior(), Inpainting.random((6, 6), 0.5)
    _, y = _problem(op, prior, 0.1, 1)
    _, info = daps(prior, op, y, steps=steps, sigma=0.1, ode_steps=1, langevin_steps=0, return_info=True)
    ts = info["timesteps"]
    assert ts.shape == (steps,) and bool((ts[1:] < ts[:-1]).all()) and int(ts[-1]) >= 0


def test_too_many_levels_names_the_most_that_fit():
    """N levels need N distinct timesteps: past the most that fit, the error names that count, and it runs."""
    import re

    prior, op = _prior(), Inpainting.random((6, 6), 0.5)
    _, y = _problem(op, prior, 0.1, 1)
    with pytest.raises(ValueError, match=r"steps=1000 annealing levels do not fit .* use steps <= \d+") as err:
        daps(prior, op, y, steps=1000, sigma=0.1, ode_steps=1, langevin_steps=0)
    most = int(re.search(r"use steps <= (\d+)", str(err.value)).group(1))
    assert 200 <= most < 1000
    _, info = daps(prior, op, y, steps=most, sigma=0.1, ode_steps=1, langevin_steps=0, return_info=True)
    assert info["timesteps"].shape == (most,)
    with pytest.raises(ValueError, match=f"use steps <= {most}"):
        daps(prior, op, y, steps=most + 1, sigma=0.1, ode_steps=1, langevin_steps=0)


def test_default_step_scale_free():
    """The default step (a fraction of each level's stability bound under the noise budget, τ = σ/4) fits y
    with a 1/16-scale operator (SR x4) as with a unit-scale one: data consistency near 1 on the exact prior."""
    prior = _prior((1, 8, 8))
    for op in (SuperResolution(4, "average"), Inpainting.random((8, 8), 0.5)):
        _, y = _problem(op, prior, 0.05, 8)
        _, info = daps(prior, op, y, steps=10, sigma=0.05, ode_steps=1, langevin_steps=30, return_info=True,
                       generator=torch.Generator().manual_seed(3))
        dc = info["data_consistency"]
        assert bool((dc > 0.3).all()) and bool((dc < 2.0).all()), dc


@pytest.mark.parametrize("steps", [20, 50])
def test_default_rates_noise_budget(steps):
    """Every level's K default steps add variance 2Kη_i <= c·σ_{i+1}² in a direction the target barely pins and
    stay within f of the stability bound, for SR x4's ||AᵀA|| = 1/16 as for a blur's 1. The old rule (the
    stability term alone, τ = σ) let SR x4's null space diffuse 16 times farther than a blur's, up to ~0.8."""
    levels, sigma, k = edm_sigmas(100.0, 0.01, steps), 0.05, 100
    tau = daps_module.LIKELIHOOD_RATIO * sigma
    nxt = levels[1:] + levels[-1:]
    for gram in (1 / 16, 1.0):
        rates = langevin_rates(levels, gram, tau, k)
        for r, s, eta in zip(levels, nxt, rates):
            assert 2 * k * eta <= daps_module.NOISE_BUDGET * s**2 * (1 + 1e-12)
            assert eta * (1 / r**2 + gram / tau**2) <= 2 * daps_module.LANGEVIN_FRACTION * (1 + 1e-12)

    def old_spread(gram):
        return max(2 * k * daps_module.LANGEVIN_FRACTION * 2 / (1 / r**2 + gram / sigma**2) for r in levels)

    assert old_spread(1 / 16) == pytest.approx(16 * old_spread(1.0), rel=0.01) and old_spread(1 / 16) > 0.5


def test_default_rates_scale_free():
    """Rescaling the operator and σ together (A -> sA, σ -> sσ: the same problem) leaves the steps unchanged;
    no image size enters; K enters only through the budget c·σ_{i+1}²/(2K)."""
    levels = edm_sigmas(100.0, 0.01, 30)
    base = langevin_rates(levels, 1 / 16, 0.0125, 100)
    for s in (0.25, 4.0):
        assert langevin_rates(levels, s**2 / 16, s * 0.0125, 100) == pytest.approx(base, rel=1e-12)
    half = langevin_rates(levels, 1 / 16, 0.0125, 50)
    assert all(h <= 2 * b * (1 + 1e-12) and h >= b for h, b in zip(half, base))


def test_explicit_lr_keeps_tau_sigma():
    """A given lr keeps the old likelihood (τ = σ): its stability check still reads σ."""
    prior, op = _prior(), Inpainting.random((6, 6), 0.5)
    y = torch.zeros(1, 1, 6, 6, dtype=D)
    # η (1/r² + L/σ²) with L = 1, 1/σ² = 1e4 (1/r² <= 100): 2e-4 crosses 2, 1.9e-4 does not; with τ = σ/4
    # (L/τ² = 1.6e5) 1.9e-4 would be unstable too
    with pytest.raises(ValueError, match="unstable"):
        daps(prior, op, y, steps=3, sigma=0.01, lr=2e-4)
    daps(prior, op, y, steps=3, sigma=0.01, lr=1.9e-4, ode_steps=1, langevin_steps=1)


def _dense(op, shape):
    n = int(torch.tensor(shape).prod())
    eye = torch.eye(n, dtype=D).reshape(n, *shape)
    return op.A(eye).reshape(n, -1).T  # (m, n)


def _assert_is_the_k_step_chain(op, share: float, k: int, update) -> None:
    """``update(x̂0, y, ζ, 1/r², τ², η, L)`` draws K Langevin steps in one go; its mean (ζ = 0) and covariance (ζ = the
    unit vectors) must be those of the explicit chain x ← x − η[(x − x̂0)/r² + Aᵀ(Ax − y)/τ²] + √(2η) z from x̂0, in
    dense float64 linear algebra; η = ``share``/(1/r² + ‖AᵀA‖/τ²) (stable for share < 2)."""
    shape, inv_r2, tau2 = (1, 1, 6, 8), 1 / 0.3, 0.01
    a = _dense(op, shape[1:])
    n = a.shape[1]
    gram = float(torch.linalg.eigvalsh(a.T @ a).max())
    rate = share / (inv_r2 + gram / tau2)
    g = torch.Generator().manual_seed(0)
    x0_hat = torch.randn(shape, dtype=D, generator=g)
    y = op.A(torch.randn(shape, dtype=D, generator=g))

    def run(zeta):
        return update(x0_hat, y, zeta, inv_r2, tau2, rate, gram).reshape(-1)

    m = torch.eye(n, dtype=D) - rate * (inv_r2 * torch.eye(n, dtype=D) + a.T @ a / tau2)
    mean, cov, mj = x0_hat.reshape(-1).clone(), torch.zeros(n, n, dtype=D), torch.eye(n, dtype=D)
    for _ in range(k):
        mean = m @ mean + rate * (inv_r2 * x0_hat.reshape(-1) + a.T @ y.reshape(-1) / tau2)
        cov = cov + 2 * rate * mj @ mj.T
        mj = m @ mj
    at_zero = run(torch.zeros(shape, dtype=D))
    torch.testing.assert_close(at_zero, mean, rtol=1e-9, atol=1e-10)
    cols = torch.stack([run(torch.eye(n, dtype=D)[j].reshape(shape)) - at_zero for j in range(n)], dim=1)
    torch.testing.assert_close(cols @ cols.T, cov, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("op", [Inpainting.random((6, 8), 0.5, seed=2), GaussianBlur(3, 0.8), SuperResolution(2, "average"),
                                SuperResolution(2, "bicubic"), MotionBlur(3, seed=1, boundary="circular")],
                         ids=["mask", "separable-blur", "sr-average", "sr-bicubic", "circular-blur"])
@pytest.mark.parametrize("stiff_share", [0.3, 1.5], ids=["c>0", "c<0-somewhere"])
def test_exact_langevin_is_the_k_step_chain(op, stiff_share):
    """K Langevin steps in one draw through A's SVD equal the K-step chain in distribution."""
    svd = op.svd((6, 8)).range()

    def update(x0_hat, y, zeta, inv_r2, tau2, rate, gram):
        return daps_module.exact_langevin(svd, svd.singulars(y), x0_hat, svd.Ut(y), zeta, inv_r2, tau2, rate, 7)

    _assert_is_the_k_step_chain(op, stiff_share, 7, update)


def test_langevin_option():
    """"auto" is the one-draw update where A has an SVD, the Chebyshev series where it has none (the K steps where
    the series would be longer than K), "exact" without an SVD and an unknown mode are refused before the loop."""
    prior = _prior((1, 8, 8))
    kw = dict(steps=3, sigma=0.1, ode_steps=1)
    cases = ((Inpainting.random((8, 8), 0.5), 4, "exact"), (SuperResolution(2, "average"), 4, "exact"),
             (GaussianBlur(3, 0.8), 4, "exact"), (MotionBlur(5, seed=0, boundary="circular"), 4, "exact"),
             (MotionBlur(5, seed=0), 100, "chebyshev"), (MotionBlur(5, seed=0), 4, "loop"))
    for op, k, same in cases:
        _, y = _problem(op, prior, 0.1, 2)
        outs = {mode: daps(prior, op, y, generator=torch.Generator().manual_seed(0), langevin=mode,
                           langevin_steps=k, **kw) for mode in ("auto", same)}
        torch.testing.assert_close(outs["auto"], outs[same], rtol=0, atol=0)
    other = daps(prior, MotionBlur(5, seed=0), y, generator=torch.Generator().manual_seed(0), langevin="loop",
                 langevin_steps=100, **kw)
    assert not torch.equal(other, outs["auto"])  # the series is not the loop (different draws)
    with pytest.raises(ValueError, match="no cheap SVD.*supported"):
        daps(prior, MotionBlur(5, seed=0), y, langevin="exact", langevin_steps=4, **kw)
    with pytest.raises(ValueError, match="langevin must be one of 'auto', 'exact', 'chebyshev', 'loop', got 'fa"):
        daps(prior, MotionBlur(5, seed=0), y, langevin="fast", langevin_steps=4, **kw)


@pytest.mark.parametrize("op", [MotionBlur(5, seed=1), Inpainting.random((6, 8), 0.5, seed=2),
                                SuperResolution(2, "bicubic")], ids=["reflect-motion", "mask", "sr-bicubic"])
@pytest.mark.parametrize("share", [0.1, 0.3])
def test_series_langevin_is_the_k_step_chain(op, share):
    """The Chebyshev-series update (no SVD used) equals the K-step chain in distribution, with fewer than K
    products."""
    def update(x0_hat, y, zeta, inv_r2, tau2, rate, gram):
        series = daps_module.langevin_series(inv_r2, tau2, rate, 60, gram, 1e-12)
        assert series is not None and len(series[0]) + len(series[1]) < 60  # shorter than the chain
        return daps_module.series_langevin(op, x0_hat, y, zeta, inv_r2, tau2, series)

    _assert_is_the_k_step_chain(op, share, 60, update)


def test_float32_series_stops_at_its_own_rounding():
    """In float32 the series stop at SERIES_ULPS ulps: fewer products than at one ulp (the ~28-term level), and the
    update within a few times the rounding the full float32 series has anyway (against float64 to 1e-12)."""
    op = MotionBlur(9, 0.5, seed=0)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(2, 3, 24, 24, generator=g, dtype=D) * 2 - 1
    y = op.A(torch.rand(2, 3, 24, 24, generator=g, dtype=D))
    zeta = torch.randn(2, 3, 24, 24, generator=g, dtype=D)
    cdps_module = importlib.import_module("diffsolve.solvers.cdps")
    gram, tau2 = cdps_module.gram_bound(op, (24, 24)), 0.05**2
    eps = torch.finfo(torch.float32).eps
    for r in (1.0, 0.1):
        rate = langevin_rates([r], gram, tau2**0.5, 100)[0]
        ref = daps_module.series_langevin(op, x0, y, zeta, 1 / r**2, tau2,
                                          daps_module.langevin_series(1 / r**2, tau2, rate, 100, gram, 1e-12))

        def error(tol):
            series = daps_module.langevin_series(1 / r**2, tau2, rate, 100, gram, tol)
            out = daps_module.series_langevin(op, x0.float(), y.float(), zeta.float(), 1 / r**2, tau2, series)
            return len(series[0]) + len(series[1]), float((out.double() - ref).norm() / (ref - x0).norm())

        n_one, err_one = error(eps)
        n_default, err_default = error(daps_module.series_tolerance(torch.float32))
        assert n_default < n_one if r == 1.0 else n_default <= n_one  # a short series may lose no term
        assert err_default < 4 * max(err_one, daps_module.SERIES_ULPS * eps), (r, err_one, err_default)


def test_langevin_series_declines_when_longer_than_the_chain():
    """Near the stability bound with few steps the two series would take at least K products: None (the loop)."""
    assert daps_module.langevin_series(1.0, 0.01, 1.9 / (1 + 100), 4, 1.0, 1e-12) is None
    assert daps_module.langevin_series(1.0, 0.01, 0.1 / (1 + 100), 100, 1.0, 1e-7) is not None
    assert daps_module.langevin_series(1.0, 0.01, 0.1, 100, 0.0, 1e-7) is None  # A = 0: an empty spectrum interval


@pytest.mark.parametrize("op", [Inpainting.random((6, 6), 0.5), GaussianBlur(3, 0.8)], ids=["inpaint", "blur"])
def test_exact_and_loop_agree_on_the_posterior(op):
    """The three Langevin modes sample the same distribution: their 400-draw means and variances agree (the
    series falls back to the loop on the levels where it would be longer than K = 20)."""
    prior, sigma = _prior(), 0.1
    y1, y = _problem(op, prior, sigma, 400)
    post = prior.posterior(op, y1[0], sigma=sigma)
    outs = [daps(prior, op, y, steps=10, sigma=sigma, ode_steps=2, langevin_steps=20, langevin=mode,
                 generator=torch.Generator().manual_seed(1)) for mode in ("exact", "loop", "chebyshev")]
    scale = post.mean.norm()
    for other in outs[1:]:
        assert (outs[0].mean(0) - other.mean(0)).norm() / scale < 0.1
        assert abs(outs[0].var(0).mean() / other.var(0).mean() - 1) < 0.15


def test_chebyshev_mode_backends_and_batch_independence():
    """The series update (a reflect motion blur: no SVD) gives the same samples on every CPU backend, and a list
    of generators makes each sample independent of its batch."""
    prior = _prior((1, 8, 8))
    kw = dict(steps=3, sigma=0.1, ode_steps=1, langevin_steps=100, langevin="chebyshev")
    _, y = _problem(MotionBlur(5, seed=0), prior, 0.1, 3)
    outs = {b: daps(prior, MotionBlur(5, seed=0, backend=b), y, backend=b,
                    generator=[torch.Generator().manual_seed(10 + j) for j in range(3)], **kw)
            for b in ("torch", "cpp")}
    torch.testing.assert_close(outs["cpp"], outs["torch"], rtol=1e-10, atol=1e-10)
    alone = daps(prior, MotionBlur(5, seed=0), y[1:2], generator=[torch.Generator().manual_seed(11)], **kw)
    torch.testing.assert_close(alone, outs["torch"][1:2], rtol=1e-12, atol=1e-12)


def test_a_small_noise_level_is_not_fitted_below_its_floor():
    """τ = σ/4 fits y's well-determined directions at about a quarter of its noise once σ is small against the image,
    and nothing balanced it: the result now stops at the floor σ√(m/2) (16×16 exact Gaussian prior, random
    inpainting, σ = 1e-3); the paper's result (``discrepancy=False``) stays below it."""
    n, sigma = 16, 1e-3
    pr = correlated_prior(n)
    op = Inpainting.random((n, n), 0.5, seed=0)
    x = pr.sample(3, generator=torch.Generator().manual_seed(1))
    y = op.A(x) + sigma * torch.randn(op.A(x).shape, generator=torch.Generator().manual_seed(2), dtype=D)
    runs = {}
    for floor in (False, True):
        _, info = daps(pr, op, y, steps=10, sigma=sigma, generator=torch.Generator().manual_seed(3),
                       discrepancy=floor, return_info=True)
        runs[floor] = info["data_consistency"]
    assert bool((runs[False] < 0.5).all()), runs[False]
    torch.testing.assert_close(runs[True], torch.full_like(runs[True], 0.5**0.5), rtol=1e-6, atol=0)


@pytest.mark.parametrize("langevin", ["auto", "loop", "chebyshev"])
def test_a_per_sample_mask_keeps_each_sample_independent_of_its_batch(langevin):
    """A mask whose weights differ per sample (1 and 0.3): each sample's L, and with it its Langevin step η_i, is its
    own, so sample 1 in the batch equals sample 1 alone (with the batch's L they differed by 0.2); the Chebyshev
    series, one per level for the batch, refuses such a mask and names the modes that take it."""
    pr = correlated_prior(8)
    gen = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    keep = (torch.rand(1, 1, 8, 8, generator=gen(4), dtype=D) > 0.4).to(D)
    weights = torch.cat([keep, 0.3 * keep])
    x = pr.sample(2, generator=gen(1))
    op = Inpainting(weights)
    y = op.A(x) + 0.3 * torch.randn(op.A(x).shape, generator=gen(2), dtype=D)
    kw = dict(steps=5, sigma=0.3, langevin=langevin, langevin_steps=20)
    if langevin == "chebyshev":
        with pytest.raises(ValueError, match="weights differ per sample.*'loop' or 'exact'"):
            daps(pr, op, y, generator=[gen(5), gen(6)], **kw)
        return
    both = daps(pr, op, y, generator=[gen(5), gen(6)], **kw)
    alone = daps(pr, Inpainting(weights[1:]), y[1:], generator=[gen(6)], **kw)
    torch.testing.assert_close(both[1:], alone, rtol=0, atol=1e-12)


def test_a_per_sample_mask_without_an_svd_is_refused_not_pooled():
    """A diagonal operator without an SVD hook takes the series under langevin="auto": with weights that differ per
    sample it is refused (naming 'loop'); with a given lr, or no Langevin steps, every sample shares the step and it
    runs."""
    class NoSVD(Inpainting):
        svd = None

    pr = correlated_prior(8)
    keep = (torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(4), dtype=D) > 0.4).to(D)
    op = NoSVD(torch.cat([keep, 0.3 * keep]))
    y = op.A(pr.sample(2, generator=torch.Generator().manual_seed(1)))
    with pytest.raises(ValueError, match="langevin='auto'.*use langevin='loop'$"):
        daps(pr, op, y, steps=5, sigma=0.3, generator=torch.Generator().manual_seed(2))
    for options in ({"lr": 1e-3}, {"langevin_steps": 0}):
        out = daps(pr, op, y, steps=5, sigma=0.3, generator=torch.Generator().manual_seed(2), **options)
        assert bool(out.isfinite().all())
