"""A Stable-Diffusion-style local folder as (latent denoiser, autoencoder) for MPGD-LDM.

Folder layout (what ``StableDiffusionPipeline.save_pretrained`` writes; ``model_index.json`` optional)::

    unet/        UNet2DConditionModel (text-conditioned) or UNet2DModel (unconditional LDM)
    vae/         AutoencoderKL or VQModel (``scaling_factor`` / ``shift_factor`` from its config)
    scheduler/   scheduler_config.json (training table, prediction_type, clip_sample, ...)
    text_encoder/, tokenizer/   optional: CLIPTextModel + CLIPTokenizer (needs ``transformers``)

:func:`load_latent_diffusion` returns a :class:`LatentDiffusion` whose ``denoiser`` is a
:class:`~diffsolve.models.DiffusersDenoiser` on latents with the text conditioning baked in (classifier-free
guidance ε̂ = ε_u + w (ε_c − ε_u), Ho & Salimans 2022, with ε_u from ``negative_prompt`` — "" by default, as
Stable Diffusion does) and whose ``autoencoder`` is an :class:`~diffsolve.models.Autoencoder`; pass both to
:func:`diffsolve.solvers.mpgd_ldm`. Conditioning is a ``prompt`` (encoded as Stable Diffusion does: the
tokenizer pads to ``model_max_length``, the encoder's last hidden state, (1, L, D)) or precomputed
``prompt_embeds`` (1 | B, L, D), which need no ``transformers``. Everything is read from disk only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..kernels._checks import check_device
from ..schedules import SPACINGS, spaced_timesteps
from .autoencoder import Autoencoder
from .diffusers_adapter import (DiffusersDenoiser, _check_state_pair, check_guidance_scale, check_states,
                                check_torch_dtype)

__all__ = ["LatentDiffusion", "encode_prompt", "load_latent_diffusion"]

_UNETS = ("UNet2DConditionModel", "UNet2DModel")
_VAES = ("AutoencoderKL", "VQModel")


@dataclass
class LatentDiffusion:
    """denoiser: ε̂(z, t) on latents (B, c, h, w); autoencoder: encode/decode images ↔ latents;
    scheduler_config: the folder's scheduler config (dict)."""

    denoiser: DiffusersDenoiser
    autoencoder: Autoencoder
    scheduler_config: dict[str, Any]

    def timesteps(self, steps: int) -> torch.Tensor:
        """The N timesteps the folder's scheduler would list (its ``timestep_spacing`` and ``steps_offset``,
        e.g. Stable Diffusion's leading + 1), for ``mpgd_ldm(..., timesteps=...)``; (N,) int64 descending."""
        cfg = self.scheduler_config
        spacing = cfg.get("timestep_spacing", "leading")
        if spacing not in SPACINGS:
            raise ValueError(f"the folder's timestep_spacing {spacing!r} is not one of {SPACINGS}; pass spacing= "
                             "to the solver instead")
        return spaced_timesteps(self.denoiser.alphas_cumprod.numel(), steps, spacing, int(cfg.get("steps_offset", 0)))


def _class_name(folder: Path, allowed: tuple[str, ...]) -> str:
    config = folder / "config.json"
    if not config.is_file():
        raise ValueError(f"{folder} has no config.json; expected a diffusers {' or '.join(allowed)} folder")
    name = json.loads(config.read_text()).get("_class_name")
    if name not in allowed:
        raise ValueError(f"{config}: model class {name!r} is not supported here; expected one of {allowed}")
    return name


def _check_latent_channels(root: Path) -> None:
    """The UNet must take the channels the VAE's latents have (read from both configs, before any weights)."""
    unet_cfg = json.loads((root / "unet" / "config.json").read_text())
    vae_cfg = json.loads((root / "vae" / "config.json").read_text())
    latent = vae_cfg.get("vq_embed_dim") or vae_cfg.get("latent_channels")
    unet_in = unet_cfg.get("in_channels")
    if isinstance(latent, int) and isinstance(unet_in, int) and latent != unet_in:
        raise ValueError(f"{root}: the UNet takes {unet_in} input channels but the VAE's latents have {latent} "
                         f"(unet/config.json in_channels, vae/config.json latent_channels); the two do not belong "
                         "together (an inpainting UNet with 9 channels is not supported either)")


def encode_prompt(prompt: str | list[str], tokenizer: Any, text_encoder: Any,
                  device: torch.device | None = None) -> torch.Tensor:
    """Text embeddings (len(prompt), L, D) as Stable Diffusion forms them: ids padded/truncated to the
    tokenizer's ``model_max_length``, then the encoder's last hidden state."""
    texts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise TypeError(f"prompt must be a string or a list of strings, got {prompt!r}")
    ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    if device is not None:
        ids = ids.to(device)
    with torch.no_grad():
        return text_encoder(ids)[0]


def _text_components(root: Path, tokenizer: Any, text_encoder: Any, torch_dtype: torch.dtype | None,
                     device: torch.device | None) -> tuple[Any, Any]:
    if tokenizer is not None and text_encoder is not None:
        return tokenizer, text_encoder
    if not (root / "text_encoder").is_dir() or not (root / "tokenizer").is_dir():
        raise ValueError(f"a prompt needs a text encoder: {root} has no text_encoder/ and tokenizer/; pass "
                         "prompt_embeds=(1|B, L, D) (and negative_prompt_embeds for guidance) instead")
    try:
        import transformers
    except ImportError as err:
        raise ImportError("encoding a prompt needs the `transformers` package (pip install transformers), which "
                          "diffsolve does not depend on; or pass precomputed prompt_embeds=(1|B, L, D) "
                          "and negative_prompt_embeds") from err
    tokenizer = tokenizer or transformers.CLIPTokenizer.from_pretrained(root / "tokenizer", local_files_only=True)
    if text_encoder is None:
        text_encoder = transformers.CLIPTextModel.from_pretrained(root / "text_encoder", local_files_only=True,
                                                                  torch_dtype=torch_dtype)
        text_encoder = text_encoder.to(device).eval() if device is not None else text_encoder.eval()
    return tokenizer, text_encoder


def load_latent_diffusion(path: str | Path, *, prompt: str | list[str] | None = None,
                          negative_prompt: str | list[str] | None = None,
                          prompt_embeds: torch.Tensor | None = None,
                          negative_prompt_embeds: torch.Tensor | None = None, guidance_scale: float = 1.0,
                          torch_dtype: torch.dtype | None = None, device: str | torch.device | None = None,
                          tokenizer: Any = None, text_encoder: Any = None, **denoiser_kwargs: Any) -> LatentDiffusion:
    """Load a local Stable-Diffusion-style folder (module docstring) for :func:`~diffsolve.solvers.mpgd_ldm`.

    Args:
        path: the folder (never a hub name: diffsolve does not reach the network).
        prompt / negative_prompt: text (needs text_encoder/ + tokenizer/ and ``transformers``, or the
            ``tokenizer``/``text_encoder`` objects given here); negative "" when guidance needs one.
        prompt_embeds / negative_prompt_embeds: precomputed (1 | B, L, D) conditioning instead of text.
        guidance_scale: CFG weight w (w ≤ 1: the conditional branch only, as diffusers' pipelines; Stable Diffusion
            uses 7.5).
        torch_dtype, device: for all components. denoiser_kwargs: to :class:`DiffusersDenoiser`
            (e.g. ``clip_sample=False``, ``prediction_type``).
    """
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"path must be a local folder with unet/, vae/ and scheduler/, got {str(path)!r} "
                         "(not a directory); download the model first, diffsolve never reaches the network")
    sched_file = root / "scheduler" / "scheduler_config.json"
    missing = [p for p in ("unet", "vae") if not (root / p).is_dir()] + ([] if sched_file.is_file() else
                                                                         ["scheduler/scheduler_config.json"])
    if missing:
        raise ValueError(f"{root} lacks {', '.join(missing)}: a Stable-Diffusion-style folder has unet/, vae/ and "
                         "scheduler/ (text_encoder/ and tokenizer/ optional)")
    if prompt is not None and prompt_embeds is not None:
        raise ValueError("give prompt or prompt_embeds, not both")
    if negative_prompt is not None and negative_prompt_embeds is not None:
        raise ValueError("give negative_prompt or negative_prompt_embeds, not both")
    guidance_scale = check_guidance_scale(guidance_scale)
    torch_dtype = check_torch_dtype(torch_dtype)  # "float16" would load float32 weights with a log line only
    dev = check_device(device)  # before any weights are read: 'banana', 'mps', CUDA without a GPU
    unet_class, vae_class = _class_name(root / "unet", _UNETS), _class_name(root / "vae", _VAES)
    _check_latent_channels(root)
    conditional = unet_class == "UNet2DConditionModel"
    if not conditional and (prompt is not None or prompt_embeds is not None or guidance_scale > 1.0):
        raise ValueError(f"{root / 'unet'} holds an unconditional UNet2DModel: prompt, prompt_embeds and "
                         "guidance_scale do not apply")
    if conditional and prompt is None and prompt_embeds is None:
        raise ValueError(f"{root / 'unet'} is text-conditioned (UNet2DConditionModel): give prompt= or "
                         "prompt_embeds=(1|B, L, D)")
    if conditional:  # precomputed states are checked before any weights are read (encoded ones by the denoiser)
        width = json.loads((root / "unet" / "config.json").read_text()).get("cross_attention_dim")
        for name, value in (("prompt_embeds", prompt_embeds), ("negative_prompt_embeds", negative_prompt_embeds)):
            if value is not None:
                check_states(name, value, width, " (or pass prompt= to encode it with the folder's text encoder)")
        if prompt_embeds is not None and negative_prompt_embeds is not None:
            _check_state_pair(prompt_embeds, negative_prompt_embeds, ("prompt_embeds", "negative_prompt_embeds"))
    import diffusers

    unet = getattr(diffusers, unet_class).from_pretrained(root / "unet", local_files_only=True,
                                                          torch_dtype=torch_dtype)
    vae = getattr(diffusers, vae_class).from_pretrained(root / "vae", local_files_only=True, torch_dtype=torch_dtype)
    if dev is not None:
        unet, vae = unet.to(dev), vae.to(dev)
    unet.eval()
    vae.eval()
    sched_cfg = json.loads(sched_file.read_text())
    cond = neg = None
    if conditional:
        needs_text = prompt is not None or (guidance_scale > 1.0 and negative_prompt_embeds is None)
        if needs_text:
            tok, enc = _text_components(root, tokenizer, text_encoder, torch_dtype, dev)
        cond = encode_prompt(prompt, tok, enc, dev) if prompt is not None else prompt_embeds
        if guidance_scale > 1.0:  # diffusers' rule: w ≤ 1 is the conditional branch only
            neg = negative_prompt_embeds
            if neg is None:
                neg = encode_prompt(negative_prompt if negative_prompt is not None else "", tok, enc, dev)
        elif negative_prompt is not None or negative_prompt_embeds is not None:
            raise ValueError("a negative prompt acts only with classifier-free guidance: set guidance_scale > 1")
    denoiser = DiffusersDenoiser(unet, sched_cfg, encoder_hidden_states=cond, negative_encoder_hidden_states=neg,
                                 guidance_scale=guidance_scale, **denoiser_kwargs)
    return LatentDiffusion(denoiser=denoiser, autoencoder=Autoencoder(vae), scheduler_config=sched_cfg)
