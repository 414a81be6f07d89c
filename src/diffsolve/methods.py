"""The one method registry: every reconstruction method described once, read by ``solve``, ``restore``,
``demo`` and ``eval``.

``METHODS[name]`` is a :class:`Method`:

=============  ============================================================================================
field          meaning
=============  ============================================================================================
``fn``         the function in :mod:`diffsolve.solvers` (imported on first use), or the baseline's function
``summary``    one line with the paper
``required``   keyword arguments ``solve`` must be given (``sigma`` for C-DPS, ``autoencoder`` for MPGD-LDM)
``uses_model`` whether it calls the denoiser (then the model's size rules apply: sample shape, H and W
               multiples of ``spatial_multiple``); pinv / tikhonov do not
``backward``   whether it differentiates through the denoiser (DPS: run it under ``torch.enable_grad``)
``kind``       ``"sampler"`` (ignores y), ``"inverse"``, ``"latent"`` (needs an autoencoder), ``"baseline"``
``cli_options`` ``cli_options(problem) -> dict``: the options ``demo`` / ``restore`` / ``eval`` pass
               (C-DPS's σ is the measurement noise; MPGD's ρ is rescaled for ×s down-sampling)
``tune``       ``(option, candidates)`` picked per sample by PSNR against the truth when ``restore`` gets x_true
               (an oracle that favours the baseline: Tikhonov's λ)
``cli``        whether the command line offers it (MPGD-LDM needs an autoencoder the CLI cannot build)
``svd``        when it needs A's SVD: ``"always"`` (DDRM), ``"noisy"`` (DDNM+, σ > 0) or ``""``;
               :meth:`Method.unsupported` asks the operator for it before any model call
=============  ============================================================================================

:func:`Method.defaults` reads the solver's own keyword defaults from its signature, so a default is
written once, in the solver. The options every model-based method shares (``steps``, ``spacing``,
``generator``, ``backend``, …) are the fields of :class:`diffsolve.solvers.Sampling`, described there once;
:meth:`Method.check_options` splits flat keywords between the two and names a misplaced one.

API for the command line (``diffsolve.cli``: demo, restore, eval):

- ``METHODS`` (name -> Method), ``CLI_METHODS`` (names the CLI offers, in display order),
  ``ANY_OPERATOR`` (the model-based ones that need no SVD), ``get_method(name) -> Method`` (ValueError
  listing the names), ``Method.unsupported(operator, size, sigma) -> reason | None`` (``Method.brief``: in one line);
- ``restore(method, denoiser, operator, y, *, steps, sigma, generator=None, x_true=None,
  progress=False, callback=None, discrepancy=True)`` -> (x (B, C, H, W), info dict): one reconstruction with the
  CLI options, under no_grad unless the method needs the model's backward.
- ``solve`` (:mod:`diffsolve.solve`) is the library entry point with the solver's own options.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch loads on first use: ``import diffsolve`` (and the CLI's --help) stay light
    import torch

__all__ = ["ANY_OPERATOR", "CLI_METHODS", "METHODS", "Method", "Problem", "discrepancy_methods", "get_method",
           "restore", "takes_discrepancy"]

@dataclass(frozen=True)
class Problem:
    """What ``cli_options`` may read: the step count, measurement noise σ, the operator and y."""

    steps: int
    sigma: float
    operator: Any
    y: torch.Tensor


def _no_options(problem: Problem) -> dict[str, Any]:
    return {}


def _cdps_options(problem: Problem) -> dict[str, Any]:
    return {"sigma": problem.sigma}


def _optional_sigma(problem: Problem) -> dict[str, Any]:
    # σ where the method takes it optionally: MPGD's default ρ and discrepancy cap, DPS's discrepancy factor,
    # RED-diff's discrepancy gate (each also reports the data consistency)
    return {"sigma": problem.sigma} if problem.sigma > 0 else {}


def _pinv(denoiser: Any, operator: Any, y: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """A⁺ y, the minimum-norm least-squares solution (the operator's exact or CG solve); ``backend``: the kernels'
    (:class:`~diffsolve.solvers.Sampling`'s meaning), routed to the operator."""
    from .solvers._inverse import check_problem, route

    operator = route(operator, backend)
    check_problem(operator, y, data=False)  # y checked as every method checks it (a 0–255 y is refused)
    return operator.pseudo_inverse(y)


def _tikhonov(denoiser: Any, operator: Any, y: torch.Tensor, *, lam: float = 1e-2,
              backend: str = "auto") -> torch.Tensor:
    """argmin_x ‖A x − y‖² + λ‖x‖² (the operator's exact or CG solve; ``backend`` as :func:`_pinv`). An exact
    solve of float32 y runs in float64 and returns float32: one cheap solve, which at the small λ of a sweep float32
    rounding leaves above its tol."""
    import torch

    from .solvers._inverse import check_problem, route

    operator = route(operator, backend)
    check_problem(operator, y, data=False)  # y checked as every method checks it (a 0–255 y is refused)
    if y.dtype == torch.float32 and getattr(operator, "exact_solve", False):
        return operator.tikhonov(y.double(), lam).to(y.dtype)
    return operator.tikhonov(y, lam)


def _unconditional(name: str) -> Callable[..., Any]:
    """An unconditional sampler (``ddim``, ``ge``) behind the registry's signature: the batch shape is ``shape``
    or taken from (operator, y) (y's values unused)."""

    def sample(denoiser: Any, operator: Any, y: torch.Tensor | None, *, shape: Sequence[int] | None = None,
               **options: Any) -> Any:
        from .solvers._inverse import check_problem

        if shape is None:
            if operator is None or y is None:
                raise ValueError(f"method={name!r} needs shape=(B, C, H, W), or an operator and y to take it from")
            shape = check_problem(operator, y, options.get("x_T"), data=False)
            options.setdefault("dtype", y.dtype)
            options.setdefault("device", y.device)
        return _solver_function(name)(denoiser, shape, **options)

    return sample


def _mpgd_ldm(denoiser: Any, operator: Any, y: torch.Tensor | None, *, autoencoder: Any, **options: Any) -> Any:
    from .solvers import mpgd_ldm

    return mpgd_ldm(denoiser, autoencoder, operator, y, **options)


def _solver_function(name: str) -> Callable[..., Any]:
    """``diffsolve.solvers.<name>.<name>``, from its module (the package attribute can be shadowed by the
    submodule of the same name)."""
    import importlib

    return getattr(importlib.import_module(f"{__package__}.solvers.{name}"), name)


def _solver(name: str) -> Callable[..., Any]:
    def call(denoiser: Any, operator: Any, y: Any, **options: Any) -> Any:
        return _solver_function(name)(denoiser, operator, y, **options)

    call.__name__ = name
    call.solver_name = name  # type: ignore[attr-defined]
    return call


@dataclass(frozen=True)
class Method:
    """One reconstruction method (module docstring); call it as ``method(denoiser, operator, y, **opts)``."""

    name: str
    fn: Callable[..., Any]
    summary: str
    kind: str
    uses_model: bool = True
    backward: bool = False
    required: tuple[str, ...] = ()
    cli_options: Callable[[Problem], dict[str, Any]] = _no_options
    tune: tuple[str, tuple[float, ...]] | None = None
    cli: bool = True
    solver: str | None = field(default=None, repr=False)
    #: options the registry's wrapper adds to the solver's own (``shape`` for ddim, ``autoencoder`` for LDM)
    extra: tuple[str, ...] = ()
    #: what it needs of the operator (structure) — shown by ``diffsolve info``
    needs: str = "—"
    #: model evaluations per step (forward, and backward where the method differentiates through it)
    nfe: str = "1"
    #: when it needs A's SVD: "always" (DDRM), "noisy" (σ > 0: DDNM+), "" (never)
    svd: str = ""
    #: the step counts it is meant for, where more steps stop helping ("" where they do not) — shown by ``info``
    steps: str = ""

    def signature_function(self) -> Callable[..., Any]:
        """The function whose signature holds this method's options (the solver, or the baseline)."""
        return self.fn if self.solver is None else _solver_function(self.solver)

    def defaults(self) -> dict[str, Any]:
        """The method's own keyword defaults (from the solver's signature; the shared ones are Sampling's)."""
        from .solvers import SAMPLING_FIELDS

        params = inspect.signature(self.signature_function()).parameters.values()
        return {p.name: p.default for p in params
                if p.kind is p.KEYWORD_ONLY and p.default is not p.empty and p.name not in SAMPLING_FIELDS}

    def own_options(self) -> tuple[str, ...]:
        """The names of the method's own options (keyword-only in its function, plus the wrapper's)."""
        from .solvers import SAMPLING_FIELDS
        from .solvers._loop import own_options

        own = own_options(self.signature_function()) + self.extra
        return own if self.uses_model else tuple(k for k in own if k not in SAMPLING_FIELDS)  # a baseline's backend

    def check_options(self, options: Mapping[str, Any]) -> None:
        """One TypeError naming the method's options where ``options`` holds a name it does not take."""
        from .solvers import SAMPLING_FIELDS

        own = self.own_options()
        shared = SAMPLING_FIELDS + ("sampling",) if self.uses_model else ("backend",)  # the kernels', for every method
        unknown = [k for k in options if k not in own and k not in shared]
        if not unknown:
            return
        if not self.uses_model and any(k in SAMPLING_FIELDS for k in unknown):
            raise TypeError(f"method={self.name!r} runs no model: leave out the sampling option(s) "
                            f"{[k for k in unknown if k in SAMPLING_FIELDS]}; its options are {list(own)}")
        raise TypeError(f"method={self.name!r} got unknown option(s) {unknown}; its own options are {list(own)}"
                        + (f" and the shared sampling options are {list(shared)}" if shared else ""))

    def check_required(self, options: Mapping[str, Any]) -> None:
        """ValueError naming the first required option missing from ``options``."""
        hints = {"sigma": "the measurement noise std in [-1, 1] units",
                 "autoencoder": "the latent model's Autoencoder"}
        for name in self.required:
            if name not in options:
                raise ValueError(f"method={self.name!r} needs {name}= ({hints.get(name, 'required')})")

    def unsupported(self, operator: Any, size: tuple[int, int], sigma: float = 0.0) -> str | None:
        """Why this method cannot run on ``operator`` for H×W = ``size`` images at noise ``sigma``, or None:
        the SVD methods on an operator without one (a reflect-boundary motion blur). Host-side, before any
        model call, so ``restore`` / ``eval`` / ``demo`` can refuse or skip the pair up front."""
        if self.svd == "always" or (self.svd == "noisy" and sigma > 0):
            from .operators.svd import operator_svd

            try:
                operator_svd(operator, tuple(size), f"{self.name}{' with sigma > 0' if self.svd == 'noisy' else ''}")
            except ValueError as err:
                return str(err)
        return None

    @staticmethod
    def brief(why: str) -> str:
        """An :meth:`unsupported` reason without the operator's list of the operators that have an SVD (one line
        for the command line's notes and refusals)."""
        return why.split("; supported")[0]

    def __call__(self, denoiser: Any, operator: Any, y: Any, **options: Any) -> Any:
        self.check_options(options)
        self.check_required(options)
        return self.fn(denoiser, operator, y, **options)


METHODS: Mapping[str, Method] = {m.name: m for m in (
    Method("mpgd", _solver("mpgd"), "MPGD (He et al. 2024): manifold-preserving guidance, no UNet backward",
           "inverse", cli_options=_optional_sigma, solver="mpgd", needs="any operator (σ sets ρ and its cap)"),
    Method("cdps", _solver("cdps"), "C-DPS (Hamidi, Yang & Liang 2025): coupled data/measurement posterior "
           "sampling", "inverse", required=("sigma",), cli_options=_cdps_options, solver="cdps",
           needs="A's structured solve, else CG", steps="N ≤ 100 (more over-weight y)"),
    Method("dps", _solver("dps"), "DPS (Chung et al. 2023): gradient through the UNet of ‖y − A x̂0‖",
           "inverse", backward=True, cli_options=_optional_sigma, solver="dps",
           needs="any differentiable A (σ: the pull stops near the noise level)", nfe="1 + 1 backward"),
    Method("pigdm", _solver("pigdm"), "ΠGDM (Song et al. 2023): pseudoinverse guidance, a VJP through the UNet of "
           "Aᵀ(σ²I + r_t²AAᵀ)⁻¹(y − A x̂0)", "inverse", backward=True, required=("sigma",),
           cli_options=_cdps_options, solver="pigdm", needs="A's structured solve, else CG", nfe="1 + 1 backward",
           steps="N = 20–100 (its guidance adds up with N)"),
    Method("diffpir", _solver("diffpir"), "DiffPIR (Zhu et al. 2023): plug-and-play proximal data step on x̂0, "
           "re-noised with ζ, no UNet backward", "inverse", required=("sigma",), cli_options=_cdps_options,
           solver="diffpir", needs="A's structured solve, else CG"),
    Method("ddrm", _solver("ddrm"), "DDRM (Kawar et al. 2022): DDIM-like sampling in the SVD space of A, y imposed "
           "per singular direction (eta=0.85, eta_b=1)", "inverse", required=("sigma",), cli_options=_cdps_options,
           solver="ddrm", needs="A's SVD (identity, masks, SR, separable or circular blur, a dense matrix)",
           svd="always", steps="N = 20–100 (on blurs more steps drift)"),
    Method("ddnm", _solver("ddnm"), "DDNM / DDNM+ (Wang, Yu & Zhang 2023): range-null-space projection of x̂0, "
           "re-noised as the authors' code (eta=0.85; σ > 0: per singular value, DDRM's step at eta_b=1, needs an "
           "SVD), no UNet backward", "inverse",
           cli_options=_cdps_options, solver="ddnm", needs="A⁺; with σ > 0 A's SVD", svd="noisy",
           steps="N = 20–100 with σ (DDRM's step)"),
    Method("daps", _solver("daps"), "DAPS (Zhang et al. 2025): decoupled noise annealing, PF-ODE x0 estimate + "
           "Langevin on x0 per level", "inverse", required=("sigma",), cli_options=_cdps_options, solver="daps",
           needs="any operator (a level's K Langevin steps in one draw: by A's SVD, else a Chebyshev series in AᵀA)",
           nfe="ode_steps (5)", steps="N ≥ 5 levels (at 2–3 its Langevin steps, held to the next level's noise, "
           "barely reach y)"),
    Method("reddiff", _solver("reddiff"), "RED-diff (Mardani et al. 2024): variational mean fitted by Adam, "
           "score-matching regulariser, no UNet backward", "inverse", cli_options=_optional_sigma, solver="reddiff",
           needs="any operator (σ gates the data term at the noise floor)"),
    Method("mmps", _solver("mmps"), "MMPS (Rozet et al. 2024): moment-matching posterior mean by GMRES (or CG) "
           "with the Tweedie covariance (UNet VJPs)", "inverse", backward=True, required=("sigma",),
           cli_options=_cdps_options, solver="mmps", needs="any operator (GMRES in measurement space)",
           nfe="1 + iters backward"),
    Method("tikhonov", _tikhonov, "Tikhonov: argmin ‖Ax − y‖² + λ‖x‖² (λ picked by PSNR when the truth "
           "is known)", "baseline", uses_model=False, tune=("lam", (1e-3, 1e-2, 1e-1)),
           needs="A's structured solve, else CG", nfe="0"),
    Method("pinv", _pinv, "pseudo-inverse A⁺y", "baseline", uses_model=False, needs="A's structured solve, else CG",
           nfe="0"),
    Method("ddim", _unconditional("ddim"), "DDIM (Song et al. 2021): unconditional samples, y only fixes the shape",
           "sampler", cli=False, solver="ddim", extra=("shape",)),  # ignores y: no restoration to offer
    Method("ge", _unconditional("ge"), "GE (Permenter & Yuan 2024): gradient-estimation sampler, unconditional; y "
           "only fixes the shape", "sampler", cli=False, solver="ge", extra=("shape",)),
    Method("mpgd_ldm", _mpgd_ldm, "MPGD on a latent diffusion model (needs autoencoder=)", "latent",
           required=("autoencoder",), cli=False, solver="mpgd_ldm", extra=("autoencoder",),
           needs="an autoencoder; the decoder's backward"),
)}

#: The methods the command line offers, in display order.
CLI_METHODS: tuple[str, ...] = tuple(name for name, m in METHODS.items() if m.cli)

#: The model-based command-line methods that run with any operator (no SVD needed): named in refusals.
ANY_OPERATOR: tuple[str, ...] = tuple(n for n in CLI_METHODS if METHODS[n].uses_model and not METHODS[n].svd)


def get_method(name: object) -> Method:
    """The registry entry of ``name``; ValueError listing the names otherwise."""
    if not isinstance(name, str) or name not in METHODS:
        raise ValueError(f"method must be one of {tuple(METHODS)}, got {name!r}")
    return METHODS[name]


def takes_discrepancy(method: str) -> bool:
    """Whether ``method`` ends within the noise by default (its ``discrepancy`` option; ``False`` = the paper's
    result)."""
    return "discrepancy" in get_method(method).defaults()


def discrepancy_methods() -> tuple[str, ...]:
    """The command-line methods that have a ``discrepancy`` option (imports their solvers)."""
    return tuple(n for n in CLI_METHODS if takes_discrepancy(n))


def restore(method: str, denoiser: Any, operator: Any, y: torch.Tensor, *, steps: int, sigma: float,
            generator: torch.Generator | list[torch.Generator] | None = None,
            x_true: torch.Tensor | None = None, progress: bool = False,
            callback: Callable[..., Any] | None = None,
            discrepancy: bool = True) -> tuple[torch.Tensor, dict[str, Any]]:
    """Reconstruct from y = A x + σ n by ``method`` with the command line's options.

    Args:
        method: a name in :data:`METHODS`; denoiser: ε̂(x, t) (unused by baselines);
        operator, y: the linear operator and the measurement (B, ...);
        steps: N (unused by baselines); sigma: the measurement noise std in [-1, 1] units;
        generator: a torch.Generator or one per sample (:class:`diffsolve.solvers.Sampling`);
        x_true: (B, C, H, W) truth; only used to pick ``tune`` options by each sample's PSNR (Tikhonov's λ);
        progress / callback: as :class:`diffsolve.solvers.Sampling` (model-based methods only);
        discrepancy: False runs the paper's result for the methods that end within the noise by default
            (:func:`takes_discrepancy`; ``_inverse.discrepancy_pull``); True leaves every method at its default.
    Returns:
        (x (B, C, H, W) detached, info) — info holds a tuned option's per-sample values (a list of B; the
        default's without ``x_true``).
    """
    import torch

    from .solvers._loop import check_flag

    spec = get_method(method)
    check_flag("discrepancy", discrepancy)
    options = spec.cli_options(Problem(steps=steps, sigma=sigma, operator=operator, y=y))
    if not discrepancy:
        if not takes_discrepancy(method):
            raise ValueError(f"discrepancy=False: {method} has no discrepancy step to switch off (the methods that "
                             f"have one: {', '.join(discrepancy_methods())}); leave discrepancy at True")
        options["discrepancy"] = False
    if spec.uses_model:
        options.update(steps=steps, generator=generator, progress=progress)
        if callback is not None:
            options["callback"] = callback
    if spec.tune is not None:  # per sample: a record must not depend on the other images of its batch
        key, candidates = spec.tune
        if x_true is None:
            return spec(denoiser, operator, y, **options).detach(), {key: [spec.defaults()[key]] * y.shape[0]}
        from .metrics import psnr

        results = torch.stack([spec(denoiser, operator, y, **options, **{key: c}).detach() for c in candidates])
        best = torch.stack([psnr(r, x_true) for r in results]).argmax(0).tolist()  # (B,) after the solves
        return results[best, range(len(best))], {key: [candidates[k] for k in best]}
    with torch.enable_grad() if spec.backward else torch.no_grad():
        x = spec(denoiser, operator, y, **options)
    return x.detach(), {}
