"""MPGD for latent diffusion models (He et al. 2024, §4.3, Algorithm 3): guidance on the latent ẑ0.

The diffusion runs on latents z (a diffusers ``UNet2DConditionModel`` with its text embeddings given
as tensors, or a ``UNet2DModel`` latent model, wrapped by ``DiffusersDenoiser``). Per step t → s:

    ẑ0  = (z_t − √(1−ᾱ_t) ε̂)/√ᾱ_t                 (ε̂ = ε_θ(z_t, t), no UNet backward)
    ẑ0* = ẑ0 − (ρ/√ᾱ_s) ∇_{ẑ0} ‖y − A(D(ẑ0))‖      (autograd through the decoder only)
    z_s = DDIM_η(z_t; ẑ0*, ε̂)

and the image is decoded once at the end, x = D(z_0). The paper's "shortcut preserves the manifold":
ẑ0* stays in the latent space, so D maps it onto the image manifold. ``loss`` replaces the
measurement loss by any differentiable ``loss(x) -> (B,)`` of the decoded image.
Default ρ: :func:`~diffsolve.solvers.mpgd.default_rho` on the latent size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ..kernels import mpgd_step
from ..kernels._checks import plain_numbers
from ..models.denoiser import check_sample_shape
from ._inverse import Diagnostics, check_problem, check_sigma, final_residual, route, warn_if_unfit
from ._loop import Sampling, check_autograd, check_device, check_number, check_steps, prepare, takes_sampling
from .mpgd import Loss, check_round_trip, default_rho, loss_grad, measurement_loss

__all__ = ["mpgd_ldm"]


def _check_shape(name: str, shape: Any) -> tuple[int, ...]:
    shape = check_sample_shape(None, plain_numbers(shape), name)
    if len(shape) != 4:
        raise ValueError(f"{name} must be (B, C, H, W), got {shape}")
    return shape


def _check_latent_multiple(denoiser: Any, image_shape: Sequence[int], latent_shape: Sequence[int]) -> None:
    """The latent model's side multiple m, stated in image pixels (f·m) before the denoiser's own check."""
    m = int(getattr(denoiser, "spatial_multiple", 1) or 1)
    h, w = latent_shape[-2:]
    if m > 1 and (h % m or w % m):
        f = image_shape[-1] // w
        crop = f"{h // m * m * f}×{w // m * m * f}" if min(h, w) >= m else f"at least {m * f}×{m * f}"
        raise ValueError(f"images of {image_shape[-2]}×{image_shape[-1]} have latents of {h}×{w}, but the latent "
                         f"model needs latent sides that are multiples of {m}: give images with sides multiples of "
                         f"{f * m} ({crop}), or wrap the latent denoiser in diffsolve.models.PaddedDenoiser")


@takes_sampling
def mpgd_ldm(latent_denoiser: Any, autoencoder: Any, operator: Any, y: torch.Tensor | None, sampling: Sampling, *,
             rho: float | None = None, eta: float = 0.5, loss: Loss | None = None,
             shape: Sequence[int] | None = None, latent_shape: Sequence[int] | None = None,
             sigma: float | None = None) -> Any:
    """Reconstruct x from y = A x + n with a latent diffusion model and its autoencoder (module docstring).

    Args:
        latent_denoiser: ``denoiser(z, t) -> eps`` on latents, with ``alphas_cumprod``.
        autoencoder: ``encode(x) -> z`` / ``decode(z) -> x`` (``diffsolve.models.Autoencoder``).
        operator, y: linear operator and measurement (B, ...) on images; None when ``loss`` is given
            (then ``shape`` (B, C, H, W) of the images, or ``latent_shape``, is required).
        sampling: the shared options (:class:`~diffsolve.solvers.Sampling`; ``x_T`` is the starting
            latent noise (B, c, h, w)).
        latent_shape: (B, c, h, w); default: from one encoder pass on a zero image (and one decoder pass: images
            the autoencoder does not give back at their own size, sides off its factor, are refused).
        rho: ρ > 0 (default ``default_rho(steps, latent numel)``); eta: DDIM η ∈ [0, 1].
        loss: ``loss(x) -> (B,)`` of the decoded image replacing ‖y − A x‖.
        sigma: y's noise std σ > 0 (optional; not with ``loss``): the result's data consistency ‖A x − y‖/(σ√m) is
            reported, and a result the noise cannot explain warns (``DataConsistencyWarning``), as for every method
            given σ. The steps do not use it (the paper's ρ), and no closing pull moves D(z_0) off the decoder's
            images.
    Returns:
        images x = D(z_0) (B, C, H, W), or (x, info) with ``return_info``: {"residual": (N, B) loss at
        D(ẑ0), "timesteps": (N,), with y also "final_residual": (B,) ‖A x − y‖/√m, and given σ
        "data_consistency": (B,) that over σ}.
    """
    if not (callable(getattr(autoencoder, "encode", None)) and callable(getattr(autoencoder, "decode", None))):
        raise TypeError(f"autoencoder must have encode(x) and decode(z), got {type(autoencoder).__name__}")
    if loss is not None and not callable(loss):
        raise TypeError(f"loss must be callable as loss(x) -> (B,), got {type(loss).__name__}")
    if loss is None and (operator is None or y is None):
        raise ValueError("give operator and y (the measurement), or loss= (a black-box guidance loss)")
    if sigma is not None and y is None:
        raise ValueError("sigma is the noise std of the measurement y; without y (guidance by loss=) leave it out")
    sigma = None if sigma is None else check_sigma(sigma)
    check_steps(sampling.steps)  # before any step size is derived from it
    check_autograd("mpgd_ldm", "the decoder")
    eta = check_number("eta", eta, 0.0, 1.0)
    z_T, dtype = sampling.x_T, sampling.dtype
    operator = route(operator, sampling.backend)  # before any kernel runs, the shape check's included
    device = check_device(sampling.device)
    shape = None if shape is None else _check_shape("shape", shape)
    latent_shape = None if latent_shape is None else _check_shape("latent_shape", latent_shape)
    if y is not None:
        derived = check_problem(operator, y)
        if shape is not None and shape != derived:
            raise ValueError(f"shape={shape} disagrees with the measurement: A maps images of shape {derived} to y; "
                             "leave shape out when y is given")
        shape = derived
        dtype, device = y.dtype, y.device
    if z_T is not None and not isinstance(z_T, torch.Tensor):
        raise TypeError(f"x_T (the starting latents) must be a floating tensor (B, c, h, w), got {type(z_T).__name__}")
    if shape is not None:
        derived = (shape[0], *check_round_trip(autoencoder, shape, dtype, device))
        if latent_shape is not None and latent_shape != derived:
            raise ValueError(f"latent_shape={latent_shape} disagrees with the images' {shape}, whose latents have "
                             f"shape {derived}; give one of shape= and latent_shape=")
        latent_shape = derived
        _check_latent_multiple(latent_denoiser, shape, latent_shape)
    if z_T is not None and latent_shape is not None and tuple(z_T.shape) != tuple(latent_shape):
        raise ValueError(f"x_T (the starting latents) has shape {tuple(z_T.shape)} but the images "
                         f"{tuple(shape or ())} (of y, through Aᵀy, or shape=) have latents of shape "
                         f"{tuple(latent_shape)}")
    if z_T is not None:
        latent_shape = tuple(z_T.shape)
    if latent_shape is None:
        raise ValueError("without y, give shape=(B, C, H, W) of the images or latent_shape=(B, c, h, w)")
    numel = math.prod(latent_shape[1:])
    rho = default_rho(sampling.steps, numel) if rho is None else check_number("rho", rho, 0.0)
    loop = prepare(latent_denoiser, latent_shape, sampling, like=y, name="mpgd-ldm", x_name="x_T")
    target = loss if loss is not None else measurement_loss(operator, y)
    info = Diagnostics(sampling.return_info)
    z = loop.x
    for i in loop.steps():
        a_t, a_s = loop.alpha_t[i], loop.alpha_s[i]
        with torch.no_grad():  # 1. ε̂ and ẑ0 on the latents
            eps = loop.eps(z, i)
            z0 = (z - (1 - a_t) ** 0.5 * eps) / a_t**0.5
        grad, value = loss_grad(lambda v: target(autoencoder.decode(v)), z0)  # 2. ∇ through the decoder
        info.add("residual", value)
        with torch.no_grad():  # 3. ẑ0* and the DDIM step, one fused kernel
            out = mpgd_step(z, eps, grad, a_t, a_s, step_size=rho / a_s**0.5, eta=eta,
                            return_x0=loop.callback is not None, backend=sampling.backend,
                            **loop.step_noise(i, eta > 0))
        z, z0_star = out if loop.callback is not None else (out, None)
        if loop.callback is not None:
            loop.record(i, z, z0_star)
    z = loop.finish(z)
    with torch.no_grad():
        x = autoencoder.decode(z)
    if y is None:  # guidance by a loss: no measurement to be consistent with
        return (x, info.stacked(timesteps=loop.schedule.timesteps.clone())) if sampling.return_info else x
    final = final_residual(operator, x, y) if sigma is not None or sampling.return_info else None
    warn_if_unfit("mpgd_ldm", operator, x, y, sigma, len(loop.schedule), final=final, stacklevel=4)  # after the loop
    if sampling.return_info:
        return x, info.finish(operator, x, y, loop.schedule.timesteps, sigma=sigma, final=final)
    return x
