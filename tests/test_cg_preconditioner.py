"""Preconditioned batched CG (``batched_cg(preconditioner=...)``) and the circulant blur preconditioner
(``Blur.cg_preconditioner``, ``Blur.cg_iterations``): against dense float64 solves on small odd shapes,
on the torch, C++ and Triton backends (Triton under TRITON_INTERPRET=1 on CPU); the kernels' z inputs
against the torch references; the preconditioner is SPD; iterations drop."""

from __future__ import annotations

import os

import pytest
import torch

from diffsolve import kernels as K
from diffsolve.kernels import cg as cg_mod
from diffsolve.operators import Blur
from diffsolve.operators.base import LinearOperator

SHAPE = (2, 3, 13, 11)
_HAS_CPP = K.backends()["cpp"][0]
_HAS_TRITON = os.environ.get("TRITON_INTERPRET", "0") == "1" and K.backends()["triton"][0]
BACKENDS = ["torch", pytest.param("cpp", marks=pytest.mark.skipif(not _HAS_CPP, reason="C++ extension not built")),
            pytest.param("triton", marks=pytest.mark.skipif(not _HAS_TRITON, reason="needs TRITON_INTERPRET=1"))]


def _kernel(seed: int = 0, size: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    k = torch.rand(size, size, generator=g, dtype=torch.float64) ** 3  # non-separable, non-symmetric
    return k / k.sum()


def _dense_gram(op: Blur, shape) -> torch.Tensor:
    """AᵀA of one channel (the blur acts per channel), float64."""
    n = shape[-2] * shape[-1]
    eye = torch.eye(n, dtype=torch.float64).reshape(n, 1, *shape[-2:])
    return op.gram(eye).reshape(n, n).T


@pytest.mark.parametrize("boundary", ["reflect", "zero"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_pcg_matches_dense_solve_float64(boundary, backend):
    op = Blur(_kernel(), boundary)  # the operator on the default CPU backend; the CG kernels on ``backend``
    g = torch.Generator().manual_seed(1)
    rhs = torch.randn(*SHAPE, generator=g, dtype=torch.float64)
    shift = torch.tensor([0.05, 1.0], dtype=torch.float64)
    scale = torch.tensor([10.0, 2.0], dtype=torch.float64)
    gram = _dense_gram(op, SHAPE)
    n = gram.shape[0]
    want = torch.stack([
        torch.linalg.solve(shift[b] * torch.eye(n, dtype=torch.float64) + scale[b] * gram,
                           rhs[b].reshape(SHAPE[1], n).T).T.reshape(SHAPE[1:])
        for b in range(SHAPE[0])])
    out = K.batched_cg(op.gram, rhs, shift, scale, max_iters=200, tol=1e-12, backend=backend, check_every=5,
                       preconditioner=op.cg_preconditioner(shift, scale))
    assert bool(out.converged.all()), out.residual
    torch.testing.assert_close(out.x, want, rtol=1e-9, atol=1e-9)
    # the operator's solve goes through the same path (method="cg" with the preconditioner)
    x, info = op.solve(rhs, shift, scale, method="cg", max_iters=200, check_every=5, return_info=True)
    assert info.method == "cg" and bool(info.converged.all())
    torch.testing.assert_close(x, want, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pcg_equals_torch_reference_float32(backend):
    """Same iterations and x on every backend as the torch reference (float32, warm start)."""
    op = Blur(_kernel(2), "reflect")
    g = torch.Generator().manual_seed(3)
    rhs = torch.randn(*SHAPE, generator=g)
    x0 = 0.5 * rhs
    shift, scale = torch.tensor([0.5, 1.0]), torch.tensor([20.0, 5.0])
    pre = op.cg_preconditioner(shift, scale)
    want = K.batched_cg(op.gram, rhs, shift, scale, x0=x0, max_iters=60, tol=1e-5, backend="torch", preconditioner=pre)
    got = K.batched_cg(op.gram, rhs, shift, scale, x0=x0, max_iters=60, tol=1e-5, backend=backend, preconditioner=pre)
    assert bool(want.converged.all())
    assert (got.iterations - want.iterations).abs().max() <= 1
    torch.testing.assert_close(got.x, want.x, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernels_with_z_match_reference(backend, dtype):
    g = torch.Generator().manual_seed(4)
    r, gz, z, x, p, s = (torch.randn(3, 2, 7, 5, generator=g, dtype=dtype) for _ in range(6))
    shift = torch.tensor([0.5, 1.0, 2.0], dtype=dtype)
    scale = torch.tensor([3.0, 0.0, 1.0], dtype=dtype)
    dots = K.cg_dots(r, gz, shift, scale, z=z, backend=backend)
    ref = cg_mod.cg_dots_reference(r, gz, shift, scale, z)
    assert dots.shape == (3, 3)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-11, atol=1e-11)
    torch.testing.assert_close(dots, ref, **tol)
    torch.testing.assert_close(ref[:, 2], (r * r).flatten(1).sum(1), **tol)
    dots = ref.abs() + 0.1
    state = torch.tensor([[0.0, 0.0, 1.0, 0.0, 1.0], [2.0, 0.5, 1.0, 3.0, 1.0], [2.0, 0.5, 1.0, 3.0, 1e9]], dtype=dtype)
    want = cg_mod.cg_update_reference(x, r, p, s, gz, shift, scale, dots, state, 1e-4, z)
    got = K.cg_update(x.clone(), r.clone(), p.clone(), s.clone(), gz, shift, scale, dots, state, 1e-4, z=z,
                      backend=backend)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **tol)
    assert float(want[4][2, 2]) == 0.0  # sample 3 stops on ⟨r, r⟩ = dots[:, 2] ≤ tol²·rhs2


def test_identity_preconditioner_is_plain_cg():
    op = Blur(_kernel(5), "zero")
    rhs = torch.randn(*SHAPE, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    plain = K.batched_cg(op.gram, rhs, 0.2, 3.0, max_iters=40, tol=1e-10, backend="torch")
    ident = K.batched_cg(op.gram, rhs, 0.2, 3.0, max_iters=40, tol=1e-10, backend="torch", preconditioner=lambda v: v)
    torch.testing.assert_close(ident.x, plain.x, rtol=1e-12, atol=1e-12)
    assert torch.equal(ident.iterations, plain.iterations)


@pytest.mark.parametrize("boundary", ["reflect", "zero"])
def test_preconditioner_is_spd_and_exact_for_circular(boundary):
    op = Blur(_kernel(7), boundary)
    shift, scale = torch.tensor([0.05], dtype=torch.float64), torch.tensor([4.0], dtype=torch.float64)
    pre = op.cg_preconditioner(shift, scale)
    n = 13 * 11
    eye = torch.eye(n, dtype=torch.float64).reshape(n, 1, 13, 11)
    m_inv = pre(eye).reshape(n, n).T
    torch.testing.assert_close(m_inv, m_inv.T, rtol=1e-12, atol=1e-12)
    eig = torch.linalg.eigvalsh(m_inv)
    assert float(eig.min()) > 0 and float(eig.max()) <= 1 / 0.05 * (1 + 1e-9)
    # M⁻¹ inverts the circular blur's K exactly
    circ = Blur(_kernel(7), "circular")
    k_circ = 0.05 * torch.eye(n, dtype=torch.float64) + 4.0 * _dense_gram(circ, (1, 1, 13, 11))
    torch.testing.assert_close(m_inv @ k_circ, torch.eye(n, dtype=torch.float64), rtol=1e-9, atol=1e-9)
    assert circ.cg_preconditioner(shift, scale) is None  # exact solve: no CG
    assert LinearOperator().cg_preconditioner(shift, scale) is None
    assert LinearOperator().cg_iterations((8, 8), 1.0, 1.0, 1e-5) is None


def test_iterations_drop_and_calibrated_budget_suffices():
    from diffsolve.operators import MotionBlur

    op = MotionBlur(15, 0.5, 0, boundary="reflect")  # support 7×9
    size = (48, 40)
    rhs = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    shift, scale = 0.5, 60.0
    plain = K.batched_cg(op.gram, rhs, shift, scale, max_iters=300, tol=1e-5, check_every=1)
    pre = op.cg_preconditioner(*(torch.full((2,), v) for v in (shift, scale)))
    pcg = K.batched_cg(op.gram, rhs, shift, scale, max_iters=300, tol=1e-5, check_every=1, preconditioner=pre)
    assert bool(plain.converged.all()) and bool(pcg.converged.all())
    assert int(pcg.iterations.max()) < int(plain.iterations.min())  # 62 vs 68 here: white noise, small image
    budget = op.cg_iterations(size, shift, scale, 1e-5)
    assert isinstance(budget, int) and int(pcg.iterations.max()) <= budget
    assert op.cg_iterations(size, shift, scale * 1.05, 1e-5) == budget  # same 2^(1/4) grid point: cached
    x, info = op.solve(rhs, shift, scale, method="cg", tol=1e-5, max_iters=budget, return_info=True)
    assert bool(info.converged.all())


@pytest.mark.parametrize("backend", BACKENDS[:2])
def test_solve_without_the_preconditioner_is_plain_cg(backend):
    """``solve(..., precondition=False)`` runs batched CG with no preconditioner (the same iterates), the default
    the circulant one (other iterates after a truncated run); a non-bool is refused by name. The flag only
    chooses what ``batched_cg`` gets, whose Triton path the tests above cover (here the interpreter's reflect blur
    took minutes)."""
    op = Blur(_kernel(8), "reflect", backend=backend)
    rhs = torch.randn(*SHAPE, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    plain = K.batched_cg(op.gram, rhs, 1e-3, 4.0, max_iters=6, tol=1e-12, backend=backend)
    ours = op.solve_unchecked(rhs, shift=1e-3, scale=4.0, max_iters=6, precondition=False)
    torch.testing.assert_close(ours, plain.x, rtol=1e-12, atol=1e-12)
    pre = op.solve_unchecked(rhs, shift=1e-3, scale=4.0, max_iters=6)
    assert float((pre - plain.x).abs().max()) > 1e-6
    with pytest.raises(TypeError, match="precondition must be True or False"):
        op.solve(rhs, 1e-3, 4.0, precondition="no")


@pytest.mark.parametrize("method", ["diffpir", "pigdm"])
def test_truncated_data_steps_run_plain_cg(method, monkeypatch):
    """DiffPIR's proximal step and ΠGDM's guidance solve stop after a fixed budget on a reflect blur: they run
    plain CG (a truncated circulant-preconditioned solve keeps the boundary band's error amplified by up to
    1/shift: benchmarks/results/plain-cg.md). The closing discrepancy pull, which keeps the preconditioner, is off
    here (discrepancy=False)."""
    import diffsolve
    from _small_problem import SHAPE as PRIOR_SHAPE, gen, prior

    calls = []
    real = Blur.cg_preconditioner
    monkeypatch.setattr(Blur, "cg_preconditioner", lambda self, s, c: calls.append(1) or real(self, s, c))
    op = Blur(_kernel(3, size=3), "reflect")
    y = op.A(torch.randn(2, *PRIOR_SHAPE, generator=gen(1), dtype=torch.float64))
    with torch.enable_grad():
        diffsolve.solve(method, prior(), op, y, sigma=0.05, steps=4, discrepancy=False, generator=gen(2))
    assert calls == []
