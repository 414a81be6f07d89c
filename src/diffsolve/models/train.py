"""Train the two shipped default models (``python -m diffsolve.models.train {digits16,patches} --out DIR``).

Both are diffusers ``UNet2DModel`` ε-predictors trained as in DDPM (Ho et al. 2020, Alg. 1):
linear β from 1e-4 to 0.02 over T = 1000 steps, x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε, loss ‖ε − ε_θ(x_t, t)‖²
(plain MSE), AdamW, cosine learning rate after a linear warm-up, and an EMA of the weights, which is
what is saved (fp16 safetensors, DDPMPipeline folder layout: ``unet/``, ``scheduler/``).

- ``digits16``: scikit-learn's 1797 8×8 digits, bilinearly upsampled to 16×16, in [−1, 1],
  shape (N, 1, 16, 16). 360 of them, drawn by ``numpy.random.default_rng(split_seed)``, are held
  out and never trained on (indices in ``split.json``).
- ``patches``: random 64×64 crops, shape (N, 3, 64, 64), of the colour photos scikit-image and
  scikit-learn ship, at scales 1, 1/2, 1/3, 1/4, with the 8 flips/rotations; ``chelsea`` and
  ``coffee`` are held out. No attention layer, so the model runs at any size divisible by 8.

``python -m diffsolve.models.train bundle`` writes the demo files of ``diffsolve/data``. Training needs
scikit-learn and scikit-image (the ``train`` extra). Under a seed the run is deterministic on the
CPU; on CUDA it is as deterministic as cuDNN allows (deterministic algorithms are requested).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:  # diffusers loads on first use
    from diffusers import DDPMScheduler, UNet2DModel

__all__ = [
    "DIGITS_HELDOUT",
    "HELDOUT_PHOTOS",
    "TRAIN_PHOTOS",
    "digits16_data",
    "digits16_unet",
    "main",
    "patches_unet",
    "photo_arrays",
    "train",
]

DIGITS_HELDOUT = 360
HELDOUT_PHOTOS = ("chelsea", "coffee")
#: photos kept out of training and out of every tuning run (the benchmarks' held-out set): skimage's camera
#: and grass (CC0, grey), matplotlib's sample grace_hopper.jpg (US Navy photograph, public domain) and SciPy's
#: raccoon face (public domain; ``scipy.datasets.face``, ``scipy.misc.face`` before SciPy 1.10)
BENCHMARK_PHOTOS = ("camera", "grass", "hopper", "raccoon")
# skimage.data names (stereo_motorcycle gives two views) and sklearn sample images; skimage's
# "cat" is chelsea and is left out with it.
TRAIN_PHOTOS = (
    "astronaut", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
    "stereo_motorcycle", "china.jpg", "flower.jpg",
)  # fmt: skip
PATCH = 64
SCALES = (1.0, 1 / 2, 1 / 3, 1 / 4)

# Defaults sized for about an hour on 2 CPU cores; the shipped weights were trained on a GPU with
# more steps (see each TRAINING.md for the exact command).
DEFAULTS = {
    "digits16": dict(steps=6000, batch_size=64, lr=5e-4, ema_decay=0.999, warmup=300),
    "patches": dict(steps=2500, batch_size=16, lr=3e-4, ema_decay=0.999, warmup=200),
}


# --------------------------------------------------------------------------- models


def digits16_unet() -> UNet2DModel:
    """UNet2DModel for (B, 1, 16, 16): 32/64/64 channels, self-attention at 8×8 and 4×4 (mid)."""
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=16, in_channels=1, out_channels=1, block_out_channels=(32, 64, 64),
        layers_per_block=1, norm_num_groups=16, attention_head_dim=32,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    )  # fmt: skip


def patches_unet() -> UNet2DModel:
    """Fully convolutional UNet2DModel for (B, 3, H, W), H and W divisible by 8: 32/64/96/128."""
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=PATCH, in_channels=3, out_channels=3, block_out_channels=(32, 64, 96, 128),
        layers_per_block=1, norm_num_groups=16, add_attention=False,
        down_block_types=("DownBlock2D",) * 4, up_block_types=("UpBlock2D",) * 4,
    )  # fmt: skip


def ddpm_scheduler() -> DDPMScheduler:
    """The training noise schedule: DDPM, linear β ∈ [1e-4, 0.02], T = 1000, ε-prediction."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
        prediction_type="epsilon", clip_sample=True,
    )  # fmt: skip


# --------------------------------------------------------------------------- data


def digits16_data(split_seed: int = 0) -> dict:
    """sklearn digits upsampled to (N, 1, 16, 16) in [−1, 1], split into train and held-out."""
    from sklearn.datasets import load_digits

    images = torch.from_numpy(load_digits().images.astype(np.float32) / 16.0)[:, None]
    x = F.interpolate(images, size=(16, 16), mode="bilinear", align_corners=False) * 2 - 1
    perm = np.random.default_rng(split_seed).permutation(len(x))
    heldout = np.sort(perm[:DIGITS_HELDOUT])
    train_idx = np.sort(perm[DIGITS_HELDOUT:])
    return {
        "train": x[train_idx], "heldout": x[heldout],
        "train_idx": train_idx.tolist(), "heldout_idx": heldout.tolist(), "split_seed": split_seed,
    }  # fmt: skip


def _load_photo(name: str, cache: dict | None = None) -> list[np.ndarray]:
    """One named photo (two for stereo_motorcycle) as (H, W, 3) uint8, from ``cache`` if given."""
    if cache is not None:
        return [cache[k] for k in sorted(cache) if k == name or k.startswith(name + "#")]
    if name.endswith(".jpg"):
        from sklearn.datasets import load_sample_image

        return [load_sample_image(name)]
    if name == "hopper":
        import matplotlib.cbook

        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
            from PIL import Image

            return [np.asarray(Image.open(f).convert("RGB"))]
    if name == "raccoon":  # SciPy's face: scipy.datasets (fetched by pooch) from SciPy 1.10, scipy.misc before
        try:
            from scipy.datasets import face
        except ImportError:
            from scipy.misc import face
        return [np.asarray(face())]
    import skimage.data

    img = getattr(skimage.data, name)()
    imgs = list(img[:2]) if isinstance(img, tuple) else [img]
    return [np.repeat(im[..., None], 3, axis=2) if im.ndim == 2 else im[..., :3] for im in imgs]


def photo_arrays(names: Sequence[str] = TRAIN_PHOTOS, cache: str | None = None) -> list[np.ndarray]:
    """The photos as (H, W, 3) uint8 arrays; ``cache`` is an .npz written by ``--save-photos``."""
    loaded = None
    if cache is not None:
        with np.load(cache) as z:
            loaded = {k: z[k] for k in z.files}
    return [im for name in names for im in _load_photo(name, loaded)]


def save_photo_cache(path: str | Path) -> None:
    """Write every training and held-out photo to one .npz (for machines without the packages)."""
    arrays = {}
    for name in TRAIN_PHOTOS + HELDOUT_PHOTOS:
        imgs = _load_photo(name)
        for i, im in enumerate(imgs):
            arrays[name if len(imgs) == 1 else f"{name}#{i}"] = im
    np.savez_compressed(path, **arrays)


def _resize(img: torch.Tensor, scale: float) -> torch.Tensor:
    """(3, H, W) float in [0, 255] -> antialiased bilinear resize by ``scale``."""
    if scale == 1.0:
        return img
    h, w = (round(s * scale) for s in img.shape[-2:])
    return F.interpolate(img[None], size=(h, w), mode="bilinear", antialias=True)[0]


def crop_bank(photos: list[np.ndarray], count: int, gen: torch.Generator) -> torch.Tensor:
    """``count`` random (3, 64, 64) uint8 crops: photo and scale uniform, position uniform."""
    levels = []
    for arr in photos:
        img = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).float()
        per = [_resize(img, s) for s in SCALES]
        levels.append([lv.round().clamp(0, 255).to(torch.uint8) for lv in per if min(lv.shape[-2:]) >= PATCH])
    bank = torch.empty(count, 3, PATCH, PATCH, dtype=torch.uint8)
    pick = torch.randint(0, len(levels), (count,), generator=gen)
    u = torch.rand(count, 3, generator=gen, dtype=torch.float64)
    for n in range(count):
        lv = levels[int(pick[n])]
        img = lv[int(u[n, 0] * len(lv))]
        top = int(u[n, 1] * (img.shape[-2] - PATCH + 1))
        left = int(u[n, 2] * (img.shape[-1] - PATCH + 1))
        bank[n] = img[:, top : top + PATCH, left : left + PATCH]
    return bank


def dihedral(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Apply one of the 8 flips/rotations to each sample of (B, C, S, S), chosen per sample."""
    b = torch.randint(0, 2, (3, x.shape[0], 1, 1, 1), generator=gen, device=x.device).bool()
    x = torch.where(b[0], x.flip(-1), x)
    x = torch.where(b[1], x.flip(-2), x)
    return torch.where(b[2], x.transpose(-1, -2), x)


# --------------------------------------------------------------------------- training


def _ema_update(ema: list[torch.Tensor], params: list[torch.Tensor], decay: float) -> None:
    torch._foreach_lerp_(ema, params, 1.0 - decay)


@torch.no_grad()
def eps_mse(unet: UNet2DModel, x0: torch.Tensor, alphas_cumprod: torch.Tensor, seed: int, batch: int = 256) -> float:
    """Mean ε-prediction MSE of ``unet`` on ``x0`` over 10 fixed timesteps (fixed noise)."""
    gen = torch.Generator(x0.device).manual_seed(seed)
    total, count = 0.0, 0
    for t in torch.linspace(50, 950, 10).long().tolist():
        for i in range(0, len(x0), batch):
            x = x0[i : i + batch]
            eps = torch.randn(x.shape, generator=gen, device=x.device)
            ab = alphas_cumprod[t]
            xt = ab.sqrt() * x + (1 - ab).sqrt() * eps
            tt = torch.full((len(x),), t, device=x.device)
            total += F.mse_loss(unet(xt, tt).sample, eps, reduction="sum").item()
            count += eps.numel()
    return total / count


def train(
    name: str, out: str | Path, *, steps: int | None = None, batch_size: int | None = None,
    lr: float | None = None, ema_decay: float | None = None, warmup: int | None = None,
    seed: int = 0, device: str = "cpu", bank: int = 8192, time_limit: float | None = None,
    budget: float | None = None, n_eval: int | None = None,
    photo_cache: str | None = None, log_every: int = 250, command: str = "",
) -> dict:
    """Train model ``name`` ("digits16" or "patches") and save its EMA weights to ``out``.

    Returns the summary written to ``out/training.json``. ``budget`` (seconds) lowers ``steps``
    to what fits, measured on steps 10-60 (all in the warm-up, so nothing before depends on it);
    ``time_limit`` (seconds) stops the loop early; ``n_eval`` images score the final ε-MSE. The
    summary records the steps taken; rerunning with ``steps`` set to that and no budget repeats it.
    """
    if name not in DEFAULTS:
        raise ValueError(f"name must be one of {tuple(DEFAULTS)}, got {name!r}")
    cfg = dict(DEFAULTS[name])
    for k, v in dict(steps=steps, batch_size=batch_size, lr=lr, ema_decay=ema_decay, warmup=warmup).items():
        if v is not None:
            cfg[k] = v
    dev = torch.device(device)
    if dev.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        # AdamW's second moments underflow; denormals are ~100x slower. Process-wide CPU state:
        # train turns it back off when training ends (it leaked into later tests).
        torch.set_flush_denormal(True)
    try:
        return _train(name, out, cfg, dev, seed=seed, bank=bank, time_limit=time_limit, budget=budget,
                      n_eval=n_eval, photo_cache=photo_cache, log_every=log_every, command=command)
    finally:
        if dev.type != "cuda":
            torch.set_flush_denormal(False)


def _train(name: str, out: str | Path, cfg: dict, dev: torch.device, *, seed: int, bank: int,
           time_limit: float | None, budget: float | None, n_eval: int | None, photo_cache: str | None,
           log_every: int, command: str) -> dict:
    """The body of :func:`train` with its settings resolved."""
    torch.manual_seed(seed)
    cpu_gen = torch.Generator().manual_seed(seed)
    gen = torch.Generator(dev).manual_seed(seed + 1)

    extra: dict = {}
    if name == "digits16":
        data = digits16_data()
        train_x, held_x = data["train"].to(dev), data["heldout"].to(dev)
        extra = {"split_seed": data["split_seed"], "heldout_idx": data["heldout_idx"]}
        unet = digits16_unet()

        def batch_fn() -> torch.Tensor:
            return train_x[torch.randint(0, len(train_x), (cfg["batch_size"],), generator=gen, device=dev)]
    else:
        photos = photo_arrays(cache=photo_cache)
        crops = crop_bank(photos, bank, cpu_gen).to(dev)
        held_photos = photo_arrays(HELDOUT_PHOTOS, cache=photo_cache)
        held = crop_bank(held_photos, 512 if dev.type == "cuda" else 128, torch.Generator().manual_seed(1234))
        train_x = crops[:512].float() / 127.5 - 1
        held_x = held.to(dev).float() / 127.5 - 1
        unet = patches_unet()

        def batch_fn() -> torch.Tensor:
            idx = torch.randint(0, len(crops), (cfg["batch_size"],), generator=gen, device=dev)
            return dihedral(crops[idx].float() / 127.5 - 1, gen)

    unet = unet.to(dev).train()
    params = [p for p in unet.parameters() if p.requires_grad]
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=0.01)
    sched = ddpm_scheduler()
    ac = sched.alphas_cumprod.to(dev, torch.float32)

    def lr_at(step: int) -> float:
        if step < cfg["warmup"]:
            return cfg["lr"] * (step + 1) / cfg["warmup"]
        frac = (step - cfg["warmup"]) / max(1, cfg["steps"] - cfg["warmup"])
        return cfg["lr"] * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))

    log, running, t0, done = [], torch.zeros((), device=dev), time.perf_counter(), 0
    step = 0
    while step < cfg["steps"]:
        x0 = batch_fn()
        t = torch.randint(0, 1000, (len(x0),), generator=gen, device=dev)
        eps = torch.randn(x0.shape, generator=gen, device=dev)
        ab = ac[t].view(-1, 1, 1, 1)
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        loss = F.mse_loss(unet(xt, t).sample, eps)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        _ema_update(ema, [p.detach() for p in params], min(cfg["ema_decay"], (1 + step) / (10 + step)))
        running += loss.detach()
        done = step + 1
        if budget is not None and done in (10, 60):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            if done == 10:
                t10 = time.perf_counter()
            else:
                per_step = (time.perf_counter() - t10) / 50
                cfg["steps"] = max(cfg["warmup"] + 1, min(cfg["steps"], int(budget / per_step)))
                print(f"[{name}] {per_step * 1e3:.1f} ms/step -> {cfg['steps']} steps", flush=True)
        if done % log_every == 0 or done == cfg["steps"]:
            n = log_every if done % log_every == 0 else done % log_every
            mean = float(running.item()) / n
            running.zero_()
            elapsed = time.perf_counter() - t0
            log.append({"step": done, "loss": round(mean, 5), "seconds": round(elapsed, 1)})
            print(f"[{name}] step {done}/{cfg['steps']} loss {mean:.4f} ({elapsed:.0f}s)", flush=True)
            if time_limit is not None and elapsed > time_limit:
                print(f"[{name}] time limit {time_limit}s reached at step {done}", flush=True)
                break
        step += 1
    seconds = time.perf_counter() - t0

    with torch.no_grad():
        for p, e in zip(params, ema):
            p.copy_(e)
    unet.eval()
    if n_eval is None:
        n_eval = 512 if dev.type == "cuda" else 128
    summary = {
        "model": name, "config": cfg, "steps_done": done, "seed": seed, "seconds": round(seconds, 1),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "params": sum(p.numel() for p in params),
        "final_train_loss": log[-1]["loss"] if log else None,
        "ema_eps_mse_train": round(eps_mse(unet, train_x[:n_eval], ac, seed=7), 5),
        "ema_eps_mse_heldout": round(eps_mse(unet, held_x[:n_eval], ac, seed=7), 5),
        "command": command, "log": log,
    }  # fmt: skip
    save(unet, out, summary, extra)
    return summary


def save(unet: UNet2DModel, out: str | Path, summary: dict, extra: dict) -> None:
    """Write the DDPMPipeline folder (fp16 safetensors), training.json, split.json, TRAINING.md."""
    from diffusers import DDPMPipeline

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    DDPMPipeline(unet=unet.to("cpu", torch.float16), scheduler=ddpm_scheduler()).save_pretrained(
        out, safe_serialization=True
    )
    (out / "training.json").write_text(json.dumps(summary, indent=1) + "\n")
    if extra:
        (out / "split.json").write_text(json.dumps(extra) + "\n")
    _write_note(out, summary)


def _write_note(out: Path, s: dict) -> None:
    cfg = s["config"]
    if s["model"] == "digits16":
        data = (
            f"scikit-learn `load_digits()` (1797 8×8 images) upsampled bilinearly to 16×16, scaled to "
            f"[−1, 1]. {DIGITS_HELDOUT} images held out by `numpy.random.default_rng({0}).permutation` "
            "(indices in `split.json`) and never trained on; the other 1437 are the training set."
        )
    else:
        data = (
            f"random 64×64 crops of {', '.join(TRAIN_PHOTOS)} (scikit-image / scikit-learn) at scales "
            f"1, 1/2, 1/3, 1/4, a bank of crops drawn once by the seed, each batch flipped/rotated "
            f"per sample (8 symmetries). Held out: {', '.join(HELDOUT_PHOTOS)}."
        )
    curve = ", ".join(f"{e['step']}: {e['loss']:.4f}" for e in s["log"][:: max(1, len(s["log"]) // 8)])
    text = f"""# {s['model']} — how it was trained

Written by `diffsolve.models.train` at the end of the run.

- Command: `{s['command']}`
- Data: {data}
- Model: diffusers `UNet2DModel`, {s['params']:,} parameters (see `unet/config.json`); weights are
  the EMA (decay {cfg['ema_decay']}) stored as fp16 safetensors.
- Objective: DDPM ε-prediction, plain MSE; linear β 1e-4 → 0.02, 1000 steps (`scheduler/`).
- Optimiser: AdamW (lr {cfg['lr']}, weight decay 0.01, {cfg['warmup']} warm-up steps, cosine to
  10 %), gradient clipping 1.0, batch {cfg['batch_size']}, seed {s['seed']}.
- Steps: {s['steps_done']} of {cfg['steps']} in {s['seconds']} s on {s['device']} (torch {s['torch']}).
- Loss (mean per logging window): {curve}; final {s['final_train_loss']}.
- EMA model ε-MSE at 10 fixed timesteps: train {s['ema_eps_mse_train']}, held-out
  {s['ema_eps_mse_heldout']}.
"""
    (out / "TRAINING.md").write_text(text)


@torch.no_grad()
def preview(model_dir: str | Path, out_png: str | Path, *, count: int = 16, size: int | None = None,
            steps: int = 50, device: str = "cpu", seed: int = 0) -> None:
    """Sample ``count`` images with diffusers' DDIM (η = 0) and save them as one PNG grid."""
    from diffusers import DDIMScheduler, UNet2DModel
    from PIL import Image

    unet = UNet2DModel.from_pretrained(Path(model_dir) / "unet", torch_dtype=torch.float32).to(device).eval()
    sched = DDIMScheduler.from_pretrained(Path(model_dir) / "scheduler")
    sched.set_timesteps(steps)
    size = size or unet.config.sample_size
    gen = torch.Generator(device).manual_seed(seed)
    x = torch.randn(count, unet.config.in_channels, size, size, generator=gen, device=device)
    for t in sched.timesteps:
        x = sched.step(unet(x, t).sample, t, x).prev_sample
    cols = int(math.ceil(math.sqrt(count)))
    rows = int(math.ceil(count / cols))
    grid = torch.full((unet.config.in_channels, rows * (size + 2), cols * (size + 2)), -1.0)
    for i in range(count):
        r, c = divmod(i, cols)
        grid[:, r * (size + 2) + 1 : r * (size + 2) + 1 + size, c * (size + 2) + 1 : c * (size + 2) + 1 + size] = x[i].cpu()
    arr = ((grid.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(out_png)


# --------------------------------------------------------------------------- bundled data


def bundle(dest: str | Path) -> None:
    """Write diffsolve/data: the held-out photos (256×256 centre crops, the demo's and the benchmarks') and
    held-out digits."""
    from PIL import Image

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in HELDOUT_PHOTOS + BENCHMARK_PHOTOS:
        (arr,) = _load_photo(name)
        h, w = arr.shape[:2]
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        img = Image.fromarray(arr[top : top + s, left : left + s]).resize((256, 256), Image.LANCZOS)
        img.save(dest / f"{name}.png", optimize=True)
    x = digits16_data()["heldout"]  # (360, 1, 16, 16)
    from ..data import DIGITS_PER_ROW, DIGITS_TILE

    rows = len(x) // DIGITS_PER_ROW
    mosaic = x[:, 0].reshape(rows, DIGITS_PER_ROW, DIGITS_TILE, DIGITS_TILE).permute(0, 2, 1, 3)
    mosaic = mosaic.reshape(rows * DIGITS_TILE, DIGITS_PER_ROW * DIGITS_TILE)
    arr = ((mosaic + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    Image.fromarray(arr, mode="L").save(dest / "digits16_heldout.png", optimize=True)


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    """``python -m diffsolve.models.train {digits16,patches,bundle} ...``"""
    p = argparse.ArgumentParser(prog="python -m diffsolve.models.train", description=__doc__.split("\n")[0])
    p.add_argument("what", choices=("digits16", "patches", "bundle", "preview"))
    p.add_argument("--model", help="preview: the trained folder")
    p.add_argument("--count", type=int, default=16, help="preview: number of samples")
    p.add_argument("--size", type=int, help="preview: image size (default: the model's)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--ema-decay", type=float)
    p.add_argument("--warmup", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--bank", type=int, default=8192, help="patches: number of pre-drawn crops")
    p.add_argument("--log-every", type=int, default=250)
    p.add_argument("--budget", type=float, help="seconds; lower --steps to what fits (measured)")
    p.add_argument("--time-limit", type=float, help="seconds; stop early (steps done are recorded)")
    p.add_argument("--photo-cache", help="patches: .npz of the training photos (see --save-photos)")
    p.add_argument("--save-photos", action="store_true", help="write the training photos to --out as .npz and exit")
    a = p.parse_args(argv)
    if a.what == "bundle":
        bundle(a.out)
        return 0
    if a.what == "preview":
        preview(a.model, a.out, count=a.count, size=a.size, device=a.device, seed=a.seed)
        return 0
    if a.save_photos:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        save_photo_cache(a.out)
        return 0
    summary = train(
        a.what, a.out, steps=a.steps, batch_size=a.batch_size, lr=a.lr, ema_decay=a.ema_decay,
        warmup=a.warmup, seed=a.seed, device=a.device, bank=a.bank, time_limit=a.time_limit,
        budget=a.budget, photo_cache=a.photo_cache, log_every=a.log_every, command="python -m diffsolve.models.train " + " ".join(sys.argv[1:] if argv is None else argv),
    )  # fmt: skip
    print(json.dumps({k: v for k, v in summary.items() if k != "log"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
