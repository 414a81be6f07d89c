"""diffsolve.solvers: samplers and inverse solvers sharing one signature (see _loop.py)."""

from .ddim import ddim
from .ge import ge
from .ge_scheduler import GEScheduler
from .dps import dps
from .mpgd import mpgd
from .mpgd_ldm import mpgd_ldm
from .cdps import CGNotConvergedWarning, cdps

__all__ = ["CGNotConvergedWarning", "GEScheduler", "cdps", "ddim", "dps", "ge", "mpgd", "mpgd_ldm"]
