"""RED-diff's result: the last Adam iterate (the paper's) against the midpoint of the last update (the default), on
held-out photos (a report, not a test).

    OMP_NUM_THREADS=1 python benchmarks/bench_reddiff_midpoint.py [--sizes 64 128] [--steps 20 30 50 100]
                                                               [--images hopper camera] [--tasks ...]

Both sides run RED-diff at its defaults given σ = 0.05 (step-count rules, gate, settling, closing pull) with the same
generators; they differ only in ``midpoint`` (``solvers/reddiff.py``). The demo's five tasks and denoising (A = I),
the ``patches`` model; cell: mean PSNR dB / mean data consistency ‖A x̂ − y‖/(σ√m) (the lowest sample's in
brackets), with Tikhonov (λ picked by PSNR, an oracle). Writes ``results/reddiff-midpoint.{md,json}``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _paired import add_photo_args, paired_table, run_variants  # noqa: E402
from bench_dps import write_results  # noqa: E402
from bench_methods import SIGMA, machine  # noqa: E402

import diffsolve  # noqa: E402

TASKS = ("denoise", "gaussian_blur", "motion_blur", "box", "random", "sr4")


def variant(midpoint: bool):
    return lambda model, op, y, x, n, gens: diffsolve.solve("reddiff", model, op, y, steps=n, generator=gens,
                                                             sigma=SIGMA, midpoint=midpoint)


def render(res: dict) -> str:
    lines = ["# RED-diff: the last iterate against the midpoint of the last update", "",
             f"`python benchmarks/bench_reddiff_midpoint.py --sizes {' '.join(map(str, res['sizes']))} --steps "
             f"{' '.join(map(str, res['steps']))}` — {res['machine']}. Held-out photos {', '.join(res['images'])}, "
             "σ = 0.05, `patches` model, RED-diff at its defaults given σ with the same generators on both sides. "
             "Cell: mean PSNR dB / mean data consistency ‖A x̂ − y‖/(σ√m) (lowest sample's). last: `midpoint=False`, "
             "the paper's result μ_N; midpoint: the default, (μ_N + μ_{N−1})/2.", ""]
    return "\n".join(lines + paired_table(res["rows"], "last", "midpoint")) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_photo_args(parser, TASKS)
    parser.set_defaults(sizes=[64, 128], steps=[20, 30, 50, 100])
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = run_variants(args.sizes, args.steps, args.images, args.tasks,
                        {"last": variant(False), "midpoint": variant(True)}, SIGMA)
    res = {"machine": machine(), "sizes": args.sizes, "steps": args.steps, "images": args.images, "rows": rows}
    write_results("reddiff-midpoint", res, render(res))


if __name__ == "__main__":
    main()
