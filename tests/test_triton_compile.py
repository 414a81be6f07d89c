"""Every Triton kernel compiles for an H100 (sm_90) ahead of time, with no GPU present
(tests/_compile_sm90.py, run in a subprocess because this session's kernels are interpreted).

Twice: with the Triton installed here (the newest pip resolves, which also runs the interpreter
tests), and with the oldest Triton the package supports (pyproject's lower bound, what the GPU
machines run) when ``DIFFSOLVE_TRITON_OLDEST`` names a folder it was installed into with
``pip install --no-deps --target`` (``.ci/run`` does so)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("_compile_sm90.py")
OLDEST = os.environ.get("DIFFSOLVE_TRITON_OLDEST")


def _declared_minimum() -> str:
    for req in importlib.metadata.requires("diffsolve") or ():
        found = re.match(r"triton\s*>=\s*([0-9.]+)", req)
        if found:
            return found.group(1)
    raise AssertionError("pyproject declares no lower bound for triton")


def _compile(extra_path: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    code = "import triton, runpy, sys; print('triton', triton.__version__); sys.argv = [sys.argv[1]]; " \
           "runpy.run_path(sys.argv[0], run_name='__main__')"
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (extra_path, env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, "-c", code, str(SCRIPT)], env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    compiled = [line for line in done.stdout.splitlines() if line.startswith("ok ")]
    assert len(compiled) == 15, done.stdout  # the QUICK set: every kernel, every kind of branch
    return done.stdout.splitlines()[0]


@pytest.mark.skipif(importlib.util.find_spec("triton.backends.nvidia") is None,
                    reason="this triton build has no NVIDIA backend (ptxas) to compile with")
def test_triton_kernels_compile_for_sm90():
    assert _compile(None) == f"triton {importlib.metadata.version('triton')}"


@pytest.mark.skipif(OLDEST is None, reason="DIFFSOLVE_TRITON_OLDEST is not set (.ci/run installs the oldest "
                                           "supported triton there)")
def test_triton_kernels_compile_for_sm90_on_the_oldest_supported_triton():
    version = _compile(OLDEST).split()[1]
    pad = lambda v: tuple(int(n) for n in re.findall(r"\d+", v)[:3]) + (0,) * (3 - len(re.findall(r"\d+", v)[:3]))
    assert pad(version) == pad(_declared_minimum()), version
