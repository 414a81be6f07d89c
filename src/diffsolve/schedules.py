"""Noise schedules: training tables ᾱ, timestep spacing, and the GE log-linear σ schedule.

VP notation (DESIGN §4): β_t, α_t = 1 − β_t, ᾱ_t = ∏_{i≤t} α_i for training timesteps t = 0..T−1;
the VE noise level of timestep t is σ_t = √(1/ᾱ_t − 1).

- :func:`alphas_cumprod_from_config` / :func:`make_alphas_cumprod`: the table exactly as diffusers
  builds it (float32 arithmetic, returned as float64), from a scheduler, its config, or arguments.
- :func:`spaced_timesteps`: diffusers' ``leading`` / ``trailing`` / ``linspace`` spacing
  (``DDIMScheduler.set_timesteps``), descending.
- :func:`loglinear_timesteps`: the GE sampler's schedule (Permenter & Yuan 2024): σ spaced
  geometrically between σ_max and σ_min, each snapped to the training timestep nearest in log σ.
- :func:`sampling_schedule`: the (t → s) pairs a sampler walks, with ᾱ_t and ᾱ_s; the last step
  goes to the "final" ᾱ (1, or ᾱ_0 for diffusers' ``set_alpha_to_one=False``).

Note: diffusers' ``DDIMScheduler.step`` takes the previous timestep as ``t − T // N`` rather than
the next entry of its own list; the two agree for ``leading`` at every N and for ``trailing`` when
N divides T. :func:`sampling_schedule` steps to the next listed timestep; :func:`diffusers_ddim_schedule`
reproduces diffusers' rule (``ddim(..., step_rule="diffusers")``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "SPACINGS",
    "SamplingSchedule",
    "alphas_cumprod_from_config",
    "diffusers_ddim_schedule",
    "final_alpha_cumprod_from_config",
    "loglinear_timesteps",
    "make_alphas_cumprod",
    "make_betas",
    "sampling_schedule",
    "sigmas_from_alphas_cumprod",
    "spaced_timesteps",
    "validate_alphas_cumprod",
    "zero_snr_patched",
]

SPACINGS = ("leading", "trailing", "linspace")
_BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "laplace", "sigmoid")


def _cosine_alpha_bar(t: float) -> float:
    return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2


def _laplace_alpha_bar(t: float) -> float:
    lmb = -0.5 * math.copysign(1, 0.5 - t) * math.log(1 - 2 * math.fabs(0.5 - t) + 1e-6)
    snr = math.exp(lmb)
    return math.sqrt(snr / (1 + snr))


def _cosine_betas(num_train_timesteps: int, max_beta: float = 0.999, alpha_bar=_cosine_alpha_bar) -> torch.Tensor:
    """Glide's cosine schedule (Nichol & Dhariwal 2021; ``alpha_bar``: another ᾱ(t), e.g. DDPMScheduler's
    ``laplace``), as diffusers' ``betas_for_alpha_bar``."""
    betas = [min(1 - alpha_bar((i + 1) / num_train_timesteps) / alpha_bar(i / num_train_timesteps), max_beta)
             for i in range(num_train_timesteps)]
    return torch.tensor(betas, dtype=torch.float32)


def _rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Lin et al. 2024, Algorithm 1: shift/scale √ᾱ so the last timestep has zero SNR."""
    root = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * (first / (first - last))
    abar = root**2
    alphas = torch.cat([abar[0:1], abar[1:] / abar[:-1]])
    return 1 - alphas


def make_betas(
    num_train_timesteps: int = 1000,
    beta_start: float = 0.0001,
    beta_end: float = 0.02,
    beta_schedule: str = "linear",
    trained_betas: Sequence[float] | torch.Tensor | None = None,
    rescale_betas_zero_snr: bool = False,
) -> torch.Tensor:
    """β (T,) float32 exactly as diffusers' schedulers build ``self.betas`` (``trained_betas`` wins; ``laplace`` and
    ``sigmoid`` as ``DDPMScheduler`` builds them)."""
    if trained_betas is not None:
        betas = torch.as_tensor(trained_betas, dtype=torch.float32).flatten()
    else:
        if not isinstance(num_train_timesteps, int) or isinstance(num_train_timesteps, bool) or num_train_timesteps < 1:
            raise ValueError(f"num_train_timesteps must be a positive int, got {num_train_timesteps!r}")
        for name, beta in (("beta_start", beta_start), ("beta_end", beta_end)):
            if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta < 1:
                raise ValueError(f"{name} must be a number in [0, 1), got {beta!r}")
        if beta_schedule == "linear":
            betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
        elif beta_schedule == "scaled_linear":
            betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float32) ** 2
        elif beta_schedule == "squaredcos_cap_v2":
            betas = _cosine_betas(num_train_timesteps)
        elif beta_schedule == "laplace":  # DDPMScheduler's
            betas = _cosine_betas(num_train_timesteps, alpha_bar=_laplace_alpha_bar)
        elif beta_schedule == "sigmoid":  # DDPMScheduler's (GeoDiff)
            ramp = torch.linspace(-6, 6, num_train_timesteps, dtype=torch.float32)
            betas = torch.sigmoid(ramp) * (beta_end - beta_start) + beta_start
        else:
            raise ValueError(f"beta_schedule must be one of {_BETA_SCHEDULES}, got {beta_schedule!r}")
    if rescale_betas_zero_snr:
        betas = _rescale_zero_terminal_snr(betas)
    return betas


def make_alphas_cumprod(
    num_train_timesteps: int = 1000,
    beta_start: float = 0.0001,
    beta_end: float = 0.02,
    beta_schedule: str = "linear",
    trained_betas: Sequence[float] | torch.Tensor | None = None,
    rescale_betas_zero_snr: bool = False,
) -> torch.Tensor:
    """The training table ᾱ (T,) float64, computed in float32 exactly as diffusers does."""
    betas = make_betas(num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas,
                       rescale_betas_zero_snr)
    return validate_alphas_cumprod(torch.cumprod(1.0 - betas, dim=0).double(), allow_zero_last=rescale_betas_zero_snr)


def _config_dict(config: Any) -> Mapping[str, Any]:
    """A scheduler, its ``FrozenDict`` config, or a plain mapping, as a mapping."""
    if isinstance(config, Mapping):
        return config
    inner = getattr(config, "config", None)
    if isinstance(inner, Mapping):
        return inner
    raise TypeError(f"expected a diffusers scheduler or its config (a mapping), got {type(config).__name__}")


def _config_value(cfg: Mapping[str, Any], key: str, default: Any, kind: str) -> Any:
    """``cfg[key]`` (``default`` when absent) of the JSON type diffusers writes, converted to nothing else:
    ``kind`` "int" (not a bool, not 999.7, not "1000"), "real" (an int or float, not a bool or a string) or "bool"
    (True / False, not "false" or 0). NumPy scalars count as the Python value they equal."""
    value = cfg.get(key, default)
    if isinstance(value, np.generic):
        value = value.item()
    if kind == "bool":
        ok, want = isinstance(value, bool), "true or false (a JSON boolean)"
    elif kind == "int":
        ok, want = isinstance(value, int) and not isinstance(value, bool), "an int (e.g. 1000)"
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        want = "a finite real number (e.g. 0.0001)"
    if not ok:
        raise ValueError(f"the scheduler config's {key} must be {want}, got {type(value).__name__} {value!r}; "
                         f"fix it in the config (nothing is converted silently)")
    return value


def alphas_cumprod_from_config(config: Any) -> torch.Tensor:
    """ᾱ (T,) float64 from a diffusers scheduler or scheduler config (dict / ``scheduler.config``); every value
    must have the JSON type diffusers writes (:func:`_config_value`)."""
    cfg = _config_dict(config)
    return make_alphas_cumprod(
        num_train_timesteps=_config_value(cfg, "num_train_timesteps", 1000, "int"),
        beta_start=float(_config_value(cfg, "beta_start", 0.0001, "real")),
        beta_end=float(_config_value(cfg, "beta_end", 0.02, "real")),
        beta_schedule=cfg.get("beta_schedule", "linear"),
        trained_betas=cfg.get("trained_betas"),
        rescale_betas_zero_snr=_config_value(cfg, "rescale_betas_zero_snr", False, "bool"),
    )


def final_alpha_cumprod_from_config(config: Any, alphas_cumprod: torch.Tensor | None = None) -> float:
    """The ᾱ after the last step: 1.0, or ᾱ_0 when the config says ``set_alpha_to_one=False``."""
    cfg = _config_dict(config)
    if _config_value(cfg, "set_alpha_to_one", True, "bool"):
        return 1.0
    table = alphas_cumprod_from_config(cfg) if alphas_cumprod is None else alphas_cumprod
    return float(table[0])


def validate_alphas_cumprod(alphas_cumprod: Any, *, allow_zero_last: bool = False) -> torch.Tensor:
    """Check a table ᾱ: 1-D, float, in (0, 1), non-increasing. Returns it as float64 (CPU kept as given).

    ᾱ_t = 1 is zero noise, where ε is undefined (ε̂ = (x − √ᾱ x̂0)/√(1−ᾱ) divides by 0): refused; the ᾱ after the
    last step (``final_alpha_cumprod``) may be 1, the table may not."""
    if not isinstance(alphas_cumprod, torch.Tensor):
        raise TypeError(f"alphas_cumprod must be a torch.Tensor of shape (T,), got {type(alphas_cumprod).__name__}")
    if alphas_cumprod.dim() != 1 or alphas_cumprod.numel() < 1:
        raise ValueError(f"alphas_cumprod must have shape (T,) with T >= 1, got {tuple(alphas_cumprod.shape)}")
    if not alphas_cumprod.is_floating_point():
        raise TypeError(f"alphas_cumprod must be floating, got dtype {alphas_cumprod.dtype}")
    a = alphas_cumprod.detach().double()
    # in (0, 1] and non-increasing ⇔ a[0] ≤ 1, a[-1] > 0 (≥ 0 if allowed) and every a[t+1] ≤ a[t]: one pass
    # (NaN fails every comparison; the table is validated on every solve)
    in_range = bool(a[0] < 1) and (bool(a[-1] >= 0) if allow_zero_last else bool(a[-1] > 0))
    if in_range and (a.numel() == 1 or bool((a[1:] <= a[:-1]).all())):
        return a
    if (not allow_zero_last and a.numel() > 1 and bool(a[-1] == 0) and bool((a[:-1] > 0).all()) and bool(a[0] <= 1)
            and bool((a[1:] <= a[:-1]).all())):
        raise ValueError("alphas_cumprod ends at 0 (a zero-terminal-SNR table: diffusers' "
                         "rescale_betas_zero_snr=True), where x̂0 = (x − √(1−ᾱ) ε̂)/√ᾱ divides by 0; "
                         "set its last entry to a small positive value "
                         "(diffusers' Euler and DPM-Solver schedulers use 2**-24; DiffusersDenoiser does this for v- "
                         "and x0-prediction models)")
    if not ((a >= 0) if allow_zero_last else (a > 0)).all() or not (a <= 1).all():
        raise ValueError("alphas_cumprod must lie in (0, 1] (the cumulative product of 1 − β), and below 1: "
                         "ᾱ = 1 only as final_alpha_cumprod, not in the table")
    if bool((a == 1).any()):
        where = [int(i) for i in torch.nonzero(a == 1).flatten()[:4]]
        raise ValueError(f"alphas_cumprod is 1 at t = {where} (zero noise, e.g. beta_start = 0): ε is undefined at "
                         "zero noise (ε̂ = (x − √ᾱ x̂0)/√(1−ᾱ) divides by 0); give a table with every ᾱ_t < 1 "
                         "(beta_start > 0)")
    raise ValueError("alphas_cumprod must be non-increasing in t (more noise at larger t)")


#: ᾱ_{T−1} of a zero-terminal-SNR table, as diffusers' Euler / DPM-Solver schedulers
ZERO_SNR_ALPHA = 2.0**-24


def zero_snr_patched(table: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """A zero-terminal-SNR table (``rescale_betas_zero_snr=True``: ᾱ_{T−1} = 0) with its last entry set to
    min(2⁻²⁴, ᾱ_{T−2}/2), so that x̂0 and ε are defined at t = T−1; ``table`` itself otherwise. ValueError for
    ε-prediction, which gives no x̂0 there (such models are trained with v-prediction)."""
    if table.numel() < 2 or float(table[-1]) != 0.0:
        return table
    if prediction_type == "epsilon":
        raise ValueError("prediction_type='epsilon' with a zero-terminal-SNR schedule (rescale_betas_zero_snr=True: "
                         "ᾱ_{T−1} = 0) gives no x̂0 at t = T−1; such models are trained with v_prediction: pass "
                         "prediction_type='v_prediction' (or 'sample') if the model predicts that, else use the "
                         "config without rescale_betas_zero_snr")
    table = table.clone()
    table[-1] = min(ZERO_SNR_ALPHA, float(table[-2]) / 2)
    return table


def sigmas_from_alphas_cumprod(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """VE noise levels σ_t = √(1/ᾱ_t − 1), same shape."""
    return (1.0 / alphas_cumprod - 1.0).clamp_min(0).sqrt()


def _check_steps(steps: Any, num_train_timesteps: int) -> int:
    if not isinstance(steps, int) or isinstance(steps, bool):
        raise TypeError(f"steps must be an int, got {type(steps).__name__} {steps!r}")
    if not 1 <= steps <= num_train_timesteps:
        raise ValueError(f"steps must be in [1, {num_train_timesteps}] (the model's training timesteps), got {steps}")
    return steps


def spaced_timesteps(num_train_timesteps: int, steps: int, spacing: str = "trailing",
                     steps_offset: int = 0) -> torch.Tensor:
    """Descending int64 timesteps (steps,) as diffusers' ``DDIMScheduler.set_timesteps`` builds them.

    ``linspace``: round(linspace(0, T−1, N)); ``leading``: k·(T // N) + steps_offset;
    ``trailing``: round(arange(T, 0, −T/N)) − 1 (Lin et al. 2024, Table 2).
    """
    _check_steps(steps, num_train_timesteps)
    total = num_train_timesteps
    # numpy arithmetic, as diffusers does it, so rounding ties fall the same way
    if spacing == "linspace":
        ts = np.linspace(0, total - 1, steps).round()[::-1]
    elif spacing == "leading":
        ts = (np.arange(0, steps) * (total // steps)).round()[::-1] + steps_offset
    elif spacing == "trailing":
        # diffusers' np.arange(T, 0, -T/N) has an extra entry (timestep -1) for some N (e.g.
        # T=1000, N=61); we keep the first N, which are the same values.
        ts = np.round(np.arange(total, 0, -total / steps))[:steps] - 1
    else:
        raise ValueError(f"spacing must be one of {SPACINGS} (diffusers' timestep_spacing), got {spacing!r}")
    ts = torch.from_numpy(np.ascontiguousarray(ts).astype(np.int64))
    if int(ts.max()) >= num_train_timesteps or int(ts.min()) < 0:
        raise ValueError(f"steps_offset={steps_offset} puts timesteps outside [0, {num_train_timesteps - 1}]")
    return ts


def loglinear_timesteps(alphas_cumprod: torch.Tensor, steps: int, sigma_max: float | None = None,
                        sigma_min: float | None = None) -> torch.Tensor:
    """GE schedule: N timesteps whose σ are log-linear from σ_max down to σ_min, snapped to the table.

    Defaults: σ_max = σ_{T−1} (the first trailing step), σ_min = σ of the last ``trailing`` DDIM
    timestep for the same N, so both samplers start and end at the same places. Snapping is to the
    nearest log σ; collisions (the table is coarse at low noise) are resolved by moving the larger
    timestep up, so the result stays strictly decreasing with exactly N entries.
    """
    a = validate_alphas_cumprod(alphas_cumprod)
    total = a.numel()
    _check_steps(steps, total)
    sig = sigmas_from_alphas_cumprod(a)
    if sigma_max is None:
        sigma_max = float(sig[-1])
    if sigma_min is None:
        sigma_min = float(sig[int(spaced_timesteps(total, steps, "trailing")[-1])])
    for name, value in (("sigma_max", sigma_max), ("sigma_min", sigma_min)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0 or not math.isfinite(value):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    if sigma_min > sigma_max:
        raise ValueError(f"sigma_min ({sigma_min}) must not exceed sigma_max ({sigma_max})")
    targets = torch.logspace(math.log10(sigma_max), math.log10(sigma_min), steps, dtype=torch.float64)
    log_sig = sig.clamp_min(1e-30).log()
    snapped = (log_sig[None, :] - targets.log()[:, None]).abs().argmin(dim=1).tolist()
    # room for the others: t_i in [N-1-i, T-1-i]; then strictly decreasing from the smallest up
    snapped = [min(max(t, steps - 1 - i), total - 1 - i) for i, t in enumerate(snapped)]
    for i in range(steps - 2, -1, -1):
        snapped[i] = max(snapped[i], snapped[i + 1] + 1)
    return torch.tensor(snapped, dtype=torch.int64)


@dataclass(frozen=True)
class SamplingSchedule:
    """The N steps t_i → s_i a sampler walks (s_i = t_{i+1}; the last goes to the final ᾱ).

    timesteps: (N,) int64 training timesteps passed to the model; alpha_t, alpha_s: (N,) float64 ᾱ
    of source and target (CPU). ``prev_timesteps`` holds s_i, −1 for the final target.
    """

    timesteps: torch.Tensor
    prev_timesteps: torch.Tensor
    alpha_t: torch.Tensor
    alpha_s: torch.Tensor

    def __len__(self) -> int:
        return int(self.timesteps.numel())


def sampling_schedule(alphas_cumprod: torch.Tensor, timesteps: Sequence[int] | torch.Tensor,
                      final_alpha_cumprod: float = 1.0) -> SamplingSchedule:
    """Pairs (t_i → t_{i+1}) over the given descending timesteps, then t_{N−1} → final ᾱ."""
    a = validate_alphas_cumprod(alphas_cumprod).cpu()
    ts = torch.as_tensor(timesteps)
    if ts.dim() != 1 or ts.numel() < 1 or ts.dtype.is_floating_point or ts.dtype == torch.bool:
        raise ValueError(f"timesteps must be a non-empty 1-D sequence of ints, got {timesteps!r}")
    ts = ts.to(torch.int64).cpu()
    if int(ts.min()) < 0 or int(ts.max()) >= a.numel():
        raise ValueError(f"timesteps must lie in [0, {a.numel() - 1}] (the training table), got {ts.tolist()}")
    if ts.numel() > 1 and not bool((ts[1:] < ts[:-1]).all()):
        raise ValueError(f"timesteps must be strictly decreasing, got {ts.tolist()}")
    if not isinstance(final_alpha_cumprod, (int, float)) or not 0 < final_alpha_cumprod <= 1:
        raise ValueError(f"final_alpha_cumprod must be a number in (0, 1], got {final_alpha_cumprod!r}")
    prev = torch.cat([ts[1:], torch.tensor([-1])])
    alpha_t = a[ts]
    alpha_s = torch.cat([a[ts[1:]], torch.tensor([float(final_alpha_cumprod)], dtype=torch.float64)])
    return SamplingSchedule(ts, prev, alpha_t, alpha_s)


def diffusers_ddim_schedule(alphas_cumprod: torch.Tensor, timesteps: Sequence[int] | torch.Tensor,
                            final_alpha_cumprod: float = 1.0) -> SamplingSchedule:
    """The pairs diffusers' ``DDIMScheduler.step`` walks: t_i → t_i − T // N (T = len(ᾱ), N = len(timesteps)).

    A target below 0 goes to the final ᾱ (``final_alpha_cumprod``, as ``set_alpha_to_one``). Equal to
    :func:`sampling_schedule` when every t_i − T // N is the next listed timestep (``leading`` at any N,
    ``trailing`` when N divides T); else the model is still called at the listed t_i but each step lands
    on t_i − T // N (e.g. ``linspace`` N = 7: 999 → 857 while the next call is at 832), as diffusers does.
    """
    listed = sampling_schedule(alphas_cumprod, timesteps, final_alpha_cumprod)
    a = validate_alphas_cumprod(alphas_cumprod).cpu()
    prev = listed.timesteps - a.numel() // len(listed)
    final = torch.tensor(float(final_alpha_cumprod), dtype=torch.float64)
    alpha_s = torch.where(prev >= 0, a[prev.clamp_min(0)], final)
    return SamplingSchedule(listed.timesteps, torch.where(prev >= 0, prev, torch.tensor(-1)), listed.alpha_t, alpha_s)
