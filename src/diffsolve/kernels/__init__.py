"""diffsolve.kernels: fused ops with one dispatch (backend="auto"|"triton"|"cpp"|"torch").

Each op family is one module holding the readable torch reference and the public function; the
Triton kernels sit in ``_triton_<family>.py`` and the C++ ones in the ``diffsolve._C`` extension
(``_cpp_ops.py``). ``_dispatch.TABLE`` lists every op's implementations; linear ops are
differentiable on every backend (``_autograd.py``). See docs/kernels.md for the contract.
"""

from ._dispatch import BackendUnavailableError, NotDifferentiableError, backends, dispatch_table
from ._dispatch import reset as reset_dispatch
from .cg import CGResult, batched_cg, cg_dots, cg_update
from .correlate import correlate2d, correlate2d_adjoint, separable_correlate2d, separable_correlate2d_adjoint
from .posterior import diagonal_posterior_step
from .resample import avg_pool, avg_pool_adjoint, resample, resample_adjoint
from .step import ddim_step, fused_step, ge_step, mpgd_step

__all__ = [
    "BackendUnavailableError",
    "CGResult",
    "NotDifferentiableError",
    "avg_pool",
    "avg_pool_adjoint",
    "backends",
    "batched_cg",
    "cg_dots",
    "cg_update",
    "correlate2d",
    "correlate2d_adjoint",
    "ddim_step",
    "diagonal_posterior_step",
    "dispatch_table",
    "fused_step",
    "ge_step",
    "mpgd_step",
    "reset_dispatch",
    "resample",
    "resample_adjoint",
    "separable_correlate2d",
    "separable_correlate2d_adjoint",
]
