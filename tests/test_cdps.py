"""C-DPS: the per-step posterior from many draws against dense algebra, the measurement chain's law,
exact / CG / diagonal paths, CG non-convergence, bad input."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from diffsolve.models import EpsDenoiser, GaussianPrior, operator_matrix
from diffsolve.kernels.cg import cg_iteration_bound
from diffsolve.operators import CallableOperator, GaussianBlur, GaussianNoise, Inpainting, LinearOperator, MotionBlur, SuperResolution
from diffsolve.solvers import CG, CGNotConvergedWarning, cdps
from diffsolve.solvers.cdps import CG_STARTS, KAPPA_MAX, MeasurementChain, _choose_method, cdps_step, gram_bound, precisions

D = torch.float64
SHAPE = (1, 4, 5)
N = 20


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def smooth_prior(c: int, h: int, w: int) -> GaussianPrior:
    idx = torch.arange(h * w)
    d2 = ((idx // w)[:, None] - (idx // w)[None]) ** 2 + ((idx % w)[:, None] - (idx % w)[None]) ** 2
    k = 0.25 * torch.exp(-d2.double() / 4.0)
    cov = torch.kron(torch.eye(c, dtype=D), k) + 1e-2 * torch.eye(c * h * w, dtype=D)
    return GaussianPrior(0.1 * torch.randn(c, h, w, generator=gen(3), dtype=D), cov)


def dense_operator(mat: torch.Tensor, shape) -> LinearOperator:
    return CallableOperator(lambda v: (v.reshape(v.shape[0], -1) @ mat.T).view(v.shape[0], 1, 1, -1),
                                        adjoint=lambda u: (u.reshape(u.shape[0], -1) @ mat).view(u.shape[0], *shape),
                                        input_shape=shape)


OPERATORS = {
    "inpaint-diag": (lambda: Inpainting.random(SHAPE[1:], 0.5, seed=2), "diagonal"),
    "inpaint-exact": (lambda: Inpainting.random(SHAPE[1:], 0.5, seed=2), "exact"),
    "sr-exact": (lambda: SuperResolution(2, input_size=SHAPE[1:]), "exact"),
    "dense-cg": (lambda: dense_operator(torch.randn(12, N, generator=gen(9), dtype=D) / 3, SHAPE), "cg"),
}


def measure(op, batch=1, seed=1):
    y = op.A(torch.randn(batch, *SHAPE, generator=gen(seed), dtype=D))
    return y + 0.05 * torch.randn(y.shape, generator=gen(seed + 1), dtype=D)


def dense_step(prior, op, x_t, y_s, a_t, a_s, sigma, coupling, eta):
    """DESIGN §4 written out with dense matrices: (mean, cov) of the per-step posterior."""
    eps = prior.eps(x_t, a_t)
    xt, e = x_t.reshape(-1), eps.reshape(-1)
    mat = operator_matrix(op, SHAPE)
    if coupling == "forward":
        alpha = a_t / a_s
        m, c = xt / math.sqrt(alpha), alpha / (1 - alpha)
    else:
        x0 = (xt - math.sqrt(1 - a_t) * e) / math.sqrt(a_t)
        var = eta**2 * (1 - a_s) / (1 - a_t) * (1 - a_t / a_s)
        if a_s < 1:
            m, c = math.sqrt(a_s) * x0 + math.sqrt(1 - a_s - var) * e, 1 / var
        else:  # the explicit last step: N(x̂0, (1−ᾱ_t)/ᾱ_t)
            m, c = x0, a_t / (1 - a_t)
    b = (1 - a_s) * mat @ (-e / math.sqrt(1 - a_t))
    w = 1 / (a_s * sigma**2 + 1 - a_s)
    prec = c * torch.eye(N, dtype=D) + w * mat.T @ mat
    cov = torch.linalg.inv(prec)
    mean = cov @ (c * m + w * mat.T @ (y_s.reshape(-1) - b))
    return mean, cov


@pytest.mark.parametrize("name", sorted(OPERATORS))
@pytest.mark.parametrize("coupling, a_t, a_s", [("reverse", 0.5, 0.7), ("reverse", 0.97, 1.0),
                                                ("forward", 0.8, 0.9)])
def test_step_posterior_moments_match_dense_algebra(name, coupling, a_t, a_s):
    make, method = OPERATORS[name]
    op = make()
    prior = smooth_prior(*SHAPE)
    sigma, eta, draws = 0.05, 0.8, 20000
    x_t = prior.sample(1, gen(4), alpha_bar=a_t)
    y_s = math.sqrt(a_s) * measure(op) + math.sqrt(1 - a_s) * torch.randn(measure(op).shape, generator=gen(5),
                                                                         dtype=D)
    mean, cov = dense_step(prior, op, x_t, y_s, a_t, a_s, sigma, coupling, eta)
    xb = x_t.expand(draws, *SHAPE).contiguous()
    yb = y_s.expand(draws, *y_s.shape[1:]).contiguous()
    eps = prior.eps(xb, a_t)
    g = gen(6)
    e1 = torch.randn(xb.shape, generator=g, dtype=D)
    e2 = torch.randn(yb.shape, generator=g, dtype=D)
    diag = op.mask.to(D) if method == "diagonal" else None
    kw = dict(sigma=sigma, coupling=coupling, eta=eta, method=method, diag=diag, cg_iters=60, cg_tol=1e-12)
    x_s, _ = cdps_step(op, xb, eps, yb, a_t, a_s, e1=e1, e2=e2, **kw)
    flat = x_s.reshape(draws, -1)
    emp_mean, emp_cov = flat.mean(0), torch.cov(flat.T)
    se = (cov.diagonal() / draws).sqrt()
    assert float(((emp_mean - mean).abs() / se).max()) < 4.5
    scale = cov.diagonal().sqrt()
    rel = (emp_cov - cov) / (scale[:, None] * scale[None])  # correlation-scale error
    assert float(rel.abs().max()) < 6 * math.sqrt(2 / draws)  # ~6 standard errors of a correlation
    # the noise-free call gives the posterior mean itself
    x_mean, info = cdps_step(op, xb[:2], eps[:2], yb[:2], a_t, a_s, e1=None, e2=None, want_info=True, **kw)
    torch.testing.assert_close(x_mean[0].reshape(-1), mean, rtol=1e-8, atol=1e-9)
    if method != "diagonal":  # the exact and CG steps report how well they solved the step's system
        assert info is not None and info.method == method and bool(info.converged.all()), info
        assert float(info.residual.max()) < 1e-10


def test_measurement_chain_law():
    """Markov: Var u_k = 1 − ᾱ_k, Cov(u_t, u_s) = √(ᾱ_t/ᾱ_s)(1 − ᾱ_s); fresh: independent levels."""
    levels = [0.1, 0.4, 0.8, 1.0]
    y = torch.zeros(40000, 1, 1, 1, dtype=D)
    for chain in ("markov", "fresh"):
        mc = MeasurementChain(y, chain, levels[0], gen(1))
        us = [mc.u if chain == "markov" else math.sqrt(1 - levels[0]) * torch.randn(y.shape, generator=gen(2),
                                                                                   dtype=D)]
        for a_t, a_s in zip(levels[:-1], levels[1:]):
            u = mc.next(a_t, a_s)
            us.append(torch.zeros_like(y) if u is None else u)
        u = torch.stack([v.reshape(-1) for v in us])
        cov = torch.cov(u)
        for k, a in enumerate(levels):
            assert abs(float(cov[k, k]) - (1 - a)) < 0.03
        for k in range(3):
            expect = math.sqrt(levels[k] / levels[k + 1]) * (1 - levels[k + 1]) if chain == "markov" else 0.0
            assert abs(float(cov[k, k + 1]) - expect) < 0.03
        assert torch.equal(us[-1], torch.zeros_like(y))  # ᾱ = 1: y_0 = y exactly


def test_diagonal_kernel_path_equals_exact_solve_path():
    prior = smooth_prior(*SHAPE)
    op = Inpainting.random(SHAPE[1:], 0.5, seed=2)
    y = measure(op, batch=3)
    a = cdps(prior, op, y, steps=8, sigma=0.05, generator=gen(1))  # auto → the fused diagonal kernel
    b = cdps(prior, op, y, steps=8, sigma=0.05, solver="exact", generator=gen(1))
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("coupling", ["reverse", "forward"])
def test_exact_and_cg_paths_agree_to_cg_tolerance(coupling):
    prior = smooth_prior(1, 6, 7)
    op = GaussianBlur(3, 0.7)  # separable reflect blur: exact per-axis SVD solve
    y = op.A(torch.randn(2, 1, 6, 7, generator=gen(1), dtype=D))
    kw = dict(steps=6, sigma=0.05, coupling=coupling, generator=None, last_step="mean")
    a, ia = cdps(prior, op, y, **{**kw, "generator": gen(3)}, solver="exact", return_info=True)
    b, ib = cdps(prior, op, y, **{**kw, "generator": gen(3)}, solver=CG(100, 1e-10),
                 return_info=True)
    assert ib["cg_converged"].all() and ib["cg_iterations"].shape == (6, 2) and "cg_iterations" not in ia
    scale = float(a.abs().max())
    torch.testing.assert_close(b, a, rtol=0, atol=1e-8 * scale)
    torch.testing.assert_close(ib["residual"], ia["residual"], rtol=1e-7, atol=1e-9)


def test_cg_non_convergence_is_reported():
    prior = smooth_prior(*SHAPE)
    op = OPERATORS["dense-cg"][0]()
    y = measure(op, batch=2)
    with pytest.warns(CGNotConvergedWarning, match=r"iters=1\b"):
        _, info = cdps(prior, op, y, steps=4, sigma=0.05, solver=CG(iters=1), generator=gen(0), return_info=True)
    assert not bool(info["cg_converged"].all()) and bool((info["cg_iterations"] <= 1).all())
    assert bool((info["cg_residual"] > 0).any())


def test_a_nan_model_raises_the_nan_error_without_a_cg_warning():
    """A model that returns NaN fails CG's convergence test too: the NaN error names the cause, no CG warning
    sends the user to raise the budget first."""
    prior = smooth_prior(*SHAPE)
    nan_model = EpsDenoiser(lambda x, t: torch.full_like(x, float("nan")), prior.alphas_cumprod)
    op = OPERATORS["dense-cg"][0]()
    y = measure(op, batch=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CGNotConvergedWarning)
        with pytest.raises(FloatingPointError, match="NaN/Inf"):
            cdps(nan_model, op, y, steps=3, sigma=0.05, solver=CG(iters=2), generator=gen(0))


def test_last_step_uses_the_measurement_and_result_is_reproducible():
    prior = smooth_prior(*SHAPE)
    op = Inpainting.random(SHAPE[1:], 0.5, seed=2)
    y = measure(op, batch=2)
    x, info = cdps(prior, op, y, steps=5, sigma=GaussianNoise(0.05), generator=gen(2), return_info=True)
    assert info["residual"].shape == (5, 2) and bool(torch.isfinite(x).all())
    torch.testing.assert_close(cdps(prior, op, y, steps=5, sigma=0.05, generator=gen(2)), x, rtol=0, atol=0)
    fresh = cdps(prior, op, y, steps=5, sigma=0.05, chain="fresh", generator=gen(2))
    assert fresh.shape == x.shape and not torch.allclose(fresh, x)


def test_bad_inputs():
    prior = smooth_prior(*SHAPE)
    op = Inpainting.random(SHAPE[1:], 0.5, seed=2)
    y = measure(op)
    with pytest.raises(ValueError, match="sigma"):
        cdps(prior, op, y, steps=2, sigma=-0.05)
    with pytest.raises(ValueError, match="sigma"):
        cdps(prior, op, y, steps=2, sigma=0.0)
    with pytest.raises(ValueError, match="coupling"):
        cdps(prior, op, y, steps=2, sigma=0.05, coupling="backward")
    with pytest.raises(ValueError, match="chain"):
        cdps(prior, op, y, steps=2, sigma=0.05, chain="once")
    with pytest.raises(ValueError, match="solver"):
        cdps(prior, op, y, steps=2, sigma=0.05, solver="lu")
    with pytest.raises(ValueError, match="eta"):
        cdps(prior, op, y, steps=2, sigma=0.05, eta=0.0)
    with pytest.raises(ValueError, match="no exact solve"):
        cdps(prior, OPERATORS["dense-cg"][0](), measure(OPERATORS["dense-cg"][0]()), steps=2, sigma=0.05,
             solver="exact")
    with pytest.raises(ValueError, match="y of shape"):
        cdps(prior, op, torch.zeros(1, 1, 5, 5, dtype=D), steps=2, sigma=0.05)
    with pytest.raises(ValueError, match="iters"):
        cdps(prior, op, y, steps=2, sigma=0.05, solver=CG(iters=0))
    with pytest.raises(ValueError, match="tol must be > 0"):
        CG(tol=0.0)
    with pytest.raises(ValueError, match="last_step"):
        cdps(prior, op, y, steps=2, sigma=0.05, last_step="median")
    with pytest.raises(TypeError, match="sigma"):
        cdps(prior, op, y, steps=2, sigma="0.05")


def _gap_and_trace(prior, op, samples, seed=1):
    """(mean gap, trace ratio) of default C-DPS and of the talk's chain on one measurement, 30 steps."""
    x_true = prior.sample(1, gen(seed))
    y1 = op.A(x_true)
    y1 = y1 + 0.05 * torch.randn(y1.shape, generator=gen(seed + 1), dtype=D)
    post = prior.posterior(op, y1, sigma=0.05)
    mu, shift = post.mean.reshape(-1), (prior.mean - post.mean).reshape(-1).norm()
    y = y1.expand(samples, *y1.shape[1:]).contiguous()
    out = {}
    for name, options in (("none", {}), ("none-sample", {"last_step": "sample"}), ("markov", {"chain": "markov"})):
        x = cdps(prior, op, y, steps=30, sigma=0.05, generator=gen(7), **options).reshape(samples, -1)
        out[name] = (float((x.mean(0) - mu).norm() / shift),
                      float(torch.cov(x.T).diagonal().sum() / post.cov.diagonal().sum()))
    return out


@pytest.mark.parametrize("make_op", [lambda: Inpainting.random((6, 6), 0.7, seed=0), lambda: GaussianBlur(5, 0.8),
                                     lambda: SuperResolution(2, input_size=(6, 6))], ids=["random", "blur", "sr2"])
def test_default_chain_approaches_the_posterior(make_op):
    """The defaults on an exact 6×6 Gaussian prior (64 draws, 30 steps): mean gap under the talk's
    chain's; with last_step="sample" the spread is right too (the default's mean last step trades
    spread for PSNR: module docstring; 16×16, every task: benchmarks/results/posterior.md)."""
    idx = torch.arange(36)
    d2 = ((idx // 6)[:, None] - (idx // 6)[None]) ** 2 + ((idx % 6)[:, None] - (idx % 6)[None]) ** 2
    prior = GaussianPrior(0.1 * torch.ones(1, 6, 6, dtype=D),
                          0.2 * torch.exp(-d2.double() / 4.5) + 0.01 * torch.eye(36, dtype=D))
    res = _gap_and_trace(prior, make_op(), 64)
    assert res["none"][0] < 0.3 and res["none"][0] < res["markov"][0], res
    assert res["none-sample"][0] < 0.3 and 0.7 <= res["none-sample"][1] <= 1.5, res


def test_operator_chain_sends_the_chain_noise_through_A():
    """chain="operator": y_s = √ᾱ_s y + A u_s; its first chain level is A u with u ~ N(0, (1−ᾱ) I) in image
    space, so the coupling sees noise of covariance (1−ᾱ) AAᵀ (SR ×2 bicubic here), not (1−ᾱ) I."""
    prior = smooth_prior(*SHAPE)
    op = SuperResolution(2, input_size=SHAPE[1:])
    y = measure(op, batch=2)
    a = cdps(prior, op, y, steps=6, sigma=0.05, chain="operator", generator=gen(4))
    again = cdps(prior, op, y, steps=6, sigma=0.05, chain="operator", generator=gen(4))
    none = cdps(prior, op, y, steps=6, sigma=0.05, chain="none", generator=gen(4))
    assert bool(torch.isfinite(a).all()) and torch.equal(a, again) and not torch.allclose(a, none)
    mc = MeasurementChain(torch.zeros(4000, *SHAPE, dtype=D), "markov", 0.3, gen(1))
    seen = op.A(mc.u)  # the chain noise as the coupling sees it: covariance 0.7 AAᵀ
    expect = 0.7 * (operator_matrix(op, SHAPE) ** 2).sum(1).mean()
    assert abs(float(seen.pow(2).mean()) - float(expect)) < 0.05 * float(expect)


class _MaskNamedButUndeclared(LinearOperator):
    """Has a tensor called ``mask`` but declares no structure: must not take the diagonal path."""

    exact_solve = True

    def __init__(self, mask):
        super().__init__()
        self.mask = mask
        self._inner = Inpainting(mask)

    def _forward(self, x):
        return self._inner.A(x)

    _adjoint = _forward

    def _solve_exact(self, rhs, shift, scale):
        return self._inner._solve_exact(rhs, shift, scale)


class _DeclaredDiagonal(_MaskNamedButUndeclared):
    structure = "diagonal"

    def diagonal(self):
        return self._inner.mask


def test_structure_is_declared_not_guessed():
    mask = Inpainting.random(SHAPE[1:], 0.5, seed=2).mask
    assert Inpainting(mask).structure == "diagonal" and _choose_method("auto", Inpainting(mask)) == "diagonal"
    assert _choose_method("auto", _MaskNamedButUndeclared(mask)) == "exact"
    assert _choose_method("auto", _DeclaredDiagonal(mask)) == "diagonal"
    assert LinearOperator().structure is None and SuperResolution(2).structure is None
    prior = smooth_prior(*SHAPE)
    y = measure(Inpainting(mask), batch=2)
    a = cdps(prior, _DeclaredDiagonal(mask), y, steps=5, sigma=0.05, generator=gen(1))
    b = cdps(prior, _MaskNamedButUndeclared(mask), y, steps=5, sigma=0.05, generator=gen(1))
    # the same posterior by two routes (fused kernel; the operator's solve): float64 round-off in a different order,
    # which the prior's BLAS products carry through 5 steps (7e-12 on an AMD EPYC's MKL path, below 1e-12 on Xeon)
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_none_chain_caps_kappa_and_motion_blur_cg_converges():
    """Σ_s's floor keeps κ ≤ KAPPA_MAX at every step before the last (whose w = 1/σ² is the talk's), so
    the κ-sized CG budget converges in float32."""
    op = MotionBlur(7, 0.5, seed=0)
    size = (12, 12)
    levels = [1e-4, 3e-4, 0.01, 0.2, 0.7, 0.99, 1.0]
    bound = gram_bound(op, size)
    for a_t, a_s in zip(levels[:-1], levels[1:]):
        c, w = precisions("reverse", 1.0, a_t, a_s, 0.05, "none", bound)
        assert 1 + w * bound / c <= KAPPA_MAX * (1 + 1e-12)
    prior = smooth_prior(3, *size)
    y = op.A(torch.rand(1, 3, *size, generator=gen(0)) * 2 - 1) + 0.05 * torch.randn(1, 3, *size, generator=gen(1))
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("error", CGNotConvergedWarning)
        x, info = cdps(prior, op, y.float(), steps=8, sigma=0.05, generator=gen(2), solver=CG(step_iters=None),
                       return_info=True)
    assert bool(info["cg_converged"].all()) and int(info["cg_iterations"].max()) <= cg_iteration_bound(KAPPA_MAX, 1e-5)
    assert x.dtype == torch.float32 and bool(torch.isfinite(x).all())


def test_last_steps_denoise_mean_and_sample():
    """last_step="denoise" (default) returns Tweedie's x̂0 of the last step; "mean" is cdps_step without e₁, e₂;
    "sample" draws around it; all three share the loop before the last step (discrepancy=False: the steps as they
    are; a draw is never pulled)."""
    from diffsolve.solvers._loop import select_schedule

    prior = smooth_prior(*SHAPE)
    op = SuperResolution(2, input_size=SHAPE[1:])
    y = measure(op, batch=2)
    seen = {}
    kw = dict(steps=4, sigma=0.05, generator=gen(5))
    denoised = cdps(prior, op, y, **kw, callback=lambda i, t, x, _: seen.update({i: x}), discrepancy=False)
    mean = cdps(prior, op, y, steps=4, sigma=0.05, generator=gen(5), last_step="mean", discrepancy=False)
    schedule = select_schedule(prior, 4)
    a_t, t = float(schedule.alpha_t[3]), int(schedule.timesteps[3])
    assert float(schedule.alpha_s[3]) == 1.0
    eps = prior(seen[2], torch.full((2,), t))
    torch.testing.assert_close(denoised, (seen[2] - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t), rtol=1e-10, atol=1e-12)
    expect, _ = cdps_step(op, seen[2], eps, y, a_t, 1.0, sigma=0.05, e1=None, e2=None, chain="none")
    torch.testing.assert_close(mean, expect, rtol=1e-10, atol=1e-12)
    sample = cdps(prior, op, y, steps=4, sigma=0.05, generator=gen(5), last_step="sample")
    assert torch.equal(sample, cdps(prior, op, y, steps=4, sigma=0.05, generator=gen(5), last_step="sample",
                                    discrepancy=False))
    assert not torch.allclose(mean, sample) and not torch.allclose(mean, denoised)
    with pytest.raises(ValueError, match="last_step"):
        cdps(prior, op, y, steps=4, sigma=0.05, last_step="tweedie")


def test_sigma_beyond_the_dtype_is_refused_before_the_loop():
    """float32: σ = 1e-8 with CG (κ ~ 1e16) gave NaN after the loop; σ = 1e-30 overflowed 1/σ²."""
    prior = smooth_prior(1, 8, 8)
    op = MotionBlur(5, 0.5, seed=0)
    y = op.A(torch.rand(1, 1, 8, 8, generator=gen(0)) * 2 - 1)
    with pytest.raises(ValueError, match="condition number"):
        cdps(prior, op, y, steps=2, sigma=1e-8)
    with pytest.raises(ValueError, match="below 1e-15"):
        cdps(prior, op, y, steps=2, sigma=1e-30)
    with pytest.raises(ValueError, match="condition number"):  # the smallest σ taken, still beyond float32's CG
        cdps(prior, op, y, steps=2, sigma=1e-15)
    assert bool(torch.isfinite(cdps(prior, op, y, steps=2, sigma=0.05, generator=gen(1))).all())


def test_truncated_steps_are_the_converged_solve_in_the_limit():
    """Steps before the last solve Λ δ = √c e₁ + w Aᵀ(y_s − b_s − A m + e₂/√w) from δ = 0 (x_s = m + δ):
    given enough iterations, the same x_s as the tol-solved path warm-started at m."""
    prior = smooth_prior(1, 6, 7)
    op = MotionBlur(5, 0.5, seed=0)
    y = op.A(torch.randn(2, 1, 6, 7, generator=gen(1), dtype=D))
    kw = dict(steps=5, sigma=0.05, return_info=True)
    a, ia = cdps(prior, op, y, generator=gen(3), solver=CG(tol=1e-12, step_iters=None), **kw)
    b, ib = cdps(prior, op, y, generator=gen(3), solver=CG(tol=1e-12, step_iters=200), **kw)
    torch.testing.assert_close(b, a, rtol=0, atol=1e-9 * float(a.abs().max()))
    assert bool(ib["cg_converged"].all())


def test_default_cg_truncates_the_steps_before_the_last():
    from diffsolve.solvers.cdps import RUN_CG_ITERS
    prior = smooth_prior(1, 10, 10)
    op = MotionBlur(7, 0.5, seed=0)
    y = (op.A(torch.randn(2, 1, 10, 10, generator=gen(1), dtype=D)) + 0.05 * torch.randn(2, 1, 10, 10, generator=gen(2),
                                                                                          dtype=D)).float()
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("error", CGNotConvergedWarning)
        x, info = cdps(prior, op, y, steps=6, sigma=0.05, generator=gen(0), last_step="mean", return_info=True)
        _, default = cdps(prior, op, y, steps=6, sigma=0.05, generator=gen(0), return_info=True)
    assert default["cg_iterations"].shape == (5, 2)  # the "denoise" last step solves nothing
    its = info["cg_iterations"]
    assert bool((its[:-1] <= math.ceil(RUN_CG_ITERS / 6)).all()) and bool((its[:-1] >= 1).all())
    assert bool(info["cg_converged"][-1].all()) and bool((info["cg_residual"][-1] <= 1e-5).all())
    assert bool(torch.isfinite(x).all()) and 0.3 < float(info["data_consistency"].mean()) < 3
    with pytest.raises(ValueError, match="step_iters"):
        CG(step_iters=0)
    with pytest.raises(ValueError, match="step_iters"):
        CG(step_iters="fast")
    assert CG().steps_before_last(30) == 3 and CG().steps_before_last(10) == 9 and CG().steps_before_last(1000) == 1
    assert CG(step_iters=2).steps_before_last(10) == 2 and CG(step_iters=None).steps_before_last(10) is None


def test_prior_start_keeps_the_spread_the_truncation_drops():
    """CG(start="prior") starts each truncated step at the prior transition's draw e₁/√c: with one CG iteration
    a step, the spread of "sample" draws on an exact Gaussian posterior is nearer the posterior's than from
    δ = 0 (which leaves the unreached directions at no spread); converged, both are the same step."""
    prior = smooth_prior(1, 6, 7)
    op = MotionBlur(5, 0.5, seed=0)
    x_true = prior.sample(1, gen(1))
    y1 = op.A(x_true) + 0.05 * torch.randn(op.A(x_true).shape, generator=gen(2), dtype=D)
    post = prior.posterior(op, y1, sigma=0.05)
    y = y1.expand(256, *y1.shape[1:]).contiguous()
    ratio = {}
    for start in CG_STARTS:
        x = cdps(prior, op, y, steps=30, sigma=0.05, generator=gen(4), last_step="sample",
                 solver=CG(step_iters=1, start=start)).reshape(256, -1)
        ratio[start] = float(torch.cov(x.T).diagonal().sum() / post.cov.diagonal().sum())
    assert abs(math.log(ratio["prior"])) < abs(math.log(ratio["zero"])), ratio
    kw = dict(steps=5, sigma=0.05, last_step="sample")
    zero = cdps(prior, op, y[:2], generator=gen(3), solver=CG(tol=1e-12, step_iters=300), **kw)
    torch.testing.assert_close(cdps(prior, op, y[:2], generator=gen(3),
                                    solver=CG(tol=1e-12, step_iters=300, start="prior"), **kw),
                               zero, rtol=0, atol=1e-8 * float(zero.abs().max()))
    with pytest.raises(ValueError, match="start"):
        CG(start="mean")


def test_auto_truncates_before_the_last_step_even_with_an_exact_solve():
    """"auto" on a separable blur (exact solve): steps before the last by truncated CG, the last ("mean") by the
    exact solve; "exact" solves every step exactly."""
    prior = smooth_prior(1, 6, 7)
    op = GaussianBlur(3, 0.7)
    y = op.A(torch.randn(2, 1, 6, 7, generator=gen(1), dtype=D))
    _, auto = cdps(prior, op, y, steps=6, sigma=0.05, generator=gen(3), last_step="mean", return_info=True)
    _, exact = cdps(prior, op, y, steps=6, sigma=0.05, generator=gen(3), solver="exact", last_step="mean",
                    return_info=True)
    assert auto["cg_iterations"].shape == (5, 2) and bool((auto["cg_iterations"] <= 15).all())
    assert "cg_iterations" not in exact
    full, _ = cdps(prior, op, y, steps=6, sigma=0.05, generator=gen(3), solver=CG(tol=1e-12, step_iters=500),
                   last_step="mean", return_info=True)
    torch.testing.assert_close(full, cdps(prior, op, y, steps=6, sigma=0.05, generator=gen(3), solver="exact",
                                          last_step="mean"), rtol=0, atol=1e-8)
