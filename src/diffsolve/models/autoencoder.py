"""Autoencoder adapters (E, D) for MPGD-AE/Z/LDM (He et al. 2024) and latent diffusion.

``Autoencoder(vae)`` wraps diffusers ``AutoencoderKL`` or ``VQModel`` with one interface:

- ``encode(x) -> z``: x (B, 3, H, W) in [−1, 1] → latents z = s·(E(x) − shift), (B, c, h, w);
  for the KL model E(x) is the posterior mean (``sample=True`` draws from it with a generator);
- ``decode(z) -> x``: D(z/s + shift); the VQ model quantizes first (``quantize=False`` skips it,
  e.g. for smoother gradients through D);
- ``scaling_factor`` s and ``shift_factor`` from the model's config (LDM §4.3.2);
- ``spatial_factor`` f (2 per encoder level but the last) and ``latent_channels`` c from the config: ``encode``
  refuses images whose sides are not multiples of f (the decoder would return smaller images), both refuse
  tensors with the wrong channel count or an integer dtype.

Gradients flow through both (no ``torch.no_grad`` here); callers decide.
"""

from __future__ import annotations

import math

import torch

from ..kernels._checks import plain_number

__all__ = ["Autoencoder"]


def _check(name: str, v: object, what: str, channels: int | None) -> None:
    if not isinstance(v, torch.Tensor) or v.dim() != 4:
        raise ValueError(f"{name} must be a {what} tensor, got {getattr(v, 'shape', type(v).__name__)}")
    if not v.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got dtype {v.dtype}; convert it (e.g. .float())")
    if channels is not None and v.shape[1] != channels:
        raise ValueError(f"{name} has {v.shape[1]} channels but the autoencoder's config says {channels}: "
                         f"{name} of shape {tuple(v.shape)} does not fit this vae")


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
        if get("latents_mean") is not None or get("latents_std") is not None:  # SDXL-family VAEs' per-channel norm
            raise ValueError("the vae config has latents_mean/latents_std (diffusers' pipelines decode "
                             "z·std/scaling_factor + mean with them): Autoencoder applies scaling_factor and "
                             "shift_factor only; use a VAE without them")
        scale = scaling_factor if scaling_factor is not None else get("scaling_factor", 1.0)
        shift = shift_factor if shift_factor is not None else get("shift_factor", None)
        shift = 0.0 if shift is None else shift
        scale, shift = plain_number(scale), plain_number(shift)  # numpy / 0-d tensor numbers as Python floats
        for name, value in (("scaling_factor", scale), ("shift_factor", shift)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}; pass it (or fix the vae config)")
        if not scale > 0:
            raise ValueError(f"scaling_factor must be positive, got {scale!r}")
        self.scaling_factor, self.shift_factor = float(scale), float(shift)
        if not isinstance(quantize, bool):  # bool("no") is True: nothing is read by truthiness
            raise TypeError(f"quantize must be True or False, got {type(quantize).__name__} {quantize!r}")
        self.quantize = quantize
        blocks, channels = get("block_out_channels"), get("in_channels")
        #: images' sides must be multiples of this (None: unknown, not checked)
        self.spatial_factor = 2 ** (len(blocks) - 1) if isinstance(blocks, (list, tuple)) and blocks else None
        self.image_channels = channels if isinstance(channels, int) else None
        latent = get("vq_embed_dim") if self.is_vq else None
        latent = get("latent_channels") if latent is None else latent
        self.latent_channels = latent if isinstance(latent, int) else None

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def encode(self, x: torch.Tensor, *, sample: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Scaled latents z (B, c, h, w) in x's dtype; ``sample`` draws from the KL posterior."""
        _check("x", x, "(B, C, H, W) images", self.image_channels)
        f = self.spatial_factor
        if f is not None and (x.shape[-2] % f or x.shape[-1] % f):
            h, w = x.shape[-2:]
            raise ValueError(f"x is {h}×{w} but the autoencoder down-samples by {f}: its decoder would return "
                             f"{h // f * f}×{w // f * f}; crop or pad the images to sides that are multiples of {f}")
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
        _check("z", z, "(B, c, h, w) latents", self.latent_channels)
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
