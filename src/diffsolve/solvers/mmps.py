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
3. u ≈ (σ² I + γ_t A J Aᵀ)⁻¹ r by ``cg_iters`` conjugate-gradient iterations in measurement space, started
   at 0, one VJP each, every inner product and step per sample, fixed budget (no host sync);
4. x̂0_y = x̂0 + γ_t Jᵀ Aᵀ u (one more VJP);
5. x_s = DDIM_η(x_t, ε̂_y) with ε̂_y = (x_t − √ᾱ_t x̂0_y)/√(1−ᾱ_t), the noise prediction of x̂0_y (the paper
   plugs the posterior denoiser into the sampler), one fused kernel.

A step costs one forward and ``cg_iters`` + 1 backward passes of the denoiser. CG assumes σ² I + A Σ_t Aᵀ
symmetric positive definite: exact for an exact prior (Gaussian: Σ_t is the true covariance), only approximate
for a learned denoiser, whose Jacobian is neither exactly symmetric nor PSD — more iterations are then not
guaranteed to help (azula's MMPS uses GMRES by default for this reason); a direction with ⟨p, K p⟩ ≤ 0 is
skipped per sample. Defaults: ``cg_iters=1`` (the
paper reports that one to a few iterations suffice; azula's default is 1), η = 1. Scale rule: the update is
invariant to A → kA, y → ky, σ → kσ (A Σ Aᵀ, σ² and r scale alike); the image size enters nowhere.
Measurements: benchmarks/results/ (bench_methods.py).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..kernels import ddim_step
from ._inverse import Diagnostics, check_problem, check_sigma, route
from ._loop import Sampling, check_number, prepare, takes_sampling

__all__ = ["measurement_cg", "mmps", "posterior_mean"]


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B,) per-sample inner products."""
    return (a.flatten(1) * b.flatten(1)).sum(1)


def _view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


def measurement_cg(apply: Callable[[torch.Tensor], torch.Tensor], rhs: torch.Tensor, iters: int) -> torch.Tensor:
    """u ≈ K⁻¹ rhs by ``iters`` CG iterations from u = 0, K = ``apply`` SPD per sample; rhs (B, ...).

    Every α, β is a (B,) tensor; a sample whose direction has ⟨p, K p⟩ ≤ 0 or ⟨r, r⟩ = 0 (solved) takes
    α = 0 / β = 0 there (torch.where, no sync)."""
    u = torch.zeros_like(rhs)
    r = rhs
    p = rhs
    rr = _dot(r, r)
    for _ in range(iters):
        kp = apply(p)
        pkp = _dot(p, kp)
        ok = pkp > 0
        alpha = torch.where(ok, rr / torch.where(ok, pkp, torch.ones_like(pkp)), torch.zeros_like(pkp))
        u = u + _view(alpha, u) * p
        r = r - _view(alpha, r) * kp
        rr_new = _dot(r, r)
        live = rr > 0
        beta = torch.where(live, rr_new / torch.where(live, rr, torch.ones_like(rr)), torch.zeros_like(rr))
        p = r + _view(beta, r) * p
        rr = rr_new
    return u


def posterior_mean(operator: Any, x_t: torch.Tensor, x0: torch.Tensor, y: torch.Tensor, gamma: float,
                   sigma: float, cg_iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x̂0_y, r): steps 2–4 of the module docstring. x0 = x̂0(x_t) must carry a graph to x_t (requires_grad);
    gamma = γ_t = (1−ᾱ_t)/√ᾱ_t; returns x̂0_y detached and r = y − A x̂0."""

    def sigma_t(v: torch.Tensor, last: bool = False) -> torch.Tensor:  # Σ_t v = γ_t Jᵀ v (VJP)
        (g,) = torch.autograd.grad(x0, x_t, v, retain_graph=not last)
        return gamma * g

    x0d = x0.detach()
    r = y - operator.A(x0d)  # 2.
    var = sigma * sigma
    with torch.no_grad():
        # 3. (σ² I + A Σ_t Aᵀ) u = r
        u = measurement_cg(lambda v: var * v + operator.A(sigma_t(operator.A_adjoint(v))), r, cg_iters)
        # 4. x̂0_y = x̂0 + Σ_t Aᵀ u
        x0y = x0d + sigma_t(operator.A_adjoint(u), last=True)
    return x0y, r


@takes_sampling
def mmps(denoiser: Any, operator: Any, y: torch.Tensor, sampling: Sampling, *, sigma: float, cg_iters: int = 1,
         eta: float = 1.0) -> Any:
    """Sample p(x | y) for y = A x + n, n ~ N(0, σ² I) with N = ``sampling.steps`` MMPS steps (module docstring).

    Args:
        denoiser: ``denoiser(x, t) -> eps`` with ``alphas_cumprod``; must be differentiable in x (VJPs).
        operator: linear operator with ``A``/``A_adjoint`` (``diffsolve.operators``).
        y: measurement (B, ...) float32/float64; one sample per measurement.
        sampling: the shared options (:class:`~diffsolve.solvers.Sampling`; or pass them as keywords).
        sigma: σ > 0, the measurement noise std (or a ``GaussianNoise``).
        cg_iters: CG iterations per step for (σ² I + A Σ_t Aᵀ) u = r, an int ≥ 1 (default 1).
        eta: DDIM η ∈ [0, 1] of the step taken with the corrected x̂0 (default 1).
    Returns:
        x (B, C, H, W), or (x, info) with ``return_info``: {"residual": (N, B) ‖y − A x̂0‖ of the denoiser's x̂0,
        "residual_posterior": (N, B) ‖y − A x̂0_y‖ of the corrected one, "timesteps": (N,), "final_residual" (B,)
        ‖A x − y‖/√m and "data_consistency" (B,) that over σ}.
    """
    sigma = check_sigma(sigma, why="σ² I keeps the measurement-space system positive definite; for noiseless data "
                        "use a small positive value")
    if isinstance(cg_iters, bool) or not isinstance(cg_iters, int):
        raise TypeError(f"cg_iters must be an int (CG iterations per step), got {type(cg_iters).__name__} "
                        f"{cg_iters!r}")
    if cg_iters < 1:
        raise ValueError(f"cg_iters must be >= 1 (CG iterations per step; 1 is the default), got {cg_iters}")
    eta = check_number("eta", eta, 0.0, 1.0)
    operator = route(operator, sampling.backend)  # 1. the backend reaches A, Aᵀ (the shape check's included)
    shape = check_problem(operator, y, sampling.x_T)  # 2. (operator, y) → image shape
    loop = prepare(denoiser, shape, sampling, like=y, name="mmps")  # 3. schedule, x_T, generator
    gammas = [(1 - a) / a**0.5 for a in loop.alpha_t]  # γ_t = (1−ᾱ_t)/√ᾱ_t, host floats
    info = Diagnostics(sampling.return_info)
    x = loop.x
    for i in loop.steps():
        a_t, a_s = loop.alpha_t[i], loop.alpha_s[i]
        with torch.enable_grad():  # step 1: ε̂ and x̂0 with a graph through the denoiser
            xg = x.detach().requires_grad_(True)
            eps = loop.eps(xg, i)
            x0 = (xg - (1 - a_t) ** 0.5 * eps) / a_t**0.5
            # steps 2–4: r, the measurement-space CG and the corrected x̂0_y
            x0y, r = posterior_mean(operator, xg, x0, y, gammas[i], sigma, cg_iters)
        info.add("residual", r.flatten(1).norm(dim=1))
        if sampling.return_info:
            info.add("residual_posterior", (y - operator.A(x0y)).flatten(1).norm(dim=1))
        # step 5: DDIM_η with the noise prediction of x̂0_y, one fused kernel
        eps_y = (x - a_t**0.5 * x0y) / (1 - a_t) ** 0.5
        x = ddim_step(x, eps_y, a_t, a_s, eta=eta, backend=sampling.backend, **loop.step_noise(i, eta > 0))
        if loop.callback is not None:
            loop.record(i, x, x0y)
    x = loop.finish(x)
    if sampling.return_info:
        return x, info.finish(operator, x, y, loop.schedule.timesteps, sigma=sigma)
    return x
