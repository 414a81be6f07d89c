"""Triton backend of 2-D correlation and its exact adjoint (docs/kernels.md, "correlate").

One tile kernel serves every case. A program owns a BH×BW tile of one (b, c) plane and loops over
the kernel's taps (u, v); taps whose weight is 0 are skipped by a uniform branch, so a sparse
motion kernel costs only its non-zero taps (no host-side tap list, no sync), and a dense kernel all
of them. Separable kernels run as a vertical then a horizontal 1-D pass (two launches, one
intermediate of the image's size).

Boundaries map a padded index q ∈ [−p, n−1+p] to its source pixel φ(q) per axis:
zero (q itself, masked outside [0, n)), reflect (−q below 0, 2(n−1)−q above n−1, as
``ReflectionPad2d``), circular (q mod n). Forward: out[i, j] = Σ k[u, v] x[φ(i+u−p_h), ψ(j+v−p_w)].

Adjoint in gather form (exact for every boundary): x̃[a, b] = Σ_{u,v} k[u, v] Σ y[i, j] over all
(i, j) whose padded read φ(i+u−p_h) = a, ψ(j+v−p_w) = b. Per axis the padded indices q with
φ(q) = a are a (always), −a (reflect, a ≥ 1), 2(n−1)−a (reflect, a ≤ n−2), a ± n (circular);
i = q − u + p_h must lie in [0, n). So reflect's adjoint is *not* a reflect correlation with the
flipped kernel: border pixels also gather the mirrored taps.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._triton_util import INTERPRET

__all__ = [
    "correlate2d",
    "correlate2d_adjoint",
    "separable_correlate2d",
    "separable_correlate2d_adjoint",
]

_MODES = {"zero": 0, "reflect": 1, "circular": 2}


@triton.jit
def _source(q, n, MODE: tl.constexpr):
    """Forward map of padded index q to (source index, valid)."""
    if MODE == 1:
        q = tl.where(q < 0, -q, q)
        q = tl.where(q > n - 1, 2 * (n - 1) - q, q)
    if MODE == 2:
        q = tl.where(q < 0, q + n, q)
        q = tl.where(q >= n, q - n, q)
    return q, (q >= 0) & (q < n)


@triton.jit
def _preimage(a, n, CAND: tl.constexpr, MODE: tl.constexpr):
    """CAND-th padded index q with φ(q) = a, and whether it exists."""
    if CAND == 0:
        return a, a >= 0
    if MODE == 1:
        if CAND == 1:
            return -a, a >= 1
        return 2 * (n - 1) - a, a <= n - 2
    if CAND == 1:
        return a - n, a >= 0
    return a + n, a >= 0


@triton.jit
def _correlate_kernel(
    src_ptr, k_ptr, out_ptr, height, width, kh, kw, tiles_w,
    MODE: tl.constexpr, ADJOINT: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr,
):
    tile = tl.program_id(0)
    plane = tl.program_id(1).to(tl.int64) * height * width
    rows = (tile // tiles_w) * BH + tl.arange(0, BH)[:, None]
    cols = (tile % tiles_w) * BW + tl.arange(0, BW)[None, :]
    inside = (rows < height) & (cols < width)
    ph = kh // 2
    pw = kw // 2
    acc = tl.zeros((BH, BW), dtype=src_ptr.dtype.element_ty)
    NC: tl.constexpr = 1 if MODE == 0 else 3
    for t in range(kh * kw):
        wt = tl.load(k_ptr + t)
        if wt != 0:
            u = t // kw
            v = t % kw
            if ADJOINT:
                for ca in tl.static_range(NC):
                    qa, va = _preimage(rows, height, ca, MODE)
                    i = qa - u + ph
                    ok_i = va & (i >= 0) & (i < height)
                    for cb in tl.static_range(NC):
                        qb, vb = _preimage(cols, width, cb, MODE)
                        j = qb - v + pw
                        ok = inside & ok_i & vb & (j >= 0) & (j < width)
                        acc += wt * tl.load(src_ptr + plane + i * width + j, mask=ok, other=0.0)
            else:
                i, ok_i = _source(rows + u - ph, height, MODE)
                j, ok_j = _source(cols + v - pw, width, MODE)
                ok = inside & ok_i & ok_j
                acc += wt * tl.load(src_ptr + plane + i * width + j, mask=ok, other=0.0)
    tl.store(out_ptr + plane + rows * width + cols, acc, mask=inside)


def _tiles(height: int, width: int) -> tuple[int, int, int]:
    if INTERPRET:
        return triton.next_power_of_2(height), triton.next_power_of_2(width), 1
    bw = min(64, max(16, triton.next_power_of_2(width)))
    return 16, bw, 4


def _run(src: torch.Tensor, kernel: torch.Tensor, boundary: str, adjoint: bool) -> torch.Tensor:
    """One launch: correlate (or its adjoint) every plane of src (B, C, H, W) with kernel (kh, kw)."""
    batch, channels, height, width = src.shape
    out = torch.empty_like(src)
    if src.numel() == 0:
        return out
    bh, bw, warps = _tiles(height, width)
    tiles_w = triton.cdiv(width, bw)
    grid = (triton.cdiv(height, bh) * tiles_w, batch * channels)
    _correlate_kernel[grid](
        src, kernel.to(src.dtype).contiguous(), out, height, width, kernel.shape[0], kernel.shape[1],
        tiles_w, MODE=_MODES[boundary], ADJOINT=adjoint, BH=bh, BW=bw, num_warps=warps,
    )
    return out


def correlate2d(x: torch.Tensor, kernel: torch.Tensor, boundary: str) -> torch.Tensor:
    """out = correlate(pad(x), kernel): x (B, C, H, W), kernel (kh, kw) odd -> (B, C, H, W)."""
    return _run(x, kernel, boundary, adjoint=False)


def correlate2d_adjoint(y: torch.Tensor, kernel: torch.Tensor, boundary: str) -> torch.Tensor:
    """Exact transpose of :func:`correlate2d` (gather form, module docstring)."""
    return _run(y, kernel, boundary, adjoint=True)


def separable_correlate2d(x: torch.Tensor, k_h: torch.Tensor, k_w: torch.Tensor, boundary: str) -> torch.Tensor:
    """Correlation with outer(k_h, k_w): vertical pass, then horizontal pass."""
    t = _run(x, k_h.reshape(-1, 1), boundary, adjoint=False)
    return _run(t, k_w.reshape(1, -1), boundary, adjoint=False)


def separable_correlate2d_adjoint(y: torch.Tensor, k_h: torch.Tensor, k_w: torch.Tensor, boundary: str) -> torch.Tensor:
    """Exact transpose of :func:`separable_correlate2d`: horizontal adjoint, then vertical adjoint."""
    t = _run(y, k_w.reshape(1, -1), boundary, adjoint=True)
    return _run(t, k_h.reshape(-1, 1), boundary, adjoint=True)
