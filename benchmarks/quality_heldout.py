"""Restoration quality on many held-out photo crops, several seeds, mean ± std (a report, not a test).

    python benchmarks/quality_heldout.py [--crops 8] [--seeds 2] [--steps 30] [--out benchmarks/results]

**What "held out" means here.** The shipped ``patches`` model was trained on random 64×64 crops of
eight other photos (astronaut, rocket, immunohistochemistry, hubble_deep_field, retina,
stereo_motorcycle, china, flower — models/weights/patches/TRAINING.md) at scales 1, 1/2, 1/3, 1/4.
The two photos the package ships (chelsea, coffee: data/SOURCES.md) were never in its training
bank. Every crop below comes from those two photos: 64×64 crops at the training scales 1/4 (the
whole 256×256 picture resized), 1/2 (tiles of the 128×128 resize) and 1 (tiles of the central
128×128 region of the 256×256 picture). They are many crops of **two scenes**, not many
independent scenes: the spread across crops is not a spread across photographs. No other image
ships with the package or its dependencies (matplotlib here carries no sample photos; scipy's
datasets need a download).

Per crop and seed: y = A x + σ n, σ = 0.05 in [−1, 1] (the seed sets n and the sampler), tasks of
``diffsolve.tasks.DEMO_TASKS``, each method at its defaults through ``diffsolve.methods.restore``:
Tikhonov (λ picked per task from 1e-3/1e-2/1e-1 by mean PSNR: an oracle that favours the
baseline), the pseudo-inverse, MPGD, C-DPS (default chain ``"none"``), C-DPS with the talk's
Markov chain (``cdps-talk``, only with ``--methods``), DPS (default step rule). Scores: PSNR / SSIM on [0, 1] and the colour
cast max_c |mean_c(x̂) − mean_c(x)| in [0, 1] units, per image; the table gives mean ± std over
crops × seeds. Writes ``quality_heldout.md``, ``.json`` and one picture per task
(``quality_heldout_<task>.png``: truth, measurement, then each method, for the first crops, seed 0).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from diffsolve.data import photo
from diffsolve.tasks import DEMO_TASKS as TASKS
from diffsolve.cli.demo import save_grid
from diffsolve.metrics import colour_cast, scores
from diffsolve.tasks import SIGMA, make_operator, measurement_view
from diffsolve.models import load_default
from diffsolve.solvers import cdps

__all__ = ["CROPS", "crops", "main"]

METHODS = ("tikhonov", "pinv", "mpgd", "cdps", "cdps-talk", "dps")
DEFAULT_METHODS = ("tikhonov", "pinv", "mpgd", "cdps", "dps")
#: (photo, scale, top, left) of each 64×64 crop, interleaving the two photos and the three scales
CROPS = [(name, scale, top, left)
         for top, left, scale in ((0, 0, 4), (0, 64, 2), (64, 64, 1), (64, 0, 2), (128, 64, 1), (64, 64, 2),
                                  (64, 128, 1), (0, 0, 2), (128, 128, 1))
         for name in ("chelsea", "coffee")]


def restore(method, model, op, y, *, steps, seed, x_true):
    """``diffsolve.methods.restore`` with the CLI's options and a generator seeded by ``seed``."""
    from diffsolve.methods import restore as restore_method

    return restore_method(method, model, op, y, steps=steps, sigma=SIGMA,
                          generator=torch.Generator(y.device).manual_seed(seed), x_true=x_true)


def crops(count: int) -> tuple[torch.Tensor, list[str]]:
    """The first ``count`` crops of :data:`CROPS` as (count, 3, 64, 64) in [−1, 1], and their labels."""
    out, labels = [], []
    for name, scale, top, left in CROPS[:count]:
        img = photo(name, 256 // scale)
        out.append(img[:, top:top + 64, left:left + 64])
        labels.append(f"{name} 1/{scale} ({top},{left})")
    return torch.stack(out).contiguous(), labels


cast = colour_cast  # max_c |mean(x̂_c) − mean(x_c)| in [0, 1] units (diffsolve.metrics)


def run(count: int, seeds: int, steps: int, out: Path, tasks: tuple[str, ...] = TASKS,
        methods: tuple[str, ...] = DEFAULT_METHODS, first_seed: int = 0, log=print) -> list[dict]:
    model = load_default("patches")
    x, labels = crops(count)
    rows = []
    for task in tasks:
        op = make_operator(task, (64, 64))
        pictures: dict[str, torch.Tensor] = {}
        for seed in range(first_seed, first_seed + seeds):
            ax = op.A(x)
            y = ax + SIGMA * torch.randn(ax.shape, generator=torch.Generator().manual_seed(1000 + seed))
            for method in methods:
                t0 = time.perf_counter()
                if method == "cdps-talk":
                    xr = cdps(model, op, y, steps=steps, sigma=SIGMA, chain="markov",
                              generator=torch.Generator().manual_seed(seed))
                else:
                    xr, _ = restore(method, model, op, y, steps=steps, seed=seed, x_true=x)
                sec = (time.perf_counter() - t0) / len(x)
                s = scores(xr, x)
                c = cast(xr, x)
                for i in range(len(x)):
                    rows.append(dict(task=task, method=method, seed=seed, crop=labels[i], psnr=float(s["psnr"][i]),
                                     ssim=float(s["ssim"][i]), cast=float(c[i]), sec_per_image=sec))
                log(f"{task:13s} seed {seed} {method:9s} PSNR {float(s['psnr'].mean()):.2f} "
                    f"cast {float(c.mean()):.3f} {sec:.2f} s/image")
                if seed == 0:
                    pictures[method] = xr.detach()
            if seed == 0:
                view = measurement_view(task, y, (64, 64))
                shown = min(4, len(x))
                save_grid(out / f"quality_heldout_{task}.png",
                          [[x[i], view[i]] + [pictures[m][i] for m in methods] for i in range(shown)],
                          ["truth", "measured", *methods], scale=2)
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """mean ± std per task × method over crops × seeds."""
    out = []
    for task in dict.fromkeys(r["task"] for r in rows):
        for method in dict.fromkeys(r["method"] for r in rows):
            sel = [r for r in rows if r["task"] == task and r["method"] == method]
            if not sel:
                continue
            stat = {}
            for key in ("psnr", "ssim", "cast", "sec_per_image"):
                v = torch.tensor([r[key] for r in sel], dtype=torch.float64)
                stat[key] = (float(v.mean()), float(v.std()) if len(v) > 1 else 0.0)
            stat["cast_max"] = max(r["cast"] for r in sel)
            out.append(dict(task=task, method=method, n=len(sel), **stat))
    return out


def targets(summary: list[dict]) -> list[str]:
    """The issue's targets: each generative method ≥ Tikhonov − 0.5 dB; mean cast ≤ 0.03 outside box."""
    lines = []
    for task in dict.fromkeys(s["task"] for s in summary):
        tik = next(s for s in summary if s["task"] == task and s["method"] == "tikhonov")["psnr"][0]
        for s in summary:
            if s["task"] != task or s["method"] not in ("mpgd", "cdps", "dps"):
                continue
            ok_psnr = s["psnr"][0] >= tik - 0.5
            ok_cast = task == "box" or s["cast"][0] <= 0.03
            lines.append(f"| {task} | {s['method']} | {s['psnr'][0] - tik:+.2f} | {'met' if ok_psnr else '**missed**'} | "
                         f"{s['cast'][0]:.3f} (worst {s['cast_max']:.3f}) | "
                         f"{'n/a (box)' if task == 'box' else 'met' if ok_cast else '**missed**'} |")
    return lines


def to_markdown(summary: list[dict], settings: str) -> str:
    lines = ["# Restoration quality on held-out crops (benchmarks/quality_heldout.py)", "", settings, "",
             "| task | method | PSNR (dB) | SSIM | colour cast | s/image |", "|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['task']} | {s['method']} | {s['psnr'][0]:.2f} ± {s['psnr'][1]:.2f} | "
                     f"{s['ssim'][0]:.3f} ± {s['ssim'][1]:.3f} | {s['cast'][0]:.3f} ± {s['cast'][1]:.3f} | "
                     f"{s['sec_per_image'][0]:.2f} |")
    lines += ["", "Targets (issue 13): MPGD, C-DPS and DPS each ≥ Tikhonov − 0.5 dB mean PSNR; mean colour cast "
              "≤ 0.03 outside box inpainting.", "",
              "| task | method | PSNR − Tikhonov | PSNR target | mean cast (worst image) | cast target |",
              "|---|---|---|---|---|---|", *targets(summary), ""]
    lines += [f"![{t}](quality_heldout_{t}.png)" for t in dict.fromkeys(s["task"] for s in summary)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--crops", type=int, default=6, help=f"how many of the {len(CROPS)} crops")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--first-seed", type=int, default=0, help="seeds first..first+seeds-1 (pictures: seed 0)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=METHODS,
                   help="cdps-talk (the talk's Markov chain) is off by default: a CPU budget choice")
    p.add_argument("--part", default=None, help="write only the rows to quality_heldout_part_<PART>.json")
    p.add_argument("--merge", nargs="+", default=None, help="render the report from saved part files instead")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if a.merge:
        parts = [json.loads(Path(f).read_text()) for f in a.merge]
        rows = [r for part in parts for r in part["rows"]]
        # a later part's (task, method, seed, crop) replaces an earlier one's (re-measured after a change)
        rows = list({(r["task"], r["method"], r["seed"], r["crop"]): r for r in rows}.values())
        minutes = sum(part["minutes"] for part in parts)
    else:
        rows = run(a.crops, a.seeds, a.steps, out, tuple(a.tasks), tuple(a.methods), a.first_seed)
        minutes = (time.perf_counter() - start) / 60
    if a.part:
        (out / f"quality_heldout_part_{a.part}.json").write_text(json.dumps({"rows": rows, "minutes": minutes}) + "\n")
        return 0
    _, labels = crops(a.crops)
    command = " ".join(argv if argv is not None else __import__("sys").argv[1:])
    settings = (f"`python benchmarks/quality_heldout.py {command}`: {a.crops} crops × {a.seeds} seeds, {a.steps} steps, "
                f"σ = {SIGMA}. Crops: {'; '.join(labels)}. Machine: {platform.machine()} CPU, {os.cpu_count()} cores "
                f"shared with other jobs, torch {torch.__version__}, {a.threads} threads; "
                f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {minutes:.0f} process-minutes (timings are noisy).")
    summary = summarize(rows)
    (out / "quality_heldout.json").write_text(json.dumps({"settings": settings, "summary": summary, "rows": rows},
                                                         indent=1) + "\n")
    (out / "quality_heldout.md").write_text(to_markdown(summary, settings))
    print(to_markdown(summary, settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
