"""diffsolve: fast solvers for inverse problems and guided generation with diffusion models.

``import diffsolve`` is cheap (no torch, no diffusers): the subpackages load on first use and
:func:`solve` imports torch on its first call, so the command line answers ``--help`` and argument
errors at once.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "solve"]

_SUBPACKAGES = ("kernels", "models", "operators", "solvers", "data", "schedules")

# Bound here, after the submodule diffsolve.solve loads, so the name is the function whoever imports the
# submodule later (a lazy binding was overwritten by the import system's setattr of the submodule).
from .solve import solve  # noqa: E402  (light: the registry and solve import torch on use)


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'diffsolve' has no attribute {name!r}")
