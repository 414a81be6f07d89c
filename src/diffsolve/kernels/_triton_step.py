"""Triton backend of the fused sampler step (docs/kernels.md, "step"): one pass over the pixels.

``fused_step(x, eps, coefs, eps_prev, guidance, noise, seed, offset, want_x0)`` reads x_t, ε̂ and
only the optional inputs that are given, generates z in-kernel when ``seed`` is given (Philox,
``_triton_util.randn_block``: element i of sample b is lane i mod 4 of the call at counter
(i div 4, b, offset)), and writes x_s (and x̂0 when ``want_x0``). Per-sample coefficients come from the (B, 8) table
``[γ, c_x, c_e, c_g, c_z, d_x, d_e, d_g]``.

The work is B × ⌈n/BLOCK⌉ blocks, block k covering sample k // ⌈n/BLOCK⌉. A program loops over
blocks pid, pid + P, pid + 2P, ... for a grid of P programs: P = all blocks (one block each) or, in
the persistent configurations, a few programs per SM. Persistent grids avoid the last, partly
filled wave of a one-block-per-program grid (at B = 16, 3×256×256 and 2048-element blocks: 1536
blocks on 132 SMs × 8 resident programs = 1.45 waves). The autotuner times both kinds per shape on
the GPU and keeps the faster.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._triton_util import (INTERPRET, PERSISTENT_CONFIGS, STREAM_CONFIGS, TUNE_MIN_NUMEL, elementwise_config,
                           grid_size, randn_block, split_offset, tuned)

__all__ = ["fused_step"]


@triton.jit
def _fused_step_kernel(
    x_ptr, e_ptr, coef_ptr, ep_ptr, g_ptr, z_ptr, xs_ptr, x0_ptr,
    n_per_sample, n_samples, seed, offset_lo, offset_hi,
    HAS_PREV: tl.constexpr, HAS_G: tl.constexpr, NOISE: tl.constexpr, WANT_X0: tl.constexpr,
    BLOCK: tl.constexpr, PER_SM: tl.constexpr,
):
    # NOISE: 0 none, 1 a given tensor, 2 Philox from (seed, offset); PER_SM only sizes the grid
    chunks = tl.cdiv(n_per_sample, BLOCK)
    for block in range(tl.program_id(0), chunks * n_samples, tl.num_programs(0)):
        b = block // chunks
        start = (block % chunks) * BLOCK
        local = start + tl.arange(0, BLOCK)
        _step_block(x_ptr, e_ptr, coef_ptr + b * 8, ep_ptr, g_ptr, z_ptr, xs_ptr, x0_ptr, seed, offset_lo,
                    offset_hi, b, start, b.to(tl.int64) * n_per_sample + local, local < n_per_sample,
                    HAS_PREV, HAS_G, NOISE, WANT_X0, BLOCK)


@triton.jit
def _step_block(x_ptr, e_ptr, row, ep_ptr, g_ptr, z_ptr, xs_ptr, x0_ptr, seed, offset_lo, offset_hi, b, start,
                flat, mask, HAS_PREV: tl.constexpr, HAS_G: tl.constexpr, NOISE: tl.constexpr,
                WANT_X0: tl.constexpr, BLOCK: tl.constexpr):
    """The update on the elements ``flat`` (int64, masked; local indices start … start + BLOCK − 1)
    of sample b with coefficient row ``row``."""
    c_x = tl.load(row + 1)
    c_e = tl.load(row + 2)
    x = tl.load(x_ptr + flat, mask=mask, other=0.0)
    e = tl.load(e_ptr + flat, mask=mask, other=0.0)
    if HAS_PREV:
        gamma = tl.load(row + 0)
        e = gamma * e + (1 - gamma) * tl.load(ep_ptr + flat, mask=mask, other=0.0)
    xs = c_x * x + c_e * e
    if WANT_X0:
        x0 = tl.load(row + 5) * x + tl.load(row + 6) * e
    if HAS_G:
        g = tl.load(g_ptr + flat, mask=mask, other=0.0)
        xs += tl.load(row + 3) * g
        if WANT_X0:
            x0 += tl.load(row + 7) * g
    if NOISE == 1:
        xs += tl.load(row + 4) * tl.load(z_ptr + flat, mask=mask, other=0.0)
    if NOISE == 2:
        xs += tl.load(row + 4) * randn_block(seed, offset_lo, offset_hi, b, start, BLOCK).to(x.dtype)
    tl.store(xs_ptr + flat, xs, mask=mask)
    if WANT_X0:
        tl.store(x0_ptr + flat, x0, mask=mask)


_CONFIGS = [(b, w, 0) for b, w in STREAM_CONFIGS] + PERSISTENT_CONFIGS  # (BLOCK, num_warps, PER_SM)
_fused_step_tuned = tuned(_fused_step_kernel, [dict(BLOCK=b, PER_SM=p) for b, _, p in _CONFIGS],
                          [w for _, w, _ in _CONFIGS],
                          ["n_per_sample", "n_samples", "HAS_PREV", "HAS_G", "NOISE", "WANT_X0"])


def fused_step(
    x: torch.Tensor,
    eps: torch.Tensor,
    coefs: torch.Tensor,
    eps_prev: torch.Tensor | None,
    guidance: torch.Tensor | None,
    noise: torch.Tensor | None,
    seed: int | None,
    offset: int,
    want_x0: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Same signature and result as ``step.fused_step_reference`` (noise stream: Triton's Philox)."""
    return _run(x, eps, coefs, eps_prev, guidance, noise, seed, offset, want_x0)


def _run(
    x: torch.Tensor, eps: torch.Tensor, coefs: torch.Tensor, eps_prev: torch.Tensor | None,
    guidance: torch.Tensor | None, noise: torch.Tensor | None, seed: int | None, offset: int, want_x0: bool,
    launch: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`fused_step`; ``launch`` = (programs, BLOCK) fixes the grid (tests of the block loop)."""
    batch = x.shape[0]
    n = x.numel() // max(batch, 1)
    x_s = torch.empty_like(x)
    x0 = torch.empty_like(x) if want_x0 else None
    if x.numel() == 0:
        return x_s, x0
    mode = 1 if noise is not None else (2 if seed is not None else 0)
    args = (
        x, eps, coefs.to(x.dtype).contiguous(), eps_prev if eps_prev is not None else x,
        guidance if guidance is not None else x, noise if noise is not None else x,
        x_s, x0 if x0 is not None else x_s,
        n, batch, 0 if seed is None else seed, *split_offset(offset),
    )
    flags = dict(HAS_PREV=eps_prev is not None, HAS_G=guidance is not None, NOISE=mode, WANT_X0=want_x0)
    if launch is not None:
        _fused_step_kernel[(launch[0],)](*args, **flags, BLOCK=launch[1], PER_SM=0, num_warps=1)
    elif INTERPRET or x.numel() < TUNE_MIN_NUMEL:
        block, warps = elementwise_config(n)
        _fused_step_kernel[(triton.cdiv(n, block) * batch,)](*args, **flags, BLOCK=block, PER_SM=0, num_warps=warps)
    else:
        _fused_step_tuned[lambda m: (grid_size(triton.cdiv(n, m["BLOCK"]) * batch, m["PER_SM"], x.device),)](
            *args, **flags)
    return x_s, x0
