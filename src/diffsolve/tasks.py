"""The one task registry: restoration tasks (name -> operator factory with its parameters), read by
``demo``, ``restore`` and ``eval``.

Sizes scale from the DPS 256×256 settings with the image side S; ``digits=True`` gives the settings
of the 16×16 ``digits16`` demo. :class:`TaskParameters` overrides them (None: the default).

=================  =====================================  =========================================
task               operator (:mod:`diffsolve.operators`)  parameter (default at side S; on digits)
=================  =====================================  =========================================
``gaussian_blur``  GaussianBlur, reflect                   ``blur_std`` 3·S/256 px (1); kernel odd ≈ 8·std+1
``motion_blur``    MotionBlur, intensity 0.5, seeded       ``motion_size`` odd ≈ 61·S/256 px (9)
``box``            Inpainting.box, seeded position         ``box`` S/2 px (6), margin max(1, S/16)
``random``         Inpainting.random, seeded               ``missing`` 0.7 (fraction of pixels lost)
``sr4``            SuperResolution ×4, MATLAB bicubic      — (sides divisible by 4)
``sr``             SuperResolution ×factor, bicubic        ``factor`` 4 (sides divisible by it)
``denoise``        Identity (y = x + σ n)                  —
=================  =====================================  =========================================

Measurements are y = A x + σ n with σ = :data:`SIGMA` = 0.05 in [−1, 1] units (DPS, MPGD).

API: ``TASKS`` (names), ``TASK_SPECS[name]`` (:class:`Task`: summary, parameters read, factory),
``TASK_PARAMETERS[name]`` (the TaskParameters fields the task reads), ``TaskParameters`` and
``check_parameters(params)``, ``required_multiple(task, params) -> int`` (image sides must be
multiples of it), ``make_operator(task, size, *, seed=0, digits=False, params=None)`` (ValueError
naming the task and the fix when the size does not fit), ``measurement_view(task, y, size)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch loads on first use: the command line imports this module for --help
    import torch

    from .operators.base import LinearOperator

__all__ = ["DEMO_TASKS", "SIGMA", "TASKS", "TASK_PARAMETERS", "TASK_SPECS", "Task", "TaskParameters", "check_parameters",
           "make_operator", "measurement_view", "required_multiple"]

SIGMA = 0.05


@dataclass(frozen=True)
class TaskParameters:
    """Task parameters (module docstring); None means the size-scaled default."""

    blur_std: float | None = None
    motion_size: int | None = None
    box: int | None = None
    missing: float = 0.7
    factor: int = 4


def check_parameters(params: TaskParameters) -> TaskParameters:
    """ValueError naming the field (``<field> must ..., got ...``) when a parameter is out of range."""
    if not isinstance(params, TaskParameters):
        raise TypeError(f"params must be a TaskParameters, got {type(params).__name__}")

    def is_int(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if params.blur_std is not None and not (isinstance(params.blur_std, (int, float))
                                            and math.isfinite(params.blur_std) and params.blur_std > 0):
        raise ValueError(f"blur_std must be a number > 0 (pixels), got {params.blur_std!r}")
    if params.motion_size is not None and not (is_int(params.motion_size) and params.motion_size >= 3
                                               and params.motion_size % 2):
        raise ValueError(f"motion_size must be an odd int >= 3 (pixels), got {params.motion_size!r}")
    if params.box is not None and not (is_int(params.box) and params.box >= 1):
        raise ValueError(f"box must be an int >= 1 (pixels), got {params.box!r}")
    if not (isinstance(params.missing, (int, float)) and 0 < params.missing < 1):
        raise ValueError(f"missing must be a fraction in (0, 1), got {params.missing!r}")
    if not (is_int(params.factor) and params.factor >= 1):
        raise ValueError(f"factor must be an int >= 1, got {params.factor!r}")
    return params


def _odd(n: float) -> int:
    n = max(3, int(round(n)))
    return n if n % 2 else n + 1


def _gaussian(size: tuple[int, int], side: int, digits: bool, seed: int, p: TaskParameters):
    from .operators import GaussianBlur

    std = p.blur_std if p.blur_std is not None else (1.0 if digits else 3.0 * side / 256)
    return GaussianBlur(kernel_size=min(_odd(8 * std + 1), _odd(side - 1) - 2), std=std)


def _motion(size: tuple[int, int], side: int, digits: bool, seed: int, p: TaskParameters):
    from .operators import MotionBlur

    k = p.motion_size if p.motion_size is not None else (
        9 if digits else min(_odd(61 * side / 256), _odd(side - 1) - 2))
    if k >= side:
        raise ValueError(f"motion_size {k} must be smaller than the image side {side}")
    return MotionBlur(kernel_size=k, intensity=0.5, seed=seed)


def _box(size: tuple[int, int], side: int, digits: bool, seed: int, p: TaskParameters):
    from .operators import Inpainting

    box = p.box if p.box is not None else (6 if digits else side // 2)
    margin = max(1, side // 16)
    if box + 2 * margin > side:
        fix = (f"use box <= {side - 2 * margin} (--box on the command line)" if side - 2 * margin >= 1
               else f"use images of side >= {2 * margin + 1}")
        raise ValueError(f"box {box} plus margins 2x{margin} does not fit the image side {side}; {fix}")
    return Inpainting.box(size, box=box, margin=margin, seed=seed)


def _random(size: tuple[int, int], side: int, digits: bool, seed: int, p: TaskParameters):
    from .operators import Inpainting

    return Inpainting.random(size, missing=p.missing, seed=seed)


def _superres(factor_of: Callable[[TaskParameters], int]):
    def make(size: tuple[int, int], side: int, digits: bool, seed: int, p: TaskParameters):
        from .operators import SuperResolution

        return SuperResolution(factor_of(p), "bicubic")

    return make


def _denoise(size: tuple[int, int], side: int, digits: bool, seed: int, p: TaskParameters):
    from .operators import Identity

    return Identity()


@dataclass(frozen=True)
class Task:
    """One task: ``factory(size, side, digits, seed, params)`` and the TaskParameters fields it reads."""

    name: str
    summary: str
    reads: tuple[str, ...]
    factory: Callable[..., Any]
    multiple: Callable[[TaskParameters], int] = lambda p: 1
    upsamples: bool = False  # the measurement is smaller than the image (measurement_view upsamples)


TASK_SPECS: Mapping[str, Task] = {t.name: t for t in (
    Task("gaussian_blur", "Gaussian blur (std 3 px at 256x256)", ("blur_std",), _gaussian),
    Task("motion_blur", "motion blur (61 px kernel at 256x256, intensity 0.5)", ("motion_size",), _motion),
    Task("box", "box inpainting (a hole of half the side)", ("box",), _box),
    Task("random", "random inpainting (70 % of the pixels missing)", ("missing",), _random),
    Task("sr4", "4x super-resolution (bicubic)", (), _superres(lambda p: 4), lambda p: 4, True),
    Task("sr", "super-resolution by --factor (bicubic)", ("factor",), _superres(lambda p: p.factor),
         lambda p: p.factor, True),
    Task("denoise", "denoising (A = I: y is the image plus noise)", (), _denoise),
)}

TASKS: tuple[str, ...] = tuple(TASK_SPECS)
#: the tasks ``diffsolve demo`` runs by default (``sr`` is ``sr4`` at another factor; ``denoise`` on request)
DEMO_TASKS: tuple[str, ...] = tuple(t for t in TASKS if t not in ("sr", "denoise"))
TASK_PARAMETERS: Mapping[str, tuple[str, ...]] = {name: t.reads for name, t in TASK_SPECS.items()}
assert all(r in {f.name for f in fields(TaskParameters)} for t in TASK_SPECS.values() for r in t.reads)


def _task(task: object) -> Task:
    if not isinstance(task, str) or task not in TASK_SPECS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    return TASK_SPECS[task]


def required_multiple(task: str, params: TaskParameters | None = None) -> int:
    """Image sides must be multiples of this for ``task`` (the SR factor; 1 otherwise)."""
    return int(_task(task).multiple(params or TaskParameters()))


def make_operator(task: str, size: tuple[int, int], *, seed: int = 0, digits: bool = False,
                  params: TaskParameters | None = None) -> LinearOperator:
    """The linear operator of ``task`` for images of ``size`` = (H, W) (module docstring); the seeded
    parts (box position, motion kernel, random mask) come from ``seed``."""
    spec = _task(task)
    params = check_parameters(params if params is not None else TaskParameters())
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)):
        raise ValueError(f"size must be (H, W) positive ints, got {size!r}")
    h, w = size
    f = spec.multiple(params)
    if h % f or w % f:
        fix = (f"crop or resize to {h // f * f}x{w // f * f}" if min(h, w) >= f
               else f"use images of side >= {f} (multiples of {f})")
        raise ValueError(f"task {task!r} needs image sides divisible by {f}, got {h}x{w}; {fix}")
    return spec.factory((h, w), min(h, w), bool(digits), seed, params)


def measurement_view(task: str, y: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The measurement as a picture of the image's size (SR: nearest-neighbour upsampling)."""
    if _task(task).upsamples:
        import torch

        return torch.nn.functional.interpolate(y, size=tuple(size), mode="nearest")
    return y
