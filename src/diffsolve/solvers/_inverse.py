"""Pieces the inverse solvers share on top of ``_loop``.

- :func:`check_problem`: validate (operator, y) and derive the image batch shape (B, C, H, W)
  from Aᵀy (or check a given x_T against y);
- :func:`residual_norm` / :func:`measurement_grad`: per-sample ‖A x − y‖ and the analytic gradient
  of the non-squared norm, ∇_x ‖A x − y‖ = Aᵀ(A x − y)/‖A x − y‖ — no autograd;
- :class:`Diagnostics`: per-step (B,) tensors collected without a host sync and stacked at the end;
- :func:`discrepancy_floor` / :func:`discrepancy_weight`: how far a data step may go before it fits y's noise;
  :func:`discrepancy_pull`: a result moved towards y until its residual is one the noise explains (Morozov);
- :func:`warn_if_unfit`: after the loop, a :class:`DataConsistencyWarning` where the result ignores y (every solver
  ends with :func:`finish_run`, which calls it and assembles ``return_info``);
- :func:`route`: the solver's backend reaches the operator's kernels;
- :func:`operator_gain` / :func:`sample_gains`: L ≥ ‖AᵀA‖ for the step sizes (one host float; a (B,) tensor where a
  mask's weights differ per sample);
- :func:`pinv_of`: A⁺ for the noiseless steps, with a separable A's negligible singular values counted as zero.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from ..kernels._checks import plain_number
from ..kernels._dispatch import BackendUnavailableError
from ._loop import check_finite_tensor

__all__ = ["DISCREPANCY_SHARE", "PULL_CG_ITERS", "PULL_CG_TOL", "PULL_GROWTH", "PULL_MAX_ROUNDS", "PULL_ROUNDS",
           "SIGMA_MIN", "UNFIT_CONSISTENCY", "check_problem", "check_sigma", "data_part", "DataConsistencyWarning",
           "Diagnostics", "discrepancy_floor", "discrepancy_pull", "discrepancy_weight", "final_residual",
           "measured_entries", "measurement_grad", "noise_ceiling", "operator_gain", "pull_rounds", "residual_norm",
           "route", "SINGULAR_CUTOFF", "counted_singulars", "exact_pinv", "finish_run", "pinv_of", "range_solve",
           "range_svd", "sample_gains", "solver_of", "spectral_step", "warn_if_unfit"]

#: DDRM's reference code (``functions/svd_replacement.py``, ``ZERO = 3e-2``; DDNM's and ΠGDM's code share it): a
#: separable A's per-axis singular values below this share of their axis's largest count as zero, in DDRM's spectral
#: steps and in the pseudo-inverse of the noiseless steps (:func:`pinv_of`). Relative to the largest, the rule does
#: not depend on A's scale; for a normalised kernel (largest 1) it is the code's absolute 3e-2.
SINGULAR_CUTOFF = 3e-2

#: κ of the discrepancy rule the guided methods share when σ is given (DPS's step factor, MPGD's step cap): a step
#: stops fitting y once ‖A x̂0 − y‖² ≤ κ m σ², m the measured entries. κ < 1: x̂0 estimates a mean, which should
#: fit the directions the data determines well below the noise level; κ = 1 lost PSNR for DPS and MPGD on the blurs
#: (benchmarks/results/dps-steps-power.md, mpgd-floor.md; chosen on the tuning photos).
DISCREPANCY_SHARE = 0.5
#: CG of :func:`discrepancy_pull`'s solve where A has no exact one: plain (no preconditioner), each sample until its
#: relative residual is :data:`PULL_CG_TOL` (then frozen), at most :data:`PULL_CG_ITERS` iterations; one host read
#: every ten iterations ends it once every sample is there (the pull runs after the sampling loop). The line search
#: along the direction it gives is exact, so the tolerance only sets how well that direction resolves A's weak
#: directions. A tighter one runs CG further, and long CG runs on a small problem turn on rounding, so a sample's
#: result would follow its batch's rounding more (a tiny problem that misfits y badly already needs enough iterations
#: for that: tests/test_per_sample_seeds.py). Preconditioned by a blur's circulant version, or stopped at a fixed ten
#: iterations, it left results at small σ misfitting y, or short of this one (benchmarks/results/pull-cg.md).
PULL_CG_ITERS = 200
PULL_CG_TOL = 1e-3
#: rounds of :func:`discrepancy_pull`: up to :data:`PULL_ROUNDS` or until v reaches 1 (a unit prior's variance),
#: whichever is later, at most :data:`PULL_MAX_ROUNDS`; and the factor on v from one round to the next. A result still
#: above the noise ceiling at x* restarts from x* trusting y ten times more (σ²/v then resolves singular values 10×
#: smaller). Three rounds fit every unnormalised kernel of benchmarks/results/pull-rounds.md as six do; a last model
#: call near t = 0 (DAPS at two or three levels) hands the pull a v far below the result's error, and only the rounds up
#: to v = 1 bring it to y. Later rounds solve ever worse conditioned systems: on tiny single-channel images float32 CG
#: rounding then leaves a sample's result depending on its batch a little more than three rounds do. A factor of 100
#: fits y as well in fewer rounds but along a less damped direction (lower PSNR there).
PULL_ROUNDS = 3
PULL_MAX_ROUNDS = 16
PULL_GROWTH = 10.0
#: a result whose data consistency ‖A x̂ − y‖/(σ√m) exceeds this for some sample draws a DataConsistencyWarning:
#: a residual 3× the noise level (9× its squared norm). With the discrepancy principle on (every pixel-space
#: method's default, :func:`discrepancy_pull`) a result ends within the noise unless even its last round misfits
#: y; the warning is for ``discrepancy=False`` runs (the papers' results: a real under-fit at 20 steps on random
#: inpainting for some, y largely ignored at 1–5 steps; benchmarks/results/discrepancy.md) and for results x* cannot
#: bring to y.
UNFIT_CONSISTENCY = 3.0


def route(operator: object, backend: str) -> object:
    """The operator with every kernel it runs (A, Aᵀ, CG, structured solves, ``gram_norm_bound``) on the
    solver's ``backend``; ``"auto"`` keeps the operator's own (its constructor's) backend."""
    if backend == "auto" or operator is None:
        return operator
    with_backend = getattr(operator, "with_backend", None)
    return with_backend(backend) if callable(with_backend) else operator


def _check_operator(operator: object) -> None:
    for attr in ("A", "A_adjoint"):
        if not callable(getattr(operator, attr, None)):
            raise TypeError(f"operator must be a linear operator with A(x) and A_adjoint(y) "
                            f"(diffsolve.operators), got {type(operator).__name__}")


def check_problem(operator: object, y: object, x_T: torch.Tensor | None = None, *, linear: bool = True,
                  data: bool = True) -> tuple[int, ...]:
    """The image batch shape for measurement ``y`` (B, ...); raises when y does not fit ``operator``,
    is empty, or holds NaN/Inf (one host sync, before the loop: a bad y is named here, not blamed on
    the denoiser after every step). x_T's dtype/device/finiteness are checked by ``_loop.prepare``.
    ``linear``: the method needs A linear with A_adjoint its transpose (:func:`check_linear`; every method but DPS
    without its closing pull). ``data``: the method uses y, so every sample must have a measured entry (a mask
    that observes no pixel of a sample leaves ‖A x − y‖/(σ√m) undefined); False for the unconditional samplers."""
    _check_operator(operator)
    if type(y).__module__ == "numpy":
        raise TypeError(f"y must be a torch.Tensor (the measurement, batch first), got a numpy {type(y).__name__}; "
                        "convert it with torch.from_numpy(y).float() (channels first: (B, C, H, W))")
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be a torch.Tensor (the measurement, batch first), got {type(y).__name__}")
    if y.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"y must be float32 or float64 (solver state), got dtype {y.dtype}")
    if y.dim() < 2:
        raise ValueError(f"y must be batched (B, ...), got shape {tuple(y.shape)}")
    if y.shape[0] == 0:
        raise ValueError(f"y has batch size 0 (shape {tuple(y.shape)}); give at least one measurement")
    if x_T is not None and not isinstance(x_T, torch.Tensor):
        raise TypeError(f"x_T must be a floating tensor (B, C, H, W), got {type(x_T).__name__}")
    if x_T is not None and x_T.shape[:1] != y.shape[:1]:
        raise ValueError(f"x_T has batch {x_T.shape[0]} but y has batch {y.shape[0]}; one x_T per measurement")
    if x_T is not None and (x_T.dtype != y.dtype or x_T.device != y.device):
        raise TypeError(f"x_T ({x_T.dtype}, {x_T.device}) must have y's dtype and device ({y.dtype}, {y.device}); "
                        f"convert it with x_T.to(y) — nothing is cast silently")
    check_finite_tensor("y", y)
    _check_range(y)
    if _channel_last_hint(y) and y.shape[1] not in (1, 3, 4):  # no image model takes that many channels
        raise ValueError(f"y of shape {tuple(y.shape)} has {y.shape[1]} channels{_channel_last_hint(y)}")
    try:
        with torch.no_grad():
            if x_T is not None:
                shape = tuple(x_T.shape)
                out = operator.A(torch.zeros(shape, dtype=y.dtype, device=y.device))
            else:
                shape = tuple(operator.A_adjoint(y).shape)
                out = operator.A(torch.zeros(shape, dtype=y.dtype, device=y.device))
    except BackendUnavailableError:  # the backend, not y, is at fault: its own message names the fix
        raise
    except (ValueError, RuntimeError) as err:
        if x_T is not None:  # the image shape came from x_T: name it
            raise ValueError(f"x_T of shape {tuple(x_T.shape)} does not fit the operator {operator!r}: {err}; x_T "
                             f"must have the image shape (B, C, H, W) the operator maps to y") from err
        raise ValueError(f"y of shape {tuple(y.shape)} does not fit the operator {operator!r}: {err}"
                         f"{_channel_last_hint(y)}") from err
    if tuple(out.shape) != tuple(y.shape):
        hint = (f"; x_T must have the image shape {tuple(operator.A_adjoint(y).shape)} that Aᵀy has"
                if x_T is not None else "")
        raise ValueError(f"y has shape {tuple(y.shape)} but the operator maps images of shape {shape}"
                         f"{' (x_T)' if x_T is not None else ''} to measurements of shape {tuple(out.shape)}{hint}"
                         f"{_channel_last_hint(y)}")
    if data:
        empty = (measured_entries(operator, y) == 0).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"the operator {operator!r} measures nothing of sample(s) {empty[:8]} of y (no observed "
                             f"pixel): y holds no data for them and ‖A x − y‖/(σ√m) is undefined; give every sample "
                             f"at least one observed pixel, or draw unconditional samples with method='ddim'")
    if linear:
        check_linear(operator, shape, y)
    return shape


def check_linear(operator: object, shape: tuple[int, ...], y: torch.Tensor) -> None:
    """Where linearity is not guaranteed by construction (a ``CallableOperator``, or any object with ``A`` and
    ``A_adjoint`` outside ``diffsolve.operators``), probe it once before the loop, with draws of a generator of its
    own (the global RNG untouched) and one host sync: A(a + 2b) = A(a) + 2A(b) and ⟨A a, r⟩ = ⟨a, Aᵀr⟩ to the
    dtype's rounding. A non-linear A or a wrong transpose would otherwise steer every step wrongly, silently."""
    from ..operators.base import LinearOperator
    from ..operators.callable import CallableOperator

    if isinstance(operator, LinearOperator) and not isinstance(operator, CallableOperator):
        return
    name = repr(operator) if isinstance(operator, LinearOperator) else type(operator).__name__
    gen = torch.Generator(device=y.device).manual_seed(0)
    a, b = (torch.randn(shape, generator=gen, dtype=y.dtype, device=y.device) for _ in range(2))
    r = torch.randn(y.shape, generator=gen, dtype=y.dtype, device=y.device)
    tol = 1e-4 if y.dtype == torch.float32 else 1e-9
    with torch.no_grad():  # gaps relative to the terms' norms (Cauchy–Schwarz), not to sums that may cancel
        aa, ab, at_r = operator.A(a), operator.A(b), operator.A_adjoint(r)
        gap, scale, left, right, inner_a, inner_b = torch.stack([
            (operator.A(a + 2 * b) - aa - 2 * ab).norm(), aa.norm() + 2 * ab.norm(), (aa * r).sum(),
            (a * at_r).sum(), aa.norm() * r.norm(), a.norm() * at_r.norm()]).tolist()  # the one host sync
    sum_gap = gap / (scale or 1.0)
    inner_scale = max(inner_a, inner_b) or 1.0
    if sum_gap > tol:
        raise ValueError(f"operator {name} is not linear: ‖A(a + 2b) − A(a) − 2A(b)‖ is {sum_gap:.2g} of "
                         "‖A(a)‖ + 2‖A(b)‖ for random a, b; this method needs a linear A. For a non-linear A use dps "
                         "with discrepancy=False (it differentiates A by autograd), or mpgd with loss=")
    if abs(left - right) > tol * inner_scale:
        raise ValueError(f"operator.A_adjoint of {name} is not the transpose of its A: ⟨A a, r⟩ = {left:.6g} but "
                         f"⟨a, Aᵀr⟩ = {right:.6g} for random a, r; fix A_adjoint (CallableOperator without "
                         "adjoint= takes the exact vector-Jacobian product)")


def measured_entries(operator: object, y: torch.Tensor) -> torch.Tensor:
    """(B,) float64 measured entries per sample (``operator.measured_entries``, else all of y's)."""
    count = getattr(operator, "measured_entries", None)
    if callable(count):
        return count(y)
    return torch.full((y.shape[0],), float(y[0].numel()), dtype=torch.float64)


#: the smallest positive σ a method takes ([-1, 1] units): 1/σ² and σ⁻¹-scaled steps stay finite in float32 above it
SIGMA_MIN = 1e-15


def operator_gain(operator: Any, x: torch.Tensor, iters: int = 30) -> float:
    """L ≥ ‖AᵀA‖ for images shaped like x[:1]: the operator's ``gram_norm_bound`` where it has one; for a diagonal
    A = diag(d) (a mask, also one per sample or channel) max d² with the estimate's 1 % margin; else power iteration
    from a fixed start (host floats, before the loop)."""
    bound_fn = getattr(operator, "gram_norm_bound", None)
    bound = bound_fn(tuple(x.shape[-2:])) if callable(bound_fn) else None
    if bound is not None:
        return float(bound)
    if getattr(operator, "structure", None) == "diagonal" and callable(getattr(operator, "diagonal", None)):
        top = float(operator.diagonal().abs().max()) ** 2  # what the iteration below converges to, from below
        return top * 1.01 if top > 0 else 1.0
    v = torch.randn(x[:1].shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype).to(x.device)
    lam = 0.0
    with torch.no_grad():
        for _ in range(iters):
            w = operator.A_adjoint(operator.A(v))
            lam = float(w.norm())  # ‖AᵀA v‖ with ‖v‖ = 1
            if lam == 0:
                break
            v = w / lam
    return lam * 1.01 if lam > 0 else 1.0  # a Rayleigh estimate from below: 1 % margin


def sample_gains(operator: Any, x: torch.Tensor) -> torch.Tensor:
    """(B,) L_b ≥ ‖A_bᵀA_b‖ for the B images shaped like x, in x's dtype and device: for a diagonal A whose weights
    differ per sample (a mask of shape (B, …)) each sample's own max d² with :func:`operator_gain`'s 1 % margin, so
    a sample's steps do not depend on its batch; :func:`operator_gain` for every sample otherwise."""
    diagonal = getattr(operator, "diagonal", None)
    if getattr(operator, "structure", None) == "diagonal" and callable(diagonal) and diagonal().shape[0] > 1:
        top = diagonal().to(device=x.device, dtype=x.dtype).abs().flatten(1).amax(1).pow(2)
        return torch.where(top > 0, top * 1.01, torch.ones_like(top)).expand(x.shape[0]).clone()
    return torch.full((x.shape[0],), operator_gain(operator, x), dtype=x.dtype, device=x.device)


def check_sigma(sigma: object, *, positive: bool = True, why: str = "for noiseless data use a small positive value"
                ) -> float:
    """The measurement noise std σ (a number or a ``GaussianNoise``) in [-1, 1] units: finite, > 0 (or ≥ 0 where
    ``positive`` is False: 0 means noiseless); ``why`` says why 0 is refused."""
    noise_sigma = getattr(sigma, "sigma", None)  # a diffsolve.operators.GaussianNoise
    sigma = plain_number(sigma)
    if noise_sigma is not None and not isinstance(sigma, (int, float)):
        sigma = noise_sigma
    if not isinstance(sigma, (int, float)) or isinstance(sigma, bool):
        raise TypeError(f"sigma must be a number (the measurement noise std in [-1, 1] units) or a GaussianNoise, "
                        f"got {type(sigma).__name__}")
    if positive and not 0 < sigma < float("inf"):
        raise ValueError(f"sigma must be a positive finite noise std in [-1, 1] units, got {sigma!r} ({why})")
    if not 0 <= sigma < float("inf"):
        raise ValueError(f"sigma must be a finite noise std >= 0 in [-1, 1] units (0: noiseless), got {sigma!r}")
    if sigma > Y_LIMIT:
        raise ValueError(f"sigma={sigma!r} is above {Y_LIMIT:g}, the largest |y| a measurement of images in [-1, 1] "
                         "may have: sigma is the noise std in those units; for a 0–255 noise level use sigma / 127.5")
    if 0 < sigma < SIGMA_MIN:
        zero = "" if positive else "sigma=0 (noiseless) or "
        raise ValueError(f"sigma={sigma!r} is below {SIGMA_MIN:g}, beneath float64's resolution of a pixel value: the "
                         f"1/σ² data weights overflow; use {zero}sigma >= {SIGMA_MIN:g}")
    return float(sigma)


#: |y| above this cannot be a measurement of images in [-1, 1] plus noise (a 0–255 image is)
Y_LIMIT = 50.0


class MeasurementRangeWarning(UserWarning):
    """y lies inside [0, 1], as a measurement of [0, 1] images would: the images' units are [−1, 1]."""


def _check_range(y: torch.Tensor) -> None:
    """Measurements of images in [-1, 1]: refuse |y| > Y_LIMIT (a 0–255 image), warn on y inside [0, 1] (one
    host sync, before the loop)."""
    low, high = (float(v) for v in torch.aminmax(y.detach()))
    if max(-low, high) > Y_LIMIT:
        raise ValueError(f"y has values in [{low:.3g}, {high:.3g}]: measurements are in the images' [-1, 1] units "
                         "plus noise; for a 0–255 image use y / 127.5 - 1 (and sigma / 127.5)")
    if 0 <= low and high <= 1 and y[0].numel() >= 64:
        import warnings

        warnings.warn(MeasurementRangeWarning(
            f"y lies in [{low:.3g}, {high:.3g}] ⊂ [0, 1]: measurements are expected in the images' [-1, 1] units; if y "
            "came from [0, 1] images, use 2 * y - 1 (and 2 * sigma)"), stacklevel=4)


def _channel_last_hint(y: torch.Tensor) -> str:
    if y.dim() == 4 and y.shape[-1] in (1, 3) and y.shape[1] not in (1, 3):
        return f"; y looks channel-last (B, H, W, C) = {tuple(y.shape)}: use y.permute(0, 3, 1, 2)"
    return ""


def _norm(r: torch.Tensor) -> torch.Tensor:
    return r.flatten(1).norm(dim=1)


def data_part(operator: object, r: torch.Tensor) -> torch.Tensor:
    """``operator.data_part(r)``: a measurement-space residual on the entries that carry data only (a mask's
    missing pixels set to 0, whatever y holds there); r itself for operators without the hook."""
    part = getattr(operator, "data_part", None)
    return part(r) if callable(part) else r


def residual_norm(operator: object, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B,) ‖A x − y‖ per sample over the measured entries (:func:`data_part`)."""
    return _norm(data_part(operator, operator.A(x) - y))


def final_residual(operator: object, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B,) ‖A x − y‖/√m per sample, m the measured entries (:func:`measured_entries`); over σ it is the data
    consistency (1: the residual matches the noise level). No graph."""
    with torch.no_grad():
        return residual_norm(operator, x, y) / measured_entries(operator, y).to(y).sqrt()


def discrepancy_floor(operator: object, y: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B,) κ m σ² in y's dtype and device: the squared residual ‖A x − y‖² below which a step fits y's noise
    (κ = :data:`DISCREPANCY_SHARE`, m the measured entries)."""
    return DISCREPANCY_SHARE * measured_entries(operator, y).to(device=y.device, dtype=y.dtype) * sigma**2


def discrepancy_weight(r0: torch.Tensor, d: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
    """(B,) the largest g ∈ [0, 1] per sample with ‖r0 − g d‖² ≥ ``floor`` (B,): how far a data step that moves
    the residual from r0 to r0 − d (both (B, ...), measured entries only) may go before it fits y below the floor
    (1 where the whole step stays above it, 0 where r0 is at or below it already). ‖r0 − g d‖² is a quadratic in
    g; between those cases g is its smaller root with the floor. No host sync.

    Written in h = 1 − g about the full step's residual e = r0 − d, ‖e + h d‖² = floor: a h² + 2p h − q = 0 with
    a = ‖d‖², p = ⟨e, d⟩, q = floor − ‖e‖² > 0, whose positive root q/(p + √(p² + aq)) (p ≥ 0) or (√(p² + aq) − p)/a
    (p < 0) subtracts nothing nearly equal: expanded about r0, a step that fits y far below the floor (d ≈ r0, a
    small σ) cancels b² against a(c − floor) in float32 and lands the result orders of magnitude under the floor."""
    c = r0.flatten(1).pow(2).sum(1)
    e = (r0 - d).flatten(1)
    dd = d.flatten(1)
    a = dd.pow(2).sum(1)
    p = (e * dd).sum(1)
    q = floor - e.pow(2).sum(1)
    root = (p * p + a * q.clamp_min(0)).sqrt()
    h = torch.where(p >= 0, q / torch.where(p + root > 0, p + root, torch.ones_like(p)),
                    (root - p) / torch.where(a > 0, a, torch.ones_like(a)))
    g = torch.where(q <= 0, torch.ones_like(c), (1 - h).clamp(0, 1))
    return torch.where(c <= floor, torch.zeros_like(c), g)


def solver_of(operator: Any, max_iters: int | None = None, precondition: bool = True, tol: float | None = None,
              check_every: int | None = None):
    """``solve(rhs, shift, scale, x0=None)``: ``operator.solve_unchecked`` (no host sync unless ``check_every``)
    where it exists, with CG's budget ``max_iters``, start ``x0`` where given, ``precondition`` (False: plain CG),
    relative tolerance ``tol`` (None: the dtype's default) and ``check_every`` (k: one host sync every k iterations
    ends CG once every sample is within ``tol``; only outside sampling loops); an exact solve ignores all five. Else
    ``operator.solve`` (a bare ``solve(rhs, shift, scale)``: no CG options), else, for an object with only ``A`` and
    ``A_adjoint``, batched CG on AᵀA (``max_iters``, default 100, from ``x0``, ``tol``, ``check_every``)."""
    unchecked = getattr(operator, "solve_unchecked", None)
    if unchecked is None and not callable(getattr(operator, "solve", None)):
        from ..kernels import batched_cg
        from ..operators.base import _default_tol

        def gram(v: torch.Tensor) -> torch.Tensor:
            return operator.A_adjoint(operator.A(v))

        def cg(rhs: torch.Tensor, shift: Any, scale: Any, x0: torch.Tensor | None = None) -> torch.Tensor:
            return batched_cg(gram, rhs, shift, scale, x0=x0, max_iters=max_iters or 100,
                              tol=_default_tol(rhs.dtype) if tol is None else tol, check_every=check_every).x

        return cg
    if unchecked is None:
        return lambda rhs, shift, scale, x0=None: operator.solve(rhs, shift=shift, scale=scale)
    budget: dict[str, Any] = {} if max_iters is None else {"max_iters": max_iters}
    if not precondition:
        budget["precondition"] = False
    if tol is not None:
        budget["tol"] = tol
    if check_every is not None:
        budget["check_every"] = check_every

    def solve(rhs: torch.Tensor, shift: Any, scale: Any, x0: torch.Tensor | None = None) -> torch.Tensor:
        return unchecked(rhs, shift=shift, scale=scale, **budget, **({} if x0 is None else {"x0": x0}))

    return solve


def range_svd(operator: Any, size: tuple[int, int], name: str) -> Any:
    """A's SVD on its range (``operators.svd``; ``svd.range()``) for images of ``size``, or None where A declares
    none (CG then). A data step in it, x − m = V diag(w s/(c + w s²)) Uᵀ(t − A m) for (c I + w AᵀA) x = c m +
    w Aᵀt, never divides by c: a solve of that right-hand side divides its rounding on A's null space by a c that
    is tiny against w s² at DiffPIR's first steps, where float32 would drift from float64."""
    if not callable(getattr(operator, "svd", None)):
        return None
    from ..operators.svd import operator_svd

    try:
        return operator_svd(operator, size, name).range()
    except ValueError:  # no SVD for this operator (a reflect motion blur): CG
        return None


def range_solve(svd: Any, operator: Any, r: torch.Tensor, c: float, w: float, like: torch.Tensor) -> torch.Tensor:
    """(c I + w AᵀA)⁻¹ Aᵀ r = V diag(s/(c + w s²)) Uᵀ r (B, C, H, W) in A's range SVD ``svd`` (:func:`range_svd`),
    r measurement-shaped (B, ...), c > 0 and w ≥ 0 host floats, ``like`` an image of the batch (dtype, device).
    Never divides by c: ``operator.solve(Aᵀr, c, w)`` divides the rounding of Aᵀr on A's null space by c, which a
    small σ² (c = σ² in ΠGDM and the pull) makes a float32 result miss y far beyond its noise."""
    s = svd.singulars(like)
    return svd.V(s / (c + w * s * s) * svd.Ut(data_part(operator, r)))


def spectral_step(svd: Any, operator: Any, m: torch.Tensor, t: torch.Tensor, c: float, w: float) -> torch.Tensor:
    """x − m for (c I + w AᵀA) x = c m + w Aᵀ t: V diag(w s/(c + w s²)) Uᵀ(t − A m) in A's range SVD ``svd``
    (:func:`range_svd`; :func:`range_solve`); m (B, C, H, W), t measurement-shaped; c > 0, w ≥ 0 host floats."""
    return w * range_solve(svd, operator, t - operator.A(m), c, w, m)


#: the most CG iterations of a pseudo-inverse without an exact solve
PINV_ITERS = 500


def exact_pinv(operator: Any, r: torch.Tensor, max_iters: int = PINV_ITERS) -> torch.Tensor:
    """A⁺ r without ``pseudo_inverse``'s finiteness check and convergence warning: the operator's ``_pinv`` (exact
    where the structure allows, no host sync; otherwise CG, which reads its convergence every ten iterations: use
    :func:`loop_pinv` inside a sampling loop); operators without one fall back to ``pseudo_inverse``."""
    inner = getattr(operator, "_pinv", None)
    if callable(inner):
        return inner(r, None, max_iters)
    return operator.pseudo_inverse(r)


def loop_pinv(operator: Any, probe: torch.Tensor):
    """``pinv(r)`` = A⁺ r for a sampling loop, with no host sync inside it: exact where the operator's ``_pinv`` is;
    where it runs CG, a fixed budget of twice the iterations A⁺ ``probe`` (y) takes, plus ten (at most
    :data:`PINV_ITERS`), sized before the loop with one sync; converged samples are masked, not stopped."""
    inner = getattr(operator, "_pinv", None)
    if not callable(inner):
        return operator.pseudo_inverse
    count = getattr(operator, "_pinv_iterations", None)
    iters = count(probe, PINV_ITERS) if callable(count) else None
    if iters is None:
        return lambda r: inner(r, None, PINV_ITERS)
    budget = min(PINV_ITERS, 2 * iters + 10)
    return lambda r: inner(r, None, budget, check_every=None)


def counted_singulars(svd: Any, s: torch.Tensor, cutoff: float) -> torch.Tensor:
    """``s`` (``svd.s`` or ``svd.singulars(like)``) with the directions whose per-axis singular value is below
    ``cutoff`` of their axis's largest set to 0 (``SVD.small_axis_singulars``; :data:`SINGULAR_CUTOFF`); ``s``
    itself where nothing is cut or ``cutoff`` = 0."""
    small = svd.small_axis_singulars(cutoff) if cutoff > 0 else None
    return s if small is None else torch.where(small.to(s.device), torch.zeros_like(s), s)


def pinv_of(operator: Any, size: tuple[int, int], cutoff: float = SINGULAR_CUTOFF, probe: torch.Tensor | None = None):
    """``pinv(r)``: r (B, ...) ↦ A⁺ r (B, C, H, W) for the noiseless (σ = 0) steps, no host sync. Where A is separable
    (its SVD a Kronecker product, ``operators.svd``) with per-axis singular values below ``cutoff`` of their axis's
    largest, the pseudo-inverse with those counted as zero (the reference codes' ``H_pinv``; a Gaussian blur's exact
    A⁺ at 128² and up scales y's float rounding past the image's own range); elsewhere :func:`exact_pinv`, or with
    ``probe`` (the loop's y) :func:`loop_pinv`. Built once, before the loop."""
    svd = None
    if cutoff > 0 and callable(getattr(operator, "svd", None)):
        try:
            svd = operator.svd(tuple(size))
        except ValueError:  # no cheap SVD (a dense kernel, reflect boundary): nothing to cut
            svd = None
    s = counted_singulars(svd, svd.s, cutoff) if svd is not None else None
    if s is None or torch.equal(s, svd.s):  # exact, or CG: inside a loop (``probe``: y) with a budget sized before it
        return (lambda r: exact_pinv(operator, r)) if probe is None else loop_pinv(operator, probe)
    inv = torch.where(s > 0, 1 / torch.where(s > 0, s, 1.0), 0.0)
    cache: dict = {}

    def pinv(r: torch.Tensor) -> torch.Tensor:
        key = (r.device, r.dtype)
        if key not in cache:
            cache[key] = inv.to(device=r.device, dtype=r.dtype)
        return svd.V(svd.Ut(r) * cache[key])

    return pinv


def noise_ceiling(operator: object, y: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B,) σ²(m + 3√(2m)) in y's dtype and device, m the measured entries: the largest ‖A x − y‖² that y's noise
    explains, three standard deviations above the mean of ‖n‖²/σ² ~ χ²_m. A result above it misfits y; at or below
    it (an exact posterior draw has E‖A x − y‖² = m σ²) it does not, whatever its spread."""
    m = measured_entries(operator, y).to(device=y.device, dtype=y.dtype)
    return (m + 3 * (2 * m).sqrt()) * sigma**2


def pull_rounds(variance: float | torch.Tensor) -> int:
    """How many rounds :func:`discrepancy_pull` may take from v = ``variance`` (its smallest value, read once, for a
    tensor): :data:`PULL_ROUNDS`, or more until v × PULL_GROWTH^k reaches 1, at most :data:`PULL_MAX_ROUNDS`."""
    least = float(variance.min()) if torch.is_tensor(variance) else float(variance)
    if not 0 < least < 1:  # v ≥ 1 (or not a positive number): the fixed count
        return min(PULL_ROUNDS, PULL_MAX_ROUNDS)
    to_one = 1 + math.ceil(-math.log(least) / math.log(PULL_GROWTH) - 1e-9)
    return min(PULL_MAX_ROUNDS, max(PULL_ROUNDS, to_one))


@torch.no_grad()
def discrepancy_pull(operator: object, x: torch.Tensor, y: torch.Tensor, sigma: float, variance: float
                     ) -> torch.Tensor:
    """x (B, C, H, W) moved, per sample, towards y just far enough that its residual is one the noise explains,
    ‖A x − y‖² ≤ σ²(m + 3√(2m)) (:func:`noise_ceiling`; Morozov's discrepancy principle with a χ² band, m the
    measured entries); x itself, bit for bit, where it already is.

    Every pixel-space inverse method given σ ends with it (not ``mpgd_ldm``; their ``discrepancy`` option; False:
    the paper's result), with v = 1 − ᾱ_t of the last model call (ΠGDM's r_t², the x̂0 error variance of a unit
    prior). Why: the last model call sees x_t at noise √(1−ᾱ_t) ≫ σ when N is small, so the result's measured part (a mask's observed pixels, a blur's well-
    measured frequencies) comes out of the denoiser, not y, and can misfit y well beyond the noise
    (benchmarks/results/discrepancy.md).

    A round moves towards the Gaussian posterior mean that treats x's error as N(0, v I), v = ``variance``:

        x* = x + v Aᵀ(σ² I + v AAᵀ)⁻¹ r = x + v (σ² I + v AᵀA)⁻¹ Aᵀ r,   r = y − A x

    (in A's SVD where it declares one, :func:`range_solve`; else ``operator.solve(Aᵀr, shift=σ², scale=v)``, exact
    where A's structure allows, or plain CG to :data:`PULL_CG_TOL`), never past it: the result is
    x + g (x* − x) with g ∈ [0, 1] the smallest that brings the residual to the ceiling
    (:func:`discrepancy_weight`; it falls monotonically in g, as A(x* − x) = W r with W = v AAᵀ(σ² I + v AAᵀ)⁻¹,
    0 ⪯ W ≺ I). The direction damps what y measures poorly (small singular values), so noise is not amplified. Where
    even x* stays above the ceiling (x trusted more than y: a small v against A's weak directions, e.g. an unnormalised
    kernel), the next round starts from x* with v × :data:`PULL_GROWTH`, for up to :data:`PULL_ROUNDS` rounds or until
    v ≥ 1, whichever is later, at most :data:`PULL_MAX_ROUNDS` (:func:`pull_rounds`): non-stationary iterated Tikhonov
    stopped by the discrepancy principle (Hanke and Groetsch 1998, with geometric parameters σ²/v). A sample that fits
    stops moving (g = 0), as does one whose step would not lower its residual or is not finite (σ²/v below the dtype's
    resolution). Each round is one solve and two products with A, run only where some sample of the batch is above the
    ceiling: one host read per round after the sampling loop (none inside it) decides that, so a batch that fits y
    returns x without a solve (and one every ten CG iterations ends a CG solve).
    """
    ceiling = noise_ceiling(operator, y, sigma)
    solve = solver_of(operator, PULL_CG_ITERS, precondition=False, tol=PULL_CG_TOL, check_every=10)
    svd: Any = False  # A's range SVD, looked up where a round first runs (None: A has none, then solve)
    moving = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)  # at x* after every round so far
    for round_ in range(pull_rounds(variance)):
        r0 = data_part(operator, y - operator.A(x))
        moving = moving & (r0.flatten(1).pow(2).sum(1) > ceiling)
        if not bool(moving.any()):
            break
        v = variance * PULL_GROWTH**round_
        svd = range_svd(operator, tuple(x.shape[-2:]), "the discrepancy pull") if svd is False else svd
        if svd is not None:  # in A's SVD: never divides by σ² (range_solve)
            step = v * range_solve(svd, operator, r0, sigma**2, v, x)
        else:
            step = v * solve(operator.A_adjoint(r0), shift=sigma**2, scale=v)
        d = data_part(operator, operator.A(step))
        lowers = (r0.flatten(1) * d.flatten(1)).sum(1) * 2 > d.flatten(1).pow(2).sum(1)
        moving = moving & lowers & step.flatten(1).isfinite().all(1)
        g = torch.where(moving, discrepancy_weight(r0, d, ceiling), 0)
        moving = g >= 1
        g = g.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        x = torch.where(g > 0, x + g * step, x)
    return x


def measurement_grad(operator: object, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(g, ‖r‖) with r = A x − y and g = Aᵀ r/‖r‖ = ∇_x ‖A x − y‖ per sample, for linear A.

    Where r = 0 exactly, Aᵀr = 0 and g = 0 (a subgradient); the norm is guarded there only.
    """
    r = data_part(operator, operator.A(x) - y)
    norm = _norm(r)
    safe = torch.where(norm > 0, norm, torch.ones_like(norm))
    g = operator.A_adjoint(r) / safe.view(-1, *([1] * (x.dim() - 1)))
    return g, norm


class Diagnostics:
    """Per-step records: ``add(name, value)`` with value (B,); ``stacked()`` → {name: (N, B)}."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._data: dict[str, list[torch.Tensor]] = {}

    def add(self, name: str, value: torch.Tensor) -> None:
        if self.enabled:
            self._data.setdefault(name, []).append(value.detach())

    def stacked(self, **extra: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {name: torch.stack(values) for name, values in self._data.items()}
        out.update(extra)
        return out

    def finish(self, operator: object, x: torch.Tensor, y: torch.Tensor, timesteps: torch.Tensor,
               sigma: float | None = None, final: torch.Tensor | None = None,
               **extra: torch.Tensor) -> dict[str, torch.Tensor]:
        """:meth:`stacked` plus the result's data consistency: "final_residual" (B,) ‖A x̂ − y‖/√m (m the
        measured entries per sample, ``operator.measured_entries``: a mask's observed pixels; ``final`` where the
        caller has it), where the method knows σ, "data_consistency" (B,) that over σ (1: the residual
        matches the noise level), and what the caller adds (:func:`finish_run`: "nfe", the forward model calls)."""
        final = final_residual(operator, x, y) if final is None else final
        out = self.stacked(timesteps=timesteps.clone(), final_residual=final, **extra)
        if sigma is not None:
            out["data_consistency"] = final / sigma
        return out


class DataConsistencyWarning(UserWarning):
    """A method's result does not fit its measurement: ‖A x̂ − y‖/(σ√m) > :data:`UNFIT_CONSISTENCY` for some
    sample (too few steps for the method, or σ smaller than y's noise)."""


def warn_if_unfit(name: str, operator: object, x: torch.Tensor, y: torch.Tensor, sigma: float | None,
                  steps: int, final: torch.Tensor | None = None, stacklevel: int = 5) -> None:
    """After the loop (one host sync): warn, naming the worst sample, its consistency and the fixes, where the
    result x (B, C, H, W) is further from y than :data:`UNFIT_CONSISTENCY` noise levels (``final``: its
    :func:`final_residual`, where the caller has it). No σ (or σ = 0): no check. A NaN result is the loop's own
    error (``_loop.finish``), not this one's. Called by :func:`finish_run`, so the warning points at the caller
    of the solver."""
    if sigma is None or sigma <= 0:
        return
    dc = (final_residual(operator, x, y) if final is None else final) / sigma
    worst = dc.max()
    if not bool(worst > UNFIT_CONSISTENCY):
        return
    warnings.warn(DataConsistencyWarning(
        f"{name}: the result does not fit y: data consistency ‖A x̂ − y‖/(σ√m) = {float(worst):.2f} for sample "
        f"{int(dc.argmax())} (1 = the noise level sigma={sigma:g}; above {UNFIT_CONSISTENCY:g} y is largely ignored) "
        f"with steps={steps}: use more steps, or check sigma (y's noise std on the model's [-1, 1] scale)"),
        stacklevel=stacklevel)  # 5: warn_if_unfit < finish_run < the solver < takes_sampling's wrapper < its caller


def finish_run(name: str, loop: Any, operator: object, x: torch.Tensor, y: torch.Tensor, sigma: float | None,
               info: Diagnostics, *, timesteps: torch.Tensor | None = None, **extra: torch.Tensor) -> Any:
    """The end every guided solver shares: ``loop.finish(x)`` (the NaN check), :func:`warn_if_unfit` (σ > 0;
    one sync) and, where ``info`` is enabled (``return_info``), ``(x, info.finish(...))`` with ``extra`` — one
    A x̂ product serves both. σ None or 0: no fit check and no "data_consistency". ``timesteps``: the steps the
    method ran where they are not ``loop.schedule``'s (DDNM's time travel)."""
    x = loop.finish(x)
    sigma = sigma if sigma is not None and sigma > 0 else None
    final = final_residual(operator, x, y) if sigma is not None or info.enabled else None
    warn_if_unfit(name, operator, x, y, sigma, len(loop.schedule), final=final)
    if not info.enabled:
        return x
    steps_run = loop.schedule.timesteps if timesteps is None else timesteps
    return x, info.finish(operator, x, y, steps_run, sigma=sigma, final=final, nfe=loop.model_calls, **extra)

