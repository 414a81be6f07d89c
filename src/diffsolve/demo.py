"""``diffsolve demo`` / ``restore``: run a method on a measurement, score it, save picture grids.

The tasks and their parameters live in :mod:`diffsolve.tasks`. Scores are PSNR and SSIM
(torchmetrics) on images mapped to [0, 1], outputs clamped to that range.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .methods import CLI_METHODS as METHODS
from .tasks import DEMO_TASKS, SIGMA, TASKS, TaskParameters, make_operator

__all__ = [
    "DEMO_TASKS", "METHODS", "SIGMA", "TASKS", "measurement_view", "make_operator", "restore", "run_demo", "save_grid", "scores",
]  # fmt: skip



def measurement_view(task: str, y: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The measurement as a picture of the image's size (SR: nearest-neighbour upsampling)."""
    if task in ("sr4", "sr"):
        return torch.nn.functional.interpolate(y, size=size, mode="nearest")
    return y


def restore(method: str, denoiser, operator, y: torch.Tensor, *, steps: int, seed: int = 0,
            progress: bool = False, x_true: torch.Tensor | None = None, sigma: float = SIGMA,
            callback=None) -> tuple[torch.Tensor, dict]:
    """Reconstruct from ``y`` by ``method`` with the command line's options
    (:func:`diffsolve.methods.restore`), the sampler seeded by ``seed``; returns (x (B, C, H, W), info).

    ``tikhonov`` picks λ by mean PSNR against ``x_true`` when given (an oracle choice that favours
    the baseline). ``sigma``: the measurement noise std in [−1, 1] units (C-DPS uses it);
    ``callback(i, t, x, x0)`` runs after every sampling step.
    """
    from .methods import restore as restore_method

    generator = torch.Generator(y.device).manual_seed(seed)
    return restore_method(method, denoiser, operator, y, steps=steps, sigma=sigma, generator=generator,
                          x_true=x_true, progress=progress, callback=callback)


def scores(x: torch.Tensor, x_true: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image PSNR (dB) and SSIM (B,) of ``x`` against ``x_true`` (:func:`diffsolve.metrics.scores`)."""
    from .metrics import scores as metric_scores

    return metric_scores(x, x_true)


def save_grid(path: str | Path, rows: list[list[torch.Tensor]], labels: list[str], *, scale: int = 1) -> None:
    """Save images (C, H, W) in [−1, 1] as a PNG grid, one column per label, a header row of text."""
    from PIL import Image, ImageDraw

    h, w = rows[0][0].shape[-2:]
    h, w = h * scale, w * scale
    cell_w, head, pad = max(w, 70), 14, 2
    canvas = Image.new("RGB", (len(labels) * (cell_w + pad) + pad, head + len(rows) * (h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for j, label in enumerate(labels):
        draw.text((pad + j * (cell_w + pad) + 2, 1), label, fill="black")
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            img = img.detach().float().cpu().clamp(-1, 1)
            if img.shape[0] == 1:
                img = img.expand(3, -1, -1)
            if scale > 1:
                img = torch.nn.functional.interpolate(img[None], scale_factor=scale, mode="nearest")[0]
            arr = ((img + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
            canvas.paste(Image.fromarray(arr), (pad + j * (cell_w + pad), head + pad + i * (h + pad)))
    canvas.save(path)


def _suites(quick: bool, size: int | None) -> list[dict]:
    from .data import heldout_digits, photo

    side = size or (64 if quick else 128)
    photos = torch.stack([photo(name, side) for name in ("chelsea", "coffee")])
    digits = heldout_digits()[: 4 if quick else 8]
    return [
        {"name": "photos", "model": "patches", "x": photos, "digits": False, "scale": 1},
        {"name": "digits16", "model": "digits16", "x": digits, "digits": True, "scale": 4},
    ]


def run_demo(out: str | Path, *, steps: int = 30, quick: bool = False, seed: int = 0, size: int | None = None,
             methods: tuple[str, ...] = ("mpgd", "cdps"), tasks: tuple[str, ...] = DEMO_TASKS, sigma: float = SIGMA,
             params: TaskParameters | None = None, progress: bool = True, log=None) -> dict:
    """Restore the bundled photos and held-out digits for every task; write grids and metrics.json.

    One progress bar runs over the whole demo (suites × tasks × methods × steps, with an ETA);
    ``log(line)``, when given, also gets one line per result. Returns the metrics:
    ``{suite: {task: {method: {"psnr": mean, "ssim": mean, "seconds": s}}}}``.
    """
    from tqdm.auto import tqdm

    from .methods import get_method
    from .models.default import load_default

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cols = ("pinv", "tikhonov") + tuple(methods)
    suites = _suites(quick, size)
    # progress units: one per sampling step, one per baseline
    total = len(suites) * len(tasks) * sum(steps if get_method(m).uses_model else 1 for m in cols)
    bar = tqdm(total=total, desc="diffsolve demo", unit="step", disable=not progress, dynamic_ncols=True)
    metrics: dict = {"steps": steps, "sigma": sigma, "seed": seed, "suites": {}}
    for suite in suites:
        model = load_default(suite["model"])
        x = suite["x"]
        size_hw = tuple(x.shape[-2:])
        res: dict = {}
        for task in tasks:
            op = make_operator(task, size_hw, seed=seed, digits=suite["digits"], params=params)
            noise_gen = torch.Generator().manual_seed(seed + 1)
            ax = op.A(x)
            y = ax + sigma * torch.randn(ax.shape, generator=noise_gen)
            row_imgs = {"truth": x, "measurement": measurement_view(task, y, size_hw)}
            res[task] = {}
            for method in cols:
                bar.set_postfix_str(f"{suite['name']} {task} {method}")
                t0 = time.perf_counter()
                sampler = get_method(method).uses_model
                xr, info = restore(method, model, op, y, steps=steps, seed=seed, x_true=x, sigma=sigma,
                                   callback=(lambda *_: bar.update(1)) if sampler else None)
                if not sampler:
                    bar.update(1)
                sec = time.perf_counter() - t0
                s = scores(xr, x)
                res[task][method] = {"psnr": round(float(s["psnr"].mean()), 2),
                                     "ssim": round(float(s["ssim"].mean()), 4),
                                     "seconds": round(sec, 2), **info}
                row_imgs[method] = xr
                line = (f"{suite['name']:8s} {task:13s} {method:8s} PSNR {res[task][method]['psnr']:6.2f} "
                        f"SSIM {res[task][method]['ssim']:.3f} ({sec:.1f}s)")
                if log is not None:
                    log(line)
                elif progress:
                    bar.write(line)
            labels = list(row_imgs)
            rows = [[row_imgs[k][i] for k in labels] for i in range(len(x))]
            save_grid(out / f"{suite['name']}_{task}.png", rows, labels, scale=suite["scale"])
        metrics["suites"][suite["name"]] = res
    bar.close()
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics
