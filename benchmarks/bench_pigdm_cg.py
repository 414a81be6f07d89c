"""PiGDM step 2 by CG where the operator has no exact solve: PSNR against the CG budget (not a test).

Motion blur (the demo task) on two bundled photos (chelsea, coffee; not the held-out ones), 64² at N = 20, 100
and 128² at N = 50, sigma = 0.05, the shipped patches model, CG budgets 5 / 10 / 20 / 200. Prints one line per
cell; benchmarks/results/pigdm-cg.md holds the run behind ``pigdm.CG_ITERS``.

Usage: ``python benchmarks/bench_pigdm_cg.py``.
"""

import importlib
import sys
import time
import warnings

import torch

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))


def main() -> None:
    from bench_methods import measure
    from diffsolve.data import photo
    from diffsolve.metrics import data_consistency, scores
    from diffsolve.models import load_default
    from diffsolve.tasks import make_operator

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    pigdm_module = importlib.import_module("diffsolve.solvers.pigdm")  # CG_ITERS set per cell
    model = load_default("patches")
    imgs = ["chelsea", "coffee"]
    for size, ns in ((64, (20, 100)), (128, (50,))):
        x = torch.stack([photo(n, size=size) for n in imgs])
        op = make_operator("motion_blur", (size, size))
        y = measure(op, x, seed=size)
        for n in ns:
            for it in (5, 10, 20, 200):
                pigdm_module.CG_ITERS = it
                t = time.time()
                xr = pigdm_module.pigdm(model, op, y, steps=n, sigma=0.05,
                                        generator=[torch.Generator().manual_seed(i) for i in range(len(imgs))])
                s = scores(xr, x)
                print(size, n, it, f"{float(s['psnr'].mean()):.2f}", [round(float(v), 2) for v in s["psnr"]],
                      f"dc {float(data_consistency(op, xr, y, 0.05).mean()):.2f}", f"{time.time() - t:.1f}s",
                      flush=True)


if __name__ == "__main__":  # a pytest collection of benchmarks/ imports this file: nothing runs then
    main()
