"""The closing discrepancy pull in one round against its iterated rounds (a report, not a test; its CG variants:
``bench_pull_cg.py``).

    python benchmarks/bench_pull_rounds.py [--size 64] [--steps 30] [--images hopper camera]

Operators a user may bring whose gain is not 1: an unnormalised asymmetric 5×3 kernel (the test suite's sin-valued
one), a 3×3 sharpening kernel (gains 1…9), and a 9×9 Gaussian blur (std 1.6) times 4 and
times 1/4 (reflect boundaries; no exact solve, so the pull's rounds run CG). Every method that takes them, at its
defaults, on the held-out photos, σ = 0.05, one draw each (seeds 0…B−1); the pull limited to one round
(``_inverse.PULL_MAX_ROUNDS = 1``: the pull before the rounds) against the default. PSNR, data consistency
‖A x̂ − y‖/(σ√m) (worst of the photos) and seconds per image. Tikhonov (oracle λ) for scale.
Writes ``results/pull-rounds.{md,json}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_dps import write_results  # noqa: E402
from bench_methods import SIGMA, inverse_methods, machine, measure  # noqa: E402

import diffsolve  # noqa: E402
from diffsolve.methods import METHODS  # noqa: E402
from diffsolve.solvers import _inverse  # noqa: E402


def operators(size: int, motion: bool = False) -> dict:
    """The unnormalised reflect-boundary blurs of the module docstring by name; ``motion``: the task's motion blur
    (reflect boundary, gain 1) first."""
    from diffsolve.operators import Blur, GaussianBlur
    from diffsolve.tasks import make_operator

    kernel = GaussianBlur(kernel_size=9, std=1.6).kernel.float()
    task = {"task motion blur": make_operator("motion_blur", (size, size))} if motion else {}
    return {**task, "asym 5×3 (sin)": Blur(torch.arange(1.0, 16.0).reshape(5, 3).sin(), boundary="reflect"),
            "sharpen 3×3": Blur(torch.tensor([[0.0, -1, 0], [-1, 5, -1], [0, -1, 0]]), boundary="reflect"),
            "Gaussian 9×9 ×4": Blur(4 * kernel, boundary="reflect"),
            "Gaussian 9×9 ×1/4": Blur(kernel / 4, boundary="reflect")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--images", nargs="+", default=["hopper", "camera"])
    parser.add_argument("--methods", nargs="+", default=inverse_methods())
    args = parser.parse_args()
    # column label → (the _inverse constant it sets, its value)
    variants = {"one round": ("PULL_MAX_ROUNDS", 1), "rounds": ("PULL_MAX_ROUNDS", _inverse.PULL_MAX_ROUNDS)}
    from diffsolve.data import photo
    from diffsolve.metrics import data_consistency, scores
    from diffsolve.models import load_default

    model = load_default("patches")
    x = torch.stack([photo(name, size=args.size) for name in args.images])
    rows, start = [], time.perf_counter()
    for op_name, op in operators(args.size).items():
        y = measure(op, x, seed=args.size)
        tik = max((op.tikhonov(y, lam) for lam in (1e-3, 1e-2, 1e-1)), key=lambda r: float(scores(r, x)["psnr"].mean()))
        rows.append({"operator": op_name, "method": "tikhonov", "psnr": float(scores(tik, x)["psnr"].mean()),
                     "dc": float(data_consistency(op, tik, y, SIGMA).max())})
        for name in args.methods:
            if METHODS[name].unsupported(op, (args.size, args.size), SIGMA):
                continue
            row = {"operator": op_name, "method": name}
            for label, (constant, value) in variants.items():
                saved = getattr(_inverse, constant)
                setattr(_inverse, constant, value)
                try:
                    tic = time.perf_counter()
                    with torch.enable_grad() if name == "dps" else torch.no_grad():
                        out = diffsolve.solve(name, model, op, y, sigma=SIGMA, steps=args.steps,
                                              generator=[torch.Generator().manual_seed(i) for i in range(len(x))])
                    sec = (time.perf_counter() - tic) / len(x)
                finally:
                    setattr(_inverse, constant, saved)
                out = out.detach()
                row[label] = (float(scores(out, x)["psnr"].mean()), float(data_consistency(op, out, y, SIGMA).max()),
                              sec)
            rows.append(row)
            print(row, flush=True)
    seconds = time.perf_counter() - start
    first, second = variants
    title, compared = ("one round against iterated rounds", f"the pull limited to one round (before) against up to "
                       f"{_inverse.PULL_ROUNDS} rounds or until v ≥ 1 (at most {_inverse.PULL_MAX_ROUNDS}), "
                       f"v × {_inverse.PULL_GROWTH:g} each (now)")
    lines = [f"# The closing discrepancy pull: {title}", "",
             f"`python benchmarks/bench_pull_rounds.py --size {args.size} --steps {args.steps} --images "
             f"{' '.join(args.images)}` ({machine()}, "
             f"{seconds:.0f} s). Every method at its defaults given σ = {SIGMA}; one draw per photo; {compared}.", "",
             "Cell: mean PSNR dB / worst data consistency ‖A x̂ − y‖/(σ√m) / s per image.", "",
             f"| operator | method | {first} | {second} | Δ PSNR |", "|---|---|---|---|---|"]
    for r in rows:
        if r["method"] == "tikhonov":
            lines.append(f"| {r['operator']} | Tikhonov (oracle λ) | {r['psnr']:.2f} / {r['dc']:.2f} | | |")
            continue
        a, b = r[first], r[second]
        lines.append(f"| {r['operator']} | {r['method']} | {a[0]:.2f} / {a[1]:.2f} / {a[2]:.1f} | {b[0]:.2f} / "
                     f"{b[1]:.2f} / {b[2]:.1f} | {b[0] - a[0]:+.2f} |")
    write_results("pull-rounds", {"machine": machine(), "args": vars(args), "rows": rows}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
