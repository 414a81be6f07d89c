"""Gradient-estimation (GE) sampler (Permenter & Yuan 2024, "Interpreting and improving diffusion
models from an optimization perspective"), as their smalldiffusion reference runs it.

In VE coordinates x̃ = x/√ᾱ, σ_t = √(1/ᾱ_t − 1): ε̄_t = γ ε̂_t + (1 − γ) ε̂_{t+1} (ε̂ on the
first step), σ_p = (σ_s/σ_t^μ)^{1/(1−μ)}, x̃_s = x̃_t − (σ_t − σ_p) ε̄_t + √(σ_s² − σ_p²) z.
γ = 1, μ = 0 is DDIM(η = 0); γ = 2 is the paper's choice; μ > 0 is its stochastic variant.
The default schedule is log-linear in σ (``diffsolve.schedules.loglinear_timesteps``).

Caveat (also in the reference): γ = 2 with μ > 0 is unstable at few steps — on an exact-score
mixture N = 5 with μ = 0.3 diverges (|x| ~ 70), while N ≥ 20 is fine; use μ = 0 or γ ≈ 1 there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..kernels import ge_step
from ._loop import Callback, Generators, check_number, prepare

__all__ = ["ge"]


@torch.no_grad()
def ge(denoiser: Any, shape: Sequence[int], *, steps: int, gamma: float = 2.0, mu: float = 0.0,
       sigma_max: float | None = None, sigma_min: float | None = None, spacing: str = "loglinear",
       generator: Generators = None, callback: Callback | None = None, progress: bool = False,
       return_trajectory: bool = False, backend: str = "auto", x_T: torch.Tensor | None = None,
       timesteps: Sequence[int] | torch.Tensor | None = None, dtype: torch.dtype | None = None,
       device: str | torch.device | None = None,
       noise_source: str = "generator") -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Sample ``shape`` with N = ``steps`` GE steps; arguments as :func:`~diffsolve.solvers.ddim`, plus

    Args:
        gamma: γ, the weight of the current ε̂ in ε̄ (1: DDIM, 2: the paper).
        mu: μ ∈ [0, 1), the stochastic variant's noise (0: deterministic).
        sigma_max, sigma_min: ends of the log-linear σ schedule (defaults: σ_{T−1}, and σ of the
            last trailing DDIM timestep for the same N); ``spacing`` may also be a diffusers one.

    Runs under ``torch.no_grad()`` (sampling needs no graph; guided solvers enable grad locally).

    Returns:
        x_0 (B, ...), or (x_0, trajectory of x̂0 from ε̄) with ``return_trajectory``.
    """
    gamma = check_number("gamma", gamma, 0.0)
    mu = check_number("mu", mu, 0.0, 1.0, high_open=True)
    loop = prepare(denoiser, shape, steps=steps, spacing=spacing, timesteps=timesteps, sigma_max=sigma_max,
                   sigma_min=sigma_min, generator=generator, callback=callback, progress=progress,
                   return_trajectory=return_trajectory, x_T=x_T, dtype=dtype, device=device,
                   noise_source=noise_source, name="ge")
    x, eps_prev = loop.x, None
    for i in loop.steps():
        eps = loop.eps(x, i)
        out = ge_step(x, eps, eps_prev, loop.alpha_t[i], loop.alpha_s[i], gamma=gamma, mu=mu,
                      return_x0=loop.want_x0, backend=backend, **loop.step_noise(i, mu > 0))
        x, x0 = out if loop.want_x0 else (out, None)
        eps_prev = eps
        loop.record(i, x, x0)
    return loop.finish(x)
