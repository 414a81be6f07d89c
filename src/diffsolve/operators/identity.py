"""The identity operator A = I (denoising): every solve is a division."""

from __future__ import annotations

import torch

from ..kernels._checks import plain_numbers
from .base import LinearOperator

__all__ = ["Identity"]


class Identity(LinearOperator):
    """A x = x for x (B, C, H, W); solve: rhs / (shift + scale)."""

    exact_solve = True

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y.clone()

    def _gram(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    def _solve_exact(self, rhs: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return rhs / (shift + scale).view(-1, 1, 1, 1)

    def _pinv(self, y: torch.Tensor, tol: float | None, max_iters: int, report: bool = False,
              check_every: int | None = 10) -> torch.Tensor:
        return y.clone()

    def svd(self, size: tuple[int, int]) -> "object":
        """A = I: V = U = I, s = 1 (``operators.svd.DiagonalSVD`` of ones; DDRM / DDNM+ denoising)."""
        from .svd import DiagonalSVD

        size = plain_numbers(size)
        if (len(size) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in size)):
            raise ValueError(f"size must be (H, W) with positive ints, got {size!r}")
        return DiagonalSVD(torch.ones(1, 1, *size, dtype=torch.float64))
