"""Measurement-space Krylov solves for MMPS's step 3 (``mmps.py``): u ≈ K⁻¹ r per sample for a K applied only
as a map (B, ...) → (B, ...), with a fixed iteration budget, every inner product per sample and no host sync.

``measurement_cg`` (K symmetric positive definite; directions below a known floor are skipped) and
``measurement_gmres`` (any K; Arnoldi with modified Gram–Schmidt, the small least squares by torch.linalg). Both
can return the weights w with u = Σ_i w_i v_i over the vectors they gave ``apply``, so a caller that computed a
linear map of each v_i inside ``apply`` gets that map of u without another product.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

__all__ = ["measurement_cg", "measurement_gmres", "per_sample", "shares_memory"]


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B,) per-sample inner products. On the CPU one BLAS dot per sample: ``vecdot`` materialises the product
    there and reads twice the memory (2× the time at 3×256² per sample); elsewhere ``vecdot``, one kernel."""
    a, b = a.flatten(1), b.flatten(1)
    if a.device.type == "cpu" and a.shape[0] <= 256:
        return torch.stack([torch.dot(ai, bi) for ai, bi in zip(a, b)])
    return torch.linalg.vecdot(a, b, dim=1)


def shares_memory(t: torch.Tensor, *others: torch.Tensor) -> bool:
    """Whether t's storage is one of ``others``' (a result ``apply`` returned without copying)."""
    ptr = t.untyped_storage().data_ptr()
    return any(ptr == o.untyped_storage().data_ptr() for o in others)


def _check_returns(weights: bool, solution: bool) -> None:
    if not solution and not weights:
        raise ValueError("solution=False returns only the weights; pass weights=True with it")


def per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) per-sample scalars shaped to broadcast against ``like`` (B, ...)."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def measurement_cg(apply: Callable[[torch.Tensor], torch.Tensor], rhs: torch.Tensor, iters: int, *,
                   floor: float = 0.0, weights: bool = False, solution: bool = True) -> Any:
    """u ≈ K⁻¹ rhs by ``iters`` CG iterations from u = 0, K = ``apply`` SPD per sample; rhs (B, ...).

    Every α, β is a (B,) tensor; a sample whose direction has ⟨p, K p⟩ ≤ ½·``floor``·⟨p, p⟩ or ⟨r, r⟩ = 0
    (solved) takes α = 0 / β = 0 there (torch.where, no sync). ``floor``: a lower bound K ⪰ floor·I that holds
    when K is what it should be (MMPS: σ²I + A Σ Aᵀ with Σ PSD); a direction far below it shows K is not (a
    learned denoiser's Jacobian), and a CG step along it, α = ⟨r, r⟩/⟨p, K p⟩, is unbounded (the ½ leaves room
    for rounding where K ≈ floor·I). 0: only ⟨p, K p⟩ ≤ 0 is skipped.
    ``weights=True`` also returns w (B, iters) with u = Σ_i w_i p_i,
    p_i the vector given to ``apply`` at call i (here w_i = α_i): a linear map of u is then the same sum of that
    map of the p_i, which a caller may have computed inside ``apply``; with ``solution=False`` as well, u is not
    formed and (None, w) is returned."""
    _check_returns(weights, solution)
    u = torch.zeros_like(rhs) if solution else None
    r = rhs
    p = rhs
    rr = _dot(r, r)
    alphas = []
    for _ in range(iters):
        kp = apply(p)
        pkp = _dot(p, kp)
        ok = pkp > 0.5 * floor * _dot(p, p)
        alpha = torch.where(ok, rr / torch.where(ok, pkp, torch.ones_like(pkp)), torch.zeros_like(pkp))
        alphas.append(alpha)
        if solution:
            u = u + per_sample(alpha, u) * p
        r = r - per_sample(alpha, r) * kp
        rr_new = _dot(r, r)
        live = rr > 0
        beta = torch.where(live, rr_new / torch.where(live, rr, torch.ones_like(rr)), torch.zeros_like(rr))
        p = r + per_sample(beta, r) * p
        rr = rr_new
    return (u, torch.stack(alphas, 1)) if weights else u


def measurement_gmres(apply: Callable[[torch.Tensor], torch.Tensor], rhs: torch.Tensor, iters: int, *,
                      weights: bool = False, solution: bool = True) -> Any:
    """u ≈ K⁻¹ rhs by ``iters`` GMRES iterations from u = 0, K = ``apply`` any (nonsymmetric) linear map per
    sample; rhs (B, ...), ``apply`` maps (B, ...) → (B, ...) sample by sample.

    Per sample b (no restart, a fixed budget k = ``iters``, no host sync):

    1. β = ‖rhs‖, v₀ = rhs/β;
    2. Arnoldi with modified Gram–Schmidt, j = 0 … k−1: w = K v_j; for i ≤ j: h_ij = ⟨w, v_i⟩, w ← w − h_ij v_i;
       h_{j+1,j} = ‖w‖, v_{j+1} = w/h_{j+1,j} (one ``apply`` per iteration);
    3. c = argmin_c ‖β e₁ − H c‖ with H (B, k+1, k) upper Hessenberg, by a batched QR (torch.linalg, float64);
       a column with |R_jj| ≤ 1000·ε·max_i |R_ii| is dependent on the ones before it and is dropped (c_j = 0);
    4. u = Σ_j c_j v_j: the minimiser of ‖rhs − K u‖ over the Krylov space span{rhs, K rhs, …, K^{k−1} rhs}
       (``weights=True`` also returns c (B, k): v_j is the vector given to ``apply`` at call j, so a linear map of
       u is Σ_j c_j times that map of v_j, which a caller may have computed inside ``apply``; with
       ``solution=False`` as well, u is not formed and (None, c) is returned).

    With k = dim the result is the exact solve; on an SPD K it equals CG in exact arithmetic (same Krylov space,
    residual instead of K-norm optimality, so it differs before convergence). A sample whose Krylov space closes
    early (rhs = 0, solved, or h_{j+1,j} ≤ 1000·ε·‖K v_j‖ with ε of rhs's dtype) gets h_{j+1,j} = 0, v_{j+1} = 0
    and a unit diagonal in H for the unused columns, whose coefficients are then 0, so H stays full rank and the
    answer is the one of the closed space (rhs = 0 → u = 0). The tolerance matters: past the dimension (more
    iterations than measurements, or an invariant subspace reached) w is rounding noise, and normalising it
    would add a spurious direction whose least-squares coefficient can be huge (seen: 8 iterations on a
    4-measurement SR×4 blew the sampler up). Rounding can still leave such a vector above the tolerance; its
    column of H is then dependent, which step 3's drop handles (solving for it divided by R_jj = 0 on the same
    SR×4). NaN compares false there: a NaN or inf from ``apply`` or ``rhs``
    propagates to that sample's u."""
    _check_returns(weights, solution)
    k = iters
    flat = rhs.flatten(1)
    batch = flat.shape[0]
    hd = torch.float64
    h = torch.zeros(batch, k + 1, k, dtype=hd, device=rhs.device)

    rtol = 1000 * torch.finfo(rhs.dtype).eps

    def unit(w: torch.Tensor, floor: torch.Tensor | float = 0.0, inplace: bool = False,
             norm: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        norm = w.norm(dim=1) if norm is None else norm
        gone = norm <= floor  # False for NaN: it propagates
        norm = torch.where(gone, torch.zeros_like(norm), norm)
        scale = torch.where(gone, torch.zeros_like(norm), 1 / torch.where(gone, torch.ones_like(norm), norm))
        return (w.mul_(scale[:, None]) if inplace else w * scale[:, None]), norm, gone

    v0, beta, gone = unit(flat)
    basis = [v0]
    closed = [gone]  # closed[j]: v_j = 0 (the Krylov space ended before j)
    for j in range(k):
        w = apply(basis[j].view_as(rhs)).flatten(1)
        if shares_memory(w, rhs, *basis):  # updated in place below: never write into the caller's vectors
            w = w.clone()
        for i in range(j + 1):  # modified Gram–Schmidt, in place (a fresh 3×256² buffer costs a pass on the CPU)
            hij = _dot(w, basis[i])
            h[:, i, j] = hij.to(hd)
            w.addcmul_(hij[:, None], basis[i], value=-1)
        after = w.norm(dim=1)
        # ‖K v_j‖ = √(Σ_i h_ij² + ‖w‖²): the projections removed are orthogonal (no second pass over K v_j)
        before = (h[:, :j + 1, j].pow(2).sum(1) + after.to(hd).pow(2)).sqrt().to(after.dtype)
        v, norm, gone = unit(w, rtol * before, inplace=True, norm=after)
        h[:, j + 1, j] = norm.to(hd)
        basis.append(v)
        closed.append(closed[j] | gone)
    dead = torch.stack(closed[:k], 1)  # (B, k): column j unused where v_j = 0
    eye = torch.eye(k + 1, k, dtype=hd, device=rhs.device)
    h = h + dead[:, None, :].to(hd) * eye  # unit diagonal on unused columns (their rows are zero elsewhere)
    g = torch.zeros(batch, k + 1, 1, dtype=hd, device=rhs.device)
    g[:, 0, 0] = beta.to(hd)
    q, r = torch.linalg.qr(h)  # (B, k+1, k), (B, k, k)
    z = q.transpose(1, 2) @ g  # (B, k, 1)
    # A column of H that is (to rounding) a combination of the ones before it adds nothing to the Krylov space (a
    # direction normalised from rounding noise that the closure test above missed): its R_jj is ~0 and solving for
    # it would divide by it. Drop it (c_j = 0: row j becomes e_j, z_j = 0); the minimiser over the other columns is
    # the same least-squares answer up to that rounding. Where no R_jj is that small, R and z are unchanged.
    diag = r.diagonal(dim1=1, dim2=2).abs()  # (B, k)
    drop = diag <= rtol * diag.amax(1, keepdim=True)  # NaN compares false: it propagates
    r = torch.where(drop[:, :, None], eye[:k], r)
    z = torch.where(drop[:, :, None], torch.zeros_like(z), z)
    c = torch.linalg.solve_triangular(r, z, upper=True)[..., 0].to(flat.dtype)  # (B, k)
    if not solution:
        return None, c
    u = basis[0] * c[:, :1]
    for j in range(1, k):
        u.addcmul_(c[:, j:j + 1], basis[j])
    return (u.view_as(rhs), c) if weights else u.view_as(rhs)
