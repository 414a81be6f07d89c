"""Input checks shared by the public kernel functions (messages name the argument and the fix)."""

from __future__ import annotations

import torch

__all__ = ["check_companion", "check_device", "check_image_like", "check_same", "per_sample"]

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_image_like(name: str, x: object, min_dim: int = 1) -> torch.Tensor:
    """``x`` must be a floating tensor with at least ``min_dim`` dimensions."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _FLOATS:
        raise TypeError(f"{name} must be a floating tensor (float32/float64), got dtype {x.dtype}")
    if x.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dimensions, got shape {tuple(x.shape)}")
    return x


def check_companion(name: str, t: torch.Tensor, images: torch.Tensor) -> None:
    """A tensor used with the images (a kernel, a matrix) must share their dtype and device."""
    if t.dtype != images.dtype:
        raise TypeError(f"{name} must have the images' dtype {images.dtype}, got {t.dtype}")
    if t.device != images.device:
        raise ValueError(f"{name} is on {t.device} but the images are on {images.device}; move them together")


def check_same(name: str, t: torch.Tensor | None, ref: torch.Tensor, ref_name: str) -> None:
    """``t`` (if given) must match ``ref`` in shape, dtype and device."""
    if t is None:
        return
    check_image_like(name, t)
    if t.shape != ref.shape:
        raise ValueError(f"{name} must have the shape of {ref_name} {tuple(ref.shape)}, got {tuple(t.shape)}")
    if t.dtype != ref.dtype:
        raise TypeError(f"{name} must have the dtype of {ref_name} ({ref.dtype}), got {t.dtype}")
    if t.device != ref.device:
        raise ValueError(f"{name} is on {t.device} but {ref_name} is on {ref.device}; move them together")


def per_sample(name: str, value: float | torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """A scalar or a (B,) tensor as a (B,) tensor of ``ref``'s dtype and device (B = ref.shape[0]).

    Python numbers and 0-dim tensors are expanded; a (B,) tensor must be on ``ref``'s device and
    floating. Nothing is moved between devices silently.
    """
    batch = ref.shape[0]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.full((batch,), float(value), dtype=ref.dtype, device=ref.device)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a number or a tensor of shape ({batch},), got {type(value).__name__}")
    if value.device != ref.device:
        raise ValueError(f"{name} is on {value.device} but the images are on {ref.device}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be floating, got dtype {value.dtype}")
    if value.dim() == 0:
        return value.to(ref.dtype).expand(batch)
    if value.shape != (batch,):
        raise ValueError(f"{name} must be a scalar or have shape ({batch},), got {tuple(value.shape)}")
    return value.to(ref.dtype)


def check_device(device: object) -> torch.device | None:
    """``device`` as a torch.device that this torch build can use (a clear error, not an AssertionError)."""
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as err:
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda:0', got {device!r}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} but this torch build has no usable CUDA device "
                         f"(torch {torch.__version__}, CUDA {torch.version.cuda}); use device='cpu' or install a CUDA "
                         "build of torch")
    return dev
