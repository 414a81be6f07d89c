"""DPS's cost on CPU: per-step cost beyond DDIM against MPGD, and against an eager reference-style DPS loop.

Not a test. At B×3×256² (default B = 4), ``--steps`` steps (default 20), 2 threads, with a cheap
ε-model (ε̂ = 0.1·tanh(x), pointwise and differentiable, so DPS's backward has a graph) the solver
cost dominates:

- ``ddim``, ``dps``, ``mpgd`` (diffsolve, backend ``auto``: the C++ kernels; all with η = 0 like the
  eager loop, so no method draws noise; MPGD (no projection) guides every step, so both guided
  methods pay their guidance N times) for a Gaussian blur
  (61, σ 3, reflect), a motion blur (61, reflect), a centred 128² box inpainting and bicubic SR×4;
  the cost beyond DDIM per step is (t_method − t_ddim)/steps;
- ``eager``: DPS written as its reference code does it: diffusers ``DDIMScheduler.step`` for the
  update, autograd for ∇‖y − A x̂0‖, and A as eager torch — reflect-pad + a 61×61 ``conv2d`` per
  channel for both blurs (the DPS repository's ``Blurkernel``), a mask product for inpainting,
  ``F.interpolate(bicubic, antialias=True)`` for SR (not the same matrix as MATLAB's bicubic, the
  same cost class);
- the same with the shipped ``patches`` UNet at B×3×64×64 (the "unet" table), where the model's own
  forward and backward dominate: ``model`` is one ε forward + its backward per step, timed alone.

Every figure is the best of ``--repeat`` runs, methods interleaved, so ratios come from one run
on a machine other processes share. The C++ Gaussian blur A + Aᵀ against a circular ``torch.fft``
blur at 8×3×256² is timed the same way. Writes ``benchmarks/results/dps-cpu.md`` and ``.json``.

Usage: ``python benchmarks/bench_dps.py [--batch 4] [--steps 20] [--repeat 2] [--unet-batch 4]
[--unet-steps 20] [--unet-operators gaussian,motion,inpaint,sr4]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

RESULTS = Path(__file__).parent / "results"
OPERATORS = ("gaussian", "motion", "inpaint", "sr4")


def write_results(stem: str, res: dict, markdown: str) -> str:
    """Write ``results/<stem>.json`` (``res``) and ``results/<stem>.md`` (``markdown``), keeping the hand-written
    "## Reading" section of the previous .md; returns the .md's text."""
    (RESULTS / f"{stem}.json").write_text(json.dumps(res, indent=1))
    md = RESULTS / f"{stem}.md"
    reading = md.read_text().partition("\n## Reading")[2] if md.exists() else ""
    text = markdown + ("\n## Reading" + reading if reading else "")
    md.write_text(text)
    return text


def _best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _machine() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        commit = "?"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from diffsolve.kernels import backends

    return (f"{cpu}, {os.cpu_count()} cores visible, torch {torch.__version__} with {torch.get_num_threads()} "
            f"threads, C++ backend: {backends()['cpp'][1]}, commit {commit}; load average "
            f"{os.getloadavg()[0]:.1f} at the start (the machine was shared with other agents' jobs)")


# ----------------------------------------------------------------------------- problems
def _operator(name: str, size: int):
    from diffsolve.operators import GaussianBlur, Inpainting, MotionBlur, SuperResolution

    if name == "gaussian":
        return GaussianBlur(61, 3.0, "reflect")
    if name == "motion":
        return MotionBlur(61, 0.5, seed=0, boundary="reflect")
    if name == "inpaint":
        return Inpainting.box(size, box=size // 2, margin=size // 16)
    return SuperResolution(4, "bicubic")


def _kernel61(op) -> torch.Tensor:
    """The operator's (trimmed) kernel centred in a 61×61 array, as the DPS code stores it."""
    k = torch.zeros(61, 61, dtype=torch.float64)
    kh, kw = op.kernel.shape
    k[30 - kh // 2: 31 + kh // 2, 30 - kw // 2: 31 + kw // 2] = op.kernel
    return k.float()


def _eager_forward(name: str, op, channels: int, size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A as eager torch code written the DPS repository's way (module docstring)."""
    if name in ("gaussian", "motion"):
        weight = _kernel61(op).expand(channels, 1, 61, 61).contiguous()
        return lambda x: F.conv2d(F.pad(x, (30, 30, 30, 30), mode="reflect"), weight, groups=channels)
    if name == "inpaint":
        mask = op.mask.float()
        return lambda x: mask * x
    return lambda x: F.interpolate(x, scale_factor=0.25, mode="bicubic", antialias=True, align_corners=False)


def _eager_dps(denoiser, a_fn, y: torch.Tensor, x_T: torch.Tensor, steps: int, zeta: float) -> torch.Tensor:
    """The DPS reference loop: DDIMScheduler.step (η = 0) + autograd of ‖y − A x̂0‖ per sample."""
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                          clip_sample=False, set_alpha_to_one=True, timestep_spacing="trailing")
    sched.set_timesteps(steps)
    x = x_T
    for t in sched.timesteps:
        x = x.detach().requires_grad_()
        tt = t.expand(x.shape[0])
        eps = denoiser(x, tt)
        a_t = sched.alphas_cumprod[t]
        x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        norm = (y - a_fn(x0)).flatten(1).norm(dim=1)
        (grad,) = torch.autograd.grad(norm.sum(), x)
        x = sched.step(eps.detach(), t, x.detach(), eta=0.0).prev_sample - zeta * grad
    return x.detach()


def _cheap_model():
    """ε̂(x, t) = 0.1·tanh(x): pointwise, differentiable, its backward one elementwise pass, so the
    solvers' own cost dominates. (A 3×3 convolution, 3→3 channels, is not cheap in this sense on
    CPU: its mkldnn backward at 4×3×256² costs more than the blur's A + Aᵀ.)"""
    from diffsolve.models import EpsDenoiser

    return EpsDenoiser(lambda x, t: 0.1 * torch.tanh(x))


def _unet_model():
    from diffsolve.models import load_default

    den = load_default("patches")
    return den


def run_table(denoiser, batch: int, size: int, steps: int, repeat: int,
              operators: tuple[str, ...] = OPERATORS) -> dict:
    """Seconds per whole solve (best of ``repeat``) of each method × operator; see the docstring."""
    from diffsolve.solvers import ddim, dps, mpgd

    shape = (batch, 3, size, size)
    gen = torch.Generator().manual_seed(1)
    x_true = torch.rand(shape, generator=gen) * 2 - 1
    x_T = torch.randn(shape, generator=gen)
    out: dict = {"shape": list(shape), "steps": steps, "operators": {}}
    t_ddim = _best(lambda: ddim(denoiser, shape, steps=steps, x_T=x_T, eta=0.0), repeat)
    out["ddim_s"] = t_ddim
    fwd, fwd_bwd = _model_step(denoiser)
    fwd(x_T), fwd_bwd(x_T)  # warm-up
    out["model_fwd_per_step_s"] = _best(lambda: fwd(x_T), repeat)
    out["model_fwd_bwd_per_step_s"] = _best(lambda: fwd_bwd(x_T), repeat)
    out["model_bwd_per_step_s"] = max(0.0, out["model_fwd_bwd_per_step_s"] - out["model_fwd_per_step_s"])
    for name in operators:
        op = _operator(name, size)
        y = op.A(x_true)
        a_eager = _eager_forward(name, op, 3, size)
        runs = {
            "ddim": lambda n: ddim(denoiser, shape, steps=n, x_T=x_T, eta=0.0),
            "dps": lambda n: dps(denoiser, op, y, steps=n, x_T=x_T, eta=0.0),
            "mpgd": lambda n: mpgd(denoiser, op, y, steps=n, x_T=x_T, eta=0.0),
            "eager": lambda n: _eager_dps(denoiser, a_eager, y, x_T, n, 1.0),
        }
        for fn in runs.values():  # warm-up (mkldnn, operator caches) with 2 steps
            fn(2)
        row = {}
        for _ in range(repeat):  # interleaved: each repeat runs every method once
            for method, fn in runs.items():
                row[method] = min(row.get(method, float("inf")), _best(lambda: fn(steps), 1))
        row["dps_extra_per_step_s"] = (row["dps"] - row["ddim"]) / steps
        row["mpgd_extra_per_step_s"] = (row["mpgd"] - row["ddim"]) / steps
        row["dps_extra_minus_model_bwd_per_step_s"] = row["dps_extra_per_step_s"] - out["model_bwd_per_step_s"]
        row["dps_over_mpgd_extra"] = (row["dps_extra_per_step_s"] / row["mpgd_extra_per_step_s"]
                                      if row["mpgd_extra_per_step_s"] > 0 else None)
        row["eager_over_dps"] = row["eager"] / row["dps"]
        out["operators"][name] = row
        print(name, {k: v if v is None else round(v, 4) for k, v in row.items()}, flush=True)
    return out


def _model_step(denoiser) -> tuple[Callable[[torch.Tensor], None], Callable[[torch.Tensor], None]]:
    """(one ε forward, one ε forward + the backward DPS needs through it), at t = 500."""

    def fwd(x: torch.Tensor) -> None:
        with torch.no_grad():
            denoiser(x, torch.full((x.shape[0],), 500, dtype=torch.int64))

    def fwd_bwd(x: torch.Tensor) -> None:
        xg = x.detach().requires_grad_()
        eps = denoiser(xg, torch.full((x.shape[0],), 500, dtype=torch.int64))
        torch.autograd.grad(eps.square().sum(), xg)

    return fwd, fwd_bwd


def blur_vs_fft(repeat: int) -> dict:
    """C++ reflect Gaussian blur A and Aᵀ vs a circular torch.fft blur, 8×3×256² float32."""
    from diffsolve.operators import GaussianBlur

    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(8, 3, 256, 256, generator=gen), torch.randn(8, 3, 256, 256, generator=gen)
    op = GaussianBlur(61, 3.0, "reflect", backend="cpp")
    g = torch.zeros(256, 256)
    g[:61, :61] = _kernel61(op)
    otf = torch.fft.rfft2(torch.roll(g, (-30, -30), (0, 1)))
    s = (256, 256)
    fns = {"cpp_reflect": lambda: (op.A(x), op.A_adjoint(y)),
           "fft_circular": lambda: (torch.fft.irfft2(torch.fft.rfft2(x) * otf.conj(), s=s),
                                    torch.fft.irfft2(torch.fft.rfft2(y) * otf, s=s))}
    best = {k: float("inf") for k in fns}
    for _ in range(repeat * 2):
        for k, fn in fns.items():
            best[k] = min(best[k], _best(fn, 1))
    best["fft_over_cpp"] = best["fft_circular"] / best["cpp_reflect"]
    print("blur", best, flush=True)
    return best


def _ratio(r: dict) -> str:
    """DPS extra / MPGD extra, or why there is none (MPGD's extra lost in the timing noise)."""
    if r["mpgd_extra_per_step_s"] <= 0:
        return "n/a (MPGD extra ≤ 0: below the noise)"
    return f"{r['dps_over_mpgd_extra']:.2f}"


def _md(res: dict) -> str:
    lines = ["# DPS cost on CPU (benchmarks/bench_dps.py)", "", f"Machine: {res['machine']}", "",
             "Not a test; every figure is the best of the repeats, methods interleaved, ratios from this one run.",
             "The machine was shared with other agents' jobs while this ran: absolute times are noisy, "
             "the ratios less so.", ""]
    for key, title in (("cheap", "cheap ε-model (ε̂ = 0.1·tanh x, pointwise)"), ("unet", "shipped `patches` UNet")):
        t = res[key]
        shape = "×".join(map(str, t["shape"]))
        lines += [f"## {title}, {shape}, {t['steps']} steps", "",
                  f"DDIM alone: {t['ddim_s']:.3f} s ({1e3 * t['ddim_s'] / t['steps']:.1f} ms/step).", ""]
        lines += [f"Model per step: forward {1e3 * t['model_fwd_per_step_s']:.1f} ms, backward (what DPS adds to "
                  f"DDIM's forward) {1e3 * t['model_bwd_per_step_s']:.1f} ms.", "",
                  "| operator | DDIM s | DPS s | MPGD s | eager DPS s | DPS extra ms/step | of which model bwd | "
                  "MPGD extra ms/step | DPS/MPGD extra (target ≤ 2) | eager/DPS (target ≥ 10) | model share of DPS |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, r in t["operators"].items():
            model = (t["model_fwd_per_step_s"] + t["model_bwd_per_step_s"]) * t["steps"] / r["dps"]
            lines.append(
                f"| {name} | {r['ddim']:.3f} | {r['dps']:.3f} | {r['mpgd']:.3f} | {r['eager']:.3f} | "
                f"{1e3 * r['dps_extra_per_step_s']:.1f} | {1e3 * t['model_bwd_per_step_s']:.1f} | "
                f"{1e3 * r['mpgd_extra_per_step_s']:.1f} | {_ratio(r)} | "
                f"{r['eager_over_dps']:.1f} | {min(1.0, model):.0%} |")
        lines.append("")
    b = res["blur"]
    lines += ["## Gaussian blur A + Aᵀ (61, σ 3), 8×3×256² float32", "",
              f"C++ reflect (exact): {1e3 * b['cpp_reflect']:.1f} ms; circular torch.fft: "
              f"{1e3 * b['fft_circular']:.1f} ms; FFT / C++ = {b['fft_over_cpp']:.2f} (target ≥ 1).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--unet-size", type=int, default=64)
    parser.add_argument("--unet-steps", type=int, default=20)
    parser.add_argument("--unet-batch", type=int, default=4)
    parser.add_argument("--unet-operators", default=",".join(OPERATORS),
                        help="comma-separated subset of " + ",".join(OPERATORS))
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "dps-cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="dps: steps=")  # short smoke runs
    res = {"machine": _machine()}
    res["blur"] = blur_vs_fft(args.repeat)
    res["cheap"] = run_table(_cheap_model(), args.batch, args.size, args.steps, args.repeat)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=2))  # kept if the UNet table is cut short
    unet_ops = tuple(o for o in args.unet_operators.split(",") if o)
    if any(o not in OPERATORS for o in unet_ops):
        parser.error(f"--unet-operators must be a subset of {OPERATORS}, got {unet_ops}")
    res["unet"] = run_table(_unet_model(), args.unet_batch, args.unet_size, args.unet_steps, args.repeat, unet_ops)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=2))
    args.out.with_suffix(".md").write_text(_md(res))
    print(_md(res))


if __name__ == "__main__":
    main()
