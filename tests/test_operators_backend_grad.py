"""Operators: one backend route (with_backend), solve's value checks and solve_unchecked, the exact
backward of solves (every backend), refused blur kernels, honest non-convergence reports, and the
avg_pool_adjoint factor check."""

from __future__ import annotations

import warnings

import pytest
import torch

from diffsolve.kernels import _dispatch, avg_pool_adjoint, backends
from diffsolve.operators import Blur, GaussianBlur, Identity, Inpainting, MotionBlur, SuperResolution
from diffsolve.operators._validate import SolveNotConvergedWarning

F64 = torch.float64
CPP = backends()["cpp"][0]
TRITON = backends()["triton"][0]
needs_cpp = pytest.mark.skipif(not CPP, reason="C++ extension not built")
needs_triton = pytest.mark.skipif(not TRITON, reason="triton unavailable (set TRITON_INTERPRET=1)")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rand(*shape, seed=0, dtype=F64):
    return torch.randn(*shape, generator=_gen(seed), dtype=dtype)


def _dense_blur(boundary="reflect", backend="auto"):
    k = torch.rand(3, 3, generator=_gen(3), dtype=F64) + 0.1
    return Blur(k / k.sum(), boundary, backend=backend)


def _well_conditioned_blur():
    k = 0.1 * torch.rand(3, 3, generator=_gen(4), dtype=F64)
    k[1, 1] = 1.0  # diagonally dominant: AᵀA well conditioned, so CG on the normal equations converges fast
    return Blur(k)


def _mask():
    return (torch.rand(7, 9, generator=_gen(5)) > 0.4).to(F64)


# ----------------------------------------------------------------------------- 1. with_backend
@pytest.fixture
def resolved(monkeypatch):
    """Backends every kernel resolution is asked for (spy on _dispatch.resolve)."""
    seen: list[str] = []
    real = _dispatch.resolve

    def spy(op, backend, device, dtype):
        seen.append(backend)
        return real(op, backend, device, dtype)

    monkeypatch.setattr(_dispatch, "resolve", spy)
    return seen


def _operators():
    return {
        "dense-blur-cg": _dense_blur(),
        "motion-blur": MotionBlur(7, 0.5, seed=1),
        "gaussian-zero": GaussianBlur(5, 1.0, boundary="zero"),
        "blur-circular": _dense_blur("circular"),
        "sr-bicubic": SuperResolution(2, input_size=(7, 9)),
        "sr-average": SuperResolution(2, "average"),
        "inpainting": Inpainting(_mask()),
        "identity": Identity(),
    }


def test_with_backend_auto_or_same_is_self_and_copy_shares_the_cache():
    op = _dense_blur(backend="torch")
    assert op.with_backend("auto") is op and op.with_backend("torch") is op
    other = op.with_backend("cpp" if CPP else "triton")
    assert other is not op and other.backend != "torch" and op.backend == "torch"
    assert other._cache is op._cache and type(other) is type(op)
    with pytest.raises(ValueError, match="backend must be one of"):
        op.with_backend("cuda")


@pytest.mark.parametrize("backend", [pytest.param("torch"), pytest.param("cpp", marks=needs_cpp)])
@pytest.mark.parametrize("name", list(_operators()))
def test_with_backend_routes_every_kernel_call(name, backend, resolved):
    base = _operators()[name]
    op = base.with_backend(backend)
    size = (8, 10) if name == "sr-average" else (7, 9)
    x = _rand(2, 3, *size, seed=1)
    y = op.A(x)
    op.A_adjoint(y)
    op.gram(x)
    op.solve(x, 0.3, 1.0, max_iters=3, return_info=True)
    op.solve(x, 0.3, 1.0, method="cg", max_iters=3, return_info=True)
    op.pseudo_inverse(y, max_iters=3)
    op.tikhonov(y, 0.2, max_iters=3, return_info=True)
    if isinstance(op, Blur):
        assert op.gram_norm_bound((7, 9)) > 0
    if name != "identity" and name != "inpainting":
        assert resolved, "no kernel was resolved"
    assert set(resolved) <= {backend}, f"{name}.with_backend({backend!r}) resolved {sorted(set(resolved))}"


@pytest.mark.parametrize("backend", [pytest.param("torch"), pytest.param("cpp", marks=needs_cpp)])
def test_gram_norm_bound_follows_a_named_backend(backend, resolved):
    for op in (MotionBlur(7, 0.5, seed=2, backend=backend), MotionBlur(7, 0.5, seed=2).with_backend(backend)):
        op.gram_norm_bound((16, 16))
    assert resolved and set(resolved) == {backend}


def test_dead_dispatch_helper_is_gone():
    assert not hasattr(_dispatch, "resolve_backend")


# ----------------------------------------------------------------------------- 2. solve's value checks
@pytest.mark.parametrize("which", ["shift", "scale"])
@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf")])
def test_solve_refuses_negative_or_nan_tensor_values(which, bad):
    op = _dense_blur()
    rhs = _rand(2, 1, 7, 9)
    good = torch.tensor([0.5, 0.5], dtype=F64)
    value = torch.tensor([0.5, bad], dtype=F64)
    kwargs = {"shift": good, "scale": value} if which == "scale" else {"shift": value, "scale": good}
    with pytest.raises(ValueError, match=rf"{which} must be finite and >= 0.*sample 1"):
        op.solve(rhs, **kwargs)
    with pytest.raises(ValueError, match=rf"{which} must be finite and >= 0"):
        op.solve(rhs, **{k: (v[1] if k == which else 0.5) for k, v in kwargs.items()})  # 0-dim tensor
    for number in (-0.5, float("nan")):
        with pytest.raises(ValueError, match=which):
            op.solve(rhs, **{"shift": 0.5, "scale": 0.5, which: number})


def test_solve_refuses_zero_system_per_sample_and_zero_shift_for_singular_gram():
    rhs = _rand(2, 1, 8, 10)
    zero_both = torch.tensor([0.0, 1.0], dtype=F64)
    with pytest.raises(ValueError, match="both 0"):
        _dense_blur().solve(rhs[..., :7, :9], zero_both, zero_both)
    with pytest.raises(ValueError, match="shift must be > 0 for SuperResolution"):
        SuperResolution(2).solve(rhs, torch.tensor([1.0, 0.0], dtype=F64), 1.0)
    with pytest.raises(ValueError, match="lam must be finite and > 0"):
        _dense_blur().tikhonov(rhs[..., :7, :9], torch.tensor([0.1, -0.1], dtype=F64))


@pytest.mark.parametrize("name", ["inpainting", "dense-blur-cg", "gaussian-zero", "sr-bicubic"])
def test_solve_unchecked_is_the_same_computation(name):
    op = _operators()[name]
    rhs = _rand(2, 3, 7, 9, seed=4)
    shift, scale = torch.tensor([0.2, 0.7], dtype=F64), torch.tensor([1.0, 0.3], dtype=F64)
    x, info = op.solve(rhs, shift, scale, tol=1e-12, max_iters=400, return_info=True)
    x2, info2 = op.solve_unchecked(rhs, shift, scale, tol=1e-12, max_iters=400, return_info=True)
    torch.testing.assert_close(x, x2, rtol=0, atol=0)
    assert info.method == info2.method
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # unchecked never warns (no sync)
        op.solve_unchecked(rhs, shift, scale, max_iters=1)


# ----------------------------------------------------------------------------- 3. exact backward
def _gradcheck_solve(op, shape, method="auto", backend=None, seed=0):
    if backend is not None:
        op = op.with_backend(backend)
    rhs = _rand(*shape, seed=seed).requires_grad_()
    shift = (torch.rand(shape[0], generator=_gen(seed + 1), dtype=F64) + 0.5).requires_grad_()
    scale = (torch.rand(shape[0], generator=_gen(seed + 2), dtype=F64) + 0.5).requires_grad_()

    def f(r, a, b):
        return op.solve(r, a, b, method=method, tol=1e-13, max_iters=500, check_every=10)

    assert torch.autograd.gradcheck(f, (rhs, shift, scale), atol=1e-6, rtol=1e-5, fast_mode=True)


BACKENDS = [pytest.param("torch"), pytest.param("cpp", marks=needs_cpp)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ["inpainting", "blur-cg", "blur-exact", "blur-circular", "sr-bicubic"])
def test_solve_gradcheck(case, backend):
    op, method, shape = {
        "inpainting": (Inpainting(_mask()), "auto", (2, 3, 7, 9)),
        "blur-cg": (_dense_blur(), "cg", (2, 3, 7, 9)),
        "blur-exact": (GaussianBlur(5, 1.0, boundary="zero"), "exact", (2, 3, 7, 9)),
        "blur-circular": (_dense_blur("circular"), "exact", (2, 3, 7, 9)),
        "sr-bicubic": (SuperResolution(2, input_size=(7, 9)), "auto", (2, 3, 7, 9)),
    }[case]
    _gradcheck_solve(op, shape, method, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_solve_gradcheck_sr_average(backend):
    _gradcheck_solve(SuperResolution(2, "average"), (2, 3, 6, 8), "auto", backend)


@needs_cpp
def test_cpp_cg_solve_is_differentiable():
    """It raised NotDifferentiableError (cg_dots on cpp has no backward)."""
    op = _dense_blur(backend="cpp")
    rhs = _rand(2, 3, 7, 9).requires_grad_()
    x = op.solve(rhs, 0.5, 1.0, method="cg", tol=1e-13, max_iters=300)
    (g,) = torch.autograd.grad(x.square().sum(), rhs)
    ref = op.solve(2 * x.detach(), 0.5, 1.0, method="cg", tol=1e-13, max_iters=300)  # K symmetric: K⁻¹(2x)
    torch.testing.assert_close(g, ref, rtol=1e-8, atol=1e-10)


@needs_triton
@pytest.mark.parametrize("case", ["inpainting", "blur-cg", "blur-exact", "sr-bicubic"])
def test_solve_backward_on_triton_matches_torch(case):
    op, method, shape = {
        "inpainting": (Inpainting(_mask()), "auto", (2, 3, 7, 9)),
        "blur-cg": (_well_conditioned_blur(), "cg", (2, 1, 7, 9)),  # converges in a few iterations: interpreter
        "blur-exact": (GaussianBlur(5, 1.0, boundary="zero"), "exact", (2, 3, 7, 9)),
        "sr-bicubic": (SuperResolution(2, input_size=(7, 9)), "auto", (2, 3, 7, 9)),
    }[case]
    grads = []
    for backend in ("torch", "triton"):
        rhs = _rand(*shape, seed=6).requires_grad_()
        shift = torch.tensor([0.6, 0.9], dtype=F64, requires_grad=True)
        scale = torch.tensor([1.1, 0.7], dtype=F64, requires_grad=True)
        # CG under the interpreter costs seconds per iteration: 2 iterations, the same on both backends
        iters = 2 if method == "cg" else 200
        x, _ = op.with_backend(backend).solve(rhs, shift, scale, method=method, tol=1e-12, max_iters=iters,
                                              return_info=True)
        w = _rand(*shape, seed=7)
        grads.append(torch.autograd.grad((x * w).sum(), (rhs, shift, scale)))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ["blur-cg", "sr-bicubic", "inpainting"])
def test_pseudo_inverse_and_tikhonov_gradcheck(case, backend):
    op, shape = {
        "blur-cg": (_well_conditioned_blur(), (2, 3, 7, 9)),
        "sr-bicubic": (SuperResolution(2, input_size=(7, 9)), (2, 3, 4, 5)),
        "inpainting": (Inpainting(_mask()), (2, 3, 7, 9)),
    }[case]
    op = op.with_backend(backend)
    y = _rand(*shape, seed=8).requires_grad_()
    lam = torch.tensor([0.3, 0.8], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, l: op.tikhonov(v, l, tol=1e-13, max_iters=500, check_every=10), (y, lam),
                                    atol=1e-6, rtol=1e-5, fast_mode=True)
    lam0 = torch.tensor(0.4, dtype=F64, requires_grad=True)  # a 0-dim lam
    assert torch.autograd.gradcheck(lambda l: op.tikhonov(y.detach(), l, tol=1e-13, max_iters=500, check_every=10), (lam0,),
                                    fast_mode=True)
    if case != "inpainting":  # the mask's pinv is not differentiable at its zeros: fine
        assert torch.autograd.gradcheck(lambda v: op.pseudo_inverse(v, tol=1e-13, max_iters=500), (y,),
                                        atol=1e-6, rtol=1e-5, fast_mode=True)


# ----------------------------------------------------------------------------- 4. blur kernels
@pytest.mark.parametrize("make", [
    lambda k: Blur(k),
    lambda k: Blur.separable(k[1], torch.ones(3)),
])
def test_blur_refuses_all_zero_kernel(make):
    with pytest.raises(ValueError, match=r"(kernel|k_h) is all zeros.*non-zero tap"):
        make(torch.zeros(3, 3))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_blur_refuses_non_finite_kernel_with_the_fix(bad):
    k = torch.ones(3, 3)
    k[1, 1] = bad
    with pytest.raises(ValueError, match=r"kernel contains NaN or Inf values; pass a finite kernel"):
        Blur(k)


# ----------------------------------------------------------------------------- 5. non-convergence reports
def test_cg_warning_lists_the_failing_samples_residuals():
    op = _dense_blur()
    b = 20
    rhs = _rand(b, 3, 7, 9, seed=9)
    shift = torch.full((b,), 10.0, dtype=F64)  # well conditioned: converges in a few iterations
    shift[13] = 1e-6  # this one does not within 6
    with pytest.warns(SolveNotConvergedWarning) as record:
        x = op.solve(rhs, shift, 1.0, method="cg", tol=1e-8, max_iters=6)
    msg = str(record[0].message)
    _, info = op.solve(rhs, shift, 1.0, method="cg", tol=1e-8, max_iters=6, return_info=True)
    assert (~info.converged).nonzero().flatten().tolist() == [13]
    assert "1 of 20 samples" in msg and "sample 13:" in msg, msg
    assert f"{float(info.residual[13]):.3g}" in msg
    assert x.shape == rhs.shape


def test_ill_conditioned_float32_exact_solve_reports_its_residual():
    """GaussianBlur(boundary='zero') solves exactly; in float32 with a small shift rounding leaves the
    residual far above tol: it used to return silently."""
    op = GaussianBlur(boundary="zero")
    rhs = torch.randn(1, 3, 64, 64, generator=_gen(10))
    x, info = op.solve(rhs, 1e-5, 1.0, return_info=True)
    assert info.method == "exact" and not bool(info.converged.all())
    with pytest.warns(SolveNotConvergedWarning, match=r"exact solve.*did not reach tol=1e-05.*sample 0: .*float64"):
        op.solve(rhs, 1e-5, 1.0)
    y = op.A(torch.rand(1, 3, 64, 64, generator=_gen(11)))
    _, info = op.tikhonov(y, 1e-5, return_info=True)  # tikhonov reports through the same info
    assert info.method == "exact" and info.residual.shape == (1,)
    with warnings.catch_warnings():  # float64 reaches its tolerance: no warning
        warnings.simplefilter("error")
        op.solve(rhs.double(), 1e-3, 1.0)


# ----------------------------------------------------------------------------- 6. avg_pool_adjoint factor
@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_avg_pool_adjoint_refuses_a_factor_whose_output_cannot_exist(backend):
    y = torch.ones(1, 3, 8, 8)
    with pytest.raises(ValueError, match=r"factor=1000000 is too large.*factor must be at most"):
        avg_pool_adjoint(y, 10**6, backend=backend)
    assert avg_pool_adjoint(y, 4, backend=backend).shape == (1, 3, 32, 32)
