"""Circulant (FFT) preconditioner for C-DPS's CG on motion blur: iterations per step level and time per
step beyond DDIM, before/after. ``python benchmarks/bench_cg_precond.py`` (about a minute on 2 cores);
writes benchmarks/results/cg-precond.md and .json.

Operator: MotionBlur(61, 0.5, seed 0), reflect boundary (support 31×19), σ = 0.05, reverse coupling,
η = 1, chain "none" (cdps defaults), float32, tol 1e-5. Iterations: one 256² channel, rhs as C-DPS
builds it (c·m + √c e₁ + w·Aᵀ(√ᾱ_s y)), x0 = 0, counted with a host check every iteration.
"Before" = plain CG with cdps's κ budget (``cg_budget``); "after" = PCG with the budget from
``Blur.cg_iterations`` (what ``cg_budget`` should call, see the .md). Timing: 4×3×256², cheap ε
(ε = 0.1·x), ``steps`` C-DPS steps, one run each, per step beyond DDIM, against MPGD.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

from diffsolve.kernels import batched_cg
from diffsolve.operators import MotionBlur
from diffsolve.solvers import cdps, ddim, mpgd
cdps_mod = importlib.import_module("diffsolve.solvers.cdps")

SIGMA, TOL, H = 0.05, 1e-5, 256
OUT = Path(__file__).parent / "results"


class CheapEps:
    """ε̂(x, t) = 0.1·x on the standard linear-β table (1000 steps): no network cost."""

    def __init__(self) -> None:
        self.alphas_cumprod = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)

    def __call__(self, x, t):
        return 0.1 * x


def levels(steps: int) -> list[tuple[int, float, float]]:
    from diffsolve.solvers._loop import prepare

    try:  # the Sampling-object API (being introduced), else the flat keywords
        from diffsolve.solvers import Sampling
        loop = prepare(CheapEps(), (1, 1, 8, 8), Sampling(steps=steps, dtype=torch.float32))
    except (ImportError, TypeError):
        loop = prepare(CheapEps(), (1, 1, 8, 8), steps=steps, dtype=torch.float32)
    return list(enumerate(zip(loop.alpha_t, loop.alpha_s)))


def proposed_budget(operator, size, c, w, tol):
    """The change proposed for cdps.cg_budget: the operator's preconditioned count where it has one."""
    k = operator.cg_iterations(tuple(size), c, w, tol)
    return k if k is not None else _ORIGINAL_BUDGET(operator, size, c, w, tol)


_ORIGINAL_BUDGET = cdps_mod.cg_budget


def iteration_table(op, steps: int, pick) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.avg_pool2d(torch.rand(1, 1, H, H, generator=g) * 2 - 1, 5, 1, 2)
    y = op.A(x) + SIGMA * torch.randn(1, 1, H, H, generator=g)
    gb = cdps_mod.gram_bound(op, (H, H))
    rows = []
    for i, (a_t, a_s) in levels(steps):
        if not pick(i, steps):
            continue
        c, w = cdps_mod.precisions("reverse", 1.0, a_t, a_s, SIGMA, "none", gb)
        rhs = (c * x + math.sqrt(c) * torch.randn(x.shape, generator=g) + w * op.A_adjoint(math.sqrt(a_s) * y)).float()
        shift, scale = torch.tensor([c]), torch.tensor([w])
        plain = batched_cg(op.gram, rhs, shift, scale, max_iters=1000, tol=TOL, check_every=1)
        pcg = batched_cg(op.gram, rhs, shift, scale, max_iters=1000, tol=TOL, check_every=1,
                         preconditioner=op.cg_preconditioner(shift, scale))
        rows.append(dict(steps=steps, level=i, c=c, w=w, kappa_bound=1 + w * gb / c,
                         budget_before=_ORIGINAL_BUDGET(op, (H, H), c, w, TOL), cg_iters=int(plain.iterations[0]),
                         pcg_iters=int(pcg.iterations[0]), budget_after=proposed_budget(op, (H, H), c, w, TOL)))
        print(rows[-1], flush=True)
    return rows


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def timing(steps: int) -> dict:
    den = CheapEps()
    op = MotionBlur(61, 0.5, 0, boundary="reflect")
    shape = (4, 3, H, H)
    g = torch.Generator().manual_seed(1)
    x = torch.nn.functional.avg_pool2d(torch.rand(*shape, generator=g) * 2 - 1, 5, 1, 2)
    y = op.A(x) + SIGMA * torch.randn(op.A(x).shape, generator=g)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    # warm-ups: the gram bound and the calibrated counts are host-side, cached per operator and size
    t_cal = timed(lambda: [proposed_budget(op, (H, H), *cdps_mod.precisions("reverse", 1.0, a_t, a_s, SIGMA, "none",
                                                                              cdps_mod.gram_bound(op, (H, H))), TOL)
                           for _, (a_t, a_s) in levels(steps)])
    ddim(den, shape, steps=1, generator=gen())
    out = {"steps": steps, "calibration_s": t_cal}
    out["ddim_s"] = timed(lambda: ddim(den, shape, steps=steps, generator=gen()))
    out["mpgd_s"] = timed(lambda: mpgd(den, op, y, steps=steps, generator=gen()))
    pre = op.cg_preconditioner
    op.cg_preconditioner = lambda shift, scale: None  # before: plain CG, cdps's κ budget
    try:
        out["cdps_before_s"] = timed(lambda: cdps(den, op, y, steps=steps, sigma=SIGMA, generator=gen()))
    finally:
        del op.cg_preconditioner
    assert op.cg_preconditioner.__func__ is pre.__func__
    cdps_mod.cg_budget = proposed_budget  # after: PCG, the proposed budget (cdps sizes it in plan() via _budget)
    original_inner = getattr(cdps_mod, "_budget", None)
    cdps_mod._budget = lambda bound, c, w, tol: proposed_budget(op, (H, H), c, w, tol)
    try:
        xs, info = cdps(den, op, y, steps=steps, sigma=SIGMA, generator=gen(), return_info=True)
        out["cdps_after_s"] = timed(lambda: cdps(den, op, y, steps=steps, sigma=SIGMA, generator=gen()))
    finally:
        cdps_mod.cg_budget = _ORIGINAL_BUDGET
        if original_inner is None:
            del cdps_mod._budget
        else:
            cdps_mod._budget = original_inner
    out["after_all_converged"] = bool(info["cg_converged"].all())
    out["after_worst_residual"] = float(info["cg_residual"].max())
    out["after_iterations_max"] = int(info["cg_iterations"].max())
    out["after_iterations_per_step"] = info["cg_iterations"].max(1).values.tolist()
    for k in ("mpgd", "cdps_before", "cdps_after"):
        out[f"{k}_ms_per_step_beyond_ddim"] = 1e3 * (out[f"{k}_s"] - out["ddim_s"]) / steps
    m = out["mpgd_ms_per_step_beyond_ddim"]
    out["ratio_before"] = out["cdps_before_ms_per_step_beyond_ddim"] / m
    out["ratio_after"] = out["cdps_after_ms_per_step_beyond_ddim"] / m
    print(out, flush=True)
    return out


def main() -> None:
    torch.set_num_threads(2)
    op = MotionBlur(61, 0.5, 0, boundary="reflect")
    rows = iteration_table(op, 30, lambda i, n: i in (0, 10, 20) or i >= 23)
    rows += iteration_table(op, 100, lambda i, n: i in (0, 50, 70, 80, 90) or i >= 95)
    steps = int(os.environ.get("BENCH_STEPS", "10"))
    t = timing(steps)
    machine = (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads "
               f"(2 cores shared with other jobs), torch {torch.__version__}, Python {sys.version.split()[0]}")
    OUT.mkdir(exist_ok=True)
    (OUT / "cg-precond.json").write_text(json.dumps({"machine": machine, "iterations": rows, "timing": t}, indent=1))
    lines = ["# Circulant preconditioner for C-DPS CG on motion blur", "", f"Machine: {machine}.", "",
             "MotionBlur(61, 0.5, seed 0), reflect (support 31×19), 256², σ = 0.05, cdps defaults (reverse, η = 1, "
             "chain none), float32, tol 1e-5, x0 = 0, one channel. Budget before: `cg_budget` (Chebyshev on "
             "κ ≤ 1 + w‖AᵀA‖/c); after: `Blur.cg_iterations` (calibrated PCG count ×1.25 + 2).", "",
             "| steps | level | c | w | κ bound | budget before | CG iters | PCG iters | budget after |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['steps']} | {r['level']} | {r['c']:.3g} | {r['w']:.3g} | {r['kappa_bound']:.1f} | "
                     f"{r['budget_before']} | {r['cg_iters']} | {r['pcg_iters']} | {r['budget_after']} |")
    lines += ["", f"Time per step beyond DDIM, 4×3×256², cheap ε, {t['steps']} steps, one run each "
              f"(ms; DDIM {1e3 * t['ddim_s'] / t['steps']:.1f} ms/step):", "",
              "| method | ms/step beyond DDIM | ratio to MPGD |", "|---|---|---|",
              f"| MPGD | {t['mpgd_ms_per_step_beyond_ddim']:.1f} | 1 |",
              f"| C-DPS CG, κ budget (before) | {t['cdps_before_ms_per_step_beyond_ddim']:.1f} | {t['ratio_before']:.1f} |",
              f"| C-DPS PCG, calibrated budget (after) | {t['cdps_after_ms_per_step_beyond_ddim']:.1f} | "
              f"{t['ratio_after']:.1f} |", "",
              f"After: all steps converged = {t['after_all_converged']}, worst CG residual "
              f"{t['after_worst_residual']:.2e}, largest count {t['after_iterations_max']}; one-off calibration "
              f"{t['calibration_s']:.2f} s (host, cached per operator/size/grid point)."]
    (OUT / "cg-precond.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
