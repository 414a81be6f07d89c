"""Triton backend of the fused sampler step (docs/kernels.md, "step"): one pass over the pixels.

``fused_step(x, eps, coefs, eps_prev, guidance, noise, seed, offset, want_x0)`` reads x_t, ε̂ and
only the optional inputs that are given, generates z in-kernel when ``seed`` is given (Philox,
``_triton_util.randn_at(seed, offset + flat_index)``, flat_index the element's index in x), and
writes x_s (and x̂0 when ``want_x0``). Per-sample coefficients come from the (B, 8) table
``[γ, c_x, c_e, c_g, c_z, d_x, d_e, d_g]``; grid = (blocks per sample, B), block size autotuned
per shape on a GPU.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._triton_util import INTERPRET, STREAM_CONFIGS, TUNE_MIN_NUMEL, elementwise_config, randn_at, tuned

__all__ = ["fused_step"]


@triton.jit
def _fused_step_kernel(
    x_ptr, e_ptr, coef_ptr, ep_ptr, g_ptr, z_ptr, xs_ptr, x0_ptr,
    n_per_sample, seed, offset,
    HAS_PREV: tl.constexpr, HAS_G: tl.constexpr, NOISE: tl.constexpr, WANT_X0: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # NOISE: 0 none, 1 a given tensor, 2 Philox from (seed, offset)
    pid = tl.program_id(0)
    b = tl.program_id(1)
    local = pid * BLOCK + tl.arange(0, BLOCK)
    mask = local < n_per_sample
    flat = b.to(tl.int64) * n_per_sample + local
    row = coef_ptr + b * 8
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
        z = randn_at(seed, offset + flat).to(x.dtype)
        xs += tl.load(row + 4) * z
    tl.store(xs_ptr + flat, xs, mask=mask)
    if WANT_X0:
        tl.store(x0_ptr + flat, x0, mask=mask)


_fused_step_tuned = tuned(_fused_step_kernel, [dict(BLOCK=b) for b, _ in STREAM_CONFIGS],
                          [w for _, w in STREAM_CONFIGS],
                          ["n_per_sample", "HAS_PREV", "HAS_G", "NOISE", "WANT_X0"])


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
        n, 0 if seed is None else seed, offset,
    )
    flags = dict(HAS_PREV=eps_prev is not None, HAS_G=guidance is not None, NOISE=mode, WANT_X0=want_x0)
    if INTERPRET or x.numel() < TUNE_MIN_NUMEL:
        block, warps = elementwise_config(n)
        _fused_step_kernel[(triton.cdiv(n, block), batch)](*args, **flags, BLOCK=block, num_warps=warps)
    else:
        _fused_step_tuned[lambda meta: (triton.cdiv(n, meta["BLOCK"]), batch)](*args, **flags)
    return x_s, x0
