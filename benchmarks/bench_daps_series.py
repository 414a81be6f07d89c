"""DAPS's Langevin steps on an operator without an SVD: the K-step loop against the Chebyshev series (a report).

    OMP_NUM_THREADS=1 python benchmarks/bench_daps_series.py        # → results/daps-series.{md,json}

The reflect-boundary motion blur of each size (the CLI's, kernel 61·S/256) has no SVD, so DAPS's default used
to run each level's K = 100 Langevin steps one by one; ``langevin="chebyshev"`` (now the default there) draws
from the same K-step Gaussian map with two Chebyshev series in P = I/r² + AᵀA/τ² (solvers/daps.py). Per size:
the products with P per level (the series' degrees, default step rule, σ = 0.05, over the default levels of
20 and 50 steps), and the seconds of a whole DAPS solve with each mode (cheap ε-model, so the Langevin part
shows; 4×3×S², 3 levels, best of 3 interleaved), and with the shipped UNet (1×3×S², 20 levels, one run), each
with ``discrepancy=False`` (the final pull is the same solve for both modes, not the Langevin part).
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
from bench_dps import _cheap_model, write_results  # noqa: E402
from bench_methods import machine  # noqa: E402

import diffsolve  # noqa: E402
from diffsolve.models import load_default  # noqa: E402
from diffsolve.solvers._inverse import operator_gain  # noqa: E402
from diffsolve.tasks import make_operator  # noqa: E402

daps_module = importlib.import_module("diffsolve.solvers.daps")
SIGMA, K = 0.05, 100


def degrees(op, size: int, levels: int) -> list[int | None]:
    """Products with P per level of the default DAPS run (None: the level runs its K steps)."""
    gram = operator_gain(op, torch.zeros(1, 3, size, size))
    tau = SIGMA * daps_module.LIKELIHOOD_RATIO
    sig = daps_module.edm_sigmas(daps_module.SIGMA_MAX, daps_module.SIGMA_MIN, levels)
    out = []
    for r, rate in zip(sig, daps_module.langevin_rates(sig, gram, tau, K)):
        s = daps_module.langevin_series(1 / r**2, tau**2, rate, K, gram, daps_module.series_tolerance(torch.float32))
        out.append(None if s is None else len(s[0]) + len(s[1]) - 1)
    return out


def timed(model, op, y, levels: int, mode: str) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        diffsolve.solve("daps", model, op, y, steps=levels, sigma=SIGMA, langevin=mode, discrepancy=False,
                        generator=torch.Generator().manual_seed(0))
        return time.perf_counter() - t0


def main() -> None:
    rows = []
    unet = load_default("patches")
    for size in (64, 128, 256):
        op = make_operator("motion_blur", (size, size), seed=0)
        row = dict(size=size, kernel=list(op.kernel_size), support=list(op.kernel.shape))
        for levels in (20, 50):
            d = degrees(op, size, levels)
            row[f"products_{levels}"] = sum(K if v is None else v + 1 for v in d) / len(d)  # + 1: Aᵀ(y − A x̂0)
        g = torch.Generator().manual_seed(1)
        y = op.A(torch.rand(4, 3, size, size, generator=g) * 2 - 1)
        y = y + SIGMA * torch.randn(y.shape, generator=g)
        best = {"loop": math.inf, "chebyshev": math.inf}
        timed(_cheap_model(), op, y, 3, "chebyshev")  # warm-up
        for _ in range(3):
            for mode in best:
                best[mode] = min(best[mode], timed(_cheap_model(), op, y, 3, mode))
        row.update(cheap_loop=best["loop"], cheap_series=best["chebyshev"])
        row.update(unet_loop=timed(unet, op, y[:1], 20, "loop"), unet_series=timed(unet, op, y[:1], 20, "chebyshev"))
        rows.append(row)
        print(row, flush=True)
    text = write_results("daps-series", dict(machine=machine(), rows=rows), render(rows, machine()))
    print(text)


def render(rows: list[dict], machine_line: str) -> str:
    lines = ["# DAPS's Langevin steps without an SVD: the K-step loop against the Chebyshev series "
             "(benchmarks/bench_daps_series.py)", "",
             f"Machine: {machine_line}. Reflect motion blur (the CLI's `motion_blur`, seed 0), σ = 0.05, K = 100 "
             "Langevin steps per level, the default step rule; float32.", "",
             "| size | kernel (support) | products with P per level, 20 / 50 levels (loop: 100) | cheap ε, 4×3×S², "
             "3 levels: loop s | series s | loop/series | UNet, 1×3×S², 20 levels: loop s | series s | loop/series |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        kernel, support = ("×".join(map(str, r[k])) for k in ("kernel", "support"))
        lines.append(f"| {r['size']}² | {kernel} ({support}) | {r['products_20']:.1f} / {r['products_50']:.1f} | "
                     f"{r['cheap_loop']:.2f} | {r['cheap_series']:.2f} | {r['cheap_loop'] / r['cheap_series']:.1f} | "
                     f"{r['unet_loop']:.1f} | {r['unet_series']:.1f} | {r['unet_loop'] / r['unet_series']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
