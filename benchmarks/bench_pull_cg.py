"""The closing discrepancy pull's CG where A has no exact solve: variants applied to the same pre-pull results.

    python benchmarks/bench_pull_cg.py                                 # writes results/pull-cg.{md,json}
    python benchmarks/bench_pull_cg.py --size 128 --images hopper camera --sigmas 0.001 0.05 --no-kernels --tag _128
    python benchmarks/bench_pull_cg.py --cost                          # writes results/pull-cg_cost.{md,json}

Each method runs once per problem at its defaults given σ (one draw per photo, generator i); the result it hands to
``_inverse.discrepancy_pull`` (and that call's v) is kept, and each variant of the pull's CG is applied to that same
result, so a column differs from another only by the pull. Variants: ten iterations preconditioned by the blur's
circulant version (the default before), ten and thirty plain iterations, plain CG to a relative residual of 1e-3
(the default, ``_inverse.PULL_CG_TOL``, at most ``PULL_CG_ITERS``) and 1e-4. Problems: the task's motion blur (reflect
boundary) at each σ of ``--sigmas``, and the unnormalised kernels of ``bench_pull_rounds.py`` at σ = 0.05 (none with
``--no-kernels``). Writes ``results/pull-cg{tag}.{md,json}``.

``--cost``: the pull's seconds for each variant on ``bench_method_cost.py``'s problems (4×3×256², a 61-tap reflect
motion blur, a Gaussian blur, box inpainting, SR ×4; from x = 0, so every sample misfits y and every round runs; two
threads, best of three), the figure that benchmark reports under its tables.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_dps import write_results  # noqa: E402
from bench_methods import inverse_methods, machine  # noqa: E402
from bench_pull_rounds import operators  # noqa: E402

import diffsolve  # noqa: E402
from diffsolve.methods import METHODS  # noqa: E402
from diffsolve.solvers import _inverse  # noqa: E402

#: column label → the pull's CG: (iterations at most, preconditioned, relative tolerance; None: the dtype's default)
VARIANTS = {"preconditioned, 10 (before)": (10, True, None), "plain, 10": (10, False, None),
            "plain, 30": (30, False, None),
            f"plain to {_inverse.PULL_CG_TOL:g} (default)": (_inverse.PULL_CG_ITERS, False, _inverse.PULL_CG_TOL),
            "plain to 1e-4": (_inverse.PULL_CG_ITERS, False, 1e-4)}
KERNEL_SIGMA = 0.05


def pulled(inputs: tuple, variant: tuple) -> tuple[torch.Tensor, float]:
    """(the pull of ``inputs`` = (operator, x, y, σ, v) with its CG set to ``variant``, seconds)."""
    iters, precondition, tol = variant
    real = _inverse.solver_of

    def solver_of(operator, max_iters=None, **_options):
        return real(operator, iters, precondition=precondition, tol=tol, check_every=None if tol is None else 10)

    _inverse.solver_of = solver_of
    try:
        tic = time.perf_counter()
        out = _inverse.discrepancy_pull(*inputs)
        return out, time.perf_counter() - tic
    finally:
        _inverse.solver_of = real


def pre_pull(method: str, model, op, y: torch.Tensor, sigma: float, steps: int) -> tuple | None:
    """(operator, x, y, σ, v) that ``method``'s run hands its closing pull (None where it calls none)."""
    seen: list[tuple] = []
    # DDNM+ pulls inside DDRM's spectral loop
    module = importlib.import_module(f"diffsolve.solvers.{'ddrm' if method == 'ddnm' else method}")
    real = module.discrepancy_pull

    def capture(*args):
        seen.append(tuple(a.clone() if torch.is_tensor(a) else a for a in args))
        return real(*args)

    module.discrepancy_pull = capture
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.enable_grad() if method == "dps" else torch.no_grad():
                diffsolve.solve(method, model, op, y, sigma=sigma, steps=steps,
                                generator=[torch.Generator().manual_seed(i) for i in range(y.shape[0])])
    finally:
        module.discrepancy_pull = real
    return seen[0] if seen else None


def cost(repeat: int = 3) -> None:
    """``--cost`` (module docstring): writes ``results/pull-cg_cost.{md,json}``."""
    import bench_method_cost

    torch.set_num_threads(2)
    rows, start = [], time.perf_counter()
    for name in ("motion", "gaussian", "inpaint", "sr4"):
        shape, op, y, _ = bench_method_cost._problem(name, 4, 256)
        inputs = (op, torch.zeros(shape), y, bench_method_cost.SIGMA, 0.01)
        row = {"operator": name}
        for label, variant in VARIANTS.items():
            row[label] = min(pulled(inputs, variant)[1] for _ in range(repeat))
        rows.append(row)
        print(row, flush=True)
    labels = list(VARIANTS)
    lines = ["# The closing discrepancy pull's cost with each CG variant", "",
             f"`python benchmarks/bench_pull_cg.py --cost` ({machine()}, {time.perf_counter() - start:.0f} s). "
             "bench_method_cost.py's problems (4×3×256², σ = "
             f"{bench_method_cost.SIGMA:g}, v = 0.01), the pull from x = 0 (every sample misfits y, every round runs), "
             f"two threads, best of {repeat}. Only the motion blur (reflect boundary) runs CG; the others solve "
             "exactly, so their columns differ by timing noise only. Cell: ms.", "",
             f"| operator | {' | '.join(labels)} |", "|---|" + "---|" * len(labels)]
    lines += [f"| {r['operator']} | " + " | ".join(f"{1e3 * r[k]:.0f}" for k in labels) + " |" for r in rows]
    write_results("pull-cg_cost", {"machine": machine(), "repeat": repeat, "rows": rows}, "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--images", nargs="+", default=["hopper", "camera", "grass", "raccoon"])
    parser.add_argument("--methods", nargs="+", default=inverse_methods())
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.001, 0.003, 0.01, 0.05])
    parser.add_argument("--no-kernels", dest="kernels", action="store_false")
    parser.add_argument("--tag", default="")
    parser.add_argument("--cost", action="store_true", help="time the pull's variants instead (module docstring)")
    args = parser.parse_args()
    if args.cost:
        return cost()
    from diffsolve.data import photo
    from diffsolve.metrics import data_consistency, scores
    from diffsolve.models import PaddedDenoiser, load_default

    torch.set_num_threads(1)
    model = PaddedDenoiser(load_default("patches"))
    x = torch.stack([photo(name, size=args.size) for name in args.images])
    ops = operators(args.size, motion=True)
    problems = [("task motion blur", s) for s in args.sigmas]
    problems += [(name, KERNEL_SIGMA) for name in ops if name != "task motion blur"] if args.kernels else []
    rows, start = [], time.perf_counter()
    for op_name, sigma in problems:
        op = ops[op_name]
        ax = op.A(x)
        y = ax + sigma * torch.randn(ax.shape, generator=torch.Generator().manual_seed(3))
        for method in args.methods:
            if METHODS[method].unsupported(op, (args.size, args.size), sigma):
                continue
            inputs = pre_pull(method, model, op, y, sigma, args.steps)
            if inputs is None:
                continue
            row = {"operator": op_name, "sigma": sigma, "method": method,
                   "before_pull": float(data_consistency(op, inputs[1], y, sigma).max())}
            for label, variant in VARIANTS.items():
                out, sec = pulled(inputs, variant)
                row[label] = (float(scores(out, x)["psnr"].mean()), float(data_consistency(op, out, y, sigma).max()),
                              sec)
            rows.append(row)
            print(row, flush=True)
    seconds = time.perf_counter() - start
    labels = list(VARIANTS)
    default = labels[3]
    lines = ["# The closing discrepancy pull's CG on blurs without an exact solve", "",
             f"`python benchmarks/bench_pull_cg.py --size {args.size} --steps {args.steps} --images "
             f"{' '.join(args.images)} --sigmas {' '.join(f'{s:g}' for s in args.sigmas)}"
             f"{'' if args.methods == inverse_methods() else ' --methods ' + ' '.join(args.methods)}"
             f"{'' if args.kernels else ' --no-kernels'}{f' --tag {args.tag}' if args.tag else ''}` ({machine()}, "
             f"{seconds:.0f} s). Each method at its defaults given σ, {args.steps} steps, one draw per photo; every "
             "variant pulls the same pre-pull result (the method's own run, captured), so columns differ only by the "
             "pull's CG. The motion blur is the task's (reflect boundary)"
             + (f"; the other kernels are bench_pull_rounds.py's unnormalised ones at σ = {KERNEL_SIGMA:g}."
                if args.kernels else "."), "",
             "Cell: mean PSNR dB / worst data consistency ‖A x̂ − y‖/(σ√m) / seconds of the pull for the batch "
             f"({len(args.images)} images). 'in': worst consistency handed to the pull.", "",
             f"| operator | σ | method | in | {' | '.join(labels)} | Δ default − before |",
             "|---|---|---|---|" + "---|" * len(labels) + "---|"]
    for r in rows:
        cells = " | ".join(f"{r[k][0]:.2f} / {r[k][1]:.2f} / {r[k][2]:.2f}" for k in labels)
        lines.append(f"| {r['operator']} | {r['sigma']:g} | {r['method']} | {r['before_pull']:.2f} | {cells} | "
                     f"{r[default][0] - r[labels[0]][0]:+.2f} |")
    write_results(f"pull-cg{args.tag}", {"machine": machine(), "args": vars(args), "rows": rows},
                  "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
