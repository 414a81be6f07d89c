"""Super-resolution: down-sampling by ``factor`` s, (B, C, H, W) -> (B, C, h, w).

- ``kernel="bicubic"``: MATLAB ``imresize(x, 1/s)`` (anti-aliased, a = −0.5) as per-axis matrices,
  A x = M_h x M_wᵀ with h = ceil(H/s); Aᵀ is the exact transpose, onto ``input_size`` if given,
  else (h·s, w·s). Sizes that are not multiples of s need ``input_size``: without it A refuses them
  (Aᵀ of an h×w measurement could not know which H in (s(h−1), s·h] it came from, and mapping to
  s·h would not be the transpose); solves by per-axis SVD
  (``spectral.kron_solve``), A⁺ = M_h⁺ ⊗ M_w⁺.
- ``kernel="average"``: mean over s×s blocks (H, W multiples of s); Aᵀ replicates / s². A Aᵀ = I/s²,
  so AᵀA = P/s² with P the block-mean projection and Woodbury gives
      (c·I + σ·AᵀA)⁻¹ r = r/c − σ/(s²·c·(c + σ/s²)) · P r,      A⁺ y = s²·Aᵀ y.
"""

from __future__ import annotations

import torch

from ..kernels import avg_pool, avg_pool_adjoint, resample, resample_adjoint
from ..kernels._checks import plain_number, plain_numbers
from ._validate import check_backend
from .base import LinearOperator
from .bicubic import bicubic_matrix
from .spectral import kron_apply, kron_factors, kron_solve

__all__ = ["SuperResolution"]

KERNELS = ("bicubic", "average")


class SuperResolution(LinearOperator):
    """Down-sampling by an integer ``factor`` with a bicubic (MATLAB) or average-pooling kernel."""

    exact_solve = True
    gram_singular = True  # for factor > 1

    def __init__(self, factor: int = 4, kernel: str = "bicubic", *, input_size: tuple[int, int] | None = None,
                 backend: str = "auto") -> None:
        super().__init__(backend=check_backend(backend))
        factor, input_size = plain_number(factor), plain_numbers(input_size)
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise ValueError(f"factor must be a positive int, got {factor!r}")
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        self.factor, self.kernel = factor, kernel
        self.gram_singular = factor > 1
        if input_size is not None:
            if (not isinstance(input_size, (tuple, list)) or len(input_size) != 2
                    or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in input_size)):
                raise ValueError(f"input_size must be None or (H, W) positive ints, got {input_size!r}")
            input_size = (int(input_size[0]), int(input_size[1]))
            if kernel == "average" and (input_size[0] % factor or input_size[1] % factor):
                raise ValueError(f"input_size {input_size} is not divisible by factor {factor}, which average pooling "
                                 f"needs; use ({input_size[0] // factor * factor}, {input_size[1] // factor * factor})")
        self.input_size = input_size

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(h, w) of the measurement for an image of size (H, W)."""
        s = self.factor
        return (-(-size[0] // s), -(-size[1] // s)) if self.kernel == "bicubic" else (size[0] // s, size[1] // s)

    def _check_input(self, x: torch.Tensor) -> None:
        h, w = x.shape[-2:]
        if self.input_size is not None and (h, w) != self.input_size:
            raise ValueError(f"image size {(h, w)} does not match input_size {self.input_size}")
        if self.kernel == "average" and (h % self.factor or w % self.factor):
            raise ValueError(
                f"image size {(h, w)} must be divisible by factor {self.factor} for kernel='average'"
            )
        if self.input_size is None and (h % self.factor or w % self.factor):
            raise ValueError(
                f"image size {(h, w)} is not a multiple of factor {self.factor}: A_adjoint could not recover it from "
                f"the {self.output_size((h, w))} measurement; pass SuperResolution({self.factor}, "
                f"input_size={(h, w)}) so that Aᵀ is the exact transpose"
            )

    def _check_output(self, y: torch.Tensor) -> None:
        if self.input_size is not None and tuple(y.shape[-2:]) != self.output_size(self.input_size):
            raise ValueError(
                f"y has size {tuple(y.shape[-2:])} but input_size {self.input_size} gives measurements "
                f"of size {self.output_size(self.input_size)}"
            )

    def _image_size(self, y: torch.Tensor) -> tuple[int, int]:
        """Size Aᵀ maps y back to: ``input_size`` if set, else (h·s, w·s)."""
        if self.input_size is not None:
            return self.input_size
        return (y.shape[-2] * self.factor, y.shape[-1] * self.factor)

    def _bicubic(self, like: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = size
        return self._cached(("m", h, w), like, lambda: (bicubic_matrix(h, self.factor), bicubic_matrix(w, self.factor)))

    def _kron(self, like: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        h, w = size

        def build():
            return (*kron_factors(bicubic_matrix(h, self.factor)), *kron_factors(bicubic_matrix(w, self.factor)))

        return self._cached(("kron", h, w), like, build)  # v_h, lam_h, p_h, v_w, lam_w, p_w

    # ------------------------------------------------------------------ A, Aᵀ
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel == "average":
            return avg_pool(x, self.factor, backend=self.backend)
        return resample(x, *self._bicubic(x, tuple(x.shape[-2:])), backend=self.backend)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        if self.kernel == "average":
            return avg_pool_adjoint(y, self.factor, backend=self.backend)
        return resample_adjoint(y, *self._bicubic(y, self._image_size(y)), backend=self.backend)

    def _gram(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel == "average":
            return avg_pool_adjoint(avg_pool(x, self.factor, backend=self.backend), self.factor, backend=self.backend)
        m_h, m_w = self._bicubic(x, tuple(x.shape[-2:]))
        return resample_adjoint(resample(x, m_h, m_w, backend=self.backend), m_h, m_w, backend=self.backend)

    # ------------------------------------------------------------------ exact solves
    def _solve_exact(self, rhs: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        c, sig = shift.view(-1, 1, 1, 1), scale.view(-1, 1, 1, 1)
        if self.kernel == "average":
            s2 = float(self.factor**2)
            proj = s2 * self._gram(rhs)  # P rhs: block means, replicated
            return rhs / c - (sig / s2) / (c * (c + sig / s2)) * proj
        v_h, lam_h, _, v_w, lam_w, _ = self._kron(rhs, tuple(rhs.shape[-2:]))
        return kron_solve(rhs, v_h, lam_h, v_w, lam_w, shift, scale)

    def _pinv(self, y: torch.Tensor, tol: float | None, max_iters: int, report: bool = False,
              check_every: int | None = 10) -> torch.Tensor:
        if self.kernel == "average":
            return avg_pool_adjoint(y, self.factor, backend=self.backend) * float(self.factor**2)
        _, _, p_h, _, _, p_w = self._kron(y, self._image_size(y))
        return kron_apply(y, p_h, p_w)

    def svd(self, size: tuple[int, int]) -> "object":
        """A = U S Vᵀ for images of ``size`` (``operators.svd``: BlockMeanSVD / KroneckerSVD; DDRM), built once per
        size and kept."""
        from .svd import BlockMeanSVD, KroneckerSVD

        self._check_input(torch.zeros(1, 1, *size))
        cache = self.__dict__.setdefault("_svds", {})  # built once per size and kept
        if tuple(size) not in cache:
            cache[tuple(size)] = BlockMeanSVD(self.factor) if self.kernel == "average" else KroneckerSVD(
                bicubic_matrix(size[0], self.factor), bicubic_matrix(size[1], self.factor))
        return cache[tuple(size)]

    def __repr__(self) -> str:
        return f"SuperResolution(factor={self.factor}, kernel={self.kernel!r}, input_size={self.input_size})"
