"""Build script for the optional C++ CPU backend ``diffsolve._C`` (metadata lives in pyproject.toml).

The extension is C++17 + OpenMP bound with pybind11 and needs no torch headers (tensors cross as
raw buffers checked in Python), so an isolated build only fetches setuptools and pybind11. It is
optional: when pybind11, the compiler or OpenMP is missing, or the compile fails, the install still
succeeds without it and ``diffsolve.kernels._cpp.status()`` (``diffsolve info``) says why.
Set ``DIFFSOLVE_NO_EXTENSION=1`` to skip it on purpose. Portable flags only (no ``-march=native``):
``-O3`` auto-vectorisation for the baseline instruction set, plus AVX2 and AVX-512 versions of the
hot loops (``target`` attributes on those functions only) picked at run time by CPU detection;
``-ffp-contract=off`` keeps every version bit-identical.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

SOURCES = sorted(str(p.as_posix()) for p in Path("pybind").glob("*.cpp"))


def _warn(message: str) -> None:
    bar = "=" * 78
    print(f"\n{bar}\nWARNING: diffsolve C++ extension not built: {message}\n"
          f"diffsolve works without it (torch backend); `diffsolve info` shows the backends.\n{bar}\n",
          file=sys.stderr)


class OptionalBuildExt(build_ext):
    """Portable optimisation and OpenMP flags; a failed build warns and is skipped (``optional``)."""

    def build_extensions(self) -> None:
        unix = self.compiler.compiler_type != "msvc"
        for ext in self.extensions:
            if unix:
                ext.extra_compile_args += ["-O3", "-std=c++17", "-fopenmp", "-fno-math-errno", "-ffp-contract=off",
                                            "-fvisibility=hidden"]
                ext.extra_link_args += ["-fopenmp"]
            else:
                ext.extra_compile_args += ["/O2", "/std:c++17", "/openmp"]
        super().build_extensions()

    def build_extension(self, ext) -> None:
        try:
            super().build_extension(ext)
        except Exception as err:
            _warn(f"{type(err).__name__}: {err}")
            raise  # ext.optional: setuptools skips the extension and goes on


def _extensions() -> list:
    if os.environ.get("DIFFSOLVE_NO_EXTENSION", "0") == "1":
        return []
    try:
        from pybind11.setup_helpers import Pybind11Extension
    except ImportError:
        _warn("pybind11 is not installed in the build environment")
        return []
    return [Pybind11Extension("diffsolve._C", SOURCES, include_dirs=["pybind"], cxx_std=17,
                              optional=True)]


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
