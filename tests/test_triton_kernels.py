"""Every Triton kernel against its torch reference (docs/kernels.md), on CPU under TRITON_INTERPRET=1
and on CUDA when a GPU is present; noise by reproducibility and moments; guard buffers for
out-of-bounds reads and writes; CG launch structure, host syncs and CUDA-graph capture on CUDA."""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest
import torch

from diffsolve import kernels as K

step_mod = importlib.import_module("diffsolve.kernels.step")
post_mod = importlib.import_module("diffsolve.kernels.posterior")
corr_mod = importlib.import_module("diffsolve.kernels.correlate")
res_mod = importlib.import_module("diffsolve.kernels.resample")
cg_mod = importlib.import_module("diffsolve.kernels.cg")

_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
DEVICES = (["cpu"] if _INTERPRET else []) + (["cuda"] if torch.cuda.is_available() else [])
if not DEVICES:  # pragma: no cover - conftest sets TRITON_INTERPRET=1 on CPU-only machines
    pytest.skip("Triton needs CUDA or TRITON_INTERPRET=1", allow_module_level=True)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA-only check (no GPU here)")

DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: dict(rtol=2e-5, atol=2e-5), torch.float64: dict(rtol=1e-11, atol=1e-11)}


def _rand(gen, *shape, dtype, device):
    return torch.randn(*shape, generator=gen, dtype=dtype).to(device)


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


# ----------------------------------------------------------------------------- fused step
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("extras", ["none", "all"])
def test_fused_step_matches_reference(device, dtype, extras):
    g = torch.Generator().manual_seed(1)
    x, eps, prev, grad, z = (_rand(g, 3, 2, 5, 7, dtype=dtype, device=device) for _ in range(5))
    coefs = _rand(g, 3, 8, dtype=dtype, device=device)
    kw = dict(eps_prev=prev, guidance=grad, noise=z) if extras == "all" else {}
    want = K.fused_step(x, eps, coefs, return_x0=True, backend="torch", **kw)
    got = K.fused_step(x, eps, coefs, return_x0=True, backend="triton", **kw)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **TOL[dtype])
    alone = K.fused_step(x, eps, coefs, backend="triton", **kw)  # x̂0 not asked: same x_s
    torch.testing.assert_close(alone, want[0], **TOL[dtype])


@pytest.mark.parametrize("noise", ["tensor", "seed"])
def test_fused_step_block_loop_is_grid_independent(device, noise):
    """Programs looping over several blocks (the persistent grids) give the result of one program
    per block, bit for bit, in-kernel noise included (its counters are the elements' indices)."""
    from diffsolve.kernels import _triton_step

    g = torch.Generator().manual_seed(17)
    x, eps, prev, z = (_rand(g, 3, 2, 5, 7, dtype=torch.float32, device=device) for _ in range(4))
    coefs = _rand(g, 3, 8, dtype=torch.float32, device=device)
    args = (x, eps, coefs, prev, None, z if noise == "tensor" else None, 9 if noise == "seed" else None, 4, True)
    one_each = _triton_step._run(*args, launch=(3 * 3, 32))  # 70 elements per sample: 3 blocks of 32
    for programs in (1, 2, 4):
        for got, want in zip(_triton_step._run(*args, launch=(programs, 32)), one_each):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
    if noise == "tensor":
        for got, want in zip(one_each, K.fused_step(x, eps, coefs, eps_prev=prev, noise=z, return_x0=True,
                                                    backend="torch")):
            torch.testing.assert_close(got, want, **TOL[torch.float32])
    else:  # the default launch (one block per sample here) draws the same noise
        torch.testing.assert_close(_triton_step.fused_step(*args)[0], one_each[0], rtol=0, atol=0)


def test_ddim_wrapper_on_triton(device):
    g = torch.Generator().manual_seed(2)
    x, eps, z = (_rand(g, 2, 3, 4, 5, dtype=torch.float64, device=device) for _ in range(3))
    a_t = torch.tensor([0.3, 0.5], dtype=torch.float64, device=device)
    want = K.ddim_step(x, eps, a_t, a_t + 0.2, eta=0.7, noise=z, backend="torch")
    got = K.ddim_step(x, eps, a_t, a_t + 0.2, eta=0.7, noise=z, backend="triton")
    torch.testing.assert_close(got, want, **TOL[torch.float64])


def _triton_noise(shape, seed, offset, device, dtype=torch.float32):
    """The Triton backend's noise stream: x_s = z (c_z = 1, every other coefficient 0)."""
    zeros = torch.zeros(shape, dtype=dtype, device=device)
    coefs = torch.zeros(shape[0], 8, dtype=dtype, device=device)
    coefs[:, 4] = 1
    return K.fused_step(zeros, zeros, coefs, seed=seed, offset=offset, backend="triton")


def _philox_normals(seed, offset, rows, length):
    """The documented Triton noise stream in numpy (docs/kernels.md): (rows, length) normals; element
    i of row r is lane i mod 4 of Philox-4x32-10(key = seed, counter = (i div 4, r, offset mod 2³²,
    offset div 2³²)), lanes (0, 1) and (2, 3) through Box–Muller (cos, sin)."""
    mask = np.uint64(0xFFFFFFFF)
    groups = (length + 3) // 4
    g, r = np.meshgrid(np.arange(groups, dtype=np.uint64), np.arange(rows, dtype=np.uint64))
    c = [g, r, np.full_like(g, offset & 0xFFFFFFFF), np.full_like(g, (offset >> 32) & 0xFFFFFFFF)]
    k0, k1 = np.uint64(seed & 0xFFFFFFFF), np.uint64((seed >> 32) & 0xFFFFFFFF)
    for _ in range(10):
        p0, p2 = np.uint64(0xD2511F53) * c[0], np.uint64(0xCD9E8D57) * c[2]
        c = [((p2 >> np.uint64(32)) ^ c[1] ^ k0) & mask, p2 & mask, ((p0 >> np.uint64(32)) ^ c[3] ^ k1) & mask,
             p0 & mask]
        k0, k1 = (k0 + np.uint64(0x9E3779B9)) & mask, (k1 + np.uint64(0xBB67AE85)) & mask
    ints = [w.astype(np.uint32).view(np.int32) for w in c]
    u = [np.where(v < 0, ~v, v).astype(np.float32) * np.float32(4.6566127342e-10) for v in ints]
    out = []
    for a, b in ((u[0], u[1]), (u[2], u[3])):
        radius = np.sqrt(np.float32(-2.0) * np.log(np.maximum(np.float32(1e-7), a)))
        theta = np.float32(6.283185307179586) * b
        out += [radius * np.cos(theta), radius * np.sin(theta)]
    return torch.from_numpy(np.stack(out, axis=-1).reshape(rows, 4 * groups)[:, :length].copy())


def test_step_noise_is_the_documented_stream(device):
    shape = (3, 2, 5, 7)  # 70 elements per sample: the last group of 4 is cut
    for seed, offset in ((5, 11), (2**40 + 3, 2**33 + 70)):
        got = _triton_noise(shape, seed, offset, device).cpu().view(3, -1)
        torch.testing.assert_close(got, _philox_normals(seed, offset, 3, 70), rtol=1e-5, atol=1e-5)
    a = _triton_noise(shape, 5, 11, device)
    torch.testing.assert_close(a, _triton_noise(shape, 5, 11, device), rtol=0, atol=0)


def test_step_noise_moments(device):
    n = 4 * 48 * 48
    z = _triton_noise((4, 1, 48, 48), 123, 0, device, torch.float64).flatten().cpu()
    # mean ~ N(0, 1/n), sample variance ~ N(1, 2/n): 5 sigma bounds
    assert abs(z.mean().item()) < 5 / n**0.5
    assert abs(z.var().item() - 1) < 5 * (2 / n) ** 0.5
    assert abs((z**4).mean().item() - 3) < 5 * (96 / n) ** 0.5  # Gaussian kurtosis, var(z⁴) = 96
    pairs = z.view(4, -1)
    corr = torch.corrcoef(pairs)  # samples of the batch are independent
    assert (corr - torch.eye(4, dtype=corr.dtype)).abs().max() < 5 / (n // 4) ** 0.5


# ----------------------------------------------------------------------------- diagonal posterior
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("diag_shape", [(1, 1), (3, 1), (1, 2), (3, 2)])
def test_posterior_matches_reference(device, dtype, diag_shape):
    g = torch.Generator().manual_seed(3)
    m, t, e1, e2 = (_rand(g, 3, 2, 5, 7, dtype=dtype, device=device) for _ in range(4))
    d = (_rand(g, *diag_shape, 5, 7, dtype=dtype, device=device) > 0).to(dtype) * 0.7
    c = torch.tensor([0.5, 2.0, 1.0], dtype=dtype, device=device)
    w = torch.tensor([3.0, 0.25, 1.0], dtype=dtype, device=device)
    for noise in (None, (e1, e2)):
        want = K.diagonal_posterior_step(m, c, d, t, w, noise=noise, backend="torch")
        got = K.diagonal_posterior_step(m, c, d, t, w, noise=noise, backend="triton")
        torch.testing.assert_close(got, want, **TOL[dtype])


def test_posterior_seeded_noise_is_the_documented_stream(device):
    """e₁ = stream(seed, offset), e₂ = stream(seed, offset + numel), as the contract says."""
    g = torch.Generator().manual_seed(4)
    m, t = (_rand(g, 2, 3, 5, 6, dtype=torch.float32, device=device) for _ in range(2))
    d = torch.rand(1, 1, 5, 6, generator=g).to(device)
    c, w = torch.tensor([1.0, 2.0], device=device), torch.tensor([0.5, 4.0], device=device)
    got = K.diagonal_posterior_step(m, c, d, t, w, seed=9, offset=3, backend="triton")
    e1, e2 = (_philox_normals(9, off, 6, 30).view(m.shape).to(device) for off in (3, 3 + m.numel()))  # rows: planes
    want = K.diagonal_posterior_step(m, c, d, t, w, noise=(e1, e2), backend="torch")
    torch.testing.assert_close(got, want, **TOL[torch.float32])
    again = K.diagonal_posterior_step(m, c, d, t, w, seed=9, offset=3, backend="triton")
    torch.testing.assert_close(got, again, rtol=0, atol=0)


# ----------------------------------------------------------------------------- correlation
def _kernel(g, kh, kw, sparse, dtype, device):
    k = torch.randn(kh, kw, generator=g, dtype=dtype)
    if sparse:  # a motion-like kernel: a few non-zero taps
        k = k * (torch.rand(kh, kw, generator=g) < 0.3)
        k[kh // 2, kw // 2] = 1.0
    return k.to(device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("boundary", ["zero", "reflect", "circular"])
def test_correlate2d_and_adjoint(device, dtype, boundary):
    g = torch.Generator().manual_seed(5)
    x = _rand(g, 2, 1, 7, 9, dtype=dtype, device=device)
    y = _rand(g, 2, 1, 7, 9, dtype=dtype, device=device)
    kh, kw, sparse = (3, 5, False) if dtype == torch.float32 else (5, 3, True)
    k = _kernel(g, kh, kw, sparse, dtype, device)
    for op, arg in ((K.correlate2d, x), (K.correlate2d_adjoint, y)):
        want = op(arg, k, boundary=boundary, backend="torch")
        torch.testing.assert_close(op(arg, k, boundary=boundary, backend="triton"), want, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("boundary", ["zero", "reflect", "circular"])
def test_separable_correlate2d_and_adjoint(device, dtype, boundary):
    g = torch.Generator().manual_seed(6)
    x = _rand(g, 1, 2, 8, 11, dtype=dtype, device=device)
    k_h, k_w = _rand(g, 7, dtype=dtype, device=device), _rand(g, 5, dtype=dtype, device=device)
    for op in (K.separable_correlate2d, K.separable_correlate2d_adjoint):
        want = op(x, k_h, k_w, boundary=boundary, backend="torch")
        torch.testing.assert_close(op(x, k_h, k_w, boundary=boundary, backend="triton"), want, **TOL[dtype])


@pytest.mark.parametrize("boundary", ["zero", "reflect", "circular"])
def test_correlate_interior_tiles(device, boundary):
    """16×16 tiles on a 40×45 image: the centre tile is interior (constant offsets, no masks), its
    neighbours are not; the 2-D kernel and both 1-D passes, forward and adjoint."""
    from diffsolve.kernels import _triton_correlate as tri

    dtype = torch.float64
    g = torch.Generator().manual_seed(18)
    x = _rand(g, 1, 1, 40, 45, dtype=dtype, device=device)
    k = _kernel(g, 5, 7, True, dtype, device)
    k_h, k_w = _rand(g, 7, dtype=dtype, device=device), _rand(g, 5, dtype=dtype, device=device)
    for adjoint, op, sep in ((False, K.correlate2d, K.separable_correlate2d),
                             (True, K.correlate2d_adjoint, K.separable_correlate2d_adjoint)):
        want = op(x, k, boundary=boundary, backend="torch")
        torch.testing.assert_close(tri._run(x, k, boundary, adjoint, tile=(16, 16)), want, **TOL[dtype])
        first, second = ((k_w, 1), (k_h, 0)) if adjoint else ((k_h, 0), (k_w, 1))
        mid = tri._pass1d(x, first[0], first[1], boundary, adjoint, tile=(16, 16))
        got = tri._pass1d(mid, second[0], second[1], boundary, adjoint, tile=(16, 16))
        torch.testing.assert_close(got, sep(x, k_h, k_w, boundary=boundary, backend="torch"), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("boundary", ["zero", "reflect", "circular"])
@pytest.mark.parametrize("case", ["tiles", "padding_limit"])
def test_separable_tile_matches_reference(device, dtype, boundary, case):
    """The one-pass tile (16×16 tiles under the interpreter): 3×3 tiles whose windows overlap, and an
    image as small as the boundary allows (reflect: pad = n − 1), both directions."""
    from diffsolve.kernels import _triton_correlate as tri

    g = torch.Generator().manual_seed(16)
    h, w, kh, kw = (37, 41, 7, 5) if case == "tiles" else (5, 3, 9, 5)
    x = _rand(g, 1, 2, h, w, dtype=dtype, device=device)
    k_h, k_w = _rand(g, kh, dtype=dtype, device=device), _rand(g, kw, dtype=dtype, device=device)
    pairs = ((tri.separable_correlate2d_tile, K.separable_correlate2d),
             (tri.separable_correlate2d_tile_adjoint, K.separable_correlate2d_adjoint))
    for tile, op in pairs:
        want = op(x, k_h, k_w, boundary=boundary, backend="torch")
        torch.testing.assert_close(tile(x, k_h, k_w, boundary), want, **TOL[dtype])


@pytest.mark.parametrize("boundary", ["zero", "reflect", "circular"])
def test_correlate_adjoint_identity_at_the_padding_limits(device, boundary):
    """<A x, y> = <x, Aᵀ y> where the padding is as wide as the boundary allows (pad = n−1 / n)."""
    g = torch.Generator().manual_seed(7)
    h, w = (2, 1) if boundary == "circular" else (3, 2)  # kernel half-sizes 2 and 1
    x, y = (_rand(g, 1, 1, h, w, dtype=torch.float64, device=device) for _ in range(2))
    k = _rand(g, 5, 3, dtype=torch.float64, device=device)
    ax = K.correlate2d(x, k, boundary=boundary, backend="triton")
    aty = K.correlate2d_adjoint(y, k, boundary=boundary, backend="triton")
    torch.testing.assert_close((ax * y).sum(), (x * aty).sum(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(aty, K.correlate2d_adjoint(y, k, boundary=boundary, backend="torch"),
                               **TOL[torch.float64])


# ----------------------------------------------------------------------------- resampling
def _banded(g, rows, cols, width, dtype, device):
    """A (rows, cols) down-sampling-like matrix with a band of ``width`` taps per row."""
    m = torch.zeros(rows, cols, dtype=dtype)
    for i in range(rows):
        c = round((i + 0.5) * cols / rows)
        lo, hi = max(0, c - width // 2), min(cols, c + width // 2 + 1)
        m[i, lo:hi] = torch.rand(hi - lo, generator=g, dtype=dtype)
    return m.to(device)


@pytest.mark.parametrize("dtype", DTYPES)
def test_resample_and_adjoint(device, dtype):
    g = torch.Generator().manual_seed(8)
    m_h, m_w = _banded(g, 9, 37, 8, dtype, device), _banded(g, 5, 21, 6, dtype, device)
    x = _rand(g, 2, 3, 37, 21, dtype=dtype, device=device)
    y = _rand(g, 2, 3, 9, 5, dtype=dtype, device=device)
    torch.testing.assert_close(K.resample(x, m_h, m_w, backend="triton"),
                               K.resample(x, m_h, m_w, backend="torch"), **TOL[dtype])
    torch.testing.assert_close(K.resample_adjoint(y, m_h, m_w, backend="triton"),
                               K.resample_adjoint(y, m_h, m_w, backend="torch"), **TOL[dtype])
    dense_h = _rand(g, 9, 37, dtype=dtype, device=device)  # no band: every chunk is used
    torch.testing.assert_close(K.resample(x, dense_h, m_w, backend="triton"),
                               K.resample(x, dense_h, m_w, backend="torch"), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("factor", [1, 3])
def test_avg_pool_and_adjoint(device, dtype, factor):
    g = torch.Generator().manual_seed(9)
    x = _rand(g, 2, 3, 4 * factor, 5 * factor, dtype=dtype, device=device)
    y = _rand(g, 2, 3, 4, 5, dtype=dtype, device=device)
    torch.testing.assert_close(K.avg_pool(x, factor, backend="triton"),
                               K.avg_pool(x, factor, backend="torch"), **TOL[dtype])
    torch.testing.assert_close(K.avg_pool_adjoint(y, factor, backend="triton"),
                               K.avg_pool_adjoint(y, factor, backend="torch"), **TOL[dtype])


# ----------------------------------------------------------------------------- CG
@pytest.mark.parametrize("dtype", DTYPES)
def test_cg_dots_matches_reference_and_resets(device, dtype):
    g = torch.Generator().manual_seed(10)
    for shape in ((3, 2, 7, 11), (3, 5)):  # several programs per sample, then one
        r, gr = _rand(g, *shape, dtype=dtype, device=device), _rand(g, *shape, dtype=dtype, device=device)
        shift = torch.rand(3, generator=g, dtype=dtype).to(device)
        scale = torch.rand(3, generator=g, dtype=dtype).to(device) + 0.5
        for _ in range(2):  # the arrival counters must be back at 0 for the second call
            torch.testing.assert_close(K.cg_dots(r, gr, shift, scale, backend="triton"),
                                       cg_mod.cg_dots_reference(r, gr, shift, scale), **TOL[dtype])
            r = r * 0.5


@pytest.mark.parametrize("dtype", DTYPES)
def test_cg_update_matches_reference(device, dtype):
    g = torch.Generator().manual_seed(11)
    x, r, p, s, gr = (_rand(g, 4, 3, 5, 3, dtype=dtype, device=device) for _ in range(5))
    shift = torch.rand(4, generator=g, dtype=dtype).to(device)
    scale = torch.ones(4, dtype=dtype, device=device)
    dots = cg_mod.cg_dots_reference(r, gr, shift, scale).abs() + 0.1
    # rows: first iteration; a later one; inactive; converged now (γ <= tol²·‖rhs‖²)
    state = torch.tensor([[0, 0, 1, 0, 9.0], [2.0, 0.5, 1, 3, 9.0], [2.0, 0.5, 0, 3, 9.0],
                          [2.0, 0.5, 1, 3, 1e12]], dtype=dtype, device=device)
    want = cg_mod.cg_update_reference(x, r, p, s, gr, shift, scale, dots, state, 1e-4)
    got = K.cg_update(x.clone(), r.clone(), p.clone(), s.clone(), gr, shift, scale, dots, state, 1e-4,
                      backend="triton")
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **TOL[dtype])


def test_batched_cg_on_triton_equals_torch(device):
    g = torch.Generator().manual_seed(12)
    a = torch.randn(35, 35, generator=g, dtype=torch.float64)
    gram_m = (a @ a.T / 35).to(device)

    def gram(v):
        return (v.reshape(v.shape[0], -1) @ gram_m).reshape(v.shape)

    rhs = _rand(g, 3, 5, 7, dtype=torch.float64, device=device)
    shift = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64, device=device)
    want = K.batched_cg(gram, rhs, shift, 1.0, max_iters=20, tol=1e-6, backend="torch")
    got = K.batched_cg(gram, rhs, shift, 1.0, max_iters=20, tol=1e-6, backend="triton")
    torch.testing.assert_close(got.x, want.x, rtol=1e-9, atol=1e-10)
    assert torch.equal(got.iterations, want.iterations)
    assert bool(got.converged.all()) and bool(want.converged.all())


# ----------------------------------------------------------------------------- guard buffers
class _GuardedTorch:
    """Stands in for ``torch`` inside a Triton module: outputs come from guarded buffers."""

    SENTINEL = -7777.0

    def __init__(self):
        self.buffers = []

    def __getattr__(self, name):
        return getattr(torch, name)

    def _guarded(self, shape, dtype, device):
        n = 1
        for d in shape:
            n *= d
        buf = torch.full((n + 64,), self.SENTINEL, dtype=dtype, device=device)
        self.buffers.append((buf, n))
        return buf[32:32 + n].view(shape)

    def empty(self, *shape, dtype=None, device=None):
        shape = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape
        return self._guarded(shape, dtype or torch.get_default_dtype(), device)

    def empty_like(self, t):
        return self._guarded(tuple(t.shape), t.dtype, t.device)

    def check(self):
        assert self.buffers
        for buf, n in self.buffers:
            outside = torch.cat((buf[:32], buf[32 + n:]))
            assert bool((outside == self.SENTINEL).all()), "a kernel wrote outside its output"


def _guarded_input(t):
    """``t`` copied into the middle of a NaN-filled buffer: an unmasked read would leak NaN."""
    buf = torch.full((t.numel() + 64,), float("nan"), dtype=t.dtype, device=t.device)
    view = buf[32:32 + t.numel()].view(t.shape)
    view.copy_(t)
    return view, buf


def _guard_cases(device):
    g = torch.Generator().manual_seed(13)
    f = torch.float32

    def r(*s):
        return _rand(g, *s, dtype=f, device=device)

    x, e, z = r(3, 2, 5, 7), r(3, 2, 5, 7), r(3, 2, 5, 7)
    pos = torch.rand(3, generator=g).to(device) + 0.5
    shift = torch.rand(3, generator=g).to(device)
    state = torch.tensor([[0, 0, 1, 0, 9.0], [2.0, 0.5, 1, 3, 9.0], [2.0, 0.5, 0, 3, 9.0]], device=device)
    dots = torch.tensor([[1.0, 2.0], [1.5, 3.0], [1.0, 1.0]], device=device)
    return [
        ("step", "fused_step", (x, e, r(3, 8), e, z, None, 7, 0, True)),  # noise drawn from (seed, offset)
        ("step", "fused_step", (x, e, r(3, 8), e, z, r(3, 2, 5, 7), 7, 0, True)),  # noise given: every output compared
        ("posterior", "diagonal_posterior_step", (x, pos, r(1, 2, 5, 7), e, pos, None, None, None, 0)),
        ("correlate", "correlate2d", (x[:2, :1], r(3, 5), "reflect")),
        ("correlate", "correlate2d_adjoint", (x[:2, :1], r(3, 3), "circular")),
        ("correlate", "separable_correlate2d_adjoint", (x[:2, :1], r(5), r(3), "reflect")),
        ("correlate", "separable_correlate2d_tile", (x[:2, :1], r(5), r(3), "zero"), "separable_correlate2d"),
        ("correlate", "separable_correlate2d_tile_adjoint", (x[:2, :1], r(5), r(3), "circular"),
         "separable_correlate2d_adjoint"),
        ("resample", "resample", (r(2, 3, 17, 19), r(5, 17), r(6, 19))),
        ("resample", "resample_adjoint", (r(2, 3, 5, 6), r(5, 17), r(6, 19))),
        ("resample", "avg_pool", (r(2, 3, 6, 9), 3)),
        ("resample", "avg_pool_adjoint", (r(2, 3, 2, 3), 3)),
        ("cg", "cg_dots", (x, e, shift, pos)),
        ("cg", "cg_update", (r(3, 2, 5, 7), r(3, 2, 5, 7), r(3, 2, 5, 7), r(3, 2, 5, 7), e, shift, pos,
                             dots, state, 1e-6)),
    ]


@pytest.mark.parametrize("case", range(14))
def test_guards_nothing_read_or_written_outside(device, case, monkeypatch):
    family, name, args, *oracle = _guard_cases(device)[case]  # oracle: the reference's op, if named apart
    module = importlib.import_module(f"diffsolve.kernels._triton_{family}")
    reference = getattr(importlib.import_module(f"diffsolve.kernels.{family}"), f"{(oracle or [name])[0]}_reference")
    want = reference(*[a.clone() if isinstance(a, torch.Tensor) else a for a in args])
    guarded, buffers = [], []
    for a in args:
        if isinstance(a, torch.Tensor) and a.dim() >= 2 and a.shape[0] > 1:
            view, buf = _guarded_input(a)
            guarded.append(view)
            buffers.append((buf, a.numel()))
        else:
            guarded.append(a)
    shim = _GuardedTorch()
    monkeypatch.setattr(module, "torch", shim)
    got = getattr(module, name)(*guarded)
    monkeypatch.undo()
    shim.check()
    for buf, n in buffers:  # in-place ops (cg_update) must not touch the guards either
        outside = torch.cat((buf[:32], buf[32 + n:]))
        assert bool(outside.isnan().all())
    want = want if isinstance(want, tuple) else (want,)
    got = got if isinstance(got, tuple) else (got,)
    if name == "fused_step" and args[5] is None:  # Triton's noise stream is not torch's: x̂0 alone is comparable
        got, want = got[1:], want[1:]
    assert len(got) == len(want) and any(b is not None for b in want)
    for a, b in zip(got, want):
        if b is not None:
            torch.testing.assert_close(a, b, **TOL[torch.float32])


# ----------------------------------------------------------------------------- CUDA only
@needs_cuda
def test_cg_iteration_is_two_launches_without_sync_and_graph_capturable():
    dev = "cuda"
    g = torch.Generator().manual_seed(14)
    n = 40
    a = torch.randn(n, n, generator=g)
    gram_m = (a @ a.T / n).to(dev)

    def gram(v):
        return (v.reshape(v.shape[0], -1) @ gram_m).reshape(v.shape)

    rhs = torch.randn(4, 5, 8, generator=g).to(dev)
    shift = torch.full((4,), 0.5, device=dev)
    scale = torch.ones(4, device=dev)
    want = K.batched_cg(gram, rhs, shift, scale, max_iters=30, tol=1e-5, backend="torch")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any host sync inside raises
    try:
        got = K.batched_cg(gram, rhs, shift, scale, max_iters=30, tol=1e-5, backend="triton")
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.testing.assert_close(got.x, want.x, rtol=1e-4, atol=1e-5)

    # one iteration = gram + exactly two kernels of ours
    x, r = torch.zeros_like(rhs), rhs.clone()
    p, s = torch.zeros_like(rhs), torch.zeros_like(rhs)
    state = torch.zeros(4, 5, device=dev)
    state[:, 2], state[:, 4] = 1, rhs.pow(2).sum((1, 2))
    gr = gram(r)
    K.cg_update(x, r, p, s, gr, shift, scale, K.cg_dots(r, gr, shift, scale), state, 1e-10)  # compile
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        dots = K.cg_dots(r, gr, shift, scale, backend="triton")
        x, r, p, s, state = K.cg_update(x, r, p, s, gr, shift, scale, dots, state, 1e-10, backend="triton")
        torch.cuda.synchronize()
    names = [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    ours = [nm for nm in names if "_dots_kernel" in nm or "_update_kernel" in nm]
    assert len(ours) == 2, names

    # CUDA graph: capture one iteration, replay, compare with eager
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    bufs = [t.clone() for t in (x, r, p, s)]
    st = state.clone()
    with torch.cuda.stream(stream):
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            grg = gram(bufs[1])
            d = K.cg_dots(bufs[1], grg, shift, scale, backend="triton")
            out = K.cg_update(*bufs, grg, shift, scale, d, st, 1e-10, backend="triton")
    torch.cuda.current_stream().wait_stream(stream)
    eager_in = [t.clone() for t in (x, r, p, s)]
    grg_e = gram(eager_in[1])
    eager = K.cg_update(*eager_in, grg_e, shift, scale, K.cg_dots(eager_in[1], grg_e, shift, scale), state,
                        1e-10, backend="triton")
    for t, src in zip(bufs, (x, r, p, s)):
        t.copy_(src)
    graph.replay()
    torch.cuda.synchronize()
    for a, b in zip(out, eager):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@needs_cuda
def test_autotuned_launches_on_large_images():
    """Images above TUNE_MIN_NUMEL take the autotuned launch path: float32 Triton against float64
    references (cuDNN's conv2d may use TF32 for float32, so the float32 reference is no oracle here)."""
    dev = "cuda"
    g = torch.Generator(device=dev).manual_seed(15)
    x, e, p, z = (torch.randn(6, 3, 256, 256, generator=g, device=dev) for _ in range(4))
    taps = torch.rand(25, generator=g, device=dev)
    motion = torch.rand(15, 15, generator=g, device=dev) * (torch.rand(15, 15, generator=g, device=dev) < 0.1)

    def close(got, ref64):
        torch.testing.assert_close(got, ref64.float(), rtol=1e-5, atol=1e-4)

    d64 = [t.double() for t in (x, e, p, z)]
    for op in (K.separable_correlate2d, K.separable_correlate2d_adjoint):
        close(op(x, taps, taps, backend="triton"), op(d64[0], taps.double(), taps.double(), backend="torch"))
    from diffsolve.kernels import _triton_correlate as tri

    for tile, op in ((tri.separable_correlate2d_tile, K.separable_correlate2d),
                     (tri.separable_correlate2d_tile_adjoint, K.separable_correlate2d_adjoint)):
        for boundary in ("reflect", "circular"):
            close(tile(x, taps, taps, boundary), op(d64[0], taps.double(), taps.double(), boundary=boundary,
                                                   backend="torch"))
    for op in (K.correlate2d, K.correlate2d_adjoint):
        close(op(x, motion, backend="triton"), op(d64[0], motion.double(), backend="torch"))
    coefs = torch.randn(6, 8, generator=g, device=dev)
    kw = dict(eps_prev=p, guidance=z, noise=e, return_x0=True)
    kw64 = dict(eps_prev=d64[2], guidance=d64[3], noise=d64[1], return_x0=True)
    for a, b in zip(K.fused_step(x, e, coefs, backend="triton", **kw),
                    K.fused_step(d64[0], d64[1], coefs.double(), backend="torch", **kw64)):
        close(a, b)
    c, w = torch.rand(6, device=dev) + 0.1, torch.rand(6, device=dev) + 0.1
    d = (torch.rand(1, 1, 256, 256, generator=g, device=dev) > 0.5).float()
    close(K.diagonal_posterior_step(x, c, d, z, w, noise=(e, p), backend="triton"),
          K.diagonal_posterior_step(d64[0], c.double(), d.double(), d64[3], w.double(), noise=(d64[1], d64[2]),
                                    backend="torch"))


@needs_cuda
def test_auto_backend_picks_triton_on_cuda():
    from diffsolve.kernels import _dispatch

    assert _dispatch.resolve("fused_step", "auto", torch.device("cuda"), torch.float32).backend == "triton"
