"""Blur operators: same-size cross-correlation with a fixed kernel, per channel (DPS conventions).

A x = correlate(pad(x), k) with boundary "reflect" (torch ReflectionPad2d), "circular" or "zero"
(``diffsolve.kernels.correlate2d``; its separable form for separable kernels). Zero rows and
columns are trimmed symmetrically off the kernel's border first: the result is identical and
images only need to exceed the kernel's true support (25×25 for the DPS Gaussian).

Solves: circular boundary → DFT (exact, any kernel); separable kernel with reflect/zero boundary →
per-axis SVD (exact, ``spectral.kron_solve``); otherwise batched CG.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..kernels import backends as kernel_backends
from ..kernels._checks import plain_numbers
from ..kernels import correlate2d, correlate2d_adjoint, separable_correlate2d, separable_correlate2d_adjoint
from ..kernels.correlate import BOUNDARIES, check_boundary
from ._validate import check_backend
from .base import LinearOperator
from .blur_kernels import gaussian_taps, motion_kernel
from .spectral import (
    correlation_matrix, fft_pinv, fft_preconditioner, fft_solve, kron_apply, kron_factors, kron_solve,
    wrapped_kernel_spectrum,
)

__all__ = ["Blur", "GaussianBlur", "MotionBlur"]


def _as_float64(name: str, k: object, ndim: int) -> torch.Tensor:
    if not isinstance(k, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(k).__name__}")
    if not k.is_floating_point():
        raise TypeError(f"{name} must be floating, got dtype {k.dtype}")
    if k.dim() != ndim or any(n % 2 == 0 for n in k.shape):
        raise ValueError(f"{name} must be {ndim}-D with odd sizes, got shape {tuple(k.shape)}")
    k = k.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(k).all()):
        raise ValueError(f"{name} contains NaN or Inf values; pass a finite {name} (a normalisation that divided "
                         "by a zero sum gives NaN: check the taps before dividing)")
    if not bool(k.ne(0).any()):
        raise ValueError(f"{name} is all zeros, so A = 0 maps every image to 0 (nothing to blur or solve); pass a "
                         f"{name} with at least one non-zero tap, e.g. normalised to sum 1")
    return k


def _trim(k: torch.Tensor, dim: int) -> torch.Tensor:
    """Drop the same number of all-zero slices from both ends of ``dim`` (keeps the centre)."""
    nz = k.ne(0).flatten(0, -1) if k.dim() == 1 else k.ne(0).any(dim=1 - dim)
    idx = nz.nonzero()
    if idx.numel() == 0:
        return k.narrow(dim, k.shape[dim] // 2, 1)
    cut = min(int(idx[0]), k.shape[dim] - 1 - int(idx[-1]))
    return k.narrow(dim, cut, k.shape[dim] - 2 * cut)


class Blur(LinearOperator):
    """Correlation with a 2-D ``kernel`` (kh, kw odd), boundary "reflect" | "circular" | "zero"."""

    def __init__(self, kernel: torch.Tensor, boundary: str = "reflect", *, backend: str = "auto") -> None:
        self._init_common(boundary, backend)
        full = _as_float64("kernel", kernel, 2)
        self.kernel = _trim(_trim(full, 0), 1)
        self.kernel_size = tuple(full.shape)

    def _init_common(self, boundary: str, backend: str) -> None:
        LinearOperator.__init__(self, backend=check_backend(backend))
        if boundary not in BOUNDARIES:
            raise ValueError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
        self.boundary = boundary
        self.taps: tuple[torch.Tensor, torch.Tensor] | None = None
        self._gram_bounds: dict[tuple[int, int], float] = {}

    @classmethod
    def separable(cls, k_h: torch.Tensor, k_w: torch.Tensor, boundary: str = "reflect",
                  *, backend: str = "auto") -> "Blur":
        """Blur with kernel outer(k_h, k_w): two 1-D passes and an exact solve for every boundary."""
        op = cls.__new__(cls)
        op._init_common(boundary, backend)
        op._set_taps(k_h, k_w)
        return op

    def _set_taps(self, k_h: torch.Tensor, k_w: torch.Tensor) -> None:
        k_h, k_w = _as_float64("k_h", k_h, 1), _as_float64("k_w", k_w, 1)
        self.kernel_size = (k_h.numel(), k_w.numel())
        self.taps = (_trim(k_h, 0), _trim(k_w, 0))
        self.kernel = torch.outer(*self.taps)

    @property
    def exact_solve(self) -> bool:  # type: ignore[override]
        return self.boundary == "circular" or self.taps is not None

    @property
    def support(self) -> tuple[int, int]:
        """Size of the trimmed kernel actually applied."""
        return tuple(self.kernel.shape)  # type: ignore[return-value]

    def gram_norm_bound(self, size: tuple[int, int]) -> float | None:
        """‖A‖₁·‖A‖∞ ≥ ‖A‖₂² (Schur), the largest column and row sums of |A| on an H×W image:
        |A| is the same blur with |kernel|, applied to ones in float64 (cached per size); an upper bound
        that reflect boundaries loosen (a column sum there can exceed the kernel's)."""
        size = plain_numbers(size)
        if (not isinstance(size, (tuple, list)) or len(size) != 2
                or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in size)):
            raise ValueError(f"size must be (H, W), two positive ints, got {size!r}")
        size = (int(size[0]), int(size[1]))
        if size not in self._gram_bounds:
            # self.backend when named; for "auto" C++ when built (the torch reference of a 61×61 kernel at
            # 256² took 0.6 s and ~300 MiB); triton runs on CUDA when there is one (else the interpreter)
            backend = self.backend
            if backend == "auto":
                backend = "cpp" if kernel_backends()["cpp"][0] else "torch"
            device = "cuda" if backend == "triton" and torch.cuda.is_available() else "cpu"
            ones = torch.ones(1, 1, *size, dtype=torch.float64, device=device)
            self._check_input(ones)
            absolute = Blur(self.kernel.abs(), self.boundary, backend=backend)
            rows, cols = absolute._forward(ones).max(), absolute._adjoint(ones).max()
            self._gram_bounds[size] = float(rows * cols)
        return self._gram_bounds[size]

    def cg_preconditioner(self, shift: torch.Tensor,
                          scale: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """M⁻¹ for CG (reflect/zero boundaries without an exact solve): M = shift·I + scale·ĀᵀĀ, Ā the
        circular correlation with the same kernel, one rfft2/irfft2 pair per application (the kernel's
        spectrum cached per size, dtype and device). None where the solve is exact."""
        if self.exact_solve:
            return None
        state: dict = {}

        def apply(v: torch.Tensor) -> torch.Tensor:
            key = (tuple(v.shape[-2:]), v.dtype, v.device)
            if state.get("key") != key:  # built once per solve (shift/scale fixed), no host sync
                state["key"] = key
                state["fn"] = fft_preconditioner(self._spectrum(v), shift.to(v.dtype), scale.to(v.dtype))
            return state["fn"](v)

        return apply

    def cg_iterations(self, size: tuple[int, int], shift: float, scale: float, tol: float) -> int | None:
        """Preconditioned-CG budget for (shift·I + scale·AᵀA) on ``size`` = (H, W) at relative tolerance
        ``tol``, from host floats: no device sync. No closed-form bound beats κ(K) for the circulant
        preconditioner (AᵀA − ĀᵀĀ lives on a kernel-wide boundary band, not low rank), so the count is
        *calibrated*: PCG on the CPU in float64 on one white-noise channel of that size (the hardest
        generic right-hand side), for scale/shift rounded up to a 2^(1/4) grid (iterations grow with
        it), cached per (size, grid point, tol); returned as ⌈1.25·k⌉ + 2. A calibration, not a
        guarantee: callers still check the residual (C-DPS warns once). None for exact solves,
        shift <= 0, or non-finite numbers."""
        import math

        from ..kernels import batched_cg

        if self.exact_solve or not all(isinstance(v, (int, float)) for v in (shift, scale, tol)):
            return None
        if not (0 < shift < math.inf and 0 <= scale < math.inf and 0 < tol < 1):
            return None
        if scale == 0:
            return 1
        size = (int(size[0]), int(size[1]))
        grid = math.ceil(4 * math.log2(scale / shift) - 1e-9)
        key = (size, grid, float(tol))
        cache = self.__dict__.setdefault("_cg_iterations", {})
        if key not in cache:
            ratio = 2.0 ** (grid / 4)
            gen = torch.Generator().manual_seed(0)
            rhs = torch.randn(1, 1, *size, generator=gen, dtype=torch.float64)
            self._check_input(rhs)
            # the calibration runs on the CPU: on the operator's backend where that is a CPU one
            cpu_backend = self.backend if self.backend in ("torch", "cpp") else (
                "cpp" if kernel_backends()["cpp"][0] else "torch")
            probe = Blur(self.kernel, self.boundary, backend=cpu_backend)
            one = torch.ones(1, dtype=torch.float64)
            out = batched_cg(probe._gram, rhs, one, one * ratio, max_iters=2000, tol=float(tol), check_every=1,
                             backend=cpu_backend, preconditioner=probe.cg_preconditioner(one, one * ratio))
            cache[key] = math.ceil(1.25 * int(out.iterations[0])) + 2
        return cache[key]

    def _check_input(self, x: torch.Tensor) -> None:
        kh, kw = self.support
        check_boundary(self.boundary, x.shape[-2:], (kh // 2, kw // 2))

    _check_output = _check_input

    # ------------------------------------------------------------------ A, Aᵀ
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.taps is not None:
            k_h, k_w = self._cached(("taps",), x, lambda: self.taps)
            return separable_correlate2d(x, k_h, k_w, boundary=self.boundary, backend=self.backend)
        (k,) = self._cached(("kernel",), x, lambda: (self.kernel,))
        return correlate2d(x, k, boundary=self.boundary, backend=self.backend)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        if self.taps is not None:
            k_h, k_w = self._cached(("taps",), y, lambda: self.taps)
            return separable_correlate2d_adjoint(y, k_h, k_w, boundary=self.boundary, backend=self.backend)
        (k,) = self._cached(("kernel",), y, lambda: (self.kernel,))
        return correlate2d_adjoint(y, k, boundary=self.boundary, backend=self.backend)

    # ------------------------------------------------------------------ exact solves
    def _spectrum(self, like: torch.Tensor) -> torch.Tensor:
        h, w = like.shape[-2:]
        return self._cached(("fft", h, w), like, lambda: (wrapped_kernel_spectrum(self.kernel, h, w),))[0]

    def _kron(self, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h, w = like.shape[-2:]

        def build():
            v_h, lam_h, p_h = kron_factors(correlation_matrix(self.taps[0], h, self.boundary))
            v_w, lam_w, p_w = kron_factors(correlation_matrix(self.taps[1], w, self.boundary))
            return v_h, lam_h, v_w, lam_w, p_h, p_w

        return self._cached(("kron", h, w), like, build)

    def singular_gram(self, size: tuple[int, int]) -> bool:
        """AᵀA singular on H×W images (``size``): where the solve is exact, its smallest eigenvalue (|K̂|² in the DFT,
        or λ_h λ_w of the separable factors) below 1e-12 of its largest — a kernel with a spectral zero at this size,
        e.g. a box; cached per size. Without an exact solve: False (CG at shift = 0 stops short and says so)."""
        if not self.exact_solve:
            return False
        cache = self.__dict__.setdefault("_singular", {})
        key = (int(size[0]), int(size[1]))
        if key not in cache:
            like = torch.zeros(1, 1, *key, dtype=torch.float64)
            if self.boundary == "circular":
                power = self._spectrum(like).abs().square()
                low, high = float(power.min()), float(power.max())
            else:
                _, lam_h, _, lam_w, _, _ = self._kron(like)
                low, high = float(lam_h.min() * lam_w.min()), float(lam_h.max() * lam_w.max())
            cache[key] = low <= 1e-12 * high
        return cache[key]

    def _solve_exact(self, rhs: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        if self.boundary == "circular":
            return fft_solve(rhs, self._spectrum(rhs), shift, scale)
        v_h, lam_h, v_w, lam_w, _, _ = self._kron(rhs)
        return kron_solve(rhs, v_h, lam_h, v_w, lam_w, shift, scale)

    def _pinv(self, y: torch.Tensor, tol: float | None, max_iters: int, report: bool = False,
              check_every: int | None = 10) -> torch.Tensor:
        if self.boundary == "circular":
            return fft_pinv(y, self._spectrum(y))
        if self.taps is not None:
            *_, p_h, p_w = self._kron(y)
            return kron_apply(y, p_h, p_w)
        # CG on AᵀA squares A's condition number: in float32 a dense kernel's CG stopped at float32's tolerance with
        # A⁺y off by the image's range, and its result followed the batch's rounding. It runs in float64.
        return super()._pinv(y.to(torch.float64), tol, max_iters, report, check_every).to(y.dtype)

    def _pinv_iterations(self, y: torch.Tensor, max_iters: int) -> int | None:
        if self.boundary == "circular" or self.taps is not None:
            return None  # exact (FFT, Kronecker)
        return self._cg_pinv_iterations(y.to(torch.float64), max_iters)  # as _pinv: in float64

    def svd(self, size: tuple[int, int]) -> "object":
        """A = U S Vᵀ for images of ``size`` (``operators.svd``: KroneckerSVD for separable kernels, FourierSVD
        for circular boundaries; DDRM), built once per size and kept; ValueError for a dense kernel with another
        boundary."""
        from .svd import SUPPORTED, FourierSVD, KroneckerSVD

        self._check_input(torch.zeros(1, 1, *size))
        cache = self.__dict__.setdefault("_svds", {})  # built once per size: two float64 SVDs at 256²
        if tuple(size) in cache:
            return cache[tuple(size)]
        if self.taps is not None:
            out = KroneckerSVD(correlation_matrix(self.taps[0], size[0], self.boundary),
                               correlation_matrix(self.taps[1], size[1], self.boundary))
            return cache.setdefault(tuple(size), out)
        if self.boundary == "circular":
            half = wrapped_kernel_spectrum(self.kernel, *size)
            return cache.setdefault(tuple(size), FourierSVD(torch.fft.fft2(torch.fft.irfft2(half, s=tuple(size)))))
        raise ValueError(f"{self!r} has no cheap SVD (a dense kernel with boundary={self.boundary!r}); supported: "
                         f"{'; '.join(SUPPORTED)}. Use boundary='circular' or a separable kernel")

    def __repr__(self) -> str:
        kind = "separable" if self.taps is not None else "dense"
        return f"{type(self).__name__}({kind} kernel {self.kernel_size}, support {self.support}, boundary={self.boundary!r})"


class GaussianBlur(Blur):
    """The DPS Gaussian blur: kernel = scipy ``gaussian_filter`` (σ = ``std``) of a centred delta
    in a kernel_size² image, applied as a separable pass over its non-zero taps (25 for σ = 3)."""

    def __init__(self, kernel_size: int = 61, std: float = 3.0, boundary: str = "reflect",
                 *, backend: str = "auto") -> None:
        self._init_common(boundary, backend)
        taps = gaussian_taps(kernel_size, std)
        self.std = float(std)
        self._set_taps(taps, taps)


class MotionBlur(Blur):
    """Blur with :func:`~diffsolve.operators.blur_kernels.motion_kernel` (kernel_size, intensity,
    seed): one fixed random-trajectory kernel for the life of the object; solves by CG unless
    boundary is "circular"."""

    def __init__(self, kernel_size: int = 61, intensity: float = 0.5, seed: int = 0,
                 boundary: str = "reflect", *, backend: str = "auto") -> None:
        super().__init__(motion_kernel(kernel_size, intensity, seed), boundary, backend=backend)
        self.intensity, self.seed = float(intensity), seed
