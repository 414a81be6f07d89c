"""Diffusion posterior sampling, DPS (Chung et al. 2023, "Diffusion posterior sampling for general
noisy inverse problems", Algorithm 1), on the DDIM(η) step.

Per step t → s, with x_t (B, C, H, W), ε̂ = ε_θ(x_t, t), x̂0(x_t) = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t and
r = y − A(x̂0(x_t)) (measurement-shaped):

    x'_s = DDIM_η(x_t, ε̂)                        (η = 1: the ancestral DDPM-like step)
    x_s  = x'_s − ζ_N g,   g = ∇_{x_t} ½‖r‖² / n   (gradient through the UNet)

**Normalisation** n, per sample (``normalize``): ``"gradient"`` (default) n = ‖∇_{x_t} ½‖r‖²‖, the norm
of the gradient actually stepped along, so g has unit length: every step moves x_t by exactly ζ_N (a fixed
RMS per pixel), whatever the denoiser's Jacobian J = ∂x̂0/∂x_t does to the residual. ``"adjoint"`` n =
‖∇_{x̂0} ½‖r‖²‖ = ‖Aᵀr‖ for a linear A (the earlier default): the step in x_t is then ζ_N‖JᵀAᵀr‖/‖Aᵀr‖,
which depends on the operator through J: √ᾱ_t·J smooths (the more so the higher the noise), so it passes a
smooth residual (blur, SR: Aᵀ itself smooths) far better than a scattered one (random inpainting: Aᵀr
lives on isolated observed pixels and carries the white measurement noise), and on masks the adjoint
rule's steps came out too short to fit the measurement; dividing by the norm of what is stepped along
removes that dependence. The price: where that gradient is small its unit direction turns with any change in x_t,
so on masks neighbouring trajectories separate step by step (a float32 model's batch-size rounding grows to
visible differences; "adjoint" does not grow it: benchmarks/results/batch-rounding.md). Both are scale-free:
A → kA, y → ky gives the same samples, as does the image size with the step-size rule below. ``"residual"``
n = ‖r‖ (the paper's ζ_i = ζ/‖r‖, i.e. g = ∇‖r‖; not scale-free).

**Step size** ζ_N (``step_rule``): ``"power"`` (default) ζ_N = ζ·√(T/N₀)·(N₀/N)^{3/4}·√(d/d_ref), with T the
model's training steps, N₀ = :data:`REFERENCE_STEPS` = 30 (where ζ = 1 was tuned) and d the per-sample image
size, d_ref = 3·64·64 (:data:`REFERENCE_NUMEL`); ``"sqrt"`` ζ_N = ζ·√(T/N)·√(d/d_ref) (the previous default,
equal to "power" at N = N₀; N = T is the paper's setting); ``"constant"`` ζ_N = ζ·√(d/d_ref). The step-count
rule: N unit-length steps pull x_t toward y by about N·ζ_N where successive directions agree and √N·ζ_N where
they do not. The sqrt rule keeps only the second fixed, so its total pull grows like √N and long runs over-fit
y; ζ_N ∝ 1/N keeps the first and under-guides long runs. :data:`STEP_POWER` = 3/4 lies between them, chosen on
the exact priors and checked on photos at N = 30…1000 (benchmarks/results/dps-steps-power.md). The size factor is
the scale-free rule: the normalised gradient g has unit length over d pixels (exactly with
``"gradient"``), so a step of fixed length shrinks per pixel as 1/√d (at 128² DPS took half the per-pixel
step it was tuned with and ignored the measurement); ζ_N ∝ √d keeps the per-pixel step, i.e. the step is
normalised by the RMS n/√d.

**Discrepancy factor** (``sigma`` given; the command line passes it): each step is multiplied by
(1 − κmσ²/‖r‖²)₊ per sample, m the measured entries and κ = ``_inverse.DISCREPANCY_SHARE`` = 1/2: the pull
fades as x̂0 nears y's noise level and stops once ‖r‖ ≤ σ√(κm) (the discrepancy principle; MPGD caps its step
at the same ‖r‖). Without it the fixed-length steps go on fitting y's noise in long runs (SR ×4 and random
inpainting). κ = 1 (stop at the noise level itself) also stopped that, but x̂0, an estimate of a mean, should
fit the well-determined directions below the noise level, and κ = 1 lost PSNR on the blurs at long runs;
κ = 1/2 was chosen on the tuning photos (benchmarks/results/dps-steps-power.md). Without ``sigma`` no factor
is applied. Below :data:`MIN_STEPS` steps ``dps`` warns
(:class:`DPSStepsWarning`). The step is taken per sample (the reference code takes one norm over the
whole batch). Both terms go through one fused kernel (``ddim_step`` with guidance g and scale
ζ_N/√ᾱ_s). Measurements behind the defaults: benchmarks/results/posterior_dps_steps.md,
quality_heldout.md, quality_sizes.md, dps-normalisation.md (the normalisation).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from ..kernels import ddim_step
from ._inverse import (DISCREPANCY_SHARE, Diagnostics, check_problem, check_sigma, data_part, discrepancy_floor,
                       discrepancy_pull, finish_run, route)
from ._loop import Sampling, check_autograd, check_flag, check_number, prepare, takes_sampling

__all__ = ["DISCREPANCY_SHARE", "MIN_STEPS", "NORMALIZATIONS", "REFERENCE_NUMEL", "REFERENCE_STEPS", "STEP_POWER",
           "STEP_RULES", "DPSStepsWarning", "dps", "step_size"]

#: how ``zeta`` becomes the step ζ_N of an N-step run (:func:`step_size`)
STEP_RULES = ("power", "sqrt", "constant")
#: what the gradient of ½‖y − A x̂0‖² is divided by, per sample (module docstring)
NORMALIZATIONS = ("gradient", "adjoint", "residual")
#: fewer steps than this draw a :class:`DPSStepsWarning` (module docstring)
MIN_STEPS = 20
#: the per-sample image size d_ref at which ``zeta = 1`` was tuned (3×64×64; module docstring)
REFERENCE_NUMEL = 3 * 64 * 64
#: the step count N₀ at which ``zeta = 1`` was tuned: "power" and "sqrt" agree there (module docstring)
REFERENCE_STEPS = 30
#: ζ_N ∝ N^{−STEP_POWER} under the default ``step_rule="power"`` (module docstring)
STEP_POWER = 0.75


class DPSStepsWarning(UserWarning):
    """DPS was asked for fewer than :data:`MIN_STEPS` steps, where its own steps were measured to leave y unfit."""


def step_size(rule: str, zeta: float, steps: int, train_steps: int, numel: int = REFERENCE_NUMEL) -> float:
    """ζ_N (host float): ``"power"`` ζ·√(T/N₀)·(N₀/N)^{3/4}·√(d/d_ref), ``"sqrt"`` ζ·√(T/N)·√(d/d_ref),
    ``"constant"`` ζ·√(d/d_ref), with T = ``train_steps``, N₀ = REFERENCE_STEPS and d = ``numel`` the per-sample
    image size (module docstring)."""
    size = math.sqrt(numel / REFERENCE_NUMEL)
    if rule == "constant":
        return zeta * size
    if rule == "power":
        return zeta * math.sqrt(train_steps / REFERENCE_STEPS) * (REFERENCE_STEPS / steps) ** STEP_POWER * size
    return zeta * math.sqrt(train_steps / steps) * size


@takes_sampling
def dps(denoiser: Any, operator: Any, y: torch.Tensor, sampling: Sampling, *, zeta: float = 1.0, eta: float = 1.0,
        step_rule: str = "power", normalize: str = "gradient", sigma: float | None = None,
        discrepancy: bool = True) -> Any:
    """Reconstruct x from y = A x + n with N = ``sampling.steps`` DPS steps (module docstring).

    Args:
        denoiser: ``denoiser(x, t) -> eps`` with ``alphas_cumprod``; must be differentiable in x.
        operator: linear operator (``diffsolve.operators``) or any object with ``A``/``A_adjoint``;
            only ``A`` is differentiated (autograd), so a non-linear differentiable A works too where there is no
            closing pull (no ``sigma``, or ``discrepancy=False``; the pull solves with A's transpose).
        y: measurement (B, ...) float32/float64; one sample per measurement.
        sampling: the shared options (:class:`~diffsolve.solvers.Sampling`; or pass them as keywords).
        zeta: ζ ≥ 0; step_rule: ``"power"`` ζ_N = ζ·√(T/30)·(30/N)^{3/4} | ``"sqrt"`` ζ·√(T/N) | ``"constant"`` ζ
            (each times √(d/d_ref), module docstring);
        normalize: ``"gradient"`` | ``"adjoint"`` | ``"residual"``; eta: DDIM η ∈ [0, 1] (1: the paper).
        sigma: the measurement noise std σ > 0 (or a ``GaussianNoise``), optional: each step is scaled by
            (1 − κmσ²/‖r‖²)₊ (the discrepancy factor, module docstring); None: no factor.
        discrepancy: end with a residual y's noise explains (``_inverse.discrepancy_pull``; with sigma); False: the
            paper's result.
    Returns:
        x (B, C, H, W), or (x, info) with ``return_info``: {"residual": (N, B) ‖y − A x̂0‖ at each step,
        "timesteps": (N,), "final_residual": (B,) ‖A x − y‖/√m, with σ "data_consistency" (B,) that over σ}.
    """
    zeta = check_number("zeta", zeta, 0.0)
    sigma = None if sigma is None else check_sigma(sigma)
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    if step_rule not in STEP_RULES:
        raise ValueError(f"step_rule must be one of {STEP_RULES}, got {step_rule!r}")
    eta = check_number("eta", eta, 0.0, 1.0)
    discrepancy = check_flag("discrepancy", discrepancy)
    operator = route(operator, sampling.backend)  # before any kernel runs, the shape check's included
    # a non-linear A is differentiated by autograd; only the closing pull (σ given) needs A linear
    shape = check_problem(operator, y, sampling.x_T, linear=sigma is not None and discrepancy)
    check_autograd("dps")
    loop = prepare(denoiser, shape, sampling, like=y, name="dps")
    if len(loop.schedule) < MIN_STEPS:
        warnings.warn(DPSStepsWarning(
            f"dps: steps={len(loop.schedule)} < {MIN_STEPS}; at so few steps DPS's own steps leave y unfit (the "
            f"closing pull then makes the fit), and at 5 or fewer it falls far below a Tikhonov restoration on blurs "
            f"(benchmarks/results/few-steps.md); use steps >= {MIN_STEPS}, or mpgd/cdps for few steps"),
            stacklevel=3)
    step = step_size(step_rule, zeta, len(loop.schedule), int(loop.denoiser.alphas_cumprod.numel()),
                     math.prod(shape[1:]))
    info = Diagnostics(sampling.return_info)
    if sigma is not None:  # κ m σ² per sample: where the discrepancy factor reaches 0
        floor = discrepancy_floor(operator, y, sigma)
    x = loop.x
    for i in loop.steps():
        a_t, a_s = loop.alpha_t[i], loop.alpha_s[i]
        with torch.enable_grad():  # 1. ε̂, x̂0 and r with a graph through the denoiser
            xg = x.detach().requires_grad_(True)
            eps = loop.eps(xg, i)
            x0 = (xg - (1 - a_t) ** 0.5 * eps) / a_t**0.5
            resid = data_part(operator, y - operator.A(x0))
            if normalize == "residual":  # 2. g = ∇‖r‖ = ∇½‖r‖² / ‖r‖
                norm = resid.flatten(1).norm(dim=1)
                (grad,) = torch.autograd.grad(norm.sum(), xg)  # samples are independent: per-sample ∇
            else:  # 2. g = ∇½‖r‖² / n, n = ‖∇_{x̂0}½‖r‖²‖ (adjoint) or ‖∇_{x_t}½‖r‖²‖ (gradient)
                half_sq = 0.5 * resid.flatten(1).pow(2).sum(dim=1)
                if normalize == "gradient":
                    (grad,) = torch.autograd.grad(half_sq.sum(), xg)
                    size = grad.flatten(1).norm(dim=1)
                else:  # one backward pass for both
                    grad, g0 = torch.autograd.grad(half_sq.sum(), (xg, x0))
                    size = g0.flatten(1).norm(dim=1)
                size = size.view(-1, *([1] * (x.dim() - 1)))
                grad = grad / torch.where(size > 0, size, torch.ones_like(size))
                norm = (2 * half_sq.detach()).sqrt()
            if sigma is not None:  # 2b. the discrepancy factor (1 − κmσ²/‖r‖²)₊, 0 once ‖r‖ ≤ σ√(κm)
                sq = norm.detach() ** 2
                excess = (1 - floor / sq.clamp_min(torch.finfo(sq.dtype).tiny)).clamp(0, 1)
                grad = grad * excess.view(-1, *([1] * (x.dim() - 1)))
        info.add("residual", norm)
        # 3. x_s = DDIM_η(x_t, ε̂) − ζ_N g, one fused kernel
        x = ddim_step(x, eps.detach(), a_t, a_s, eta=eta, guidance=grad, guidance_scale=step / a_s**0.5,
                      backend=sampling.backend, **loop.step_noise(i, eta > 0))
        if loop.callback is not None:
            loop.record(i, x, x0.detach())
    if sigma is not None and discrepancy:  # within the noise of y (1 − ᾱ_t of the last model call)
        x = discrepancy_pull(operator, x, y, sigma, 1 - loop.alpha_t[-1])
    return finish_run("dps", loop, operator, x, y, sigma, info)  # one sync, after the loop
