"""Blur kernels: the DPS Gaussian (scipy's ``gaussian_filter`` of a centred delta) and our own
seeded random-trajectory motion kernels. All float64 CPU tensors."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..kernels._checks import plain_number

__all__ = ["gaussian_taps", "motion_kernel"]


def _reflect_index(j: np.ndarray, n: int) -> np.ndarray:
    """scipy.ndimage mode 'reflect' (d c b a | a b c d | d c b a): half-sample symmetric."""
    j = np.mod(j, 2 * n)
    return np.where(j >= n, 2 * n - 1 - j, j)


def gaussian_taps(kernel_size: int = 61, std: float = 3.0, truncate: float = 4.0) -> torch.Tensor:
    """1-D taps f (kernel_size,) with outer(f, f) = scipy ``gaussian_filter(delta, sigma=std)``.

    ``delta`` is a kernel_size² image with a 1 at its centre; scipy filters each axis with the
    normalized Gaussian exp(−x²/2σ²), |x| <= r = int(truncate·σ + 0.5), in 'reflect' mode, so its
    result is exactly separable. With kernel_size >= 2r + 1 the taps are that Gaussian (zero
    outside the central 2r + 1: 25 for σ = 3); smaller sizes fold the tails back as scipy does.
    """
    kernel_size, std = plain_number(kernel_size), plain_number(std)
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size!r}")
    if not isinstance(std, (int, float)) or not 0 < std < float("inf"):
        raise ValueError(f"std must be a positive number, got {std!r}")
    radius = int(truncate * float(std) + 0.5)
    offsets = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / float(std) ** 2 * offsets.astype(np.float64) ** 2)
    phi = phi / phi.sum()
    centre = kernel_size // 2
    taps = np.zeros(kernel_size)
    for i in range(kernel_size):  # response at i = Σ_x phi[x] · delta[reflect(i + x)]
        taps[i] = phi[_reflect_index(i + offsets, kernel_size) == centre].sum()
    return torch.from_numpy(taps)


def motion_kernel(kernel_size: int = 61, intensity: float = 0.5, seed: int = 0) -> torch.Tensor:
    """A random camera-shake kernel (kernel_size, kernel_size), non-negative, sum 1.

    Our generator (numpy PCG64 from ``seed``): a path of 8·kernel_size unit steps whose heading
    turns with a smoothed random angular velocity (spread 0.02 + 0.3·intensity rad/step),
    scaled so its bounding box spans intensity·(kernel_size − 1) px and centred on the kernel,
    splatted bilinearly onto the grid. intensity 0 is a delta (no blur); 1 spans the whole kernel.
    """
    kernel_size, intensity, seed = plain_number(kernel_size), plain_number(intensity), plain_number(seed)
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size!r}")
    if not isinstance(intensity, (int, float)) or not 0 <= intensity <= 1:
        raise ValueError(f"intensity must be in [0, 1], got {intensity!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must lie in [0, 2**64), got {seed}")
    rng = np.random.default_rng(seed)
    steps = 8 * kernel_size
    spin = rng.normal(0.0, 0.02 + 0.3 * intensity, steps)
    omega = np.convolve(spin, np.ones(8) / 8, mode="same")  # smooth turning: no zig-zag per step
    heading = rng.uniform(0, 2 * math.pi) + np.cumsum(omega)
    speed = 1.0 + 0.5 * intensity * rng.random(steps)
    path = np.cumsum(np.stack((np.sin(heading), np.cos(heading)), 1) * speed[:, None], axis=0)
    lo, hi = path.min(0), path.max(0)
    span = max(float((hi - lo).max()), 1e-12)
    path = (path - (lo + hi) / 2) * (intensity * (kernel_size - 1) / span) + kernel_size // 2
    path = np.clip(path, 0, kernel_size - 1)  # only rounding can reach past the edge
    kernel = np.zeros((kernel_size + 1, kernel_size + 1))
    base = np.floor(path).astype(int)
    frac = path - base
    for dy in (0, 1):
        for dx in (0, 1):
            wgt = (frac[:, 0] if dy else 1 - frac[:, 0]) * (frac[:, 1] if dx else 1 - frac[:, 1])
            np.add.at(kernel, (base[:, 0] + dy, base[:, 1] + dx), wgt)
    kernel = kernel[:kernel_size, :kernel_size]  # the extra row/column only ever gets weight 0
    return torch.from_numpy(kernel / kernel.sum())
