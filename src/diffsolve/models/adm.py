"""ADM (guided-diffusion, Dhariwal & Nichol 2021) UNet checkpoints as denoisers, through diffusers'
``UNet2DModel``: the checkpoints DPS, MPGD and C-DPS report on (FFHQ 256 ``ffhq_10m.pt``, ImageNet 256
unconditional ``256x256_diffusion_uncond.pt``).

Why a converter works. diffusers' ``UNet2DModel`` with ``resnet_time_scale_shift="scale_shift"``,
``downsample_type/upsample_type="resnet"``, ``flip_sin_to_cos=True, freq_shift=0`` and attention of
``attention_head_dim`` channels per head computes the ADM forward pass block for block:

=====================================================  ==============================================
ADM key (guided_diffusion/unet.py)                     diffusers key
=====================================================  ==============================================
``time_embed.{0,2}``  (cos|sin embedding of t)         ``time_embedding.linear_{1,2}``
``input_blocks.0.0``                                   ``conv_in``
``input_blocks.k.0`` ResBlock (level l, layer j)       ``down_blocks.l.resnets.j``
``input_blocks.k.1`` AttentionBlock                    ``down_blocks.l.attentions.j``
``input_blocks.k.0`` ResBlock(down) / Downsample.op    ``down_blocks.l.downsamplers.0`` (/ ``.conv``)
``middle_block.{0,1,2}``                               ``mid_block.resnets.0``, ``attentions.0``, ``resnets.1``
``output_blocks.k.{0,1,2}`` ResBlock, attn, up         ``up_blocks.u.resnets.j``, ``attentions.j``, ``upsamplers.0``
``out.{0,2}``                                          ``conv_norm_out``, ``conv_out``
ResBlock ``in_layers.{0,2}``, ``emb_layers.1``,        ``norm1``, ``conv1``, ``time_emb_proj``, ``norm2``,
``out_layers.{0,3}``, ``skip_connection``              ``conv2``, ``conv_shortcut``
AttentionBlock ``norm``, ``qkv`` (1×1 conv1d),         ``group_norm``, ``to_q``/``to_k``/``to_v`` (linear),
``proj_out``                                           ``to_out.0``
=====================================================  ==============================================

with k = 1 + l·(R+1) + j (R = res blocks per level) and output block k = u·(R+1) + j, u = L−1−l.
Both scale-shift forms are h = norm(h)·(1 + scale) + shift with (scale, shift) = chunk(emb, 2); both
ResBlock up/down-samplers resample after norm+SiLU and before the first conv, nearest ×2 up and 2×2
average-pool down, the skip resampled alike. The only reshuffle is ``qkv``: the legacy attention order
(``use_new_attention_order=False``, the released checkpoints) stores rows per head as [q | k | v] of
``num_head_channels`` each; diffusers wants q, k, v each with heads contiguous. ``num_head_channels``
is not stored in the weights: 64 for both checkpoints above (``--head-channels``).

The configuration (channels, ``channel_mult``, ``num_res_blocks``, attention levels, scale-shift,
``resblock_updown``) is read from the state dict's shapes. Learned-variance checkpoints
(``learn_sigma``: 2·C outputs) keep the ε half (:class:`DiffusersDenoiser`). The schedule is the
DDPM linear one, T = 1000 (β from 1e-4 to 0.02), as both checkpoints were trained with. Class-
conditional checkpoints (``label_emb``) are not supported.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..kernels._checks import check_device

if TYPE_CHECKING:  # diffusers loads on first use
    from diffusers import UNet2DModel

    from .diffusers_adapter import DiffusersDenoiser

__all__ = ["ADM_SCHEDULER_CONFIG", "adm_config", "adm_to_diffusers", "adm_unet", "load_adm", "read_state_dict"]

#: The training schedule of the FFHQ / ImageNet 256 ADM checkpoints (``--noise_schedule linear``).
ADM_SCHEDULER_CONFIG: dict[str, Any] = {
    "_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_schedule": "linear",
    "beta_start": 0.0001, "beta_end": 0.02, "prediction_type": "epsilon", "clip_sample": False,
}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file (``.pt``/``.pth``/``.ckpt`` by ``torch.load(weights_only=True)``,
    or ``.safetensors``), unwrapped from ``{"state_dict": ...}`` / ``{"model": ...}`` and ``module.``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"ADM checkpoint {str(path)!r} is not a file; download it first (diffsolve never "
                         "reaches the network)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd: Any = load_file(str(path))
    else:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # pickle / zip errors of many kinds
            raise ValueError(f"cannot read ADM checkpoint {str(path)!r}: {type(err).__name__}: {err}") from None
    for key in ("state_dict", "model", "ema"):
        if isinstance(sd, Mapping) and key in sd and isinstance(sd[key], Mapping):
            sd = sd[key]
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{str(path)!r} does not hold a state dict of tensors")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in sd.items()}


def _indices(sd: Mapping[str, torch.Tensor], prefix: str) -> list[int]:
    pat = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    return sorted({int(m.group(1)) for k in sd for m in [pat.match(k)] if m})


def _kind(sd: Mapping[str, torch.Tensor], prefix: str) -> str:
    if f"{prefix}.in_layers.0.weight" in sd:
        return "res"
    if f"{prefix}.qkv.weight" in sd:
        return "attn"
    if f"{prefix}.op.weight" in sd:
        return "down_conv"
    if f"{prefix}.conv.weight" in sd:
        return "up_conv"
    if f"{prefix}.weight" in sd:
        return "conv"
    raise ValueError(f"ADM state dict: no known layer at {prefix!r} (expected a ResBlock, AttentionBlock, "
                     "Downsample or Upsample); is this a guided-diffusion UNetModel checkpoint?")


def _layers(sd: Mapping[str, torch.Tensor], prefix: str) -> list[str]:
    return [_kind(sd, f"{prefix}.{j}") for j in _indices(sd, prefix)]


def adm_config(sd: Mapping[str, torch.Tensor], *, num_head_channels: int = 64, image_size: int = 256) -> dict:
    """The ``UNet2DModel`` config that computes the ADM net of state dict ``sd`` (module docstring)."""
    if "label_emb.weight" in sd:
        raise ValueError("class-conditional ADM checkpoints (label_emb) are not supported; use an unconditional one")
    for key in ("input_blocks.0.0.weight", "out.2.weight", "time_embed.0.weight"):
        if key not in sd:
            raise ValueError(f"ADM state dict has no {key!r}: not a guided-diffusion UNetModel checkpoint")
    if not isinstance(num_head_channels, int) or isinstance(num_head_channels, bool) or num_head_channels < 1:
        raise ValueError(f"num_head_channels must be a positive int, got {num_head_channels!r}")
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
        raise ValueError(f"image_size must be a positive int (the checkpoint's --image_size), got {image_size!r}")
    sd = _Tracked(sd)  # a missing tensor is a ValueError naming it, not a KeyError
    mc, in_ch = sd["input_blocks.0.0.weight"].shape[:2]
    out_ch = sd["out.2.weight"].shape[0]
    if out_ch not in (in_ch, 2 * in_ch):
        raise ValueError(f"ADM state dict: {out_ch} output channels for {in_ch} input channels; a guided-diffusion "
                         f"UNetModel has {in_ch} (learn_sigma False) or {2 * in_ch} (learn_sigma True)")
    n_in, n_out = len(_indices(sd, "input_blocks")), len(_indices(sd, "output_blocks"))
    outs = [_layers(sd, f"output_blocks.{k}") for k in range(n_out)]
    ups = [k for k, layers in enumerate(outs) if layers.count("res") == 2 or "up_conv" in layers]
    per_level = ups[0] + 1 if ups else n_out
    levels, rem = divmod(n_out, per_level)
    if rem or n_in != 1 + levels * per_level - 1 or per_level < 2:
        raise ValueError(f"ADM state dict: {n_in} input and {n_out} output blocks do not form a UNet with "
                         f"{per_level - 1} res blocks per level")
    nrb = per_level - 1
    channels, attn = [], []
    for lvl in range(levels):
        first = f"input_blocks.{1 + lvl * per_level}"
        channels.append(int(sd[f"{first}.0.in_layers.2.weight"].shape[0]))
        attn.append("attn" in _layers(sd, first))
    if channels[0] != mc:
        raise ValueError(f"ADM state dict: the first level has {channels[0]} channels but the model {mc} "
                         f"(channel_mult[0] = {channels[0] / mc:g}); diffusers' UNet2DModel needs channel_mult[0] = 1, "
                         "so this checkpoint (e.g. ImageNet 512's 0.5) cannot be converted")
    updown = None
    for lvl in range(levels - 1):
        kind = _layers(sd, f"input_blocks.{1 + lvl * per_level + nrb}")
        this = kind == ["res"]
        if kind not in (["res"], ["down_conv"]):
            raise ValueError(f"ADM state dict: level {lvl} down-samples by {kind}; only conv or ResBlock "
                             "resampling maps onto diffusers (conv_resample=False is not supported)")
        if updown is not None and this != updown:
            raise ValueError("ADM state dict mixes ResBlock and conv resampling")
        updown = this
    first_res = "input_blocks.1.0"
    scale_shift = sd[f"{first_res}.emb_layers.1.weight"].shape[0] == 2 * channels[0]
    for lvl, (ch, a) in enumerate(zip(channels, attn)):
        if a and ch % num_head_channels:
            raise ValueError(f"num_head_channels={num_head_channels} does not divide the {ch} channels of the "
                             f"attention at level {lvl}; give the checkpoint's --num_head_channels")
    if channels[-1] % num_head_channels:
        raise ValueError(f"num_head_channels={num_head_channels} does not divide the middle block's "
                         f"{channels[-1]} channels")
    resample = "resnet" if updown else "conv"
    down = [("AttnDownBlock2D" if a else ("ResnetDownsampleBlock2D" if updown else "DownBlock2D")) for a in attn]
    up = [("AttnUpBlock2D" if a else ("ResnetUpsampleBlock2D" if updown else "UpBlock2D")) for a in attn[::-1]]
    return {
        "sample_size": image_size, "in_channels": int(in_ch), "out_channels": int(out_ch),
        "center_input_sample": False, "time_embedding_type": "positional", "flip_sin_to_cos": True,
        "freq_shift": 0, "down_block_types": down, "up_block_types": up, "block_out_channels": channels,
        "layers_per_block": nrb, "mid_block_scale_factor": 1, "downsample_padding": 1,
        "downsample_type": resample, "upsample_type": resample, "dropout": 0.0, "act_fn": "silu",
        "attention_head_dim": num_head_channels, "norm_num_groups": 32, "attn_norm_num_groups": 32,
        "norm_eps": 1e-5, "resnet_time_scale_shift": "scale_shift" if scale_shift else "default",
        "add_attention": True, "_adm_model_channels": int(mc),
    }


class _Tracked(dict):
    """A state dict that remembers which keys were read (every checkpoint tensor must be mapped)."""

    def __init__(self, sd: Mapping[str, torch.Tensor]) -> None:
        super().__init__(sd)
        self.used: set[str] = set()

    def __getitem__(self, key: str) -> torch.Tensor:
        self.used.add(key)
        return super().__getitem__(key)

    def __missing__(self, key: str) -> torch.Tensor:
        raise ValueError(f"ADM state dict has no {key!r}, which the inferred UNet needs; is this a complete "
                         "guided-diffusion UNetModel checkpoint?")


_RES = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
        "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}


def _map_res(sd, src: str, dst: str, out: dict) -> None:
    for key, value in sd.items():
        if key.startswith(src + "."):
            rest = key[len(src) + 1:]
            sub, _, param = rest.rpartition(".")
            if sub not in _RES:
                raise ValueError(f"ADM state dict: unexpected ResBlock key {key!r}")
            out[f"{dst}.{_RES[sub]}.{param}"] = sd[key]


def _map_attn(sd, src: str, dst: str, out: dict, head_channels: int, new_order: bool) -> None:
    qkv_w, qkv_b = sd[f"{src}.qkv.weight"], sd[f"{src}.qkv.bias"]
    c = qkv_w.shape[1]
    heads = c // head_channels
    w = qkv_w.reshape(3 * c, c)
    if new_order:  # [q | k | v], heads contiguous inside each
        parts_w, parts_b = w.chunk(3), qkv_b.chunk(3)
    else:  # per head [q | k | v]
        w3 = w.reshape(heads, 3, head_channels, c)
        b3 = qkv_b.reshape(heads, 3, head_channels)
        parts_w = [w3[:, i].reshape(c, c) for i in range(3)]
        parts_b = [b3[:, i].reshape(c) for i in range(3)]
    for name, pw, pb in zip(("to_q", "to_k", "to_v"), parts_w, parts_b):
        out[f"{dst}.{name}.weight"] = pw.contiguous()
        out[f"{dst}.{name}.bias"] = pb.contiguous()
    out[f"{dst}.to_out.0.weight"] = sd[f"{src}.proj_out.weight"].reshape(c, c)
    out[f"{dst}.to_out.0.bias"] = sd[f"{src}.proj_out.bias"]
    out[f"{dst}.group_norm.weight"] = sd[f"{src}.norm.weight"]
    out[f"{dst}.group_norm.bias"] = sd[f"{src}.norm.bias"]


def _map_layer(sd, kind: str, src: str, dst: str, out: dict, head_channels: int, new_order: bool) -> None:
    if kind == "res":
        _map_res(sd, src, dst, out)
    elif kind == "attn":
        _map_attn(sd, src, dst, out, head_channels, new_order)
    else:
        conv = {"down_conv": "op", "up_conv": "conv"}[kind]
        out[f"{dst}.conv.weight"] = sd[f"{src}.{conv}.weight"]
        out[f"{dst}.conv.bias"] = sd[f"{src}.{conv}.bias"]


def adm_to_diffusers(sd: Mapping[str, torch.Tensor], config: dict, *,
                     new_attention_order: bool = False) -> dict[str, torch.Tensor]:
    """ADM state dict -> ``UNet2DModel`` state dict for ``config`` (from :func:`adm_config`)."""
    sd = _Tracked(sd)
    hc = config["attention_head_dim"]
    levels = len(config["block_out_channels"])
    nrb = config["layers_per_block"]
    per = nrb + 1
    out: dict[str, torch.Tensor] = {}
    for a, b in (("time_embed.0", "time_embedding.linear_1"), ("time_embed.2", "time_embedding.linear_2"),
                 ("input_blocks.0.0", "conv_in"), ("out.0", "conv_norm_out"), ("out.2", "conv_out")):
        out[f"{b}.weight"], out[f"{b}.bias"] = sd[f"{a}.weight"], sd[f"{a}.bias"]

    def block(src: str, dst_res: str, dst_attn: str, dst_sample: str | None) -> None:
        layers = _layers(sd, src)
        for j, kind in enumerate(layers):
            is_sampler = j == len(layers) - 1 and dst_sample is not None
            dst = dst_sample if is_sampler else (dst_attn if kind == "attn" else dst_res)
            _map_layer(sd, kind, f"{src}.{j}", dst, out, hc, new_attention_order)

    for lvl in range(levels):
        for j in range(nrb):
            block(f"input_blocks.{1 + lvl * per + j}", f"down_blocks.{lvl}.resnets.{j}",
                  f"down_blocks.{lvl}.attentions.{j}", None)
        if lvl < levels - 1:
            block(f"input_blocks.{1 + lvl * per + nrb}", "", "", f"down_blocks.{lvl}.downsamplers.0")
    _map_layer(sd, "res", "middle_block.0", "mid_block.resnets.0", out, hc, new_attention_order)
    _map_layer(sd, "attn", "middle_block.1", "mid_block.attentions.0", out, hc, new_attention_order)
    _map_layer(sd, "res", "middle_block.2", "mid_block.resnets.1", out, hc, new_attention_order)
    for u in range(levels):
        for j in range(per):
            k = u * per + j
            sampler = f"up_blocks.{u}.upsamplers.0" if (j == nrb and u < levels - 1) else None
            block(f"output_blocks.{k}", f"up_blocks.{u}.resnets.{j}", f"up_blocks.{u}.attentions.{j}", sampler)
    unused = sorted(set(sd) - sd.used)
    if unused:
        raise ValueError(f"ADM state dict: {len(unused)} tensors fit no layer of the inferred UNet (e.g. "
                         f"{unused[:3]}); is this a guided-diffusion UNetModel checkpoint?")
    return out


def adm_unet(sd: Mapping[str, torch.Tensor], *, num_head_channels: int = 64, image_size: int = 256,
             new_attention_order: bool = False, torch_dtype: torch.dtype = torch.float32) -> UNet2DModel:
    """A diffusers ``UNet2DModel`` holding the ADM weights ``sd`` (in ``torch_dtype``, eval mode)."""
    from diffusers import UNet2DModel
    from diffusers.utils import logging as dlog

    if not isinstance(torch_dtype, torch.dtype) or not torch_dtype.is_floating_point:
        raise TypeError(f"torch_dtype must be a floating torch.dtype (torch.float32, torch.float16, ...), "
                        f"got {torch_dtype!r}")
    config = adm_config(sd, num_head_channels=num_head_channels, image_size=image_size)
    config.pop("_adm_model_channels")
    converted = adm_to_diffusers(sd, config, new_attention_order=new_attention_order)
    level = dlog.get_verbosity()
    dlog.set_verbosity_error()
    try:
        unet = UNet2DModel(**config)
        expected = unet.state_dict()
        wrong = [f"{k}: {tuple(v.shape)}, the layout needs {tuple(expected[k].shape)}"
                 for k, v in converted.items() if k in expected and v.shape != expected[k].shape]
        if wrong:
            raise ValueError(f"ADM -> UNet2DModel: {len(wrong)} tensors have the wrong shape (e.g. {wrong[:2]}); the "
                             "checkpoint's layout is not the guided-diffusion UNetModel's")
        missing, unexpected = unet.load_state_dict({k: v.float() for k, v in converted.items()}, strict=False)
        unet = unet.to(dtype=torch_dtype)
    finally:
        dlog.set_verbosity(level)
    if missing or unexpected:
        raise ValueError(f"ADM -> UNet2DModel: {len(missing)} weights missing (e.g. {missing[:3]}), "
                         f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}); the checkpoint's layout is not "
                         "the guided-diffusion UNetModel's")
    return unet.eval()


def load_adm(path: str | Path, *, device: str | torch.device | None = None, num_head_channels: int = 64,
             image_size: int = 256, new_attention_order: bool = False,
             torch_dtype: torch.dtype = torch.float32) -> DiffusersDenoiser:
    """A guided-diffusion checkpoint file as a :class:`DiffusersDenoiser` (ε̂(x, t), the ε half of a
    learned-variance output), with the DDPM linear schedule :data:`ADM_SCHEDULER_CONFIG`."""
    from .diffusers_adapter import DiffusersDenoiser, check_torch_dtype

    device = check_device(device)  # both before the checkpoint is read and converted
    if check_torch_dtype(torch_dtype) is None:
        raise TypeError("torch_dtype must be a floating torch.dtype, got None; pass torch.float32 (the default)")
    unet = adm_unet(read_state_dict(path), num_head_channels=num_head_channels, image_size=image_size,
                    new_attention_order=new_attention_order, torch_dtype=torch_dtype)
    if device is not None:
        unet = unet.to(device)
    return DiffusersDenoiser(unet, dict(ADM_SCHEDULER_CONFIG))
