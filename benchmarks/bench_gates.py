"""The discrepancy gates diffsolve adds to two methods, against the paper's update, on held-out photos (a report,
not a test).

    OMP_NUM_THREADS=1 python benchmarks/bench_gates.py --method reddiff|diffpir [--sizes 64] [--steps 20 50 100]
                                                       [--images hopper camera] [--tasks ...]

- ``reddiff``: ``reddiff(sigma=None)`` runs the paper's update (with the default step-count rules for λ and Adam's
  betas on both sides); ``reddiff(sigma=σ)`` gates its data term off once ‖A μ − y‖ ≤ σ√(m/2), settles a result
  Adam carried below that floor back to it (``solvers/reddiff.py``, step 5) and ends within the noise
  (``_inverse.discrepancy_pull``).
- ``diffpir``: ``diffpir(discrepancy=False)`` runs the paper's last step; the default stops the last data step at
  the same floor (``solvers/diffpir.py``) and ends within the noise (``_inverse.discrepancy_pull``).

The demo's five tasks, σ = 0.05, the ``patches`` model, the same generators for both; cell: mean PSNR dB / data
consistency ‖A x̂ − y‖/(σ√m) (the worst sample's in brackets), with Tikhonov (λ picked by PSNR, an oracle).
Writes ``results/<method>-gate.{md,json}``.
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

TASKS = ("gaussian_blur", "motion_blur", "box", "random", "sr4")
#: per method: (the paper's options, the gated options) beside ``sigma``'s
VARIANTS = {"reddiff": ({"sigma": None}, {"sigma": SIGMA}),
            "diffpir": ({"sigma": SIGMA, "discrepancy": False}, {"sigma": SIGMA})}


def run(method: str, sizes: list[int], step_list: list[int], images: list[str], task_names: list[str]) -> list[dict]:
    def variant(options: dict):
        return lambda model, op, y, x, n, gens: diffsolve.solve(method, model, op, y, steps=n, generator=gens,
                                                                 **options)

    paper, gated = VARIANTS[method]
    return run_variants(sizes, step_list, images, task_names, {"paper": variant(paper), "gated": variant(gated)},
                        SIGMA)


def render(res: dict) -> str:
    pull = "; a result beyond the noise's χ² edge pulled within it (`_inverse.discrepancy_pull`)"
    labels = {"reddiff": ("`reddiff(sigma=None)` (both with the default step-count rules for λ and Adam's betas)",
                          "`reddiff(sigma=0.05)`, the data term off once ‖A μ − y‖ ≤ σ√(m/2), a result below that "
                          "floor settled back to it" + pull),
              "diffpir": ("`diffpir(sigma=0.05, discrepancy=False)`",
                          "`diffpir(sigma=0.05)`, the last data step stopped at ‖A x̂ − y‖ = σ√(m/2)" + pull)}
    paper, gated = labels[res["method"]]
    lines = [f"# {res['method']}'s discrepancy gate (benchmarks/bench_gates.py)", "",
             f"`python benchmarks/bench_gates.py --method {res['method']}` — {res['machine']}. Held-out photos "
             f"{', '.join(res['images'])}, σ = 0.05, `patches` model, the same generators for both. Cell: mean PSNR dB "
             f"/ mean data consistency ‖A x̂ − y‖/(σ√m) (lowest sample's). paper: {paper}; gated: {gated}.", ""]
    return "\n".join(lines + paired_table(res["rows"], "paper", "gated")) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=sorted(VARIANTS), required=True)
    add_photo_args(parser, TASKS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = run(args.method, args.sizes, args.steps, args.images, args.tasks)
    res = {"machine": machine(), "method": args.method, "images": args.images, "rows": rows}
    write_results(f"{args.method}-gate", res, render(res))


if __name__ == "__main__":
    main()
