"""DiffPIR's data step on an operator without an exact solve: CG iterations and where CG starts.

Not a test. The proximal step (ρ_t I + AᵀA) x̂0' = Aᵀy + ρ_t x̂0 (plain CG) on the photo task's motion blur (reflect
boundary), the tuning photos chelsea and coffee, σ = 0.05, the shipped ``patches`` model, DiffPIR's defaults
otherwise; variants "k, from x̂0" (``CG_ITERS`` = k, started at the prox centre: the default is 20) and "200,
from 0" (the solve's own start). At 64² (N = 20, 50, 100) and 128² (N = 20, 50); then kernels whose gain is not 1
(a 9×9 Gaussian ×4 and the task's motion kernel ×4, as results/plain-cg.md) at 64² and N = 50 on the held-out
hopper and camera, where a higher SNR spreads AᵀA against the shift. Cell: mean PSNR dB / data consistency /
s per image.

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

VARIANTS = ((200, False), (50, True), (20, True), (10, True))
SIZES = {64: (20, 50, 100), 128: (20, 50)}
GAIN_IMAGES = ("hopper", "camera")


class _FromZero:
    """The operator with its solve's warm start dropped (CG from zero, as before)."""

    def __init__(self, op):
        self._op = op

    def __getattr__(self, name):
        return getattr(self._op, name)

    def solve_unchecked(self, rhs, shift, scale, **options):
        options.pop("x0", None)
        return self._op.solve_unchecked(rhs, shift, scale, **options)


def problems():
    """(operator label, size, step counts, photo names, operator, x, y) for every row of the table."""
    from bench_methods import measure, photo_problems

    from diffsolve.operators import Blur, GaussianBlur

    names = ("chelsea", "coffee")
    for size, step_list in SIZES.items():
        ((_, op, x, y),) = photo_problems(names, size, ("motion_blur",))
        yield "motion_blur task", size, step_list, names, op, x, y
    ((_, task, x, _),) = photo_problems(GAIN_IMAGES, 64, ("motion_blur",))
    gauss = GaussianBlur(kernel_size=9, std=1.6).kernel.float()
    for label, op in (("Gaussian 9×9 ×4", Blur(4 * gauss)), ("task motion kernel ×4", Blur(4 * task.kernel.float()))):
        yield label, 64, (50,), GAIN_IMAGES, op, x, measure(op, x, seed=64)


def run() -> list[dict]:
    from diffsolve.metrics import scores
    from diffsolve.models import load_default

    module = importlib.import_module("diffsolve.solvers.diffpir")
    model = load_default("patches")
    rows = []
    for label, size, step_list, names, op, x, y in problems():
        for n in step_list:
            for iters, warm in VARIANTS:
                module.CG_ITERS = iters
                gens = [torch.Generator().manual_seed(i) for i in range(len(names))]
                start = time.perf_counter()
                xr, info = module.diffpir(model, op if warm else _FromZero(op), y, steps=n, sigma=0.05,
                                          generator=gens, return_info=True)
                rows.append({"operator": label, "images": list(names), "size": size, "steps": n, "iters": iters,
                             "warm": warm, "psnr": float(scores(xr, x)["psnr"].mean()),
                             "dc": float(info["data_consistency"].mean()),
                             "sec": (time.perf_counter() - start) / len(names)})
                print(rows[-1], flush=True)
    return rows


def render(res: dict) -> str:
    heads = [f"{k}, from {'x̂0' if w else '0'}" for k, w in VARIANTS]
    lines = ["# DiffPIR's data step without an exact solve: CG iterations and start", "",
             f"`python benchmarks/bench_diffpir_cg.py` — {res['machine']}. σ = 0.05, `patches` model, DiffPIR's "
             "defaults otherwise (ζ = 1). Cell: mean PSNR dB / data consistency / s per image (wall time on a shared "
             "2-core machine).", "",
             "| operator | photos | size | N | " + " | ".join(heads) + " |", "|---|---|---|---|" + "---|" * len(heads)]
    for label, size, n in dict.fromkeys((r["operator"], r["size"], r["steps"]) for r in res["rows"]):
        cell = [r for r in res["rows"] if (r["operator"], r["size"], r["steps"]) == (label, size, n)]
        texts = [next(f"{r['psnr']:.2f} / {r['dc']:.2f} / {r['sec']:.1f}" for r in cell
                      if (r["iters"], r["warm"]) == (k, w)) for k, w in VARIANTS]
        lines.append(f"| {label} | {', '.join(cell[0]['images'])} | {size}² | {n} | " + " | ".join(texts) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    torch.set_num_threads(1)
    res = {"machine": _machine(), "rows": run()}
    print(write_results("diffpir-cg", res, render(res)))


if __name__ == "__main__":
    main()
