"""Gaussian measurement noise: units, reproducibility, moments; the callable operator's vjp adjoint."""

from __future__ import annotations

import torch

from diffsolve.operators import CallableOperator, GaussianNoise, convert_sigma

F64 = torch.float64


def test_units_convert_between_data_ranges():
    assert GaussianNoise(0.05).sigma == 0.05
    assert GaussianNoise(0.05, unit="[0,1]").sigma == 0.1  # DDRM's 0.05 in [0, 1] is 0.1 in [-1, 1]
    assert convert_sigma(0.05, "[-1,1]", "[0,1]") == 0.025
    assert GaussianNoise(0.05, unit="[0,1]").sigma_in("[0,1]") == 0.05


def test_noise_is_reproducible_and_has_the_right_std():
    ax = torch.zeros(4, 3, 64, 64, dtype=F64)
    noise = GaussianNoise(0.05, unit="[0,1]")
    y1 = noise(ax, generator=torch.Generator().manual_seed(3))
    y2 = noise(ax, generator=torch.Generator().manual_seed(3))
    y3 = noise(ax, seed=4)
    assert torch.equal(y1, y2) and not torch.equal(y1, y3)
    assert abs(float(y1.std()) - 0.1) < 0.002 and abs(float(y1.mean())) < 0.002
    assert torch.equal(GaussianNoise(0.0)(ax, seed=1), ax)


def test_callable_adjoint_by_vjp_equals_the_explicit_transpose():
    w = torch.randn(5, 12, generator=torch.Generator().manual_seed(0), dtype=F64)

    def fn(x):  # (B, 1, 3, 4) -> (B, 1, 1, 5): a dense matrix on the flattened image
        return (x.flatten(1) @ w.T).reshape(-1, 1, 1, 5)

    op = CallableOperator(fn, input_shape=(1, 3, 4))
    y = torch.randn(2, 1, 1, 5, dtype=F64)
    torch.testing.assert_close(op.A_adjoint(y), (y.flatten(1) @ w).reshape(2, 1, 3, 4))
    given = CallableOperator(fn, adjoint=lambda v: (v.flatten(1) @ w).reshape(-1, 1, 3, 4))
    x = torch.randn(2, 1, 3, 4, dtype=F64)
    torch.testing.assert_close(given.gram(x), op.gram(x))
    sol = op.solve(x, 0.5, 1.0, check_every=5)
    k = 0.5 * torch.eye(12, dtype=F64) + w.T @ w
    torch.testing.assert_close(sol.flatten(1), torch.linalg.solve(k, x.flatten(1).T).T)
