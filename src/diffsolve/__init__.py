"""diffsolve: fast solvers for inverse problems and guided generation with diffusion models.

``import diffsolve`` is cheap (no torch, no diffusers): the subpackages and :func:`solve` load on
first use, so the command line answers ``--help`` and argument errors at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "solve"]

_SUBPACKAGES = ("kernels", "models", "operators", "solvers", "data", "schedules")

if TYPE_CHECKING:  # pragma: no cover
    from .solve import solve


def __getattr__(name: str) -> Any:
    if name == "solve":
        from .solve import solve

        globals()["solve"] = solve  # importing the submodule bound diffsolve.solve to the module
        return solve
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'diffsolve' has no attribute {name!r}")
