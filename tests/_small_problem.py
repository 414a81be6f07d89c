"""The 1×4×4 exact-prior problem the per-method tests of ΠGDM, DiffPIR and DDNM share."""

from __future__ import annotations

import torch

from diffsolve.models import GaussianPrior
from diffsolve.operators import GaussianBlur, Identity, Inpainting, SuperResolution

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
