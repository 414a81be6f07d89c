"""The linear measurement operator interface: A, Aᵀ, AᵀA and solves with shift·I + scale·AᵀA.

Images are NCHW tensors x (B, C, H, W), float32 or float64, on any device; measurements y = A x
have the shape the operator defines (B, C, h, w). ``solve`` inverts K = shift·I + scale·AᵀA per
sample (shift, scale: numbers or (B,) tensors), exactly where the operator's structure allows
(``exact_solve``), else by batched conjugate gradients (``diffsolve.kernels.batched_cg``).
The classical baselines ``pseudo_inverse`` (A⁺y) and ``tikhonov`` (argmin ‖Ax − y‖² + λ‖x‖²)
are built on the same pieces.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch

from ..kernels import batched_cg
from ._validate import SolveNotConvergedWarning, check_backend, check_finite, check_image, per_sample

__all__ = ["LinearOperator", "Operator", "SolveInfo"]


class SolveInfo(NamedTuple):
    """How a solve went, per sample: ``method`` is "exact" or "cg"; tensors have shape (B,)."""

    method: str
    iterations: torch.Tensor  # int64; 0 for exact solves
    residual: torch.Tensor  # ‖rhs − K x‖ / ‖rhs‖
    converged: torch.Tensor  # bool: residual <= tol


def _default_tol(dtype: torch.dtype) -> float:
    return 1e-10 if dtype == torch.float64 else 1e-5


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

    def _pinv(self, y: torch.Tensor, tol: float, max_iters: int) -> torch.Tensor:
        """A⁺y; default: CG on the normal equations AᵀA x = Aᵀy from x = 0 (the minimum-norm
        least-squares solution)."""
        rhs = self._adjoint(y)
        return batched_cg(self._gram, rhs, 0.0, 1.0, max_iters=max_iters, tol=tol, check_every=10,
                          backend=self.backend).x

    def diagonal(self) -> torch.Tensor:
        """d of a ``structure = "diagonal"`` operator as (1|B, 1|C, H, W) (A x = d ⊙ x)."""
        raise NotImplementedError(f"{type(self).__name__} declares structure={self.structure!r}, not 'diagonal'")

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
        """Tensors from ``build()`` (float64 or complex128, CPU), cached per device and dtype of ``like``."""
        full = key + (like.device, like.dtype)
        if full not in self._cache:
            base = key + ("cpu-float64",)
            if base not in self._cache:
                self._cache[base] = tuple(build())
            real, cplx = like.dtype, (torch.complex64 if like.dtype == torch.float32 else torch.complex128)
            self._cache[full] = tuple(
                t.to(device=like.device, dtype=cplx if t.is_complex() else real) for t in self._cache[base]
            )
        return self._cache[full]

    # ------------------------------------------------------------------ public API
    def A(self, x: torch.Tensor) -> torch.Tensor:
        """y = A x."""
        check_image("x", x)
        self._check_input(x)
        return self._forward(x)

    __call__ = A

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """x = Aᵀ y, the exact transpose of :meth:`A`."""
        check_image("y", y)
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
    ) -> torch.Tensor | tuple[torch.Tensor, SolveInfo]:
        """x = (shift·I + scale·AᵀA)⁻¹ rhs per sample; rhs (B, C, H, W), shift/scale numbers or (B,).

        ``method``: "auto" (exact where available, else CG), "exact" or "cg". ``tol`` (relative
        residual, default 1e-10 in float64 and 1e-5 in float32), ``max_iters``, ``x0`` and
        ``check_every`` apply to CG, which runs a fixed budget without host syncs unless
        ``check_every`` = k asks for one sync every k iterations to stop early. With
        ``return_info`` also returns a :class:`SolveInfo` (exact solves report their residual
        with one extra AᵀA product); without it, a CG solve that stopped above ``tol`` warns
        (:class:`SolveNotConvergedWarning` with the per-sample residuals; one host sync).
        shift = scale = 0 (K = 0) is refused.
        """
        check_image("rhs", rhs)
        self._check_input(rhs)
        if method not in ("auto", "exact", "cg"):
            raise ValueError(f"method must be 'auto', 'exact' or 'cg', got {method!r}")
        if method == "exact" and not self.exact_solve:
            raise ValueError(f"method='exact': {type(self).__name__} has no exact solve here; use 'cg' or 'auto'")
        if self.gram_singular and isinstance(shift, (int, float)) and shift == 0:
            raise ValueError(
                f"shift must be > 0 for {type(self).__name__}: AᵀA is singular, so shift=0 has no "
                "unique solution (use pseudo_inverse(y) for the minimum-norm least-squares one)"
            )
        if (isinstance(shift, (int, float)) and isinstance(scale, (int, float)) and not isinstance(shift, bool)
                and shift == 0 and scale == 0):
            raise ValueError("shift = scale = 0 makes K = shift·I + scale·AᵀA zero: there is nothing to invert; "
                             "give shift > 0 or scale > 0")
        tol = _default_tol(rhs.dtype) if tol is None else tol
        shift_t, scale_t = per_sample("shift", shift, rhs), per_sample("scale", scale, rhs)
        if self.exact_solve and method != "cg":
            x = self._solve_exact(rhs, shift_t, scale_t)
            if not return_info:
                return x
            view = (-1, 1, 1, 1)
            res = (rhs - shift_t.view(view) * x - scale_t.view(view) * self._gram(x)).flatten(1).norm(dim=1)
            norm = rhs.flatten(1).norm(dim=1)
            residual = torch.where(norm > 0, res / torch.where(norm > 0, norm, 1), res)
            zeros = torch.zeros(rhs.shape[0], dtype=torch.int64, device=rhs.device)
            return x, SolveInfo("exact", zeros, residual, residual <= tol)
        out = batched_cg(self._gram, rhs, shift_t, scale_t, x0=x0, max_iters=max_iters, tol=tol,
                         check_every=check_every, backend=self.backend)
        if return_info:
            return out.x, SolveInfo("cg", out.iterations, out.residual, out.converged)
        if not bool(out.converged.all()):  # one sync: say so rather than return an unconverged x silently
            import warnings

            warnings.warn(SolveNotConvergedWarning(
                f"{type(self).__name__}.solve: CG stopped at max_iters={max_iters} above tol={tol:g} for "
                f"{int((~out.converged).sum())} of {rhs.shape[0]} samples (relative residual per sample "
                f"{[float(f'{r:.3g}') for r in out.residual.tolist()[:8]]}); raise max_iters, or pass "
                "return_info=True to handle it"), stacklevel=2)
        return out.x

    def pseudo_inverse(self, y: torch.Tensor, *, tol: float | None = None, max_iters: int = 500) -> torch.Tensor:
        """A⁺ y, the minimum-norm least-squares solution (exact where the structure allows; singular
        values below the dtype's rounding level count as zero). Checks y is finite (one sync)."""
        check_image("y", y)
        self._check_output(y)
        check_finite("y", y)
        return self._pinv(y, _default_tol(y.dtype) if tol is None else tol, max_iters)

    def tikhonov(self, y: torch.Tensor, lam: float | torch.Tensor, **solve_options) -> torch.Tensor:
        """argmin_x ‖A x − y‖² + lam·‖x‖² = (lam·I + AᵀA)⁻¹ Aᵀ y (Wiener filter for blurs);
        lam > 0, a number or a (B,) tensor. Checks y is finite (one sync)."""
        check_image("y", y)
        self._check_output(y)
        check_finite("y", y)
        per_sample("lam", lam, y)  # checks type, shape, dtype and device under its own name
        if isinstance(lam, (int, float)) and lam == 0:
            raise ValueError("lam must be > 0 (lam = 0 is the pseudo-inverse: use pseudo_inverse(y))")
        return self.solve(self._adjoint(y), shift=lam, scale=1.0, **solve_options)

    @staticmethod
    def from_callable(
        fn: Callable[[torch.Tensor], torch.Tensor],
        *,
        adjoint: Callable[[torch.Tensor], torch.Tensor] | None = None,
        input_shape: tuple[int, int, int] | None = None,
        backend: str = "auto",
    ) -> "LinearOperator":
        """An operator from a linear function ``fn``; the adjoint by autograd (vjp) unless given.
        See :class:`diffsolve.operators.CallableOperator`."""
        from .callable import CallableOperator

        return CallableOperator(fn, adjoint=adjoint, input_shape=input_shape, backend=backend)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


Operator = LinearOperator
