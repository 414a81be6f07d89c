"""MATLAB-style anti-aliased bicubic down-sampling (``imresize(x, 1/s)``) as a per-axis matrix.

Keys' cubic with a = −0.5; for scale 1/s the kernel is stretched by s (width 4s taps: the
anti-aliasing filter). Output i (1-based) sits at input coordinate u = s·i + (1 − s)/2; its
weights (1/s)·cubic((u − j)/s) over the taps j are normalized to sum 1, and indices outside
[1, n] are mirrored with the edge repeated (half-sample symmetric), as MATLAB does.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..kernels._checks import plain_number

__all__ = ["bicubic_matrix", "cubic"]


def cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel."""
    ax = np.abs(x)
    near = ((a + 2) * ax - (a + 3)) * ax * ax + 1
    far = ((a * ax - 5 * a) * ax + 8 * a) * ax - 4 * a
    return np.where(ax <= 1, near, np.where(ax < 2, far, 0.0))


def bicubic_matrix(n_in: int, factor: int) -> torch.Tensor:
    """M (ceil(n_in / factor), n_in) float64 with (M x)[i] = MATLAB imresize(x, 1/factor)[i]."""
    factor = plain_number(factor)
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be a positive int, got {factor!r}")
    n_out = math.ceil(n_in / factor)
    s = float(factor)
    u = s * np.arange(1, n_out + 1) + 0.5 * (1 - s)
    left = np.floor(u - 2 * s)  # kernel half-width 2s
    taps = int(math.ceil(4 * s)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    wts = cubic((u[:, None] - idx) / s) / s
    wts = wts / wts.sum(1, keepdims=True)
    j = np.mod(idx.astype(np.int64) - 1, 2 * n_in)  # mirror: 1..n, n..1, repeated
    j = np.where(j >= n_in, 2 * n_in - 1 - j, j)
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.repeat(np.arange(n_out), taps), j.ravel()), wts.ravel())
    return torch.from_numpy(m)
