"""A denoiser for any image size: reflect-pad the model's input to its spatial multiple, crop ε̂ back.

A UNet with k down-sampling stages needs H and W divisible by 2^k (``spatial_multiple``). The operator and the
measurement stay at the image's own size; only the model sees a larger image:

    x_t (B, C, H, W) → pad (B, C, H', W'), H' = ⌈H/m⌉·m, W' = ⌈W/m⌉·m (after the last row and column, reflect)
    ε̂ = ε_θ(pad(x_t), t)[..., :H, :W] (B, C, H, W)

The model then sees a mirrored strip of fewer than m pixels beyond the bottom and right borders, where x_t's noise
repeats rather than being independent; the top and left borders and the rest of ε̂ are the model's own (padding
both sides by half left all four borders next to mirrored noise, and measured worse on random masks).
``mode="circular"`` keeps the noise independent but joins opposite edges; ``"replicate"`` repeats the edge pixel.
Measured on held-out 60×60 crops against 64×64 and 56×56 ones, the three modes and both layouts against one
another: benchmarks/results/padded-denoiser.md.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..kernels._checks import plain_number
from .denoiser import as_denoiser

__all__ = ["MODES", "PaddedDenoiser", "padding_for"]

#: how the model's input is extended (``torch.nn.functional.pad`` modes); "reflect" is the default (module docstring)
MODES = ("reflect", "replicate", "circular")


def padding_for(size: tuple[int, int], multiple: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) that take (H, W) = ``size`` to the next multiple of ``multiple``: all of it
    after the last column and row (module docstring)."""
    h, w = size
    return 0, -w % multiple, 0, -h % multiple


class PaddedDenoiser:
    """``PaddedDenoiser(denoiser)``: ``denoiser`` on any H × W ≥ its ``spatial_multiple`` m (module docstring).

    Args:
        denoiser: any denoiser (``denoiser(x, t) -> eps`` with ``alphas_cumprod``).
        multiple: the side multiple to pad to (default: ``denoiser.spatial_multiple``, else 1: no padding).
        mode: ``"reflect"`` (default: mirrored without repeating the edge), ``"replicate"`` or ``"circular"``.
    Inputs whose sides are already multiples pass through unchanged. ``x0_and_eps`` (diffusers' clipped
    x̂0, used by ``ddim``) is padded the same way where the inner denoiser has it; every other attribute
    (``alphas_cumprod``, ``final_alpha_cumprod``, ``x0_clip``, …) is the inner denoiser's. ``to``, ``eval``,
    ``train``, ``float``, ``double``, ``half``, ``cuda`` and ``cpu`` act on the inner denoiser and return the wrapper.
    """

    def __init__(self, denoiser: Any, multiple: int | None = None, mode: str = "reflect") -> None:
        self.inner = as_denoiser(denoiser)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES} (how the model's input is extended), got {mode!r}")
        self.mode = mode
        if multiple is None:
            multiple = int(getattr(denoiser, "spatial_multiple", 1) or 1)
        multiple = plain_number(multiple)
        if isinstance(multiple, bool) or not isinstance(multiple, int):
            raise TypeError(f"multiple must be an int >= 1 (the side multiple the model needs), got "
                            f"{type(multiple).__name__} {multiple!r}")
        if multiple < 1:
            raise ValueError(f"multiple must be an int >= 1 (the side multiple the model needs), got {multiple!r}")
        self.multiple = multiple
        self.spatial_multiple = 1  # what this wrapper asks of its inputs: any side ...
        self.min_side = multiple  # ... of at least one block (checked before a sampling loop)
        if callable(getattr(denoiser, "x0_and_eps", None)):
            self.x0_and_eps = self._x0_and_eps

    def __getattr__(self, name: str) -> Any:  # only for attributes not found on the wrapper
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _inner_then_self(self, method: str, *args: Any, **kwargs: Any) -> "PaddedDenoiser":
        """Apply the torch.nn.Module ``method`` (``to``, ``eval``, ...) to the inner denoiser and return this wrapper
        (forwarding it would return the inner model and drop the padding)."""
        fn = getattr(self.inner, method, None)
        if not callable(fn):
            raise AttributeError(f"the inner denoiser ({type(self.inner).__name__}) has no .{method}(); "
                                 f"call it on a torch.nn.Module denoiser")
        fn(*args, **kwargs)
        return self

    def to(self, *args: Any, **kwargs: Any) -> "PaddedDenoiser":
        return self._inner_then_self("to", *args, **kwargs)

    def eval(self) -> "PaddedDenoiser":
        return self._inner_then_self("eval")

    def train(self, mode: bool = True) -> "PaddedDenoiser":
        return self._inner_then_self("train", mode)

    def float(self) -> "PaddedDenoiser":
        return self._inner_then_self("float")

    def double(self) -> "PaddedDenoiser":
        return self._inner_then_self("double")

    def half(self) -> "PaddedDenoiser":
        return self._inner_then_self("half")

    def cuda(self, *args: Any, **kwargs: Any) -> "PaddedDenoiser":
        return self._inner_then_self("cuda", *args, **kwargs)

    def cpu(self) -> "PaddedDenoiser":
        return self._inner_then_self("cpu")

    def _padded(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[slice, slice] | None]:
        if x.dim() != 4:  # (B, C, H, W) only; anything else goes to the model as it is
            return x, None
        h, w = x.shape[-2:]
        if h % self.multiple == 0 and w % self.multiple == 0:
            return x, None
        if min(h, w) < self.multiple:
            raise ValueError(f"x is {h}×{w} (H×W): the model needs sides of at least {self.multiple} to pad "
                             f"to multiples of {self.multiple}; use a larger image")
        left, right, top, bottom = self._padding((h, w))
        return F.pad(x, (left, right, top, bottom), mode=self.mode), (slice(top, top + h), slice(left, left + w))

    def _padding(self, size: tuple[int, int]) -> tuple[int, int, int, int]:
        return padding_for(size, self.multiple)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        xp, crop = self._padded(x)
        eps = self.inner(xp, t)
        return eps if crop is None else eps[..., crop[0], crop[1]]

    def _x0_and_eps(self, x: torch.Tensor, t: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
        xp, crop = self._padded(x)
        x0, eps = self.inner.x0_and_eps(xp, t)
        return (x0, eps) if crop is None else (x0[..., crop[0], crop[1]], eps[..., crop[0], crop[1]])

    def __repr__(self) -> str:
        return f"PaddedDenoiser({self.inner!r}, multiple={self.multiple}, mode={self.mode!r})"
