"""RED-diff: regularisation by denoising diffusion (Mardani, Song, Kautz & Vahdat 2024, "A variational
perspective on solving inverse problems with diffusion models", ICLR, Algorithm 1).

RED-diff fits the mean μ (B, C, H, W) of a variational distribution q(x0 | y) = N(μ, σ_q² I) with σ_q → 0 by
stochastic optimisation of a data term plus a score-matching regulariser, visiting the diffusion timesteps
from T down (the paper's descending schedule). Per step i, at level ᾱ_t, with ε ~ N(0, I) (B, C, H, W):

    x_t = √ᾱ_t μ + √(1−ᾱ_t) ε,   ε̂ = ε_θ(x_t, t)                                       (no graph)
    ℓ(μ) = ‖y − A μ‖² / (2m g_A²) + λ_t ⟨sg(ε̂ − ε), μ⟩ / n,   λ_t = λ √(1−ᾱ_t)/√ᾱ_t     (per sample)
    ∇_μ ℓ = −Aᵀ(y − A μ)/(m g_A²) + λ_t (ε̂ − ε)/n                                      (:func:`gradient`)
    μ ← Adam(μ, ∇_μ ℓ),  lr, β = (0.9, 0.99), ε_Adam = 1e-8

m = numel(y_b), n = numel(μ_b) (the reference code's ``mean()`` normalisation, taken per sample), g_A² = A's
squared gain on a constant image (:func:`operator_gain`: 1 for every normalised operator, so the reference code's
loss there; k² for kA); sg is the
stop-gradient: the denoiser is never differentiated. λ_t = λ/SNR_t^{1/2} is the paper's "inverse SNR"
weighting (σ_t/α_t in its notation, α_t = √ᾱ_t, σ_t = √(1−ᾱ_t)). The data term carries no 1/σ²: the paper's
‖y − f(μ)‖²/(2σ_v²) is folded into λ (observation weight 1 in the reference code). ``sigma``, if given, gates the
data term by the discrepancy principle (below), lowers its weight above a reference noise level (below) and scales
the reported data consistency. Defaults from the paper and its
reference code: λ = 0.25, lr = 0.1, Adam betas (0.9, 0.99), 1000 steps in the paper (λ, lr and the betas at
other N: the step-count rules below). Start: the paper
initialises μ at A⁺y; here μ0 = c Aᵀy with c = ⟨y, A Aᵀy⟩/‖A Aᵀy‖² per sample
(:func:`initial_mean`, the least-squares scaling of Aᵀy), which is A⁺y wherever A Aᵀ = I (inpainting) and stays
bounded where A⁺ amplifies the noise (blur: A⁺y of a noisy y is dominated by amplified noise that Adam's
lr-bounded steps cannot undo in a few steps).

Numbered steps of the loop:

1. ε ~ N(0, I) from the generator (``_loop.draw``: a list of generators keeps samples independent);
2. x_t = √ᾱ_t μ + √(1−ᾱ_t) ε and ε̂ = ε_θ(x_t, t) under no_grad;
3. the gradient of ℓ per sample (A linear: analytic, one A and one Aᵀ); given σ, its data part times the gate
   g = clamp((‖r‖² − κmσ²)/(w κmσ²), 0, 1) per sample (m measured entries, κ = ``_inverse.DISCREPANCY_SHARE`` =
   1/2, w = :data:`GATE_WIDTH`): off once ‖r‖ ≤ σ√(κm), on from ‖r‖² ≥ (1 + w)κmσ²;
4. one Adam step on μ, elementwise (per-sample independent), bias corrections as host floats; after the last
   one, with ``midpoint`` (default), μ ← (μ_N + μ_{N−1})/2, the midpoint of the last update (below);
5. given σ (and ``discrepancy``), the result stops at the discrepancy floor: μ ← x̂0 + g (μ − x̂0), x̂0 the last
   model call's denoised estimate (√ᾱ_t)⁻¹(x_t − √(1−ᾱ_t) ε̂), g ∈ [0, 1] per sample the largest with
   ‖A(·) − y‖ ≥ σ√(m/2) (``_inverse.discrepancy_weight``, DiffPIR's last step); then the pull of a result the
   noise cannot explain (``_inverse.discrepancy_pull``).

**Discrepancy gate** (diffsolve's, given σ; the paper's update has no σ): μ is a point estimate, and Adam keeps
moving it towards y at about ``lr`` per entry whatever the gradient's size, so where the regulariser is weak on
A's range (SR ×4's low frequencies, a box's observed pixels) it fitted y's noise too (‖r‖ far below σ√m). The gate
stops the data pull at MPGD's and DPS's floor, ‖r‖ = σ√(m/2); where the fit stays above that floor (the blurs,
random inpainting) it never acts and μ is unchanged (benchmarks/results/reddiff-gate.md, bench_gates.py). Adam's
normalised steps can still coast past the floor once the gate has closed (the shorter its memories, the further):
step 5 takes the result back to it where the last denoised estimate allows.

**Noise-level weight** (diffsolve's, given σ): with the paper's σ_v folded into λ the data/prior balance is the same
at every σ, and λ was set at σ ≈ :data:`NOISE_REFERENCE` = 0.05 (image units, the model's [−1, 1]). Above it the data
term is divided by w_σ = max(1, σ/(g_A σ_ref)) (σ/g_A: the noise in image units), so a noisier y weighs less against
the regulariser: as σ grew, the weight fixed at its σ_ref value fitted blurs ever further into the noise (the gate
then stops at σ√(m/2), far too close at σ ≥ 0.1). The paper's 1/σ² falls too fast: random inpainting, where the
regulariser then outweighs y on the observed pixels, lost most with it; the linear fall keeps that loss small and
keeps nearly all the blurs' gain on photos (benchmarks/results/reddiff-sigma.md; on an exact prior it is nearer
the posterior mean in some cells and further in others). σ ≤ σ_ref is unchanged.

Scale rule: ℓ's two terms are means over the sample's entries, so the default λ does not depend on the image
or measurement size; the data term is in image units (over g_A²), so A → kA, y → ky, σ → kσ gives the same μ
(without g_A the data term's weight against λ would grow as k²); Adam's step is invariant to a common rescaling of
both terms. The result is μ (with ``midpoint``, the midpoint of the last update).

**The last update's midpoint.** Adam's update moves every entry by about ``lr`` whatever the gradient's size, and
at few steps the step-count rule's β₁ keeps almost no momentum, so each update follows the sign of one stochastic
gradient (ε is drawn anew every step): a jitter of about ``lr`` per entry that the next step's data term pulls
back, except after the last update, which nothing corrects. The result is therefore the mean of the last two
iterates, half of that last update; earlier updates are left as the run corrected them. At the paper's N the
step is small and the midpoint all but equal to μ_N (measurements: benchmarks/results/reddiff-midpoint.md).

**Step-count rules.** Adam moves μ by about ``lr`` per entry and step whatever the gradient's scale, so a run
moves it by up to ``lr``·N, and the late steps, where λ_t = λ√(1−ᾱ_t)/√ᾱ_t → 0, are pure data fitting: at a
fixed λ and lr the fit to y, noise included, grows with N (the residual ends above σ at few steps and far below
it at the paper's 1000). The defaults are set at N_ref = :data:`REFERENCE_STEPS` (λ = 0.25, lr = 0.1: the
reference code's values) and follow N by two rules (``"constant"``: the paper's, the values as given at every N):

- ``lam_rule="steps"``: λ_N = λ·min(N, N_ref)/N_ref. Below N_ref the regulariser's weight shrinks with the run
  (Adam's steps cannot grow: a larger lr overshoots), which keeps the fitted residual near the noise level;
- ``adam_rule="steps"``: lr_N = lr·min(1, N_ref/N), so no run moves μ further than lr·N_ref (above N_ref λ stays
  at its N_ref value), and Adam's betas β_N = β^(N_paper/N) for each of the paper's (β₁, β₂) = (0.9, 0.99),
  N_paper = :data:`PAPER_STEPS`.

**Adam's memories**: an EMA with factor β forgets over ~1/(1−β) steps: the paper's betas average the last ~10
and ~100 of its 1000 steps, 1 % and 10 % of the schedule. At N = 50 the same betas span 20 % and 200 % of it: μ's
momentum lags the λ_t schedule, and the second moment keeps the first steps' gradients (λ_t ≈ 150 λ at t = T on
the DDPM linear schedule) to the end, so the late steps, where the regulariser is all that moves a pixel y does
not see (inpainting's holes), shrink by the ratio of the late λ_t to the early ones and those pixels stay near
μ0's grey. β^(N_paper/N) keeps each memory the same share of the schedule at every N (the paper's betas at its N).
Both rules' measurements: benchmarks/results/reddiff-steps.md.
``sampling.x_T``, if given, replaces the start μ0. ``noise_source="kernel"`` is rejected: ε enters
the loss, so it must be a tensor. Measurements: benchmarks/results/ (bench_methods.py).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ._inverse import (Diagnostics, check_problem, check_sigma, data_part, discrepancy_floor, discrepancy_pull,
                       discrepancy_weight, finish_run, measured_entries, route)
from ._loop import Sampling, check_flag, check_number, draw, prepare, takes_sampling

__all__ = ["ADAM_BETAS", "ADAM_EPS", "GATE_WIDTH", "NOISE_REFERENCE", "PAPER_STEPS", "REFERENCE_STEPS", "STEP_RULES",
           "gradient", "initial_mean", "operator_gain", "reddiff", "step_adam", "step_lam", "weights"]

#: Adam's (β₁, β₂) of the reference code, for its :data:`PAPER_STEPS` steps.
ADAM_BETAS = (0.9, 0.99)
#: the paper's step count, at which ``adam_rule="steps"`` gives :data:`ADAM_BETAS`
PAPER_STEPS = 1000
#: Adam's ε (torch.optim.Adam's default).
ADAM_EPS = 1e-8
#: the values of ``lam_rule`` and ``adam_rule`` (:func:`step_lam`, :func:`step_adam`, module docstring)
STEP_RULES = ("steps", "constant")
#: the step count N_ref at which ``lam`` and ``lr`` are used as given under the ``"steps"`` rules
REFERENCE_STEPS = 50
#: w, the discrepancy gate's ramp: from off at ‖r‖² = κmσ² to on at (1 + w)κmσ² (module docstring)
GATE_WIDTH = 0.2
#: σ_ref (image units): above it the data term weighs σ_ref/(σ/g_A) of its value (module docstring; ∞: never)
NOISE_REFERENCE = 0.05


def step_lam(rule: str, lam: float, steps: int) -> float:
    """λ_N: ``"steps"`` λ·min(N, N_ref)/N_ref, ``"constant"`` λ (host float, module docstring)."""
    return lam * min(steps, REFERENCE_STEPS) / REFERENCE_STEPS if rule == "steps" else lam


def step_adam(rule: str, lr: float, steps: int) -> tuple[float, tuple[float, float]]:
    """(lr_N, (β₁, β₂)) of an N-step run: ``"steps"`` lr·min(1, N_ref/N) and β^(N_paper/N) each, ``"constant"``
    lr and the paper's betas (module docstring)."""
    if rule == "constant":
        return lr, ADAM_BETAS
    return lr * min(1.0, REFERENCE_STEPS / steps), tuple(b ** (PAPER_STEPS / steps) for b in ADAM_BETAS)


def weights(alphas: list[float], lam: float) -> list[float]:
    """λ_t = λ √(1−ᾱ_t)/√ᾱ_t per step (host floats)."""
    return [lam * math.sqrt(1 - a) / math.sqrt(a) for a in alphas]


def gradient(operator: Any, mu: torch.Tensor, y: torch.Tensor, eps_hat: torch.Tensor, eps: torch.Tensor,
             lam_t: float, floor: torch.Tensor | None = None, gain2: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(∇_μ ℓ, r) with ℓ = ‖y − A μ‖²/(2m g_A²) + λ_t ⟨ε̂ − ε, μ⟩/n per sample and r = y − A μ (module docstring);
    ``floor`` (B,) = κmσ²: the data part times the discrepancy gate (step 3); ``gain2`` (B,) = g_A²
    (:func:`operator_gain`; None: 1)."""
    r = data_part(operator, y - operator.A(mu))
    m, n = y[0].numel(), mu[0].numel()
    coef = -1.0 / m if gain2 is None else -1.0 / (m * gain2)  # the data term's per-sample factor, gate included
    if floor is not None:
        coef = coef * ((r.flatten(1).pow(2).sum(1) - floor) / (GATE_WIDTH * floor)).clamp(0, 1)
    if isinstance(coef, torch.Tensor):
        coef = coef.view(-1, *([1] * (mu.dim() - 1)))
    data = operator.A_adjoint(r) * coef
    return data + (eps_hat - eps) * (lam_t / n), r


def operator_gain(operator: Any, y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) g_A² = ‖A 1‖²/m, A applied to an image of ones shaped like ``like`` (B, C, H, W) and the norm over the
    m measured entries of y (a mask's observed pixels): A's squared gain on a constant image. 1 for every operator
    that maps a constant image to itself (blurs whose kernel sums to 1 with reflect or circular boundaries, masks,
    average or bicubic down-sampling), k² for kA; 1 where A 1 has no measured entry. Before the loop, no sync."""
    with torch.no_grad():
        a1 = data_part(operator, operator.A(torch.ones_like(like))).flatten(1)
        m = measured_entries(operator, y).to(device=like.device, dtype=like.dtype)
        gain2 = a1.pow(2).sum(1) / m.clamp_min(1)
        return torch.where(gain2 > 0, gain2, torch.ones_like(gain2))


def initial_mean(operator: Any, y: torch.Tensor) -> torch.Tensor:
    """μ0 = c Aᵀy, c = ⟨y, A Aᵀy⟩/‖A Aᵀy‖² per sample (0 where Aᵀy = 0): the exact line-search step of steepest
    descent on ½‖y − A μ‖² from μ = 0 — A⁺y wherever A Aᵀ = I (inpainting masks), bounded where A⁺ amplifies
    noise (module docstring)."""
    with torch.no_grad():
        aty = operator.A_adjoint(y)
        aaty = operator.A(aty)
        num = (y.flatten(1) * aaty.flatten(1)).sum(1)
        den = aaty.flatten(1).pow(2).sum(1)
        c = torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(den))
        return aty * c.view(-1, *([1] * (aty.dim() - 1)))


@takes_sampling
def reddiff(denoiser: Any, operator: Any, y: torch.Tensor, sampling: Sampling, *, lam: float = 0.25,
            lr: float = 0.1, lam_rule: str = "steps", adam_rule: str = "steps", sigma: float | None = None,
            discrepancy: bool = True, midpoint: bool = True) -> Any:
    """Reconstruct x from y = A x + n with N = ``sampling.steps`` RED-diff steps (module docstring).

    Args:
        denoiser: ``denoiser(x, t) -> eps`` with ``alphas_cumprod`` (no backward pass is taken).
        operator: linear operator with ``A``/``A_adjoint``.
        y: measurement (B, ...) float32/float64; one reconstruction per measurement.
        sampling: the shared options (:class:`~diffsolve.solvers.Sampling`; or pass them as keywords);
            x_T, if given, is the initial μ.
        lam: λ ≥ 0, the regulariser weight at N_ref = 50 steps (λ_t = λ_N √(1−ᾱ_t)/√ᾱ_t; default 0.25).
        lr: Adam learning rate > 0 at N_ref = 50 steps (default 0.1, in [-1, 1] image units).
        lam_rule: ``"steps"`` λ_N = λ·min(N, 50)/50 (default) | ``"constant"`` λ_N = λ, the paper's (module docstring).
        adam_rule: ``"steps"`` lr_N = lr·min(1, 50/N), betas β^(1000/N) (default) | ``"constant"`` lr and the paper's
            (0.9, 0.99) at every N (module docstring).
        sigma: the measurement noise std σ > 0 (or a ``GaussianNoise``), optional: the discrepancy gate and the
            noise-level weight of the data term (module docstring) and the reported data consistency; None: the
            paper's update, ungated.
        discrepancy: end with a residual y's noise explains, neither below σ√(m/2) nor beyond the noise (step 5; with
            sigma); False: the result as the loop leaves it (μ, or with ``midpoint`` its last update's midpoint).
        midpoint: return the midpoint of the last Adam update, (μ_N + μ_{N−1})/2 (default; module docstring);
            False: the last iterate μ_N, the paper's.
    Returns:
        μ (B, C, H, W), or (μ, info) with ``return_info``: {"residual": (N, B) ‖y − A μ‖ before each step's
        update, "timesteps": (N,), "final_residual" (B,) ‖A μ − y‖/√m, with σ "data_consistency" (B,) that
        over σ}.
    """
    sigma = None if sigma is None else check_sigma(sigma)
    lam = check_number("lam", lam, 0.0)
    lr = check_number("lr", lr, 0.0)
    for name, value in (("lam_rule", lam_rule), ("adam_rule", adam_rule)):
        if not isinstance(value, str) or value not in STEP_RULES:
            raise ValueError(f"{name} must be one of {STEP_RULES}, got {value!r}")
    if lr == 0:
        raise ValueError("lr must be > 0 (Adam's learning rate; the paper's default is 0.1), got 0")
    if sampling.noise_source != "generator":
        raise ValueError(f"noise_source={sampling.noise_source!r}: RED-diff's ε enters its loss, so it is drawn as "
                         "a tensor; use noise_source='generator'")
    discrepancy = check_flag("discrepancy", discrepancy)
    midpoint = check_flag("midpoint", midpoint)
    operator = route(operator, sampling.backend)  # the backend reaches A, Aᵀ (the shape check's included)
    shape = check_problem(operator, y, sampling.x_T)
    loop = prepare(denoiser, shape, sampling, like=y, name="reddiff")
    mu = loop.x if sampling.x_T is not None else initial_mean(operator, y)
    floor = None if sigma is None else discrepancy_floor(operator, y, sigma)  # κmσ² per sample (step 3)
    gain2 = operator_gain(operator, y, mu)  # g_A² per sample: the data term in image units
    if sigma is not None:  # ... times w_σ = max(1, σ/(g_A σ_ref)): a noisier y weighs less (module docstring)
        gain2 = gain2 * (sigma / (gain2.sqrt() * NOISE_REFERENCE)).clamp(min=1)
    lams = weights(loop.alpha_t, step_lam(lam_rule, lam, len(loop.alpha_t)))
    lr, (b1, b2) = step_adam(adam_rule, lr, len(loop.alpha_t))
    settle = sigma is not None and discrepancy  # step 5
    m1 = torch.zeros_like(mu)
    m2 = torch.zeros_like(mu)
    info = Diagnostics(sampling.return_info)
    with torch.no_grad():
        for i in loop.steps():
            a_t = loop.alpha_t[i]
            eps = draw(shape, loop.generator, mu.dtype, mu.device)  # 1. ε ~ N(0, I)
            x_t = a_t**0.5 * mu + (1 - a_t) ** 0.5 * eps  # 2. x_t and ε̂ (stop-gradient)
            eps_hat = loop.eps(x_t, i)
            grad, r = gradient(operator, mu, y, eps_hat, eps, lams[i], floor, gain2)  # 3. ∇_μ ℓ per sample (gated)
            if info.enabled:
                info.add("residual", r.flatten(1).norm(dim=1))
            k = i + 1  # 4. Adam, elementwise, bias corrections on the host
            m1.mul_(b1).add_(grad, alpha=1 - b1)
            m2.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            denom = (m2 / (1 - b2**k)).sqrt_().add_(ADAM_EPS)
            previous, mu = mu, mu - (lr / (1 - b1**k)) * m1 / denom
            if loop.callback is not None:
                loop.record(i, mu, mu)
        if midpoint:  # the last update's midpoint (module docstring)
            mu = torch.add(previous, mu).mul_(0.5)
        if settle:  # 5. back to the floor towards the last x̂0 (a_t, x_t, ε̂ of the last step), then within the noise
            x0 = (x_t - (1 - a_t) ** 0.5 * eps_hat) / a_t**0.5
            g = discrepancy_weight(data_part(operator, y - operator.A(x0)), data_part(operator, operator.A(mu - x0)),
                                   floor)
            mu = mu - (1 - g).view(-1, *([1] * (mu.dim() - 1))) * (mu - x0)  # exactly μ where g = 1
    if settle:
        mu = discrepancy_pull(operator, mu, y, sigma, 1 - loop.alpha_t[-1])
    return finish_run("reddiff", loop, operator, mu, y, sigma, info)  # one sync, after the loop
