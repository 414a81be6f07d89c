"""Test-only import shim for benchmarks/agreement.py (not used by diffsolve itself).

deepinv imports torchvision (and natsort / h5py in its dataset modules) at import time; the package index's
torchvision is a CUDA build that fails to import beside CPU torch. ``install()`` puts a meta-path finder in
front that answers those names with permissive stub modules: any attribute is a dummy class, so
``from torchvision.transforms import InterpolationMode`` and the like succeed. Nothing the comparisons run
touches these stubs (deepinv's sampling code and physics use torch only).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types

STUBBED = ("torchvision", "natsort", "h5py")


class _Dummy:
    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return _Dummy()

    def __getattr__(self, name):
        return _Dummy()


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = type(name, (_Dummy,), {})
        setattr(self, name, value)
        return value


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in STUBBED:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        module.__version__ = "0.0.0+stub"
        return module

    def exec_module(self, module):
        pass


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
