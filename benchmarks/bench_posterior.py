"""Posterior fidelity of DPS, MPGD and C-DPS on exact-score priors (DESIGN §7), and their cost.

With a Gaussian or Gaussian-mixture prior the denoiser is exact (closed-form ε at every noise level)
and so is the posterior p(x | y) under y = A x + n, n ~ N(0, σ² I): every gap between a method's
samples and the true posterior is the method's own error, not the network's.

Problems: 1×S×S images (S = 16 by default), σ = 0.05 in [−1, 1] units; box inpainting (S/2 box),
random inpainting (70 % missing), Gaussian blur (reflect, (2⌊S/4⌋+1)² taps, std S/10), motion blur
((2⌊S/4⌋+1)² taps, intensity 0.5, CG solves), SR ×4 (bicubic and average).
Methods at their defaults: C-DPS (reverse coupling, ``chain="none"``: row ``cdps``) at every step
count given; the other C-DPS chains (``cdps operator``, ``cdps markov`` = the talk's, ``cdps fresh``) at
20, 50, 100 and the default chain with ``last_step="sample"`` (``cdps sample``) at 50; DPS (ζ = 1 under the √(T/N) rule, η = 1) at 50 and 100, MPGD (default ρ, η = 0.5) at 50
and the forward coupling at 20 — a CPU budget (``--all-steps`` for every count; DPS from 10 to 1000
steps: ``bench_dps_steps.py``). ``--tasks``/``--priors``/``--methods`` pick subsets.

Metrics over ``--samples`` draws for one measurement y (exact posterior: mean μ, covariance Σ):
- ``mean gap``: ‖x̄ − μ‖ / ‖μ_prior − μ‖, the fraction of the prior-to-posterior mean shift missed;
- ``var ratio``: tr Ĉ / tr Σ (1 = right spread; > 1 over-dispersed); ``weak`` / ``strong``: the
  same restricted to the subspace A barely sees (right singular vectors with singular value < σ,
  e.g. the missing pixels) and to its complement;
- ``cov err``: ‖Ĉ − Σ‖_F / ‖Σ‖_F;
- ``SW2``: sliced Wasserstein-2 distance to as many exact posterior draws (128 fixed directions);
- ``residual``: mean ‖A x − y‖ / √m (exact posterior draws give the reference value);
- ``s/sample``: wall time per sample (a shared CPU: compare within one run only).
The ``exact`` rows score independent exact posterior draws: the sampling-noise floor of each metric.

Run: ``python benchmarks/bench_posterior.py`` (writes ``results/posterior.{md,png}`` and
``posterior_raw.json``); ``--quick`` for a smoke run. The file's pytest-benchmark cases time the
methods with a small random UNet instead (``python -m pytest benchmarks/bench_posterior.py
--benchmark-only --benchmark-json=benchmarks/results/posterior_cost.json``). Not part of the tests.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

if not __import__("torch").cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch

from diffsolve.models import GaussianMixturePrior, GaussianPrior, operator_matrix
from diffsolve.operators import GaussianBlur, Inpainting, MotionBlur, SuperResolution
from diffsolve.solvers import cdps, dps, mpgd
from diffsolve.solvers.cdps import CHAINS

__all__ = ["kernel_cov", "main", "metrics", "priors", "tasks"]

RESULTS = Path(__file__).parent / "results"
SIGMA = 0.05
D = torch.float64


def kernel_cov(size: int, length: float, var: float, nugget: float) -> torch.Tensor:
    """(n², n²) var·exp(−d²/(2 length²)) + nugget·I over the pixels of a size×size image (d: their distance)."""
    idx = torch.arange(size * size)
    r, c = (idx // size).double(), (idx % size).double()
    d2 = (r[:, None] - r[None]) ** 2 + (c[:, None] - c[None]) ** 2
    return var * torch.exp(-d2 / (2 * length**2)) + nugget * torch.eye(size * size, dtype=D)


def priors(size: int) -> dict[str, GaussianMixturePrior]:
    """A smooth Gaussian prior and a 3-component Gaussian mixture of smooth fields, in [−1, 1]-ish."""
    g = torch.Generator().manual_seed(0)
    u = torch.linspace(-1, 1, size, dtype=D)
    yy, xx = torch.meshgrid(u, u, indexing="ij")
    mean = 0.2 * torch.sin(2 * xx) * torch.cos(yy)
    gauss = GaussianPrior(mean[None], kernel_cov(size, size / 6, 0.2, 0.01))
    means = torch.stack([0.5 * torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.3) - 0.2
                         for cx, cy in ((-0.4, -0.4), (0.4, 0.0), (0.0, 0.5))])[:, None]
    means = means + 0.05 * torch.randn(means.shape, generator=g, dtype=D)
    cov = kernel_cov(size, size / 8, 0.05, 0.01)
    gmm = GaussianMixturePrior(means, cov.expand(3, -1, -1).clone(), torch.tensor([0.5, 0.3, 0.2], dtype=D))
    return {"gaussian": gauss, "gmm": gmm}


def tasks(size: int) -> dict[str, object]:
    return {
        "box inpaint": Inpainting.box(size, box=size // 2, margin=size // 8, seed=0),
        "random inpaint": Inpainting.random(size, 0.7, seed=0),
        "gaussian blur": GaussianBlur(kernel_size=2 * (size // 4) + 1, std=size / 10),
        "motion blur": MotionBlur(kernel_size=2 * (size // 4) + 1, intensity=0.5, seed=0),
        "sr x4": SuperResolution(4, input_size=(size, size)),
        "sr x4 average": SuperResolution(4, "average", input_size=(size, size)),
    }


def methods() -> dict[str, object]:
    return {
        "dps": lambda p, op, y, n, g: dps(p, op, y, steps=n, generator=g),
        "mpgd": lambda p, op, y, n, g: mpgd(p, op, y, steps=n, generator=g),
        "cdps": lambda p, op, y, n, g: cdps(p, op, y, steps=n, sigma=SIGMA, generator=g),
        **{f"cdps {chain}": (lambda chain: lambda p, op, y, n, g: cdps(p, op, y, steps=n, sigma=SIGMA, chain=chain,
                                                                       generator=g))(chain)
           for chain in CHAINS if chain != "none"},  # "none" is the default: the "cdps" row
        "cdps sample": lambda p, op, y, n, g: cdps(p, op, y, steps=n, sigma=SIGMA, last_step="sample", generator=g),
        "cdps forward": lambda p, op, y, n, g: cdps(p, op, y, steps=n, sigma=SIGMA, coupling="forward", generator=g),
    }


#: the C-DPS options are measured at two step counts only (the CPU budget); ``--all-steps`` runs all
VARIANT_STEPS = {"cdps operator": (20, 50, 100), "cdps markov": (20, 50, 100), "cdps fresh": (20, 50, 100),
                 "cdps forward": (20,), "dps": (50, 100), "mpgd": (50,), "cdps sample": (50,)}


def _sw2(a: torch.Tensor, b: torch.Tensor, dirs: torch.Tensor) -> float:
    pa, pb = (a @ dirs).sort(0).values, (b @ dirs).sort(0).values
    return float(((pa - pb) ** 2).mean().sqrt())


def subspaces(op, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthonormal bases (n, k), (n, n − k) of the directions A maps to less than σ (right singular
    vectors with singular value < σ, the null space included) and of their complement."""
    _, sv, vh = torch.linalg.svd(operator_matrix(op, shape), full_matrices=True)
    sv = torch.cat([sv, torch.zeros(vh.shape[0] - sv.numel(), dtype=sv.dtype)])
    return vh[sv < SIGMA].T, vh[sv >= SIGMA].T


def _ratio(emp: torch.Tensor, cov: torch.Tensor, basis: torch.Tensor) -> float:
    if basis.shape[1] == 0:
        return float("nan")
    return float(torch.einsum("ik,ij,jk->", basis, emp, basis) / torch.einsum("ik,ij,jk->", basis, cov, basis))


def metrics(samples: torch.Tensor, post, prior_mean: torch.Tensor, reference: torch.Tensor, op, y: torch.Tensor,
            dirs: torch.Tensor, weak: torch.Tensor, strong: torch.Tensor) -> dict[str, float]:
    """The module docstring's metrics for samples (N, *shape) against the exact posterior ``post``."""
    x = samples.reshape(samples.shape[0], -1).double()
    mu, cov = post.mean.reshape(-1), post.cov
    if not bool(torch.isfinite(x).all()):
        return {k: float("nan") for k in ("mean_gap", "var_ratio", "var_weak", "var_strong", "cov_err", "sw2",
                                          "residual")}
    emp = torch.cov(x.T)
    resid = (op.A(samples.double()) - y).flatten(1).norm(dim=1) / math.sqrt(y[0].numel())
    return {
        "mean_gap": float((x.mean(0) - mu).norm() / (prior_mean.reshape(-1) - mu).norm()),
        "var_ratio": float(emp.diagonal().sum() / cov.diagonal().sum()),
        "var_weak": _ratio(emp, cov, weak),
        "var_strong": _ratio(emp, cov, strong),
        "cov_err": float((emp - cov).norm() / cov.norm()),
        "sw2": _sw2(x, reference.reshape(reference.shape[0], -1), dirs),
        "residual": float(resid.mean()),
    }


def probe_directions(size: int) -> torch.Tensor:
    """128 unit directions in R^(size²) for the sliced distances (seed 11)."""
    dirs = torch.randn(size * size, 128, generator=torch.Generator().manual_seed(11), dtype=D)
    return dirs / dirs.norm(dim=0, keepdim=True)


def mixture_mean(prior: GaussianMixturePrior) -> torch.Tensor:
    """The mixture's mean, flattened."""
    return (prior.weights[:, None] * prior.means.reshape(prior.num_components, -1)).sum(0)


def exact_problem(prior: GaussianMixturePrior, op, samples: int, instance: int = 1):
    """One x ~ prior and y = A x + σ n (seed ``instance``), its exact posterior, y repeated ``samples`` times,
    ``samples`` reference posterior draws (seed 2) and the operator's subspaces: (y, post, reference, spaces)."""
    g = torch.Generator().manual_seed(instance)
    x_true = prior.sample(1, g)
    y1 = op.A(x_true)
    y1 = y1 + SIGMA * torch.randn(y1.shape, generator=g, dtype=D)
    post = prior.posterior(op, y1, sigma=SIGMA)
    spaces = subspaces(op, tuple(x_true.shape[1:]))
    y = y1.expand(samples, *y1.shape[1:]).contiguous()
    return y, post, post.sample(samples, torch.Generator().manual_seed(2)), spaces


def run(size: int, samples: int, step_list: list[int], method_names: list[str] | None = None,
        all_steps: bool = False, task_names: list[str] | None = None, prior_names: list[str] | None = None
        ) -> list[dict]:
    rows = []
    dirs = probe_directions(size)
    all_methods = methods()
    for pname, prior in priors(size).items():
        if prior_names and pname not in prior_names:
            continue
        prior_mean = mixture_mean(prior)
        for tname, op in tasks(size).items():
            if task_names and tname not in task_names:
                continue
            y, post, reference, spaces = exact_problem(prior, op, samples)
            weak = spaces[0]
            floor = metrics(post.sample(samples, torch.Generator().manual_seed(3)), post, prior_mean, reference, op,
                            y, dirs, *spaces)
            rows.append({"prior": pname, "task": tname, "method": "exact", "steps": 0, **floor, "sec": 0.0,
                         "weak_dim": int(weak.shape[1])})
            for mname in method_names or list(all_methods):
                for n in step_list:
                    if not all_steps and n not in VARIANT_STEPS.get(mname, (n,)):
                        continue
                    gen = torch.Generator().manual_seed(1000 + n)
                    start = time.perf_counter()
                    try:
                        out = all_methods[mname](prior, op, y, n, gen)
                    except FloatingPointError:
                        out = torch.full((samples, *reference.shape[1:]), float("nan"), dtype=D)
                    sec = (time.perf_counter() - start) / samples
                    row = {"prior": pname, "task": tname, "method": mname, "steps": n,
                           **metrics(out, post, prior_mean, reference, op, y, dirs, *spaces), "sec": sec}
                    rows.append(row)
                    print(f"{pname:8s} {tname:15s} {mname:19s} N={n:3d} gap {row['mean_gap']:.3g} "
                          f"var {row['var_ratio']:.3g} (weak {row['var_weak']:.3g}, strong {row['var_strong']:.3g}) "
                          f"cov {row['cov_err']:.3g} sw2 {row['sw2']:.3g} res {row['residual']:.3g} "
                          f"{sec * 1e3:.2f} ms/sample", flush=True)
    return rows


def _fmt(v: float) -> str:
    if v != v:
        return "NaN"
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.1e}"
    return f"{v:.3g}"


def render(rows: list[dict], size: int, samples: int, elapsed: float, command: str = "") -> str:
    out = ["## Posterior fidelity on exact priors (`bench_posterior.py`)", "",
           f"Command: `{('python benchmarks/bench_posterior.py ' + command).strip()}`. "
           f"1×{size}×{size} images, σ = {SIGMA} ([−1, 1] units), {samples} samples per cell for one "
           f"measurement, float64 on CPU (torch {torch.__version__}, threads: {torch.get_num_threads()}, "
           f"shared machine), whole run {elapsed / 60:.1f} min. `exact` = independent exact posterior "
           "draws (the sampling-noise floor). mean gap = ‖x̄ − μ‖/‖μ_prior − μ‖; var ratio = tr Ĉ / tr Σ "
           "(weak / strong: on the subspace where A's singular values are below / above σ, with its dimension "
           "in the heading); "
           "cov err = ‖Ĉ − Σ‖_F/‖Σ‖_F; SW2 = sliced Wasserstein-2 to exact draws; residual = mean "
           "‖A x − y‖/√m; ms/sample = wall time / samples.", ""]
    for pname in dict.fromkeys(r["prior"] for r in rows):
        for tname in dict.fromkeys(r["task"] for r in rows):
            dims = next((r.get("weak_dim") for r in rows if r["task"] == tname), None)
            out += [f"### {pname} prior, {tname} (weak subspace: {dims} of {size * size} dims)", "",
                    "| method | steps | mean gap | var ratio | weak | strong | cov err | SW2 | residual | ms/sample |",
                    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for r in rows:
                if r["prior"] == pname and r["task"] == tname:
                    out.append(f"| {r['method']} | {r['steps'] or '—'} | {_fmt(r['mean_gap'])} | "
                               f"{_fmt(r['var_ratio'])} | {_fmt(r['var_weak'])} | {_fmt(r['var_strong'])} | "
                               f"{_fmt(r['cov_err'])} | {_fmt(r['sw2'])} | "
                               f"{_fmt(r['residual'])} | {r['sec'] * 1e3:.2f} |")
            out.append("")
    return "\n".join(out)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    task_names = list(dict.fromkeys(r["task"] for r in rows))
    names = [m for m in dict.fromkeys(r["method"] for r in rows) if m not in ("exact", "cdps forward")]
    stats = [("mean_gap", "mean gap"), ("var_ratio", "var ratio"), ("sw2", "SW2")]
    fig, axes = plt.subplots(len(stats), len(task_names), figsize=(4 * len(task_names), 3.2 * len(stats)),
                             squeeze=False)
    colors = dict(zip(names, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for j, tname in enumerate(task_names):
        for i, (key, label) in enumerate(stats):
            ax = axes[i][j]
            for pname, style in (("gaussian", "-"), ("gmm", "--")):
                for m in names:
                    pts = [(r["steps"], r[key]) for r in rows
                           if r["task"] == tname and r["prior"] == pname and r["method"] == m
                           and r[key] == r[key] and 0 < r[key] < 1e6]
                    if pts:
                        ax.plot(*zip(*pts), style, marker="o", ms=3, color=colors[m],
                                label=m if pname == "gaussian" else None)
                floor = [r[key] for r in rows if r["task"] == tname and r["prior"] == pname and r["method"] == "exact"]
                if floor:
                    ax.axhline(1.0 if key == "var_ratio" else floor[0], color="k", ls=style, lw=0.8)
            ax.set_xscale("log")
            ax.set_yscale("log")
            steps = sorted({r["steps"] for r in rows if r["steps"]})
            ax.set_xticks(steps, [str(n) for n in steps])
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            ax.set_xlabel("steps")
            ax.set_title(f"{tname}: {label}", fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Posterior fidelity on exact priors (solid: Gaussian, dashed: GMM; black: exact-draw floor, "
                 "or 1 for var ratio; C-DPS forward diverges off these scales: see the tables)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--steps", type=int, nargs="+", default=[20, 50, 100, 250])
    parser.add_argument("--methods", nargs="+", default=None)
    parser.add_argument("--tasks", nargs="+", default=None, choices=list(tasks(16)), metavar="TASK",
                        help=f"a subset of {list(tasks(16))}")
    parser.add_argument("--priors", nargs="+", default=None, help="a subset of gaussian gmm")
    parser.add_argument("--all-steps", action="store_true", help="the C-DPS options at every step count too")
    parser.add_argument("--quick", action="store_true", help="8×8, 64 samples, steps 20 50 (smoke run)")
    parser.add_argument("--merge", nargs="+", type=Path, default=None,
                        help="render the report from these saved *_raw.json parts instead of running")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.samples, args.steps = 8, 64, [20, 50]
    torch.set_num_threads(1)  # a shared CPU: more threads only contend (measured 10-20× slower at 2)
    start = time.perf_counter()
    if args.merge:
        parts = [json.loads(path.read_text()) for path in args.merge]
        rows = list({(r["prior"], r["task"], r["method"], r["steps"]): r
                     for part in parts for r in part["rows"]}.values())  # the exact rows repeat per part
        order = {t: i for i, t in enumerate(tasks(args.size))}
        rows.sort(key=lambda r: (r["prior"] != "gaussian", order.get(r["task"], 99)))  # stable within a task
        args.size, args.samples = parts[0]["size"], parts[0]["samples"]
        elapsed = sum(part["minutes"] for part in parts) * 60
    else:
        rows = run(args.size, args.samples, args.steps, args.methods, args.all_steps, args.tasks, args.priors)
        elapsed = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "posterior" if not args.quick else "posterior_quick"
    command = " ".join(argv if argv is not None else __import__("sys").argv[1:])
    (args.out / f"{stem}.md").write_text(render(rows, args.size, args.samples, elapsed, command) + "\n")
    (args.out / f"{stem}_raw.json").write_text(json.dumps({"size": args.size, "samples": args.samples,
                                                           "sigma": SIGMA, "command": command,
                                                           "minutes": elapsed / 60, "rows": rows}, indent=1))
    plot(rows, args.out / f"{stem}.png")
    print(f"wrote {args.out / stem}.md/.png/_raw.json in {elapsed / 60:.1f} min")


if __name__ == "__main__":
    main()


# ----------------------------------------------------------------------------- pytest-benchmark: cost
# The fidelity run above uses exact priors, whose ε is cheap; the methods' cost with a network is
# dominated by the UNet (and, for DPS only, its backward pass). A small random diffusers UNet shows
# the ratio: ``python -m pytest benchmarks/bench_posterior.py --benchmark-only``.
def _unet_denoiser():
    from diffusers import UNet2DModel

    from diffsolve.models import DiffusersDenoiser

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(32, 64),
                       layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8).eval()
    return DiffusersDenoiser(unet, {"num_train_timesteps": 1000, "beta_schedule": "linear"})


def _cost_cases():
    from diffsolve.solvers import ddim

    return {
        "ddim": lambda d, op, y, g: ddim(d, tuple(y.shape), steps=10, eta=0.5, generator=g),
        "dps": lambda d, op, y, g: dps(d, op, y, steps=10, generator=g),
        "mpgd": lambda d, op, y, g: mpgd(d, op, y, steps=10, generator=g),
        "cdps": lambda d, op, y, g: cdps(d, op, y, steps=10, sigma=SIGMA, generator=g),
    }


def _bench_cost(benchmark, name: str) -> None:
    torch.set_num_threads(1)
    den = _unet_denoiser()
    op = Inpainting.box(32, box=16, margin=4, seed=0)
    y = op.A(torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    fn = _cost_cases()[name]
    benchmark.group = "solvers: 10 steps, random UNet 3x32x32 (32/64 ch), batch 4, box inpainting, CPU 1 thread"
    benchmark.extra_info["baseline"] = name == "ddim"
    benchmark.pedantic(lambda: fn(den, op, y, torch.Generator().manual_seed(1)), rounds=3, iterations=1,
                       warmup_rounds=1)


def test_cost_ddim(benchmark):
    _bench_cost(benchmark, "ddim")


def test_cost_dps(benchmark):
    _bench_cost(benchmark, "dps")


def test_cost_mpgd(benchmark):
    _bench_cost(benchmark, "mpgd")


def test_cost_cdps(benchmark):
    _bench_cost(benchmark, "cdps")
