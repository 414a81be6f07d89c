"""How far a sample's result moves with its batch on a float32 model (a report, not a test).

    python benchmarks/bench_batch_rounding.py [--steps 8 30] [--size 44x68]

With a list of generators a sample's randomness is its own (``tests/test_methods_contract.py``: every method
matches alone and in a batch to 1e-10 in float64). What still differs is the network's own rounding: a float32
model's output for one sample moves by ~1e-6 with the batch size (its kernels block the batch differently), and a
method's dynamics can grow that. Per method and task: sample 1 of a batch of 2 against the same sample alone,
the same generator, at its defaults given σ = 0.05 (``hopper``, resized to a non-square size and its mirror image,
the ``patches`` model behind ``PaddedDenoiser``): the largest difference (in [-1, 1] units) and how many pixels
differ by more than 1e-3. ``--float64`` runs the model in float64 too (the rounding then starts at ~1e-16).
Writes ``results/batch-rounding.{md,json}``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_dps import write_results  # noqa: E402
from bench_methods import SIGMA, inverse_methods, machine  # noqa: E402

import diffsolve  # noqa: E402
from diffsolve.methods import METHODS  # noqa: E402

TASKS = ("gaussian_blur", "motion_blur", "box", "random", "sr4", "denoise")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[8, 30])
    parser.add_argument("--size", default="44x68", help="H x W")
    parser.add_argument("--methods", nargs="+", default=inverse_methods())
    parser.add_argument("--float64", action="store_true")
    args = parser.parse_args()
    from diffsolve.data import photo
    from diffsolve.models import PaddedDenoiser, load_default
    from diffsolve.tasks import make_operator

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # DPS's few-steps warning at 8 steps; the differences are the subject here
    dtype = torch.float64 if args.float64 else torch.float32
    base = load_default("patches")
    if args.float64:
        base.unet.double()
    model = PaddedDenoiser(base)
    h, w = (int(s) for s in args.size.split("x"))
    x = torch.nn.functional.interpolate(photo("hopper", size=64)[None], size=(h, w), mode="bilinear").clamp(-1, 1)
    x = torch.cat([x, x.flip(-1)]).to(dtype)
    rows, start = [], time.perf_counter()
    for task in TASKS:
        op = make_operator(task, (h, w), seed=0)
        ax = op.A(x)
        y = ax + SIGMA * torch.randn(ax.shape, generator=torch.Generator().manual_seed(0), dtype=dtype)
        for name in args.methods:
            if METHODS[name].unsupported(op, (h, w), SIGMA):
                continue
            row = {"task": task, "method": name}
            for n in args.steps:
                with torch.enable_grad() if METHODS[name].backward else torch.no_grad():
                    both = diffsolve.solve(name, model, op, y, sigma=SIGMA, steps=n,
                                           generator=[torch.Generator().manual_seed(i) for i in range(2)]).detach()
                    alone = diffsolve.solve(name, model, op, y[1:], sigma=SIGMA, steps=n,
                                            generator=[torch.Generator().manual_seed(1)]).detach()
                d = (both[1:] - alone).abs()
                row[str(n)] = (float(d.max()), int((d > 1e-3).sum()))
            rows.append(row)
            print(row, flush=True)
    seconds = time.perf_counter() - start
    n_pix = x[0].numel()
    lines = ["# A sample alone and in a batch of two: the model's rounding, grown by each method", "",
             f"`python benchmarks/bench_batch_rounding.py --steps {' '.join(map(str, args.steps))} --size {args.size}"
             f"{' --float64' if args.float64 else ''}` ({machine()}, {seconds:.0f} s). Model in "
             f"{str(dtype).removeprefix('torch.')}; σ = {SIGMA}; every method at its defaults. Cell: largest "
             f"|x̂_batch − x̂_alone| ([-1, 1] units) / pixels above 1e-3 (of {n_pix}).", "",
             "| task | method | " + " | ".join(f"N = {n}" for n in args.steps) + " |",
             "|---|---|" + "---|" * len(args.steps)]
    for r in rows:
        lines.append(f"| {r['task']} | {r['method']} | "
                     + " | ".join(f"{r[str(n)][0]:.1e} / {r[str(n)][1]}" for n in args.steps) + " |")
    name = "batch-rounding" + ("-float64" if args.float64 else "")
    write_results(name, {"machine": machine(), "args": vars(args), "rows": rows}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
