"""CPU benchmarks of the C++ backend (diffsolve._C) against the usual eager ways, in one run.

Groups (each ratio is against the group's baseline, median of rounds, same process):
- DDIM step 8×3×256×256 fp32: diffusers ``DDIMScheduler.step`` vs the fused step (η = 0 and η = 1
  with in-kernel noise);
- Gaussian blur A + Aᵀ (DPS: 61×61 kernel, σ = 3, reflect) on 1×3×256×256: reflect-pad + depthwise
  ``conv2d`` with Aᵀ by autograd (the DPS code's way) and a circular ``torch.fft`` blur vs the
  separable 25-tap pass with the exact reflect adjoint;
- one CG iteration without the operator, 8×3×256×256: eager torch CG vs ``cg_dots`` + ``cg_update``;
- Tikhonov solve (shift·I + AᵀA) x = b for the Gaussian blur: CG vs the exact structured solve.

Run (writes the pytest-benchmark JSON and a Markdown summary with the load average):
    python benchmarks/bench_cpu.py [NAME] [pytest args]   # -> benchmarks/results/NAME.{json,md}
or as a suite: ``python -m pytest benchmarks/bench_cpu.py --benchmark-only``.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from diffsolve.kernels import _dispatch, ddim_step

cg = importlib.import_module("diffsolve.kernels.cg")
HAVE_CPP = _dispatch.backends()["cpp"][0]
pytestmark = pytest.mark.skipif(not HAVE_CPP, reason=f"C++ backend unavailable: {_dispatch.backends()['cpp'][1]}")

SHAPE = (8, 3, 256, 256)
IMAGE = (1, 3, 256, 256)
NBYTES = 4 * torch.Size(SHAPE).numel()


def run(benchmark, fn, rounds=7, **info):
    benchmark.extra_info.update(info)
    benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)


# ----------------------------------------------------------------------------- fused step
@pytest.fixture(scope="module")
def step_inputs():
    from diffusers import DDIMScheduler

    gen = torch.Generator().manual_seed(0)
    x, eps = torch.randn(SHAPE, generator=gen), torch.randn(SHAPE, generator=gen)
    sched = DDIMScheduler(num_train_timesteps=1000)
    sched.set_timesteps(50)
    t = int(sched.timesteps[10])
    s = t - 1000 // 50
    return sched, t, x, eps, float(sched.alphas_cumprod[t]), float(sched.alphas_cumprod[s])


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("impl", ["diffusers", "torch", "cpp"])
def test_ddim_step(benchmark, step_inputs, impl, eta):
    sched, t, x, eps, a_t, a_s = step_inputs
    benchmark.group = f"cpu: DDIM step {'x'.join(map(str, SHAPE))} fp32, eta={eta:g}"
    if impl == "diffusers":
        gen = torch.Generator().manual_seed(1)
        run(benchmark, lambda: sched.step(eps, t, x, eta=eta, generator=gen), baseline=True)
    else:
        seed = 1 if eta else None
        run(benchmark, lambda: ddim_step(x, eps, a_t, a_s, eta=eta, seed=seed, backend=impl),
            bytes=3 * NBYTES)  # read x, eps; write x_s (noise made in-kernel)


# ----------------------------------------------------------------------------- Gaussian blur
@pytest.fixture(scope="module")
def blur_inputs():
    from diffsolve.operators import GaussianBlur

    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(IMAGE, generator=gen), torch.randn(IMAGE, generator=gen)
    op = GaussianBlur(61, 3.0, "reflect")
    k61 = torch.zeros(61, 61, dtype=torch.float64)
    kh, kw = op.kernel.shape
    k61[30 - kh // 2: 31 + kh // 2, 30 - kw // 2: 31 + kw // 2] = op.kernel  # the DPS 61×61 kernel
    return x, y, k61.float()


@pytest.mark.parametrize("impl", ["dps-conv2d", "torch-fft-circular", "separable-torch", "separable-cpp"])
def test_gaussian_blur_forward_and_adjoint(benchmark, blur_inputs, impl):
    from diffsolve.operators import GaussianBlur

    x, y, k61 = blur_inputs
    benchmark.group = f"cpu: Gaussian blur A + A^T (61x61, sigma 3) {'x'.join(map(str, IMAGE))} fp32"
    c, h, w = IMAGE[1:]
    if impl == "dps-conv2d":  # DPS: ReflectionPad2d(30) + Conv2d(3, 3, 61, groups=3); Aᵀ by autograd
        weight = k61.expand(c, 1, 61, 61).contiguous()

        def fn():
            xr = x.detach().requires_grad_()
            out = F.conv2d(F.pad(xr, (30, 30, 30, 30), mode="reflect"), weight, groups=c)
            (adj,) = torch.autograd.grad(out, xr, grad_outputs=y)
            return out, adj

        run(benchmark, fn, rounds=5, baseline=True, boundary="reflect")
    elif impl == "torch-fft-circular":  # the fastest library approach; circular boundary only
        g = torch.zeros(h, w)
        g[:61, :61] = k61
        otf = torch.fft.rfft2(torch.roll(g, (-30, -30), (0, 1)))
        run(benchmark, lambda: (torch.fft.irfft2(torch.fft.rfft2(x) * otf.conj(), s=(h, w)),
                                torch.fft.irfft2(torch.fft.rfft2(y) * otf, s=(h, w))), boundary="circular")
    else:
        op = GaussianBlur(61, 3.0, "reflect", backend=impl.split("-")[1])
        run(benchmark, lambda: (op.A(x), op.A_adjoint(y)), boundary="reflect (exact adjoint)")


# ----------------------------------------------------------------------------- CG iteration
@pytest.fixture(scope="module")
def cg_inputs():
    gen = torch.Generator().manual_seed(3)
    r, gr, p = (torch.randn(SHAPE, generator=gen) for _ in range(3))
    shift, scale = torch.full((SHAPE[0],), 0.1), torch.ones(SHAPE[0])
    return r, gr, p, shift, scale


def _eager_cg_iteration(x, r, p, gp, rs, shift, scale):
    """Textbook batched CG in eager torch, given G p from the operator (per-sample scalars)."""
    view = (-1, 1, 1, 1)
    kp = shift.view(view) * p + scale.view(view) * gp
    alpha = rs / (p * kp).flatten(1).sum(1)
    x = x + alpha.view(view) * p
    r = r - alpha.view(view) * kp
    rs_new = (r * r).flatten(1).sum(1)
    p = r + (rs_new / rs).view(view) * p
    return x, r, p, rs_new


@pytest.mark.parametrize("impl", ["eager-torch", "diffsolve-torch", "diffsolve-cpp"])
def test_cg_iteration(benchmark, cg_inputs, impl):
    r, gr, p, shift, scale = cg_inputs
    benchmark.group = f"cpu: one CG iteration without the operator {'x'.join(map(str, SHAPE))} fp32"
    x, s = torch.zeros_like(r), torch.zeros_like(r)
    if impl == "eager-torch":
        rs = (r * r).flatten(1).sum(1)
        run(benchmark, lambda: _eager_cg_iteration(x, r, p, gr, rs, shift, scale), baseline=True)
        return
    state = torch.zeros(SHAPE[0], 5)
    state[:, 2], state[:, 4] = 1.0, 1e30  # active, never converging: every iteration does full work
    dots_fn = _dispatch.implementation(impl.split("-")[1], "cg_dots", "cg", r.device)
    update_fn = _dispatch.implementation(impl.split("-")[1], "cg_update", "cg", r.device)
    xs, rs_, ps, ss, st = x.clone(), r.clone(), p.clone(), s.clone(), state.clone()

    def fn():
        dots = dots_fn(rs_, gr, shift, scale)
        st[:, 0] = 0.0  # stay on the "first iteration" branch so values stay bounded across rounds
        return update_fn(xs, rs_, ps, ss, gr, shift, scale, dots, st, 0.0)

    run(benchmark, fn, bytes=8 * NBYTES)  # dots: r, gr; update: r, gr, p, s, x read + x, r, p, s written


# ----------------------------------------------------------------------------- exact solve vs CG
@pytest.mark.parametrize("method", ["cg", "exact"])
def test_tikhonov_solve(benchmark, method):
    from diffsolve.operators import GaussianBlur

    op = GaussianBlur(61, 3.0, "reflect", backend="cpp")
    rhs = torch.randn(IMAGE, generator=torch.Generator().manual_seed(4))
    shift, tol = 1e-2, 1e-5
    benchmark.group = f"cpu: Tikhonov solve (shift 1e-2, Gaussian blur, reflect) {'x'.join(map(str, IMAGE))} fp32"
    op.solve(rhs, shift, method="exact")  # build the cached factors outside the timing
    # CG's budget: the iterations it needs to reach tol (CG runs a fixed budget, no host sync)
    _, probe = op.solve(rhs, shift, method="cg", tol=tol, max_iters=1000, return_info=True)
    iters = int(probe.iterations.max())
    _, info = op.solve(rhs, shift, method=method, tol=tol, max_iters=iters, return_info=True)
    run(benchmark, lambda: op.solve(rhs, shift, method=method, tol=tol, max_iters=iters), rounds=5,
        baseline=method == "cg", residual=float(info.residual.max()), cg_iterations=iters)


# ----------------------------------------------------------------------------- script mode
TARGETS = {"DDIM step": 3.0, "Gaussian blur": 20.0, "one CG iteration": 2.0, "Tikhonov solve": 10.0}


def summarize(json_path: Path, load: tuple[str, str]) -> str:
    """Markdown: per group, each entry's median and speed-up against the baseline, and the target."""
    run_ = json.loads(json_path.read_text())
    for b in run_["benchmarks"]:  # the machine line from benchmarks/conftest.py (pytest's rootdir there)
        b["extra_info"].setdefault("threads", str(torch.get_num_threads()))
    groups: dict[str, list[dict]] = {}
    for b in run_["benchmarks"]:
        groups.setdefault(b["group"], []).append(b)
    info = run_["benchmarks"][0]["extra_info"]
    lines = ["## CPU backend (diffsolve._C) — summary", "",
             f"Machine: {info.get('machine', '?')}; torch {info.get('torch', '?')}; "
             f"threads {info.get('threads', '?')}; commit {info.get('commit', '?')}; saved {run_.get('datetime', '?')[:19]}.",
             f"Load average (1/5/15 min) before: {load[0]}; after: {load[1]} (the 2 cores are shared, so "
             "absolute times are noisy; ratios come from one run).", "",
             "| group | entry | median (ms) | speed-up vs baseline | target |", "|---|---|---:|---:|---:|"]
    for group, benches in groups.items():
        base = next(b for b in benches if b["extra_info"].get("baseline"))
        target = next((f"≥ {v:g}×" for k, v in TARGETS.items() if group.removeprefix("cpu: ").startswith(k)), "")
        for b in sorted(benches, key=lambda b: -b["stats"]["median"]):
            ratio = base["stats"]["median"] / b["stats"]["median"]
            name = b["name"].split("[")[-1].rstrip("]")
            extra = "".join(f"; {k} {b['extra_info'][k]:.2g}" if isinstance(b["extra_info"][k], float)
                            else f"; {k} {b['extra_info'][k]}" for k in ("residual", "cg_iterations")
                            if k in b["extra_info"])
            lines.append(f"| {group.removeprefix('cpu: ')} | `{name}`{extra} | {b['stats']['median'] * 1e3:.2f} | "
                         f"{ratio:.1f}× | {target if b is not base else 'baseline'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """``python benchmarks/bench_cpu.py [NAME] [pytest args]``: results/NAME.{json,md}, NAME = cpu-2core."""
    args = sys.argv[1:]
    name = args.pop(0) if args and not args[0].startswith("-") else "cpu-2core"
    out = Path(__file__).parent / "results"
    json_path, md_path = out / f"{name}.json", out / f"{name}.md"
    before = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    code = pytest.main([__file__, "-q", "-p", "no:cacheprovider", "-c", str(Path(__file__).parent / "pytest.ini"),
                        "--benchmark-only", f"--benchmark-json={json_path}", *args])
    after = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    if json_path.exists() and json_path.stat().st_size:
        md_path.write_text(summarize(json_path, (before, after)))
        print(md_path.read_text())
    raise SystemExit(code)


if __name__ == "__main__":
    main()
