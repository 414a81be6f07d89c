"""Pieces every sampling loop shares (DDIM, GE, and the inverse solvers built on them).

A solver loop is: ``setup = prepare(...)`` (validation, timesteps, x_T, noise source, progress
bar) → for each step ``setup.model_t(i)`` / ``setup.step_noise(i)`` / kernel update /
``setup.record(i, x, x0)`` → ``setup.finish(x)`` (one NaN/Inf check, trajectory). Nothing inside
the loop syncs with the device: ᾱ values are Python floats fixed up front, timesteps are indexed
from a device tensor, noise comes from the explicit generator (or in-kernel from one base seed).

Randomness (``noise_source``). ``generator`` is None, one ``torch.Generator``, or a list of B
generators, one per sample (as diffusers' pipelines take it): then sample b's randomness — x_T, every
step's z, a solver's extra draws (C-DPS's chain and perturbations) — comes from generator b only, so a
sample does not depend on the batch it is in (beyond the model's own batch-size rounding, which a
solver's dynamics can grow: DPS's fixed-length steps and RED-diff's per-pixel normalised Adam steps do;
benchmarks/results/batch-rounding.md).

- ``"generator"`` (default): x_T, then each stochastic step's z, drawn with ``torch.randn`` from
  ``generator`` in that order, on the generator's device and moved to the sample's device —
  the same draws as diffusers' ``DDIMPipeline`` with the same generator (a list: one (1, ...) draw
  per generator, concatenated, as diffusers' ``randn_tensor``).
- ``"kernel"``: x_T from the generator, then one base seed (one draw from the generator); step i
  asks the kernel for noise at (seed, offset = (i + 1)·numel) — Philox in-kernel on GPU, no tensor
  of noise materialized. Reproducible per backend, not equal to the "generator" stream. With a list,
  one seed per sample (one draw from each generator) and offset (i + 1)·numel/B.

Checks (all before the first step; the loop itself never syncs): every Python number is finite and in
range, ``steps`` first (before any step size is derived from it), ``device`` exists in this torch,
x_T is finite and has the problem's dtype/device.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch

from ..kernels._checks import check_device, plain_number
from ..kernels._dispatch import check_backend
from ..models.denoiser import as_denoiser, check_sample_shape
from ..schedules import (SPACINGS, SamplingSchedule, loglinear_timesteps, sampling_schedule, spaced_timesteps)

__all__ = ["NOISE_SOURCES", "SAMPLING_FIELDS", "Generators", "LoopSetup", "Sampling", "check_device",
           "check_autograd", "check_finite_tensor", "check_generator", "check_number", "check_steps", "draw", "prepare",
           "select_schedule", "split_options", "takes_sampling"]

NOISE_SOURCES = ("generator", "kernel")
Callback = Callable[[int, int, torch.Tensor, torch.Tensor], Any]
#: None, one generator for the batch, or one generator per sample (B of them).
Generators = torch.Generator | Sequence[torch.Generator] | None


def check_number(name: str, value: object, low: float | None = None, high: float | None = None,
                 *, high_open: bool = False) -> float:
    """A real number, Python's or NumPy's (``plain_number``), in [low, high] (or [low, high) with ``high_open``);
    bool is rejected."""
    value = plain_number(value)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value) or (low is not None and value < low) or (high is not None and (
            value >= high if high_open else value > high)):
        bounds = f"[{low}, {'inf' if high is None else high}{')' if high_open or high is None else ']'}"
        raise ValueError(f"{name} must lie in {bounds} (a finite number), got {value}")
    return value


def check_int(name: str, value: object, low: int, meaning: str = "") -> int:
    """An int ≥ ``low``, Python's or NumPy's (``plain_number``; bool is rejected): TypeError for another type,
    ValueError below ``low``; ``meaning`` (e.g. "solver iterations per step; 4 is the default") goes in the
    message's brackets."""
    about = f" ({meaning})" if meaning else ""
    value = plain_number(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int{about}, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}{about}, got {value}")
    return value


def check_steps(steps: object) -> int:
    """``steps`` must be a positive int, Python's or NumPy's (checked before anything is derived from it)."""
    steps = plain_number(steps)
    if not isinstance(steps, int) or isinstance(steps, bool):
        raise TypeError(f"steps must be an int, got {type(steps).__name__} {steps!r}")
    if steps < 1:
        raise ValueError(f"steps must be in [1, T] (model evaluations, at most the training timesteps T), got {steps}")
    return steps


def check_autograd(name: str, through: str = "the denoiser") -> None:
    """Refuse, before the loop, a method that differentiates (through ``through``) when called inside
    ``torch.inference_mode()``: there a gradient cannot be switched back on and autograd fails after the first model
    call. ``torch.no_grad()`` is fine (the method turns gradients on where it needs them)."""
    if torch.is_inference_mode_enabled():
        raise ValueError(f"{name} differentiates through {through} (autograd), which torch.inference_mode() "
                         "forbids: call it outside inference_mode (torch.no_grad() is fine: the method turns "
                         "gradients on where it needs them)")


def check_flag(name: str, value: object) -> bool:
    """``value`` if it is True or False; a TypeError otherwise (a truthy string or number is not a flag)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_finite_tensor(name: str, t: torch.Tensor) -> None:
    """One host sync, before a loop: raise if ``t`` holds NaN or Inf, naming where."""
    bad = ~torch.isfinite(t.detach())
    if bool(bad.any()):
        per = bad.flatten(1).any(1).nonzero().flatten().tolist() if t.dim() > 1 else []
        raise ValueError(f"{name} contains NaN or Inf ({int(bad.sum())} entries; samples {per[:8]}); "
                         f"pass finite values (mask missing pixels with an Inpainting operator instead)")


def check_generator(generator: object, batch: int) -> Generators:
    """None, a torch.Generator, or a list/tuple of ``batch`` torch.Generators (one per sample)."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, (list, tuple)):
        if not all(isinstance(g, torch.Generator) for g in generator):
            kinds = sorted({type(g).__name__ for g in generator})
            raise TypeError(f"generator list must hold torch.Generator objects, got {kinds}")
        if len(generator) != batch:
            raise ValueError(f"generator is a list of {len(generator)} generators but the batch has {batch} "
                             f"samples; give one generator per sample (or a single generator)")
        return list(generator)
    raise TypeError(f"generator must be a torch.Generator, a list of B of them, or None, got "
                    f"{type(generator).__name__}")


def select_schedule(denoiser: Any, steps: int, spacing: str = "trailing", *,
                    timesteps: Sequence[int] | torch.Tensor | None = None,
                    sigma_max: float | None = None, sigma_min: float | None = None,
                    steps_offset: int = 0) -> SamplingSchedule:
    """The sampling schedule on the denoiser's table: ``timesteps`` if given (then ``steps`` must
    match their count), else ``spacing`` ∈ {leading, trailing, linspace, loglinear}."""
    table = denoiser.alphas_cumprod
    total = table.numel()
    final = float(getattr(denoiser, "final_alpha_cumprod", 1.0))
    steps = check_steps(steps)
    if not 1 <= steps <= total:
        raise ValueError(f"steps must be in [1, {total}] (the model's training timesteps), got {steps}")
    if timesteps is not None:
        ts = torch.as_tensor(timesteps)
        if ts.numel() != steps:
            raise ValueError(f"timesteps has {ts.numel()} entries but steps={steps}")
        return sampling_schedule(table, ts, final)
    if spacing == "loglinear":
        ts = loglinear_timesteps(table, steps, sigma_max, sigma_min)
    elif spacing in SPACINGS:
        if sigma_max is not None or sigma_min is not None:
            raise ValueError(f"sigma_max/sigma_min apply to spacing='loglinear', not {spacing!r}")
        first = (steps - 1) * (total // steps) + steps_offset
        if spacing == "leading" and steps_offset and first >= total:
            fits = next((n for n in range(steps - 1, 0, -1) if (n - 1) * (total // n) + steps_offset < total), None)
            other = f"e.g. steps={fits}, or " if fits else ""
            raise ValueError(f"steps={steps} with spacing='leading' puts the first timestep at {first} >= T={total}: "
                             f"the model's scheduler config adds steps_offset={steps_offset} (as diffusers does); use "
                             f"{other}spacing='trailing'")
        ts = spaced_timesteps(total, steps, spacing, steps_offset)
    else:
        raise ValueError(f"spacing must be one of {SPACINGS + ('loglinear',)}, got {spacing!r}")
    return sampling_schedule(table, ts, final)


def config_steps_offset(denoiser: Any, spacing: str) -> int:
    """The ``steps_offset`` of the denoiser's scheduler config where ``spacing`` is ``leading`` (diffusers adds it
    there only), else 0."""
    config = getattr(denoiser, "scheduler_config", None)
    if spacing != "leading" or not hasattr(config, "get"):
        return 0
    offset = config.get("steps_offset", 0) or 0
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise ValueError(f"the scheduler config's steps_offset must be a non-negative int, got {offset!r}")
    return offset


def _check_generator_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    gen_device = generator.device if generator is not None else device
    if gen_device.type != device.type and gen_device.type != "cpu":
        raise ValueError(f"generator is on {gen_device} but samples are on {device}; use a CPU generator or "
                         f"one on {device}")
    return gen_device


def draw(shape: tuple[int, ...], generator: Generators, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Standard normal noise (shape) from ``generator`` (on its device), then moved — as diffusers'
    ``randn_tensor``; a list of B generators draws sample b's (1, ...) slice from generator b."""
    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators for a batch of {shape[0]}; give one per sample")
        return torch.cat([torch.randn((1, *shape[1:]), generator=g, dtype=dtype,
                                      device=_check_generator_device(g, device)).to(device) for g in generator])
    gen_device = _check_generator_device(generator, device)
    return torch.randn(shape, generator=generator, dtype=dtype, device=gen_device).to(device)


_draw = draw  # the name the solvers import


def _base_seed(generator: torch.Generator | None) -> int:
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=device))


@dataclass
class LoopSetup:
    """Everything a loop needs, decided before the first step (see module docstring)."""

    denoiser: Any
    schedule: SamplingSchedule
    x: torch.Tensor
    alpha_t: list[float]
    alpha_s: list[float]
    timesteps: torch.Tensor  # (N,) int64 on the sample's device
    generator: Generators
    noise_source: str
    seed: int | list[int] | None
    callback: Callback | None
    return_trajectory: bool
    progress: bool
    name: str
    trajectory: list[torch.Tensor] = field(default_factory=list)
    model_calls: int = 0  # forward denoiser calls so far (the NFE return_info reports; a host count, no sync)

    @property
    def want_x0(self) -> bool:
        return self.return_trajectory or self.callback is not None

    def steps(self):
        """Step indices 0..N−1, with a tqdm bar when ``progress``."""
        return self.track(range(len(self.schedule)))

    def track(self, plan: Sequence[Any]) -> Any:
        """``plan`` (the steps a method runs, e.g. DDNM's with its time-travel re-runs), with a tqdm bar when
        ``progress``."""
        if not self.progress:
            return plan
        from tqdm.auto import tqdm

        return tqdm(plan, desc=self.name, total=len(plan))

    def model_t(self, i: int) -> torch.Tensor:
        """(B,) int64 timesteps for the model call of step i."""
        return self.timesteps[i].expand(self.x.shape[0])

    def eps(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """ε̂ = denoiser(x, t_i) in x's dtype; its type, dtype and shape are checked (no sync)."""
        return self.eps_at(x, self.model_t(i))

    def eps_at(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """ε̂ = denoiser(x, t) at training timesteps t (B,) (DAPS's inner ODE), checked as :meth:`eps`; counted."""
        self.model_calls += 1
        return self.check_eps(self.denoiser(x, t), x)

    @staticmethod
    def check_eps(out: object, x: torch.Tensor) -> torch.Tensor:
        """The denoiser's output ``out`` as ε̂ in x's dtype: a real floating tensor of x's shape (no sync); an integer,
        bool or complex ε̂ is refused, not cast (a cast would drop its imaginary part or hide a broken model)."""
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"the denoiser returned a {type(out).__name__}, expected a torch.Tensor ε̂ of shape "
                            f"{tuple(x.shape)}; return torch.as_tensor(...) on x's device from the model")
        if not out.is_floating_point():
            raise TypeError(f"the denoiser's output ε̂ has dtype {out.dtype}, expected a real floating tensor "
                            f"(float32/float64); nothing is cast silently: fix the model's return value")
        if out.shape != x.shape:
            raise ValueError(f"denoiser returned {tuple(out.shape)}, expected ε of shape {tuple(x.shape)}")
        return out.to(x.dtype)

    def step_noise(self, i: int, stochastic: bool) -> dict[str, Any]:
        """Keyword arguments for the kernel's noise at step i: ``noise=`` or ``seed=/offset=``."""
        if not stochastic:
            return {}
        if self.noise_source == "kernel":
            per = self.x.numel() if isinstance(self.seed, int) else self.x[0].numel()
            return {"seed": self.seed, "offset": (i + 1) * per}
        return {"noise": draw(tuple(self.x.shape), self.generator, self.x.dtype, self.x.device)}

    def record(self, i: int, x: torch.Tensor, x0: torch.Tensor | None) -> None:
        """After step i: store x̂0 in the trajectory and call the callback(i, t_i, x_s, x̂0)."""
        if self.return_trajectory:
            self.trajectory.append(x0)
        if self.callback is not None:
            self.callback(i, int(self.schedule.timesteps[i]), x, x0)

    def finish(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """One NaN/Inf check (one sync), then x or (x, trajectory (N, *x.shape) of x̂0)."""
        if not bool(torch.isfinite(x).all()):
            raise FloatingPointError(
                f"{self.name}: the sample has NaN/Inf after {len(self.schedule)} steps although the inputs (y, x_T) "
                "were checked finite before the loop; check the denoiser's output, the dtype (fp16 overflow?), "
                "the schedule (ᾱ near 0 or 1) and, for guided methods, a step size or noise level so extreme that "
                "the update overflows")
        if self.return_trajectory:
            return x, torch.stack(self.trajectory)
        return x


@dataclass(frozen=True)
class Sampling:
    """The options every model-based method shares, each described once (here).

    A solver takes ``sampling: Sampling`` beside its own options; :func:`takes_sampling` lets it be called
    with these fields as flat keywords too (``ddim(den, shape, steps=50, generator=g)``), and
    ``diffsolve.solve`` splits flat keywords the same way. Checked by :func:`prepare`, before the loop.
    """

    #: N, the number of sampling steps (model evaluations), an int in [1, T]; may be left out when
    #: ``timesteps`` lists them.
    steps: int = None  # type: ignore[assignment]  # set from ``timesteps`` in __post_init__ when left out
    #: timestep spacing on the training table: ``leading`` | ``trailing`` | ``linspace`` (diffusers; ``leading``
    #: adds the model's scheduler config's ``steps_offset``, as diffusers does) | ``loglinear`` (log-linear in σ);
    #: None: the method's own default (``trailing``; GE: ``loglinear``).
    spacing: str | None = None
    #: explicit (N,) descending training timesteps, overriding ``spacing``.
    timesteps: Sequence[int] | torch.Tensor | None = None
    #: ends of the ``loglinear`` σ schedule (defaults: σ_{T−1}, and σ of the last trailing timestep).
    sigma_max: float | None = None
    sigma_min: float | None = None
    #: the only source of randomness: None, a ``torch.Generator``, or a list of B (one per sample: a
    #: sample's result then does not depend on its batch).
    generator: Generators = None
    #: the starting noise (B, C, H, W) (latents for latent methods); finite, of the problem's dtype/device.
    x_T: torch.Tensor | None = None
    #: ``generator`` (torch.randn in diffusers' draw order) or ``kernel`` (Philox in-kernel; module docstring).
    noise_source: str = "generator"
    #: dtype / device of the samples where there is no measurement y to take them from (float32/float64).
    dtype: torch.dtype | None = None
    device: str | torch.device | None = None
    #: kernel backend for the whole solve — step kernels and the operator's A/Aᵀ, CG and structured solves:
    #: ``auto`` | ``torch`` | ``cpp`` | ``triton`` (``auto`` keeps the operator's own backend).
    backend: str = "auto"
    #: show a tqdm bar over the steps.
    progress: bool = False
    #: ``callback(i, t, x_s, x̂0)`` after each step (x̂0 may be None where a method has none).
    callback: Callback | None = None
    #: also return per-step diagnostics: (x, info) with info[name] (N, B) and "timesteps" (N,).
    return_info: bool = False

    def __post_init__(self) -> None:
        if self.steps is None:
            if self.timesteps is None:
                raise TypeError("Sampling needs steps= (the number of sampling steps) or timesteps=")
            object.__setattr__(self, "steps", count_timesteps(self.timesteps))
        else:  # a NumPy integer becomes the int every solver computes with
            object.__setattr__(self, "steps", plain_number(self.steps))


SAMPLING_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Sampling))


@functools.cache
def own_options(fn: Callable[..., Any]) -> tuple[str, ...]:
    """The keyword-only options of solver ``fn`` (its own; the shared ones live in :class:`Sampling`); read once
    per function (``inspect.signature`` costs more than a small solve's step)."""
    params = inspect.signature(fn).parameters.values()
    return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY)


def split_options(name: str, fn: Callable[..., Any], options: dict[str, Any],
                  sampling: Sampling | None = None) -> tuple[Sampling, dict[str, Any]]:
    """(Sampling, own options) from flat keywords; one TypeError naming the method's options otherwise."""
    own = own_options(fn)
    unknown = [k for k in options if k not in own and k not in SAMPLING_FIELDS]
    if unknown:
        raise TypeError(f"{name}() got unknown option(s) {unknown}; its own options are {list(own)} and the "
                        f"shared sampling options are {list(SAMPLING_FIELDS)}")
    shared = {k: v for k, v in options.items() if k in SAMPLING_FIELDS}
    if sampling is not None:
        if not isinstance(sampling, Sampling):
            raise TypeError(f"sampling must be a diffsolve.solvers.Sampling, got {type(sampling).__name__}")
        if shared:
            raise TypeError(f"{name}() got sampling= and the sampling option(s) {sorted(shared)} as keywords; "
                            "give them in one place (dataclasses.replace(sampling, ...))")
        return sampling, {k: v for k, v in options.items() if k in own}
    if shared.get("steps") is None and shared.get("timesteps") is None:
        raise TypeError(f"{name}() needs steps= (the number of sampling steps), or timesteps=, or "
                        "sampling=Sampling(steps=...)")
    return Sampling(**shared), {k: v for k, v in options.items() if k in own}


def count_timesteps(timesteps: object) -> int:
    """N for an explicit ``timesteps`` list given without ``steps`` (its entries are checked with the schedule)."""
    if isinstance(timesteps, (torch.Tensor, np.ndarray)):
        shape = tuple(timesteps.shape)
    elif isinstance(timesteps, (list, tuple, range)):
        nested = any(isinstance(t, (list, tuple, range)) or getattr(t, "ndim", 0) > 0 for t in timesteps)
        shape = (len(timesteps), "...") if nested else (len(timesteps),)
    else:
        raise TypeError("timesteps must be a 1-D sequence or tensor of descending ints, got "
                        f"{type(timesteps).__name__}")
    if len(shape) != 1:
        raise ValueError(f"timesteps must be a 1-D sequence or tensor of descending ints, got one of shape "
                         f"{shape}: give the N timesteps as one flat list, e.g. [900, 600, 300, 0]")
    return shape[0]


def takes_sampling(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Let solver ``fn(..., sampling, *, own options)`` also be called with the sampling options as flat
    keywords (``dps(den, op, y, steps=50, zeta=1.0)``); unknown keywords raise one TypeError."""

    @functools.wraps(fn)
    def call(*args: Any, sampling: Sampling | None = None, **options: Any) -> Any:
        if args and isinstance(args[-1], Sampling):  # given positionally
            if sampling is not None:
                raise TypeError(f"{fn.__name__}() got sampling twice (positionally and as a keyword)")
            args, sampling = args[:-1], args[-1]
        sampling, own = split_options(fn.__name__, fn, options, sampling)
        return fn(*args, sampling, **own)

    return call


def prepare(denoiser: Any, shape: Sequence[int], sampling: Sampling, *, like: torch.Tensor | None = None,
            spacing: str = "trailing", return_trajectory: bool = False, name: str = "sampler",
            x_name: str = "x_T") -> LoopSetup:
    """Validate ``sampling``, choose the timesteps and draw x_T (module docstring).

    ``like``: the measurement y of an inverse problem, whose dtype/device the samples take (``sampling``'s
    dtype/device, if given, must agree); ``spacing``: the method's default where ``sampling.spacing`` is
    None. ``dtype``/``device`` None: x_T's (or float32 on the CPU)."""
    if not isinstance(sampling, Sampling):
        raise TypeError(f"sampling must be a diffsolve.solvers.Sampling, got {type(sampling).__name__}")
    check_flag("return_info", sampling.return_info)
    dtype, device = sampling.dtype, sampling.device
    if like is not None:
        if dtype is not None and dtype != like.dtype:
            raise TypeError(f"dtype={dtype} disagrees with y's dtype {like.dtype}; the samples take y's dtype "
                            "(leave dtype out, or convert y)")
        if device is not None and check_device(device).type != like.device.type:
            raise ValueError(f"device={device} disagrees with y's device {like.device}; the samples take y's "
                             "device (leave device out, or move y)")
        dtype, device = like.dtype, like.device
    setup = _prepare(denoiser, shape, steps=sampling.steps,
                     spacing=spacing if sampling.spacing is None else sampling.spacing,
                     timesteps=sampling.timesteps, sigma_max=sampling.sigma_max, sigma_min=sampling.sigma_min,
                     generator=sampling.generator, callback=sampling.callback, progress=sampling.progress,
                     return_trajectory=return_trajectory, x_T=sampling.x_T, dtype=dtype, device=device,
                     noise_source=sampling.noise_source, name=name, x_name=x_name)
    check_backend(sampling.backend, setup.x.device, setup.x.dtype)  # before the first model call
    return setup


def _prepare(denoiser: Any, shape: Sequence[int], *, steps: int, spacing: str, timesteps: Any, sigma_max: Any,
             sigma_min: Any, generator: Generators, callback: Callback | None, progress: bool,
             return_trajectory: bool, x_T: torch.Tensor | None, dtype: torch.dtype | None,
             device: str | torch.device | None, noise_source: str, name: str, x_name: str) -> LoopSetup:
    steps = check_steps(steps)
    check_flag("progress", progress)
    check_flag("return_trajectory", return_trajectory)
    denoiser = as_denoiser(denoiser)
    shape = check_sample_shape(denoiser, shape)
    generator = check_generator(generator, shape[0])
    dev = check_device(device)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(i, t, x, x0), got {type(callback).__name__}")
    if noise_source not in NOISE_SOURCES:
        raise ValueError(f"noise_source must be one of {NOISE_SOURCES}, got {noise_source!r}")
    schedule = select_schedule(denoiser, steps, spacing, timesteps=timesteps, sigma_max=sigma_max,
                               sigma_min=sigma_min, steps_offset=config_steps_offset(denoiser, spacing))
    if x_T is not None:
        xn = x_name
        if not isinstance(x_T, torch.Tensor) or not x_T.is_floating_point():
            raise TypeError(f"{xn} must be a floating tensor of shape {shape}, got {type(x_T).__name__} "
                            f"{getattr(x_T, 'dtype', '')}")
        if tuple(x_T.shape) != shape:
            raise ValueError(f"{xn} has shape {tuple(x_T.shape)} but the samples have shape {shape}")
        if x_T.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"{xn} must be float32 or float64 (solver state), got {x_T.dtype}")
        if dtype is not None and x_T.dtype != dtype:
            raise TypeError(f"{xn} has dtype {x_T.dtype} but the problem is {dtype} (y's dtype, or dtype=); "
                            f"convert it with .to({dtype}) — nothing is cast silently")
        if dev is not None and x_T.device != dev and not (dev.index is None and x_T.device.type == dev.type):
            raise ValueError(f"{xn} is on {x_T.device} but the problem is on {dev}; move it there")
        check_finite_tensor(xn, x_T)
        x = x_T.detach().clone()
    else:
        dtype = torch.float32 if dtype is None else dtype
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64 (solver state), got {dtype}")
        x = draw(shape, generator, dtype, dev if dev is not None else torch.device("cpu"))
    seed = None
    if noise_source == "kernel":
        seed = [_base_seed(g) for g in generator] if isinstance(generator, list) else _base_seed(generator)
    return LoopSetup(
        denoiser=denoiser, schedule=schedule, x=x, alpha_t=schedule.alpha_t.tolist(),
        alpha_s=schedule.alpha_s.tolist(), timesteps=schedule.timesteps.to(x.device), generator=generator,
        noise_source=noise_source, seed=seed, callback=callback, return_trajectory=return_trajectory,
        progress=progress, name=name)
