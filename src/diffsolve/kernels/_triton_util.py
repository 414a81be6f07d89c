"""Launch settings and the noise stream shared by the Triton kernels (imported by ``_triton_*`` only)."""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

__all__ = ["INTERPRET", "PERSISTENT_CONFIGS", "STREAM_CONFIGS", "TILE_CONFIGS", "TUNE_MIN_NUMEL", "elementwise_config",
           "grid_size", "randn_block", "split_offset", "tuned"]

#: under TRITON_INTERPRET=1 one big block per program keeps the (slow) interpreter fast
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


def elementwise_config(n: int) -> tuple[int, int]:
    """(BLOCK, num_warps) for a streaming kernel over ``n`` elements per sample, untuned."""
    if INTERPRET:
        return max(16, min(triton.next_power_of_2(n), 1 << 16)), 1
    return STREAM_CONFIGS[0]


@triton.jit
def randn_block(seed, offset_lo, offset_hi, row, start, BLOCK: tl.constexpr):
    """Standard normals of elements start, …, start + BLOCK − 1 (start a multiple of 4) of row ``row``:
    the Triton backend's noise stream (docs/kernels.md, "step").

    Element i is lane i mod 4 of Philox-4x32-10 keyed by ``seed`` at the counter
    (i div 4, row, offset mod 2³², offset div 2³²); lanes (0, 1) and (2, 3) are turned into uniforms
    and paired through Box–Muller (cos, sin). One Philox call and two Box–Mullers give four normals.
    """
    zero = tl.zeros((BLOCK // 4,), dtype=tl.int64)
    c0 = (zero + start // 4 + tl.arange(0, BLOCK // 4)).to(tl.uint32)
    c1 = (zero + row).to(tl.uint32)
    c2 = (zero + offset_lo).to(tl.uint32)
    c3 = (zero + offset_hi).to(tl.uint32)
    i0, i1, i2, i3 = tl.philox(seed, c0, c1, c2, c3)
    n0, n1 = tl.pair_uniform_to_normal(tl.uint_to_uniform_float(i0), tl.uint_to_uniform_float(i1))
    n2, n3 = tl.pair_uniform_to_normal(tl.uint_to_uniform_float(i2), tl.uint_to_uniform_float(i3))
    return tl.reshape(tl.join(tl.join(n0, n2), tl.join(n1, n3)), (BLOCK,))  # n0 n1 n2 n3 n0 n1 …


def split_offset(offset: int) -> tuple[int, int]:
    """(offset mod 2³², offset div 2³² mod 2³²): the two counter words of a noise offset."""
    return offset & 0xFFFFFFFF, (offset >> 32) & 0xFFFFFFFF


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
