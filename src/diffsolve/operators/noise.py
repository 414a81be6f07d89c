"""Measurement noise models. Noise levels are given with their unit: "[-1,1]" (the data range the
package uses; DPS/MPGD's 0.05) or "[0,1]" (DDRM/DiffPIR's 0.05, which is 0.1 in [-1, 1] units)."""

from __future__ import annotations

import math

import torch

from ..kernels._checks import plain_number
from ._validate import check_measurement, check_seed

__all__ = ["GaussianNoise", "UNITS", "convert_sigma"]

UNITS = ("[-1,1]", "[0,1]")


def convert_sigma(sigma: float, from_unit: str, to_unit: str) -> float:
    """A noise std in ``from_unit`` expressed in ``to_unit`` ([-1, 1] spans twice [0, 1])."""
    for name, unit in (("from_unit", from_unit), ("to_unit", to_unit)):
        if unit not in UNITS:
            raise ValueError(f"{name} must be one of {UNITS}, got {unit!r}")
    sigma = plain_number(sigma)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 <= sigma < math.inf:
        raise ValueError(f"sigma must be a finite number >= 0 (a noise std), got {sigma!r}")
    scale = {"[-1,1]": 2.0, "[0,1]": 1.0}
    return float(sigma) * scale[to_unit] / scale[from_unit]


class GaussianNoise:
    """y = A x + σ·n, n ~ N(0, I); ``sigma`` in ``unit``; ``self.sigma`` is in [-1, 1] units."""

    def __init__(self, sigma: float, unit: str = "[-1,1]") -> None:
        sigma = plain_number(sigma)
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 <= sigma < float("inf"):
            raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS} (the pixel range sigma is measured in), got {unit!r}")
        self.sigma = convert_sigma(sigma, unit, "[-1,1]")
        self.unit = unit

    def sigma_in(self, unit: str) -> float:
        """The noise std in ``unit``."""
        return convert_sigma(self.sigma, "[-1,1]", unit)

    def __call__(self, ax: torch.Tensor, *, generator: torch.Generator | None = None,
                 seed: int | None = None) -> torch.Tensor:
        """Noisy measurement of ``ax`` (B, ...), (B, C, h, w) for an image operator; randomness from ``generator``
        or ``seed`` (one is required, so every draw is reproducible)."""
        check_measurement("ax", ax)
        if generator is None and seed is None:
            raise ValueError("pass generator=torch.Generator(...) or seed=int: noise is never drawn from the global RNG")
        if generator is not None and seed is not None:
            raise ValueError("pass either generator or seed, not both")
        if generator is None:
            check_seed("seed", seed)
            generator = torch.Generator(device=ax.device).manual_seed(seed)
        elif not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        elif generator.device.type != ax.device.type:
            raise ValueError(f"generator is on {generator.device} but ax is on {ax.device}; use a generator on {ax.device}")
        noise = torch.randn(ax.shape, generator=generator, dtype=ax.dtype, device=ax.device)
        return ax + self.sigma * noise

    def __repr__(self) -> str:
        return f"GaussianNoise(sigma={self.sigma_in(self.unit)}, unit={self.unit!r})"
