"""DDNM+'s reverse step: the DDPM posterior of the paper's text against the step of the authors' code (a report,
not a test).

    OMP_NUM_THREADS=1 python benchmarks/bench_ddnm_sampler.py [--sizes 64] [--steps 20 50 100]
                                                             [--images hopper camera] [--tasks ...]

The paper (Wang, Yu & Zhang 2023, eqs. 17-19) writes DDNM+'s step as the DDPM posterior p(x_s | x_t, x̂0') with
per-coefficient λ and γ; its code (github.com/wyhuai/DDNM, ``functions/svd_ddnm.py``) re-noises x̂0' instead,
x̄_s = √ᾱ_s x̄0' + d z̄ + c ê with η = 0.85 ("different from the paper, we use DDIM here instead of DDPM"). diffsolve's
``ddnm`` runs the code's step (``solvers/ddnm.py``). ``posterior`` below is the paper's text as diffsolve ran it
until 2026-12-06: η = 1, coefficients with s_i ≤ 2σ treated as unobserved (without that threshold the posterior
form lets the same measurement noise add up over the steps), a readable loop on the operator's full SVD.

Held-out photos (``diffsolve.data.HELDOUT``), σ = 0.05, the ``patches`` model, the same x_T and generator for
both; cell: mean PSNR dB / data consistency ‖A x̂ − y‖/(σ√m); Tikhonov (λ picked by PSNR, an oracle) as the
reference. Writes ``results/ddnm-sampler.{md,json}``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _paired import add_photo_args, paired, run_variants  # noqa: E402
from bench_dps import write_results  # noqa: E402
from bench_methods import SIGMA, machine  # noqa: E402

import diffsolve  # noqa: E402
from diffsolve.operators.svd import operator_svd  # noqa: E402
from diffsolve.solvers._loop import select_schedule  # noqa: E402

TASKS = ("random", "box", "gaussian_blur", "sr4")


def posterior_ddnm_plus(model, op, y: torch.Tensor, x_T: torch.Tensor, steps: int, generator, sigma: float,
                        threshold: float = 2.0) -> torch.Tensor:
    """DDNM+ with the DDPM posterior step (η = 1) per singular value, s_i ≤ threshold·σ unobserved:
    λ_i = min(1, σ_t/(w σ/s_i)), γ_i = σ_t² − (w λ_i σ/s_i)² (w: the posterior's weight of x̂0'),
    x̂0' = x̂0 − V(λ/s ⊙ (S Vᵀx̂0 − Uᵀy)), x_s = √ᾱ_s x̂0' + k ε̂' + V(√γ ⊙ Vᵀz)."""
    svd = operator_svd(op, tuple(x_T.shape[-2:]), "ddnm")
    s = svd.singulars(y)
    seen = s > threshold * sigma
    inv = torch.where(seen, 1 / torch.where(seen, s, 1.0), 0.0)
    y_bar = svd.Ut(y)
    sched = select_schedule(model, steps, "trailing")
    x = x_T
    with torch.no_grad():
        for i, (a_t, a_s) in enumerate(zip(sched.alpha_t.tolist(), sched.alpha_s.tolist())):
            var = (1 - a_s) / (1 - a_t) * max(1 - a_t / a_s, 0.0)
            k = math.sqrt(max(1 - a_s - var, 0.0))
            w = math.sqrt(a_s) - k * math.sqrt(a_t / (1 - a_t))
            carried = w * sigma * inv
            lam = torch.where(seen, (math.sqrt(var) / torch.where(seen, carried, 1.0)).clamp(max=1.0), 0.0)
            gamma = torch.where(seen, (var - (lam * carried) ** 2).clamp_min(0.0), var)
            eps = model(x, sched.timesteps[i].expand(x.shape[0]))
            x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
            x0p = x0 - svd.V(lam * inv * (s * svd.Vt(x0) - y_bar))
            eps_p = (x - math.sqrt(a_t) * x0p) / math.sqrt(1 - a_t)
            x = math.sqrt(a_s) * x0p + k * eps_p
            if var > 0:
                z = torch.cat([torch.randn((1, *x.shape[1:]), generator=g, dtype=x.dtype) for g in generator])
                x = x + svd.V(gamma.sqrt() * svd.Vt(z))
    return x


def run(sizes: list[int], step_list: list[int], images: list[str], task_names: list[str]) -> list[dict]:
    def start(x: torch.Tensor, n: int) -> torch.Tensor:  # the same x_T for both variants
        return torch.randn(x.shape, generator=torch.Generator().manual_seed(x.shape[-1] + n))

    return run_variants(sizes, step_list, images, task_names, {
        "posterior": lambda model, op, y, x, n, gens: posterior_ddnm_plus(model, op, y, start(x, n), n, gens, SIGMA),
        "code": lambda model, op, y, x, n, gens: diffsolve.solve("ddnm", model, op, y, steps=n, sigma=SIGMA,
                                                                 x_T=start(x, n), generator=gens)}, SIGMA)


def render(res: dict) -> str:
    lines = ["# DDNM+'s reverse step: the paper's DDPM posterior against its code's step "
             "(benchmarks/bench_ddnm_sampler.py)", "",
             f"`python benchmarks/bench_ddnm_sampler.py` — {res['machine']}. Held-out photos "
             f"{', '.join(res['images'])}, σ = 0.05, `patches` model, the same x_T and generators for both. "
             "Cell: mean PSNR dB / data consistency "
             "‖A x̂ − y‖/(σ√m). posterior: the paper's text (η = 1, s_i ≤ 2σ unobserved; diffsolve's default until "
             "2026-12-06); code: the authors' code's step, η = 0.85 (diffsolve's `ddnm` now).", "",
             "| size | task | Tikhonov | N | posterior | code | code − posterior (dB) |",
             "|---|---|---|---|---|---|---|"]
    for size, task, tik, n, p, c in paired(res["rows"], "posterior", "code"):
        lines.append(f"| {size}² | {task} | {tik['psnr']:.2f} / {tik['dc']:.2f} | {n} | {p['psnr']:.2f} / "
                     f"{p['dc']:.2f} | {c['psnr']:.2f} / {c['dc']:.2f} | {c['psnr'] - p['psnr']:+.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_photo_args(parser, TASKS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = run(args.sizes, args.steps, args.images, args.tasks)
    res = {"machine": machine(), "images": args.images, "rows": rows}
    write_results("ddnm-sampler", res, render(res))


if __name__ == "__main__":
    main()
