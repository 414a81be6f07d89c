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
from ._inverse import Diagnostics, check_problem, route
from ._loop import Sampling, check_device, check_number, check_steps, prepare, takes_sampling
from .mpgd import Loss, default_rho, loss_grad, measurement_loss

__all__ = ["mpgd_ldm"]


def _latent_shape(autoencoder: Any, image_shape: Sequence[int], dtype: torch.dtype,
                  device: torch.device) -> tuple[int, ...]:
    """(B, c, h, w) of the latents for images of ``image_shape``: one encoder pass on one zero image."""
    with torch.no_grad():
        z = autoencoder.encode(torch.zeros((1, *image_shape[1:]), dtype=dtype, device=device))
    return (image_shape[0], *z.shape[1:])


@takes_sampling
def mpgd_ldm(latent_denoiser: Any, autoencoder: Any, operator: Any, y: torch.Tensor | None, sampling: Sampling, *,
             rho: float | None = None, eta: float = 0.5, loss: Loss | None = None,
             shape: Sequence[int] | None = None, latent_shape: Sequence[int] | None = None) -> Any:
    """Reconstruct x from y = A x + n with a latent diffusion model and its autoencoder (module docstring).

    Args:
        latent_denoiser: ``denoiser(z, t) -> eps`` on latents, with ``alphas_cumprod``.
        autoencoder: ``encode(x) -> z`` / ``decode(z) -> x`` (``diffsolve.models.Autoencoder``).
        operator, y: linear operator and measurement (B, ...) on images; None when ``loss`` is given
            (then ``shape`` (B, C, H, W) of the images, or ``latent_shape``, is required).
        sampling: the shared options (:class:`~diffsolve.solvers.Sampling`; ``x_T`` is the starting
            latent noise (B, c, h, w)).
        latent_shape: (B, c, h, w); default: from one encoder pass on a zero image.
        rho: ρ > 0 (default ``default_rho(steps, latent numel)``); eta: DDIM η ∈ [0, 1].
        loss: ``loss(x) -> (B,)`` of the decoded image replacing ‖y − A x‖.
    Returns:
        images x = D(z_0) (B, C, H, W), or (x, info) with ``return_info``: {"residual": (N, B) loss at
        D(ẑ0), "timesteps": (N,)}.
    """
    if not (callable(getattr(autoencoder, "encode", None)) and callable(getattr(autoencoder, "decode", None))):
        raise TypeError(f"autoencoder must have encode(x) and decode(z), got {type(autoencoder).__name__}")
    if loss is not None and not callable(loss):
        raise TypeError(f"loss must be callable as loss(x) -> (B,), got {type(loss).__name__}")
    if loss is None and (operator is None or y is None):
        raise ValueError("give operator and y (the measurement), or loss= (a black-box guidance loss)")
    check_steps(sampling.steps)  # before any step size is derived from it
    eta = check_number("eta", eta, 0.0, 1.0)
    z_T, dtype = sampling.x_T, sampling.dtype
    operator = route(operator, sampling.backend)  # before any kernel runs, the shape check's included
    device = check_device(sampling.device)
    if y is not None:
        shape = check_problem(operator, y)
        dtype, device = y.dtype, y.device
    if z_T is not None and not isinstance(z_T, torch.Tensor):
        raise TypeError(f"x_T (the starting latents) must be a floating tensor (B, c, h, w), got {type(z_T).__name__}")
    if latent_shape is None and shape is not None:
        latent_shape = _latent_shape(autoencoder, shape, dtype or torch.float32, device or torch.device("cpu"))
    if z_T is not None and latent_shape is not None and tuple(z_T.shape) != tuple(latent_shape):
        raise ValueError(f"x_T (the starting latents) has shape {tuple(z_T.shape)} but the images {tuple(shape or ())} (of y, through Aᵀy, or "
                         f"shape=) have latents of shape {tuple(latent_shape)}")
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
    if sampling.return_info:
        if y is None:  # guidance by a loss: no measurement to be consistent with
            return x, info.stacked(timesteps=loop.schedule.timesteps.clone())
        return x, info.finish(operator, x, y, loop.schedule.timesteps)
    return x
