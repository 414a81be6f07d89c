"""The denoiser protocol every sampler and solver takes, and a wrapper for a plain ``eps(x, t)``.

A denoiser is any object with

- ``__call__(x, t) -> eps``: x (B, C, H, W) (any (B, ...) works), t (B,) int64 training timesteps on
  x's device; returns ε̂ = ε_θ(x_t, t), same shape as x;
- ``alphas_cumprod``: the training table ᾱ (T,) (``diffsolve.schedules``).

Optional attributes the samplers read when present: ``final_alpha_cumprod`` (float, the ᾱ after the
last step; 1.0 when absent), ``sample_shape`` (per-sample shape, ``None`` entries mean "any") and
``spatial_multiple`` (H and W must be multiples of it, e.g. 2^depth for a UNet).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import torch

from ..schedules import make_alphas_cumprod, validate_alphas_cumprod

__all__ = ["Denoiser", "EpsDenoiser", "as_denoiser", "check_sample_shape", "timestep_alphas"]


@runtime_checkable
class Denoiser(Protocol):
    """Structural type: ``denoiser(x, t) -> eps`` with an ``alphas_cumprod`` table."""

    alphas_cumprod: torch.Tensor

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor: ...


class EpsDenoiser:
    """Wraps a plain callable ``eps(x, t)`` (t: (B,) int64) with its training table.

    ``alphas_cumprod`` defaults to the DDPM linear table (T = 1000, β from 1e-4 to 0.02).
    """

    def __init__(self, eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 alphas_cumprod: torch.Tensor | None = None, *, final_alpha_cumprod: float = 1.0,
                 sample_shape: Sequence[int | None] | None = None) -> None:
        if not callable(eps_fn):
            raise TypeError(f"eps_fn must be callable as eps_fn(x, t), got {type(eps_fn).__name__}")
        self.eps_fn = eps_fn
        self.alphas_cumprod = (make_alphas_cumprod() if alphas_cumprod is None
                               else validate_alphas_cumprod(alphas_cumprod))
        if not isinstance(final_alpha_cumprod, (int, float)) or not 0 < final_alpha_cumprod <= 1:
            raise ValueError(f"final_alpha_cumprod must be a number in (0, 1], got {final_alpha_cumprod!r}")
        self.final_alpha_cumprod = float(final_alpha_cumprod)
        self.sample_shape = None if sample_shape is None else tuple(sample_shape)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.eps_fn(x, t)


def as_denoiser(obj: object, name: str = "denoiser") -> Denoiser:
    """Check that ``obj`` follows the protocol (callable, 1-D ``alphas_cumprod``); return it."""
    if not callable(obj):
        raise TypeError(f"{name} must be callable as {name}(x, t) -> eps, got {type(obj).__name__}")
    table = getattr(obj, "alphas_cumprod", None)
    if not isinstance(table, torch.Tensor):
        raise TypeError(f"{name} must have an alphas_cumprod tensor (its training table ᾱ); "
                        f"wrap a plain function with EpsDenoiser(fn, alphas_cumprod)")
    validate_alphas_cumprod(table)
    return obj  # type: ignore[return-value]


def check_sample_shape(denoiser: object, shape: Sequence[int], name: str = "shape") -> tuple[int, ...]:
    """Validate a batch shape (B, ...) against the denoiser's ``sample_shape``/``spatial_multiple``."""
    if not isinstance(shape, (tuple, list, torch.Size)) or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in shape):
        raise TypeError(f"{name} must be a tuple of ints (B, C, H, W), got {shape!r}")
    shape = tuple(shape)
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise ValueError(f"{name} must be (B, ...) with positive sizes, got {shape}")
    expected = getattr(denoiser, "sample_shape", None)
    if expected is not None:
        expected = tuple(expected)
        if len(expected) != len(shape) - 1 or any(e is not None and e != s for e, s in zip(expected, shape[1:])):
            shown = tuple("*" if e is None else e for e in expected)
            raise ValueError(f"{name}={shape} does not fit the model: per-sample shape must be {shown}")
    multiple = int(getattr(denoiser, "spatial_multiple", 1) or 1)
    if multiple > 1 and len(shape) >= 4 and any(s % multiple for s in shape[2:]):
        raise ValueError(f"{name}={shape}: the model needs H and W to be multiples of {multiple}")
    return shape


def timestep_alphas(alphas_cumprod: torch.Tensor, t: torch.Tensor | int, ref: torch.Tensor) -> torch.Tensor:
    """ᾱ_t for each sample as a (B,) tensor in ref's dtype/device; t an int or (B,)/() int tensor."""
    batch = ref.shape[0]
    if isinstance(t, int) and not isinstance(t, bool):
        t = torch.full((batch,), t, dtype=torch.int64, device=ref.device)
    if not isinstance(t, torch.Tensor) or t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"t must be an int or an integer tensor of training timesteps, got {t!r}")
    t = t.to(ref.device).reshape(-1).expand(batch) if t.numel() == 1 else t.to(ref.device)
    if t.shape != (batch,):
        raise ValueError(f"t must be a scalar or have shape ({batch},), got {tuple(t.shape)}")
    return alphas_cumprod.to(device=ref.device, dtype=torch.float64)[t].to(ref.dtype)
