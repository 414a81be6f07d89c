"""Autoencoder adapters (E, D) for MPGD-AE/Z/LDM (He et al. 2024) and latent diffusion.

``Autoencoder(vae)`` wraps diffusers ``AutoencoderKL`` or ``VQModel`` with one interface:

- ``encode(x) -> z``: x (B, 3, H, W) in [−1, 1] → latents z = s·(E(x) − shift), (B, c, h, w);
  for the KL model E(x) is the posterior mean (``sample=True`` draws from it with a generator);
- ``decode(z) -> x``: D(z/s + shift); the VQ model quantizes first (``quantize=False`` skips it,
  e.g. for smoother gradients through D);
- ``scaling_factor`` s and ``shift_factor`` from the model's config (LDM §4.3.2).

Gradients flow through both (no ``torch.no_grad`` here); callers decide.
"""

from __future__ import annotations

import torch

__all__ = ["Autoencoder"]


class Autoencoder(torch.nn.Module):
    """Encode/decode with the latent scaling of the model's config. See module docstring."""

    def __init__(self, vae: torch.nn.Module, *, scaling_factor: float | None = None,
                 shift_factor: float | None = None, quantize: bool = True) -> None:
        super().__init__()
        kind = type(vae).__name__
        if not isinstance(vae, torch.nn.Module) or not hasattr(vae, "encode") or not hasattr(vae, "decode"):
            raise TypeError(f"vae must be a diffusers AutoencoderKL or VQModel, got {kind}")
        self.vae = vae
        cfg = getattr(vae, "config", {})
        get = cfg.get if hasattr(cfg, "get") else (lambda key, default=None: default)
        self.is_vq = kind == "VQModel" or get("num_vq_embeddings") is not None
        self.scaling_factor = float(scaling_factor if scaling_factor is not None else get("scaling_factor", 1.0))
        shift = shift_factor if shift_factor is not None else get("shift_factor", None)
        self.shift_factor = 0.0 if shift is None else float(shift)
        if not self.scaling_factor > 0:
            raise ValueError(f"scaling_factor must be positive, got {self.scaling_factor}")
        self.quantize = bool(quantize)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def encode(self, x: torch.Tensor, *, sample: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Scaled latents z (B, c, h, w) in x's dtype; ``sample`` draws from the KL posterior."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ValueError(f"x must be a (B, C, H, W) tensor, got {getattr(x, 'shape', type(x).__name__)}")
        out = self.vae.encode(x.to(self.dtype))
        if self.is_vq:
            if sample:
                raise ValueError("sample=True needs a KL autoencoder; a VQModel's encoder is deterministic")
            h = out.latents if hasattr(out, "latents") else out[0]
        else:
            dist = out.latent_dist if hasattr(out, "latent_dist") else out[0]
            h = dist.sample(generator=generator) if sample else dist.mode()
        return ((h - self.shift_factor) * self.scaling_factor).to(x.dtype)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) in z's dtype from scaled latents z."""
        if not isinstance(z, torch.Tensor) or z.dim() != 4:
            raise ValueError(f"z must be a (B, c, h, w) tensor, got {getattr(z, 'shape', type(z).__name__)}")
        h = (z / self.scaling_factor + self.shift_factor).to(self.dtype)
        if self.is_vq:
            out = self.vae.decode(h, force_not_quantize=not self.quantize)
        else:
            out = self.vae.decode(h)
        x = out.sample if hasattr(out, "sample") else out[0]
        return x.to(z.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """D(E(x)), the reconstruction MPGD-AE projects onto."""
        return self.decode(self.encode(x))
