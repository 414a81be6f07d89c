"""Manifold-preserving guided diffusion, MPGD (He et al. 2024, ICLR), pixel space: no projection, AE, Z.

Per step t → s, with ε̂ = ε_θ(x_t, t) (no UNet backward, ever) and x̂0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t:

    x̂0* = x̂0 − (ρ/√ᾱ_s) ∇_{x̂0} L(x̂0),      L(x) = ‖y − A x‖ (non-squared, per sample)
    x_s  = √ᾱ_s x̂0* + √(1−ᾱ_s−σ_η²) ε̂ + σ_η z   (DDIM η: 1 given σ, else the reference code's 0.5)

For linear A the gradient is analytic, Aᵀ(A x̂0 − y)/‖A x̂0 − y‖: no autograd at all. ``loss``
replaces L by any differentiable ``loss(x0) -> (B,)`` (guidance by a black-box loss; autograd).

On-manifold variants (paper §4.2, Algorithm 2/3), ``projection=Projection(autoencoder, space, window,
scale)``, applied while ``window[0] < t/T < window[1]`` (the reference code's 0.3–0.5 of the
trajectory), plain steps elsewhere:

- ``space="ae"``: the gradient through the autoencoder, ∇_{x̂0} L(D(E(x̂0))), step ρ·scale/√ᾱ_s;
- ``space="z"``: z = E(x̂0), z* = z − ρ·scale/√ᾱ_s ∇_z L(D(z)), x̂0* = D(z*) + (x̂0 − D(z)) (the
  autoencoder's residual kept, as the reference code does).

``scale`` defaults to the reference code's factors (0.0075 for AE, 0.01 for Z). Every norm and
step is per sample. The update runs in the fused ``mpgd_step`` kernel.

Default ρ, given the measurement noise σ (``sigma``; the command line passes it): ρ = 4·(30/N)^(3/4)·σ̃√m/L
with m the measured entries per sample, L ≥ ‖AᵀA‖ and σ̃ = max(σ, :data:`RHO_SIGMA_FLOOR`·RMS(y)) (y's RMS over
its measured entries, per sample) — scale-free in the image size (√m), the operator's scale (L, and σ̃ with y) and
the step count (N^(−3/4), as DPS's step: with 1/N the motion blur's fit fell behind as N grew,
benchmarks/results/mpgd-eta.md). With σ alone the steps vanished as σ → 0 and left the fit to the closing pull
(random inpainting and motion blur far under the other methods at σ ≤ 0.01; benchmarks/results/mpgd-small-sigma.md);
the floor sits below the σ the defaults were tuned at for images in [−1, 1]. Each step on x̂0 is capped by the
discrepancy principle:

    x̂0* = x̂0 − κ u,  u = Aᵀr/‖r‖,  κ = min(ρ/√ᾱ_s, κ_σ, κ_L),  r = A x̂0 − y   (per sample)

κ_σ the smallest κ ≥ 0 with ‖r − κ A u‖ = σ√(κ_d m) (the line minimum ⟨r, Au⟩/‖Au‖² where the residual never
gets that low along u; 0 where ‖r‖ is that low already), κ_d = ``_inverse.DISCREPANCY_SHARE`` = 1/2, DPS's: no
step fits y below √κ_d of its noise level (one extra A per step). x̂0 estimates a mean, which should fit the
well-determined directions below the noise; a floor at σ√m itself (κ_d = 1) lost PSNR on the blurs, SR ×4 and
random inpainting and gained nothing measurable elsewhere (benchmarks/results/mpgd-floor.md).

κ_L = ‖r‖/L (Landweber's step) where ‖r‖ ≤ σ√m (:data:`LANDWEBER_BELOW` = 1), else ∞, bounds the overshoot. In
A's singular directions the step multiplies r_j by 1 − (κ/‖r‖) s_j²; κ ≤ ‖r‖/L overshoots none, and the line minimum
of a blur, whose spectrum is mostly small s_j, overshoots the large ones many times over. While r is mostly signal
that overshoot is what fits the weak directions within N steps, and later steps take it back; once r is no larger
than y's noise (every step at large σ) it amplifies the noise into x̂0 each step. A mask (s_j ∈ {0, 1}) never
reaches the cap; what it changes elsewhere: benchmarks/results/mpgd-stability.md.

Given σ, DDIM η = 1 by default, not the reference code's 0.5. Where the cap binds (on SR ×4 at every step: ρ/4
and 4ρ give the same result) η = 0.5 lost PSNR as N grew, and η = 1 does not; it also gains on random and box
inpainting and costs a little on motion blur (benchmarks/results/mpgd-eta.md); on the exact priors its mean
gap rises a little on the inpaintings and blurs and falls on SR ×4 (methods_posterior.md). Without σ (no cap,
the reference code's ρ) η stays 0.5: there η = 1 lost PSNR on the blurs and SR ×4 (mpgd-eta.md). Both were
measured without a projection; the AE/Z variants take the same rule (pass ``eta`` to choose).

Without σ (a black-box ``loss``, or σ unknown): the reference code's settings for 3×256×256 images (17.5,
7.5, 4 at 20, 50, 100 steps, ≈ 375/N) rescaled by √(d/196608), d the per-sample size, and no cap.
Measurements: benchmarks/results/quality_sizes.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..kernels import mpgd_step
from ..kernels._checks import plain_numbers
from ..models.denoiser import check_sample_shape
from ._inverse import (DISCREPANCY_SHARE, Diagnostics, check_problem, check_sigma, data_part, discrepancy_pull,
                       finish_run, measured_entries, measurement_grad, route, sample_gains)
from ._loop import (Sampling, check_autograd, check_device, check_flag, check_number, check_steps, prepare,
                    takes_sampling)

__all__ = ["LANDWEBER_BELOW", "RHO_SIGMA_FLOOR", "SPACES", "Projection", "capped_grad", "default_rho", "mpgd",
           "noise_rho"]

SPACES = ("ae", "z")
_PROJ_SCALE = {"ae": 0.0075, "z": 0.01}
#: DDIM η given σ (the discrepancy-capped step), and without it (the reference code's, with its ρ schedule)
SIGMA_ETA, REFERENCE_ETA = 1.0, 0.5
Loss = Callable[[torch.Tensor], torch.Tensor]


def default_rho(steps: int, numel: int) -> float:
    """ρ = (375/N)·√(d/(3·256·256)) (module docstring, without σ), d = per-sample numel."""
    return 375.0 / steps * math.sqrt(numel / (3 * 256 * 256))


#: ρ's noise scale σ̃ is at least this share of y's RMS over its measured entries (module docstring)
RHO_SIGMA_FLOOR = 0.04
#: a step is at most Landweber's ‖r‖/L where ‖r‖² ≤ this times mσ² (module docstring; 0: never)
LANDWEBER_BELOW = 1.0


def noise_rho(steps: int, sigma: float, measured: torch.Tensor, gain: float | torch.Tensor,
              y_rms: torch.Tensor | None = None) -> torch.Tensor:
    """(B,) ρ = 4·(30/N)^(3/4)·σ̃√m/L (module docstring): m = ``measured`` (B,), L = ``gain`` ≥ ‖AᵀA‖ (or (B,)),
    σ̃ = max(σ, RHO_SIGMA_FLOOR·``y_rms``) (σ where ``y_rms`` is None). With
    the discrepancy cap ρ is an upper bound on the step; the factor 4 (rather than 1) let Gaussian blur reach the
    noise level at 30 steps and changed nothing where the cap binds (benchmarks/results/quality_sizes.md); the
    power 3/4 (rather than 1) keeps the blurs' fit as N grows (benchmarks/results/mpgd-eta.md)."""
    scale = sigma if y_rms is None else torch.clamp(RHO_SIGMA_FLOOR * y_rms, min=sigma)
    return 4.0 * (30.0 / steps) ** 0.75 * scale * measured.sqrt() / gain


def capped_grad(operator: Any, x0: torch.Tensor, y: torch.Tensor, limit: torch.Tensor, floor: torch.Tensor,
                gain: torch.Tensor | None = None, noise_power: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(κ·u, ‖r‖): the step on x̂0 with κ = min(``limit``, κ_σ, κ_L) per sample (module docstring); ``floor`` (B,)
    = σ√(κ_d m), the residual norm a step may not go below; κ_L = ‖r‖/L with L = ``gain`` (B,) ≥ ‖AᵀA‖ where
    ‖r‖² ≤ :data:`LANDWEBER_BELOW`·``noise_power`` ((B,) mσ²), else no limit (none where either is None). No host
    sync."""
    view = (-1,) + (1,) * (x0.dim() - 1)
    u, norm = measurement_grad(operator, x0, y)
    r = data_part(operator, operator.A(x0) - y).flatten(1)
    au = operator.A(u).flatten(1)
    qa = au.pow(2).sum(1).clamp(min=torch.finfo(x0.dtype).tiny)
    qb = -2 * (r * au).sum(1)
    qc = norm.pow(2) - floor.pow(2)
    disc = qb.pow(2) - 4 * qa * qc
    root = (-qb - disc.clamp(min=0).sqrt()) / (2 * qa)
    kappa_sigma = torch.where(qc <= 0, torch.zeros_like(qc), torch.where(disc >= 0, root, -qb / (2 * qa)))
    kappa = torch.minimum(limit, kappa_sigma.clamp(min=0))
    if gain is not None and noise_power is not None:
        noisy = norm.pow(2) <= LANDWEBER_BELOW * noise_power  # r no larger than y's noise: no overshoot
        kappa = torch.where(noisy, torch.minimum(kappa, norm / gain), kappa)
    return u * kappa.view(view), norm


def check_window(window: object) -> tuple[float, float]:
    window = plain_numbers(window)
    if (not isinstance(window, (tuple, list)) or len(window) != 2
            or not all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in window)
            or not 0 <= window[0] <= window[1] <= 1):
        raise ValueError(f"window must be (low, high) with 0 <= low <= high <= 1 (fractions of the "
                         f"training timesteps), got {window!r}")
    return float(window[0]), float(window[1])


def loss_grad(loss: Loss, x: torch.Tensor, name: str = "loss") -> tuple[torch.Tensor, torch.Tensor]:
    """(∇_x Σ_b loss(x)_b, loss (B,)): per-sample gradients of a per-sample loss, by autograd."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        value = loss(xg)
        if not isinstance(value, torch.Tensor) or value.shape != (x.shape[0],):
            raise ValueError(f"{name}(x0) must return a (B,) = ({x.shape[0]},) tensor of per-sample losses, "
                             f"got {getattr(value, 'shape', type(value).__name__)}")
        if not value.is_floating_point():
            raise TypeError(f"{name}(x0) must return real floating losses, got {value.dtype}: return the loss "
                            "in x0's dtype")
        if not value.requires_grad:
            raise ValueError(f"{name}(x0) does not depend on x0 through autograd (it detaches x0, or returns a "
                             "constant): MPGD steps along its gradient, so compute the loss from x0 with torch ops")
        (grad,) = torch.autograd.grad(value.sum(), xg)
    return grad, value.detach()


def check_round_trip(autoencoder: Any, shape: Sequence[int], dtype: torch.dtype | None,
                     device: torch.device | None) -> tuple[int, ...]:
    """The latents' (c, h, w) of images of ``shape`` (B, C, H, W): one encoder and one decoder pass on a zero
    image, before any model call; an autoencoder that does not give the image back at its own shape is refused."""
    with torch.no_grad():
        zero = torch.zeros((1, *shape[1:]), dtype=dtype or torch.float32, device=device or torch.device("cpu"))
        z = autoencoder.encode(zero)
        back = tuple(autoencoder.decode(z).shape[1:])
    if back != tuple(shape[1:]):
        raise ValueError(f"images of shape {tuple(shape[1:])} (of y through Aᵀy, or shape=) come back from the "
                         f"autoencoder as {back} (latents {tuple(z.shape[1:])}): give images whose sides are "
                         "multiples of its down-sampling factor and whose channels it takes")
    return tuple(z.shape[1:])


def measurement_loss(operator: Any, y: torch.Tensor) -> Loss:
    """x ↦ ‖y − A x‖ per sample (differentiable; for the AE/Z/LDM variants)."""
    return lambda x: data_part(operator, y - operator.A(x)).flatten(1).norm(dim=1)


@dataclass(frozen=True)
class Projection:
    """MPGD's on-manifold step (module docstring), checked when built.

    autoencoder: ``encode(x) -> z`` / ``decode(z) -> x`` (``diffsolve.models.Autoencoder``);
    space: ``"ae"`` | ``"z"``; window: (low, high) fractions of T where it applies;
    scale: the projected step's factor on ρ (None: 0.0075 AE, 0.01 Z).
    """

    autoencoder: Any
    space: str = "ae"
    window: tuple[float, float] = (0.3, 0.5)
    scale: float | None = None

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {self.space!r}")
        ae = self.autoencoder
        if not (callable(getattr(ae, "encode", None)) and callable(getattr(ae, "decode", None))):
            raise TypeError(f"autoencoder must have encode(x) and decode(z) (a diffsolve.models.Autoencoder), "
                            f"got {type(ae).__name__}")
        object.__setattr__(self, "window", check_window(self.window))
        scale = _PROJ_SCALE[self.space] if self.scale is None else check_number("scale", self.scale, 0.0)
        object.__setattr__(self, "scale", scale)


def _validate(projection: Any, loss: Any, operator: Any, y: Any) -> None:
    if projection is not None and not isinstance(projection, Projection):
        raise TypeError(f"projection must be None or a diffsolve.solvers.mpgd.Projection(autoencoder, space, window, "
                        f"scale), got {type(projection).__name__}")
    if loss is not None and not callable(loss):
        raise TypeError(f"loss must be callable as loss(x0) -> (B,), got {type(loss).__name__}")
    if loss is None and (operator is None or y is None):
        raise ValueError("give operator and y (the measurement), or loss= (a black-box guidance loss)")


@takes_sampling
def mpgd(denoiser: Any, operator: Any, y: torch.Tensor | None, sampling: Sampling, *, rho: float | None = None,
         eta: float | None = None, sigma: float | None = None, projection: Projection | None = None,
         loss: Loss | None = None, shape: Sequence[int] | None = None, discrepancy: bool = True) -> Any:
    """Reconstruct x from y = A x + n (or guide by ``loss``) with N = ``sampling.steps`` MPGD steps.

    Args:
        denoiser: ``denoiser(x, t) -> eps`` with ``alphas_cumprod`` (called under no_grad).
        operator, y: linear operator and measurement (B, ...); the image shape follows from Aᵀy.
            May be None when ``loss`` is given (then ``shape`` (B, C, H, W) is required, and
            ``sampling.dtype``/``device`` set the samples').
        sampling: the shared options (:class:`~diffsolve.solvers.Sampling`; or pass them as keywords).
        rho: ρ > 0 (default: from σ, or :func:`default_rho` without it).
        eta: DDIM η ∈ [0, 1]; None: 1 given σ, else 0.5 (module docstring).
        sigma: the measurement noise std σ > 0 in y's units, or None (module docstring: the default ρ and
            the discrepancy cap need it; None keeps the σ-free default and no cap).
        projection: None (MPGD without projection) or :class:`Projection` (MPGD-AE / MPGD-Z).
        loss: ``loss(x0) -> (B,)`` replacing ‖y − A x0‖ (autograd on x0 only).
        discrepancy: end with a residual y's noise explains (``_inverse.discrepancy_pull``; with y and sigma > 0,
            without loss); False: the paper's result.
    Returns:
        x (B, C, H, W), or (x, info) with ``return_info``: {"residual": (N, B) the loss at x̂0 of each step
        (‖y − A x̂0‖), "projected": (N,) bool, "timesteps": (N,), and given y "final_residual" (B,) ‖A x − y‖/√m}.
    """
    check_steps(sampling.steps)  # before any step size is derived from it
    _validate(projection, loss, operator, y)
    if projection is not None or loss is not None:  # ∇ by autograd (plain MPGD's is closed-form)
        check_autograd("mpgd", "the autoencoder" if projection is not None else "the loss")
    eta = (SIGMA_ETA if sigma is not None else REFERENCE_ETA) if eta is None else check_number("eta", eta, 0.0, 1.0)
    x_T = sampling.x_T
    discrepancy = check_flag("discrepancy", discrepancy)
    operator = route(operator, sampling.backend)  # before any kernel runs, the shape check's included
    if shape is not None:
        shape = check_sample_shape(None, plain_numbers(shape), "shape")
    if y is not None:
        derived = check_problem(operator, y, x_T)
        if shape is not None and tuple(shape) != derived:
            raise ValueError(f"shape={tuple(shape)} disagrees with the measurement: A maps images of shape "
                             f"{derived} to y; leave shape out when y is given")
        shape = derived
    elif shape is None and x_T is None:
        raise ValueError("without y, give shape=(B, C, H, W) (or x_T) for the samples")
    elif shape is None:
        shape = tuple(x_T.shape)
    if sigma is not None:
        sigma = check_sigma(sigma, why="MPGD's step and cap scale with σ; for noiseless data leave sigma out")
        if y is None or loss is not None:
            raise ValueError("sigma (the measurement noise) goes with operator and y, not with loss=; leave it out")
    if projection is not None:  # the AE/Z step must see the image at its own size, checked before any model call
        like = y if y is not None else x_T if isinstance(x_T, torch.Tensor) else None  # prepare's dtype/device rule
        check_round_trip(projection.autoencoder, shape, sampling.dtype if like is None else like.dtype,
                         check_device(sampling.device) if like is None else like.device)
    numel = math.prod(shape[1:])
    rho_given = None if rho is None else check_number("rho", rho, 0.0)
    rho = default_rho(sampling.steps, numel) if rho is None else rho_given
    space = "none" if projection is None else projection.space
    loop = prepare(denoiser, shape, sampling, like=y, name=f"mpgd-{space}")
    total = loop.denoiser.alphas_cumprod.numel()
    lo, hi = (0.0, 0.0) if projection is None else projection.window
    projected = [projection is not None and lo < t / total < hi for t in loop.schedule.timesteps.tolist()]
    autoencoder = None if projection is None else projection.autoencoder
    target = loss if loss is not None else measurement_loss(operator, y)
    if sigma is not None:  # per-sample ρ from the noise level and the discrepancy floor σ√(κ_d m) (module docstring)
        measured = measured_entries(operator, y).to(device=y.device, dtype=y.dtype)
        y_rms = data_part(operator, y).flatten(1).norm(dim=1) / measured.sqrt()
        gain = sample_gains(operator, y.new_zeros(shape))  # (B,) L per sample
        rho_b = noise_rho(sampling.steps, sigma, measured, gain, y_rms)
        rho_b = rho_b if rho_given is None else torch.full_like(rho_b, rho_given)
        floor = sigma * (DISCREPANCY_SHARE * measured).sqrt()
        noise_power = measured * sigma**2
    info = Diagnostics(sampling.return_info)
    x = loop.x
    for i in loop.steps():
        a_t, a_s = loop.alpha_t[i], loop.alpha_s[i]
        with torch.no_grad():  # 1. ε̂ and x̂0, no UNet backward
            eps = loop.eps(x, i)
            x0 = (x - (1 - a_t) ** 0.5 * eps) / a_t**0.5
        step = rho / a_s**0.5
        # 2. the gradient of the loss at x̂0 (through the autoencoder inside the AE/Z window)
        if projected[i] and space == "ae":
            grad, value = loss_grad(lambda v: target(autoencoder.decode(autoencoder.encode(v))), x0)
            step = step * projection.scale
        elif projected[i]:  # "z": step on the latent, decode, keep the autoencoder's residual
            with torch.no_grad():
                z = autoencoder.encode(x0)
                recon = autoencoder.decode(z)
            gz, value = loss_grad(lambda v: target(autoencoder.decode(v)), z)
            with torch.no_grad():
                z_new = z - (step * projection.scale) * gz
                x0_new = autoencoder.decode(z_new) + (x0 - recon)
            grad, step = x0 - x0_new, 1.0  # x̂0* = x̂0 − 1·(x̂0 − x̂0*)
        elif loss is None and sigma is not None:  # κ·u with the discrepancy cap; the step is in κ
            with torch.no_grad():
                grad, value = capped_grad(operator, x0, y, rho_b / a_s**0.5, floor, gain, noise_power)
            step = 1.0
        elif loss is None:
            with torch.no_grad():
                grad, value = measurement_grad(operator, x0, y)
        else:
            grad, value = loss_grad(loss, x0)
        info.add("residual", value)
        with torch.no_grad():  # 3. x̂0* = x̂0 − step·grad, then DDIM_η to s, one fused kernel
            out = mpgd_step(x, eps, grad, a_t, a_s, step_size=step, eta=eta, return_x0=loop.callback is not None,
                            backend=sampling.backend, **loop.step_noise(i, eta > 0))
        x, x0_star = out if loop.callback is not None else (out, None)
        if loop.callback is not None:
            loop.record(i, x, x0_star)
    if discrepancy and y is not None and loss is None and sigma:  # within the noise of y (1 − ᾱ_t: last model call)
        x = discrepancy_pull(operator, x, y, sigma, 1 - loop.alpha_t[-1])
    if y is None:  # guidance by a loss: no measurement to be consistent with
        x = loop.finish(x)
        if sampling.return_info:
            return x, info.stacked(projected=torch.tensor(projected), timesteps=loop.schedule.timesteps.clone())
        return x
    return finish_run("mpgd", loop, operator, x, y, sigma, info, projected=torch.tensor(projected))  # one sync
