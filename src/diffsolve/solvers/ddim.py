"""DDIM(η) sampler (Song et al. 2021, eq. 12), the step every other solver wraps.

x̂0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t, σ = η √((1−ᾱ_s)/(1−ᾱ_t)) √(1 − ᾱ_t/ᾱ_s),
x_s = √ᾱ_s x̂0 + √(1−ᾱ_s−σ²) ε̂ + σ z — the fused ``diffsolve.kernels.ddim_step``.
With the same settings and generator it reproduces diffusers' ``DDIMPipeline`` step by step
(``timestep_spacing`` = ``spacing``). ``step_rule="listed"`` (default) steps to the next listed timestep;
``step_rule="diffusers"`` steps t → t − T//N as ``DDIMScheduler.step`` does, equal to diffusers for
every spacing and N (the two rules differ for ``linspace``, and ``trailing`` when N does not divide T).
A config's ``clip_sample``/``thresholding`` reach the step through the denoiser's ε̂ (diffusers'
``use_clipped_model_output=True``; see ``diffsolve.models.x0_clip``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..kernels import ddim_step
from ..schedules import diffusers_ddim_schedule
from ._loop import Callback, Generators, check_number, prepare

__all__ = ["STEP_RULES", "ddim"]

STEP_RULES = ("listed", "diffusers")


@torch.no_grad()
def ddim(denoiser: Any, shape: Sequence[int], *, steps: int, eta: float = 0.0, spacing: str = "trailing",
         generator: Generators = None, callback: Callback | None = None, progress: bool = False,
         return_trajectory: bool = False, backend: str = "auto", x_T: torch.Tensor | None = None,
         timesteps: Sequence[int] | torch.Tensor | None = None, dtype: torch.dtype | None = None,
         device: str | torch.device | None = None,
         noise_source: str = "generator",
         step_rule: str = "listed") -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Sample (B, C, H, W) = ``shape`` from a denoiser with N = ``steps`` DDIM(η) steps.

    Args:
        denoiser: ``denoiser(x, t) -> eps`` with ``alphas_cumprod`` (``diffsolve.models``).
        shape: batch shape (B, C, H, W) (any (B, ...) the denoiser accepts).
        steps: number of model evaluations N ≤ T; eta: η ∈ [0, 1] (0 deterministic, 1 DDPM-like).
        spacing: ``leading`` | ``trailing`` | ``linspace`` (diffusers) | ``loglinear`` (GE's σ);
            ``timesteps`` (descending ints) overrides it.
        generator: the only source of randomness (x_T and, for η > 0, each step's z); a list of B
            generators gives each sample its own (its result then does not depend on the batch).
        callback: ``callback(i, t, x_s, x̂0)`` after each step; progress: tqdm bar.
        return_trajectory: also return x̂0 of every step, (N, *shape).
        backend: kernel backend (``auto`` | ``triton`` | ``cpp`` | ``torch``).
        x_T: start here instead of drawing N(0, I) (finite; dtype/device, if given, must match it).
        noise_source: ``generator`` (diffusers' draw order) or ``kernel`` (in-kernel noise).
        step_rule: ``listed`` (t_i → t_{i+1}) or ``diffusers`` (t_i → t_i − T//N; module docstring).

    Runs under ``torch.no_grad()`` (sampling needs no graph; guided solvers enable grad locally).

    Returns:
        x_0 (B, ...), or (x_0, trajectory) with ``return_trajectory``.
    """
    eta = check_number("eta", eta, 0.0, 1.0)
    if step_rule not in STEP_RULES:
        raise ValueError(f"step_rule must be one of {STEP_RULES}, got {step_rule!r}")
    loop = prepare(denoiser, shape, steps=steps, spacing=spacing, timesteps=timesteps, generator=generator,
                   callback=callback, progress=progress, return_trajectory=return_trajectory, x_T=x_T,
                   dtype=dtype, device=device, noise_source=noise_source, name="ddim")
    if step_rule == "diffusers":
        loop.schedule = diffusers_ddim_schedule(loop.denoiser.alphas_cumprod, loop.schedule.timesteps,
                                                float(getattr(loop.denoiser, "final_alpha_cumprod", 1.0)))
        loop.alpha_s = loop.schedule.alpha_s.tolist()
    x = loop.x
    for i in loop.steps():
        eps = loop.eps(x, i)
        out = ddim_step(x, eps, loop.alpha_t[i], loop.alpha_s[i], eta=eta, return_x0=loop.want_x0,
                        backend=backend, **loop.step_noise(i, eta > 0))
        x, x0 = out if loop.want_x0 else (out, None)
        loop.record(i, x, x0)
    return loop.finish(x)
