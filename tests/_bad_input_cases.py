"""A catalogue of bad and edge inputs over diffsolve's public API, and how to judge the outcome.

Used by tests/test_bad_inputs.py (every case must come out right) and by
benchmarks/bad_inputs_sweep.py (counts per outcome, written to benchmarks/results/bad-inputs.md).

Each :class:`Case` is one call as a user would write it, with what a correct library does:

- ``"reject"``: a ValueError/TypeError (or, for a missing file, FileNotFoundError) whose message names
  the argument (``arg``);
- ``"accept"``: a result whose tensors are finite and keep the problem's dtype;
- ``"propagate"``: NaN in, NaN out (a pointwise kernel or a solve: never a finite number);
- ``"report"``: a result, with a warning or an info flag saying it is not what was asked (CG stopped early);
- ``"either"``: an edge where a clear rejection, a finite result or a report are all right.

Outcomes (:func:`judge`): ``rejected`` (clear error), ``accepted-ok``, ``reported``, ``propagated``,
``accepted-wrong`` (returned for a bad input, or returned non-finite / cast / NaN turned into a number),
``raw`` (any other exception, or a ValueError/TypeError that does not name the argument).
Everything runs on tiny CPU shapes with a cheap ε-model (ε = 0.1 x) in well under a minute.
"""

from __future__ import annotations

import re

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["CASES", "Case", "GOOD", "build_cases", "judge"]

NAN, INF = float("nan"), float("inf")
F32, F64 = torch.float32, torch.float64
GOOD = ("rejected", "accepted-ok", "reported", "propagated")


@dataclass
class Case:
    entry: str
    arg: str
    value: str
    call: Callable[[], Any]
    expect: str  # reject | accept | propagate | report | either
    dtype: torch.dtype | None = None  # the problem's dtype an accepted result must keep

    @property
    def name(self) -> str:
        return f"{self.entry}:{self.arg}={self.value}"


def _tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _tensors(o)]
    if hasattr(out, "_fields"):  # NamedTuple (CGResult, SolveInfo)
        return [t for o in out for t in _tensors(o)]
    return []


def _first(out: Any) -> torch.Tensor | None:
    ts = _tensors(out)
    return ts[0] if ts else None


def _unconverged(out: Any) -> bool:
    conv = getattr(out, "converged", None)
    if conv is None and isinstance(out, tuple) and len(out) == 2:
        conv = getattr(out[1], "converged", None)
    return isinstance(conv, torch.Tensor) and not bool(conv.all())


def names_argument(arg: str, msg: str) -> bool:
    """Whether ``msg`` names ``arg`` as a word (``t`` in "t must be", not the t of "must"; case-insensitive)."""
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(arg)}(?![A-Za-z0-9_])", msg, re.IGNORECASE) is not None


def judge(case: Case) -> tuple[str, str]:
    """(outcome, detail) of running ``case`` (module docstring)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = case.call()
        except (ValueError, TypeError, FileNotFoundError) as err:
            msg = str(err)
            if names_argument(case.arg, msg):
                return "rejected", f"{type(err).__name__}: {msg[:160]}"
            return "raw", f"{type(err).__name__} not naming {case.arg!r}: {msg[:160]}"
        except Exception as err:  # noqa: BLE001 - classifying is the point
            return "raw", f"{type(err).__name__}: {str(err)[:160]}"
    warned = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    first = _first(out)
    floats = [t for t in _tensors(out) if t.is_floating_point()]
    finite = all(bool(torch.isfinite(t).all()) for t in floats)
    if case.expect == "reject":
        return "accepted-wrong", f"returned {type(out).__name__} for a bad {case.arg}"
    if case.expect == "propagate":
        if first is not None and first.is_floating_point() and not bool(torch.isfinite(first).all()):
            return "propagated", "NaN/Inf carried to the result"
        return "accepted-wrong", "a non-finite input gave a finite result"
    if warned or _unconverged(out):
        if case.expect in ("report", "either"):
            return "reported", (warned[0].message.args[0][:160] if warned else "converged=False in the result")
        return "accepted-wrong", f"unexpected report: {warned[0].message if warned else 'converged=False'}"
    if case.expect == "report":
        return "accepted-wrong", "no warning or converged=False although the solve cannot meet its tolerance"
    if not finite:
        return "accepted-wrong", "non-finite result"
    if case.dtype is not None and first is not None and first.dtype != case.dtype:
        return "accepted-wrong", f"result dtype {first.dtype}, problem dtype {case.dtype}"
    return "accepted-ok", ""


# ----------------------------------------------------------------------------- the catalogue
def _setup():
    from diffsolve.models import EpsDenoiser, GaussianPrior
    from diffsolve.operators import GaussianBlur, Inpainting, MotionBlur, SuperResolution

    den = EpsDenoiser(lambda x, t: 0.1 * x)
    prior = GaussianPrior(torch.zeros(1, 8, 8, dtype=F64), 0.5)
    ops = {"inpaint": Inpainting.random((8, 8), 0.5, seed=1), "blur": GaussianBlur(5, 1.0),
           "sr": SuperResolution(2), "motion": MotionBlur(5, seed=3)}
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 8, 8, generator=g, dtype=F64) * 2 - 1
    ys = {k: op.A(x) for k, op in ops.items()}
    return den, prior, ops, x, ys


class _AE:
    """Average-pool 'autoencoder' (latents at half size): cheap and differentiable."""

    def encode(self, x):
        return torch.nn.functional.avg_pool2d(x, 2)

    def decode(self, z):
        return torch.nn.functional.interpolate(z, scale_factor=2.0)


class _Lazy:
    """An argument built when the case runs (its constructor is what rejects the bad value)."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self.build = build


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _nan_like(t: torch.Tensor) -> torch.Tensor:
    out = t.clone()
    out.view(-1)[0] = NAN
    return out


def _inf_like(t: torch.Tensor) -> torch.Tensor:
    out = t.clone()
    out.view(-1)[-1] = INF
    return out


COMPARED = ("pigdm", "ddrm", "ddnm", "diffpir", "daps", "reddiff", "mmps")
BAD_NUMBERS = [("nan", NAN), ("inf", INF), ("-inf", -INF), ("True", True), ("'1'", "1"), ("None", None)]


def _solver_cases(den, prior, ops, x, ys) -> list[Case]:
    from diffsolve.solve import solve  # the function (diffsolve.solve can be shadowed by the submodule)
    from diffsolve import solvers
    from diffsolve.operators import CallableOperator, Inpainting
    from diffsolve.solvers import CG, Projection, cdps, ddim, dps, ge, mpgd, mpgd_ldm

    y, op = ys["blur"], ops["blur"]
    shape = (2, 1, 8, 8)
    ae = _AE()
    runs: dict[str, Callable[..., Any]] = {
        "ddim": lambda **k: ddim(den, k.pop("shape", shape), **{"steps": 2, "dtype": F64, **k}),
        "ge": lambda **k: ge(den, k.pop("shape", shape), **{"steps": 2, "dtype": F64, **k}),
        "dps": lambda **k: dps(prior, k.pop("operator", op), k.pop("y", y), **{"steps": 2, **k}),
        "mpgd": lambda **k: mpgd(den, k.pop("operator", op), k.pop("y", y), **{"steps": 2, **k}),
        "mpgd-ae": lambda **k: mpgd(den, k.pop("operator", op), k.pop("y", y),
                                    **{"steps": 2, "projection": Projection(ae, "ae", (0, 1), k.pop("scale", None)), **k}),
        "mpgd-z": lambda **k: mpgd(den, k.pop("operator", op), k.pop("y", y),
                                   **{"steps": 2, "projection": Projection(ae, "z", (0, 1)), **k}),
        "mpgd_ldm": lambda **k: mpgd_ldm(den, ae, k.pop("operator", op), k.pop("y", y), **{"steps": 2, **k}),
        "cdps": lambda **k: cdps(den, k.pop("operator", op), k.pop("y", y), **{"steps": 2, "sigma": 0.05, **k}),
    }
    for name in COMPARED:  # the comparison methods: same shared options, sigma given
        fn = getattr(solvers, name)
        runs[name] = lambda fn=fn, **k: fn(den, k.pop("operator", op), k.pop("y", y),
                                           **{"steps": 2, "sigma": 0.05, **k})
    inverse = ("dps", "mpgd", "mpgd-ae", "mpgd-z", "mpgd_ldm", "cdps", *COMPARED)
    cases: list[Case] = []

    def add(entry, arg, value, expect, **kw):
        dtype = kw["y"].dtype if isinstance(kw.get("y"), torch.Tensor) and kw["y"].is_floating_point() else F64
        cases.append(Case(entry, arg, value, lambda: runs[entry](**{k: v.build() if isinstance(v, _Lazy) else v
                                                                    for k, v in kw.items()}), expect, dtype))

    for entry in runs:
        x_name = "x_T"  # latent methods take their starting latents as the shared x_T too
        xt = torch.randn((2, 1, 4, 4) if entry == "mpgd_ldm" else shape, generator=_gen(1), dtype=F64)
        add(entry, "steps", "1", "accept", steps=1)
        for label, v in [("0", 0), ("-1", -1), ("1.5", 1.5), ("True", True), ("'2'", "2"), ("None", None),
                         ("1001", 1001)]:
            add(entry, "steps", label, "reject", steps=v)
        for label, v in [("5", 5), ("'seed'", "seed"), ("[g]*3", [_gen(), _gen(), _gen()]), ("[1, 2]", [1, 2])]:
            add(entry, "generator", label, "reject", generator=v)
        add(entry, "generator", "[g]*2", "accept", generator=[_gen(1), _gen(2)])
        add(entry, "noise_source" if entry != "cdps" else "coupling", "'bogus'", "reject",
            **({"noise_source": "bogus"} if entry != "cdps" else {"coupling": "bogus"}))
        add(entry, "callback", "5", "reject", callback=5)
        for label, v in [("'gpu'", "gpu"), ("5", 5), ("None", None)]:
            add(entry, "backend", label, "reject", backend=v)
        add(entry, "return_info", "'yes'", "reject", return_info="yes")
        add(entry, "progress", "'yes'", "reject", progress="yes")
        add(entry, "spacing", "'bogus'", "reject", spacing="bogus")
        add(entry, "timesteps", "[5000, 3]", "reject", timesteps=[5000, 3], steps=2)
        add(entry, "timesteps", "[-1, 0]", "reject", timesteps=[-1, 0], steps=2)
        add(entry, "timesteps", "[3.5, 1.0]", "reject", timesteps=[3.5, 1.0], steps=2)
        add(entry, "timesteps", "[3, 7]", "reject", timesteps=[3, 7], steps=2)
        add(entry, "timesteps", "3 for steps=2", "reject", timesteps=[9, 5, 1], steps=2)
        add(entry, x_name, "NaN", "reject", **{x_name: _nan_like(xt)})
        add(entry, x_name, "Inf", "reject", **{x_name: _inf_like(xt)})
        add(entry, x_name, "float16", "reject", **{x_name: xt.half()})
        add(entry, x_name, "float32 on float64", "reject", **{x_name: xt.float()})
        add(entry, x_name, "int64", "reject", **{x_name: xt.long()})
        add(entry, x_name, "wrong shape", "reject", **{x_name: xt[..., :-1]})
        add(entry, x_name, "list", "reject", **{x_name: xt.tolist()})
        if entry not in ("diffpir", "daps", "reddiff"):  # these three take no η
            for label, v in [("-1", -1.0), ("5", 5.0)] + BAD_NUMBERS[:5]:
                add(entry, "eta" if entry not in ("ge",) else "mu", label, "reject",
                    **({"eta": v} if entry != "ge" else {"mu": v}))
        if entry not in inverse:
            add(entry, "device", "'cuda'", "reject", device="cuda")
            add(entry, "device", "'nonsense'", "reject", device="nonsense")
            add(entry, "dtype", "torch.int64", "reject", dtype=torch.int64)
            add(entry, "dtype", "torch.float16", "reject", dtype=torch.float16)
            add(entry, "shape", "(0, 1, 8, 8)", "reject", shape=(0, 1, 8, 8))
            add(entry, "shape", "(2, 1, -8, 8)", "reject", shape=(2, 1, -8, 8))
            add(entry, "shape", "(2.0, 1, 8, 8)", "reject", shape=(2.0, 1, 8, 8))
            continue
        add(entry, "y", "NaN", "reject", y=_nan_like(y))
        add(entry, "y", "Inf", "reject", y=_inf_like(y))
        add(entry, "y", "float16", "reject", y=y.half())
        add(entry, "y", "int64", "reject", y=y.long())
        add(entry, "y", "batch 0", "reject", y=y[:0])
        add(entry, "y", "rank 1", "reject", y=y.flatten())
        add(entry, "y", "list", "reject", y=y.tolist())
        add(entry, "y", "wrong size for SR", "reject", y=torch.zeros(2, 1, 5, 5, dtype=F64), operator=ops["sr"],
            **{x_name: xt})
        add(entry, "operator", "5", "reject", operator=5)
        if entry not in ("mpgd_ldm", "mpgd-ae", "mpgd-z"):  # the latent ones map through a decoder first
            # DPS differentiates A by autograd: without σ (no closing pull) it takes any A; with σ it must be linear
            add(entry, "operator", "non-linear |x|", "reject", operator=_AbsOperator(),
                **({"sigma": 0.05} if entry == "dps" else {}))
            add(entry, "operator", "A_adjoint not A's transpose", "reject",
                operator=CallableOperator(lambda v: 2 * v, adjoint=lambda v: v),
                **({"sigma": 0.05} if entry == "dps" else {}))
    from diffsolve.operators import GaussianNoise

    for entry in ("dps", "mpgd", "cdps", *COMPARED):  # σ as the GaussianNoise that made y; σ below SIGMA_MIN
        add(entry, "sigma", "GaussianNoise(0.05)", "accept", sigma=GaussianNoise(0.05))
        add(entry, "sigma", "1e-20", "reject", sigma=1e-20)
    add("mpgd", "sigma", "0 (MPGD's step scales with σ)", "reject", sigma=0.0)
    for label, loss in [("detached", lambda v: v.detach().flatten(1).sum(1)),
                        ("constant", lambda v: torch.zeros(v.shape[0], dtype=v.dtype)),
                        ("int64", lambda v: torch.ones(v.shape[0], dtype=torch.long))]:
        add("mpgd", "loss", label, "reject", operator=None, y=None, loss=loss, shape=shape, dtype=F64)
    add("mpgd", "shape", "'abc' with a loss", "reject", operator=None, y=None, loss=lambda v: v.flatten(1).sum(1),
        shape="abc")
    # method-specific numbers
    numbers = [("ge", "gamma"), ("dps", "zeta"), ("mpgd", "rho"), ("mpgd_ldm", "rho"), ("mpgd-ae", "scale"),
               ("cdps", "sigma"), ("dps", "sigma"), ("ddrm", "eta_b"), ("diffpir", "lam"), ("diffpir", "zeta"),
               ("daps", "lr"), ("daps", "lr_min_ratio"), ("reddiff", "lam"), ("reddiff", "lr"),
               ("ddrm", "singular_cutoff")]
    for label, v in [("-1", -1.0)] + BAD_NUMBERS[:5]:
        for entry, option in numbers:
            add(entry, option, label, "reject", **{option: v})
        add("cdps", "tol", label, "reject", solver=_Lazy(lambda v=v: CG(tol=v)), operator=ops["motion"], y=ys["motion"])
    for name in COMPARED:
        add(name, "sigma", "-1", "reject", sigma=-1.0)
        for label, v in BAD_NUMBERS:
            if not (name in ("ddnm", "reddiff") and v is None):  # sigma=None: noiseless DDNM; RED-diff reports no σ
                add(name, "sigma", label, "reject", sigma=v)
        add(name, "y", "float32 for a float64 x_T", "reject", y=y.float(), x_T=torch.randn(2, 1, 8, 8, dtype=F64))
        for task in ("inpaint", "sr"):
            add(name, "sigma", f"0 ({task})", "accept", sigma=0.0, operator=ops[task], y=ys[task])
        add(name, "sigma", "1e-30 (sr)", "reject", sigma=1e-30, operator=ops["sr"], y=ys["sr"])
    for label, v in [("0", 0.0), ("-1", -1.0)] + BAD_NUMBERS[:5]:  # None is the paper's ρ_t: accepted below
        add("diffpir", "x0_variance_cap", label, "reject", x0_variance_cap=v)
    add("diffpir", "x0_variance_cap", "None (the paper's ρ_t)", "accept", x0_variance_cap=None)
    for label, v in [("2", 2.0), ("1.5", 1.5), ("1", 1.0)]:
        add("ddrm", "singular_cutoff", label, "reject", singular_cutoff=v)
        add("ddnm", "singular_cutoff", f"{label} with sigma > 0", "reject", singular_cutoff=v, sigma=0.05)
        add("ddnm", "singular_cutoff", f"{label} with sigma=None", "reject", singular_cutoff=v, sigma=None)
    add("ddnm", "singular_cutoff", "0 with sigma=None (the exact A⁺)", "accept", singular_cutoff=0.0, sigma=None)
    add("ddrm", "singular_cutoff", "0 (Eq. 8 on every s > 0)", "accept", singular_cutoff=0.0)
    for label, v in [("2", 2.0), ("1.5", 1.5)]:
        add("ddrm", "eta_b", label, "reject", eta_b=v)
        add("diffpir", "zeta", label, "reject", zeta=v)
        add("daps", "lr_min_ratio", label, "reject", lr_min_ratio=v)
    for label, v in [("0", 0), ("-1", -1), ("2.5", 2.5), ("True", True), ("'3'", "3"), ("None", None)]:
        add("daps", "ode_steps", label, "reject", ode_steps=v)
        if v != 0:  # 0: no Langevin (the paper's ablation), accepted below
            add("daps", "langevin_steps", label, "reject", langevin_steps=v)
        add("mmps", "iters", label, "reject", iters=v)
        add("ddnm", "travel_repeat", label, "reject", travel_length=1, travel_repeat=v)
    for label, v in [("-1", -1), ("2.5", 2.5), ("True", True), ("None", None), ("3 for steps=2", 3)]:
        add("ddnm", "travel_length", label, "reject", travel_length=v)
    add("daps", "langevin_steps", "0", "accept", langevin_steps=0)
    add("daps", "langevin", "'bogus'", "reject", langevin="bogus")
    add("daps", "langevin", "'exact' on motion blur", "reject", langevin="exact", operator=ops["motion"],
        y=ys["motion"])
    add("daps", "langevin", "'chebyshev' on motion blur", "accept", langevin="chebyshev", langevin_steps=100,
        operator=ops["motion"], y=ys["motion"])
    add("daps", "langevin", "'chebyshev' where an SVD exists", "accept", langevin="chebyshev", langevin_steps=100)
    add("mmps", "solver", "'bogus'", "reject", solver="bogus")
    add("reddiff", "lam_rule", "'bogus'", "reject", lam_rule="bogus")
    add("reddiff", "adam_rule", "'bogus'", "reject", adam_rule="bogus")
    add("reddiff", "adam_rule", "'constant' (the paper's lr and betas)", "accept", adam_rule="constant")
    for entry in ("dps", "mpgd", "cdps", *COMPARED):  # every method given σ ends within the noise unless told not to
        extra = {"sigma": 0.05} if entry in ("dps", "mpgd") else {}
        add(entry, "discrepancy", "'yes'", "reject", discrepancy="yes", **extra)
        add(entry, "discrepancy", "1", "reject", discrepancy=1, **extra)
        add(entry, "discrepancy", "False (the paper's result)", "accept", discrepancy=False, **extra)
    add("ddrm", "operator", "motion blur (no SVD)", "reject", operator=ops["motion"], y=ys["motion"])
    add("ddnm", "operator", "motion blur (no SVD) with sigma > 0", "reject", operator=ops["motion"], y=ys["motion"])
    add("ddrm", "noise_source", "'kernel'", "reject", noise_source="kernel")
    add("daps", "noise_source", "'kernel'", "reject", noise_source="kernel")
    add("ddnm", "noise_source", "'kernel' with sigma > 0", "reject", noise_source="kernel")
    add("ddnm", "noise_source", "'kernel' with sigma=None", "accept", noise_source="kernel", sigma=None)
    add("cdps", "sigma", "0", "reject", sigma=0.0)
    add("dps", "sigma", "0", "reject", sigma=0.0)
    for s in (1e-30, 1e-8, 1e-6):
        add("cdps", "sigma", f"{s:g} (motion, CG)", "either", sigma=s, operator=ops["motion"], y=ys["motion"])
        add("cdps", "sigma", f"{s:g} (inpaint)", "either", sigma=s, operator=ops["inpaint"], y=ys["inpaint"])
    y32 = ys["motion"].float()
    for s in (1e-30, 1e-8, 1e-6):
        add("cdps", "sigma", f"{s:g} (float32, motion, CG)", "either", sigma=s, operator=ops["motion"], y=y32)
        add("cdps", "sigma", f"{s:g} (float32, inpaint)", "either", sigma=s, operator=ops["inpaint"],
            y=ys["inpaint"].float())
    for label, v in [("0", 0), ("-3", -3), ("2.5", 2.5), ("True", True)]:
        add("cdps", "iters", label, "reject", solver=_Lazy(lambda v=v: CG(iters=v)), operator=ops["motion"],
            y=ys["motion"])
    for label, v in [("'mean'", "mean"), ("None", None), ("0", 0)]:
        add("cdps", "start", label, "reject", solver=_Lazy(lambda v=v: CG(start=v)), operator=ops["motion"],
            y=ys["motion"])
    add("cdps", "solver", "CG(iters=3) (stops early)", "report", solver=CG(iters=3), operator=ops["motion"],
        y=ys["motion"])
    add("cdps", "chain", "'bogus'", "reject", chain="bogus")
    add("cdps", "solver", "'bogus'", "reject", solver="bogus")
    add("cdps", "solver", "'exact' on motion blur", "reject", solver="exact", operator=ops["motion"],
        y=ys["motion"])
    add("cdps", "eta", "0 (reverse coupling)", "reject", eta=0.0)
    add("mpgd", "projection", "'ae'", "reject", projection="ae")
    add("mpgd-ae", "space", "'bogus'", "reject", projection=_Lazy(lambda: Projection(ae, "bogus")))
    add("mpgd-ae", "autoencoder", "None", "reject", projection=_Lazy(lambda: Projection(None, "ae")))
    add("mpgd-ae", "window", "(0.6, 0.2)", "reject", projection=_Lazy(lambda: Projection(ae, "ae", (0.6, 0.2))))
    add("mpgd-ae", "window", "(nan, 1)", "reject", projection=_Lazy(lambda: Projection(ae, "ae", (NAN, 1.0))))
    add("mpgd", "loss", "5", "reject", loss=5, operator=None, y=None, shape=shape)
    add("mpgd", "loss", "returns (B, 2)", "reject", loss=lambda v: v.flatten(1)[:, :2], operator=None, y=None,
        shape=shape, dtype=F64)
    add("mpgd", "shape", "disagrees with y", "reject", shape=(3, 1, 8, 8))
    blind = torch.ones(2, 1, 8, 8, dtype=F64)
    blind[1] = 0  # a per-sample mask that observes nothing of sample 1
    for entry in inverse:
        if entry != "mpgd_ldm":
            add(entry, "operator", "a mask observing nothing of a sample", "reject",
                operator=Inpainting(blind), y=(x * blind).clone())
    # diffsolve.solve
    cases.append(Case("solve", "method", "'bogus'", lambda: solve("bogus", den, op, y, steps=2), "reject"))
    cases.append(Case("solve", "sigma", "missing for cdps", lambda: solve("cdps", den, op, y, steps=2), "reject"))
    cases.append(Case("solve", "autoencoder", "missing for mpgd_ldm", lambda: solve("mpgd_ldm", den, op, y, steps=2),
                      "reject"))
    cases.append(Case("solve", "steps", "0 (mpgd)", lambda: solve("mpgd", den, op, y, steps=0), "reject"))
    cases.append(Case("solve", "y", "NaN (dps)", lambda: solve("dps", prior, op, _nan_like(y), steps=2), "reject"))
    cases.append(Case("solve", "sigma", "1e6 (mpgd)", lambda: solve("mpgd", den, op, y, steps=2, sigma=1e6),
                      "reject"))
    for base in ("pinv", "tikhonov"):  # the baselines check y as every method does, and take backend
        cases.append(Case("solve", "y", f"0-255 ({base})", lambda base=base: solve(base, None, op, (y + 1) * 127.5),
                          "reject"))
        cases.append(Case("solve", "backend", f"'cuda' ({base})", lambda base=base: solve(base, None, op, y,
                                                                                         backend="cuda"), "reject"))
        cases.append(Case("solve", "backend", f"'torch' ({base})", lambda base=base: solve(base, None, op, y,
                                                                                          backend="torch"), "accept"))
    cases.append(Case("solve", "timesteps", "2-D (mpgd)", lambda: solve("mpgd", den, op, y, timesteps=[[1, 0]]),
                      "reject"))
    cases.append(Case("solve", "return_trajectory", "with return_info (ddim)", lambda: solve(
        "ddim", den, None, None, shape=x.shape, steps=2, return_info=True, return_trajectory=True), "reject"))
    cases.append(Case("solve", "generator", "list of 2 (cdps)", lambda: solve(
        "cdps", den, op, y, steps=2, sigma=0.05, generator=[_gen(1), _gen(2)]), "accept", F64))
    return cases


def _kernel_cases(x) -> list[Case]:
    from diffsolve.kernels import batched_cg, ddim_step, diagonal_posterior_step, fused_step, ge_step, mpgd_step
    from diffsolve.kernels.cg import cg_iteration_bound

    e = torch.randn(x.shape, generator=_gen(2), dtype=F64)
    cases: list[Case] = []

    def add(entry, arg, value, expect, fn, dtype=F64):
        cases.append(Case(entry, arg, value, fn, expect, dtype))

    for be in ("torch", "cpp"):
        tag = f"[{be}]"
        step = lambda **k: ddim_step(**{"x_t": x, "eps": e, "alpha_bar_t": 0.3, "alpha_bar_s": 0.6, "backend": be,
                                        **k})
        for label, v in [("0", 0.0), ("-0.5", -0.5), ("1.5", 1.5), ("1 (clean end)", 1.0)] + BAD_NUMBERS[:5]:
            add("ddim_step" + tag, "alpha_bar_t", label, "reject", lambda v=v: step(alpha_bar_t=v))
        for label, v in [("0", 0.0), ("1.5", 1.5)] + BAD_NUMBERS[:3]:
            add("ddim_step" + tag, "alpha_bar_s", label, "reject", lambda v=v: step(alpha_bar_s=v))
        add("ddim_step" + tag, "alpha_bar_s", "< alpha_bar_t with eta=1", "reject",
            lambda: step(alpha_bar_t=0.6, alpha_bar_s=0.3, eta=1.0, seed=1))
        add("ddim_step" + tag, "alpha_bar_s", "< alpha_bar_t with eta=0 (inversion)", "accept",
            lambda: step(alpha_bar_t=0.6, alpha_bar_s=0.3))
        add("ddim_step" + tag, "alpha_bar_s", "1 (last step)", "accept", lambda: step(alpha_bar_s=1.0, eta=1.0, seed=1))
        for label, v in [("-1", -1.0), ("5", 5.0)] + BAD_NUMBERS[:5]:
            add("ddim_step" + tag, "eta", label, "reject", lambda v=v: step(eta=v, seed=1))
        for label, v in [("-1", -1.0)] + BAD_NUMBERS[:5]:
            add("ddim_step" + tag, "guidance_scale", label, "reject", lambda v=v: step(guidance=e, guidance_scale=v))
            add("mpgd_step" + tag, "step_size", label, "reject",
                lambda v=v: mpgd_step(x, e, e, 0.3, 0.6, step_size=v, backend=be))
            add("ge_step" + tag, "gamma", label, "reject", lambda v=v: ge_step(x, e, e, 0.3, 0.6, gamma=v, backend=be))
        x32 = x.float()
        add("ddim_step" + tag, "guidance_scale", "1e300 (float32)", "reject",
            lambda: ddim_step(x32, x32, 0.3, 0.6, guidance=x32, guidance_scale=1e300, backend=be), F32)
        add("ddim_step" + tag, "alpha_bar_t", "1e-300 (float32)", "either",
            lambda: ddim_step(x32, x32, 1e-300, 0.6, backend=be), F32)
        for label, v in [("-1", -1), ("2**64", 2**64), ("1.5", 1.5), ("True", True), ("[1]*3", [1, 2, 3])]:
            add("ddim_step" + tag, "seed", label, "reject", lambda v=v: step(eta=1.0, seed=v))
        add("ddim_step" + tag, "seed", "2**64-1", "accept", lambda: step(eta=1.0, seed=2**64 - 1))
        for label, v in [("-1", -1), ("2**64", 2**64), ("1.5", 1.5)]:
            add("ddim_step" + tag, "offset", label, "reject", lambda v=v: step(eta=1.0, seed=1, offset=v))
        for label, v in [("-0.1", -0.1), ("1", 1.0)] + BAD_NUMBERS[:4]:
            add("ge_step" + tag, "mu", label, "reject", lambda v=v: ge_step(x, e, None, 0.3, 0.6, mu=v, backend=be))
        add("ddim_step" + tag, "noise", "wrong shape", "reject", lambda: step(eta=1.0, noise=e[:1]))
        add("ddim_step" + tag, "noise", "float32", "reject", lambda: step(eta=1.0, noise=e.float()))
        add("ddim_step" + tag, "eps", "float32", "reject", lambda: step(eps=e.float()))
        add("ddim_step" + tag, "x_t", "int64", "reject", lambda: step(x_t=x.long()))
        add("ddim_step" + tag, "x_t", "list", "reject", lambda: step(x_t=x.tolist()))
        add("ddim_step" + tag, "x_t", "NaN", "propagate", lambda: step(x_t=_nan_like(x)))
        add("ddim_step" + tag, "guidance", "without guidance_scale", "reject", lambda: step(guidance=e))
        add("fused_step" + tag, "coefs", "(B, 7)", "reject",
            lambda: fused_step(x, e, torch.zeros(x.shape[0], 7, dtype=F64), backend=be))
        add("fused_step" + tag, "coefs", "NaN", "reject",
            lambda: fused_step(x, e, torch.full((x.shape[0], 8), NAN, dtype=F64), backend=be))
        add("fused_step" + tag, "coefs", "float32 for float64 images", "reject",
            lambda: fused_step(x, e, torch.zeros(x.shape[0], 8), backend=be))
        # (B,) tensors: the same ranges as numbers, per sample (check=True, the default)
        t64 = lambda *v: torch.tensor(v, dtype=F64)
        for label, v in [("[0.3, 1.2]", t64(0.3, 1.2)), ("[0.3, 1]", t64(0.3, 1.0)), ("[0.3, 0]", t64(0.3, 0.0)),
                         ("[-0.2, 0.3]", t64(-0.2, 0.3)), ("[0.3, nan]", t64(0.3, NAN))]:
            add("ddim_step" + tag, "alpha_bar_t", f"tensor {label}", "reject", lambda v=v: step(alpha_bar_t=v))
            add("ge_step" + tag, "alpha_bar_t", f"tensor {label}", "reject",
                lambda v=v: ge_step(x, e, e, v, 0.6, backend=be))
            add("mpgd_step" + tag, "alpha_bar_t", f"tensor {label}", "reject",
                lambda v=v: mpgd_step(x, e, e, v, 0.6, step_size=0.1, backend=be))
        for label, v in [("[0.6, 1.5]", t64(0.6, 1.5)), ("[0.6, 0]", t64(0.6, 0.0)), ("[0.6, -1]", t64(0.6, -1.0))]:
            add("ddim_step" + tag, "alpha_bar_s", f"tensor {label}", "reject", lambda v=v: step(alpha_bar_s=v))
            add("ge_step" + tag, "alpha_bar_s", f"tensor {label}", "reject",
                lambda v=v: ge_step(x, e, e, 0.3, v, backend=be))
        add("ddim_step" + tag, "alpha_bar_s", "tensor < alpha_bar_t with eta=1", "reject",
            lambda: step(alpha_bar_t=t64(0.3, 0.7), eta=1.0, seed=1))
        add("ddim_step" + tag, "alpha_bar_s", "tensor < alpha_bar_t where eta=0 (inversion)", "accept",
            lambda: step(alpha_bar_t=t64(0.3, 0.7), eta=t64(0.5, 0.0), seed=1))
        add("ge_step" + tag, "alpha_bar_s", "tensor < alpha_bar_t with mu=0.5", "reject",
            lambda: ge_step(x, e, None, t64(0.3, 0.7), 0.6, mu=0.5, seed=1, backend=be))
        add("ddim_step" + tag, "alpha_bar_t", "tensor [0.3, 0.5]", "accept", lambda: step(alpha_bar_t=t64(0.3, 0.5)))
        add("ddim_step" + tag, "alpha_bar_t", "float64 tensor for float32 images", "reject",
            lambda: ddim_step(x32, x32, t64(0.3, 0.5), 0.6, backend=be), F32)
        add("ddim_step" + tag, "alpha_bar_t", "tensor on meta", "reject",
            lambda: step(alpha_bar_t=torch.full((2,), 0.3, dtype=F64, device="meta")))
        for label, v in [("[0.5, 1.5]", t64(0.5, 1.5)), ("[-1, 0.5]", t64(-1.0, 0.5)), ("[0.5, nan]", t64(0.5, NAN))]:
            add("ddim_step" + tag, "eta", f"tensor {label}", "reject", lambda v=v: step(eta=v, seed=1))
        for label, v in [("[0.1, -1]", t64(0.1, -1.0)), ("[0.1, nan]", t64(0.1, NAN)), ("[0.1, inf]", t64(0.1, INF))]:
            add("ddim_step" + tag, "guidance_scale", f"tensor {label}", "reject",
                lambda v=v: step(guidance=e, guidance_scale=v))
            add("mpgd_step" + tag, "step_size", f"tensor {label}", "reject",
                lambda v=v: mpgd_step(x, e, e, 0.3, 0.6, step_size=v, backend=be))
            add("ge_step" + tag, "gamma", f"tensor {label}", "reject",
                lambda v=v: ge_step(x, e, e, 0.3, 0.6, gamma=v, backend=be))
        post = lambda **k: diagonal_posterior_step(**{"mean": x, "precision": 2.0, "diag": torch.ones(1, 1, 8, 8,
                                                      dtype=F64), "target": e, "noise_precision": 3.0, "backend": be,
                                                      **k})
        for arg in ("precision", "noise_precision"):
            for label, v in [("0", 0.0), ("-1", -1.0)] + BAD_NUMBERS[:5]:
                add("diagonal_posterior_step" + tag, arg, label, "reject", lambda arg=arg, v=v: post(**{arg: v}))
        add("diagonal_posterior_step" + tag, "diag", "(1, 1, 4, 4)", "reject",
            lambda: post(diag=torch.ones(1, 1, 4, 4, dtype=F64)))
        add("diagonal_posterior_step" + tag, "diag", "float32", "reject",
            lambda: post(diag=torch.ones(1, 1, 8, 8)))
        for half in (torch.float16, torch.bfloat16):
            add("diagonal_posterior_step" + tag, "mean", str(half).split(".")[1], "reject",
                lambda half=half: post(mean=x.to(half), target=e.to(half), diag=torch.ones(1, 1, 8, 8, dtype=half)))
        for arg in ("precision", "noise_precision"):
            for label, v in [("[2, -1]", t64(2.0, -1.0)), ("[2, 0]", t64(2.0, 0.0)), ("[2, nan]", t64(2.0, NAN)),
                             ("[2, inf]", t64(2.0, INF))]:
                add("diagonal_posterior_step" + tag, arg, f"tensor {label}", "reject",
                    lambda arg=arg, v=v: post(**{arg: v}))
            add("diagonal_posterior_step" + tag, arg, "float32 tensor", "reject",
                lambda arg=arg: post(**{arg: torch.ones(2)}))
        add("diagonal_posterior_step" + tag, "precision", "tensor [2, 3]", "accept",
            lambda: post(precision=t64(2.0, 3.0)))
        add("diagonal_posterior_step" + tag, "diag", "negative", "reject",
            lambda: post(diag=torch.full((1, 1, 8, 8), -0.5, dtype=F64)))
        add("diagonal_posterior_step" + tag, "diag", "zero (all missing)", "accept",
            lambda: post(diag=torch.zeros(1, 1, 8, 8, dtype=F64)))
        add("diagonal_posterior_step" + tag, "seed", "-1", "reject", lambda: post(seed=-1))
        add("diagonal_posterior_step" + tag, "target", "NaN", "propagate", lambda: post(target=_nan_like(e)))
        gram = lambda v: 0.5 * v
        add("batched_cg" + tag, "rhs", "NaN", "propagate", lambda: batched_cg(gram, _nan_like(x), 1.0, 1.0, backend=be))
        add("batched_cg" + tag, "rhs", "Inf", "propagate", lambda: batched_cg(gram, _inf_like(x), 1.0, 1.0, backend=be))
        add("batched_cg" + tag, "x0", "NaN", "propagate",
            lambda: batched_cg(gram, x, 1.0, 1.0, x0=_nan_like(x), backend=be))
        add("batched_cg" + tag, "gram", "returns float64 for float32", "reject",
            lambda: batched_cg(lambda v: v.double(), x.float(), 1.0, 1.0, backend=be), F32)
        add("batched_cg" + tag, "gram", "returns the wrong shape", "reject",
            lambda: batched_cg(lambda v: v[..., :-1], x, 1.0, 1.0, backend=be))
        add("batched_cg" + tag, "rhs", "batch 0", "reject", lambda: batched_cg(gram, x[:0], 1.0, 1.0, backend=be))
        add("batched_cg" + tag, "rhs", "int64", "reject", lambda: batched_cg(gram, x.long(), 1.0, 1.0, backend=be))
        add("batched_cg" + tag, "rhs", "zero", "accept", lambda: batched_cg(gram, x * 0, 1.0, 1.0, backend=be))
        for label, v in [("0", 0.0), ("-1", -1.0), ("nan", NAN)]:
            add("batched_cg" + tag, "tol", label, "reject", lambda v=v: batched_cg(gram, x, 1.0, 1.0, tol=v, backend=be))
        for label, v in [("-1", -1), ("1.5", 1.5)]:
            add("batched_cg" + tag, "max_iters", label, "reject",
                lambda v=v: batched_cg(gram, x, 1.0, 1.0, max_iters=v, backend=be))
        add("batched_cg" + tag, "max_iters", "1 (stops early)", "report",
            lambda: batched_cg(lambda v: v.flip(-1) * 0 + v * torch.arange(1, 9, dtype=F64), x, 0.0, 1.0,
                               max_iters=1, backend=be))
        for label, v in [("nan", NAN), ("-1", -1.0), ("inf", INF)]:
            add("batched_cg" + tag, "shift", label, "reject", lambda v=v: batched_cg(gram, x, v, 1.0, backend=be))
        add("batched_cg" + tag, "scale", "nan", "reject", lambda: batched_cg(gram, x, 1.0, NAN, backend=be))
        add("batched_cg" + tag, "shift", "0 with scale 0", "reject", lambda: batched_cg(gram, x, 0.0, 0.0, backend=be))
    for label, v in [("0.5", 0.5), ("nan", NAN), ("inf", INF)]:
        add("cg_iteration_bound", "kappa", label, "reject", lambda v=v: cg_iteration_bound(v, 1e-5), None)
    add("cg_iteration_bound", "kappa", "1e60", "accept", lambda: torch.tensor(float(cg_iteration_bound(1e60, 1e-5))),
        None)
    add("cg_iteration_bound", "tol", "0", "reject", lambda: cg_iteration_bound(10.0, 0.0), None)
    return cases


def _operator_cases(x, ops, ys) -> list[Case]:
    from diffsolve.operators import (Blur, GaussianBlur, GaussianNoise, Identity, Inpainting, MotionBlur,
                                     SuperResolution, convert_sigma)

    cases: list[Case] = []

    def add(entry, arg, value, expect, fn, dtype=F64):
        cases.append(Case(entry, arg, value, fn, expect, dtype))

    every = {"identity": Identity(), **ops}
    for name, op in every.items():
        y = op.A(x)
        add(f"{name}.A", "x", "int64", "reject", lambda op=op: op.A(x.long()))
        add(f"{name}.A", "x", "float16", "reject", lambda op=op: op.A(x.half()))
        add(f"{name}.A", "x", "rank 3", "reject", lambda op=op: op.A(x[0]))
        add(f"{name}.A", "x", "batch 0", "reject", lambda op=op: op.A(x[:0]))
        add(f"{name}.A", "x", "NaN", "propagate", lambda op=op: op.A(_nan_like(x)))
        add(f"{name}.A_adjoint", "y", "int64", "reject", lambda op=op, y=y: op.A_adjoint(y.long()))
        add(f"{name}.A_adjoint", "y", "batch 0", "reject", lambda op=op, y=y: op.A_adjoint(y[:0]))
        add(f"{name}.solve", "rhs", "batch 0", "reject", lambda op=op: op.solve(x[:0], 0.5, 1.0))
        add(f"{name}.solve", "rhs", "NaN", "propagate", lambda op=op: op.solve(_nan_like(x), 0.5, 1.0))
        add(f"{name}.solve", "shift", "0 with scale 0", "reject", lambda op=op: op.solve(x, 0.0, 0.0))
        for label, v in [("nan", NAN), ("-1", -1.0), ("inf", INF)]:
            add(f"{name}.solve", "shift", label, "reject", lambda op=op, v=v: op.solve(x, v, 1.0))
            add(f"{name}.solve", "scale", label, "reject", lambda op=op, v=v: op.solve(x, 0.5, v))
        add(f"{name}.solve", "shift", "float32 tensor", "reject",
            lambda op=op: op.solve(x, torch.full((2,), 0.5), 1.0))
        add(f"{name}.solve", "method", "'bogus'", "reject", lambda op=op: op.solve(x, 0.5, 1.0, method="bogus"))
        for label, v in [("nan", NAN), ("-1", -1.0), ("0", 0.0)]:
            add(f"{name}.solve", "tol", label, "reject", lambda op=op, v=v: op.solve(x, 0.5, 1.0, tol=v))
        add(f"{name}.solve", "shift", "0.5", "accept", lambda op=op: op.solve(x, 0.5, 1.0))
        add(f"{name}.pseudo_inverse", "y", "NaN", "reject", lambda op=op, y=y: op.pseudo_inverse(_nan_like(y)))
        for label, v in [("0", 0.0), ("-1", -1.0), ("nan", NAN)]:
            add(f"{name}.tikhonov", "lam", label, "reject", lambda op=op, y=y, v=v: op.tikhonov(y, v))
        add(f"{name}.tikhonov", "y", "NaN", "reject", lambda op=op, y=y: op.tikhonov(_nan_like(y), 0.1))
    add("identity.solve", "shift", "0 (scale 1)", "accept", lambda: Identity().solve(x, 0.0, 1.0))
    add("sr.solve", "shift", "0 (singular)", "reject", lambda: ops["sr"].solve(x, 0.0, 1.0))
    # bicubic SR on sizes that are not multiples of the factor
    x30 = torch.rand(1, 1, 30, 30, dtype=F64)
    add("SuperResolution(4).A", "input_size", "30x30 without it", "reject", lambda: SuperResolution(4).A(x30))
    add("SuperResolution(4, input_size).A_adjoint", "y", "wrong size", "reject",
        lambda: SuperResolution(4, input_size=(30, 30)).A_adjoint(torch.zeros(1, 1, 7, 7, dtype=F64)))

    def sr_transpose():
        op = SuperResolution(4, input_size=(30, 30))
        v = torch.randn(1, 1, 8, 8, dtype=F64)
        lhs, rhs = (op.A(x30) * v).sum(), (x30 * op.A_adjoint(v)).sum()
        return torch.tensor(0.0 if abs(float(lhs - rhs)) < 1e-10 else NAN, dtype=F64)

    add("SuperResolution(4, input_size=(30, 30))", "adjoint", "<Ax, v> = <x, A^T v>", "accept", sr_transpose)
    # a dense zero-boundary blur: CG that cannot meet tol in 200 iterations must say so
    kern = torch.rand(7, 5, generator=_gen(4), dtype=F64)
    r = torch.randn(2, 1, 16, 16, generator=_gen(5), dtype=F64)
    add("Blur(7x5, zero).solve", "max_iters", "default, ill-conditioned", "either",
        lambda: Blur(kern, "zero").solve(r, shift=torch.tensor([0.3, 2.0], dtype=F64),
                                         scale=torch.tensor([5.0, 0.7], dtype=F64)))
    add("Blur(7x5, zero).solve", "max_iters", "5", "report", lambda: Blur(kern, "zero").solve(r, 1e-3, 1.0, max_iters=5))
    for label, v in [("'no'", "no"), ("0", 0), ("None", None)]:
        add("Blur(7x5, zero).solve", "precondition", label, "reject",
            lambda v=v: Blur(kern, "zero").solve(r, 0.3, 1.0, precondition=v))
    add("Blur(7x5, zero).solve", "precondition", "False (plain CG)", "accept",
        lambda: Blur(kern, "zero").solve(r, 0.3, 1.0, precondition=False))
    # constructors
    for label, v in [("0", 0), ("-2", -2), ("1.5", 1.5), ("True", True)]:
        add("SuperResolution", "factor", label, "reject", lambda v=v: SuperResolution(v), None)
    add("SuperResolution", "kernel", "'nearest'", "reject", lambda: SuperResolution(2, "nearest"), None)
    add("SuperResolution", "input_size", "(0, 4)", "reject", lambda: SuperResolution(2, input_size=(0, 4)), None)
    add("SuperResolution", "backend", "'gpu'", "reject", lambda: SuperResolution(2, backend="gpu"), None)
    for label, v in [("0", 0), ("4", 4), ("-3", -3)]:
        add("GaussianBlur", "kernel_size", label, "reject", lambda v=v: GaussianBlur(v, 1.0), None)
        add("MotionBlur", "kernel_size", label, "reject", lambda v=v: MotionBlur(v), None)
    for label, v in [("0", 0.0), ("-1", -1.0), ("nan", NAN), ("inf", INF)]:
        add("GaussianBlur", "std", label, "reject", lambda v=v: GaussianBlur(5, v), None)
    for label, v in [("-0.1", -0.1), ("1.5", 1.5), ("nan", NAN)]:
        add("MotionBlur", "intensity", label, "reject", lambda v=v: MotionBlur(5, v), None)
    for label, v in [("-1", -1), ("2**64", 2**64), ("1.5", 1.5)]:
        add("MotionBlur", "seed", label, "reject", lambda v=v: MotionBlur(5, seed=v), None)
        add("Inpainting.random", "seed", label, "reject", lambda v=v: Inpainting.random(8, 0.5, seed=v), None)
        add("Inpainting.box", "seed", label, "reject", lambda v=v: Inpainting.box(16, 4, 2, seed=v), None)
        add("GaussianNoise()", "seed", label, "reject", lambda v=v: GaussianNoise(0.1)(x, seed=v))
    for label, v in [("-0.1", -0.1), ("1.5", 1.5), ("nan", NAN)]:
        add("Inpainting.random", "missing", label, "reject", lambda v=v: Inpainting.random(8, v), None)
    add("Inpainting", "mask", "NaN", "reject", lambda: Inpainting(torch.full((8, 8), NAN)), None)
    add("Inpainting", "mask", "int64", "reject", lambda: Inpainting(torch.ones(8, 8, dtype=torch.int64)), None)
    add("Blur", "kernel", "NaN", "reject", lambda: Blur(torch.full((3, 3), NAN)), None)
    add("Blur", "kernel", "4x4", "reject", lambda: Blur(torch.ones(4, 4)), None)
    add("Blur", "boundary", "'wrap'", "reject", lambda: Blur(torch.ones(3, 3), "wrap"), None)
    for label, v in [("-1", -1.0), ("nan", NAN), ("inf", INF)]:
        add("GaussianNoise", "sigma", label, "reject", lambda v=v: GaussianNoise(v), None)
        add("convert_sigma", "sigma", label, "reject", lambda v=v: convert_sigma(v, "[0,1]", "[-1,1]"), None)
    add("GaussianNoise", "unit", "'0-255'", "reject", lambda: GaussianNoise(0.1, "0-255"), None)
    add("GaussianNoise()", "generator", "missing", "reject", lambda: GaussianNoise(0.1)(x))
    add("GaussianNoise()", "ax", "int64", "reject", lambda: GaussianNoise(0.1)(x.long(), seed=1))
    return cases


def _model_cases(den, prior, x) -> list[Case]:
    from diffsolve import solve
    from diffsolve.models import EpsDenoiser, GaussianPrior, PaddedDenoiser, load_default
    from diffsolve.operators import Identity as _Identity
    from diffsolve.schedules import make_alphas_cumprod

    cases: list[Case] = []

    def add(entry, arg, value, expect, fn, dtype=None):
        cases.append(Case(entry, arg, value, fn, expect, dtype))

    model = load_default("digits16")
    xm = torch.randn(2, 1, 16, 16, generator=_gen(6))
    for label, v in [("5000", 5000), ("-1", -1), ("5.5", 5.5), ("1000", 1000), ("True", True),
                     ("float tensor", torch.tensor([3.5, 1.0])), ("tensor [1, 1000]", torch.tensor([1, 1000])),
                     ("tensor [-1, 3]", torch.tensor([-1, 3]))]:
        add("load_default('digits16')(x, t)", "t", label, "reject", lambda v=v: model(xm, v))
        add("GaussianPrior(x, t)", "t", label, "reject", lambda v=v: prior(x, v))
    add("load_default('digits16')(x, t)", "t", "999", "accept", lambda: model(xm, 999), torch.float32)
    add("load_default", "name", "'bogus'", "reject", lambda: load_default("bogus"))
    add("load_default", "device", "'cuda'", "reject", lambda: load_default("digits16", device="cuda"))
    add("load_default", "torch_dtype", "torch.int64", "reject", lambda: load_default("digits16", torch_dtype=torch.int64))
    add("EpsDenoiser", "eps_fn", "5", "reject", lambda: EpsDenoiser(5))
    for label, v in [("0", 0.0), ("1.5", 1.5), ("nan", NAN), ("True", True)]:
        add("EpsDenoiser", "final_alpha_cumprod", label, "reject",
            lambda v=v: EpsDenoiser(lambda a, t: a, final_alpha_cumprod=v))
    add("EpsDenoiser", "alphas_cumprod", "increasing", "reject",
        lambda: EpsDenoiser(lambda a, t: a, torch.linspace(0.1, 0.9, 10, dtype=F64)))
    add("EpsDenoiser", "alphas_cumprod", "NaN", "reject",
        lambda: EpsDenoiser(lambda a, t: a, _nan_like(make_alphas_cumprod())))
    for label, v in [("0", 0.0), ("1.5", 1.5), ("nan", NAN)]:
        add("GaussianPrior.eps", "alpha_bar", label, "reject", lambda v=v: prior.eps(x, v))
    add("GaussianPrior", "var", "-1", "reject", lambda: GaussianPrior(torch.zeros(1, 4, 4), -1.0))
    add("GaussianPrior", "var", "nan", "reject", lambda: GaussianPrior(torch.zeros(1, 4, 4), NAN))
    patches = load_default("patches")
    t3 = torch.tensor([3])
    add("patches(x, t)", "shape", "1x3x12x20 (not multiples of 8)", "reject",
        lambda: solve("mpgd", patches, _Identity(), torch.zeros(1, 3, 12, 20), steps=1))
    for label, kwargs in [("multiple=0", {"multiple": 0}), ("multiple=2.5", {"multiple": 2.5}),
                          ("multiple=True", {"multiple": True}), ("mode='zeros'", {"mode": "zeros"})]:
        add("PaddedDenoiser", label.split("=")[0], label.split("=", 1)[1], "reject",
            lambda kwargs=kwargs: PaddedDenoiser(patches, **kwargs))
    add("PaddedDenoiser", "denoiser", "5", "reject", lambda: PaddedDenoiser(5))
    add("PaddedDenoiser(x, t)", "x", "1x3x6x16 (below one block)", "reject",
        lambda: PaddedDenoiser(patches)(torch.zeros(1, 3, 6, 16), t3))
    add("PaddedDenoiser(x, t)", "x", "1x3x12x20", "accept",
        lambda: PaddedDenoiser(patches)(torch.randn(1, 3, 12, 20, generator=_gen(7)), t3), torch.float32)
    add("PaddedDenoiser(x, t)", "x", "NaN 1x3x12x20", "propagate",
        lambda: PaddedDenoiser(patches)(torch.full((1, 3, 12, 20), NAN), t3))
    return cases


class _AbsOperator:
    """A user's object with A and A_adjoint whose A is not linear (y = |x|)."""

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return x.abs()

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y


def _misc_cases(x) -> list[Case]:
    """Schedules, the remaining kernels and adapters' constructors."""
    from diffsolve.kernels import avg_pool, correlate2d, resample, separable_correlate2d
    from diffsolve.models import Autoencoder, DiffusersDenoiser
    from diffsolve.operators import CallableOperator, MatrixOperator
    from diffsolve.schedules import loglinear_timesteps, make_alphas_cumprod, spaced_timesteps

    cases: list[Case] = []

    def add(entry, arg, value, expect, fn, dtype=None):
        cases.append(Case(entry, arg, value, fn, expect, dtype))

    k3 = torch.full((3, 3), 1 / 9, dtype=F64)
    add("correlate2d", "kernel", "4x4", "reject", lambda: correlate2d(x, torch.ones(4, 4, dtype=F64)))
    add("correlate2d", "kernel", "float32", "reject", lambda: correlate2d(x, k3.float()))
    add("correlate2d", "boundary", "'wrap'", "reject", lambda: correlate2d(x, k3, boundary="wrap"))
    add("correlate2d", "x", "NaN", "propagate", lambda: correlate2d(_nan_like(x), k3))
    add("correlate2d", "x", "int64", "reject", lambda: correlate2d(x.long(), k3))
    add("correlate2d", "backend", "'gpu'", "reject", lambda: correlate2d(x, k3, backend="gpu"))
    add("separable_correlate2d", "k_h", "2-D", "reject", lambda: separable_correlate2d(x, k3, k3[0]))
    add("resample", "m_h", "wrong columns", "reject",
        lambda: resample(x, torch.ones(4, 5, dtype=F64), torch.ones(4, 8, dtype=F64)))
    for label, v in [("0", 0), ("3 (8 not divisible)", 3), ("1.5", 1.5)]:
        add("avg_pool", "factor", label, "reject", lambda v=v: avg_pool(x, v))
    for label, v in [("0", 0), ("-1", -1), ("1001", 1001), ("2.5", 2.5)]:
        add("spaced_timesteps", "steps", label, "reject", lambda v=v: spaced_timesteps(1000, v))
    add("spaced_timesteps", "spacing", "'bogus'", "reject", lambda: spaced_timesteps(1000, 10, "bogus"))
    table = make_alphas_cumprod()
    for label, v in [("nan", NAN), ("-1", -1.0), ("inf", INF)]:
        add("loglinear_timesteps", "sigma_max", label, "reject", lambda v=v: loglinear_timesteps(table, 5, sigma_max=v))
    for label, v in [("0", 0), ("-5", -5)]:
        add("make_alphas_cumprod", "num_train_timesteps", label, "reject",
            lambda v=v: make_alphas_cumprod(num_train_timesteps=v))
    add("make_alphas_cumprod", "beta_schedule", "'bogus'", "reject", lambda: make_alphas_cumprod(beta_schedule="bogus"))
    add("make_alphas_cumprod", "beta_end", "nan", "reject", lambda: make_alphas_cumprod(beta_end=NAN))
    add("CallableOperator", "fn", "5", "reject", lambda: CallableOperator(5))
    phi = torch.ones(6, x[0].numel(), dtype=F64)
    vector_op = CallableOperator(lambda z: z.flatten(1) @ phi.T, input_shape=tuple(x.shape[1:]))
    add("CallableOperator.A_adjoint", "y", "rank 1", "reject", lambda: vector_op.A_adjoint(torch.ones(6, dtype=F64)))
    add("CallableOperator.A_adjoint", "y", "(B, m+1)", "reject",
        lambda: vector_op.A_adjoint(torch.ones(2, 7, dtype=F64)))
    n = x[0].numel()
    add("MatrixOperator", "matrix", "NaN", "reject",
        lambda: MatrixOperator(torch.full((3, n), NAN), tuple(x.shape[1:])))
    add("MatrixOperator", "matrix", "int64", "reject", lambda: MatrixOperator(torch.ones(3, n, dtype=torch.int64),
                                                                            tuple(x.shape[1:])))
    add("MatrixOperator", "input_shape", "n + 1 entries", "reject",
        lambda: MatrixOperator(torch.ones(3, n + 1, dtype=F64), tuple(x.shape[1:])))
    for label, m in [("0", 0), ("n + 1", n + 1), ("2.5", 2.5), ("True", True)]:
        add("MatrixOperator.gaussian", "m", label, "reject", lambda m=m: MatrixOperator.gaussian(m, tuple(x.shape[1:])))
    cs = MatrixOperator.gaussian(5, tuple(x.shape[1:]))
    add("MatrixOperator.solve", "shift", "0 (AᵀA singular)", "reject", lambda: cs.solve(x, 0.0, 1.0))
    add("MatrixOperator.A_adjoint", "y", "(B, m+1)", "reject", lambda: cs.A_adjoint(torch.ones(2, 6, dtype=F64)))
    add("MatrixOperator.from_operator", "operator", "5", "reject",
        lambda: MatrixOperator.from_operator(5, tuple(x.shape[1:])))
    add("Autoencoder", "vae", "5", "reject", lambda: Autoencoder(5))
    add("DiffusersDenoiser", "unet", "5", "reject", lambda: DiffusersDenoiser(5, {}))
    for damage, arg in [("config.json not JSON", "config.json"), ("config.json a list", "config.json"),
                        ("scheduler_config.json not JSON", "scheduler_config.json"), ("no weights", "weights"),
                        ("safetensors garbage", "weights"), ("safetensors truncated", "weights"),
                        ("config.json disagrees with the weights", "config.json")]:
        add("DiffusersDenoiser.from_pretrained", arg, damage, "reject", lambda d=damage: _damaged_folder_load(d))
    import tempfile
    from pathlib import Path

    from diffsolve.data import write_image
    from diffsolve.evaluate import EvalConfig

    out = Path(tempfile.gettempdir()) / "diffsolve-bad-inputs"  # nothing is written: every case is refused first
    add("write_image", "img", "NaN", "reject", lambda: write_image(out / "a.png", torch.full((3, 4, 4), NAN)))
    add("write_image", "img", "(B, C, H, W)", "reject", lambda: write_image(out / "a.png", torch.zeros(1, 3, 4, 4)))
    add("write_image", "path", "'.xyz'", "reject", lambda: write_image(out / "a.xyz", torch.zeros(3, 4, 4)))
    config = dict(data="photos", size=16, tasks=["box"], methods=["pinv"], steps=3, seeds=[0], model="patches",
                  channels=3, out=out)
    for arg, label, value in [("batch", "0", 0), ("data", "'nope'", "nope"), ("seeds", "[]", []),
                              ("methods", "['ddim']", ["ddim"]), ("sigma", "nan", NAN)]:
        add("EvalConfig", arg, label, "reject", lambda a=arg, v=value: EvalConfig(**{**config, a: v}))
    return cases


def _damaged_folder_load(damage: str) -> Any:
    """Save a tiny UNet2DModel + DDIM scheduler in a temporary folder, damage it, load it."""
    import json
    import shutil
    import tempfile
    from pathlib import Path

    from diffusers import DDIMScheduler, UNet2DModel

    from diffsolve.models import DiffusersDenoiser

    root = Path(tempfile.mkdtemp(prefix="diffsolve-bad-folder-"))
    try:
        torch.manual_seed(0)
        UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                    norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                    up_block_types=("UpBlock2D", "UpBlock2D")).save_pretrained(root / "unet")
        DDIMScheduler().save_pretrained(root / "scheduler")
        cfg, weights = root / "unet" / "config.json", root / "unet" / "diffusion_pytorch_model.safetensors"
        if damage == "config.json not JSON":
            cfg.write_text('{"_class_name": "UNet2DModel", ')
        elif damage == "config.json a list":
            cfg.write_text("[1, 2]")
        elif damage == "scheduler_config.json not JSON":
            (root / "scheduler" / "scheduler_config.json").write_text("{oops")
        elif damage == "no weights":
            weights.unlink()
        elif damage == "safetensors garbage":
            weights.write_bytes(b"not a safetensors file" * 8)
        elif damage == "safetensors truncated":
            weights.write_bytes(weights.read_bytes()[:1000])
        else:
            data = json.loads(cfg.read_text())
            data["block_out_channels"] = [8, 32]
            cfg.write_text(json.dumps(data))
        return DiffusersDenoiser.from_pretrained(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def build_cases() -> list[Case]:
    den, prior, ops, x, ys = _setup()
    return (_solver_cases(den, prior, ops, x, ys) + _kernel_cases(x) + _operator_cases(x, ops, ys)
            + _model_cases(den, prior, x) + _misc_cases(x))


CASES = build_cases
