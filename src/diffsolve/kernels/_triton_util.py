"""Launch settings and the noise stream shared by the Triton kernels (imported by ``_triton_*`` only)."""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

__all__ = ["INTERPRET", "PERSISTENT_CONFIGS", "STREAM_CONFIGS", "TILE_CONFIGS", "TUNE_MIN_NUMEL", "elementwise_config",
           "grid_size", "randn_at", "tuned"]

#: under TRITON_INTERPRET=1 one big block per program keeps the (slow) interpreter fast
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


def elementwise_config(n: int) -> tuple[int, int]:
    """(BLOCK, num_warps) for a streaming kernel over ``n`` elements per sample, untuned."""
    if INTERPRET:
        return max(16, min(triton.next_power_of_2(n), 1 << 16)), 1
    return STREAM_CONFIGS[0]


@triton.jit
def randn_at(seed, index):
    """Standard normal noise at the 64-bit counters ``index`` (the Triton backend's stream).

    Philox-4x32-10 keyed by ``seed`` on the counter (index mod 2³², index >> 32, 0, 0), first two
    words to uniforms, Box–Muller, first output: the same numbers as ``tl.randn(seed, index)`` for
    int64 ``index`` in recent Triton, but always with 32-bit Philox arithmetic (64-bit counters
    would otherwise select the slow 64-bit Philox in some Triton versions).
    """
    lo = index.to(tl.uint32)
    hi = (index >> 32).to(tl.uint32)
    zero = lo * 0
    i1, i2, _, _ = tl.philox(seed, lo, hi, zero, zero)
    n1, _ = tl.pair_uniform_to_normal(tl.uint_to_uniform_float(i1), tl.uint_to_uniform_float(i2))
    return n1


#: below this many elements a launch uses the first config as is: autotuning (a compile and a timing
#: per config) would cost more than it saves, and the small shapes of the tests stay quick to compile
TUNE_MIN_NUMEL = 1 << 20

TILE_CONFIGS = [  # (BH, BW, num_warps) for the stencil kernels, tried once per shape on a GPU
    (16, 64, 4), (8, 64, 4), (32, 64, 8), (16, 128, 8), (32, 32, 4),
]
STREAM_CONFIGS = [(2048, 8), (1024, 4), (4096, 8), (8192, 16)]  # (BLOCK, num_warps)
#: (BLOCK, num_warps, programs per SM) of streaming kernels that loop over their blocks (grid_size)
PERSISTENT_CONFIGS = [(1024, 4, 16), (2048, 8, 8)]


@functools.cache
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def grid_size(blocks: int, per_sm: int, device: torch.device) -> int:
    """Programs to launch for ``blocks`` blocks: one per block (per_sm = 0), or at most
    ``per_sm`` per streaming multiprocessor, each looping over its share (persistent)."""
    if per_sm == 0 or device.type != "cuda":
        return blocks
    return max(1, min(blocks, per_sm * _sm_count(device.index if device.index is not None else 0)))


def tuned(kernel, configs: list[dict], warps: list[int], key: list[str]):
    """``kernel`` autotuned over ``configs`` (meta-parameters) on a GPU; unused by the interpreter."""
    return triton.autotune(
        configs=[triton.Config(c, num_warps=w) for c, w in zip(configs, warps)], key=key)(kernel)
