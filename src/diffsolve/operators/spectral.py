"""Exact solves by diagonalizing AᵀA: per-axis SVDs for Kronecker operators, the DFT for circular blur.

Kronecker (separable blur with any boundary, bicubic down-sampling): per channel A = M_h ⊗ M_w,
i.e. A x = M_h x M_wᵀ with M_h (h, H), M_w (w, W). With M = U S Vᵀ (thin SVD: V (H, r), r = min(h, H),
λ = S²), AᵀA = (V_h ⊗ V_w) diag(λ_h ⊗ λ_w) (V_h ⊗ V_w)ᵀ and AᵀA = 0 off the range of V_h ⊗ V_w, so
    (shift·I + scale·AᵀA)⁻¹ r = V_h [ (V_hᵀ r V_w) / (shift + scale·λ_h λ_wᵀ) ] V_wᵀ          (r = H, W: a blur)
                              = r/shift + V_h [ (V_hᵀ r V_w) ⊙ (1/(shift + scale·λ_h λ_wᵀ) − 1/shift) ] V_wᵀ
(a down-sampling, r < H: the products shrink with the range; the null-space part costs one division), four dense
matrix products per image (BLAS ``matmul``: the eigenbases are dense, so the banded ``resample`` kernels would be
the wrong tool), and A⁺ = M_h⁺ ⊗ M_w⁺.

Circular correlation with k is diagonal in the DFT: A x = F⁻¹(conj(K̂) · F x), K̂ the DFT of the
kernel wrapped onto the H×W grid, so AᵀA has eigenvalues |K̂|².
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = [
    "correlation_matrix",
    "fft_pinv",
    "fft_preconditioner",
    "fft_solve",
    "kron_apply",
    "kron_factors",
    "kron_solve",
    "wrapped_kernel_spectrum",
]


def correlation_matrix(taps: torch.Tensor, n: int, boundary: str) -> torch.Tensor:
    """The (n, n) matrix of 1-D correlation with odd ``taps`` after padding by len//2."""
    p = taps.numel() // 2
    m = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for u, t in enumerate(taps.tolist()):
            j = i + u - p
            if boundary == "circular":
                j %= n
            elif boundary == "reflect":  # torch ReflectionPad: mirror about the edge sample
                j = -j if j < 0 else (2 * (n - 1) - j if j >= n else j)
            elif not 0 <= j < n:
                continue
            m[i, j] += t
    return m


def kron_factors(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For M (out, in) float64: (V (in, r), λ (r,) the eigenvalues of MᵀM on V's columns, M⁺ (in, out)),
    r = min(out, in): every other eigenvalue of MᵀM is 0 (the thin SVD)."""
    _, s, vh = torch.linalg.svd(m, full_matrices=False)
    return vh.T.contiguous(), s * s, torch.linalg.pinv(m)


def kron_apply(x: torch.Tensor, p_h: torch.Tensor, p_w: torch.Tensor) -> torch.Tensor:
    """P_h x P_wᵀ per image-channel with dense P_h (h, H), P_w (w, W): x (B, C, H, W) -> (B, C, h, w)."""
    return torch.matmul(torch.matmul(p_h, x), p_w.T)


def kron_solve(
    rhs: torch.Tensor, v_h: torch.Tensor, lam_h: torch.Tensor, v_w: torch.Tensor, lam_w: torch.Tensor,
    shift: torch.Tensor, scale: torch.Tensor,
) -> torch.Tensor:
    """(shift·I + scale·AᵀA)⁻¹ rhs for A = M_h ⊗ M_w (module docstring) with V_h (H, r_h), λ_h (r_h,), V_w, λ_w
    from :func:`kron_factors`; rhs (B, C, H, W), shift/scale (B,)."""
    c, k = shift.view(-1, 1, 1, 1), scale.view(-1, 1, 1, 1)
    z = kron_apply(rhs, v_h.T, v_w.T)  # V_hᵀ r V_w
    if v_h.shape[1] == v_h.shape[0] and v_w.shape[1] == v_w.shape[0]:  # V square: AᵀA's whole eigenbasis
        return kron_apply(z / (c + k * torch.outer(lam_h, lam_w)), v_h, v_w)
    return rhs / c + kron_apply(z * (1 / (c + k * torch.outer(lam_h, lam_w)) - 1 / c), v_h, v_w)


def wrapped_kernel_spectrum(kernel: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """K̂ = rfft2 of g, g[(u − kh//2) mod h, (v − kw//2) mod w] += k[u, v]: (h, w//2 + 1) complex."""
    kh, kw = kernel.shape
    rows = (torch.arange(kh) - kh // 2) % h
    cols = (torch.arange(kw) - kw // 2) % w
    g = torch.zeros(h, w, dtype=torch.float64)
    g.index_put_((rows[:, None].expand(kh, kw), cols[None, :].expand(kh, kw)), kernel.double(), accumulate=True)
    return torch.fft.rfft2(g)


def fft_solve(rhs: torch.Tensor, spectrum: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """(shift·I + scale·AᵀA)⁻¹ rhs for circular correlation with spectrum K̂."""
    den = shift.view(-1, 1, 1, 1) + scale.view(-1, 1, 1, 1) * spectrum.abs().square()
    return torch.fft.irfft2(torch.fft.rfft2(rhs) / den, s=rhs.shape[-2:])


def fft_preconditioner(spectrum: torch.Tensor, shift: torch.Tensor,
                       scale: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """v ↦ (shift·I + scale·ĀᵀĀ)⁻¹ v with Ā the circular correlation of spectrum K̂ (one rfft2/irfft2
    pair): SPD for shift > 0, the exact inverse for circular blur and a preconditioner for CG on the
    same kernel with another boundary. shift, scale (B,); the denominator is built once."""
    den = shift.view(-1, 1, 1, 1) + scale.view(-1, 1, 1, 1) * spectrum.abs().square()
    inv = 1 / den

    def apply(v: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfft2(torch.fft.rfft2(v) * inv, s=v.shape[-2:])

    return apply


def fft_pinv(y: torch.Tensor, spectrum: torch.Tensor) -> torch.Tensor:
    """A⁺ y for circular correlation; |K̂| below max|K̂|·max(h, w)·eps counts as zero."""
    mag = spectrum.abs()
    keep = mag > mag.max() * max(y.shape[-2:]) * torch.finfo(y.dtype).eps
    inv = torch.where(keep, spectrum / torch.where(keep, mag.square(), 1), torch.zeros_like(spectrum))
    return torch.fft.irfft2(torch.fft.rfft2(y) * inv, s=y.shape[-2:])
