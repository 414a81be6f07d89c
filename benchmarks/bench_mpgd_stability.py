"""MPGD's step without and with its stability cap κ ≤ ‖r‖/L where ‖r‖² ≤ q₀·mσ², across noise levels.

    python benchmarks/bench_mpgd_stability.py

Not a test. MPGD at its defaults, 30 steps, σ ∈ {0.05, 0.1, 0.2, 0.5} (y = A x + σ n, seed 3), the five photo tasks,
the ``patches`` model, one draw per photo: the tuning photos chelsea and coffee at 64² and the held-out hopper and
camera at 128². ``mpgd.LANDWEBER_BELOW`` = q₀: 0 (no cap, the rule before), 1 (the default: once the residual is
no larger than y's noise), 2, and ∞ (Landweber's ‖r‖/L at every step); DPS at its defaults is the reference column.
Cell: mean PSNR dB / worst data consistency ‖A x̂ − y‖/(σ√m). Writes ``results/mpgd-stability.{md,json}``.
"""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _noise_sweep import run_and_write, score_with, sweep  # noqa: E402
from bench_few_steps import TASKS  # noqa: E402
from bench_methods import machine  # noqa: E402

SIGMAS = (0.05, 0.1, 0.2, 0.5)
RUNS = ((("chelsea", "coffee"), 64), (("hopper", "camera"), 128))
STEPS = 30
VARIANTS = (("q0 = 0", "mpgd", 0.0), ("q0 = 1", "mpgd", 1.0), ("q0 = 2", "mpgd", 2.0), ("q0 = inf", "mpgd", math.inf),
            ("dps", "dps", 1.0))


def run() -> list[dict]:
    from diffsolve.models import load_default

    module = importlib.import_module("diffsolve.solvers.mpgd")
    model = load_default("patches")
    return sweep(RUNS, TASKS, SIGMAS, lambda op, x, y, sigma: {
        label: score_with(module, "LANDWEBER_BELOW", q0, method, model, op, x, y, sigma, STEPS)
        for label, method, q0 in VARIANTS})


def column(label: str) -> str:
    """A variant's column header: "MPGD q₀ = …" or "DPS"."""
    return "DPS" if label == "dps" else "MPGD " + label.replace("q0", "q₀").replace("inf", "∞")


def markdown(rows: list[dict], seconds: float) -> str:
    labels = [label for label, _, _ in VARIANTS]
    lines = ["# MPGD's step with and without its stability cap", "",
             f"`python benchmarks/bench_mpgd_stability.py` ({machine()}, {seconds:.0f} s). MPGD at its defaults, "
             f"{STEPS} steps, one draw per photo; the cap κ ≤ ‖r‖/L (Landweber's step) where ‖r‖² ≤ q₀·mσ²: q₀ = 0 "
             "(no cap, the rule before), 1 (the default), 2, ∞ (every step); DPS at its defaults for reference. Cell: "
             "mean PSNR dB / worst data consistency; Δ: the default against no cap.", ""]
    for names, size in RUNS:
        lines += [f"## {', '.join(names)}, {size}²", "",
                  "| task | σ | " + " | ".join(column(v) for v in labels) + " | Δ PSNR |",
                  "|---|---|" + "---|" * (len(labels) + 1)]
        for r in rows:
            if r["size"] != size:
                continue
            cells = " | ".join(f"{r[v][0]:.2f} / {r[v][1]:.2f}" for v in labels)
            lines.append(f"| {r['task']} | {r['sigma']:g} | {cells} | {r['q0 = 1'][0] - r['q0 = 0'][0]:+.2f} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    run_and_write("mpgd-stability", run, markdown)
