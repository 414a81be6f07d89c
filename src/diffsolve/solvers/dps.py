"""Diffusion posterior sampling, DPS (Chung et al. 2023, "Diffusion posterior sampling for general
noisy inverse problems", Algorithm 1), on the DDIM(η) step.

Per step t → s, with ε̂ = ε_θ(x_t, t) and x̂0(x_t) = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t:

    x'_s = DDIM_η(x_t, ε̂)                        (η = 1: the ancestral DDPM-like step)
    x_s  = x'_s − ζ ∇_{x_t} ‖y − A(x̂0(x_t))‖     (non-squared norm, gradient through the UNet)

i.e. the paper's step ζ_i = ζ/‖y − A(x̂0)‖ on the squared norm, taken **per sample** (the reference
code takes one norm over the whole batch; here a sample's result does not depend on its batch).
Both terms go through one fused kernel (``ddim_step`` with guidance g = ∇ and scale ζ/√ᾱ_s).
This is the only solver here that needs the UNet's backward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..kernels import ddim_step
from ._inverse import Diagnostics, check_problem
from ._loop import Callback, check_number, prepare

__all__ = ["dps"]


def dps(denoiser: Any, operator: Any, y: torch.Tensor, *, steps: int, zeta: float = 1.0, eta: float = 1.0,
        generator: torch.Generator | None = None, progress: bool = False, return_info: bool = False,
        callback: Callback | None = None, spacing: str = "trailing",
        timesteps: Sequence[int] | torch.Tensor | None = None, x_T: torch.Tensor | None = None,
        noise_source: str = "generator",
        backend: str = "auto") -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Reconstruct x from y = A x + n with N = ``steps`` DPS steps (module docstring).

    Args:
        denoiser: ``denoiser(x, t) -> eps`` with ``alphas_cumprod``; must be differentiable in x.
        operator: linear operator (``diffsolve.operators``) or any object with ``A``/``A_adjoint``;
            only ``A`` is differentiated (autograd), so non-linear differentiable A works too.
        y: measurement (B, ...) float32/float64; the image batch shape follows from Aᵀy and one
            sample is drawn per measurement (repeat y along the batch for several draws).
        steps: N; zeta: ζ ≥ 0, the step on ∇‖y − A x̂0‖; eta: DDIM η ∈ [0, 1] (1: the paper).
        generator: the only randomness (x_T, then each step's z); progress: tqdm bar;
        callback: ``callback(i, t, x_s, x̂0)``; spacing/timesteps: the schedule (``ddim``);
        x_T: starting noise (B, C, H, W); noise_source / backend: as ``ddim``.
        return_info: also return {"residual": (N, B) ‖y − A x̂0‖ at each step, "timesteps": (N,)}.
    Returns:
        x (B, C, H, W), or (x, info).
    """
    zeta = check_number("zeta", zeta, 0.0)
    eta = check_number("eta", eta, 0.0, 1.0)
    shape = check_problem(operator, y, x_T)
    loop = prepare(denoiser, shape, steps=steps, spacing=spacing, timesteps=timesteps, generator=generator,
                   callback=callback, progress=progress, x_T=x_T, dtype=y.dtype, device=y.device,
                   noise_source=noise_source, name="dps")
    info = Diagnostics(return_info)
    x = loop.x
    for i in loop.steps():
        a_t, a_s = loop.alpha_t[i], loop.alpha_s[i]
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            eps = loop.eps(xg, i)
            x0 = (xg - (1 - a_t) ** 0.5 * eps) / a_t**0.5
            norm = (y - operator.A(x0)).flatten(1).norm(dim=1)
            (grad,) = torch.autograd.grad(norm.sum(), xg)  # samples are independent: per-sample ∇
        info.add("residual", norm)
        out = ddim_step(x, eps.detach(), a_t, a_s, eta=eta, guidance=grad, guidance_scale=zeta / a_s**0.5,
                        backend=backend, **loop.step_noise(i, eta > 0))
        x = out
        if loop.callback is not None:
            loop.record(i, x, x0.detach())
    x = loop.finish(x)
    if return_info:
        return x, info.stacked(timesteps=loop.schedule.timesteps.clone())
    return x
