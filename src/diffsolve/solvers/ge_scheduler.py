"""``GEScheduler``: the gradient-estimation sampler as a diffusers scheduler.

Drops into a diffusers pipeline in place of ``DDIMScheduler`` (same training-table config keys,
``set_timesteps`` / ``step`` / ``scale_model_input`` / ``add_noise``, config save/load round-trip)::

    pipe.scheduler = GEScheduler.from_config(pipe.scheduler.config, gamma=2.0)

``step`` keeps ε̂ of the previous call (ε̄ = γ ε̂_t + (1 − γ) ε̂_{t+1}; ``set_timesteps`` resets it)
and runs ``diffsolve.kernels.ge_step``, so with the same generator it gives the same samples as
:func:`diffsolve.solvers.ge`. ``timestep_spacing="loglinear"`` (default) is GE's σ schedule;
``leading``/``trailing``/``linspace`` are diffusers'. The ``eta`` a pipeline passes is ignored
(the stochastic part is ``mu``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput

from ..kernels import ge_step
from ..models.diffusers_adapter import to_epsilon
from ..schedules import (SPACINGS, alphas_cumprod_from_config, final_alpha_cumprod_from_config,
                         loglinear_timesteps, sampling_schedule, spaced_timesteps)

__all__ = ["GEScheduler", "GESchedulerOutput"]


@dataclass
class GESchedulerOutput(BaseOutput):
    """prev_sample: x_s (B, C, H, W); pred_original_sample: x̂0 from ε̄."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor | None = None


class GEScheduler(SchedulerMixin, ConfigMixin):
    """Gradient-estimation sampler (Permenter & Yuan 2024) with diffusers' scheduler interface.

    Training-table arguments as ``DDIMScheduler``; ``gamma`` γ, ``mu`` μ ∈ [0, 1) and
    ``sigma_max``/``sigma_min`` as :func:`diffsolve.solvers.ge`; ``backend`` picks the kernel.
    """

    _compatibles = ["DDIMScheduler", "DDPMScheduler", "PNDMScheduler"]
    order = 1

    @register_to_config
    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 0.0001, beta_end: float = 0.02,
                 beta_schedule: str = "linear", trained_betas: Any = None, set_alpha_to_one: bool = True,
                 steps_offset: int = 0, prediction_type: str = "epsilon", timestep_spacing: str = "loglinear",
                 rescale_betas_zero_snr: bool = False, gamma: float = 2.0, mu: float = 0.0,
                 sigma_max: float | None = None, sigma_min: float | None = None, backend: str = "auto") -> None:
        if timestep_spacing not in SPACINGS + ("loglinear",):
            raise ValueError(f"timestep_spacing must be one of {SPACINGS + ('loglinear',)}, got {timestep_spacing!r}")
        if not 0 <= mu < 1:
            raise ValueError(f"mu must lie in [0, 1), got {mu}")
        if prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(f"prediction_type must be epsilon, v_prediction or sample, got {prediction_type!r}")
        self.alphas_cumprod = alphas_cumprod_from_config(self.config)
        self.final_alpha_cumprod = final_alpha_cumprod_from_config(self.config, self.alphas_cumprod)
        self.init_noise_sigma = 1.0
        self.num_inference_steps: int | None = None
        self.timesteps = torch.arange(num_train_timesteps - 1, -1, -1, dtype=torch.int64)
        self._schedule = None
        self._step_index = 0
        self._eps_prev: torch.Tensor | None = None

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        """Choose N timesteps (``timestep_spacing``) and reset the ε̂ history."""
        cfg = self.config
        if cfg.timestep_spacing == "loglinear":
            ts = loglinear_timesteps(self.alphas_cumprod, num_inference_steps, cfg.sigma_max, cfg.sigma_min)
        else:
            ts = spaced_timesteps(cfg.num_train_timesteps, num_inference_steps, cfg.timestep_spacing,
                                  cfg.steps_offset)
        self._schedule = sampling_schedule(self.alphas_cumprod, ts, self.final_alpha_cumprod)
        self._alpha_t = self._schedule.alpha_t.tolist()
        self._alpha_s = self._schedule.alpha_s.tolist()
        self._listed = ts.tolist()
        self.num_inference_steps = num_inference_steps
        self.timesteps = ts.to(device) if device is not None else ts
        self._step_index = 0
        self._eps_prev = None

    def scale_model_input(self, sample: torch.Tensor, timestep: int | None = None) -> torch.Tensor:
        """Identity (VP model input), as DDIM."""
        return sample

    def step(self, model_output: torch.Tensor, timestep: int | torch.Tensor, sample: torch.Tensor,
             eta: float = 0.0, use_clipped_model_output: bool = False, generator: torch.Generator | None = None,
             variance_noise: torch.Tensor | None = None,
             return_dict: bool = True) -> GESchedulerOutput | tuple[torch.Tensor, torch.Tensor]:
        """One GE step from ``timestep`` to the next listed one (x_s and x̂0)."""
        if self._schedule is None:
            raise ValueError("call set_timesteps(num_inference_steps) before step()")
        i = self._step_index
        if i >= len(self._listed):
            raise ValueError(f"all {len(self._listed)} steps are done; call set_timesteps again")
        if int(timestep) != self._listed[i]:
            raise ValueError(f"step {i} expects timestep {self._listed[i]}, got {int(timestep)}; GEScheduler steps "
                             "through self.timesteps in order")
        a_t, a_s = self._alpha_t[i], self._alpha_s[i]
        state_dtype = sample.dtype if sample.dtype in (torch.float32, torch.float64) else torch.float32
        x = sample.to(state_dtype)
        eps = model_output.to(state_dtype)
        if self.config.prediction_type != "epsilon":
            eps = to_epsilon(eps, x, torch.full((x.shape[0],), a_t, dtype=state_dtype, device=x.device),
                             self.config.prediction_type)
        noise = None
        if self.config.mu > 0:
            if variance_noise is not None:
                noise = variance_noise.to(state_dtype)
            else:
                gen_device = generator.device if generator is not None else x.device
                noise = torch.randn(x.shape, generator=generator, dtype=state_dtype, device=gen_device).to(x.device)
        x_s, x0 = ge_step(x, eps, self._eps_prev, a_t, a_s, gamma=self.config.gamma, mu=self.config.mu, noise=noise,
                          return_x0=True, backend=self.config.backend)
        self._eps_prev = eps
        self._step_index = i + 1
        x_s, x0 = x_s.to(sample.dtype), x0.to(sample.dtype)
        if not return_dict:
            return x_s, x0
        return GESchedulerOutput(prev_sample=x_s, pred_original_sample=x0)

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Forward process x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε (as diffusers)."""
        a = self.alphas_cumprod.to(device=original_samples.device, dtype=original_samples.dtype)[
            timesteps.to(original_samples.device)].reshape(-1, *([1] * (original_samples.dim() - 1)))
        return a.sqrt() * original_samples + (1 - a).sqrt() * noise

    def __len__(self) -> int:
        return self.config.num_train_timesteps
