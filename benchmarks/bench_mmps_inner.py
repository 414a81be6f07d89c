"""MMPS's inner measurement-space solve: CG against GMRES at 1, 2, 4, 8 iterations (a report, not a test).

    python benchmarks/bench_mmps_inner.py            # one thread, about 10 minutes on a laptop core

``photos``: the shipped ``patches`` model on the held-out photos (camera, grass, hopper) at 64², Gaussian blur,
motion blur and SR×4 (``diffsolve.tasks``), y = A x + σ n with σ = 0.05 (``bench_methods.measure``), 30 MMPS
steps (η = 1, one seed per image): PSNR, data consistency ‖A x̂ − y‖/(σ√m) (``return_info``) and the inner
solve's relative residual ‖r − K u‖/‖r‖ (K = σ² I + γ_t A Jᵀ Aᵀ, the operator MMPS applies; one extra VJP per
step to measure it, median over steps and images).

``exact prior``: the smooth 8×8 Gaussian prior of ``bench_posterior.priors`` with the same three tasks at 8×8
(``bench_posterior.tasks``), σ = 0.05: the step gap ‖x̂0_y − E[x0 | x_t, y]‖/‖E[x0 | x_t, y]‖ of the corrected
mean at t ∈ {100, 300, 500, 700, 900} (mean over t and 2 draws of x_t; no sampling noise), and the mean gap
‖x̄ − μ‖/‖μ_prior − μ‖ of 256 samples of 30 steps to the exact posterior mean μ (Monte-Carlo floor in the
table's note).

Writes ``results/mmps-inner.{md,json}``; the reading at the end of the .md (``READING``) is written by hand
from the run in the repository: rewrite it when the numbers change.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
import time
from pathlib import Path

if not __import__("torch").cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_methods import RESULTS, SIGMA, machine, measure  # noqa: E402
from bench_posterior import priors, tasks  # noqa: E402

mmps_module = importlib.import_module("diffsolve.solvers.mmps")  # the package attribute is the function
from diffsolve.solvers.mmps import mmps, posterior_mean  # noqa: E402

SOLVERS = ("cg", "gmres")
ITERS = (1, 2, 4, 8)
STEPS = 30
IMAGES = ("camera", "grass", "hopper")
PHOTO_TASKS = {"gaussian_blur": "gaussian blur", "motion_blur": "motion blur", "sr4": "sr x4"}
D = torch.float64


class InnerResidual:
    """Wraps a measurement-space solver; records ‖rhs − K u‖/‖rhs‖ per sample without another ``apply`` (MMPS's
    frees the denoiser's graph at its last call): u = Σ_i w_i v_i over the vectors given to ``apply``
    (``_krylov``'s weights), so K u = Σ_i w_i (K v_i) from the products ``apply`` returned (copied before the
    solver updates them in place)."""

    def __init__(self, inner) -> None:
        self.inner, self.values = inner, []

    def __call__(self, apply, rhs, iters, **options):
        products = []

        def recording(v):
            kv = apply(v)
            products.append(kv.detach().clone())
            return kv

        u, w = self.inner(recording, rhs, iters, **{**options, "weights": True})
        ku = sum(w[:, i].view(-1, *([1] * (rhs.dim() - 1))) * kv for i, kv in enumerate(products))
        self.values.append(((rhs - ku).flatten(1).norm(dim=1) / rhs.flatten(1).norm(dim=1)).detach())
        return (u, w) if options.get("weights") else u


def run_photos() -> list[dict]:
    from diffsolve.data import photo
    from diffsolve.metrics import scores
    from diffsolve.models import load_default
    from diffsolve.tasks import make_operator

    model = load_default("patches")
    x = torch.stack([photo(name, size=64) for name in IMAGES])
    rows = []
    for task in PHOTO_TASKS:
        op = make_operator(task, (64, 64))
        y = measure(op, x, seed=64)
        for solver in SOLVERS:
            for k in ITERS:
                probe = InnerResidual(mmps_module.SOLVERS[solver])
                saved = mmps_module.SOLVERS[solver]
                mmps_module.SOLVERS[solver] = probe
                start = time.perf_counter()
                try:
                    out, info = mmps(model, op, y, steps=STEPS, sigma=SIGMA, solver=solver, iters=k,
                                     return_info=True,
                                     generator=[torch.Generator().manual_seed(i) for i in range(len(IMAGES))])
                finally:
                    mmps_module.SOLVERS[solver] = saved
                sec = time.perf_counter() - start
                psnr = scores(out, x)["psnr"]
                inner = torch.stack(probe.values)  # (steps, B)
                row = {"task": task, "solver": solver, "iters": k, "psnr": float(psnr.mean()),
                       "psnr_each": [float(v) for v in psnr], "dc": float(info["data_consistency"].mean()),
                       "dc_each": [float(v) for v in info["data_consistency"]],
                       "inner_median": float(inner.median()), "inner_max": float(inner.max()),
                       "inner_last": float(inner[-1].median()), "finite": bool(torch.isfinite(out).all()),
                       "sec": sec}
                rows.append(row)
                print(f"{task:14s} {solver:5s} k={k} PSNR {row['psnr']:.2f} dc {row['dc']:.2f} inner "
                      f"{row['inner_median']:.3f} (max {row['inner_max']:.3f}) {sec:.1f} s", flush=True)
    return rows


def _dense(op, shape) -> torch.Tensor:
    n = math.prod(shape)
    return torch.stack([op.A(e.view(1, *shape)).flatten() for e in torch.eye(n, dtype=D)], 1)  # (m, n)


def run_exact(size: int = 8, samples: int = 256) -> list[dict]:
    p = priors(size)["gaussian"]
    shape = (1, size, size)
    n = size * size
    ops = tasks(size)
    x = p.sample(1, generator=torch.Generator().manual_seed(5))
    s_inv = torch.linalg.inv(p.cov)
    rows = []
    for task, name in PHOTO_TASKS.items():
        op = ops[name]
        mat = _dense(op, shape)
        y1 = op.A(x) + SIGMA * torch.randn(op.A(x).shape, generator=torch.Generator().manual_seed(6), dtype=D)
        post = p.posterior(mat, y1.reshape(-1), sigma=SIGMA)
        for solver in SOLVERS:
            for k in ITERS:
                gaps = []
                for t in (100, 300, 500, 700, 900):
                    a = float(p.alphas_cumprod[t])
                    x_t = torch.randn(2, *shape, generator=torch.Generator().manual_seed(t), dtype=D)
                    y = y1.expand(2, *y1.shape[1:])
                    prec = s_inv + a / (1 - a) * torch.eye(n, dtype=D) + mat.T @ mat / SIGMA**2
                    rhs = ((s_inv @ p.mean.reshape(-1))[None] + a**0.5 / (1 - a) * x_t.flatten(1)
                           + y.flatten(1) @ mat / SIGMA**2)
                    ref = torch.linalg.solve(prec, rhs.T).T.reshape(x_t.shape)
                    with torch.enable_grad():
                        xg = x_t.clone().requires_grad_(True)
                        eps = p(xg, torch.full((2,), t))
                        x0y, _ = posterior_mean(op, xg, eps, y, a, SIGMA, iters=k, solver=solver)
                    gaps.append(float(((x0y - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1)).mean()))
                out = mmps(p, op, y1.expand(samples, *y1.shape[1:]).contiguous(), steps=STEPS, sigma=SIGMA,
                           solver=solver, iters=k, generator=torch.Generator().manual_seed(7))
                mu = post.mean.reshape(-1)
                gap = float((out.flatten(1).mean(0) - mu).norm() / (p.mean.reshape(-1) - mu).norm())
                floor = float((post.cov.diagonal().sum() / samples).sqrt() / (p.mean.reshape(-1) - mu).norm())
                rows.append({"task": task, "solver": solver, "iters": k, "step_gap": sum(gaps) / len(gaps),
                             "mean_gap": gap, "mc_floor": floor})
                print(f"exact {task:14s} {solver:5s} k={k} step gap {rows[-1]['step_gap']:.2e} mean gap {gap:.3f} "
                      f"(floor {floor:.3f})", flush=True)
    return rows


def render(photos: list[dict], exact: list[dict], elapsed: float) -> str:
    out = ["# MMPS inner solve: CG against GMRES", "",
           f"Machine: {machine()}; {elapsed / 60:.1f} min in all. Command: `python benchmarks/bench_mmps_inner.py`.",
           "",
           f"Photos: the shipped `patches` model, held-out {', '.join(IMAGES)} at 64², {STEPS} MMPS steps (η = 1, one "
           f"seed per image), σ = {SIGMA}. PSNR (dB) and data consistency dc = ‖A x̂ − y‖/(σ√m) (1 is the noise "
           "level) are means over the three images; `inner` is the median over steps and images of the inner "
           "solve's relative residual ‖r − K u‖/‖r‖ (K = σ² I + γ_t A Jᵀ Aᵀ as applied), `max` its worst value.",
           ""]
    for task in PHOTO_TASKS:
        out += [f"**{task}**", "", "| iters | CG PSNR | CG dc | CG inner (max) | GMRES PSNR | GMRES dc | "
                "GMRES inner (max) |", "|---:|---:|---:|---:|---:|---:|---:|"]
        for k in ITERS:
            cells = []
            for solver in SOLVERS:
                r = next(r for r in photos if r["task"] == task and r["solver"] == solver and r["iters"] == k)
                cells += [f"{r['psnr']:.2f}", f"{r['dc']:.2f}", f"{r['inner_median']:.3f} ({r['inner_max']:.2f})"]
            out.append(f"| {k} | " + " | ".join(cells) + " |")
        out.append("")
    out += ["Exact prior (smooth 8×8 Gaussian of `bench_posterior.py`, same tasks at 8×8, σ = 0.05): `step` is "
            "‖x̂0_y − E[x0 | x_t, y]‖/‖E[x0 | x_t, y]‖ averaged over t ∈ {100, 300, 500, 700, 900}; `mean gap` is "
            f"‖x̄ − μ‖/‖μ_prior − μ‖ over 256 samples of {STEPS} steps; `MC floor` its Monte-Carlo noise level "
            "√(tr Σ_post/256)/‖μ_prior − μ‖ (a gap at or below it is as good as the sample size can show).", "",
            "| task | iters | CG step | CG mean gap | GMRES step | GMRES mean gap | MC floor |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for task in PHOTO_TASKS:
        for k in ITERS:
            cg = next(r for r in exact if r["task"] == task and r["solver"] == "cg" and r["iters"] == k)
            gm = next(r for r in exact if r["task"] == task and r["solver"] == "gmres" and r["iters"] == k)
            out.append(f"| {task} | {k} | {cg['step_gap']:.2e} | {cg['mean_gap']:.3f} | {gm['step_gap']:.2e} | "
                       f"{gm['mean_gap']:.3f} | {gm['mc_floor']:.3f} |")
    return "\n".join(out) + "\n"


READING = """
## Reading

Rerun 2026-12-06 with every method ending within the noise (`_inverse.discrepancy_pull`, which moves a result the
noise cannot explain towards y: it pulls most 1-iteration results to dc ≈ 1.02 and hides part of CG's damage
below) and GMRES's dependent-column drop (`_krylov.py`: the exact-prior SR×4 at 8 iterations had crashed on it).

- **CG is not a solver on the learned denoiser.** Its inner residual ‖r − K u‖/‖r‖ has a median above 1 on
  both blurs at every iteration count but Gaussian blur ×8 (u = 0 would do better), and worst values of
  10²–10⁴ from 4 iterations on; ⟨p, K p⟩ > 0 does not make K symmetric. The damage shows per image: Gaussian
  blur ×4 on grass 12.2 dB (30.98 and 27.49 on the others), ×8 14.4; motion blur ×8 on grass and hopper 21.6 and
  22.1 dB (24.3 and 25.0 at ×4). More CG iterations are not monotone in PSNR on any task.
- **GMRES is stable.** Its inner residual is below 1 at every step of every run (worst 0.93) and its median falls
  with the iterations; PSNR never drops by more than 0.05 dB when iterations are added: Gaussian blur 26.74 →
  27.37 → 27.98 → 28.09, motion blur 23.74 → 24.66 → 25.49 → 25.77, SR×4 flat at 20.92–20.97; dc 0.96–1.05.
- **At 1 iteration the two are close** (CG 0.04–0.36 dB ahead, the same dc after the pull). Where CG does not
  break (2 iterations on the blurs) it is 0.5–0.7 dB ahead of GMRES at the same cost, on every image:
  residual-norm optimality is not the best target for x̂0_y. The exact prior says the same: CG's sample-mean
  gap is below GMRES's at 1–4 iterations on both blurs (0.220 vs 0.264 at 1), while GMRES's per-step gap to
  E[x0 | x_t, y] is smaller and both reach the exact solve (SR×4, 4 measurements: 5e-13 from 4 iterations; 8
  iterations, more than the measurements, stay there).
- **Solver default:** `solver="gmres"`, as azula's MMPSDenoiser: within 0.4 dB of CG×1 at 1 iteration and the
  solver for which raising `iters` is safe. `iters=4` buys +1.2 dB (Gaussian blur) and +1.8 dB (motion
  blur), nothing on SR×4, at about 2.5× the time (seconds per run in the .json, 3 images, one core).
- **Iterations default: 4** (was 1, azula's), chosen later on the demo photos and the exact prior at 50 steps
  ([mmps-iters](mmps-iters.md), not rerun here): on the exact Gaussian prior the mean gap falls from 0.24 / 0.21
  / 0.12 (box, Gaussian blur, motion blur) at 1 iteration to 0.05 / 0.06 / 0.03 at 4, within DPS-at-100's; on the
  demo photos the blurs gained 1.2 and 3.0 dB and no task lost more than 0.1 dB.
- Limits: 3 images, one seed each, 64², one model; the seconds are wall time on one core.
"""


def main(argv: list[str] | None = None) -> None:
    """``--render``: rewrite the .md from the saved .json (no runs)."""
    argv = sys.argv[1:] if argv is None else argv
    torch.set_num_threads(1)
    if "--render" in argv:
        saved = json.loads((RESULTS / "mmps-inner.json").read_text())
        photos, exact, elapsed = saved["photos"], saved["exact"], saved["elapsed"]
    else:
        start = time.perf_counter()
        exact = run_exact()
        photos = run_photos()
        elapsed = time.perf_counter() - start
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "mmps-inner.json").write_text(json.dumps({"photos": photos, "exact": exact, "elapsed": elapsed},
                                                            indent=1))
    text = render(photos, exact, elapsed) + READING
    (RESULTS / "mmps-inner.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
