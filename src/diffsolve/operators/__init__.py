"""diffsolve.operators: linear measurement operators with exact adjoints and solves, and noise models.

Every operator has ``A(x)``, ``A_adjoint(y)``, ``gram(x)`` = AᵀA x, ``solve(rhs, shift, scale)`` =
(shift·I + scale·AᵀA)⁻¹ rhs (exact where the structure allows, else batched CG),
``pseudo_inverse(y)`` and ``tikhonov(y, lam)``. Images are NCHW float32/float64 on any device.
"""

from ._validate import SolveNotConvergedWarning
from .base import LinearOperator, Operator, SolveInfo
from .blur import Blur, GaussianBlur, MotionBlur
from .blur_kernels import gaussian_taps, motion_kernel
from .callable import CallableOperator
from .identity import Identity
from .inpainting import Inpainting
from .matrix import MatrixOperator
from .noise import GaussianNoise, convert_sigma
from .superres import SuperResolution

__all__ = [
    "Blur",
    "CallableOperator",
    "GaussianBlur",
    "GaussianNoise",
    "Identity",
    "Inpainting",
    "LinearOperator",
    "MatrixOperator",
    "MotionBlur",
    "Operator",
    "SolveInfo",
    "SolveNotConvergedWarning",
    "SuperResolution",
    "convert_sigma",
    "gaussian_taps",
    "motion_kernel",
]
