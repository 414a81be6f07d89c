"""DDIM(η) sampler (Song et al. 2021, eq. 12), the step every other solver wraps; its loop is shared with GE.

x̂0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t, σ = η √((1−ᾱ_s)/(1−ᾱ_t)) √(1 − ᾱ_t/ᾱ_s),
x_s = √ᾱ_s x̂0 + √(1−ᾱ_s−σ²) ε̂ + σ z — the fused ``diffsolve.kernels.ddim_step``; x (B, C, H, W).
With the same settings and generator it reproduces diffusers' ``DDIMPipeline`` step by step
(``timestep_spacing`` = ``spacing``) for a DDIMScheduler config; for a DDPMScheduler config that clips x̂0
(``clip_sample=True``, the google/ddpm-* checkpoints) pass ``clipped_model_output=False`` to match it, since the
pipeline steps with the raw ε̂ where the default follows the config's own (DDPM) step.
``step_rule="listed"`` (default) steps to the next listed timestep; ``step_rule="diffusers"`` steps t → t − T//N
as ``DDIMScheduler.step`` does, equal to diffusers for every spacing and N (the two rules differ for ``linspace``, and ``trailing`` when N does not divide T).
A config's ``clip_sample``/``thresholding`` reach the step through the denoiser (``diffsolve.models.x0_clip``);
which ε̂ then drives the direction term is ddim's ``clipped_model_output`` (see :func:`ddim`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..kernels import ddim_step, fused_step
from ..schedules import diffusers_ddim_schedule
from ._loop import LoopSetup, Sampling, check_number, prepare, takes_sampling

__all__ = ["STEP_RULES", "ddim", "sample"]

STEP_RULES = ("listed", "diffusers")
#: step(loop, i, x, ε̂_i, ε̂_{i−1} or None, want_x0) -> x_s, or (x_s, x̂0) when want_x0
Step = Callable[[LoopSetup, int, torch.Tensor, torch.Tensor, "torch.Tensor | None", bool], Any]


def check_returns(return_trajectory: bool, sampling: Sampling) -> None:
    """ValueError for ``return_trajectory`` with ``return_info`` (ddim, ge): two return values asked for one slot."""
    if return_trajectory and sampling.return_info:
        raise ValueError("return_trajectory=True and return_info=True ask for two return values: give one "
                         "(return_info's dict holds the trajectory as info['x0'])")


def sample(loop: LoopSetup, step: Step, return_info: bool,
           model: Callable[[torch.Tensor, int], Any] | None = None) -> Any:
    """The unconditional loop DDIM and GE share (as smalldiffusion's ``samples``): ε̂ → ``step`` → record.

    ``model(x, i)`` replaces ``loop.eps`` (ddim's (x̂0, ε̂_raw) pair). Returns x_0, or
    (x_0, {"x0": (N, *shape) x̂0 of every step, "timesteps": (N,)}) with ``return_info``.
    """
    model = loop.eps if model is None else model
    x, eps_prev = loop.x, None
    for i in loop.steps():
        eps = model(x, i)  # 1. ε̂ = ε_θ(x_t, t)
        out = step(loop, i, x, eps, eps_prev, loop.want_x0)  # 2. the fused update
        x, x0 = out if loop.want_x0 else (out, None)
        eps_prev = eps
        loop.record(i, x, x0)  # 3. trajectory / callback
    out = loop.finish(x)
    if return_info:
        x, trajectory = out
        return x, {"x0": trajectory, "timesteps": loop.schedule.timesteps.clone()}
    return out


@takes_sampling
@torch.no_grad()
def ddim(denoiser: Any, shape: Sequence[int], sampling: Sampling, *, eta: float = 0.0,
         step_rule: str = "listed", clipped_model_output: bool | None = None,
         return_trajectory: bool = False) -> Any:
    """Sample (B, C, H, W) = ``shape`` from a denoiser with N = ``sampling.steps`` DDIM(η) steps.

    Args:
        denoiser: ``denoiser(x, t) -> eps`` with ``alphas_cumprod`` (``diffsolve.models``).
        shape: batch shape (B, C, H, W) (any (B, ...) the denoiser accepts).
        sampling: the shared options (:class:`~diffsolve.solvers.Sampling`; or pass them as keywords).
        eta: η ∈ [0, 1] (0 deterministic, 1 DDPM-like).
        step_rule: ``listed`` (t_i → t_{i+1}) or ``diffusers`` (t_i → t_i − T//N; module docstring).
        clipped_model_output: which ε̂ drives the direction term when the denoiser clips x̂0 (a config's
            ``clip_sample`` / ``thresholding``; the mean term always uses the processed x̂0). True: the ε̂
            recomputed from the processed x̂0 (diffusers' ``use_clipped_model_output=True``, DDPM's step);
            False: the raw model ε̂, x_s = √ᾱ_s clip(x̂0) + √(1−ᾱ_s−σ²) ε̂_raw + σz (``DDIMScheduler.step``'s
            default; needs a denoiser with ``x0_and_eps(x, t)``, as ``DiffusersDenoiser``); None (default): the
            denoiser's ``clipped_model_output``, i.e. its config's scheduler (DDIMScheduler → False,
            DDPMScheduler → True; True for denoisers without one). No effect when nothing is clipped.
        return_trajectory: also return x̂0 of every step, (N, *shape).

    Runs under ``torch.no_grad()`` (sampling needs no graph; guided solvers enable grad locally).

    Returns:
        x_0 (B, ...); (x_0, trajectory) with ``return_trajectory``; (x_0, info) with ``return_info``.
    """
    eta = check_number("eta", eta, 0.0, 1.0)
    if step_rule not in STEP_RULES:
        raise ValueError(f"step_rule must be one of {STEP_RULES}, got {step_rule!r}")
    if clipped_model_output is not None and not isinstance(clipped_model_output, bool):
        raise TypeError(f"clipped_model_output must be True, False or None, got "
                        f"{type(clipped_model_output).__name__} {clipped_model_output!r}")
    check_returns(return_trajectory, sampling)
    loop = prepare(denoiser, shape, sampling, return_trajectory=return_trajectory or sampling.return_info,
                   name="ddim")
    if step_rule == "diffusers":
        loop.schedule = diffusers_ddim_schedule(loop.denoiser.alphas_cumprod, loop.schedule.timesteps,
                                                float(getattr(loop.denoiser, "final_alpha_cumprod", 1.0)))
        loop.alpha_s = loop.schedule.alpha_s.tolist()

    den = loop.denoiser
    use_clipped = getattr(den, "clipped_model_output", True) if clipped_model_output is None else clipped_model_output
    clip = getattr(den, "x0_clip", None)
    if not use_clipped and callable(getattr(den, "x0_and_eps", None)) and bool(getattr(clip, "active", False)):
        return _sample_raw_direction(loop, den, eta, sampling, sampling.return_info and not return_trajectory)

    def step(loop: LoopSetup, i: int, x: torch.Tensor, eps: torch.Tensor, eps_prev: Any, want_x0: bool) -> Any:
        return ddim_step(x, eps, loop.alpha_t[i], loop.alpha_s[i], eta=eta, return_x0=want_x0,
                         backend=sampling.backend, **loop.step_noise(i, eta > 0))

    return sample(loop, step, sampling.return_info and not return_trajectory)


def _sample_raw_direction(loop: LoopSetup, den: Any, eta: float, sampling: Sampling, return_info: bool) -> Any:
    """DDIM with the processed x̂0 in the mean term and the raw ε̂ in the direction term (``clipped_model_output``
    False): x_s = √ᾱ_s x̂0 + √(1−ᾱ_s−σ²) ε̂_raw + σz — one ``fused_step`` with x̂0 in its ε input and ε̂_raw in
    its guidance input, exactly diffusers' arithmetic (no x̂0 recovered through 1/√ᾱ_t). The (N, 8) coefficient
    table is built on the host up front and sent once: no sync in the loop."""
    rows = []
    for a_t, a_s in zip(loop.alpha_t, loop.alpha_s):
        sigma = eta * max((1 - a_s) / (1 - a_t) * (1 - a_t / a_s), 0.0) ** 0.5
        direction = max(1 - a_s - sigma**2, 0.0) ** 0.5
        rows.append([1.0, 0.0, a_s**0.5, direction, sigma, 0.0, 1.0, 0.0])  # [γ, c_x, c_e, c_g, c_z, d_x, d_e, d_g]
    table = torch.tensor(rows, dtype=loop.x.dtype)
    if not bool(torch.isfinite(table).all()):  # on the host, before the one copy: no device sync
        raise ValueError(f"the DDIM coefficients are not finite in {loop.x.dtype}; check the schedule's ᾱ")
    table = table.to(loop.x.device)
    batch = loop.x.shape[0]

    def model(x: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        pair = den.x0_and_eps(x, loop.model_t(i))
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(
                isinstance(e, torch.Tensor) and e.shape == x.shape for e in pair)):
            raise ValueError(f"denoiser.x0_and_eps must return (x0, eps_raw) of shape {tuple(x.shape)}")
        return pair[0].to(x.dtype), pair[1].to(x.dtype)

    def step(loop: LoopSetup, i: int, x: torch.Tensor, eps: Any, eps_prev: Any, want_x0: bool) -> Any:
        x0, eps_raw = eps
        return fused_step(x, x0, table[i].expand(batch, 8), guidance=eps_raw, return_x0=want_x0,
                          backend=sampling.backend, check=False, **loop.step_noise(i, eta > 0))

    return sample(loop, step, return_info, model)
