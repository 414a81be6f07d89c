"""C-DPS at N = 50 against the DPS-at-100 bar on exact priors, at the draw count the defaults issue names (a report,
not a test).

    python benchmarks/bench_cdps_bar.py [--samples 192] [--seeds 0 1 2]

The priors and tasks of ``bench_posterior.py`` (1×16×16, σ = 0.05; box inpainting and both blurs, the tasks of the
target), one y per cell. For each seed: the mean gap ‖x̄ − μ‖/‖μ_prior − μ‖ and trace ratio tr Ĉ/tr Σ over
``--samples`` draws of C-DPS at N = 50 (its defaults, and ``last_step="sample"`` for the trace ratio the target
reads), of DPS at N = 100 (its defaults, σ given as the command line does) and of as many exact posterior draws
(the gap a perfect sampler shows at that many draws). ``methods_posterior.md`` uses 64 draws, where that floor is
0.03–0.05, the size of the C-DPS / DPS difference on the box; 192 draws bring it to 0.02–0.04. Writes
``results/cdps-bar.{md,json}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_dps import write_results  # noqa: E402
from bench_methods import SIGMA, machine  # noqa: E402
from bench_posterior import exact_problem, metrics, mixture_mean, priors, probe_directions, tasks  # noqa: E402

import diffsolve  # noqa: E402

TASKS = ("box inpaint", "gaussian blur", "motion blur")
#: (label, method, steps, options); the bar is DPS at 100 steps
RUNS = (("cdps@50", "cdps", 50, {}), ("cdps@50 sample", "cdps", 50, {"last_step": "sample"}),
        ("dps@100", "dps", 100, {}))


def run(samples: int, seeds: list[int]) -> list[dict]:
    size = 16
    dirs = probe_directions(size)
    rows = []
    for pname, prior in priors(size).items():
        pm = mixture_mean(prior)
        for tname, op in tasks(size).items():
            if tname not in TASKS:
                continue
            y, post, reference, spaces = exact_problem(prior, op, samples)
            for seed in seeds:
                exact = metrics(post.sample(samples, torch.Generator().manual_seed(3000 + seed)), post, pm, reference,
                                op, y, dirs, *spaces)
                row = {"prior": pname, "task": tname, "seed": seed, "exact": exact["mean_gap"]}
                for label, method, steps, options in RUNS:
                    gen = torch.Generator().manual_seed(1000 + steps + 7 * seed)
                    with torch.enable_grad() if method == "dps" else torch.no_grad():
                        out = diffsolve.solve(method, prior, op, y, steps=steps, sigma=SIGMA, generator=gen, **options)
                    m = metrics(out.detach(), post, pm, reference, op, y, dirs, *spaces)
                    row[label] = {"mean_gap": m["mean_gap"], "var_ratio": m["var_ratio"]}
                rows.append(row)
                print(pname, tname, seed, {k: v for k, v in row.items() if k not in ("prior", "task", "seed")},
                      flush=True)
    return rows


def markdown(res: dict) -> str:
    lines = ["# C-DPS at N = 50 against the DPS-at-100 bar, 192 draws (benchmarks/bench_cdps_bar.py)", "",
             f"`python benchmarks/bench_cdps_bar.py --samples {res['samples']}` ({res['machine']}, {res['wall_s']:.0f} s). "
             f"Exact priors of `bench_posterior.py` (1×16×16, σ = {SIGMA}), one y per cell, {res['samples']} draws per "
             "method and seed. Cell: mean gap ‖x̄ − μ‖/‖μ_prior − μ‖ / trace ratio tr Ĉ/tr Σ. `exact`: as many exact "
             "posterior draws (the floor). Target: C-DPS's gap ≤ DPS-at-100's; trace ratio with "
             '`last_step="sample"` in [0.7, 1.5].', "",
             "| prior | task | seed | exact | C-DPS N = 50 | C-DPS N = 50, last_step=\"sample\" | DPS N = 100 (bar) | within |",
             "|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        c, s, d = r["cdps@50"], r["cdps@50 sample"], r["dps@100"]
        ok = c["mean_gap"] <= d["mean_gap"] and 0.7 <= s["var_ratio"] <= 1.5
        lines.append(f"| {r['prior']} | {r['task']} | {r['seed']} | {r['exact']:.3f} | {c['mean_gap']:.3f} / "
                     f"{c['var_ratio']:.2f} | {s['mean_gap']:.3f} / {s['var_ratio']:.2f} | {d['mean_gap']:.3f} / "
                     f"{d['var_ratio']:.2f} | {'yes' if ok else '**no**'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=192)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.time()
    rows = run(args.samples, args.seeds)
    res = {"machine": machine(), "samples": args.samples, "wall_s": time.time() - start, "rows": rows}
    print(write_results("cdps-bar", res, markdown(res)))


if __name__ == "__main__":
    main()
