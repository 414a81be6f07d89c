"""Inpainting: A = diag(m), a pixel mask (1 = observed), the same for every sample in a batch.

y = m ⊙ x keeps the image size; missing pixels read 0. AᵀA = diag(m²) is diagonal, so every solve
is elementwise: x = rhs / (shift + scale·m²). The mask may also hold any real weights.
"""

from __future__ import annotations

import torch

from ..kernels._checks import plain_number, plain_numbers
from ._validate import check_seed, check_backend
from .base import LinearOperator

__all__ = ["Inpainting"]


def _size(image_size: int | tuple[int, int]) -> tuple[int, int]:
    image_size = plain_numbers(image_size)
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    if (not isinstance(image_size, (tuple, list)) or len(image_size) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in image_size)):
        raise ValueError(f"image_size must be a positive int or (H, W), got {image_size!r}")
    return int(image_size[0]), int(image_size[1])


class Inpainting(LinearOperator):
    """Mask operator. ``mask``: (H, W), (C, H, W) or (N, C, H, W) with N in {1, B} and C in
    {1, image channels}; bool or floating, finite. It follows each input's device and dtype."""

    exact_solve = True
    structure = "diagonal"

    def __init__(self, mask: torch.Tensor, *, backend: str = "auto") -> None:
        super().__init__(backend=check_backend(backend))
        if not isinstance(mask, torch.Tensor):
            raise TypeError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
        if mask.dtype != torch.bool and not mask.is_floating_point():
            raise TypeError(f"mask must be bool or floating, got dtype {mask.dtype}")
        if not 2 <= mask.dim() <= 4:
            raise ValueError(f"mask must have shape (H, W), (C, H, W) or (N, C, H, W), got {tuple(mask.shape)}")
        mask = mask.detach().to(torch.float64)
        if not bool(torch.isfinite(mask).all()):
            raise ValueError("mask contains NaN or Inf values")
        if not bool(mask.ne(0).any()):
            raise ValueError("mask is all zeros: it observes no pixel, so y holds no data; pass a mask with at least "
                             "one observed (non-zero) pixel (missing < 1 for Inpainting.random)")
        self.mask = mask.reshape((1,) * (4 - mask.dim()) + tuple(mask.shape)).cpu()
        self.gram_singular = bool((self.mask == 0).any())

    @classmethod
    def box(cls, image_size: int | tuple[int, int], box: int = 128, margin: int = 16,
            seed: int | None = None, *, backend: str = "auto") -> "Inpainting":
        """A box×box hole at a random position at least ``margin`` px from the border
        (``seed=None``: centred), (1, 1, H, W)."""
        h, w = _size(image_size)
        box, margin = plain_number(box), plain_number(margin)
        if (any(isinstance(v, bool) or not isinstance(v, int) for v in (box, margin))
                or box < 1 or margin < 0):
            raise ValueError(f"box must be a positive int and margin a non-negative int, got {box!r}, {margin!r}")
        if box + 2 * margin > min(h, w):
            raise ValueError(f"box {box} + 2·margin {margin} does not fit an image of size {(h, w)}")
        if seed is None:
            top, left = (h - box) // 2, (w - box) // 2
        else:
            gen = torch.Generator().manual_seed(check_seed("seed", seed))
            top = int(torch.randint(margin, h - margin - box + 1, (1,), generator=gen))
            left = int(torch.randint(margin, w - margin - box + 1, (1,), generator=gen))
        mask = torch.ones(1, 1, h, w, dtype=torch.float64)
        mask[..., top:top + box, left:left + box] = 0
        return cls(mask, backend=backend)

    @classmethod
    def random(cls, image_size: int | tuple[int, int], missing: float = 0.7, seed: int = 0,
               *, backend: str = "auto") -> "Inpainting":
        """round(missing·H·W) pixels missing, chosen uniformly (same pixels in every channel)."""
        h, w = _size(image_size)
        missing = plain_number(missing)
        if isinstance(missing, bool) or not isinstance(missing, (int, float)) or not 0 <= missing <= 1:
            raise ValueError(f"missing must be a fraction in [0, 1], got {missing!r}")
        gen = torch.Generator().manual_seed(check_seed("seed", seed))
        drop = torch.randperm(h * w, generator=gen)[: round(missing * h * w)]
        mask = torch.ones(h * w, dtype=torch.float64)
        mask[drop] = 0
        return cls(mask.reshape(1, 1, h, w), backend=backend)

    def diagonal(self) -> torch.Tensor:
        """The mask d (1|B, 1|C, H, W), float64 on the CPU: A x = d ⊙ x."""
        return self.mask

    def measured_entries(self, y: torch.Tensor) -> torch.Tensor:
        """(B,) the observed entries per sample (mask ≠ 0, over y's channels): the missing pixels carry no data."""
        seen = (self.mask != 0).to(torch.float64).expand(y.shape[0], y.shape[1], *self.mask.shape[-2:])
        return seen.flatten(1).sum(1)

    def data_part(self, r: torch.Tensor) -> torch.Tensor:
        """r ⊙ 1[mask ≠ 0]: the missing pixels carry no data, whatever finite values y holds there (the solvers
        check y before the loop). A product, not ``torch.where``: one vectorised pass on every backend."""
        return r * self._observed(r)[0]

    def svd(self, size: tuple[int, int]) -> "object":
        """A = U S Vᵀ with V = I, s = |mask| (``operators.svd.DiagonalSVD``; DDRM), per sample and channel where the
        mask has them (its batch and channels are checked against the images when A is applied)."""
        from .svd import DiagonalSVD

        if tuple(size) != tuple(self.mask.shape[-2:]):
            raise ValueError(f"image size {tuple(size)} does not match the mask size {tuple(self.mask.shape[-2:])}")
        return DiagonalSVD(self.mask)

    def _mask(self, x: torch.Tensor) -> torch.Tensor:
        return self._cached(("mask",), x, lambda: (self.mask,))[0]

    def _observed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(1[mask ≠ 0], 1/mask where mask ≠ 0 else 0) in x's device and dtype (cached)."""
        def build() -> tuple[torch.Tensor, torch.Tensor]:
            seen = self.mask != 0
            return seen.to(torch.float64), torch.where(seen, 1 / torch.where(seen, self.mask, 1), 0)

        return self._cached(("observed",), x, build)

    def _check_input(self, x: torch.Tensor) -> None:
        n, c, h, w = self.mask.shape
        if x.shape[-2:] != (h, w):
            raise ValueError(f"image size {tuple(x.shape[-2:])} does not match the mask size {(h, w)}")
        if c not in (1, x.shape[1]):
            raise ValueError(f"the mask has {c} channels but the images have {x.shape[1]}: give images with {c} "
                             "channels, or a mask with 1 channel (shared by every channel) or one per channel")
        if n not in (1, x.shape[0]):
            raise ValueError(f"the mask has batch {n} (one mask per sample) but the images have batch {x.shape[0]}: "
                             f"give {n} images, or a mask of batch 1 (shared by every sample)")

    _check_output = _check_input

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._mask(x) * x

    _adjoint = _forward

    def _gram(self, x: torch.Tensor) -> torch.Tensor:
        m = self._mask(x)
        return m * m * x

    def _solve_exact(self, rhs: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        m = self._mask(rhs)
        return rhs / (shift.view(-1, 1, 1, 1) + scale.view(-1, 1, 1, 1) * m * m)

    def _pinv(self, y: torch.Tensor, tol: float | None, max_iters: int, report: bool = False,
              check_every: int | None = 10) -> torch.Tensor:
        return y * self._observed(y)[1]  # A⁺ = diag(1/m) on the observed pixels, 0 elsewhere (y finite)

    def __repr__(self) -> str:
        return f"Inpainting(mask of shape {tuple(self.mask.shape)}, observed {float(self.mask.ne(0).double().mean()):.3f})"
