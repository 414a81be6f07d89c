"""DDIM(η) sampler (Song et al. 2021, eq. 12), the step every other solver wraps; its loop is shared with GE.

x̂0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t, σ = η √((1−ᾱ_s)/(1−ᾱ_t)) √(1 − ᾱ_t/ᾱ_s),
x_s = √ᾱ_s x̂0 + √(1−ᾱ_s−σ²) ε̂ + σ z — the fused ``diffsolve.kernels.ddim_step``; x (B, C, H, W).
With the same settings and generator it reproduces diffusers' ``DDIMPipeline`` step by step
(``timestep_spacing`` = ``spacing``). ``step_rule="listed"`` (default) steps to the next listed timestep;
``step_rule="diffusers"`` steps t → t − T//N as ``DDIMScheduler.step`` does, equal to diffusers for
every spacing and N (the two rules differ for ``linspace``, and ``trailing`` when N does not divide T).
A config's ``clip_sample``/``thresholding`` reach the step through the denoiser's ε̂ (diffusers'
``use_clipped_model_output=True``; see ``diffsolve.models.x0_clip``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..kernels import ddim_step
from ..schedules import diffusers_ddim_schedule
from ._loop import LoopSetup, Sampling, check_number, prepare, takes_sampling

__all__ = ["STEP_RULES", "ddim", "sample"]

STEP_RULES = ("listed", "diffusers")
#: step(loop, i, x, ε̂_i, ε̂_{i−1} or None, want_x0) -> x_s, or (x_s, x̂0) when want_x0
Step = Callable[[LoopSetup, int, torch.Tensor, torch.Tensor, "torch.Tensor | None", bool], Any]


def sample(loop: LoopSetup, step: Step, return_info: bool) -> Any:
    """The unconditional loop DDIM and GE share (as smalldiffusion's ``samples``): ε̂ → ``step`` → record.

    Returns x_0, or (x_0, {"x0": (N, *shape) x̂0 of every step, "timesteps": (N,)}) with ``return_info``.
    """
    x, eps_prev = loop.x, None
    for i in loop.steps():
        eps = loop.eps(x, i)  # 1. ε̂ = ε_θ(x_t, t)
        out = step(loop, i, x, eps, eps_prev, loop.want_x0)  # 2. the fused update
        x, x0 = out if loop.want_x0 else (out, None)
        eps_prev = eps
        loop.record(i, x, x0)  # 3. trajectory / callback
    out = loop.finish(x)
    if return_info:
        x, trajectory = out
        return x, {"x0": trajectory, "timesteps": loop.schedule.timesteps.clone()}
    return out


@takes_sampling
@torch.no_grad()
def ddim(denoiser: Any, shape: Sequence[int], sampling: Sampling, *, eta: float = 0.0,
         step_rule: str = "listed", return_trajectory: bool = False) -> Any:
    """Sample (B, C, H, W) = ``shape`` from a denoiser with N = ``sampling.steps`` DDIM(η) steps.

    Args:
        denoiser: ``denoiser(x, t) -> eps`` with ``alphas_cumprod`` (``diffsolve.models``).
        shape: batch shape (B, C, H, W) (any (B, ...) the denoiser accepts).
        sampling: the shared options (:class:`~diffsolve.solvers.Sampling`; or pass them as keywords).
        eta: η ∈ [0, 1] (0 deterministic, 1 DDPM-like).
        step_rule: ``listed`` (t_i → t_{i+1}) or ``diffusers`` (t_i → t_i − T//N; module docstring).
        return_trajectory: also return x̂0 of every step, (N, *shape).

    Runs under ``torch.no_grad()`` (sampling needs no graph; guided solvers enable grad locally).

    Returns:
        x_0 (B, ...); (x_0, trajectory) with ``return_trajectory``; (x_0, info) with ``return_info``.
    """
    eta = check_number("eta", eta, 0.0, 1.0)
    if step_rule not in STEP_RULES:
        raise ValueError(f"step_rule must be one of {STEP_RULES}, got {step_rule!r}")
    loop = prepare(denoiser, shape, sampling, return_trajectory=return_trajectory or sampling.return_info,
                   name="ddim")
    if step_rule == "diffusers":
        loop.schedule = diffusers_ddim_schedule(loop.denoiser.alphas_cumprod, loop.schedule.timesteps,
                                                float(getattr(loop.denoiser, "final_alpha_cumprod", 1.0)))
        loop.alpha_s = loop.schedule.alpha_s.tolist()

    def step(loop: LoopSetup, i: int, x: torch.Tensor, eps: torch.Tensor, eps_prev: Any, want_x0: bool) -> Any:
        return ddim_step(x, eps, loop.alpha_t[i], loop.alpha_s[i], eta=eta, return_x0=want_x0,
                         backend=sampling.backend, **loop.step_noise(i, eta > 0))

    return sample(loop, step, sampling.return_info and not return_trajectory)
