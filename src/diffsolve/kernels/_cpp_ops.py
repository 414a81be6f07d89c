"""C++ implementations of the fused ops (docs/kernels.md): thin wrappers around ``diffsolve._C``.

Each function has the positional signature of ``<op>_reference`` in ``kernels/<family>.py``. It
checks what the extension relies on (CPU tensors, one dtype float32/float64, shapes), makes inputs
contiguous, allocates the outputs and passes raw buffer addresses with their sizes; the thread
count is ``torch.get_num_threads()`` at the call. Results do not depend on the thread count.

- The functions here have no autograd of their own: the dispatch (``_dispatch.TABLE``) wraps the
  linear ones in ``_autograd.LinearFunction`` (backward = the adjoint here, on C++) and makes the
  others refuse inputs that require grad.
- In-kernel noise (``seed``) is element ``offset + i`` of a Philox4x32-10 stream keyed by the seed
  (64-bit, taken modulo 2**64; counter = element // 4), turned into normals by Box–Muller in
  float32 (24-bit uniforms, so |z| ≤ 5.9; float64 outputs get the same values cast), see
  pybind/common.hpp. It is reproducible per (seed, offset), independent of the thread count and of
  the CPU's vector ISA, but it is **not** the same stream as the torch or Triton backends'.
- The hot loops exist for baseline x86-64, AVX2 and AVX-512 and the best is picked at run time;
  all versions give bit-identical results (``diffsolve._C.set_isa_limit`` lowers it, for tests).
- ``resample`` keeps the C++ banded kernel for sparse matrices (bicubic, box) and hands dense ones
  (over a quarter non-zero) to torch's BLAS matrix product, which is faster for them.
"""

from __future__ import annotations

import torch

from . import _cpp

__all__ = [
    "avg_pool", "avg_pool_adjoint", "cg_dots", "cg_update", "correlate2d", "correlate2d_adjoint",
    "diagonal_posterior_step", "fused_step", "resample", "resample_adjoint", "separable_correlate2d",
    "separable_correlate2d_adjoint",
]

_BOUNDARY = {"zero": 0, "reflect": 1, "circular": 2}
_U64 = 2**64


def _prepare(op: str, named: dict[str, torch.Tensor | None]) -> tuple[bool, dict[str, torch.Tensor | None]]:
    """Check CPU / one float dtype for every given tensor; return (is_float64, contiguous tensors)."""
    dtype = None
    out: dict[str, torch.Tensor | None] = {}
    for name, t in named.items():
        if t is None:
            out[name] = None
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.device.type != "cpu":
            raise ValueError(f"{op}: the C++ backend needs CPU tensors, {name} is on {t.device}")
        if t.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"{op}: {name} must be float32 or float64 for the C++ backend, got {t.dtype}")
        if dtype is None:
            dtype = t.dtype
        elif t.dtype != dtype:
            raise TypeError(f"{op}: {name} has dtype {t.dtype} but the other inputs are {dtype}; cast them together")
        out[name] = t.contiguous()
    return dtype == torch.float64, out


def _ptr(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()


def _threads() -> int:
    return max(1, torch.get_num_threads())


def _seed(seed: int | None, offset: int) -> tuple[bool, int, int]:
    if seed is None:
        return False, 0, 0
    if not 0 <= offset < _U64:
        raise ValueError(f"offset must lie in [0, 2**64), got {offset}")
    return True, seed % _U64, offset


def _check_shape(op: str, name: str, t: torch.Tensor | None, shape: tuple[int, ...]) -> None:
    if t is not None and tuple(t.shape) != tuple(shape):
        raise ValueError(f"{op}: {name} must have shape {tuple(shape)}, got {tuple(t.shape)}")


def _images(op: str, name: str, t: torch.Tensor) -> tuple[int, int, int]:
    if t.dim() != 4:
        raise ValueError(f"{op}: {name} must be (B, C, H, W), got shape {tuple(t.shape)}")
    return t.shape[0] * t.shape[1], t.shape[2], t.shape[3]


# ----------------------------------------------------------------------------- step / posterior
def fused_step(x, eps, coefs, eps_prev, guidance, noise, seed, offset, want_x0):
    """See ``step.fused_step_reference``; x, eps, ... (B, ...), coefs (B, 8)."""
    dbl, t = _prepare("fused_step", dict(x=x, eps=eps, coefs=coefs, eps_prev=eps_prev, guidance=guidance, noise=noise))
    x = t["x"]
    for name in ("eps", "eps_prev", "guidance", "noise"):
        _check_shape("fused_step", name, t[name], x.shape)
    batch = x.shape[0] if x.dim() else 1
    _check_shape("fused_step", "coefs", t["coefs"], (batch, 8))
    has_seed, seed_u, offset_u = _seed(seed if t["noise"] is None else None, offset)
    xs = torch.empty_like(x)
    x0 = torch.empty_like(x) if want_x0 else None
    if x.numel():
        _cpp.extension().fused_step(dbl, _ptr(x), _ptr(t["eps"]), _ptr(t["coefs"]), _ptr(t["eps_prev"]),
                                    _ptr(t["guidance"]), _ptr(t["noise"]), has_seed, seed_u, offset_u, _ptr(xs),
                                    _ptr(x0), batch, x.numel() // batch, _threads())
    return xs, x0


def diagonal_posterior_step(mean, precision, diag, target, noise_precision, noise1, noise2, seed, offset):
    """See ``posterior.diagonal_posterior_step_reference``; diag (1|B, 1|C, H, W)."""
    op = "diagonal_posterior_step"
    dbl, t = _prepare(op, dict(mean=mean, precision=precision, diag=diag, target=target,
                               noise_precision=noise_precision, noise1=noise1, noise2=noise2))
    mean, diag = t["mean"], t["diag"]
    _images(op, "mean", mean)
    b, c, h, w = mean.shape
    for name in ("target", "noise1", "noise2"):
        _check_shape(op, name, t[name], mean.shape)
    if (t["noise1"] is None) != (t["noise2"] is None):
        raise ValueError(f"{op}: give both noise1 and noise2 or neither")
    _check_shape(op, "precision", t["precision"], (b,))
    _check_shape(op, "noise_precision", t["noise_precision"], (b,))
    if diag.dim() != 4 or diag.shape[0] not in (1, b) or diag.shape[1] not in (1, c) \
            or diag.shape[2:] != mean.shape[2:]:
        raise ValueError(f"{op}: diag must be (1|{b}, 1|{c}, {h}, {w}), got {tuple(diag.shape)}")
    sb = 0 if diag.shape[0] == 1 else diag.shape[1] * h * w
    sc = 0 if diag.shape[1] == 1 else h * w
    has_seed, seed_u, offset_u = _seed(seed if t["noise1"] is None else None, offset)
    out = torch.empty_like(mean)
    if mean.numel():
        _cpp.extension().diagonal_posterior_step(
            dbl, _ptr(mean), _ptr(t["precision"]), _ptr(diag), sb, sc, _ptr(t["target"]), _ptr(t["noise_precision"]),
            _ptr(t["noise1"]), _ptr(t["noise2"]), has_seed, seed_u, offset_u, _ptr(out), b, c, h * w, _threads())
    return out


# ----------------------------------------------------------------------------- correlate
def _boundary(op: str, boundary: str) -> int:
    if boundary not in _BOUNDARY:
        raise ValueError(f"{op}: boundary must be one of {tuple(_BOUNDARY)}, got {boundary!r}")
    return _BOUNDARY[boundary]


def _correlate(op: str, x, kernel, boundary, adjoint: bool):
    dbl, t = _prepare(op, dict(x=x, kernel=kernel))
    x, kernel = t["x"], t["kernel"]
    planes, h, w = _images(op, "x" if not adjoint else "y", x)
    if kernel.dim() != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise ValueError(f"{op}: kernel must be (kh, kw) with odd sizes, got {tuple(kernel.shape)}")
    code = _boundary(op, boundary)
    out = torch.empty_like(x)
    if x.numel():
        _cpp.extension().correlate2d(dbl, _ptr(x), _ptr(kernel), kernel.shape[0], kernel.shape[1], code, adjoint,
                                     _ptr(out), planes, h, w, _threads())
    return out


def correlate2d(x, kernel, boundary):
    """See ``correlate.correlate2d_reference``: dense or sparse taps (zero taps are skipped)."""
    return _correlate("correlate2d", x, kernel, boundary, False)


def correlate2d_adjoint(y, kernel, boundary):
    """See ``correlate.correlate2d_adjoint_reference``."""
    return _correlate("correlate2d_adjoint", y, kernel, boundary, True)


def _separable(op: str, x, k_h, k_w, boundary, adjoint: bool):
    dbl, t = _prepare(op, dict(x=x, k_h=k_h, k_w=k_w))
    x, k_h, k_w = t["x"], t["k_h"], t["k_w"]
    planes, h, w = _images(op, "x" if not adjoint else "y", x)
    for name, k in (("k_h", k_h), ("k_w", k_w)):
        if k.dim() != 1 or k.numel() % 2 == 0:
            raise ValueError(f"{op}: {name} must be 1-D of odd length, got shape {tuple(k.shape)}")
    code = _boundary(op, boundary)
    out = torch.empty_like(x)
    if x.numel():
        _cpp.extension().separable_correlate2d(dbl, _ptr(x), _ptr(k_h), k_h.numel(), _ptr(k_w), k_w.numel(), code,
                                               adjoint, _ptr(out), planes, h, w, _threads())
    return out


def separable_correlate2d(x, k_h, k_w, boundary):
    """See ``correlate.separable_correlate2d_reference``: two 1-D passes, no full-size temporary."""
    return _separable("separable_correlate2d", x, k_h, k_w, boundary, False)


def separable_correlate2d_adjoint(y, k_h, k_w, boundary):
    """See ``correlate.separable_correlate2d_adjoint_reference``."""
    return _separable("separable_correlate2d_adjoint", y, k_h, k_w, boundary, True)


# ----------------------------------------------------------------------------- resample
def _resample(op: str, x, m_h, m_w, adjoint: bool):
    dbl, t = _prepare(op, dict(x=x, m_h=m_h, m_w=m_w))
    x, m_h, m_w = t["x"], t["m_h"], t["m_w"]
    planes, h, w = _images(op, "y" if adjoint else "x", x)
    if m_h.dim() != 2 or m_w.dim() != 2:
        raise ValueError(f"{op}: m_h and m_w must be matrices, got shapes {tuple(m_h.shape)}, {tuple(m_w.shape)}")
    (h_out, h_in), (w_out, w_in) = m_h.shape, m_w.shape
    if (h, w) != ((h_out, w_out) if adjoint else (h_in, w_in)):
        raise ValueError(f"{op}: image size {(h, w)} does not match m_h {tuple(m_h.shape)}, m_w {tuple(m_w.shape)}")
    size = (h_in, w_in) if adjoint else (h_out, w_out)
    out = x.new_empty(x.shape[0], x.shape[1], *size)
    if out.numel():
        _cpp.extension().resample(dbl, _ptr(x), _ptr(m_h), _ptr(m_w), h_out, h_in, w_out, w_in, adjoint, _ptr(out),
                                  planes, _threads())
    return out


_DENSE = 0.25  # above this fraction of non-zeros a BLAS matrix product beats the banded kernel


def _banded(m_h: torch.Tensor, m_w: torch.Tensor) -> bool:
    return all(int(torch.count_nonzero(m)) <= _DENSE * m.numel() for m in (m_h, m_w))


def resample(x, m_h, m_w):
    """See ``resample.resample_reference``: y = M_h x M_wᵀ with the matrices' non-zeros only.
    Dense matrices (more than a quarter non-zero, e.g. the SVD factors of exact solves) go to
    torch's BLAS product instead, which is faster for them."""
    if m_h.dim() == m_w.dim() == 2 and not _banded(m_h, m_w):
        from .resample import resample_reference

        return resample_reference(x, m_h, m_w)
    return _resample("resample", x, m_h, m_w, False)


def resample_adjoint(y, m_h, m_w):
    """See ``resample.resample_adjoint_reference``: x = M_hᵀ y M_w (dense matrices: as ``resample``)."""
    if m_h.dim() == m_w.dim() == 2 and not _banded(m_h, m_w):
        from .resample import resample_adjoint_reference

        return resample_adjoint_reference(y, m_h, m_w)
    return _resample("resample_adjoint", y, m_h, m_w, True)


def _factor(op: str, factor) -> int:
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"{op}: factor must be a positive int, got {factor!r}")
    return factor


def avg_pool(x, factor):
    """See ``resample.avg_pool_reference``; H and W divisible by factor."""
    dbl, t = _prepare("avg_pool", dict(x=x))
    x, s = t["x"], _factor("avg_pool", factor)
    planes, h, w = _images("avg_pool", "x", x)
    if h % s or w % s:
        raise ValueError(f"avg_pool: x size {(h, w)} must be divisible by factor {s}")
    out = x.new_empty(x.shape[0], x.shape[1], h // s, w // s)
    if out.numel():
        _cpp.extension().avg_pool(dbl, _ptr(x), s, False, _ptr(out), planes, h // s, w // s, _threads())
    return out


def avg_pool_adjoint(y, factor):
    """See ``resample.avg_pool_adjoint_reference``: replicate over blocks, divided by factor²."""
    dbl, t = _prepare("avg_pool_adjoint", dict(y=y))
    y, s = t["y"], _factor("avg_pool_adjoint", factor)
    planes, h, w = _images("avg_pool_adjoint", "y", y)
    out = y.new_empty(y.shape[0], y.shape[1], h * s, w * s)
    if out.numel():
        _cpp.extension().avg_pool(dbl, _ptr(y), s, True, _ptr(out), planes, h, w, _threads())
    return out


# ----------------------------------------------------------------------------- cg
def cg_dots(r, gr, shift, scale, z=None):
    """See ``cg.cg_dots_reference``: (B, 2) [⟨r, r⟩, ⟨shift·r + scale·gr, r⟩], or with z (B, 3)
    [⟨r, z⟩, ⟨shift·z + scale·gr, z⟩, ⟨r, r⟩]; summed in float64."""
    dbl, t = _prepare("cg_dots", dict(r=r, gr=gr, shift=shift, scale=scale, z=z))
    r = t["r"]
    batch = r.shape[0]
    _check_shape("cg_dots", "gr", t["gr"], r.shape)
    if z is not None:
        _check_shape("cg_dots", "z", t["z"], r.shape)
    _check_shape("cg_dots", "shift", t["shift"], (batch,))
    _check_shape("cg_dots", "scale", t["scale"], (batch,))
    dots = r.new_empty(batch, 2 if z is None else 3)
    if batch:
        _cpp.extension().cg_dots(dbl, _ptr(r), _ptr(t["gr"]), _ptr(t["shift"]), _ptr(t["scale"]), _ptr(dots), batch,
                                 r.numel() // batch, _threads(), _ptr(t["z"]))
    return dots


def cg_update(x, r, p, s, gr, shift, scale, dots, state, tol2, z=None):
    """See ``cg.cg_update_reference``; updates x, r, p, s, state in place and returns them."""
    dbl, t = _prepare("cg_update", dict(x=x, r=r, p=p, s=s, gr=gr, shift=shift, scale=scale, dots=dots, state=state,
                                        z=z))
    x = t["x"]
    batch = x.shape[0]
    for name in ("r", "p", "s", "gr") + (() if z is None else ("z",)):
        _check_shape("cg_update", name, t[name], x.shape)
    cols = 2 if z is None else 3
    for name, shape in (("shift", (batch,)), ("scale", (batch,)), ("dots", (batch, cols)), ("state", (batch, 5))):
        _check_shape("cg_update", name, t[name], shape)
    written = [t[n] for n in ("x", "r", "p", "s", "state")]
    if len({w.data_ptr() for w in written}) != len(written):
        raise ValueError("cg_update: x, r, p, s and state must be distinct tensors (they are updated in place)")
    if batch:
        _cpp.extension().cg_update(dbl, *(_ptr(t[n]) for n in ("x", "r", "p", "s", "gr", "shift", "scale", "dots",
                                                                 "state")),
                                   float(tol2), batch, x.numel() // batch, _threads(), _ptr(t["z"]))
    return t["x"], t["r"], t["p"], t["s"], t["state"]
