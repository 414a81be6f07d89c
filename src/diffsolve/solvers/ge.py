"""Gradient-estimation (GE) sampler (Permenter & Yuan 2024, "Interpreting and improving diffusion
models from an optimization perspective"), as their smalldiffusion reference runs it; the loop is DDIM's.

In VE coordinates x̃ = x/√ᾱ, σ_t = √(1/ᾱ_t − 1): ε̄_t = γ ε̂_t + (1 − γ) ε̂_{t+1} (ε̂ on the
first step), σ_p = (σ_s/σ_t^μ)^{1/(1−μ)}, x̃_s = x̃_t − (σ_t − σ_p) ε̄_t + √(σ_s² − σ_p²) z; x (B, C, H, W).
γ = 1, μ = 0 is DDIM(η = 0); γ = 2 is the paper's choice; μ > 0 is its stochastic variant.
The default schedule is log-linear in σ (``diffsolve.schedules.loglinear_timesteps``).

Caveat (also in the reference): γ = 2 with μ > 0 is unstable at few steps — on an exact-score
mixture N = 5 with μ = 0.3 diverges (|x| ~ 70), while N ≥ 20 is fine; use μ = 0 or γ ≈ 1 there.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch

from ..kernels import ge_step
from ._loop import LoopSetup, Sampling, check_number, prepare, takes_sampling
from .ddim import check_returns, sample

__all__ = ["ge"]

#: below this ᾱ at the first level a float32 GE run can drift from float64 (a linear β table at T = 4000 starts at
#: ᾱ ≈ 3e-18; the common tables at 2e-9 and above)
FLOAT32_ALPHA_MIN = 1e-12


@takes_sampling
@torch.no_grad()
def ge(denoiser: Any, shape: Sequence[int], sampling: Sampling, *, gamma: float = 2.0, mu: float = 0.0,
       return_trajectory: bool = False) -> Any:
    """Sample ``shape`` with N = ``sampling.steps`` GE steps; arguments as :func:`~diffsolve.solvers.ddim`, plus

    Args:
        gamma: γ, the weight of the current ε̂ in ε̄ (1: DDIM, 2: the paper).
        mu: μ ∈ [0, 1), the stochastic variant's noise (0: deterministic).

    ``sampling.spacing`` defaults to ``loglinear`` here (ends ``sampling.sigma_max``/``sigma_min``).

    Returns:
        x_0 (B, ...), or (x_0, trajectory of x̂0 from ε̄) with ``return_trajectory`` ((x_0, info) with
        ``return_info``).
    """
    gamma = check_number("gamma", gamma, 0.0)
    mu = check_number("mu", mu, 0.0, 1.0, high_open=True)
    check_returns(return_trajectory, sampling)
    loop = prepare(denoiser, shape, sampling, spacing="loglinear",
                   return_trajectory=return_trajectory or sampling.return_info, name="ge")
    if loop.x.dtype == torch.float32 and loop.alpha_t[0] < FLOAT32_ALPHA_MIN:
        warnings.warn(f"ge: the first level has ᾱ = {loop.alpha_t[0]:.2g}, below {FLOAT32_ALPHA_MIN:g}: float32 ε̂ "
                      "rounding divided by √ᾱ and extrapolated by γ can leave the sample far from float64's; use "
                      "dtype=torch.float64, or start lower (sigma_max=, or timesteps=)", UserWarning, stacklevel=3)

    def step(loop: LoopSetup, i: int, x: torch.Tensor, eps: torch.Tensor, eps_prev: Any, want_x0: bool) -> Any:
        return ge_step(x, eps, eps_prev, loop.alpha_t[i], loop.alpha_s[i], gamma=gamma, mu=mu,
                       return_x0=want_x0, backend=sampling.backend, **loop.step_noise(i, mu > 0))

    return sample(loop, step, sampling.return_info and not return_trajectory)
