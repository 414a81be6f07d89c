"""Restoration quality and unconditional sample quality of the shipped models (a report, not a test).

    python benchmarks/quality.py [--steps 20 50] [--photos-size 128] [--digits 32] [--out benchmarks/results]

1. Inverse problems: PSNR / SSIM (torchmetrics, [0, 1] range) and seconds per image for DPS, MPGD,
   C-DPS (reverse and forward coupling) × task (``diffsolve.tasks.DEMO_TASKS``) × steps, beside the
   pseudo-inverse and Tikhonov (λ picked per task from 1e-3/1e-2/1e-1 by PSNR: an oracle that
   favours the baseline), on the held-out photos (patches) and held-out digits (digits16),
   σ = 0.05 in [−1, 1]. MPGD-AE/Z are left out: no autoencoder ships with the package.
2. Unconditional ``digits16``: DDIM vs GE at N = 5, 10, 20 — Fréchet distance between samples and the
   held-out digits in the PCA(32) space of the held-out digits, and the mean nearest-neighbour L2
   distance of samples to the training set beside that of the held-out digits (a sample much closer
   to the training set than held-out digits are would be a memorised copy). Needs scikit-learn.

LPIPS / FID need network weights that cannot be fetched offline and are left out. Writes
``quality.md`` and ``quality.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import diffsolve
from diffsolve.data import heldout_digits, photo
from diffsolve.tasks import DEMO_TASKS as TASKS
from diffsolve.metrics import scores
from diffsolve.tasks import SIGMA, make_operator
from diffsolve.models import load_default
from diffsolve.solvers import ddim, ge

METHODS = ("pinv", "tikhonov", "dps", "mpgd", "cdps", "cdps-forward")


def restore(method, model, op, y, *, steps, seed, x_true):
    """``diffsolve.methods.restore`` with the CLI's options and a generator seeded by ``seed``."""
    from diffsolve.methods import restore as restore_method

    return restore_method(method, model, op, y, steps=steps, sigma=SIGMA,
                          generator=torch.Generator(y.device).manual_seed(seed), x_true=x_true)


def run_inverse(steps_list, photo_size: int, n_digits: int, seed: int = 0, log=print) -> list[dict]:
    rows = []
    suites = [
        ("photos", "patches", torch.stack([photo(n, photo_size) for n in ("chelsea", "coffee")]), False),
        ("digits16", "digits16", heldout_digits()[:n_digits], True),
    ]
    for suite, model_name, x, digits in suites:
        model = load_default(model_name)
        for task in TASKS:
            op = make_operator(task, tuple(x.shape[-2:]), seed=seed, digits=digits)
            ax = op.A(x)
            y = ax + SIGMA * torch.randn(ax.shape, generator=torch.Generator().manual_seed(seed + 1))
            for method in METHODS:
                for steps in (steps_list if method not in ("pinv", "tikhonov") else [0]):
                    t0 = time.perf_counter()
                    if method == "cdps-forward":
                        xr = diffsolve.solve("cdps", model, op, y, steps=steps, sigma=SIGMA, coupling="forward",
                                             generator=torch.Generator().manual_seed(seed))
                    else:
                        xr, _ = restore(method, model, op, y, steps=max(steps, 1), seed=seed, x_true=x)
                    sec = (time.perf_counter() - t0) / len(x)
                    s = scores(xr, x)
                    row = dict(suite=suite, task=task, method=method, steps=steps,
                               psnr=round(float(s["psnr"].mean()), 2), ssim=round(float(s["ssim"].mean()), 4),
                               sec_per_image=round(sec, 3))
                    rows.append(row)
                    log(row)
    return rows


def _frechet(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import linalg

    mu = a.mean(0) - b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(ca @ cb).real
    return float(mu @ mu + np.trace(ca + cb - 2 * covmean))


def run_unconditional(n_samples: int = 360, seed: int = 0, log=print) -> list[dict]:
    from diffsolve.models.train import digits16_data

    data = digits16_data()
    held = data["heldout"].flatten(1).double().numpy()
    train = data["train"].flatten(1).double()
    mean = held.mean(0)
    _, _, vt = np.linalg.svd(held - mean, full_matrices=False)
    proj = vt[:32].T

    def nn_dist(x: torch.Tensor) -> float:
        return float(torch.cdist(x.flatten(1).double(), train).min(1).values.mean())

    # reference: 360 training digits (the FD floor for a perfect sampler at this sample size; its NN
    # distance leaves each digit itself out) and the held-out digits themselves
    sub = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[: len(held)]
    d_sub = torch.cdist(train[sub], train)
    d_sub[torch.arange(len(sub)), sub] = float("inf")
    rows = [dict(sampler="training digits (360)", steps=0,
                 fd_pca32=round(_frechet((train[sub].numpy() - mean) @ proj, (held - mean) @ proj), 3),
                 nn_train=round(float(d_sub.min(1).values.mean()), 3), sec_per_image=0.0),
            dict(sampler="held-out digits", steps=0, fd_pca32=0.0, nn_train=round(nn_dist(data["heldout"]), 3),
                 sec_per_image=0.0)]
    log(rows)
    model = load_default("digits16")
    for name, fn in (("ddim", ddim), ("ge", ge)):
        for steps in (5, 10, 20):
            t0 = time.perf_counter()
            x = fn(model, (n_samples, 1, 16, 16), steps=steps, generator=torch.Generator().manual_seed(seed))
            sec = (time.perf_counter() - t0) / n_samples
            feats = (x.flatten(1).double().clamp(-1, 1).numpy() - mean) @ proj
            rows.append(dict(sampler=name, steps=steps, fd_pca32=round(_frechet(feats, (held - mean) @ proj), 3),
                             nn_train=round(nn_dist(x.clamp(-1, 1)), 3), sec_per_image=round(sec, 5)))
            log(rows[-1])
    return rows


def to_markdown(inverse: list[dict], uncond: list[dict], settings: str = "") -> str:
    lines = ["# Restoration quality (benchmarks/quality.py)", "",
             f"σ = {SIGMA} in [−1, 1]; PSNR dB / SSIM on [0, 1]; seconds per image on this machine. {settings}", ""]
    for suite in dict.fromkeys(r["suite"] for r in inverse):
        lines += [f"## {suite}", "", "| task | method | steps | PSNR | SSIM | s/image |", "|---|---|---|---|---|---|"]
        for r in (r for r in inverse if r["suite"] == suite):
            lines.append(f"| {r['task']} | {r['method']} | {r['steps'] or '-'} | {r['psnr']:.2f} | "
                         f"{r['ssim']:.3f} | {r['sec_per_image']:.3f} |")
        lines.append("")
    if uncond:
        lines += ["## digits16 unconditional: DDIM vs GE", "",
                  "| sampler | N | Fréchet (PCA-32 of held-out) | mean NN L2 to train | s/image |", "|---|---|---|---|---|"]
        for r in uncond:
            lines.append(f"| {r['sampler']} | {r['steps'] or '-'} | {r['fd_pca32']:.3f} | {r['nn_train']:.3f} | "
                         f"{r['sec_per_image']:.5f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, nargs="+", default=[20, 50])
    p.add_argument("--photos-size", type=int, default=128)
    p.add_argument("--digits", type=int, default=32, help="held-out digits restored per task")
    p.add_argument("--samples", type=int, default=360, help="unconditional digits per sampler/N")
    p.add_argument("--skip-inverse", action="store_true")
    p.add_argument("--skip-unconditional", action="store_true")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = p.parse_args(argv)
    inverse = [] if a.skip_inverse else run_inverse(a.steps, a.photos_size, a.digits)
    uncond = [] if a.skip_unconditional else run_unconditional(a.samples)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = (f"Photos: chelsea + coffee at {a.photos_size}×{a.photos_size}; digits: the first {a.digits} held-out; "
                f"{a.samples} unconditional samples per row; `{' '.join(argv if argv is not None else __import__('sys').argv[1:])}`.")
    (out / "quality.json").write_text(json.dumps({"settings": settings, "inverse": inverse, "unconditional": uncond},
                                                 indent=1) + "\n")
    (out / "quality.md").write_text(to_markdown(inverse, uncond, settings))
    print(to_markdown(inverse, uncond, settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
