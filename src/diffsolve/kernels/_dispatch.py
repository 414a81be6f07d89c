"""Backend choice for every kernel: one explicit table, resolved once per (op, backend, device, dtype).

``TABLE`` below lists every op with the exact place of each implementation (``module:function``,
modules relative to ``diffsolve.kernels``), so ``grep fused_step`` leads from a solver to the
kernel that runs:

- torch  (``reference``): the readable torch reference, on every device; the oracle;
- triton: CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1`` (tests; imported lazily);
- cpp:    CPU tensors, the pybind11 extension ``diffsolve._C`` through ``_cpp_ops.py``.

``resolve(op, backend, device, dtype)`` returns an :class:`Impl` and caches it per
(op, backend, device type, dtype), so a sampling loop pays one dict look-up per call (no
environment reads, no imports). A backend that is named (in the call or by ``DIFFSOLVE_BACKEND``)
and cannot run the op raises :class:`BackendUnavailableError` at resolution, with the reason; so
does a table entry whose function is missing (a renamed kernel), whichever backend asked for it:
nothing falls back silently. ``backend="auto"`` picks triton for CUDA tensors, cpp for CPU tensors
when the extension is built, else torch (never the Triton interpreter); a row's ``auto_skip``
names backends that ``auto`` passes over for that op because they measured slower than torch
(an explicit choice still runs them).

Linear ops (``adjoint`` set) run through ``_autograd.LinearFunction``, whose backward is the
adjoint's implementation on the same backend. The other ops (step, posterior, CG) have no
backward on triton/cpp: their resolved functions raise :class:`NotDifferentiableError` when
autograd would need one (inputs that require grad with grad mode on); torch's reference is
differentiable as written.

Environment, read once at the first resolution (``reset()`` forgets it, for tests):
``DIFFSOLVE_BACKEND`` replaces ``"auto"`` as the default choice; ``TRITON_INTERPRET=1``
(triton's own switch, itself read when triton is imported) lets triton run on CPU tensors.
"""

from __future__ import annotations

import functools
import importlib
import os
from typing import Callable, NamedTuple

import torch

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "Impl",
    "NotDifferentiableError",
    "Row",
    "TABLE",
    "backends",
    "dispatch_table",
    "implementation",
    "reset",
    "resolve",
]

BACKENDS = ("triton", "cpp", "torch")
_CHOICES = ("auto",) + BACKENDS
_DTYPES = (torch.float32, torch.float64)


class BackendUnavailableError(RuntimeError):
    """A backend was named explicitly but cannot run the op here; the message says why."""


class NotDifferentiableError(RuntimeError):
    """A non-linear op on triton/cpp was asked to record a backward it does not have."""


class Row(NamedTuple):
    """One op: where each implementation lives (``module:function`` in ``diffsolve.kernels``; None:
    no such implementation), its adjoint op (linear ops only) and the backends ``auto`` skips."""

    reference: str
    triton: str | None
    cpp: str | None
    adjoint: str | None = None
    auto_skip: tuple[str, ...] = ()


# fmt: off
TABLE: dict[str, Row] = {
    # linear ops: a forward and its exact adjoint, each the other's backward (kernels/_autograd.py)
    "correlate2d":                   Row("correlate:correlate2d_reference",
                                         "_triton_correlate:correlate2d", "_cpp_ops:correlate2d",
                                         adjoint="correlate2d_adjoint"),
    "correlate2d_adjoint":           Row("correlate:correlate2d_adjoint_reference",
                                         "_triton_correlate:correlate2d_adjoint", "_cpp_ops:correlate2d_adjoint",
                                         adjoint="correlate2d"),
    "separable_correlate2d":         Row("correlate:separable_correlate2d_reference",
                                         "_triton_correlate:separable_correlate2d", "_cpp_ops:separable_correlate2d",
                                         adjoint="separable_correlate2d_adjoint"),
    "separable_correlate2d_adjoint": Row("correlate:separable_correlate2d_adjoint_reference",
                                         "_triton_correlate:separable_correlate2d_adjoint",
                                         "_cpp_ops:separable_correlate2d_adjoint",
                                         adjoint="separable_correlate2d"),
    # Triton resample measured 0.3-0.6x torch's matmul on an H100 (benchmarks/results/gpu-kernels.md)
    "resample":                      Row("resample:resample_reference",
                                         "_triton_resample:resample", "_cpp_ops:resample",
                                         adjoint="resample_adjoint", auto_skip=("triton",)),
    "resample_adjoint":              Row("resample:resample_adjoint_reference",
                                         "_triton_resample:resample_adjoint", "_cpp_ops:resample_adjoint",
                                         adjoint="resample", auto_skip=("triton",)),
    "avg_pool":                      Row("resample:avg_pool_reference",
                                         "_triton_resample:avg_pool", "_cpp_ops:avg_pool",
                                         adjoint="avg_pool_adjoint"),
    "avg_pool_adjoint":              Row("resample:avg_pool_adjoint_reference",
                                         "_triton_resample:avg_pool_adjoint", "_cpp_ops:avg_pool_adjoint",
                                         adjoint="avg_pool"),
    # non-linear (or in-place) ops: no backward on triton / cpp
    "fused_step":                    Row("step:fused_step_reference",
                                         "_triton_step:fused_step", "_cpp_ops:fused_step"),
    "diagonal_posterior_step":       Row("posterior:diagonal_posterior_step_reference",
                                         "_triton_posterior:diagonal_posterior_step",
                                         "_cpp_ops:diagonal_posterior_step"),
    "cg_dots":                       Row("cg:cg_dots_reference", "_triton_cg:cg_dots", "_cpp_ops:cg_dots"),
    "cg_update":                     Row("cg:cg_update_reference", "_triton_cg:cg_update", "_cpp_ops:cg_update"),
}
# fmt: on


class Impl(NamedTuple):
    """A resolved op: the concrete backend, its function, and for linear ops the adjoint's
    function on the same backend (None otherwise)."""

    op: str
    backend: str
    fn: Callable
    adjoint_fn: Callable | None

    def transposed(self) -> "Impl":
        """The adjoint op on the same backend (linear ops only)."""
        return Impl(TABLE[self.op].adjoint, self.backend, self.adjoint_fn, self.fn)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- environment, read once
@functools.cache
def _env_default() -> str:
    value = os.environ.get("DIFFSOLVE_BACKEND", "auto").strip().lower() or "auto"
    if value not in _CHOICES:
        raise ValueError(f"DIFFSOLVE_BACKEND={value!r} is not one of {_CHOICES}; unset it or pick one of them")
    return value


@functools.cache
def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.cache
def _triton_status() -> tuple[bool, str]:
    try:
        import triton  # noqa: F401
    except ImportError as err:  # pragma: no cover - depends on the platform
        return False, f"triton is not importable ({err})"
    if torch.cuda.is_available():
        return True, f"triton {triton.__version__} on CUDA"
    if _interpreting():
        return True, f"triton {triton.__version__} under TRITON_INTERPRET=1 (CPU, slow; tests only)"
    return False, "no CUDA device (set TRITON_INTERPRET=1 to run Triton on the CPU, for tests)"


@functools.cache
def _cpp_status() -> tuple[bool, str]:
    try:
        from . import _cpp
    except ImportError as err:  # pragma: no cover - the loader ships with the package
        return False, f"C++ extension loader missing ({err})"
    return _cpp.status()


def backends() -> dict[str, tuple[bool, str]]:
    """Each backend with (available, why / why not)."""
    return {
        "triton": _triton_status(),
        "cpp": _cpp_status(),
        "torch": (True, f"torch {torch.__version__} (reference, every device)"),
    }


_CACHE: dict[tuple, Impl] = {}


def reset() -> None:
    """Forget resolved ops and the environment read (tests that change DIFFSOLVE_BACKEND,
    TRITON_INTERPRET or the backends' status call this)."""
    _CACHE.clear()
    for f in (_env_default, _interpreting, _triton_status, _cpp_status, _load):
        getattr(f, "cache_clear", lambda: None)()  # tests may have replaced one by a plain function


# ----------------------------------------------------------------------------- resolution
def _location(op: str, backend: str) -> str | None:
    row = TABLE[op]
    return row.reference if backend == "torch" else getattr(row, backend)


@functools.cache
def _load(location: str) -> Callable:
    """The function at ``module:function``; a missing one is an error (a renamed kernel)."""
    module, name = location.split(":")
    fn = getattr(importlib.import_module(f"diffsolve.kernels.{module}"), name, None)
    if fn is None:
        raise BackendUnavailableError(f"the dispatch table names diffsolve.kernels.{location}, which does not "
                                      "exist (renamed?); fix TABLE in kernels/_dispatch.py")
    return fn


def _why_not(op: str, backend: str, device_type: str, dtype: torch.dtype) -> str | None:
    """None when ``backend`` can run ``op`` on tensors of this device type and dtype, else why."""
    if dtype not in _DTYPES:
        return f"kernels run float32 / float64 tensors, got {dtype}"
    if backend == "torch":
        return None
    if _location(op, backend) is None:
        return f"the {backend} backend has no implementation of {op!r}"
    return _device_why_not(backend, device_type)


def _device_why_not(backend: str, device_type: str) -> str | None:
    """None when the cpp / triton ``backend`` runs on tensors of this device type here, else why (any op)."""
    if backend == "cpp" and device_type != "cpu":
        return f"the C++ backend runs on CPU tensors only, got a {device_type} tensor"
    if backend == "triton" and device_type != "cuda" and not (device_type == "cpu" and _interpreting()):
        return f"Triton needs CUDA tensors (got {device_type}) unless TRITON_INTERPRET=1"
    ok, why = _triton_status() if backend == "triton" else _cpp_status()
    return None if ok else why


def check_backend(backend: object, device: torch.device, dtype: torch.dtype) -> None:
    """Refuse, before any work, a named ``backend`` that cannot run kernels on tensors of this device and dtype
    (``auto`` and ``torch`` always can; a dtype kernels do not take is left to the caller's own check)."""
    _check_choice(backend)
    from_env = backend == "auto"
    backend = _env_default() if from_env else backend
    if backend in ("auto", "torch") or dtype not in _DTYPES:
        return
    reason = _device_why_not(backend, device.type)
    if reason is not None:
        if from_env:
            raise BackendUnavailableError(f"DIFFSOLVE_BACKEND={backend} (the environment's default backend) cannot "
                                          f"run this solve: {reason}; unset DIFFSOLVE_BACKEND or set it to auto")
        raise BackendUnavailableError(f"backend={backend!r} cannot run this solve: {reason}; pass backend='auto' "
                                      "(or 'torch')")


def _auto(op: str, device_type: str, dtype: torch.dtype) -> str:
    preferred = {"cuda": "triton", "cpu": "cpp"}.get(device_type)
    if preferred is None or preferred in TABLE[op].auto_skip:
        return "torch"
    if preferred == "triton" and device_type != "cuda":
        return "torch"
    return preferred if _why_not(op, preferred, device_type, dtype) is None else "torch"


def _check_choice(backend: object) -> None:
    if not isinstance(backend, str) or backend not in _CHOICES:
        raise ValueError(f"backend must be one of {_CHOICES}, got {backend!r}")


def _choose(op: str, backend: str, device_type: str, dtype: torch.dtype) -> str:
    if op not in TABLE:
        raise BackendUnavailableError(f"no op named {op!r} in the dispatch table (ops: {', '.join(TABLE)})")
    if backend == "auto":
        backend = _env_default()
    if backend == "auto":
        return _auto(op, device_type, dtype)
    reason = _why_not(op, backend, device_type, dtype)
    if reason is not None:
        raise BackendUnavailableError(f"backend={backend!r} cannot run {op!r}: {reason}")
    return backend


def _no_backward(op: str, backend: str, fn: Callable) -> Callable:
    """``fn`` that refuses to run where autograd would need its (missing) backward."""

    @functools.wraps(fn)
    def run(*args):
        if torch.is_grad_enabled():
            for a in args:
                if isinstance(a, torch.Tensor) and a.requires_grad:
                    raise NotDifferentiableError(
                        f"{op} on the {backend} backend has no backward, but an input requires grad; "
                        "detach the inputs, run it under torch.no_grad(), or pass backend='torch'")
        return fn(*args)

    return run


def resolve(op: str, backend: str, device: torch.device, dtype: torch.dtype) -> Impl:
    """The implementation of ``op`` for tensors on ``device`` of ``dtype`` (cached; module docstring)."""
    if not isinstance(backend, str):  # before the cache lookup: a list is unhashable
        _check_choice(backend)
    key = (op, backend, device.type, dtype)
    impl = _CACHE.get(key)
    if impl is not None:
        return impl
    _check_choice(backend)
    chosen = _choose(op, backend, device.type, dtype)
    fn = _load(_location(op, chosen))  # type: ignore[arg-type]
    adjoint = TABLE[op].adjoint
    adjoint_fn = None
    if adjoint is not None:
        reason = _why_not(adjoint, chosen, device.type, dtype)
        if reason is not None:  # the table pairs ops; a backend must have both halves
            raise BackendUnavailableError(f"backend={chosen!r} runs {op!r} but not its adjoint {adjoint!r}: {reason}")
        adjoint_fn = _load(_location(adjoint, chosen))  # type: ignore[arg-type]
    elif chosen != "torch":
        fn = _no_backward(op, chosen, fn)
    impl = _CACHE[key] = Impl(op, chosen, fn, adjoint_fn)
    return impl


def implementation(backend: str, name: str, family: str | None = None,
                   device: torch.device = torch.device("cpu"), dtype: torch.dtype = torch.float32) -> Callable:
    """The function implementing op ``name`` on the chosen backend (``family``: ignored)."""
    return resolve(name, backend, device, dtype).fn


def dispatch_table() -> list[dict[str, object]]:
    """One row per op for ``diffsolve info``: ``{"op": str, "torch": bool, "triton": bool, "cpp": bool,
    "auto_cpu": str, "auto_cuda": str}``. torch/triton/cpp: the table has the implementation and
    the backend is usable here (triton counts as usable when CUDA or the interpreter is on);
    auto_cpu / auto_cuda: the backend ``backend="auto"`` picks for float32 tensors on that device
    (the CUDA column as it would be on a CUDA machine with triton; DIFFSOLVE_BACKEND is ignored)."""
    rows = []
    triton_ok, cpp_ok = _triton_status()[0], _cpp_status()[0]
    for op, row in TABLE.items():
        cuda = "torch" if row.triton is None or "triton" in row.auto_skip else "triton"
        rows.append({
            "op": op,
            "torch": True,
            "triton": row.triton is not None and triton_ok,
            "cpp": row.cpp is not None and cpp_ok,
            "auto_cpu": _auto(op, "cpu", torch.float32),
            "auto_cuda": cuda,
        })
    return rows
