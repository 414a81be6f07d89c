"""``GEScheduler``: the gradient-estimation sampler as a diffusers scheduler.

Drops into a diffusers pipeline in place of ``DDIMScheduler`` (same training-table config keys,
``set_timesteps`` / ``step`` / ``scale_model_input`` / ``add_noise`` / ``get_velocity``, the attributes
``betas``, ``alphas``, ``alphas_cumprod``, ``final_alpha_cumprod``, ``init_noise_sigma``, ``order``,
``timesteps``, ``num_inference_steps``, ``step_index``, ``begin_index``; config save/load)::

    pipe.scheduler = GEScheduler.from_config(pipe.scheduler.config, gamma=2.0)

Behaviour a diffusers user relies on:

- **Spacing.** GE's own schedule, ``timestep_spacing="loglinear"`` (σ log-linear, Permenter & Yuan
  2024), is kept by ``from_config`` of another scheduler's config (a DDPM/DDIM config's
  ``"leading"`` is not inherited); ask for ``leading``/``trailing``/``linspace`` explicitly
  (``from_config(cfg, timestep_spacing="trailing")``). A GEScheduler config keeps its own value.
- **Starting anywhere.** Each step is located by its timestep t: it goes from t to the next listed
  timestep below t (the final ᾱ after the last), so img2img / inpainting loops over
  ``timesteps[k:]`` (strength < 1) work, as does any t in [0, T). ε̂ of the previous call enters
  ε̄ = γ ε̂_t + (1 − γ) ε̂_prev only when this step continues from where the last one landed; any
  other t starts a new chain (ε̄ = ε̂, GE's first step). ``set_begin_index(k)`` (pipelines call it)
  makes the first step check that it is at ``timesteps[k]``.
- **clip_sample / thresholding** (and ``clip_sample_range``, ``sample_max_value``,
  ``dynamic_thresholding_ratio``) act on the model's x̂0 before GE combines the ε̂'s, exactly as
  :class:`~diffsolve.models.DiffusersDenoiser` applies them (ε̂ recomputed from the processed x̂0 —
  diffusers' ``use_clipped_model_output=True``; a GE step has no separate x̂0 path, so this is what
  it always uses). Inherited from a DDPM/DDIM config that sets them, default off.
- **Randomness.** μ > 0 draws z from ``generator`` (or takes ``variance_noise``) as DDIM does for η > 0;
  the ``eta`` a pipeline passes must be 0 (GE's stochastic part is ``mu``; anything else is refused).

With the same generator it gives the same samples as :func:`diffsolve.solvers.ge` on
``DiffusersDenoiser(unet, config)`` (the kernel is ``diffsolve.kernels.ge_step``).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from ..kernels import ge_step
from ..kernels._checks import plain_number
from ..models.x0_clip import X0Clip, clipped_epsilon
from ..models.diffusers_adapter import to_epsilon
from ..schedules import (SPACINGS, final_alpha_cumprod_from_config, loglinear_timesteps, make_betas,
                         spaced_timesteps, validate_alphas_cumprod, zero_snr_patched)

__all__ = ["GEScheduler", "GESchedulerOutput"]

_SPACINGS = SPACINGS + ("loglinear",)


@dataclass
class GESchedulerOutput(BaseOutput):
    """prev_sample: x_s (B, C, H, W); pred_original_sample: x̂0 from ε̄."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor | None = None


class GEScheduler(SchedulerMixin, ConfigMixin):
    """Gradient-estimation sampler (Permenter & Yuan 2024) with diffusers' scheduler interface.

    Training-table arguments as ``DDIMScheduler``; ``gamma`` γ, ``mu`` μ ∈ [0, 1) and
    ``sigma_max``/``sigma_min`` as :func:`diffsolve.solvers.ge`; ``backend`` picks the kernel.
    ``alphas_cumprod`` is float64 holding diffusers' float32 values exactly; ``betas``/``alphas`` float32.
    """

    _compatibles = ["DDIMScheduler", "DDPMScheduler", "PNDMScheduler"]
    order = 1

    @register_to_config
    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 0.0001, beta_end: float = 0.02,
                 beta_schedule: str = "linear", trained_betas: Any = None, set_alpha_to_one: bool = True,
                 steps_offset: int = 0, prediction_type: str = "epsilon", timestep_spacing: str = "loglinear",
                 rescale_betas_zero_snr: bool = False, clip_sample: bool = False, clip_sample_range: float = 1.0,
                 thresholding: bool = False, dynamic_thresholding_ratio: float = 0.995,
                 sample_max_value: float = 1.0, gamma: float = 2.0, mu: float = 0.0,
                 sigma_max: float | None = None, sigma_min: float | None = None, backend: str = "auto") -> None:
        if timestep_spacing not in _SPACINGS:
            raise ValueError(f"timestep_spacing must be one of {_SPACINGS}, got {timestep_spacing!r}")
        mu, gamma = plain_number(mu), plain_number(gamma)
        if isinstance(mu, bool) or not isinstance(mu, (int, float)) or not 0 <= mu < 1:
            raise ValueError(f"mu must lie in [0, 1), got {mu!r}")
        if not isinstance(gamma, (int, float)) or isinstance(gamma, bool) or gamma != gamma:
            raise ValueError(f"gamma must be a number (1: DDIM, 2: the paper's choice), got {gamma!r}")
        if prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(f"prediction_type must be epsilon, v_prediction or sample, got {prediction_type!r}")
        self.betas = make_betas(num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas,
                                rescale_betas_zero_snr)
        self.alphas = 1.0 - self.betas
        # a zero-terminal-SNR table's ᾱ_{T−1} = 0 set to 2⁻²⁴ as DiffusersDenoiser does (ε-prediction refused), so
        # that every spacing and step works (DDIMScheduler takes such configs)
        self.alphas_cumprod = zero_snr_patched(validate_alphas_cumprod(
            torch.cumprod(self.alphas, dim=0).double(), allow_zero_last=rescale_betas_zero_snr), prediction_type)
        self.final_alpha_cumprod = final_alpha_cumprod_from_config(self.config, self.alphas_cumprod)
        self.x0_clip = X0Clip.from_config(self.config)
        self.init_noise_sigma = 1.0
        self.num_inference_steps: int | None = None
        self.timesteps = torch.arange(num_train_timesteps - 1, -1, -1, dtype=torch.int64)
        self._ascending: list[int] | None = None  # listed timesteps, ascending (for bisect)
        self._step_index: int | None = None
        self._begin_index: int | None = None
        self._eps_prev: torch.Tensor | None = None
        self._landed: int | None = None  # the timestep the last step went to (-1: past the last listed)

    @classmethod
    def from_config(cls, config: Any = None, return_unused_kwargs: bool = False, **kwargs: Any) -> Any:
        """As ``ConfigMixin.from_config``, but another scheduler's ``timestep_spacing`` is not inherited:
        GE keeps ``loglinear`` unless ``timestep_spacing=`` is passed (module docstring)."""
        if isinstance(config, ConfigMixin):  # a scheduler object (diffusers accepts it, deprecated): its config
            config = config.config
        if config is not None and hasattr(config, "items") and "timestep_spacing" not in kwargs:
            own = config.get("_class_name") == cls.__name__ or "gamma" in config
            if not own:
                config = {k: v for k, v in config.items() if k != "timestep_spacing"}
        return super().from_config(config, return_unused_kwargs=return_unused_kwargs, **kwargs)

    @property
    def step_index(self) -> int | None:
        """Index in ``timesteps`` of the next step's source (None before the first step)."""
        return self._step_index

    @property
    def begin_index(self) -> int | None:
        """The index the first step must start at (``set_begin_index``), or None."""
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Pipelines with strength < 1 call this with the index of their first timestep."""
        begin_index = plain_number(begin_index)
        if not isinstance(begin_index, int) or isinstance(begin_index, bool) or begin_index < 0:
            raise ValueError(f"begin_index must be a non-negative int, got {begin_index!r}")
        self._begin_index = begin_index

    def set_timesteps(self, num_inference_steps: int | None = None, device: str | torch.device | None = None,
                      timesteps: Sequence[int] | None = None) -> None:
        """Choose N timesteps (``timestep_spacing``, or descending custom ``timesteps``); reset the state."""
        cfg = self.config
        total = self.alphas_cumprod.numel()
        if timesteps is not None:
            if num_inference_steps is not None:
                raise ValueError("give num_inference_steps or timesteps, not both")
            ts = torch.as_tensor(list(timesteps) if not isinstance(timesteps, torch.Tensor) else timesteps)
            if ts.dim() != 1 or ts.numel() < 1 or ts.dtype.is_floating_point or ts.dtype == torch.bool:
                raise ValueError(f"timesteps must be a non-empty 1-D sequence of ints, got {timesteps!r}")
            ts = ts.to(torch.int64).cpu()
            if int(ts.min()) < 0 or int(ts.max()) >= total or (ts.numel() > 1 and not bool((ts[1:] < ts[:-1]).all())):
                raise ValueError(f"timesteps must be strictly decreasing in [0, {total - 1}], got {ts.tolist()}")
        elif num_inference_steps is None:
            raise ValueError("set_timesteps needs num_inference_steps (or timesteps)")
        elif cfg.timestep_spacing == "loglinear":
            ts = loglinear_timesteps(self.alphas_cumprod, num_inference_steps, cfg.sigma_max, cfg.sigma_min)
        else:
            ts = spaced_timesteps(total, num_inference_steps, cfg.timestep_spacing, cfg.steps_offset)
        self._ascending = ts.flip(0).tolist()
        self.num_inference_steps = ts.numel()
        self.timesteps = ts.to(device) if device is not None else ts
        self._step_index = None
        self._begin_index = None
        self._eps_prev = None
        self._landed = None

    def scale_model_input(self, sample: torch.Tensor, timestep: int | None = None) -> torch.Tensor:
        """Identity (VP model input), as DDIM."""
        return sample

    def _locate(self, timestep: int | torch.Tensor) -> tuple[int, int, int]:
        """(t, the target timestep (−1: the final ᾱ), the target's index in ``timesteps`` (N: past the end))."""
        value = float(timestep)
        t = int(value)
        if t != value or not 0 <= t < self.alphas_cumprod.numel():
            raise ValueError(f"timestep must be an integer training timestep in [0, {self.alphas_cumprod.numel() - 1}]"
                             f", got {value}")
        asc = self._ascending
        below = bisect.bisect_left(asc, t)  # listed entries < t are asc[:below]
        target = asc[below - 1] if below > 0 else -1
        return t, target, len(asc) - below

    def step(self, model_output: torch.Tensor, timestep: int | torch.Tensor, sample: torch.Tensor,
             eta: float | None = 0.0, use_clipped_model_output: bool | None = None,
             generator: torch.Generator | None = None, variance_noise: torch.Tensor | None = None,
             return_dict: bool = True) -> GESchedulerOutput | tuple[torch.Tensor, torch.Tensor]:
        """One GE step from ``timestep`` to the next listed timestep below it (x_s and x̂0).

        ``use_clipped_model_output`` is accepted for pipelines; GE always uses the ε̂ of the processed
        x̂0 (module docstring). ``eta`` must be 0 or None (use ``mu``).
        """
        if self._ascending is None:
            raise ValueError("call set_timesteps(num_inference_steps) before step()")
        if eta not in (None, 0, 0.0):
            raise ValueError(f"GEScheduler got eta={eta}: its stochastic part is the config's mu (set with "
                             "GEScheduler.from_config(config, mu=...)); pass eta=0")
        if variance_noise is not None and generator is not None:
            raise ValueError("give generator or variance_noise, not both")
        t, target, next_index = self._locate(timestep)
        if self._step_index is None and self._begin_index is not None:
            expected = int(self.timesteps[self._begin_index]) if self._begin_index < len(self.timesteps) else None
            if expected != t:
                raise ValueError(f"set_begin_index({self._begin_index}) expects the first step at timestep "
                                 f"{expected}, got {t}")
        eps_prev = self._eps_prev if self._landed == t else None
        a_t = float(self.alphas_cumprod[t])
        a_s = float(self.alphas_cumprod[target]) if target >= 0 else self.final_alpha_cumprod
        state_dtype = sample.dtype if sample.dtype in (torch.float32, torch.float64) else torch.float32
        x = sample.to(state_dtype)
        out = model_output.to(state_dtype)
        pred = self.config.prediction_type
        alpha = torch.full((x.shape[0],), a_t, dtype=state_dtype, device=x.device)
        if self.x0_clip.active:
            eps = clipped_epsilon(out, x, alpha, pred, self.x0_clip)
        else:
            eps = out if pred == "epsilon" else to_epsilon(out, x, alpha, pred)
        if eps_prev is not None and eps_prev.shape != eps.shape:
            eps_prev = None  # a different batch: a new chain
        noise = None
        if self.config.mu > 0:
            if variance_noise is not None:
                noise = variance_noise.to(device=x.device, dtype=state_dtype)
            else:  # diffusers' draw (a generator or a list of B), as DDIMScheduler.step for eta > 0
                noise = randn_tensor(x.shape, generator=generator, device=x.device, dtype=state_dtype)
        x_s, x0 = ge_step(x, eps, eps_prev, a_t, a_s, gamma=self.config.gamma, mu=self.config.mu, noise=noise,
                          return_x0=True, backend=self.config.backend)
        self._eps_prev = eps
        self._landed = target
        self._step_index = next_index
        x_s, x0 = x_s.to(sample.dtype), x0.to(sample.dtype)
        if not return_dict:
            return x_s, x0
        return GESchedulerOutput(prev_sample=x_s, pred_original_sample=x0)

    def _table(self, ref: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        a = self.alphas_cumprod.to(device=ref.device, dtype=ref.dtype)[timesteps.to(ref.device).long()]
        return a.reshape(-1, *([1] * (ref.dim() - 1)))

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Forward process x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε (as diffusers); timesteps (B,) or (1,)."""
        a = self._table(original_samples, timesteps)
        return a.sqrt() * original_samples + (1 - a).sqrt() * noise

    def get_velocity(self, sample: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """v = √ᾱ_t ε − √(1−ᾱ_t) x0 (Salimans & Ho 2022), the v-prediction target (as diffusers)."""
        a = self._table(sample, timesteps)
        return a.sqrt() * noise - (1 - a).sqrt() * sample

    def __len__(self) -> int:
        return self.config.num_train_timesteps
