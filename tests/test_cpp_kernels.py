"""The C++ CPU backend (diffsolve._C via kernels/_cpp_ops.py) against the torch references.

float64 results must match to ~1e-12 relative (deterministic ops), float32 to its tolerance; odd
shapes, shapes that cross the kernels' 4096-element chunks, non-contiguous inputs; results must be
bit-identical for 1 and 2 threads; in-kernel noise reproducible per (seed, offset) with N(0, 1) moments.
"""

from __future__ import annotations

import importlib
import shutil

import pytest
import scipy.stats
import torch

from diffsolve.kernels import _cpp, _dispatch
# the modules themselves (kernels/__init__ re-exports functions of the same names)
cg, correlate, posterior, resample, step = (importlib.import_module(f"diffsolve.kernels.{m}")
                                            for m in ("cg", "correlate", "posterior", "resample", "step"))

AVAILABLE, REASON = _cpp.status()


def test_extension_built_when_a_compiler_is_present():
    """A skip below must not hide a broken build: where a C++ compiler is on PATH the extension
    must load (pybind11 is a build requirement in pyproject.toml, so an isolated build fetches it;
    it need not be importable at run time)."""
    if AVAILABLE:
        assert _cpp.extension().ABI_VERSION == _cpp.ABI_VERSION
        return
    compiler = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        pytest.skip(f"no C++ compiler (c++, g++, clang++) on PATH, so the extension was not built: {REASON}")
    assert AVAILABLE, f"a C++ compiler is present ({compiler}) but the extension does not load: {REASON}"


pytestmark = pytest.mark.skipif(not AVAILABLE, reason=f"C++ backend unavailable: {REASON}")

if AVAILABLE:
    from diffsolve.kernels import _cpp_ops as ops

TOL = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=2e-5, atol=2e-5)}


def close(out, ref, dtype=torch.float64):
    scale = max(1.0, float(ref.abs().max())) if ref.numel() else 1.0
    tol = TOL[dtype]
    torch.testing.assert_close(out, ref, rtol=tol["rtol"], atol=tol["atol"] * scale)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def randn(*shape, dtype=torch.float64, seed=0):
    return torch.randn(*shape, generator=gen(seed), dtype=dtype)


def with_threads(n, fn, *args):
    """fn(*args) on n threads, with every call parallel however small (the kernels' grain at 1)."""
    old, C = torch.get_num_threads(), ops._cpp.extension()
    grain = C.parallel_grain()
    torch.set_num_threads(n)
    C.set_parallel_grain(1)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(old)
        C.set_parallel_grain(grain)


def same_for_1_and_2_threads(fn, *args):
    a, b = with_threads(1, fn, *args), with_threads(2, fn, *args)
    for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        assert (u is None and v is None) or torch.equal(u, v)


# ----------------------------------------------------------------------------- fused step
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(3, 5, 7, 9), (2, 4101)])
@pytest.mark.parametrize("terms", ["", "p", "g", "n", "pgn"])
def test_fused_step_matches_reference(dtype, shape, terms):
    x, eps = randn(*shape, dtype=dtype, seed=1), randn(*shape, dtype=dtype, seed=2)
    coefs = randn(shape[0], 8, dtype=dtype, seed=3)
    prev = randn(*shape, dtype=dtype, seed=4) if "p" in terms else None
    g = randn(*shape, dtype=dtype, seed=5) if "g" in terms else None
    z = randn(*shape, dtype=dtype, seed=6) if "n" in terms else None
    for want_x0 in (False, True):
        out = ops.fused_step(x, eps, coefs, prev, g, z, None, 0, want_x0)
        ref = step.fused_step_reference(x, eps, coefs, prev, g, z, None, 0, want_x0)
        close(out[0], ref[0], dtype)
        assert (out[1] is None) == (not want_x0)
        if want_x0:
            close(out[1], ref[1], dtype)
    same_for_1_and_2_threads(ops.fused_step, x, eps, coefs, prev, g, z, 7 if z is None else None, 3, True)


def _noise(shape, seed, offset, dtype=torch.float64):
    """The C++ stream itself: x_s = z with c_z = 1 and every other coefficient 0."""
    coefs = torch.zeros(shape[0], 8, dtype=dtype)
    coefs[:, 4] = 1
    zeros = torch.zeros(shape, dtype=dtype)
    return ops.fused_step(zeros, zeros, coefs, None, None, None, seed, offset, False)[0]


def test_noise_reproducible_per_seed_and_offset_with_normal_moments():
    z = _noise((4, 50_001), seed=123, offset=5)
    assert torch.equal(z, _noise((4, 50_001), seed=123, offset=5))
    assert not torch.equal(z, _noise((4, 50_001), seed=124, offset=5))
    # element i at offset o is element i + k at offset o - k: one stream indexed by offset + i
    shifted = _noise((1, 1000), seed=123, offset=2)
    assert torch.equal(shifted[0, 3:], z.flatten()[:997])
    assert torch.equal(_noise((2, 3), 2**64 + 9, 0), _noise((2, 3), 9, 0))  # seed taken modulo 2**64
    n = z.numel()
    assert abs(float(z.mean())) < 5 / n**0.5
    assert abs(float(z.var()) - 1) < 5 * (2 / n) ** 0.5
    assert abs(float((z**3).mean())) < 5 * (15 / n) ** 0.5
    assert abs(float((z**4).mean()) - 3) < 5 * (96 / n) ** 0.5
    assert abs(float(torch.corrcoef(torch.stack((z.flatten()[:-1], z.flatten()[1:])))[0, 1])) < 5 / n**0.5
    ks = scipy.stats.kstest(z.flatten().numpy(), "norm")
    assert ks.pvalue > 1e-3, ks  # fixed seed: a deterministic check of the whole distribution
    z32 = _noise((4, 50_001), seed=123, offset=5, dtype=torch.float32)
    assert torch.equal(z32, z.float())
    same_for_1_and_2_threads(_noise, (3, 9000), 1, 17)


@pytest.mark.parametrize("offset", [2**64 - 3, 2**64 - 8, 2**64 - 4 * 4096 - 1])
def test_noise_counter_wraps_modulo_2_64(offset):
    """offset + i past 2**64 is element (offset + i) mod 2**64 of the stream; the wrapped bound left the noise buffer
    unwritten (stack garbage, the same for every seed)."""
    n = 5 * 4096 + 37  # crosses blocks, groups and the wrap
    head = 2**64 - offset
    z = _noise((1, n), 11, offset)
    assert torch.equal(z[0, :head], _noise((1, head), 11, offset)[0])
    assert torch.equal(z[0, head:], _noise((1, n - head), 11, 0)[0])
    assert torch.equal(z[0, :head][1:], _noise((1, head - 1), 11, offset + 1)[0])
    assert not torch.equal(z, _noise((1, n), 12, offset))


def test_public_ddim_step_on_cpp_uses_the_seeded_stream():
    x, eps = randn(2, 3, 8, 8, seed=1), randn(2, 3, 8, 8, seed=2)
    out = step.ddim_step(x, eps, 0.5, 0.7, eta=1.0, seed=3, offset=11, backend="cpp")
    z = _noise(x.shape, 3, 11)
    close(out, step.ddim_step(x, eps, 0.5, 0.7, eta=1.0, noise=z, backend="torch"))


# ----------------------------------------------------------------------------- posterior
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("diag_shape", [(1, 1), (3, 1), (1, 2), (3, 2)])
def test_diagonal_posterior_matches_reference(dtype, diag_shape):
    b, c, h, w = 3, 2, 33, 129  # h*w crosses a 4096 chunk
    m, t = randn(b, c, h, w, dtype=dtype, seed=1), randn(b, c, h, w, dtype=dtype, seed=2)
    d = torch.rand(*diag_shape, h, w, generator=gen(3), dtype=dtype)
    d[..., ::3, :] = 0  # a mask-like diagonal
    prec, nprec = torch.rand(b, generator=gen(4), dtype=dtype) + 0.1, torch.rand(b, generator=gen(5), dtype=dtype) + 1
    e1, e2 = randn(b, c, h, w, dtype=dtype, seed=6), randn(b, c, h, w, dtype=dtype, seed=7)
    for noise in ((None, None), (e1, e2)):
        out = ops.diagonal_posterior_step(m, prec, d, t, nprec, *noise, None, 0)
        close(out, posterior.diagonal_posterior_step_reference(m, prec, d, t, nprec, *noise, None, 0), dtype)
    # seeded: e1 is the stream at offset, e2 at offset + numel
    seeded = ops.diagonal_posterior_step(m, prec, d, t, nprec, None, None, 9, 4)
    z = _noise((1, 2 * m.numel()), 9, 4, dtype).view(2, *m.shape)
    close(seeded, posterior.diagonal_posterior_step_reference(m, prec, d, t, nprec, z[0], z[1], None, 0), dtype)
    same_for_1_and_2_threads(ops.diagonal_posterior_step, m, prec, d, t, nprec, None, None, 9, 4)


# ----------------------------------------------------------------------------- correlate
KERNELS = [(3, 3), (5, 3), (1, 7), (9, 11)]


def _kernel(kh, kw, dtype, sparse=False):
    k = torch.randn(kh, kw, generator=gen(kh * 100 + kw), dtype=dtype)
    if sparse:
        k = k * (torch.rand(kh, kw, generator=gen(1)) < 0.3).to(dtype)
        k[kh // 2, kw // 2] = 1.0
    return k


@pytest.mark.parametrize("boundary", ["zero", "reflect", "circular"])
@pytest.mark.parametrize("kshape", KERNELS)
def test_correlate2d_and_adjoint_match_reference(boundary, kshape):
    x, y = randn(2, 3, 13, 12, seed=1), randn(2, 3, 13, 12, seed=2)
    for sparse in (False, True):
        k = _kernel(*kshape, torch.float64, sparse)
        out = ops.correlate2d(x, k, boundary)
        close(out, correlate.correlate2d_reference(x, k, boundary))
        adj = ops.correlate2d_adjoint(y, k, boundary)
        close(adj, correlate.correlate2d_adjoint_reference(y, k, boundary))
        lhs, rhs = (out * y).sum(), (x * adj).sum()
        assert abs(float(lhs - rhs)) <= 1e-12 * float(out.abs().sum() * y.abs().max())
    same_for_1_and_2_threads(ops.correlate2d, x, k, boundary)
    same_for_1_and_2_threads(ops.correlate2d_adjoint, y, k, boundary)


@pytest.mark.parametrize("boundary", ["zero", "reflect", "circular"])
@pytest.mark.parametrize("lengths", [(3, 3), (5, 1), (7, 11), (25, 25)])
def test_separable_correlate2d_and_adjoint_match_reference(boundary, lengths):
    h, w = 27, 26  # reflect needs pad < size: fine for 25 taps (pad 12)
    x, y = randn(2, 3, h, w, seed=1), randn(2, 3, h, w, seed=2)
    k_h, k_w = randn(lengths[0], seed=3), randn(lengths[1], seed=4)
    out = ops.separable_correlate2d(x, k_h, k_w, boundary)
    close(out, correlate.separable_correlate2d_reference(x, k_h, k_w, boundary))
    adj = ops.separable_correlate2d_adjoint(y, k_h, k_w, boundary)
    close(adj, correlate.separable_correlate2d_adjoint_reference(y, k_h, k_w, boundary))
    close(out, ops.correlate2d(x, torch.outer(k_h, k_w), boundary))
    same_for_1_and_2_threads(ops.separable_correlate2d, x, k_h, k_w, boundary)
    same_for_1_and_2_threads(ops.separable_correlate2d_adjoint, y, k_h, k_w, boundary)


@pytest.mark.parametrize("boundary", ["zero", "reflect", "circular"])
def test_correlate2d_across_column_blocks_and_unusual_kernels(boundary):
    """Rows wider than one register block (32 columns) and not a multiple of it, and kernels the tap list must
    get right: zero rows between non-zero ones, one tap off the centre, no tap at all, a motion-like line; the
    separable form on the same rows."""
    x, y = randn(2, 3, 21, 70, seed=1), randn(2, 3, 21, 70, seed=2)
    gapped = _kernel(9, 7, torch.float64)
    gapped[2:5] = 0
    gapped[:, 1] = 0
    one_tap = torch.zeros(5, 9, dtype=torch.float64)
    one_tap[0, 7] = 0.75
    line = torch.zeros(15, 15, dtype=torch.float64)
    line[torch.arange(15), (torch.arange(15) * 0.6).long() + 3] = 1 / 15
    for k in (gapped, one_tap, torch.zeros(3, 5, dtype=torch.float64), line):
        out, adj = ops.correlate2d(x, k, boundary), ops.correlate2d_adjoint(y, k, boundary)
        close(out, correlate.correlate2d_reference(x, k, boundary))
        close(adj, correlate.correlate2d_adjoint_reference(y, k, boundary))
        x32, y32, k32 = x.float(), y.float(), k.float()
        close(ops.correlate2d(x32, k32, boundary), correlate.correlate2d_reference(x32, k32, boundary), torch.float32)
        close(ops.correlate2d_adjoint(y32, k32, boundary), correlate.correlate2d_adjoint_reference(y32, k32, boundary),
              torch.float32)
    same_for_1_and_2_threads(ops.correlate2d, x, line, boundary)
    same_for_1_and_2_threads(ops.correlate2d_adjoint, y, line, boundary)
    k_h, k_w = randn(7, seed=3), randn(5, seed=4)  # the separable form's register blocks too
    close(ops.separable_correlate2d(x, k_h, k_w, boundary),
          correlate.separable_correlate2d_reference(x, k_h, k_w, boundary))
    close(ops.separable_correlate2d_adjoint(y, k_h, k_w, boundary),
          correlate.separable_correlate2d_adjoint_reference(y, k_h, k_w, boundary))


def test_correlate_extreme_padding_and_float32():
    # circular padding may equal the size, reflect up to size - 1 (the public checks' limits)
    x = randn(1, 2, 5, 7, seed=1)
    close(ops.correlate2d(x, _kernel(11, 15, torch.float64), "circular"),
          correlate.correlate2d_reference(x, _kernel(11, 15, torch.float64), "circular"))
    close(ops.correlate2d_adjoint(x, _kernel(11, 15, torch.float64, sparse=True), "circular"),
          correlate.correlate2d_adjoint_reference(x, _kernel(11, 15, torch.float64, sparse=True), "circular"))
    close(ops.separable_correlate2d_adjoint(x, randn(9, seed=2), randn(13, seed=3), "reflect"),
          correlate.separable_correlate2d_adjoint_reference(x, randn(9, seed=2), randn(13, seed=3), "reflect"))
    x32 = randn(2, 3, 31, 17, dtype=torch.float32)
    k32 = torch.softmax(randn(25, dtype=torch.float32, seed=5), 0)
    for boundary in ("zero", "reflect", "circular"):
        close(ops.separable_correlate2d(x32, k32, k32, boundary),
              correlate.separable_correlate2d_reference(x32, k32, k32, boundary), torch.float32)
        close(ops.correlate2d_adjoint(x32, torch.outer(k32[:9], k32[:7]), boundary),
              correlate.correlate2d_adjoint_reference(x32, torch.outer(k32[:9], k32[:7]), boundary), torch.float32)


# ----------------------------------------------------------------------------- resample
def _banded(rows, cols, taps, dtype=torch.float64, seed=0):
    m = torch.rand(rows, cols, generator=gen(seed), dtype=dtype)
    centre = (torch.arange(rows, dtype=torch.float64)[:, None] + 0.5) * cols / rows
    return m * ((torch.arange(cols)[None, :] + 0.5 - centre).abs() < taps).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("sizes", [((7, 29), (5, 23)), ((16, 16), (9, 31)), ((3, 8), (8, 8))])
def test_resample_and_adjoint_match_reference(dtype, sizes):
    (h, big_h), (w, big_w) = sizes
    x, y = randn(2, 3, big_h, big_w, dtype=dtype, seed=3), randn(2, 3, h, w, dtype=dtype, seed=4)
    m_h = _banded(h, big_h, 2, dtype, 1)
    for m_w in (_banded(w, big_w, 2, dtype, 2), randn(w, big_w, dtype=dtype, seed=2)):  # banded, dense
        # the C++ kernel itself (the public wrapper sends dense matrices to BLAS)
        close(ops._resample("resample", x, m_h, m_w, False), resample.resample_reference(x, m_h, m_w), dtype)
        close(ops._resample("resample_adjoint", y, m_h, m_w, True),
              resample.resample_adjoint_reference(y, m_h, m_w), dtype)
        close(ops.resample(x, m_h, m_w), resample.resample_reference(x, m_h, m_w), dtype)
        close(ops.resample_adjoint(y, m_h, m_w), resample.resample_adjoint_reference(y, m_h, m_w), dtype)
    m_w = _banded(w, big_w, 2, dtype, 2)
    assert ops._banded(m_h, m_w) or min(h, w) <= 4  # small sizes may be "dense"
    same_for_1_and_2_threads(ops._resample, "resample", x, m_h, m_w, False)
    same_for_1_and_2_threads(ops._resample, "resample_adjoint", y, m_h, m_w, True)


@pytest.mark.parametrize("factor", [1, 2, 3])
def test_avg_pool_and_adjoint_match_reference(factor):
    x, y = randn(2, 3, 5 * factor, 7 * factor, seed=1), randn(2, 3, 5, 7, seed=2)
    close(ops.avg_pool(x, factor), resample.avg_pool_reference(x, factor))
    close(ops.avg_pool_adjoint(y, factor), resample.avg_pool_adjoint_reference(y, factor))
    same_for_1_and_2_threads(ops.avg_pool, x, factor)


# ----------------------------------------------------------------------------- cg
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cg_dots_and_update_match_reference(dtype):
    b = 4  # 3 * 41 * 211 elements per sample: more than one 8192-element reduction block
    r, gr = randn(b, 3, 41, 211, dtype=dtype, seed=1), randn(b, 3, 41, 211, dtype=dtype, seed=2)
    shift, scale = torch.tensor([0.5, 1.0, 2.0, 0.1], dtype=dtype), torch.tensor([1.0, 0.3, 2.0, 5.0], dtype=dtype)
    dots = ops.cg_dots(r, gr, shift, scale)
    close(dots, cg.cg_dots_reference(r, gr, shift, scale), dtype)
    same_for_1_and_2_threads(ops.cg_dots, r, gr, shift, scale)
    x, p, s = (randn(b, 3, 41, 211, dtype=dtype, seed=k) for k in (3, 4, 5))
    # samples: first iteration, a later one, one converging now, one already inactive
    state = torch.tensor([[0, 0, 1, 0, 1], [2.0, 0.7, 1, 3, 1], [2.0, 0.7, 1, 3, 1e9], [2.0, 0.7, 0, 5, 1]],
                         dtype=dtype)
    ref = cg.cg_update_reference(x, r, p, s, gr, shift, scale, dots, state, 1e-6)
    args = [t.clone() for t in (x, r, p, s, gr, shift, scale, dots, state)]
    out = ops.cg_update(*args, 1e-6)
    for o, e in zip(out, ref):
        close(o, e, dtype)
    assert out[0].data_ptr() == args[0].data_ptr()  # in place, as the contract allows
    same_for_1_and_2_threads(lambda: ops.cg_update(*[t.clone() for t in (x, r, p, s, gr, shift, scale, dots, state)],
                                                   1e-6))


def test_batched_cg_same_on_cpp_and_torch():
    g = randn(3, 40, 40, seed=1)
    gram_m = g @ g.transpose(1, 2) / 40

    def gram(v):
        return (gram_m @ v.reshape(3, 40, 1)).reshape(v.shape)

    rhs = randn(3, 2, 20, seed=2)
    a = cg.batched_cg(gram, rhs, 0.1, 1.0, max_iters=60, tol=1e-10, backend="cpp")
    b = cg.batched_cg(gram, rhs, 0.1, 1.0, max_iters=60, tol=1e-10, backend="torch")
    exact = torch.linalg.solve(0.1 * torch.eye(40, dtype=torch.float64) + gram_m, rhs.reshape(3, 40, 1))
    torch.testing.assert_close(a.x.reshape(3, 40, 1), exact, rtol=1e-8, atol=1e-8)
    assert bool(a.converged.all()) and (a.iterations - b.iterations).abs().max() <= 1


# ----------------------------------------------------------------------------- ISA versions
def test_every_isa_version_gives_bit_identical_results():
    """The hot loops are compiled for baseline / AVX2 / AVX-512 and picked at run time; with
    -ffp-contract=off all versions do the same IEEE operations in the same order."""
    C = ops._cpp.extension()
    x, y = randn(2, 3, 37, 45, dtype=torch.float32, seed=1), randn(2, 3, 37, 45, dtype=torch.float32, seed=2)
    k1, k2 = randn(25, dtype=torch.float32, seed=3), randn(7, dtype=torch.float32, seed=4)
    m_h, m_w = _banded(9, 37, 4, torch.float32, 5), _banded(11, 45, 4, torch.float32, 6)
    coefs = randn(2, 8, dtype=torch.float32, seed=7)

    def run():
        return (ops.separable_correlate2d(x, k1, k2, "reflect"), ops.separable_correlate2d_adjoint(y, k2, k1, "zero"),
                ops.correlate2d(x, torch.outer(k2, k2[:5]), "circular"), ops._resample("r", x, m_h, m_w, False),
                ops.correlate2d_adjoint(y, torch.outer(k2, k2[:5]), "reflect"),
                ops._resample("a", ops._resample("r", x, m_h, m_w, False), m_h, m_w, True),
                ops.fused_step(x, y, coefs, None, None, None, 5, 1, False)[0])

    levels = range(C.detected_isa() + 1)
    try:
        results = []
        for level in levels:
            C.set_isa_limit(level)
            assert C.isa() == level
            results.append(run())
    finally:
        C.set_isa_limit(2)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


# ----------------------------------------------------------------------------- plumbing
def test_non_contiguous_inputs_are_made_contiguous():
    x = randn(2, 3, 12, 13, seed=1).transpose(2, 3)  # (2, 3, 13, 12), non-contiguous
    k = randn(3, 5, seed=2).T  # (5, 3), non-contiguous
    assert not x.is_contiguous() and not k.is_contiguous()
    close(ops.correlate2d(x, k, "reflect"), correlate.correlate2d_reference(x, k, "reflect"))
    m_h, m_w = randn(13, 4, seed=3).T, randn(12, 6, seed=4).T
    close(ops._resample("resample", x, m_h, m_w, False), resample.resample_reference(x, m_h, m_w))
    eps, coefs = randn(2, 3, 12, 13, seed=5).transpose(2, 3), randn(8, 2, seed=6).T
    close(ops.fused_step(x, eps, coefs, None, None, None, None, 0, True)[1],
          step.fused_step_reference(x, eps, coefs, None, None, None, None, 0, True)[1])
    close(correlate.separable_correlate2d(x, k[:, 0], k[0], boundary="circular", backend="cpp"),
          correlate.separable_correlate2d_reference(x, k[:, 0].contiguous(), k[0].contiguous(), "circular"))


def test_bad_inputs_are_rejected_clearly():
    x = randn(1, 2, 8, 8)
    with pytest.raises(TypeError, match="kernel"):
        ops.correlate2d(x, randn(3, 3, dtype=torch.float32), "zero")
    with pytest.raises(TypeError, match="float32 or float64"):
        ops.avg_pool(x.half(), 2)
    with pytest.raises(ValueError, match="boundary"):
        ops.correlate2d(x, randn(3, 3), "mirror")
    with pytest.raises(ValueError, match="coefs"):
        ops.fused_step(x, x, randn(2, 8), None, None, None, None, 0, False)
    with pytest.raises(ValueError, match="distinct"):
        ops.cg_update(x, x, randn(1, 2, 8, 8), randn(1, 2, 8, 8), x, randn(1), randn(1), randn(1, 2),
                      randn(1, 5), 0.0)


def test_gradients_run_the_cpp_adjoint(monkeypatch):
    """A C++ forward records a backward that is the C++ adjoint (no torch fallback)."""
    x, k_h, k_w, g = randn(1, 2, 9, 9).requires_grad_(), randn(3), randn(5), randn(1, 2, 9, 9, seed=1)
    calls = []
    real = ops.separable_correlate2d_adjoint
    monkeypatch.setattr(ops, "separable_correlate2d_adjoint", lambda *a: calls.append(1) or real(*a))
    _dispatch.reset()
    try:
        out = correlate.separable_correlate2d(x, k_h, k_w, boundary="reflect", backend="cpp")
        (grad,) = torch.autograd.grad(out, x, g)
    finally:
        monkeypatch.undo()
        _dispatch.reset()
    assert calls == [1]
    close(grad, correlate.separable_correlate2d_adjoint_reference(g, k_h, k_w, "reflect"))


def test_auto_picks_cpp_for_cpu_tensors():
    assert _dispatch.resolve("fused_step", "auto", torch.device("cpu"), torch.float32).backend == "cpp" or \
        _dispatch._env_default() != "auto"
    assert _dispatch.implementation("cpp", "cg_update", "cg", torch.device("cpu")).__wrapped__ is ops.cg_update
