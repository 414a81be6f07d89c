"""ΠGDM: the guidance against dense linear algebra on an exact Gaussian prior (the Jacobian of x̂0 is the dense
affine map), the whole loop against a dense re-implementation, bad inputs (every backend and batch independence: tests/test_methods_contract.py)."""

from __future__ import annotations

import math

import pytest
import torch
from _small_problem import D, OPS, SHAPE, dense_discrepancy_pull, gen, measure, prior

from diffsolve.models.priors import operator_matrix
from diffsolve.solvers._inverse import PULL_CG_ITERS, measured_entries
from diffsolve.solvers._loop import select_schedule
from diffsolve.solvers.pigdm import guidance_vector, pigdm

@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("sigma", [0.05, 0.0])
def test_guidance_vector_dense(name, sigma):
    op = OPS[name]()
    a = operator_matrix(op, SHAPE)
    r = measure(op, sigma=0.1)
    r2 = 0.3
    v = guidance_vector(op, r, sigma, r2)
    rf = r.flatten(1).T
    if sigma > 0:
        ref = r2 * a.T @ torch.linalg.solve(sigma**2 * torch.eye(a.shape[0], dtype=D) + r2 * a @ a.T, rf)
    else:
        ref = torch.linalg.pinv(a) @ rf
    assert torch.allclose(v.flatten(1), ref.T, atol=1e-8)


@pytest.mark.parametrize("name", sorted(OPS))
def test_loop_matches_dense(name):
    """η = 0: x_s = √ᾱ_s (x̂0 + √ᾱ_t Jᵀ v) + √(1−ᾱ_s) ε̂, J = ∂x̂0/∂x_t from dense autograd."""
    pr, op, sigma, steps = prior(), OPS[name](), 0.05, 4
    y = measure(op)
    x_T = torch.randn(2, *SHAPE, generator=gen(7), dtype=D)
    out = pigdm(pr, op, y, steps=steps, x_T=x_T, sigma=sigma, eta=0.0, discrepancy=False)
    held = pigdm(pr, op, y, steps=steps, x_T=x_T, sigma=sigma, eta=0.0)
    a = operator_matrix(op, SHAPE)
    sched = select_schedule(pr, steps, "trailing")
    x = x_T.clone()
    for i, (a_t, a_s) in enumerate(zip(sched.alpha_t.tolist(), sched.alpha_s.tolist())):
        t = sched.timesteps[i].expand(2)

        def x0_of(v):
            return (v - math.sqrt(1 - a_t) * pr(v, t[: v.shape[0]])) / math.sqrt(a_t)

        eps, x0 = pr(x, t), x0_of(x)
        r = (y.flatten(1) - x0.flatten(1) @ a.T).T
        r2 = 1 - a_t
        v = r2 * a.T @ torch.linalg.solve(sigma**2 * torch.eye(a.shape[0], dtype=D) + r2 * a @ a.T, r)
        g = torch.stack([torch.autograd.functional.jacobian(lambda u: x0_of(u[None])[0], x[b]).reshape(16, 16).T
                         @ v[:, b] for b in range(2)])
        x = math.sqrt(a_s) * (x0 + math.sqrt(a_t) * g.view_as(x)) + math.sqrt(1 - a_s) * eps
    assert torch.allclose(out, x, atol=1e-8)
    # the default: that run held to the discrepancy principle, r_t² = 1 − ᾱ_t of the last step (dense bisection)
    pulled = dense_discrepancy_pull(a, x, y, sigma, 1 - sched.alpha_t[-1].item(), measured_entries(op, y))
    assert torch.allclose(held, pulled, atol=1e-8)


def test_return_info_and_callback():
    op = OPS["sr"]()
    seen = []
    x, info = pigdm(prior(), op, measure(op), steps=3, sigma=0.05, generator=gen(0), return_info=True,
                    callback=lambda i, t, xs, x0: seen.append(i))
    assert set(info) == {"residual", "timesteps", "final_residual", "data_consistency", "nfe"}
    assert info["residual"].shape == (3, 2) and seen == [0, 1, 2]


def test_bad_inputs():
    op, pr = OPS["sr"](), prior()
    y = measure(op)
    with pytest.raises(TypeError, match="sigma"):
        pigdm(pr, op, y, steps=3)
    with pytest.raises(ValueError, match="sigma"):
        pigdm(pr, op, y, steps=3, sigma=-0.1)
    with pytest.raises(TypeError, match="sigma"):
        pigdm(pr, op, y, steps=3, sigma="0.1")
    with pytest.raises(ValueError, match="eta"):
        pigdm(pr, op, y, steps=3, sigma=0.1, eta=1.5)
    with pytest.raises(ValueError, match="y"):
        pigdm(pr, op, y[..., :1], steps=3, sigma=0.1)

    class Bare:  # A and Aᵀ only: no solve
        A, A_adjoint = op.A, op.A_adjoint

    # without solve the guidance runs CG on AᵀA: on 16 pixels its iterations reach the exact solve
    with torch.enable_grad():
        bare = pigdm(pr, Bare(), y, steps=3, sigma=0.1, generator=gen(4))
        exact = pigdm(pr, op, y, steps=3, sigma=0.1, generator=gen(4))
    assert torch.allclose(bare, exact, atol=1e-6)


def test_operators_without_an_exact_solve_take_cg_iters(monkeypatch):
    """Step 2 by CG: CG_ITERS iterations a step (the solve's default 200 cost ~90x MPGD on a 256² motion blur)."""
    from diffsolve.operators import MotionBlur
    from diffsolve.solvers.pigdm import CG_ITERS

    op = MotionBlur(3, seed=0)
    seen = []
    solve = op.solve_unchecked
    monkeypatch.setattr(op, "solve_unchecked", lambda *a, **k: seen.append(k.get("max_iters")) or solve(*a, **k))
    y = op.A(torch.randn(2, *SHAPE, generator=gen(3), dtype=D))
    out = pigdm(prior(), op, y, steps=3, sigma=0.05, generator=gen(1), discrepancy=False)
    assert seen == [CG_ITERS] * 3 and bool(torch.isfinite(out).all())
    seen.clear()  # then the discrepancy principle's one solve, on its own budget
    pigdm(prior(), op, y, steps=3, sigma=0.05, generator=gen(1))
    assert seen == [CG_ITERS] * 3 + [PULL_CG_ITERS]
