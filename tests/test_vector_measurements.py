"""A user's operator may measure vectors, not images: a compressed-sensing matrix Φ (m × n) as a
``CallableOperator`` whose function returns (B, m). Every method that takes any operator runs on y (B, m) and
gives the result it gives on the same numbers laid out as a one-row image (B, 1, 1, m) (float64, same seed)."""

from __future__ import annotations

import math

import pytest
import torch
from _backends import fast_backends
from _small_problem import D, SHAPE, gen, prior

import diffsolve
from diffsolve.methods import METHODS
from diffsolve.operators import CallableOperator, GaussianNoise

N = math.prod(SHAPE)
M = N // 2
PHI = torch.randn(M, N, generator=gen(7), dtype=D) / math.sqrt(N)


def _vector(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1) @ PHI.to(x.dtype).T


def _row_image(x: torch.Tensor) -> torch.Tensor:
    return _vector(x).view(x.shape[0], 1, 1, M)


VECTOR = CallableOperator(_vector, input_shape=SHAPE)
ROW = CallableOperator(_row_image, input_shape=SHAPE)
ANY_OPERATOR = [name for name, m in METHODS.items()
                if m.kind in ("inverse", "baseline") and not m.unsupported(VECTOR, SHAPE[-2:], 0.05)]


def _measure(batch: int = 2) -> torch.Tensor:
    x = torch.randn(batch, *SHAPE, generator=gen(1), dtype=D)
    return GaussianNoise(0.05)(VECTOR.A(x), generator=gen(2))


def test_the_operator_is_a_matrix_with_its_transpose():
    x, y = torch.randn(3, *SHAPE, generator=gen(3), dtype=D), torch.randn(3, M, generator=gen(4), dtype=D)
    assert VECTOR.A(x).shape == (3, M)
    assert torch.allclose((VECTOR.A(x) * y).sum(), (x * VECTOR.A_adjoint(y)).sum(), rtol=1e-12)
    pinv = VECTOR.pseudo_inverse(y)
    assert torch.allclose(pinv.flatten(1), y @ torch.linalg.pinv(PHI).T, atol=1e-8)


def test_the_methods_that_take_any_operator_include_the_new_ones():
    wanted = {"mpgd", "dps", "cdps", "pigdm", "diffpir", "daps", "reddiff", "mmps", "pinv", "tikhonov"}
    assert wanted <= set(ANY_OPERATOR)


@pytest.mark.parametrize("method", ANY_OPERATOR)
def test_vector_y_gives_the_one_row_image_result(method):
    y = _measure()
    options = {} if METHODS[method].kind == "baseline" else {"steps": 5, "sigma": 0.05, "generator": gen(5)}
    if method == "tikhonov":
        options = {"lam": 0.1}
    with torch.enable_grad() if METHODS[method].backward else torch.no_grad():
        out = diffsolve.solve(method, prior(), VECTOR, y, **options)
        if "generator" in options:
            options["generator"] = gen(5)
        ref = diffsolve.solve(method, prior(), ROW, y.view(2, 1, 1, M), **options)
    assert out.shape == (2, *SHAPE)
    assert torch.isfinite(out).all()
    assert float((out - ref).norm() / ref.norm()) < 1e-10


def test_the_svd_methods_refuse_it_by_name():
    with pytest.raises(ValueError, match="needs the SVD of A"):
        diffsolve.solve("ddrm", prior(), VECTOR, _measure(), steps=5, sigma=0.05)


def test_a_vector_of_the_wrong_length_is_named():
    y = torch.zeros(2, M + 1, dtype=D)
    with pytest.raises(ValueError, match=r"y has shape \(2, 9\)"):
        diffsolve.solve("mpgd", prior(), VECTOR, y, steps=5, sigma=0.05)


def test_an_image_operator_still_wants_an_image():
    from diffsolve.operators import GaussianBlur

    with pytest.raises(ValueError, match=r"y must have shape \(B, C, H, W\)"):
        GaussianBlur(3, 1.0).A_adjoint(torch.zeros(2, M, dtype=D))
    with pytest.raises(ValueError, match=r"y must be batched"):
        VECTOR.A_adjoint(torch.zeros(M, dtype=D))


@pytest.mark.parametrize("backend", fast_backends())
@pytest.mark.parametrize("method", ["cdps", "daps", "diffpir"])
def test_every_backend_takes_vector_measurements(method, backend):
    y = _measure()
    runs = [diffsolve.solve(method, prior(), VECTOR, y, steps=4, sigma=0.05, generator=gen(5), backend=b)
            for b in ("torch", backend)]
    torch.testing.assert_close(runs[1], runs[0], rtol=1e-7, atol=1e-9)


class _DuckOperator:
    """Only A and A_adjoint (the documented minimum): no solve, no diffsolve base class."""

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return _vector(x)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return (y @ PHI.to(y.dtype)).view(y.shape[0], *SHAPE)


@pytest.mark.parametrize("method", ["mpgd", "dps", "daps", "reddiff", "mmps", "pigdm", "diffpir"])
def test_an_operator_with_only_a_and_its_transpose_ends_within_the_noise(method):
    """The closing pull (and ΠGDM's and DiffPIR's data steps) solve with A's transpose: for an object without
    ``solve`` they run CG on AᵀA (the pull crashed after the loop before; ΠGDM and DiffPIR refused), the same CG a
    CallableOperator runs."""
    y = _measure()
    with torch.enable_grad() if METHODS[method].backward else torch.no_grad():
        duck = diffsolve.solve(method, prior(), _DuckOperator(), y, steps=5, sigma=0.05, generator=gen(5))
        ref = diffsolve.solve(method, prior(), CallableOperator(_vector, input_shape=SHAPE), y, steps=5, sigma=0.05,
                              generator=gen(5))
    assert float((duck - ref).norm() / ref.norm()) < 1e-9


def test_a_vector_operator_without_input_shape_names_the_fix():
    with pytest.raises(ValueError, match=r"pass input_shape=\(C, H, W\) of the images"):
        diffsolve.solve("mpgd", prior(), CallableOperator(_vector), _measure(), steps=3, sigma=0.05)
