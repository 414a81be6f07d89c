"""C-DPS: coupled data- and measurement-space diffusion posterior sampling (Hamidi, Yang & Liang 2025,
"Coupled data and measurement space dynamics for enhanced diffusion posterior sampling").
Conventions: DESIGN.md §4; the measurements behind the defaults: benchmarks/results/posterior.md
and quality_heldout.md.

**Per-step posterior** (t → s). The prior transition N(m, c⁻¹ I) is combined with a coupling
y_s | x_s ~ N(A x_s + b_s, Σ_s I), b_s = (1−ᾱ_s) A ŝ, ŝ = −ε̂/√(1−ᾱ_t) (the score at x_t standing in
for the one at x_s):

    Λ = c I + w AᵀA (w = 1/Σ_s),   x_s = Λ⁻¹(c m + w Aᵀ(y_s − b_s) + √c e₁ + √w Aᵀe₂),  e₁, e₂ ~ N(0, I)

(perturb-then-solve: one solve of the summed right-hand side). Prior transition:

- ``coupling="reverse"`` (default): the model's reverse kernel, m = DDIM mean
  √ᾱ_s x̂0 + √(1−ᾱ_s−σ_η²) ε̂, c = 1/σ_η² (η > 0). At the last step (ᾱ_s = 1, σ_η = 0) the kernel
  is a point mass; it is replaced by the Gaussian approximation of p(x_0 | x_t) with Tweedie's mean
  x̂0 and variance (1−ᾱ_t)/ᾱ_t (exact for a flat prior, an upper bound otherwise). ``last_step="mean"``
  (default) returns that step's posterior mean, as DDPM's own last step adds no noise;
  ``"sample"`` draws from it. The draw adds noise of variance up to (1−ᾱ_t)/ᾱ_t per pixel wherever y
  is weak — 0.005 at the last level of a 30-step schedule, std 0.035 in [0, 1] units, which capped
  Gaussian-blur restorations of held-out crops at 24.2 dB (mean: 28.5, Tikhonov 26.6; SR ×4: 20.3 →
  22.3, Tikhonov 22.7; two crops);
- ``coupling="forward"`` (the paper's): q(x_t | x_s) read as a density of x_s,
  m = x_t/√α_{t|s}, c = α_{t|s}/β_{t|s} (the score enters only through b_s). It diverges on every
  benchmark task (posterior.md) and is kept only as the paper's literal reading.

**Measurement chain** ``chain`` — what y_s is and the coupling variance Σ_s:

- ``"none"`` (default): no chain; y_s = √ᾱ_s y at every step (so y_s − b_s = √ᾱ_s y + (1−ᾱ_s)/√(1−ᾱ_t)·Aε̂
  is the flat-prior prediction of A x_s), Σ_s = max(ᾱ_s σ², ‖AᵀA‖/((κ_max − 1) c)). The first term is
  the measurement noise seen at level s (√ᾱ_s y = √ᾱ_s A x_0 + √ᾱ_s n); the floor, where the operator
  bounds ‖AᵀA‖ (``gram_norm_bound``: the blurs), caps κ(Λ) = 1 + w‖AᵀA‖/c at κ_max = :data:`KAPPA_MAX` =
  100, except at the last step (ᾱ_s = 1: w = 1/σ² as in the talk's chains, κ sized as below).
  It binds only at early steps (ᾱ_s σ² ≪ the prior variance c⁻¹), where the bare weight
  w = 1/(ᾱ_s σ²) gives κ up to ~10⁶ and CG (motion blur) would need thousands of iterations (1000-
  iteration budgets did not converge); with the floor every CG step needs ≤ 73 iterations in float32
  (130 in float64). Measured: the floor changes no posterior
  statistic by more than sampling noise except Gaussian blur, whose mean gap it lowers
  (N = 50: 0.125 → 0.104, N = 100: 0.155 → 0.136; 128 draws, 16×16 Gaussian prior).
- ``"operator"``: the chain noise through A, y_k = √ᾱ_k y + A u_k with u_k the Markov chain below in
  image space (covariance (1−ᾱ_k) AAᵀ, the forward noise of x seen through A); Σ_s as ``"none"`` (were u
  x's own forward noise, y_s − A x_s would be √ᾱ_s n). With the talk's Σ_s it matched ``"markov"``
  within sampling noise (Gaussian prior, N = 50: SR ×4 0.71/2.8, blur 0.25/1.26).
- ``"markov"`` (the talk's literal reading): y_k = √ᾱ_k y + u_k with u_t = √α_{t|s} u_s + √β_{t|s} ζ,
  u_k ~ N(0, (1−ᾱ_k) I), drawn once per solve — generated backwards along the loop by the exact
  bridge u_s | u_t ~ N(√α_{t|s}(1−ᾱ_s)/(1−ᾱ_t) u_t, (1−ᾱ_s)β_{t|s}/(1−ᾱ_t) I); Σ_s = ᾱ_s σ² + (1−ᾱ_s).
- ``"fresh"``: each u_s drawn from its marginal independently; Σ_s as ``"markov"``.

Why ``"none"``: the talk's chain noise u_s ~ N(0, (1−ᾱ_s) I) is isotropic in *measurement* space
whatever A's scale; the coupling makes A x_s follow it, so in x-space it is range noise of variance
≥ (1−ᾱ_s)/s_min(A)² (SR ×4: singular values 0.13–0.25, ≥ 16×). On exact priors (bench_posterior.py,
16×16, σ = 0.05, 128 draws, Gaussian | Gaussian-mixture prior, N = 50; results/posterior.md) the mean
gap ‖x̄ − μ_post‖/‖μ_prior − μ_post‖ of the talk's chain is 0.16–0.78 and does not shrink with N
(SR ×4: 0.53 → 0.69 → 0.74 at N = 20, 50, 100); ``"operator"`` reaches 0.04–0.21 on the blurs and
SR with trace ratios 0.8–1.3 but spreads inpainting 2–5× too wide (its chain noise is pinned into
the observed pixels); ``"none"`` reaches 0.05–0.18 | 0.11–0.20 (box 0.18 | 0.16, random 0.07 | 0.12, Gaussian
blur 0.10 | 0.15, motion blur 0.13 | 0.20, SR ×4 0.05 | 0.12). DPS (its defaults) at N = 100 does
better on box inpainting and the blurs (0.04–0.13), C-DPS at N = 50 is as good or better on random
inpainting and SR ×4. Spread (trace ratio tr Ĉ/tr Σ): with ``last_step="sample"`` 0.84–1.40 on
every task and prior; the default mean last step gives 0.71–1.19 on inpainting and Gaussian-prior SR
but 0.39–0.64 on the blurs and mixture-prior SR (those directions get their spread from the
Tweedie last step, whose flat-prior variance is too large on photos: see ``last_step`` above).
Variants measured and rejected (Gaussian prior, N = 50, mean gap / trace ratio): Σ_s = ᾱ_s σ² +
(1−ᾱ_s) AAᵀ (the flat-prior Tweedie covariance; box 0.36/2.3, random 0.41/3.6, blur 0.085/1.02),
Σ_s = ᾱ_s σ² + ᾱ_s(1−ᾱ_s) AAᵀ (unit data variance; box 0.27/1.9, random 0.22/2.7, blur 0.083/0.99),
and drawing x_0 from N(x̂0, r_t² I)·N(y; A x_0, σ²) then a DDIM step from it (r_t² = 1−ᾱ_t: box
0.32/2.2, random 0.34/3.5, blur 0.081/1.41; its mean only: box 0.32/1.9, random 0.34/2.8). All help
blur and hurt inpainting, where the missing pixels see y only through the model's ε̂ at x_t — which
a Jacobian-free step cannot correct (the remaining box-inpainting gap). On held-out photo crops (30
steps, results/quality_heldout.md) the default is above Tikhonov on every task (SR ×4 −0.46 dB,
the others +1.6 to +10.5 dB) with no colour cast (≤ 0.006). Same 4 crops, seed 0, PSNR dB for
none | operator | markov (all with the mean last step), Tikhonov: Gaussian blur 28.6 | 23.4 | 28.1,
27.0; motion blur 26.2 | 21.2 | 22.2, 23.5; box 19.5 | 16.1 | 16.5, 17.8; random 24.8 | 14.2 | 16.4,
14.4; SR ×4 22.7 | 19.6 | 13.6, 23.0.

``solver``: ``"auto"`` — an operator that declares ``structure == "diagonal"`` (inpainting) in the
fused elementwise kernel, else the operator's exact solve where it has one, else batched CG
warm-started at m; ``"exact"``; ``"cg"``. CG runs a fixed budget without host syncs; non-convergence
is reported once at the end (:class:`CGNotConvergedWarning`, and per step in ``return_info``). The
default budget is sized per step on the host (:func:`cg_budget`): κ(Λ) ≤ 1 + w‖AᵀA‖/c, and the
Chebyshev bound turns κ into the iterations that guarantee the tolerance (at most ``CG_MAX_ITERS``).
The talk's chains keep w ≤ 1/σ², so κ is large only at the last step of a short schedule (for every chain)
(c = ᾱ_t/(1−ᾱ_t), w = 1/σ²: with σ = 0.05 and a motion blur κ ≈ 1000 at 3 steps, 130–270 iterations;
benchmarks/results/cg-motion.md).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch

from ..kernels import diagonal_posterior_step
from ..kernels.cg import cg_iteration_bound
from ..operators.base import _default_tol
from ._inverse import Diagnostics, check_problem
from ._loop import Callback, _draw, check_number, prepare

__all__ = ["CHAINS", "LAST_STEPS", "COUPLINGS", "CG_DEFAULT_ITERS", "CG_MAX_ITERS", "SOLVERS", "CGNotConvergedWarning",
           "KAPPA_MAX", "MeasurementChain", "cdps", "cdps_step", "cg_budget", "coupling_variance", "gram_bound",
           "precisions", "transition"]

COUPLINGS = ("reverse", "forward")
CHAINS = ("none", "operator", "markov", "fresh")
SOLVERS = ("auto", "exact", "cg")
LAST_STEPS = ("mean", "sample")
#: CG budget per step where the operator gives no bound on ‖AᵀA‖ (``gram_norm_bound`` is None).
CG_DEFAULT_ITERS = 100
#: Cap on the κ-sized CG budget of one step.
CG_MAX_ITERS = 1000


class CGNotConvergedWarning(RuntimeWarning):
    """Some C-DPS step's CG solve stopped at its iteration budget above the tolerance."""


def transition(coupling: str, eta: float, alpha_t: float, alpha_s: float) -> tuple[float, float, float]:
    """Prior transition N(m, c⁻¹ I) of step t → s as (k_x, k_e, c) with m = k_x x_t + k_e ε̂ (host floats)."""
    a_t, a_s = alpha_t, alpha_s
    if coupling == "forward":
        alpha = a_t / a_s
        return 1 / math.sqrt(alpha), 0.0, alpha / (1 - alpha)
    var = eta**2 * (1 - a_s) / (1 - a_t) * (1 - a_t / a_s)
    k_x = math.sqrt(a_s / a_t)
    if var > 0:  # DDIM(η) mean √ᾱ_s x̂0 + √(1−ᾱ_s−σ²) ε̂, written in x_t and ε̂
        return k_x, math.sqrt(max(1 - a_s - var, 0.0)) - k_x * math.sqrt(1 - a_t), 1 / var
    # last step (ᾱ_s = 1): Tweedie mean x̂0 with variance (1−ᾱ_t)/ᾱ_t (module docstring)
    return 1 / math.sqrt(a_t), -math.sqrt(1 - a_t) / math.sqrt(a_t), a_t / (1 - a_t)


#: Cap on the condition number of a ``chain="none"`` step's system (module docstring).
KAPPA_MAX = 100.0


def coupling_variance(chain: str, alpha_t: float, alpha_s: float, sigma: float, *, c: float,
                      gram: float | None) -> float:
    """Σ_s of the coupling y_s | x_s ~ N(A x_s + b_s, Σ_s I) of step t → s (host float, module docstring).

    ``"markov"``/``"fresh"``: ᾱ_s σ² + 1 − ᾱ_s (the talk's); ``"none"``/``"operator"``:
    max(ᾱ_s σ², ‖AᵀA‖/((KAPPA_MAX − 1) c)) with c the prior precision and ``gram`` ≥ ‖AᵀA‖ (no floor
    where ``gram`` is None, nor at the last step, ᾱ_s = 1).
    """
    if chain not in ("none", "operator"):
        return alpha_s * sigma**2 + (1 - alpha_s)
    # the last step (ᾱ_s = 1) keeps w = 1/σ², as the talk's chains: its κ is sized by cg_budget
    floor = 0.0 if gram is None or alpha_s >= 1 else gram / ((KAPPA_MAX - 1) * c)
    return max(alpha_s * sigma**2, floor)


def precisions(coupling: str, eta: float, alpha_t: float, alpha_s: float, sigma: float, chain: str = "markov",
               gram: float | None = None) -> tuple[float, float]:
    """(c, w) of step t → s: prior precision c (:func:`transition`) and w = 1/Σ_s
    (:func:`coupling_variance`; ``gram`` ≥ ‖AᵀA‖ or None)."""
    c = transition(coupling, eta, alpha_t, alpha_s)[2]
    return c, 1.0 / coupling_variance(chain, alpha_t, alpha_s, sigma, c=c, gram=gram)


def gram_bound(operator: Any, size: tuple[int, int]) -> float | None:
    """``operator.gram_norm_bound(size)`` (≥ ‖AᵀA‖), or None where the operator gives none."""
    bound_fn = getattr(operator, "gram_norm_bound", None)
    bound = bound_fn(tuple(size)) if callable(bound_fn) else None
    return None if bound is None else float(bound)


def cg_budget(operator: Any, size: tuple[int, int], c: float, w: float, tol: float) -> int:
    """CG iterations for (c·I + w·AᵀA) x = rhs at relative tolerance ``tol`` (host floats, no sync).

    κ ≤ 1 + w·‖AᵀA‖/c with ‖AᵀA‖ ≤ ``operator.gram_norm_bound(size)``; returns
    min(:func:`~diffsolve.kernels.cg.cg_iteration_bound` (κ, tol), CG_MAX_ITERS), or CG_DEFAULT_ITERS
    where the operator has no bound.
    """
    bound = gram_bound(operator, size)
    if bound is None:
        return CG_DEFAULT_ITERS
    return min(cg_iteration_bound(1.0 + w * bound / c, tol), CG_MAX_ITERS)


class MeasurementChain:
    """u_k of the measurement chain along the loop's levels (module docstring); ``next(a_t, a_s)`` → u_s."""

    def __init__(self, y: torch.Tensor, chain: str, alpha_first: float, generator: torch.Generator | None) -> None:
        self.shape, self.dtype, self.device = tuple(y.shape), y.dtype, y.device
        self.chain, self.generator = chain, generator
        self.u = math.sqrt(1 - alpha_first) * self._noise() if chain == "markov" else None

    def _noise(self) -> torch.Tensor:
        return _draw(self.shape, self.generator, self.dtype, self.device)

    def next(self, alpha_t: float, alpha_s: float) -> torch.Tensor | None:
        """u_s (None where ᾱ_s = 1: u_s = 0 exactly)."""
        if alpha_s >= 1:
            self.u = None
            return None
        if self.chain == "fresh":
            return math.sqrt(1 - alpha_s) * self._noise()
        alpha = alpha_t / alpha_s
        mean = math.sqrt(alpha) * (1 - alpha_s) / (1 - alpha_t)
        std = math.sqrt((1 - alpha_s) * (1 - alpha) / (1 - alpha_t))
        self.u = mean * self.u + std * self._noise()
        return self.u


def cdps_step(operator: Any, x_t: torch.Tensor, eps: torch.Tensor, y_s: torch.Tensor, alpha_t: float,
              alpha_s: float, *, sigma: float, e1: torch.Tensor | None, e2: torch.Tensor | None,
              coupling: str = "reverse", eta: float = 1.0, chain: str = "markov", method: str = "exact",
              diag: torch.Tensor | None = None, cg_iters: int | None = None, cg_tol: float | None = None,
              want_info: bool = False, backend: str = "auto") -> tuple[torch.Tensor, Any]:
    """One C-DPS step t → s: a draw of x_s from the per-step Gaussian posterior (module docstring).

    x_t, eps, e1: (B, C, H, W); y_s, e2: measurement-shaped (e1 = e2 = None gives the posterior mean);
    ``chain`` fixes Σ_s (:func:`coupling_variance`); ``method`` "diagonal" (needs ``diag``, the
    operator's declared diagonal (1|B, 1|C, H, W)), "exact" or "cg"; ``cg_iters`` None sizes the CG
    budget from κ (:func:`cg_budget`). Returns (x_s, SolveInfo or None).
    """
    k_x, k_e, _ = transition(coupling, eta, alpha_t, alpha_s)
    c, w = precisions(coupling, eta, alpha_t, alpha_s, sigma, chain, gram_bound(operator, tuple(x_t.shape[-2:])))
    mean = k_x * x_t + k_e * eps
    target = y_s + ((1 - alpha_s) / math.sqrt(1 - alpha_t)) * operator.A(eps)  # y_s − b_s
    if method == "diagonal":
        noise = None if e1 is None else (e1, e2)
        return diagonal_posterior_step(mean, c, diag, target, w, noise=noise, backend=backend), None
    if e1 is None:
        rhs = c * mean + w * operator.A_adjoint(target)
    else:  # c m + √c e₁ + w Aᵀ(t + e₂/√w)
        rhs = c * mean + math.sqrt(c) * e1 + w * operator.A_adjoint(target + e2 / math.sqrt(w))
    if method == "cg" and cg_iters is None:
        tol = _default_tol(rhs.dtype) if cg_tol is None else cg_tol
        cg_iters = cg_budget(operator, tuple(rhs.shape[-2:]), c, w, tol)
    out = operator.solve(rhs, c, w, method=method, tol=cg_tol, max_iters=cg_iters or CG_DEFAULT_ITERS, x0=mean,
                         return_info=want_info)
    return out if want_info else (out, None)


def _check_sigma(sigma: object) -> float:
    noise_sigma = getattr(sigma, "sigma", None)  # a diffsolve.operators.GaussianNoise
    if noise_sigma is not None and not isinstance(sigma, (int, float)):
        sigma = noise_sigma
    if not isinstance(sigma, (int, float)) or isinstance(sigma, bool):
        raise TypeError(f"sigma must be a number (noise std in [-1, 1] units) or a GaussianNoise, got "
                        f"{type(sigma).__name__}")
    if not 0 < sigma < float("inf"):
        raise ValueError(f"sigma must be a positive finite noise std in [-1, 1] units, got {sigma!r} "
                         "(for noiseless data use a small positive value)")
    return float(sigma)


def _check_solvable(sigma: float, dtype: torch.dtype, method: str, gram: float | None,
                    steps: list[tuple[float, float]]) -> None:
    """ValueError before the loop where σ makes a step's system overflow the dtype or, for CG in float32,
    exceed what it can solve (κ·eps ≥ 1 with κ ≤ 1 + w‖AᵀA‖/c; ‖AᵀA‖ taken as 1 where unknown: σ = 1e-8
    with a motion blur gave NaN there)."""
    info = torch.finfo(dtype)
    if max(w for _, w in steps) > info.max / 1e6:
        raise ValueError(f"sigma={sigma:g} is too small for {dtype}: the data weight 1/sigma² overflows it; use a "
                         "larger sigma or float64")
    if method == "cg" and dtype != torch.float64:  # float64 CG degrades gracefully (CGNotConvergedWarning)
        kappa = max(1 + w * (gram or 1.0) / c for c, w in steps)
        if kappa * info.eps >= 1:
            raise ValueError(f"sigma={sigma:g}: a C-DPS step's system has condition number up to {kappa:.1e}, beyond "
                             f"what CG in {dtype} can solve (kappa x eps >= 1); use float64, a larger sigma, or an "
                             "operator with an exact solve")


def _choose_method(solver: str, operator: Any) -> str:
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    exact = bool(getattr(operator, "exact_solve", False))
    if solver == "exact" and not exact:
        raise ValueError(f"solver='exact': {operator!r} has no exact solve; use 'cg' or 'auto'")
    if not callable(getattr(operator, "solve", None)):
        raise TypeError(f"operator must have solve(rhs, shift, scale) (diffsolve.operators), got "
                        f"{type(operator).__name__}")
    if solver == "auto":
        if getattr(operator, "structure", None) == "diagonal":  # declared (LinearOperator.structure)
            return "diagonal"
        return "exact" if exact else "cg"
    return solver


def cdps(denoiser: Any, operator: Any, y: torch.Tensor, *, steps: int, sigma: float, coupling: str = "reverse",
         chain: str = "none", eta: float = 1.0, solver: str = "auto", cg_iters: int | None = None,
         cg_tol: float | None = None, generator: torch.Generator | None = None, progress: bool = False,
         return_info: bool = False, callback: Callback | None = None, spacing: str = "trailing",
         timesteps: Sequence[int] | torch.Tensor | None = None, x_T: torch.Tensor | None = None,
         backend: str = "auto", last_step: str = "mean") -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Sample p(x | y) for y = A x + n, n ~ N(0, σ² I) with N = ``steps`` C-DPS steps (module docstring).

    Args:
        denoiser: ``denoiser(x, t) -> eps`` with ``alphas_cumprod`` (no backward pass is taken).
        operator: a linear operator with ``A``, ``A_adjoint``, ``solve`` (``diffsolve.operators``).
        y: measurement (B, ...), float32/float64; one sample per measurement.
        sigma: σ > 0, the noise std in [-1, 1] units (or a ``GaussianNoise``).
        coupling: ``"reverse"`` | ``"forward"``; chain: ``"none"`` (default) | ``"operator"`` |
            ``"markov"`` (the talk's) | ``"fresh"`` (module docstring).
        eta: η ∈ (0, 1] of the reverse kernel (ignored by the forward coupling).
        solver: ``"auto"`` | ``"exact"`` | ``"cg"``; cg_iters, cg_tol: CG budget per step (default
            None: sized from κ per step, :func:`cg_budget`) and relative tolerance (default 1e-10
            float64, 1e-5 float32).
        generator: the only randomness (x_T, the chain, e₁, e₂); progress, callback
            (``callback(i, t, x_s, None)``), spacing, timesteps, x_T, backend: as ``ddim``.
        last_step: ``"mean"`` (default): the last step (ᾱ_s = 1) returns its posterior's mean, as DDPM's
            last step adds no noise; ``"sample"``: a draw from it (module docstring).
        return_info: also return {"residual": (N, B) ‖A x_s − y‖, and with CG "cg_iterations",
            "cg_residual", "cg_converged" (N, B), "timesteps": (N,)}.
    Returns:
        x (B, C, H, W), or (x, info).
    """
    sigma = _check_sigma(sigma)
    if coupling not in COUPLINGS:
        raise ValueError(f"coupling must be one of {COUPLINGS}, got {coupling!r}")
    if chain not in CHAINS:
        raise ValueError(f"chain must be one of {CHAINS}, got {chain!r}")
    if last_step not in LAST_STEPS:
        raise ValueError(f"last_step must be one of {LAST_STEPS}, got {last_step!r}")
    eta = check_number("eta", eta, 0.0, 1.0)
    if coupling == "reverse" and eta == 0:
        raise ValueError("eta must be > 0 for coupling='reverse' (its prior precision is 1/σ_η²)")
    if cg_iters is not None and (isinstance(cg_iters, bool) or not isinstance(cg_iters, int) or cg_iters < 1):
        raise ValueError(f"cg_iters must be None (budget from κ) or a positive int, got {cg_iters!r}")
    if cg_tol is not None:
        check_number("cg_tol", cg_tol, 0.0)
    shape = check_problem(operator, y, x_T)
    method = _choose_method(solver, operator)
    loop = prepare(denoiser, shape, steps=steps, spacing=spacing, timesteps=timesteps, generator=generator,
                   callback=callback, progress=progress, x_T=x_T, dtype=y.dtype, device=y.device, name="cdps")
    if any(a_s <= a_t for a_t, a_s in zip(loop.alpha_t, loop.alpha_s)):
        raise ValueError("C-DPS needs ᾱ to increase strictly at every step; the schedule ends on a repeated ᾱ "
                         "(final_alpha_cumprod equal to ᾱ of the last timestep)")
    diag = operator.diagonal().to(device=y.device, dtype=y.dtype) if method == "diagonal" else None
    if chain in ("markov", "fresh"):
        measurements = MeasurementChain(y, chain, loop.alpha_t[0], generator)
    elif chain == "operator":  # the Markov chain in image space, seen through A
        measurements = MeasurementChain(loop.x, "markov", loop.alpha_t[0], generator)
    else:
        measurements = None
    gram = gram_bound(operator, shape[-2:])
    _check_solvable(sigma, y.dtype, method, gram,
                    [precisions(coupling, eta, a_t, a_s, sigma, chain, gram) for a_t, a_s in zip(loop.alpha_t, loop.alpha_s)])
    info = Diagnostics(return_info)
    converged = torch.ones(shape[0], dtype=torch.bool, device=y.device)
    worst = torch.zeros(shape[0], dtype=y.dtype, device=y.device)
    tol = _default_tol(y.dtype) if cg_tol is None else cg_tol
    most = cg_iters or 0  # the largest CG budget of a step (host int)
    x = loop.x
    with torch.no_grad():
        for i in loop.steps():
            a_t, a_s = loop.alpha_t[i], loop.alpha_s[i]
            eps = loop.eps(x, i)
            u = None if measurements is None else measurements.next(a_t, a_s)
            if u is not None and chain == "operator":
                u = operator.A(u)
            y_s = math.sqrt(a_s) * y if u is None else math.sqrt(a_s) * y + u
            e1 = _draw(shape, generator, y.dtype, y.device)
            e2 = _draw(tuple(y.shape), generator, y.dtype, y.device)
            if a_s >= 1 and last_step == "mean":  # DDPM's last step adds no noise either
                e1 = e2 = None
            budget = cg_iters
            if method == "cg" and budget is None:
                budget = cg_budget(operator, shape[-2:], *precisions(coupling, eta, a_t, a_s, sigma, chain, gram), tol)
                most = max(most, budget)
            x, sinfo = cdps_step(operator, x, eps, y_s, a_t, a_s, sigma=sigma, e1=e1, e2=e2, coupling=coupling,
                                 eta=eta, chain=chain, method=method, diag=diag, cg_iters=budget, cg_tol=cg_tol,
                                 want_info=method == "cg", backend=backend)
            if sinfo is not None:
                converged &= sinfo.converged
                worst = torch.maximum(worst, sinfo.residual)
                info.add("cg_iterations", sinfo.iterations)
                info.add("cg_residual", sinfo.residual)
                info.add("cg_converged", sinfo.converged)
            if return_info:
                info.add("residual", (operator.A(x) - y).flatten(1).norm(dim=1))
            if loop.callback is not None:
                loop.record(i, x, None)
    x = loop.finish(x)
    if method == "cg" and not bool(converged.all()):  # one sync, after the loop
        warnings.warn(CGNotConvergedWarning(
            f"cdps: CG did not reach tol at some steps for {int((~converged).sum())} of {shape[0]} samples "
            f"(worst relative residual {float(worst.max()):.2e} after cg_iters={most}"
            f"{'' if cg_iters else ', the largest budget sized from κ'}); raise cg_iters or use an operator with an "
            "exact solve"), stacklevel=2)
    if return_info:
        return x, info.stacked(timesteps=loop.schedule.timesteps.clone())
    return x
