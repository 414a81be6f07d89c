"""Test configuration: the Triton interpreter must be chosen before triton is imported."""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Tests use tiny tensors: one thread avoids thread hand-off costs dwarfing the work (tests that
# check thread-count invariance set the count themselves).
torch.set_num_threads(1)
