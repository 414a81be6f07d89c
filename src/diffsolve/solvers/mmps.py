"""MMPS: moment-matching posterior sampling (Rozet, Andry, Lanusse & Louppe 2024, "Learning diffusion priors
from observations by expectation maximization", §4), on the DDIM(η) step.

MMPS replaces the denoiser's x̂0 = E[x0 | x_t] by an estimate of E[x0 | x_t, y] that matches the first two
moments of p(x0 | x_t): with p(x0 | x_t) ≈ N(x̂0, Σ_t) and y = A x0 + n, n ~ N(0, σ² I), the Gaussian posterior
mean is

    x̂0_y = x̂0 + Σ_t Aᵀ (σ² I + A Σ_t Aᵀ)⁻¹ (y − A x̂0),

x_t (B, C, H, W), y (B, ...). Σ_t is Tweedie's covariance. In VE coordinates x̃ = x0 + σ̃_t ε it is
Cov[x0 | x̃] = σ̃_t² ∂x̂0/∂x̃; the model's VP convention x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε has x̃ = x_t/√ᾱ_t and
σ̃_t² = (1−ᾱ_t)/ᾱ_t, so

    Σ_t = γ_t J,   J = ∂x̂0/∂x_t (B·n × B·n, block diagonal),   γ_t = (1−ᾱ_t)/√ᾱ_t.

J is applied as a vector-Jacobian product through the denoiser (v ↦ Jᵀ v, J taken symmetric as in the paper;
exact for a Gaussian prior). Per step t → s:

1. ε̂ = ε_θ(x_t, t) with a graph, x̂0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t;
2. r = y − A x̂0 (B, ...);
3. u ≈ K⁻¹ r, K = σ² I + γ_t A Jᵀ Aᵀ (the operator actually applied), by ``iters`` iterations of ``solver`` in
   measurement space, started at 0, one VJP each, every inner product per sample, fixed budget (no host sync):
   "gmres" (default) minimises ‖r − K u‖ over the Krylov space (``measurement_gmres``: Arnoldi with modified
   Gram–Schmidt, the (k+1)×k least squares per sample by torch.linalg), "cg" (``measurement_cg``) assumes K
   symmetric positive definite;
4. x̂0_y = x̂0 + γ_t Jᵀ Aᵀ u, without another Aᵀ or VJP: u = Σ_i w_i v_i over the vectors the solver applied
   K to, and γ_t Jᵀ Aᵀ v_i was computed inside that product (the solvers' ``weights=True``);
5. x_s = DDIM_η(x_t, ε̂_y) with ε̂_y = (x_t − √ᾱ_t x̂0_y)/√(1−ᾱ_t), the noise prediction of x̂0_y (the paper
   plugs the posterior denoiser into the sampler), one fused kernel.

A step costs one forward and ``iters`` backward passes of the denoiser (and ``iters`` + 1 products with A and
``iters`` with Aᵀ). K is symmetric positive definite for an exact prior (Gaussian: Σ_t is the true covariance),
where CG and GMRES both reach the exact solve at ``iters`` = m; for a learned denoiser J is neither exactly
symmetric nor PSD. CG's ⟨p, K p⟩ can then fall below σ²⟨p, p⟩, the least it has for a PSD Σ_t, and a step along such
a direction is unbounded: it is skipped per sample. Past one iteration CG also loses conjugacy on a non-symmetric K
and can throw a sample away, while GMRES's residual ‖r − K u‖ cannot grow with ``iters`` (the shipped UNet:
benchmarks/results/mmps-solvers.md): use "cg" for exact priors (they declare ``symmetric_jacobian``), or with
``iters=1`` (azula's setting); past one iteration with any other denoiser a warning says so before the loop.
Defaults: ``solver="gmres"`` as azula's MMPSDenoiser, ``iters=4`` (azula's default is 1: the paper uses one to a
few), η = 1. One iteration leaves the step far from the exact moment-matching update on blurs and large holes; four
reach it closely on the exact prior and gain on photos, at about twice the time per step
(benchmarks/results/mmps-iters.md).
Scale rule: the update is invariant to A → kA, y → ky, σ → kσ (A Σ Aᵀ, σ² and r scale alike, and both solvers
are invariant to K → k²K, r → k²r); the image size enters nowhere.
Measurements: benchmarks/results/ (bench_methods.py).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import torch

from ..kernels import ddim_step
from ._inverse import Diagnostics, check_problem, check_sigma, data_part, residual_norm, route, warn_if_unfit
from ._loop import Sampling, check_int, check_number, prepare, takes_sampling

__all__ = ["SOLVERS", "measurement_cg", "measurement_gmres", "mmps", "posterior_mean"]


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B,) per-sample inner products. On the CPU one BLAS dot per sample: ``vecdot`` materialises the product
    there and reads twice the memory (2× the time at 3×256² per sample); elsewhere ``vecdot``, one kernel."""
    a, b = a.flatten(1), b.flatten(1)
    if a.device.type == "cpu" and a.shape[0] <= 256:
        return torch.stack([torch.dot(ai, bi) for ai, bi in zip(a, b)])
    return torch.linalg.vecdot(a, b, dim=1)


def _shares_memory(t: torch.Tensor, *others: torch.Tensor) -> bool:
    """Whether t's storage is one of ``others``' (a result ``apply`` returned without copying)."""
    ptr = t.untyped_storage().data_ptr()
    return any(ptr == o.untyped_storage().data_ptr() for o in others)


def _add_into(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """a + alpha·b, written into a (a result of A, ours) unless a holds b's memory."""
    return a.add_(b, alpha=alpha) if not _shares_memory(a, b) else torch.add(a, b, alpha=alpha)


def _check_returns(weights: bool, solution: bool) -> None:
    if not solution and not weights:
        raise ValueError("solution=False returns only the weights; pass weights=True with it")


def _view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


def measurement_cg(apply: Callable[[torch.Tensor], torch.Tensor], rhs: torch.Tensor, iters: int, *,
                   floor: float = 0.0, weights: bool = False, solution: bool = True) -> Any:
    """u ≈ K⁻¹ rhs by ``iters`` CG iterations from u = 0, K = ``apply`` SPD per sample; rhs (B, ...).

    Every α, β is a (B,) tensor; a sample whose direction has ⟨p, K p⟩ ≤ ½·``floor``·⟨p, p⟩ or ⟨r, r⟩ = 0
    (solved) takes α = 0 / β = 0 there (torch.where, no sync). ``floor``: a lower bound K ⪰ floor·I that holds
    when K is what it should be (MMPS: σ²I + A Σ Aᵀ with Σ PSD); a direction far below it shows K is not (a
    learned denoiser's Jacobian), and a CG step along it, α = ⟨r, r⟩/⟨p, K p⟩, is unbounded (the ½ leaves room
    for rounding where K ≈ floor·I). 0: only ⟨p, K p⟩ ≤ 0 is skipped.
    ``weights=True`` also returns w (B, iters) with u = Σ_i w_i p_i,
    p_i the vector given to ``apply`` at call i (here w_i = α_i): a linear map of u is then the same sum of that
    map of the p_i, which a caller may have computed inside ``apply``; with ``solution=False`` as well, u is not
    formed and (None, w) is returned."""
    _check_returns(weights, solution)
    u = torch.zeros_like(rhs) if solution else None
    r = rhs
    p = rhs
    rr = _dot(r, r)
    alphas = []
    for _ in range(iters):
        kp = apply(p)
        pkp = _dot(p, kp)
        ok = pkp > 0.5 * floor * _dot(p, p)
        alpha = torch.where(ok, rr / torch.where(ok, pkp, torch.ones_like(pkp)), torch.zeros_like(pkp))
        alphas.append(alpha)
        if solution:
            u = u + _view(alpha, u) * p
        r = r - _view(alpha, r) * kp
        rr_new = _dot(r, r)
        live = rr > 0
        beta = torch.where(live, rr_new / torch.where(live, rr, torch.ones_like(rr)), torch.zeros_like(rr))
        p = r + _view(beta, r) * p
        rr = rr_new
    return (u, torch.stack(alphas, 1)) if weights else u


def measurement_gmres(apply: Callable[[torch.Tensor], torch.Tensor], rhs: torch.Tensor, iters: int, *,
                      weights: bool = False, solution: bool = True) -> Any:
    """u ≈ K⁻¹ rhs by ``iters`` GMRES iterations from u = 0, K = ``apply`` any (nonsymmetric) linear map per
    sample; rhs (B, ...), ``apply`` maps (B, ...) → (B, ...) sample by sample.

    Per sample b (no restart, a fixed budget k = ``iters``, no host sync):

    1. β = ‖rhs‖, v₀ = rhs/β;
    2. Arnoldi with modified Gram–Schmidt, j = 0 … k−1: w = K v_j; for i ≤ j: h_ij = ⟨w, v_i⟩, w ← w − h_ij v_i;
       h_{j+1,j} = ‖w‖, v_{j+1} = w/h_{j+1,j} (one ``apply`` per iteration);
    3. c = argmin_c ‖β e₁ − H c‖ with H (B, k+1, k) upper Hessenberg, by a batched QR (torch.linalg, float64);
    4. u = Σ_j c_j v_j: the minimiser of ‖rhs − K u‖ over the Krylov space span{rhs, K rhs, …, K^{k−1} rhs}
       (``weights=True`` also returns c (B, k): v_j is the vector given to ``apply`` at call j, so a linear map of
       u is Σ_j c_j times that map of v_j, which a caller may have computed inside ``apply``; with
       ``solution=False`` as well, u is not formed and (None, c) is returned).

    With k = dim the result is the exact solve; on an SPD K it equals CG in exact arithmetic (same Krylov space,
    residual instead of K-norm optimality, so it differs before convergence). A sample whose Krylov space closes
    early (rhs = 0, solved, or h_{j+1,j} ≤ 1000·ε·‖K v_j‖ with ε of rhs's dtype) gets h_{j+1,j} = 0, v_{j+1} = 0
    and a unit diagonal in H for the unused columns, whose coefficients are then 0, so H stays full rank and the
    answer is the one of the closed space (rhs = 0 → u = 0). The tolerance matters: past the dimension (more
    iterations than measurements, or an invariant subspace reached) w is rounding noise, and normalising it
    would add a spurious direction whose least-squares coefficient can be huge (seen: 8 iterations on a
    4-measurement SR×4 blew the sampler up). NaN compares false there: a NaN or inf from ``apply`` or ``rhs``
    propagates to that sample's u."""
    _check_returns(weights, solution)
    k = iters
    flat = rhs.flatten(1)
    batch = flat.shape[0]
    hd = torch.float64
    h = torch.zeros(batch, k + 1, k, dtype=hd, device=rhs.device)

    rtol = 1000 * torch.finfo(rhs.dtype).eps

    def unit(w: torch.Tensor, floor: torch.Tensor | float = 0.0, inplace: bool = False,
             norm: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        norm = w.norm(dim=1) if norm is None else norm
        gone = norm <= floor  # False for NaN: it propagates
        norm = torch.where(gone, torch.zeros_like(norm), norm)
        scale = torch.where(gone, torch.zeros_like(norm), 1 / torch.where(gone, torch.ones_like(norm), norm))
        return (w.mul_(scale[:, None]) if inplace else w * scale[:, None]), norm, gone

    v0, beta, gone = unit(flat)
    basis = [v0]
    closed = [gone]  # closed[j]: v_j = 0 (the Krylov space ended before j)
    for j in range(k):
        w = apply(basis[j].view_as(rhs)).flatten(1)
        if _shares_memory(w, rhs, *basis):  # updated in place below: never write into the caller's vectors
            w = w.clone()
        for i in range(j + 1):  # modified Gram–Schmidt, in place (a fresh 3×256² buffer costs a pass on the CPU)
            hij = _dot(w, basis[i])
            h[:, i, j] = hij.to(hd)
            w.addcmul_(hij[:, None], basis[i], value=-1)
        after = w.norm(dim=1)
        # ‖K v_j‖ = √(Σ_i h_ij² + ‖w‖²): the projections removed are orthogonal (no second pass over K v_j)
        before = (h[:, :j + 1, j].pow(2).sum(1) + after.to(hd).pow(2)).sqrt().to(after.dtype)
        v, norm, gone = unit(w, rtol * before, inplace=True, norm=after)
        h[:, j + 1, j] = norm.to(hd)
        basis.append(v)
        closed.append(closed[j] | gone)
    dead = torch.stack(closed[:k], 1)  # (B, k): column j unused where v_j = 0
    eye = torch.eye(k + 1, k, dtype=hd, device=rhs.device)
    h = h + dead[:, None, :].to(hd) * eye  # unit diagonal on unused columns (their rows are zero elsewhere)
    g = torch.zeros(batch, k + 1, 1, dtype=hd, device=rhs.device)
    g[:, 0, 0] = beta.to(hd)
    q, r = torch.linalg.qr(h)  # (B, k+1, k), (B, k, k)
    c = torch.linalg.solve_triangular(r, q.transpose(1, 2) @ g, upper=True)[..., 0].to(flat.dtype)  # (B, k)
    if not solution:
        return None, c
    u = basis[0] * c[:, :1]
    for j in range(1, k):
        u.addcmul_(c[:, j:j + 1], basis[j])
    return (u.view_as(rhs), c) if weights else u.view_as(rhs)


SOLVERS: dict[str, Callable[..., torch.Tensor]] = {"gmres": measurement_gmres, "cg": measurement_cg}


def posterior_mean(operator: Any, x_t: torch.Tensor, eps: torch.Tensor, y: torch.Tensor, alpha_t: float,
                   sigma: float, iters: int, solver: str = "gmres") -> tuple[torch.Tensor, torch.Tensor]:
    """(x̂0_y, r): steps 2–4 of the module docstring. eps = ε_θ(x_t) must carry a graph to x_t (requires_grad);
    alpha_t = ᾱ_t; ``iters`` iterations of ``solver`` ("gmres" or "cg") for step 3; returns x̂0_y detached and
    r = y − A x̂0.

    The VJP is taken through the denoiser alone: x̂0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t gives
    Σ_t v = γ_t Jᵀ v = ((1−ᾱ_t)/ᾱ_t) (v − √(1−ᾱ_t) (∂ε̂/∂x_t)ᵀ v)."""
    solve = SOLVERS[solver]
    scale, root = (1 - alpha_t) / alpha_t, (1 - alpha_t) ** 0.5

    lifted: list[torch.Tensor] = []  # (Σ_t/γ) Aᵀ v_i for every vector v_i the solver applies K to

    def apply(v: torch.Tensor) -> torch.Tensor:  # K v / γ = A (Σ_t/γ) Aᵀ v + (σ²/γ) v, one VJP through ε_θ
        w = operator.A_adjoint(v)
        (g,) = torch.autograd.grad(eps, x_t, w, retain_graph=len(lifted) < iters - 1)  # the last frees the graph
        # (Σ_t/γ) w = w − √(1−ᾱ_t) g, written into g unless autograd handed back w's own memory (no new buffer)
        z = torch.add(w, g, alpha=-root, out=None if _shares_memory(g, w) else g)
        lifted.append(z)
        return _add_into(operator.A(z), v, ratio)

    x0 = torch.add(x_t.detach(), eps.detach(), alpha=-root).div_(alpha_t**0.5)
    r = data_part(operator, y - operator.A(x0))  # 2. (the measured entries: K is σ²I elsewhere, whatever y holds)
    ratio = sigma * sigma / scale
    with torch.no_grad():
        # 3. (σ²/γ I + A (Σ_t/γ) Aᵀ) u' = r, γ = (1−ᾱ_t)/ᾱ_t: K/γ, so u' = γ u (both solvers are covariant in K's
        # scale) and the γ of step 4 cancels; u' = Σ_i w_i v_i over the vectors applied
        floor = {"floor": ratio} if solver == "cg" else {}  # K/γ ⪰ (σ²/γ) I where Σ_t is PSD
        _, weights = solve(apply, r, iters, weights=True, solution=False, **floor)
        # 4. x̂0_y = x̂0 + Σ_t Aᵀ u = x̂0 + Σ_i w_i (Σ_t/γ) Aᵀ v_i: the solver's own products, no further Aᵀ or VJP
        x0y = x0
        for i, z in enumerate(lifted):
            x0y.addcmul_(_view(weights[:, i], z), z)
    return x0y, r


@takes_sampling
def mmps(denoiser: Any, operator: Any, y: torch.Tensor, sampling: Sampling, *, sigma: float, solver: str = "gmres",
         iters: int = 4, eta: float = 1.0) -> Any:
    """Sample p(x | y) for y = A x + n, n ~ N(0, σ² I) with N = ``sampling.steps`` MMPS steps (module docstring).

    Args:
        denoiser: ``denoiser(x, t) -> eps`` with ``alphas_cumprod``; must be differentiable in x (VJPs).
        operator: linear operator with ``A``/``A_adjoint`` (``diffsolve.operators``).
        y: measurement (B, ...) float32/float64; one sample per measurement.
        sampling: the shared options (:class:`~diffsolve.solvers.Sampling`; or pass them as keywords).
        sigma: σ > 0, the measurement noise std (or a ``GaussianNoise``).
        solver: the Krylov solver of (σ² I + A Σ_t Aᵀ) u = r, "gmres" (default, as azula: K is not symmetric
            for a learned denoiser) or "cg" (exact only for a symmetric PSD Σ_t; with a learned denoiser
            use iters=1).
        iters: solver iterations per step, an int ≥ 1 (default 4; azula's is 1; each costs one backward pass).
        eta: DDIM η ∈ [0, 1] of the step taken with the corrected x̂0 (default 1).
    Returns:
        x (B, C, H, W), or (x, info) with ``return_info``: {"residual": (N, B) ‖y − A x̂0‖ of the denoiser's x̂0,
        "residual_posterior": (N, B) ‖y − A x̂0_y‖ of the corrected one, "timesteps": (N,), "final_residual" (B,)
        ‖A x − y‖/√m and "data_consistency" (B,) that over σ}.
    """
    sigma = check_sigma(sigma, why="σ² I keeps the measurement-space system positive definite; for noiseless data "
                        "use a small positive value")
    if not isinstance(solver, str):
        raise TypeError(f"solver must be a str, one of {sorted(SOLVERS)}, got {type(solver).__name__} {solver!r}")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {sorted(SOLVERS)} (the measurement-space Krylov solver; "
                         f"'gmres' is the default), got {solver!r}")
    check_int("iters", iters, 1, "solver iterations per step; 4 is the default")
    eta = check_number("eta", eta, 0.0, 1.0)
    if solver == "cg" and iters > 1 and not getattr(denoiser, "symmetric_jacobian", False):
        warnings.warn(f"mmps: solver='cg' with iters={iters} assumes a symmetric PSD denoiser Jacobian (exact priors "
                      "declare symmetric_jacobian = True); a learned denoiser's is neither, and past one iteration CG "
                      "can throw samples away (benchmarks/results/mmps-solvers.md): use solver='gmres' (the default) "
                      "or iters=1", UserWarning, stacklevel=3)
    operator = route(operator, sampling.backend)  # 1. the backend reaches A, Aᵀ (the shape check's included)
    shape = check_problem(operator, y, sampling.x_T)  # 2. (operator, y) → image shape
    loop = prepare(denoiser, shape, sampling, like=y, name="mmps")  # 3. schedule, x_T, generator
    info = Diagnostics(sampling.return_info)
    x = loop.x
    for i in loop.steps():
        a_t, a_s = loop.alpha_t[i], loop.alpha_s[i]
        with torch.enable_grad():  # step 1: ε̂ with a graph through the denoiser
            xg = x.detach().requires_grad_(True)
            eps = loop.eps(xg, i)
            # steps 2–4: x̂0, r, the measurement-space solve and the corrected x̂0_y
            x0y, r = posterior_mean(operator, xg, eps, y, a_t, sigma, iters, solver)
        if sampling.return_info:
            info.add("residual", r.flatten(1).norm(dim=1))
            info.add("residual_posterior", residual_norm(operator, x0y, y))
        # step 5: DDIM_η with the noise prediction of x̂0_y, one fused kernel
        eps_y = torch.add(x, x0y, alpha=-(a_t**0.5)).div_((1 - a_t) ** 0.5)
        x = ddim_step(x, eps_y, a_t, a_s, eta=eta, backend=sampling.backend, **loop.step_noise(i, eta > 0))
        if loop.callback is not None:
            loop.record(i, x, x0y)
    x = loop.finish(x)
    warn_if_unfit("mmps", operator, x, y, sigma, len(loop.schedule))  # one sync, after the loop
    if sampling.return_info:
        return x, info.finish(operator, x, y, loop.schedule.timesteps, sigma=sigma)
    return x
