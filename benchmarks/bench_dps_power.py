"""DPS's step-count rule: ζ_N ∝ N^(−p) for p = 1/2 (the old "sqrt"), 3/4 (the "power" default) and 1, from N = 30
to 1000 (a report, not a test).

    python benchmarks/bench_dps_power.py prior [--steps 30 100 300 1000] [--powers 0.5 0.75 1.0]
    python benchmarks/bench_dps_power.py photos [--steps 30 100 1000] [--rules sqrt power power+sigma]
                                                [--images hopper camera]

Every rule is anchored at N₀ = 30 (``dps.REFERENCE_STEPS``, where ζ = 1 was tuned): ζ_N = √(T/N₀)·(N₀/N)^p·√(d/d_ref),
so all agree at 30 steps. ``prior``: the exact Gaussian prior of ``bench_posterior.py`` (1×16×16, σ = 0.05, 64 draws
for one y), box and random inpainting and both blurs: mean gap ‖x̄ − μ‖/‖μ_prior − μ‖ / trace ratio. ``photos``:
bundled photos at 64² (σ = 0.05, the demo's five tasks, the `patches` model), "sqrt" against "power": PSNR / SSIM
/ data consistency ‖A x̂ − y‖/(σ√m), with Tikhonov (λ picked by PSNR) as the reference; "power+sigma" also passes
σ (the discrepancy factor (1 − mσ²/‖r‖²)₊ of every step, the command line's default). Each part merges its rows
into ``results/dps-steps-power.json`` and rewrites ``results/dps-steps-power.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_dps import write_results  # noqa: E402
from bench_methods import RESULTS, SIGMA, machine, photo_problems  # noqa: E402
from bench_posterior import exact_problem, metrics, mixture_mean, priors, probe_directions, tasks  # noqa: E402

import diffsolve  # noqa: E402
from diffsolve.solvers.dps import REFERENCE_STEPS  # noqa: E402

OUT = RESULTS / "dps-steps-power"
PRIOR_TASKS = ("box inpaint", "random inpaint", "gaussian blur", "motion blur")


def zeta_for(power: float, steps: int) -> float:
    """The ``zeta`` that makes the sqrt rule's ζ_N equal √(T/N₀)·(N₀/N)^power (so p = 1/2 is ζ = 1)."""
    return (REFERENCE_STEPS / steps) ** power / math.sqrt(REFERENCE_STEPS / steps)


def run_prior(steps: list[int], powers: list[float]) -> list[dict]:
    size, samples = 16, 64
    dirs = probe_directions(size)
    prior = priors(size)["gaussian"]
    prior_mean = mixture_mean(prior)
    rows = []
    for tname in PRIOR_TASKS:
        op = tasks(size)[tname]
        y, post, reference, spaces = exact_problem(prior, op, samples)
        for p in powers:
            for n in steps:
                with torch.enable_grad():
                    out = diffsolve.solve("dps", prior, op, y, steps=n, zeta=zeta_for(p, n), step_rule="sqrt",
                                          generator=torch.Generator().manual_seed(1000 + n))
                m = metrics(out.detach(), post, prior_mean, reference, op, y, dirs, *spaces)
                rows.append({"part": "prior", "task": tname, "power": p, "steps": n, "mean_gap": m["mean_gap"],
                             "var_ratio": m["var_ratio"]})
                print(rows[-1], flush=True)
    return rows


def run_photos(steps: list[int], rules: list[str], images: list[str], size: int) -> list[dict]:
    from diffsolve.methods import restore
    from diffsolve.metrics import data_consistency, scores
    from diffsolve.models import load_default

    model = load_default("patches")
    rows = []
    for task, op, x, y in photo_problems(images, size, ("gaussian_blur", "motion_blur", "box", "random", "sr4")):
        tik, _ = restore("tikhonov", model, op, y, steps=1, sigma=SIGMA, x_true=x)
        rows.append({"part": "photos", "images": images, "size": size, "task": task, "rule": "tikhonov", "steps": 0,
                     "psnr": float(scores(tik, x)["psnr"].mean())})
        for rule in rules:
            for n in steps:
                start = time.perf_counter()
                extra = {"sigma": SIGMA} if rule.endswith("+sigma") else {}  # the discrepancy factor
                with torch.enable_grad():
                    xr = diffsolve.solve("dps", model, op, y, steps=n, step_rule=rule.split("+")[0],
                                         generator=[torch.Generator().manual_seed(i) for i in range(len(images))],
                                         **extra)
                xr = xr.detach()
                s, dc = scores(xr, x), data_consistency(op, xr, y, SIGMA)
                rows.append({"part": "photos", "images": images, "size": size, "task": task, "rule": rule, "steps": n,
                             "psnr": float(s["psnr"].mean()), "ssim": float(s["ssim"].mean()),
                             "dc": float(dc.mean()), "dc_min": float(dc.min()), "dc_max": float(dc.max()),
                             "sec": (time.perf_counter() - start) / len(images)})
                print(rows[-1], flush=True)
    return rows


def render(rows: list[dict]) -> str:
    out = ["# DPS: the step-count rule (benchmarks/bench_dps_power.py)", "",
           f"{machine()}. Every rule gives ζ_N = √(T/30)·(30/N)^p·√(d/d_ref) (equal at N = 30, where ζ = 1 was tuned); "
           "p = 1/2 is the old default `step_rule=\"sqrt\"`, p = 3/4 the new default `\"power\"`; `power+sigma` also passes σ "
           "(the discrepancy factor, the command line's default).", ""]
    prior = [r for r in rows if r["part"] == "prior"]
    if prior:
        steps = sorted({r["steps"] for r in prior})
        out += ["## Exact Gaussian prior (1×16×16, σ = 0.05, 64 draws for one y)", "",
                "Cell: mean gap ‖x̄ − μ‖/‖μ_prior − μ‖ / trace ratio tr Ĉ/tr Σ (1 = right spread).", "",
                "| task | p | " + " | ".join(f"N={n}" for n in steps) + " |", "|---|---|" + "---|" * len(steps)]
        for task in dict.fromkeys(r["task"] for r in prior):
            for p in sorted({r["power"] for r in prior}):
                cells = [next((f"{r['mean_gap']:.3f} / {r['var_ratio']:.2f}" for r in prior
                               if (r["task"], r["power"], r["steps"]) == (task, p, n)), "") for n in steps]
                out.append(f"| {task} | {p:g} | " + " | ".join(cells) + " |")
        out.append("")
    photos = [r for r in rows if r["part"] == "photos"]
    for images in dict.fromkeys(tuple(r["images"]) for r in photos):
        sub = [r for r in photos if tuple(r["images"]) == images]
        steps = sorted({r["steps"] for r in sub if r["rule"] != "tikhonov"})
        out += [f"## Photos {', '.join(images)} at {sub[0]['size']}² (σ = 0.05, `patches` model, one draw per image)", "",
                "Cell: mean PSNR dB / SSIM / mean data consistency (min–max over the images); **bold**: PSNR ≥ "
                "Tikhonov − 0.5 dB and every image's consistency in [0.5, 1.5].", "",
                "| task | Tikhonov | rule | " + " | ".join(f"N={n}" for n in steps) + " |",
                "|---|---|---|" + "---|" * len(steps)]
        for task in dict.fromkeys(r["task"] for r in sub):
            tik = next(r["psnr"] for r in sub if r["task"] == task and r["rule"] == "tikhonov")
            for rule in dict.fromkeys(r["rule"] for r in sub if r["rule"] != "tikhonov"):
                cells = []
                for n in steps:
                    r = next((r for r in sub if (r["task"], r["rule"], r["steps"]) == (task, rule, n)), None)
                    if r is None:
                        cells.append("")
                        continue
                    ok = r["psnr"] >= tik - 0.5 and 0.5 <= r["dc_min"] and r["dc_max"] <= 1.5
                    text = f"{r['psnr']:.2f} / {r['ssim']:.3f} / {r['dc']:.2f} ({r['dc_min']:.2f}–{r['dc_max']:.2f})"
                    cells.append(f"**{text}**" if ok else text)
                out.append(f"| {task} | {tik:.2f} | {rule} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="part", required=True)
    pr = sub.add_parser("prior")
    pr.add_argument("--steps", type=int, nargs="+", default=[30, 100, 300, 1000])
    pr.add_argument("--powers", type=float, nargs="+", default=[0.5, 0.75, 1.0])
    ph = sub.add_parser("photos")
    ph.add_argument("--steps", type=int, nargs="+", default=[30, 100, 1000])
    ph.add_argument("--rules", nargs="+", default=["sqrt", "power", "power+sigma"])
    ph.add_argument("--images", nargs="+", default=["hopper", "camera"])
    ph.add_argument("--size", type=int, default=64)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = run_prior(args.steps, args.powers) if args.part == "prior" else run_photos(args.steps, args.rules,
                                                                                     args.images, args.size)
    path = OUT.with_suffix(".json")
    old = json.loads(path.read_text())["rows"] if path.exists() else []
    key = (lambda r: (r["part"], tuple(r.get("images", ())), r["task"], r.get("power"), r.get("rule"), r["steps"]))
    new_keys = {key(r) for r in rows}
    rows = [r for r in old if key(r) not in new_keys] + rows
    write_results(OUT.name, {"machine": machine(), "rows": rows}, render(rows))


if __name__ == "__main__":
    main()
