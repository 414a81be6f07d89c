"""Triton backend of 2-D correlation and its exact adjoint (docs/kernels.md, "correlate").

A program owns a BH×BW tile of one (b, c) plane and loops over the kernel's taps (u, v). For 2-D
kernels the loop runs over the non-zero taps only, listed on the device (a stable argsort of the
zero mask and a count: no host sync), so a sparse motion kernel costs only its non-zero taps and a
dense kernel all of them; taps are processed four at a time so their loads overlap. Separable
kernels run as a vertical then a horizontal 1-D pass (two launches, one intermediate of the
image's size), each with its taps unrolled at compile time. Tile sizes are autotuned per shape.
Tiles more than the kernel's half-size inside the image take a path without index maps or masks
(one offset per tap); only border tiles map every read through the boundary.

The one-pass separable tile (``separable_correlate2d_tile`` and its adjoint; not yet the dispatched
default: it waits for a GPU measurement against the two passes) reads each input once per output
tile: a program runs the horizontal pass over the BK ≥ BH + kh − 1 window rows its BH×BW tile needs,
keeps that (BK, BW) block in registers, and applies the vertical pass as one banded (BH, BK) matrix
times the block (``tl.dot``; tf32×3 in float32, so float32 accuracy). Window row j holds padded row
q = r0 − p_h + j. Forward: the block reads rows φ(q) and band[i, j] = k_h[j − i]. Adjoint: the block
holds the rows q of the measurement themselves (wrapped for circular), and band[i, j] sums k_h[u]
over the preimages of row a = r0 + i that read window row j: u = a + p_h − q, and for reflect also
u = p_h − a − q (a ≥ 1) and u = 2(n−1) − a + p_h − q (a ≤ n − 2); each lies inside the window.
A NaN or Inf input spreads over its whole tile column here (the band's zeros still multiply it),
where the two passes spread it over the kernel's support only; finite inputs give the same result.

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

from ._triton_util import INTERPRET, TILE_CONFIGS, TUNE_MIN_NUMEL, tuned

__all__ = [
    "correlate2d",
    "correlate2d_adjoint",
    "separable_correlate2d",
    "separable_correlate2d_adjoint",
    "separable_correlate2d_tile",
    "separable_correlate2d_tile_adjoint",
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
def _tile_coords(height, width, BH: tl.constexpr, BW: tl.constexpr):
    """This program's BH×BW tile of its (b, c) plane: (plane offset, first row, first column,
    rows (BH, 1), columns (1, BW), inside-the-image mask)."""
    tile = tl.program_id(0)
    tiles_w = tl.cdiv(width, BW)
    r0 = (tile // tiles_w) * BH
    c0 = (tile % tiles_w) * BW
    rows = r0 + tl.arange(0, BH)[:, None]
    cols = c0 + tl.arange(0, BW)[None, :]
    return tl.program_id(1).to(tl.int64) * height * width, r0, c0, rows, cols, (rows < height) & (cols < width)


@triton.jit
def _interior(start, size, n, p):
    """Whether rows (or columns) [start, start + size) lie inside the image and at least p + 1
    away from both edges: then every forward read is the plain index and the only preimage of the
    adjoint is the index itself (reflect: a > p and a < n − 1 − p; circular: p ≤ a < n − p)."""
    return (start > p) & (start + size + p < n)


@triton.jit
def _live(i, n, like):
    """Whether tap i < n, as a boolean block shaped like ``like`` (int). A scalar condition is never
    mixed with block masks: Triton 3.9's interpreter splats a scalar comparison as int32, which
    ``tl.load`` rejects as a mask (the compiled kernel folds the splat back to one compare)."""
    return (tl.zeros_like(like) + i) < n


@triton.jit
def _tap(line, pos, n, stride, u, K: tl.constexpr, mask, MODE: tl.constexpr, ADJOINT: tl.constexpr):
    """What tap u of a K-tap 1-D correlation (or its adjoint) reads for positions ``pos`` of a line
    of n samples at ``line + index·stride``, through the boundary (forward: φ(pos + u − K//2);
    adjoint: every preimage q of pos with q − u + K//2 inside), zero where ``mask`` is off."""
    if ADJOINT:
        q, ok = _preimage(pos, n, 0, MODE)
        i = q - u + K // 2
        value = tl.load(line + i * stride, mask=mask & ok & (i >= 0) & (i < n), other=0.0)
        for c in tl.static_range(1, 1 if MODE == 0 else 3):
            q, ok = _preimage(pos, n, c, MODE)
            i = q - u + K // 2
            value += tl.load(line + i * stride, mask=mask & ok & (i >= 0) & (i < n), other=0.0)
    else:
        i, ok = _source(pos + u - K // 2, n, MODE)
        value = tl.load(line + i * stride, mask=mask & ok, other=0.0)
    return value


@triton.jit
def _correlate_kernel(
    src_ptr, k_ptr, order_ptr, count_ptr, out_ptr, height, width, ph, kw,
    MODE: tl.constexpr, ADJOINT: tl.constexpr, UNROLL: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr,
):
    """2-D correlation (or its adjoint) over the kernel's non-zero taps: ``order`` lists the flat
    tap indices with the non-zero ones first, ``count`` how many (both made on the device)."""
    plane, r0, c0, rows, cols, inside = _tile_coords(height, width, BH, BW)
    src = src_ptr + plane
    pw = kw // 2
    n_taps = tl.load(count_ptr)
    acc = tl.zeros((BH, BW), dtype=src_ptr.dtype.element_ty)
    NC: tl.constexpr = 1 if MODE == 0 else 3
    if _interior(r0, BH, height, ph) & _interior(c0, BW, width, pw):
        here = src + rows * width + cols  # every read in range: a scalar offset per tap, no masks
        sign = -1 if ADJOINT else 1
        for s0 in range(0, n_taps, UNROLL):
            for step in tl.static_range(UNROLL):
                live = s0 + step < n_taps
                t = tl.load(order_ptr + s0 + step, mask=live, other=0)
                wt = tl.load(k_ptr + t, mask=live, other=0.0)
                shift = sign * ((t // kw - ph) * width + (t % kw - pw))
                acc += wt * tl.load(here + shift, mask=_live(s0 + step, n_taps, rows), other=0.0)
    else:
        for s0 in range(0, n_taps, UNROLL):
            for step in tl.static_range(UNROLL):  # independent taps: their loads overlap
                live = s0 + step < n_taps
                t = tl.load(order_ptr + s0 + step, mask=live, other=0)
                wt = tl.load(k_ptr + t, mask=live, other=0.0)
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
                            ok = _live(s0 + step, n_taps, rows) & inside & ok_i & vb & (j >= 0) & (j < width)
                            acc += wt * tl.load(src + i * width + j, mask=ok, other=0.0)
                else:
                    i, ok_i = _source(rows + u - ph, height, MODE)
                    j, ok_j = _source(cols + v - pw, width, MODE)
                    acc += wt * tl.load(src + i * width + j, mask=_live(s0 + step, n_taps, rows) & inside & ok_i & ok_j,
                                        other=0.0)
    tl.store(out_ptr + plane + rows * width + cols, acc, mask=inside)


@triton.jit
def _pass1d_kernel(
    src_ptr, k_ptr, out_ptr, height, width,
    K: tl.constexpr, AXIS: tl.constexpr, MODE: tl.constexpr, ADJOINT: tl.constexpr,
    BH: tl.constexpr, BW: tl.constexpr, TAPS: tl.constexpr = 4,
):
    """1-D correlation (or its adjoint) along AXIS (0: rows/vertical, 1: columns) with K taps, TAPS
    of them unrolled per loop iteration so their loads overlap (the last group masked); interior
    tiles read at one offset per tap, border tiles through the boundary map."""
    plane, r0, c0, rows, cols, inside = _tile_coords(height, width, BH, BW)
    src = src_ptr + plane
    n = height if AXIS == 0 else width
    pos = rows if AXIS == 0 else cols
    stride = width if AXIS == 0 else 1
    base = cols if AXIS == 0 else rows * width
    acc = tl.zeros((BH, BW), dtype=src_ptr.dtype.element_ty)
    if AXIS == 0:
        interior = _interior(r0, BH, height, K // 2) & (c0 + BW <= width)
    else:
        interior = _interior(c0, BW, width, K // 2) & (r0 + BH <= height)
    if interior:  # every read in range: one offset per tap, no index map
        for u0 in range(0, K, TAPS):
            for du in tl.static_range(TAPS):
                u = u0 + du
                live = u < K
                shift = K // 2 - u if ADJOINT else u - K // 2
                wt = tl.load(k_ptr + u, mask=live, other=0.0)
                acc += wt * tl.load(src + base + (pos + shift) * stride, mask=_live(u, K, rows), other=0.0)
    else:
        for u0 in range(0, K, TAPS):
            for du in tl.static_range(TAPS):
                u = u0 + du
                live = u < K
                wt = tl.load(k_ptr + u, mask=live, other=0.0)
                acc += wt * _tap(src + base, pos, n, stride, u, K, _live(u, K, rows) & inside, MODE, ADJOINT)
    tl.store(out_ptr + plane + rows * width + cols, acc, mask=inside)


@triton.jit
def _separable_tile_kernel(
    src_ptr, kh_ptr, kw_ptr, out_ptr, height, width,
    KH: tl.constexpr, KW: tl.constexpr, MODE: tl.constexpr, ADJOINT: tl.constexpr, PRECISION: tl.constexpr,
    BH: tl.constexpr, BW: tl.constexpr, BK: tl.constexpr, TAPS: tl.constexpr = 2,
):
    """Separable correlation (or its adjoint) of one BH×BW tile in one pass (module docstring):
    horizontal taps over the (BK, BW) window block, then band (BH, BK) @ block."""
    tile = tl.program_id(0)
    tiles_w = tl.cdiv(width, BW)
    plane = tl.program_id(1).to(tl.int64) * height * width
    r0 = (tile // tiles_w) * BH
    cols = (tile % tiles_w) * BW + tl.arange(0, BW)[None, :]
    j = tl.arange(0, BK)
    src = src_ptr + plane
    PH: tl.constexpr = KH // 2
    q = r0 - PH + j  # padded row of each window row
    if ADJOINT and MODE != 2:
        row, ok_row = _source(q, height, 0)  # the measurement's own rows
    else:
        row, ok_row = _source(q, height, MODE)
    ok_row = (ok_row & (j < BH + KH - 1))[:, None]
    row = row[:, None]
    block = tl.zeros((BK, BW), dtype=src_ptr.dtype.element_ty)
    for v0 in range(0, KW, TAPS):  # TAPS taps in flight: registers against overlapping loads
        for dv in tl.static_range(TAPS):
            v = v0 + dv
            live = v < KW
            wt = tl.load(kw_ptr + v, mask=live, other=0.0)
            in_tile = _live(v, KW, row) & ok_row & (cols < width)
            block += wt * _tap(src + row * width, cols, width, 1, v, KW, in_tile, MODE, ADJOINT)

    a = r0 + tl.arange(0, BH)[:, None]  # image row of each output
    qj = q[None, :]
    if ADJOINT:
        u = a + PH - qj
        band = tl.load(kh_ptr + u, mask=(u >= 0) & (u < KH), other=0.0)
        if MODE == 1:  # reflect: the mirrored reads fold back onto a
            u = PH - a - qj
            band += tl.load(kh_ptr + u, mask=(a >= 1) & (u >= 0) & (u < KH), other=0.0)
            u = 2 * (height - 1) - a + PH - qj
            band += tl.load(kh_ptr + u, mask=(a <= height - 2) & (u >= 0) & (u < KH), other=0.0)
    else:
        u = qj - a + PH  # = j − i
        band = tl.load(kh_ptr + u, mask=(u >= 0) & (u < KH), other=0.0)
    out = tl.dot(band, block, input_precision=PRECISION)
    tl.store(out_ptr + plane + a * width + cols, out, mask=(a < height) & (cols < width))


_TILES = ([dict(BH=h, BW=w) for h, w, _ in TILE_CONFIGS], [nw for _, _, nw in TILE_CONFIGS])
_correlate_tuned = tuned(_correlate_kernel, *_TILES, ["height", "width", "MODE", "ADJOINT"])
#: (BH, BW, num_warps, TAPS) of the 1-D passes: TAPS taps in flight trade registers (occupancy,
#: 32–250 per thread by ptxas on sm_90) for overlapping loads; the autotuner measures which wins
_PASS_CONFIGS = [(16, 64, 4, 32), (8, 64, 4, 32), (16, 64, 4, 4), (32, 64, 8, 4), (16, 128, 8, 4),
                 (16, 64, 4, 1), (32, 64, 8, 1), (32, 32, 4, 1)]
_pass1d_tuned = tuned(_pass1d_kernel, [dict(BH=h, BW=w, TAPS=t) for h, w, _, t in _PASS_CONFIGS],
                      [nw for _, _, nw, _ in _PASS_CONFIGS], ["height", "width", "K", "AXIS", "MODE", "ADJOINT"])


def _launch(plain, autotuned, shape: torch.Size, *args, tile: tuple[int, int] | None = None, **flags) -> None:
    """Interpreter: two tiles per plane (side by side, so the tile arithmetic is exercised).
    GPU: the first tile config for small images, else the tile size autotuned per shape.
    ``tile`` = (BH, BW) fixes the tiles (tests of the interior path)."""
    batch, channels, height, width = shape
    if tile is not None:
        plain[(triton.cdiv(height, tile[0]) * triton.cdiv(width, tile[1]), batch * channels)](
            *args, **flags, BH=tile[0], BW=tile[1], num_warps=1)
    elif INTERPRET:
        bh, bw = triton.next_power_of_2(height), max(1, triton.next_power_of_2(width) // 2)
        plain[(triton.cdiv(width, bw), batch * channels)](*args, **flags, BH=bh, BW=bw, num_warps=1)
    elif batch * channels * height * width < TUNE_MIN_NUMEL:
        bh, bw, warps = TILE_CONFIGS[0]
        plain[(triton.cdiv(height, bh) * triton.cdiv(width, bw), batch * channels)](
            *args, **flags, BH=bh, BW=bw, num_warps=warps)
    else:
        autotuned[lambda m: (triton.cdiv(height, m["BH"]) * triton.cdiv(width, m["BW"]), batch * channels)](
            *args, **flags)


def _run(src: torch.Tensor, kernel: torch.Tensor, boundary: str, adjoint: bool,
         tile: tuple[int, int] | None = None) -> torch.Tensor:
    """One launch: correlate (or its adjoint) every plane of src (B, C, H, W) with kernel (kh, kw)."""
    batch, channels, height, width = src.shape
    out = torch.empty_like(src)
    if src.numel() == 0:
        return out
    taps = kernel.to(src.dtype).contiguous().view(-1)
    nonzero = taps != 0
    # non-zero taps first (stable) and their count: a few tiny launches, no host sync
    order = torch.argsort(torch.logical_not(nonzero).to(torch.int8), stable=True).to(torch.int32)
    count = nonzero.sum(dtype=torch.int32).view(1)
    _launch(_correlate_kernel, _correlate_tuned, src.shape, src, taps, order, count, out, height, width,
            kernel.shape[0] // 2, kernel.shape[1], tile=tile, MODE=_MODES[boundary], ADJOINT=adjoint, UNROLL=4)
    return out


def correlate2d(x: torch.Tensor, kernel: torch.Tensor, boundary: str) -> torch.Tensor:
    """out = correlate(pad(x), kernel): x (B, C, H, W), kernel (kh, kw) odd -> (B, C, H, W)."""
    return _run(x, kernel, boundary, adjoint=False)


def correlate2d_adjoint(y: torch.Tensor, kernel: torch.Tensor, boundary: str) -> torch.Tensor:
    """Exact transpose of :func:`correlate2d` (gather form, module docstring)."""
    return _run(y, kernel, boundary, adjoint=True)


def _pass1d(src: torch.Tensor, taps: torch.Tensor, axis: int, boundary: str, adjoint: bool,
            tile: tuple[int, int] | None = None) -> torch.Tensor:
    batch, channels, height, width = src.shape
    out = torch.empty_like(src)
    if src.numel() == 0:
        return out
    _launch(_pass1d_kernel, _pass1d_tuned, src.shape, src, taps.to(src.dtype).contiguous(), out,
            height, width, tile=tile, K=taps.numel(), AXIS=axis, MODE=_MODES[boundary], ADJOINT=adjoint)
    return out


def separable_correlate2d(
    x: torch.Tensor, k_h: torch.Tensor, k_w: torch.Tensor, boundary: str
) -> torch.Tensor:
    """Correlation with outer(k_h, k_w): vertical pass, then horizontal pass."""
    return _pass1d(_pass1d(x, k_h, 0, boundary, False), k_w, 1, boundary, False)


def separable_correlate2d_adjoint(
    y: torch.Tensor, k_h: torch.Tensor, k_w: torch.Tensor, boundary: str
) -> torch.Tensor:
    """Exact transpose of :func:`separable_correlate2d`: horizontal adjoint, then vertical adjoint."""
    return _pass1d(_pass1d(y, k_w, 1, boundary, True), k_h, 0, boundary, True)

#: (BH, BW, num_warps) of the one-pass tile; BK follows from BH and the vertical kernel's length
_DOT_TILE_CONFIGS = [(32, 64, 4), (64, 64, 8), (32, 128, 8), (16, 64, 4)]
_tile_kernel = triton.heuristics({"BK": lambda a: triton.next_power_of_2(a["BH"] + a["KH"] - 1)})(
    _separable_tile_kernel)
_tile_tuned = tuned(_tile_kernel, [dict(BH=h, BW=w) for h, w, _ in _DOT_TILE_CONFIGS],
                    [nw for _, _, nw in _DOT_TILE_CONFIGS], ["height", "width", "KH", "KW", "MODE", "ADJOINT"])


def _tile(src: torch.Tensor, k_h: torch.Tensor, k_w: torch.Tensor, boundary: str, adjoint: bool) -> torch.Tensor:
    """One launch of the one-pass separable tile over every plane of src (B, C, H, W).
    Interpreter: 16×16 tiles, so neighbouring tiles share window rows and columns."""
    batch, channels, height, width = src.shape
    out = torch.empty_like(src)
    if src.numel() == 0:
        return out
    args = (src, k_h.to(src.dtype).contiguous(), k_w.to(src.dtype).contiguous(), out, height, width)
    flags = dict(KH=k_h.numel(), KW=k_w.numel(), MODE=_MODES[boundary], ADJOINT=adjoint,
                 PRECISION="ieee" if src.dtype == torch.float64 else "tf32x3")
    planes = batch * channels
    if INTERPRET or src.numel() < TUNE_MIN_NUMEL:
        bh, bw, warps = (16, 16, 1) if INTERPRET else _DOT_TILE_CONFIGS[0]
        _tile_kernel[(triton.cdiv(height, bh) * triton.cdiv(width, bw), planes)](
            *args, **flags, BH=bh, BW=bw, num_warps=warps)
    else:
        _tile_tuned[lambda m: (triton.cdiv(height, m["BH"]) * triton.cdiv(width, m["BW"]), planes)](*args, **flags)
    return out


def separable_correlate2d_tile(
    x: torch.Tensor, k_h: torch.Tensor, k_w: torch.Tensor, boundary: str
) -> torch.Tensor:
    """Correlation with outer(k_h, k_w) in one pass per output tile (module docstring)."""
    return _tile(x, k_h, k_w, boundary, adjoint=False)


def separable_correlate2d_tile_adjoint(
    y: torch.Tensor, k_h: torch.Tensor, k_w: torch.Tensor, boundary: str
) -> torch.Tensor:
    """Exact transpose of :func:`separable_correlate2d_tile`, also in one pass per tile."""
    return _tile(y, k_h, k_w, boundary, adjoint=True)
