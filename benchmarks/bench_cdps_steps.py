"""C-DPS beyond 100 steps on held-out photos, against MPGD and DPS (a report, not a test).

    OMP_NUM_THREADS=1 python benchmarks/bench_cdps_steps.py [--runs cdps cdps-spread mpgd dps] [--steps 100 250 1000]
                                                           [--size 64] [--merge]

C-DPS's truncated steps give each step before the last k_N = ⌈RUN_CG_ITERS/N⌉ plain CG iterations, at least one,
so past ~90 steps a run's data fit grows with N (``solvers/cdps.py``). Runs: ``cdps`` (its defaults);
``cdps-spread``, a variant tried here and not adopted: past RUN_CG_ITERS steps, one iteration on RUN_CG_ITERS
evenly spaced steps and the prior transition alone (w = 0) on the others, so the run's CG work stays fixed;
``mpgd`` and ``dps`` at their defaults, for reference. The four held-out photos (``diffsolve.data.HELDOUT``), the
operators without a diagonal form (Gaussian blur, motion blur, SR ×4; masks take C-DPS's exact elementwise step),
σ = 0.05, the ``patches`` model, one generator per photo. Cell: mean PSNR dB / data consistency
‖A x̂ − y‖/(σ√m). Writes ``results/cdps-steps.{md,json}`` (``--merge``: keeps the cells of runs not rerun).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_dps import write_results  # noqa: E402
from bench_methods import RESULTS, SIGMA, machine, photo_problems  # noqa: E402

import diffsolve  # noqa: E402
from diffsolve.data import HELDOUT  # noqa: E402
from diffsolve.metrics import data_consistency, scores  # noqa: E402
from diffsolve.models import load_default  # noqa: E402

cdps_module = importlib.import_module("diffsolve.solvers.cdps")
TASKS = ("gaussian_blur", "motion_blur", "sr4")
RUNS = ("cdps", "cdps-spread", "mpgd", "dps")


def spread_plan(plan):
    """C-DPS's ``plan`` with the ``cdps-spread`` budgets (module docstring)."""
    def planned(*args, **kwargs):
        steps = plan(*args, **kwargs)
        fit = cdps_module.RUN_CG_ITERS
        before = len(steps) - 1
        if before <= fit:
            return steps
        kept = {round(j * (before - 1) / (fit - 1)) for j in range(fit)}
        return [p if i in kept or not p.truncated else p._replace(w=1e-30) for i, p in enumerate(steps)]
    return planned


def run_one(name: str, model, op, y: torch.Tensor, steps: int) -> torch.Tensor:
    gens = [torch.Generator().manual_seed(i) for i in range(y.shape[0])]
    method = "cdps" if name.startswith("cdps") else name
    plan = cdps_module.plan
    if name == "cdps-spread":
        cdps_module.plan = spread_plan(plan)
    try:
        with torch.enable_grad() if name == "dps" else torch.no_grad():
            return diffsolve.solve(method, model, op, y, steps=steps, sigma=SIGMA, generator=gens).detach()
    finally:
        cdps_module.plan = plan


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", nargs="+", choices=RUNS, default=list(RUNS))
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 250, 1000])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--merge", action="store_true")
    args = parser.parse_args(argv)
    model, start, rows = load_default("patches"), time.time(), []
    for task, op, x, y in photo_problems(list(HELDOUT), args.size, TASKS):
        for name in args.runs:
            for n in args.steps:
                if name == "cdps-spread" and n - 1 <= cdps_module.RUN_CG_ITERS:
                    continue  # the same run as cdps
                t0 = time.time()
                xr = run_one(name, model, op, y, n)
                row = {"task": task, "run": name, "steps": n, "psnr": float(scores(xr, x)["psnr"].mean()),
                       "dc": float(data_consistency(op, xr, y, SIGMA).mean()),
                       "sec": (time.time() - t0) / x.shape[0]}
                rows.append(row)
                print(f"{task:14s} {name:12s} N={n:5d} PSNR {row['psnr']:.2f} dc {row['dc']:.2f} "
                      f"{row['sec']:.1f} s/image", flush=True)
    path = RESULTS / "cdps-steps.json"
    if args.merge and path.exists():
        rerun = {(r["task"], r["run"], r["steps"]) for r in rows}
        kept = [r for r in json.loads(path.read_text())["rows"] if (r["task"], r["run"], r["steps"]) not in rerun]
        rows = kept + rows
    steps = sorted({r["steps"] for r in rows})
    lines = ["# C-DPS beyond 100 steps on held-out photos (benchmarks/bench_cdps_steps.py)", "",
             f"`python benchmarks/bench_cdps_steps.py` ({machine()}; this run {time.time() - start:.0f} s). The four "
             f"held-out photos at {args.size}², σ = {SIGMA}, the `patches` model. Cell: mean PSNR dB / data consistency "
             "(1: the residual matches the noise). `cdps-spread`: the variant tried (the script's docstring); "
             "where N − 1 ≤ RUN_CG_ITERS it is `cdps` itself.", "",
             "| task | run | " + " | ".join(f"N = {n}" for n in steps) + " |", "|---|---|" + "---|" * len(steps)]
    for task in TASKS:
        for name in RUNS:
            cells = {r["steps"]: r for r in rows if (r["task"], r["run"]) == (task, name)}
            if cells:
                lines.append(f"| {task} | {name} | " + " | ".join(
                    f"{cells[n]['psnr']:.2f} / {cells[n]['dc']:.2f}" if n in cells else "" for n in steps) + " |")
    print(write_results("cdps-steps", {"rows": rows, "size": args.size}, "\n".join(lines) + "\n"))


if __name__ == "__main__":
    main()
