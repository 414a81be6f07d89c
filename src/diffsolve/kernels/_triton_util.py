"""Launch settings shared by the Triton kernels (imported only by the ``_triton_*`` modules)."""

from __future__ import annotations

import os

import triton

__all__ = ["INTERPRET", "elementwise_config"]

#: under TRITON_INTERPRET=1 one big block per program keeps the (slow) interpreter fast
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


def elementwise_config(n: int) -> tuple[int, int]:
    """(BLOCK, num_warps) for a streaming kernel over ``n`` elements per sample."""
    if INTERPRET:
        return max(16, min(triton.next_power_of_2(n), 1 << 16)), 1
    return 2048, 8
