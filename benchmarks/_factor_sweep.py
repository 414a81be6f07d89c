"""One default's factor f swept on the tuning photos against Tikhonov: the loop, the table and the command line
that ``bench_mpgd_floor.py`` and ``bench_mpgd_eta.py`` share (a report, not a test).

A script gives ``run_method(op, y, steps, f, generators) -> x̂`` (the method at its defaults with the factor set
to f); every cell is the mean PSNR dB / data consistency ‖A x̂ − y‖/(σ√m) over the images, beside Tikhonov (λ
picked by PSNR, an oracle). ``--merge`` keeps the rows of other sizes, step counts, tasks and factors.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_dps import write_results  # noqa: E402
from bench_methods import RESULTS, SIGMA, machine, photo_problems  # noqa: E402

RunMethod = Callable[[object, torch.Tensor, int, float, list], torch.Tensor]


def _key(r: dict) -> tuple:
    return r["size"], r["steps"], r["task"], r["factor"]


def sweep(run_method: RunMethod, sizes: Sequence[int], steps: Sequence[int], factors: Sequence[float],
          tasks: Sequence[str], images: Sequence[str]) -> list[dict]:
    """Rows {size, task, steps, factor, psnr, dc}; Tikhonov's have steps 0 and factor None."""
    from diffsolve.methods import restore
    from diffsolve.metrics import data_consistency, scores
    from diffsolve.models import load_default

    model = load_default("patches")
    rows = []

    def row(size: int, task: str, n: int, f: float | None, op, x, y, xr) -> dict:
        return {"size": size, "task": task, "steps": n, "factor": f, "psnr": float(scores(xr, x)["psnr"].mean()),
                "dc": float(data_consistency(op, xr, y, SIGMA).mean())}

    for size in sizes:
        for task, op, x, y in photo_problems(images, size, tasks):
            xt, _ = restore("tikhonov", model, op, y, steps=1, sigma=SIGMA, x_true=x)
            rows.append(row(size, task, 0, None, op, x, y, xt))
            for n in steps:
                for f in factors:
                    gens = [torch.Generator().manual_seed(i) for i in range(len(images))]
                    rows.append(row(size, task, n, f, op, x, y, run_method(model, op, y, n, f, gens)))
                    print(rows[-1], flush=True)
    return rows


def render(res: dict, title: str, intro: str, factor_format: str = "{:.2f}", descending: bool = False) -> str:
    """The markdown table: one row per size × steps × task, one column per factor."""
    rows = res["rows"]
    factors = sorted({r["factor"] for r in rows if r["factor"] is not None}, reverse=descending)
    tasks = res.get("tasks") or list(dict.fromkeys(r["task"] for r in rows))
    lines = [f"# {title}", "", intro.format(machine=res["machine"], images=", ".join(res["images"])), "",
             "| size | steps | task | Tikhonov | " + " | ".join("f = " + factor_format.format(f) for f in factors)
             + " |",
             "|---|---|---|---|" + "---|" * len(factors)]
    cells = {_key(r): f"{r['psnr']:.2f} / {r['dc']:.2f}" for r in rows}
    for size, n in sorted({(r["size"], r["steps"]) for r in rows if r["factor"] is not None}):
        for task in tasks:
            ref, got = cells.get((size, 0, task, None)), [cells.get((size, n, task, f), "—") for f in factors]
            if ref is not None and any(c != "—" for c in got):
                lines.append(f"| {size}² | {n} | {task} | {ref} | " + " | ".join(got) + " |")
    return "\n".join(lines) + "\n"


def main(stem: str, description: str, run_method: RunMethod, *, sizes: list[int], steps: list[int],
         factors: list[float], tasks: list[str], **table: object) -> None:
    """The command line: sweep, merge with ``results/<stem>.json``, write ``results/<stem>.{md,json}``;
    ``table``: :func:`render`'s title, intro, factor_format and descending."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--sizes", type=int, nargs="+", default=sizes)
    parser.add_argument("--steps", type=int, nargs="+", default=steps)
    parser.add_argument("--factors", type=float, nargs="+", default=factors)
    parser.add_argument("--tasks", nargs="+", default=tasks)
    parser.add_argument("--images", nargs="+", default=["chelsea", "coffee"])
    parser.add_argument("--merge", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = sweep(run_method, args.sizes, args.steps, args.factors, args.tasks, args.images)
    path = (RESULTS / stem).with_suffix(".json")
    old = json.loads(path.read_text()) if args.merge and path.exists() else {"rows": []}
    new_keys = {_key(r) for r in rows}
    rows = [r for r in old["rows"] if _key(r) not in new_keys] + rows
    order = list(dict.fromkeys(list(old.get("tasks") or []) + list(tasks) + args.tasks))
    present = {r["task"] for r in rows}
    res = {"machine": machine(), "images": args.images, "tasks": [t for t in order if t in present], "rows": rows}
    print(write_results(stem, res, render(res, **table)))
