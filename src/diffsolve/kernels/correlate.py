"""2-D cross-correlation of NCHW images with one kernel for every channel, and its exact adjoint.

Contract (docs/kernels.md, "correlate"): for x (B, C, H, W) and an odd-sized kernel k (kh, kw),

    out[b, c, i, j] = Σ_{u,v} k[u, v] · xpad[b, c, i + u, j + v],

xpad = x padded by (kh//2, kw//2) with boundary ``"reflect"`` (torch ``ReflectionPad2d``: mirror
without repeating the edge), ``"circular"`` or ``"zero"``; the output has the size of x. The
separable form uses k = outer(k_h, k_w) and runs as two 1-D passes.

The public functions dispatch through ``_dispatch.TABLE`` and are differentiable in the image on
every backend: the backward of each is the other one, on the same backend (``_autograd.py``).

Adjoints are exact transposes: the transposed correlation (``conv_transpose2d``) onto the padded
grid, then the padding's transpose, which folds the padded border back onto the pixels it copied.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._autograd import apply_linear
from ._checks import check_companion, check_image_like

__all__ = [
    "BOUNDARIES",
    "check_boundary",
    "correlate2d",
    "correlate2d_adjoint",
    "correlate2d_adjoint_reference",
    "correlate2d_reference",
    "separable_correlate2d",
    "separable_correlate2d_adjoint",
    "separable_correlate2d_adjoint_reference",
    "separable_correlate2d_reference",
]

BOUNDARIES = ("reflect", "circular", "zero")
_NAMES = ("kernel",)
_SEP_NAMES = ("k_h", "k_w")
_PAD_MODE = {"reflect": "reflect", "circular": "circular", "zero": "constant"}


# ----------------------------------------------------------------------------- padding and its transpose
def _pad(x: torch.Tensor, ph: int, pw: int, boundary: str) -> torch.Tensor:
    """xpad: (B, C, H + 2ph, W + 2pw)."""
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (pw, pw, ph, ph), mode=_PAD_MODE[boundary])


def _fold_axis(z: torch.Tensor, dim: int, n: int, p: int, boundary: str) -> torch.Tensor:
    """Transpose of padding one axis: z has n + 2p entries along ``dim``; returns n entries."""
    core = z.narrow(dim, p, n).clone()
    if p == 0 or boundary == "zero":
        return core
    lo, hi = z.narrow(dim, 0, p), z.narrow(dim, p + n, p)
    if boundary == "reflect":  # xpad[p-1-k] = x[1+k], xpad[p+n+k] = x[n-2-k]  (k < p)
        core.narrow(dim, 1, p).add_(lo.flip(dim))
        core.narrow(dim, n - 1 - p, p).add_(hi.flip(dim))
    else:  # circular: xpad[k] = x[n-p+k], xpad[p+n+k] = x[k]
        core.narrow(dim, n - p, p).add_(lo)
        core.narrow(dim, 0, p).add_(hi)
    return core


def _unpad(z: torch.Tensor, h: int, w: int, ph: int, pw: int, boundary: str) -> torch.Tensor:
    """Transpose of :func:`_pad`: (B, C, h + 2ph, w + 2pw) -> (B, C, h, w)."""
    return _fold_axis(_fold_axis(z, 2, h, ph, boundary), 3, w, pw, boundary)


# ----------------------------------------------------------------------------- torch references
def correlate2d_reference(x: torch.Tensor, kernel: torch.Tensor, boundary: str) -> torch.Tensor:
    """out = correlate(pad(x), kernel); x (B, C, H, W), kernel (kh, kw) -> (B, C, H, W)."""
    b, c, h, w = x.shape
    kh, kw = kernel.shape
    xp = _pad(x.reshape(b * c, 1, h, w), kh // 2, kw // 2, boundary)
    return F.conv2d(xp, kernel[None, None]).reshape(b, c, h, w)


def correlate2d_adjoint_reference(y: torch.Tensor, kernel: torch.Tensor, boundary: str) -> torch.Tensor:
    """Exact transpose of :func:`correlate2d_reference`; y (B, C, H, W) -> (B, C, H, W)."""
    b, c, h, w = y.shape
    kh, kw = kernel.shape
    z = F.conv_transpose2d(y.reshape(b * c, 1, h, w), kernel[None, None])  # (BC, 1, H+kh-1, W+kw-1)
    return _unpad(z, h, w, kh // 2, kw // 2, boundary).reshape(b, c, h, w)


def separable_correlate2d_reference(
    x: torch.Tensor, k_h: torch.Tensor, k_w: torch.Tensor, boundary: str
) -> torch.Tensor:
    """Correlation with outer(k_h, k_w) as a vertical then a horizontal 1-D pass."""
    b, c, h, w = x.shape
    xp = _pad(x.reshape(b * c, 1, h, w), k_h.numel() // 2, k_w.numel() // 2, boundary)
    t = F.conv2d(xp, k_h.view(1, 1, -1, 1))
    return F.conv2d(t, k_w.view(1, 1, 1, -1)).reshape(b, c, h, w)


def separable_correlate2d_adjoint_reference(
    y: torch.Tensor, k_h: torch.Tensor, k_w: torch.Tensor, boundary: str
) -> torch.Tensor:
    """Exact transpose of :func:`separable_correlate2d_reference`."""
    b, c, h, w = y.shape
    t = F.conv_transpose2d(y.reshape(b * c, 1, h, w), k_w.view(1, 1, 1, -1))
    z = F.conv_transpose2d(t, k_h.view(1, 1, -1, 1))
    return _unpad(z, h, w, k_h.numel() // 2, k_w.numel() // 2, boundary).reshape(b, c, h, w)


# ----------------------------------------------------------------------------- validation
def _check_images(name: str, x: object) -> torch.Tensor:
    check_image_like(name, x)
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must be float32 or float64, got dtype {x.dtype}")
    if x.dim() != 4:
        raise ValueError(f"{name} must be a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    return x


def _check_taps(name: str, k: object, ndim: int, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(k, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(k).__name__}")
    if k.dim() != ndim or any(n % 2 == 0 for n in k.shape):
        what = "(kh, kw) with odd kh, kw" if ndim == 2 else "a 1-D tensor of odd length"
        raise ValueError(f"{name} must be {what}, got shape {tuple(k.shape)}")
    check_companion(name, k, x)
    return k.contiguous()


def check_boundary(boundary: object, size: tuple[int, int], pad: tuple[int, int]) -> str:
    """``boundary`` must be known and the image large enough for its padding (pad < size for
    reflect, as torch ``ReflectionPad2d`` requires; pad <= size for circular)."""
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
    for axis, n, p in zip(("height", "width"), size, pad):
        if (boundary == "reflect" and p >= n) or (boundary == "circular" and p > n):
            need = p + 1 if boundary == "reflect" else p
            raise ValueError(
                f"image {axis} {n} is too small for a kernel of half-width {p} with boundary="
                f"{boundary!r}: need {axis} >= {need} (use a smaller kernel or boundary='zero')"
            )
    return boundary


# ----------------------------------------------------------------------------- public functions
def correlate2d(
    x: torch.Tensor, kernel: torch.Tensor, *, boundary: str = "reflect", backend: str = "auto"
) -> torch.Tensor:
    """Cross-correlate every channel of x (B, C, H, W) with ``kernel`` (kh, kw, odd); same size out."""
    _check_images("x", x)
    kernel = _check_taps("kernel", kernel, 2, x)
    check_boundary(boundary, x.shape[-2:], (kernel.shape[0] // 2, kernel.shape[1] // 2))
    return apply_linear("correlate2d", backend, x.contiguous(), kernel, boundary, names=_NAMES)


def correlate2d_adjoint(
    y: torch.Tensor, kernel: torch.Tensor, *, boundary: str = "reflect", backend: str = "auto"
) -> torch.Tensor:
    """The exact transpose of :func:`correlate2d` applied to y (B, C, H, W)."""
    _check_images("y", y)
    kernel = _check_taps("kernel", kernel, 2, y)
    check_boundary(boundary, y.shape[-2:], (kernel.shape[0] // 2, kernel.shape[1] // 2))
    return apply_linear("correlate2d_adjoint", backend, y.contiguous(), kernel, boundary, names=_NAMES)


def separable_correlate2d(
    x: torch.Tensor, k_h: torch.Tensor, k_w: torch.Tensor, *, boundary: str = "reflect",
    backend: str = "auto",
) -> torch.Tensor:
    """Cross-correlate x (B, C, H, W) with outer(k_h, k_w) (1-D, odd lengths); same size out."""
    _check_images("x", x)
    k_h, k_w = _check_taps("k_h", k_h, 1, x), _check_taps("k_w", k_w, 1, x)
    check_boundary(boundary, x.shape[-2:], (k_h.numel() // 2, k_w.numel() // 2))
    return apply_linear("separable_correlate2d", backend, x.contiguous(), k_h, k_w, boundary, names=_SEP_NAMES)


def separable_correlate2d_adjoint(
    y: torch.Tensor, k_h: torch.Tensor, k_w: torch.Tensor, *, boundary: str = "reflect",
    backend: str = "auto",
) -> torch.Tensor:
    """The exact transpose of :func:`separable_correlate2d` applied to y (B, C, H, W)."""
    _check_images("y", y)
    k_h, k_w = _check_taps("k_h", k_h, 1, y), _check_taps("k_w", k_w, 1, y)
    check_boundary(boundary, y.shape[-2:], (k_h.numel() // 2, k_w.numel() // 2))
    return apply_linear("separable_correlate2d_adjoint", backend, y.contiguous(), k_h, k_w, boundary,
                        names=_SEP_NAMES)
