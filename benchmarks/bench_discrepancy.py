"""Every method's result held to the discrepancy principle against the paper's result, on held-out photos (a report,
not a test).

    OMP_NUM_THREADS=1 python benchmarks/bench_discrepancy.py [--methods ...] [--sizes 64] [--steps 20 50 100]
                                                            [--images hopper camera] [--tasks ...] [--merge]

``method(..., discrepancy=False)`` is the paper's result; the default moves a result that misfits y beyond the noise,
‖A x − y‖ > σ√m, just far enough towards y to meet it (``solvers/_inverse.discrepancy_pull``). The demo's five tasks,
σ = 0.05, the ``patches`` model, the same generators for both; cell: mean PSNR dB / data consistency
‖A x̂ − y‖/(σ√m) (the worst sample's in brackets), with Tikhonov (λ picked by PSNR, an oracle). Writes
``results/discrepancy.{md,json}`` (``--merge``: the methods run replace theirs in the previous run).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _paired import add_photo_args, scored_row, tikhonov_row  # noqa: E402
from bench_dps import RESULTS, write_results  # noqa: E402
from bench_methods import SIGMA, machine, photo_problems  # noqa: E402

import diffsolve  # noqa: E402

TASKS = ("gaussian_blur", "motion_blur", "box", "random", "sr4")
METHODS = ("dps", "mpgd", "cdps", "pigdm", "ddrm", "diffpir", "ddnm", "daps", "reddiff", "mmps")
#: operators without an SVD, which DDRM and DDNM+ refuse
NO_SVD = {"motion_blur"}


def run(methods: list[str], sizes: list[int], step_list: list[int], images: list[str], task_names: list[str]
        ) -> list[dict]:
    from diffsolve.models import load_default

    model = load_default("patches")
    rows = []
    for size in sizes:
        for task, op, x, y in photo_problems(images, size, task_names):
            rows.append(tikhonov_row(size, task, op, x, y, SIGMA) | {"method": "tikhonov"})
            for method in methods:
                if method in ("ddrm", "ddnm") and task in NO_SVD:
                    continue
                for n in step_list:
                    for variant, held in (("paper", False), ("held", True)):
                        gens = [torch.Generator().manual_seed(b) for b in range(len(images))]
                        out = diffsolve.solve(method, model, op, y, steps=n, generator=gens, sigma=SIGMA,
                                              discrepancy=held)
                        rows.append(scored_row(size, task, n, variant, out, x, op, y, SIGMA) | {"method": method})
                        print(rows[-1], flush=True)
    return rows


def render(res: dict) -> str:
    lines = ["# Every method held to the discrepancy principle (benchmarks/bench_discrepancy.py)", "",
             f"`python benchmarks/bench_discrepancy.py` — {res['machine']}. Held-out photos {', '.join(res['images'])}, "
             "σ = 0.05, `patches` model, the same generators for both. Cell: mean PSNR dB / mean data consistency "
             "‖A x̂ − y‖/(σ√m) (highest sample's). paper: `method(..., discrepancy=False)`; held: the default, a result "
             "above the noise level moved towards y until ‖A x̂ − y‖ = σ√m.", "",
             "| method | size | task | Tikhonov | N | paper | held | held − paper (dB) |",
             "|---|---|---|---|---|---|---|---|"]

    def cell(r: dict) -> str:
        return f"{r['psnr']:.2f} / {r['dc']:.2f} ({r['dc_max']:.2f})"

    rows = res["rows"]
    tik = {(r["size"], r["task"]): r for r in rows if r["method"] == "tikhonov"}
    for method in dict.fromkeys(r["method"] for r in rows if r["method"] != "tikhonov"):
        for r in rows:
            if r["method"] != method or r["variant"] != "paper":
                continue
            key = (r["size"], r["task"], r["steps"])
            held = next(h for h in rows if h["method"] == method and h["variant"] == "held"
                        and (h["size"], h["task"], h["steps"]) == key)
            lines.append(f"| {method} | {r['size']}² | {r['task']} | {cell(tik[key[:2]])} | {r['steps']} | "
                         f"{cell(r)} | {cell(held)} | {held['psnr'] - r['psnr']:+.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--merge", action="store_true", help="replace only these methods' rows in the previous run")
    add_photo_args(parser, TASKS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = run(args.methods, args.sizes, args.steps, args.images, args.tasks)
    previous = RESULTS / "discrepancy.json"
    if args.merge and previous.exists():
        old = json.loads(previous.read_text())["rows"]
        rows = [r for r in old if r["method"] not in args.methods and r["method"] != "tikhonov"] + rows
    res = {"machine": machine(), "images": args.images, "rows": rows}
    write_results("discrepancy", res, render(res))


if __name__ == "__main__":
    main()
