"""Fused sampler updates: DDIM(η), the gradient-estimation (GE) sampler, and MPGD's guided step.

Every update here is one affine map of the inputs, so one fused op serves them all
(docs/kernels.md, "step"). With ē = γ ε̂ + (1 − γ) ε̂_prev (ē = ε̂ when there is no ε̂_prev):

    x_s = c_x x_t + c_e ē + c_g g + c_z z,        x̂0 = d_x x_t + d_e ē + d_g g.

The wrappers below only compute the (B, 8) coefficient table ``[γ, c_x, c_e, c_g, c_z, d_x, d_e, d_g]`` (on the host
from Python floats and copied asynchronously, on the device from (B,) tensors; per sample, no host sync); the
backends do the one pass over the pixels.

- DDIM (Song et al. 2021, eq. 12): x̂0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t,
  σ = η √((1−ᾱ_s)/(1−ᾱ_t)) √(1 − ᾱ_t/ᾱ_s), x_s = √ᾱ_s x̂0 + √(1−ᾱ_s−σ²) ε̂ + σ z.
- MPGD (He et al. 2024): x̂0* = x̂0 − λ g (g the loss gradient at x̂0, λ per sample), then DDIM.
- GE (Permenter & Yuan 2024) in VE coordinates x̃ = x/√ᾱ, σ_t = √(1/ᾱ_t − 1):
  σ_p = (σ_s/σ_t^μ)^{1/(1−μ)}, x̃_s = x̃_t − (σ_t − σ_p) ē + √(σ_s² − σ_p²) z.

Checks: Python numbers always, on the host (finite, in range: ᾱ ∈ (0, 1], ᾱ_t < 1, ᾱ_s ≥ ᾱ_t for a
stochastic step, η ∈ [0, 1], γ, λ ≥ 0). (B,) tensors must have the images' dtype and device (nothing is
cast or moved) and, with ``check=True`` (the default), are held to the same ranges per sample — plus
finite coefficients — read back with ONE host sync per call (none when every value is a Python number).
``check=False`` skips the tensor-valued checks (no sync): for solvers passing values they built, inside
a sampling loop. ``fused_step(check=True)`` checks that ``coefs`` is finite (one sync).
In-kernel noise: ``seed`` is one int in [0, 2**64) (``_checks.SEED_LIMIT``) for the batch, or a list of
B ints — one stream per sample at that sample's own offsets, so a sample's noise does not depend on its batch (the
backends then run one launch per sample).
"""

from __future__ import annotations

import math

import torch

from . import _dispatch
from ._checks import (check_companion, check_image_like, check_same, check_seed, check_tensor_ranges, plain_number,
                      per_sample)

__all__ = ["check_scalar", "check_seeds", "ddim_step", "ge_step", "mpgd_step", "fused_step", "fused_step_reference"]

_FAMILY = "step"


def _noise_from_seed(like: torch.Tensor, seed: int, offset: int) -> torch.Tensor:
    """The torch backend's reproducible noise stream for (seed, offset)."""
    gen = torch.Generator(device=like.device)
    gen.manual_seed((seed * 0x9E3779B97F4A7C15 + offset) % (2**63))
    return torch.randn(like.shape, generator=gen, device=like.device, dtype=like.dtype)


def fused_step_reference(
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
    """Readable reference of the fused step. Shapes: x, eps, ... (B, ...); coefs (B, 8)."""
    col = coefs.T.reshape(8, -1, *([1] * (x.dim() - 1)))  # col[k]: (B, 1, ..., 1)
    gamma, c_x, c_e, c_g, c_z, d_x, d_e, d_g = col
    e = eps if eps_prev is None else gamma * eps + (1 - gamma) * eps_prev
    x_s = c_x * x + c_e * e
    x0 = d_x * x + d_e * e if want_x0 else None
    if guidance is not None:
        x_s = x_s + c_g * guidance
        if x0 is not None:
            x0 = x0 + d_g * guidance
    if noise is None and seed is not None:
        noise = _noise_from_seed(x, seed, offset)
    if noise is not None:
        x_s = x_s + c_z * noise
    return x_s, x0


def fused_step(
    x: torch.Tensor,
    eps: torch.Tensor,
    coefs: torch.Tensor,
    *,
    eps_prev: torch.Tensor | None = None,
    guidance: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    seed: int | None = None,
    offset: int = 0,
    return_x0: bool = False,
    backend: str = "auto",
    check: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The generic fused update (module docstring); ``coefs`` is (B, 8) in x's dtype/device.

    ``check=True`` rejects non-finite ``coefs`` (one host sync); ``check=False`` skips that (no sync).
    """
    check_image_like("x", x, min_dim=1)
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"x must be float32 or float64 (solver state stays fp32), got {x.dtype}")
    check_same("eps", eps, x, "x")
    check_same("eps_prev", eps_prev, x, "x")
    check_same("guidance", guidance, x, "x")
    check_same("noise", noise, x, "x")
    if not isinstance(coefs, torch.Tensor) or coefs.shape != (x.shape[0], 8):
        raise ValueError(f"coefs must be a tensor of shape ({x.shape[0]}, 8), got {getattr(coefs, 'shape', coefs)}")
    check_companion("coefs", coefs, x)  # x's dtype and device: nothing cast or moved silently
    if check:
        check_tensor_ranges([("coefs", coefs, ~torch.isfinite(coefs), "must be finite",
                              "NaN/Inf coefficients give a NaN step: build them from finite ᾱ, η, γ, λ")])
    if noise is not None and seed is not None:
        raise ValueError("give either noise (a tensor) or seed (in-kernel noise), not both")
    seed = check_seeds(seed, x.shape[0])
    offset = check_offset(offset)
    args = [t.contiguous() if t is not None else None for t in (x, eps, coefs, eps_prev, guidance, noise)]
    impl = _dispatch.implementation(backend, "fused_step", _FAMILY, x.device)
    if isinstance(seed, list):  # one stream per sample: sample b alone, at its own offsets
        outs = [impl(*[None if t is None else t[b:b + 1] for t in args], s, offset, return_x0)
                for b, s in enumerate(seed)]
        x_s = torch.cat([o[0] for o in outs])
        x0 = torch.cat([o[1] for o in outs]) if return_x0 else None
    else:
        x_s, x0 = impl(*args, seed, offset, return_x0)
    return (x_s, x0) if return_x0 else x_s


def check_seeds(seed: object, batch: int) -> int | list[int] | None:
    """None, an int in [0, 2**64), or a list/tuple of ``batch`` such ints (per-sample streams)."""
    seed = plain_number(seed)
    if seed is None:
        return None
    if isinstance(seed, (list, tuple)):
        if len(seed) != batch:
            raise ValueError(f"seed is a list of {len(seed)} seeds but the batch has {batch} samples; give one "
                             "per sample (or a single int)")
        return [check_seed(f"seed[{i}]", s) for i, s in enumerate(seed)]
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int in [0, 2**64) or a list of B of them, got {type(seed).__name__} "
                        f"{seed!r}")
    return check_seed("seed", seed)


def check_offset(offset: object) -> int:
    """An int in [0, SEED_LIMIT) = [0, 2**64)."""
    return check_seed("offset", offset)


def check_scalar(name: str, value: object, low: float | None = None, high: float | None = None,
                 *, low_open: bool = False, high_open: bool = False) -> None:
    """A Python number must be finite and in range; a tensor is accepted as is (no device sync)."""
    if isinstance(value, torch.Tensor):
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number or a (B,) tensor, got {type(value).__name__} {value!r}")
    v = float(value)
    bad = not math.isfinite(v)
    bad = bad or (low is not None and (v <= low if low_open else v < low))
    bad = bad or (high is not None and (v >= high if high_open else v > high))
    if bad:
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        bounds = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        raise ValueError(f"{name} must be a finite number in {bounds}, got {value!r}")


Scalar = float | torch.Tensor  # a Python float, or a (B,) float64 tensor on the images' device


def _value(name: str, value: float | torch.Tensor, ref: torch.Tensor) -> Scalar:
    """A Python number stays a float (host math); a tensor becomes a (B,) float64 tensor."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return per_sample(name, value, ref).double()


def _relu(v: Scalar) -> Scalar:
    return v.clamp_min(0) if isinstance(v, torch.Tensor) else max(v, 0.0)


def _table(ref: torch.Tensor, *columns: Scalar) -> torch.Tensor:
    """The (B, 8) coefficient table in ref's dtype on ref's device.

    When every coefficient is a Python float (the solvers' case: ᾱ fixed up front) the row is
    built on the host and sent with one asynchronous copy from pinned memory — no device sync and
    no chain of tiny kernels per step. Otherwise the per-sample columns are stacked on the device.
    """
    if all(isinstance(c, float) for c in columns):
        big = torch.finfo(ref.dtype).max
        if not all(math.isfinite(c) and abs(c) <= big for c in columns):
            raise ValueError(f"the step's coefficients {[f'{c:.3g}' for c in columns]} overflow {ref.dtype}: "
                             "guidance_scale / step_size / gamma too large, or alpha_bar_t too close to 0, for this "
                             "dtype; use smaller values or float64")
        row = torch.tensor(columns, dtype=ref.dtype)
        if ref.device.type == "cuda":
            row = row.pin_memory().to(ref.device, non_blocking=True)
        return row.expand(ref.shape[0], 8)
    full = [c if isinstance(c, torch.Tensor) else torch.full((ref.shape[0],), c, dtype=torch.float64,
                                                             device=ref.device) for c in columns]
    return torch.stack(full, dim=1).to(ref.dtype)


def _ddim_coefs(x, a_t: Scalar, a_s: Scalar, eta: Scalar, lam: Scalar, gamma: Scalar) -> torch.Tensor:
    """Coefficient table for DDIM(η) with guidance scale λ (MPGD) and GE's γ (values from :func:`_value`)."""
    sigma = eta * _relu((1 - a_s) / (1 - a_t) * (1 - a_t / a_s)) ** 0.5
    dir_coef = _relu(1 - a_s - sigma**2) ** 0.5
    d_x, d_e = 1 / a_t**0.5, -((1 - a_t) ** 0.5) / a_t**0.5
    c_x, c_e = a_s**0.5 * d_x, a_s**0.5 * d_e + dir_coef
    return _table(x, gamma, c_x, c_e, -(a_s**0.5) * lam, sigma, d_x, d_e, -lam)


_SKIP = "or pass check=False to skip the tensor checks (and their host sync) for values you built"
_ALPHA_FIX = f"pass ᾱ from the model's alphas_cumprod table (ᾱ > 1 gives NaN, ᾱ <= 0 divides by zero), {_SKIP}"


def _range_checks(coefs: torch.Tensor, a_t: Scalar, a_s: Scalar, stochastic: Scalar | bool,
                  numbers: dict[str, Scalar]) -> None:
    """Per-sample checks of the tensor-valued arguments (already (B,) float64 tensors), one host sync.

    ᾱ_t ∈ (0, 1), ᾱ_s ∈ (0, 1], ᾱ_s ≥ ᾱ_t where the step is stochastic (``stochastic``: a bool or a
    (B,) tensor of η / μ, stochastic where > 0), ``numbers`` (name → (value, low, high)) in range, and
    the coefficient table finite. Nothing runs when every value is a Python number (host-checked).
    """
    checks = []
    if isinstance(a_t, torch.Tensor):
        checks.append(("alpha_bar_t", a_t, ~((a_t > 0) & (a_t < 1)), "must lie in (0, 1) per sample (ᾱ_t = 1 is "
                       "the clean end: no step to take)", _ALPHA_FIX))
    if isinstance(a_s, torch.Tensor):
        checks.append(("alpha_bar_s", a_s, ~((a_s > 0) & (a_s <= 1)), "must lie in (0, 1] per sample", _ALPHA_FIX))
    if isinstance(a_t, torch.Tensor) or isinstance(a_s, torch.Tensor) or isinstance(stochastic, torch.Tensor):
        noisy = stochastic > 0 if isinstance(stochastic, torch.Tensor) else stochastic
        if not isinstance(noisy, bool) or noisy:
            back = torch.as_tensor(a_s < a_t, device=coefs.device) & torch.as_tensor(noisy, device=coefs.device)
            shown = a_s if isinstance(a_s, torch.Tensor) else torch.tensor([a_s], dtype=torch.float64)
            checks.append(("alpha_bar_s", shown, back,
                           "must be >= alpha_bar_t per sample for a stochastic step (noisy t to less noisy s)",
                           f"swap them, or use eta=0 / mu=0 for a deterministic inversion step, {_SKIP}"))
    for name, (value, low, high) in numbers.items():
        if isinstance(value, torch.Tensor):
            ok = torch.isfinite(value) & (value >= low)
            if high is not None:
                ok = ok & (value <= high)
            bounds = f"[{low}, {'inf)' if high is None else f'{high}]'}"
            checks.append((name, value, ~ok, f"must be finite and in {bounds} per sample",
                           f"give values in range, {_SKIP}"))
    if checks:  # a tensor went into the table: its coefficients may overflow x's dtype
        checks.append(("the step's coefficients", coefs, ~torch.isfinite(coefs), f"overflow {coefs.dtype}",
                       "alpha_bar_t too close to 0 or guidance_scale / step_size / gamma too large for this dtype; "
                       f"use smaller values or float64, {_SKIP}"))
    check_tensor_ranges(checks)


def _check_alpha(name: str, value: float | torch.Tensor) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not 0 < value <= 1:
        raise ValueError(f"{name} must lie in (0, 1] (a finite ᾱ of the training table), got {value}")
    check_scalar(name, value, 0.0, 1.0, low_open=True)


def _check_levels(alpha_bar_t: object, alpha_bar_s: object, stochastic: bool) -> None:
    """ᾱ_t ∈ (0, 1), ᾱ_s ∈ (0, 1]; a stochastic step needs ᾱ_s ≥ ᾱ_t (host numbers only)."""
    _check_alpha("alpha_bar_t", alpha_bar_t)
    _check_alpha("alpha_bar_s", alpha_bar_s)
    if isinstance(alpha_bar_t, (int, float)) and alpha_bar_t >= 1:
        raise ValueError("alpha_bar_t must be < 1: ᾱ_t = 1 is the clean end of the chain, there is no step to take "
                         "from it (x̂0 = x_t)")
    if (stochastic and isinstance(alpha_bar_t, (int, float)) and isinstance(alpha_bar_s, (int, float))
            and alpha_bar_s < alpha_bar_t):
        raise ValueError(f"alpha_bar_s={alpha_bar_s} < alpha_bar_t={alpha_bar_t}: a stochastic step goes from "
                         "noisy t to less noisy s (ᾱ_s ≥ ᾱ_t); swap them, or use eta=0 / mu=0 for a deterministic "
                         "inversion step")


def _ddim(x_t, eps, alpha_bar_t, alpha_bar_s, eta, noise, seed, offset, guidance, scale, scale_name,
          return_x0, backend, check):
    """ddim_step / mpgd_step: host checks, the coefficient table, the tensor checks, the fused op."""
    alpha_bar_t, alpha_bar_s, eta, scale = (plain_number(v) for v in (alpha_bar_t, alpha_bar_s, eta, scale))
    check_image_like("x_t", x_t)
    check_scalar("eta", eta, 0.0, 1.0)
    if scale is not None:
        check_scalar(scale_name, scale, 0.0)
    _check_levels(alpha_bar_t, alpha_bar_s, not (isinstance(eta, (int, float)) and eta == 0))
    if (guidance is None) != (scale is None):
        raise ValueError(f"guidance and {scale_name} go together: give both or neither")
    a_t, a_s = _value("alpha_bar_t", alpha_bar_t, x_t), _value("alpha_bar_s", alpha_bar_s, x_t)
    eta_v = _value("eta", eta, x_t)
    lam = _value(scale_name, 0.0 if scale is None else scale, x_t)
    coefs = _ddim_coefs(x_t, a_t, a_s, eta_v, lam, 1.0)
    if check:
        _range_checks(coefs, a_t, a_s, eta_v if isinstance(eta_v, torch.Tensor) else eta_v > 0,
                      {"eta": (eta_v, 0.0, 1.0), scale_name: (lam, 0.0, None)})
    return fused_step(x_t, eps, coefs, guidance=guidance, noise=noise, seed=seed, offset=offset,
                      return_x0=return_x0, backend=backend, check=False)


def ddim_step(
    x_t: torch.Tensor,
    eps: torch.Tensor,
    alpha_bar_t: float | torch.Tensor,
    alpha_bar_s: float | torch.Tensor,
    *,
    eta: float | torch.Tensor = 0.0,
    noise: torch.Tensor | None = None,
    seed: int | None = None,
    offset: int = 0,
    guidance: torch.Tensor | None = None,
    guidance_scale: float | torch.Tensor | None = None,
    return_x0: bool = False,
    backend: str = "auto",
    check: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """One DDIM(η) step t → s; with ``guidance`` g, x̂0 is first moved to x̂0 − λ g (λ = guidance_scale).

    x_t, eps, noise, guidance: (B, ...); alpha_bar_*: ᾱ as floats or (B,) tensors of x_t's dtype and
    device; returns x_s (and x̂0*, the guided estimate, when ``return_x0``). Noise is ``noise`` or,
    from ``seed`` and ``offset``, generated by the backend; without either the stochastic term is
    dropped. ``check=False`` skips the per-sample checks of tensor arguments (module docstring): no
    host sync, for solvers passing values they built.
    """
    return _ddim(x_t, eps, alpha_bar_t, alpha_bar_s, eta, noise, seed, offset, guidance, guidance_scale,
                 "guidance_scale", return_x0, backend, check)


def mpgd_step(
    x_t: torch.Tensor,
    eps: torch.Tensor,
    grad: torch.Tensor,
    alpha_bar_t: float | torch.Tensor,
    alpha_bar_s: float | torch.Tensor,
    *,
    step_size: float | torch.Tensor,
    eta: float | torch.Tensor = 0.5,
    noise: torch.Tensor | None = None,
    seed: int | None = None,
    offset: int = 0,
    return_x0: bool = False,
    backend: str = "auto",
    check: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """MPGD: x̂0* = x̂0 − step_size·grad (grad = ∇ loss at x̂0, (B, ...); step_size ≥ 0 per sample), then DDIM(η).

    ``check`` as in :func:`ddim_step`."""
    step_size = plain_number(step_size)
    check_scalar("step_size", step_size, 0.0)
    return _ddim(x_t, eps, alpha_bar_t, alpha_bar_s, eta, noise, seed, offset, grad, step_size, "step_size",
                 return_x0, backend, check)


def ge_step(
    x_t: torch.Tensor,
    eps: torch.Tensor,
    eps_prev: torch.Tensor | None,
    alpha_bar_t: float | torch.Tensor,
    alpha_bar_s: float | torch.Tensor,
    *,
    gamma: float | torch.Tensor = 2.0,
    mu: float = 0.0,
    noise: torch.Tensor | None = None,
    seed: int | None = None,
    offset: int = 0,
    return_x0: bool = False,
    backend: str = "auto",
    check: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """One gradient-estimation step t → s (Permenter & Yuan): ē = γ ε̂_t + (1 − γ) ε̂_{t+1}.

    ``eps_prev`` is the previous step's ε̂ (None on the first step, where ē = ε̂). ``mu`` ∈ [0, 1)
    is the stochastic variant (μ = 0: deterministic). Returns x_s (and x̂0 from ē). ``check`` as in
    :func:`ddim_step`.
    """
    check_image_like("x_t", x_t)
    alpha_bar_t, alpha_bar_s, gamma, mu = (plain_number(v) for v in (alpha_bar_t, alpha_bar_s, gamma, mu))
    if isinstance(mu, bool) or not isinstance(mu, (int, float)) or not 0 <= mu < 1:
        raise ValueError(f"mu must be a number in [0, 1), got {mu!r}")
    check_scalar("gamma", gamma, 0.0)
    _check_levels(alpha_bar_t, alpha_bar_s, mu > 0)
    a_t = _value("alpha_bar_t", alpha_bar_t, x_t)
    a_s = _value("alpha_bar_s", alpha_bar_s, x_t)
    gam_v = _value("gamma", gamma, x_t)
    sig_t, sig_s = _relu(1 / a_t - 1) ** 0.5, _relu(1 / a_s - 1) ** 0.5
    sig_p = (sig_s / sig_t**mu) ** (1 / (1 - mu)) if mu > 0 else sig_s
    root_s = a_s**0.5
    gam = gam_v if eps_prev is not None else 1.0
    coefs = _table(x_t, gam, root_s / a_t**0.5, root_s * (sig_p - sig_t), 0.0,
                   root_s * _relu(sig_s**2 - sig_p**2) ** 0.5, 1 / a_t**0.5, -sig_t, 0.0)
    if check:
        _range_checks(coefs, a_t, a_s, mu > 0, {"gamma": (gam_v, 0.0, None)})
    return fused_step(x_t, eps, coefs, eps_prev=eps_prev, noise=noise, seed=seed, offset=offset,
                      return_x0=return_x0, backend=backend, check=False)
