"""Operators whose linearity is not guaranteed by construction (a CallableOperator, a user's object with A and
A_adjoint) are probed once before the loop: a non-linear A or a wrong transpose is named before any model call,
and DPS, which differentiates A by autograd, runs on a non-linear A where it has no closing pull."""

from __future__ import annotations

import pytest
import torch
from _small_problem import D, SHAPE, gen, prior

import diffsolve
from diffsolve.methods import METHODS
from diffsolve.operators import CallableOperator
from diffsolve.solvers import ddim

INVERSE = [name for name, m in METHODS.items() if m.kind == "inverse"]


class FourierMagnitude:
    """y = |F x| (phase retrieval's measurement): differentiable, not linear. A_adjoint only gives the shape."""

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.fft2(x, norm="ortho").abs()

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y


class Counting:
    def __init__(self, inner) -> None:
        self.inner, self.calls, self.alphas_cumprod = inner, 0, inner.alphas_cumprod

    def __call__(self, x, t):
        self.calls += 1
        return self.inner(x, t)


def _y(op) -> torch.Tensor:
    x = prior().sample(2, generator=gen(1))
    return op.A(x) + 0.05 * torch.randn(op.A(x).shape, generator=gen(2), dtype=D)


@pytest.mark.parametrize("method", INVERSE)
def test_a_non_linear_operator_is_named_before_the_first_model_call(method):
    den, op = Counting(prior()), FourierMagnitude()
    with pytest.raises(ValueError, match="operator FourierMagnitude is not linear"):
        with torch.enable_grad():
            diffsolve.solve(method, den, op, _y(op), steps=4, sigma=0.05, generator=gen(3))
    assert den.calls == 0


def test_a_wrong_transpose_is_named():
    op = CallableOperator(lambda x: 2 * x, adjoint=lambda y: y)  # the transpose of 2I is 2I
    with pytest.raises(ValueError, match="is not the transpose of its A"):
        diffsolve.solve("mpgd", prior(), op, _y(op), steps=4, sigma=0.05, generator=gen(3))


def test_dps_differentiates_a_non_linear_operator():
    """Without the closing pull DPS needs only A's autograd: on |F x| every draw fits y better than an unguided one,
    and the batch's misfit is under half theirs (about a quarter here)."""
    op, pr = FourierMagnitude(), prior()
    y = _y(op)
    with torch.enable_grad():
        for options in ({"sigma": 0.05, "discrepancy": False}, {}):
            out = diffsolve.solve("dps", pr, op, y, steps=50, generator=gen(3), **options)
            guided = (op.A(out) - y).flatten(1).norm(dim=1)
            free = ddim(pr, (2, *SHAPE), steps=50, generator=gen(3), eta=1.0)
            unguided = (op.A(free) - y).flatten(1).norm(dim=1)
            assert bool((guided < unguided).all()) and guided.sum() < 0.5 * unguided.sum(), (guided, unguided)
    with pytest.raises(ValueError, match="is not linear"):
        diffsolve.solve("dps", pr, op, y, steps=50, sigma=0.05, generator=gen(3))
