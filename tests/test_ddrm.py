"""DDRM (solvers/ddrm.py) and the SVD protocol it needs (operators/svd.py)."""

from __future__ import annotations

import math

import pytest
import torch
from _small_problem import OPS, SHAPE, dense_discrepancy_pull, dense_svd, gen, measure, negligible, prior

from diffsolve.models import GaussianPrior
from diffsolve.operators import Blur, GaussianBlur, Identity, Inpainting, MatrixOperator, SuperResolution
from diffsolve.operators.callable import CallableOperator
from diffsolve.operators.svd import DiagonalSVD, KroneckerSVD, helmert, operator_svd
from diffsolve.solvers._inverse import measured_entries
from diffsolve.solvers._loop import select_schedule
from diffsolve.solvers.ddrm import SINGULAR_CUTOFF, ddrm

D = torch.float64


def _ops():
    """(operator, image size) pairs: every supported structure, odd sizes."""
    weights = torch.rand(5, 7, generator=torch.Generator().manual_seed(3), dtype=D) - 0.3  # signed weights
    return [
        (Identity(), (5, 7)),
        (Inpainting.random((5, 7), 0.5, seed=1), (5, 7)),
        (Inpainting(weights), (5, 7)),
        (SuperResolution(3, "average"), (6, 9)),
        (SuperResolution(2, "bicubic", input_size=(7, 9)), (7, 9)),
        (GaussianBlur(5, 1.0), (7, 9)),
        (GaussianBlur(5, 1.0, boundary="zero"), (7, 9)),
        (Blur.separable(torch.tensor([0.2, 0.5, 0.3], dtype=D), torch.tensor([0.1, 0.9, 0.2], dtype=D), "circular"), (5, 7)),
        (Blur(torch.rand(3, 5, generator=torch.Generator().manual_seed(2), dtype=D), "circular"), (5, 7)),
    ]


@pytest.mark.parametrize("op, size", _ops(), ids=lambda v: type(v).__name__ if not isinstance(v, tuple) else "")
def test_svd_identities(op, size):
    svd = op.svd(size)
    n = 2 * size[0] * size[1]
    basis = torch.eye(n, dtype=D).reshape(n, 2, *size)
    vt = svd.Vt(basis).reshape(n, -1)  # row j: Vᵀ e_j, i.e. Vt's matrix transposed
    assert vt.shape[1] == n
    eye = vt.conj().T @ vt  # (Vᵀ)(Vᵀ)ᴴ... as a matrix: Vᵀ V = I
    assert torch.allclose(eye, torch.eye(n, dtype=eye.dtype), atol=1e-12)
    x = torch.randn(3, 2, *size, dtype=D, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(svd.V(svd.Vt(x)), x, atol=1e-12)
    s = svd.singulars(x)
    assert bool((s >= 0).all())
    y = op.A(x)
    assert torch.allclose(svd.U(s * svd.Vt(x)), y, atol=1e-12)  # A = U S Vᵀ
    assert torch.allclose(svd.U(svd.Ut(y)), y, atol=1e-12)
    assert torch.allclose(svd.V(s * svd.Ut(y)), op.A_adjoint(y), atol=1e-12)  # Aᵀ = V S Uᵀ
    assert svd.singulars(x.float()).dtype == torch.float32


@pytest.mark.parametrize("op, size", _ops(), ids=lambda v: type(v).__name__ if not isinstance(v, tuple) else "")
def test_svd_range_holds_every_singular_value(op, size):
    """``svd.range()``: orthonormal V_r (V_rᵀV_r = I), A = U_r S_r V_rᵀ and Aᵀ = V_r S_r U_rᵀ on it, every s > 0 of
    the full SVD kept (the same multiset), and V_r V_rᵀ projects (SR: one coefficient per measured entry)."""
    full = op.svd(size)
    svd = full.range()
    n = 2 * size[0] * size[1]
    basis = torch.eye(n, dtype=D).reshape(n, 2, *size)
    vt = svd.Vt(basis).reshape(n, -1)
    assert torch.allclose(vt.conj().T @ vt, torch.eye(vt.shape[1], dtype=vt.dtype), atol=1e-12)
    x = torch.randn(3, 2, *size, dtype=D, generator=torch.Generator().manual_seed(0))
    s = svd.singulars(x)
    y = op.A(x)
    assert torch.allclose(svd.U(s * svd.Vt(x)), y, atol=1e-12)
    assert torch.allclose(svd.V(s * svd.Ut(y)), op.A_adjoint(y), atol=1e-12)
    proj = svd.V(svd.Vt(x))
    assert torch.allclose(svd.V(svd.Vt(proj)), proj, atol=1e-12)
    full_s = full.singulars(x).expand_as(full.Vt(x)[:1, :1]).flatten()
    kept = s.expand_as(svd.Vt(x)[:1, :1]).flatten()
    assert torch.allclose(full_s[full_s > 1e-12].sort().values, kept[kept > 1e-12].sort().values, atol=1e-12)
    if isinstance(op, SuperResolution):  # one coefficient per measured entry: f² fewer than the image's
        assert vt.shape[1] == y[0].numel() < n


def test_helmert_and_block_singular_value():
    q = helmert(9)
    assert torch.allclose(q.T @ q, torch.eye(9, dtype=D), atol=1e-14)
    assert torch.allclose(q[:, 0], torch.full((9,), 1 / 3, dtype=D))
    assert float(SuperResolution(3, "average").svd((6, 6)).s[0]) == pytest.approx(1 / 3)


def _prior(shape=(1, 6, 6)):
    mean = 0.3 * torch.randn(*shape, dtype=D, generator=torch.Generator().manual_seed(5))
    return GaussianPrior(mean, 0.25)


def _problem(op, prior, sigma, batch, seed=1):
    x = prior.sample(1, torch.Generator().manual_seed(seed))
    y = op.A(x)
    y = y + sigma * torch.randn(y.shape, dtype=D, generator=torch.Generator().manual_seed(seed + 1))
    return y, y.expand(batch, *y.shape[1:]).contiguous()


@pytest.mark.parametrize("op", [GaussianBlur(3, 0.8), SuperResolution(2, "average"), Inpainting.random((6, 6), 0.5)],
                         ids=["blur", "sr", "inpaint"])
def test_noiseless_reproduces_y(op):
    prior = _prior()
    _, y = _problem(op, prior, 0.0, 2)
    out = ddrm(prior, op, y, steps=8, sigma=0.0, eta_b=1.0, singular_cutoff=0.0,
               generator=torch.Generator().manual_seed(0))
    assert torch.allclose(op.A(out), y, atol=1e-10)
    # at the default cutoff y is reproduced on every direction the cutoff keeps (the others count as unobserved)
    out = ddrm(prior, op, y, steps=8, sigma=0.0, eta_b=1.0, generator=torch.Generator().manual_seed(0))
    if isinstance(op, GaussianBlur):
        svd = op.svd(tuple(out.shape[-2:]))
        r = svd.Ut(op.A(out) - y)
        assert r[..., ~svd.small_axis_singulars(SINGULAR_CUTOFF)].abs().max() < 1e-10
    else:  # a mask's and average pooling's singular values are all alike: nothing is cut
        assert torch.allclose(op.A(out), y, atol=1e-10)


@pytest.mark.parametrize("op", [Inpainting.random((6, 6), 0.5), SuperResolution(2, "average"), Identity(),
                                MatrixOperator.gaussian(18, (1, 6, 6), seed=0)], ids=["inpaint", "sr", "denoise", "cs"])
def test_mean_near_exact_posterior(op):
    prior, sigma = _prior(), 0.1
    y1, y = _problem(op, prior, sigma, 300)
    post = prior.posterior(op, y1[0], sigma=sigma)
    out, info = ddrm(prior, op, y, steps=20, sigma=sigma, generator=torch.Generator().manual_seed(0), return_info=True)
    assert info["residual"].shape == (20, 300) and info["timesteps"].shape == (20,)
    err = (out.mean(0) - post.mean).norm() / post.mean.norm()
    assert err < 0.15, err
    ratio = (out.var(0).sum() / post.cov.diagonal().sum()).sqrt()
    # DDRM is not an exact sampler: on denoising at 20 steps every step has σ_t ≥ σ_y, so the output is x̂0 of
    # y + √(σ_t² − σ_y²) ε at the last step, whose spread is 1.29× the posterior's (1000 draws; 0.85 at 50 steps)
    assert 0.6 < ratio < (1.4 if isinstance(op, Identity) else 1.2), ratio


def test_small_axis_singulars_follow_each_axis():
    """A Kronecker SVD's negligible directions: a row or column factor below the ratio of its axis's largest, read off
    each factor's own singular values (torch.linalg.svdvals of M_h and M_w); the range's are the same block."""
    g = torch.Generator().manual_seed(5)
    m_h = torch.randn(3, 5, generator=g, dtype=D) @ torch.diag(torch.tensor([1.0, 0.5, 0.1, 0.01, 0.001], dtype=D))
    m_w = torch.randn(4, 4, generator=g, dtype=D) @ torch.diag(torch.tensor([1.0, 0.2, 0.02, 0.002], dtype=D))
    svd = KroneckerSVD(m_h, m_w)
    for ratio in (0.0, 0.03, 0.3):
        s_h, s_w = torch.linalg.svdvals(m_h), torch.linalg.svdvals(m_w)
        pad_h = torch.cat([s_h, torch.zeros(2, dtype=D)])  # the two null rows of M_h's V_h have s = 0
        small_h, small_w = pad_h < ratio * s_h[0], s_w < ratio * s_w[0]
        expect = small_h[:, None] | small_w[None, :]
        assert torch.equal(svd.small_axis_singulars(ratio), expect)
        assert torch.equal(svd.range().small_axis_singulars(ratio), expect[:3, :4])
    assert svd.small_axis_singulars(0.3).sum() > svd.small_axis_singulars(0.03).sum() > 0
    assert DiagonalSVD(torch.ones(1, 1, 2, 2, dtype=D)).small_axis_singulars(0.5) is None


def test_bad_inputs():
    prior = _prior()
    y = torch.zeros(1, 1, 6, 6, dtype=D)
    callable_op = CallableOperator(lambda x: 2 * x)
    with pytest.raises(ValueError, match="supported operators.*Inpainting"):
        ddrm(prior, callable_op, y, steps=3, sigma=0.1)
    with pytest.raises(ValueError, match="no cheap SVD"):
        ddrm(prior, Blur(torch.rand(3, 3, dtype=D)), y, steps=3, sigma=0.1)
    op = Inpainting.random((6, 6), 0.5)
    with pytest.raises(ValueError, match="eta must lie"):
        ddrm(prior, op, y, steps=3, sigma=0.1, eta=1.5)
    with pytest.raises(ValueError, match="eta_b must lie"):
        ddrm(prior, op, y, steps=3, sigma=0.1, eta_b=-0.1)
    with pytest.raises(ValueError, match="sigma must be"):
        ddrm(prior, op, y, steps=3, sigma=-1.0)
    with pytest.raises(TypeError, match="sigma must be"):
        ddrm(prior, op, y, steps=3, sigma="0.1")
    with pytest.raises(ValueError, match="noise_source"):
        ddrm(prior, op, y, steps=3, sigma=0.1, noise_source="kernel")
    for bad, kind in ((-0.1, ValueError), (1.0, ValueError), (float("nan"), ValueError), ("0.1", TypeError)):
        with pytest.raises(kind, match="singular_cutoff must"):
            ddrm(prior, op, y, steps=3, sigma=0.1, singular_cutoff=bad)
    with pytest.raises(TypeError, match="own options"):
        ddrm(prior, op, y, steps=3, sigma=0.1, rho=1.0)
    with pytest.raises(TypeError, match="DiagonalSVD|SVD"):
        operator_svd(type("Op", (), {"svd": lambda self, size: DiagonalSVD})(), (6, 6))


def test_return_info_data_consistency():
    prior, op = _prior(), SuperResolution(2, "average")
    _, y = _problem(op, prior, 0.05, 2)
    out, info = ddrm(prior, op, y, steps=4, sigma=0.05, return_info=True)
    final = (op.A(out) - y).flatten(1).norm(dim=1) / y[0].numel() ** 0.5
    torch.testing.assert_close(info["final_residual"], final)
    torch.testing.assert_close(info["data_consistency"], final / 0.05)
    _, info0 = ddrm(prior, op, y, steps=4, sigma=0.0, return_info=True)
    assert "data_consistency" not in info0 and info0["final_residual"].shape == (2,)


@pytest.mark.parametrize("op", [GaussianBlur(5, 1.0), Blur(torch.rand(3, 3, dtype=torch.float64), "circular"),
                                SuperResolution(2, "bicubic"), SuperResolution(2, "average")])
def test_svd_is_built_once_per_size(op):
    """DDRM/DDNM+ ask for the SVD on every call: it is kept per size, shared with ``with_backend`` copies."""
    first = op.svd((8, 10))
    assert op.svd((8, 10)) is first and op.with_backend("torch").svd((8, 10)) is first
    assert op.svd((10, 8)) is not first


@pytest.mark.parametrize("name", ["inpaint", "blur", "sr", "cs"])
@pytest.mark.parametrize("eta", [0.85, 1.0])
@pytest.mark.parametrize("cutoff", [SINGULAR_CUTOFF, 0.0])
def test_steps_match_the_paper_in_dense_linear_algebra(name, eta, cutoff):
    """The whole run against Eqs. 7-8 written with the dense SVD A = U S Vᵀ (float64): x̄ = Vᵀx, per-coefficient
    cases, the same x_T and the same noise: image-space draws mapped by Vᵀ, or, where the operator's basis is
    complete (the blur), standard-normal coefficients in that basis (V_h ⊗ V_w) drawn directly. The solver carries
    Vᵀx between steps. ``discrepancy=False`` is the paper's run; the default is that run held to the discrepancy
    principle, against a dense bisection. At the default ``singular_cutoff`` the blur's per-axis singular values
    below 3e-2 of the largest count as zero (the reference code's ``ZERO``); 0 is Eq. 8 on every s > 0."""
    pr, op, sigma_y, eta_b = prior(), OPS[name](), 0.05, 1.0
    y = measure(op, sigma=sigma_y)
    x_T = torch.randn(2, *SHAPE, generator=gen(7), dtype=D)
    out = ddrm(pr, op, y, steps=4, x_T=x_T, sigma=sigma_y, eta=eta, eta_b=eta_b, generator=gen(4), discrepancy=False,
               singular_cutoff=cutoff)
    held = ddrm(pr, op, y, steps=4, x_T=x_T, sigma=sigma_y, eta=eta, eta_b=eta_b, generator=gen(4),
                singular_cutoff=cutoff)
    a, u, s_m, v, complete = dense_svd(op)  # the solver's basis where it reads its noise as coefficients
    n = a.shape[1]
    s = torch.zeros(n, dtype=D)
    s[: s_m.numel()] = s_m
    cut = negligible(s, complete, cutoff)
    assert cut.any() == (name == "blur" and cutoff > 0)  # the blur has per-axis values below 3e-2: the cut acts
    s = torch.where(cut, 0.0, s)
    obs = s > 0
    inv = torch.where(obs, 1 / torch.where(obs, s, 1.0), 0.0)
    y_bar = torch.cat([y.flatten(1) @ u, torch.zeros(2, n, dtype=D)], 1)[:, :n] * inv  # S⁺Uᵀy, zero-padded
    sched = select_schedule(pr, 4, "trailing")
    vp = [math.sqrt((1 - a_) / a_) for a_ in sched.alpha_t.tolist()] + [0.0]
    sig_T = vp[0]
    e_bar = x_T.flatten(1) @ v
    init = obs & (s * sig_T > sigma_y)
    xb = torch.where(init, y_bar + (sig_T**2 - (sigma_y * inv) ** 2).clamp_min(0).sqrt() * e_bar, sig_T * e_bar)
    x = math.sqrt(sched.alpha_t[0].item()) * (xb @ v.T)
    g = gen(4)
    for i, (a_t, a_s) in enumerate(zip(sched.alpha_t.tolist(), sched.alpha_s.tolist())):
        eps = pr(x.view(2, *SHAPE), sched.timesteps[i].expand(2)).flatten(1)
        x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
        x0b, eb, sn = x0 @ v, eps @ v, vp[i + 1]
        zb = torch.randn(2, *SHAPE, generator=g, dtype=D).flatten(1) if sn > 0 else torch.zeros_like(x0b)
        zb = zb if complete else zb @ v
        before = obs & (s * sn >= sigma_y)
        after = obs & ~before
        nxt = torch.where(~obs, x0b + math.sqrt(1 - eta**2) * sn * eb + eta * sn * zb,
                          torch.where(after, x0b + math.sqrt(1 - eta**2) * sn * (y_bar - x0b) * s / sigma_y
                                      + eta * sn * zb,
                                      (1 - eta_b) * x0b + eta_b * y_bar
                                      + (sn**2 - (eta_b * sigma_y * inv) ** 2).clamp_min(0).sqrt() * zb))
        x = math.sqrt(a_s) * (nxt @ v.T)
    torch.testing.assert_close(out.flatten(1), x, rtol=1e-9, atol=1e-10)
    pulled = dense_discrepancy_pull(a, x, y, sigma_y, 1 - sched.alpha_t[-1].item(), measured_entries(op, y))
    torch.testing.assert_close(held.flatten(1), pulled, rtol=1e-9, atol=1e-9)
