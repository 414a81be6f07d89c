"""DDNM and DDNM+: zero-shot image restoration with the denoising diffusion null-space model (Wang, Yu &
Zhang 2023, ICLR, "Zero-shot image restoration using denoising diffusion null-space model", Algorithms 1-2,
eqs. 13-19), as the authors' code runs them (github.com/wyhuai/DDNM, ``functions/svd_ddnm.py``: the code behind
the paper's tables), on the shared schedule.

Per step t → s, with x_t (B, C, H, W), y (B, ...), ε̂ = ε_θ(x_t, t), x̂0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t and
σ_t = √(1−ᾱ_s), the noise level of x_s:

**DDNM** (σ = 0 or None; any operator with a pseudo-inverse):

    1. x̂0' = x̂0 − A⁺(A x̂0 − y)                       range-null-space decomposition (eq. 13): A x̂0' = y
    2. x_s = √ᾱ_s x̂0' + σ_t (η z + √(1−η²) ε̂)         one fused kernel (``diffpir.reproject_step``, ε̂ kept)

The paper's text writes step 2 as the DDPM posterior p(x_s | x_t, x̂0'); its code re-noises x̂0' as above
("different from the paper, we use DDIM here instead of DDPM"), η = 0.85. The code's step is the one here: it
beat the posterior form in every cell measured on held-out photos (benchmarks/results/ddnm-sampler.md).

**DDNM+** (σ > 0, eqs. 17-19 per singular value, the code's ``Lambda`` / ``Lambda_noise``): in the spectral space
of A = U S Vᵀ (``diffsolve.operators.svd``; the operator declares ``svd(size)``), x̄ = Vᵀx, ȳ_i = (Uᵀy)_i/s_i,
ê = Vᵀε̂, z̄ = Vᵀz, a = √ᾱ_s:

    1. λ_i = 1 where σ_t ≥ a σ/s_i, else s_i σ_t √(1−η²)/(a σ)      (s_i > 0; the null directions s_i = 0 keep x̂0)
       x̄0'_i = x̄0_i + λ_i (ȳ_i − x̄0_i)
    2. x̄_s,i = a x̄0'_i + d_i z̄_i + c_i ê_i with (c, d) = (σ_t √(1−η²), σ_t η) on the null directions,
       (0, σ_t η) where λ_i < 1 (the noise a λ_i σ/s_i = σ_t √(1−η²) that ȳ carries takes ε̂'s place) and
       (0, √(σ_t² − a²σ²/s_i²)) where λ_i = 1 (fresh noise tops the carried noise up to σ_t).

In DDRM's variance-exploding variables (σ_t/a = σ̃_s) this is DDRM's Eq. 8 coefficient for coefficient with
η_b = 1, so DDNM+ runs DDRM's spectral loop (:func:`diffsolve.solvers.ddrm.spectral_sampling`: the transforms only
on the range of A, V_rᵀx carried, the whole step in the spectral space on a complete basis), started at x_T itself
as the code starts (not DDRM's Eq. 7), with DDNM's time-travel and DDRM's negligible singular values (the code
shares DDRM's ``svd_replacement.py``, ``ZERO = 3e-2``; ``singular_cutoff``). At the last step (σ_t = 0) λ = 0 and
x̂0 is returned as denoised, then held to the discrepancy principle (``_inverse.discrepancy_pull``;
``discrepancy=False``: the code's). Its noise is drawn from the generator (``noise_source="kernel"`` is refused,
as for DDRM). Operators without an SVD raise a ValueError for σ > 0 (the noise A⁺ carries cannot be bounded without the
spectrum); σ = 0 works with any operator that has a pseudo-inverse (exact where the structure allows, CG
otherwise; run without the finiteness check of ``pseudo_inverse``: no host sync in the loop), a separable A's with
the same negligible singular values counted as zero (the code's ``H_pinv``; ``_inverse.pinv_of``).

**Time-travel** (§3.3, off by default): with ``travel_length`` = l > 0, after every l-th step the sample is
sent back l steps by the forward process, x_hi = √(ᾱ_hi/ᾱ_lo) x_lo + √(1−ᾱ_hi/ᾱ_lo) z, and those l steps are
redone, ``travel_repeat`` − 1 extra times (the reference code's default l = 1, r = 1 means off).

Defaults: η = 0.85 (the code's). Everything is scale-free: A → kA, y → ky, σ → kσ gives the same samples.
Results: benchmarks/results/.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..operators.svd import operator_svd
from ._inverse import (SINGULAR_CUTOFF, Diagnostics, check_problem, check_sigma, counted_singulars, data_part,
                       finish_run, pinv_of, route)
from ._loop import Sampling, _draw, check_flag, check_int, check_number, prepare, takes_sampling
from .ddrm import _coefficients, _vp_sigma, check_cutoff, spectral_sampling
from .diffpir import check_operator_solves, reproject_step

__all__ = ["ddnm", "ddnm_coefficients", "ddnm_plus_lambdas", "travel_plan"]


def ddnm_coefficients(alpha_bar_s: float, eta: float) -> tuple[float, float]:
    """(k_ε, k_z) = (σ_t √(1−η²), σ_t η), σ_t = √(1−ᾱ_s): DDNM's step 2, x_s = √ᾱ_s x̂0' + k_ε ε̂ + k_z z."""
    sigma_t = math.sqrt(max(1 - alpha_bar_s, 0.0))
    return sigma_t * math.sqrt(1 - eta**2), sigma_t * eta


def ddnm_plus_lambdas(alpha_bar_s: float, eta: float, sigma: float, s: torch.Tensor) -> torch.Tensor:
    """λ_i of DDNM+'s step 1 per singular value s_i (module docstring; 0 where s_i = 0), s's shape: the weight of
    ȳ in DDRM's Eq. 8 at η_b = 1 (σ_t/a = DDRM's σ_s), which the loop runs."""
    return _coefficients(s, _vp_sigma(alpha_bar_s), sigma, eta, 1.0)[1]


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


def _spectral_svd(operator: Any, size: tuple[int, int]) -> Any:
    """The operator's SVD for DDNM+ (σ > 0) (:func:`operator_svd`), or its ValueError with DDNM's advice."""
    try:
        return operator_svd(operator, tuple(size), "ddnm with sigma > 0 (DDNM+)")
    except ValueError as err:
        raise ValueError(f"{err}. DDNM+ scales its correction per singular value: without an SVD the noise A⁺ "
                         "carries cannot be bounded (an ill-conditioned A amplifies it by 1/s_min); use sigma=0 (plain "
                         "DDNM) for noiseless data, or pigdm / diffpir for noisy data with this operator") from None


@takes_sampling
def ddnm(denoiser: Any, operator: Any, y: torch.Tensor, sampling: Sampling, *, sigma: float | None = None,
         eta: float = 0.85, travel_length: int = 0, travel_repeat: int = 1, singular_cutoff: float = SINGULAR_CUTOFF,
         discrepancy: bool = True) -> Any:
    """Reconstruct x from y = A x (DDNM) or y = A x + n, n ~ N(0, σ² I) (DDNM+) with N = ``sampling.steps``
    steps (module docstring).

    Args:
        denoiser: ``denoiser(x, t) -> eps`` with ``alphas_cumprod`` (called under no_grad: no UNet backward).
        operator: a ``diffsolve.operators`` linear operator (needs ``pseudo_inverse``; with σ > 0 ``svd``).
        y: measurement (B, ...) float32/float64; one sample per measurement.
        sampling: the shared options (:class:`~diffsolve.solvers.Sampling`; or pass them as keywords).
        sigma: measurement noise std σ ≥ 0; None or 0: DDNM (A x̂0' = y on the directions ``singular_cutoff``
            keeps: all of them for masks, SR and dense matrices; 0 for a blur's exact A⁺), > 0: DDNM+.
        eta: η ∈ [0, 1], the share of fresh noise in the re-noising (0.85: the code's).
        travel_length: time-travel length l ≥ 0 (0: off, the default); travel_repeat: r ≥ 1 passes.
        singular_cutoff: ∈ [0, 1); a separable A's per-axis singular values below this share of their axis's
            largest count as zero, in DDNM's A⁺ and DDNM+'s steps (the code's 3e-2, DDRM's ``svd_replacement.py``;
            0 keeps every s_i > 0: A's exact A⁺).
        discrepancy: end with a residual y's noise explains (``_inverse.discrepancy_pull``; DDNM+ only); False: the
            code's result.
    Returns:
        x (B, C, H, W), or (x, info) with ``return_info``: {"residual": (N', B) ‖y − A x̂0‖ of the denoiser's
        x̂0 at each step run (N' = N without time-travel), "lambda": (N',) λ_t (DDNM+: the mean over s_i > 0),
        "timesteps": (N',), "final_residual": (B,) ‖A x − y‖/√m, and for σ > 0 "data_consistency": (B,) that
        over σ}.
    """
    sigma = 0.0 if sigma is None else check_sigma(sigma, positive=False)
    eta = check_number("eta", eta, 0.0, 1.0)
    travel_length = check_int("travel_length", travel_length, 0, "steps travelled back; 0: no time travel")
    travel_repeat = check_int("travel_repeat", travel_repeat, 1, "passes over each travelled stretch")
    discrepancy = check_flag("discrepancy", discrepancy)
    singular_cutoff = check_cutoff(singular_cutoff)
    if sigma > 0 and sampling.noise_source != "generator":
        raise ValueError(f"ddnm with sigma > 0 (DDNM+) draws its noise in image space and maps it to A's spectral "
                         f"space; noise_source={sampling.noise_source!r} is not supported, use "
                         "noise_source='generator' (or sigma=0)")
    operator = route(operator, sampling.backend)  # before any kernel runs, the shape check's included
    shape = check_problem(operator, y, sampling.x_T)
    check_operator_solves(operator, None, "ddnm")
    svd = _spectral_svd(operator, shape[-2:]) if sigma > 0 else None
    loop = prepare(denoiser, shape, sampling, like=y, name="ddnm" if sigma == 0 else "ddnm+")
    n = len(loop.schedule)
    if travel_length > n:
        raise ValueError(f"travel_length={travel_length} exceeds steps={n}; use 0 (off) or at most {n}")
    plan = travel_plan(n, travel_length, travel_repeat)
    run = [i for kind, i in plan if kind == "step"]
    timesteps = loop.schedule.timesteps.cpu()[run]
    info = Diagnostics(sampling.return_info)
    if svd is not None:  # DDNM+: DDRM's spectral loop at η_b = 1 from x_T (module docstring)
        x = spectral_sampling(loop, operator, svd.range(), y, sigma, eta, 1.0, start="x_T", info=info, plan=plan,
                              travel_length=travel_length, discrepancy=discrepancy, singular_cutoff=singular_cutoff)
    else:
        x = _ddnm_loop(loop, operator, y, eta, plan, travel_length, info, sampling.backend,
                       pinv_of(operator, shape[-2:], singular_cutoff, probe=y))
    extra = {}
    if sampling.return_info:  # the reported λ_t: DDNM+'s mean over the s_i > 0 the loop counts (host, after it)
        lambdas = [1.0] * len(run)
        if svd is not None:
            s_host = counted_singulars(svd, svd.s, singular_cutoff)
            s_host = s_host[s_host > 0]
            lambdas = [float(ddnm_plus_lambdas(loop.alpha_s[i], eta, sigma, s_host).mean()) if s_host.numel()
                       else 0.0 for i in run]
        extra["lambda"] = torch.tensor(lambdas, dtype=torch.float64)
    return finish_run("ddnm", loop, operator, x, y, sigma, info, timesteps=timesteps, **extra)  # one sync


def _ddnm_loop(loop: Any, operator: Any, y: torch.Tensor, eta: float, plan: list[tuple[str, int]],
               travel_length: int, info: Diagnostics, backend: str, pinv: Any) -> torch.Tensor:
    """DDNM's steps 1-2 (σ = 0) over ``plan``, time-travel included, ``pinv(r)`` = A⁺ r (``_inverse.pinv_of``);
    returns x (B, C, H, W)."""
    n = len(loop.schedule)
    per = loop.x.numel() if not isinstance(loop.seed, list) else loop.x[0].numel()
    passes = [0] * n
    x = loop.x
    for kind, i in loop.track(plan):
        if kind == "back":  # time-travel: x_hi = √(ᾱ_hi/ᾱ_lo) x_lo + √(1 − ᾱ_hi/ᾱ_lo) z
            ratio = loop.alpha_t[i - travel_length + 1] / loop.alpha_s[i]
            z = _draw(tuple(x.shape), loop.generator, x.dtype, x.device)
            x = math.sqrt(ratio) * x + math.sqrt(max(1 - ratio, 0.0)) * z
            continue
        a_t, a_s = loop.alpha_t[i], loop.alpha_s[i]
        k_eps, k_z = ddnm_coefficients(a_s, eta)
        with torch.no_grad():
            eps = loop.eps(x, i)  # ε̂ and x̂0, no UNet backward
            x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
            resid = data_part(operator, operator.A(x0) - y)
            correction = pinv(resid)  # 1. A⁺(A x̂0 − y); x̂0' = x̂0 − this
            noise = loop.step_noise(i, k_z > 0)
            if "offset" in noise:  # a re-run step draws past every first-pass offset
                noise["offset"] += passes[i] * (n + 1) * per
            # 2. x_s = √ᾱ_s x̂0' + k_ε ε̂ + k_z z, one fused kernel
            out = reproject_step(x, eps, correction, a_t, a_s, k_eps, k_z, keep_eps=True, backend=backend,
                                 return_x0=loop.callback is not None, **noise)
        passes[i] += 1
        info.add("residual", resid.flatten(1).norm(dim=1))
        x, x0p = out if loop.callback is not None else (out, None)
        if loop.callback is not None:
            loop.record(i, x, x0p)
    return x
