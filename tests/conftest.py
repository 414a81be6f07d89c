"""Test configuration: the Triton interpreter must be chosen before triton is imported."""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Tests use tiny tensors: one thread avoids thread hand-off costs dwarfing the work (tests that
# check thread-count invariance set the count themselves).
torch.set_num_threads(1)


@pytest.fixture
def no_compute(monkeypatch):
    """Any model load, restoration or demo run fails the test: the command line's argument errors must come first."""

    def boom(*args, **kwargs):
        raise AssertionError("a model was loaded or a solve ran before the argument error")

    import diffsolve.cli.common
    import diffsolve.cli.demo
    import diffsolve.methods

    monkeypatch.setattr(diffsolve.cli.common, "load_model", boom)
    monkeypatch.setattr(diffsolve.methods, "restore", boom)
    monkeypatch.setattr(diffsolve.cli.demo, "run_demo", boom)
