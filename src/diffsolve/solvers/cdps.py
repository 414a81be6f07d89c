"""C-DPS: coupled data- and measurement-space diffusion posterior sampling (Hamidi, Yang & Liang 2025,
"Coupled data and measurement space dynamics for enhanced diffusion posterior sampling").
Conventions: DESIGN.md §4; measurements behind the defaults and the rejected variants:
benchmarks/results/cdps-design.md, posterior.md, quality_heldout.md.

**Per-step posterior** (t → s), x (B, C, H, W), y (B, ...). The prior transition N(m, c⁻¹ I) is combined
with a coupling y_s | x_s ~ N(A x_s + b_s, Σ_s I), b_s = (1−ᾱ_s) A ŝ, ŝ = −ε̂/√(1−ᾱ_t):

    Λ = c I + w AᵀA (w = 1/Σ_s),   x_s = Λ⁻¹(c m + w Aᵀ(y_s − b_s) + √c e₁ + √w Aᵀe₂),  e₁, e₂ ~ N(0, I)

(perturb-then-solve: one solve of the summed right-hand side).

- ``coupling="reverse"`` (default): m = DDIM mean √ᾱ_s x̂0 + √(1−ᾱ_s−σ_η²) ε̂, c = 1/σ_η². At the last step
  (ᾱ_s = 1) ``last_step="denoise"`` (default) returns Tweedie's x̂0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t, as DDIM and
  DDPM do: y is already in x_t. ``"mean"`` combines N(x̂0, (1−ᾱ_t)/ᾱ_t) with y once more and returns that
  posterior's mean, ``"sample"`` draws from it. (1−ᾱ_t)/ᾱ_t only bounds Cov[x0 | x_t] from above, so "mean"
  over-trusts y: on inpainting it keeps most of y's noise on the observed pixels (measured:
  benchmarks/results/cdps-truncated.md).
  ``coupling="forward"`` (the paper's literal reading): m = x_t/√α_{t|s}, c = α_{t|s}/β_{t|s}.
- ``chain``: what y_s is and Σ_s. ``"none"`` (default): y_s = √ᾱ_s y, Σ_s = max(ᾱ_s σ², ‖AᵀA‖/((κ_max−1) c))
  (the floor caps κ(Λ) at :data:`KAPPA_MAX` where the operator bounds ‖AᵀA‖, except at the last step);
  ``"operator"``: y_s = √ᾱ_s y + A u_s with u a Markov chain in image space; ``"markov"`` (the talk's):
  y_s = √ᾱ_s y + u_s, u ~ N(0, (1−ᾱ_s) I) along one chain, Σ_s = ᾱ_s σ² + 1 − ᾱ_s; ``"fresh"``: u_s
  drawn independently per step.
- ``solver``: ``"auto"`` — the fused elementwise kernel where the operator declares
  ``structure == "diagonal"``; otherwise every step but the last by truncated CG (below) and the last by the
  operator's exact solve where it has one, else by CG; ``"exact"``: every step by the exact solve;
  ``"cg"`` / :class:`CG`: batched CG. CG, every step but the last: the correction δ = x_s − m from
  k_N = ⌈:data:`RUN_CG_ITERS`/N⌉ plain CG iterations (``step_iters``, "auto") started at δ = 0
  (``CG(start="prior")``: at the prior transition's draw e₁/√c, which leaves the directions the truncation
  does not reach at the prior's spread instead of at none), i.e. Λ δ = √c e₁ + w Aᵀ(y_s − b_s − A m + e₂/√w)
  solved in the Krylov space of degree k_N (one A, one Aᵀ and k_N AᵀA products a step; a run's CG work is
  ~90 AᵀA products for N ≤ 90: the step-count rule). Truncated, not converged, on purpose: the coupling's
  Σ_s leaves out the prior's own uncertainty (1−ᾱ_s) A Cov[ε | x_s] Aᵀ, so the converged (or exact) step
  over-weights y, more so as N grows (photos and the exact prior, N = 10…100, 64²–256², for motion blur,
  Gaussian blur and SR ×4, and the cost: benchmarks/results/cdps-truncated.md). Past ~100 steps the one
  iteration every step still takes adds up the same way, and results get worse with N: run C-DPS at
  N ≤ 100 (benchmarks/results/cdps-steps.md). A last step that solves
  (``last_step`` "mean" or "sample") is solved to ``tol`` from m with the operator's preconditioner and a
  budget sized on the host (:func:`cg_budget`; no host sync in the loop; non-convergence reported once at
  the end, :class:`CGNotConvergedWarning`, and per step in ``return_info``); ``CG(step_iters=None)`` solves
  every step that way, ``CG(iters=k)`` gives every step k iterations.

The per-step coefficients (k_x, k_e, c, w, CG budget) are planned once before the loop (:func:`plan`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from ..kernels import diagonal_posterior_step
from ..kernels._checks import plain_number
from ..kernels.cg import batched_cg, cg_iteration_bound
from ..operators.base import SolveInfo, _default_tol
from ._inverse import (Diagnostics, check_problem, check_sigma, discrepancy_pull, finish_run, range_svd, residual_norm,
                       route, spectral_step)
from ._loop import Sampling, _draw, check_flag, check_number, prepare, takes_sampling

__all__ = ["CHAINS", "LAST_STEPS", "COUPLINGS", "CG_DEFAULT_ITERS", "CG_STARTS", "CG_MAX_ITERS", "RUN_CG_ITERS",
           "SOLVERS", "CG", "CGNotConvergedWarning", "KAPPA_MAX", "MeasurementChain", "StepPlan", "cdps", "cdps_step",
           "cg_budget", "coupling_variance", "gram_bound", "plan", "precisions", "transition"]

COUPLINGS = ("reverse", "forward")
CHAINS = ("none", "operator", "markov", "fresh")
SOLVERS = ("auto", "exact", "cg")
LAST_STEPS = ("denoise", "mean", "sample")
#: CG budget per step where the operator gives no bound on ‖AᵀA‖ (``gram_norm_bound`` is None).
CG_DEFAULT_ITERS = 100
#: Cap on the κ-sized CG budget of one step.
CG_MAX_ITERS = 1000
#: CG iterations of a whole run's steps before the last: k_N = ⌈RUN_CG_ITERS/N⌉ each (module docstring).
RUN_CG_ITERS = 90
#: where a truncated step's CG starts (:class:`CG` ``start``)
CG_STARTS = ("zero", "prior")


@dataclass(frozen=True)
class CG:
    """``solver=CG(iters, tol, step_iters)``: batched CG with its budget, checked when built (module docstring).
    ``step_iters``: plain CG iterations of every step before the last (truncated, from δ = 0): ``"auto"``
    ⌈RUN_CG_ITERS/N⌉ for N steps, an int, or None: those steps are solved to ``tol`` like the last;
    ``iters``: the budget of the steps solved to ``tol`` (None: sized per step, :func:`cg_budget`), or, given,
    of every step (``step_iters`` then unused); ``tol``: relative residual (None: 1e-5 float32, 1e-10
    float64); ``start``: where a truncated step's CG starts, ``"zero"`` (δ₀ = 0, the better point estimate)
    or ``"prior"`` (δ₀ = e₁/√c, the prior transition's own draw: the truncation then leaves the directions
    CG has not reached at the prior's variance instead of at zero: a spread nearer the posterior's, a
    point estimate further from its mean; same cost per step). ``solver="cg"`` is ``CG()``."""

    iters: int | None = None
    tol: float | None = None
    step_iters: int | str | None = "auto"
    start: str = "zero"

    def __post_init__(self) -> None:
        if self.start not in CG_STARTS:
            raise ValueError(f"start must be one of {CG_STARTS} (where a truncated step's CG starts), got "
                             f"{self.start!r}")
        for name in ("iters", "step_iters"):
            value = plain_number(getattr(self, name))  # a NumPy integer: the int it equals
            if name == "step_iters" and value == "auto":
                continue
            object.__setattr__(self, name, value)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                allowed = "'auto', None or a positive int" if name == "step_iters" else "None or a positive int"
                raise ValueError(f"{name} must be {allowed} (CG iterations), got {value!r}")
        if self.tol is not None and check_number("tol", self.tol, 0.0) == 0:
            raise ValueError("tol must be > 0 (the relative residual CG stops at), got 0; leave it None for the "
                             "dtype's default (1e-5 float32, 1e-10 float64)")

    def steps_before_last(self, steps: int) -> int | None:
        """The CG iterations of each step before the last in an N = ``steps`` run (None: solved to tol)."""
        if self.step_iters == "auto":
            return max(1, math.ceil(RUN_CG_ITERS / steps))
        return self.step_iters


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

    The operator's own count where it sizes its (preconditioned) CG (``operator.cg_iterations``: the blurs'
    circulant preconditioner), else κ ≤ 1 + w·‖AᵀA‖/c with ‖AᵀA‖ ≤ ``operator.gram_norm_bound(size)``
    through :func:`~diffsolve.kernels.cg.cg_iteration_bound` (κ, tol), or CG_DEFAULT_ITERS where the
    operator has no bound; at most CG_MAX_ITERS.
    """
    return _budget(operator, tuple(size), gram_bound(operator, size), c, w, tol)


def _budget(operator: Any, size: tuple[int, int], bound: float | None, c: float, w: float, tol: float) -> int:
    iterations = getattr(operator, "cg_iterations", None)
    count = iterations(size, c, w, tol) if callable(iterations) else None
    if count is not None:
        return min(int(count), CG_MAX_ITERS)
    if bound is None:
        return CG_DEFAULT_ITERS
    return min(cg_iteration_bound(1.0 + w * bound / c, tol), CG_MAX_ITERS)


class StepPlan(NamedTuple):
    """Host floats of one step t → s: prior mean m = k_x x_t + k_e ε̂, y_s − b_s = y_s + k_b Aε̂, prior
    precision c, data weight w = 1/Σ_s, the CG budget (None where no CG runs) and whether that budget is a
    truncation (``CG.step_iters``) rather than sized to the tolerance."""

    k_x: float
    k_e: float
    k_b: float
    c: float
    w: float
    cg_iters: int | None
    truncated: bool = False


def plan(operator: Any, size: tuple[int, int], gram: float | None, alphas: Sequence[tuple[float, float]], *,
         sigma: float, coupling: str, eta: float, chain: str, method: str, cg_iters: int | None,
         tol: float, step_iters: int | None = None) -> list[StepPlan]:
    """The :class:`StepPlan` of every step (ᾱ_t, ᾱ_s) in ``alphas`` for images of ``size``, built once before
    the loop; ``gram`` ≥ ‖AᵀA‖ (:func:`gram_bound`) or None; ``cg_iters``, ``step_iters``: :class:`CG`'s."""
    steps = []
    for a_t, a_s in alphas:
        k_x, k_e, _ = transition(coupling, eta, a_t, a_s)
        c, w = precisions(coupling, eta, a_t, a_s, sigma, chain, gram)
        truncated = method in ("cg", "exact") and cg_iters is None and step_iters is not None and a_s < 1
        if truncated:
            budget = step_iters
        elif method != "cg" or cg_iters is not None:
            budget = cg_iters
        else:
            budget = _budget(operator, size, gram, c, w, tol)
        steps.append(StepPlan(k_x, k_e, (1 - a_s) / math.sqrt(1 - a_t), c, w, budget, truncated))
    return steps


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
    tol = _default_tol(x_t.dtype) if cg_tol is None else cg_tol
    size = tuple(x_t.shape[-2:])
    (step,) = plan(operator, size, gram_bound(operator, size), [(alpha_t, alpha_s)], sigma=sigma, coupling=coupling,
                   eta=eta, chain=chain, method=method, cg_iters=cg_iters, tol=tol)
    spectral = range_svd(operator, size, "cdps") if method == "exact" else None
    return _posterior_step(operator, step, x_t, eps, y_s, e1, e2, method=method, diag=diag, cg_tol=cg_tol,
                           want_info=want_info, backend=backend, spectral=spectral)


def _posterior_step(operator: Any, step: StepPlan, x_t: torch.Tensor, eps: torch.Tensor, y_s: torch.Tensor,
                    e1: torch.Tensor | None, e2: torch.Tensor | None, *, method: str, diag: torch.Tensor | None,
                    cg_tol: float | None, want_info: bool, backend: str, start: str = "zero",
                    spectral: Any = None) -> tuple[torch.Tensor, Any]:
    """x_s = Λ⁻¹(c m + w Aᵀ(y_s − b_s) + √c e₁ + √w Aᵀe₂) for one planned step (no host sync); ``start``:
    where a truncated step's CG starts (:class:`CG`); ``spectral``: A's range SVD (``_inverse.range_svd``) for an
    exact step, x_s = m' + V diag(w s/(c + w s²)) Uᵀ(t' − A m') with m' = m + e₁/√c, t' = y_s − b_s + e₂/√w
    (``_inverse.spectral_step``: a solve of that right-hand side divides its rounding on A's null space by c, which
    a small σ, w = 1/σ², makes NaN in float32)."""
    c, w = step.c, step.w
    mean = step.k_x * x_t + step.k_e * eps
    if method == "diagonal":
        target = y_s + step.k_b * operator.A(eps)  # y_s − b_s
        noise = None if e1 is None else (e1, e2)
        return diagonal_posterior_step(mean, c, diag, target, w, noise=noise, backend=backend, check=False), None
    if step.truncated:  # Λ δ = √c e₁ + w Aᵀ(y_s − b_s − A m + e₂/√w), x_s = m + δ (module docstring)
        if e1 is not None and start == "prior":  # δ₀ = e₁/√c, the prior's draw: the residual is in range(Aᵀ)
            mean = mean + e1 / math.sqrt(c)
        data = y_s + operator.A(step.k_b * eps - mean)
        if e1 is None:
            rhs = w * operator.A_adjoint(data)
        elif start == "prior":
            rhs = w * operator.A_adjoint(data + e2 / math.sqrt(w))
        else:
            rhs = math.sqrt(c) * e1 + w * operator.A_adjoint(data + e2 / math.sqrt(w))
        gram = getattr(operator, "gram", None) or (lambda v: operator.A_adjoint(operator.A(v)))
        tol = _default_tol(x_t.dtype) if cg_tol is None else cg_tol
        # the system scaled by a power of two k ≈ max(c, w): the same iterates bit for bit, with inner products that
        # stay in float32's range at w = 1/σ²
        k = 2.0 ** math.frexp(max(c, w))[1]
        out = batched_cg(gram, rhs / k, c / k, w / k, max_iters=step.cg_iters, tol=tol, backend=backend,
                         true_residual=False)
        info = SolveInfo("cg", out.iterations, out.residual, out.converged) if want_info else None
        return mean + out.x, info
    target = y_s + step.k_b * operator.A(eps)  # y_s − b_s
    if spectral is not None and method == "exact":
        if e1 is not None:
            mean, target = mean + e1 / math.sqrt(c), target + e2 / math.sqrt(w)
        x_s = mean + spectral_step(spectral, operator, mean, target, c, w)
        if not want_info:
            return x_s, None
        rhs = c * mean + w * operator.A_adjoint(target)  # the system it solves, for the residual's report
        lhs = c * x_s + w * operator.A_adjoint(operator.A(x_s))
        scale = rhs.flatten(1).norm(dim=1).clamp_min(torch.finfo(rhs.dtype).tiny)
        residual = (lhs - rhs).flatten(1).norm(dim=1) / scale
        tol = _default_tol(x_t.dtype) if cg_tol is None else cg_tol
        return x_s, SolveInfo("exact", torch.zeros_like(residual, dtype=torch.int64), residual, residual <= tol)
    if e1 is None:
        rhs = c * mean + w * operator.A_adjoint(target)
    else:  # c m + √c e₁ + w Aᵀ(t + e₂/√w)
        rhs = c * mean + math.sqrt(c) * e1 + w * operator.A_adjoint(target + e2 / math.sqrt(w))
    solve = getattr(operator, "solve_unchecked", operator.solve)  # values built here: no checks, no sync
    out = solve(rhs, c, w, method=method, tol=cg_tol, max_iters=step.cg_iters or CG_DEFAULT_ITERS, x0=mean,
                return_info=want_info)
    return out if want_info else (out, None)


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


def _choose_method(solver: str | CG, operator: Any) -> str:
    if isinstance(solver, CG):
        solver = "cg"
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


@takes_sampling
def cdps(denoiser: Any, operator: Any, y: torch.Tensor, sampling: Sampling, *, sigma: float,
         coupling: str = "reverse", chain: str = "none", eta: float = 1.0, solver: str | CG = "auto",
         last_step: str = "denoise", discrepancy: bool = True) -> Any:
    """Sample p(x | y) for y = A x + n, n ~ N(0, σ² I) with N = ``sampling.steps`` C-DPS steps (module docstring).

    Args:
        denoiser: ``denoiser(x, t) -> eps`` with ``alphas_cumprod`` (no backward pass is taken).
        operator: a linear operator with ``A``, ``A_adjoint``, ``solve`` (``diffsolve.operators``).
        y: measurement (B, ...), float32/float64; one sample per measurement.
        sampling: the shared options (:class:`~diffsolve.solvers.Sampling`; or pass them as keywords);
            the generator also draws the chain and e₁, e₂; the callback gets x̂0 = None.
        sigma: σ > 0, the noise std in [-1, 1] units (or a ``GaussianNoise``).
        coupling: ``"reverse"`` | ``"forward"``; chain: ``"none"`` | ``"operator"`` | ``"markov"`` | ``"fresh"``.
        eta: η ∈ (0, 1] of the reverse kernel (ignored by the forward coupling).
        solver: ``"auto"`` | ``"exact"`` | ``"cg"`` | :class:`CG` ``(iters, tol, step_iters)`` (CG with its budget).
        last_step: ``"denoise"`` (default) returns Tweedie's x̂0 of the last step, as DDIM/DDPM do; ``"mean"`` that
            step's posterior mean with y; ``"sample"`` a draw from it (module docstring).
        discrepancy: end with a residual y's noise explains (``_inverse.discrepancy_pull``; not with
            ``last_step="sample"``, a draw); False: the paper's result.
    Returns:
        x (B, C, H, W), or (x, info) with ``return_info``: {"residual": (N, B) ‖A x_s − y‖, with CG
        "cg_iterations", "cg_residual", "cg_converged" (N, B) (a truncated step's residual is the recursion's,
        relative to its correction's right-hand side), "timesteps": (N,), "final_residual" (B,)
        ‖A x − y‖/√m and "data_consistency" (B,) that over σ}.
    """
    sigma = check_sigma(sigma)
    if coupling not in COUPLINGS:
        raise ValueError(f"coupling must be one of {COUPLINGS}, got {coupling!r}")
    if chain not in CHAINS:
        raise ValueError(f"chain must be one of {CHAINS}, got {chain!r}")
    if last_step not in LAST_STEPS:
        raise ValueError(f"last_step must be one of {LAST_STEPS}, got {last_step!r}")
    eta = check_number("eta", eta, 0.0, 1.0)
    if coupling == "reverse" and eta == 0:
        raise ValueError("eta must be > 0 for coupling='reverse' (its prior precision is 1/σ_η²)")
    cg = solver if isinstance(solver, CG) else CG()
    discrepancy = check_flag("discrepancy", discrepancy)
    operator = route(operator, sampling.backend)  # before any kernel runs, the shape check's included
    shape = check_problem(operator, y, sampling.x_T)
    method = _choose_method(solver, operator)
    truncate = method == "cg" or (method == "exact" and solver == "auto")  # steps before the last (docstring)
    generator, backend = sampling.generator, sampling.backend
    loop = prepare(denoiser, shape, sampling, like=y, name="cdps")
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
    cg_tol = cg.tol
    tol = _default_tol(y.dtype) if cg_tol is None else cg_tol
    gram = gram_bound(operator, shape[-2:])
    spectral = range_svd(operator, shape[-2:], "cdps") if method == "exact" else None  # exact steps in A's SVD
    steps = plan(operator, tuple(shape[-2:]), gram, list(zip(loop.alpha_t, loop.alpha_s)), sigma=sigma,
                 coupling=coupling, eta=eta, chain=chain, method=method, cg_iters=cg.iters, tol=tol,
                 step_iters=cg.steps_before_last(len(loop.alpha_t)) if truncate else None)
    _check_solvable(sigma, y.dtype, method, gram, [(p.c, p.w) for p in steps])
    info = Diagnostics(sampling.return_info)
    converged = torch.ones(shape[0], dtype=torch.bool, device=y.device)
    worst = torch.zeros(shape[0], dtype=y.dtype, device=y.device)
    x = loop.x
    with torch.no_grad():
        for i in loop.steps():
            a_t, a_s = loop.alpha_t[i], loop.alpha_s[i]
            eps = loop.eps(x, i)  # 1. ε̂ = ε_θ(x_t, t)
            # 2. the measurement at level s: y_s = √ᾱ_s y (+ the chain's u_s)
            u = None if measurements is None else measurements.next(a_t, a_s)
            if u is not None and chain == "operator":
                u = operator.A(u)
            y_s = math.sqrt(a_s) * y if u is None else math.sqrt(a_s) * y + u
            # 3. the perturbations e₁, e₂ (none at a "mean" last step: DDPM's last step adds no noise)
            e1 = _draw(shape, generator, y.dtype, y.device)
            e2 = _draw(tuple(y.shape), generator, y.dtype, y.device)
            if a_s >= 1 and last_step != "sample":
                e1 = e2 = None
            # 4. x_s from the step's Gaussian posterior (diagonal kernel, exact solve or CG); Tweedie's x̂0 at a
            # "denoise" last step
            if a_s >= 1 and last_step == "denoise":
                x, sinfo = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t), None
            else:
                x, sinfo = _posterior_step(operator, steps[i], x, eps, y_s, e1, e2, method=method, diag=diag,
                                           cg_tol=cg_tol, want_info=method == "cg" or steps[i].truncated,
                                           backend=backend, start=cg.start, spectral=spectral)
            # 5. diagnostics, without a host sync (a truncated step is not meant to reach tol)
            if sinfo is not None:
                if not steps[i].truncated:
                    converged &= sinfo.converged
                    worst = torch.maximum(worst, sinfo.residual)
                info.add("cg_iterations", sinfo.iterations)
                info.add("cg_residual", sinfo.residual)
                info.add("cg_converged", sinfo.converged)
            if sampling.return_info:
                info.add("residual", residual_norm(operator, x, y))
            if loop.callback is not None:
                loop.record(i, x, None)
    if discrepancy and last_step != "sample":  # within the noise of y (1 − ᾱ_t of the last model call)
        x = discrepancy_pull(operator, x, y, sigma, 1 - loop.alpha_t[-1])
    result = finish_run("cdps", loop, operator, x, y, sigma, info)  # first: a NaN x raises, not a CG warning
    if method == "cg" and not bool(converged.all()):  # one sync, after the loop
        most = max(p.cg_iters or 0 for p in steps if not p.truncated)
        warnings.warn(CGNotConvergedWarning(
            f"cdps: CG did not reach tol at some steps for {int((~converged).sum())} of {shape[0]} samples "
            f"(worst relative residual {float(worst.max()):.2e} after iters={most}"
            f"{'' if cg.iters else ', the largest budget sized from κ'}); raise the budget with solver=CG(iters=...) "
            "or use an operator with an exact solve"), stacklevel=3)
    return result
