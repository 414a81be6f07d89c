"""User operators from a linear function: the adjoint by autograd (vjp), solves by batched CG."""

from __future__ import annotations

from typing import Callable

import torch

from ..kernels._checks import plain_numbers
from ._validate import check_backend
from .base import LinearOperator

__all__ = ["CallableOperator"]


class CallableOperator(LinearOperator):
    """A = ``fn`` (must be linear and differentiable by ``torch.func``; every solver probes that, and that ``adjoint``
    is its transpose, once before its loop); Aᵀ = ``adjoint`` if given, else the vector-Jacobian product of ``fn``
    (exact for linear fn). ``input_shape`` (C, H, W) is
    the per-sample image shape Aᵀ maps back to; without it Aᵀ assumes fn keeps the shape.

    fn's output may have any shape (B, ...): an image (B, C, h, w), or a vector (B, m) for a
    compressed-sensing matrix; y then has that shape."""

    image_measurements = False

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], *,
                 adjoint: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 input_shape: tuple[int, int, int] | None = None, backend: str = "auto") -> None:
        super().__init__(backend=check_backend(backend))
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}")
        if adjoint is not None and not callable(adjoint):
            raise TypeError(f"adjoint must be callable or None, got {type(adjoint).__name__}")
        input_shape = plain_numbers(input_shape)
        if input_shape is not None and (
                not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3
                or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in input_shape)):
            raise ValueError(f"input_shape must be None or (C, H, W) positive ints, got {input_shape!r}")
        self.fn, self.adjoint_fn = fn, adjoint
        self.input_shape = None if input_shape is None else tuple(int(n) for n in input_shape)

    def _check_input(self, x: torch.Tensor) -> None:
        if self.input_shape is not None and tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"image shape {tuple(x.shape[1:])} does not match input_shape {self.input_shape}")

    @staticmethod
    def _result(name: str, out: object, like: torch.Tensor) -> torch.Tensor:
        if not isinstance(out, torch.Tensor) or out.dtype != like.dtype or out.device != like.device:
            got = f"{out.dtype} on {out.device}" if isinstance(out, torch.Tensor) else type(out).__name__
            raise TypeError(f"{name} must return a tensor of dtype {like.dtype} on {like.device}, got {got}")
        return out

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._result("fn", self.fn(x), x)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        if self.adjoint_fn is not None:
            return self._result("adjoint", self.adjoint_fn(y), y)
        shape = (y.shape[0],) + (self.input_shape or tuple(y.shape[1:]))
        try:
            out, vjp = torch.func.vjp(self.fn, torch.zeros(shape, dtype=y.dtype, device=y.device))
        except RuntimeError as err:
            if self.input_shape is not None:
                raise
            raise ValueError(f"Aᵀ needs the images' shape: without input_shape it tries y's, {shape}, and fn "
                             f"fails on it ({err}); pass input_shape=(C, H, W) of the images") from err
        if out.shape != y.shape:
            fix = (f"y must have shape {tuple(out.shape)}" if self.input_shape is not None
                   else "pass input_shape=(C, H, W) of the images")
            raise ValueError(f"y has shape {tuple(y.shape)} but fn maps images of shape {shape} to "
                             f"{tuple(out.shape)}; {fix}")
        return vjp(y)[0]

    def _gram(self, x: torch.Tensor) -> torch.Tensor:
        if self.adjoint_fn is not None:
            return self._adjoint(self._forward(x))
        out, vjp = torch.func.vjp(self.fn, x)  # one forward pass serves both A x and its transpose
        return vjp(self._result("fn", out, x).detach())[0]

    def __repr__(self) -> str:
        name = getattr(self.fn, "__name__", type(self.fn).__name__)
        return f"CallableOperator({name}, adjoint={'given' if self.adjoint_fn else 'vjp'})"
