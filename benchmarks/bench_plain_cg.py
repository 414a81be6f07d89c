"""Truncated data-step solves with and without the blurs' circulant preconditioner (a report, not a test).

    python benchmarks/bench_plain_cg.py [--images camera grass hopper raccoon]

DiffPIR's proximal step (ρ_t I + AᵀA) x̂0' = Aᵀy + ρ_t x̂0 (``diffpir.CG_ITERS`` iterations from x̂0) and ΠGDM's
guidance solve (σ² I + r_t² AᵀA) u = Aᵀr (``pigdm.CG_ITERS`` from 0) on reflect-boundary blurs, which have no exact solve: CG with the operator's
circulant preconditioner M = shift·I + scale·ĀᵀĀ (before) against plain CG (now). Operators: the ``motion_blur``
task (61×61, reflect) at 64² (N = 20, 50, 100) and 128² (N = 20, 50); at 64² and N = 50 also kernels whose gain is
not 1 — a 9×9 Gaussian (std 1.6) × 4 and × 1/4 and the task's motion kernel × 4. The held-out photos, σ = 0.05, the
``patches`` model, one draw each (seeds 0…B−1). Cell: mean PSNR / worst data consistency / s per image.
Writes ``results/plain-cg.{md,json}``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_dps import write_results  # noqa: E402
from bench_methods import SIGMA, machine, measure  # noqa: E402

import diffsolve  # noqa: E402
from diffsolve.solvers import _inverse  # noqa: E402

_diffpir = importlib.import_module("diffsolve.solvers.diffpir")  # the modules (the package's names are functions)
_pigdm = importlib.import_module("diffsolve.solvers.pigdm")

METHODS = ("diffpir", "pigdm")
VARIANTS = {"preconditioned": True, "plain": False}


def forced(precondition: bool):
    """``_inverse.solver_of`` with ``precondition`` fixed, whatever the method asks."""
    return lambda operator, max_iters=None, **_: _inverse.solver_of(operator, max_iters, precondition=precondition)


def problems(size: int) -> dict:
    from diffsolve.operators import Blur, GaussianBlur
    from diffsolve.tasks import make_operator

    task = make_operator("motion_blur", (size, size))
    out = {"motion_blur (task)": task}
    if size == 64:
        gauss = GaussianBlur(kernel_size=9, std=1.6).kernel.float()
        out.update({"Gaussian 9×9 ×4": Blur(4 * gauss), "Gaussian 9×9 ×1/4": Blur(gauss / 4),
                    "task motion kernel ×4": Blur(4 * task.kernel.float())})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="+", default=["camera", "grass", "hopper", "raccoon"])
    args = parser.parse_args()
    from diffsolve.data import photo
    from diffsolve.metrics import data_consistency, scores
    from diffsolve.models import load_default

    model = load_default("patches")
    modules = [sys.modules[f"diffsolve.solvers.{m}"] for m in METHODS]
    rows, start = [], time.perf_counter()
    for size, step_lists in ((64, {"motion_blur (task)": (20, 50, 100)}), (128, {"motion_blur (task)": (20, 50)})):
        x = torch.stack([photo(name, size=size) for name in args.images])
        for op_name, op in problems(size).items():
            y = measure(op, x, seed=size)
            for method in METHODS:
                for n in step_lists.get(op_name, (50,)):
                    row = {"size": size, "operator": op_name, "method": method, "steps": n}
                    for label, flag in VARIANTS.items():
                        saved = [mod.solver_of for mod in modules]
                        for mod in modules:
                            mod.solver_of = forced(flag)
                        try:
                            tic = time.perf_counter()
                            with torch.enable_grad() if method == "pigdm" else torch.no_grad():
                                out = diffsolve.solve(method, model, op, y, sigma=SIGMA, steps=n, generator=[
                                    torch.Generator().manual_seed(i) for i in range(len(x))])
                            sec = (time.perf_counter() - tic) / len(x)
                        finally:
                            for mod, fn in zip(modules, saved):
                                mod.solver_of = fn
                        out = out.detach()
                        row[label] = (float(scores(out, x)["psnr"].mean()),
                                      float(data_consistency(op, out, y, SIGMA).max()), sec)
                    rows.append(row)
                    print(row, flush=True)
    seconds = time.perf_counter() - start
    lines = ["# Truncated data-step solves: the circulant preconditioner against plain CG", "",
             f"`python benchmarks/bench_plain_cg.py --images {' '.join(args.images)}` ({machine()}, {seconds:.0f} s)."
             f" DiffPIR ({_diffpir.CG_ITERS} CG iterations a step from x̂0) and ΠGDM ({_pigdm.CG_ITERS} from 0) at their"
             f" other defaults, σ = {SIGMA},"
             " one draw per photo, mean over the photos.", "",
             "Cell: PSNR dB / worst data consistency ‖A x̂ − y‖/(σ√m) / s per image.", "",
             "| size | operator | method | N | preconditioned | plain | Δ PSNR |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        a, b = r["preconditioned"], r["plain"]
        lines.append(f"| {r['size']}² | {r['operator']} | {r['method']} | {r['steps']} | {a[0]:.2f} / {a[1]:.2f} / "
                     f"{a[2]:.1f} | {b[0]:.2f} / {b[1]:.2f} / {b[2]:.1f} | {b[0] - a[0]:+.2f} |")
    write_results("plain-cg", {"machine": machine(), "args": vars(args), "rows": rows}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
