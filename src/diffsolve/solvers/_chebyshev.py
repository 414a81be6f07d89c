"""f(P) v for a symmetric positive P with spectrum in [lo, hi], by a truncated Chebyshev series.

    f(p) ≈ Σ_{k=0..n} c_k T_k(u),   u = (2p − lo − hi)/(hi − lo) ∈ [−1, 1]

The coefficients c_k are host floats (``numpy.polynomial.chebyshev.chebinterpolate`` at the Chebyshev points),
computed before a solver's loop; the series is applied with Clenshaw's recurrence, one product with P per
degree and no inner product, so nothing in it waits on the device. For a function analytic on [lo, hi] the
coefficients decay geometrically and Σ_{k>n} |c_k| bounds the error of the truncation in the spectral norm:
n is the smallest degree where that tail is below ``tol`` · max |f|.

Used by DAPS (``solvers/daps.py``): K Langevin steps on a Gaussian target are one linear-Gaussian map of P,
whose two functions are smooth on P's spectrum, so a short series replaces K products with A and Aᵀ.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from numpy.polynomial import chebyshev

__all__ = ["chebyshev_apply", "chebyshev_series"]

#: the degree at which the coefficients are computed (and the largest one :func:`chebyshev_series` returns)
MAX_DEGREE = 256
#: coefficients below this share of Σ|c_k| are the interpolation's float64 round-off, not a tail to keep
ROUNDOFF = 1e-14


def chebyshev_series(f: Callable[[np.ndarray], np.ndarray], lo: float, hi: float, tol: float,
                     max_degree: int = MAX_DEGREE) -> np.ndarray | None:
    """c_0..c_n of f on [lo, hi] (module docstring), n the smallest degree with Σ_{k>n} |c_k| ≤ tol·max|f|;
    None where even ``max_degree`` leaves a larger tail (f too rough on the interval for a short series).
    ``f`` maps a float64 array of points in [lo, hi] to its values; lo < hi."""
    if not lo < hi:
        raise ValueError(f"the interval must have lo < hi, got [{lo}, {hi}]")
    coefs = chebyshev.chebinterpolate(lambda u: f(0.5 * (hi - lo) * u + 0.5 * (hi + lo)), max_degree)
    size = np.abs(f(np.linspace(lo, hi, 2 * max_degree + 1))).max()
    if size == 0:
        return np.zeros(1)
    mags = np.abs(coefs)
    mags[mags <= ROUNDOFF * mags.sum()] = 0  # the float64 interpolation's own round-off is no tail
    tails = np.cumsum(mags[::-1])[::-1]  # tails[k] = Σ_{j≥k} |c_j|: the error of keeping c_0..c_{k−1}
    ok = np.nonzero(tails <= tol * size)[0]
    if ok.size == 0:
        return None
    return coefs[:max(int(ok[0]), 1)]


def chebyshev_apply(apply: Callable[[torch.Tensor], torch.Tensor], v: torch.Tensor, coefs: np.ndarray,
                    lo: float, hi: float) -> torch.Tensor:
    """Σ_k c_k T_k(M) v with M = (2P − (lo + hi) I)/(hi − lo), P v = ``apply(v)`` (Clenshaw's recurrence:
    len(coefs) − 1 products with P). v (B, ...) any shape ``apply`` takes; coefs host floats."""
    scale, shift = 2.0 / (hi - lo), (hi + lo) / (hi - lo)

    def m(u: torch.Tensor) -> torch.Tensor:
        return scale * apply(u) - shift * u

    c = [float(k) for k in coefs]
    if len(c) == 1:
        return c[0] * v
    b1, b2 = c[-1] * v, torch.zeros_like(v)  # b_{n}, b_{n+1}
    for ck in reversed(c[1:-1]):  # b_k = c_k v + 2 M b_{k+1} − b_{k+2}, k = n−1..1
        b1, b2 = ck * v + 2 * m(b1) - b2, b1
    return c[0] * v + m(b1) - b2
