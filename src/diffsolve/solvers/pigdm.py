"""ΠGDM: pseudoinverse-guided diffusion models (Song, Vahdat, Mardani & Kautz 2023, ICLR, "Pseudoinverse-
guided diffusion models for inverse problems", Algorithm 1 with the noisy-measurement guidance of §3.2), on
the DDIM(η) step.

Per step t → s, with x_t (B, C, H, W), y (B, ...), ε̂ = ε_θ(x_t, t), x̂0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t and the
paper's r_t² = σ_t²/(1+σ_t²) = 1 − ᾱ_t (the VE σ_t² = (1−ᾱ_t)/ᾱ_t; the x̂0 error variance for a unit prior):

    1. r = y − A x̂0                                                     (B, ...)
    2. v = r_t² Aᵀ(σ² I + r_t² AAᵀ)⁻¹ r = r_t² (σ² I + r_t² AᵀA)⁻¹ Aᵀ r      (B, C, H, W), push-through
       identity; where A declares an SVD (masks, SR, circular / separable blur, a dense matrix) exactly as
       r_t² V diag(s/(σ² + r_t² s²)) Uᵀ r (``_inverse.range_solve``: a solve of Aᵀr would divide its rounding on
       A's null space by σ²), else ``operator.solve(Aᵀr, shift=σ², scale=r_t²)`` (exact where A's structure
       allows; otherwise :data:`CG_ITERS` plain CG iterations from 0: as good as 200 on motion-blurred photos
       at a fraction of the cost, results/pigdm-cg.md; a circulant preconditioner keeps the boundary errors of
       a reflect blur, results/plain-cg.md). σ = 0: v = A⁺ r
       (the paper's noiseless h†(y) − h†(h(x̂0)); a separable A's negligible singular values count as zero, as in
       the code's H_pinv: ``_inverse.pinv_of``).
    3. g = (∂x̂0/∂x_t)ᵀ v, one vector-Jacobian product through the denoiser          (B, C, H, W)
       (g/r_t² is the paper's likelihood score ∇_{x_t} log p(y | x_t), eq. 5 / 8)
    4. x_s = DDIM_η(x_t, ε̂) + √ᾱ_s √ᾱ_t g,  i.e. x̂0 moved to x̂0 + √ᾱ_t g before the DDIM step (the paper's
       √ᾱ_t weight on the x̂0 estimate; the same √ᾱ_s √ᾱ_t as the authors' code applies to x_s), one fused
       ``ddim_step`` (guidance −g, scale √ᾱ_t).

The result is held to the discrepancy principle (``_inverse.discrepancy_pull``; ``discrepancy=False``: the paper's
result).

Step count: step 4 adds a kick of the same size at every step, whatever the step's length (the paper's weight and its
code's), so N steps add about N kicks and the result does not settle as N grows: on exact priors the blurs' gap to
the posterior mean grows from about 50 steps on (the paper runs 100). Using g/r_t² as the likelihood score in
Tweedie's formula instead (x̂0 + g/√ᾱ_t, ε̂ recomputed) settles with N on the blurs but is further off on masks,
where r_t² = 1 − ᾱ_t overstates x̂0's error; results/pigdm-weight.md measures both. Run ΠGDM at 20–100 steps.

Defaults: η = 1 (the paper's DDPM-like sampler); the scaling of step 4 is scale-free (v is in image units, A
→ kA, y → ky, σ → kσ gives the same samples). Only the x̂0 graph is kept for step 3 (the solve is not
differentiated). Results: benchmarks/results/.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..kernels import ddim_step
from ._inverse import (Diagnostics, check_problem, check_sigma, data_part, discrepancy_pull, exact_pinv, finish_run,
                       pinv_of, range_solve, range_svd, route, solver_of)
from ._loop import Sampling, check_autograd, check_flag, check_number, prepare, takes_sampling
from .diffpir import check_operator_solves

__all__ = ["CG_ITERS", "guidance_vector", "pigdm"]

#: plain-CG iterations of step 2 where the operator has no exact solve (module docstring).
CG_ITERS = 20


def guidance_vector(operator: Any, resid: torch.Tensor, sigma: float, r2: float, solve: Any = None,
                    pinv: Any = None, svd: Any = None) -> torch.Tensor:
    """v = r_t² Aᵀ(σ² I + r_t² AAᵀ)⁻¹ r (σ > 0; in A's range SVD ``svd`` where given, ``_inverse.range_solve``) or
    A⁺ r (σ = 0: ``pinv(r)``, the solver's ``_inverse.pinv_of``; None: the exact A⁺), resid r = y − A x̂0 (B, ...)
    → (B, C, H, W)."""
    if sigma == 0:
        return exact_pinv(operator, resid) if pinv is None else pinv(resid)
    if svd is not None:
        return r2 * range_solve(svd, operator, resid, sigma**2, r2, resid)
    solve = solver_of(operator) if solve is None else solve
    return r2 * solve(operator.A_adjoint(resid), shift=sigma**2, scale=r2)


@takes_sampling
def pigdm(denoiser: Any, operator: Any, y: torch.Tensor, sampling: Sampling, *, sigma: float,
          eta: float = 1.0, discrepancy: bool = True) -> Any:
    """Reconstruct x from y = A x + n, n ~ N(0, σ² I), with N = ``sampling.steps`` ΠGDM steps (module docstring).

    Args:
        denoiser: ``denoiser(x, t) -> eps`` with ``alphas_cumprod``; must be differentiable in x.
        operator: a ``diffsolve.operators`` linear operator (needs ``solve``; ``pseudo_inverse`` for σ = 0).
        y: measurement (B, ...) float32/float64; one sample per measurement.
        sampling: the shared options (:class:`~diffsolve.solvers.Sampling`; or pass them as keywords).
        sigma: σ ≥ 0, the measurement noise std (required; 0: the paper's noiseless A⁺ guidance).
        eta: DDIM η ∈ [0, 1] (1: the paper).
        discrepancy: end with a residual y's noise explains (``_inverse.discrepancy_pull``; σ > 0); False: the
            paper's result.
    Returns:
        x (B, C, H, W), or (x, info) with ``return_info``: {"residual": (N, B) ‖y − A x̂0‖ at each step,
        "timesteps": (N,), "final_residual": (B,) ‖A x − y‖/√m, and for σ > 0
        "data_consistency": (B,) that over σ}.
    """
    sigma = check_sigma(sigma, positive=False)
    eta = check_number("eta", eta, 0.0, 1.0)
    discrepancy = check_flag("discrepancy", discrepancy)
    operator = route(operator, sampling.backend)  # before any kernel runs, the shape check's included
    shape = check_problem(operator, y, sampling.x_T)
    check_operator_solves(operator, sigma, "pigdm")
    check_autograd("pigdm")
    loop = prepare(denoiser, shape, sampling, like=y, name="pigdm")
    spectral = range_svd(operator, shape[-2:], "pigdm") if sigma > 0 else None  # A's SVD where it declares one
    solve = solver_of(operator, CG_ITERS, precondition=False) if sigma > 0 and spectral is None else None  # or CG
    pinv = pinv_of(operator, shape[-2:], probe=y) if sigma == 0 else None
    info = Diagnostics(sampling.return_info)
    x = loop.x
    for i in loop.steps():
        a_t, a_s = loop.alpha_t[i], loop.alpha_s[i]
        with torch.enable_grad():  # ε̂ and x̂0 with a graph through the denoiser
            xg = x.detach().requires_grad_(True)
            eps = loop.eps(xg, i)
            x0 = (xg - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
        with torch.no_grad():  # 1.-2. r = y − A x̂0, v = r_t² Aᵀ(σ² I + r_t² AAᵀ)⁻¹ r
            resid = data_part(operator, y - operator.A(x0.detach()))
            v = guidance_vector(operator, resid, sigma, 1 - a_t, solve, pinv, spectral)
        (g,) = torch.autograd.grad(x0, xg, grad_outputs=v)  # 3. g = (∂x̂0/∂x_t)ᵀ v
        if info.enabled:
            info.add("residual", resid.flatten(1).norm(dim=1))
        with torch.no_grad():  # 4. x_s = DDIM_η(x_t, ε̂) + √ᾱ_s √ᾱ_t g, one fused kernel
            out = ddim_step(x, eps.detach(), a_t, a_s, eta=eta, guidance=-g, guidance_scale=math.sqrt(a_t),
                            return_x0=loop.callback is not None, backend=sampling.backend,
                            **loop.step_noise(i, eta > 0))
        x, x0g = out if loop.callback is not None else (out, None)
        if loop.callback is not None:
            loop.record(i, x, x0g)
    if sigma > 0 and discrepancy:  # 5. within the noise of y (r_t² of the last model call)
        x = discrepancy_pull(operator, x, y, sigma, 1 - loop.alpha_t[-1])
    return finish_run("pigdm", loop, operator, x, y, sigma, info)  # one sync, after the loop
