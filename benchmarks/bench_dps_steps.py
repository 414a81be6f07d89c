"""DPS across step counts on exact priors: does the step-size rule hold from 10 to 1000 steps?

The priors and tasks of ``bench_posterior.py`` (1×16×16, σ = 0.05, Gaussian and Gaussian-mixture
priors; box and random inpainting, Gaussian and motion blur, SR ×4 bicubic and average), one
measurement per task, ``--samples`` DPS draws per cell at N = 10, 20, 50, 100, 250, 1000 under
each step rule (``diffsolve.solvers.dps.STEP_RULES``: ``sqrt`` ζ_N = ζ·√(T/N), the default when this ran, and
``constant`` ζ_N = ζ, DPS's 1000-step setting at every N) under one normalisation (``--normalize``:
``adjoint``, this script's default, or ``residual``, the paper's; ``constant, residual`` was the first default).
The package's defaults have moved on since (``power`` and ``gradient``: ``dps.py``, results/dps-steps-power.md);
this script keeps the rules it compared.

Columns: mean gap ‖x̄ − μ‖/‖μ_prior − μ‖ and var ratio tr Ĉ / tr Σ against the exact posterior, and
max |x| over all draws (the priors live in about [−1, 1]: a diverging run shows here first).
A cell counts as diverged when the draws are not finite or max |x| > 10.

Run: ``python benchmarks/bench_dps_steps.py`` → ``results/posterior_dps_steps.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

if not __import__("torch").cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch

from bench_posterior import SIGMA, priors, tasks
from diffsolve.solvers import dps
from diffsolve.solvers.dps import NORMALIZATIONS, STEP_RULES, DPSStepsWarning

__all__ = ["main", "run"]

RESULTS = Path(__file__).parent / "results"
STEPS = (10, 20, 50, 100, 250, 1000)


def run(samples: int, steps: tuple[int, ...], rules: tuple[str, ...], normalize: str = "adjoint",
        log=print) -> list[dict]:
    rows = []
    for pname, prior in priors(16).items():
        prior_mean = (prior.weights[:, None] * prior.means.reshape(prior.num_components, -1)).sum(0)
        for tname, op in tasks(16).items():
            g = torch.Generator().manual_seed(1)
            x_true = prior.sample(1, g)
            y1 = op.A(x_true)
            y1 = y1 + SIGMA * torch.randn(y1.shape, generator=g, dtype=torch.float64)
            post = prior.posterior(op, y1, sigma=SIGMA)
            mu = post.mean.reshape(-1)
            y = y1.expand(samples, *y1.shape[1:]).contiguous()
            for rule in rules:
                for n in steps:
                    try:
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore", DPSStepsWarning)  # N = 10 is measured on purpose
                            x = dps(prior, op, y, steps=n, step_rule=rule, normalize=normalize,
                                    generator=torch.Generator().manual_seed(n))
                        x = x.reshape(samples, -1)
                        gap = float((x.mean(0) - mu).norm() / (prior_mean - mu).norm())
                        var = float(torch.cov(x.T).diagonal().sum() / post.cov.diagonal().sum())
                        peak = float(x.abs().max())
                    except FloatingPointError:
                        gap = var = peak = float("nan")
                    row = dict(prior=pname, task=tname, rule=f"{rule}, {normalize}", steps=n, mean_gap=gap, var_ratio=var, max_abs=peak,
                               diverged=not peak <= 10)
                    rows.append(row)
                    log(row)
    return rows


def render(rows: list[dict], settings: str) -> str:
    rules = list(dict.fromkeys(r["rule"] for r in rows))
    steps = sorted({r["steps"] for r in rows})
    out = ["## DPS across step counts on exact priors (`bench_dps_steps.py`)", "", settings, "",
           "Each cell: mean gap / var ratio / max |x| (diverged: not finite or max |x| > 10).", ""]
    for rule in rules:
        out += [f"### step rule `{rule}`", "", "| prior | task | " + " | ".join(f"N={n}" for n in steps) + " |",
                "|---|---|" + "---:|" * len(steps)]
        for pname in dict.fromkeys(r["prior"] for r in rows):
            for tname in dict.fromkeys(r["task"] for r in rows):
                cells = {r["steps"]: r for r in rows if r["rule"] == rule and r["prior"] == pname and r["task"] == tname}
                out.append(f"| {pname} | {tname} | " + " | ".join(
                    f"{c['mean_gap']:.3f} / {c['var_ratio']:.2f} / {c['max_abs']:.2f}" + (" **diverged**" if c["diverged"]
                                                                                         else "")
                    for c in (cells[n] for n in steps)) + " |")
        bad = [r for r in rows if r["rule"] == rule and r["diverged"]]
        out += ["", f"Diverged cells under `{rule}`: {len(bad)} of {sum(r['rule'] == rule for r in rows)}.", ""]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--steps", type=int, nargs="+", default=list(STEPS))
    parser.add_argument("--rules", nargs="+", default=list(STEP_RULES))
    parser.add_argument("--normalize", default="adjoint", choices=NORMALIZATIONS)
    parser.add_argument("--merge", nargs="+", type=Path, default=None,
                        help="also include the rows of these earlier posterior_dps_steps.json runs")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    rows = run(args.samples, tuple(args.steps), tuple(args.rules), args.normalize)
    minutes = (time.perf_counter() - start) / 60
    command_note = ""
    for path in args.merge or []:
        earlier = json.loads(path.read_text())
        rows += earlier["rows"]
        command_note += f" Rows of an earlier run merged from {path.name}: {earlier['settings']}"
    command = " ".join(argv if argv is not None else __import__("sys").argv[1:])
    settings = (f"Command: `python benchmarks/bench_dps_steps.py {command}`. 1×16×16, σ = {SIGMA}, {args.samples} draws "
                f"per cell, float64; machine: {platform.machine()} {os.cpu_count()} cores (shared), torch "
                f"{torch.__version__}, 1 thread; whole run {minutes:.1f} min.{command_note}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "posterior_dps_steps.md").write_text(render(rows, settings))
    (args.out / "posterior_dps_steps.json").write_text(json.dumps({"settings": settings, "rows": rows}, indent=1) + "\n")
    print(render(rows, settings))


if __name__ == "__main__":
    main()
