"""The 1×4×4 exact-prior problem the per-method tests of ΠGDM, DiffPIR and DDNM share."""

from __future__ import annotations

import torch

from diffsolve.models import GaussianPrior
from diffsolve.models.priors import operator_matrix
from diffsolve.operators import GaussianBlur, Identity, Inpainting, SuperResolution
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


OPS = {"inpaint": lambda: Inpainting.random((4, 4), 0.5, seed=2), "blur": lambda: GaussianBlur(3, 0.8),
       "sr": lambda: SuperResolution(2, input_size=(4, 4)), "denoise": Identity}


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
