"""DAPS: decoupled annealing posterior sampling (Zhang, Chu, Berner, Meng, Anandkumar & Song, CVPR 2025,
"Improving diffusion inverse problem solving with decoupled noise annealing").

x (B, C, H, W), y (B, ...) = A x + n, n ~ N(0, σ² I). DAPS anneals over N noise levels σ_0 > … > σ_{N−1}
(EDM's ρ = 7 spacing between σ_max = 100 and σ_min = 0.01, each mapped to the nearest timestep of the model's
table, σ(t) = √((1−ᾱ_t)/ᾱ_t), both ends clipped to the table; σ_min is raised in 25 % steps where N distinct
timesteps do not fit above it; ``sampling.sigma_max``/``sigma_min`` move the ends, an explicit
``sampling.spacing``/``timesteps`` replaces the levels). The paper's σ_min = 0.1 (still the default with a
given ``lr``, whose stability it sets) leaves the result with the last level's Langevin noise, std
r_{N−1} = σ_min, in every direction the data does not pin. With VP states
x_i = √ᾱ_i (x0 + σ_i z):

1. x̂0 = x̂0(x_i): the probability-flow ODE from σ_i to 0 in ``ode_steps`` Euler steps over EDM ρ = 7 levels
   σ_i = τ_0 > … > τ_{K−1} ≥ 0.01, then 0 (nearest timesteps). An Euler step of dx^VE/dτ = ε̂ is exactly
   DDIM(η = 0) in VP variables, run by the fused ``ddim_step`` kernel; the last one (to ᾱ = 1) returns x̂0.
   NFE per level = ``ode_steps``.
2. Langevin on x0 for ``langevin_steps`` = K steps, target ∝ exp(−‖x0 − x̂0‖²/(2 r_i²) − ‖y − A x0‖²/(2τ²)),
   r_i = σ_i (the paper's Gaussian p(x0 | x_i)):

       x0 ← x0 − η_i [(x0 − x̂0)/r_i² + Aᵀ(A x0 − y)/τ²] + √(2η_i) z,   z ~ N(0, I),   x0 starts at x̂0,

   Default step (``lr=None``), with τ = κσ, κ = ``LIKELIHOOD_RATIO`` = 1/4, L ≥ ‖AᵀA‖ (the operator's
   ``gram_norm_bound``, else power iteration before the loop; for a mask whose weights differ per sample each
   sample's own, so η_i is per sample and a sample does not depend on its batch):

       η_i = min(f · 2/(1/r_i² + L/τ²),  c · σ_{i+1}²/(2K)),   f = ``LANGEVIN_FRACTION``, c = ``NOISE_BUDGET`` = 1/4

   (σ_N := σ_{N−1} for the last level). The first term is a fixed fraction of the level's stability bound
   (ULA's variance inflation in the stiffest direction ≤ 1/(1 − f)). The second is the noise budget: in a
   direction the target barely constrains (the null space of A, weak blur frequencies) K steps add
   variance ≈ 2Kη_i, which step 3 passes to the next level on top of its σ_{i+1}² — so the ODE there sees
   noise ≤ √(1 + c) σ_{i+1}, not the ≈ √(σ_i² + σ_{i+1}²) of a fully relaxed r_i = σ_i Gaussian. Without
   it the stability term alone lets this variance reach min(r_i², 4fK σ²/L) for r_i above σ/√L: for SR×4
   (L ≈ 1/16) up to 0.8 at σ = 0.05, 16 times a blur's (L ≈ 1), and the excess survives as texture
   (daps-defaults.md, SR×4). τ < σ (the reference code: τ = 0.01 for σ = 0.05 data, κ = 1/5) stiffens the
   data directions by 1/κ², so they relax within the budget; with κ = 1/4 the result's ‖A x̂ − y‖/(σ√m)
   stays ≈ 1. Both terms depend only on the levels σ_i, K, L/σ² and the two ratios κ, c: rescaling A and σ
   together leaves η_i unchanged, no image size enters, and N only through the levels.
   A given ``lr``: τ = σ, η_i = lr·(1 + (i/N)(lr_min_ratio − 1)) (the reference code's linear decay to
   lr·lr_min_ratio; a fixed per-pixel step, so it fits y loosely where L/σ² is small).

   **The K steps in one draw** (``langevin="exact"``, the default where A has an SVD: masks, ×f SR, separable
   and circular blurs; ``diffsolve.operators.svd``). The target is Gaussian, so K steps of the same discrete
   chain are one linear-Gaussian map. In the SVD basis (x̄ = V_rᵀx̂0, ȳ = U_rᵀy, s the singular values) each
   coefficient is an AR(1) chain with curvature p = 1/r_i² + s²/τ² and c = 1 − η_i p; after K steps from x̄:

       v_K − x̄ = (1 − c^K) s (ȳ − s x̄)/(τ² p) + d ζ,   d² = 2(1 − c^{2K}) / (p (2 − η_i p)),   ζ ~ N(0, 1),

   the same distribution as the loop's, not an approximation of it. Every null direction has s = 0 and the
   same d_0, so the update is x0 = x̂0 + d_0 ζ + V_r[(1 − c^K) s (ȳ − s x̄)/(τ² p) + (d − d_0) V_rᵀζ] with ζ one
   image-shaped draw: two V_rᵀ and one V_r per level instead of K products with A and Aᵀ. c^K and 1 − c^K use
   log1p/expm1 (η_i p is tiny in the directions the data does not reach).

   **Without an SVD** (``langevin="chebyshev"``, the default there, e.g. a dense blur with reflect boundaries)
   the same map is written in P = I/r_i² + AᵀA/τ² itself, whose spectrum lies in [1/r_i², 1/r_i² + L/τ²]:

       x0 = x̂0 + f₁(P) Aᵀ(y − A x̂0)/τ² + f₂(P) ζ,   f₁(p) = (1 − c^K)/p,   f₂(p) = d(p)   (c = 1 − η_i p),

   f₁(P)v and f₂(P)ζ each by a Chebyshev series on that interval (``solvers/_chebyshev.py``), truncated where
   its error bound falls to the rounding of its own evaluation (:func:`series_tolerance`: :data:`SERIES_ULPS`
   ulps of the dtype, at least 1e-12; in float32 the full series already rounds at about that level, so terms
   below it buy nothing: benchmarks/results/daps-series.md): both functions are smooth there, so the series is far
   shorter than K (the degree grows with K η_i L/τ², which the default step keeps ≤ 2f·K). Host coefficients,
   one product with A and Aᵀ per degree, no inner products. A level whose two series together would take K
   products or more runs the K steps instead. ``langevin="loop"`` runs the K steps one by one everywhere.
   The three give different draws from one seed.
3. x_{i+1} = √ᾱ_{i+1} x0 + √(1−ᾱ_{i+1}) z (plain torch ops); after the last level the result is x0.

**The discrepancy floor** (diffsolve's, ``discrepancy=True``): τ = σ/4 stiffens the data directions by 16, which at
σ = 0.05 the noise budget balances; where σ is small against the image nothing does, and the last level's x0 fits
y's well-determined directions to about τ, a quarter of its noise. The result is x̂0 + g (x0 − x̂0), x̂0 the last level's ODE estimate and
g ∈ [0, 1] per sample the largest with ‖A(·) − y‖ ≥ σ√(m/2) (``_inverse.discrepancy_weight``: DiffPIR's and RED-diff's
last step; exactly x0 where g = 1); then the pull of a result the noise cannot explain (``_inverse.discrepancy_pull``).

Defaults: 5 ODE steps and 100 Langevin steps per level (the paper's pixel-space DAPS-1K), the step rule
above. Use N ≥ 5 levels: at 2–3 every level's noise budget is set by a next level near σ_min, so its Langevin steps
barely move x0 towards y and the result is close to an unconditional draw (benchmarks/results/daps-levels.md).
Stability, max_i η_i (1/r_i² + L/τ²) < 2, is checked before the loop (it holds for the default rule by
construction). All step sizes are host floats fixed before the loop; every draw comes from
``sampling.generator`` (a list keeps samples independent of their batch); ``noise_source="kernel"`` is not
supported. Results: benchmarks/results/ (daps-defaults.md: the step rule, σ_min and
the noise budget against the old defaults; benchmarks/bench_daps_sr.py; daps-series.md: the series against the loop).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch

from ..kernels import ddim_step
from ..models.denoiser import as_denoiser
from ..operators.svd import SVD, operator_svd
from ._chebyshev import chebyshev_apply, chebyshev_series
from ._inverse import (Diagnostics, check_problem, check_sigma, data_part, discrepancy_floor, discrepancy_pull,
                       discrepancy_weight, finish_run, operator_gain, residual_norm, route, sample_gains)
from ._loop import Sampling, _draw, check_flag, check_int, check_number, check_steps, prepare, takes_sampling

__all__ = ["LANGEVIN_MODES", "daps", "edm_sigmas", "exact_langevin", "langevin_rates", "langevin_series",
           "nearest_timesteps", "series_langevin", "series_tolerance"]

SIGMA_MAX, SIGMA_MIN, ODE_SIGMA_MIN, RHO = 100.0, 0.01, 0.01, 7.0
PAPER_SIGMA_MIN = 0.1  #: the default σ_min with a given ``lr`` (the paper's, which its per-pixel lr is tuned to)
#: the default Langevin step is at most this fraction of the stability bound 2/(1/r_i² + L/τ²) at every level
LANGEVIN_FRACTION = 0.05
#: ... and at most c·σ_{i+1}²/(2K): K steps add variance ≤ c·σ_{i+1}² where the target barely constrains x0
NOISE_BUDGET = 0.25
#: the default Langevin likelihood's std τ = this · σ (the reference code: τ = 0.01 for σ = 0.05 data, 0.2)
LIKELIHOOD_RATIO = 0.25
#: the Chebyshev series stop where their truncation error falls to this many ulps of the dtype (step 2, no SVD)
SERIES_ULPS = 8
#: the ``langevin`` option: the K Langevin steps in one draw through A's SVD or by Chebyshev series, or one by one
LANGEVIN_MODES = ("auto", "exact", "chebyshev", "loop")


def edm_sigmas(sigma_max: float, sigma_min: float, n: int, rho: float = RHO) -> list[float]:
    """n levels (σ_max^{1/ρ} + k/(n−1)(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, k = 0..n−1 (EDM; n = 1: [σ_max])."""
    if n == 1:
        return [sigma_max]
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return [(a + k / (n - 1) * (b - a)) ** rho for k in range(n)]


def langevin_rates(level_sigmas: list[float], gram: float, tau: float, langevin_steps: int) -> list[float]:
    """The default step η_i = min(f·2/(1/σ_i² + L/τ²), c·σ_{i+1}²/(2K)) per level (module docstring, step 2; σ_N :=
    σ_{N−1}); ``level_sigmas`` σ_0 > … > σ_{N−1}, ``gram`` L ≥ ‖AᵀA‖, ``tau`` the likelihood std, K ≥ 0."""
    nxt = list(level_sigmas[1:]) + list(level_sigmas[-1:])
    k = max(langevin_steps, 1)
    return [min(LANGEVIN_FRACTION * 2 / (1 / r**2 + gram / tau**2), NOISE_BUDGET * s**2 / (2 * k))
            for r, s in zip(level_sigmas, nxt)]


def exact_langevin(svd: SVD, s: torch.Tensor, x0_hat: torch.Tensor, y_bar: torch.Tensor, zeta: torch.Tensor,
                   inv_r2: float, tau2: float, rate: float | torch.Tensor, steps: int) -> torch.Tensor:
    """K = ``steps`` Langevin steps of size η = ``rate`` from x̂0 in one draw (module docstring, step 2): x0
    (B, C, H, W) from x̂0 (B, C, H, W), ȳ = U_rᵀy (B, C, *spectral), ζ ~ N(0, I) (B, C, H, W), s broadcastable
    to the coefficients, 1/r² = ``inv_r2``, τ² = ``tau2``, η a host float or one per sample (B, 1, 1, 1);
    ``svd`` the range protocol (``SVD.range()``)."""
    p = inv_r2 + s * s / tau2  # the curvature of each coefficient's Gaussian target
    hp = rate * p  # η p ∈ (0, 2): the loop is stable (checked before the loop)
    log_c = torch.log1p(-torch.where(hp < 1, hp, torch.zeros_like(hp)))  # log c where c = 1 − η p > 0
    c = 1 - hp
    gain = torch.where(hp < 1, -torch.expm1(steps * log_c), 1 - c.pow(steps))  # 1 − c^K
    keep = torch.where(hp < 1, -torch.expm1(2 * steps * log_c), 1 - c.pow(2 * steps))  # 1 − c^{2K}
    d = (2 * keep / (p * (2 - hp))).sqrt()
    hp0 = rate * inv_r2  # a null direction: s = 0
    if torch.is_tensor(hp0):
        log_c0 = torch.log1p(-torch.where(hp0 < 1, hp0, torch.zeros_like(hp0)))
        keep0 = torch.where(hp0 < 1, -torch.expm1(2 * steps * log_c0), 1 - (1 - hp0).pow(2 * steps))
        d0 = (2 * keep0 / (inv_r2 * (2 - hp0))).sqrt()
    else:  # host floats
        d0 = math.sqrt(2 * (-math.expm1(2 * steps * math.log1p(-hp0)) if hp0 < 1 else 1 - (1 - hp0) ** (2 * steps))
                       / (inv_r2 * (2 - hp0)))
    spectral = gain * s / (tau2 * p) * (y_bar - s * svd.Vt(x0_hat)) + (d - d0) * svd.Vt(zeta)
    return x0_hat + d0 * zeta + svd.V(spectral)


def langevin_series(inv_r2: float, tau2: float, rate: float, steps: int, gram: float, tol: float
                    ) -> tuple[np.ndarray, np.ndarray, float, float] | None:
    """(c₁, c₂, lo, hi): Chebyshev coefficients of f₁(p) = (1 − c^K)/p and f₂(p) = d(p) (module docstring, step
    2; c = 1 − ηp) on P's spectrum [lo, hi] = [1/r², 1/r² + L/τ²], each truncated at error ≤ ``tol``·max|f|;
    None where the two together would take ≥ K products with P (run the K steps instead). Host floats."""
    lo, hi = inv_r2, inv_r2 + gram / tau2
    if not hi > lo:  # L = 0 (or below float resolution): nothing for a series to resolve, the loop is exact
        return None

    def one_minus_c_pow(p: np.ndarray, k: int) -> np.ndarray:  # 1 − (1 − ηp)^k, exact for small ηp
        hp = rate * p
        safe = np.minimum(hp, 0.5)
        return np.where(hp < 0.5, -np.expm1(k * np.log1p(-safe)), 1 - (1 - hp) ** k)

    def mean_gain(p: np.ndarray) -> np.ndarray:
        return one_minus_c_pow(p, steps) / p

    def noise_std(p: np.ndarray) -> np.ndarray:
        return np.sqrt(2 * one_minus_c_pow(p, 2 * steps) / (p * (2 - rate * p)))

    c1 = chebyshev_series(mean_gain, lo, hi, tol)
    c2 = chebyshev_series(noise_std, lo, hi, tol)
    if c1 is None or c2 is None or len(c1) + len(c2) - 1 >= steps:  # products: 1 (v) + deg₁ + deg₂
        return None
    return c1, c2, lo, hi


def series_tolerance(dtype: torch.dtype) -> float:
    """Where :func:`langevin_series` truncates for ``dtype``: :data:`SERIES_ULPS` ulps, at least 1e-12."""
    return max(SERIES_ULPS * torch.finfo(dtype).eps, 1e-12)


def series_langevin(operator: Any, x0_hat: torch.Tensor, y: torch.Tensor, zeta: torch.Tensor, inv_r2: float,
                    tau2: float, series: tuple[np.ndarray, np.ndarray, float, float]) -> torch.Tensor:
    """K Langevin steps from x̂0 in one draw without an SVD (module docstring, step 2): x̂0 + f₁(P) Aᵀ(y − A x̂0)/τ²
    + f₂(P) ζ with ``series`` from :func:`langevin_series`; x̂0, ζ (B, C, H, W), y (B, ...)."""
    c1, c2, lo, hi = series

    def precision(u: torch.Tensor) -> torch.Tensor:  # P u = u/r² + AᵀA u/τ²
        return inv_r2 * u + operator.A_adjoint(operator.A(u)) / tau2

    v = operator.A_adjoint(y - operator.A(x0_hat)) / tau2
    return x0_hat + chebyshev_apply(precision, v, c1, lo, hi) + chebyshev_apply(precision, zeta, c2, lo, hi)


def _langevin_svd(operator: Any, size: tuple[int, int], langevin: str) -> SVD | None:
    """The range SVD the exact Langevin update uses, or None for the series or the explicit loop (``langevin``
    option): "auto" takes the series where :func:`operator_svd` finds none (no hook, or a dense blur with
    reflect boundaries)."""
    if langevin in ("loop", "chebyshev"):
        return None
    try:
        return operator_svd(operator, tuple(size), "daps with langevin='exact'").range()
    except ValueError:
        if langevin == "exact":
            raise
        return None


def nearest_timesteps(table_sigmas: torch.Tensor, sigmas: list[float]) -> list[int]:
    """For each σ the training timestep whose σ(t) is nearest in log σ (host, before the loop)."""
    logs = table_sigmas.log()
    return [int((logs - math.log(max(s, 1e-12))).abs().argmin()) for s in sigmas]


def _levels(table_sigmas: torch.Tensor, steps: int, sigma_max: float, sigma_min: float) -> list[int]:
    """N strictly decreasing timesteps nearest the EDM levels (pushed down by one where two coincide)."""
    ts = nearest_timesteps(table_sigmas, edm_sigmas(sigma_max, sigma_min, steps))
    out: list[int] = []
    for t in ts:
        t = min(t, out[-1] - 1) if out else t
        out.append(t)
    if out[-1] < 0:
        raise ValueError(f"steps={steps} annealing levels do not fit between sigma_max={sigma_max:g} and "
                         f"sigma_min={sigma_min:g} on the model's {table_sigmas.numel()} timesteps; use fewer steps")
    return out


def _fits(table_sigmas: torch.Tensor, steps: int, sigma_max: float, sigma_min: float) -> bool:
    """Whether :func:`_levels` finds N distinct timesteps between the ends."""
    try:
        _levels(table_sigmas, steps, sigma_max, sigma_min)
    except ValueError:
        return False
    return True


def _raised_end(table_sigmas: torch.Tensor, steps: int, hi: float, lo: float) -> float:
    """σ_min raised by 25 % steps until ``steps`` distinct levels fit (or until it would pass σ_max)."""
    while lo * 1.25 < hi and not _fits(table_sigmas, steps, hi, lo):
        lo *= 1.25
    return lo


def _most_levels(table_sigmas: torch.Tensor, hi: float, lo: float, raise_end: bool) -> int:
    """The largest N whose levels fit between the ends (bisection; 1 always fits)."""
    def fits(n: int) -> bool:
        return _fits(table_sigmas, n, hi, _raised_end(table_sigmas, n, hi, lo) if raise_end else lo)

    good, bad = 1, table_sigmas.numel() + 1
    while bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if fits(mid) else (good, mid)
    return good


@takes_sampling
def daps(denoiser: Any, operator: Any, y: torch.Tensor, sampling: Sampling, *, sigma: float, ode_steps: int = 5,
         langevin_steps: int = 100, lr: float | None = None, lr_min_ratio: float = 0.01,
         langevin: str = "auto", discrepancy: bool = True) -> Any:
    """Sample p(x | y) for y = A x + n, n ~ N(0, σ² I) with N = ``sampling.steps`` annealing levels (module docstring).

    Args:
        denoiser: ``denoiser(x, t) -> eps`` with ``alphas_cumprod`` (no backward pass is taken).
        operator: a linear operator with ``A``, ``A_adjoint`` (``diffsolve.operators``).
        y: measurement (B, ...), float32/float64; one sample per measurement.
        sampling: the shared options (:class:`~diffsolve.solvers.Sampling`; or pass them as keywords): ``steps``
            is the number of annealing levels N (NFE = N·ode_steps); ``sigma_max``/``sigma_min`` the ends of the
            levels (default 100 and 0.01, 0.1 with a given ``lr``, clipped to the model's table; the default
            σ_min rises where N levels do not fit).
        sigma: σ > 0, the measurement noise std in [-1, 1] units (or a ``GaussianNoise``).
        ode_steps: Euler steps of the probability-flow ODE per level (≥ 1); langevin_steps: Langevin steps per
            level (≥ 0); lr: None (the default rule: τ = σ/4, η_i the smaller of a fraction of each level's
            stability bound and the noise budget) or η_0 > 0, a fixed per-pixel Langevin step size (τ = σ);
            lr_min_ratio: η_{N} / η_0 ∈ (0, 1] (only with a given ``lr``).
        langevin: ``"auto"`` (``"exact"`` where the operator has an SVD, else ``"chebyshev"``), ``"exact"`` (the
            K steps in one draw through A's SVD; ValueError without one), ``"chebyshev"`` (the same draw by
            Chebyshev series in AᵀA, any operator; the K steps where the series would be longer) or ``"loop"``
            (K explicit steps). A mask whose weights differ per sample, at the default step (each sample its own
            η_i), takes "exact" or "loop" only: a series is one per level for the batch (ValueError).
        discrepancy: end with a residual y's noise explains, neither below σ√(m/2) nor beyond the noise (module
            docstring); False: the paper's result.
    Returns:
        x (B, C, H, W), or (x, info) with ``return_info``: {"residual": (N, B) ‖y − A x̂0‖ of each level's ODE
        estimate, "timesteps": (N,), "final_residual": (B,) ‖A x − y‖/√m, "data_consistency": (B,) that over σ}.
    """
    check_steps(sampling.steps)
    sigma = check_sigma(sigma)
    ode_steps = check_int("ode_steps", ode_steps, 1, "Euler steps of each level's probability-flow ODE")
    langevin_steps = check_int("langevin_steps", langevin_steps, 0, "Langevin steps of each level")
    if lr is not None:
        lr = check_number("lr", lr, 0.0)
        if lr == 0:
            raise ValueError("lr must be > 0 (the Langevin step size), got 0")
    lr_min_ratio = check_number("lr_min_ratio", lr_min_ratio, 0.0, 1.0)
    if langevin not in LANGEVIN_MODES:
        raise ValueError(f"langevin must be one of {', '.join(map(repr, LANGEVIN_MODES))}, got {langevin!r}")
    if sampling.noise_source != "generator":
        raise ValueError(f"daps draws its Langevin and re-noising noise from the generator; noise_source="
                         f"{sampling.noise_source!r} is not supported, use noise_source='generator'")
    discrepancy = check_flag("discrepancy", discrepancy)
    operator = route(operator, sampling.backend)  # before the shape check: every A runs on the backend
    shape = check_problem(operator, y, sampling.x_T)
    # 0. the annealing levels, the ODE sub-levels and the step sizes: host numbers, before the loop
    table = torch.as_tensor(as_denoiser(denoiser).alphas_cumprod).detach().to("cpu", torch.float64)
    table_sigmas = ((1 - table) / table).sqrt()
    if sampling.spacing is None and sampling.timesteps is None:
        hi = min(SIGMA_MAX if sampling.sigma_max is None else check_number("sigma_max", sampling.sigma_max, 0.0),
                 float(table_sigmas.max()))
        low_default = SIGMA_MIN if lr is None else PAPER_SIGMA_MIN
        lo = max(low_default if sampling.sigma_min is None else check_number("sigma_min", sampling.sigma_min, 0.0),
                 float(table_sigmas.min()))
        if not lo < hi:
            raise ValueError(f"sigma_min={lo:g} must be below sigma_max={hi:g} (the annealing range)")
        raise_end = sampling.sigma_min is None  # the default end: raised by 25 % steps until N distinct levels fit
        lo_fit = _raised_end(table_sigmas, sampling.steps, hi, lo) if raise_end else lo
        if not _fits(table_sigmas, sampling.steps, hi, lo_fit):
            most = _most_levels(table_sigmas, hi, lo, raise_end)
            raise ValueError(f"steps={sampling.steps} annealing levels do not fit between sigma_max={hi:g} and "
                             f"sigma_min={lo:g} on the model's {table_sigmas.numel()} timesteps (each level needs its "
                             f"own timestep); use steps <= {most} (DAPS-1K is 200 levels of 5 ODE steps)")
        sampling = dataclasses.replace(sampling, timesteps=_levels(table_sigmas, sampling.steps, hi, lo_fit),
                                       sigma_max=None, sigma_min=None)
    loop = prepare(denoiser, shape, sampling, like=y, name="daps")
    n = len(loop.schedule)
    level_sigmas = [math.sqrt((1 - a) / a) for a in loop.alpha_t]
    sub_t: list[list[int]] = []  # per level: the ODE's K timesteps (the first is the level's own)
    for i, s_i in enumerate(level_sigmas):
        ts = [int(loop.schedule.timesteps[i])]
        if ode_steps > 1:
            rest = nearest_timesteps(table_sigmas, edm_sigmas(s_i, min(ODE_SIGMA_MIN, s_i), ode_steps)[1:])
            for t in rest:
                ts.append(min(t, ts[-1]))
        sub_t.append(ts)
    sub_alpha = [[float(table[t]) for t in ts] + [1.0] for ts in sub_t]
    device = y.device
    sub_t_dev = torch.tensor(sub_t, dtype=torch.int64, device=device)  # (N, K)
    gram = operator_gain(operator, y.new_zeros(shape[1:]).unsqueeze(0))  # L >= ||A^T A|| (host float), every sample
    # a mask whose weights differ per sample: each sample's own L_b >= ||A_b^T A_b|| sets its own default steps
    diagonal = getattr(operator, "structure", None) == "diagonal" and lr is None and langevin_steps > 0
    gains = sample_gains(operator, y.new_zeros(shape)) if diagonal else None
    own_gains = gains is not None and bool((gains != gains[0]).any())
    tau = sigma * (LIKELIHOOD_RATIO if lr is None else 1.0)  # the Langevin likelihood's std
    stiff = [1 / r**2 + gram / tau**2 for r in level_sigmas]  # the largest curvature of each level's target
    per_sample: list[Any] = [None] * len(level_sigmas)  # per level: (B, 1, 1, 1) steps where the samples' L differ
    if lr is None:  # the default rule: a fraction of the stability bound, capped by the noise budget
        rates = langevin_rates(level_sigmas, gram, tau, langevin_steps)
        if own_gains:
            own = [langevin_rates(level_sigmas, g, tau, langevin_steps) for g in gains.tolist()]
            per_sample = [torch.tensor(level, dtype=y.dtype).view(-1, 1, 1, 1).to(y.device) for level in zip(*own)]
    else:
        rates = [lr * (1 + i / n * (lr_min_ratio - 1)) for i in range(n)]
    worst = max(rate * c for rate, c in zip(rates, stiff))
    if langevin_steps > 0 and worst >= 2:
        raise ValueError(f"lr={lr:g} makes the Langevin steps unstable (η·(1/r² + ‖AᵀA‖/σ²) = {worst:.3g} >= 2 with "
                         f"sigma={sigma:g}); use lr < {2 * lr / worst:.3g} or a larger sigma")
    svd = _langevin_svd(operator, shape[-2:], langevin)  # None: the series or the explicit loop
    if own_gains and svd is None and langevin != "loop":
        other = " or 'exact'" if _langevin_svd(operator, shape[-2:], "auto") is not None else ""
        raise ValueError(f"langevin={langevin!r} runs the Chebyshev series here, one per level for the whole batch, "
                         "but this mask's weights differ per sample (L per sample: "
                         f"{[round(g, 4) for g in gains.tolist()]}), so each sample needs its own step; use "
                         f"langevin='loop'{other}")
    if svd is not None:
        s_dev, y_bar = svd.singulars(y), svd.Ut(y)  # s and U_rᵀy, once
    series: list[Any] = [None] * n  # per level: the Chebyshev series, or None (the K steps one by one)
    if svd is None and langevin != "loop" and langevin_steps > 0:
        tol = series_tolerance(y.dtype)
        series = [langevin_series(1 / r**2, tau**2, rate, langevin_steps, gram, tol)
                  for r, rate in zip(level_sigmas, rates)]
    generator, backend = sampling.generator, sampling.backend
    floor = discrepancy_floor(operator, y, sigma) if discrepancy else None  # κmσ² per sample
    info = Diagnostics(sampling.return_info)
    x = loop.x
    with torch.no_grad():
        for i in loop.steps():
            # 1. x̂0 by the PF-ODE: ode_steps Euler (= DDIM η = 0) steps down to ᾱ = 1
            z = x
            for k in range(ode_steps):
                eps = loop.eps(z, i) if k == 0 else loop.eps_at(z, sub_t_dev[i, k].expand(shape[0]))
                z = ddim_step(z, eps, sub_alpha[i][k], sub_alpha[i][k + 1], eta=0.0, backend=backend, check=False)
            x0_hat = z
            if sampling.return_info:
                info.add("residual", residual_norm(operator, x0_hat, y))
            # 2. Langevin on x0 around x̂0 with the likelihood: per-pixel step η_i, noise √(2η_i) z
            rate, inv_r2 = rates[i] if per_sample[i] is None else per_sample[i], 1 / level_sigmas[i] ** 2
            x0 = x0_hat
            if svd is not None and langevin_steps > 0:  # the K steps in one draw (module docstring)
                zeta = _draw(shape, generator, y.dtype, device)
                x0 = exact_langevin(svd, s_dev, x0_hat, y_bar, zeta, inv_r2, tau**2, rate, langevin_steps)
            elif series[i] is not None:  # the same draw by Chebyshev series in P
                zeta = _draw(shape, generator, y.dtype, device)
                x0 = series_langevin(operator, x0_hat, y, zeta, inv_r2, tau**2, series[i])
            for _ in range(langevin_steps if svd is None and series[i] is None else 0):
                grad = (x0 - x0_hat) * inv_r2 + operator.A_adjoint(operator.A(x0) - y) / tau**2
                noise_scale = (2 * rate).sqrt() if torch.is_tensor(rate) else math.sqrt(2 * rate)
                x0 = x0 - rate * grad + noise_scale * _draw(shape, generator, y.dtype, device)
            # 3. re-noise to the next level (none after the last: the result is x0)
            a_next = loop.alpha_s[i] if i + 1 < n else 1.0
            if i + 1 < n:
                x = math.sqrt(a_next) * x0 + math.sqrt(1 - a_next) * _draw(shape, generator, y.dtype, device)
            elif discrepancy:  # the floor towards the last x̂0 (module docstring): exactly x0 where g = 1
                g = discrepancy_weight(data_part(operator, y - operator.A(x0_hat)),
                                       data_part(operator, operator.A(x0 - x0_hat)), floor)
                x = x0 - (1 - g).view(-1, *([1] * (x0.dim() - 1))) * (x0 - x0_hat)
            else:
                x = x0
            if loop.callback is not None:
                loop.record(i, x, x0)
    if discrepancy:  # within the noise of y (1 − ᾱ_t of the last model call)
        x = discrepancy_pull(operator, x, y, sigma, 1 - loop.alpha_t[-1])
    return finish_run("daps", loop, operator, x, y, sigma, info)  # one sync, after the loop
