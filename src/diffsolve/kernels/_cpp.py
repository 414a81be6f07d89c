"""The one loader of the C++ CPU extension ``diffsolve._C`` (built from ``pybind/`` by setup.py).

Importing this module tries ``import diffsolve._C`` once and records the outcome; nothing else
happens at import. :func:`status` says whether the extension is usable and, if not, why (for
``diffsolve info`` and the backend dispatch). :func:`extension` returns the module for
``_cpp_ops.py``. The extension is optional: without it every op runs on the torch backend.
"""

from __future__ import annotations

from types import ModuleType

__all__ = ["ABI_VERSION", "extension", "status"]

ABI_VERSION = 2  # must equal kAbiVersion in pybind/module.cpp

_module: ModuleType | None = None
_reason: str
try:
    from .. import _C as _module  # type: ignore[attr-defined,no-redef]
except ImportError as err:
    _module = None
    _reason = (f"C++ extension diffsolve._C is not built ({err}); reinstall with a C++17 compiler "
               "with OpenMP (`pip install -e .`), or see the build warning")
else:
    found = getattr(_module, "ABI_VERSION", None)
    if found != ABI_VERSION:
        _reason = (f"C++ extension diffsolve._C is stale (ABI {found}, need {ABI_VERSION}); "
                   "rebuild with `pip install -e .`")
        _module = None
    else:
        _reason = f"diffsolve._C ({_module.build_info()})"


def status() -> tuple[bool, str]:
    """(available, why / why not) for the C++ backend."""
    return _module is not None, _reason


def extension() -> ModuleType:
    """The loaded ``diffsolve._C`` module; raises ImportError with the reason when absent."""
    if _module is None:
        raise ImportError(_reason)
    return _module
