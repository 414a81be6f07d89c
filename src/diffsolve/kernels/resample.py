"""Down-sampling by per-axis matrices (bicubic anti-aliased resize) and average pooling, with adjoints.

Contract (docs/kernels.md, "resample"), per image and channel:

- ``resample``:          y = M_h · x · M_wᵀ,  x (B, C, H, W), m_h (h, H), m_w (w, W) -> (B, C, h, w)
- ``resample_adjoint``:  x = M_hᵀ · y · M_w                                   -> (B, C, H, W)
- ``avg_pool``:          y = mean of each s×s block (H, W divisible by s)    -> (B, C, H/s, W/s)
- ``avg_pool_adjoint``:  x = each y value replicated over its block, divided by s²

The public functions dispatch through ``_dispatch.TABLE`` and are differentiable in the image on
every backend: each one's backward is its adjoint on the same backend (``_autograd.py``).

No full-resolution temporaries beyond the output: each matrix product shrinks or grows one axis.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._autograd import apply_linear
from ._checks import check_companion
from .correlate import _check_images

__all__ = [
    "avg_pool",
    "avg_pool_adjoint",
    "avg_pool_adjoint_reference",
    "avg_pool_reference",
    "resample",
    "resample_adjoint",
    "resample_adjoint_reference",
    "resample_reference",
]

_NAMES = ("m_h", "m_w")
#: Most elements an avg_pool_adjoint output may hold (int32 indexing in the kernels: 2**31 - 1)
_MAX_ELEMENTS = 2**31 - 1


# ----------------------------------------------------------------------------- torch references
def resample_reference(x: torch.Tensor, m_h: torch.Tensor, m_w: torch.Tensor) -> torch.Tensor:
    """y = M_h x M_wᵀ per image-channel: (B, C, H, W) -> (B, C, h, w)."""
    return torch.matmul(torch.matmul(m_h, x), m_w.T)


def resample_adjoint_reference(y: torch.Tensor, m_h: torch.Tensor, m_w: torch.Tensor) -> torch.Tensor:
    """x = M_hᵀ y M_w per image-channel: (B, C, h, w) -> (B, C, H, W)."""
    return torch.matmul(torch.matmul(m_h.T, y), m_w)


def avg_pool_reference(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Mean over non-overlapping factor×factor blocks: (B, C, H, W) -> (B, C, H/s, W/s)."""
    return F.avg_pool2d(x, factor)


def avg_pool_adjoint_reference(y: torch.Tensor, factor: int) -> torch.Tensor:
    """Transpose of average pooling: replicate each value over its block, divided by s²."""
    b, c, h, w = y.shape
    s = factor
    up = (y / (s * s))[:, :, :, None, :, None].expand(b, c, h, s, w, s)
    return up.reshape(b, c, h * s, w * s)


# ----------------------------------------------------------------------------- validation
def _check_matrix(name: str, m: object, cols: int | None, x: torch.Tensor, axis: str) -> torch.Tensor:
    if not isinstance(m, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(m).__name__}")
    if m.dim() != 2 or (cols is not None and m.shape[1] != cols):
        want = f"(out, {cols})" if cols is not None else "(out, in)"
        raise ValueError(f"{name} must be a {want} matrix for the image {axis}, got shape {tuple(m.shape)}")
    check_companion(name, m, x)
    return m.contiguous()


def _check_factor(factor: object) -> int:
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be a positive int, got {factor!r}")
    return factor


# ----------------------------------------------------------------------------- public functions
def resample(x: torch.Tensor, m_h: torch.Tensor, m_w: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """y = M_h x M_wᵀ for x (B, C, H, W), m_h (h, H), m_w (w, W)."""
    _check_images("x", x)
    m_h = _check_matrix("m_h", m_h, x.shape[2], x, "height")
    m_w = _check_matrix("m_w", m_w, x.shape[3], x, "width")
    return apply_linear("resample", backend, x.contiguous(), m_h, m_w, names=_NAMES)


def resample_adjoint(
    y: torch.Tensor, m_h: torch.Tensor, m_w: torch.Tensor, *, backend: str = "auto"
) -> torch.Tensor:
    """x = M_hᵀ y M_w for y (B, C, h, w), m_h (h, H), m_w (w, W)."""
    _check_images("y", y)
    m_h = _check_matrix("m_h", m_h, None, y, "height")
    m_w = _check_matrix("m_w", m_w, None, y, "width")
    if m_h.shape[0] != y.shape[2] or m_w.shape[0] != y.shape[3]:
        raise ValueError(
            f"y of size {tuple(y.shape[-2:])} does not match the matrices' output size "
            f"({m_h.shape[0]}, {m_w.shape[0]})"
        )
    return apply_linear("resample_adjoint", backend, y.contiguous(), m_h, m_w, names=_NAMES)


def avg_pool(x: torch.Tensor, factor: int, *, backend: str = "auto") -> torch.Tensor:
    """Mean over factor×factor blocks of x (B, C, H, W); H and W must be multiples of factor."""
    _check_images("x", x)
    s = _check_factor(factor)
    if x.shape[2] % s or x.shape[3] % s:
        raise ValueError(f"x size {tuple(x.shape[-2:])} must be divisible by factor {s} for average pooling")
    return apply_linear("avg_pool", backend, x.contiguous(), s)


def avg_pool_adjoint(y: torch.Tensor, factor: int, *, backend: str = "auto") -> torch.Tensor:
    """Transpose of :func:`avg_pool`: (B, C, h, w) -> (B, C, h·s, w·s), values y/s²."""
    _check_images("y", y)
    s = _check_factor(factor)
    b, c, h, w = y.shape
    if b * c * (h * s) * (w * s) > _MAX_ELEMENTS:  # Python ints: no overflow, nothing allocated yet
        most = max(1, int((_MAX_ELEMENTS / max(1, b * c * h * w)) ** 0.5))
        raise ValueError(
            f"factor={s} is too large for y of shape {tuple(y.shape)}: the adjoint's output "
            f"({b}, {c}, {h * s}, {w * s}) would hold {b * c * h * s * w * s:.3g} elements (more than the "
            f"{_MAX_ELEMENTS:.3g} the kernels index); factor must be at most {most} here (it is the "
            "down-sampling factor of the avg_pool that produced y)")
    return apply_linear("avg_pool_adjoint", backend, y.contiguous(), s)
