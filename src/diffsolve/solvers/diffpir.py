"""DiffPIR: denoising diffusion models for plug-and-play image restoration (Zhu, Zhang, Liang, Cao, Wen,
Timofte & Van Gool 2023, CVPR workshops, Algorithm 1), on the shared schedule.

Per step t → s, with x_t (B, C, H, W), y (B, ...), ε̂ = ε_θ(x_t, t), x̂0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t,
σ̄_t² = (1−ᾱ_t)/ᾱ_t and ρ_t = λ σ²/min(σ̄_t², v) (σ the measurement noise std; v = 1, below):

    1. x̂0' = argmin_z ‖y − A z‖² + ρ_t ‖z − x̂0‖²  =  (ρ_t I + AᵀA)⁻¹ (Aᵀy + ρ_t x̂0)      (B, C, H, W)
       (where A declares an SVD — masks, SR, separable or circular blur, a dense matrix — exactly, as
       x̂0 + V diag(s/(ρ_t + s²)) Uᵀ(y − A x̂0), ``_inverse.spectral_step``; otherwise :data:`CG_ITERS` iterations
       of plain CG started at x̂0, the prox centre: the early steps' ρ_t is tiny against ‖AᵀA‖, where a circulant
       preconditioner's (ρ_t + |Ā|²)⁻¹ blows the boundary band's mismatch up by up to 1/ρ_t
       and a truncated CG leaves it in x̂0' — benchmarks/results/plain-cg.md).
       σ = 0 takes the ρ → 0 limit, x̂0' = x̂0 − A⁺(A x̂0 − y) (hard data consistency; a separable A's negligible
       singular values count as zero, ``_inverse.pinv_of``).
    2. ε̂' = (x_t − √ᾱ_t x̂0')/√(1−ᾱ_t)                                   (the noise x̂0' implies)
    3. x_s = √ᾱ_s x̂0' + √(1−ᾱ_s) (√(1−ζ) ε̂' + √ζ z),   z ~ N(0, I)

Steps 2-3 run in one fused kernel (:func:`reproject_step`, also used by DDNM).

**Defaults** (the reference code's deblurring setting, σ = 12.75/255 on [0, 1] images, the paper's §4 noisy
experiments): λ = 7 *as the reference code measures σ*: on [0, 1] images while σ̄_t lives on the model's [−1, 1]
scale, i.e. ρ_t = 7 (σ/2)²/σ̄_t² for σ on the model's scale. Here σ and σ̄_t are on one scale (y's, which must be the
model's), so the same ρ_t is λ = 7/4 = 1.75 (:data:`DEFAULT_LAM`): the data/prior balance then does not depend on
how pixel values are scaled. ζ = 1 (:data:`DEFAULT_ZETA`, fresh noise only: the reference code's inpainting value)
on every operator, where its deblurring and SR scripts use 0.1–0.3. With ζ < 1 the re-noising keeps 1 − ζ of ε̂',
which carries the data step's amplified noise (up to σ̄_t/(2√λ) per direction of A's spectrum where ρ_t ≈ s²) into
x_s as if it were the diffusion's; with few steps σ̄_s ≪ σ̄_t and the next x̂0 keeps it as detail. ζ = 1 is
better on the photos' blurs and SR at every step count measured and nearer the exact priors' posterior mean, with
draws tighter than the posterior's; ζ = 0.3 over-disperses a mask's draws: benchmarks/results/diffpir-zeta.md.
Differences from the reference code: the shared timestep spacing (``trailing``) instead of its quadratic
one, the data step also at the last step (where x_s = x̂0', ᾱ_s = 1: the result), as the paper's Algorithm 1, and
**x̂0's error variance capped at v** (``x0_variance_cap``, :data:`DEFAULT_X0_VARIANCE_CAP` = 1, the largest variance
data on [−1, 1] can have; None: the paper's ρ_t). The paper's σ̄_t² is the noise of x_t/√ᾱ_t, which overstates the
error of x̂0 = E[x0 | x_t] where ᾱ_t < 1/2 (σ̄_t² > 1; ΠGDM's r_t² = σ̄_t²/(1 + σ̄_t²) stays below 1 for the
same reason): there ρ_t → 0 and x̂0' is A⁺ y's noise-amplified least-squares fit. With many steps the re-noising
hides that; with 1–3 steps a step of that kind is the result, pseudo-inverse-like on a blur. The cap changes only
those early steps: benchmarks/results/diffpir-cap.md.

**The discrepancy principle at the last step** (diffsolve's; ``discrepancy=False`` is the paper's last step): there
ρ_t is still small and x̂0' would keep most of y's noise on the directions y determines (a mask's observed pixels),
fitting y below its noise level. The result is x̂0 + g (x̂0' − x̂0) with g ∈ [0, 1] per sample the largest with
‖A(·) − y‖ ≥ σ√(m/2) (m measured entries, κ = ``_inverse.DISCREPANCY_SHARE``; ``_inverse.discrepancy_weight``):
MPGD's, DPS's and RED-diff's floor; two products with A. Every earlier step is the paper's. A result whose residual
the noise cannot explain is then pulled towards y as every method's is (``_inverse.discrepancy_pull``).
Results: benchmarks/results/ (diffpir-gate.md, discrepancy.md).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..kernels import fused_step
from ._inverse import (Diagnostics, check_problem, check_sigma, data_part, discrepancy_floor, discrepancy_pull,
                       discrepancy_weight, finish_run, pinv_of, range_svd, route, solver_of, spectral_step)
from ._loop import Sampling, check_flag, check_number, prepare, takes_sampling

__all__ = ["CG_ITERS", "DEFAULT_LAM", "DEFAULT_X0_VARIANCE_CAP", "DEFAULT_ZETA", "data_rho", "diffpir",
           "reproject_step"]

#: λ of ρ_t = λσ²/σ̄_t² with σ and σ̄_t on one scale (the reference code's 7, module docstring)
DEFAULT_LAM = 7.0 / 4.0
#: v, the cap on x̂0's error variance σ̄_t² in ρ_t (the largest variance of data on [−1, 1]; module docstring)
DEFAULT_X0_VARIANCE_CAP = 1.0
#: ζ, the share of fresh noise in the re-noising (the reference code's inpainting value, on every operator)
DEFAULT_ZETA = 1.0
#: plain-CG iterations of the data step where the operator has no exact solve, started at x̂0 (the prox centre,
#: near the solution wherever ρ_t is large; measured against 50 and 200 in benchmarks/results/diffpir-cg.md)
CG_ITERS = 20


def data_rho(lam: float, sigma: float, alpha_bar_t: float, cap: float | None = DEFAULT_X0_VARIANCE_CAP) -> float:
    """ρ_t = λ σ²/min(σ̄_t², cap) with σ̄_t² = (1−ᾱ_t)/ᾱ_t (host float; ``cap`` None: the paper's λ σ²/σ̄_t²)."""
    var = (1 - alpha_bar_t) / alpha_bar_t
    return lam * sigma**2 / (var if cap is None else min(var, cap))


def reproject_step(x: torch.Tensor, eps: torch.Tensor, correction: torch.Tensor, alpha_bar_t: float,
                   alpha_bar_s: float, k_eps: float, k_z: float, *, keep_eps: bool = False, backend: str = "auto",
                   return_x0: bool = False, **noise: Any) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """x_s = √ᾱ_s x̂0' + k_ε ε̂' + k_z z with x̂0' = x̂0 − ``correction`` and ε̂' = (x_t − √ᾱ_t x̂0')/√(1−ᾱ_t),
    x̂0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t — one fused pass (all (B, C, H, W); ᾱ, k host floats; ``noise``:
    ``noise=`` or ``seed=/offset=`` as from ``loop.step_noise``). ε̂' = ε̂ + √(ᾱ_t/(1−ᾱ_t))·correction, so

        x_s = (√ᾱ_s/√ᾱ_t) x_t + (k_ε − √ᾱ_s √(1−ᾱ_t)/√ᾱ_t) ε̂ + (k_ε √(ᾱ_t/(1−ᾱ_t)) − √ᾱ_s) correction + k_z z.

    ``keep_eps``: the model's ε̂ in place of ε̂' (x_s = √ᾱ_s x̂0' + k_ε ε̂ + k_z z; DDNM's code), so the
    correction's weight is −√ᾱ_s.
    """
    a_t, a_s = alpha_bar_t, alpha_bar_s
    d_x, d_e = 1 / math.sqrt(a_t), -math.sqrt(1 - a_t) / math.sqrt(a_t)
    row = [1.0, math.sqrt(a_s) * d_x, math.sqrt(a_s) * d_e + k_eps,
           (0.0 if keep_eps else k_eps * math.sqrt(a_t / (1 - a_t))) - math.sqrt(a_s), k_z, d_x, d_e, -1.0]
    coefs = torch.tensor(row, dtype=x.dtype)
    if x.device.type == "cuda":
        coefs = coefs.pin_memory().to(x.device, non_blocking=True)
    coefs = coefs.to(x.device).expand(x.shape[0], 8)
    return fused_step(x, eps, coefs, guidance=correction, return_x0=return_x0, backend=backend, check=False,
                      **noise)


def check_operator_solves(operator: Any, sigma: float | None, name: str) -> None:
    """The noiseless data step needs ``pseudo_inverse`` (σ = 0; None: a method that needs it at every σ): say so
    before the loop. With σ > 0 any object with ``A`` and ``A_adjoint`` will do: without ``solve`` the step runs CG
    on AᵀA (``_inverse.solver_of``)."""
    if (sigma is None or sigma == 0) and not callable(getattr(operator, "pseudo_inverse", None)):
        which = name if sigma is None else f"{name} with sigma={sigma}"
        raise TypeError(f"{which} needs operator.pseudo_inverse (a diffsolve.operators."
                        "LinearOperator; wrap a function with diffsolve.operators.CallableOperator), got "
                        f"{type(operator).__name__}")


@takes_sampling
def diffpir(denoiser: Any, operator: Any, y: torch.Tensor, sampling: Sampling, *, sigma: float,
            lam: float = DEFAULT_LAM, zeta: float = DEFAULT_ZETA,
            x0_variance_cap: float | None = DEFAULT_X0_VARIANCE_CAP, discrepancy: bool = True) -> Any:
    """Reconstruct x from y = A x + n, n ~ N(0, σ² I), with N = ``sampling.steps`` DiffPIR steps (module docstring).

    Args:
        denoiser: ``denoiser(x, t) -> eps`` with ``alphas_cumprod`` (called under no_grad: no UNet backward).
        operator: a ``diffsolve.operators`` linear operator (needs ``solve``; ``pseudo_inverse`` for σ = 0).
        y: measurement (B, ...) float32/float64 on the model's scale; one sample per measurement.
        sampling: the shared options (:class:`~diffsolve.solvers.Sampling`; or pass them as keywords).
        sigma: σ ≥ 0, the measurement noise std (required; 0: hard data consistency).
        lam: λ > 0 of ρ_t = λσ²/min(σ̄_t², v); zeta: ζ ∈ [0, 1], the fresh-noise share of the re-noising;
            x0_variance_cap: v > 0, the cap on x̂0's error variance σ̄_t² (None: the paper's ρ_t; module docstring).
        discrepancy: the last step's result neither below σ√(m/2) from y nor beyond what the noise explains
            (module docstring); False: the paper's last step.
    Returns:
        x (B, C, H, W), or (x, info) with ``return_info``: {"residual": (N, B) ‖y − A x̂0‖ of the denoiser's x̂0
        at each step, "timesteps": (N,), "final_residual": (B,) ‖A x − y‖/√m, and for σ > 0
        "data_consistency": (B,) that over σ}.
    """
    sigma = check_sigma(sigma, positive=False)
    lam = check_number("lam", lam, 0.0)
    if lam == 0:
        raise ValueError("lam must be > 0 (ρ_t = λσ²/σ̄_t²; λ = 0 ignores the prior step); the default is "
                         f"{DEFAULT_LAM}")
    zeta = check_number("zeta", zeta, 0.0, 1.0)
    if x0_variance_cap is not None:
        x0_variance_cap = check_number("x0_variance_cap", x0_variance_cap, 0.0)
        if x0_variance_cap == 0:
            raise ValueError("x0_variance_cap must be > 0 or None (None: the paper's ρ_t = λσ²/σ̄_t²); the default is "
                             f"{DEFAULT_X0_VARIANCE_CAP}")
    discrepancy = check_flag("discrepancy", discrepancy)
    operator = route(operator, sampling.backend)  # before any kernel runs, the shape check's included
    shape = check_problem(operator, y, sampling.x_T)
    check_operator_solves(operator, sigma, "diffpir")
    loop = prepare(denoiser, shape, sampling, like=y, name="diffpir")
    spectral = range_svd(operator, shape[-2:], "diffpir") if sigma > 0 else None
    solve = solver_of(operator, CG_ITERS, precondition=False) if sigma > 0 and spectral is None else None
    pinv = pinv_of(operator, shape[-2:], probe=y) if sigma == 0 else None
    aty = operator.A_adjoint(y) if sigma > 0 and spectral is None else None
    last = len(loop.schedule) - 1 if sigma > 0 and discrepancy else -1  # the step whose x̂0' is the result (ᾱ_s = 1)
    floor = discrepancy_floor(operator, y, sigma) if last >= 0 else None
    info = Diagnostics(sampling.return_info)
    x = loop.x
    for i in loop.steps():
        a_t, a_s = loop.alpha_t[i], loop.alpha_s[i]
        with torch.no_grad():
            eps = loop.eps(x, i)  # 1. ε̂ and x̂0, no UNet backward
            x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
            # ‖y − A x̂0‖ for return_info; σ = 0's correction needs it anyway
            resid = data_part(operator, operator.A(x0) - y) if sigma == 0 or info.enabled else None
            if sigma > 0:  # 2. the proximal data step (ρ_t I + AᵀA) x̂0' = Aᵀy + ρ_t x̂0
                rho = data_rho(lam, sigma, a_t, x0_variance_cap)
                if spectral is not None:  # x̂0' − x̂0 = V diag(s/(ρ_t + s²)) Uᵀ(y − A x̂0)
                    step = spectral_step(spectral, operator, x0, y, rho, 1.0)
                else:
                    step = solve(aty + rho * x0, shift=rho, scale=1.0, x0=x0) - x0
                correction = -step
                if i == last:  # 2'. the result x̂0' stops at the noise floor (module docstring)
                    r0 = data_part(operator, y - operator.A(x0))
                    g = discrepancy_weight(r0, data_part(operator, operator.A(step)), floor)
                    correction = correction * g.view(-1, *([1] * (x0.dim() - 1)))
            else:  # ρ → 0: x̂0' = x̂0 − A⁺(A x̂0 − y)
                correction = pinv(resid)
            # 3. re-noise: x_s = √ᾱ_s x̂0' + √(1−ᾱ_s)(√(1−ζ) ε̂' + √ζ z), one fused kernel
            k_z = math.sqrt((1 - a_s) * zeta)
            out = reproject_step(x, eps, correction, a_t, a_s, math.sqrt((1 - a_s) * (1 - zeta)), k_z,
                                 backend=sampling.backend, return_x0=loop.callback is not None,
                                 **loop.step_noise(i, k_z > 0))
        if info.enabled:
            info.add("residual", resid.flatten(1).norm(dim=1))
        x, x0p = out if loop.callback is not None else (out, None)
        if loop.callback is not None:
            loop.record(i, x, x0p)
    if last >= 0:  # 4. within the noise of y (1 − ᾱ_t of the last model call)
        x = discrepancy_pull(operator, x, y, sigma, 1 - loop.alpha_t[-1])
    return finish_run("diffpir", loop, operator, x, y, sigma, info)  # one sync, after the loop
