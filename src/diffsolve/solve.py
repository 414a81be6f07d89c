"""One entry point for every method: ``solve(method, denoiser, operator, y, *, steps, ...)``.

``method`` is a name in the registry :data:`diffsolve.methods.METHODS`, which describes each method
once (function, required options, whether it uses the model or its backward): ``"ddim"``
(unconditional; y only fixes the batch/image shape, or pass ``shape=``), ``"dps"``, ``"mpgd"``,
``"mpgd_ldm"`` (needs ``autoencoder=``; the denoiser runs on latents), ``"cdps"`` (needs ``sigma=``),
and the baselines ``"tikhonov"`` (``lam=``) and ``"pinv"`` (no model, no steps). ``options`` go to
the method's function in ``diffsolve.solvers`` (see each docstring; the shared sampling options are
listed in :data:`diffsolve.methods.SAMPLING_OPTIONS`); ``return_info=True`` adds per-step
diagnostics for the inverse solvers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .methods import METHODS, get_method

if TYPE_CHECKING:  # no torch at import: ``import diffsolve`` imports this module
    import torch

__all__ = ["METHODS", "solve"]


def solve(method: str, denoiser: Any, operator: Any, y: torch.Tensor | None, *, steps: int | None = None,
          generator: torch.Generator | list[torch.Generator] | None = None, progress: bool = False,
          **options: Any) -> Any:
    """Run ``method`` on y = A x + n and return the reconstructions (B, C, H, W) (and info if asked).

    ``steps`` is required by every method that runs the model (all but the baselines).

    Example::

        x = diffsolve.solve("cdps", denoiser, Inpainting.box(256), y, steps=100, sigma=0.05,
                            generator=torch.Generator().manual_seed(0))
    """
    spec = get_method(method)
    if not spec.uses_model:
        if generator is not None or steps is not None:
            raise ValueError(f"method={method!r} runs no model: leave out steps= and generator=")
        return spec(denoiser, operator, y, **options)
    if steps is None:
        raise ValueError(f"method={method!r} needs steps= (the number of sampling steps)")
    return spec(denoiser, operator, y, steps=steps, generator=generator, progress=progress, **options)
