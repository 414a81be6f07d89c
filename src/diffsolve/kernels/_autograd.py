"""Linear kernels as ``torch.autograd.Function``s whose backward is the adjoint kernel on the same backend.

Layering (as in Liger-Kernel): kernel (``_triton_*.py``, ``pybind/*.cpp``, or the torch reference)
→ launcher (the function named in ``_dispatch.TABLE``) → :class:`LinearFunction` → the public
function (``correlate2d``, ``resample``, …) → the operators' ``A`` / ``A_adjoint``.

For a linear op L with fixed parameters θ (kernel taps, resampling matrices, a pooling factor, a
boundary), y = L(x; θ) and the vector–Jacobian product is ∂ℓ/∂x = Lᵀ(∂ℓ/∂y; θ): the adjoint op,
which the dispatch table pairs with L and resolves on the same backend. The backward itself calls
:class:`LinearFunction` (with L and Lᵀ swapped), so it is recorded when ``create_graph=True`` and
the double backward is L again: every order of derivative runs the same two kernels.

Gradients with respect to θ: on the torch backend the reference runs as plain torch code, so
autograd reaches θ too; on triton / cpp a parameter tensor that requires grad (with grad mode on)
raises ``ValueError`` naming it, instead of silently getting no gradient. When no input
requires grad the launcher is called directly (no autograd node, no overhead).
"""

from __future__ import annotations

import torch

from . import _dispatch

__all__ = ["LinearFunction", "apply_linear"]


class LinearFunction(torch.autograd.Function):
    """y = impl.fn(x, *params); backward: impl.adjoint_fn(grad, *params) (same backend)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, impl: _dispatch.Impl, params: tuple) -> torch.Tensor:  # type: ignore[override]
        ctx.impl, ctx.params = impl, params
        return impl.fn(x, *params)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return LinearFunction.apply(grad.contiguous(), ctx.impl.transposed(), ctx.params), None, None


def apply_linear(op: str, backend: str, x: torch.Tensor, *params, names: tuple[str, ...] = ()) -> torch.Tensor:
    """Run linear ``op`` on x (contiguous) with parameters ``params`` (named ``names`` in errors)."""
    impl = _dispatch.resolve(op, backend, x.device, x.dtype)
    if not torch.is_grad_enabled():
        return impl.fn(x, *params)
    for i, p in enumerate(params):
        if isinstance(p, torch.Tensor) and p.requires_grad:
            if impl.backend == "torch":  # the reference is plain torch: autograd sees every input
                return impl.fn(x, *params)
            name = names[i] if i < len(names) else f"parameter {i}"
            raise ValueError(f"{op}: {name} requires grad, but gradients reach only the image argument (the "
                             f"backward is the adjoint op); detach {name}, or differentiate through your own "
                             "torch code for kernel gradients")
    if not x.requires_grad:
        return impl.fn(x, *params)
    return LinearFunction.apply(x, impl, params)
