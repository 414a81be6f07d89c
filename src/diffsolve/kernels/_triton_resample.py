"""Triton backend of per-axis-matrix resampling and average pooling (docs/kernels.md, "resample").

``resample``: y = M_h x M_wᵀ per plane. A program owns a (BO × BO) tile of y and accumulates
Σ_k M_h[rows, k] (Σ_l x[k, l] M_w[cols, l]ᵀ) over chunks k of input rows and l of input columns,
with ``tl.dot`` in IEEE precision (no TF32). Chunks where the tile's band of M_h (or M_w) is all
zero are skipped by a uniform branch, so a banded matrix (the bicubic-AA kernel: 4·s taps per
output) costs only its band, found on the device without a host sync. Only the output is
allocated: no full-resolution temporary.

``resample_adjoint``: x = M_hᵀ y M_w, the same scheme with the roles of the axes swapped (a tile
of x accumulates over chunks of the low-resolution y).

``avg_pool`` / ``avg_pool_adjoint``: s×s block mean, and its transpose (replicate / s²).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._triton_util import INTERPRET

__all__ = ["avg_pool", "avg_pool_adjoint", "resample", "resample_adjoint"]

# resample measured slower than torch's matmul reference on an H100 (benchmarks/results/gpu-kernels.md):
# backend="auto" uses torch for it (``auto_skip`` in _dispatch.TABLE); backend="triton" still runs it.


@triton.jit
def _resample_kernel(
    src_ptr, mh_ptr, mw_ptr, out_ptr,
    n_in_h, n_in_w, n_out_h, n_out_w, tiles_w,
    ADJOINT: tl.constexpr, BO: tl.constexpr, BK: tl.constexpr, IEEE: tl.constexpr,
):
    # forward: src x (n_in_h, n_in_w), m_h (n_out_h, n_in_h), m_w (n_out_w, n_in_w), out y (n_out_h, n_out_w)
    # adjoint: src y (n_in_h, n_in_w), m_h (n_in_h, n_out_h), m_w (n_in_w, n_out_w), out x (n_out_h, n_out_w)
    tile = tl.program_id(0)
    plane = tl.program_id(1).to(tl.int64)
    rows = (tile // tiles_w) * BO + tl.arange(0, BO)
    cols = (tile % tiles_w) * BO + tl.arange(0, BO)
    ks = tl.arange(0, BK)
    src = src_ptr + plane * n_in_h * n_in_w
    acc = tl.zeros((BO, BO), dtype=src_ptr.dtype.element_ty)
    for k0 in range(0, n_in_h, BK):
        kr = k0 + ks
        # a (BO, BK): the rows' weights on input rows kr
        if ADJOINT:
            a_ptrs = mh_ptr + kr[None, :] * n_out_h + rows[:, None]
        else:
            a_ptrs = mh_ptr + rows[:, None] * n_in_h + kr[None, :]
        a = tl.load(a_ptrs, mask=(rows[:, None] < n_out_h) & (kr[None, :] < n_in_h), other=0.0)
        if tl.max(tl.abs(a)) > 0:
            t = tl.zeros((BK, BO), dtype=src_ptr.dtype.element_ty)
            for l0 in range(0, n_in_w, BK):
                lc = l0 + ks
                # b (BK, BO): weights of input columns lc on the tile's columns
                if ADJOINT:
                    b_ptrs = mw_ptr + lc[:, None] * n_out_w + cols[None, :]
                else:
                    b_ptrs = mw_ptr + cols[None, :] * n_in_w + lc[:, None]
                b = tl.load(b_ptrs, mask=(lc[:, None] < n_in_w) & (cols[None, :] < n_out_w), other=0.0)
                if tl.max(tl.abs(b)) > 0:
                    xin = tl.load(src + kr[:, None] * n_in_w + lc[None, :],
                                  mask=(kr[:, None] < n_in_h) & (lc[None, :] < n_in_w), other=0.0)
                    if IEEE:
                        t += tl.dot(xin, b, input_precision="ieee")
                    else:
                        t += tl.dot(xin, b)
            if IEEE:
                acc += tl.dot(a, t, input_precision="ieee")
            else:
                acc += tl.dot(a, t)
    out = out_ptr + plane * n_out_h * n_out_w + rows[:, None] * n_out_w + cols[None, :]
    tl.store(out, acc, mask=(rows[:, None] < n_out_h) & (cols[None, :] < n_out_w))


def _matrix_op(src: torch.Tensor, m_h: torch.Tensor, m_w: torch.Tensor, out_h: int, out_w: int,
               adjoint: bool) -> torch.Tensor:
    batch, channels, in_h, in_w = src.shape
    out = torch.empty(batch, channels, out_h, out_w, dtype=src.dtype, device=src.device)
    if out.numel() == 0:
        return out
    if src.shape[2] == 0 or src.shape[3] == 0:
        return out.zero_()
    bo, bk, warps = (16, 16, 1) if INTERPRET else (32, 32, 4)
    tiles_w = triton.cdiv(out_w, bo)
    grid = (triton.cdiv(out_h, bo) * tiles_w, batch * channels)
    _resample_kernel[grid](
        src, m_h.to(src.dtype).contiguous(), m_w.to(src.dtype).contiguous(), out,
        in_h, in_w, out_h, out_w, tiles_w,
        ADJOINT=adjoint, BO=bo, BK=bk, IEEE=src.dtype == torch.float32, num_warps=warps,
    )
    return out


def resample(x: torch.Tensor, m_h: torch.Tensor, m_w: torch.Tensor) -> torch.Tensor:
    """y = M_h x M_wᵀ: x (B, C, H, W), m_h (h, H), m_w (w, W) -> (B, C, h, w)."""
    return _matrix_op(x, m_h, m_w, m_h.shape[0], m_w.shape[0], adjoint=False)


def resample_adjoint(y: torch.Tensor, m_h: torch.Tensor, m_w: torch.Tensor) -> torch.Tensor:
    """x = M_hᵀ y M_w: y (B, C, h, w) -> (B, C, H, W)."""
    return _matrix_op(y, m_h, m_w, m_h.shape[1], m_w.shape[1], adjoint=True)


@triton.jit
def _pool_kernel(src_ptr, out_ptr, out_h, out_w, factor, tiles_w, ADJOINT: tl.constexpr,
                 BH: tl.constexpr, BW: tl.constexpr, FP: tl.constexpr):
    # forward: src (out_h·s, out_w·s) -> out (out_h, out_w); adjoint: src (out_h/s, out_w/s) -> out.
    # FP = next power of 2 >= s: the forward reads each input row segment as one contiguous
    # (BH, BW, FP) block (coalesced) and sums its last axis.
    tile = tl.program_id(0)
    plane = tl.program_id(1).to(tl.int64) * out_h * out_w
    rows = (tile // tiles_w) * BH + tl.arange(0, BH)[:, None]
    cols = (tile % tiles_w) * BW + tl.arange(0, BW)[None, :]
    inside = (rows < out_h) & (cols < out_w)
    area = factor * factor
    if ADJOINT:
        in_w = out_w // factor
        src = src_ptr + plane // area
        val = tl.load(src + (rows // factor) * in_w + cols // factor, mask=inside, other=0.0) / area
    else:
        in_w = out_w * factor
        src = src_ptr + plane * area
        sub = tl.arange(0, FP)[None, None, :]
        col_in = cols[:, :, None] * factor + sub
        ok = inside[:, :, None] & (sub < factor)
        block = tl.zeros((BH, BW, FP), dtype=src_ptr.dtype.element_ty)
        for di in range(factor):
            row_in = rows[:, :, None] * factor + di
            block += tl.load(src + row_in * in_w + col_in, mask=ok, other=0.0)
        val = tl.sum(block, axis=2) / area
    tl.store(out_ptr + plane + rows * out_w + cols, val, mask=inside)


def _pool(src: torch.Tensor, factor: int, out_h: int, out_w: int, adjoint: bool) -> torch.Tensor:
    batch, channels = src.shape[:2]
    out = torch.empty(batch, channels, out_h, out_w, dtype=src.dtype, device=src.device)
    if out.numel() == 0:
        return out
    if INTERPRET:
        bh, bw, warps = triton.next_power_of_2(out_h), triton.next_power_of_2(out_w), 1
    else:
        bh, bw, warps = (16 if adjoint else 8), min(64, max(16, triton.next_power_of_2(out_w))), 4
    tiles_w = triton.cdiv(out_w, bw)
    _pool_kernel[(triton.cdiv(out_h, bh) * tiles_w, batch * channels)](
        src, out, out_h, out_w, factor, tiles_w, ADJOINT=adjoint, BH=bh, BW=bw,
        FP=triton.next_power_of_2(factor), num_warps=warps)
    return out


def avg_pool(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Mean over factor×factor blocks: (B, C, H, W) -> (B, C, H/s, W/s)."""
    return _pool(x, factor, x.shape[2] // factor, x.shape[3] // factor, adjoint=False)


def avg_pool_adjoint(y: torch.Tensor, factor: int) -> torch.Tensor:
    """Transpose of :func:`avg_pool`: (B, C, h, w) -> (B, C, h·s, w·s), values y/s²."""
    return _pool(y, factor, y.shape[2] * factor, y.shape[3] * factor, adjoint=True)
