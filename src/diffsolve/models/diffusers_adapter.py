"""A diffusers UNet as a :class:`~diffsolve.models.denoiser.Denoiser` (ε-prediction out, always).

``DiffusersDenoiser(unet, scheduler_or_config)`` wraps ``UNet2DModel`` or ``UNet2DConditionModel``
(with ``encoder_hidden_states`` and classifier-free guidance, Ho & Salimans 2022:
ε̂ = ε_u + w (ε_c − ε_u)). The model's ``prediction_type`` is converted to ε with ᾱ_t of the table:

- ``epsilon``: ε̂ = output;
- ``v_prediction`` (Salimans & Ho 2022): ε̂ = √ᾱ_t v + √(1−ᾱ_t) x_t;
- ``sample``: ε̂ = (x_t − √ᾱ_t x̂0) / √(1−ᾱ_t).

Models that also predict a variance (``out_channels == 2·in_channels``) keep the first half.
``from_pretrained(path)`` reads a local folder only (never the network).

A zero-terminal-SNR config (``rescale_betas_zero_snr=True``, ᾱ_{T−1} = 0) gets ᾱ_{T−1} = 2**-24, as diffusers'
Euler and DPM-Solver schedulers set it (half ᾱ_{T−2} where that is smaller, so the table still decreases), and
every solver can form x̂0 there (a step from T−1 then differs from DDIMScheduler's, which keeps 0, by about
√ᾱ_{T−1}); it needs ``v_prediction`` or ``sample`` (an ε-prediction model gives no x̂0 at zero SNR: refused).

A class-conditional UNet (``num_class_embeds`` or ``class_embed_type`` in its config) takes its labels as
``class_labels=`` (1 | B,) integers; a UNet with an ``addition_embed_type`` (SDXL) needs ``added_cond_kwargs``,
not passed here, and is refused.

``clip_sample`` / ``thresholding`` of the config (with ``clip_sample_range``, ``sample_max_value``,
``dynamic_thresholding_ratio``) are honoured as diffusers applies them to x̂0
(:mod:`diffsolve.models.x0_clip`); the returned ε̂ is then the one consistent with the processed x̂0,
ε̂ = (x_t − √ᾱ_t x̂0)/√(1−ᾱ_t) — diffusers' ``use_clipped_model_output=True``, and exactly diffusers'
DDPM step. Pass ``clip_sample=False`` (and ``thresholding=False``) to run the raw model.
``x0_and_eps(x, t)`` returns (the processed x̂0, the raw model's ε̂) from one model call, and
``clipped_model_output`` says which one the config's scheduler puts in DDIM's direction term:
False for the DDIM schedulers (``DDIMScheduler.step``'s default: clip(x̂0) in the mean, the raw ε̂ in
the direction), True otherwise (DDPM: x̂0 alone). ``diffsolve.solvers.ddim`` follows it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from ..kernels._checks import check_device, plain_number
from ..schedules import alphas_cumprod_from_config, final_alpha_cumprod_from_config, zero_snr_patched
from .denoiser import check_sample_shape, check_timesteps, timestep_alphas
from .x0_clip import X0Clip, clipped_epsilon, to_x0

__all__ = ["DiffusersDenoiser", "check_guidance_scale", "check_torch_dtype", "to_epsilon"]

_PREDICTIONS = ("epsilon", "v_prediction", "sample")
# the weight files diffusers' ModelMixin.from_pretrained reads from a local folder (no variant)
_WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json",
                 "diffusion_pytorch_model.bin", "diffusion_pytorch_model.bin.index.json")
_RESAVE = "re-save the model with save_pretrained or download it again"


def _variant_name(name: str, variant: str) -> str:
    """diffusers' ``_add_variant``: ``diffusion_pytorch_model.safetensors`` -> ``...model.fp16.safetensors``."""
    parts = name.split(".")
    return ".".join(parts[:-1] + [variant] + parts[-1:])


def _variants(unet_dir: Path) -> list[str]:
    """The variants (``fp16``, ``ema``, ...) whose weight files lie in ``unet_dir``, sorted."""
    found = set()
    for path in unet_dir.iterdir():
        for name in _WEIGHT_FILES:
            head, ext = name.rsplit(".", 1)
            if path.name.startswith(head + ".") and path.name.endswith("." + ext):
                middle = path.name[len(head) + 1: -len(ext) - 1]
                if middle and "." not in middle and "-of-" not in middle:
                    found.add(middle)
    return sorted(found)


def _read_json(path: Path) -> dict[str, Any]:
    """A config file as a dict; a one-line ValueError naming the file when it is not a JSON object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not a text JSON file ({err.reason}); {_RESAVE}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err.msg} at line {err.lineno} column {err.colno}); "
                         f"{_RESAVE}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object (a config), got a {type(data).__name__}; {_RESAVE}")
    return data


def _weights_file(unet_dir: Path, variant: str | None) -> tuple[Path, str | None]:
    """(the weights diffusers will read from ``unet_dir``, the variant to ask for). Without ``variant``, a folder
    holding one variant only (``save_pretrained(variant="fp16")``) loads it; FileNotFoundError naming the folder if
    there are no weights, or several variants and none chosen."""
    names = _WEIGHT_FILES if variant is None else tuple(_variant_name(n, variant) for n in _WEIGHT_FILES)
    for name in names:
        if (unet_dir / name).is_file():
            return unet_dir / name, variant
    found = _variants(unet_dir)
    if variant is None and len(found) == 1:
        return _weights_file(unet_dir, found[0])
    if found:
        chosen = "" if variant is None else f"no variant={variant!r} weights but "
        raise FileNotFoundError(f"{unet_dir} has {chosen}the weight variants {found}; pass variant= one of them "
                                f"(from_pretrained(path, variant={found[0]!r}))")
    raise FileNotFoundError(f"{unet_dir} has a config.json but no weights (expected one of {', '.join(names)});"
                            f" {_RESAVE}")


def check_guidance_scale(value: object) -> float:
    """The CFG weight w as a float: a real number (a NumPy scalar too), finite; a bool or a string is refused."""
    value = plain_number(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"guidance_scale must be a real number (the CFG weight w, e.g. 7.5; w ≤ 1 turns guidance off), "
                        f"got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"guidance_scale must be finite (every ε̂ would be NaN/Inf), got {value!r}; give the CFG "
                         "weight w as a finite number, e.g. 7.5 (w ≤ 1 turns guidance off)")
    return float(value)


def check_torch_dtype(torch_dtype: object) -> torch.dtype | None:
    """``torch_dtype`` as a floating torch.dtype (None: the weights' own); a string such as "float16" is refused
    with the torch.dtype to pass (diffusers would only log it and load float32 weights)."""
    if torch_dtype is None:
        return None
    if isinstance(torch_dtype, str):
        name = torch_dtype.removeprefix("torch.")
        fix = f"torch_dtype=torch.{name}" if isinstance(getattr(torch, name, None), torch.dtype) else \
            "torch_dtype=torch.float32 (or torch.float16)"
        raise TypeError(f"torch_dtype must be a floating torch.dtype, got the string {torch_dtype!r}; pass {fix}")
    if not isinstance(torch_dtype, torch.dtype) or not torch_dtype.is_floating_point:
        raise TypeError(f"torch_dtype must be a floating torch.dtype (torch.float32, torch.float16, torch.bfloat16, "
                        f"torch.float64), got {torch_dtype!r}")
    return torch_dtype


def _unet_kind(unet: torch.nn.Module) -> str | None:
    """"UNet2DConditionModel" or "UNet2DModel" when ``unet`` is (a subclass of) that diffusers class, else None."""
    for cls in type(unet).__mro__:
        if cls.__name__ in ("UNet2DConditionModel", "UNet2DModel") and cls.__module__.startswith("diffusers"):
            return cls.__name__
    return None


def check_states(name: str, value: object, width: object, fix: str = "") -> torch.Tensor:
    """Encoder states: a finite floating (1 | B, L, D) tensor, D = ``width`` (the UNet's ``cross_attention_dim``)
    when that is an int; nothing is cast. ``fix``: how to get such states, appended to a width error."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a floating (1|B, L, D) torch.Tensor (text-encoder hidden states), got "
                        f"{type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating (1|B, L, D) tensor, got dtype {value.dtype}; text-encoder states "
                        f"are floats (nothing is cast silently): pass {name}.float() if these are the states you mean")
    if value.dim() == 2:
        raise ValueError(f"{name} has shape {tuple(value.shape)}, read as (L, D) with no batch dimension; add it: "
                         f"{name}[None] of shape {(1, *value.shape)}")
    if value.dim() != 3 or value.numel() == 0:
        raise ValueError(f"{name} must have shape (1|B, L, D) with positive sizes, got {tuple(value.shape)}")
    if isinstance(width, int) and not isinstance(width, bool) and value.shape[-1] != width:
        raise ValueError(f"{name} has width D = {value.shape[-1]} but the UNet's cross_attention_dim is {width}; "
                         f"give states from the text encoder the UNet was trained with{fix}")
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} must be finite, got NaN/Inf entries; check the text encoder's output")
    return value


def _check_state_pair(cond: torch.Tensor, neg: torch.Tensor, names: tuple[str, str]) -> None:
    """CFG runs both branches in one batch: the same L, and batch sizes 1 or one common B."""
    if neg.shape[1] != cond.shape[1]:
        raise ValueError(f"{names[1]} has L = {neg.shape[1]} tokens but {names[0]} has L = {cond.shape[1]}; both go "
                         "through the UNet in one batch: encode them with the same tokenizer padding "
                         "(padding='max_length')")
    if neg.shape[0] != cond.shape[0] and 1 not in (neg.shape[0], cond.shape[0]):
        raise ValueError(f"{names[1]} has batch {neg.shape[0]} and {names[0]} batch {cond.shape[0]}; give each "
                         "batch 1 (shared by all samples) or the same B")


def to_epsilon(output: torch.Tensor, x: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """The model output as ε̂ (module docstring); alpha_bar (B,) ᾱ_t, output and x (B, ...)."""
    if prediction_type == "epsilon":
        return output
    a = alpha_bar.reshape(-1, *([1] * (x.dim() - 1)))
    if prediction_type == "v_prediction":
        return a.sqrt() * output + (1 - a).sqrt() * x
    if prediction_type == "sample":
        return (x - a.sqrt() * output) / (1 - a).sqrt()
    raise ValueError(f"prediction_type must be one of {_PREDICTIONS}, got {prediction_type!r}")


def _scheduler_class(scheduler_or_config: Any, cfg: dict[str, Any]) -> str | None:
    """The scheduler's class name: the config's ``_class_name`` (a saved config), else the object's type
    when a scheduler was passed; None for a bare mapping without one."""
    name = cfg.get("_class_name")
    if isinstance(name, str):
        return name
    if hasattr(scheduler_or_config, "config"):
        return type(scheduler_or_config).__name__
    return None


def _clipped_model_output(class_name: str | None, cfg: dict[str, Any]) -> bool:
    """Which ε̂ the scheduler's step puts in DDIM's direction term when x̂0 is clipped (module docstring):
    False for DDIM schedulers (``use_clipped_model_output=False`` default), True otherwise. Without a
    class name, a DDIM config is told by its keys (``set_alpha_to_one`` without DDPM's ``variance_type``)."""
    if class_name is not None:
        return "DDIM" not in class_name
    return not ("set_alpha_to_one" in cfg and "variance_type" not in cfg)


def _scheduler_config(scheduler_or_config: Any) -> dict[str, Any]:
    cfg = getattr(scheduler_or_config, "config", scheduler_or_config)
    if not hasattr(cfg, "get") or not hasattr(cfg, "items"):
        raise TypeError("scheduler_or_config must be a diffusers scheduler or its config (a mapping), "
                        f"got {type(scheduler_or_config).__name__}")
    return dict(cfg.items())


def _check_class_labels(labels: Any, ucfg: Any) -> torch.Tensor | None:
    """``class_labels`` as a (1 | B,) int64 tensor where the UNet's config is class-conditional; None elsewhere."""
    get = ucfg.get if hasattr(ucfg, "get") else (lambda key: None)
    classes, embed = get("num_class_embeds"), get("class_embed_type")
    if classes is None and embed is None:
        if labels is not None:
            raise ValueError("class_labels given but the UNet is not class-conditional (its config has no "
                             "num_class_embeds or class_embed_type); leave class_labels out")
        return None
    kind = f"num_class_embeds={classes}" if classes is not None else f"class_embed_type={embed!r}"
    if labels is None:
        raise ValueError(f"the UNet is class-conditional ({kind}): pass class_labels= a (1 | B,) integer tensor "
                         "(one label for every sample, or one per sample)")
    if not isinstance(labels, torch.Tensor) or labels.dim() < 1 or labels.numel() < 1 or (
            classes is not None and labels.dim() != 1):
        shown = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise TypeError(f"class_labels must be a (1 | B,) tensor, got {shown}; e.g. torch.tensor([3])")
    if classes is not None:
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise TypeError(f"class_labels must be integers for {kind}, got dtype {labels.dtype}")
        if labels.device.type == "cpu" and not (int(labels.min()) >= 0 and int(labels.max()) < int(classes)):
            raise ValueError(f"class_labels must lie in [0, {int(classes) - 1}] ({kind}), got {labels.tolist()}")
        return labels.long()
    return labels


def _working(x: object) -> torch.Tensor:
    """x for the ε̂ arithmetic: a floating tensor, float16/bfloat16 as float32; an int or bool x is a TypeError."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a floating torch.Tensor (B, C, H, W), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating tensor (B, C, H, W), got dtype {x.dtype}; convert it with x.float() "
                        "(nothing is cast silently)")
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class DiffusersDenoiser(torch.nn.Module):
    """ε̂(x, t) from a diffusers UNet and the scheduler config it was trained with.

    Args:
        unet: ``UNet2DModel`` or ``UNet2DConditionModel`` (any module whose forward is
            ``unet(x, t, [encoder_hidden_states=...]).sample``).
        scheduler_or_config: the training scheduler (or its config): gives ``alphas_cumprod``,
            ``final_alpha_cumprod`` (``set_alpha_to_one``) and ``prediction_type``.
        encoder_hidden_states: (1 | B, L, D) conditioning for ``UNet2DConditionModel``.
        negative_encoder_hidden_states: (1 | B, L, D) unconditional states for CFG.
        guidance_scale: CFG weight w: ε̂_u + w (ε̂_c − ε̂_u) for w > 1; w ≤ 1 (default 1) runs the conditional
            branch only, as diffusers' pipelines do (``guidance_scale > 1`` turns guidance on; SD-Turbo's 0.0).
        prediction_type: overrides the config's.
        clip_sample, thresholding: override the config's x̂0 clip / dynamic thresholding (None: the
            config's; module docstring). ``self.x0_clip`` holds what is applied.
        class_labels: (1 | B,) integer labels for a class-conditional UNet (required there, refused elsewhere).

    Attributes: ``scheduler_class`` (the config's scheduler class name, None if unknown) and
    ``clipped_model_output`` (which ε̂ a DDIM step uses with a clipped x̂0; module docstring).
    """

    def __init__(self, unet: torch.nn.Module, scheduler_or_config: Any, *,
                 encoder_hidden_states: torch.Tensor | None = None,
                 negative_encoder_hidden_states: torch.Tensor | None = None,
                 guidance_scale: float = 1.0, prediction_type: str | None = None,
                 clip_sample: bool | None = None, thresholding: bool | None = None,
                 class_labels: torch.Tensor | None = None) -> None:
        super().__init__()
        if not isinstance(unet, torch.nn.Module):
            raise TypeError(f"unet must be a diffusers UNet (torch.nn.Module), got {type(unet).__name__}")
        cfg = _scheduler_config(scheduler_or_config)
        self.unet = unet
        self.scheduler_config = cfg
        pred = prediction_type or cfg.get("prediction_type", "epsilon")
        if pred not in _PREDICTIONS:
            raise ValueError(f"prediction_type must be one of {_PREDICTIONS}, got {pred!r}")
        self.prediction_type = pred
        table = zero_snr_patched(alphas_cumprod_from_config(cfg), pred)  # rescale_betas_zero_snr (module docstring)
        self.register_buffer("alphas_cumprod", table, persistent=False)
        self.final_alpha_cumprod = final_alpha_cumprod_from_config(cfg, table)
        self.x0_clip = X0Clip.from_config(cfg, clip_sample=clip_sample, thresholding=thresholding)
        self.scheduler_class = _scheduler_class(scheduler_or_config, cfg)
        self.clipped_model_output = _clipped_model_output(self.scheduler_class, cfg)
        guidance_scale = check_guidance_scale(guidance_scale)
        if guidance_scale > 1.0 and negative_encoder_hidden_states is None:
            raise ValueError(f"guidance_scale={guidance_scale} needs negative_encoder_hidden_states "
                             "(the unconditional embedding) for classifier-free guidance")
        if negative_encoder_hidden_states is not None and encoder_hidden_states is None:
            raise ValueError("negative_encoder_hidden_states given without encoder_hidden_states")
        ucfg = getattr(unet, "config", {})
        kind = _unet_kind(unet)
        if kind == "UNet2DModel" and encoder_hidden_states is not None:
            raise ValueError("encoder_hidden_states given but the UNet is an unconditional UNet2DModel (it takes no "
                             "text conditioning); leave encoder_hidden_states and negative_encoder_hidden_states out")
        if kind == "UNet2DConditionModel" and encoder_hidden_states is None:
            raise ValueError("the UNet is a text-conditioned UNet2DConditionModel: pass encoder_hidden_states= its "
                             "(1|B, L, D) text-encoder states, or load the whole folder with "
                             "diffsolve.models.latent_folder.load_latent_diffusion(path, prompt=...)")
        width = ucfg.get("cross_attention_dim") if hasattr(ucfg, "get") else None
        if encoder_hidden_states is not None:
            check_states("encoder_hidden_states", encoder_hidden_states, width)
        if negative_encoder_hidden_states is not None:
            check_states("negative_encoder_hidden_states", negative_encoder_hidden_states, width)
            _check_state_pair(encoder_hidden_states, negative_encoder_hidden_states,
                              ("encoder_hidden_states", "negative_encoder_hidden_states"))
        self.encoder_hidden_states = encoder_hidden_states
        self.negative_encoder_hidden_states = negative_encoder_hidden_states
        self.guidance_scale = guidance_scale
        self.class_labels = _check_class_labels(class_labels, ucfg)
        extra = ucfg.get("addition_embed_type") if hasattr(ucfg, "get") else None
        if extra is not None:  # SDXL's text_time, Kandinsky's image / text_image: inputs this wrapper does not pass
            raise ValueError(f"the UNet's config has addition_embed_type={extra!r}: it needs added_cond_kwargs, which "
                             "DiffusersDenoiser does not pass; wrap it in a torch.nn.Module whose forward(x, t, "
                             "encoder_hidden_states=...) adds them")
        channels = ucfg.get("in_channels") if hasattr(ucfg, "get") else None
        self.sample_shape = None if channels is None else (int(channels), None, None)
        blocks = ucfg.get("block_out_channels") if hasattr(ucfg, "get") else None
        self.spatial_multiple = 2 ** (len(blocks) - 1) if blocks else 1

    @classmethod
    def from_pretrained(cls, path: str | Path, *, torch_dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None, variant: str | None = None,
                        scheduler_or_config: Any = None, **kwargs: Any) -> "DiffusersDenoiser":
        """Load a local diffusers folder: a pipeline (``unet/`` + ``scheduler/``) or a model folder
        holding ``config.json`` and ``scheduler_config.json``. ``kwargs`` go to the constructor.

        ``variant``: the weight files' variant (``fp16`` for ``diffusion_pytorch_model.fp16.safetensors``); None
        takes the plain files, else the one variant the folder holds. ``scheduler_or_config``: the training
        scheduler (or its config) for a folder without one, e.g. a bare ``unet.save_pretrained`` folder.
        """
        root = Path(path)
        if not root.is_dir():
            raise ValueError(f"path must be a local diffusers folder, got {str(path)!r} (not a directory); "
                             "download the model first, diffsolve never reaches the network")
        device = check_device(device)  # before any file is read: 'mps', 'banana', CUDA without a GPU
        torch_dtype = check_torch_dtype(torch_dtype)  # "float16" would load float32 weights with a log line only
        if variant is not None and (not isinstance(variant, str) or not variant or "." in variant):
            raise ValueError(f"variant must be a weight-file variant such as 'fp16', got {variant!r}")
        if (root / "unet" / "config.json").is_file():
            unet_dir, sched_file = root / "unet", root / "scheduler" / "scheduler_config.json"
        else:
            unet_dir, sched_file = root, root / "scheduler_config.json"
        if not (unet_dir / "config.json").is_file():
            raise ValueError(f"{root} holds neither unet/config.json + scheduler/scheduler_config.json "
                             "nor config.json + scheduler_config.json")
        if scheduler_or_config is None and not sched_file.is_file():
            raise ValueError(f"{root} has the model's config but no {sched_file.relative_to(root)} (the training "
                             "scheduler); pass scheduler_or_config= (the scheduler the model was trained with, or its "
                             f"config), or save it there with scheduler.save_pretrained('{sched_file.parent}')")
        import diffusers

        unet_cfg = _read_json(unet_dir / "config.json")
        sched_cfg = scheduler_or_config if scheduler_or_config is not None else _read_json(sched_file)
        _scheduler_config(sched_cfg)  # a wrong type is refused before the weights load
        class_name = unet_cfg.get("_class_name", "UNet2DModel")
        if class_name not in ("UNet2DModel", "UNet2DConditionModel"):
            raise ValueError(f"{unet_dir / 'config.json'}: unsupported model class {class_name!r}; "
                             "expected UNet2DModel or UNet2DConditionModel")
        if class_name == "UNet2DConditionModel" and kwargs.get("encoder_hidden_states") is None:
            raise ValueError(f"{unet_dir} holds a text-conditioned UNet2DConditionModel: pass encoder_hidden_states="
                             "(1|B, L, D), or load the whole folder (unet/, vae/, text encoder) with "
                             "diffsolve.models.latent_folder.load_latent_diffusion(path, prompt=...)")
        weights, variant = _weights_file(unet_dir, variant)
        try:
            unet = getattr(diffusers, class_name).from_pretrained(unet_dir, local_files_only=True,
                                                                  torch_dtype=torch_dtype, variant=variant)
        except OSError as err:  # diffusers wraps an unreadable (corrupt, truncated) weights file in OSError
            raise ValueError(f"{weights} cannot be read as {class_name} weights (the file is corrupt or truncated: "
                             f"{type(err).__name__} from diffusers); {_RESAVE}") from None
        except RuntimeError as err:  # load_state_dict: the weights do not fit the architecture of config.json
            first = str(err).strip().splitlines()
            detail = " ".join(line.strip() for line in first[:2])
            raise ValueError(f"{weights} does not match {unet_dir / 'config.json'} ({detail[:300]}); "
                             "use the config.json saved with these weights, or " + _RESAVE) from None
        if device is not None:
            unet = unet.to(device)
        unet.eval()
        return cls(unet, sched_cfg, **kwargs)

    def _unet(self, x: torch.Tensor, t: torch.Tensor, states: torch.Tensor | None,
              labels: torch.Tensor | None = None) -> torch.Tensor:
        extra = {} if labels is None else {"class_labels": labels}
        if states is None:
            out = self.unet(x, t, **extra)
        else:
            out = self.unet(x, t, encoder_hidden_states=states, **extra)
        out = out.sample if hasattr(out, "sample") else out[0]
        if out.shape[1] == 2 * x.shape[1]:  # learned variance: keep the mean prediction
            out = out[:, : x.shape[1]]
        return out

    @staticmethod
    def _batched(states: torch.Tensor, batch: int, name: str = "encoder states") -> torch.Tensor:
        if states.shape[0] == batch:
            return states
        if states.shape[0] == 1:
            return states.expand(batch, *states.shape[1:])
        raise ValueError(f"{name} have batch {states.shape[0]}, expected 1 or {batch}")

    def forward(self, x: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """ε̂ (B, C, H, W) in x's dtype; x (B, C, H, W) floating, t (B,) int64 training timesteps (or an int).
        Half-precision x: the ᾱ_t arithmetic runs in float32 (float16 rounds ᾱ_t near 1 to 1), ε̂ is cast at the end."""
        xw = _working(x)
        out, t = self._output(xw, t)
        if self.x0_clip.active:
            eps = clipped_epsilon(out, xw, timestep_alphas(self.alphas_cumprod, t, xw), self.prediction_type,
                                  self.x0_clip)
        elif self.prediction_type == "epsilon":
            eps = out
        else:
            eps = to_epsilon(out, xw, timestep_alphas(self.alphas_cumprod, t, xw), self.prediction_type)
        return eps.to(x.dtype)

    def x0_and_eps(self, x: torch.Tensor, t: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
        """(the processed x̂0, the raw model's ε̂) from one model call, shapes as ``forward``: what
        ``DDIMScheduler.step`` combines by default. The x̂0 itself, not an ε̂ recomputed from it, so a step
        need not divide by √ᾱ_t again (float32 round-off × 1/√ᾱ_t ≈ 160 at t = T − 1)."""
        xw = _working(x)
        out, t = self._output(xw, t)
        alpha = timestep_alphas(self.alphas_cumprod, t, xw)
        x0 = self.x0_clip(to_x0(out, xw, alpha, self.prediction_type))
        eps = out if self.prediction_type == "epsilon" else to_epsilon(out, xw, alpha, self.prediction_type)
        return x0.to(x.dtype), eps.to(x.dtype)

    def _moved(self, value: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """``value`` on ``device`` in ``dtype``, copied once (not at every model call: a host-to-device copy of CPU
        labels or states would wait inside the sampling loop); a replaced attribute gets a fresh copy."""
        cache = self.__dict__.setdefault("_moved_cache", {})
        key = (id(value), device, dtype)
        if key not in cache or cache[key][0] is not value:
            cache[key] = (value, value.to(device=device, dtype=dtype))
        return cache[key][1]

    def _output(self, x: torch.Tensor, t: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
        """The model output (B, C, H, W) in x's dtype (CFG applied) and the checked (B,) timesteps."""
        if x.dim() != 4:
            raise ValueError(f"x must be (B, C, H, W), got shape {tuple(x.shape)}; add the batch axis with x[None]")
        check_sample_shape(self, tuple(x.shape), "x")  # channels and side multiple, named (not the UNet's raw error)
        batch = x.shape[0]
        dtype = next(self.unet.parameters()).dtype
        t = check_timesteps(t, self.alphas_cumprod.numel(), x)  # ints in [0, T): 5000, -1, 5.5 are errors
        xin = x.to(dtype)
        labels = self.class_labels
        if labels is not None:
            labels = self._batched(self._moved(labels, x.device, labels.dtype), batch, "class_labels")
        cond = self.encoder_hidden_states
        if cond is not None:
            cond = self._batched(self._moved(cond, x.device, dtype), batch)
        if self.negative_encoder_hidden_states is not None and self.guidance_scale > 1.0:  # diffusers' rule
            neg = self._batched(self._moved(self.negative_encoder_hidden_states, x.device, dtype), batch)
            both = self._unet(torch.cat([xin, xin]), torch.cat([t, t]), torch.cat([neg, cond]),
                              None if labels is None else torch.cat([labels, labels]))
            out_u, out_c = both.chunk(2)
            out = out_u + self.guidance_scale * (out_c - out_u)
        else:
            out = self._unet(xin, t, cond, labels)
        return out.to(x.dtype), t
