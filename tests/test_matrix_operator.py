"""MatrixOperator: a dense matrix on the flattened image (compressed sensing), its thin SVD, exact solves and
pseudo-inverse against dense linear algebra (float64), and its inputs checked."""

from __future__ import annotations

import pytest
import torch

from diffsolve.operators import MatrixOperator
from diffsolve.operators.svd import DenseSVD, operator_svd

D = torch.float64
SHAPE = (2, 3, 5)  # odd sizes, two channels: the matrix mixes channels too


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _wide() -> MatrixOperator:
    return MatrixOperator.gaussian(11, SHAPE, seed=3)


def _deficient() -> MatrixOperator:
    """40 × 30 of rank 20, measured as a 4 × 10 image (so AᵀA is singular although m > n)."""
    mat = torch.randn(40, 20, generator=gen(1), dtype=D) @ torch.randn(20, 30, generator=gen(2), dtype=D)
    return MatrixOperator(mat, SHAPE, output_shape=(1, 4, 10))


def test_gaussian_rows_have_unit_norm_on_average():
    mat = MatrixOperator.gaussian(400, (3, 20, 20), seed=0).matrix
    assert abs(float(mat.pow(2).sum(1).mean()) - 1) < 0.01
    assert torch.equal(mat, MatrixOperator.gaussian(400, (3, 20, 20), seed=0).matrix)


@pytest.mark.parametrize("make", [_wide, _deficient], ids=["wide", "rank-deficient"])
def test_svd_is_the_matrix(make):
    op = make()
    svd = operator_svd(op, SHAPE[1:], "ddrm")
    assert isinstance(svd, DenseSVD) and svd.range() is svd and not svd.complete
    m, n = op.matrix.shape
    eye = torch.eye(n, dtype=D).view(n, *SHAPE)
    vt = svd.Vt(eye)  # (n, r): V_r itself
    assert torch.allclose(vt.T @ vt, torch.eye(vt.shape[1], dtype=D), atol=1e-12)
    ref = torch.linalg.svdvals(op.matrix)
    assert torch.allclose(svd.s, ref[: svd.s.numel()], atol=1e-12) and bool((ref[svd.s.numel():] < 1e-10).all())
    x = torch.randn(3, *SHAPE, generator=gen(4), dtype=D)
    y = op.A(x)
    assert torch.allclose(svd.U(svd.singulars(x) * svd.Vt(x)), y, atol=1e-12)
    assert torch.allclose(svd.V(svd.singulars(x) * svd.Ut(y)), op.A_adjoint(y), atol=1e-12)


@pytest.mark.parametrize("make", [_wide, _deficient], ids=["wide", "rank-deficient"])
def test_solves_and_pinv_match_dense_linear_algebra(make):
    op = make()
    mat = op.matrix
    n = mat.shape[1]
    rhs = torch.randn(3, *SHAPE, generator=gen(5), dtype=D)
    shift, scale = torch.tensor([0.3, 1e-3, 2.0], dtype=D), torch.tensor([1.0, 0.5, 0.0], dtype=D)
    got, info = op.solve(rhs, shift, scale, return_info=True)
    for b in range(3):
        k = shift[b] * torch.eye(n, dtype=D) + scale[b] * mat.T @ mat
        ref = torch.linalg.solve(k, rhs[b].flatten())
        cond = float(torch.linalg.cond(k))  # both solutions carry ~cond·eps of rounding
        assert float((got[b].flatten() - ref).norm() / ref.norm()) < 10 * cond * torch.finfo(D).eps
        assert float(info.residual[b]) < 10 * cond * torch.finfo(D).eps
    y = torch.randn(3, *op.output_shape, generator=gen(6), dtype=D)
    ref = y.flatten(1) @ torch.linalg.pinv(mat).T
    assert torch.allclose(op.pseudo_inverse(y).flatten(1), ref, atol=1e-9)
    assert op.gram_singular
    with pytest.raises(ValueError, match="shift must be > 0"):
        op.solve(rhs, 0.0, 1.0)


def test_a_full_rank_tall_matrix_solves_at_zero_shift():
    mat = torch.randn(40, 30, generator=gen(7), dtype=D)
    op = MatrixOperator(mat, SHAPE)
    rhs = torch.randn(2, *SHAPE, generator=gen(8), dtype=D)
    assert not op.gram_singular
    ref = torch.linalg.solve(mat.T @ mat, rhs.flatten(1).T).T
    assert torch.allclose(op.solve(rhs, 0.0, 1.0).flatten(1), ref, rtol=1e-9, atol=1e-9)


def test_solve_is_differentiable_and_float32_runs():
    op = _wide()
    rhs = torch.randn(2, *SHAPE, generator=gen(9), dtype=D, requires_grad=True)
    shift = torch.tensor([0.5, 0.2], dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(lambda r, s: op.solve(r, s, 1.0), (rhs, shift))
    x = torch.randn(2, *SHAPE, generator=gen(10))
    assert op.A(x).dtype == torch.float32 and op.solve(x, 0.1, 1.0).dtype == torch.float32


@pytest.mark.parametrize("call, match", [
    (lambda: MatrixOperator(torch.ones(3, 30, dtype=torch.int64), SHAPE), "2-D floating tensor"),
    (lambda: MatrixOperator(torch.ones(30), SHAPE), "2-D floating tensor"),
    (lambda: MatrixOperator(torch.full((3, 30), float("nan")), SHAPE), "NaN or Inf"),
    (lambda: MatrixOperator(torch.ones(3, 31), SHAPE), "holds 30 entries but the matrix has 31 columns"),
    (lambda: MatrixOperator(torch.ones(3, 30), (30,)), r"input_shape must be \(C, H, W\)"),
    (lambda: MatrixOperator(torch.ones(4, 30), SHAPE, output_shape=(3,)), "holds 3 entries but the matrix has 4 rows"),
    (lambda: MatrixOperator.gaussian(31, SHAPE), r"m must be an int in \[1, n = 30\]"),
    (lambda: MatrixOperator.gaussian(0, SHAPE), "m must be an int"),
    (lambda: MatrixOperator.gaussian(5, SHAPE, seed=-1), "seed must lie in"),
    (lambda: _wide().A(torch.zeros(1, 2, 5, 3, dtype=D)), r"does not match input_shape \(2, 3, 5\)"),
    (lambda: _wide().A_adjoint(torch.zeros(1, 12, dtype=D)), r"y must have shape \(1, 11\)"),
    (lambda: _wide().svd((5, 3)), "acts on 3x5 images, not 5x3"),
])
def test_bad_inputs_are_named(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_the_svd_is_computed_once_and_shared_with_backend_copies():
    op = _wide()
    first = op._thin_svd()
    copy = op.with_backend("torch")
    assert copy is not op and copy._thin_svd() is first
    assert op.svd(SHAPE[1:]).v is first[2] and copy.svd(SHAPE[1:]) is op.svd(SHAPE[1:])


def test_from_operator_is_the_operators_matrix_and_gives_ddrm_an_svd():
    import diffsolve
    from diffsolve.models import GaussianPrior
    from diffsolve.operators import MotionBlur, SuperResolution

    blur = MotionBlur(5, seed=1, boundary="reflect")  # a dense kernel with reflect boundary: no structured SVD
    x = torch.randn(2, 1, 6, 8, generator=gen(11), dtype=D)
    with pytest.raises(ValueError, match=r"MatrixOperator.from_operator\(operator, \(C, H, W\)\)"):
        operator_svd(blur, (6, 8), "ddrm")
    dense = MatrixOperator.from_operator(blur, (1, 6, 8), chunk=7)  # chunks that do not divide n
    assert dense.output_shape == (1, 6, 8)
    assert torch.allclose(dense.A(x), blur.A(x), atol=1e-13)
    assert torch.allclose(dense.A_adjoint(x), blur.A_adjoint(x), atol=1e-13)
    sr = MatrixOperator.from_operator(SuperResolution(2, "bicubic", input_size=(6, 8)), (1, 6, 8))
    assert sr.output_shape == (1, 3, 4) and sr.exact_solve
    prior = GaussianPrior(torch.zeros(1, 6, 8, dtype=D), 0.25)
    y = blur.A(x) + 0.05 * torch.randn(2, 1, 6, 8, generator=gen(12), dtype=D)
    out = diffsolve.solve("ddrm", prior, dense, y, sigma=0.05, steps=10, generator=gen(13))
    assert out.shape == x.shape and bool(torch.isfinite(out).all())
    with pytest.raises(TypeError, match="operator must have A"):
        MatrixOperator.from_operator(lambda v: v, (1, 6, 8))


def test_from_operator_refuses_a_mask_per_sample_by_name():
    from diffsolve.operators import Inpainting

    with pytest.raises(ValueError, match=r"operator=Inpainting.*the same for every sample"):
        MatrixOperator.from_operator(Inpainting(torch.ones(2, 1, 4, 4)), (1, 4, 4))
