"""Operators: A, Aᵀ and solve at B × 3 × 256 × 256 (float32), beside the straightforward torch baseline.

Baselines (what one writes without this package):
- blurs: reflect-pad by 30 + depthwise ``conv2d`` with the full 61×61 kernel; Aᵀ by autograd (vjp);
- SR: full-resolution filtering (mirror pad + the 16×16 bicubic or 4×4 box kernel), then striding;
- solves: plain batched CG (Hestenes–Stiefel, per-sample scalars) on the baseline A / Aᵀ, ``CG_ITERS``
  iterations, against our exact solve as ``solve`` runs it (residual verified by one more AᵀA product), or
  for the motion blur, which has no exact solve, our batched CG with the same iteration count as the solvers
  run it (``solve_unchecked``: no convergence warning).
Every group pairs ours with its baseline (``extra_info["baseline"]``); ``benchmarks/report.py`` turns
saved runs into ratios. Environment: ``DIFFSOLVE_BENCH_BATCHES`` (default "1,8"),
``DIFFSOLVE_BENCH_ROUNDS`` (5), ``DIFFSOLVE_BENCH_CG_ITERS`` (50).

    python -m pytest benchmarks/bench_operators.py --benchmark-only --benchmark-json=benchmarks/results/operators_<device>.json
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F

from diffsolve.operators import GaussianBlur, Inpainting, MotionBlur, SuperResolution, motion_kernel
from diffsolve.operators.bicubic import cubic

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
BATCHES = [int(b) for b in os.environ.get("DIFFSOLVE_BENCH_BATCHES", "1,8").split(",")]
SIZE, CHANNELS, FACTOR = 256, 3, 4
CG_ITERS = int(os.environ.get("DIFFSOLVE_BENCH_CG_ITERS", "50"))
ROUNDS = int(os.environ.get("DIFFSOLVE_BENCH_ROUNDS", "5"))


def _sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------- baselines
def _depthwise(xp: torch.Tensor, k2d: torch.Tensor, stride: int = 1) -> torch.Tensor:
    c = xp.shape[1]
    return F.conv2d(xp, k2d.expand(c, 1, *k2d.shape), groups=c, stride=stride)


def _mirror_pad(x: torch.Tensor, p: int) -> torch.Tensor:
    """Half-sample symmetric padding (edge repeated), MATLAB imresize's boundary."""
    def idx(n):
        j = torch.arange(-p, n + p, device=x.device) % (2 * n)
        return torch.where(j >= n, 2 * n - 1 - j, j)
    return x.index_select(2, idx(x.shape[2])).index_select(3, idx(x.shape[3]))


def baseline_blur(kernel61: torch.Tensor):
    return lambda x: _depthwise(torch.nn.ReflectionPad2d(30)(x), kernel61)


def baseline_bicubic(s: int, like: torch.Tensor):
    d = np.arange(4 * s) - (4 * s - 1) / 2  # tap offsets from the output's centre
    w = cubic(d / s) / s
    taps = torch.tensor(w / w.sum(), dtype=like.dtype, device=like.device)
    k2d = torch.outer(taps, taps)
    pad = 3 * s // 2
    return lambda x: _depthwise(_mirror_pad(x, pad), k2d)[..., ::s, ::s]  # full-res filter, then stride


def baseline_average(s: int, like: torch.Tensor):
    k2d = torch.full((s, s), 1.0 / (s * s), dtype=like.dtype, device=like.device)
    return lambda x: _depthwise(x, k2d)[..., ::s, ::s]


def vjp_adjoint(fn, x_like):
    def adjoint(y):
        return torch.func.vjp(fn, torch.zeros_like(x_like))[1](y)[0]
    return adjoint


def baseline_cg(fn, adjoint, rhs, shift, scale, iters):
    """Plain batched CG on (shift I + scale AᵀA) x = rhs, per-sample step sizes."""
    def k(v):
        return shift * v + scale * adjoint(fn(v))

    def dot(a, b):
        return (a * b).flatten(1).sum(1).view(-1, 1, 1, 1)

    x = torch.zeros_like(rhs)
    r = rhs.clone()
    p = r.clone()
    rr = dot(r, r)
    for _ in range(iters):
        kp = k(p)
        alpha = rr / dot(p, kp)
        x = x + alpha * p
        r = r - alpha * kp
        rr_new = dot(r, r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


# ----------------------------------------------------------------------------- cases
def make_case(name: str, x: torch.Tensor):
    """(operator, baseline A) for one named case on images like x."""
    if name == "gaussian_blur":
        delta = np.zeros((61, 61))
        delta[30, 30] = 1.0
        return GaussianBlur(61, 3.0), baseline_blur(torch.from_numpy(scipy.ndimage.gaussian_filter(delta, 3.0)).to(x))
    if name == "motion_blur":
        return MotionBlur(61, 0.5, seed=0), baseline_blur(motion_kernel(61, 0.5, seed=0).to(x))
    if name == "inpaint_box":
        op = Inpainting.box(SIZE, 128, 16, seed=0)
        m = op.mask.to(x)
        return op, (lambda v: m * v)
    if name == "sr_bicubic":
        return SuperResolution(FACTOR, "bicubic"), baseline_bicubic(FACTOR, x)
    if name == "sr_average":
        return SuperResolution(FACTOR, "average"), baseline_average(FACTOR, x)
    raise KeyError(name)


CASES = ["gaussian_blur", "motion_blur", "inpaint_box", "sr_bicubic", "sr_average"]


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("impl", ["ours", "baseline"])
@pytest.mark.parametrize("what", ["A", "A_adjoint", "solve"])
@pytest.mark.parametrize("case", CASES)
def test_operator(benchmark, case, what, impl, batch):
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(batch, CHANNELS, SIZE, SIZE, generator=gen) * 2 - 1).to(DEVICE)
    op, base_a = make_case(case, x)
    y = op.A(x)
    if batch == 1 and what == "A":  # the baseline computes the same operator (checked once, cheaply)
        torch.testing.assert_close(base_a(x), y, rtol=1e-4, atol=1e-5)
    shift, scale = 0.1, 1.0
    if impl == "ours":
        fn = {
            "A": lambda: op.A(x),
            "A_adjoint": lambda: op.A_adjoint(y),
            # an exact solve as a user calls it (its residual verified by one more AᵀA product); CG as the
            # solvers call it, CG_ITERS iterations with no convergence check (tol 1e-30 never stops it early)
            "solve": ((lambda: op.solve(x, shift, scale)) if op.exact_solve else
                      (lambda: op.solve_unchecked(x, shift, scale, max_iters=CG_ITERS, tol=1e-30))),
        }[what]
    else:
        base_at = vjp_adjoint(base_a, x)
        fn = {
            "A": lambda: base_a(x),
            "A_adjoint": lambda: base_at(y),
            "solve": lambda: baseline_cg(base_a, base_at, x, shift, scale, CG_ITERS),
        }[what]
    benchmark.group = f"operators {case} {what} B={batch}"
    nbytes = (x.numel() + y.numel()) * x.element_size()
    benchmark.extra_info.update(baseline=impl == "baseline", bytes=nbytes if what != "solve" else None,
                                solve=("exact" if op.exact_solve else f"cg {CG_ITERS} it") if impl == "ours"
                                else f"cg {CG_ITERS} it")

    def run():
        out = fn()
        _sync()
        return out

    benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=1)
