"""One draw against the mean of K: is a method's PSNR gap to Tikhonov bias, or the spread every posterior sample
must have? (a report, not a test)

    python benchmarks/bench_draw_spread.py [--task box] [--sizes 64 128] [--images hopper camera] [--draws 8]
                                           [--methods mpgd cdps dps] [--steps 30] [--out box-spread]

For one y per photo (``bench_methods.measure``, σ = 0.05, the seed tables' images and noise), each method at its
defaults draws ``--draws`` samples (generator seeds 0…K−1). Reported, mean over the images:

- PSNR of draw 0 (the seed tables' cell) and the mean PSNR over the K draws ± its standard deviation across draws;
- PSNR of the K-draw average x̄_K (an estimate of the posterior mean the method samples from);
- box inpainting: the same three inside the hole only (the pixels the box hides), and on the observed pixels;
- the spread: mean over the hole's pixels (every pixel for the other tasks) of the K draws' variance, against
  the MSE of x̄_K there.

Why: for an exact posterior sampler, a draw x_s and the truth x are independent given y, so
E‖x_s − x‖² = E‖x_s − μ‖² + E‖μ − x‖² = 2 tr Σ_post, twice the MSE of the posterior mean μ — 3 dB in the hole
when the observed pixels say little about it (SR ×4: in the detail the low-resolution image does not fix).
Tikhonov (λ picked by PSNR against the truth) is a mean-type estimate. A draw that misses Tikhonov − 0.5 dB while
x̄_K passes it is missing by its spread, not by a bias. Writes ``results/<--out>.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_methods import RESULTS, SIGMA, machine, measure  # noqa: E402

from diffsolve.data import photo  # noqa: E402
from diffsolve.methods import restore  # noqa: E402
from diffsolve.metrics import colour_cast  # noqa: E402
from diffsolve.models import load_default  # noqa: E402
from diffsolve.tasks import make_operator  # noqa: E402


def _psnr(x: torch.Tensor, x_true: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (B,) over the pixels ``where`` (1, 1, H, W) bool, images in [−1, 1] mapped to [0, 1]."""
    err = ((x.clamp(-1, 1) - x_true) / 2) ** 2
    w = where.expand_as(err).to(err.dtype)
    mse = (err * w).flatten(1).sum(1) / w.flatten(1).sum(1)
    return -10 * torch.log10(mse)


_cast = colour_cast  # per-image colour cast (B,): the worst per-channel mean shift in [0, 1] units


def run(task: str, sizes: list[int], images: list[str], methods: list[str], draws: int, steps: int) -> list[dict]:
    model = load_default("patches")
    rows = []
    for size in sizes:
        x = torch.stack([photo(name, size=size) for name in images])
        op = make_operator(task, (size, size))
        y = measure(op, x, seed=size)
        everywhere = torch.ones(1, 1, size, size, dtype=torch.bool)
        box = task == "box"
        hole = op.mask.reshape(1, 1, size, size) == 0 if box else everywhere  # where the spread is measured

        def observed(v: torch.Tensor) -> float | None:
            return float(_psnr(v, x, ~hole).mean()) if box else None

        tik, _ = restore("tikhonov", model, op, y, steps=1, sigma=SIGMA, x_true=x)
        base = {"size": size, "images": images}
        rows.append({**base, "method": "tikhonov", "psnr": float(_psnr(tik, x, everywhere).mean()),
                     "psnr_hole": float(_psnr(tik, x, hole).mean()), "psnr_observed": observed(tik)})
        print(rows[-1], flush=True)
        for name in methods:
            start = time.perf_counter()
            outs = []
            for k in range(draws):
                xr, _ = restore(name, model, op, y, steps=steps, sigma=SIGMA,
                                generator=[torch.Generator().manual_seed(k + 1000 * i) if k else
                                           torch.Generator().manual_seed(i) for i in range(len(images))])
                outs.append(xr.clamp(-1, 1))
            stack = torch.stack(outs)  # (K, B, C, H, W)
            mean = stack.mean(0)
            per_draw = torch.stack([_psnr(o, x, everywhere) for o in outs])  # (K, B)
            per_draw_hole = torch.stack([_psnr(o, x, hole) for o in outs])
            spread = (stack.var(0, unbiased=True) / 4 * hole).flatten(1).sum(1) / (hole.sum() * x.shape[1])  # [0,1]²
            mse_mean_hole = (((mean - x) / 2) ** 2 * hole).flatten(1).sum(1) / (hole.sum() * x.shape[1])
            rows.append({**base, "method": name, "steps": steps, "draws": draws,
                         "psnr_draw0": float(per_draw[0].mean()), "psnr_draws": float(per_draw.mean()),
                         "psnr_draws_std": float(per_draw.mean(1).std()),
                         "psnr_average": float(_psnr(mean, x, everywhere).mean()),
                         "psnr_hole_draw0": float(per_draw_hole[0].mean()),
                         "psnr_hole_draws": float(per_draw_hole.mean()),
                         "psnr_hole_average": float(_psnr(mean, x, hole).mean()),
                         "psnr_observed_draws": (sum(observed(o) for o in outs) / draws) if box else None,
                         "cast_draws": float(torch.stack([_cast(o, x) for o in outs]).mean()),
                         "cast_average": float(_cast(mean, x).mean()),
                         "hole_spread": float(spread.mean()), "hole_mse_average": float(mse_mean_hole.mean()),
                         "sec": (time.perf_counter() - start) / draws / len(images)})
            print(rows[-1], flush=True)
    return rows


TITLES = {"box": "Box inpainting", "sr4": "SR ×4", "random": "Random inpainting", "gaussian_blur": "Gaussian blur",
          "motion_blur": "Motion blur"}


def render(rows: list[dict], args, elapsed: float, where_run: str | None = None) -> str:
    task = getattr(args, "task", "box")  # results saved before --task existed are box runs
    box = task == "box"
    region = "hole" if box else "image"
    out = [f"# {TITLES.get(task, task)}: a draw's spread against the bar (benchmarks/bench_draw_spread.py)", "",
           f"`python benchmarks/bench_draw_spread.py --task {task} --sizes {' '.join(map(str, args.sizes))} --images "
           f"{' '.join(args.images)} --draws {args.draws} --methods {' '.join(args.methods)} --steps {args.steps}"
           f"{'' if getattr(args, 'out', 'box-spread') == 'box-spread' else ' --out ' + args.out}"
           f"{' --merge' if getattr(args, 'merge', False) else ''}` "
           f"({where_run or machine()}, {elapsed / 60:.0f} min). Held-out photos {', '.join(args.images)}, "
           f"the demo's {task} task, σ = {SIGMA}, the `patches` model, one y per photo, each method at its defaults, "
           f"K = {args.draws} draws. PSNR in dB, mean over the images; bar = Tikhonov − 0.5 dB (Tikhonov's λ picked "
           "by PSNR against the truth).", "",
           "| size | method | PSNR draw 0 | mean over draws | K-draw average | bar | "
           + ("hole: draw 0 / draws / average | observed (draws) | " if box else "")
           + f"{region} spread / average's MSE | cast: draws / average |",
           "|---|---|---|---|---|---|" + ("---|---|" if box else "") + "---|---|"]
    for size in dict.fromkeys(r["size"] for r in rows):
        tik = next(r for r in rows if r["size"] == size and r["method"] == "tikhonov")
        bar = tik["psnr"] - 0.5
        out.append(f"| {size}² | tikhonov | {tik['psnr']:.2f} | | | | "
                   + (f"{tik['psnr_hole']:.2f} | {tik['psnr_observed']:.2f} | " if box else "") + "| |")
        for r in rows:
            if r["size"] != size or r["method"] == "tikhonov":
                continue
            mark = (lambda v: f"**{v:.2f}**" if v >= bar else f"{v:.2f}")
            out.append(f"| {size}² | {r['method']} | {mark(r['psnr_draw0'])} | {mark(r['psnr_draws'])}"
                       + (f" ± {r['psnr_draws_std']:.2f}" if "psnr_draws_std" in r else "") + " | "
                       f"{mark(r['psnr_average'])} | {bar:.2f} | "
                       + (f"{r['psnr_hole_draw0']:.2f} / {r['psnr_hole_draws']:.2f} / {r['psnr_hole_average']:.2f} | "
                          f"{r['psnr_observed_draws']:.2f} | " if box else "")
                       + f"{r['hole_spread']:.4f} / {r['hole_mse_average']:.4f} | "
                       + (f"{r['cast_draws']:.3f} / {r['cast_average']:.3f} |" if "cast_draws" in r else "— |"))
    where = "inside the hole" if box else "over the image"
    out += ["", f"**Bold**: at or above the bar. Spread: mean per-pixel variance of the K draws {where} "
            "([0, 1] units²); for an exact sampler it equals the posterior-mean MSE, and a draw's MSE is their sum.", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", default="box", help="a demo task (diffsolve.tasks.DEMO_TASKS)")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    p.add_argument("--images", nargs="+", default=["hopper", "camera"])
    p.add_argument("--methods", nargs="+", default=["mpgd", "cdps", "dps"])
    p.add_argument("--draws", type=int, default=8)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--out", default="box-spread")
    p.add_argument("--render", action="store_true", help="rewrite the .md from the --out .json (no run)")
    p.add_argument("--merge", action="store_true", help="replace only the rerun methods' rows in the --out .json")
    args = p.parse_args(argv)
    if args.render:
        saved = json.loads((RESULTS / f"{args.out}.json").read_text())
        args = argparse.Namespace(**{"task": "box", **saved["args"], "out": args.out})
        if "machine" not in saved:
            raise SystemExit(f"{args.out}.json predates the saved machine line; --render would stamp today's")
        (RESULTS / f"{args.out}.md").write_text(render(saved["rows"], args, saved.get("elapsed", 0.0), saved["machine"]))
        return
    torch.set_num_threads(int(__import__("os").environ.get("OMP_NUM_THREADS", "1")))
    start = time.perf_counter()
    rows = run(args.task, args.sizes, args.images, args.methods, args.draws, args.steps)
    elapsed = time.perf_counter() - start
    path = RESULTS / f"{args.out}.json"
    if args.merge and path.exists():  # the other methods' rows (and the methods' order) from the previous run
        saved = json.loads(path.read_text())
        fresh = {(r["size"], r["method"]): r for r in rows}
        rows = [fresh.pop((r["size"], r["method"]), r) for r in saved["rows"]] + list(fresh.values())
        args.methods = saved["args"]["methods"]
    (RESULTS / f"{args.out}.json").write_text(json.dumps({"args": vars(args), "machine": machine(), "rows": rows,
                                                          "elapsed": elapsed}, indent=1))
    (RESULTS / f"{args.out}.md").write_text(render(rows, args, elapsed))
    print(render(rows, args, elapsed))


if __name__ == "__main__":
    main()
