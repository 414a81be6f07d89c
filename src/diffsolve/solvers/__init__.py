"""diffsolve.solvers: samplers and inverse solvers sharing one signature (see _loop.py)."""

from .ddim import ddim
from .ge import ge
from .dps import dps
from .mpgd import mpgd
from .mpgd_ldm import mpgd_ldm
from .cdps import CGNotConvergedWarning, cdps

__all__ = ["CGNotConvergedWarning", "GEScheduler", "cdps", "ddim", "dps", "ge", "mpgd", "mpgd_ldm"]


def __getattr__(name: str):
    """``GEScheduler`` subclasses diffusers' scheduler classes: diffusers loads on first use only."""
    if name == "GEScheduler":
        from .ge_scheduler import GEScheduler

        return GEScheduler
    raise AttributeError(f"module 'diffsolve.solvers' has no attribute {name!r}")
