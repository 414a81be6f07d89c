"""DDRM: denoising diffusion restoration models (Kawar, Elad, Ermon & Song 2022, NeurIPS), in the spectral
space of A = U S Vᵀ (``diffsolve.operators.svd``: the operator declares ``svd(size)``).

Notation: x (B, C, H, W), y (B, ...) = A x + n, n ~ N(0, σ_y² I). The SVD maps an image to coefficients
x̄ = Vᵀx (B, C, *spectral) and the measurement to ȳ_i = (Uᵀy)_i / s_i (s_i > 0; ȳ_i = 0 where s_i = 0), whose
noise std is σ_y/s_i. The VP model is used in DDRM's variance-exploding variables: x^VE = x/√ᾱ,
σ_t = √((1−ᾱ_t)/ᾱ_t), x̂0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t, so (x^VE_t − x̂0)/σ_t = ε̂.

**Initialisation** (paper Eq. 7 at t = T), with ε̄ = Vᵀ x_T (x_T the shared standard-normal start):

    x̄_T,i = ȳ_i + √(σ_T² − σ_y²/s_i²) ε̄_i   where s_i σ_T > σ_y,      σ_T ε̄_i elsewhere,
    x_T ← √ᾱ_T V x̄_T.

**Step t → s** (paper Eq. 8; σ = σ_s the next level), x̄θ = Vᵀx̂0, ê = Vᵀε̂, z̄ = Vᵀz, z ~ N(0, I) in image space:

    s_i = 0:                x̄_s,i = x̄θ_i + √(1−η²) σ ê_i + η σ z̄_i                       (DDIM-like)
    s_i > 0, σ < σ_y/s_i:   x̄_s,i = x̄θ_i + √(1−η²) σ (ȳ_i − x̄θ_i) s_i/σ_y + η σ z̄_i
    s_i > 0, σ ≥ σ_y/s_i:   x̄_s,i = (1−η_b) x̄θ_i + η_b ȳ_i + √(σ² − η_b² σ_y²/s_i²) z̄_i
    x_s = √ᾱ_s V x̄_s.

Each case is a per-coefficient affine map x̄_s = a x̄θ + b ȳ + c ê + d z̄ whose (a, b, c, d) depend only on
(s, σ, σ_y, η, η_b): they are built before the loop, once per step. Every null direction (s_i = 0) takes the
same (1, 0, √(1−η²)σ, ησ), so that part is applied in image space and only the range V_r of the SVD
(``SVD.range()``: every s > 0; for ×4 SR one coefficient in 16) goes through the transforms. Where V mixes pixels
(``SVD.mixes``: not a mask's identity basis) V_rᵀx is carried from step to step (each step's x_s is built from
coefficients already known), so a step takes three transforms, ê = V_rᵀε̂, z̄ = V_rᵀz and V_r back
(x̄θ = (V_rᵀx_t − √(1−ᾱ_t) ê)/√ᾱ_t), instead of four. Where V is moreover a real orthogonal basis of the whole
image (``SVD.complete``: a separable blur's) there is no null part: the step is Eq. 8 itself on every coefficient,
z̄ ~ N(0, I) is drawn directly as coefficients (z = V z̄ has the same law), and x_s = √ᾱ_s V x̄_s: one Vᵀ (of ε̂)
and one V a step. With σ_y = 0 and η_b = 1 every observed coefficient equals ȳ at every step (y is reproduced on
the observed directions: those the cutoff below keeps). At the last step (ᾱ_s = 1, σ = 0) no noise is drawn and
the result is x̂0 with the observed coefficients set by the cases above.

The result is held to the discrepancy principle (``_inverse.discrepancy_pull``; ``discrepancy=False``: the paper's
result).

**Negligible singular values** (the reference code's, ``functions/svd_replacement.py``: ``ZERO = 3e-2``): where A is
separable (A x = M_h x M_wᵀ: a separable blur, bicubic down-sampling) a direction whose per-axis singular value is
below ``singular_cutoff`` (default :data:`~diffsolve.solvers._inverse.SINGULAR_CUTOFF`, 3e-2) times its axis's
largest counts as unobserved (s_i = 0 above): scale-free, and the code's absolute 3e-2 for a normalised kernel
(largest 1). Without it a blur's many near-zero s_i (ȳ_i noise std σ_y/s_i far above the image's scale) take the
σ < σ_y/s_i case at every step, whose draws barely spread there. ``singular_cutoff=0`` runs Eq. 8 on every s_i > 0.

Defaults: η = 0.85, η_b = 1 (the paper's, §5); the paper runs 20 steps. More do not always help: on the exact
priors the Gaussian blur's gap to the posterior mean grows between N = 100 and 1000
(results/methods_posterior.md). The loop uses plain torch ops (the SVD's matmuls / FFTs and elementwise
maps): no fused step kernel fits a per-coefficient mixture in the spectral space. The noise z is drawn in
image space from ``sampling.generator`` and mapped by Vᵀ (for complex Fourier coefficients this keeps them
Hermitian; drawn as coefficients where ``SVD.complete``), so a list of generators keeps samples independent of
their batch; ``noise_source="kernel"`` is not supported.
Results: benchmarks/results/.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ..operators.svd import SVD, operator_svd
from ._inverse import (SINGULAR_CUTOFF, Diagnostics, check_problem, check_sigma, counted_singulars, discrepancy_pull,
                       finish_run, residual_norm, route)
from ._loop import LoopSetup, Sampling, _draw, check_flag, check_number, check_steps, prepare, takes_sampling

__all__ = ["SINGULAR_CUTOFF", "ddrm", "spectral_sampling"]


def _vp_sigma(alpha: float) -> float:
    return math.sqrt(max(1.0 - alpha, 0.0) / alpha)


def check_cutoff(singular_cutoff: object) -> float:
    """``singular_cutoff`` as a float in [0, 1), or a ValueError/TypeError naming it."""
    value = check_number("singular_cutoff", singular_cutoff, 0.0, 1.0)
    if value == 1:
        raise ValueError("singular_cutoff must be < 1 (1 would count every direction as unobserved); the default is "
                         f"{SINGULAR_CUTOFF}, 0 keeps every singular value")
    return value


def _coefficients(s: torch.Tensor, sigma_next: float, sigma_y: float, eta: float, eta_b: float
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(a, b, c, d) of x̄_s = a x̄θ + b ȳ + c ê + d z̄ per coefficient (module docstring), s's shape."""
    observed = s > 0
    before = observed & (s * sigma_next >= sigma_y)  # σ ≥ σ_y/s_i (noisier than y)
    after = observed & ~before  # σ < σ_y/s_i
    keep = math.sqrt(1 - eta**2) * sigma_next
    k_after = keep * s / sigma_y if sigma_y > 0 else torch.zeros_like(s)
    inv = torch.where(observed, 1 / torch.where(observed, s, 1), 0)  # 1/s_i
    d_before = (sigma_next**2 - (eta_b * sigma_y * inv) ** 2).clamp_min(0).sqrt()
    one, zero = torch.ones_like(s), torch.zeros_like(s)
    a = torch.where(before, 1 - eta_b, torch.where(after, 1 - k_after, one))
    b = torch.where(before, eta_b * one, torch.where(after, k_after, zero))
    c = torch.where(observed, zero, keep * one)
    d = torch.where(before, d_before, eta * sigma_next * one)
    return a, b, c, d


def spectral_sampling(loop: LoopSetup, operator: Any, svd: SVD, y: torch.Tensor, sigma_y: float, eta: float,
                      eta_b: float, *, start: str, info: Diagnostics, discrepancy: bool,
                      plan: Sequence[tuple[str, int]] | None = None, travel_length: int = 0,
                      singular_cutoff: float = SINGULAR_CUTOFF) -> torch.Tensor:
    """The sampling loop of the module docstring on the range ``svd`` = V_r of A's SVD; returns x (B, C, H, W).

    ``start``: ``"eq7"`` (DDRM's initialisation from the standard-normal ``loop.x``) or ``"x_T"`` (start at
    ``loop.x`` itself, as DDNM's code does). ``plan``: the steps to run, ("step", i) and ("back", i) for DDNM's
    time-travel (``ddnm.travel_plan``: re-noise from after step i to before step i − l + 1, l =
    ``travel_length``); None: 0..N−1.
    ``discrepancy``: the result held to the discrepancy principle (σ_y > 0). ``singular_cutoff``: the share of its
    axis's largest below which a per-axis singular value counts as zero (module docstring; 0: none).
    ``info`` receives "residual" per step run when it is enabled. Noise from ``loop.generator`` only.
    """
    shape, generator = tuple(loop.x.shape), loop.generator
    # 0. per-coefficient constants and every step's (a, b, c, d) on the range, before the loop; every null
    #    direction takes (1, 0, c0, d0) = (1, 0, √(1−η²)σ, ησ), applied in image space
    s = counted_singulars(svd, svd.singulars(y), singular_cutoff)  # negligible ones unobserved (module docstring)
    observed = s > 0
    y_bar = svd.Ut(y) * torch.where(observed, 1 / torch.where(observed, s, 1), 0)  # ȳ = S⁺Uᵀy
    sigmas_next = [_vp_sigma(a) for a in loop.alpha_s]
    complete = svd.complete  # V a real orthogonal basis of the whole image: the step lives in the spectral space
    coefs = []  # complete: (a, b, c, d); else their differences from the null directions' and (c0, d0)
    for sn in sigmas_next:
        a, b, c, d = _coefficients(s, sn, sigma_y, eta, eta_b)
        c0, d0 = math.sqrt(1 - eta**2) * sn, eta * sn
        coefs.append((a, b, c, d) if complete else (a - 1, b, c - c0, d - d0, c0, d0))
    carry = svd.mixes  # V_rᵀx carried between steps where a transform costs more than the ops that carry it
    a_T = loop.alpha_t[0]
    if start == "eq7":  # 1. initialisation (Eq. 7): x̄_T = ȳ + √(σ_T² − σ_y²/s²) ε̄ where s σ_T > σ_y, else σ_T ε̄
        sigma_T = _vp_sigma(a_T)
        init = observed & (s * sigma_T > sigma_y)
        spread = (sigma_T**2 - (sigma_y / torch.where(init, s, 1)) ** 2).clamp_min(0).sqrt()
        e_bar = svd.Vt(loop.x)
        moved = torch.where(init, y_bar + (spread - sigma_T) * e_bar, 0)
        x = math.sqrt(a_T) * (sigma_T * loop.x + svd.V(moved))
        x_bar = math.sqrt(a_T) * (sigma_T * e_bar + moved) if carry else None  # V_rᵀ x (V_rᵀ V_r = I)
    else:
        x = loop.x
        x_bar = svd.Vt(x) if carry else None
    need_x0 = not complete or info.enabled or loop.callback is not None  # image-space x̂0 (else reported only)
    with torch.no_grad():
        for kind, i in loop.track([("step", i) for i in range(len(coefs))] if plan is None else plan):
            if kind == "back":  # time-travel: x_hi = √(ᾱ_hi/ᾱ_lo) x_lo + √(1 − ᾱ_hi/ᾱ_lo) z, l steps back
                ratio = loop.alpha_t[i - travel_length + 1] / loop.alpha_s[i]
                z = _draw(shape, generator, y.dtype, y.device)
                x = math.sqrt(ratio) * x + math.sqrt(max(1 - ratio, 0.0)) * z
                x_bar = svd.Vt(x) if carry else None
                continue
            a_t, a_s = loop.alpha_t[i], loop.alpha_s[i]
            eps = loop.eps(x, i)  # 2. ε̂ = ε_θ(x_t, t) and x̂0 (Tweedie), in both spaces
            x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t) if need_x0 else None
            e_bar = svd.Vt(eps) if carry or eta < 1 else None
            x0_bar = (x_bar - math.sqrt(1 - a_t) * e_bar) / math.sqrt(a_t) if carry else svd.Vt(x0)
            if complete:  # 3'. Eq. 8 itself on every coefficient, z̄ ~ N(0, I) drawn as coefficients (z = V z̄ has
                a, b, c, d = coefs[i]  # the same law): one Vᵀ (of ε̂) and one V a step
                x_bar = a * x0_bar + b * y_bar + c * e_bar
                if sigmas_next[i] > 0:
                    x_bar = x_bar + d * _draw(shape, generator, y.dtype, y.device)
                x_bar = math.sqrt(a_s) * x_bar
                x = svd.V(x_bar)
            else:
                # 3. the three cases: x_s/√ᾱ_s = x̂0 + c0 ε̂ + d0 z + V_r(Δa x̄θ + b ȳ + Δc ê + Δd z̄),
                #    Δ: the range coefficients' difference from the null directions' (1, 0, c0, d0);
                #    next_bar: V_rᵀ of the image-space part, so that x̄_s needs no transform either
                da, b, dc, dd, c0, d0 = coefs[i]
                x_next, z_bar, next_bar = x0, da * x0_bar + b * y_bar, x0_bar
                if eta < 1:
                    x_next = x_next + c0 * eps
                    z_bar = z_bar + dc * e_bar
                    next_bar = next_bar + c0 * e_bar if carry else None
                if sigmas_next[i] > 0:  # no noise at σ_s = 0 (host float, no sync)
                    z = _draw(shape, generator, y.dtype, y.device)
                    z_t = svd.Vt(z)
                    x_next = x_next + d0 * z
                    z_bar = z_bar + dd * z_t
                    next_bar = next_bar + d0 * z_t if carry else None
                x = math.sqrt(a_s) * (x_next + svd.V(z_bar))  # 4. back to image space, VP scaling
                x_bar = math.sqrt(a_s) * (next_bar + z_bar) if carry else None
            if info.enabled:
                info.add("residual", residual_norm(operator, x0, y))  # 5. ‖y − A x̂0‖ (B,)
            if loop.callback is not None:
                loop.record(i, x, x0)
        if discrepancy and sigma_y > 0:  # 6. within the noise of y (1 − ᾱ_t of the last model call)
            x = discrepancy_pull(operator, x, y, sigma_y, 1 - loop.alpha_t[-1])
    return x


@takes_sampling
def ddrm(denoiser: Any, operator: Any, y: torch.Tensor, sampling: Sampling, *, sigma: float, eta: float = 0.85,
         eta_b: float = 1.0, singular_cutoff: float = SINGULAR_CUTOFF, discrepancy: bool = True) -> Any:
    """Reconstruct x from y = A x + n, n ~ N(0, σ² I), with N = ``sampling.steps`` DDRM steps (module docstring).

    Args:
        denoiser: ``denoiser(x, t) -> eps`` with ``alphas_cumprod`` (no backward pass is taken).
        operator: a linear operator with an SVD hook ``svd(size)`` (``diffsolve.operators.svd.SUPPORTED``).
        y: measurement (B, ...), float32/float64; one sample per measurement.
        sampling: the shared options (:class:`~diffsolve.solvers.Sampling`; or pass them as keywords); ``x_T``
            is the standard-normal draw the initialisation maps (Eq. 7), not the start itself.
        sigma: σ_y ≥ 0, the measurement noise std in [-1, 1] units (or a ``GaussianNoise``); 0 is noiseless.
        eta: η ∈ [0, 1], the stochasticity of the unobserved and less-noisy-than-y coefficients.
        eta_b: η_b ∈ [0, 1], the weight of ȳ on the coefficients noisier than y.
        singular_cutoff: ∈ [0, 1); a separable A's per-axis singular values below this share of their axis's largest
            count as zero (the reference code's 3e-2, module docstring); 0 keeps every s_i > 0.
        discrepancy: end with a residual y's noise explains (``_inverse.discrepancy_pull``; σ_y > 0); False: the
            paper's result.
    Returns:
        x (B, C, H, W), or (x, info) with ``return_info``: {"residual": (N, B) ‖y − A x̂0‖ per step,
        "timesteps": (N,), "final_residual": (B,) ‖A x − y‖/√m, "data_consistency": (B,) that over σ (σ > 0)}.
    """
    check_steps(sampling.steps)
    sigma_y = check_sigma(sigma, positive=False)
    eta = check_number("eta", eta, 0.0, 1.0)
    eta_b = check_number("eta_b", eta_b, 0.0, 1.0)
    singular_cutoff = check_cutoff(singular_cutoff)
    discrepancy = check_flag("discrepancy", discrepancy)
    if sampling.noise_source != "generator":
        raise ValueError(f"ddrm draws its noise in image space and maps it to A's spectral space; "
                         f"noise_source={sampling.noise_source!r} is not supported, use noise_source='generator'")
    operator = route(operator, sampling.backend)  # before the shape check: every A runs on the backend
    shape = check_problem(operator, y, sampling.x_T)
    svd = operator_svd(operator, shape[-2:], "ddrm").range()  # V_r: every s > 0 (module docstring)
    loop = prepare(denoiser, shape, sampling, like=y, name="ddrm")
    info = Diagnostics(sampling.return_info)
    x = spectral_sampling(loop, operator, svd, y, sigma_y, eta, eta_b, start="eq7", info=info,
                          discrepancy=discrepancy, singular_cutoff=singular_cutoff)
    return finish_run("ddrm", loop, operator, x, y, sigma_y, info)  # one sync, after the loop
