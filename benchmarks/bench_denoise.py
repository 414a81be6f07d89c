"""Every method on denoising (A = I) at its defaults (a report, not a test).

    python benchmarks/bench_denoise.py [--size 64] [--steps 30 50] [--sigmas 0.05 0.2]

The held-out photos ``hopper`` and ``camera``, y = x + σ n (seed 0), the ``patches`` model, one draw each (seeds
0…B−1). Cell: mean PSNR dB / mean data consistency ‖x̂ − y‖/(σ√m). Rows: the noisy y itself and Tikhonov with λ
picked by PSNR (an oracle; for A = I it shrinks y towards 0). No default was tuned on this task.
Writes ``results/denoise.{md,json}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_dps import write_results  # noqa: E402
from bench_methods import inverse_methods, machine  # noqa: E402

import diffsolve  # noqa: E402
from diffsolve.methods import METHODS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, nargs="+", default=[30, 50])
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.05, 0.2])
    parser.add_argument("--images", nargs="+", default=["hopper", "camera"])
    args = parser.parse_args()
    from diffsolve.data import photo
    from diffsolve.metrics import data_consistency, scores
    from diffsolve.models import load_default
    from diffsolve.operators import Identity

    model = load_default("patches")
    x = torch.stack([photo(name, size=args.size) for name in args.images])
    op = Identity()
    rows, start = [], time.perf_counter()
    for sigma in args.sigmas:
        y = x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
        psnr = lambda out: float(scores(out, x)["psnr"].mean())  # noqa: E731
        tik = max((op.tikhonov(y, lam) for lam in (1e-2, 1e-1, 0.3, 1.0)), key=psnr)
        row = {"sigma": sigma, "y": psnr(y), "tikhonov": psnr(tik)}
        for name in inverse_methods():
            for n in args.steps:
                with torch.enable_grad() if METHODS[name].backward else torch.no_grad():
                    out = diffsolve.solve(name, model, op, y, sigma=sigma, steps=n,
                                          generator=[torch.Generator().manual_seed(i) for i in range(len(x))])
                out = out.detach()
                row[f"{name}@{n}"] = (psnr(out), float(data_consistency(op, out, y, sigma).mean()))
        rows.append(row)
        print(row, flush=True)
    seconds = time.perf_counter() - start
    lines = ["# Denoising (A = I): every method at its defaults", "",
             f"`python benchmarks/bench_denoise.py --size {args.size} --steps {' '.join(map(str, args.steps))} "
             f"--sigmas {' '.join(map(str, args.sigmas))}` ({machine()}, {seconds:.0f} s); images "
             f"{', '.join(args.images)}, one draw each. Cell: PSNR dB / data consistency; **bold**: above Tikhonov "
             "− 0.5 dB.", "",
             "| method | N | " + " | ".join(f"σ = {r['sigma']:g}" for r in rows) + " |",
             "|---|---|" + "---|" * len(rows),
             "| noisy y | — | " + " | ".join(f"{r['y']:.2f}" for r in rows) + " |",
             "| Tikhonov (oracle λ) | — | " + " | ".join(f"{r['tikhonov']:.2f}" for r in rows) + " |"]
    for name in inverse_methods():
        for n in args.steps:
            cells = []
            for r in rows:
                p, dc = r[f"{name}@{n}"]
                cell = f"{p:.2f} / {dc:.2f}"
                cells.append(f"**{cell}**" if p >= r["tikhonov"] - 0.5 else cell)
            lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    write_results("denoise", {"machine": machine(), "args": vars(args), "rows": rows}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
