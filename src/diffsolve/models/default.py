"""The models shipped inside the package: ``load_default(name)`` -> :class:`DiffusersDenoiser`.

- ``"digits16"``: (B, 1, 16, 16) handwritten digits (scikit-learn's, upsampled); held-out split in
  ``weights/digits16/split.json``.
- ``"patches"``: (B, 3, H, W) natural-image prior, fully convolutional, H and W divisible by 8 (other sizes:
  wrap it in :class:`~diffsolve.models.PaddedDenoiser`), trained on 64×64 crops of scikit-image / scikit-learn
  photos (not the bundled demo photos).

Both are DDPM ε-predictors (linear β, T = 1000) trained by ``python -m diffsolve.models.train``; each
folder's TRAINING.md says how. The weights are fp16 safetensors, loaded in ``torch_dtype``
(float32 by default).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import torch

from ..kernels._checks import check_device
from .diffusers_adapter import DiffusersDenoiser

__all__ = ["DEFAULT_MODELS", "default_model_info", "default_model_path", "load_default"]

DEFAULT_MODELS = ("digits16", "patches")


def default_model_path(name: str) -> Path:
    """The folder of shipped model ``name`` (a diffusers DDPMPipeline layout)."""
    if name not in DEFAULT_MODELS:
        raise ValueError(f"name must be one of {DEFAULT_MODELS}, got {name!r}")
    path = Path(str(resources.files("diffsolve.models").joinpath("weights", name)))
    if not (path / "unet" / "config.json").is_file():
        raise FileNotFoundError(f"shipped model {name!r} is missing from {path}; reinstall diffsolve")
    return path


def default_model_info(name: str) -> dict:
    """Size, parameter count, sample shape and training summary of shipped model ``name``."""
    path = default_model_path(name)
    files = [p for p in path.rglob("*") if p.is_file()]
    cfg = json.loads((path / "unet" / "config.json").read_text())
    train = path / "training.json"
    summary = json.loads(train.read_text()) if train.is_file() else {}
    return {
        "name": name,
        "path": str(path),
        "bytes": sum(p.stat().st_size for p in files),
        "in_channels": cfg["in_channels"],
        "sample_size": cfg["sample_size"],
        "params": summary.get("params"),
        "steps": summary.get("steps_done"),
        "device": summary.get("device"),
    }


def load_default(name: str, *, device: str | torch.device | None = None,
                 torch_dtype: torch.dtype = torch.float32) -> DiffusersDenoiser:
    """Load shipped model ``name`` ("digits16" or "patches") as an ε̂(x, t) denoiser, offline."""
    if not isinstance(torch_dtype, torch.dtype):
        raise TypeError(f"torch_dtype must be a torch.dtype, got {type(torch_dtype).__name__}")
    if torch_dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise TypeError(f"torch_dtype must be a floating dtype (float32 by default), got {torch_dtype}")
    check_device(device)
    path = default_model_path(name)
    from diffusers.utils import logging as dlog

    level = dlog.get_verbosity()
    dlog.set_verbosity_error()  # silence the "install accelerate" advice: the models are tiny
    try:
        return DiffusersDenoiser.from_pretrained(path, torch_dtype=torch_dtype, device=device)
    finally:
        dlog.set_verbosity(level)
