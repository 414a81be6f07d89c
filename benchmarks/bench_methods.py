"""Every registered inverse method side by side: exact posteriors and held-out photos (a report, not a test).

    python benchmarks/bench_methods.py posterior [--steps 10 20 50 100] [--samples 128] [--size 16]
    python benchmarks/bench_methods.py photos [--sizes 64 128] [--steps 20 50 100] [--images camera grass]

``posterior``: the exact-score priors of ``bench_posterior.py`` (a smooth Gaussian and a 3-component
Gaussian mixture, 1×S×S, σ = 0.05) and its six tasks; for every method at its defaults (through
``diffsolve.solve``, σ passed to the methods that take it) and every N: mean gap ‖x̄ − μ‖/‖μ_prior − μ‖ to the
exact posterior mean and trace ratio tr Ĉ / tr Σ over ``--samples`` draws for one y. A method that does
not support an operator (DDRM without an SVD) is listed as such. Writes ``results/methods_posterior.{md,json,png}``.

``photos``: held-out photos (bundled, never used to tune a default: ``diffsolve.data.HELDOUT``) at each
size, the demo's five tasks (``diffsolve.tasks``), σ = 0.05 (inpainting noise only on observed pixels),
or ``--tasks cs4`` (:data:`CS_TASK`: compressed sensing, a dense Gaussian matrix with m = n/4 and vector
measurements), each method at its defaults through ``diffsolve.methods.restore`` at each step count: PSNR / SSIM, data
consistency ‖A x̂ − y‖/(σ√m) (m measured entries), colour cast (worst per-channel mean shift in [0, 1]),
seconds per image and NFE (denoiser forward calls per image). Tikhonov (λ picked by PSNR, an oracle that
favours it) is the reference. Writes ``results/methods_photos<tag>.{md,json}`` and one quality-versus-time
picture per task, ``results/methods_pareto_<task><tag>.png`` (PSNR against seconds, the Pareto front drawn).

Timings are wall time on the machine named in the output (2 shared CPU cores here: compare within a run).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

if not __import__("torch").cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_posterior import exact_problem, metrics, mixture_mean, priors, probe_directions, tasks  # noqa: E402

import diffsolve  # noqa: E402
from diffsolve.methods import METHODS, restore  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SIGMA = 0.05
#: ``posterior --methods exact``: exact posterior draws, the mean-gap floor of a finite number of draws.
EXACT = "exact"


def inverse_methods() -> list[str]:
    return [name for name, m in METHODS.items() if m.kind == "inverse"]


def method_options(name: str) -> dict:
    """The options a benchmark passes: σ to the methods that take it (the CLI's rule)."""
    return {"sigma": SIGMA} if "sigma" in METHODS[name].own_options() else {}


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch "
            f"{torch.__version__}, {time.strftime('%Y-%m-%d')}")


def _pyplot():
    """matplotlib.pyplot on the Agg backend, or None (with a message) where matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plots (pip install 'diffsolve[plot]')")
        return None
    return plt


# ----------------------------------------------------------------------------------------- posterior
#: DAPS-1K, the DAPS paper's largest setting: 200 annealing levels of 5 ODE steps (1000 model calls)
DAPS_PAPER_LEVELS = 200


def run_steps(name: str, n: int, prior) -> int:
    """The ``steps`` a column N runs: N, except DAPS where N levels cannot fit the model's table (each level
    needs its own timestep, so N ≥ the table's length never fits): there the paper's DAPS-1K, 200 levels
    (as many model calls, 5 a level, as the other methods' N = 1000)."""
    if name == "daps" and n >= len(prior.alphas_cumprod):
        return DAPS_PAPER_LEVELS
    return n


def run_posterior(size: int, samples: int, step_list: list[int], names: list[str]) -> list[dict]:
    rows = []
    dirs = probe_directions(size)
    for pname, prior in priors(size).items():
        prior_mean = mixture_mean(prior)
        for tname, op in tasks(size).items():
            y, post, reference, spaces = exact_problem(prior, op, samples)
            for name in names:
                why = None if name == EXACT else METHODS[name].unsupported(
                    op, (size, size), method_options(name).get("sigma", 0.0))
                for n in step_list:
                    start = time.perf_counter()
                    if why is not None:  # an operator the method does not support (DDRM without an SVD)
                        rows.append({"unsupported": why.split(";")[0][:80], "prior": pname, "task": tname,
                                     "method": name, "steps": n, "sec": 0.0})
                        continue
                    if name == EXACT:  # independent exact posterior draws: the floor of the gap at this many draws
                        row = metrics(post.sample(samples, torch.Generator().manual_seed(3000 + n)), post, prior_mean,
                                      reference, op, y, dirs, *spaces)
                        row.update(prior=pname, task=tname, method=name, steps=n, sec=0.0)
                        rows.append(row)
                        continue
                    run = run_steps(name, n, prior)
                    try:
                        with torch.enable_grad() if METHODS[name].backward else torch.no_grad():
                            out = diffsolve.solve(name, prior, op, y, steps=run, **method_options(name),
                                                  generator=torch.Generator().manual_seed(1000 + n))
                        row = metrics(out.detach(), post, prior_mean, reference, op, y, dirs, *spaces)
                    except FloatingPointError:
                        row = {"mean_gap": float("nan"), "var_ratio": float("nan")}
                    if run != n:
                        row["levels"] = run
                    row.update(prior=pname, task=tname, method=name, steps=n,
                               sec=(time.perf_counter() - start) / samples)
                    rows.append(row)
                    print(f"{pname:8s} {tname:15s} {name:8s} N={n:4d} gap {row.get('mean_gap', float('nan')):.3g} "
                          f"trace {row.get('var_ratio', float('nan')):.3g}", flush=True)
    return rows


def merged(path: Path, rows: list[dict], args) -> list[dict]:
    """With ``--merge``: the rows of ``path`` (a previous run) with the cells rerun replaced by ``rows`` (a cell:
    prior or size, task, method, steps; new cells added), in the previous run's method order; otherwise ``rows``."""
    if not getattr(args, "merge", False) or not path.exists():
        return rows

    def cell(r: dict) -> tuple:
        return tuple(r.get(k) for k in ("prior", "size", "task", "method", "steps"))

    old = json.loads(path.read_text())["rows"]
    rerun = {cell(r) for r in rows}
    kept = [r for r in old if cell(r) not in rerun] + rows

    def first_seen(key: str) -> list:
        return list(dict.fromkeys([EXACT] * (key == "method") + [r.get(key) for r in old + rows]))

    orders = {key: first_seen(key) for key in ("prior", "size", "task", "method")}
    # stable, method-major: the previous run's order of methods, priors, sizes and tasks; steps keep theirs
    return sorted(kept, key=lambda r: tuple(orders[k].index(r.get(k)) for k in ("method", "prior", "size", "task")))


def write_posterior(rows: list[dict], args) -> None:
    RESULTS.mkdir(exist_ok=True)
    rows = merged(RESULTS / "methods_posterior.json", rows, args)
    (RESULTS / "methods_posterior.json").write_text(json.dumps({"machine": machine(), "args": vars(args),
                                                                "rows": rows}, indent=1))
    steps = sorted({r["steps"] for r in rows})
    lines = ["# Every method on exact posteriors", "",
             f"`python benchmarks/bench_methods.py posterior --steps {' '.join(map(str, steps))}` ({machine()}; cells "
             f"of other runs kept with --merge); 1×{args.size}×{args.size}, σ = {SIGMA}, "
             f"{args.samples} draws for one y per cell. Cell: mean gap ‖x̄ − μ‖/‖μ_prior − μ‖ / trace ratio "
             "tr Ĉ/tr Σ (1 = right spread). `—`: the method does not support the operator. `exact`: as many "
             "independent exact posterior draws (one seed per column): the gap a perfect sampler shows at this "
             "many draws, x̄'s own sampling error. †: DAPS's N counts annealing levels of 5 model calls each, and "
             "N levels must fit the model's timesteps; where they cannot (N = 1000) the cell runs the paper's DAPS-1K, "
             f"{DAPS_PAPER_LEVELS} levels (1000 model calls).", ""]
    for pname in dict.fromkeys(r["prior"] for r in rows):
        lines += [f"## {pname} prior", "", "| task | method | " + " | ".join(f"N={n}" for n in steps) + " |",
                  "|---|---|" + "---|" * len(steps)]
        for tname in dict.fromkeys(r["task"] for r in rows):
            for name in dict.fromkeys(r["method"] for r in rows):
                cells = []
                for n in steps:
                    r = next((r for r in rows if (r["prior"], r["task"], r["method"], r["steps"]) ==
                              (pname, tname, name, n)), None)
                    if r is None:
                        cells.append("")
                    elif "unsupported" in r:
                        cells.append("—")
                    else:
                        mark = "†" if "levels" in r else ""
                        cells.append(f"{r['mean_gap']:.2f} / {r['var_ratio']:.2f}{mark}")
                lines.append(f"| {tname} | {name} | " + " | ".join(cells) + " |")
        lines.append("")
    md = RESULTS / "methods_posterior.md"
    reading = md.read_text().partition("\n## Reading")[2] if md.exists() else ""  # kept: it is written by hand
    md.write_text("\n".join(lines) + ("\n## Reading" + reading if reading else ""))
    plt = _pyplot()
    if plt is None:
        return
    import matplotlib.ticker

    tnames = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(2, len(tnames), figsize=(3.2 * len(tnames), 6.4), squeeze=False)
    for i, pname in enumerate(dict.fromkeys(r["prior"] for r in rows)):
        for j, tname in enumerate(tnames):
            ax = axes[i][j]
            for name in dict.fromkeys(r["method"] for r in rows):
                pts = [(r["steps"], r["mean_gap"]) for r in rows if (r["prior"], r["task"], r["method"]) ==
                       (pname, tname, name) and "mean_gap" in r and math.isfinite(r["mean_gap"])]
                if pts:
                    ax.plot(*zip(*pts), marker="o", label=name)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks(steps, [str(n) for n in steps])
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            ax.set_title(f"{pname}: {tname}", fontsize=9)
            ax.set_xlabel("steps N")
            if j == 0:
                ax.set_ylabel("mean gap (lower is better)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "methods_posterior.png", dpi=110)


# ----------------------------------------------------------------------------------------- photos
class Counting:
    """Counts denoiser forward calls per image (NFE)."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, x, t):
        self.calls += 1
        return self.inner(x, t)


def meets_bar(psnr: float, tikhonov_psnr: float, consistency: float) -> bool:
    """The comparison issues' bar for one cell: PSNR ≥ Tikhonov − 0.5 dB and data consistency in [0.5, 1.5]."""
    return psnr >= tikhonov_psnr - 0.5 and 0.5 <= consistency <= 1.5


def measure(op, x: torch.Tensor, seed: int) -> torch.Tensor:
    from diffsolve.operators import Inpainting

    ax = op.A(x)
    noise = torch.randn(ax.shape, generator=torch.Generator().manual_seed(1000 + seed))
    return ax + SIGMA * (op.A(noise) if isinstance(op, Inpainting) else noise)


#: compressed sensing, y = Φ x (B, m): ``MatrixOperator.gaussian(n/4, (3, S, S))``, a dense Gaussian Φ with its SVD
#: (exact solves, DDRM and DDNM+); dense, so 32² and 64² only
CS_TASK = "cs4"


def task_operator(task: str, size: int):
    from diffsolve.tasks import make_operator

    if task == CS_TASK:
        from diffsolve.operators import MatrixOperator

        return MatrixOperator.gaussian(3 * size * size // 4, (3, size, size), seed=0)
    return make_operator(task, (size, size))


def photo_problems(images, size: int, task_names):
    """(task, operator, x, y) per task for the bundled photos ``images`` at ``size``² (y as :func:`measure`
    makes it, seed ``size``)."""
    from diffsolve.data import photo

    x = torch.stack([photo(name, size=size) for name in images])
    for task in task_names:
        op = task_operator(task, size)
        yield task, op, x, measure(op, x, seed=size)


def run_photos(sizes: list[int], step_list: list[int], images: list[str], task_names: list[str],
               names: list[str]) -> list[dict]:
    from diffsolve.data import photo
    from diffsolve.metrics import data_consistency, scores
    from diffsolve.models import PaddedDenoiser, load_default

    model = PaddedDenoiser(load_default("patches"))  # sides not a multiple of 8 padded as the CLI does; else as is
    rows = []
    for size in sizes:
        x = torch.stack([photo(name, size=size) for name in images])
        for task in task_names:
            op = task_operator(task, size)
            y = measure(op, x, seed=size)
            runs = [("tikhonov", 0)] + [(name, n) for name in names for n in step_list]
            for name, n in runs:
                why = METHODS[name].unsupported(op, (size, size), SIGMA)
                if why:  # an operator the method does not support (asked, not inferred from an error)
                    rows.append({"size": size, "task": task, "method": name, "steps": n,
                                 "unsupported": why.split(";")[0][:100]})
                    print(f"{size:4d} {task:14s} {name:8s} unsupported: {rows[-1]['unsupported']}", flush=True)
                    continue
                counting = Counting(model)
                start = time.perf_counter()
                xr, extra = restore(name, counting, op, y, steps=max(n, 1), sigma=SIGMA, x_true=x,
                                    generator=[torch.Generator().manual_seed(i) for i in range(len(images))])
                sec = (time.perf_counter() - start) / len(images)
                s = scores(xr, x)
                dc = data_consistency(op, xr, y, SIGMA)
                cast = s["cast"]  # max_c |mean(x̂_c) − mean(x_c)| in [0, 1] units
                row = {"size": size, "task": task, "method": name, "steps": n, "psnr": float(s["psnr"].mean()),
                       "ssim": float(s["ssim"].mean()), "dc": float(dc.mean()), "dc_min": float(dc.min()),
                       "dc_max": float(dc.max()), "cast": float(cast.max()), "sec": sec,
                       "nfe": counting.calls, "psnr_each": [float(v) for v in s["psnr"]], **extra}
                rows.append(row)
                print(f"{size:4d} {task:14s} {name:8s} N={n:3d} PSNR {row['psnr']:.2f} SSIM {row['ssim']:.3f} "
                      f"dc {row['dc']:.2f} cast {row['cast']:.3f} {sec:.1f} s/img NFE {counting.calls}", flush=True)
    return rows


def write_photos(rows: list[dict], args) -> None:
    RESULTS.mkdir(exist_ok=True)
    tag = getattr(args, "tag", "") or ""
    rows = merged(RESULTS / f"methods_photos{tag}.json", rows, args)
    (RESULTS / f"methods_photos{tag}.json").write_text(json.dumps({"machine": machine(), "args": vars(args),
                                                             "rows": rows}, indent=1))
    lines = ["# Every method on held-out photos", "",
             f"`python benchmarks/bench_methods.py photos` ({machine()}); images {', '.join(args.images)} "
             f"(bundled, never used to tune a default), σ = {SIGMA}, the `patches` model. Cell: PSNR dB / "
             "SSIM / data consistency ‖A x̂ − y‖/(σ√m) / colour cast / s per image / NFE. Tikhonov: λ picked "
             "by PSNR (an oracle). **Bold**: PSNR ≥ Tikhonov − 0.5 dB and data consistency in [0.5, 1.5].", ""]
    for size in dict.fromkeys(r["size"] for r in rows):
        for task in dict.fromkeys(r["task"] for r in rows):
            cell = [r for r in rows if r["size"] == size and r["task"] == task]
            ref = next(r for r in cell if r["method"] == "tikhonov")
            lines += [f"## {size}×{size}, {task}", "", "| method | steps | PSNR | SSIM | DC | cast | s/img | NFE |",
                      "|---|---|---|---|---|---|---|---|"]
            for r in cell:
                if "unsupported" in r:
                    lines.append(f"| {r['method']} | {r['steps']} | — (not supported: needs an SVD) | | | | | |")
                    continue
                ok = meets_bar(r["psnr"], ref["psnr"], r["dc"])
                psnr = f"**{r['psnr']:.2f}**" if ok and r["method"] != "tikhonov" else f"{r['psnr']:.2f}"
                lines.append(f"| {r['method']} | {r['steps'] or '—'} | {psnr} | {r['ssim']:.3f} | {r['dc']:.2f} | "
                             f"{r['cast']:.3f} | {r['sec']:.2f} | {r['nfe']} |")
            lines.append(f"![quality against time, {task}](methods_pareto_{task}{tag}.png)")
            lines.append("")
    (RESULTS / f"methods_photos{tag}.md").write_text("\n".join(lines))
    plt = _pyplot()
    if plt is None:
        return
    import matplotlib.ticker

    for task in dict.fromkeys(r["task"] for r in rows):
        sizes = list(dict.fromkeys(r["size"] for r in rows))
        fig, axes = plt.subplots(1, len(sizes), figsize=(6 * len(sizes), 4.5), squeeze=False)
        for ax, size in zip(axes[0], sizes):
            cell = [r for r in rows if r["size"] == size and r["task"] == task and r["method"] != "tikhonov"
                    and "unsupported" not in r]
            ref = next(r for r in rows if r["size"] == size and r["task"] == task and r["method"] == "tikhonov")
            for name in dict.fromkeys(r["method"] for r in cell):
                pts = sorted((r["sec"], r["psnr"]) for r in cell if r["method"] == name)
                ax.plot(*zip(*pts), marker="o", label=name, alpha=0.8)
            front, best = [], -math.inf
            for r in sorted(cell, key=lambda r: r["sec"]):
                if r["psnr"] > best:
                    front.append((r["sec"], r["psnr"]))
                    best = r["psnr"]
            ax.step(*zip(*front), where="post", color="k", lw=2, alpha=0.4, label="Pareto front")
            ax.axhline(ref["psnr"], color="gray", ls="--", label="Tikhonov (oracle λ)")
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel("seconds per image (log)")
            ax.set_ylabel("PSNR (dB)")
            ax.set_title(f"{task}, {size}×{size}")
        axes[0][-1].legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        fig.savefig(RESULTS / f"methods_pareto_{task}{tag}.png", dpi=100)
        plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    post = sub.add_parser("posterior")
    post.add_argument("--size", type=int, default=16)
    post.add_argument("--samples", type=int, default=128)
    post.add_argument("--steps", type=int, nargs="+", default=[10, 20, 50, 100])
    post.add_argument("--methods", nargs="+", default=None)
    ph = sub.add_parser("photos")
    ph.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ph.add_argument("--steps", type=int, nargs="+", default=[20, 50, 100])
    ph.add_argument("--images", nargs="+", default=None)
    ph.add_argument("--tasks", nargs="+", default=None)
    ph.add_argument("--methods", nargs="+", default=None)
    ph.add_argument("--tag", default="", help="suffix of the output files (e.g. _64)")
    for sub_parser in (post, ph):
        sub_parser.add_argument("--merge", action="store_true",
                                help="replace only the rerun cells (method × steps × task × size or prior) in the "
                                     "previous results")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    names = args.methods or inverse_methods()
    if args.mode == "posterior":
        write_posterior(run_posterior(args.size, args.samples, args.steps, names), args)
    else:
        from diffsolve.data import HELDOUT
        from diffsolve.tasks import DEMO_TASKS

        args.images = args.images or list(HELDOUT)
        write_photos(run_photos(args.sizes, args.steps, args.images, args.tasks or list(DEMO_TASKS), names), args)


if __name__ == "__main__":
    main()
