"""Benchmark configuration: every saved run records the machine, versions and commit."""

from __future__ import annotations

import os
import platform
import subprocess

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def machine_info() -> dict[str, str]:
    """Machine, library versions and commit, for ``extra_info`` and the results report."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = "absent"
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores",
        "device": device,
        "torch": torch.__version__,
        "triton": triton_version,
        "threads": str(torch.get_num_threads()),
        "commit": commit,
    }


@pytest.fixture(autouse=True)
def _record_machine(request):
    """Attach the machine line to every benchmark that uses the ``benchmark`` fixture."""
    if "benchmark" in request.fixturenames:
        request.getfixturevalue("benchmark").extra_info.update(machine_info())
    yield
