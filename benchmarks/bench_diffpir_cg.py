"""DiffPIR's data step on an operator without an exact solve: CG iterations and where CG starts.

Not a test. The proximal step (ρ_t I + AᵀA) x̂0' = Aᵀy + ρ_t x̂0 on the demo's motion blur (61×61 kernel,
reflect boundary: preconditioned CG), the demo photos chelsea and coffee (the tuning set), σ = 0.05, the
shipped ``patches`` model, DiffPIR's defaults otherwise; variants "k, from x̂0" (``CG_ITERS`` = k, started
at the prox centre: the default is 50) and "k, from 0" (the previous default: 200 from zero). Cell: mean
PSNR dB / data consistency / s per image, at 64² (N = 20, 50, 100) and 128² (N = 20, 50).

Writes ``benchmarks/results/diffpir-cg.{md,json}``. Usage: ``python benchmarks/bench_diffpir_cg.py``.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_dps import _machine, write_results  # noqa: E402

VARIANTS = ((200, False), (50, True), (30, True), (20, True), (20, False))
SIZES = {64: (20, 50, 100), 128: (20, 50)}


class _FromZero:
    """The operator with its solve's warm start dropped (CG from zero, as before)."""

    def __init__(self, op):
        self._op = op

    def __getattr__(self, name):
        return getattr(self._op, name)

    def solve_unchecked(self, rhs, shift, scale, **options):
        options.pop("x0", None)
        return self._op.solve_unchecked(rhs, shift, scale, **options)


def run() -> list[dict]:
    from bench_methods import photo_problems

    from diffsolve.metrics import scores
    from diffsolve.models import load_default

    module = importlib.import_module("diffsolve.solvers.diffpir")
    model = load_default("patches")
    names = ("chelsea", "coffee")
    rows = []
    for size, step_list in SIZES.items():
        ((_, op, x, y),) = photo_problems(names, size, ("motion_blur",))
        for n in step_list:
            for iters, warm in VARIANTS:
                module.CG_ITERS = iters
                gens = [torch.Generator().manual_seed(i) for i in range(len(names))]
                start = time.perf_counter()
                xr, info = module.diffpir(model, op if warm else _FromZero(op), y, steps=n, sigma=0.05,
                                          generator=gens, return_info=True)
                rows.append({"size": size, "steps": n, "iters": iters, "warm": warm,
                             "psnr": float(scores(xr, x)["psnr"].mean()), "dc": float(info["data_consistency"].mean()),
                             "sec": (time.perf_counter() - start) / len(names)})
                print(rows[-1], flush=True)
    return rows


def render(res: dict) -> str:
    heads = [f"{k}, from {'x̂0' if w else '0'}" for k, w in VARIANTS]
    lines = ["# DiffPIR's data step without an exact solve: CG iterations and start", "",
             f"`python benchmarks/bench_diffpir_cg.py` — {res['machine']}. Motion blur (61, reflect), demo photos "
             "chelsea and coffee, σ = 0.05, `patches` model. Cell: mean PSNR dB / data consistency / s per image "
             "(wall time on a shared 2-core machine).", "",
             "| size | N | " + " | ".join(heads) + " |", "|---|---|" + "---|" * len(heads)]
    for size, n in dict.fromkeys((r["size"], r["steps"]) for r in res["rows"]):
        cells = [next(f"{r['psnr']:.2f} / {r['dc']:.2f} / {r['sec']:.1f}" for r in res["rows"]
                      if (r["size"], r["steps"], r["iters"], r["warm"]) == (size, n, k, w)) for k, w in VARIANTS]
        lines.append(f"| {size}² | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    torch.set_num_threads(1)
    res = {"machine": _machine(), "rows": run()}
    print(write_results("diffpir-cg", res, render(res)))


if __name__ == "__main__":
    main()
