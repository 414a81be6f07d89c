"""RED-diff's step-count rules: λ (``lam_rule``: λ_N = λ·min(N, 50)/50 by default) and Adam's (``adam_rule``: lr_N =
lr·min(1, 50/N) and betas β^(1000/N) by default), from the paper's update to the default run.

Not a test. The demo photos chelsea and coffee (the tuning set; the held-out photos are left to
``bench_methods.py photos``) at 64², σ = 0.05, the shipped ``patches`` model, the five demo tasks, N ∈ {20, 50,
100, 1000} (1000: the paper's step count), λ = 0.25, lr = 0.1: mean PSNR and data consistency
‖A x̂ − y‖/(σ√m), with Tikhonov (λ picked by PSNR, an oracle) for the bar. Columns (:data:`VARIANTS`): the paper's
update; λ's rule; λ's and Adam's rules (these three return the last iterate, ``midpoint=False``); the default given
σ (the gate, the settling, the pull and the last update's midpoint besides).

Writes ``benchmarks/results/reddiff-steps.{md,json}``. Usage: ``python benchmarks/bench_reddiff_steps.py
[--only COLUMN ...]`` (``--only``: rerun those columns, keep the others' rows from the previous results).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_dps import _machine, write_results  # noqa: E402

STEPS = (20, 50, 100, 1000)
#: column → reddiff's options (beside the model, operator, y, steps and generators)
VARIANTS = {"paper": {"lam_rule": "constant", "adam_rule": "constant", "midpoint": False},
            "λ rule": {"lam_rule": "steps", "adam_rule": "constant", "midpoint": False},
            "λ and Adam rules": {"lam_rule": "steps", "adam_rule": "steps", "midpoint": False},
            "default, σ": {"sigma": 0.05}}
RULES = tuple(VARIANTS)


def run(rules: tuple[str, ...] = RULES) -> list[dict]:
    from bench_methods import photo_problems

    from diffsolve.methods import restore
    from diffsolve.metrics import data_consistency, scores
    from diffsolve.models import load_default
    from diffsolve.solvers.reddiff import reddiff
    from diffsolve.tasks import DEMO_TASKS

    model = load_default("patches")
    names = ("chelsea", "coffee")
    rows = []
    for task, op, x, y in photo_problems(names, 64, DEMO_TASKS):
        xt, _ = restore("tikhonov", model, op, y, steps=1, sigma=0.05, x_true=x)
        rows.append({"task": task, "rule": "tikhonov", "steps": 0, "psnr": float(scores(xt, x)["psnr"].mean()),
                     "dc": float(data_consistency(op, xt, y, 0.05).mean())})
        for n in STEPS:
            for rule in rules:
                gens = [torch.Generator().manual_seed(i) for i in range(len(names))]
                xr = reddiff(model, op, y, steps=n, generator=gens, **VARIANTS[rule])
                rows.append({"task": task, "rule": rule, "steps": n, "psnr": float(scores(xr, x)["psnr"].mean()),
                             "dc": float(data_consistency(op, xr, y, 0.05).mean())})
                print(rows[-1], flush=True)
    return rows


def render(res: dict) -> str:
    lines = ["# RED-diff: λ and Adam's betas against the step count", "",
             f"`python benchmarks/bench_reddiff_steps.py` — {res['machine']}. Demo photos chelsea and coffee (the "
             "tuning set), 64², σ = 0.05, `patches` model, λ = 0.25, lr = 0.1. Cell: mean PSNR dB / data "
             "consistency; **bold**: PSNR ≥ Tikhonov − 0.5 dB and consistency in [0.5, 1.5]. Columns: "
             + "; ".join(f"{k}: `{', '.join(f'{a}={b!r}' for a, b in v.items())}`" for k, v in VARIANTS.items())
             + ".", "",
             "| task | N | Tikhonov | " + " | ".join(RULES) + " |", "|---|---|---|" + "---|" * len(RULES)]
    for task in dict.fromkeys(r["task"] for r in res["rows"]):
        ref = next(r for r in res["rows"] if r["task"] == task and r["rule"] == "tikhonov")
        for n in STEPS:
            cells = []
            for rule in RULES:
                r = next(q for q in res["rows"] if (q["task"], q["steps"], q["rule"]) == (task, n, rule))
                cell = f"{r['psnr']:.2f} / {r['dc']:.2f}"
                cells.append(f"**{cell}**" if r["psnr"] >= ref["psnr"] - 0.5 and 0.5 <= r["dc"] <= 1.5 else cell)
            lines.append(f"| {task} | {n} | {ref['psnr']:.2f} / {ref['dc']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=RULES, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = run(tuple(args.only) if args.only else RULES)
    if args.only:  # the other columns (and Tikhonov, rerun above) as the previous run measured them
        old = json.loads((Path(__file__).parent / "results" / "reddiff-steps.json").read_text())["rows"]
        rows += [r for r in old if r["rule"] not in args.only and r["rule"] != "tikhonov"]
    res = {"machine": _machine(), "rows": rows}
    print(write_results("reddiff-steps", res, render(res)))


if __name__ == "__main__":
    main()
