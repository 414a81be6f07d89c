"""C-DPS per-step Gaussian posterior for a diagonal operator A = diag(d), in one elementwise pass.

With prior transition N(m, c⁻¹ I), measurement y_s | x_s ~ N(d ⊙ x_s + b_s, w⁻¹ I) and target
t = y_s − b_s, the posterior has diagonal precision λ = c + w d² and mean (c m + w d t)/λ.
A sample by perturb-then-solve: x = (c m + w d t + √c e₁ + √w d e₂)/λ with e₁, e₂ ~ N(0, I).
For inpainting d is the 0/1 mask; any non-negative diagonal works.
"""

from __future__ import annotations

import torch

from . import _dispatch
from ._checks import check_image_like, check_same, check_tensor_ranges, per_sample, plain_number
from .step import _noise_from_seed, check_offset, check_scalar, check_seeds

__all__ = ["diagonal_posterior_step", "diagonal_posterior_step_reference"]

_FAMILY = "posterior"


def diagonal_posterior_step_reference(
    mean: torch.Tensor,
    precision: torch.Tensor,
    diag: torch.Tensor,
    target: torch.Tensor,
    noise_precision: torch.Tensor,
    noise1: torch.Tensor | None,
    noise2: torch.Tensor | None,
    seed: int | None,
    offset: int,
) -> torch.Tensor:
    """Reference. mean, target, noise*: (B, C, H, W); diag: (1|B, 1|C, H, W); precision, noise_precision: (B,)."""
    view = (-1,) + (1,) * (mean.dim() - 1)
    c, w = precision.view(view), noise_precision.view(view)
    if noise1 is None and seed is not None:
        noise1 = _noise_from_seed(mean, seed, offset)
        noise2 = _noise_from_seed(mean, seed, offset + mean.numel())
    numerator = c * mean + w * diag * target
    if noise1 is not None:
        numerator = numerator + c.sqrt() * noise1 + w.sqrt() * diag * noise2
    return numerator / (c + w * diag * diag)


def diagonal_posterior_step(
    mean: torch.Tensor,
    precision: float | torch.Tensor,
    diag: torch.Tensor,
    target: torch.Tensor,
    noise_precision: float | torch.Tensor,
    *,
    noise: tuple[torch.Tensor, torch.Tensor] | None = None,
    seed: int | None = None,
    offset: int = 0,
    backend: str = "auto",
    check: bool = True,
) -> torch.Tensor:
    """Sample (or, without noise/seed, the mean of) the diagonal C-DPS posterior; see module docstring.

    mean, target: (B, C, H, W); diag: (1|B, 1|C, H, W), non-negative; precision c and noise
    precision w: positive scalars or (B,) tensors; noise: (e₁, e₂) like ``mean``, or ``seed`` for
    backend-generated noise (each backend its own stream; a list of B seeds: one stream per sample),
    or neither for the posterior mean.

    Python numbers are always checked on the host. Tensors must have ``mean``'s dtype and device;
    with ``check=True`` (the default) the (B,) precisions are checked finite and > 0 and ``diag``
    non-negative (a negative precision or diagonal gives a silently wrong posterior), with ONE host
    sync. ``check=False`` skips these (no sync): for solvers passing values they built (C-DPS passes
    the operator's 0/1 mask and precisions it computed).
    """
    precision, noise_precision = plain_number(precision), plain_number(noise_precision)
    check_image_like("mean", mean, min_dim=4)
    if mean.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"mean must be float32 or float64 (solver state stays fp32, as every step kernel's), got "
                        f"{mean.dtype}")
    if mean.dim() != 4:
        raise ValueError(f"mean must be (B, C, H, W), got shape {tuple(mean.shape)}")
    check_same("target", target, mean, "mean")
    check_image_like("diag", diag, min_dim=4)
    if diag.dim() != 4 or any(d not in (1, m) for d, m in zip(diag.shape[:2], mean.shape[:2])) \
            or diag.shape[2:] != mean.shape[2:]:
        raise ValueError(f"diag must have shape (1|B, 1|C, H, W) = (1|{mean.shape[0]}, 1|{mean.shape[1]}, "
                         f"{mean.shape[2]}, {mean.shape[3]}), got {tuple(diag.shape)}")
    if diag.dtype != mean.dtype or diag.device != mean.device:
        raise TypeError(f"diag must match mean's dtype/device ({mean.dtype}, {mean.device}), "
                        f"got ({diag.dtype}, {diag.device})")
    for name, val in (("precision", precision), ("noise_precision", noise_precision)):
        check_scalar(name, val, 0.0, low_open=True)  # finite and > 0 (NaN, inf, 0 and negatives rejected)
        if isinstance(val, (int, float)) and val > torch.finfo(mean.dtype).max:
            raise ValueError(f"{name}={val:.3g} overflows {mean.dtype} (max {torch.finfo(mean.dtype).max:.3g}); in C-DPS "
                             f"noise_precision is about 1/sigma², so sigma is too small for {mean.dtype}: use a larger "
                             "sigma or float64")
    seed = check_seeds(seed, mean.shape[0])
    offset = check_offset(offset)
    noise1 = noise2 = None
    if noise is not None:
        if seed is not None:
            raise ValueError("give either noise=(e1, e2) or seed, not both")
        noise1, noise2 = noise
        check_same("noise[0]", noise1, mean, "mean")
        check_same("noise[1]", noise2, mean, "mean")
    c = per_sample("precision", precision, mean)
    w = per_sample("noise_precision", noise_precision, mean)
    if check:
        skip = "or pass check=False to skip the tensor checks (and their host sync) for values you built"
        checks = [(name, val, ~(torch.isfinite(val) & (val > 0)), "must be finite and > 0 per sample",
                   f"a precision is an inverse variance: give positive values, {skip}")
                  for name, val, given in (("precision", c, precision), ("noise_precision", w, noise_precision))
                  if isinstance(given, torch.Tensor)]
        checks.append(("diag", diag, diag < 0, "must be non-negative (A = diag(d), e.g. a 0/1 inpainting mask)",
                       f"for a signed diagonal pass diag.abs() and target * diag.sign() (the same posterior), {skip}"))
        check_tensor_ranges(checks)
    args = [t.contiguous() if t is not None else None for t in (mean, c, diag, target, w, noise1, noise2)]
    impl = _dispatch.implementation(backend, "diagonal_posterior_step", _FAMILY, mean.device)
    if isinstance(seed, list):  # one stream per sample (see kernels.step): sample b alone
        per_b = args[2].shape[0] > 1  # diag (1|B, ...)
        return torch.cat([impl(*[None if t is None else (t if (k == 2 and not per_b) else t[b:b + 1])
                                 for k, t in enumerate(args)], s, offset) for b, s in enumerate(seed)])
    return impl(*args, seed, offset)
