"""diffusers' processing of the predicted clean sample x̂0: ``clip_sample`` and ``thresholding``.

Scheduler configs of DDPM/DDIM checkpoints carry (defaults in brackets)

- ``clip_sample`` [True in DDPMScheduler/DDIMScheduler] with ``clip_sample_range`` r [1.0]:
  x̂0 ← clamp(x̂0, −r, r);
- ``thresholding`` [False] — dynamic thresholding (Saharia et al. 2022, "Imagen", §2.3) with
  ``dynamic_thresholding_ratio`` p [0.995] and ``sample_max_value`` m [1.0]: per sample,
  s = clamp(quantile_p(|x̂0|), 1, m), x̂0 ← clamp(x̂0, −s, s) / s. It takes precedence over
  ``clip_sample``, as in diffusers.

:class:`X0Clip` applies them exactly as ``DDIMScheduler._threshold_sample`` / ``.clamp`` do.
:func:`clipped_epsilon` turns a model output into the ε̂ consistent with the processed x̂0,
ε̂ = (x_t − √ᾱ_t x̂0)/√(1−ᾱ_t) — diffusers' ``use_clipped_model_output=True`` — which is how a
denoiser that returns one ε̂ carries the clip (DDPM's posterior mean uses x̂0 alone, so there it is
exactly diffusers' step). ``DDIMScheduler.step``'s default (``use_clipped_model_output=False``) instead
keeps the raw ε̂ in the direction term, x_s = √ᾱ_s clip(x̂0) + √(1−ᾱ_s−σ²) ε̂_raw + σz: the adapter's
``x0_and_eps`` gives x̂0 and the raw ε̂, and ``diffsolve.solvers.ddim(clipped_model_output=...)`` chooses.
No host sync: the per-sample threshold stays on the device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["X0Clip", "clipped_epsilon", "to_x0"]


def to_x0(output: torch.Tensor, x: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """x̂0 from a model output as diffusers forms it; output, x (B, ...), alpha_bar (B,) ᾱ_t.

    ``epsilon``: (x − √(1−ᾱ) ε)/√ᾱ; ``v_prediction``: √ᾱ x − √(1−ᾱ) v; ``sample``: the output.
    """
    a = alpha_bar.reshape(-1, *([1] * (x.dim() - 1)))
    if prediction_type == "epsilon":
        return (x - (1 - a).sqrt() * output) / a.sqrt()
    if prediction_type == "v_prediction":
        return a.sqrt() * x - (1 - a).sqrt() * output
    if prediction_type == "sample":
        return output
    raise ValueError(f"prediction_type must be epsilon, v_prediction or sample, got {prediction_type!r}")


def _flag(cfg: Mapping[str, Any], key: str, override: bool | None) -> bool:
    value = cfg.get(key, False) if override is None else override
    if not isinstance(value, bool):
        raise TypeError(f"{key} must be True or False, got {type(value).__name__} {value!r}")
    return value


def _positive(cfg: Mapping[str, Any], key: str, default: float) -> float:
    value = cfg.get(key, default)
    if value is None:
        value = default
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{key} must be a positive finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class X0Clip:
    """The x̂0 processing of a scheduler config (module docstring); ``X0Clip()`` does nothing."""

    clip_sample: bool = False
    clip_sample_range: float = 1.0
    thresholding: bool = False
    dynamic_thresholding_ratio: float = 0.995
    sample_max_value: float = 1.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, clip_sample: bool | None = None,
                    thresholding: bool | None = None) -> "X0Clip":
        """From a scheduler config; ``clip_sample`` / ``thresholding`` (not None) override the config's."""
        ratio = _positive(config, "dynamic_thresholding_ratio", 0.995)
        if ratio > 1:
            raise ValueError(f"dynamic_thresholding_ratio must lie in (0, 1] (a quantile), got {ratio}")
        return cls(clip_sample=_flag(config, "clip_sample", clip_sample),
                   clip_sample_range=_positive(config, "clip_sample_range", 1.0),
                   thresholding=_flag(config, "thresholding", thresholding),
                   dynamic_thresholding_ratio=ratio,
                   sample_max_value=_positive(config, "sample_max_value", 1.0))

    @property
    def active(self) -> bool:
        """Whether x̂0 is changed at all."""
        return self.clip_sample or self.thresholding

    def __call__(self, x0: torch.Tensor) -> torch.Tensor:
        """Processed x̂0 (B, ...), same dtype (half precision computed in float32, as diffusers)."""
        if self.thresholding:
            dtype = x0.dtype
            flat = x0.reshape(x0.shape[0], -1)
            if dtype not in (torch.float32, torch.float64):
                flat = flat.float()
            s = torch.quantile(flat.abs(), self.dynamic_thresholding_ratio, dim=1)
            s = torch.clamp(s, min=1, max=self.sample_max_value).unsqueeze(1)
            return (torch.clamp(flat, -s, s) / s).reshape(x0.shape).to(dtype)
        if self.clip_sample:
            return x0.clamp(-self.clip_sample_range, self.clip_sample_range)
        return x0


def clipped_epsilon(output: torch.Tensor, x: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str,
                    clip: X0Clip) -> torch.Tensor:
    """ε̂ = (x − √ᾱ clip(x̂0))/√(1−ᾱ) from a raw model output (module docstring); shapes as ``to_x0``."""
    a = alpha_bar.reshape(-1, *([1] * (x.dim() - 1)))
    x0 = clip(to_x0(output, x, alpha_bar, prediction_type))
    return (x - a.sqrt() * x0) / (1 - a).sqrt()
