"""C-DPS on operators without an exact solve: truncated steps (the default) against steps solved to tol.

Not a test. Three parts, each against ``CG(step_iters=None)`` (every step solved to tol, preconditioned, the
previous default) and ``CG(step_iters=k)`` (every step before the last: k plain CG iterations from δ = 0;
the default k = ⌈90/N⌉):

- ``cost``: per-step cost beyond DDIM at B×3×256² (default B = 4), cheap ε-model (bench_dps's), motion
  blur (61, reflect), ``--cost-steps`` steps (default 30: k = 3), η = 1 as C-DPS's default; MPGD (no projection, its default
  σ rule) in the same run, methods interleaved, best of ``--repeat``; ratio to MPGD's cost beyond DDIM.
- ``photos``: the held-out photos (``diffsolve.data.HELDOUT``) with the demo's motion blur at 64², 128²,
  256², σ = 0.05, the shipped ``patches`` model, N ∈ {10, 20, 30, 50, 100} (256²: 30 only), the default last step:
  PSNR, SSIM, data consistency ‖A x̂ − y‖/(σ√m) per k.
- ``posterior``: bench_posterior's exact Gaussian prior, 16², motion blur, 128 draws: mean gap to the
  exact posterior mean and trace ratio, ``last_step`` "denoise" (default) and "sample", N ∈ {20, 50, 100}.
- ``last``: the last step, ``"denoise"`` (default: Tweedie's x̂0) against ``"mean"`` (the previous default:
  the Tweedie-prior posterior mean with y once more), C-DPS defaults, the demo's five tasks at 64² and 128²,
  the held-out photos, 30 steps: PSNR, SSIM, data consistency.

- ``start``: where a truncated step's CG starts, ``CG(start="zero")`` (default) against ``"prior"`` (the prior
  transition's draw): both exact priors (16², 64 draws; Gaussian blur, motion blur, SR ×4; N ∈ {20, 50, 100};
  mean gap and trace ratio, "denoise" and "sample") and the held-out photos at 64² (N ∈ {30, 100}).
- ``exact``: operators with an exact solve (Gaussian blur, SR ×4 bicubic): ``solver="exact"`` (every step
  exact) against the default (truncated CG before the last step), on the held-out photos at 64² and on
  bench_posterior's exact Gaussian prior (16², 64 draws; box inpainting as a control), N ∈ {20, 50, 100}.

Writes ``benchmarks/results/cdps-truncated.{md,json}``.

Usage: ``python benchmarks/bench_cdps_truncated.py [--parts cost photos posterior last] [--batch 4]
[--cost-steps 10] [--repeat 2]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_dps import RESULTS, _best, _cheap_model, _machine, _operator, write_results  # noqa: E402

VARIANTS = {"solved to tol": dict(step_iters=None), "k=2": dict(step_iters=2), "k=3": dict(step_iters=3),
            "k=⌈90/N⌉ (default)": dict(step_iters="auto")}
SIGMA = 0.05


def _cdps(variant: str):
    from diffsolve.solvers import CG, cdps

    solver = CG(**VARIANTS[variant])
    return lambda *a, **kw: cdps(*a, solver=solver, **kw)


def run_cost(batch: int, steps: int, repeat: int) -> dict:
    from diffsolve.solvers import ddim, mpgd

    den, op = _cheap_model(), _operator("motion", 256)
    x = torch.rand(batch, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
    y = op.A(x) + SIGMA * torch.randn(op.A(x).shape, generator=torch.Generator().manual_seed(1))
    runs = {"ddim": lambda: ddim(den, (batch, 3, 256, 256), steps=steps, generator=torch.Generator().manual_seed(2)),
            "mpgd": lambda: mpgd(den, op, y, steps=steps, sigma=SIGMA, generator=torch.Generator().manual_seed(2))}
    for name in ("solved to tol", "k=⌈90/N⌉ (default)"):
        fn = _cdps(name)
        runs[f"cdps {name}"] = lambda fn=fn: fn(den, op, y, steps=steps, sigma=SIGMA,
                                                generator=torch.Generator().manual_seed(2))
    for fn in runs.values():  # warm-up: the CG calibration and the gram bound are one-off, cached per operator
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn()
    best = {name: float("inf") for name in runs}
    for _ in range(repeat):  # interleaved
        for name, fn in runs.items():
            best[name] = min(best[name], _best(fn, 1))
    extra = {name: (t - best["ddim"]) / steps * 1e3 for name, t in best.items()}
    return {"batch": batch, "steps": steps, "seconds": best, "extra_ms_per_step": extra,
            "ratio_to_mpgd": {name: extra[name] / extra["mpgd"] for name in runs if name != "ddim"}}


def run_photos() -> list[dict]:
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_methods import measure

    from diffsolve.data import HELDOUT, photo
    from diffsolve.metrics import scores
    from diffsolve.models import load_default
    from diffsolve.tasks import make_operator

    model = load_default("patches")
    rows = []
    for size, step_list in ((64, (10, 20, 30, 50, 100)), (128, (10, 20, 30, 50, 100)), (256, (30,))):
        x = torch.stack([photo(name, size=size) for name in HELDOUT])
        op = make_operator("motion_blur", (size, size))
        y = measure(op, x, seed=size)
        for n in step_list:
            for variant in VARIANTS:
                gens = [torch.Generator().manual_seed(i) for i in range(len(HELDOUT))]
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    xr, info = _cdps(variant)(model, op, y, steps=n, sigma=SIGMA, generator=gens, return_info=True)
                sec = (time.perf_counter() - t0) / len(HELDOUT)
                s = scores(xr, x)
                rows.append({"size": size, "steps": n, "variant": variant, "psnr": [float(v) for v in s["psnr"]],
                             "ssim": float(s["ssim"].mean()), "dc": [float(v) for v in info["data_consistency"]],
                             "sec": sec})
                print(size, n, variant, f"PSNR {sum(rows[-1]['psnr']) / len(HELDOUT):.2f}", flush=True)
    return rows


def run_posterior(samples: int = 128) -> list[dict]:
    from bench_posterior import exact_problem, metrics, mixture_mean, priors, probe_directions, tasks

    size = 16
    dirs = probe_directions(size)
    prior = priors(size)["gaussian"]
    prior_mean = mixture_mean(prior)
    op = tasks(size)["motion blur"]
    y, post, reference, spaces = exact_problem(prior, op, samples)
    rows = []
    for n in (20, 50, 100):
        for variant in VARIANTS:
            for last in ("denoise", "sample"):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    out = _cdps(variant)(prior, op, y, steps=n, sigma=SIGMA, last_step=last,
                                         generator=torch.Generator().manual_seed(1000 + n))
                m = metrics(out, post, prior_mean, reference, op, y, dirs, *spaces)
                rows.append({"steps": n, "variant": variant, "last_step": last, "gap": m["mean_gap"],
                             "trace": m["var_ratio"]})
    return rows


def run_last() -> list[dict]:
    from bench_methods import measure

    from diffsolve.data import HELDOUT, photo
    from diffsolve.metrics import scores
    from diffsolve.models import load_default
    from diffsolve.solvers import cdps
    from diffsolve.tasks import make_operator

    model = load_default("patches")
    rows = []
    for size in (64, 128):
        x = torch.stack([photo(name, size=size) for name in HELDOUT])
        for task in ("box", "random", "gaussian_blur", "motion_blur", "sr4"):
            op = make_operator(task, (size, size))
            y = measure(op, x, seed=size)
            for last in ("denoise", "mean"):
                gens = [torch.Generator().manual_seed(i) for i in range(len(HELDOUT))]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    xr, info = cdps(model, op, y, steps=30, sigma=SIGMA, last_step=last, generator=gens,
                                    return_info=True)
                s = scores(xr, x)
                rows.append({"size": size, "task": task, "last_step": last, "psnr": [float(v) for v in s["psnr"]],
                             "ssim": float(s["ssim"].mean()), "dc": [float(v) for v in info["data_consistency"]]})
                print(size, task, last, f"PSNR {_mean(rows[-1]['psnr']):.2f}", flush=True)
    return rows


def run_exact() -> list[dict]:
    from bench_methods import measure
    from bench_posterior import exact_problem, metrics, mixture_mean, priors, probe_directions, tasks

    from diffsolve.data import HELDOUT, photo
    from diffsolve.metrics import scores
    from diffsolve.models import load_default
    from diffsolve.solvers import cdps
    from diffsolve.tasks import make_operator

    rows = []
    model = load_default("patches")
    x = torch.stack([photo(name, size=64) for name in HELDOUT])
    for task in ("gaussian_blur", "sr4"):
        op = make_operator(task, (64, 64))
        y = measure(op, x, seed=64)
        for n in (20, 50, 100):
            for solver in ("exact", "auto"):
                gens = [torch.Generator().manual_seed(i) for i in range(len(HELDOUT))]
                xr, info = cdps(model, op, y, steps=n, sigma=SIGMA, solver=solver, generator=gens, return_info=True)
                rows.append({"kind": "photos", "task": task, "steps": n, "solver": solver,
                             "psnr": float(scores(xr, x)["psnr"].mean()), "dc": float(info["data_consistency"].mean())})
    size, samples = 16, 64
    dirs = probe_directions(size)
    prior = priors(size)["gaussian"]
    prior_mean = mixture_mean(prior)
    for task in ("gaussian blur", "sr x4", "box inpaint"):
        op = tasks(size)[task]
        y, post, reference, spaces = exact_problem(prior, op, samples)
        for n in (20, 50, 100):
            for solver in ("exact", "auto"):
                out = cdps(prior, op, y, steps=n, sigma=SIGMA, solver=solver,
                           generator=torch.Generator().manual_seed(1000 + n))
                m = metrics(out, post, prior_mean, reference, op, y, dirs, *spaces)
                rows.append({"kind": "prior", "task": task, "steps": n, "solver": solver, "gap": m["mean_gap"],
                             "trace": m["var_ratio"]})
    return rows


def run_start() -> list[dict]:
    """``CG(start="zero")`` (default) against ``"prior"``: exact priors (both, 16², 64 draws) and held-out photos."""
    from bench_methods import measure
    from bench_posterior import exact_problem, metrics, mixture_mean, priors, probe_directions, tasks

    from diffsolve.data import HELDOUT, photo
    from diffsolve.metrics import scores
    from diffsolve.models import load_default
    from diffsolve.solvers import CG, cdps
    from diffsolve.solvers.cdps import CG_STARTS
    from diffsolve.tasks import make_operator

    rows = []
    size, samples = 16, 64
    dirs = probe_directions(size)
    for pname, prior in priors(size).items():
        prior_mean = mixture_mean(prior)
        for task in ("gaussian blur", "motion blur", "sr x4"):
            op = tasks(size)[task]
            y, post, reference, spaces = exact_problem(prior, op, samples)
            for n in (20, 50, 100):
                for start in CG_STARTS:
                    for last in ("denoise", "sample"):
                        out = cdps(prior, op, y, steps=n, sigma=SIGMA, solver=CG(start=start), last_step=last,
                                   generator=torch.Generator().manual_seed(1000 + n))
                        m = metrics(out, post, prior_mean, reference, op, y, dirs, *spaces)
                        rows.append({"kind": "prior", "prior": pname, "task": task, "steps": n, "start": start,
                                     "last_step": last, "gap": m["mean_gap"], "trace": m["var_ratio"]})
    model = load_default("patches")
    x = torch.stack([photo(name, size=64) for name in HELDOUT])
    for task in ("gaussian_blur", "motion_blur", "sr4"):
        op = make_operator(task, (64, 64))
        y = measure(op, x, seed=64)
        for n in (30, 100):
            for start in CG_STARTS:
                gens = [torch.Generator().manual_seed(i) for i in range(len(HELDOUT))]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    xr, info = cdps(model, op, y, steps=n, sigma=SIGMA, solver=CG(start=start), generator=gens,
                                    return_info=True)
                rows.append({"kind": "photos", "task": task, "steps": n, "start": start,
                             "psnr": float(scores(xr, x)["psnr"].mean()), "dc": float(info["data_consistency"].mean())})
                print("start", task, n, start, f"{rows[-1]['psnr']:.2f}", flush=True)
    return rows


def _mean(v: list[float]) -> float:
    return sum(v) / len(v)


def render(res: dict) -> str:
    lines = ["# C-DPS without an exact solve: truncated steps against steps solved to tol", "",
             f"`python benchmarks/bench_cdps_truncated.py` — {res['machine']}.", "",
             "Truncated (`CG(step_iters=k)`, the default k = ⌈90/N⌉): every step before the last takes k plain CG "
             "iterations on Λ δ = √c e₁ + w Aᵀ(y_s − b_s − A m + e₂/√w) from δ = 0; the last step is solved to tol. "
             "Solved to tol (`CG(step_iters=None)`, the previous default): every step warm-started at m, circulant "
             "preconditioner, calibrated budget to 1e-5.", ""]
    if "cost" in res:
        c = res["cost"]
        lines += [f"## Cost: {c['batch']}×3×256², motion blur (61, reflect), cheap ε, {c['steps']} steps, float32", "",
                  "| method | s | ms/step beyond DDIM | ratio to MPGD (target ≤ 3) |", "|---|---|---|---|"]
        for name, t in c["seconds"].items():
            ratio = "—" if name == "ddim" else f"{c['ratio_to_mpgd'][name]:.2f}"
            extra = "—" if name == "ddim" else f"{c['extra_ms_per_step'][name]:.1f}"
            lines.append(f"| {name} | {t:.3f} | {extra} | {ratio} |")
        lines.append("")
    if "photos" in res:
        lines += ["## Held-out photos (camera, grass, hopper), motion blur, σ = 0.05, `patches` model", "",
                  "Cell: mean PSNR (dB) / SSIM / mean data consistency; per-image PSNR in the .json.", "",
                  "| size | N | " + " | ".join(VARIANTS) + " |", "|---|---|" + "---|" * len(VARIANTS)]
        keys = sorted({(r["size"], r["steps"]) for r in res["photos"]})
        for size, n in keys:
            cells = []
            for v in VARIANTS:
                r = next(r for r in res["photos"] if (r["size"], r["steps"], r["variant"]) == (size, n, v))
                cells.append(f"{_mean(r['psnr']):.2f} / {r['ssim']:.3f} / {_mean(r['dc']):.2f}")
            lines.append(f"| {size}² | {n} | " + " | ".join(cells) + " |")
        lines.append("")
    if "posterior" in res:
        lines += ["## Exact Gaussian prior, 16², motion blur, 128 draws", "",
                  "Cell: mean gap / trace ratio with `last_step=\"denoise\"`, then with `\"sample\"`.", "",
                  "| N | " + " | ".join(VARIANTS) + " |", "|---|" + "---|" * len(VARIANTS)]
        for n in (20, 50, 100):
            cells = []
            for v in VARIANTS:
                m, s = (next(r for r in res["posterior"] if (r["steps"], r["variant"], r["last_step"]) == (n, v, last))
                        for last in ("denoise", "sample"))
                cells.append(f"{m['gap']:.3f} / {m['trace']:.2f}; {s['gap']:.3f} / {s['trace']:.2f}")
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        lines.append("")
    if "last" in res:
        lines += ["## Last step: \"denoise\" (default) against \"mean\", held-out photos, 30 steps, C-DPS defaults", "",
                  "Cell: mean PSNR (dB) / SSIM / data consistency (min–max over the images).", "",
                  "| size | task | denoise | mean |", "|---|---|---|---|"]
        for size, task in dict.fromkeys((r["size"], r["task"]) for r in res["last"]):
            cells = []
            for last in ("denoise", "mean"):
                r = next(r for r in res["last"] if (r["size"], r["task"], r["last_step"]) == (size, task, last))
                cells.append(f"{_mean(r['psnr']):.2f} / {r['ssim']:.3f} / {min(r['dc']):.2f}–{max(r['dc']):.2f}")
            lines.append(f"| {size}² | {task} | " + " | ".join(cells) + " |")
        lines.append("")
    if "exact" in res:
        lines += ["## Operators with an exact solve: `solver=\"exact\"` against the default (truncated CG before the "
                  "last step)", "", "Photos: held-out camera, grass, hopper at 64², mean PSNR dB / data consistency. "
                  "Exact prior: 16², 64 draws, mean gap / trace ratio (box inpainting uses the diagonal kernel "
                  "either way: a control).", "",
                  "| data | task | N | exact every step | default |", "|---|---|---|---|---|"]
        for r in res["exact"]:
            if r["solver"] != "exact":
                continue
            d = next(q for q in res["exact"] if (q["kind"], q["task"], q["steps"], q["solver"]) ==
                     (r["kind"], r["task"], r["steps"], "auto"))
            cell = (lambda q: f"{q['psnr']:.2f} / {q['dc']:.2f}") if r["kind"] == "photos" else (
                lambda q: f"{q['gap']:.3f} / {q['trace']:.2f}")
            lines.append(f"| {r['kind']} | {r['task']} | {r['steps']} | {cell(r)} | {cell(d)} |")
        lines.append("")
    if "start" in res:
        lines += ["## Where a truncated step's CG starts: `CG(start=\"zero\")` (default) against `\"prior\"`", "",
                  "Exact priors (16², 64 draws): mean gap / trace ratio with `last_step=\"denoise\"`, then "
                  "`\"sample\"`. Photos: held-out camera, grass, hopper at 64², mean PSNR dB / data consistency.",
                  "", "| data | task | N | zero | prior |", "|---|---|---|---|---|"]
        prior_rows = [r for r in res["start"] if r["kind"] == "prior"]
        for key in dict.fromkeys((r["prior"], r["task"], r["steps"]) for r in prior_rows):
            cells = []
            for start in ("zero", "prior"):
                d, s = (next(r for r in prior_rows if (r["prior"], r["task"], r["steps"], r["start"], r["last_step"])
                             == (*key, start, last)) for last in ("denoise", "sample"))
                cells.append(f"{d['gap']:.3f} / {d['trace']:.2f}; {s['gap']:.3f} / {s['trace']:.2f}")
            lines.append(f"| {key[0]} prior | {key[1]} | {key[2]} | " + " | ".join(cells) + " |")
        photo_rows = [r for r in res["start"] if r["kind"] == "photos"]
        for key in dict.fromkeys((r["task"], r["steps"]) for r in photo_rows):
            cells = [next(f"{r['psnr']:.2f} / {r['dc']:.2f}" for r in photo_rows
                          if (r["task"], r["steps"], r["start"]) == (*key, start)) for start in ("zero", "prior")]
            lines.append(f"| photos | {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", nargs="+", default=["cost", "photos", "posterior", "last", "exact", "start"],
                   choices=["cost", "photos", "posterior", "last", "exact", "start"])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--cost-steps", type=int, default=30)
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args(argv)
    res: dict = {"machine": _machine()}
    path = RESULTS / "cdps-truncated.json"
    if path.exists():  # parts not rerun keep their last numbers
        res = {**json.loads(path.read_text()), "machine": res["machine"]}
    if "cost" in args.parts:
        res["cost"] = run_cost(args.batch, args.cost_steps, args.repeat)
        print(json.dumps(res["cost"], indent=1), flush=True)
    if "photos" in args.parts:
        res["photos"] = run_photos()
    if "posterior" in args.parts:
        res["posterior"] = run_posterior()
    if "last" in args.parts:
        res["last"] = run_last()
    if "exact" in args.parts:
        res["exact"] = run_exact()
    if "start" in args.parts:
        res["start"] = run_start()
    print(write_results("cdps-truncated", res, render(res)))


if __name__ == "__main__":
    main()
