"""One entry point for every method: ``solve(method, denoiser, operator, y, *, steps, ...)``.

``method`` is a name in the registry :data:`diffsolve.methods.METHODS`, which describes each method
once (function, required options, whether it uses the model or its backward; ``diffsolve info`` lists them):
``"ddim"`` and ``"ge"`` (unconditional; the operator and y fix the batch/image shape, or pass ``shape=``), the
guided solvers ``"dps"``, ``"mpgd"``, ``"mpgd_ldm"`` (needs ``autoencoder=``; the denoiser runs on latents) and
``"cdps"``, the comparison methods ``"pigdm"``, ``"ddrm"``, ``"ddnm"``, ``"diffpir"``, ``"daps"``, ``"reddiff"`` and
``"mmps"`` (``cdps``, ``pigdm``, ``diffpir``, ``ddrm``, ``daps`` and ``mmps`` need ``sigma=``), and the
baselines ``"tikhonov"`` (``lam=``) and ``"pinv"`` (no model, no steps). ``options`` go to the method's
function in ``diffsolve.solvers`` (see each docstring; the shared sampling options are the fields of
:class:`diffsolve.solvers.Sampling`); ``return_info=True`` adds per-step diagnostics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .methods import METHODS, get_method

if TYPE_CHECKING:  # no torch at import: ``import diffsolve`` imports this module
    import torch

__all__ = ["METHODS", "solve"]


def solve(method: str, denoiser: Any, operator: Any, y: torch.Tensor | None, **options: Any) -> Any:
    """Run ``method`` on y = A x + n and return the reconstructions (B, C, H, W) (and info if asked).

    ``options`` are flat keywords: the shared sampling options (the fields of
    :class:`diffsolve.solvers.Sampling`: ``steps`` — required by every method that runs the model —,
    ``generator``, ``backend``, ``return_info``, …) and the method's own (its solver's docstring). A name
    the method does not take raises one TypeError listing the method's options.

    Example::

        x = diffsolve.solve("cdps", denoiser, Inpainting.box(256), y, steps=100, sigma=0.05,
                            generator=torch.Generator().manual_seed(0))
    """
    spec = get_method(method)
    spec.check_options(options)
    if spec.uses_model and not {"steps", "timesteps", "sampling"} & options.keys():
        raise ValueError(f"method={method!r} needs steps= (the number of sampling steps) or timesteps=")
    return spec(denoiser, operator, y, **options)
