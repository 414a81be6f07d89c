"""Input checks for the operators; every message names the argument, what came, and what is expected."""

from __future__ import annotations

import torch

from ..kernels._checks import check_seed, per_sample, plain_number  # the one implementation of each

__all__ = ["DTYPES", "SolveNotConvergedWarning", "check_backend", "check_finite", "check_image", "check_measurement",
           "check_nonneg_number", "check_seed", "per_sample"]

DTYPES = (torch.float32, torch.float64)
_BACKENDS = ("auto", "triton", "cpp", "torch")


class SolveNotConvergedWarning(RuntimeWarning):
    """An operator's iterative solve stopped at ``max_iters`` above its tolerance (per-sample residuals
    in the message; ``return_info=True`` returns them instead, without the host sync)."""


def check_image(name: str, x: object) -> torch.Tensor:
    """``x`` must be a float32/float64 tensor of shape (B, C, H, W)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}")
    if x.dtype not in DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got dtype {x.dtype} (convert it with .float())")
    if x.dim() != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W) (rank 4), got rank {x.dim()} shape {tuple(x.shape)}")
    if 0 in x.shape:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); give at least one image of positive size")
    return x


def check_measurement(name: str, y: object) -> torch.Tensor:
    """``y`` must be a float32/float64 tensor of shape (B, ...) with at least one entry per sample: the
    measurements of operators whose output is not an image (a :class:`~diffsolve.operators.CallableOperator`
    returning, say, (B, m) for a compressed-sensing matrix)."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, ...), got {type(y).__name__}")
    if y.dtype not in DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got dtype {y.dtype} (convert it with .float())")
    if y.dim() < 2:
        raise ValueError(f"{name} must be batched, shape (B, ...) (rank >= 2), got shape {tuple(y.shape)}; "
                         f"for one measurement use {name}[None]")
    if 0 in y.shape:
        raise ValueError(f"{name} is empty (shape {tuple(y.shape)}); give at least one measurement of positive size")
    return y


def check_finite(name: str, x: torch.Tensor) -> None:
    """Raise if ``x`` holds NaN or Inf (one host sync: call outside sampling loops only)."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf values; a measurement must be finite")


def check_backend(backend: object) -> str:
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    return backend  # type: ignore[return-value]


def check_nonneg_number(name: str, value: object) -> None:
    """Python numbers must be finite and >= 0 (tensors are not inspected: that would sync)."""
    value = plain_number(value)
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number or a (B,) tensor, got a bool")
    if isinstance(value, (int, float)) and not (0 <= value < float("inf")):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
