"""MMPS: moment-matching posterior sampling (Rozet, Andry, Lanusse & Louppe 2024, "Learning diffusion priors
from observations by expectation maximization", §4), on the DDIM(η) step.

MMPS replaces the denoiser's x̂0 = E[x0 | x_t] by an estimate of E[x0 | x_t, y] that matches the first two
moments of p(x0 | x_t): with p(x0 | x_t) ≈ N(x̂0, Σ_t) and y = A x0 + n, n ~ N(0, σ² I), the Gaussian posterior
mean is

    x̂0_y = x̂0 + Σ_t Aᵀ (σ² I + A Σ_t Aᵀ)⁻¹ (y − A x̂0),

x_t (B, C, H, W), y (B, ...). Σ_t is Tweedie's covariance. In VE coordinates x̃ = x0 + σ̃_t ε it is
Cov[x0 | x̃] = σ̃_t² ∂x̂0/∂x̃; the model's VP convention x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε has x̃ = x_t/√ᾱ_t and
σ̃_t² = (1−ᾱ_t)/ᾱ_t, so

    Σ_t = γ_t J,   J = ∂x̂0/∂x_t (B·n × B·n, block diagonal),   γ_t = (1−ᾱ_t)/√ᾱ_t.

J is applied as a vector-Jacobian product through the denoiser (v ↦ Jᵀ v, J taken symmetric as in the paper;
exact for a Gaussian prior). Per step t → s:

1. ε̂ = ε_θ(x_t, t) with a graph, x̂0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t;
2. r = y − A x̂0 (B, ...);
3. u ≈ K⁻¹ r, K = σ² I + γ_t A Jᵀ Aᵀ (the operator actually applied), by ``iters`` iterations of ``solver`` in
   measurement space, started at 0, one VJP each, every inner product per sample, fixed budget (no host sync):
   "gmres" (default) minimises ‖r − K u‖ over the Krylov space (``_krylov.measurement_gmres``: Arnoldi with modified
   Gram–Schmidt, the (k+1)×k least squares per sample by torch.linalg), "cg" (``measurement_cg``) assumes K
   symmetric positive definite;
4. x̂0_y = x̂0 + γ_t Jᵀ Aᵀ u, without another Aᵀ or VJP: u = Σ_i w_i v_i over the vectors the solver applied
   K to, and γ_t Jᵀ Aᵀ v_i was computed inside that product (the solvers' ``weights=True``);
5. x_s = DDIM_η(x_t, ε̂_y) with ε̂_y = (x_t − √ᾱ_t x̂0_y)/√(1−ᾱ_t), the noise prediction of x̂0_y (the paper
   plugs the posterior denoiser into the sampler), one fused kernel.

A step costs one forward and ``iters`` backward passes of the denoiser (and ``iters`` + 1 products with A and
``iters`` with Aᵀ). K is symmetric positive definite for an exact prior (Gaussian: Σ_t is the true covariance),
where CG and GMRES both reach the exact solve at ``iters`` = m; for a learned denoiser J is neither exactly
symmetric nor PSD. CG's ⟨p, K p⟩ can then fall below σ²⟨p, p⟩, the least it has for a PSD Σ_t, and a step along such
a direction is unbounded: it is skipped per sample. Past one iteration CG also loses conjugacy on a non-symmetric K
and can throw a sample away, while GMRES's residual ‖r − K u‖ cannot grow with ``iters`` (the shipped UNet:
benchmarks/results/mmps-solvers.md): use "cg" for exact priors (they declare ``symmetric_jacobian``), or with
``iters=1`` (azula's setting); past one iteration with any other denoiser a warning says so before the loop.
Defaults: ``solver="gmres"`` as azula's MMPSDenoiser, ``iters=4`` (azula's default is 1: the paper uses one to a
few), η = 1. One iteration leaves the step far from the exact moment-matching update on blurs and large holes; four
reach it closely on the exact prior and gain on photos, at about twice the time per step
(benchmarks/results/mmps-iters.md).
Scale rule: the update is invariant to A → kA, y → ky, σ → kσ (A Σ Aᵀ, σ² and r scale alike, and both solvers
are invariant to K → k²K, r → k²r); the image size enters nowhere.
Measurements: benchmarks/results/ (bench_methods.py).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import torch

from ..kernels import ddim_step
from ._inverse import (Diagnostics, check_problem, check_sigma, data_part, discrepancy_pull, finish_run, residual_norm,
                       route)
from ._krylov import measurement_cg, measurement_gmres, per_sample, shares_memory
from ._loop import Sampling, check_autograd, check_flag, check_int, check_number, prepare, takes_sampling

__all__ = ["SOLVERS", "mmps", "posterior_mean"]


def _add_into(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """a + alpha·b, written into a (a result of A, ours) unless a holds b's memory."""
    return a.add_(b, alpha=alpha) if not shares_memory(a, b) else torch.add(a, b, alpha=alpha)


SOLVERS: dict[str, Callable[..., torch.Tensor]] = {"gmres": measurement_gmres, "cg": measurement_cg}


def posterior_mean(operator: Any, x_t: torch.Tensor, eps: torch.Tensor, y: torch.Tensor, alpha_t: float,
                   sigma: float, iters: int, solver: str = "gmres") -> tuple[torch.Tensor, torch.Tensor]:
    """(x̂0_y, r): steps 2–4 of the module docstring. eps = ε_θ(x_t) must carry a graph to x_t (requires_grad);
    alpha_t = ᾱ_t; ``iters`` iterations of ``solver`` ("gmres" or "cg") for step 3; returns x̂0_y detached and
    r = y − A x̂0.

    The VJP is taken through the denoiser alone: x̂0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t gives
    Σ_t v = γ_t Jᵀ v = ((1−ᾱ_t)/ᾱ_t) (v − √(1−ᾱ_t) (∂ε̂/∂x_t)ᵀ v)."""
    solve = SOLVERS[solver]
    scale, root = (1 - alpha_t) / alpha_t, (1 - alpha_t) ** 0.5

    lifted: list[torch.Tensor] = []  # (Σ_t/γ) Aᵀ v_i for every vector v_i the solver applies K to

    def apply(v: torch.Tensor) -> torch.Tensor:  # K v / γ = A (Σ_t/γ) Aᵀ v + (σ²/γ) v, one VJP through ε_θ
        w = operator.A_adjoint(v)
        (g,) = torch.autograd.grad(eps, x_t, w, retain_graph=len(lifted) < iters - 1)  # the last frees the graph
        # (Σ_t/γ) w = w − √(1−ᾱ_t) g, written into g unless autograd handed back w's own memory (no new buffer)
        z = torch.add(w, g, alpha=-root, out=None if shares_memory(g, w) else g)
        lifted.append(z)
        return _add_into(operator.A(z), v, ratio)

    x0 = torch.add(x_t.detach(), eps.detach(), alpha=-root).div_(alpha_t**0.5)
    r = data_part(operator, y - operator.A(x0))  # 2. (the measured entries: K is σ²I elsewhere, whatever y holds)
    ratio = sigma * sigma / scale
    with torch.no_grad():
        # 3. (σ²/γ I + A (Σ_t/γ) Aᵀ) u' = r, γ = (1−ᾱ_t)/ᾱ_t: K/γ, so u' = γ u (both solvers are covariant in K's
        # scale) and the γ of step 4 cancels; u' = Σ_i w_i v_i over the vectors applied
        floor = {"floor": ratio} if solver == "cg" else {}  # K/γ ⪰ (σ²/γ) I where Σ_t is PSD
        _, weights = solve(apply, r, iters, weights=True, solution=False, **floor)
        # 4. x̂0_y = x̂0 + Σ_t Aᵀ u = x̂0 + Σ_i w_i (Σ_t/γ) Aᵀ v_i: the solver's own products, no further Aᵀ or VJP
        x0y = x0
        for i, z in enumerate(lifted):
            x0y.addcmul_(per_sample(weights[:, i], z), z)
    return x0y, r


@takes_sampling
def mmps(denoiser: Any, operator: Any, y: torch.Tensor, sampling: Sampling, *, sigma: float, solver: str = "gmres",
         iters: int = 4, eta: float = 1.0, discrepancy: bool = True) -> Any:
    """Sample p(x | y) for y = A x + n, n ~ N(0, σ² I) with N = ``sampling.steps`` MMPS steps (module docstring).

    Args:
        denoiser: ``denoiser(x, t) -> eps`` with ``alphas_cumprod``; must be differentiable in x (VJPs).
        operator: linear operator with ``A``/``A_adjoint`` (``diffsolve.operators``).
        y: measurement (B, ...) float32/float64; one sample per measurement.
        sampling: the shared options (:class:`~diffsolve.solvers.Sampling`; or pass them as keywords).
        sigma: σ > 0, the measurement noise std (or a ``GaussianNoise``).
        solver: the Krylov solver of (σ² I + A Σ_t Aᵀ) u = r, "gmres" (default, as azula: K is not symmetric
            for a learned denoiser) or "cg" (exact only for a symmetric PSD Σ_t; with a learned denoiser
            use iters=1).
        iters: solver iterations per step, an int ≥ 1 (default 4; azula's is 1; each costs one backward pass).
        eta: DDIM η ∈ [0, 1] of the step taken with the corrected x̂0 (default 1).
        discrepancy: end with a residual y's noise explains (``_inverse.discrepancy_pull``); False: the
            paper's result.
    Returns:
        x (B, C, H, W), or (x, info) with ``return_info``: {"residual": (N, B) ‖y − A x̂0‖ of the denoiser's x̂0,
        "residual_posterior": (N, B) ‖y − A x̂0_y‖ of the corrected one, "timesteps": (N,), "final_residual" (B,)
        ‖A x − y‖/√m and "data_consistency" (B,) that over σ}.
    """
    sigma = check_sigma(sigma, why="σ² I keeps the measurement-space system positive definite; for noiseless data "
                        "use a small positive value")
    if not isinstance(solver, str):
        raise TypeError(f"solver must be a str, one of {sorted(SOLVERS)}, got {type(solver).__name__} {solver!r}")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {sorted(SOLVERS)} (the measurement-space Krylov solver; "
                         f"'gmres' is the default), got {solver!r}")
    iters = check_int("iters", iters, 1, "solver iterations per step; 4 is the default")
    eta = check_number("eta", eta, 0.0, 1.0)
    if solver == "cg" and iters > 1 and not getattr(denoiser, "symmetric_jacobian", False):
        warnings.warn(f"mmps: solver='cg' with iters={iters} assumes a symmetric PSD denoiser Jacobian (exact priors "
                      "declare symmetric_jacobian = True); a learned denoiser's is neither, and past one iteration CG "
                      "can throw samples away (benchmarks/results/mmps-solvers.md): use solver='gmres' (the default) "
                      "or iters=1", UserWarning, stacklevel=3)
    discrepancy = check_flag("discrepancy", discrepancy)
    operator = route(operator, sampling.backend)  # 1. the backend reaches A, Aᵀ (the shape check's included)
    shape = check_problem(operator, y, sampling.x_T)  # 2. (operator, y) → image shape
    check_autograd("mmps")
    loop = prepare(denoiser, shape, sampling, like=y, name="mmps")  # 3. schedule, x_T, generator
    info = Diagnostics(sampling.return_info)
    x = loop.x
    for i in loop.steps():
        a_t, a_s = loop.alpha_t[i], loop.alpha_s[i]
        with torch.enable_grad():  # step 1: ε̂ with a graph through the denoiser
            xg = x.detach().requires_grad_(True)
            eps = loop.eps(xg, i)
            # steps 2–4: x̂0, r, the measurement-space solve and the corrected x̂0_y
            x0y, r = posterior_mean(operator, xg, eps, y, a_t, sigma, iters, solver)
        if sampling.return_info:
            info.add("residual", r.flatten(1).norm(dim=1))
            info.add("residual_posterior", residual_norm(operator, x0y, y))
        # step 5: DDIM_η with the noise prediction of x̂0_y, one fused kernel
        eps_y = torch.add(x, x0y, alpha=-(a_t**0.5)).div_((1 - a_t) ** 0.5)
        x = ddim_step(x, eps_y, a_t, a_s, eta=eta, backend=sampling.backend, **loop.step_noise(i, eta > 0))
        if loop.callback is not None:
            loop.record(i, x, x0y)
    if discrepancy:  # within the noise of y (1 − ᾱ_t of the last model call)
        x = discrepancy_pull(operator, x, y, sigma, 1 - loop.alpha_t[-1])
    return finish_run("mmps", loop, operator, x, y, sigma, info)  # one sync, after the loop
