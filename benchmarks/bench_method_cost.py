"""Every method's solver cost beyond the model, per NFE, against MPGD's; and against an eager reference-style loop.

Not a test. At B×3×256² (default B = 4), 2 threads, with the cheap ε-model of ``bench_dps`` (ε̂ = 0.1·tanh x,
pointwise and differentiable), so the solvers' own work dominates:

- **diffsolve table**: ``ddim``, ``mpgd``, ``dps``, ``cdps`` (context) and ``pigdm``, ``diffpir``, ``ddnm``,
  ``ddrm``, ``daps``, ``reddiff``, ``mmps`` run through the registry (:mod:`diffsolve.methods`) with the command
  line's options (σ = ``SIGMA`` = 0.05 passed where the method takes σ; so ``ddnm`` runs DDNM+), every other
  option at the solver's default (η, ζ, λ, MMPS's GMRES with iters = 4, ode_steps = 5, langevin_steps = 100,
  …), backend ``auto`` (the C++ kernels), ``--steps`` steps (DAPS: ``--daps-steps`` annealing levels, 5 NFE
  each), for a Gaussian blur (61, σ 3, reflect), a motion blur (61, reflect), a centred 128² box inpainting and bicubic
  SR×4; DDRM and DDNM+ only where the operator has an SVD (not the reflect motion blur).
  The model is timed in the same interleaved run: ``t_fwd`` one ε forward (no_grad), ``t_fwdbwd`` one forward
  + the backward a VJP through it costs, ``t_bwd = t_fwdbwd − t_fwd``. With F forward and K backward model
  calls per solve (F = steps, DAPS 5·levels; K = steps for DPS, ΠGDM, iters·steps for MMPS at its
  default iters, else 0):

      cost beyond the model per NFE = (t_method − F·t_fwd − K·t_bwd) / F

  i.e. (t_method − NFE·t_model_call)/NFE with t_model_call = t_fwd (no backward), t_fwdbwd (one backward per
  NFE) or t_fwd + 2 t_bwd (MMPS). "vs MPGD" divides by MPGD's same quantity for the same operator (target ≤ 2).
  The per-step figure runs every method with ``discrepancy=False``: the pull every method given σ ends with is
  one solve once per run (and only where a sample misfits y, which the cheap ε always does), so spread over a
  few steps it would swamp the per-step cost; it is timed on its own (``discrepancy_pull`` from x = 0).
- **eager table**: the seven newer methods written as their public reference code does it (see each
  ``_eager_*``): plain tensor math for the updates, autograd for gradients / VJPs, A as eager torch
  (``bench_dps._eager_forward``: reflect-pad + 61×61 ``conv2d`` per channel for both blurs, a mask product,
  ``F.interpolate`` bicubic), Aᵀ by autograd where the reference code differentiates A; DDRM, DDNM+ and ΠGDM
  through an SVD applied DDRM-``H_functions``-style (per-axis dense matmuls, flattened and permuted by sorted
  singular value; a gather for inpainting); DiffPIR's proximal step by FFT (USRNet's ``data_solution``, circular;
  the closed-form mask solve for inpainting); DAPS's Langevin loop by autograd of its loss; RED-diff with
  ``torch.optim.Adam``; MMPS's GMRES (azula's default, 1 iteration) with autograd VJPs. Both sides run
  ``--eager-steps`` steps (DAPS: as many levels with ``--eager-langevin`` Langevin steps per level) so the
  ratio eager/diffsolve compares the same work (target ≥ 10; diffsolve with ``discrepancy=False``, the paper's
  result the eager loop computes, while the per-NFE table runs every default). ΠGDM × motion blur has no reference path (no
  SVD; a CG on the dense conv would take minutes): it is not run. Setup outside both loops' steps (SVD factors, FFTs of kernels, timesteps, step sizes) is
  built once and not timed on the eager side.
- **agreement**: each eager loop against diffsolve at 1×3×64², Gaussian blur, 3 steps, same x_T and the same
  generator seed (both draw their noise with ``torch.randn`` in the same order): ‖x_eager − x_diffsolve‖ /
  ‖x_diffsolve‖; DiffPIR also with a circular-boundary blur on both sides (its FFT prox is circular); ΠGDM also
  with the eager SVD's cutoff off (RED-diff's ``pgdm.py`` reaches A through DDRM's ``H_functions``, whose ZERO
  = 3e-2 also drops a blur's small singular values from the noisy guidance; diffsolve's σ > 0 ΠGDM solves exactly).
  RED-diff runs with ``lam_rule="constant", adam_rule="constant"`` there (the paper's λ and Adam, as the eager loop).

Every figure is the best of ``--repeat`` runs with the methods interleaved (each repeat runs every entry once),
so ratios come from one run on a machine other processes share. Writes ``benchmarks/results/method-cost.md``
and ``.json``.

Usage: ``nice python benchmarks/bench_method_cost.py [--batch 4] [--size 256] [--steps 10] [--daps-steps 2]
[--eager-steps 2] [--eager-langevin 5] [--repeat 2] [--threads 2] [--operators gaussian,motion,inpaint,sr4]
[--methods ...] [--no-eager] [--merge]`` (``--merge`` adds or replaces these operators in the existing
``--out`` .json, so an operator can run with its own settings: the motion blur's CG-based rows cost seconds per step).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from bench_dps import OPERATORS, _best, _cheap_model, _eager_forward, _kernel61, _machine, _model_step, _operator

RESULTS = Path(__file__).parent / "results"
SIGMA = 0.05  #: measurement noise std (model's [-1, 1] scale), passed where a method takes σ
NEW = ("pigdm", "diffpir", "ddnm", "ddrm", "daps", "reddiff", "mmps")
CONTEXT = ("mpgd", "dps", "cdps")
NEEDS_SVD = ("ddrm", "ddnm")  # with σ > 0 (DDNM+) both need operator.svd: not the reflect motion blur
NO_EAGER = {("pigdm", "motion"): "no reference path: ΠGDM's code applies A through DDRM's SVD H_functions, "
                                 "which a reflect motion blur lacks; CG on the dense 61×61 conv would take minutes"}


def supports(method: str, op_name: str) -> bool:
    return not (method in NEEDS_SVD and op_name == "motion")


def model_calls(method: str, steps: int) -> tuple[int, int]:
    """(F forward, K backward) model calls of one solve with the defaults (module docstring)."""
    if method == "daps":
        return 5 * steps, 0
    if method in ("dps", "pigdm"):
        return steps, steps
    if method == "mmps":  # iters VJPs a step at its default iters
        from diffsolve.solvers.mmps import mmps

        return steps, inspect.signature(mmps).parameters["iters"].default * steps
    return steps, 0


# ----------------------------------------------------------------------------- diffsolve side
def diffsolve_run(method: str, denoiser, op, y, x_T, steps: int, seed: int = 0, **extra) -> torch.Tensor:
    """One solve through the registry with the CLI's options (σ where the method takes it)."""
    from diffsolve.methods import Problem, get_method

    spec = get_method(method)
    if method == "ddim":
        return spec(denoiser, op, y, steps=steps, x_T=x_T, eta=0.0)
    opts = spec.cli_options(Problem(steps=steps, sigma=SIGMA, operator=op, y=y))
    opts.update(steps=steps, generator=torch.Generator().manual_seed(seed), **extra)
    if method != "reddiff":  # RED-diff's x_T would replace its start μ0 (A⁺y-like): leave it its own
        opts["x_T"] = x_T
    with torch.enable_grad() if spec.backward else torch.no_grad():
        return spec(denoiser, op, y, **opts)


# ----------------------------------------------------------------------------- eager building blocks
def _schedule(denoiser, steps: int) -> list[tuple[int, float, float]]:
    """(t, ᾱ_t, ᾱ_s) per step: diffusers' trailing spacing on the model's table (setup, host floats)."""
    from diffsolve.solvers._loop import select_schedule

    s = select_schedule(denoiser, steps, "trailing")
    return [(int(t), float(a), float(b)) for t, a, b in zip(s.timesteps, s.alpha_t, s.alpha_s)]


def _ddim(x, eps, a_t, a_s, eta, gen):
    """DDIMScheduler.step as plain tensor math (draws z only when σ > 0)."""
    x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
    sig = eta * math.sqrt((1 - a_s) / (1 - a_t)) * math.sqrt(max(1 - a_t / a_s, 0.0))
    out = math.sqrt(a_s) * x0 + math.sqrt(max(1 - a_s - sig**2, 0.0)) * eps
    if sig > 0:
        out = out + sig * torch.randn(x.shape, generator=gen, dtype=x.dtype)
    return out


def _autograd_adjoint(a_fn, shape):
    """Aᵀ v as the reference codes get it: a VJP of the eager A (``torch.autograd.grad``)."""

    def at(v):
        with torch.enable_grad():
            xz = torch.zeros(shape, requires_grad=True)
            return torch.autograd.grad(a_fn(xz), xz, v)[0]

    return at


class EagerSVD:
    """DDRM's ``H_functions`` style: A = U S Vᵀ on flattened vectors (B, C·H·W), coefficients ordered by
    descending singular value through a permutation; per-axis dense matmuls (separable blur, bicubic SR) or the
    identity basis (inpainting, V a permutation). Factors taken from diffsolve's SVD object (setup); per-axis
    singular values below ``cutoff`` (3e-2) of the largest zeroed, as the code's ``ZERO`` does."""

    def __init__(self, op, shape, cutoff: float | None = None):
        from diffsolve.operators.svd import DiagonalSVD
        from diffsolve.solvers._inverse import SINGULAR_CUTOFF

        b, c, h, w = shape
        svd = op.svd((h, w))
        self.shape = (c, h, w)
        self.diag = isinstance(svd, DiagonalSVD)
        if self.diag:
            s = svd.s.reshape(-1, h, w).float()
            s = s.expand(c, h, w) if s.shape[0] == 1 else s
            self.out = (h, w)
        else:
            cut = SINGULAR_CUTOFF if cutoff is None else cutoff
            s = (torch.where(svd.small_axis_singulars(cut), 0.0, svd.s) if cut > 0 else svd.s).float().expand(c, h, w)
            self.u_h, self.v_h, self.u_w, self.v_w = (m.float() for m in (svd.u_h, svd.v_h, svd.u_w, svd.v_w))
            self.out = svd.out_size
        flat = s.reshape(-1)
        self.perm = torch.argsort(flat, descending=True, stable=True)
        self.inv = torch.argsort(self.perm)
        self.s = flat[self.perm]

    def _to(self, img):
        return img.reshape(img.shape[0], -1)[:, self.perm]

    def _from(self, vec):
        return vec[:, self.inv].reshape(vec.shape[0], *self.shape)

    def Vt(self, x):
        return self._to(x if self.diag else self.v_h.T @ x @ self.v_w)

    def V(self, z):
        t = self._from(z)
        return t if self.diag else self.v_h @ t @ self.v_w.T

    def Ut(self, y):
        if self.diag:
            return self._to(y)
        core = self.u_h.T @ y @ self.u_w
        return self._to(F.pad(core, (0, self.shape[2] - core.shape[-1], 0, self.shape[1] - core.shape[-2])))

    def U(self, z):
        t = self._from(z)
        if self.diag:
            return t
        h, w = self.out
        return self.u_h @ t[..., :h, :w] @ self.u_w.T

    def H(self, x):
        return self.U(self.s * self.Vt(x))


def _bicubic_kernel(sf: int) -> torch.Tensor:
    """A 4·sf-tap separable Keys (a = −0.5) bicubic kernel for ×sf down-sampling (USRNet's 'bicubic' k)."""
    t = (torch.arange(4 * sf, dtype=torch.float64) - (4 * sf - 1) / 2) / sf
    a = t.abs()
    k = torch.where(a <= 1, 1.5 * a**3 - 2.5 * a**2 + 1,
                    torch.where(a < 2, -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2, torch.zeros_like(a)))
    k = torch.outer(k, k)
    return (k / k.sum()).float()


def _p2o(k: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """USRNet's p2o: the kernel's OTF on the h×w grid (circular convolution, centred)."""
    g = torch.zeros(h, w)
    g[: k.shape[0], : k.shape[1]] = k
    g = torch.roll(g, (-(k.shape[0] // 2), -(k.shape[1] // 2)), (0, 1))
    return torch.fft.fft2(g)


def _splits(a: torch.Tensor, sf: int) -> torch.Tensor:
    b = torch.stack(torch.chunk(a, sf, dim=-2), dim=-1)
    return torch.cat(torch.chunk(b, sf, dim=-2), dim=-1)


def _diffpir_prox(name: str, op, y: torch.Tensor, shape):
    """x̂0' = argmin ‖y − A z‖² + ρ‖z − x̂0‖², as DiffPIR's code does it: USRNet ``data_solution`` by FFT
    (circular) for blur / SR, the closed-form mask solve for inpainting. Setup: the kernel's OTF and FBFy."""
    b, c, h, w = shape
    if name == "inpaint":
        mask = op.mask.float()
        my = mask * y
        return lambda x0, rho: (my + rho * x0) / (mask + rho)
    if name == "sr4":
        sf, k = 4, _bicubic_kernel(4)
        sty = torch.zeros(shape)
        sty[..., ::sf, ::sf] = y
    else:
        sf, k = 1, _kernel61(op).flip(0, 1)  # correlation with the kernel = convolution with its flip
        sty = y
    fb = _p2o(k, h, w)
    fbc, f2b = fb.conj(), fb.abs() ** 2
    fbfy = fbc * torch.fft.fft2(sty)
    inv_w = _splits(f2b, sf).mean(-1)

    def prox(x0, rho):
        fr = fbfy + torch.fft.fft2(rho * x0)
        fbr = _splits(fb * fr, sf).mean(-1)
        fcb = fbc * (fbr / (inv_w + rho)).repeat(1, 1, sf, sf)
        return torch.fft.ifft2((fr - fcb) / rho).real

    return prox


# ----------------------------------------------------------------------------- eager methods
def eager_pigdm(den, ctx, x_T, steps, gen, eta=1.0):
    """ΠGDM as in RED-diff's ``pgdm.py`` (noisy guidance through DDRM's H_functions): autograd VJP of x̂0."""
    svd, y = ctx["svd"], ctx["y"]
    x = x_T
    for t, a_t, a_s in _schedule(den, steps):
        x = x.detach().requires_grad_()
        eps = den(x, torch.full((x.shape[0],), t))
        x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
        with torch.no_grad():
            r = y - svd.H(x0.detach())
            r2 = 1 - a_t
            v = r2 * svd.V(svd.s / (SIGMA**2 + r2 * svd.s**2) * svd.Ut(r))
        (g,) = torch.autograd.grad(x0, x, v)
        with torch.no_grad():
            x = _ddim(x.detach(), eps.detach(), a_t, a_s, eta, gen) + math.sqrt(a_s) * math.sqrt(a_t) * g
    return x


def eager_diffpir(den, ctx, x_T, steps, gen, lam=1.75, zeta=1.0):
    """DiffPIR's loop (its repo's ``main_ddpir_*``): x̂0, the FFT proximal step, re-noise with ζ (diffsolve's 1)."""
    prox = ctx["prox"]
    x = x_T
    with torch.no_grad():
        for t, a_t, a_s in _schedule(den, steps):
            eps = den(x, torch.full((x.shape[0],), t))
            x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
            x0 = prox(x0, lam * SIGMA**2 / min((1 - a_t) / a_t, 1.0))  # σ̄_t² capped at 1, as diffsolve's default
            eps_p = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
            k_z = math.sqrt((1 - a_s) * zeta)
            x = math.sqrt(a_s) * x0 + math.sqrt((1 - a_s) * (1 - zeta)) * eps_p
            if k_z > 0:
                x = x + k_z * torch.randn(x.shape, generator=gen)
    return x


def eager_ddnm(den, ctx, x_T, steps, gen, eta=0.85):
    """DDNM+ as its code's ``svd_ddnm.ddnm_plus_diffusion`` with DDRM-style H_functions: ``Lambda`` on the
    pseudo-inverse's coefficients, ``Lambda_noise`` on fresh noise and ε̂ (per coefficient, eager V/Vᵀ)."""
    svd, y = ctx["svd"], ctx["y"]
    s = svd.s
    inv_s = torch.where(s > 0, 1 / torch.where(s > 0, s, 1), 0)
    x = x_T
    with torch.no_grad():
        y_bar = svd.Ut(y)
        for t, a_t, a_s in _schedule(den, steps):
            eps = den(x, torch.full((x.shape[0],), t))
            x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
            sigma_t, a = math.sqrt(1 - a_s), math.sqrt(a_s)
            full = s * sigma_t >= a * SIGMA
            lam = torch.where(full, 1.0, s * sigma_t * math.sqrt(1 - eta**2) / (a * SIGMA))
            x0 = x0 - svd.V(lam * inv_s * (s * svd.Vt(x0) - y_bar))
            top_up = (sigma_t**2 - (a * SIGMA * inv_s) ** 2).clamp_min(0).sqrt()
            d1 = torch.where(full & (s > 0), top_up, sigma_t * eta)
            d2 = torch.where(s > 0, 0.0, sigma_t * math.sqrt(1 - eta**2))
            x = a * x0 + svd.V(d1 * svd.Vt(torch.randn(x.shape, generator=gen)) + d2 * svd.Vt(eps))
    return x


def eager_ddrm(den, ctx, x_T, steps, gen, eta=0.85, eta_b=1.0):
    """DDRM's ``efficient_generalized_steps``: everything in the SVD space of H_functions."""
    from diffsolve.solvers.ddrm import _coefficients, _vp_sigma

    svd, y = ctx["svd"], ctx["y"]
    sched = _schedule(den, steps)
    s = svd.s
    coefs = [_coefficients(s, _vp_sigma(a_s), SIGMA, eta, eta_b) for _, _, a_s in sched]
    with torch.no_grad():
        obs = s > 0
        y_bar = svd.Ut(y) * torch.where(obs, 1 / torch.where(obs, s, 1), 0)
        a_T = sched[0][1]
        sig_T = _vp_sigma(a_T)
        init = obs & (s * sig_T > SIGMA)
        spread = (sig_T**2 - (SIGMA / torch.where(init, s, 1)) ** 2).clamp_min(0).sqrt()
        e_bar = svd.Vt(x_T)
        x = math.sqrt(a_T) * svd.V(torch.where(init, y_bar + spread * e_bar, sig_T * e_bar))
        for (t, a_t, a_s), (a, b, c, d) in zip(sched, coefs):
            eps = den(x, torch.full((x.shape[0],), t))
            x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
            zb = a * svd.Vt(x0) + b * y_bar + c * svd.Vt(eps)
            if _vp_sigma(a_s) > 0:
                zb = zb + d * svd.Vt(torch.randn(x.shape, generator=gen))
            x = math.sqrt(a_s) * svd.V(zb)
    return x


def _daps_plan(den, op, steps, shape, sigma):
    """DAPS's levels, ODE sub-levels and Langevin step sizes, as diffsolve's ``daps`` builds them (setup)."""
    from diffsolve.solvers.daps import (LANGEVIN_FRACTION, ODE_SIGMA_MIN, SIGMA_MAX, SIGMA_MIN, _fits, _levels,
                                        edm_sigmas, nearest_timesteps)
    from diffsolve.solvers._inverse import operator_gain

    table = den.alphas_cumprod.detach().double()
    tsig = ((1 - table) / table).sqrt()
    hi, lo = min(SIGMA_MAX, float(tsig.max())), max(SIGMA_MIN, float(tsig.min()))
    while lo * 1.25 < hi and not _fits(tsig, steps, hi, lo):
        lo *= 1.25
    levels = _levels(tsig, steps, hi, lo)
    plan = []
    gram = operator_gain(op, torch.zeros(1, *shape[1:]))
    for t in levels:
        s_i = float(tsig[t])
        ts = [t]
        for u in nearest_timesteps(tsig, edm_sigmas(s_i, min(ODE_SIGMA_MIN, s_i), 5)[1:]):
            ts.append(min(u, ts[-1]))
        alphas = [float(table[u]) for u in ts] + [1.0]
        plan.append((ts, alphas, s_i, LANGEVIN_FRACTION * 2 / (1 / s_i**2 + gram / sigma**2)))
    return plan


def eager_daps(den, ctx, x_T, steps, gen, langevin=100):
    """DAPS's repo: PF-ODE x̂0 by Euler (DDIM η = 0) steps, Langevin on x0 by autograd of its loss, re-noise."""
    a_fn, y, plan = ctx["A"], ctx["y"], ctx["daps_plan"][steps]
    x = x_T
    for i, (ts, alphas, r, lr) in enumerate(plan):
        with torch.no_grad():
            z = x
            for k, t in enumerate(ts):
                z = _ddim(z, den(z, torch.full((z.shape[0],), t)), alphas[k], alphas[k + 1], 0.0, gen)
        x0_hat, x0 = z, z.clone()
        for _ in range(langevin):
            x0 = x0.detach().requires_grad_()
            loss = ((x0 - x0_hat) ** 2).sum() / (2 * r**2) + ((y - a_fn(x0)) ** 2).sum() / (2 * SIGMA**2)
            (g,) = torch.autograd.grad(loss, x0)
            with torch.no_grad():
                x0 = x0 - lr * g + math.sqrt(2 * lr) * torch.randn(x0.shape, generator=gen)
        with torch.no_grad():
            if i + 1 < len(plan):
                a_n = plan[i + 1][1][0]
                x = math.sqrt(a_n) * x0 + math.sqrt(1 - a_n) * torch.randn(x0.shape, generator=gen)
            else:
                x = x0
    return x.detach()


def eager_reddiff(den, ctx, x_T, steps, gen, lam=0.25, lr=0.1):
    """RED-diff's repo: μ an nn.Parameter, the loss by autograd, ``torch.optim.Adam`` (betas 0.9, 0.99)."""
    a_fn, y = ctx["A"], ctx["y"]
    torch.randn(x_T.shape, generator=gen)  # diffsolve's prepare draws its (unused) x_T first: stay in step
    mu = torch.nn.Parameter(ctx["mu0"].clone())
    opt = torch.optim.Adam([mu], lr=lr, betas=(0.9, 0.99))
    for t, a_t, _ in _schedule(den, steps):
        noise = torch.randn(mu.shape, generator=gen)
        with torch.no_grad():
            eps = den(math.sqrt(a_t) * mu + math.sqrt(1 - a_t) * noise, torch.full((mu.shape[0],), t))
        w = lam * math.sqrt(1 - a_t) / math.sqrt(a_t)
        loss = ((y - a_fn(mu)) ** 2).flatten(1).mean(1).sum() / 2 + w * ((eps - noise) * mu).flatten(1).mean(1).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return mu.detach()


def _gmres(apply, rhs, iters):
    """azula's ``gmres`` from 0: Arnoldi (modified Gram–Schmidt) and a least-squares solve, per sample."""
    b = rhs.shape[0]
    flat = rhs.flatten(1)
    beta = flat.norm(dim=1)
    basis = [flat / beta[:, None]]
    h = torch.zeros(b, iters + 1, iters, dtype=torch.float64)
    for j in range(iters):
        w = apply(basis[j].view_as(rhs)).flatten(1)
        for i in range(j + 1):
            h[:, i, j] = (w * basis[i]).sum(1).double()
            w = w - h[:, i, j, None].to(w.dtype) * basis[i]
        h[:, j + 1, j] = w.norm(dim=1).double()
        basis.append(w / w.norm(dim=1)[:, None])
    e1 = torch.zeros(b, iters + 1, 1, dtype=torch.float64)
    e1[:, 0, 0] = beta.double()
    c = torch.linalg.lstsq(h, e1).solution[..., 0].to(rhs.dtype)
    return sum(c[:, j, None] * basis[j] for j in range(iters)).view_as(rhs)


def eager_mmps(den, ctx, x_T, steps, gen, eta=1.0, iters=None):
    """MMPS as azula writes it: x̂0 with a graph, GMRES (``iters``: diffsolve's default) on σ²I + A Σ Aᵀ with
    Σ v = γ Jᵀv by autograd VJPs, A eager, Aᵀ its autograd VJP; the DDIM step on ε̂ of x̂0_y."""
    a_fn, at_fn, y = ctx["A"], ctx["At"], ctx["y"]
    iters = model_calls("mmps", 1)[1] - 1 if iters is None else iters
    x = x_T
    for t, a_t, a_s in _schedule(den, steps):
        gamma = (1 - a_t) / math.sqrt(a_t)
        xg = x.detach().requires_grad_()
        eps = den(xg, torch.full((x.shape[0],), t))
        x0 = (xg - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)

        def cov(v, last=False):
            return gamma * torch.autograd.grad(x0, xg, v, retain_graph=not last)[0]

        with torch.no_grad():
            r = y - a_fn(x0.detach())
            u = _gmres(lambda v: SIGMA**2 * v + a_fn(cov(at_fn(v))), r, iters)
            x0y = x0.detach() + cov(at_fn(u), last=True)
            eps_y = (x - math.sqrt(a_t) * x0y) / math.sqrt(1 - a_t)
            x = _ddim(x, eps_y, a_t, a_s, eta, gen)
    return x


EAGER = {"pigdm": eager_pigdm, "diffpir": eager_diffpir, "ddnm": eager_ddnm, "ddrm": eager_ddrm,
         "daps": eager_daps, "reddiff": eager_reddiff, "mmps": eager_mmps}


def eager_context(name: str, op, y: torch.Tensor, shape, den, daps_levels: tuple[int, ...]) -> dict:
    """Per operator setup for the eager loops (not timed)."""
    from diffsolve.solvers.reddiff import initial_mean

    a_fn = _eager_forward(name, op, shape[1], shape[-1])
    ctx = {"y": y, "A": a_fn, "At": _autograd_adjoint(a_fn, shape), "prox": _diffpir_prox(name, op, y, shape),
           "mu0": initial_mean(op, y), "daps_plan": {n: _daps_plan(den, op, n, shape, SIGMA) for n in daps_levels}}
    if supports("ddrm", name):
        ctx["svd"] = EagerSVD(op, shape)
    return ctx


# ----------------------------------------------------------------------------- runs
def _problem(name: str, batch: int, size: int):
    shape = (batch, 3, size, size)
    gen = torch.Generator().manual_seed(1)
    x_true = torch.rand(shape, generator=gen) * 2 - 1
    x_T = torch.randn(shape, generator=gen)
    op = _operator(name, size)
    y = op.A(x_true)
    y = y + SIGMA * torch.randn(y.shape, generator=gen)
    return shape, op, y, x_T


def _interleave(runs: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    best = {k: float("inf") for k in runs}
    for _ in range(repeat):
        for k, fn in runs.items():
            best[k] = min(best[k], _best(fn, 1))
    return best


def cost_table(den, name: str, methods: tuple[str, ...], batch: int, size: int, steps: int, daps_steps: int,
               repeat: int) -> dict:
    shape, op, y, x_T = _problem(name, batch, size)
    fwd, fwd_bwd = _model_step(den)
    active = [m for m in methods if supports(m, name)]
    n_of = {m: daps_steps if m == "daps" else steps for m in ("ddim", *active)}
    from diffsolve.methods import takes_discrepancy
    from diffsolve.solvers._inverse import discrepancy_pull

    # per step: every method without its one-off final pull (discrepancy=False), timed on its own below
    step_only = {m: {"discrepancy": False} if m != "ddim" and takes_discrepancy(m) else {} for m in ("ddim", *active)}
    x_far = torch.zeros(shape)  # misfits y in every sample: the pull solves
    runs = {"model_fwd": lambda: [fwd(x_T) for _ in range(steps)],
            "model_fwd_bwd": lambda: [fwd_bwd(x_T) for _ in range(steps)],
            "pull": lambda: discrepancy_pull(op, x_far, y, SIGMA, 0.01)}
    for m in ("ddim", *active):
        runs[m] = (lambda m=m: diffsolve_run(m, den, op, y, x_T, n_of[m], **step_only[m]))
    for m in ("ddim", *active):  # warm-up: kernels, operator caches (SVD factors, CG calibration), mkldnn
        diffsolve_run(m, den, op, y, x_T, 1 if m == "daps" else 2, **step_only[m])
    fwd(x_T), fwd_bwd(x_T), runs["pull"]()
    best = _interleave(runs, repeat)
    t_fwd = best["model_fwd"] / steps
    t_bwd = max(0.0, best["model_fwd_bwd"] / steps - t_fwd)
    row = {"steps": steps, "daps_steps": daps_steps, "batch": batch, "size": size, "t_fwd_s": t_fwd, "t_fwdbwd_s": t_fwd + t_bwd, "t_bwd_s": t_bwd, "methods": {}}
    for m in ("ddim", *active):
        f, k = model_calls(m, n_of[m])
        beyond = (best[m] - f * t_fwd - k * t_bwd) / f
        row["methods"][m] = {"total_s": best[m], "steps": n_of[m], "fwd_calls": f, "bwd_calls": k,
                             "model_s": f * t_fwd + k * t_bwd, "beyond_per_nfe_s": beyond}
    ref = row["methods"]["mpgd"]["beyond_per_nfe_s"] if "mpgd" in row["methods"] else None
    for m, r in row["methods"].items():
        r["vs_mpgd"] = r["beyond_per_nfe_s"] / ref if ref and ref > 0 else None
    row["ddim_s"] = best["ddim"]
    row["pull_s"] = best["pull"]
    print(name, {m: (round(r["total_s"], 3), round(1e3 * r["beyond_per_nfe_s"], 2), r["vs_mpgd"] and round(r["vs_mpgd"], 2))
                 for m, r in row["methods"].items()}, flush=True)
    return row


def eager_table(den, name: str, methods: tuple[str, ...], batch: int, size: int, steps: int, langevin: int,
                repeat: int) -> dict:
    shape, op, y, x_T = _problem(name, batch, size)
    active = [m for m in methods if m in EAGER and supports(m, name)]
    ctx = eager_context(name, op, y, shape, den, (1, steps))
    runs, skipped = {}, {}
    for m in active:
        if (m, name) in NO_EAGER:
            skipped[m] = NO_EAGER[(m, name)]
            continue
        # the paper's result, as the eager loop computes it (the discrepancy pull is diffsolve's own last step)
        extra = {"langevin_steps": langevin, "discrepancy": False} if m == "daps" else {"discrepancy": False}
        runs[f"ds:{m}"] = (lambda m=m, e=extra: diffsolve_run(m, den, op, y, x_T, steps, **e))
        kw = {"langevin": langevin} if m == "daps" else {}
        runs[f"eager:{m}"] = (lambda m=m, kw=kw: EAGER[m](den, ctx, x_T, steps, torch.Generator().manual_seed(0), **kw))
    for k, fn in runs.items():  # warm-up
        if k.startswith("ds:"):
            m = k[3:]
            diffsolve_run(m, den, op, y, x_T, 1, discrepancy=False, **({"langevin_steps": langevin} if m == "daps" else {}))
        else:
            m = k[6:]
            EAGER[m](den, ctx, x_T, 1, torch.Generator().manual_seed(0), **({"langevin": langevin} if m == "daps" else {}))
    best = _interleave(runs, repeat)
    out = {}
    for m in active:
        r = {"diffsolve_s": best.get(f"ds:{m}"), "eager_s": best.get(f"eager:{m}"), "steps": steps,
             "langevin": langevin if m == "daps" else None}
        r["eager_over_diffsolve"] = r["eager_s"] / r["diffsolve_s"] if r["eager_s"] else None
        if m in skipped:
            r["skipped"] = skipped[m]
        out[m] = r
    print("eager", name, {m: r["eager_over_diffsolve"] and round(r["eager_over_diffsolve"], 1) for m, r in out.items()},
          flush=True)
    return out


def agreement(den, methods: tuple[str, ...], steps: int = 3, langevin: int = 5) -> dict:
    """‖x_eager − x_diffsolve‖/‖x_diffsolve‖ at 1×3×64², Gaussian blur, same x_T and generator seed; diffsolve with
    ``discrepancy=False`` (the paper's result, which the eager loops transcribe)."""
    shape, op, y, x_T = _problem("gaussian", 1, 64)
    ctx = eager_context("gaussian", op, y, shape, den, (steps,))
    out = {}
    for m in methods:
        if m not in EAGER:
            continue
        extra = {"langevin_steps": langevin, "langevin": "loop"} if m == "daps" else {}  # the eager loop's draws
        if m == "reddiff":  # the paper's λ and Adam at every N and its last iterate, as the eager loop (the defaults
            extra = {"lam_rule": "constant", "adam_rule": "constant", "midpoint": False}  # scale them, average two)
        xd = diffsolve_run(m, den, op, y, x_T, steps, seed=7, discrepancy=False, **extra).detach()
        kw = {"langevin": langevin} if m == "daps" else {}
        xe = EAGER[m](den, ctx, x_T, steps, torch.Generator().manual_seed(7), **kw).detach()
        out[m] = float((xe - xd).norm() / xd.norm())
    for m in [m for m in ("ddnm", "ddrm") if m in out]:  # on the blur's complete basis diffsolve reads its draws
        shape_b, op_b, y_b, x_b = _problem("inpaint", 1, 64)  # as coefficients (the same law, other values); a
        ctx_b = eager_context("inpaint", op_b, y_b, shape_b, den, (steps,))  # mask's basis takes them as they are
        xd = diffsolve_run(m, den, op_b, y_b, x_b, steps, seed=7, discrepancy=False).detach()
        xe = EAGER[m](den, ctx_b, x_b, steps, torch.Generator().manual_seed(7)).detach()
        out[f"{m} (box inpainting: the same draws)"] = float((xe - xd).norm() / xd.norm())
    if "pigdm" in out:  # RED-diff's pgdm.py reaches A through H_functions, whose ZERO also cuts the noisy guidance;
        # diffsolve's σ > 0 ΠGDM solves exactly: the same loop with the cutoff off
        xd = diffsolve_run("pigdm", den, op, y, x_T, steps, seed=7, discrepancy=False).detach()
        xe = EAGER["pigdm"](den, {**ctx, "svd": EagerSVD(op, shape, cutoff=0.0)}, x_T, steps,
                            torch.Generator().manual_seed(7)).detach()
        out["pigdm (eager H without ZERO's cutoff)"] = float((xe - xd).norm() / xd.norm())
    if "diffpir" in out:  # the FFT prox is circular: against diffsolve with a circular-boundary blur too
        from diffsolve.operators import GaussianBlur

        op_c = GaussianBlur(61, 3.0, "circular")
        y_c = op_c.A(x_T.new_zeros(shape).uniform_(-1, 1, generator=torch.Generator().manual_seed(3)))
        xd = diffsolve_run("diffpir", den, op_c, y_c, x_T, steps, seed=7, discrepancy=False)
        xe = eager_diffpir(den, {"prox": _diffpir_prox("gaussian", op_c, y_c, shape)}, x_T, steps,
                           torch.Generator().manual_seed(7))
        out["diffpir (circular blur both sides)"] = float((xe - xd).norm() / xd.norm())
    print("agreement", {m: round(v, 4) for m, v in out.items()}, flush=True)
    return out


def _without(runs: list[str], ops: tuple[str, ...]) -> list[str]:
    """The earlier runs' entries ("op,op: settings") with the operators rerun now taken out (empty ones dropped)."""
    out = []
    for entry in runs:
        names, _, rest = entry.partition(": ")
        left = [n for n in names.split(",") if n not in ops]
        if left:
            out.append(f"{','.join(left)}: {rest}")
    return out


# ----------------------------------------------------------------------------- report
def _f(v, fmt="{:.2f}"):
    return "—" if v is None else fmt.format(v)


def _md(res: dict) -> str:
    a = res["args"]
    lines = ["# Solver cost beyond the model per NFE, and against eager reference-style loops "
             "(benchmarks/bench_method_cost.py)", "", f"Machine: {res['machine']}", "",
             f"Cheap ε-model (ε̂ = 0.1·tanh x), {a['batch']}×3×{a['size']}², steps per operator in its heading (DAPS: "
             f"levels × 5 NFE, 100 Langevin steps per level), σ = {SIGMA} where the method takes it, "
             "each method's other defaults, backend auto (C++). Each figure is the best of the run's --repeat "
             f"interleaved repeats (runs listed below the tables); load average at the end {res.get('load_end', '?')}.",
             "",
             "Cost beyond the model per NFE = (t_method − F·t_fwd − K·t_bwd)/F, F forward and K backward model calls "
             "(F = steps, DAPS 5·levels; K = steps for DPS/ΠGDM, iters·steps for MMPS), t_bwd = t_fwdbwd − t_fwd. "
             "vs MPGD = that over MPGD's for the same operator (target ≤ 2). Per step: every method with "
             "`discrepancy=False`; the discrepancy pull every method given σ ends with (one solve, once per run, only "
             "where a sample misfits y) is timed on its own under each table.", ""]
    for name, row in res["cost"].items():
        lines += [f"## {name}: {row['steps']} steps (DAPS {row['daps_steps']} level(s))", "",
                  f"Model per call: forward {1e3 * row['t_fwd_s']:.2f} ms, forward+backward {1e3 * row['t_fwdbwd_s']:.2f} ms.",
                  "", "| method | total s | F / K | model s | beyond model ms/NFE | vs MPGD (≤ 2) | eager s | "
                  "diffsolve s (same steps) | eager/diffsolve (≥ 10) |", "|---|---|---|---|---|---|---|---|---|"]
        eager = res.get("eager", {}).get(name, {})
        for m, r in row["methods"].items():
            e = eager.get(m, {})
            es = "not run" if e.get("skipped") else _f(e.get("eager_s"), "{:.3f}")
            lines.append(f"| {m} | {r['total_s']:.3f} | {r['fwd_calls']} / {r['bwd_calls']} | {r['model_s']:.3f} | "
                         f"{1e3 * r['beyond_per_nfe_s']:.2f} | {_f(r['vs_mpgd'])} | {es} | "
                         f"{_f(e.get('diffsolve_s'), '{:.3f}')} | {_f(e.get('eager_over_diffsolve'), '{:.3g}')} |")
        if row.get("pull_s") is not None:
            mp = row["methods"].get("mpgd", {}).get("beyond_per_nfe_s")
            lines += ["", f"Discrepancy pull (once per run, where a sample misfits y): {1e3 * row['pull_s']:.1f} ms"
                      + (f", {row['pull_s'] / mp:.1f}× MPGD's cost beyond the model per NFE" if mp else "") + "."]
        lines.append("")
    if res.get("eager"):
        lines += ["Eager columns: both sides at the run's --eager-steps steps (DAPS: as many levels with the run's "
                  "--eager-langevin Langevin steps each; each operator's run is listed below), the same x_T, "
                  "interleaved, diffsolve with `discrepancy=False` (the paper's result, as the eager loop; so do the "
                  "per-NFE columns, the pull being timed on its own under each table); ΠGDM × motion: "
                  f"{NO_EAGER[('pigdm', 'motion')]}. Runs (operators with their own settings, merged): "
                  + "; ".join(res.get("runs", [])) + ".", ""]
    if res.get("agreement"):
        rerun = f" (recomputed {res['agreement_rerun']} with --agreement-only)" if res.get("agreement_rerun") else ""
        lines += [f"## Agreement (1×3×64², Gaussian blur, 3 steps, same x_T and generator seed){rerun}", "",
                  "| method | ‖x_eager − x_diffsolve‖/‖x_diffsolve‖ |", "|---|---|"]
        lines += [f"| {m} | {v:.2e} |" for m, v in res["agreement"].items()]
        lines.append("")
    lines += ["## Targets (computed from the tables above)", ""]
    meet2, miss2, meet10, miss10 = [], [], [], []
    for name, row in res["cost"].items():
        for m in NEW:
            r = row["methods"].get(m)
            if r is None or r["vs_mpgd"] is None:
                continue
            (meet2 if r["vs_mpgd"] <= 2 else miss2).append(f"{m}×{name} {r['vs_mpgd']:.2f}")
            e = res.get("eager", {}).get(name, {}).get(m, {})
            if e.get("eager_over_diffsolve") is not None:
                (meet10 if e["eager_over_diffsolve"] >= 10 else miss10).append(
                    f"{m}×{name} {e['eager_over_diffsolve']:.3g}")
    lines += [f"- ≤ 2× MPGD met ({len(meet2)}): " + ", ".join(meet2), f"- ≤ 2× MPGD missed ({len(miss2)}): "
              + ", ".join(miss2), f"- ≥ 10× eager met ({len(meet10)}): " + ", ".join(meet10),
              f"- ≥ 10× eager missed ({len(miss10)}): " + ", ".join(miss10), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=256,
                        help="image side; at least 64 (the eager loops' 61×61 kernel must fit the image)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--daps-steps", type=int, default=2)
    parser.add_argument("--eager-steps", type=int, default=2)
    parser.add_argument("--eager-langevin", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--operators", default=",".join(OPERATORS))
    parser.add_argument("--methods", default=",".join(CONTEXT + NEW))
    parser.add_argument("--no-eager", action="store_true")
    parser.add_argument("--agreement-only", action="store_true",
                        help="recompute only the agreement table of --out's stored run (seconds: 1x3x64², 3 steps)")
    parser.add_argument("--merge", action="store_true",
                        help="add these operators to the existing --out .json (one operator's settings may differ)")
    parser.add_argument("--out", type=Path, default=RESULTS / "method-cost")
    args = parser.parse_args(argv)
    if args.size < 64:
        parser.error(f"--size {args.size}: the eager reference loops blur with a 61x61 kernel; use --size >= 64")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=r".*steps=")  # short runs
    ops = tuple(o for o in args.operators.split(",") if o)
    methods = tuple(m for m in args.methods.split(",") if m)
    den = _cheap_model()
    t0 = time.time()
    run = (f"{','.join(ops)}: --steps {args.steps} --daps-steps {args.daps_steps} --eager-steps {args.eager_steps} "
           f"--eager-langevin {args.eager_langevin} --repeat {args.repeat} --methods {','.join(methods)}, "
           f"on {_machine().split(',')[0]}, load average {os.getloadavg()[0]:.1f} at its start")
    if args.agreement_only:
        res = json.loads(args.out.with_suffix(".json").read_text())
        res["agreement"] = agreement(den, methods)
        res["agreement_rerun"] = f"{time.strftime('%Y-%m-%d')}, {_machine().split(',')[0]}"
        args.out.with_suffix(".json").write_text(json.dumps(res, indent=2))
        args.out.with_suffix(".md").write_text(_md(res))
        return
    if args.merge and args.out.with_suffix(".json").exists():
        res = json.loads(args.out.with_suffix(".json").read_text())
        res["runs"] = [*_without(res.get("runs", []), ops), run]
        res["machine"] = _machine() + " (the latest run's; each run below names its CPU)"
        if not args.no_eager:  # cheap (1×3×64², 3 steps): always this code's
            res["agreement"] = agreement(den, methods)
    else:
        res = {"machine": _machine(), "args": vars(args) | {"out": str(args.out)}, "sigma": SIGMA, "cost": {},
               "eager": {}, "runs": [run]}
        res["agreement"] = agreement(den, methods) if not args.no_eager else {}
    for name in ops:
        res["cost"][name] = cost_table(den, name, methods, args.batch, args.size, args.steps, args.daps_steps,
                                       args.repeat)
        if not args.no_eager:
            res["eager"][name] = eager_table(den, name, methods, args.batch, args.size, args.eager_steps,
                                             args.eager_langevin, args.repeat)
        res["load_end"] = f"{os.getloadavg()[0]:.1f}"
        res["wall_s"] = time.time() - t0
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(res, indent=2))
        args.out.with_suffix(".md").write_text(_md(res))
    print(_md(res))


if __name__ == "__main__":
    main()
