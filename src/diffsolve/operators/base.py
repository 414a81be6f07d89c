"""The linear measurement operator interface: A, Aᵀ, AᵀA and solves with shift·I + scale·AᵀA.

Images are NCHW tensors x (B, C, H, W), float32 or float64, on any device; measurements y = A x
have the shape the operator defines, (B, *output_shape): an image (B, C, h, w), or a vector (B, m) for a
``MatrixOperator``. ``solve`` inverts K = shift·I + scale·AᵀA per
sample (shift, scale: numbers or (B,) tensors), exactly where the operator's structure allows
(``exact_solve``), else by batched conjugate gradients (``diffsolve.kernels.batched_cg``).
The classical baselines ``pseudo_inverse`` (A⁺y) and ``tikhonov`` (argmin ‖Ax − y‖² + λ‖x‖²)
are built on the same pieces.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any, Callable, NamedTuple

import torch

from ..kernels import batched_cg
from ..kernels._checks import plain_number
from ._validate import (SolveNotConvergedWarning, check_backend, check_finite, check_image, check_measurement,
                        per_sample)

__all__ = ["LinearOperator", "Operator", "SolveInfo"]


class SolveInfo(NamedTuple):
    """How a solve went, per sample: ``method`` is "exact" or "cg"; tensors have shape (B,)."""

    method: str
    iterations: torch.Tensor  # int64; 0 for exact solves
    residual: torch.Tensor  # ‖rhs − K x‖ / ‖rhs‖
    converged: torch.Tensor  # bool: residual <= tol


def _default_tol(dtype: torch.dtype) -> float:
    return 1e-10 if dtype == torch.float64 else 1e-5


def _check_solve_values(names: tuple[str, str], shift: object, scale: object, shift_t: torch.Tensor,
                        scale_t: torch.Tensor, gram_singular: bool, op_name: str) -> None:
    """Value checks of tensor-valued shift / scale (numbers were checked on the host): finite and >= 0,
    not both 0 for a sample, shift > 0 where AᵀA is singular. All masks are read back in ONE host sync."""
    if not isinstance(shift, torch.Tensor) and not isinstance(scale, torch.Tensor):
        return
    sh, sc = shift_t.detach(), scale_t.detach()
    checks = [
        (sh, ~torch.isfinite(sh) | (sh < 0), f"{names[0]} must be finite and >= 0 (K = shift·I + scale·AᵀA must be "
         "positive definite; a negative or NaN value would solve an indefinite system silently)"),
        (sc, ~torch.isfinite(sc) | (sc < 0), f"{names[1]} must be finite and >= 0 (K = shift·I + scale·AᵀA must be "
         "positive definite; a negative or NaN value would solve an indefinite system silently)"),
        (sh, (sh == 0) & (sc == 0), f"{names[0]} and {names[1]} are both 0 for some samples (K = 0: nothing to "
         f"invert); give {names[0]} > 0 or {names[1]} > 0"),
    ]
    if gram_singular:
        checks.append((sh, sh == 0, f"{names[0]} must be > 0 for {op_name}: AᵀA is singular, so {names[0]}=0 has no "
                       "unique solution (use pseudo_inverse(y) for the minimum-norm least-squares one)"))
    flags = torch.stack([bad.any() for _, bad, _ in checks]).tolist()  # the one host sync
    for (value, bad, rule), flag in zip(checks, flags):
        if flag:
            idx = bad.nonzero().flatten()[:8].tolist()
            shown = ", ".join(f"sample {i}: {float(value[i]):g}" for i in idx)
            raise ValueError(f"{rule}; got {shown}")


def _warn_unconverged(op_name: str, info: "SolveInfo", tol: float, max_iters: int, stacklevel: int) -> None:
    """SolveNotConvergedWarning listing the samples above ``tol`` with their residuals (one host sync)."""
    if bool(info.converged.all()):
        return
    failing = (~info.converged).nonzero().flatten()
    idx = failing[:8].tolist()
    res = info.residual[failing[:8]].tolist()
    listed = ", ".join(f"sample {i}: {r:.3g}" for i, r in zip(idx, res)) + (" ..." if failing.numel() > 8 else "")
    dtype = info.residual.dtype
    if info.method == "cg":
        what, fix = (f"CG stopped at max_iters={max_iters}", "raise max_iters")
    else:
        what, fix = ("the exact solve (rounding: K = shift·I + scale·AᵀA is ill-conditioned)", "raise shift")
    if dtype == torch.float32:
        fix += ", solve in float64"
    warnings.warn(SolveNotConvergedWarning(
        f"{op_name}.solve: {what} did not reach tol={tol:g} for {failing.numel()} of {info.converged.numel()} "
        f"samples (relative residual of the failing samples: {listed}); {fix}, or pass return_info=True to "
        "handle it"), stacklevel=stacklevel + 1)


class _LinearSolve(torch.autograd.Function):
    """x = K⁻¹ rhs, K = shift·I + scale·AᵀA (symmetric), with the exact backward by the same solve:
    grad_rhs = K⁻¹ g, grad_shift = −⟨grad_rhs, x⟩, grad_scale = −⟨A grad_rhs, A x⟩ per sample.
    ``run(rhs, shift, scale, x0) -> (x, SolveInfo | None)`` is the operator's solve (any backend);
    ``holder`` receives the forward's info."""

    @staticmethod
    def forward(ctx, rhs, shift, scale, op, run, x0, holder):  # type: ignore[override]
        x, info = run(rhs, shift, scale, x0)
        holder.append(info)
        ctx.op, ctx.run = op, run
        ctx.save_for_backward(x, shift, scale)
        return x

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        x, shift, scale = ctx.saved_tensors
        u = _differentiable_solve(ctx.op, ctx.run, g.contiguous(), shift, scale, None)[0]
        need_shift, need_scale = ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        grad_shift = -(u * x).flatten(1).sum(1) if need_shift else None
        grad_scale = -(u * ctx.op._gram(x)).flatten(1).sum(1) if need_scale else None  # ⟨A u, A x⟩ = ⟨u, AᵀA x⟩
        return u, grad_shift, grad_scale, None, None, None, None


def _differentiable_solve(op: "LinearOperator", run: Callable, rhs: torch.Tensor, shift: torch.Tensor,
                          scale: torch.Tensor, x0: torch.Tensor | None):
    """``run`` directly when no gradient is recorded, else through :class:`_LinearSolve`: (x, info)."""
    if not torch.is_grad_enabled() or not (rhs.requires_grad or shift.requires_grad or scale.requires_grad):
        return run(rhs, shift, scale, x0)
    holder: list = []
    x = _LinearSolve.apply(rhs, shift, scale, op, run, None if x0 is None else x0.detach(), holder)
    return x, holder[0]


#: the keyword options of :meth:`LinearOperator.solve`, which ``solve_unchecked`` and ``tikhonov`` pass on
SOLVE_OPTIONS = frozenset({"method", "tol", "max_iters", "x0", "check_every", "return_info", "precondition"})


class LinearOperator:
    """Base class. Subclasses implement ``_forward``/``_adjoint`` (inputs already validated), and
    optionally ``_gram``, ``_solve_exact`` (setting ``exact_solve``), ``_pinv`` and the checks
    ``_check_input``/``_check_output``. ``backend`` is passed to every kernel call."""

    exact_solve: bool = False
    #: Declared structure of A: ``"diagonal"`` (A = diag(d), elementwise; :meth:`diagonal` returns d) or None
    #: (nothing declared, the default). Solvers (C-DPS's fused step) dispatch on this, never on attribute names.
    structure: str | None = None
    #: AᵀA is known to be singular: solve() refuses shift = 0 (use pseudo_inverse).
    gram_singular: bool = False
    #: Measurements are images (B, C, h, w); False where they may have any shape (B, ...) (a user's function).
    image_measurements: bool = True

    def __init__(self, *, backend: str = "auto") -> None:
        self.backend = check_backend(backend)
        self._cache: dict[tuple, tuple[torch.Tensor, ...]] = {}

    # ------------------------------------------------------------------ to implement
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _gram(self, x: torch.Tensor) -> torch.Tensor:
        return self._adjoint(self._forward(x))

    def _solve_exact(self, rhs: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _pinv(self, y: torch.Tensor, tol: float | None, max_iters: int, report: bool = False,
              check_every: int | None = 10) -> torch.Tensor:
        """A⁺y (B, C, H, W) for y (B, ...); default: CG on the normal equations AᵀA x = Aᵀy from x = 0 (the
        minimum-norm least-squares solution) to relative residual ``tol`` (None: the dtype's default), reading its
        convergence every ``check_every`` iterations (None: all ``max_iters``, no host sync: inside sampling
        loops); ``report``: warn (``SolveNotConvergedWarning``) where a sample stopped short. Overrides that solve
        exactly ignore ``tol``, ``max_iters``, ``report`` and ``check_every``."""
        rhs = self._adjoint(y)
        zero = torch.zeros(rhs.shape[0], dtype=rhs.dtype, device=rhs.device)
        tol = _default_tol(rhs.dtype) if tol is None else tol
        run = self._solve_runner(False, tol, max_iters, check_every, info=report)  # differentiable (exact backward)
        x, info = _differentiable_solve(self, run, rhs, zero, zero + 1, None)
        if report and not bool(info.converged.all()):  # one host read, after the solve
            worst = int(info.residual.argmax())
            warnings.warn(SolveNotConvergedWarning(
                f"{type(self).__name__}.pseudo_inverse: CG on AᵀA stopped at relative residual "
                f"{float(info.residual[worst]):.3g} (tol {tol:g}) after {int(info.iterations[worst])} iterations for "
                f"sample {worst}: A is ill-conditioned here and A⁺y is not resolved; pass a larger max_iters, or use "
                "tikhonov(y, lam) for a regularised inverse"), stacklevel=3)
        return x

    def _pinv_iterations(self, y: torch.Tensor, max_iters: int) -> int | None:
        """The CG iterations :meth:`_pinv` takes on y, at most ``max_iters`` (one host sync), to size a fixed budget
        before a sampling loop; None where ``_pinv`` is exact (a subclass that overrides it with another CG path
        overrides this too)."""
        if type(self)._pinv is not LinearOperator._pinv:
            return None
        return self._cg_pinv_iterations(y, max_iters)

    def _cg_pinv_iterations(self, y: torch.Tensor, max_iters: int) -> int:
        rhs = self._adjoint(y)
        zero = torch.zeros(rhs.shape[0], dtype=rhs.dtype, device=rhs.device)
        run = self._solve_runner(False, _default_tol(rhs.dtype), max_iters, 10, info=True)
        with torch.no_grad():
            return int(run(rhs, zero, zero + 1, None)[1].iterations.max())

    def singular_gram(self, size: tuple[int, int]) -> bool:
        """Whether AᵀA is singular on images of spatial ``size`` (H, W), so that shift = 0 has no unique solution
        and :meth:`solve` refuses it: the class's ``gram_singular`` unless the operator can tell per size."""
        return self.gram_singular

    def diagonal(self) -> torch.Tensor:
        """d of a ``structure = "diagonal"`` operator as (1|B, 1|C, H, W) (A x = d ⊙ x)."""
        raise NotImplementedError(f"{type(self).__name__} declares structure={self.structure!r}, not 'diagonal'")

    def cg_preconditioner(self, shift: torch.Tensor, scale: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """v ↦ M⁻¹ v for an SPD M ≈ shift·I + scale·AᵀA (shift, scale (B,) tensors), used by the CG path
        of :meth:`solve`; None (this default): plain CG."""
        return None

    def cg_iterations(self, size: tuple[int, int], shift: float, scale: float, tol: float) -> int | None:
        """CG iterations (with :meth:`cg_preconditioner`) that reach relative residual ``tol`` for
        shift·I + scale·AᵀA on H×W = ``size`` images, from host numbers only (no device sync), or None
        where the operator knows none (this default): the caller then sizes the budget itself
        (e.g. from :meth:`gram_norm_bound`)."""
        return None

    def data_part(self, r: torch.Tensor) -> torch.Tensor:
        """r (B, ...) in measurement space with the entries that carry no data set to 0, so a residual's norm
        counts only measured entries, whatever y holds there (a mask's missing pixels: noise, paint, the
        image). Default: every entry carries data, r unchanged."""
        return r

    def measured_entries(self, y: torch.Tensor) -> torch.Tensor:
        """(B,) how many entries of each sample's measurement y carry data: m in the data consistency
        ‖A x − y‖/(σ√m). Default: all of y's entries; operators that zero some entries out (masks) count
        only the measured ones."""
        return torch.full((y.shape[0],), float(y[0].numel()), dtype=torch.float64)

    def gram_norm_bound(self, size: tuple[int, int]) -> float | None:
        """An upper bound on ‖AᵀA‖₂ = λmax(AᵀA) for images of spatial size ``size`` = (H, W), or
        None where the operator knows none (this default). With it, κ(shift·I + scale·AᵀA) ≤
        1 + scale·bound/shift, which sizes CG budgets on the host (C-DPS)."""
        return None

    def _check_input(self, x: torch.Tensor) -> None:
        """Raise if the image x (B, C, H, W) does not fit the operator."""

    def _check_output(self, y: torch.Tensor) -> None:
        """Raise if the measurement y does not fit the operator."""

    # ------------------------------------------------------------------ helpers
    def _cached(self, key: tuple, like: torch.Tensor, build: Callable[[], tuple[torch.Tensor, ...]]):
        """Tensors from ``build()`` (float64 or complex128, CPU), cached per device and dtype of ``like``. Built
        outside inference mode even when first asked for inside it: an inference tensor in the cache would break
        every later backward through the operator (DPS after a measurement simulated under inference_mode)."""
        full = key + (like.device, like.dtype)
        if full not in self._cache:
            with torch.inference_mode(False):
                base = key + ("cpu-float64",)
                if base not in self._cache:
                    self._cache[base] = tuple(build())
                real, cplx = like.dtype, (torch.complex64 if like.dtype == torch.float32 else torch.complex128)
                self._cache[full] = tuple(
                    t.to(device=like.device, dtype=cplx if t.is_complex() else real) for t in self._cache[base]
                )
        return self._cache[full]

    # ------------------------------------------------------------------ public API
    def with_backend(self, backend: str) -> "LinearOperator":
        """This operator with every kernel call (A, Aᵀ, AᵀA, exact solves, CG, pseudo_inverse,
        gram_norm_bound) on ``backend``: ``self`` when ``backend`` is "auto" or already
        ``self.backend``, else a shallow copy that shares the cached tensors (masks, matrices,
        spectra) with ``self``."""
        backend = check_backend(backend)
        if backend == "auto" or backend == self.backend:
            return self
        op = copy.copy(self)
        op.backend = backend
        return op

    def A(self, x: torch.Tensor) -> torch.Tensor:
        """y = A x."""
        check_image("x", x)
        self._check_input(x)
        return self._forward(x)

    __call__ = A

    def _check_y(self, y: object) -> None:
        (check_image if self.image_measurements else check_measurement)("y", y)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """x = Aᵀ y, the exact transpose of :meth:`A`."""
        self._check_y(y)
        self._check_output(y)
        return self._adjoint(y)

    def gram(self, x: torch.Tensor) -> torch.Tensor:
        """AᵀA x."""
        check_image("x", x)
        self._check_input(x)
        return self._gram(x)

    def solve(
        self,
        rhs: torch.Tensor,
        shift: float | torch.Tensor = 0.0,
        scale: float | torch.Tensor = 1.0,
        *,
        method: str = "auto",
        tol: float | None = None,
        max_iters: int = 200,
        x0: torch.Tensor | None = None,
        check_every: int | None = None,
        return_info: bool = False,
        precondition: bool = True,
    ) -> torch.Tensor | tuple[torch.Tensor, SolveInfo]:
        """x = (shift·I + scale·AᵀA)⁻¹ rhs per sample; rhs (B, C, H, W), shift/scale numbers or (B,).

        ``method``: "auto" (exact where available, else CG), "exact" or "cg". ``tol`` (relative
        residual, default 1e-10 in float64 and 1e-5 in float32), ``max_iters``, ``x0`` and
        ``check_every`` apply to CG, which runs a fixed budget without host syncs unless
        ``check_every`` = k asks for one sync every k iterations to stop early. With
        ``return_info`` also returns a :class:`SolveInfo` (exact solves report their residual
        with one extra AᵀA product); without it, a solve that ended above ``tol`` warns
        (:class:`SolveNotConvergedWarning` listing the failing samples' residuals; one host sync;
        exact solves check their residual with one extra AᵀA product: in float32 rounding leaves
        ~eps·κ(K) when shift is small against scale·‖AᵀA‖). ``precondition``: CG with the operator's
        :meth:`cg_preconditioner` where it has one (the default); False: plain CG, for a *truncated* solve whose
        shift is tiny against scale·‖AᵀA‖ — there a circulant M⁻¹ amplifies the mismatch on the boundary band by
        up to 1/shift, and an iterate stopped early keeps it (benchmarks/results/plain-cg.md).

        Values: shift and scale must be finite and >= 0 (tensors too: one host sync reads them),
        not both 0 for a sample, and shift > 0 where AᵀA is singular; anything else raises
        ValueError. Solvers passing values they built use :meth:`solve_unchecked` (no sync).

        Differentiable in rhs, shift and scale on every backend (exact and CG paths): the backward
        is the same solve, grad_rhs = K⁻¹g, grad_shift = −⟨grad_rhs, x⟩, grad_scale =
        −⟨A grad_rhs, A x⟩ per sample (gradients do not reach parameters captured inside a
        :class:`~diffsolve.operators.CallableOperator`'s function, nor ``x0``).
        """
        return self._solve(rhs, shift, scale, method=method, tol=tol, max_iters=max_iters, x0=x0,
                           check_every=check_every, return_info=return_info, precondition=precondition,
                           checked=True)

    def solve_unchecked(self, rhs: torch.Tensor, shift: float | torch.Tensor = 0.0, scale: float | torch.Tensor = 1.0,
                        **options: Any) -> torch.Tensor | tuple[torch.Tensor, SolveInfo]:
        """:meth:`solve` (the same ``options``) without its value checks, for solvers that pass shift / scale
        they built: tensor values are not inspected (negative or NaN ones are the caller's responsibility),
        an unconverged solve does not warn and an exact solve's residual is not verified unless
        ``return_info`` asks for it. Nothing here syncs the host with the device (except CG's
        ``check_every``); shapes, dtypes, devices and Python numbers are still checked.
        Differentiable like :meth:`solve`."""
        unknown = set(options) - SOLVE_OPTIONS
        if unknown:
            raise TypeError(f"solve_unchecked got unexpected options {sorted(unknown)}; it takes solve()'s")
        return self._solve(rhs, shift, scale, checked=False, **options)

    def _solve(self, rhs, shift, scale, *, method: str = "auto", tol: float | None = None, max_iters: int = 200,
               x0: torch.Tensor | None = None, check_every: int | None = None, return_info: bool = False,
               precondition: bool = True, checked: bool = True, names: tuple[str, str] = ("shift", "scale"),
               stacklevel: int = 3):
        shift, scale, tol, max_iters = (plain_number(v) for v in (shift, scale, tol, max_iters))
        check_image("rhs", rhs)
        self._check_input(rhs)
        if method not in ("auto", "exact", "cg"):
            raise ValueError(f"method must be 'auto', 'exact' or 'cg', got {method!r}")
        if method == "exact" and not self.exact_solve:
            raise ValueError(f"method='exact': {type(self).__name__} has no exact solve here; use 'cg' or 'auto'")
        if (isinstance(shift, (int, float)) and not isinstance(shift, bool) and shift == 0
                and self.singular_gram(tuple(rhs.shape[-2:]))):
            raise ValueError(
                f"{names[0]} must be > 0 for {type(self).__name__}: AᵀA is singular, so {names[0]}=0 has no "
                "unique solution (use pseudo_inverse(y) for the minimum-norm least-squares one)"
            )
        if (isinstance(shift, (int, float)) and isinstance(scale, (int, float)) and not isinstance(shift, bool)
                and shift == 0 and scale == 0):
            raise ValueError(f"{names[0]} = {names[1]} = 0 makes K = shift·I + scale·AᵀA zero: there is nothing to "
                             f"invert; give {names[0]} > 0 or {names[1]} > 0")
        if tol is not None and (isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < math.inf):
            raise ValueError(f"tol must be a positive finite number (a relative residual), got {tol!r}")
        tol = _default_tol(rhs.dtype) if tol is None else tol
        shift_t, scale_t = per_sample(names[0], shift, rhs), per_sample(names[1], scale, rhs)
        if checked:  # one host sync, only for tensor values
            singular = isinstance(shift, torch.Tensor) and self.singular_gram(tuple(rhs.shape[-2:]))
            _check_solve_values(names, shift, scale, shift_t, scale_t, singular, type(self).__name__)
        exact = self.exact_solve and method != "cg"
        # checked exact solves verify their residual (one AᵀA product, one sync): rounding can leave it above tol
        if not isinstance(precondition, bool):
            raise TypeError(f"precondition must be True or False, got {precondition!r}")
        run = self._solve_runner(exact, tol, max_iters, check_every, info=return_info or checked,
                                 precondition=precondition)
        x, info = _differentiable_solve(self, run, rhs, shift_t, scale_t, x0)
        if return_info:
            return x, info
        if checked:  # one sync: say so rather than return an unconverged x silently
            _warn_unconverged(type(self).__name__, info, tol, max_iters, stacklevel)
        return x

    def _solve_runner(self, exact: bool, tol: float, max_iters: int, check_every: int | None, info: bool,
                      precondition: bool = True):
        """``run(rhs, shift, scale, x0) -> (x, SolveInfo | None)``: the solve itself, no autograd (the
        backward of :class:`_LinearSolve` calls it again with the incoming gradient as rhs)."""

        def run(rhs: torch.Tensor, shift_t: torch.Tensor, scale_t: torch.Tensor, x0: torch.Tensor | None):
            if exact:
                x = self._solve_exact(rhs, shift_t, scale_t)
                if not info:
                    return x, None
                view = (-1, 1, 1, 1)
                res = (rhs - shift_t.view(view) * x - scale_t.view(view) * self._gram(x)).flatten(1).norm(dim=1)
                norm = rhs.flatten(1).norm(dim=1)
                residual = torch.where(norm > 0, res / torch.where(norm > 0, norm, 1), res)
                zeros = torch.zeros(rhs.shape[0], dtype=torch.int64, device=rhs.device)
                return x, SolveInfo("exact", zeros, residual, residual <= tol)
            out = batched_cg(self._gram, rhs, shift_t, scale_t, x0=x0, max_iters=max_iters, tol=tol,
                             check_every=check_every, backend=self.backend,
                             preconditioner=self.cg_preconditioner(shift_t, scale_t) if precondition else None)
            return out.x, SolveInfo("cg", out.iterations, out.residual, out.converged)

        return run

    def pseudo_inverse(self, y: torch.Tensor, *, tol: float | None = None, max_iters: int = 500) -> torch.Tensor:
        """A⁺ y, the minimum-norm least-squares solution: exact where the structure allows (singular values below
        the dtype's rounding level count as zero), else CG on AᵀA to relative residual ``tol`` (None: the default of
        the dtype it runs in; a blur's runs in float64) within ``max_iters`` iterations, warning
        (``SolveNotConvergedWarning``) where it stops short. Checks y is finite (one sync)."""
        self._check_y(y)
        self._check_output(y)
        check_finite("y", y)
        return self._pinv(y, tol, max_iters, report=True)

    def tikhonov(self, y: torch.Tensor, lam: float | torch.Tensor, **solve_options) -> torch.Tensor:
        """argmin_x ‖A x − y‖² + lam·‖x‖² = (lam·I + AᵀA)⁻¹ Aᵀ y (Wiener filter for blurs);
        lam > 0, a number or a (B,) tensor. Checks y is finite (one sync). ``solve_options``: those of
        :meth:`solve`. Differentiable in y and lam on every backend."""
        self._check_y(y)
        self._check_output(y)
        check_finite("y", y)
        lam = plain_number(lam)
        if isinstance(lam, (int, float)) and not isinstance(lam, bool) and not 0 < lam < float("inf"):
            raise ValueError(f"lam must be finite and > 0, got {lam!r} (lam = 0 is the pseudo-inverse: use "
                             "pseudo_inverse(y))")
        lam_t = per_sample("lam", lam, y)  # checks type, shape, dtype and device under its own name
        if isinstance(lam, torch.Tensor):  # one sync: finite and > 0
            bad = ~torch.isfinite(lam_t.detach()) | (lam_t.detach() <= 0)
            if bool(bad.any()):
                idx = bad.nonzero().flatten()[:8].tolist()
                raise ValueError("lam must be finite and > 0 (lam = 0 is the pseudo-inverse: use pseudo_inverse(y)); "
                                 "got " + ", ".join(f"sample {i}: {float(lam_t[i]):g}" for i in idx))
        unknown = set(solve_options) - SOLVE_OPTIONS
        if unknown:
            raise TypeError(f"tikhonov got unexpected solve options {sorted(unknown)}")
        return self._solve(self._adjoint(y), lam, 1.0, names=("lam", "scale"), **solve_options)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


Operator = LinearOperator
