"""Triton backend of batched Chronopoulos–Gear CG (docs/kernels.md, "cg"): two launches per iteration.

``cg_dots``: one launch, grid (P, B). Each program reduces a grid-strided share of one sample to
the partial pair (⟨r, r⟩, ⟨gr, r⟩) and writes it to its own slot of a (B, P, 2) scratch (so no
zeroed buffer is needed); it then bumps the sample's arrival counter, and the program that arrives
last sums the P partials, writes dots[b] = (γ, δ = shift·γ + scale·⟨gr, r⟩) and resets the counter
to 0 for the next call (the zeroing folded in). The counters are one int32 per sample, allocated
zeroed once per (device, B) and kept: calls with the same B on the same device must not run
concurrently on different streams.

``cg_update``: one launch, grid (blocks per sample, B). Every program computes its sample's α, β
and convergence mask from ``dots`` and ``state`` in registers, then updates p, s, x, r **in place**
(one read and one write per element, no race). The new state goes to a separate (B, 5) tensor,
written by program 0 of each sample only, so no program reads a half-updated state.

Neither launch syncs with the host or allocates with a fill, so an iteration (operator + these two)
is capturable in a CUDA graph.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._triton_util import INTERPRET

__all__ = ["cg_dots", "cg_update"]

_COUNTERS: dict[tuple[str, int], torch.Tensor] = {}


def _counter(device: torch.device, batch: int) -> torch.Tensor:
    key = (str(device), batch)
    buf = _COUNTERS.get(key)
    if buf is None:
        buf = _COUNTERS[key] = torch.zeros(batch, dtype=torch.int32, device=device)
    return buf


@triton.jit
def _dots_kernel(r_ptr, g_ptr, z_ptr, shift_ptr, scale_ptr, part_ptr, count_ptr, out_ptr, n,
                 BLOCK: tl.constexpr, PMAX: tl.constexpr, HAS_Z: tl.constexpr):
    pid = tl.program_id(0)
    b = tl.program_id(1)
    progs = tl.num_programs(0)
    base = b.to(tl.int64) * n
    acc_dtype = out_ptr.dtype.element_ty
    rr = tl.zeros((BLOCK,), dtype=acc_dtype)
    gr = tl.zeros((BLOCK,), dtype=acc_dtype)
    zz = tl.zeros((BLOCK,), dtype=acc_dtype)  # preconditioned (HAS_Z): <z, z>, <r, z>, gr = <G z, z>
    rz = tl.zeros((BLOCK,), dtype=acc_dtype)
    for start in range(pid * BLOCK, n, progs * BLOCK):
        idx = start + tl.arange(0, BLOCK)
        mask = idx < n
        r = tl.load(r_ptr + base + idx, mask=mask, other=0.0).to(acc_dtype)
        g = tl.load(g_ptr + base + idx, mask=mask, other=0.0).to(acc_dtype)
        rr += r * r
        if HAS_Z:
            z = tl.load(z_ptr + base + idx, mask=mask, other=0.0).to(acc_dtype)
            gr += g * z
            zz += z * z
            rz += r * z
        else:
            gr += g * r
    slot = part_ptr + (b * progs + pid) * 4
    tl.store(slot, tl.sum(rr, axis=0))
    tl.store(slot + 1, tl.sum(gr, axis=0))
    tl.store(slot + 2, tl.sum(zz, axis=0))
    tl.store(slot + 3, tl.sum(rz, axis=0))
    tl.debug_barrier()  # every thread's partial store happens before the release below
    arrived = tl.atomic_add(count_ptr + b, 1, sem="acq_rel")
    if arrived == progs - 1:
        ps = tl.arange(0, PMAX)
        pm = ps < progs
        row = part_ptr + b * progs * 4 + ps * 4
        rr_all = tl.sum(tl.load(row, mask=pm, other=0.0, cache_modifier=".cg"), axis=0)
        gr_all = tl.sum(tl.load(row + 1, mask=pm, other=0.0, cache_modifier=".cg"), axis=0)
        shift = tl.load(shift_ptr + b).to(acc_dtype)
        scale = tl.load(scale_ptr + b).to(acc_dtype)
        if HAS_Z:
            zz_all = tl.sum(tl.load(row + 2, mask=pm, other=0.0, cache_modifier=".cg"), axis=0)
            rz_all = tl.sum(tl.load(row + 3, mask=pm, other=0.0, cache_modifier=".cg"), axis=0)
            tl.store(out_ptr + b * 3, rz_all)
            tl.store(out_ptr + b * 3 + 1, shift * zz_all + scale * gr_all)
            tl.store(out_ptr + b * 3 + 2, rr_all)
        else:
            tl.store(out_ptr + b * 2, rr_all)
            tl.store(out_ptr + b * 2 + 1, shift * rr_all + scale * gr_all)
        tl.atomic_xchg(count_ptr + b, 0)


def cg_dots(r: torch.Tensor, gr: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor,
            z: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 2) rows [⟨r, r⟩, ⟨shift·r + scale·gr, r⟩] per sample (float64 sums for float64 input); with
    z (preconditioned, gr = G z): (B, 3) rows [⟨r, z⟩, ⟨shift·z + scale·gr, z⟩, ⟨r, r⟩]."""
    batch = r.shape[0]
    n = r.numel() // max(batch, 1)
    out = torch.empty(batch, 2 if z is None else 3, dtype=r.dtype, device=r.device)
    if batch == 0:
        return out
    if INTERPRET:
        block, progs, warps = 64, min(3, triton.cdiv(max(n, 1), 64)), 1
    else:
        block, warps = 2048, 8
        progs = max(1, min(triton.cdiv(max(n, 1), block), 512 // batch, 128))
    partials = torch.empty(batch, progs, 4, dtype=r.dtype, device=r.device)
    _dots_kernel[(progs, batch)](
        r, gr, r if z is None else z.contiguous(), shift.to(r.dtype).contiguous(), scale.to(r.dtype).contiguous(), partials,
        _counter(r.device, batch), out, n, BLOCK=block, PMAX=max(16, triton.next_power_of_2(progs)),
        HAS_Z=z is not None, num_warps=warps,
    )
    return out


@triton.jit
def _update_kernel(x_ptr, r_ptr, p_ptr, s_ptr, g_ptr, z_ptr, shift_ptr, scale_ptr, dots_ptr, state_ptr,
                   new_state_ptr, n, tol2_hi, tol2_lo, BLOCK: tl.constexpr, HAS_Z: tl.constexpr):
    pid = tl.program_id(0)
    b = tl.program_id(1)
    dtype = x_ptr.dtype.element_ty
    COLS: tl.constexpr = 3 if HAS_Z else 2
    gamma = tl.load(dots_ptr + b * COLS)
    delta = tl.load(dots_ptr + b * COLS + 1)
    if HAS_Z:
        rnorm2 = tl.load(dots_ptr + b * 3 + 2)  # ⟨r, r⟩; without a preconditioner it is gamma
    else:
        rnorm2 = gamma
    st = state_ptr + b * 5
    gamma_old = tl.load(st)
    alpha_old = tl.load(st + 1)
    active = tl.load(st + 2)
    iters = tl.load(st + 3)
    rhs2 = tl.load(st + 4)
    tol2 = tl.cast(tol2_hi, dtype) + tl.cast(tol2_lo, dtype)
    first = gamma_old == 0
    beta = tl.where(first, 0.0, gamma / gamma_old).to(dtype)
    alpha = tl.where(first, gamma / delta, gamma / (delta - beta * gamma / alpha_old)).to(dtype)
    on = (active > 0) & (rnorm2 > tol2 * rhs2)
    alpha = tl.where(on, alpha, 0.0).to(dtype)
    beta = tl.where(on, beta, 0.0).to(dtype)
    if pid == 0:
        ns = new_state_ptr + b * 5
        tl.store(ns, tl.where(on, gamma, gamma_old))
        tl.store(ns + 1, tl.where(on, alpha, alpha_old))
        tl.store(ns + 2, on.to(dtype))
        tl.store(ns + 3, iters + on.to(dtype))
        tl.store(ns + 4, rhs2)
    shift = tl.load(shift_ptr + b)
    scale = tl.load(scale_ptr + b)
    idx = pid * BLOCK + tl.arange(0, BLOCK)
    mask = idx < n
    off = b.to(tl.int64) * n + idx
    r = tl.load(r_ptr + off, mask=mask, other=0.0)
    g = tl.load(g_ptr + off, mask=mask, other=0.0)
    p = tl.load(p_ptr + off, mask=mask, other=0.0)
    s = tl.load(s_ptr + off, mask=mask, other=0.0)
    x = tl.load(x_ptr + off, mask=mask, other=0.0)
    if HAS_Z:
        z = tl.load(z_ptr + off, mask=mask, other=0.0)
    else:
        z = r
    p = tl.where(on, z + beta * p, p)
    s = tl.where(on, shift * z + scale * g + beta * s, s)
    tl.store(p_ptr + off, p, mask=mask)
    tl.store(s_ptr + off, s, mask=mask)
    tl.store(x_ptr + off, x + alpha * p, mask=mask)
    tl.store(r_ptr + off, r - alpha * s, mask=mask)


def cg_update(
    x: torch.Tensor, r: torch.Tensor, p: torch.Tensor, s: torch.Tensor, gr: torch.Tensor,
    shift: torch.Tensor, scale: torch.Tensor, dots: torch.Tensor, state: torch.Tensor, tol2: float,
    z: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One masked CG update: x, r, p, s updated **in place** and returned, with a new state (B, 5).
    With z (preconditioned; gr = G z, dots (B, 3)) the directions come from z."""
    batch = x.shape[0]
    n = x.numel() // max(batch, 1)
    new_state = torch.empty_like(state)
    if batch == 0:
        return x, r, p, s, new_state
    if INTERPRET:
        block, warps = max(16, min(triton.next_power_of_2(max(n, 1)), 1 << 16)), 1
    else:
        block, warps = 2048, 8
    hi = float(torch.tensor(tol2, dtype=torch.float32))
    lo = float(tol2 - hi)
    _update_kernel[(max(1, triton.cdiv(n, block)), batch)](
        x, r, p, s, gr, r if z is None else z.contiguous(), shift.to(x.dtype).contiguous(), scale.to(x.dtype).contiguous(),
        dots.to(x.dtype).contiguous(), state.to(x.dtype).contiguous(), new_state, n, hi, lo,
        BLOCK=block, HAS_Z=z is not None, num_warps=warps,
    )
    return x, r, p, s, new_state
