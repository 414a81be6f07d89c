"""RED-diff's data term across noise levels: a weight fixed at every σ against one that falls as σ_ref/σ above σ_ref.

    python benchmarks/bench_reddiff_sigma.py

Not a test. RED-diff at its defaults, 30 steps, σ ∈ {0.05, 0.1, 0.2, 0.5} (y = A x + σ n, seed 3), the five photo
tasks, the ``patches`` model, one draw per photo: the tuning photos chelsea and coffee at 64², the held-out hopper and
camera at 128² and grass and raccoon at 64². The data term is divided by w_σ: "constant" w_σ = 1 (the rule before,
``reddiff.NOISE_REFERENCE = ∞``), "σ_ref/σ" max(1, σ/(g_A σ_ref)) (the default), "(σ_ref/σ)²" its square (the paper's
1/σ² above σ_ref). Cell: mean PSNR dB / worst data consistency ‖A x̂ − y‖/(σ√m). Then the same three on a 16×16
exact Gaussian prior (4 draws, 9-tap Gaussian and motion blurs): mean ‖x̂ − μ_post‖/‖μ_prior − μ_post‖ against the
exact posterior mean. Writes ``results/reddiff-sigma.{md,json}``.
"""

from __future__ import annotations

import importlib
import math
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _noise_sweep import sweep  # noqa: E402
from bench_dps import write_results  # noqa: E402
from bench_few_steps import TASKS  # noqa: E402
from bench_methods import machine  # noqa: E402
from bench_posterior import kernel_cov  # noqa: E402

import diffsolve  # noqa: E402

SIGMAS = (0.05, 0.1, 0.2, 0.5)
RUNS = ((("chelsea", "coffee"), 64), (("hopper", "camera"), 128), (("grass", "raccoon"), 64))
STEPS = 30
VARIANTS = ("constant", "σ_ref/σ", "(σ_ref/σ)²")


def solve_variant(module, variant: str, model, op, y: torch.Tensor, sigma: float, gens: list) -> torch.Tensor:
    """RED-diff with the data term's noise-level weight of ``variant`` (module docstring)."""
    reference, gradient = module.NOISE_REFERENCE, module.gradient

    def squared(operator, mu, yy, eps_hat, eps, lam_t, floor=None, gain2=None):  # w_σ² with NOISE_REFERENCE = ∞
        gain2 = gain2 * (sigma**2 / (gain2 * reference**2)).clamp(min=1)
        return gradient(operator, mu, yy, eps_hat, eps, lam_t, floor, gain2)

    if variant != "σ_ref/σ":
        module.NOISE_REFERENCE = math.inf
    if variant == "(σ_ref/σ)²":
        module.gradient = squared
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return diffsolve.solve("reddiff", model, op, y, sigma=sigma, steps=STEPS, generator=gens)
    finally:
        module.NOISE_REFERENCE, module.gradient = reference, gradient


def run() -> list[dict]:
    from diffsolve.metrics import data_consistency, scores
    from diffsolve.models import load_default

    module = importlib.import_module("diffsolve.solvers.reddiff")
    model = load_default("patches")

    def cells(op, x, y, sigma) -> dict:
        out = {}
        for variant in VARIANTS:
            gens = [torch.Generator().manual_seed(i) for i in range(x.shape[0])]
            result = solve_variant(module, variant, model, op, y, sigma, gens)
            dc = data_consistency(op, result, y, sigma)
            out[variant] = (float(scores(result, x)["psnr"].mean()), float(dc.max()))
        return out

    return sweep(RUNS, TASKS, SIGMAS, cells)


def run_exact() -> list[dict]:
    from diffsolve.models import GaussianPrior
    from diffsolve.operators import GaussianBlur, MotionBlur

    module = importlib.import_module("diffsolve.solvers.reddiff")
    n, dtype = 16, torch.float64
    cov = kernel_cov(n, 2.0, 0.3, 1e-3)  # the noise-level tests' correlated prior (tests/_small_problem.py)
    prior = GaussianPrior(0.1 * torch.randn(1, n, n, generator=torch.Generator().manual_seed(0), dtype=dtype), cov)
    x = prior.sample(4, generator=torch.Generator().manual_seed(1))
    rows = []
    for task, op in (("gaussian_blur", GaussianBlur(9, 2.0)), ("motion_blur", MotionBlur(9, 0.5, seed=1))):
        ax = op.A(x)
        for sigma in SIGMAS:
            y = ax + sigma * torch.randn(ax.shape, generator=torch.Generator().manual_seed(2), dtype=dtype)
            post = torch.stack([prior.posterior(op, y[i:i + 1], sigma=sigma).mean.reshape(1, n, n) for i in range(4)])
            row = {"task": task, "sigma": sigma}
            for variant in VARIANTS:
                out = solve_variant(module, variant, prior, op, y, sigma, torch.Generator().manual_seed(3))
                gap = (out - post).flatten(1).norm(dim=1) / (prior.mean - post).flatten(1).norm(dim=1)
                row[variant] = float(gap.mean())
            rows.append(row)
            print(row, flush=True)
    return rows


def markdown(rows: list[dict], exact: list[dict], seconds: float) -> str:
    lines = ["# RED-diff's data term across noise levels", "",
             f"`python benchmarks/bench_reddiff_sigma.py` ({machine()}, {seconds:.0f} s). RED-diff at its defaults, "
             f"{STEPS} steps, one draw per photo; the data term divided by w_σ: constant (1, the rule before), "
             "σ_ref/σ (max(1, σ/(g_A σ_ref)), σ_ref = 0.05: the default), (σ_ref/σ)² (its square). Cell: mean PSNR "
             "dB / worst data consistency; Δ: the default against constant.", ""]
    for names, size in RUNS:
        lines += [f"## {', '.join(names)}, {size}²", "", "| task | σ | " + " | ".join(VARIANTS) + " | Δ PSNR |",
                  "|---|---|" + "---|" * (len(VARIANTS) + 1)]
        for r in rows:
            if r["images"] != list(names):
                continue
            cells = " | ".join(f"{r[v][0]:.2f} / {r[v][1]:.2f}" for v in VARIANTS)
            lines.append(f"| {r['task']} | {r['sigma']:g} | {cells} | {r['σ_ref/σ'][0] - r['constant'][0]:+.2f} |")
        lines.append("")
    lines += ["## Exact Gaussian prior, 16×16", "", "| task | σ | " + " | ".join(VARIANTS) + " |",
              "|---|---|" + "---|" * len(VARIANTS)]
    for r in exact:
        lines.append(f"| {r['task']} | {r['sigma']:g} | " + " | ".join(f"{r[v]:.3f}" for v in VARIANTS) + " |")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    torch.set_num_threads(1)
    start = time.perf_counter()
    exact, rows = run_exact(), run()
    write_results("reddiff-sigma", {"machine": machine(), "rows": rows, "exact": exact},
                  markdown(rows, exact, time.perf_counter() - start))


if __name__ == "__main__":
    main()
