"""The SVD protocol: A = U diag(s) Vᵀ in tensor form, for the operators whose structure gives it cheaply
(DDRM works in this spectral space; ``diffsolve.solvers.ddrm``).

An operator declares it with one hook, ``operator.svd(size) -> SVD`` for images of size (H, W). An
:class:`SVD` maps

- ``Vt(x)``: image x (B, C, H, W) → spectral coefficients z (B, C, *spectral), orthonormal: ‖Vt(x)‖ = ‖x‖;
- ``V(z)``: the inverse (Vᵀ V = V Vᵀ = I on images);
- ``Ut(y)``: measurement y → z-shaped coefficients, zero on the directions A does not see (s = 0);
- ``U(z)``: z-shaped → measurement (uses only the slots of the measurement directions), U(Ut(y)) = y;
- ``singulars(like)``: s ≥ 0 broadcastable to z (real, like's device and dtype); ``s`` the float64 CPU copy;

so that A x = U(s · Vt(x)) and Aᵀ y = V(s · Ut(y)). The spectral space has the image's numel (null directions
carry s = 0) for every structure but :class:`DenseSVD`, which is thin (V's r columns span A's row space: V Vᵀ is the
projector onto it, not I; its docstring). ``range()`` returns the same protocol restricted to a set of directions V_r that
contains every s > 0 (V_r V_rᵀ the projector onto it; itself by default): a solver whose update is the same
on every null direction works on the image and V_r alone, which for ×f super-resolution is f²× fewer
coefficients (the Kronecker factors' first h, w columns; the block means). Structures:

=======================  ====================================================================================
:class:`DiagonalSVD`     A = diag(d) (``Inpainting``; ``Identity``: d = 1): V = I, s = |d|, U = sign(d); z has
                         the image shape
:class:`BlockMeanSVD`    mean over f×f blocks (``SuperResolution(kernel="average")``): per block the row
                         (1/f²)·1ᵀ has one singular value 1/f (its direction the constant 1/f, unit norm)
                         and f² − 1 null directions; V = I ⊗ Q with Q (f², f²) the Helmert matrix (first
                         column 1/f), U = I; z (B, C, h, w, f²), s = (1/f, 0, …, 0)
:class:`KroneckerSVD`    A x = M_h x M_wᵀ per channel (separable blur, any boundary; bicubic down-sampling):
                         M = U_M S_M V_Mᵀ (full SVDs, float64), V = V_h ⊗ V_w, U = U_h ⊗ U_w,
                         s = S_h ⊗ S_w padded with zeros to (H, W); z (B, C, H, W)
:class:`FourierSVD`      circular correlation, A x = F⁻¹(conj(K̂) · F x): V = F* (unitary DFT), s = |K̂|,
                         U = F* diag(p), p = conj(K̂)/|K̂| (1 where K̂ = 0); z complex (B, C, H, W)
:class:`DenseSVD`        a dense matrix on the flattened image (``MatrixOperator``): its thin SVD, V = V_r
                         (n, r), U = U_r (m, r), every s > 0; z (B, r) (the one structure that mixes channels)
=======================  ====================================================================================

For :class:`FourierSVD` the coefficients are complex and Hermitian for real x; a map that scales each
coefficient by a real factor equal at k and −k (every function of s = |K̂| is: K̂(−k) = conj(K̂(k))) keeps
them Hermitian, so ``V`` returns the real part of an exactly real result.
"""

from __future__ import annotations

import math

import torch

__all__ = ["SUPPORTED", "SVD", "BlockMeanSVD", "DenseSVD", "DiagonalSVD", "FourierSVD", "KroneckerSVD",
           "operator_svd"]

#: The operators with an SVD (named in the error for the others).
SUPPORTED = ("Identity (denoising)", "Inpainting (any mask)", "SuperResolution (kernel='average' or 'bicubic')",
             "Blur / GaussianBlur with a separable kernel (any boundary)", "Blur / MotionBlur with boundary='circular'",
             "MatrixOperator (a dense matrix, e.g. compressed sensing)")


class SVD:
    """A = U diag(s) Vᵀ (module docstring). Factors are float64 on the CPU, converted per device/dtype."""

    s: torch.Tensor
    #: whether Vᵀ mixes pixels (a transform that costs more than an elementwise pass); False for V = I
    mixes: bool = True
    #: whether V is a real orthogonal basis of the whole image space with coefficients shaped like the image,
    #: so that a standard-normal array of coefficients is V's image of a standard-normal image
    complete: bool = False

    def __init__(self) -> None:
        self._cache: dict[tuple, tuple[torch.Tensor, ...]] = {}

    def _on(self, key: str, like: torch.Tensor, tensors: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        full = (key, like.device, like.dtype)
        if full not in self._cache:
            real = like.dtype if not like.is_complex() else like.real.dtype
            cplx = torch.complex64 if real == torch.float32 else torch.complex128
            self._cache[full] = tuple(t.to(device=like.device, dtype=cplx if t.is_complex() else real)
                                      for t in tensors)
        return self._cache[full]

    def singulars(self, like: torch.Tensor) -> torch.Tensor:
        """s ≥ 0, broadcastable to the spectral coefficients, on like's device, real dtype of like."""
        return self._on("s", like, (self.s,))[0]

    def Vt(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def V(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def Ut(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def U(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def range(self) -> "SVD":
        """The protocol on directions V_r that hold every s > 0 (module docstring); the whole space here."""
        return self

    def small_axis_singulars(self, ratio: float) -> torch.Tensor | None:
        """Bool mask, s's shape, of the directions with a per-axis singular value below ``ratio`` times its axis's
        largest (a Kronecker structure's S_h or S_w; DDRM's reference code counts them as zero), or None for a
        structure without per-axis factors (this default)."""
        return None


class DiagonalSVD(SVD):
    """A = diag(d), d (1|B, 1|C, H, W) float64: V = I, s = |d|, U = diag(sign d) (sign 0 → 1)."""

    mixes = False

    def __init__(self, d: torch.Tensor) -> None:
        super().__init__()
        d = d.detach().to("cpu", torch.float64)
        self.s = d.abs()
        self.sign = torch.where(d < 0, -1.0, 1.0).to(torch.float64)

    def Vt(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def V(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def Ut(self, y: torch.Tensor) -> torch.Tensor:
        return self._on("sign", y, (self.sign,))[0] * y

    U = Ut  # diag(sign) is its own inverse


def helmert(n: int) -> torch.Tensor:
    """An (n, n) orthogonal matrix, float64, whose first column is the constant 1/√n."""
    q = torch.zeros(n, n, dtype=torch.float64)
    q[:, 0] = 1 / math.sqrt(n)
    for k in range(1, n):  # column k: k entries 1, then −k, normalised
        q[:k, k] = 1.0
        q[k, k] = -float(k)
        q[:, k] /= math.sqrt(k * (k + 1))
    return q


class BlockMeanSVD(SVD):
    """Mean over f×f blocks, (B, C, H, W) → (B, C, H/f, W/f) (module docstring)."""

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = int(factor)
        self.q = helmert(self.factor**2)
        self.s = torch.zeros(self.factor**2, dtype=torch.float64)
        self.s[0] = 1.0 / self.factor

    def Vt(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        f = self.factor
        blocks = x.reshape(b, c, hh // f, f, ww // f, f).permute(0, 1, 2, 4, 3, 5).reshape(b, c, hh // f, ww // f, f * f)
        return blocks @ self._on("q", x, (self.q,))[0]

    def V(self, z: torch.Tensor) -> torch.Tensor:
        b, c, h, w, _ = z.shape
        f = self.factor
        blocks = z @ self._on("q", z, (self.q,))[0].T
        return blocks.reshape(b, c, h, w, f, f).permute(0, 1, 2, 4, 3, 5).reshape(b, c, h * f, w * f)

    def Ut(self, y: torch.Tensor) -> torch.Tensor:
        pad = y.new_zeros(*y.shape, self.factor**2 - 1)
        return torch.cat([y.unsqueeze(-1), pad], dim=-1)

    def U(self, z: torch.Tensor) -> torch.Tensor:
        return z[..., 0]

    def range(self) -> SVD:
        return _BlockMeanRange(self.factor)


class _BlockMeanRange(SVD):
    """:class:`BlockMeanSVD` on its range: one coefficient per block, ⟨x, 1/f⟩ = f·mean, z (B, C, H/f, W/f)."""

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.s = torch.full((1,), 1.0 / factor, dtype=torch.float64)

    def Vt(self, x: torch.Tensor) -> torch.Tensor:
        return self.factor * torch.nn.functional.avg_pool2d(x, self.factor)

    def V(self, z: torch.Tensor) -> torch.Tensor:
        f = self.factor
        return (z / f).repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1)

    def Ut(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def U(self, z: torch.Tensor) -> torch.Tensor:
        return z


class KroneckerSVD(SVD):
    """A x = M_h x M_wᵀ per channel, M_h (h, H), M_w (w, W) with h ≤ H, w ≤ W (module docstring)."""

    def __init__(self, m_h: torch.Tensor, m_w: torch.Tensor) -> None:
        super().__init__()
        (h, hh), (w, ww) = m_h.shape, m_w.shape
        if h > hh or w > ww:
            raise ValueError(f"KroneckerSVD needs a measurement no larger than the image, got M_h {tuple(m_h.shape)}, "
                             f"M_w {tuple(m_w.shape)}")
        u_h, s_h, vt_h = torch.linalg.svd(m_h.to(torch.float64), full_matrices=True)
        u_w, s_w, vt_w = torch.linalg.svd(m_w.to(torch.float64), full_matrices=True)
        self.out_size = (h, w)
        self.u_h, self.v_h, self.u_w, self.v_w = u_h, vt_h.T.contiguous(), u_w, vt_w.T.contiguous()
        pad_h = torch.zeros(hh, dtype=torch.float64)
        pad_h[: s_h.numel()] = s_h
        pad_w = torch.zeros(ww, dtype=torch.float64)
        pad_w[: s_w.numel()] = s_w
        self.s = torch.outer(pad_h, pad_w)
        self.axis_singulars = (pad_h, pad_w)

    def small_axis_singulars(self, ratio: float) -> torch.Tensor:
        s_h, s_w = self.axis_singulars  # sorted, largest first; the padding's zeros are small
        return (s_h < ratio * s_h[0])[:, None] | (s_w < ratio * s_w[0])[None, :]

    @property
    def complete(self) -> bool:  # type: ignore[override]
        """V_h ⊗ V_w is square (the image's shape): a blur's basis, not a down-sampling's range."""
        return self.v_h.shape[0] == self.v_h.shape[1] and self.v_w.shape[0] == self.v_w.shape[1]

    def _factors(self, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self._on("f", like, (self.u_h, self.v_h, self.u_w, self.v_w))

    def Vt(self, x: torch.Tensor) -> torch.Tensor:
        _, v_h, _, v_w = self._factors(x)
        return v_h.T @ x @ v_w

    def V(self, z: torch.Tensor) -> torch.Tensor:
        _, v_h, _, v_w = self._factors(z)
        return v_h @ z @ v_w.T

    def Ut(self, y: torch.Tensor) -> torch.Tensor:
        u_h, v_h, u_w, v_w = self._factors(y)
        core = u_h.T @ y @ u_w  # zero-padded to the coefficients' shape (V's columns)
        return torch.nn.functional.pad(core, (0, v_w.shape[1] - core.shape[-1], 0, v_h.shape[1] - core.shape[-2]))

    def U(self, z: torch.Tensor) -> torch.Tensor:
        u_h, _, u_w, _ = self._factors(z)
        h, w = self.out_size
        return u_h @ z[..., :h, :w] @ u_w.T

    def range(self) -> SVD:
        if self.out_size == tuple(self.s.shape):
            return self
        return _KroneckerRange(self)


class _KroneckerRange(KroneckerSVD):
    """:class:`KroneckerSVD` on its first (h, w) coefficients (every s > 0): V_r = V_h[:, :h] ⊗ V_w[:, :w]."""

    def __init__(self, full: KroneckerSVD) -> None:
        SVD.__init__(self)
        h, w = self.out_size = full.out_size
        self.s = full.s[:h, :w].contiguous()
        self.axis_singulars = (full.axis_singulars[0][:h], full.axis_singulars[1][:w])
        self.u_h, self.u_w = full.u_h, full.u_w
        self.v_h, self.v_w = full.v_h[:, :h].contiguous(), full.v_w[:, :w].contiguous()


class FourierSVD(SVD):
    """Circular correlation with the kernel whose full DFT on the H×W grid is ``spectrum`` (module docstring)."""

    def __init__(self, spectrum: torch.Tensor) -> None:
        super().__init__()
        spectrum = spectrum.to(torch.complex128)
        mag = spectrum.abs()
        self.s = mag
        self.phase = torch.where(mag > 0, spectrum.conj() / torch.where(mag > 0, mag, 1.0), torch.ones_like(spectrum))

    def Vt(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.fft2(x, norm="ortho")

    def V(self, z: torch.Tensor) -> torch.Tensor:
        return torch.fft.ifft2(z, norm="ortho").real

    def Ut(self, y: torch.Tensor) -> torch.Tensor:
        (p,) = self._on("p", y, (self.phase,))
        return p.conj() * torch.fft.fft2(y, norm="ortho")

    def U(self, z: torch.Tensor) -> torch.Tensor:
        (p,) = self._on("p", z, (self.phase,))
        return torch.fft.ifft2(p * z, norm="ortho").real


class DenseSVD(SVD):
    """A dense matrix on the flattened image (``MatrixOperator``): the thin SVD M = U_r diag(s) V_rᵀ, every s > 0,
    U_r (m, r), V_r (n, r) float64; z (B, r). Already its own range: V_r holds every direction A sees."""

    def __init__(self, u: torch.Tensor, s: torch.Tensor, v: torch.Tensor, input_shape: tuple[int, ...],
                 output_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.u, self.s, self.v = u, s, v
        self.input_shape, self.output_shape = tuple(input_shape), tuple(output_shape)

    def Vt(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self._on("v", x, (self.v,))[0]

    def V(self, z: torch.Tensor) -> torch.Tensor:
        return (z @ self._on("v", z, (self.v,))[0].T).view(z.shape[0], *self.input_shape)

    def Ut(self, y: torch.Tensor) -> torch.Tensor:
        return y.flatten(1) @ self._on("u", y, (self.u,))[0]

    def U(self, z: torch.Tensor) -> torch.Tensor:
        return (z @ self._on("u", z, (self.u,))[0].T).view(z.shape[0], *self.output_shape)


def operator_svd(operator: object, size: tuple[int, int], method: str = "this method") -> SVD:
    """``operator.svd(size)``, or a ValueError naming the operators that have one."""
    hook = getattr(operator, "svd", None)
    if not callable(hook):
        raise ValueError(f"{method} needs the SVD of A (A = U S Vᵀ), which {type(operator).__name__} does not declare; "
                         f"supported operators: {'; '.join(SUPPORTED)}. Use another method (e.g. cdps, mpgd) for "
                         "this operator, or on small images MatrixOperator.from_operator(operator, (C, H, W)), its "
                         "dense matrix with an SVD")
    try:
        out = hook(tuple(size))
    except ValueError as err:  # the operator says why it has none: name the argument, keep its reason
        reason = str(err).replace(f"{operator!r} has", "it has", 1)  # the operator is named once
        raise ValueError(f"{method} needs the SVD of A (A = U S Vᵀ), which operator={operator!r} cannot give here: "
                         f"{reason}; on small images "
                         "MatrixOperator.from_operator(operator, (C, H, W)) gives it one (its dense matrix)") from None
    if not isinstance(out, SVD):
        raise TypeError(f"{type(operator).__name__}.svd(size) must return a diffsolve.operators.svd.SVD, got "
                        f"{type(out).__name__}")
    return out
