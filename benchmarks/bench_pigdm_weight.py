"""ΠGDM as N grows: the paper's guidance weight against the conditional-score form (a report, not a test).

    OMP_NUM_THREADS=1 python benchmarks/bench_pigdm_weight.py [--steps 20 50 100 250 1000] [--samples 128]
                                                             [--priors gaussian gmm] [--tasks ...]

ΠGDM's step (``solvers/pigdm.py``, the paper's Algorithm 1 and the authors' code) moves x̂0 by √ᾱ_t g before the
DDIM step, g = (∂x̂0/∂x_t)ᵀ r_t² Aᵀ(σ² I + r_t² AAᵀ)⁻¹(y − A x̂0), and keeps ε̂: x_s = DDIM_η(x_t, ε̂) + √ᾱ_s √ᾱ_t g.
That is a kick of the same size at every step whatever the step's length, so N steps add about N kicks. The
``score`` form instead uses g/r_t² as the likelihood score in Tweedie's formula, the posterior mean
x̂0 + r_t²/√ᾱ_t ∇log p(y | x_t) = x̂0 + g/√ᾱ_t, with ε̂ recomputed from it (x_t = √ᾱ_t x̂0' + √(1−ᾱ_t) ε̂'), and then
the same DDIM(η = 1) step: a sampler of ∇log p(x_t) + ∇log p(y | x_t) under ΠGDM's likelihood, whose result
settles as N grows.

Both forms run the same loop (the ``paper`` form is checked against ``diffsolve.solvers.pigdm`` with
``discrepancy=False`` below) on the exact-score priors of ``bench_posterior.py`` (1×16×16, σ = 0.05): mean gap
‖x̄ − μ‖/‖μ_prior − μ‖ to the exact posterior mean / trace ratio tr Ĉ/tr Σ over ``--samples`` draws for one y.
Writes ``results/pigdm-weight.{md,json}``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_dps import write_results  # noqa: E402
from bench_methods import SIGMA, machine  # noqa: E402
from bench_posterior import exact_problem, metrics, mixture_mean, priors, probe_directions, tasks  # noqa: E402

from diffsolve.solvers import pigdm  # noqa: E402
from diffsolve.solvers._inverse import check_problem, solver_of  # noqa: E402
from diffsolve.solvers._loop import Sampling, prepare  # noqa: E402
from diffsolve.solvers.pigdm import CG_ITERS, guidance_vector  # noqa: E402

FORMS = ("paper", "score")


def run_form(form: str, prior, op, y: torch.Tensor, steps: int, seed: int) -> torch.Tensor:
    """ΠGDM (η = 1, no discrepancy pull) with the ``paper`` or the ``score`` guidance (module docstring)."""
    generator = torch.Generator().manual_seed(seed)
    loop = prepare(prior, check_problem(op, y), Sampling(steps=steps, generator=generator), like=y,
                   name="pigdm")
    solve = solver_of(op, CG_ITERS, precondition=False)
    x = loop.x
    for i in loop.steps():
        a_t, a_s = float(loop.alpha_t[i]), float(loop.alpha_s[i])
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            eps = loop.eps(xg, i)
            x0 = (xg - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
        v = guidance_vector(op, y - op.A(x0.detach()), SIGMA, 1 - a_t, solve)
        (g,) = torch.autograd.grad(x0, xg, grad_outputs=v)
        with torch.no_grad():
            if form == "paper":
                x0, eps = x0.detach() + math.sqrt(a_t) * g, eps.detach()
            else:
                x0 = x0.detach() + g / math.sqrt(a_t)
                eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
            var = (1 - a_s) / (1 - a_t) * max(1 - a_t / a_s, 0.0)
            noise = loop.step_noise(i, True).get("noise")
            x = math.sqrt(a_s) * x0 + math.sqrt(max(1 - a_s - var, 0.0)) * eps
            if var > 0:
                x = x + math.sqrt(var) * noise
    return loop.finish(x)


def check_paper_form(prior, op, y: torch.Tensor) -> float:
    """Largest difference between the ``paper`` form here and diffsolve's ΠGDM (discrepancy=False), 10 steps."""
    ours = run_form("paper", prior, op, y, 10, 7)
    with torch.enable_grad():
        ref = pigdm(prior, op, y, steps=10, sigma=SIGMA, discrepancy=False,
                    generator=torch.Generator().manual_seed(7))
    return (ours - ref).abs().max().item()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[20, 50, 100, 250, 1000])
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--priors", nargs="+", default=["gaussian", "gmm"])
    parser.add_argument("--tasks", nargs="+", default=None, choices=list(tasks(16)), metavar="TASK",
                        help=f"a subset of {list(tasks(16))}")
    args = parser.parse_args(argv)
    size, start = 16, time.time()
    rows, checked = [], None
    dirs = probe_directions(size)
    for pname in args.priors:
        prior = priors(size)[pname]
        prior_mean = mixture_mean(prior)
        for tname, op in tasks(size).items():
            if args.tasks and tname not in args.tasks:
                continue
            y, post, reference, spaces = exact_problem(prior, op, args.samples)
            if checked is None:
                checked = check_paper_form(prior, op, y[:4])
            for form in FORMS:
                for n in args.steps:
                    out = run_form(form, prior, op, y, n, 1000 + n)
                    row = metrics(out, post, prior_mean, reference, op, y, dirs, *spaces)
                    rows.append({"prior": pname, "task": tname, "form": form, "steps": n,
                                 "mean_gap": row["mean_gap"], "var_ratio": row["var_ratio"]})
                    print(pname, tname, form, n, f"{row['mean_gap']:.3f} / {row['var_ratio']:.2f}", flush=True)
    lines = ["# ΠGDM as N grows: the paper's guidance weight against the conditional-score form\n",
             f"`python benchmarks/bench_pigdm_weight.py` ({machine()}); 1×16×16, σ = {SIGMA}, "
             f"{args.samples} draws for one y per cell, η = 1, no discrepancy pull; {time.time() - start:.0f} s. "
             f"Cell: mean gap to the exact posterior mean / trace ratio (1 = right spread). `paper`: diffsolve's "
             f"ΠGDM (this loop's `paper` form equals `solvers.pigdm` with `discrepancy=False` to {checked:.1e}); "
             f"`score`: x̂0 + g/√ᾱ_t with ε̂ recomputed (the script's docstring).\n"]
    for pname in args.priors:
        lines += [f"\n## {pname} prior\n", "| task | form | " + " | ".join(f"N={n}" for n in args.steps) + " |",
                  "|---|---|" + "---|" * len(args.steps)]
        for tname in dict.fromkeys(r["task"] for r in rows if r["prior"] == pname):
            for form in FORMS:
                cells = {r["steps"]: r for r in rows if (r["prior"], r["task"], r["form"]) == (pname, tname, form)}
                lines.append(f"| {tname} | {form} | " + " | ".join(
                    f"{cells[n]['mean_gap']:.2f} / {cells[n]['var_ratio']:.2f}" for n in args.steps) + " |")
    print(write_results("pigdm-weight", {"rows": rows, "check": checked, "samples": args.samples},
                        "\n".join(lines) + "\n"))


if __name__ == "__main__":
    main()
