"""MMPS: the corrected x̂0 against the exact Gaussian posterior mean E[x0 | x_t, y] (dense algebra, GMRES and
CG), the sample mean against the exact posterior mean, bad input, and the measurement-space GMRES against dense
solves, CG, itself batched, closed Krylov spaces and NaN (every backend and MMPS's batch independence:
tests/test_methods_contract.py)."""

from __future__ import annotations

import math

import pytest
import torch

from diffsolve.methods import METHODS
from diffsolve.models import GaussianPrior
from diffsolve.operators import CallableOperator, Inpainting, LinearOperator, SuperResolution
from diffsolve.solvers._krylov import measurement_cg, measurement_gmres
from diffsolve.solvers.mmps import mmps, posterior_mean

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


@pytest.mark.parametrize("solver", ["gmres", "cg"])
@pytest.mark.parametrize("t", [100, 500, 900])
def test_corrected_mean_is_exact_gaussian_posterior_mean(t, solver):
    p, mat, op, sigma = prior(), matrix(), None, 0.1
    op = dense_operator(mat)
    a = float(p.alphas_cumprod[t])
    x_t = torch.randn(2, *SHAPE, generator=gen(5), dtype=D)
    y = op.A(p.sample(2, generator=gen(6))) + sigma * torch.randn(2, 1, 1, M, generator=gen(7), dtype=D)
    xg = x_t.clone().requires_grad_(True)
    eps = p(xg, torch.full((2,), t))
    x0 = (xg - (1 - a) ** 0.5 * eps) / a**0.5
    x0y, r = posterior_mean(op, xg, eps, y, a, sigma, iters=M, solver=solver)
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



def test_measurement_cg_skips_directions_below_the_floor():
    """K ⪰ floor·I when Σ is PSD: a sample whose ⟨p, K p⟩ falls far below floor·⟨p, p⟩ (a learned Jacobian that
    is not PSD) takes no step instead of an unbounded one; a sample above the floor is solved as before, and
    ``floor=0`` keeps the old rule (only ⟨p, K p⟩ ≤ 0 skipped)."""
    floor = 0.5
    d = torch.tensor([[0.01 * floor], [2 * floor]], dtype=D)  # sample 0 far below the floor, sample 1 above it
    rhs = torch.randn(2, 4, generator=gen(12), dtype=D)
    u = measurement_cg(lambda v: d * v, rhs, 2, floor=floor)
    assert torch.equal(u[0], torch.zeros(4, dtype=D))
    assert torch.allclose(u[1], rhs[1] / d[1], atol=1e-12)
    old = measurement_cg(lambda v: d * v, rhs, 2)
    assert torch.allclose(old, rhs / d, atol=1e-9)  # without a floor: the 100× step below it

def test_sample_mean_near_exact_posterior_mean():
    p, mat, sigma = prior(), matrix(), 0.1
    op = dense_operator(mat)
    x = p.sample(1, generator=gen(9))
    y1 = op.A(x) + sigma * torch.randn(1, 1, 1, M, generator=gen(10), dtype=D)
    b = 400
    out = mmps(p, op, y1.expand(b, 1, 1, M).contiguous(), steps=50, sigma=sigma, iters=M, generator=gen(11))
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
    (dict(sigma=0.1, iters=0), ValueError, "iters must be >= 1.*got 0"),
    (dict(sigma=0.1, iters=1.5), TypeError, "iters must be an int.*1.5"),
    (dict(sigma=0.1, iters=True), TypeError, "iters"),
    (dict(sigma=0.1, solver="bicg"), ValueError, "solver must be one of.*'bicg'"),
    (dict(sigma=0.1, solver=None), TypeError, "solver must be a str"),
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


# ------------------------------------------------------------------ measurement-space GMRES
def _batched(mats: torch.Tensor):
    return lambda v: torch.einsum("bij,bj->bi", mats, v)


def _nonsymmetric(b: int, n: int, seed: int) -> torch.Tensor:
    g = gen(seed)
    return torch.eye(n, dtype=D) + 0.6 * torch.randn(b, n, n, generator=g, dtype=D) / n**0.5


def test_gmres_full_iterations_is_the_dense_solve():
    mats = _nonsymmetric(3, 7, 20)  # per-sample different nonsymmetric systems
    assert (mats - mats.transpose(1, 2)).abs().max() > 0.1
    rhs = torch.randn(3, 7, generator=gen(21), dtype=D)
    u = measurement_gmres(_batched(mats), rhs, 7)
    ref = torch.linalg.solve(mats, rhs)
    assert (u - ref).abs().max() < 1e-10, (u - ref).abs().max()
    # CG on the same nonsymmetric systems is not the solve
    assert (measurement_cg(_batched(mats), rhs, 7) - ref).abs().max() > 1e-3


def test_gmres_residual_never_grows_and_keeps_the_shape():
    mats = _nonsymmetric(2, 6, 22)
    rhs = torch.randn(2, 1, 2, 3, generator=gen(23), dtype=D)  # (B, ...) measurement shape

    def apply(v):
        return torch.einsum("bij,bj->bi", mats, v.flatten(1)).view_as(v)

    last = rhs.flatten(1).norm(dim=1)
    for k in range(1, 7):
        u = measurement_gmres(apply, rhs, k)
        assert u.shape == rhs.shape
        res = (rhs - apply(u)).flatten(1).norm(dim=1)
        assert (res <= last * (1 + 1e-12)).all(), (k, res, last)
        last = res
    assert (last < 1e-10).all()


def test_gmres_equals_cg_on_spd_systems():
    g = gen(24)
    root = torch.randn(3, 6, 6, generator=g, dtype=D)
    spd = root @ root.transpose(1, 2) + torch.eye(6, dtype=D)
    rhs = torch.randn(3, 6, generator=g, dtype=D)
    gm = measurement_gmres(_batched(spd), rhs, 6)
    cg = measurement_cg(_batched(spd), rhs, 6)
    assert (gm - cg).abs().max() < 1e-10
    # one iteration on c·I: both exact
    assert torch.allclose(measurement_gmres(lambda v: 3 * v, rhs, 1), rhs / 3, atol=1e-14)


def test_gmres_batch_independence():
    mats = _nonsymmetric(4, 5, 25)
    rhs = torch.randn(4, 5, generator=gen(26), dtype=D)
    for k in (1, 3, 5):
        full = measurement_gmres(_batched(mats), rhs, k)
        for i in range(4):
            alone = measurement_gmres(_batched(mats[i:i + 1]), rhs[i:i + 1], k)
            assert torch.allclose(full[i:i + 1], alone, atol=1e-13, rtol=0), (k, i)


def test_gmres_early_closure_zero_rhs_and_nan():
    # rhs = 0 → u = 0; an eigenvector rhs closes the Krylov space after one step (exact answer, no NaN)
    mats = _nonsymmetric(2, 4, 27)
    mats[1] = torch.diag(torch.tensor([2.0, 3.0, 4.0, 5.0], dtype=D))
    rhs = torch.zeros(2, 4, dtype=D)
    rhs[1, 2] = 1.0
    u = measurement_gmres(_batched(mats), rhs, 4)
    assert torch.equal(u[0], torch.zeros(4, dtype=D))
    assert torch.allclose(u[1], rhs[1] / 4.0, atol=1e-15)
    # NaN from the operator propagates to that sample only, not hidden as "closed"
    rhs = torch.randn(2, 4, generator=gen(28), dtype=D)

    def bad(v):
        out = _batched(mats)(v)
        return torch.cat([out[:1], torch.full_like(out[1:], float("nan"))])

    u = measurement_gmres(bad, rhs, 3)
    assert torch.isfinite(u[0]).all() and torch.isnan(u[1]).all()
    rhs[0, 0] = float("nan")
    assert torch.isnan(measurement_gmres(_batched(mats), rhs, 2)[0]).all()


def test_gmres_leaves_the_callers_vectors_alone():
    """GMRES updates K v in place; an ``apply`` that returns its input (K = I, or a view of it) must not have the
    basis or rhs overwritten: the answer is rhs, and rhs is unchanged."""
    rhs = torch.randn(3, 2, 4, generator=gen(31), dtype=D)
    keep = rhs.clone()
    for apply in (lambda v: v, lambda v: v.view_as(v)):
        for k in (1, 3):
            u = measurement_gmres(apply, rhs, k)
            assert torch.equal(rhs, keep)
            assert torch.allclose(u, rhs, atol=1e-14)


def test_gmres_float32_input():
    mats = _nonsymmetric(2, 5, 29).float()
    rhs = torch.randn(2, 5, generator=gen(30)).float()
    u = measurement_gmres(_batched(mats), rhs, 5)
    assert u.dtype == torch.float32
    assert torch.allclose(u, torch.linalg.solve(mats, rhs), atol=1e-4)


def test_mmps_gmres_converges_to_the_exact_posterior_mean():
    """The corrected x̂0_y on the exact Gaussian prior (tests/_small_problem.py, blur) approaches E[x0 | x_t, y]
    as the GMRES iterations grow, exact at m = 16 (pixels measured by the 4×4 blur)."""
    from _small_problem import OPS, SHAPE as S, measure, prior as small_prior

    p, op = small_prior(), OPS["blur"]()
    y = measure(op)
    n = 16
    mat = torch.stack([op.A(e.view(1, *S)).flatten() for e in torch.eye(n, dtype=D)], 1)  # (m, n)
    t = 500
    a = float(p.alphas_cumprod[t])
    x_t = torch.randn(2, *S, generator=gen(31), dtype=D)
    s_inv = torch.linalg.inv(p.cov)
    prec = s_inv + a / (1 - a) * torch.eye(n, dtype=D) + mat.T @ mat / 0.05**2
    rhs = (s_inv @ p.mean.reshape(-1))[None] + a**0.5 / (1 - a) * x_t.flatten(1) + y.flatten(1) @ mat / 0.05**2
    ref = torch.linalg.solve(prec, rhs.T).T.reshape(x_t.shape)
    gaps = []
    for k in (1, 2, 4, 8, 16):
        xg = x_t.clone().requires_grad_(True)
        x0y, _ = posterior_mean(op, xg, p(xg, torch.full((2,), t)), y, a, 0.05, iters=k, solver="gmres")
        gaps.append(float((x0y - ref).norm() / ref.norm()))
    assert all(b <= a_ * 1.01 for a_, b in zip(gaps, gaps[1:])), gaps
    assert gaps[0] > 1e-3 and gaps[-1] < 1e-9, gaps


@pytest.mark.parametrize("dtype, tol", [(D, 1e-10), (torch.float32, 1e-4)])
def test_gmres_more_iterations_than_the_dimension_stays_the_solve(dtype, tol):
    # past n iterations w is rounding noise: the space closes instead of adding a spurious direction
    mats = _nonsymmetric(3, 4, 32).to(dtype)
    rhs = torch.randn(3, 4, generator=gen(33), dtype=D).to(dtype)
    ref = torch.linalg.solve(mats.double(), rhs.double())
    for k in (4, 5, 8, 12):
        u = measurement_gmres(_batched(mats), rhs, k)
        assert (u.double() - ref).abs().max() < tol * ref.abs().max(), (k, (u.double() - ref).abs().max())


@pytest.mark.parametrize("solve", [measurement_gmres, measurement_cg], ids=["gmres", "cg"])
def test_solver_weights_rebuild_u_from_the_applied_vectors(solve):
    """``weights=True``: u = Σ_i w_i p_i over the vectors given to ``apply``, in call order (what MMPS uses to form
    Σ_t Aᵀ u from the products it already took)."""
    g = gen(40)
    root = torch.randn(3, 6, 6, generator=g, dtype=D)
    spd = root @ root.transpose(1, 2) + torch.eye(6, dtype=D)
    rhs = torch.randn(3, 2, 3, generator=g, dtype=D)
    applied = []

    def apply(v):
        applied.append(v.clone())
        return torch.einsum("bij,bj->bi", spd, v.flatten(1)).view_as(v)

    u, w = solve(apply, rhs, 4, weights=True)
    assert w.shape == (3, 4) and len(applied) == 4
    rebuilt = sum(w[:, i].view(-1, 1, 1) * p for i, p in enumerate(applied))
    assert torch.allclose(rebuilt, u, atol=1e-12)
    assert torch.equal(solve(apply, rhs, 4), u)
    none, w_only = solve(apply, rhs, 4, weights=True, solution=False)
    assert none is None and torch.equal(w_only, w)
    with pytest.raises(ValueError, match="weights=True"):
        solve(apply, rhs, 4, solution=False)


def test_mmps_takes_iters_backward_passes_a_step():
    """One forward and ``iters`` VJPs per step (Σ_t Aᵀ u reuses the solver's products), the same x as a direct
    evaluation of x̂0 + Σ_t Aᵀ u with a separate VJP (dense check on the exact prior: test above)."""
    p = prior()
    op = dense_operator(matrix())
    y = torch.randn(2, 1, 1, M, generator=gen(41), dtype=D)
    calls = {"fwd": 0, "bwd": 0}

    class Counting(torch.autograd.Function):
        @staticmethod
        def forward(ctx, e):
            return e.clone()

        @staticmethod
        def backward(ctx, g):
            calls["bwd"] += 1
            return g

    def den(x, t):
        calls["fwd"] += 1
        return Counting.apply(p(x, t))

    den.alphas_cumprod = p.alphas_cumprod
    for iters in (1, 3):
        calls.update(fwd=0, bwd=0)
        mmps(den, op, y, steps=5, sigma=0.1, iters=iters, generator=gen(42))
        assert calls == {"fwd": 5, "bwd": 5 * iters}


def test_cg_past_one_iteration_warns_unless_the_jacobian_is_declared_symmetric():
    """CG assumes a symmetric PSD K; exact priors declare ``symmetric_jacobian``, a learned denoiser cannot, and
    past one iteration CG lost 2-3 of 4 samples with the shipped UNet (results/mmps-solvers.md): a warning names
    the fix before the loop. One iteration, GMRES, and exact priors are silent."""
    import warnings as _warnings

    from diffsolve.models import EpsDenoiser

    p, mat = prior(), matrix()
    op = dense_operator(mat)
    y = op.A(p.sample(1, generator=gen(13)))
    learned = EpsDenoiser(lambda x, t: 0.1 * torch.tanh(x), p.alphas_cumprod)
    with pytest.warns(UserWarning, match=r"solver='cg' with iters=2 .*solver='gmres'"):
        mmps(learned, op, y, steps=2, sigma=0.1, solver="cg", iters=2, generator=gen(14))
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")  # 2 steps do not fit y: the consistency warning is not this test's
        _warnings.filterwarnings("error", message="mmps: solver='cg'")
        for den, solver, iters in ((learned, "cg", 1), (learned, "gmres", 3), (p, "cg", 3)):
            mmps(den, op, y, steps=2, sigma=0.1, solver=solver, iters=iters, generator=gen(14))



@pytest.mark.parametrize("dtype,kappa,tol", [(torch.float64, 1e6, 1e-8), (torch.float32, 1e3, 1e-3)])
def test_gmres_past_the_dimension_on_ill_conditioned_systems(dtype, kappa, tol):
    """More iterations than measurements (8 on m = 4) on K with condition ``kappa`` (a late step's σ²I + γ A Σ Aᵀ,
    slightly nonsymmetric as a learned Jacobian): past the dimension the Arnoldi vector is rounding noise the
    closure test can miss, and its dependent column of H must not be solved for. Every sample comes out finite
    with the dense solve's residual."""
    g = gen(32)
    q, _ = torch.linalg.qr(torch.randn(512, 4, 4, generator=g, dtype=D))
    scales = torch.logspace(0, math.log10(kappa), 4, dtype=D).flip(0)
    mats = q @ torch.diag_embed(scales.expand(512, 4)) @ q.transpose(1, 2)
    mats = mats + 1e-3 * torch.randn(512, 4, 4, generator=g, dtype=D)
    rhs = torch.randn(512, 4, generator=g, dtype=D)
    for k in (5, 8):
        u = measurement_gmres(_batched(mats.to(dtype)), rhs.to(dtype), k)
        assert torch.isfinite(u).all()
        res = (_batched(mats)(u.to(D)) - rhs).norm(dim=1) / rhs.norm(dim=1)
        assert res.max() < tol, (k, res.max())


def test_mmps_gmres_past_the_dimension_stays_finite():
    """The sampler-level case that blew up: MMPS with 8 GMRES iterations on 2×2 SR measurements (m = 4), 256
    draws, 30 steps on the exact prior; one sample's H had a dependent column (R_jj = 0) and its draw became
    NaN/inf at step 19."""
    from _small_problem import prior as small_prior

    p = small_prior()
    op = SuperResolution(2, input_size=(4, 4))
    x = p.sample(1, generator=gen(5))
    y = op.A(x) + 0.05 * torch.randn(op.A(x).shape, generator=gen(6), dtype=D)
    out = mmps(p, op, y.expand(256, *y.shape[1:]).contiguous(), steps=30, sigma=0.05, iters=8, generator=gen(7))
    assert torch.isfinite(out).all()
