"""NumPy scalars where the API asks for a number: ``np.int64(9)`` and ``np.float32(0.05)`` (read from an array, a
config or a sweep) give what the equal Python numbers give, bit for bit; NumPy's bool stays refused, as bool is.
The solvers' side (steps, σ, every method): ``test_methods_contract.py``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _backends import fast_backends

from diffsolve.kernels import batched_cg
from diffsolve.metrics import data_consistency
from diffsolve.operators import (GaussianBlur, GaussianNoise, Identity, Inpainting, MatrixOperator, MotionBlur,
                                 SuperResolution)

X = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
F32 = float(np.float32(0.3))  # the float an np.float32(0.3) equals


@pytest.mark.parametrize("build", [
    lambda i, f: GaussianBlur(i(5), f(1.0)),
    lambda i, f: MotionBlur(i(7), seed=i(3)),
    lambda i, f: Inpainting.random(i(16), missing=f(0.5), seed=i(1)),
    lambda i, f: Inpainting.box((i(16), i(16)), box=i(6), margin=i(2), seed=i(4)),
    lambda i, f: SuperResolution(i(2), input_size=(i(16), i(16))),
    lambda i, f: MatrixOperator.gaussian(i(40), (i(3), i(4), i(4)), seed=i(2)),
], ids=["gaussian", "motion", "random", "box", "sr", "matrix"])
def test_operators_built_from_numpy_numbers_equal_those_from_python_numbers(build):
    numpy_op, python_op = build(np.int64, np.float32), build(int, lambda v: float(np.float32(v)))
    x = X if not isinstance(numpy_op, MatrixOperator) else X[:, :, :4, :4]
    torch.testing.assert_close(numpy_op.A(x), python_op.A(x), rtol=0, atol=0)


def test_solve_tikhonov_noise_cg_and_consistency_take_numpy_numbers():
    op = MotionBlur(7, seed=3)
    same = lambda a, b: torch.testing.assert_close(a, b, rtol=0, atol=0)  # noqa: E731
    same(op.solve(X, shift=np.float64(0.1), scale=np.float32(0.3), max_iters=np.int64(150)),
         op.solve(X, shift=0.1, scale=F32, max_iters=150))
    same(op.tikhonov(op.A(X), np.float32(0.3)), op.tikhonov(op.A(X), F32))
    assert GaussianNoise(np.float32(0.3)).sigma == GaussianNoise(F32).sigma
    gram = lambda v: op.A_adjoint(op.A(v))  # noqa: E731
    same(batched_cg(gram, X, 0.1, 1.0, max_iters=np.int64(5), tol=np.float64(1e-12)).x,
         batched_cg(gram, X, 0.1, 1.0, max_iters=5, tol=1e-12).x)
    same(data_consistency(Identity(), X, X + 0.05, np.float32(0.3)), data_consistency(Identity(), X, X + 0.05, F32))


def test_numpy_bool_and_integral_floats_stay_refused():
    with pytest.raises(ValueError, match="kernel_size must be a positive odd int"):
        GaussianBlur(np.bool_(True), 1.0)
    with pytest.raises(ValueError, match="factor must be a positive int"):
        SuperResolution(np.float64(2.0))
    with pytest.raises(TypeError, match="seed must be an int"):
        Inpainting.random(16, 0.5, seed=np.float32(1.0))
    with pytest.raises(ValueError, match="shift must be > 0"):  # NumPy's 0 is 0: AᵀA is singular for SR
        SuperResolution(2, input_size=(16, 16)).solve(X, shift=np.float64(0.0))


@pytest.mark.parametrize("backend", ["torch"] + fast_backends())
def test_step_kernels_take_numpy_numbers(backend):
    from diffsolve.kernels import ddim_step, diagonal_posterior_step, ge_step, mpgd_step

    x, e = X[:, :, :5, :7].contiguous(), X.flip(0)[:, :, :5, :7].contiguous()
    f = lambda v: float(np.float32(v))  # noqa: E731
    same = lambda a, b: torch.testing.assert_close(a, b, rtol=0, atol=0)  # noqa: E731
    same(ddim_step(x, e, np.float32(0.3), np.float32(0.6), eta=np.float32(1.0), seed=np.int64(3), offset=np.int64(9),
                   backend=backend),
         ddim_step(x, e, f(0.3), f(0.6), eta=1.0, seed=3, offset=9, backend=backend))
    same(ge_step(x, e, e, np.float32(0.3), np.float32(0.6), gamma=np.float32(1.5), backend=backend),
         ge_step(x, e, e, f(0.3), f(0.6), gamma=1.5, backend=backend))
    same(mpgd_step(x, e, e, 0.3, 0.6, step_size=np.float32(0.5), backend=backend),
         mpgd_step(x, e, e, 0.3, 0.6, step_size=0.5, backend=backend))
    mask = torch.ones(1, 1, 5, 7, dtype=x.dtype)
    same(diagonal_posterior_step(x, np.float32(2.0), mask, e, np.float64(3.0), seed=[np.int64(1), 2], backend=backend),
         diagonal_posterior_step(x, 2.0, mask, e, 3.0, seed=[1, 2], backend=backend))


def test_solver_option_objects_take_numpy_numbers():
    from diffsolve.solvers.cdps import CG
    from diffsolve.solvers.mpgd import check_window

    assert CG(iters=np.int64(5), step_iters=np.int64(2)) == CG(iters=5, step_iters=2)
    assert check_window((np.float32(0.25), np.float64(0.5))) == (0.25, 0.5)
    with pytest.raises(ValueError, match="iters must be"):
        CG(iters=np.bool_(True))


def test_a_numpy_timesteps_array_is_taken_with_or_without_steps():
    import diffsolve
    from diffsolve.models import GaussianPrior

    prior = GaussianPrior(torch.zeros(1, 4, 4, dtype=torch.float64), 0.3)
    op = Inpainting.random(4, missing=0.5, seed=0)
    y = op.A(X[:, :1, :4, :4])
    ts = [900, 500, 1]
    ref = diffsolve.solve("mpgd", prior, op, y, timesteps=ts, generator=torch.Generator().manual_seed(0))
    for given in ({"timesteps": np.array(ts)}, {"timesteps": np.array(ts), "steps": 3}):
        got = diffsolve.solve("mpgd", prior, op, y, generator=torch.Generator().manual_seed(0), **given)
        torch.testing.assert_close(got, ref, rtol=0, atol=0)
