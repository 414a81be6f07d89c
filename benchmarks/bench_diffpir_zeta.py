"""DiffPIR's ζ: the reference code's deblurring 0.3 against its inpainting 1, on every task (a report, not a test).

    python benchmarks/bench_diffpir_zeta.py [--samples 192] [--seeds 0 1 2]

Exact priors (``bench_posterior.py``: 1×16×16, σ = 0.05; its six tasks, N = 50, ``--samples`` draws per seed; each
seed its own x and y, as in ``bench_cdps_bar.py``): mean gap ‖x̄ − μ‖/‖μ_prior − μ‖ and trace ratio tr Ĉ/tr Σ for
ζ = 0.3 and 1, and DPS at N = 100 (the comparison issue's bar). Photos (σ = 0.05, the ``patches`` model, inpainting
noise only on observed pixels; the five photo tasks): the tuning photos (chelsea, coffee) at 64² and 10 / 20 / 50 /
100 steps, the held-out four (camera, grass, hopper, raccoon) at 64² and 20 / 50 steps and at 128² and 50 steps;
PSNR, data consistency and colour cast, mean over the photos (one draw each).
Writes ``results/diffpir-zeta.{md,json}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_dps import write_results  # noqa: E402
from bench_methods import SIGMA, machine, measure  # noqa: E402
from bench_posterior import exact_problem, metrics, mixture_mean, priors, probe_directions, tasks  # noqa: E402

import diffsolve  # noqa: E402

ZETAS = (0.3, 1.0)
PHOTO_TASKS = ("gaussian_blur", "motion_blur", "box", "random", "sr4")
PHOTO_RUNS = [(("chelsea", "coffee"), 64, (10, 20, 50, 100)), (("camera", "grass", "hopper", "raccoon"), 64, (20, 50)),
              (("camera", "grass", "hopper", "raccoon"), 128, (50,))]


def exact_rows(samples: int, seeds: list[int]) -> list[dict]:
    size = 16
    dirs = probe_directions(size)
    rows = []
    for pname, prior in priors(size).items():
        pm = mixture_mean(prior)
        for tname, op in tasks(size).items():
            for seed in seeds:  # each seed its own y (seed 1 + k, as bench_cdps_bar.py) and sampler noise
                y, post, reference, spaces = exact_problem(prior, op, samples, instance=1 + seed)
                row = {"prior": pname, "task": tname, "seed": seed}
                runs = [(f"zeta={z}", "diffpir", 50, {"sigma": SIGMA, "zeta": z}) for z in ZETAS]
                for label, method, steps, options in runs + [("dps@100", "dps", 100, {"sigma": SIGMA})]:
                    gen = torch.Generator().manual_seed(1000 + steps + 7 * seed)
                    with torch.enable_grad() if method == "dps" else torch.no_grad():
                        out = diffsolve.solve(method, prior, op, y, steps=steps, generator=gen, **options)
                    m = metrics(out.detach(), post, pm, reference, op, y, dirs, *spaces)
                    row[label] = (m["mean_gap"], m["var_ratio"])
                rows.append(row)
                print(row, flush=True)
    return rows


def photo_rows() -> list[dict]:
    from diffsolve.data import photo
    from diffsolve.metrics import data_consistency, scores
    from diffsolve.models import load_default
    from diffsolve.tasks import make_operator

    model = load_default("patches")
    rows = []
    for images, size, step_list in PHOTO_RUNS:
        x = torch.stack([photo(name, size=size) for name in images])
        for task in PHOTO_TASKS:
            op = make_operator(task, (size, size))
            y = measure(op, x, seed=size)
            for steps in step_list:
                row = {"images": list(images), "size": size, "task": task, "steps": steps}
                for z in ZETAS:
                    gens = [torch.Generator().manual_seed(i) for i in range(len(images))]
                    out = diffsolve.solve("diffpir", model, op, y, sigma=SIGMA, steps=steps, zeta=z, generator=gens)
                    cast = ((out.clamp(-1, 1) + 1) / 2).mean((2, 3)).sub((x + 1).mean((2, 3)) / 2).abs().amax(1)
                    row[f"zeta={z}"] = (float(scores(out, x)["psnr"].mean()),
                                        float(data_consistency(op, out, y, SIGMA).mean()), float(cast.max()))
                rows.append(row)
                print(row, flush=True)
    return rows


def markdown(exact: list[dict], photos: list[dict], args, seconds: float) -> str:
    lines = ["# DiffPIR's ζ: 0.3 (the reference code's deblurring) against 1 (its inpainting), on every task", "",
             f"`python benchmarks/bench_diffpir_zeta.py --samples {args.samples} --seeds "
             f"{' '.join(map(str, args.seeds))}` ({machine()}, {seconds:.0f} s). DiffPIR at its other defaults "
             "(λ = 1.75, σ given); the default ζ is now 1 on every operator (before: 1 on masks, 0.3 elsewhere).", "",
             "## Exact priors, N = 50", "",
             "Cell: mean gap / trace ratio. Bar: DPS at N = 100 (the comparison issue's target). Each seed k is its "
             "own y (drawn with seed 1 + k) and sampler noise.", "",
             "| prior | task | seed | ζ = 0.3 | ζ = 1 | DPS N = 100 (bar) |", "|---|---|---|---|---|---|"]
    for r in exact:
        cells = [f"{r[k][0]:.3f} / {r[k][1]:.2f}" for k in ("zeta=0.3", "zeta=1.0", "dps@100")]
        lines.append(f"| {r['prior']} | {r['task']} | {r['seed']} | " + " | ".join(cells) + " |")
    lines += ["", "## Photos", "", "Cell: PSNR dB / data consistency / worst colour cast, mean over the photos.", "",
              "| photos | size | task | steps | ζ = 0.3 | ζ = 1 | Δ PSNR |", "|---|---|---|---|---|---|---|"]
    for r in photos:
        a, b = r["zeta=0.3"], r["zeta=1.0"]
        lines.append(f"| {', '.join(r['images'])} | {r['size']} | {r['task']} | {r['steps']} | {a[0]:.2f} / {a[1]:.2f} "
                     f"/ {a[2]:.3f} | {b[0]:.2f} / {b[1]:.2f} / {b[2]:.3f} | {b[0] - a[0]:+.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=192)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    start = time.perf_counter()
    exact, photos = exact_rows(args.samples, args.seeds), photo_rows()
    seconds = time.perf_counter() - start
    write_results("diffpir-zeta", {"machine": machine(), "args": vars(args), "exact": exact, "photos": photos},
                  markdown(exact, photos, args, seconds))


if __name__ == "__main__":
    main()
