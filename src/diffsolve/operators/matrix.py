"""A dense matrix on the flattened image: compressed sensing and any small linear measurement, with its SVD.

A x = (M vec(x)) reshaped to ``output_shape``, M (m, n) with n = C·H·W: every channel and pixel may mix (a
compressed-sensing matrix, a learned linear sensor). The thin SVD M = U_r diag(s) V_rᵀ (r = rank, computed once in
float64 on the CPU and cached per device / dtype) gives every solve exactly:

    (shift·I + scale·AᵀA)⁻¹ b = (b − V_r V_rᵀ b)/shift + V_r diag(1/(shift + scale·s²)) V_rᵀ b
    A⁺ y = V_r diag(1/s) U_rᵀ y

and the SVD protocol (``operators.svd.DenseSVD``) for DDRM, DDNM+ and DAPS's exact Langevin. Memory and set-up
grow as m·n (the matrix and V_r), so this is for images up to about 64×64×3 with m ≤ n; beyond that give a fast
transform as a :class:`~diffsolve.operators.CallableOperator` (CG solves, no SVD).
:meth:`MatrixOperator.from_operator` turns any linear operator into its dense matrix (n products): on small
images that gives an operator without a structured SVD (a reflect-boundary motion blur) DDRM and DDNM+.
"""

from __future__ import annotations

import math

import torch

from ..kernels._checks import plain_number, plain_numbers
from ._validate import check_backend, check_seed
from .base import LinearOperator

__all__ = ["MatrixOperator"]


def _image_shape(shape: object) -> tuple[int, int, int]:
    shape = plain_numbers(shape)
    if (not isinstance(shape, (tuple, list)) or len(shape) != 3
            or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)):
        raise ValueError(f"input_shape must be (C, H, W) positive ints, got {shape!r}")
    return tuple(int(n) for n in shape)  # type: ignore[return-value]


def _shape(name: str, shape: object, length: int) -> tuple[int, ...]:
    shape = plain_numbers(shape)
    if (not isinstance(shape, (tuple, list)) or not shape
            or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)):
        raise ValueError(f"{name} must be a tuple of positive ints, got {shape!r}")
    if math.prod(shape) != length:
        raise ValueError(f"{name}={tuple(shape)} holds {math.prod(shape)} entries but the matrix has {length} "
                         f"{'columns' if name == 'input_shape' else 'rows'}")
    return tuple(int(n) for n in shape)


class MatrixOperator(LinearOperator):
    """A x = M vec(x) for images x (B, C, H, W) = ``input_shape`` per sample; y (B, *output_shape), default (B, m).

    ``matrix``: (m, n) float tensor, n = C·H·W, finite (copied to float64 on the CPU; cast per use to the image's
    dtype and device). Exact solves and pseudo-inverse through its thin SVD (module docstring); ``svd(size)`` for the
    SVD methods. :meth:`gaussian` builds a seeded compressed-sensing matrix.
    """

    exact_solve = True
    image_measurements = False

    def __init__(self, matrix: torch.Tensor, input_shape: tuple[int, int, int],
                 output_shape: tuple[int, ...] | None = None, *, backend: str = "auto") -> None:
        super().__init__(backend=check_backend(backend))
        if not isinstance(matrix, torch.Tensor) or not matrix.is_floating_point() or matrix.dim() != 2:
            got = (f"{matrix.dtype} of shape {tuple(matrix.shape)}" if isinstance(matrix, torch.Tensor)
                   else type(matrix).__name__)
            raise TypeError(f"matrix must be a 2-D floating tensor (m, n), got {got}")
        if 0 in matrix.shape:
            raise ValueError(f"matrix is empty (shape {tuple(matrix.shape)})")
        if not bool(torch.isfinite(matrix).all()):
            raise ValueError("matrix contains NaN or Inf entries")
        if not bool(matrix.ne(0).any()):
            raise ValueError("matrix is all zeros, so A = 0 maps every image to 0 (y holds no data); pass a matrix "
                             "with at least one non-zero entry")
        m, n = matrix.shape
        self.input_shape = _shape("input_shape", _image_shape(input_shape), n)
        self.output_shape = _shape("output_shape", (m,) if output_shape is None else output_shape, m)
        self.matrix = matrix.detach().to("cpu", torch.float64).contiguous()
        self.gram_singular = m < n or self._rank() < n  # AᵀA (n × n) has rank ≤ m

    @classmethod
    def gaussian(cls, m: int, input_shape: tuple[int, int, int], seed: int = 0, *,
                 backend: str = "auto") -> "MatrixOperator":
        """Compressed sensing: m rows of i.i.d. N(0, 1/n) entries (rows of unit norm on average, so y's entries
        have the image's scale and σ means what it means for the other operators), drawn from ``seed``."""
        shape = _image_shape(input_shape)
        n = math.prod(shape)
        m = plain_number(m)
        if isinstance(m, bool) or not isinstance(m, int) or not 0 < m <= n:
            raise ValueError(f"m must be an int in [1, n = {n}] (measurements per image), got {m!r}")
        g = torch.Generator().manual_seed(check_seed("seed", seed))
        return cls(torch.randn(m, n, generator=g, dtype=torch.float64) / math.sqrt(n), shape, backend=backend)

    @classmethod
    def from_operator(cls, operator: LinearOperator, input_shape: tuple[int, int, int], *, chunk: int = 512,
                      backend: str = "auto") -> "MatrixOperator":
        """Any linear operator as its dense matrix on images of ``input_shape``, built column by column in float64
        (n = C·H·W products, ``chunk`` at a time): gives an operator without a structured SVD (a reflect-boundary
        motion blur, a user's function) exact solves and DDRM / DDNM+. Costs n² memory: small images only."""
        if not callable(getattr(operator, "A", None)):
            raise TypeError(f"operator must have A(x) (a diffsolve.operators operator), got {type(operator).__name__}")
        chunk = plain_number(chunk)
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"chunk must be a positive int, got {chunk!r}")
        shape = _image_shape(input_shape)
        n = math.prod(shape)
        columns, out_shape = [], None
        with torch.no_grad():
            for start in range(0, n, chunk):
                basis = torch.zeros(min(chunk, n - start), n, dtype=torch.float64)
                basis[:, start:start + basis.shape[0]] = torch.eye(basis.shape[0], dtype=torch.float64)
                try:
                    out = operator.A(basis.view(-1, *shape))
                except ValueError as err:  # e.g. a mask per sample: no single matrix is A for every sample
                    raise ValueError(f"operator={operator!r} cannot be applied to a batch of basis images ({err}): "
                                     "from_operator needs an A that is the same for every sample (one mask, not "
                                     "one per sample)") from err
                out_shape = tuple(out.shape[1:])
                columns.append(out.reshape(basis.shape[0], -1))
        return cls(torch.cat(columns).T, shape, out_shape, backend=backend)

    # ------------------------------------------------------------------ the SVD, once
    def _thin_svd(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(U_r (m, r), s (r,), V_r (n, r)) float64 CPU, the directions with s above rounding (numpy's rank rule)."""
        if ("thin_svd",) not in self._cache:  # the cache dict is shared with ``with_backend`` copies
            # QR first, then the SVD of the small square factor: backward stable like a direct SVD, and several
            # times faster for a wide matrix (LAPACK's direct routine does not reduce it first here)
            m, n = self.matrix.shape
            q, r = torch.linalg.qr(self.matrix.T if m < n else self.matrix)
            u, s, vh = torch.linalg.svd(r.T if m < n else r)
            if m < n:  # M = Rᵀ Qᵀ = U S (Q W)ᵀ with Rᵀ = U S Wᵀ
                vh = vh @ q.T
            else:  # M = Q R = (Q U) S Vᵀ
                u = q @ u
            keep = s > s[0] * max(self.matrix.shape) * torch.finfo(torch.float64).eps
            self._cache[("thin_svd",)] = (u[:, keep].contiguous(), s[keep].contiguous(), vh[keep].T.contiguous())
        return self._cache[("thin_svd",)]

    def _rank(self) -> int:
        return int(self._thin_svd()[1].numel())

    def _factors(self, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self._cached(("factors",), like, lambda: (self.matrix, *self._thin_svd()))

    # ------------------------------------------------------------------ checks
    def _check_input(self, x: torch.Tensor) -> None:
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"image shape {tuple(x.shape[1:])} does not match input_shape {self.input_shape}")

    def _check_output(self, y: torch.Tensor) -> None:
        if tuple(y.shape[1:]) != self.output_shape:
            raise ValueError(f"y has shape {tuple(y.shape)} but this MatrixOperator measures (B, "
                             f"{', '.join(map(str, self.output_shape))}); y must have shape "
                             f"{(y.shape[0], *self.output_shape)}")

    # ------------------------------------------------------------------ A, Aᵀ, solves
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        mat = self._factors(x)[0]
        return (x.flatten(1) @ mat.T).view(x.shape[0], *self.output_shape)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        mat = self._factors(y)[0]
        return (y.flatten(1) @ mat).view(y.shape[0], *self.input_shape)

    def _solve_exact(self, rhs: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        _, _, s, v = self._factors(rhs)
        b = rhs.flatten(1)
        coef = b @ v  # (B, r)
        inside = (coef / (shift[:, None] + scale[:, None] * s**2)) @ v.T
        if not self.gram_singular:  # V_r spans the image space: no null part (shift may be 0)
            return inside.view_as(rhs)
        outside = (b - coef @ v.T) / shift[:, None]
        return (inside + outside).view_as(rhs)

    def _pinv(self, y: torch.Tensor, tol: float | None, max_iters: int, report: bool = False,
              check_every: int | None = 10) -> torch.Tensor:
        _, u, s, v = self._factors(y)
        return ((y.flatten(1) @ u / s) @ v.T).view(y.shape[0], *self.input_shape)

    def gram_norm_bound(self, size: tuple[int, int]) -> float:
        return float(self._thin_svd()[1][0] ** 2)

    def svd(self, size: tuple[int, int]) -> "object":
        """A = U_r diag(s) V_rᵀ on the flattened image (``operators.svd.DenseSVD``; DDRM, DDNM+, DAPS)."""
        from .svd import DenseSVD

        if tuple(size) != self.input_shape[1:]:
            raise ValueError(f"MatrixOperator acts on {self.input_shape[1]}x{self.input_shape[2]} images, not "
                             f"{size[0]}x{size[1]}")
        if ("svd",) not in self._cache:  # one object: its per-device factor copies are kept across solves
            self._cache[("svd",)] = DenseSVD(*self._thin_svd(), self.input_shape, self.output_shape)
        return self._cache[("svd",)]

    def __repr__(self) -> str:
        m, n = self.matrix.shape
        return f"MatrixOperator({m}x{n}, input_shape={self.input_shape}, output_shape={self.output_shape})"
