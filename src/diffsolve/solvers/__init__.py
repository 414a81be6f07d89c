"""diffsolve.solvers: samplers and inverse solvers sharing one signature (see _loop.py)."""

from .ddim import ddim
from .ge import ge
from .ge_scheduler import GEScheduler

__all__ = ["GEScheduler", "ddim", "ge"]
