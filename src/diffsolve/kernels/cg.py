"""Batched conjugate gradients for K = shift·I + scale·G, one independent system per sample.

Chronopoulos–Gear CG (Chronopoulos & Gear 1989): both inner products of an iteration come from
one fused reduction, so an iteration is the operator (G r, user code) plus two launches,
``cg_dots`` and ``cg_update`` (docs/kernels.md, "cg"). Every scalar is a (B,) tensor and the loop
runs a fixed number of iterations with an on-device convergence mask: no host synchronisation, so
the loop can be captured in a CUDA graph.

Per sample, with w = K r, γ = ⟨r, r⟩, δ = ⟨w, r⟩:
    β = γ/γ_old (0 on the first iteration),  α = γ/(δ − β γ/α_old)  (γ/δ on the first),
    p = r + β p,  s = w + β s,  x = x + α p,  r = r − α s.
A sample stops (α = β = 0, p and s frozen) once ‖r‖² ≤ tol²·‖rhs‖².

Preconditioned (``preconditioner`` = M⁻¹, SPD, applied in torch between the kernel launches): with
z = M⁻¹ r, w = K z, γ = ⟨r, z⟩, δ = ⟨w, z⟩ the same recurrences run with p = z + β p, s = w + β s;
``cg_dots`` then returns a third column ⟨r, r⟩, on which the stopping test stays (the true residual
norm, not the M⁻¹ one). One M⁻¹ application per iteration; the kernels take z as an extra input.
NaN is never turned into a number: a sample whose rhs, x0 or any iteration's inner products are not
finite returns x = NaN (tracked on the device, no sync), with residual NaN and converged False.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch

from . import _dispatch
from ._checks import check_image_like, per_sample, plain_number

__all__ = ["CGResult", "batched_cg", "cg_dots", "cg_dots_reference", "cg_iteration_bound", "cg_update",
           "cg_update_reference"]


class CGResult(NamedTuple):
    """Result of :func:`batched_cg`. Shapes: x like rhs; the rest (B,)."""

    x: torch.Tensor
    iterations: torch.Tensor  # int64: iterations each sample took before its mask closed
    residual: torch.Tensor  # true relative residual ‖rhs − K x‖ / ‖rhs‖ (‖K x‖ where rhs = 0)
    converged: torch.Tensor  # bool: residual <= tol


# ----------------------------------------------------------------------------- torch references
def cg_dots_reference(r: torch.Tensor, gr: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor,
                      z: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 2) rows [⟨r, r⟩, ⟨w, r⟩], w = shift·r + scale·gr; r, gr (B, ...), shift, scale (B,).

    Preconditioned (z = M⁻¹ r given, gr = G z): (B, 3) rows [⟨r, z⟩, ⟨w, z⟩, ⟨r, r⟩], w = shift·z + scale·gr."""
    acc = torch.float64 if r.dtype == torch.float64 else torch.float32
    r2 = r.reshape(r.shape[0], -1).to(acc)
    g2 = gr.reshape(r.shape[0], -1).to(acc)
    rr = (r2 * r2).sum(1)
    if z is None:
        wr = shift.to(acc) * rr + scale.to(acc) * (g2 * r2).sum(1)
        return torch.stack((rr, wr), 1).to(r.dtype)
    z2 = z.reshape(r.shape[0], -1).to(acc)
    wz = shift.to(acc) * (z2 * z2).sum(1) + scale.to(acc) * (g2 * z2).sum(1)
    return torch.stack(((r2 * z2).sum(1), wz, rr), 1).to(r.dtype)


def cg_update_reference(
    x: torch.Tensor, r: torch.Tensor, p: torch.Tensor, s: torch.Tensor, gr: torch.Tensor,
    shift: torch.Tensor, scale: torch.Tensor, dots: torch.Tensor, state: torch.Tensor, tol2: float,
    z: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One CG update. state (B, 5) = [gamma_old, alpha_old, active, iterations, rhs_norm2].

    Preconditioned: z = M⁻¹ r, gr = G z and dots (B, 3) from ``cg_dots_reference(r, gr, ..., z)``;
    the directions are built from z and the stopping test uses dots[:, 2] = ⟨r, r⟩."""
    view = (-1,) + (1,) * (x.dim() - 1)
    gamma, delta, rnorm2 = dots[:, 0], dots[:, 1], dots[:, -1]
    if z is None:
        rnorm2, z = gamma, r
    gamma_old, alpha_old, active, iters, rhs2 = state.unbind(1)
    first = gamma_old == 0
    beta = torch.where(first, torch.zeros_like(gamma), gamma / gamma_old)
    alpha = torch.where(first, gamma / delta, gamma / (delta - beta * gamma / alpha_old))
    on = (active > 0) & (rnorm2 > tol2 * rhs2)
    alpha = torch.where(on, alpha, torch.zeros_like(alpha))
    beta = torch.where(on, beta, torch.zeros_like(beta))
    w = shift.view(view) * z + scale.view(view) * gr
    mask = on.view(view)
    p = torch.where(mask, z + beta.view(view) * p, p)
    s = torch.where(mask, w + beta.view(view) * s, s)
    x = x + alpha.view(view) * p
    r = r - alpha.view(view) * s
    state = torch.stack(
        (torch.where(on, gamma, gamma_old), torch.where(on, alpha, alpha_old), on.to(state.dtype),
         iters + on.to(state.dtype), rhs2), 1)
    return x, r, p, s, state


# ----------------------------------------------------------------------------- public functions
def cg_iteration_bound(kappa: float, tol: float) -> int:
    """Iterations k after which CG is guaranteed ‖r_k‖ ≤ tol·‖r_0‖ for SPD K with condition number κ.

    From the Chebyshev bound ‖e_k‖_K ≤ 2 ρ^k ‖e_0‖_K, ρ = (√κ − 1)/(√κ + 1), and
    ‖r‖₂/√λmax ≤ ‖e‖_K ≤ ‖r‖₂/√λmin: k = ⌈ln(2√κ/tol) / ln(1/ρ)⌉ (≈ ½√κ·ln(2√κ/tol)), exact
    arithmetic. ``kappa`` ≥ 1 and ``tol`` > 0 are host floats, so a budget sized with it costs no sync.
    """
    kappa, tol = plain_number(kappa), plain_number(tol)
    if not isinstance(kappa, (int, float)) or isinstance(kappa, bool) or not 1 <= kappa < math.inf:
        raise ValueError(f"kappa must be a finite number >= 1, got {kappa!r}")
    if not isinstance(tol, (int, float)) or isinstance(tol, bool) or not 0 < tol < math.inf:
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    root = math.sqrt(kappa)
    if root - 1 <= 1e-12 * root:  # K = λ·I: one step is exact
        return 1
    # ln(1/ρ) = ln(1 + 2/(√κ − 1)) via log1p: stays > 0 for κ up to the float range (log would round to 0)
    return max(1, math.ceil(math.log(2 * root / tol) / math.log1p(2 / (root - 1))))


def _check_cg_tensor(name: str, t: object, ref: torch.Tensor) -> torch.Tensor:
    check_image_like(name, t)
    if t.shape[0] == 0:
        raise ValueError(f"{name} has batch size 0 (shape {tuple(t.shape)}); give at least one system to solve")
    if t.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must be float32 or float64, got dtype {t.dtype}")
    if t.dtype != ref.dtype or t.device != ref.device or t.shape != ref.shape:
        raise ValueError(
            f"{name} must match rhs (shape {tuple(ref.shape)}, {ref.dtype}, {ref.device}), got "
            f"shape {tuple(t.shape)}, {t.dtype}, {t.device}"
        )
    return t.contiguous()


def cg_dots(r: torch.Tensor, gr: torch.Tensor, shift, scale, *, z: torch.Tensor | None = None,
            backend: str = "auto") -> torch.Tensor:
    """[⟨r, r⟩, ⟨shift·r + scale·gr, r⟩] per sample, (B, 2); with z = M⁻¹ r (gr = G z):
    [⟨r, z⟩, ⟨shift·z + scale·gr, z⟩, ⟨r, r⟩], (B, 3)."""
    _check_cg_tensor("r", r, r)
    gr = _check_cg_tensor("gr", gr, r)
    shift, scale = per_sample("shift", shift, r), per_sample("scale", scale, r)
    impl = _dispatch.resolve("cg_dots", backend, r.device, r.dtype).fn
    if z is None:
        return impl(r.contiguous(), gr, shift, scale)
    return impl(r.contiguous(), gr, shift, scale, _check_cg_tensor("z", z, r))


def cg_update(x, r, p, s, gr, shift, scale, dots, state, tol2: float, *, z: torch.Tensor | None = None,
              backend: str = "auto"):
    """One masked Chronopoulos–Gear update; see the module docstring. Use the returned tensors.
    With z (preconditioned: gr = G z, dots (B, 3) from ``cg_dots(..., z=z)``) the directions come from z."""
    x = _check_cg_tensor("x", x, x)
    r, p, s, gr = (_check_cg_tensor(n, t, x) for n, t in (("r", r), ("p", p), ("s", s), ("gr", gr)))
    shift, scale = per_sample("shift", shift, x), per_sample("scale", scale, x)
    b = x.shape[0]
    for name, t, shape in (("dots", dots, (b, 2 if z is None else 3)), ("state", state, (b, 5))):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor {shape}, got {type(t).__name__}")
        if tuple(t.shape) != shape or t.dtype != x.dtype or t.device != x.device:
            raise ValueError(f"{name} must be {shape} in x's dtype {x.dtype} on {x.device} (as cg_dots"
                             f"{'' if name == 'dots' else ' / the previous cg_update'} return it), got shape "
                             f"{tuple(t.shape)}, {t.dtype}, {t.device}")
    impl = _dispatch.resolve("cg_update", backend, x.device, x.dtype).fn
    args = (x, r, p, s, gr, shift, scale, dots.contiguous(), state.contiguous(), float(tol2))
    return impl(*args) if z is None else impl(*args, _check_cg_tensor("z", z, x))


def batched_cg(
    gram: Callable[[torch.Tensor], torch.Tensor],
    rhs: torch.Tensor,
    shift: float | torch.Tensor = 0.0,
    scale: float | torch.Tensor = 1.0,
    *,
    x0: torch.Tensor | None = None,
    max_iters: int = 100,
    tol: float = 1e-6,
    check_every: int | None = None,
    backend: str = "auto",
    preconditioner: Callable[[torch.Tensor], torch.Tensor] | None = None,
    true_residual: bool = True,
) -> CGResult:
    """Solve (shift·I + scale·G) x = rhs per sample by CG, G = ``gram`` symmetric PSD.

    rhs (B, ...) float32/float64; shift, scale: numbers or (B,) tensors (K must be positive
    definite on the samples' Krylov spaces). Runs exactly ``max_iters`` iterations (samples that
    reached the relative tolerance ``tol`` are masked, not stopped), then applies ``gram`` once
    more to report the true residual. No host synchronisation, unless ``check_every`` = k is set:
    then one sync every k iterations ends the loop once every sample has converged (for use
    outside sampling loops). ``preconditioner``: None, or v ↦ M⁻¹ v for an SPD M ≈ K (per sample,
    same shape, dtype and device; it must not modify v): preconditioned CG, one application per
    iteration, the stopping test still on the true ‖r‖ (module docstring). ``true_residual``: report
    ‖rhs − K x‖ (one more ``gram``), or False: the recursion's ‖r‖ (free; equal in exact arithmetic, for
    short fixed budgets where rounding drift cannot build up).
    """
    _check_cg_tensor("rhs", rhs, rhs)
    max_iters, tol = plain_number(max_iters), plain_number(tol)
    if isinstance(max_iters, bool) or not isinstance(max_iters, int) or max_iters < 0:
        raise ValueError(f"max_iters must be a non-negative int, got {max_iters!r}")
    if not isinstance(tol, (int, float)) or isinstance(tol, bool) or not tol > 0:
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    if preconditioner is not None and not callable(preconditioner):
        raise TypeError(f"preconditioner must be None or callable v -> M⁻¹ v, got {type(preconditioner).__name__}")
    if not isinstance(true_residual, bool):
        raise TypeError(f"true_residual must be a bool, got {type(true_residual).__name__} {true_residual!r}")
    if check_every is not None and (isinstance(check_every, bool) or not isinstance(check_every, int) or check_every < 1):
        raise ValueError(f"check_every must be None or a positive int, got {check_every!r}")
    for name, value in (("shift", shift), ("scale", scale)):  # host numbers: no sync to check them
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not 0 <= value < math.inf:
            raise ValueError(f"{name} must be a finite number >= 0 (K = shift·I + scale·G is SPD), got {value!r}")
    if isinstance(shift, (int, float)) and isinstance(scale, (int, float)) and shift == 0 and scale == 0:
        raise ValueError("shift = scale = 0 makes K zero: nothing to solve; give shift > 0 or scale > 0")
    shift, scale = per_sample("shift", shift, rhs), per_sample("scale", scale, rhs)
    dots_impl = _dispatch.resolve("cg_dots", backend, rhs.device, rhs.dtype).fn
    update_impl = _dispatch.resolve("cg_update", backend, rhs.device, rhs.dtype).fn
    view = (-1,) + (1,) * (rhs.dim() - 1)

    def apply_k(v: torch.Tensor) -> torch.Tensor:
        return shift.view(view) * v + scale.view(view) * gram(v)

    rhs = rhs.contiguous()
    rhs2 = rhs.reshape(rhs.shape[0], -1).pow(2).sum(1)
    if x0 is None:
        x, r = torch.zeros_like(rhs), rhs.clone()
    else:
        x = _check_cg_tensor("x0", x0, rhs).clone()
        r = rhs - apply_k(x)
    bad = ~torch.isfinite(rhs2) | ~torch.isfinite(r.reshape(r.shape[0], -1).sum(1))  # (B,) NaN/Inf seen
    p, s = torch.zeros_like(rhs), torch.zeros_like(rhs)
    state = torch.zeros(rhs.shape[0], 5, dtype=rhs.dtype, device=rhs.device)
    state[:, 2] = 1.0
    state[:, 4] = rhs2
    for it in range(max_iters):
        if preconditioner is None:
            gr = _check_cg_tensor("gram(r)", gram(r), r)  # shape/dtype/device only: no sync
            dots = dots_impl(r, gr, shift, scale)
            bad = bad | ~torch.isfinite(dots).all(1)
            x, r, p, s, state = update_impl(x, r, p, s, gr, shift, scale, dots, state, tol * tol)
        else:
            z = _check_cg_tensor("preconditioner(r)", preconditioner(r), r)
            if z.data_ptr() == r.data_ptr():  # r is updated in place by the kernels: z must not alias it
                z = z.clone()
            gz = _check_cg_tensor("gram(z)", gram(z), r)
            dots = dots_impl(r, gz, shift, scale, z)
            bad = bad | ~torch.isfinite(dots).all(1)
            x, r, p, s, state = update_impl(x, r, p, s, gz, shift, scale, dots, state, tol * tol, z)
        if check_every is not None and (it + 1) % check_every == 0 and not bool(state[:, 2].any()):
            break
    x = torch.where(bad.view(view), torch.full_like(x, float("nan")), x)
    res = (rhs - apply_k(x) if true_residual else r).reshape(rhs.shape[0], -1).norm(dim=1)
    res = torch.where(bad, torch.full_like(res, float("nan")), res)
    rhs_norm = rhs2.sqrt()
    residual = torch.where(rhs_norm > 0, res / torch.where(rhs_norm > 0, rhs_norm, 1), res)
    return CGResult(x, state[:, 3].to(torch.int64), residual, residual <= tol)
