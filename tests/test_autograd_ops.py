"""Linear kernels under autograd on every backend (kernels/_autograd.py): float64 ``gradcheck`` and
``gradgradcheck`` (fast mode) for each op × backend × boundary at odd sizes, the backward running
the adjoint on the same backend, parameter gradients, and the operators' A keeping a ``grad_fn``
whatever the backend.

Triton runs under TRITON_INTERPRET=1, where one correlate call costs seconds on a loaded 2-core
machine (the 2-D adjoint up to ~7 s): there every op gets one gradcheck, the correlate ops one
boundary each (together all three), at the smallest odd sizes with few live taps, and
gradgradcheck only for average pooling (the double backward is the same LinearFunction code on
every backend, checked in full on torch and C++). The kernels' values against the references, for every
boundary, are tests/test_triton_kernels.py's; what this file adds is the autograd wiring."""

from __future__ import annotations

import importlib

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck
from _backends import fast_backends

from diffsolve import kernels as K
from diffsolve.kernels import _dispatch
from diffsolve.operators import GaussianBlur, MotionBlur, SuperResolution

F64 = torch.float64
BOUNDARIES = ("zero", "reflect", "circular")


BACKENDS = ["torch", *fast_backends()]


@pytest.fixture(autouse=True)
def fresh_dispatch():
    _dispatch.reset()
    yield
    _dispatch.reset()


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _banded(rows: int, cols: int, taps: int, seed: int) -> torch.Tensor:
    """A (rows, cols) matrix with ``taps`` non-zeros per row (under the C++ backend's 25 % density
    threshold, so its banded kernel runs rather than the dense BLAS path)."""
    m = torch.zeros(rows, cols, dtype=F64)
    w = torch.randn(rows, taps, generator=_gen(seed), dtype=F64)
    for i in range(rows):
        start = min(cols - taps, i * cols // rows)
        m[i, start:start + taps] = w[i]
    return m


def _cases(backend: str):
    """(case id, function of (x, backend), x shape, with gradgradcheck) for every linear op; odd
    sizes, a 2-D kernel with zero taps (the sparse-tap path). Triton: the reduced set (docstring)."""
    interp = backend == "triton"
    k2 = torch.randn(3, 3, generator=_gen(1), dtype=F64)
    k2[1, 2] = k2[0, 0] = 0.0
    if interp:  # fewer live taps: the interpreter's cost grows with them
        k2[2, 0] = k2[2, 2] = k2[0, 2] = 0.0
    k_h = torch.randn(3 if interp else 5, generator=_gen(2), dtype=F64)
    k_w = torch.randn(3, generator=_gen(3), dtype=F64)
    m_h, m_w = _banded(3, 13, 3, 4), _banded(3, 15, 3, 5)
    correlate = [
        ("correlate2d", lambda x, be, b: K.correlate2d(x, k2, boundary=b, backend=be), (1, 2, 5, 7), False),
        ("correlate2d_adjoint",
         lambda x, be, b: K.correlate2d_adjoint(x, k2, boundary=b, backend=be), (1, 2, 5, 7), False),
        ("separable_correlate2d",
         lambda x, be, b: K.separable_correlate2d(x, k_h, k_w, boundary=b, backend=be), (2, 1, 7, 5), False),
        ("separable_correlate2d_adjoint",
         lambda x, be, b: K.separable_correlate2d_adjoint(x, k_h, k_w, boundary=b, backend=be), (2, 1, 7, 5), False),
    ]
    cases = []
    for i, (name, fn, shape, gg) in enumerate(correlate):
        for b in (BOUNDARIES[i % 3],) if interp else BOUNDARIES:
            cases.append((f"{name}-{b}", lambda x, be, fn=fn, b=b: fn(x, be, b),
                          (1, 1) + shape[2:] if interp else shape, not interp))
    cases += [
        ("resample", lambda x, be: K.resample(x, m_h, m_w, backend=be), (1, 2, 13, 15), not interp),
        ("resample_adjoint", lambda x, be: K.resample_adjoint(x, m_h, m_w, backend=be), (1, 2, 3, 3), not interp),
        ("avg_pool", lambda x, be: K.avg_pool(x, 3, backend=be), (1, 2, 9, 6), True),
        ("avg_pool_adjoint", lambda x, be: K.avg_pool_adjoint(x, 3, backend=be), (1, 2, 3, 2), not interp),
    ]
    return cases


def _params():
    out = []
    for backend in BACKENDS:
        name = backend if isinstance(backend, str) else backend.values[0]
        marks = () if isinstance(backend, str) else backend.marks
        out += [pytest.param(name, *case[1:], id=f"{name}-{case[0]}", marks=marks) for case in _cases(name)]
    return out


@pytest.mark.parametrize("backend,fn,shape,double", _params())
def test_gradcheck_and_double_backward(backend, fn, shape, double):
    x = torch.randn(*shape, generator=_gen(7), dtype=F64).requires_grad_()
    f = lambda t: fn(t, backend)  # noqa: E731
    assert type(f(x).grad_fn).__name__ == "LinearFunctionBackward"
    assert gradcheck(f, (x,), fast_mode=True, check_undefined_grad=False)
    if double:
        assert gradgradcheck(f, (x,), fast_mode=True, check_undefined_grad=False)


@pytest.mark.parametrize("backend", BACKENDS[1:])
def test_backward_runs_the_adjoint_on_the_same_backend(backend, monkeypatch):
    module = importlib.import_module("diffsolve.kernels." + {"cpp": "_cpp_ops", "triton": "_triton_correlate"}[backend])
    seen = []
    for op in ("separable_correlate2d", "separable_correlate2d_adjoint"):
        real = getattr(module, op)
        monkeypatch.setattr(module, op, lambda *a, real=real, op=op: seen.append(op) or real(*a))
    x = torch.randn(1, 1, 5, 7, generator=_gen(8), dtype=F64).requires_grad_()
    k_h, k_w = torch.randn(3, generator=_gen(9), dtype=F64), torch.randn(5, generator=_gen(10), dtype=F64)
    seed = torch.randn(1, 1, 5, 7, generator=_gen(11), dtype=F64)
    y = K.separable_correlate2d(x, k_h, k_w, boundary="reflect", backend=backend)
    (g,) = torch.autograd.grad(y, x, seed)
    assert seen == ["separable_correlate2d", "separable_correlate2d_adjoint"]
    ref = K.separable_correlate2d_adjoint(seed, k_h, k_w, boundary="reflect", backend="torch")
    torch.testing.assert_close(g, ref, rtol=1e-12, atol=1e-12)


def test_kernel_gradients_on_torch_and_a_clear_error_elsewhere():
    x = torch.randn(1, 1, 6, 6, generator=_gen(10), dtype=F64)
    k = torch.randn(3, 3, generator=_gen(11), dtype=F64).requires_grad_()
    (gk,) = torch.autograd.grad(K.correlate2d(x, k, backend="torch").square().sum(), k)
    assert gk.shape == k.shape and gk.abs().sum() > 0
    compiled = [b for b in BACKENDS if b in ("cpp", "triton")]
    for backend in compiled:
        with pytest.raises(ValueError, match="kernel requires grad"):
            K.correlate2d(x, k, backend=backend)
        with torch.no_grad():  # no backward needed: runs
            K.correlate2d(x, k, backend=backend)


def _operators():
    cases = [
        ("gaussian", lambda be: GaussianBlur(5, 0.8, "reflect", backend=be), (1, 1, 7, 9)),
        ("motion", lambda be: MotionBlur(7, 0.5, seed=1, boundary="reflect", backend=be), (1, 3, 11, 13)),
        ("sr-bicubic", lambda be: SuperResolution(2, "bicubic", backend=be), (1, 3, 12, 16)),
        ("sr-average", lambda be: SuperResolution(2, "average", backend=be), (1, 3, 12, 16)),
    ]
    out = []
    for backend in BACKENDS:
        name = backend if isinstance(backend, str) else backend.values[0]
        marks = () if isinstance(backend, str) else backend.marks
        for case, make, shape in cases:
            if name == "triton" and case == "motion":
                continue  # the dense correlate's gradcheck above covers it; seconds per call interpreted
            out.append(pytest.param(name, make, shape, id=f"{case}-{name}", marks=marks))
    return out


@pytest.mark.parametrize("backend,make,shape", _operators())
def test_operator_gradients_match_torch(backend, make, shape):
    """∇_x ‖y − A x‖ (DPS's guidance) on each backend equals the torch backend's (float32): the
    operators' A keeps a grad_fn on every backend."""
    x = torch.randn(*shape, generator=_gen(12))
    y = make("torch").A(torch.randn(*shape, generator=_gen(13)))
    grads = []
    for be in ("torch", backend):
        xg = x.clone().requires_grad_()
        out = make(be).A(xg)
        assert out.grad_fn is not None
        (g,) = torch.autograd.grad((y - out).flatten(1).norm(dim=1).sum(), xg)
        grads.append(g)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-5)
