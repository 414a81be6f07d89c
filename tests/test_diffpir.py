"""DiffPIR: the proximal data step and the re-noising against dense linear algebra on an exact Gaussian prior,
the σ → 0 limit, bad inputs (every backend and batch independence: tests/test_methods_contract.py)."""

from __future__ import annotations

import math

import pytest
import torch
from _small_problem import D, OPS, SHAPE, dense_pinv, gen, measure, prior

from diffsolve.models.priors import operator_matrix
from diffsolve.solvers._inverse import SINGULAR_CUTOFF, discrepancy_weight, measured_entries, noise_ceiling
from diffsolve.solvers._loop import select_schedule
from diffsolve.solvers.diffpir import DEFAULT_LAM, data_rho, diffpir, reproject_step

def gated(op, y, x0, x0p, sigma):
    """The last step's discrepancy gate by bisection, per sample: x̂0 + g (x̂0' − x̂0) with the largest g ∈ [0, 1]
    such that ‖A(·) − y‖² over the measured entries stays ≥ ½ m σ²."""
    floor = 0.5 * measured_entries(op, y) * sigma**2
    out = []
    for b in range(y.shape[0]):
        def sq(g):
            return float(op.data_part(op.A(x0[b:b + 1] + g * (x0p - x0)[b:b + 1]) - y[b:b + 1]).pow(2).sum())
        if sq(1.0) >= floor[b]:
            g = 1.0
        elif sq(0.0) <= floor[b]:
            g = 0.0
        else:
            lo, hi = 0.0, 1.0
            for _ in range(80):
                lo, hi = ((lo + hi) / 2, hi) if sq((lo + hi) / 2) >= floor[b] else (lo, (lo + hi) / 2)
            g = lo
        out.append(x0[b] + g * (x0p - x0)[b])
    return torch.stack(out)


def dense_loop(pr, a, y, x_T, steps, sigma, lam, zeta_noise=None, op=None, cap=1.0):
    """ζ = 0 (or ζ = 1 with the given per-step noise): Algorithm 1 with dense solves, x̂0's error variance σ̄_t² capped
    at ``cap`` (None: the paper's); with ``op`` the last step's x̂0' passes the discrepancy gate (:func:`gated`)."""
    sched = select_schedule(pr, steps, "trailing")
    x = x_T.clone()
    for i, (a_t, a_s) in enumerate(zip(sched.alpha_t.tolist(), sched.alpha_s.tolist())):
        t = sched.timesteps[i].expand(x.shape[0])
        eps = pr(x, t)
        x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
        if sigma > 0:
            rho = lam * sigma**2 / ((1 - a_t) / a_t if cap is None else min((1 - a_t) / a_t, cap))
            k = rho * torch.eye(16, dtype=D) + a.T @ a
            x0p = torch.linalg.solve(k, (y.flatten(1) @ a + rho * x0.flatten(1)).T).T.view_as(x)
            if op is not None and i == steps - 1:
                x0p = gated(op, y, x0, x0p, sigma)
        else:  # the reference codes' H_pinv: a separable blur's per-axis values below 3e-2 count as zero
            pinv = dense_pinv(op, SINGULAR_CUTOFF) if op is not None else torch.linalg.pinv(a)
            x0p = x0 - ((x0.flatten(1) @ a.T - y.flatten(1)) @ pinv.T).view_as(x)
        eps_p = (x - math.sqrt(a_t) * x0p) / math.sqrt(1 - a_t)
        x = math.sqrt(a_s) * x0p + (math.sqrt(1 - a_s) * eps_p if zeta_noise is None
                                    else math.sqrt(1 - a_s) * zeta_noise[i])
    return x


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("sigma", [0.05, 0.0])
def test_loop_matches_dense(name, sigma):
    pr, op = prior(), OPS[name]()
    y = measure(op) if sigma > 0 else op.A(torch.randn(2, *SHAPE, generator=gen(5), dtype=D))
    x_T = torch.randn(2, *SHAPE, generator=gen(7), dtype=D)
    out = diffpir(pr, op, y, steps=4, x_T=x_T, sigma=sigma, zeta=0.0)
    ref = dense_loop(pr, operator_matrix(op, SHAPE), y, x_T, 4, sigma, DEFAULT_LAM, op=op)
    assert torch.allclose(out, ref, atol=1e-8)
    if sigma == 0:  # the ρ → 0 limit ends on A x = y exactly on the range A⁺ keeps (last step: x = x̂0')
        kept = operator_matrix(op, SHAPE) @ dense_pinv(op, SINGULAR_CUTOFF)
        assert torch.allclose((op.A(out) - y).flatten(1) @ kept.T, torch.zeros_like(y.flatten(1)), atol=1e-8)


def test_zeta_one_is_fresh_noise():
    """ζ = 1: x_s = √ᾱ_s x̂0' + √(1−ᾱ_s) z with z the generator's draws after x_T."""
    pr, op = prior(), OPS["blur"]()
    y = measure(op)
    x_T = torch.randn(2, *SHAPE, generator=gen(7), dtype=D)
    g = gen(4)
    out = diffpir(pr, op, y, steps=3, x_T=x_T, sigma=0.05, lam=2.0, zeta=1.0, generator=g)
    g = gen(4)
    noise = [torch.randn(2, *SHAPE, generator=g, dtype=D) for _ in range(3)]
    ref = dense_loop(pr, operator_matrix(op, SHAPE), y, x_T, 3, 0.05, 2.0, zeta_noise=noise, op=op)
    assert torch.allclose(out, ref, atol=1e-8)


def test_reproject_step_algebra():
    x, eps, corr = (torch.randn(2, *SHAPE, generator=gen(s), dtype=D) for s in (1, 2, 3))
    z = torch.randn(2, *SHAPE, generator=gen(4), dtype=D)
    a_t, a_s, k_e, k_z = 0.3, 0.6, 0.4, 0.2
    out, x0p = reproject_step(x, eps, corr, a_t, a_s, k_e, k_z, noise=z, return_x0=True)
    ref_x0p = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t) - corr
    eps_p = (x - math.sqrt(a_t) * ref_x0p) / math.sqrt(1 - a_t)
    assert torch.allclose(x0p, ref_x0p, atol=1e-12)
    assert torch.allclose(out, math.sqrt(a_s) * ref_x0p + k_e * eps_p + k_z * z, atol=1e-12)


def test_rho_rule():
    assert data_rho(2.0, 0.1, 0.5) == pytest.approx(2.0 * 0.01 / 1.0)
    assert data_rho(2.0, 0.1, 0.8) == pytest.approx(2.0 * 0.01 / 0.25)
    assert data_rho(2.0, 0.1, 0.2) == pytest.approx(2.0 * 0.01 / 1.0)  # σ̄_t² = 4 capped at 1
    assert data_rho(2.0, 0.1, 0.2, None) == pytest.approx(2.0 * 0.01 / 4.0)  # the paper's


@pytest.mark.parametrize("cap", [None, 0.5])
def test_the_variance_cap_option_matches_dense(cap):
    """x0_variance_cap=None is the paper's ρ_t (the peers' agreement runs it); another cap changes only the steps whose
    σ̄_t² exceeds it."""
    pr, op = prior(), OPS["blur"]()
    y = measure(op)
    x_T = torch.randn(2, *SHAPE, generator=gen(7), dtype=D)
    out = diffpir(pr, op, y, steps=4, x_T=x_T, sigma=0.05, zeta=0.0, x0_variance_cap=cap)
    ref = dense_loop(pr, operator_matrix(op, SHAPE), y, x_T, 4, 0.05, DEFAULT_LAM, op=op, cap=cap)
    assert torch.allclose(out, ref, atol=1e-8)
    assert not torch.allclose(out, diffpir(pr, op, y, steps=4, x_T=x_T, sigma=0.05, zeta=0.0), atol=1e-6)


def test_return_info_and_scale_free():
    pr, op = prior(), OPS["sr"]()
    y = measure(op)
    x, info = diffpir(pr, op, y, steps=3, sigma=0.05, generator=gen(0), return_info=True)
    assert set(info) == {"residual", "timesteps", "final_residual", "data_consistency", "nfe"}
    assert info["residual"].shape == (3, 2)
    # A → kA, y → ky, σ → kσ: the same samples
    k = 3.0

    class Scaled:
        def __init__(self, base):
            self.base = base

        def A(self, v):
            return k * self.base.A(v)

        def A_adjoint(self, v):
            return k * self.base.A_adjoint(v)

        def solve(self, rhs, shift, scale):
            return self.base.solve(rhs, shift=shift, scale=scale * k * k)

    x2 = diffpir(pr, Scaled(op), k * y, steps=3, sigma=k * 0.05, generator=gen(0))
    assert torch.allclose(x, x2, atol=1e-10)


def test_bad_inputs():
    op, pr = OPS["sr"](), prior()
    y = measure(op)
    with pytest.raises(TypeError, match="sigma"):
        diffpir(pr, op, y, steps=3)
    with pytest.raises(ValueError, match="sigma"):
        diffpir(pr, op, y, steps=3, sigma=float("nan"))
    with pytest.raises(ValueError, match="lam"):
        diffpir(pr, op, y, steps=3, sigma=0.1, lam=0.0)
    with pytest.raises(ValueError, match="zeta"):
        diffpir(pr, op, y, steps=3, sigma=0.1, zeta=1.5)
    with pytest.raises(ValueError, match="x0_variance_cap must be > 0 or None"):
        diffpir(pr, op, y, steps=3, sigma=0.1, x0_variance_cap=0)
    with pytest.raises(TypeError, match="x0_variance_cap must be a number"):
        diffpir(pr, op, y, steps=3, sigma=0.1, x0_variance_cap="1")
    with pytest.raises(TypeError, match="zeta"):
        diffpir(pr, op, y, steps=3, sigma=0.1, zeta=True)

    class Bare:  # A and Aᵀ only
        A, A_adjoint = op.A, op.A_adjoint

    # without solve the data step runs CG on AᵀA: on 16 pixels its CG_ITERS (≥ 16) iterations are the exact solve
    bare = diffpir(pr, Bare(), y, steps=3, sigma=0.1, generator=gen(4))
    assert torch.allclose(bare, diffpir(pr, op, y, steps=3, sigma=0.1, generator=gen(4)), atol=1e-8)
    with pytest.raises(TypeError, match="operator.pseudo_inverse"):
        diffpir(pr, Bare(), y, steps=3, sigma=0.0)


def test_cg_data_step_matches_dense_and_starts_at_the_prox_centre():
    """Without an exact solve (reflect motion blur) the data step runs CG_ITERS plain CG iterations
    started at x̂0: converged on this 16-pixel problem it is the dense loop; where ρ is large, one iteration
    from x̂0 is nearer the solution than one from zero."""
    from diffsolve.operators import MotionBlur
    from diffsolve.solvers.diffpir import CG_ITERS

    pr, op = prior(), MotionBlur(3, 0.5, seed=0)
    assert not op.exact_solve
    y = measure(op)
    x_T = torch.randn(2, *SHAPE, generator=gen(7), dtype=D)
    ref = dense_loop(pr, operator_matrix(op, SHAPE), y, x_T, 4, 0.05, DEFAULT_LAM, op=op)
    calls = []

    class Spy:  # the operator, recording what the data step asks of its solve
        def __getattr__(self, name):
            return getattr(op, name)

        def solve_unchecked(self, rhs, shift, scale, **options):
            calls.append((rhs, shift, options))
            return op.solve_unchecked(rhs, shift, scale, **options)

    out = diffpir(pr, Spy(), y, steps=4, x_T=x_T, sigma=0.05, zeta=0.0)
    assert torch.allclose(out, ref, atol=1e-8)
    # one solve per step; the result fits y within the noise, so the final pull runs none
    assert len(calls) == 4 and all(o["max_iters"] == CG_ITERS and o["x0"].shape == x_T.shape for _, _, o in calls)
    assert bool(((op.A(out) - y).flatten(1).pow(2).sum(1) <= noise_ceiling(op, y, 0.05)).all())
    rhs, rho, options = calls[3]  # the last step: x0 is x̂0, the prox centre (rhs = Aᵀy + ρ x̂0)
    x0 = options["x0"]
    assert torch.allclose(rhs, op.A_adjoint(y) + rho * x0, atol=1e-12)
    rho = 2.0  # a late step of a 50-step run (ρ_t = λσ²ᾱ_t/(1−ᾱ_t) ≈ 2 at t ≈ 20)
    rhs = op.A_adjoint(y) + rho * x0
    exact = op.solve_unchecked(rhs, rho, 1.0, max_iters=200)
    warm = op.solve_unchecked(rhs, rho, 1.0, max_iters=1, x0=x0)
    cold = op.solve_unchecked(rhs, rho, 1.0, max_iters=1)
    assert float((warm - exact).norm()) < 0.6 * float((cold - exact).norm())


def test_discrepancy_weight_cases():
    """g = 1 where the whole step stays above the floor, 0 where r0 is below it already, else ‖r0 − g d‖² = floor."""
    r0 = torch.tensor([[3.0, 0.0], [3.0, 0.0], [0.5, 0.0], [3.0, 4.0]], dtype=D)
    d = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.5, 0.0], [0.0, 0.0]], dtype=D)
    floor = torch.tensor([1.0, 1.0, 1.0, 1.0], dtype=D)
    g = discrepancy_weight(r0, d, floor)
    assert g.tolist() == [1.0, pytest.approx(2 / 3), 0.0, 1.0]
    assert float((r0[1] - g[1] * d[1]).pow(2).sum()) == pytest.approx(1.0)


def test_last_step_stops_at_the_noise_floor():
    """On a mask the last data step (ρ small) would copy y's noise onto the observed pixels; the gate keeps the
    result's residual at σ√(m/2) or above, per sample."""
    from diffsolve.metrics import data_consistency

    pr, op = prior(), OPS["inpaint"]()
    y = measure(op, sigma=0.2)
    out = diffpir(pr, op, y, steps=3, sigma=0.2, generator=[gen(1), gen(2)])
    assert (data_consistency(op, out, y, 0.2) >= 0.5**0.5 - 1e-9).all()
    paper = diffpir(pr, op, y, steps=3, sigma=0.2, generator=[gen(1), gen(2)], discrepancy=False)
    assert (data_consistency(op, paper, y, 0.2) < 0.5**0.5).any()  # what the gate prevents
    with pytest.raises(TypeError, match="discrepancy"):
        diffpir(pr, op, y, steps=3, sigma=0.2, discrepancy="yes")


def test_zeta_defaults_to_fresh_noise_on_every_operator():
    """The default ζ is 1 on masks, blurs and SR alike: the same draws as zeta=1.0, other than zeta=0.3's."""
    from diffsolve.solvers.diffpir import DEFAULT_ZETA

    assert DEFAULT_ZETA == 1.0
    pr, x_T = prior(), torch.randn(2, *SHAPE, generator=gen(7), dtype=D)
    for name in ("inpaint", "blur", "sr"):
        op = OPS[name]()
        y = measure(op)
        runs = [diffpir(pr, op, y, steps=3, x_T=x_T, sigma=0.05, generator=gen(4), **z)
                for z in ({}, {"zeta": 1.0}, {"zeta": 0.3})]
        assert torch.equal(runs[0], runs[1]), name
        assert not torch.allclose(runs[0], runs[2]), name


def test_the_data_step_in_an_svd_does_not_divide_rounding_by_a_tiny_rho():
    """At the first steps ρ_t ≈ 1e-7: solving (ρ_t I + AᵀA) x̂0' = Aᵀy + ρ_t x̂0 in float32 divides the rounding on
    A's null space by ρ_t (a dense compressed-sensing A: float32 off float64 by 5e-2). The step in A's SVD,
    x̂0' − x̂0 = V diag(s/(ρ_t + s²)) Uᵀ(y − A x̂0), keeps float32 at its rounding, and a sample alone equals it in a
    batch."""
    from diffsolve.models import EpsDenoiser
    from diffsolve.operators import MatrixOperator, SuperResolution
    from diffsolve.schedules import make_alphas_cumprod

    den = EpsDenoiser(lambda x, t: 0.1 * x, make_alphas_cumprod())
    for op in (MatrixOperator.gaussian(192, (3, 16, 16), seed=0), SuperResolution(4)):
        x = (0.5 * torch.randn(3, 3, 16, 16, generator=gen(0))).clamp(-1, 1)
        y = op.A(x) + 0.05 * torch.randn(op.A(x).shape, generator=gen(1))
        x_T = torch.randn(3, 3, 16, 16, generator=gen(2))
        for steps in (2, 20):
            kw = dict(sigma=0.05, steps=steps, zeta=0.0)
            a = diffpir(den, op, y, x_T=x_T, **kw)
            ref = diffpir(den, op, y.double(), x_T=x_T.double(), **kw)
            alone = diffpir(den, op, y[1:2].clone(), x_T=x_T[1:2].clone(), **kw)
            scale = float(ref.abs().max())
            assert float((a.double() - ref).abs().max()) < 1e-5 * scale, (op, steps)
            assert float((a[1] - alone[0]).abs().max()) < 1e-5 * scale, (op, steps)


def test_default_zeta_is_nearer_the_exact_posterior_mean_on_a_blur():
    """The reason ζ = 1 is the default on blurs too: on a 16×16 Gaussian prior (exact posterior mean μ) and a
    Gaussian blur, 128 DiffPIR draws at N = 20 average to within a smaller gap ‖x̄ − μ‖/‖μ_prior − μ‖ than with the
    deblurring scripts' ζ = 0.3, whose re-noising carries the data step's amplified noise forward."""
    from diffsolve.models import GaussianPrior
    from diffsolve.operators import GaussianBlur

    n = 16
    idx = torch.arange(n * n)
    d2 = ((idx // n)[:, None] - (idx // n)[None]) ** 2 + ((idx % n)[:, None] - (idx % n)[None]) ** 2
    cov = 0.3 * torch.exp(-d2.double() / 8.0) + 1e-3 * torch.eye(n * n, dtype=D)
    op = GaussianBlur(5, 1.5)
    for seed in (0, 1):
        pr = GaussianPrior(0.1 * torch.randn(1, n, n, generator=gen(seed), dtype=D), cov)
        x = pr.sample(1, generator=gen(seed + 10))
        y1 = op.A(x) + 0.05 * torch.randn(op.A(x).shape, generator=gen(seed + 20), dtype=D)
        mu = pr.posterior(op, y1, sigma=0.05).mean.reshape(-1)
        y = y1.expand(128, *y1.shape[1:]).contiguous()

        def gap(**kw):
            out = diffpir(pr, op, y, steps=20, sigma=0.05, generator=gen(5), **kw)
            return float((out.mean(0).reshape(-1) - mu).norm() / (pr.mean.reshape(-1) - mu).norm())

        default, reference = gap(), gap(zeta=0.3)
        assert default < 0.7 * reference and default < 0.08, (seed, default, reference)
