"""Triton backend of the diagonal C-DPS posterior step (docs/kernels.md, "posterior").

One elementwise pass: λ = c + w d², x = (c m + w d t + √c e₁ + √w d e₂)/λ with c, w per sample
(B,) and the diagonal d (1|B, 1|C, H, W) broadcast over batch/channels through zero strides.
Without noise tensors and with a seed, e₁ and e₂ are the Triton noise stream
(``_triton_util.randn_block``) at offsets ``offset`` and ``offset + numel``, row = the (b, c) plane,
i = the index in the plane. Grid = (blocks per plane, B·C).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._triton_util import (INTERPRET, STREAM_CONFIGS, TUNE_MIN_NUMEL, elementwise_config, randn_block,
                           split_offset, tuned)

__all__ = ["diagonal_posterior_step"]


@triton.jit
def _posterior_kernel(
    m_ptr, c_ptr, d_ptr, t_ptr, w_ptr, n1_ptr, n2_ptr, out_ptr,
    channels, hw, d_stride_b, d_stride_c, seed, off1_lo, off1_hi, off2_lo, off2_hi,
    NOISE: tl.constexpr, BLOCK: tl.constexpr,
):
    # NOISE: 0 none (posterior mean), 1 given tensors, 2 Philox from (seed, offset)
    pid = tl.program_id(0)
    plane = tl.program_id(1)
    b = plane // channels
    ch = plane % channels
    local = pid * BLOCK + tl.arange(0, BLOCK)
    mask = local < hw
    flat = plane.to(tl.int64) * hw + local
    c = tl.load(c_ptr + b)
    w = tl.load(w_ptr + b)
    m = tl.load(m_ptr + flat, mask=mask, other=0.0)
    t = tl.load(t_ptr + flat, mask=mask, other=0.0)
    d = tl.load(d_ptr + b * d_stride_b + ch * d_stride_c + local, mask=mask, other=0.0)
    num = c * m + w * d * t
    if NOISE == 1:
        e1 = tl.load(n1_ptr + flat, mask=mask, other=0.0)
        e2 = tl.load(n2_ptr + flat, mask=mask, other=0.0)
        num += tl.sqrt(c) * e1 + tl.sqrt(w) * d * e2
    if NOISE == 2:
        e1 = randn_block(seed, off1_lo, off1_hi, plane, pid * BLOCK, BLOCK).to(m.dtype)
        e2 = randn_block(seed, off2_lo, off2_hi, plane, pid * BLOCK, BLOCK).to(m.dtype)
        num += tl.sqrt(c) * e1 + tl.sqrt(w) * d * e2
    tl.store(out_ptr + flat, num / (c + w * d * d), mask=mask)


_posterior_tuned = tuned(_posterior_kernel, [dict(BLOCK=b) for b, _ in STREAM_CONFIGS],
                         [w for _, w in STREAM_CONFIGS], ["hw", "NOISE"])


def diagonal_posterior_step(
    mean: torch.Tensor,
    precision: torch.Tensor,
    diag: torch.Tensor,
    target: torch.Tensor,
    noise_precision: torch.Tensor,
    noise1: torch.Tensor | None,
    noise2: torch.Tensor | None,
    seed: int | None,
    offset: int,
) -> torch.Tensor:
    """Same signature and result as ``posterior.diagonal_posterior_step_reference``."""
    batch, channels, height, width = mean.shape
    out = torch.empty_like(mean)
    hw = height * width
    if mean.numel() == 0:
        return out
    diag = diag.contiguous()
    stride_b = 0 if diag.shape[0] == 1 else diag.shape[1] * hw
    stride_c = 0 if diag.shape[1] == 1 else hw
    mode = 1 if noise1 is not None else (2 if seed is not None else 0)
    args = (
        mean, precision.to(mean.dtype).contiguous(), diag, target,
        noise_precision.to(mean.dtype).contiguous(),
        noise1 if noise1 is not None else mean, noise2 if noise2 is not None else mean, out,
        channels, hw, stride_b, stride_c, 0 if seed is None else seed, *split_offset(offset),
        *split_offset(offset + mean.numel()),
    )
    if INTERPRET or mean.numel() < TUNE_MIN_NUMEL:
        block, warps = elementwise_config(hw)
        grid = (triton.cdiv(hw, block), batch * channels)
        _posterior_kernel[grid](*args, NOISE=mode, BLOCK=block, num_warps=warps)
    else:
        _posterior_tuned[lambda meta: (triton.cdiv(hw, meta["BLOCK"]), batch * channels)](*args, NOISE=mode)
    return out
