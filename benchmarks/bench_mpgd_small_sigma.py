"""MPGD at small noise levels: ρ ∝ σ (before) against ρ's noise scale floored at a share of y's RMS (now).

    python benchmarks/bench_mpgd_small_sigma.py

Not a test. MPGD at its defaults, 30 steps, σ ∈ {0.001, 0.003, 0.01, 0.02, 0.05} (y = A x + σ n, seed 3), the five
photo tasks, the ``patches`` model, one draw per photo: the tuning photos chelsea and coffee at 64² and the held-out
hopper and camera at 128². "before" sets ``mpgd.RHO_SIGMA_FLOOR = 0`` (ρ ∝ σ), "now" is the default; C-DPS at its
defaults is the reference column. Cell: mean PSNR dB / worst data consistency ‖A x̂ − y‖/(σ√m).
Writes ``results/mpgd-small-sigma.{md,json}``.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _noise_sweep import run_and_write, score_with, sweep  # noqa: E402
from bench_few_steps import TASKS  # noqa: E402
from bench_methods import machine  # noqa: E402

SIGMAS = (0.001, 0.003, 0.01, 0.02, 0.05)
RUNS = ((("chelsea", "coffee"), 64), (("hopper", "camera"), 128))
STEPS = 30


def run() -> list[dict]:
    from diffsolve.models import load_default

    module = importlib.import_module("diffsolve.solvers.mpgd")
    floor = module.RHO_SIGMA_FLOOR
    model = load_default("patches")
    return sweep(RUNS, TASKS, SIGMAS, lambda op, x, y, sigma: {
        label: score_with(module, "RHO_SIGMA_FLOOR", rho_floor, method, model, op, x, y, sigma, STEPS)
        for label, method, rho_floor in (("before", "mpgd", 0.0), ("now", "mpgd", floor), ("cdps", "cdps", floor))})


def markdown(rows: list[dict], seconds: float) -> str:
    lines = ["# MPGD at small noise levels: ρ ∝ σ against a floored noise scale", "",
             f"`python benchmarks/bench_mpgd_small_sigma.py` ({machine()}, {seconds:.0f} s). MPGD at its defaults, "
             f"{STEPS} steps, one draw per photo; before: `RHO_SIGMA_FLOOR = 0` (ρ ∝ σ); now: ρ's noise scale "
             "max(σ, 0.04·RMS(y)); C-DPS at its defaults for reference. Cell: mean PSNR dB / worst data consistency.",
             ""]
    for names, size in RUNS:
        lines += [f"## {', '.join(names)}, {size}²", "", "| task | σ | MPGD before | MPGD now | Δ PSNR | C-DPS |",
                  "|---|---|---|---|---|---|"]
        for r in rows:
            if r["size"] != size:
                continue
            b, n, c = r["before"], r["now"], r["cdps"]
            lines.append(f"| {r['task']} | {r['sigma']:g} | {b[0]:.2f} / {b[1]:.2f} | {n[0]:.2f} / {n[1]:.2f} | "
                         f"{n[0] - b[0]:+.2f} | {c[0]:.2f} / {c[1]:.2f} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    run_and_write("mpgd-small-sigma", run, markdown)
