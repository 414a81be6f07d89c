"""The denoiser protocol every sampler and solver takes, and a wrapper for a plain ``eps(x, t)``.

A denoiser is any object with

- ``__call__(x, t) -> eps``: x (B, C, H, W) (any (B, ...) works), t (B,) int64 training timesteps on
  x's device; returns ε̂ = ε_θ(x_t, t), same shape as x;
- ``alphas_cumprod``: the training table ᾱ (T,) (``diffsolve.schedules``).

Optional attributes the samplers read when present: ``final_alpha_cumprod`` (float, the ᾱ after the
last step; 1.0 when absent), ``sample_shape`` (per-sample shape, ``None`` entries mean "any") and
``spatial_multiple`` (H and W must be multiples of it, e.g. 2^depth for a UNet) and ``min_side`` (H and W must be
at least it: :class:`~diffsolve.models.PaddedDenoiser`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import torch

from ..kernels._checks import plain_number
from ..schedules import make_alphas_cumprod, validate_alphas_cumprod

__all__ = ["Denoiser", "EpsDenoiser", "as_denoiser", "check_sample_shape", "check_timesteps", "timestep_alphas"]


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
        final_alpha_cumprod = plain_number(final_alpha_cumprod)
        if (isinstance(final_alpha_cumprod, bool) or not isinstance(final_alpha_cumprod, (int, float))
                or not 0 < final_alpha_cumprod <= 1):
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
            shown = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
            raise ValueError(f"{name}={shape} does not fit the model: per-sample shape must be {shown}")
    multiple = int(getattr(denoiser, "spatial_multiple", 1) or 1)
    if multiple > 1 and len(shape) >= 4 and any(s % multiple for s in shape[2:]):
        crop = "×".join(str(s - s % multiple) for s in shape[2:])
        fix = ("wrap the model in diffsolve.models.PaddedDenoiser(model) (it reflect-pads the model's input to the "
               f"next multiple and crops ε̂ back), or crop the image to {crop} and build the operator for that size"
               ) if min(shape[2:]) >= multiple else f"the image is smaller than {multiple}×{multiple}"
        raise ValueError(f"{name}={shape}: the model needs H and W to be multiples of {multiple}: {fix}")
    least = int(getattr(denoiser, "min_side", 1) or 1)
    if len(shape) >= 4 and min(shape[2:]) < least:
        raise ValueError(f"{name}={shape}: the model needs H and W of at least {least}; use a larger image")
    return shape


def check_timesteps(t: object, total: int, ref: torch.Tensor, name: str = "t") -> torch.Tensor:
    """Training timesteps as a (B,) int64 tensor on ref's device (B = ref.shape[0]).

    ``t``: an int, or an integer tensor of shape () or (B,), each in [0, total). A float (5.5), a
    bool, or an out-of-range value (5000, −1: indexing would fail, or silently wrap to the end of the
    table) is an error naming the range. The range of a CPU tensor is checked here; a tensor on a GPU
    is not read back (that would sync inside sampling loops, which pass only schedule timesteps).
    """
    batch = ref.shape[0]
    t = plain_number(t)  # np.int64(5) is 5; np.float64(5.0) stays a float and is refused below
    if isinstance(t, bool) or not isinstance(t, (int, torch.Tensor)):
        raise TypeError(f"{name} must be an int or an integer tensor of training timesteps in [0, {total}), got "
                        f"{type(t).__name__} {t!r}")
    if isinstance(t, int):
        if not 0 <= t < total:
            raise ValueError(f"{name}={t} is outside the model's training timesteps [0, {total - 1}]")
        return torch.full((batch,), t, dtype=torch.int64, device=ref.device)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer training timesteps in [0, {total}), got dtype {t.dtype}; "
                        "round them explicitly (t.round().long()) if that is what you mean")
    if t.device.type == "cpu" and t.numel() > 0 and not (int(t.min()) >= 0 and int(t.max()) < total):
        raise ValueError(f"{name} holds values in [{int(t.min())}, {int(t.max())}], outside the model's training "
                         f"timesteps [0, {total - 1}]")
    t = t.to(device=ref.device, dtype=torch.int64)
    t = t.reshape(-1).expand(batch) if t.numel() == 1 else t
    if t.shape != (batch,):
        raise ValueError(f"{name} must be a scalar or have shape ({batch},), got {tuple(t.shape)}")
    return t


def timestep_alphas(alphas_cumprod: torch.Tensor, t: torch.Tensor | int, ref: torch.Tensor) -> torch.Tensor:
    """ᾱ_t for each sample as a (B,) tensor in ref's dtype/device; t an int or (B,)/() int tensor
    in [0, T) (:func:`check_timesteps`). For half-precision x pass a float32 ``ref``: float16 rounds ᾱ_t near 1
    to 1.0, and 1 − ᾱ_t to 0."""
    t = check_timesteps(t, alphas_cumprod.numel(), ref)
    return alphas_cumprod.to(device=ref.device, dtype=torch.float64)[t].to(ref.dtype)
