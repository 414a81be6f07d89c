"""Backend choice (kernels/_dispatch.py): auto never picks the interpreter, explicit choices that
cannot run raise with the reason, bad names raise ValueError, DIFFSOLVE_BACKEND sets the default."""

from __future__ import annotations

import pytest
import torch

from diffsolve.kernels import BackendUnavailableError, _dispatch, backends, fused_step

CPU = torch.device("cpu")

# triton.jit decides compiled vs interpreted when a kernel module is first imported: importing the
# Triton kernels with TRITON_INTERPRET=1 on a GPU machine would make every later CUDA test run them
# in the interpreter. The interpreter-dispatch checks therefore run on CPU-only machines (CI).
cpu_only = pytest.mark.skipif(torch.cuda.is_available(),
                              reason="would import the Triton kernels in interpreter mode on a GPU machine")


@pytest.fixture
def no_cpp(monkeypatch):
    monkeypatch.setattr(_dispatch, "_cpp_status", lambda: (False, "extension not built (test)"))


def test_auto_picks_torch_on_cpu_without_cpp(no_cpp, monkeypatch):
    monkeypatch.delenv("DIFFSOLVE_BACKEND", raising=False)
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # even with the interpreter on, auto never uses it
    assert _dispatch.resolve_backend("auto", "fused_step", "step", CPU) == "torch"
    impl = _dispatch.implementation("auto", "fused_step", "step", CPU)
    assert impl.__name__ == "fused_step_reference"


def test_auto_picks_cpp_on_cpu_when_built(monkeypatch):
    monkeypatch.delenv("DIFFSOLVE_BACKEND", raising=False)
    monkeypatch.setattr(_dispatch, "_cpp_status", lambda: (True, "built (test)"))
    fake = object()
    real_lookup = _dispatch._lookup
    monkeypatch.setattr(_dispatch, "_lookup",
                        lambda n, f, b: fake if b == "cpp" else real_lookup(n, f, b))
    assert _dispatch.resolve_backend("auto", "fused_step", "step", CPU) == "cpp"
    assert _dispatch.implementation("auto", "fused_step", "step", CPU) is fake
    # an op the extension lacks falls back to torch quietly
    monkeypatch.setattr(_dispatch, "_lookup",
                        lambda n, f, b: None if b == "cpp" else real_lookup(n, f, b))
    assert _dispatch.resolve_backend("auto", "fused_step", "step", CPU) == "torch"


def test_explicit_triton_on_cpu_without_interpreter_raises_with_reason(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(BackendUnavailableError, match="TRITON_INTERPRET=1"):
        _dispatch.resolve_backend("triton", "fused_step", "step", CPU)
    x = torch.zeros(2, 3)
    with pytest.raises(BackendUnavailableError, match="fused_step"):
        fused_step(x, x, torch.zeros(2, 8), backend="triton")


def test_explicit_cpp_without_extension_raises_with_reason(no_cpp):
    with pytest.raises(BackendUnavailableError, match="extension not built"):
        _dispatch.resolve_backend("cpp", "fused_step", "step", CPU)


@cpu_only
def test_explicit_triton_on_cpu_with_interpreter_runs(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    if not _dispatch._triton_status()[0]:
        pytest.skip(f"triton unavailable here: {_dispatch._triton_status()[1]}")
    assert _dispatch.resolve_backend("triton", "fused_step", "step", CPU) == "triton"
    assert _dispatch.implementation("triton", "fused_step", "step", CPU).__module__.endswith("_triton_step")


@cpu_only
def test_missing_op_on_named_backend_raises(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    if not _dispatch._triton_status()[0]:
        pytest.skip(f"triton unavailable here: {_dispatch._triton_status()[1]}")
    with pytest.raises(BackendUnavailableError, match="no implementation of 'not_an_op'"):
        _dispatch.resolve_backend("triton", "not_an_op", "step", CPU)


@pytest.mark.parametrize("bad", ["cuda", "Torch", "", None, 3])
def test_unknown_backend_is_value_error(bad):
    with pytest.raises(ValueError, match="backend must be one of"):
        _dispatch.resolve_backend(bad, "fused_step", "step", CPU)
    if isinstance(bad, str):
        x = torch.zeros(2, 3)
        with pytest.raises(ValueError, match="backend must be one of"):
            fused_step(x, x, torch.zeros(2, 8), backend=bad)


def test_env_default_backend(monkeypatch, no_cpp):
    monkeypatch.setenv("DIFFSOLVE_BACKEND", "torch")
    assert _dispatch.resolve_backend("auto", "fused_step", "step", CPU) == "torch"
    monkeypatch.setenv("DIFFSOLVE_BACKEND", "cpp")  # an env choice is explicit: it raises if impossible
    with pytest.raises(BackendUnavailableError, match="cpp"):
        _dispatch.resolve_backend("auto", "fused_step", "step", CPU)
    assert _dispatch.resolve_backend("torch", "fused_step", "step", CPU) == "torch"  # named wins
    monkeypatch.setenv("DIFFSOLVE_BACKEND", "fastest")
    with pytest.raises(ValueError, match="DIFFSOLVE_BACKEND"):
        _dispatch.resolve_backend("auto", "fused_step", "step", CPU)
    monkeypatch.setenv("DIFFSOLVE_BACKEND", " ")
    assert _dispatch.resolve_backend("auto", "fused_step", "step", CPU) == "torch"


def test_backends_lists_each_with_reason():
    info = backends()
    assert set(info) == {"triton", "cpp", "torch"}
    for name, (ok, why) in info.items():
        assert isinstance(ok, bool) and isinstance(why, str) and why, name
    assert info["torch"][0] is True


def test_auto_skips_ops_a_backend_marks_slower_than_torch(monkeypatch):
    from diffsolve.kernels import _cpp_ops

    monkeypatch.delenv("DIFFSOLVE_BACKEND", raising=False)
    monkeypatch.setattr(_dispatch, "_cpp_status", lambda: (True, "built (test)"))
    real_lookup = _dispatch._lookup
    monkeypatch.setattr(_dispatch, "_lookup", lambda n, f, b: (lambda *a: None) if b == "cpp" else real_lookup(n, f, b))
    assert _dispatch.resolve_backend("auto", "fused_step", "step", CPU) == "cpp"
    monkeypatch.setattr(_cpp_ops, "AUTO_EXCLUDE", ("fused_step",), raising=False)
    assert _dispatch.resolve_backend("auto", "fused_step", "step", CPU) == "torch"
    assert _dispatch.resolve_backend("cpp", "fused_step", "step", CPU) == "cpp"  # explicit still runs

