"""Backend choice (kernels/_dispatch.py): one explicit table resolved once per (op, backend, device,
dtype); auto never picks the interpreter; a named backend that cannot run, or a table entry whose
function is missing, raises at resolution (no silent fallback); DIFFSOLVE_BACKEND is read once."""

from __future__ import annotations

import pytest
import torch

from diffsolve.kernels import (BackendUnavailableError, NotDifferentiableError, _dispatch, backends,
                               dispatch_table, fused_step)

CPU = torch.device("cpu")
F32 = torch.float32

# triton.jit decides compiled vs interpreted when a kernel module is first imported: importing the
# Triton kernels with TRITON_INTERPRET=1 on a GPU machine would make every later CUDA test run them
# in the interpreter. The interpreter-dispatch checks therefore run on CPU-only machines (CI).
cpu_only = pytest.mark.skipif(torch.cuda.is_available(),
                              reason="would import the Triton kernels in interpreter mode on a GPU machine")


@pytest.fixture(autouse=True)
def fresh_cache():
    _dispatch.reset()
    yield
    _dispatch.reset()


@pytest.fixture
def no_cpp(monkeypatch):
    monkeypatch.setattr(_dispatch, "_cpp_status", lambda: (False, "extension not built (test)"))


@pytest.fixture
def fake_cpp(monkeypatch):
    """A "built" extension whose fused_step is a marker function."""
    def fake(*args):
        return "fake"

    monkeypatch.setattr(_dispatch, "_cpp_status", lambda: (True, "built (test)"))
    real_load = _dispatch._load
    monkeypatch.setattr(_dispatch, "_load", lambda loc: fake if loc.startswith("_cpp_ops:") else real_load(loc))
    return fake


def test_auto_picks_torch_on_cpu_without_cpp(no_cpp, monkeypatch):
    monkeypatch.delenv("DIFFSOLVE_BACKEND", raising=False)
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # even with the interpreter on, auto never uses it
    assert _dispatch.resolve("fused_step", "auto", CPU, F32).backend == "torch"
    assert _dispatch.resolve("fused_step", "auto", CPU, F32).fn.__name__ == "fused_step_reference"


def test_auto_picks_cpp_on_cpu_when_built(fake_cpp, monkeypatch):
    monkeypatch.delenv("DIFFSOLVE_BACKEND", raising=False)
    impl = _dispatch.resolve("fused_step", "auto", CPU, F32)
    assert impl.backend == "cpp" and impl.fn.__wrapped__ is fake_cpp
    assert _dispatch.resolve("correlate2d", "auto", CPU, F32).adjoint_fn is fake_cpp


def test_resolution_is_cached_per_op_device_dtype(monkeypatch):
    first = _dispatch.resolve("correlate2d", "torch", CPU, F32)
    def again(*args):
        raise LookupError("resolved again")

    monkeypatch.setattr(_dispatch, "_choose", again)
    monkeypatch.setenv("DIFFSOLVE_BACKEND", "not-a-backend")  # not re-read per call
    assert _dispatch.resolve("correlate2d", "torch", CPU, F32) is first
    with pytest.raises(LookupError, match="resolved again"):  # another dtype is another entry
        _dispatch.resolve("correlate2d", "torch", CPU, torch.float64)


def test_a_missing_function_in_the_table_is_an_error_even_for_auto(monkeypatch):
    """A renamed kernel must not fall back to torch quietly."""
    row = _dispatch.TABLE["fused_step"]
    monkeypatch.setitem(_dispatch.TABLE, "fused_step", row._replace(cpp="_cpp_ops:fused_step_renamed"))
    monkeypatch.delenv("DIFFSOLVE_BACKEND", raising=False)
    if not _dispatch._cpp_status()[0]:
        pytest.skip(f"C++ backend unavailable: {_dispatch._cpp_status()[1]}")
    with pytest.raises(BackendUnavailableError, match="fused_step_renamed.*does not exist"):
        _dispatch.resolve("fused_step", "auto", CPU, F32)


def test_a_backend_must_have_both_halves_of_a_linear_op(fake_cpp, monkeypatch):
    row = _dispatch.TABLE["avg_pool_adjoint"]
    monkeypatch.setitem(_dispatch.TABLE, "avg_pool_adjoint", row._replace(cpp=None))
    with pytest.raises(BackendUnavailableError, match="not its adjoint 'avg_pool_adjoint'"):
        _dispatch.resolve("avg_pool", "cpp", CPU, F32)


def test_explicit_triton_on_cpu_without_interpreter_raises_with_reason(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(BackendUnavailableError, match="TRITON_INTERPRET=1"):
        _dispatch.resolve("fused_step", "triton", CPU, F32)
    x = torch.zeros(2, 3)
    with pytest.raises(BackendUnavailableError, match="fused_step"):
        fused_step(x, x, torch.zeros(2, 8), backend="triton")


def test_explicit_cpp_without_extension_raises_with_reason(no_cpp):
    with pytest.raises(BackendUnavailableError, match="extension not built"):
        _dispatch.resolve("fused_step", "cpp", CPU, F32)


def test_cpp_never_runs_cuda_or_meta_tensors(fake_cpp):
    with pytest.raises(BackendUnavailableError, match="CPU tensors only"):
        _dispatch.resolve("correlate2d", "cpp", torch.device("meta"), F32)


@cpu_only
def test_explicit_triton_on_cpu_with_interpreter_runs(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    if not _dispatch._triton_status()[0]:
        pytest.skip(f"triton unavailable here: {_dispatch._triton_status()[1]}")
    impl = _dispatch.resolve("fused_step", "triton", CPU, F32)
    assert impl.backend == "triton" and impl.fn.__wrapped__.__module__.endswith("_triton_step")


def test_unknown_op_raises():
    with pytest.raises(BackendUnavailableError, match="no op named 'not_an_op'"):
        _dispatch.resolve("not_an_op", "torch", CPU, F32)


def test_unsupported_dtype_raises_at_resolution():
    with pytest.raises(BackendUnavailableError, match="float32 / float64"):
        _dispatch.resolve("correlate2d", "torch", CPU, torch.float16)


@pytest.mark.parametrize("bad", ["cuda", "Torch", "", None, 3, ["cpp"], {"torch": 1}])
def test_unknown_backend_is_value_error(bad):
    with pytest.raises(ValueError, match="backend must be one of"):
        _dispatch.resolve("fused_step", bad, CPU, F32)
    if isinstance(bad, str):
        x = torch.zeros(2, 3)
        with pytest.raises(ValueError, match="backend must be one of"):
            fused_step(x, x, torch.zeros(2, 8), backend=bad)


def test_env_default_backend_read_once_until_reset(monkeypatch, no_cpp):
    monkeypatch.setenv("DIFFSOLVE_BACKEND", "torch")
    assert _dispatch.resolve("fused_step", "auto", CPU, F32).backend == "torch"
    monkeypatch.setenv("DIFFSOLVE_BACKEND", "cpp")
    assert _dispatch.resolve("cg_dots", "auto", CPU, F32).backend == "torch"  # still the value read first
    _dispatch.reset()  # an env choice is explicit: it raises if impossible
    with pytest.raises(BackendUnavailableError, match="cpp"):
        _dispatch.resolve("fused_step", "auto", CPU, F32).backend
    assert _dispatch.resolve("fused_step", "torch", CPU, F32).backend == "torch"  # named wins
    monkeypatch.setenv("DIFFSOLVE_BACKEND", "fastest")
    _dispatch.reset()
    with pytest.raises(ValueError, match="DIFFSOLVE_BACKEND"):
        _dispatch.resolve("fused_step", "auto", CPU, F32).backend
    monkeypatch.setenv("DIFFSOLVE_BACKEND", " ")
    _dispatch.reset()
    assert _dispatch.resolve("fused_step", "auto", CPU, F32).backend == "torch"


def test_backends_lists_each_with_reason():
    info = backends()
    assert set(info) == {"triton", "cpp", "torch"}
    for name, (ok, why) in info.items():
        assert isinstance(ok, bool) and isinstance(why, str) and why, name
    assert info["torch"][0] is True


def test_auto_skips_ops_a_row_marks_slower_than_torch(fake_cpp, monkeypatch):
    monkeypatch.delenv("DIFFSOLVE_BACKEND", raising=False)
    assert _dispatch.resolve("fused_step", "auto", CPU, F32).backend == "cpp"
    monkeypatch.setitem(_dispatch.TABLE, "fused_step", _dispatch.TABLE["fused_step"]._replace(auto_skip=("cpp",)))
    _dispatch.reset()
    assert _dispatch.resolve("fused_step", "auto", CPU, F32).backend == "torch"
    assert _dispatch.resolve("fused_step", "cpp", CPU, F32).backend == "cpp"  # explicit still runs


def test_dispatch_table_rows(fake_cpp):
    rows = dispatch_table()
    assert [r["op"] for r in rows] == list(_dispatch.TABLE)
    for r in rows:
        assert set(r) == {"op", "torch", "triton", "cpp", "auto_cpu", "auto_cuda"}
        assert r["torch"] is True and r["cpp"] is True and r["auto_cpu"] == "cpp"
    by_op = {r["op"]: r for r in rows}
    assert by_op["resample"]["auto_cuda"] == "torch" and by_op["correlate2d"]["auto_cuda"] == "triton"


def test_non_linear_ops_refuse_grad_on_compiled_backends(fake_cpp):
    impl = _dispatch.resolve("fused_step", "cpp", CPU, F32)
    x = torch.zeros(2, 3, requires_grad=True)
    with pytest.raises(NotDifferentiableError, match="fused_step on the cpp backend has no backward"):
        impl.fn(x)
    with torch.no_grad():
        assert impl.fn(x) == "fake"
    assert impl.fn(x.detach()) == "fake"
