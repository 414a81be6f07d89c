"""Pieces every sampling loop shares (DDIM, GE, and the inverse solvers built on them).

A solver loop is: ``setup = prepare(...)`` (validation, timesteps, x_T, noise source, progress
bar) → for each step ``setup.model_t(i)`` / ``setup.step_noise(i)`` / kernel update /
``setup.record(i, x, x0)`` → ``setup.finish(x)`` (one NaN/Inf check, trajectory). Nothing inside
the loop syncs with the device: ᾱ values are Python floats fixed up front, timesteps are indexed
from a device tensor, noise comes from the explicit generator (or in-kernel from one base seed).

Randomness (``noise_source``):

- ``"generator"`` (default): x_T, then each stochastic step's z, drawn with ``torch.randn`` from
  ``generator`` in that order, on the generator's device and moved to the sample's device —
  the same draws as diffusers' ``DDIMPipeline`` with the same generator.
- ``"kernel"``: x_T from the generator, then one base seed (one draw from the generator); step i
  asks the kernel for noise at (seed, offset = (i + 1)·numel) — Philox in-kernel on GPU, no tensor
  of noise materialized. Reproducible per backend, not equal to the "generator" stream.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..models.denoiser import as_denoiser, check_sample_shape
from ..schedules import (SPACINGS, SamplingSchedule, loglinear_timesteps, sampling_schedule, spaced_timesteps)

__all__ = ["NOISE_SOURCES", "LoopSetup", "check_number", "prepare", "select_schedule"]

NOISE_SOURCES = ("generator", "kernel")
Callback = Callable[[int, int, torch.Tensor, torch.Tensor], Any]


def check_number(name: str, value: object, low: float | None = None, high: float | None = None,
                 *, high_open: bool = False) -> float:
    """A real number in [low, high] (or [low, high) with ``high_open``); bool is rejected."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if value != value or (low is not None and value < low) or (high is not None and (
            value >= high if high_open else value > high)):
        bounds = f"[{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must lie in {bounds}, got {value}")
    return value


def select_schedule(denoiser: Any, steps: int, spacing: str = "trailing", *,
                    timesteps: Sequence[int] | torch.Tensor | None = None,
                    sigma_max: float | None = None, sigma_min: float | None = None,
                    steps_offset: int = 0) -> SamplingSchedule:
    """The sampling schedule on the denoiser's table: ``timesteps`` if given (then ``steps`` must
    match their count), else ``spacing`` ∈ {leading, trailing, linspace, loglinear}."""
    table = denoiser.alphas_cumprod
    total = table.numel()
    final = float(getattr(denoiser, "final_alpha_cumprod", 1.0))
    if not isinstance(steps, int) or isinstance(steps, bool):
        raise TypeError(f"steps must be an int, got {type(steps).__name__} {steps!r}")
    if not 1 <= steps <= total:
        raise ValueError(f"steps must be in [1, {total}] (the model's training timesteps), got {steps}")
    if timesteps is not None:
        ts = torch.as_tensor(timesteps)
        if ts.numel() != steps:
            raise ValueError(f"timesteps has {ts.numel()} entries but steps={steps}")
        return sampling_schedule(table, ts, final)
    if spacing == "loglinear":
        ts = loglinear_timesteps(table, steps, sigma_max, sigma_min)
    elif spacing in SPACINGS:
        if sigma_max is not None or sigma_min is not None:
            raise ValueError(f"sigma_max/sigma_min apply to spacing='loglinear', not {spacing!r}")
        ts = spaced_timesteps(total, steps, spacing, steps_offset)
    else:
        raise ValueError(f"spacing must be one of {SPACINGS + ('loglinear',)}, got {spacing!r}")
    return sampling_schedule(table, ts, final)


def _draw(shape: tuple[int, ...], generator: torch.Generator | None, dtype: torch.dtype,
          device: torch.device) -> torch.Tensor:
    """Standard normal noise from ``generator`` (on its device), then moved — as diffusers' randn_tensor."""
    gen_device = generator.device if generator is not None else device
    if gen_device.type != device.type and gen_device.type != "cpu":
        raise ValueError(f"generator is on {gen_device} but samples are on {device}; use a CPU generator or "
                         f"one on {device}")
    return torch.randn(shape, generator=generator, dtype=dtype, device=gen_device).to(device)


@dataclass
class LoopSetup:
    """Everything a loop needs, decided before the first step (see module docstring)."""

    denoiser: Any
    schedule: SamplingSchedule
    x: torch.Tensor
    alpha_t: list[float]
    alpha_s: list[float]
    timesteps: torch.Tensor  # (N,) int64 on the sample's device
    generator: torch.Generator | None
    noise_source: str
    seed: int | None
    callback: Callback | None
    return_trajectory: bool
    progress: bool
    name: str
    trajectory: list[torch.Tensor] = field(default_factory=list)

    @property
    def want_x0(self) -> bool:
        return self.return_trajectory or self.callback is not None

    def steps(self):
        """Step indices 0..N−1, with a tqdm bar when ``progress``."""
        indices = range(len(self.schedule))
        if not self.progress:
            return indices
        from tqdm.auto import tqdm

        return tqdm(indices, desc=self.name, total=len(self.schedule))

    def model_t(self, i: int) -> torch.Tensor:
        """(B,) int64 timesteps for the model call of step i."""
        return self.timesteps[i].expand(self.x.shape[0])

    def eps(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """ε̂ = denoiser(x, t_i) in x's dtype; the shape is checked (no sync)."""
        out = self.denoiser(x, self.model_t(i))
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            raise ValueError(f"denoiser returned {getattr(out, 'shape', type(out).__name__)}, expected ε of "
                             f"shape {tuple(x.shape)}")
        return out.to(x.dtype)

    def step_noise(self, i: int, stochastic: bool) -> dict[str, Any]:
        """Keyword arguments for the kernel's noise at step i: ``noise=`` or ``seed=/offset=``."""
        if not stochastic:
            return {}
        if self.noise_source == "kernel":
            return {"seed": self.seed, "offset": (i + 1) * self.x.numel()}
        return {"noise": _draw(tuple(self.x.shape), self.generator, self.x.dtype, self.x.device)}

    def record(self, i: int, x: torch.Tensor, x0: torch.Tensor | None) -> None:
        """After step i: store x̂0 in the trajectory and call the callback(i, t_i, x_s, x̂0)."""
        if self.return_trajectory:
            self.trajectory.append(x0)
        if self.callback is not None:
            self.callback(i, int(self.schedule.timesteps[i]), x, x0)

    def finish(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """One NaN/Inf check (one sync), then x or (x, trajectory (N, *x.shape) of x̂0)."""
        if not bool(torch.isfinite(x).all()):
            raise FloatingPointError(
                f"{self.name}: the sample has NaN/Inf after {len(self.schedule)} steps; check the denoiser's "
                "output, the dtype (fp16 overflow?) and the schedule (ᾱ near 0 or 1)")
        if self.return_trajectory:
            return x, torch.stack(self.trajectory)
        return x


def prepare(denoiser: Any, shape: Sequence[int], *, steps: int, spacing: str = "trailing",
            timesteps: Sequence[int] | torch.Tensor | None = None, sigma_max: float | None = None,
            sigma_min: float | None = None, generator: torch.Generator | None = None,
            callback: Callback | None = None, progress: bool = False, return_trajectory: bool = False,
            x_T: torch.Tensor | None = None, dtype: torch.dtype = torch.float32,
            device: str | torch.device | None = None, noise_source: str = "generator",
            name: str = "sampler") -> LoopSetup:
    """Validate the shared arguments, choose the timesteps and draw x_T (module docstring)."""
    denoiser = as_denoiser(denoiser)
    shape = check_sample_shape(denoiser, shape)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(i, t, x, x0), got {type(callback).__name__}")
    if noise_source not in NOISE_SOURCES:
        raise ValueError(f"noise_source must be one of {NOISE_SOURCES}, got {noise_source!r}")
    schedule = select_schedule(denoiser, steps, spacing, timesteps=timesteps, sigma_max=sigma_max,
                               sigma_min=sigma_min)
    if x_T is not None:
        if not isinstance(x_T, torch.Tensor) or not x_T.is_floating_point():
            raise TypeError(f"x_T must be a floating tensor of shape {shape}, got {type(x_T).__name__}")
        if tuple(x_T.shape) != shape:
            raise ValueError(f"x_T has shape {tuple(x_T.shape)} but shape={shape}")
        if x_T.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"x_T must be float32 or float64 (solver state), got {x_T.dtype}")
        x = x_T.clone()
    else:
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64 (solver state), got {dtype}")
        dev = torch.device(device) if device is not None else torch.device("cpu")
        x = _draw(shape, generator, dtype, dev)
    seed = None
    if noise_source == "kernel":
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=(
            generator.device if generator is not None else "cpu")))
    return LoopSetup(
        denoiser=denoiser, schedule=schedule, x=x, alpha_t=schedule.alpha_t.tolist(),
        alpha_s=schedule.alpha_s.tolist(), timesteps=schedule.timesteps.to(x.device), generator=generator,
        noise_source=noise_source, seed=seed, callback=callback, return_trajectory=bool(return_trajectory),
        progress=bool(progress), name=name)
