"""DDNM and DDNM+: zero-shot image restoration with the denoising diffusion null-space model (Wang, Yu &
Zhang 2023, ICLR, "Zero-shot image restoration using denoising diffusion null-space model", Algorithms 1-2,
eqs. 13-19), on the shared schedule.

Per step t → s, with x_t (B, C, H, W), y (B, ...), ε̂ = ε_θ(x_t, t), x̂0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t. The
reverse step is the DDPM posterior p(x_s | x_t, x̂0') (the paper's; for skipped steps DDIM with η = 1, the
option ``eta`` generalises it): σ_t² = η² (1−ᾱ_s)/(1−ᾱ_t) (1 − ᾱ_t/ᾱ_s) its variance and
a_t = √ᾱ_s − √(1−ᾱ_s−σ_t²) √(ᾱ_t/(1−ᾱ_t)) the weight of x̂0' in its mean (with x_t held fixed):

    1. x̂0' = x̂0 − λ_t A⁺(A x̂0 − y)                       (range-null-space decomposition, eq. 13 / 17)
       DDNM (σ = 0 or None): λ_t = 1, so A x̂0' = y exactly (A A⁺ A = A).
    2. ε̂' = (x_t − √ᾱ_t x̂0')/√(1−ᾱ_t)
    3. x_s = √ᾱ_s x̂0' + √(1−ᾱ_s−σ_t²) ε̂' + σ_t z           one fused kernel (``diffpir.reproject_step``).

**DDNM+** (σ > 0, eqs. 17-19), per singular value in the spectral space of A = U S Vᵀ
(``diffsolve.operators.svd``; the operator declares ``svd(size)``), x̄ = Vᵀx (B, C, *spectral), ȳ = Uᵀy:

    1. x̄0'_i = x̄0_i − λ_{t,i} (s_i x̄0_i − ȳ_i)/s_i  on the observed coefficients s_i > 2σ; the others are left
       as x̂0 has them (λ = 0, γ = σ_t²: treated as null directions, module note below)
       The correction carries the noise n̄_i/s_i (std σ/s_i) into x_s with weight a_t, so eq. 19 reads
       λ_{t,i} = 1 where σ_t ≥ a_t σ/s_i, else σ_t s_i/(a_t σ)   (the carried noise fits the step's budget σ_t);
    2. as above;
    3. x_s = √ᾱ_s x̂0' + √(1−ᾱ_s−σ_t²) ε̂' + V(√γ_t ⊙ Vᵀz),  γ_{t,i} = σ_t² − (a_t λ_{t,i} σ/s_i)²  (σ_t² where
       s_i = 0): the fresh noise per coefficient tops the carried noise up to the DDPM posterior's σ_t², so no
       coefficient of x_s is noisier than the step allows (γ_{t,i} = 0 wherever λ_{t,i} < 1). z is drawn in
       image space (generator or kernel, ``noise_source``) and mapped by Vᵀ, so a list of generators keeps
       each sample independent of its batch. Where V is a real orthogonal basis of the whole image
       (``SVD.complete``: a separable blur's) the draw is read as the coefficients z̄ themselves (V z̄ has z's law), so
       the noise V(√γ ⊙ z̄) joins the correction's one V: two transforms a step instead of three.
       At the last step (σ_t = 0) λ = 0: x̂0 is returned as denoised.
       Off the observed coefficients (λ = 0, γ = σ_t²) the update is the same everywhere, so only the range V_r
       of the SVD (``SVD.range()``, every s_i > 0) is transformed: V(√γ ⊙ Vᵀz) = σ_t z + V_r((√γ − σ_t) ⊙ V_rᵀz).

Observed coefficients: s_i > :data:`OBSERVED`·σ = 2σ, where the pseudo-inverse's noise σ/s_i is at most half a
unit-size image coefficient (scale-free: s/σ is invariant under A → kA, σ → kσ; the reference code's fixed
truncation at 3e-2 plays the same role). Where s_i ≤ σ the measurement is noise-dominated and eq. 19 would set
λ < 1, γ = 0 at every step: the same noise n̄_i is then injected at every step as if it were fresh, adds up
coherently instead of in quadrature, and x_t leaves the schedule's noise level (a Gaussian blur's thousands of
tiny s_i ruin the sample); as null directions they follow the prior instead. The threshold is also DDNM+'s
regularisation as N grows: finer steps have a larger σ_t/a_t, so λ = 1 on more steps and the observed
coefficients end nearer ȳ_i/s_i with its noise σ/s_i (truncated-SVD-like). With σ as the threshold a Gaussian blur
lost 2.5 dB from N = 20 to the paper's N = 100 on held-out 64² photos; with 2σ it loses 0.9 dB and is 0.8–2.5 dB
better at 64², while a wide blur at 256² (50 steps) is 0.7 dB worse, its coefficients between σ and 2σ still
carrying structure; SR ×4 has none there (benchmarks/results/ddnm-observed.md, methods_photos_*.md).

This is the paper's SVD form, not its simplified per-pixel one: for a blur, A⁺ amplifies the noise by 1/s_min
and a single λ_t would have to be either useless or noise-amplifying. Operators without an SVD raise a
ValueError for σ > 0 (their conditioning is unknown before the loop, so a pinv fallback cannot be shown to
carry the noise unamplified); σ = 0 works with any operator that has a pseudo-inverse.
A⁺ (σ = 0) runs through the operator's own pseudo-inverse (exact where the structure allows, CG otherwise)
without the finiteness check of ``pseudo_inverse`` (no host sync in the loop).

**Time-travel** (§3.3, off by default): with ``travel_length`` = l > 0, after every l-th step the sample is
sent back l steps by the forward process, x_hi = √(ᾱ_hi/ᾱ_lo) x_lo + √(1−ᾱ_hi/ᾱ_lo) z, and those l steps are
redone, ``travel_repeat`` − 1 extra times (the reference code's default l = 1, r = 1 means off).

Defaults: η = 1 (the paper's DDPM posterior; the reference code's "simplified" sampler mixes noise with a
different η convention). Everything is scale-free: A → kA, y → ky, σ → kσ gives the same samples.
Results: benchmarks/results/.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..operators.svd import SVD, operator_svd
from ._inverse import Diagnostics, check_problem, data_part, route, warn_if_unfit
from ._loop import Sampling, _draw, check_int, check_number, prepare, takes_sampling
from .diffpir import check_operator_solves, pinv_unchecked, reproject_step

__all__ = ["ddnm", "ddnm_coefficients", "ddnm_plus_coefficients", "travel_plan"]


def ddnm_coefficients(alpha_bar_t: float, alpha_bar_s: float, eta: float, sigma: float) -> tuple[float, float, float]:
    """(λ_t, k_ε, k_z) of step t → s (host floats, module docstring): x̂0' = x̂0 − λ_t A⁺(A x̂0 − y),
    x_s = √ᾱ_s x̂0' + k_ε ε̂' + k_z z."""
    a_t, a_s = alpha_bar_t, alpha_bar_s
    var = eta**2 * (1 - a_s) / (1 - a_t) * max(1 - a_t / a_s, 0.0)
    k_eps = math.sqrt(max(1 - a_s - var, 0.0))
    if sigma == 0:
        return 1.0, k_eps, math.sqrt(var)
    weight = math.sqrt(a_s) - k_eps * math.sqrt(a_t / (1 - a_t))  # a_t > 0 for ᾱ_s > ᾱ_t
    std = math.sqrt(var)
    lam = 1.0 if std >= weight * sigma else std / (weight * sigma)
    return lam, k_eps, math.sqrt(max(var - (weight * lam * sigma) ** 2, 0.0))


#: DDNM+ folds its fresh noise into the correction's transform where a_t ≥ FOLD·√ᾱ_s (the noise is divided by
#: a_t and multiplied back: float32 round-off grows like √ᾱ_s/a_t, at most 100×; fine schedules with η < 1 have
#: smaller a_t and take the two transforms).
FOLD = 0.01

#: DDNM+ treats a spectral coefficient as observed where s_i > OBSERVED·σ (module docstring).
OBSERVED = 2.0


def ddnm_plus_coefficients(alpha_bar_t: float, alpha_bar_s: float, eta: float, sigma: float, s: torch.Tensor
                           ) -> tuple[torch.Tensor, float, torch.Tensor]:
    """(λ_{t,i}, k_ε, √γ_{t,i}) of DDNM+ step t → s per singular value s_i (module docstring), s ≥ 0 any shape:
    x̄0' = x̄0 − λ (s x̄0 − ȳ)/s, x_s = √ᾱ_s x̂0' + k_ε ε̂' + V(√γ ⊙ Vᵀz); λ = 0 and γ = σ_t² where s_i = 0."""
    a_t, a_s = alpha_bar_t, alpha_bar_s
    var = eta**2 * (1 - a_s) / (1 - a_t) * max(1 - a_t / a_s, 0.0)
    k_eps = math.sqrt(max(1 - a_s - var, 0.0))
    weight = math.sqrt(a_s) - k_eps * math.sqrt(a_t / (1 - a_t))  # a_t > 0 for ᾱ_s > ᾱ_t
    observed = s > OBSERVED * sigma
    carried = weight * sigma / torch.where(observed, s, 1.0)  # std of the noise λ = 1 carries into x_s
    lam = torch.where(observed, (math.sqrt(var) / carried).clamp(max=1.0), 0.0)
    gamma = torch.where(observed, (var - (lam * carried) ** 2).clamp_min(0.0), var)
    return lam, k_eps, gamma.sqrt()


def _spectral_svd(operator: Any, size: tuple[int, int]) -> SVD:
    """The operator's SVD for DDNM+ (σ > 0) (:func:`operator_svd`), or its ValueError with DDNM's advice."""
    try:
        return operator_svd(operator, tuple(size), "ddnm with sigma > 0 (DDNM+)")
    except ValueError as err:
        raise ValueError(f"{err}. DDNM+ scales its correction per singular value: without an SVD the noise A⁺ "
                         "carries cannot be bounded (an ill-conditioned A amplifies it by 1/s_min); use sigma=0 (plain "
                         "DDNM) for noiseless data, or pigdm / diffpir for noisy data with this operator") from None


def travel_plan(steps: int, length: int, repeat: int) -> list[tuple[str, int]]:
    """The order of work: ("step", i) runs step i; ("back", i) re-noises from after step i to before step
    i − length + 1 (time-travel, module docstring). length 0 or repeat 1: the plain 0..N−1."""
    plan: list[tuple[str, int]] = []
    for i in range(steps):
        plan.append(("step", i))
        if length > 0 and (i + 1) % length == 0 and i + 1 < steps:
            for _ in range(repeat - 1):
                plan.append(("back", i))
                plan.extend(("step", j) for j in range(i - length + 1, i + 1))
    return plan


@takes_sampling
def ddnm(denoiser: Any, operator: Any, y: torch.Tensor, sampling: Sampling, *, sigma: float | None = None,
         eta: float = 1.0, travel_length: int = 0, travel_repeat: int = 1) -> Any:
    """Reconstruct x from y = A x (DDNM) or y = A x + n, n ~ N(0, σ² I) (DDNM+) with N = ``sampling.steps``
    steps (module docstring).

    Args:
        denoiser: ``denoiser(x, t) -> eps`` with ``alphas_cumprod`` (called under no_grad: no UNet backward).
        operator: a ``diffsolve.operators`` linear operator (needs ``pseudo_inverse``).
        y: measurement (B, ...) float32/float64; one sample per measurement.
        sampling: the shared options (:class:`~diffsolve.solvers.Sampling`; or pass them as keywords).
        sigma: measurement noise std σ ≥ 0; None or 0: DDNM (A x̂0' = y exactly), > 0: DDNM+.
        eta: η ∈ [0, 1] of the reverse step (1: the paper's DDPM posterior).
        travel_length: time-travel length l ≥ 0 (0: off, the default); travel_repeat: r ≥ 1 passes.
    Returns:
        x (B, C, H, W), or (x, info) with ``return_info``: {"residual": (N', B) ‖y − A x̂0‖ of the denoiser's
        x̂0 at each step run (N' = N without time-travel), "lambda": (N',) λ_t, "timesteps": (N',),
        "final_residual": (B,) ‖A x − y‖/√m, and for σ > 0 "data_consistency": (B,) that over σ}.
    """
    sigma = 0.0 if sigma is None else check_number("sigma", sigma, 0.0)
    eta = check_number("eta", eta, 0.0, 1.0)
    travel_length = check_int("travel_length", travel_length, 0, "steps travelled back; 0: no time travel")
    travel_repeat = check_int("travel_repeat", travel_repeat, 1, "passes over each travelled stretch")
    operator = route(operator, sampling.backend)  # before any kernel runs, the shape check's included
    shape = check_problem(operator, y, sampling.x_T)
    check_operator_solves(operator, 0.0, "ddnm")
    svd = _spectral_svd(operator, shape[-2:]).range() if sigma > 0 else None  # V_r: every s > 0
    complete = svd is not None and svd.complete  # V a real orthogonal basis of the image: noise drawn as coefficients
    loop = prepare(denoiser, shape, sampling, like=y, name="ddnm" if sigma == 0 else "ddnm+")
    n = len(loop.schedule)
    if travel_length > n:
        raise ValueError(f"travel_length={travel_length} exceeds steps={n}; use 0 (off) or at most {n}")
    if svd is None:
        coefs = [ddnm_coefficients(loop.alpha_t[i], loop.alpha_s[i], eta, sigma) for i in range(n)]
    else:  # DDNM+: per-coefficient (λ, √γ) of every step, before the loop; λ_t reported as the mean over s_i > 0
        s_host = svd.s
        s_dev = svd.singulars(y)
        y_bar = svd.Ut(y)  # ȳ = Uᵀy, zero on the null directions
        inv_s = torch.where(s_dev > 0, 1 / torch.where(s_dev > 0, s_dev, 1), 0)  # λ = 0 wherever s is not observed
        coefs, plus, folds = [], [], []  # folds: a_t of x̂0' in x_s where the noise is folded in, else None
        for i in range(n):
            lam_h, k_eps, _ = ddnm_plus_coefficients(loop.alpha_t[i], loop.alpha_s[i], eta, sigma, s_host)
            lam_d, _, root_d = ddnm_plus_coefficients(loop.alpha_t[i], loop.alpha_s[i], eta, sigma, s_dev)
            seen = s_host > OBSERVED * sigma
            lam_mean = float(lam_h[seen].mean()) if bool(seen.any()) else 0.0
            root0 = ddnm_coefficients(loop.alpha_t[i], loop.alpha_s[i], eta, 0.0)[2]  # √γ = σ_t off V_r
            coefs.append((lam_mean, k_eps, 1.0 if root0 > 0 else 0.0))  # k_z: noise only where σ_t > 0
            plus.append((lam_d * inv_s, root_d - root0, root0))
            weight = math.sqrt(loop.alpha_s[i]) - k_eps * math.sqrt(loop.alpha_t[i] / (1 - loop.alpha_t[i]))
            folds.append(weight if weight >= FOLD * math.sqrt(loop.alpha_s[i]) else None)
    per = loop.x.numel() if not isinstance(loop.seed, list) else loop.x[0].numel()
    all_timesteps = loop.schedule.timesteps.tolist()  # host ints, read once before the loop
    passes = [0] * n
    info = Diagnostics(sampling.return_info)
    lambdas, timesteps = [], []
    x = loop.x
    for kind, i in loop.track(travel_plan(n, travel_length, travel_repeat)):
        if kind == "back":  # time-travel: x_hi = √(ᾱ_hi/ᾱ_lo) x_lo + √(1 − ᾱ_hi/ᾱ_lo) z
            ratio = loop.alpha_t[i - travel_length + 1] / loop.alpha_s[i]
            z = _draw(tuple(x.shape), loop.generator, x.dtype, x.device)
            x = math.sqrt(ratio) * x + math.sqrt(max(1 - ratio, 0.0)) * z
            continue
        a_t, a_s = loop.alpha_t[i], loop.alpha_s[i]
        lam, k_eps, k_z = coefs[i]
        with torch.no_grad():
            eps = loop.eps(x, i)  # ε̂ and x̂0, no UNet backward
            x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
            resid = data_part(operator, operator.A(x0) - y) if svd is None or sampling.return_info else None
            noise = loop.step_noise(i, k_z > 0)
            if "offset" in noise:  # a re-run step draws past every first-pass offset
                noise["offset"] += passes[i] * (n + 1) * per
            if svd is None:
                correction = pinv_unchecked(operator, resid)  # 1. A⁺(A x̂0 − y); x̂0' = x̂0 − λ_t·this
                if lam != 1.0:
                    correction = lam * correction
            else:  # 1. DDNM+: V_r(λ/s ⊙ (S V_rᵀx̂0 − U_rᵀy)), 3. the noise √γ₀ z + V_r((√γ − √γ₀) ⊙ V_rᵀz)
                lam_over_s, root_delta, root0 = plus[i]  # √γ₀ = σ_t: every direction off V_r and unobserved
                spectral = lam_over_s * (svd.singulars(y) * svd.Vt(x0) - y_bar)
                z = noise.get("noise") if k_z > 0 else None
                if k_z > 0 and z is None:  # kernel noise: the fused kernel's own z (x = ε = correction = 0, k_z = 1)
                    zero = torch.zeros_like(x)
                    z = reproject_step(zero, zero, zero, a_t, a_s, 0.0, 1.0, backend=sampling.backend, **noise)
                if z is not None and complete:  # z read as coefficients z̄ (V square, orthogonal: V z̄ ~ N(0, I)),
                    root = root0 + root_delta  # so the whole noise is V(√γ ⊙ z̄), without a Vᵀ
                    if folds[i] is not None and loop.callback is None:  # ... and joins the correction's V
                        spectral = spectral - root / folds[i] * z
                        noise, k_z = {}, 0.0
                    else:
                        noise, k_z = {"noise": svd.V(root * z)}, 1.0
                elif z is not None and folds[i] is not None and loop.callback is None:
                    # x̂0' enters x_s with weight a_t > 0 (module docstring), so −a_t·V_r(c) + V_r(Δ z̄) is
                    # −a_t·V_r(c − Δ z̄/a_t): one transform back instead of two (x̂0' itself is not reported)
                    spectral = spectral - root_delta / folds[i] * svd.Vt(z)
                    noise, k_z = {"noise": z}, root0
                elif z is not None:
                    noise, k_z = {"noise": root0 * z + svd.V(root_delta * svd.Vt(z))}, 1.0
                correction = svd.V(spectral)
            # 2.-3. x_s = √ᾱ_s x̂0' + k_ε ε̂' + k_z z, one fused kernel
            out = reproject_step(x, eps, correction, a_t, a_s, k_eps, k_z, backend=sampling.backend,
                                 return_x0=loop.callback is not None, **noise)
        passes[i] += 1
        if resid is not None:
            info.add("residual", resid.flatten(1).norm(dim=1))
        lambdas.append(lam)
        timesteps.append(all_timesteps[i])
        x, x0p = out if loop.callback is not None else (out, None)
        if loop.callback is not None:
            loop.record(i, x, x0p)
    x = loop.finish(x)
    warn_if_unfit("ddnm", operator, x, y, sigma, len(loop.schedule))  # one sync, after the loop
    if sampling.return_info:
        return x, info.finish(operator, x, y, torch.tensor(timesteps, dtype=loop.schedule.timesteps.dtype),
                              sigma=sigma if sigma > 0 else None,
                              **{"lambda": torch.tensor(lambdas, dtype=torch.float64)})
    return x
