"""Chebyshev series of a symmetric matrix (solvers/_chebyshev.py) against dense eigendecompositions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffsolve.solvers._chebyshev import chebyshev_apply, chebyshev_series

D = torch.float64


def _matrix(lo: float, hi: float, n: int = 30) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    q, _ = torch.linalg.qr(torch.randn(n, n, dtype=D, generator=torch.Generator().manual_seed(0)))
    lam = torch.linspace(lo, hi, n, dtype=D)
    return q @ torch.diag(lam) @ q.T, q, lam


@pytest.mark.parametrize("f, lo, hi", [(np.exp, -1.0, 3.0), (lambda p: 1 / p, 1.0, 10.0),
                                       (lambda p: -np.expm1(-50 * p) / p, 1e-4, 1.0), (np.sqrt, 0.5, 2.0)],
                         ids=["exp", "inverse", "langevin-gain", "sqrt"])
@pytest.mark.parametrize("tol", [1e-7, 1e-12])
def test_series_matches_the_dense_function(f, lo, hi, tol):
    """f(P) v by the truncated series equals V f(Λ) Vᵀ v within the requested bound (relative to max |f|), with one
    product with P per degree."""
    p, q, lam = _matrix(lo, hi)
    coefs = chebyshev_series(f, lo, hi, tol)
    assert coefs is not None
    v = torch.randn(3, p.shape[0], dtype=D, generator=torch.Generator().manual_seed(1))
    calls = []
    out = chebyshev_apply(lambda u: calls.append(1) or u @ p, v, coefs, lo, hi)
    assert len(calls) == len(coefs) - 1  # one product per degree
    ref = v @ (q @ torch.diag(torch.from_numpy(f(lam.numpy()))) @ q.T)
    size = float(np.abs(f(np.linspace(lo, hi, 1001))).max())
    assert float((out - ref).norm(dim=1).max() / v.norm(dim=1).min()) <= 10 * tol * size + 1e-13


def test_series_degree_grows_with_tolerance_and_declines_when_too_rough():
    """A tighter bound takes a longer series; a function that needs more than ``max_degree`` gives None."""
    short = chebyshev_series(np.exp, 0.0, 1.0, 1e-4)
    long = chebyshev_series(np.exp, 0.0, 1.0, 1e-12)
    assert short is not None and long is not None and len(short) < len(long) <= 20
    assert chebyshev_series(lambda p: np.cos(200 * p), 0.0, 1.0, 1e-7, max_degree=32) is None
    assert chebyshev_series(lambda p: 0 * p, 0.0, 1.0, 1e-7).tolist() == [0.0]
    with pytest.raises(ValueError, match="lo < hi"):
        chebyshev_series(np.exp, 1.0, 1.0, 1e-7)


def test_constant_series_needs_no_product():
    """A degree-0 series is c_0 v: the operator is never applied."""
    calls = []
    out = chebyshev_apply(lambda u: calls.append(1) or u, torch.ones(2, 3, dtype=D), np.array([2.5]), 0.0, 1.0)
    assert not calls and torch.equal(out, torch.full((2, 3), 2.5, dtype=D))
