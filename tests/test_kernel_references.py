"""The torch references of the correlate, resample and cg kernels against naive loop / dense
implementations written from the contract (docs/kernels.md), and the public functions' checks."""

from __future__ import annotations

import importlib
import itertools

import pytest
import math

import torch

from diffsolve import kernels as K
cg_mod = importlib.import_module("diffsolve.kernels.cg")
corr = importlib.import_module("diffsolve.kernels.correlate")
res = importlib.import_module("diffsolve.kernels.resample")  # the package attribute is the function

F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _src_index(j: int, n: int, boundary: str) -> int | None:
    """Index into x of padded position j (relative to the image start), None for zero padding."""
    if boundary == "circular":
        return j % n
    if boundary == "reflect":
        return -j if j < 0 else (2 * (n - 1) - j if j >= n else j)
    return j if 0 <= j < n else None


def naive_correlate(x: torch.Tensor, k: torch.Tensor, boundary: str) -> torch.Tensor:
    b, c, h, w = x.shape
    kh, kw = k.shape
    out = torch.zeros_like(x)
    for i, j, u, v in itertools.product(range(h), range(w), range(kh), range(kw)):
        si, sj = _src_index(i + u - kh // 2, h, boundary), _src_index(j + v - kw // 2, w, boundary)
        if si is not None and sj is not None:
            out[:, :, i, j] += k[u, v] * x[:, :, si, sj]
    return out


def dense_of(fn, in_shape) -> torch.Tensor:
    """Matrix of a linear map on tensors of in_shape (1, C, H, W)."""
    n = int(torch.tensor(in_shape).prod())
    return fn(torch.eye(n, dtype=F64).reshape(n, *in_shape[1:])).reshape(n, -1).T


BOUNDARIES = ("reflect", "circular", "zero")


# ----------------------------------------------------------------------------- correlate
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("shape,ksize", [((2, 3, 7, 6), (5, 3)), ((1, 2, 4, 9), (3, 7)), ((2, 1, 5, 5), (1, 1))])
def test_correlate_reference_matches_loops(boundary, shape, ksize):
    x = torch.randn(shape, generator=_gen(1), dtype=F64)
    k = torch.randn(ksize, generator=_gen(2), dtype=F64)
    ref = naive_correlate(x, k, boundary)
    torch.testing.assert_close(corr.correlate2d_reference(x, k, boundary), ref, rtol=1e-13, atol=1e-13)
    kh, kw = torch.randn(ksize[0], generator=_gen(3), dtype=F64), torch.randn(ksize[1], generator=_gen(4), dtype=F64)
    torch.testing.assert_close(corr.separable_correlate2d_reference(x, kh, kw, boundary),
                               naive_correlate(x, torch.outer(kh, kw), boundary), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("hw", [(7, 6), (4, 5), (3, 3)])
def test_correlate_adjoint_reference_is_the_dense_transpose(boundary, hw):
    k = torch.randn(5, 3, generator=_gen(5), dtype=F64)
    kh, kw = k[:, 0].contiguous(), k[0].contiguous()
    shape = (1, 2, *hw)
    pairs = [(lambda t: corr.correlate2d_reference(t, k, boundary), lambda t: corr.correlate2d_adjoint_reference(t, k, boundary)),
             (lambda t: corr.separable_correlate2d_reference(t, kh, kw, boundary),
              lambda t: corr.separable_correlate2d_adjoint_reference(t, kh, kw, boundary))]
    for fwd, adj in pairs:
        torch.testing.assert_close(dense_of(adj, shape), dense_of(fwd, shape).T, rtol=1e-13, atol=1e-13)


def test_correlate_is_not_convolution():
    x = torch.zeros(1, 1, 5, 5, dtype=F64)
    x[0, 0, 2, 2] = 1
    k = torch.arange(9, dtype=F64).reshape(3, 3)
    out = corr.correlate2d_reference(x, k, "zero")  # correlation of a delta is the flipped kernel
    torch.testing.assert_close(out[0, 0, 1:4, 1:4], k.flip(0, 1))


# ----------------------------------------------------------------------------- resample
@pytest.mark.parametrize("shape,out_hw", [((2, 3, 7, 9), (3, 4)), ((1, 1, 5, 4), (5, 2))])
def test_resample_reference_matches_einsum_and_transpose(shape, out_hw):
    x = torch.randn(shape, generator=_gen(6), dtype=F64)
    m_h = torch.randn(out_hw[0], shape[2], generator=_gen(7), dtype=F64)
    m_w = torch.randn(out_hw[1], shape[3], generator=_gen(8), dtype=F64)
    naive = torch.einsum("ih,bchw,jw->bcij", m_h, x, m_w)
    torch.testing.assert_close(res.resample_reference(x, m_h, m_w), naive, rtol=1e-13, atol=1e-13)
    one = (1, *shape[1:])
    fwd = dense_of(lambda t: res.resample_reference(t, m_h, m_w), one)
    adj = dense_of(lambda t: res.resample_adjoint_reference(t, m_h, m_w), (1, shape[1], *out_hw))
    torch.testing.assert_close(adj, fwd.T, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("factor,shape", [(2, (2, 3, 6, 8)), (3, (1, 2, 9, 3)), (1, (1, 1, 3, 5))])
def test_avg_pool_reference_matches_loops_and_transpose(factor, shape):
    x = torch.randn(shape, generator=_gen(9), dtype=F64)
    b, c, h, w = shape
    naive = torch.zeros(b, c, h // factor, w // factor, dtype=F64)
    for i, j in itertools.product(range(h // factor), range(w // factor)):
        naive[:, :, i, j] = x[:, :, i * factor:(i + 1) * factor, j * factor:(j + 1) * factor].mean((-1, -2))
    torch.testing.assert_close(res.avg_pool_reference(x, factor), naive, rtol=1e-13, atol=1e-13)
    fwd = dense_of(lambda t: res.avg_pool_reference(t, factor), (1, c, h, w))
    adj = dense_of(lambda t: res.avg_pool_adjoint_reference(t, factor), (1, c, h // factor, w // factor))
    torch.testing.assert_close(adj, fwd.T, rtol=1e-13, atol=1e-13)


# ----------------------------------------------------------------------------- cg
def test_cg_dots_reference():
    r = torch.randn(3, 2, 5, generator=_gen(10), dtype=F64)
    gr = torch.randn(3, 2, 5, generator=_gen(11), dtype=F64)
    shift, scale = torch.tensor([0.5, 1.0, 0.0], dtype=F64), torch.tensor([2.0, 0.0, 1.5], dtype=F64)
    dots = cg_mod.cg_dots_reference(r, gr, shift, scale)
    for b in range(3):
        w = shift[b] * r[b] + scale[b] * gr[b]
        torch.testing.assert_close(dots[b], torch.stack(((r[b] * r[b]).sum(), (w * r[b]).sum())))
    assert cg_mod.cg_dots_reference(r.float(), gr.float(), shift.float(), scale.float()).dtype == torch.float32


def _textbook_cg(k_mat: torch.Tensor, rhs: torch.Tensor, iters: int, tol: float):
    """Plain Hestenes–Stiefel CG on one system; returns (x, iterations run)."""
    x = torch.zeros_like(rhs)
    r = rhs.clone()
    p = r.clone()
    n = 0
    for _ in range(iters):
        if r @ r <= tol**2 * (rhs @ rhs):
            break
        a = (r @ r) / (p @ k_mat @ p)
        x, r_new = x + a * p, r - a * (k_mat @ p)
        p = r_new + (r_new @ r_new) / (r @ r) * p
        r, n = r_new, n + 1
    return x, n


def test_cg_update_loop_matches_textbook_cg_per_sample():
    gen = _gen(12)
    g = torch.randn(3, 8, 8, generator=gen, dtype=F64)
    g = g @ g.mT  # symmetric PSD per sample
    rhs = torch.randn(3, 8, generator=gen, dtype=F64)
    rhs[2] = 0  # a zero right-hand side is converged from the start
    shift, scale = torch.tensor([0.3, 1.0, 0.5], dtype=F64), torch.tensor([1.0, 0.2, 1.0], dtype=F64)
    gram = lambda v: torch.einsum("bij,bj->bi", g, v)
    for iters in (1, 3, 20):
        out = K.batched_cg(gram, rhs, shift, scale, max_iters=iters, tol=1e-9, backend="torch")
        for b in range(3):
            kb = shift[b] * torch.eye(8, dtype=F64) + scale[b] * g[b]
            x_ref, n_ref = _textbook_cg(kb, rhs[b], iters, 1e-9)
            torch.testing.assert_close(out.x[b], x_ref, rtol=1e-9, atol=1e-11)
            assert int(out.iterations[b]) == n_ref
    assert out.converged.all() and int(out.iterations[2]) == 0
    assert (out.residual <= 1e-9).all()


def test_batched_cg_masks_converged_samples_and_accepts_x0():
    a = torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=F64))
    rhs = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]], dtype=F64)
    out = K.batched_cg(lambda v: v @ a, rhs, 0.0, 1.0, max_iters=10, tol=1e-12, backend="torch")
    assert out.iterations.tolist() == [4, 1]  # 4 distinct eigenvalues vs one
    torch.testing.assert_close(out.x, rhs / torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=F64))
    warm = K.batched_cg(lambda v: v @ a, rhs, 0.0, 1.0, x0=out.x, max_iters=5, tol=1e-12, backend="torch")
    assert warm.iterations.tolist() == [0, 0] and warm.converged.all()
    capped = K.batched_cg(lambda v: v @ a, rhs, 0.0, 1.0, max_iters=2, tol=1e-12, backend="torch")
    assert capped.converged.tolist() == [False, True] and capped.residual[0] > 1e-3
    recursive = K.batched_cg(lambda v: v @ a, rhs, 0.5, 1.0, max_iters=2, tol=1e-12, backend="torch",
                             true_residual=False)
    true = K.batched_cg(lambda v: v @ a, rhs, 0.5, 1.0, max_iters=2, tol=1e-12, backend="torch")
    torch.testing.assert_close(recursive.residual, true.residual, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(recursive.x, true.x, rtol=0, atol=0)
    nan = K.batched_cg(lambda v: v @ a, rhs * torch.tensor([[float("nan")], [1.0]], dtype=F64), 0.5, 1.0, max_iters=2,
                       tol=1e-12, backend="torch", true_residual=False)
    assert math.isnan(float(nan.residual[0])) and not bool(nan.converged[0]) and bool(torch.isfinite(nan.x[1]).all())


def test_batched_cg_float32_accumulates_and_converges():
    gen = _gen(13)
    g = torch.randn(2, 30, 30, generator=gen)
    g = g @ g.mT / 30
    rhs = torch.randn(2, 30, generator=gen)
    out = K.batched_cg(lambda v: torch.einsum("bij,bj->bi", g, v), rhs, 1.0, 1.0, max_iters=60, tol=1e-5)
    ref = torch.linalg.solve(torch.eye(30) + g, rhs)
    torch.testing.assert_close(out.x, ref, rtol=1e-4, atol=1e-4)
    assert out.x.dtype == torch.float32 and out.converged.all()


# ----------------------------------------------------------------------------- public functions
def test_public_functions_dispatch_to_the_references():
    x = torch.randn(2, 3, 8, 7, generator=_gen(14), dtype=F64)
    k = torch.randn(3, 5, generator=_gen(15), dtype=F64)
    for b in BOUNDARIES:
        torch.testing.assert_close(K.correlate2d(x, k, boundary=b, backend="torch"), corr.correlate2d_reference(x, k, b))
        torch.testing.assert_close(K.correlate2d(x, k, boundary=b), corr.correlate2d_reference(x, k, b))  # auto
        torch.testing.assert_close(K.correlate2d_adjoint(x, k, boundary=b), corr.correlate2d_adjoint_reference(x, k, b))
    torch.testing.assert_close(K.avg_pool(x[..., :6], 2), res.avg_pool_reference(x[..., :6], 2))


def test_public_functions_reject_bad_input():
    x = torch.randn(1, 2, 6, 6, dtype=F64)
    k = torch.ones(3, 3, dtype=F64)
    with pytest.raises(ValueError, match="x must be a \\(B, C, H, W\\)"):
        K.correlate2d(x[0], k)
    with pytest.raises(TypeError, match="float32.float64"):
        K.correlate2d(x.to(torch.int64), k)
    with pytest.raises(TypeError, match="float32 or float64"):
        K.correlate2d(x.half(), k.half())
    with pytest.raises(TypeError, match="kernel must have the images' dtype"):
        K.correlate2d(x, k.float())
    with pytest.raises(ValueError, match="kernel must be \\(kh, kw\\) with odd"):
        K.correlate2d(x, torch.ones(2, 3, dtype=F64))
    with pytest.raises(ValueError, match="kernel is on meta"):
        K.correlate2d(x, k.to("meta"))
    with pytest.raises(ValueError, match="too small .* boundary='reflect'"):
        K.correlate2d(x, torch.ones(13, 1, dtype=F64))
    with pytest.raises(ValueError, match="boundary must be one of"):
        K.correlate2d(x, k, boundary="mirror")
    with pytest.raises(ValueError, match="divisible by factor 4"):
        K.avg_pool(x, 4)
    with pytest.raises(ValueError, match="m_h must be a \\(out, 6\\) matrix"):
        K.resample(x, torch.ones(2, 5, dtype=F64), torch.ones(2, 6, dtype=F64))
    with pytest.raises(ValueError, match="backend must be one of"):
        K.correlate2d(x, k, backend="cuda")
    with pytest.raises(ValueError, match="max_iters"):
        K.batched_cg(lambda v: v, x, max_iters=-1)
    with pytest.raises(ValueError, match="shift is on meta"):
        K.batched_cg(lambda v: v, x, torch.zeros(1, device="meta"))


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_cg_update_checks_dots_and_state(backend):
    """The public cg_update took any dots/state: Triton then stored 5 values per sample into a (B, 3) state."""
    x = torch.randn(2, 1, 4, 4, dtype=F64)
    r = p = s = gr = x.clone()
    dots, state = torch.ones(2, 2, dtype=F64), torch.zeros(2, 5, dtype=F64)
    for bad_dots, bad_state, match in ((torch.ones(2, 1, dtype=F64), state, r"dots must be \(2, 2\)"),
                                       (torch.ones(1, 2, dtype=F64), state, r"dots must be \(2, 2\)"),
                                       (dots, torch.zeros(2, 3, dtype=F64), r"state must be \(2, 5\)"),
                                       (dots, state.float(), r"state must be \(2, 5\) in x's dtype"),
                                       (dots.tolist(), state, "dots must be a torch.Tensor")):
        with pytest.raises((ValueError, TypeError), match=match):
            K.cg_update(x, r, p, s, gr, 1.0, 1.0, bad_dots, bad_state, 1e-12, backend=backend)
    with pytest.raises(ValueError, match=r"dots must be \(2, 3\)"):  # preconditioned: (r, z), (gr, z), (r, r)
        K.cg_update(x, r, p, s, gr, 1.0, 1.0, dots, state, 1e-12, z=x.clone(), backend=backend)


def test_a_per_sample_seed_list_holds_ints():
    x = torch.zeros(2, 1, 4, 4)
    with pytest.raises(TypeError, match=r"seed\[0\] must be an int"):
        K.fused_step(x, x, torch.zeros(2, 8), seed=[[5], [6]])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_the_posterior_step_refuses_half_precision_on_every_backend(dtype):
    """As every step kernel: fp16/bf16 state is a TypeError naming the dtype, not a backend's own result (the
    Triton interpreter returned −0 for bfloat16, torch computed in half, C++ blamed itself)."""
    from diffsolve.kernels import diagonal_posterior_step

    m = torch.full((1, 1, 2, 3), 0.5, dtype=dtype)
    for backend in ("auto", "torch", "cpp", "triton"):
        with pytest.raises(TypeError, match="mean must be float32 or float64"):
            diagonal_posterior_step(m, 1.0, torch.ones_like(m), m, 1.0, backend=backend)
