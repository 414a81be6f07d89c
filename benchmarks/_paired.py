"""Two variants of one method side by side on held-out photos, beside Tikhonov: the row pairing and the command
line that ``bench_ddnm_sampler.py`` and ``bench_gates.py`` share (a report helper, not a test)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator


def add_photo_args(parser: argparse.ArgumentParser, tasks: tuple[str, ...]) -> None:
    """--sizes, --steps, --images (held-out hopper and camera), --tasks."""
    parser.add_argument("--sizes", type=int, nargs="+", default=[64])
    parser.add_argument("--steps", type=int, nargs="+", default=[20, 50, 100])
    parser.add_argument("--images", nargs="+", default=["hopper", "camera"])
    parser.add_argument("--tasks", nargs="+", default=list(tasks))


def paired(rows: list[dict], first: str, second: str) -> Iterator[tuple[int, str, dict, int, dict, dict]]:
    """(size, task, Tikhonov's row, N, ``first``'s row, ``second``'s row) wherever both variants ran; rows carry
    size, task, steps (0 for Tikhonov) and variant."""
    for size, task in dict.fromkeys((r["size"], r["task"]) for r in rows):
        tik = next(r for r in rows if (r["size"], r["task"], r["variant"]) == (size, task, "tikhonov"))
        for n in sorted({r["steps"] for r in rows if r["steps"]}):
            cell = {r["variant"]: r for r in rows if (r["size"], r["task"], r["steps"]) == (size, task, n)}
            if first in cell and second in cell:
                yield size, task, tik, n, cell[first], cell[second]


def paired_table(rows: list[dict], first: str, second: str) -> list[str]:
    """The markdown table of :func:`paired`: size, task, Tikhonov, N, both variants (mean PSNR dB / mean data
    consistency (lowest sample's)) and the PSNR difference second − first."""
    lines = [f"| size | task | Tikhonov | N | {first} | {second} | {second} − {first} (dB) |",
             "|---|---|---|---|---|---|---|"]

    def cell(r: dict) -> str:
        return f"{r['psnr']:.2f} / {r['dc']:.2f} ({r['dc_min']:.2f})"

    for size, task, tik, n, a, b in paired(rows, first, second):
        lines.append(f"| {size}² | {task} | {cell(tik)} | {n} | {cell(a)} | {cell(b)} | {b['psnr'] - a['psnr']:+.2f} |")
    return lines


def tikhonov_row(size: int, task: str, op, x, y, sigma: float) -> dict:
    """Tikhonov with λ picked by PSNR against the truth (an oracle), as a row (:func:`scored_row`)."""
    from diffsolve.metrics import scores

    tik = max((op.tikhonov(y, lam) for lam in (1e-3, 1e-2, 1e-1)), key=lambda r: float(scores(r, x)["psnr"].mean()))
    return scored_row(size, task, 0, "tikhonov", tik, x, op, y, sigma)


def scored_row(size: int, task: str, steps: int, variant: str, x_hat, x, op, y, sigma: float) -> dict:
    """Mean PSNR, mean, lowest and highest data consistency ‖A x̂ − y‖/(σ√m) of x_hat against x."""
    from diffsolve.metrics import data_consistency, scores

    dc = data_consistency(op, x_hat, y, sigma)
    return {"size": size, "task": task, "steps": steps, "variant": variant,
            "psnr": float(scores(x_hat, x)["psnr"].mean()), "dc": float(dc.mean()), "dc_min": float(dc.min()),
            "dc_max": float(dc.max())}


def run_variants(sizes: list[int], step_list: list[int], images: list[str], task_names: list[str],
                 variants: dict, sigma: float) -> list[dict]:
    """Every (size, task, N) of the held-out ``images``: Tikhonov's row, then one row per variant, where
    ``variants[name](model, op, y, x, n, generators) -> x̂`` (the shipped ``patches`` model, one generator per
    image, seeds 0…B−1)."""
    import torch
    from bench_methods import photo_problems

    from diffsolve.models import load_default

    model = load_default("patches")
    rows = []
    for size in sizes:
        for task, op, x, y in photo_problems(images, size, task_names):
            rows.append(tikhonov_row(size, task, op, x, y, sigma))
            for n in step_list:
                for name, solve in variants.items():
                    gens = [torch.Generator().manual_seed(b) for b in range(len(images))]
                    rows.append(scored_row(size, task, n, name, solve(model, op, y, x, n, gens), x, op, y, sigma))
                    print(rows[-1], flush=True)
    return rows
