"""Methods at N = 50 against the DPS-at-100 bar on exact priors, at the draw count the defaults issue names (a
report, not a test).

    python benchmarks/bench_cdps_bar.py [--samples 192] [--seeds 0 1 2]      # C-DPS, its three tasks
    python benchmarks/bench_cdps_bar.py --methods pigdm ddrm diffpir mmps --tasks all --priors gaussian \
        --out methods-bar                                                     # the comparison issue's four

The priors and tasks of ``bench_posterior.py`` (1×16×16, σ = 0.05; box inpainting and both blurs, the tasks of the
target). Each seed k is its own problem: x and y drawn with seed 1 + k (seed 0: the y of ``methods_posterior.md``),
and its own sampler noise; the gap's size depends on y (it is relative to ‖μ_prior − μ‖), so the bar is read per
y. For each seed: the mean gap ‖x̄ − μ‖/‖μ_prior − μ‖ and trace ratio tr Ĉ/tr Σ over
``--samples`` draws of C-DPS at N = 50 (its defaults, and ``last_step="sample"`` for the trace ratio the target
reads), of DPS at N = 100 (its defaults, σ given as the command line does) and of as many exact posterior draws
(the gap a perfect sampler shows at that many draws). ``methods_posterior.md`` uses 64 draws, where that floor is
0.03–0.05, the size of the C-DPS / DPS difference on the box; 192 draws bring it to 0.02–0.04. ``--methods`` runs
other methods at N = 50 (their defaults, σ given where they take it) on ``--tasks`` (``all``: the six of
``bench_posterior``); a method that does not support a task's operator is listed as such. Writes
``results/<--out>.{md,json}`` (default ``cdps-bar``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_dps import write_results  # noqa: E402
from bench_methods import SIGMA, machine, method_options  # noqa: E402
from bench_posterior import exact_problem, metrics, mixture_mean, priors, probe_directions, tasks  # noqa: E402

import diffsolve  # noqa: E402
from diffsolve.methods import METHODS  # noqa: E402

TASKS = ("box inpaint", "gaussian blur", "motion blur")
BAR = ("dps@100", "dps", 100, {})


def plan(methods: list[str]) -> list[tuple[str, str, int, dict]]:
    """(label, method, steps, options) per column: each method at N = 50 (C-DPS also with last_step="sample",
    whose trace ratio its target reads), then the bar, DPS at N = 100."""
    runs = []
    for m in methods:
        runs.append((f"{m}@50", m, 50, {}))
        if m == "cdps":
            runs.append(("cdps@50 sample", "cdps", 50, {"last_step": "sample"}))
    return runs + [BAR]


def run(samples: int, seeds: list[int], methods: list[str], task_names: tuple[str, ...] | None,
        prior_names: list[str] | None) -> list[dict]:
    size = 16
    dirs = probe_directions(size)
    rows = []
    for pname, prior in priors(size).items():
        if prior_names and pname not in prior_names:
            continue
        pm = mixture_mean(prior)
        for tname, op in tasks(size).items():
            if task_names is not None and tname not in task_names:
                continue
            for seed in seeds:
                y, post, reference, spaces = exact_problem(prior, op, samples, instance=1 + seed)
                exact = metrics(post.sample(samples, torch.Generator().manual_seed(3000 + seed)), post, pm, reference,
                                op, y, dirs, *spaces)
                row = {"prior": pname, "task": tname, "seed": seed, "exact": exact["mean_gap"]}
                for label, method, steps, options in plan(methods):
                    gen = torch.Generator().manual_seed(1000 + steps + 7 * seed)
                    try:
                        with torch.enable_grad() if METHODS[method].backward else torch.no_grad():
                            out = diffsolve.solve(method, prior, op, y, steps=steps, generator=gen,
                                                  **method_options(method), **options)
                    except ValueError as err:  # an operator the method does not support
                        row[label] = {"unsupported": str(err).split(";")[0][:80]}
                        continue
                    m = metrics(out.detach(), post, pm, reference, op, y, dirs, *spaces)
                    row[label] = {"mean_gap": m["mean_gap"], "var_ratio": m["var_ratio"]}
                rows.append(row)
                print(pname, tname, seed, {k: v for k, v in row.items() if k not in ("prior", "task", "seed")},
                      flush=True)
    return rows


def _cell(r: dict) -> str:
    if "unsupported" in r:
        return "—"
    return f"{r['mean_gap']:.3f} / {r['var_ratio']:.2f}"


def markdown(res: dict) -> str:
    labels = [label for label, *_ in plan(res["methods"])]
    heads = {"cdps@50 sample": 'cdps N = 50, last_step="sample"', BAR[0]: "DPS N = 100 (bar)"}
    head = [heads.get(label, label.replace("@", " N = ")) for label in labels]
    cmd = f"--samples {res['samples']}" + ("" if res["methods"] == ["cdps"] else
                                           f" --methods {' '.join(res['methods'])} --tasks {res['tasks']} "
                                           + (f"--priors {' '.join(res['priors'])} " if res["priors"] else "")
                                           + f"--out {res['out']}")
    lines = [f"# {', '.join(res['methods'])} at N = 50 against the DPS-at-100 bar, {res['samples']} draws "
             "(benchmarks/bench_cdps_bar.py)", "",
             f"`python benchmarks/bench_cdps_bar.py {cmd}` ({res['machine']}, {res['wall_s']:.0f} s). "
             f"Exact priors of `bench_posterior.py` (1×16×16, σ = {SIGMA}); each seed k its own x and y (seed 1 + k; "
             f"seed 0: the y of methods_posterior.md) and sampler noise, {res['samples']} draws per method and seed. "
             "Cell: mean gap ‖x̄ − μ‖/‖μ_prior − μ‖ / trace ratio tr Ĉ/tr Σ; `—`: the method does not "
             "support the operator. `exact`: as many exact posterior draws (the floor). Within: the method's gap ≤ "
             "DPS-at-100's (for C-DPS also its trace ratio with `last_step=\"sample\"` in [0.7, 1.5]).", "",
             "| prior | task | seed | exact | " + " | ".join(head) + " | within |",
             "|---|---|---|---|" + "---|" * len(head) + "---|"]
    for r in res["rows"]:
        bar = r[BAR[0]]["mean_gap"]
        verdicts = []
        for m in res["methods"]:
            c = r[f"{m}@50"]
            if "unsupported" in c:
                continue
            ok = c["mean_gap"] <= bar
            if m == "cdps":
                ok = ok and 0.7 <= r["cdps@50 sample"]["var_ratio"] <= 1.5
            verdicts.append(m if ok else f"**not {m}**")
        lines.append(f"| {r['prior']} | {r['task']} | {r['seed']} | {r['exact']:.3f} | "
                     + " | ".join(_cell(r[label]) for label in labels) + f" | {', '.join(verdicts)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=192)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["cdps"])
    parser.add_argument("--tasks", default="cdps", help="'cdps' (box inpainting and both blurs) or 'all'")
    parser.add_argument("--priors", nargs="+", default=None, choices=["gaussian", "gmm"],
                        help="gaussian and/or gmm (default both)")
    parser.add_argument("--out", default="cdps-bar")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.time()
    rows = run(args.samples, args.seeds, args.methods, None if args.tasks == "all" else TASKS, args.priors)
    res = {"machine": machine(), "samples": args.samples, "wall_s": time.time() - start, "methods": args.methods,
           "tasks": args.tasks, "priors": args.priors, "out": args.out, "rows": rows}
    print(write_results(args.out, res, markdown(res)))


if __name__ == "__main__":
    main()
