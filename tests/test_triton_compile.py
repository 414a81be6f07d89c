"""Every Triton kernel compiles for an H100 (sm_90) ahead of time, with no GPU present
(tests/_compile_sm90.py, run in a subprocess because this session's kernels are interpreted)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("_compile_sm90.py")


@pytest.mark.skipif(importlib.util.find_spec("triton.backends.nvidia") is None,
                    reason="this triton build has no NVIDIA backend (ptxas) to compile with")
def test_triton_kernels_compile_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    compiled = [line for line in done.stdout.splitlines() if line.startswith("ok ")]
    assert len(compiled) == 15, done.stdout  # the QUICK set: every kernel, every kind of branch
