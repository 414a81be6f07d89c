"""Backend choice for every fused op: the one place that decides and reads the environment.

An op ``name`` of family ``fam`` (the module ``diffsolve.kernels.<fam>``) has up to three
implementations with one positional signature:

- torch:  ``diffsolve.kernels.<fam>.<name>_reference``  (readable; the oracle and the fallback)
- triton: ``diffsolve.kernels._triton_<fam>.<name>``      (imported lazily: triton is heavy)
- cpp:    ``diffsolve.kernels._cpp_ops.<name>``           (the pybind11 extension ``diffsolve._C``)

``backend="auto"`` picks triton for CUDA tensors, cpp for CPU tensors when the extension is built,
else torch, quietly; it never picks the Triton interpreter. A backend module may name ops in
``AUTO_EXCLUDE`` that it implements but that measured slower than torch: ``auto`` then uses torch
for them (an explicit choice still runs them). A backend named explicitly that cannot
run raises :class:`BackendUnavailableError` with the reason.

Environment (read here only): ``DIFFSOLVE_BACKEND`` replaces ``"auto"`` as the default choice.
``TRITON_INTERPRET=1`` (triton's own switch) lets ``backend="triton"`` run on CPU tensors.
"""

from __future__ import annotations

import functools
import importlib
import os
from typing import Callable

import torch

__all__ = ["BACKENDS", "BackendUnavailableError", "backends", "implementation", "resolve_backend"]

BACKENDS = ("triton", "cpp", "torch")
_CHOICES = ("auto",) + BACKENDS


class BackendUnavailableError(RuntimeError):
    """A backend was named explicitly but cannot run here; the message says why."""


def _env_default() -> str:
    value = os.environ.get("DIFFSOLVE_BACKEND", "auto").strip().lower() or "auto"
    if value not in _CHOICES:
        raise ValueError(f"DIFFSOLVE_BACKEND={value!r} is not one of {_CHOICES}")
    return value


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


def _cpp_status() -> tuple[bool, str]:
    try:
        from . import _cpp
    except ImportError as err:
        return False, f"C++ extension loader missing ({err})"
    return _cpp.status()


def backends() -> dict[str, tuple[bool, str]]:
    """Each backend with (available, why / why not)."""
    return {
        "triton": _triton_status(),
        "cpp": _cpp_status(),
        "torch": (True, f"torch {torch.__version__} (reference, every device)"),
    }


@functools.cache
def _lookup(name: str, family: str, backend: str) -> Callable | None:
    module = _MODULES[backend].format(family=family)
    attr = f"{name}_reference" if backend == "torch" else name
    try:
        mod = importlib.import_module(module)
    except ImportError:
        if backend == "torch":
            raise
        return None
    return getattr(mod, attr, None)


_MODULES = {
    "torch": "diffsolve.kernels.{family}",
    "triton": "diffsolve.kernels._triton_{family}",
    "cpp": "diffsolve.kernels._cpp_ops",
}


def _auto_allowed(name: str, family: str, backend: str) -> bool:
    """False when the backend's module lists op ``name`` in ``AUTO_EXCLUDE`` (slower than torch)."""
    module = importlib.import_module(_MODULES[backend].format(family=family))
    return name not in getattr(module, "AUTO_EXCLUDE", ())


def _why_not(name: str, family: str, backend: str, device: torch.device) -> str | None:
    """None when ``backend`` can run op ``name`` on ``device``, else the reason."""
    if backend == "torch":
        return None
    if backend == "cpp" and device.type != "cpu":
        return f"the C++ backend runs on CPU tensors only, got a {device.type} tensor"
    if backend == "triton" and device.type != "cuda" and not _interpreting():
        return f"Triton needs CUDA tensors (got {device.type}) unless TRITON_INTERPRET=1"
    ok, why = _triton_status() if backend == "triton" else _cpp_status()
    if not ok:
        return why
    if _lookup(name, family, backend) is None:
        return f"the {backend} backend has no implementation of {name!r}"
    return None


def resolve_backend(backend: str, name: str, family: str, device: torch.device) -> str:
    """The concrete backend that runs op ``name`` for tensors on ``device``."""
    if not isinstance(backend, str) or backend not in _CHOICES:
        raise ValueError(f"backend must be one of {_CHOICES}, got {backend!r}")
    if backend == "auto":
        backend = _env_default()
    if backend == "auto":
        preferred = "triton" if device.type == "cuda" else "cpp"
        if device.type in ("cuda", "cpu") and _why_not(name, family, preferred, device) is None:
            if _auto_allowed(name, family, preferred):
                return preferred
        return "torch"
    reason = _why_not(name, family, backend, device)
    if reason is not None:
        raise BackendUnavailableError(f"backend={backend!r} cannot run {name!r}: {reason}")
    return backend


def implementation(backend: str, name: str, family: str, device: torch.device) -> Callable:
    """The function implementing op ``name`` on the chosen backend (see the module docstring)."""
    impl = _lookup(name, family, resolve_backend(backend, name, family, device))
    assert impl is not None
    return impl
