"""diffsolve.kernels: fused ops with one dispatch (backend="auto"|"triton"|"cpp"|"torch").

Each op family is one module holding the readable torch reference and the public function; the
Triton kernels sit in ``_triton_<family>.py`` and the C++ ones in the ``diffsolve._C`` extension
(``_cpp_ops.py``). See docs/kernels.md for the contract all backends follow.
"""

from ._dispatch import BackendUnavailableError, backends
from .posterior import diagonal_posterior_step
from .step import ddim_step, fused_step, ge_step, mpgd_step

__all__ = [
    "BackendUnavailableError",
    "backends",
    "ddim_step",
    "diagonal_posterior_step",
    "fused_step",
    "ge_step",
    "mpgd_step",
]
