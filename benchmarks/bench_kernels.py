"""Fused kernels against their torch references and the peers users would pick (issue 5).

Cases at B ∈ {1, 16, 64} × 3 × 256 × 256, float32:

- ``ddim_eta0`` / ``ddim_eta1``: ``ddim_step`` (triton: one pass, in-kernel Philox noise) vs the
  torch reference vs diffusers ``DDIMScheduler.step``; ``triton_kernel`` is the Triton kernel alone
  (coefficient table prepared once, as a sampler loop can), ``triton_graph`` the whole public call
  replayed from a CUDA graph (no Python/host cost);
- ``ge_step``: the gradient-estimation step (reads ε̂ and ε̂_prev);
- ``posterior``: diagonal (inpainting) C-DPS posterior sample;
- ``gauss_blur`` / ``gauss_blur_T``: the DPS Gaussian (61 taps, σ = 3, 25 non-zero) as a separable
  correlation and its adjoint, reflect boundary, vs the DPS code's reflect-pad + 61×61 depthwise
  ``conv2d`` (and its autograd adjoint); ``triton_25taps`` is the dispatched two-pass kernel on the
  25 non-zero taps, ``triton_tile`` the one-pass tile kernel on the same taps;
- ``motion_blur`` / ``motion_blur_T``: a 61×61 camera-shake kernel (dense correlation with zero
  taps skipped) vs the same reflect-pad + ``conv2d``;
- ``sr4_bicubic`` / ``sr4_bicubic_T``, ``avgpool4`` / ``avgpool4_T``: ×4 down-sampling and adjoints;
- ``cg_iter``: one CG iteration without the operator (``cg_dots`` + ``cg_update``) vs the torch
  reference pair vs an eager textbook torch CG iteration; ``cg_iter_graph``: the triton pair
  replayed as a CUDA graph.

Two ways to run it:

- ``python benchmarks/bench_kernels.py --out benchmarks/results/gpu-kernels`` (GPU): times every
  entry with ``triton.testing.do_bench`` (median, CUDA events), measures device copy bandwidth in
  the same run, and writes ``<out>.json`` and ``<out>.md`` (GB/s on the bytes an ideal one-pass
  kernel must move, % of copy bandwidth, speed-up vs the torch reference and vs the peer);
- ``python -m pytest benchmarks/bench_kernels.py --benchmark-only`` (pytest-benchmark; any device;
  ``DIFFSOLVE_BENCH_BATCHES=1,16`` picks the batches, default 1 on CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from typing import Callable

import torch
import torch.nn.functional as F

from diffsolve import kernels as K
from diffsolve.operators.bicubic import bicubic_matrix
from diffsolve.operators.blur_kernels import gaussian_taps, motion_kernel

__all__ = ["CASES", "build_case", "main"]

CASES = ("ddim_eta0", "ddim_eta1", "ge_step", "posterior", "gauss_blur", "gauss_blur_T", "motion_blur",
         "motion_blur_T", "sr4_bicubic", "sr4_bicubic_T", "avgpool4", "avgpool4_T", "cg_iter")
SHAPE = (3, 256, 256)


def _scheduler():
    try:
        from diffusers import DDIMScheduler
    except ImportError:
        return None
    sched = DDIMScheduler(num_train_timesteps=1000, clip_sample=False, set_alpha_to_one=False)
    sched.set_timesteps(50)
    return sched


def _peer_conv(x: torch.Tensor, k2d: torch.Tensor) -> torch.Tensor:
    """The DPS code's blur: reflect pad, then depthwise conv2d with the full kernel."""
    c = x.shape[1]
    p = k2d.shape[0] // 2
    weight = k2d.expand(c, 1, *k2d.shape)
    return F.conv2d(F.pad(x, (p, p, p, p), mode="reflect"), weight, groups=c)


def _peer_conv_adjoint(y: torch.Tensor, k2d: torch.Tensor) -> torch.Tensor:
    """Its adjoint as DPS gets it: autograd through the forward (vjp)."""
    x = torch.zeros_like(y, requires_grad=True)
    (g,) = torch.autograd.grad(_peer_conv(x, k2d), x, y)
    return g


def _eager_cg_iteration(x, r, p, gram_r_unused, rr, shift, scale, kp):
    """Textbook CG (Hestenes–Stiefel) in eager torch, per-sample scalars; kp = K p given."""
    view = (-1, 1, 1, 1)
    alpha = rr / (p * kp).sum((1, 2, 3))
    x = x + alpha.view(view) * p
    r = r - alpha.view(view) * kp
    rr_new = (r * r).sum((1, 2, 3))
    p = r + (rr_new / rr).view(view) * p
    return x, r, p, rr_new


def build_case(name: str, batch: int, device: str) -> tuple[dict[str, Callable[[], object]], int, str | None]:
    """({impl: zero-arg callable}, ideal bytes moved, peer impl name or None) for one case."""
    g = torch.Generator(device=device).manual_seed(0)
    dt = torch.float32
    shape = (batch, *SHAPE)

    def rnd(*s):
        return torch.randn(*(s or shape), generator=g, device=device, dtype=dt)

    n_bytes = batch * SHAPE[0] * SHAPE[1] * SHAPE[2] * 4
    tri = "triton" if device == "cuda" else None
    impls: dict[str, Callable[[], object]] = {}
    peer = None
    if name in ("ddim_eta0", "ddim_eta1", "ge_step"):
        x, eps, eps_prev = rnd(), rnd(), rnd()
        eta = 0.0 if name == "ddim_eta0" else 1.0
        sched = _scheduler()
        t, a_t, a_s = 0, 0.5, 0.6
        if sched is not None:  # the same step as the peer: t → t − 20 of a 50-step DDIM schedule
            t = int(sched.timesteps[10])
            a_t, a_s = float(sched.alphas_cumprod[t]), float(sched.alphas_cumprod[t - 20])
        for be in ("torch", tri):
            if be is None:
                continue
            if name == "ge_step":
                impls[be] = lambda be=be: K.ge_step(x, eps, eps_prev, a_t, a_s, backend=be)
            else:
                impls[be] = lambda be=be: K.ddim_step(x, eps, a_t, a_s, eta=eta, seed=1 if eta else None,
                                                      backend=be)
        if tri is not None:  # the kernel alone (coefficients prepared once), and the whole call graphed
            from diffsolve.kernels import _triton_step

            coefs = torch.rand(batch, 8, generator=g, device=device, dtype=dt)
            prev = eps_prev if name == "ge_step" else None
            seed = 1 if name == "ddim_eta1" else None
            impls["triton_kernel"] = lambda: _triton_step.fused_step(x, eps, coefs, prev, None, None, seed, 0,
                                                                     False)
            impls["triton_graph"] = _graphed(impls[tri])
        if sched is not None and name != "ge_step":
            gen = torch.Generator(device=device).manual_seed(1)
            impls["diffusers"] = lambda: sched.step(eps, t, x, eta=eta,
                                                    generator=gen if eta else None).prev_sample
            peer = "diffusers"
        moved = n_bytes * (4 if name == "ge_step" else 3)
    elif name == "posterior":
        m, t = rnd(), rnd()
        d = (torch.rand(1, 1, *SHAPE[1:], generator=g, device=device) > 0.5).to(dt)
        c = torch.full((batch,), 2.0, device=device)
        w = torch.full((batch,), 100.0, device=device)
        for be in ("torch", tri):
            if be is not None:
                impls[be] = lambda be=be: K.diagonal_posterior_step(m, c, d, t, w, seed=3, backend=be)
        moved = n_bytes * 3
    elif name.startswith(("gauss_blur", "motion_blur")):
        adjoint = name.endswith("_T")
        x = rnd()
        if name.startswith("gauss"):
            taps = gaussian_taps(61, 3.0).to(device=device, dtype=dt)
            k2d = torch.outer(taps, taps)
            fn = K.separable_correlate2d_adjoint if adjoint else K.separable_correlate2d
            for be in ("torch", tri):
                if be is not None:
                    impls[be] = lambda be=be: fn(x, taps, taps, boundary="reflect", backend=be)
            if tri is not None:
                from diffsolve.kernels import _triton_correlate

                short = taps[18:43].contiguous()  # the 25 non-zero taps
                impls["triton_25taps"] = lambda: fn(x, short, short, boundary="reflect", backend="triton")
                tile = (_triton_correlate.separable_correlate2d_tile_adjoint if adjoint
                        else _triton_correlate.separable_correlate2d_tile)
                impls["triton_tile"] = lambda: tile(x, short, short, "reflect")  # one pass, 25 taps
        else:
            k2d = motion_kernel(61, 0.5, seed=0).to(device=device, dtype=dt)
            fn = K.correlate2d_adjoint if adjoint else K.correlate2d
            for be in ("torch", tri):
                if be is not None:
                    impls[be] = lambda be=be: fn(x, k2d, boundary="reflect", backend=be)
        peer_fn = _peer_conv_adjoint if adjoint else _peer_conv
        impls["conv2d_61x61"] = lambda: peer_fn(x, k2d)
        peer = "conv2d_61x61"
        moved = n_bytes * 2
    elif name.startswith(("sr4", "avgpool4")):
        adjoint = name.endswith("_T")
        lo = (batch, SHAPE[0], SHAPE[1] // 4, SHAPE[2] // 4)
        src = rnd(*lo) if adjoint else rnd()
        if name.startswith("sr4"):
            m = bicubic_matrix(SHAPE[1], 4).to(device=device, dtype=dt)
            fn = K.resample_adjoint if adjoint else K.resample
            for be in ("torch", tri):
                if be is not None:
                    impls[be] = lambda be=be: fn(src, m, m, backend=be)
        else:
            fn = K.avg_pool_adjoint if adjoint else K.avg_pool
            for be in ("torch", tri):
                if be is not None:
                    impls[be] = lambda be=be: fn(src, 4, backend=be)
        moved = n_bytes * 17 // 16
    elif name == "cg_iter":
        x, r, p, s, gr = rnd(), rnd(), rnd(), rnd(), rnd()
        shift = torch.full((batch,), 0.5, device=device)
        scale = torch.ones(batch, device=device)
        state = torch.zeros(batch, 5, device=device)
        state[:, 2], state[:, 4] = 1, 1e-30
        for be in ("torch", tri):
            if be is None:
                continue

            def it(be=be):
                dots = K.cg_dots(r, gr, shift, scale, backend=be)
                return K.cg_update(x, r, p, s, gr, shift, scale, dots, state, 0.0, backend=be)
            impls[be] = it
        rr = (r * r).sum((1, 2, 3))
        impls["eager_cg"] = lambda: _eager_cg_iteration(x, r, p, None, rr, shift, scale, gr)
        peer = "eager_cg"
        if device == "cuda":
            impls["triton_graph"] = _graphed(impls["triton"])
        moved = n_bytes * 11  # dots: r, gr; update: x, r, p, s, gr read, x, r, p, s written
    else:
        raise ValueError(f"unknown case {name!r}; choose from {CASES}")
    return impls, moved, peer


def _graphed(fn: Callable[[], object]) -> Callable[[], None]:
    """``fn`` captured once in a CUDA graph (after a warm-up that compiles it); returns replay."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    return graph.replay


# ----------------------------------------------------------------------------- GPU script
def _copy_bandwidth(n_bytes: int = 2**29) -> float:
    """Device-to-device copy bandwidth in GB/s of a copy moving ``n_bytes`` (read + write; default
    two 256 MiB buffers: the device's sustained rate)."""
    from triton.testing import do_bench

    src = torch.empty(max(1, n_bytes // 8), device="cuda")
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src), warmup=25, rep=200, return_mode="median")
    return 2 * src.numel() * 4 / (ms * 1e-3) / 1e9


def run_gpu(batches: list[int], cases: list[str], out: str | None = None) -> dict:
    """Time every case; with ``out``, rewrite ``<out>.json``/``.md`` after each case (partial runs keep)."""
    from triton.testing import do_bench
    import triton

    copy_gbs = _copy_bandwidth()
    rows = []
    for name in cases:
        for b in batches:
            impls, moved, peer = build_case(name, b, "cuda")
            same_gbs = _copy_bandwidth(moved)  # a copy of the same size: small sizes cannot reach the sustained rate
            times = {}
            for impl, fn in impls.items():
                fn()  # compile / warm up
                torch.cuda.synchronize()
                slow = impl in ("conv2d_61x61", "torch") and "blur" in name
                times[impl] = do_bench(fn, warmup=2 if slow else 10, rep=30 if slow else 50,
                                       return_mode="median")
            for impl, ms in times.items():
                gbs = moved / (ms * 1e-3) / 1e9
                rows.append(dict(case=name, batch=b, impl=impl, ms=ms, gbs=gbs, pct_copy=100 * gbs / copy_gbs,
                                 pct_same_copy=100 * gbs / same_gbs,
                                 vs_torch=times["torch"] / ms, vs_peer=(times[peer] / ms) if peer else None))
                print(f"{name:14s} B={b:3d} {impl:14s} {ms * 1e3:10.1f} us {gbs:8.1f} GB/s "
                      f"{100 * gbs / copy_gbs:6.1f}% copy  x{times['torch'] / ms:7.2f} vs torch"
                      + (f"  x{times[peer] / ms:7.2f} vs {peer}" if peer else ""), flush=True)
            del impls
            torch.cuda.empty_cache()
        res = dict(device=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
                   host=platform.node(), copy_gbs=copy_gbs, shape=list(SHAPE), dtype="float32", rows=rows)
        if out is not None:
            with open(out + ".json", "w") as f:
                json.dump(res, f, indent=1)
            with open(out + ".md", "w") as f:
                f.write(to_markdown(res))
    return res


def to_markdown(res: dict) -> str:
    lines = [f"## Fused kernels on {res['device']} (torch {res['torch']}, triton {res['triton']})", "",
             f"Per-image shape {tuple(res['shape'])}, {res['dtype']}; median of `triton.testing.do_bench`. "
             f"Measured device copy bandwidth: **{res['copy_gbs']:.0f} GB/s** (read + write). "
             "GB/s counts the bytes an ideal single-pass kernel must move (the same for every entry of a "
             "case), so it is an effective rate. % same-size copy compares with a copy moving those bytes.", "",
             "| case | B | impl | time (µs) | GB/s | % copy BW | % same-size copy | × vs torch ref | × vs peer |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        peer = f"{r['vs_peer']:.2f}" if r["vs_peer"] is not None else ""
        same = f"{r['pct_same_copy']:.1f}" if "pct_same_copy" in r else ""  # absent in older runs
        lines.append(f"| {r['case']} | {r['batch']} | {r['impl']} | {r['ms'] * 1e3:.1f} | {r['gbs']:.0f} | "
                     f"{r['pct_copy']:.1f} | {same} | {r['vs_torch']:.2f} | {peer} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="GPU kernel benchmark (see module docstring)")
    parser.add_argument("--out", default="benchmarks/results/gpu-kernels", help="path without extension")
    parser.add_argument("--batches", default="1,16,64")
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("this script times GPU kernels; on CPU use pytest-benchmark (module docstring)")
    run_gpu([int(b) for b in args.batches.split(",")], args.cases.split(","), args.out)
    print(f"wrote {args.out}.json and {args.out}.md")


# ----------------------------------------------------------------------------- pytest-benchmark
def _bench_batches() -> list[int]:
    default = "1,16,64" if torch.cuda.is_available() else "1"
    return [int(b) for b in os.environ.get("DIFFSOLVE_BENCH_BATCHES", default).split(",")]


try:
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

if pytest is not None:
    _IMPLS = ("torch", "triton", "triton_kernel", "triton_25taps", "triton_tile", "triton_graph", "diffusers",
              "conv2d_61x61", "eager_cg")

    @pytest.mark.parametrize("impl", _IMPLS)
    @pytest.mark.parametrize("batch", _bench_batches())
    @pytest.mark.parametrize("name", CASES)
    def test_kernel(benchmark, name, batch, impl):
        device = "cuda" if torch.cuda.is_available() else "cpu"
        impls, moved, peer = build_case(name, batch, device)
        if impl not in impls:
            pytest.skip(f"{impl} does not apply to {name} on {device}")
        fn = impls[impl]
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

        def run():
            fn()
            sync()

        run()
        benchmark.group = f"{name} B={batch}"
        benchmark.extra_info.update(bytes=moved, impl=impl, baseline=impl == (peer or "torch"))
        benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)


if __name__ == "__main__":
    main()
