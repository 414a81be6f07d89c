"""Operator instances shared by the operator tests, and a dense-matrix builder (float64)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from diffsolve.operators import (
    Blur, CallableOperator, GaussianBlur, Identity, Inpainting, MatrixOperator, MotionBlur, Operator, SuperResolution,
)

BOUNDARIES = ("reflect", "circular", "zero")


def _user_fn(x: torch.Tensor) -> torch.Tensor:
    """A linear, non-symmetric user operator: 2×2 average pool of a channel-mixed image."""
    mix = torch.tensor([[1.0, 0.5], [-0.25, 2.0]], dtype=x.dtype, device=x.device)
    return F.avg_pool2d(torch.einsum("dc,bchw->bdhw", mix[: x.shape[1], : x.shape[1]], x), 2)


def operator_cases(size: tuple[int, int], channels: int = 2) -> dict[str, Operator]:
    """One instance of every operator kind × boundary, valid on images of ``size`` (small)."""
    h, w = size
    asym = torch.arange(1.0, 16.0, dtype=torch.float64).reshape(5, 3).sin()  # asymmetric kernel
    cases: dict[str, Operator] = {
        "identity": Identity(),
        "inpaint_random": Inpainting.random(size, missing=0.5, seed=1),
        "inpaint_box": Inpainting.box(size, box=min(h, w) // 2, margin=1, seed=3),
        "inpaint_channel_mask": Inpainting((torch.rand(channels, h, w, generator=torch.Generator().manual_seed(2)) > 0.4)),
        "sr_bicubic_2": SuperResolution(2, "bicubic", input_size=size),
        "sr_bicubic_3": SuperResolution(3, "bicubic", input_size=size),
        "user_callable": CallableOperator(_user_fn, input_shape=(channels, h, w)),
        "matrix_cs": MatrixOperator.gaussian(channels * h * w // 3, (channels, h, w), seed=6),
        "matrix_tall": MatrixOperator(torch.randn(channels * h * w + 5, channels * h * w,
                                                  generator=torch.Generator().manual_seed(8), dtype=torch.float64),
                                      (channels, h, w), output_shape=(1, channels * h * w + 5)),
    }
    if h % 2 == 0 and w % 2 == 0:
        cases["sr_average_2"] = SuperResolution(2, "average")
    for b in BOUNDARIES:
        cases[f"gaussian_{b}"] = GaussianBlur(kernel_size=9, std=1.2, boundary=b)
        cases[f"motion_{b}"] = MotionBlur(kernel_size=7, intensity=0.8, seed=5, boundary=b)
        cases[f"dense_{b}"] = Blur(asym, boundary=b)
        cases[f"separable_{b}"] = Blur.separable(asym[:, 0], asym[0, :], boundary=b)
    return cases


def dense_matrix(op: Operator, shape: tuple[int, ...]) -> torch.Tensor:
    """The matrix of ``op.A`` on images of ``shape`` (1, C, H, W), built column by column."""
    n = int(torch.tensor(shape).prod())
    eye = torch.eye(n, dtype=torch.float64).reshape(n, *shape[1:])
    return op.A(eye).reshape(n, -1).T  # the batch dimension carries the basis vectors
