"""Speed against the public implementations (azula, deepinv): the same method, model, problem and number of model
calls, timed in one run (a report, not a test).

    pip install --no-deps azula deepinv einops     # beside diffsolve (their torchvision is a CUDA build)
    OMP_NUM_THREADS=1 python benchmarks/bench_peers.py [--size 128] [--batch 4] [--steps 20] [--repeat 3]
                                                       [--models cheap patches] [--out peers-cpu]

Problem: ``--batch`` bundled photos at ``--size``², float32, σ = 0.05 on the model's [−1, 1] scale, random
inpainting (70 % of the pixels missing, ``Inpainting.random``) and, for MMPS, a 9×9 Gaussian blur (std 2, reflect),
diffsolve's operator on its torch backend for both sides (azula differentiates A with ``torch.func``, which the C++
and Triton kernels do not support), so both apply the same A. Each library is driven by ``_peers.py``'s adapters on
diffsolve's step table, as ``agreement.py`` checks them (there at 8×8 in float64, here the output difference is
reported again where both sides are deterministic and take the same steps). Two models:

- ``cheap``: ε̂ = 0.1·tanh x (pointwise, differentiable): the solvers' own work dominates;
- ``patches``: the shipped UNet, where the model's forward and backward dominate.

Per row: each side's seconds for the whole solve (best of ``--repeat``, the two sides interleaved, one warm-up
each), its model calls (NFE), and peer/diffsolve per NFE. diffsolve runs at its default backend (``auto``: the
C++ step kernels on a CPU). Writes ``results/<--out>.{md,json}``: ``peers-cpu`` (the cheap model, 128²),
``peers-cpu-256`` (``--models cheap --size 256``) and ``peers-cpu-unet`` (``--models patches --size 64``).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _peers import azula_denoiser, deepinv_denoiser, import_deepinv  # noqa: E402
from bench_dps import _cheap_model, write_results  # noqa: E402
from bench_methods import machine  # noqa: E402

import diffsolve  # noqa: E402
from diffsolve.data import PHOTOS, HELDOUT, photo  # noqa: E402
from diffsolve.models import load_default  # noqa: E402
from diffsolve.operators import GaussianBlur, Inpainting  # noqa: E402
from diffsolve.solvers._loop import select_schedule  # noqa: E402

SIGMA = 0.05
DT = torch.float32


def problem(size: int, batch: int) -> dict:
    names = PHOTOS + HELDOUT
    x = torch.stack([photo(names[i % len(names)], size) for i in range(batch)])
    g = torch.Generator().manual_seed(0)
    mask_op = Inpainting.random(size, missing=0.7, seed=0)
    mask = mask_op.mask.to(DT).expand(1, 3, size, size)
    y_mask = mask_op.A(x) + SIGMA * mask * torch.randn(x.shape, generator=g)
    blur = GaussianBlur(kernel_size=9, std=2.0, backend="torch")
    y_blur = blur.A(x) + SIGMA * torch.randn(x.shape, generator=g)
    x_T = torch.randn(x.shape, generator=g)
    return dict(x=x, mask_op=mask_op, mask=mask, y_mask=y_mask, blur=blur, y_blur=y_blur, x_T=x_T,
                idx=mask[0].flatten().nonzero().flatten())


#: the two models, built only when asked for (``--models``)
MODELS = {"cheap": _cheap_model, "patches": lambda: load_default("patches")}
LABELS = {"cheap": "cheap ε (ε̂ = 0.1·tanh x): the solvers' own work",
          "patches": "the shipped `patches` UNet: the model's work"}


def rows_for(model, p: dict, steps: int) -> list[dict]:
    """(peer, method, setting, peer callable, diffsolve callable, NFE each, comparable) per row."""
    from azula.guidance import DiffPIRDenoiser, DPSSampler, MMPSDenoiser, PGDMSampler
    from azula.linalg.covariance import IsotropicCovariance
    from azula.sample import DDIMSampler

    dinv = import_deepinv()
    from deepinv.sampling import DDRM, DiffPIR

    sched = select_schedule(model, steps)
    ts, abar = sched.timesteps.tolist(), sched.alpha_t.tolist() + [float(sched.alpha_s[-1])]
    shape = p["x"].shape
    img = azula_denoiser(model, ts, abar, shape[1:], dtype=DT)
    flat = azula_denoiser(model, ts, abar, shape[1:], dtype=DT, flat=True)
    samp = dict(start=0.0, stop=float(steps), steps=steps, silent=True, dtype=DT)
    mask, idx, blur = p["mask"], p["idx"], p["blur"]
    y, yb = p["y_mask"], p["y_blur"]
    x_T = p["x_T"]
    cov = IsotropicCovariance(torch.tensor(SIGMA**2, dtype=DT))

    def a_img(x):
        return x * mask

    def a_vec(x):  # observed entries as (B, m): azula's CG / GMRES take inner products over the last dim
        return x.flatten(1)[:, idx]

    def a_blur(x):
        return blur.A(x.view(shape)).flatten(1)

    def ds(method: str, op, yy, **kw) -> Callable[[], torch.Tensor]:
        if method != "ddim":  # the paper's result, as the peers compute it (not held to the noise level)
            kw.setdefault("discrepancy", False)

        def run():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return diffsolve.solve(method, model, op, yy, steps=steps, x_T=x_T.clone(),
                                       generator=torch.Generator().manual_seed(1), **kw)
        return run

    def flat_out(fn):
        return lambda: fn().view(shape)

    d = math.prod(shape[1:])
    zeta_azula = 0.5
    rows = [
        ("azula", "ddim", "η = 0 (the loop alone)", lambda: DDIMSampler(img, eta=0.0, **samp)(x_T.clone()),
         ds("ddim", None, None, shape=tuple(shape), eta=0.0), True),
        ("azula", "pigdm", "σ = 0 (azula's ΠGDM is noiseless: A⁺ guidance), η = 0, mask",
         lambda: PGDMSampler(img, y, a_img, a_img, eta=0.0, **samp)(x_T.clone()),
         ds("pigdm", p["mask_op"], y, sigma=0.0, eta=0.0), True),
        ("azula", "dps", f"ζ = {zeta_azula} (azula's: one norm over the batch), η = 1, mask",
         lambda: DPSSampler(img, y, a_img, zeta=zeta_azula, **samp)(x_T.clone()),
         ds("dps", p["mask_op"], y, zeta=zeta_azula / math.sqrt(d / 3 / 64 / 64), eta=1.0, step_rule="constant",
            normalize="residual"), False),
        ("azula", "mmps", "CG × 1, η = 0, mask",
         flat_out(lambda: DDIMSampler(MMPSDenoiser(flat, a_vec(y), a_vec, cov, solver="cg", iterations=1),
                                      eta=0.0, **samp)(x_T.flatten(1).clone())),
         ds("mmps", p["mask_op"], y, sigma=SIGMA, solver="cg", iters=1, eta=0.0), True),
        ("azula", "mmps", "GMRES × 4 (diffsolve's default), η = 0, Gaussian blur",
         flat_out(lambda: DDIMSampler(MMPSDenoiser(flat, yb.flatten(1), a_blur, cov, iterations=4),
                                      eta=0.0, **samp)(x_T.flatten(1).clone())),
         ds("mmps", blur, yb, sigma=SIGMA, eta=0.0), True),
        ("azula", "diffpir", "λ = 1.75, ζ = 0 / η = 0, mask (exact data step on both sides)",
         flat_out(lambda: DDIMSampler(DiffPIRDenoiser(flat, a_vec(y), a_vec, var_y=SIGMA**2, lmbda=1.75),
                                      eta=0.0, **samp)(x_T.flatten(1).clone())),
         ds("diffpir", p["mask_op"], y, sigma=SIGMA, lam=1.75, zeta=0.0, discrepancy=False), True),
    ]
    out = [dict(peer=a, method=b, setting=c, peer_fn=e, mine_fn=f, nfe=(steps, steps), compare=g)
           for a, b, c, e, f, g in rows]

    # deepinv works on [0, 1] images with a σ-denoiser; y and σ are mapped to its scale
    physics = dinv.physics.Inpainting(img_size=tuple(shape[1:]), mask=mask[0].clone(), device="cpu")
    physics.noise_model = dinv.physics.GaussianNoise(sigma=SIGMA / 2)
    y01 = y / 2 + 0.5 * mask
    table = model.alphas_cumprod
    levels = [math.sqrt((1 - a) / a) / 2 for a in sched.alpha_t.tolist()]
    t_of = {lv: t for lv, t in zip(levels, ts)}
    ddrm_den = deepinv_denoiser(model, table, lambda s: t_of[float(s)])

    def ddrm_peer():
        with torch.no_grad():
            return DDRM(ddrm_den, sigmas=levels, eta=0.85, etab=1.0)(y01, physics)

    out.append(dict(peer="deepinv", method="ddrm", setting="η = 0.85, η_b = 1, mask", peer_fn=ddrm_peer,
                    mine_fn=ds("ddrm", p["mask_op"], y, sigma=SIGMA, eta=0.85, eta_b=1.0), nfe=(steps, steps),
                    compare=False))
    algo = DiffPIR(model=None, data_fidelity=dinv.optim.L2(), sigma=SIGMA / 2, max_iter=steps, zeta=0.3,
                   lambda_=7.0)
    reduced = algo.reduced_alpha_cumprod
    algo.model = deepinv_denoiser(model, torch.cumprod(1 - algo.betas, 0).to(torch.float64),
                                  lambda s: int(torch.abs(reduced - 2 * s).argmin()))

    def diffpir_peer():
        with torch.no_grad():
            return algo(y01, physics)

    out.append(dict(peer="deepinv", method="diffpir", setting="λ = 7 (diffsolve's 3.5), ζ = 0.3, mask",
                    peer_fn=diffpir_peer,
                    mine_fn=ds("diffpir", p["mask_op"], y, sigma=SIGMA, lam=3.5, zeta=0.3, discrepancy=False),
                    nfe=(steps, steps), compare=False))
    return out


def diverged_samples(x: torch.Tensor, other: torch.Tensor, compare: bool) -> list[int]:
    """Samples of x that are lost: non-finite, or, where both sides compute the same samples (``compare``), with
    max |x_b| over 100× the other side's (the cheap model's samples are not images: no fixed range applies)."""
    a, b = x.flatten(1), other.flatten(1)
    return [i for i in range(x.shape[0]) if not bool(torch.isfinite(a[i]).all())
            or (compare and float(a[i].abs().max()) > 100 * float(b[i].abs().max()))]


def timed(rows: list[dict], repeat: int) -> list[dict]:
    results = []
    for r in rows:
        ref, mine = r["peer_fn"](), r["mine_fn"]()  # warm-up (and the outputs compared)
        diverged = {"peer": diverged_samples(ref, mine, r["compare"]),
                    "diffsolve": diverged_samples(mine, ref, r["compare"])}
        keep = [b for b in range(ref.shape[0]) if b not in diverged["peer"] + diverged["diffsolve"]]
        diff = (float((mine[keep] - ref[keep]).abs().max() / ref[keep].abs().max())
                if r["compare"] and keep else None)
        best = [math.inf, math.inf]
        for _ in range(repeat):
            for k, fn in enumerate((r["peer_fn"], r["mine_fn"])):
                t0 = time.perf_counter()
                fn()
                best[k] = min(best[k], time.perf_counter() - t0)
        res = dict(peer=r["peer"], method=r["method"], setting=r["setting"], peer_s=best[0], diffsolve_s=best[1],
                   nfe_peer=r["nfe"][0], nfe_diffsolve=r["nfe"][1],
                   ratio=(best[0] / r["nfe"][0]) / (best[1] / r["nfe"][1]), rel_diff=diff, diverged=diverged)
        print(res, flush=True)
        results.append(res)
    return results


def markdown(res: dict) -> str:
    a = res["args"]
    lines = ["# diffsolve against azula and deepinv: the same solve, timed in one run (benchmarks/bench_peers.py)", "",
             f"Machine: {res['machine']}. Versions: {res['versions']}.", "",
             f"Problem: {a['batch']}×3×{a['size']}² bundled photos, float32, σ = {SIGMA}, {a['steps']} steps, random "
             "inpainting (70 % missing) or a 9×9 Gaussian blur (std 2, reflect). Each cell: the best of "
             f"{a['repeat']} interleaved runs after one warm-up. Ratio: peer seconds per model call over diffsolve's "
             "(> 1: diffsolve faster). Output difference: max |x_diffsolve − x_peer| / max |x_peer| where both "
             "sides are deterministic on the same steps (`agreement.py` matches them to ≤ 1e-6 in float64), over the "
             "samples neither side lost (NaN, or |x| over 100× the other side's); — where the noise streams "
             "differ.", ""]
    for name, rows in res["tables"].items():
        lines += [f"## {name}", "", "| peer | method | setting | peer s | diffsolve s | NFE | peer/diffsolve per NFE "
                  "| output difference |", "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            d = "—" if r["rel_diff"] is None else f"{r['rel_diff']:.1e}"
            for side, bad in r["diverged"].items():
                if bad:
                    d += f"; {r['peer'] if side == 'peer' else side} diverged on sample(s) {bad}"
            lines.append(f"| {r['peer']} | {r['method']} | {r['setting']} | {r['peer_s']:.3f} | "
                         f"{r['diffsolve_s']:.3f} | {r['nfe_peer']} | {r['ratio']:.2f} | {d} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["cheap", "patches"])
    parser.add_argument("--out", default="peers-cpu")
    args = parser.parse_args()
    from importlib.metadata import version

    p = problem(args.size, args.batch)
    tables = {}
    t0 = time.time()
    for name in args.models:
        tables[LABELS[name]] = timed(rows_for(MODELS[name](), p, args.steps), args.repeat)
    res = dict(args=vars(args), tables=tables, seconds=round(time.time() - t0, 1), machine=machine(),
               versions=f"azula {version('azula')}, deepinv {version('deepinv')}")
    print(write_results(args.out, res, markdown(res)))


if __name__ == "__main__":
    main()
