"""Per-image quality scores of reconstructions (torchmetrics), shared by ``restore``, ``demo`` and ``eval``.

- :func:`scores` ``(x, x_true) -> {"psnr": (B,), "ssim": (B,)}``: PSNR (dB) and SSIM of images in
  [−1, 1] mapped to [0, 1], computed in float64 on the CPU; x is clamped to [−1, 1] first (a
  reconstruction may overshoot; the truth is not touched). SSIM uses torchmetrics' Gaussian window (Wang et al.
  2004): σ = 1.5, 11 pixels, the image reflect-padded by 5 on each side. Along a side of 5 pixels or fewer (too
  short to reflect-pad by 5) the window shrinks to the image: radius side − 1, σ = radius / 3.5 (torchmetrics
  cuts its window at 3.5 σ); a side of 1 gets a one-pixel window (SSIM's luminance term alone).
- :func:`psnr` ``(x, x_true) -> (B,)``: the PSNR alone.
- :func:`colour_cast` ``(x, x_true) -> (B,)``: the largest shift of a channel's mean, max_c |mean(x̂_c) − mean(x_c)|,
  in [0, 1] units (x clamped as for PSNR): a tint over the whole image that PSNR alone does not single out.
  :func:`scores` returns it as "cast".
- :func:`data_consistency` ``(operator, x, y, sigma) -> (B,)``: ‖A x − y‖ / (σ √m) per sample; 1 means
  the residual matches the noise level.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["colour_cast", "data_consistency", "psnr", "scores"]


def _unit(x: torch.Tensor, clamp: bool) -> torch.Tensor:
    x = x.detach().double()
    return ((x.clamp(-1, 1) if clamp else x) + 1).cpu() / 2


def _check(x: torch.Tensor, x_true: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or not isinstance(x_true, torch.Tensor):
        raise TypeError(f"x and x_true must be tensors, got {type(x).__name__} and {type(x_true).__name__}")
    if x.shape != x_true.shape or x.dim() != 4:
        raise ValueError(f"x and x_true must both be (B, C, H, W) of one shape, got {tuple(x.shape)} and "
                         f"{tuple(x_true.shape)}")


def psnr(x: torch.Tensor, x_true: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (B,) in dB of ``x`` against ``x_true`` (both (B, C, H, W) in [−1, 1])."""
    _check(x, x_true)
    from torchmetrics.functional.image import peak_signal_noise_ratio

    return peak_signal_noise_ratio(_unit(x, True), _unit(x_true, False), data_range=1.0, reduction="none",
                                   dim=(1, 2, 3)).float()


def colour_cast(x: torch.Tensor, x_true: torch.Tensor) -> torch.Tensor:
    """Per-image colour cast (B,): max over channels of |mean(x̂_c) − mean(x_c)| in [0, 1] units (module docstring)."""
    _check(x, x_true)
    return (_unit(x, True).mean((2, 3)) - _unit(x_true, False).mean((2, 3))).abs().amax(1).float()


def scores(x: torch.Tensor, x_true: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image PSNR (dB), SSIM and colour cast (B,) of ``x`` against ``x_true`` (module docstring)."""
    _check(x, x_true)
    from torchmetrics.functional.image import structural_similarity_index_measure

    a, b = _unit(x, True), _unit(x_true, False)
    radii = [min(5, side - 1) for side in a.shape[-2:]]  # the reflect padding must stay below the side
    sigma = [1.5 if r == 5 else max(r, 0.25) / 3.5 for r in radii]  # torchmetrics' window: radius int(3.5 σ + 0.5)
    ssim = structural_similarity_index_measure(a, b, data_range=1.0, reduction="none", sigma=sigma)
    return {"psnr": psnr(x, x_true), "ssim": ssim.float(), "cast": colour_cast(x, x_true)}


def data_consistency(operator: Any, x: torch.Tensor, y: torch.Tensor, sigma: float) -> torch.Tensor:
    """Per-sample data consistency ‖A x − y‖₂ / (σ √m), a (B,) float64 tensor on the CPU.

    ``m`` is the number of measured entries of one sample's measurement ``y[b]`` (``operator.measured_entries``:
    all of them, or a mask's observed pixels), the norm runs over those entries only (``operator.data_part``:
    whatever finite values y holds at a mask's missing pixels are not data; a NaN there stays NaN), and
    ``sigma`` is the measurement noise std in the units of ``y`` ([−1, 1] for the command line). For
    y = A x_true + σ n, n ~ N(0, I), the truth scores ≈ 1: **1 means the residual matches the noise level**;
    well below 1 means the reconstruction over-fits the noise, well above 1 that it does not explain the
    measurement. ``x`` is used as given (not clamped). ValueError for sigma <= 0 or non-finite, or when A x and
    y differ in shape.
    """
    from .kernels._checks import plain_number

    sigma = plain_number(sigma)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not (0 < sigma < float("inf")):
        raise ValueError(f"sigma must be a finite number > 0 (the measurement noise std), got {sigma!r}")
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"x and y must be tensors, got {type(x).__name__} and {type(y).__name__}")
    with torch.no_grad():
        ax = operator.A(x.detach())
        if ax.shape != y.shape:
            raise ValueError(f"operator.A(x) has shape {tuple(ax.shape)} but y has {tuple(y.shape)}; give the y "
                             "measured by this operator")
        diff = ax - y.detach()
        part = getattr(operator, "data_part", None)  # the entries that carry data (a mask's observed pixels)
        r = (part(diff) if callable(part) else diff).double().reshape(y.shape[0], -1)
        count = getattr(operator, "measured_entries", None)
        m = count(y).to(r.device) if callable(count) else torch.full((r.shape[0],), float(r.shape[1]),
                                                                      dtype=torch.float64, device=r.device)
        return (torch.linalg.vector_norm(r, dim=1) / (float(sigma) * m.sqrt())).cpu()
