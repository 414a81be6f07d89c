"""diffsolve.solvers: samplers and inverse solvers sharing one contract: ``solver(denoiser, operator, y,
sampling, *, own options)`` with the shared options in one :class:`Sampling` (see _loop.py)."""

from ._loop import SAMPLING_FIELDS, Sampling
from ._inverse import UNFIT_CONSISTENCY, DataConsistencyWarning, MeasurementRangeWarning

from .ddim import ddim
from .ge import ge
from .dps import DPSStepsWarning, dps
from .mpgd import Projection, mpgd
from .mpgd_ldm import mpgd_ldm
from .cdps import CG, CGNotConvergedWarning, cdps
from .pigdm import pigdm
from .ddrm import ddrm
from .ddnm import ddnm
from .diffpir import diffpir
from .daps import daps
from .reddiff import reddiff
from .mmps import mmps

__all__ = ["SAMPLING_FIELDS", "UNFIT_CONSISTENCY", "CG", "CGNotConvergedWarning", "DataConsistencyWarning",
           "DPSStepsWarning", "MeasurementRangeWarning", "Projection", "Sampling", "GEScheduler", "cdps", "daps",
           "ddim", "ddnm", "ddrm", "diffpir", "dps", "ge", "mmps", "mpgd", "mpgd_ldm", "pigdm", "reddiff"]


def __getattr__(name: str):
    """``GEScheduler`` subclasses diffusers' scheduler classes: diffusers loads on first use only."""
    if name == "GEScheduler":
        from .ge_scheduler import GEScheduler

        return GEScheduler
    raise AttributeError(f"module 'diffsolve.solvers' has no attribute {name!r}")
