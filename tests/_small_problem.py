"""The 1×4×4 exact-prior problem the per-method tests of ΠGDM, DiffPIR and DDNM share, and the 1×n×n one of the
noise-level tests."""

from __future__ import annotations

import torch

from diffsolve.models import GaussianPrior
from diffsolve.models.priors import operator_matrix
from diffsolve.operators import GaussianBlur, Identity, Inpainting, MatrixOperator, SuperResolution
from diffsolve.operators.svd import operator_svd

D = torch.float64
SHAPE = (1, 4, 4)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def prior() -> GaussianPrior:
    idx = torch.arange(16)
    d2 = ((idx // 4)[:, None] - (idx // 4)[None]) ** 2 + ((idx % 4)[:, None] - (idx % 4)[None]) ** 2
    cov = 0.3 * torch.exp(-d2.double() / 3.0) + 1e-2 * torch.eye(16, dtype=D)
    return GaussianPrior(0.1 * torch.randn(SHAPE, generator=gen(3), dtype=D), cov)


def correlated_prior(n: int = 16) -> GaussianPrior:
    """A 1×n×n Gaussian prior with a smooth correlation (std ≈ 0.55, length ≈ 2 pixels): the noise-level tests'."""
    idx = torch.arange(n * n)
    d2 = ((idx // n)[:, None] - (idx // n)[None]) ** 2 + ((idx % n)[:, None] - (idx % n)[None]) ** 2
    cov = 0.3 * torch.exp(-d2.double() / 8.0) + 1e-3 * torch.eye(n * n, dtype=D)
    return GaussianPrior(0.1 * torch.randn(1, n, n, generator=gen(0), dtype=D), cov)


OPS = {"inpaint": lambda: Inpainting.random((4, 4), 0.5, seed=2), "blur": lambda: GaussianBlur(3, 0.8),
       "sr": lambda: SuperResolution(2, input_size=(4, 4)), "denoise": Identity,
       "cs": lambda: MatrixOperator.gaussian(6, SHAPE, seed=4)}


def measure(op, batch=2, sigma=0.05, seed=1):
    x = torch.randn(batch, *SHAPE, generator=gen(seed), dtype=D)
    y = op.A(x)
    return y + sigma * torch.randn(y.shape, generator=gen(seed + 1), dtype=D)


def dense_svd(op) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """(A, U, s, V, complete) for the images of SHAPE, A = U diag(s) Vᵀ dense: where the solvers' basis is complete
    (a blur's Kronecker V) that basis itself, whose coefficient draws the solvers read as noise, else torch's SVD."""
    a = operator_matrix(op, SHAPE)
    basis = operator_svd(op, SHAPE[-2:]).range()
    if basis.complete:
        u, v = torch.kron(basis.u_h, basis.u_w), torch.kron(basis.v_h, basis.v_w)
        s = torch.diagonal(u.T @ a @ v)
        assert torch.allclose(u @ torch.diag(s) @ v.T, a, atol=1e-12)
        return a, u, s, v, True
    u, s, vh = torch.linalg.svd(a, full_matrices=True)
    return a, u, s, vh.T, False


def negligible(s: torch.Tensor, complete: bool, ratio: float) -> torch.Tensor:
    """Bool mask over ``dense_svd``'s coefficients that DDRM's reference code counts as zero (``ZERO``): on a blur's
    complete Kronecker basis (s laid out H×W, the outer product of the per-axis values, largest first) those whose
    row or column factor is below ``ratio`` times its largest; none elsewhere."""
    if not complete or ratio == 0:
        return torch.zeros(s.numel(), dtype=torch.bool)
    s2 = s.view(SHAPE[-2:])
    top = s2[:1, :1]
    return ((s2[:, :1] < ratio * top) | (s2[:1, :] < ratio * top)).flatten()


def dense_pinv(op, ratio: float) -> torch.Tensor:
    """A⁺ (n, m) dense with the directions :func:`negligible` names counted as zero (the reference codes' ``H_pinv``;
    ``ratio`` = 0: ``torch.linalg.pinv``)."""
    a, u, s, v, complete = dense_svd(op)
    cut = negligible(s, complete, ratio)
    if not cut.any():
        return torch.linalg.pinv(a)
    keep = (s > 0) & ~cut
    inv = torch.where(keep, 1 / torch.where(keep, s, 1.0), 0.0)
    return v[:, : s.numel()] @ torch.diag(inv) @ u[:, : s.numel()].T


def dense_discrepancy_pull(a: torch.Tensor, x: torch.Tensor, y: torch.Tensor, sigma: float, v: float,
                           m: torch.Tensor, rounds: int = 3, growth: float = 10.0) -> torch.Tensor:
    """Morozov's discrepancy principle with a χ² band in dense linear algebra, a reference for
    ``_inverse.discrepancy_pull``: x* = x + v Aᵀ(σ² I + v AAᵀ)⁻¹(y − A x) per sample, then x + g (x* − x) with g
    found by bisection so that ‖A(·) − y‖² = σ²(m + 3√(2m)) (g = 0 where x is already at or below that, g = 1
    where x* stays above it); where g = 1, again from x* with v × ``growth``, at most ``rounds`` rounds. Rows of A
    that are 0 (a mask's missing pixels) carry no data: they and y's entries there are left out."""
    rows = a.abs().sum(1) > 0
    a = a[rows]
    out = []
    for xb, yb, mb in zip(x.flatten(1), y.flatten(1)[:, rows], m.tolist()):
        ceiling = (mb + 3 * (2 * mb) ** 0.5) * sigma**2
        for k in range(rounds):
            r = yb - a @ xb
            if float(r.pow(2).sum()) <= ceiling:
                break
            vk = v * growth**k
            step = vk * a.T @ torch.linalg.solve(sigma**2 * torch.eye(a.shape[0], dtype=a.dtype) + vk * a @ a.T, r)

            def excess(g: float) -> float:
                return float((yb - a @ (xb + g * step)).pow(2).sum()) - ceiling

            if excess(1.0) >= 0:
                xb = xb + step
                continue
            lo, hi = 0.0, 1.0
            for _ in range(80):
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if excess(mid) > 0 else (lo, mid)
            xb = xb + (lo + hi) / 2 * step
            break
        out.append(xb)
    return torch.stack(out).view_as(x)
