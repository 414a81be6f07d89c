"""One entry point for every method: ``solve(method, denoiser, operator, y, *, steps, ...)``.

``method``: ``"ddim"`` (unconditional; y only fixes the batch/image shape, or pass ``shape=``),
``"dps"``, ``"mpgd"``, ``"mpgd_ldm"`` (needs ``autoencoder=``; the denoiser runs on latents),
``"cdps"`` (needs ``sigma=``). ``options`` go to the method's function in ``diffsolve.solvers``
(see each docstring); ``return_info=True`` adds per-step diagnostics for the inverse solvers.
"""

from __future__ import annotations

from typing import Any

import torch

from .solvers import cdps, ddim, dps, mpgd, mpgd_ldm
from .solvers._inverse import check_problem

__all__ = ["METHODS", "solve"]

METHODS = ("ddim", "dps", "mpgd", "mpgd_ldm", "cdps")


def solve(method: str, denoiser: Any, operator: Any, y: torch.Tensor | None, *, steps: int,
          generator: torch.Generator | None = None, progress: bool = False, **options: Any) -> Any:
    """Run ``method`` on y = A x + n and return the reconstructions (B, C, H, W) (and info if asked).

    Example::

        x = diffsolve.solve("cdps", denoiser, Inpainting.box(256), y, steps=100, sigma=0.05,
                            generator=torch.Generator().manual_seed(0))
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    common = dict(steps=steps, generator=generator, progress=progress)
    if method == "ddim":
        shape = options.pop("shape", None)
        if shape is None:
            if operator is None or y is None:
                raise ValueError("method='ddim' needs shape=(B, C, H, W), or an operator and y to take it from")
            shape = check_problem(operator, y, options.get("x_T"))
            options.setdefault("dtype", y.dtype)
            options.setdefault("device", y.device)
        return ddim(denoiser, shape, **common, **options)
    if method == "mpgd_ldm":
        if "autoencoder" not in options:
            raise ValueError("method='mpgd_ldm' needs autoencoder= (the latent model's Autoencoder)")
        autoencoder = options.pop("autoencoder")
        return mpgd_ldm(denoiser, autoencoder, operator, y, **common, **options)
    if method == "cdps" and "sigma" not in options:
        raise ValueError("method='cdps' needs sigma= (the measurement noise std in [-1, 1] units)")
    fn = {"dps": dps, "mpgd": mpgd, "cdps": cdps}[method]
    return fn(denoiser, operator, y, **common, **options)
