"""Checks every solver makes before its first model call: the backend, σ (a number or a GaussianNoise), and the
fixes tasks suggest for images too small for them."""
import pytest
import torch

import diffsolve
from diffsolve.kernels import BackendUnavailableError
from diffsolve.models import GaussianPrior
from diffsolve.operators import GaussianBlur, GaussianNoise, Identity, Inpainting
from diffsolve.tasks import make_operator

D = torch.float64


class CountingPrior(GaussianPrior):
    def __init__(self, *args):
        super().__init__(*args)
        self.calls = 0

    def __call__(self, x, t):
        self.calls += 1
        return super().__call__(x, t)


def _prior():
    return CountingPrior(torch.zeros(3, 8, 8, dtype=D), 0.25)


@pytest.mark.parametrize("method", ["ddim", "ge", "mpgd", "ddrm", "reddiff"])
def test_an_unknown_backend_is_refused_before_any_model_call(method):
    prior = _prior()
    options = {"shape": (2, 3, 8, 8), "dtype": D} if method in ("ddim", "ge") else {}
    mask = Inpainting.box(8, box=4, margin=1)
    operator, y = (None, None) if method in ("ddim", "ge") else (mask, torch.zeros(2, 3, 8, 8, dtype=D))
    if operator is not None:
        options["sigma"] = 0.05
    with pytest.raises(ValueError, match="backend must be one of"):
        diffsolve.solve(method, prior, operator, y, steps=3, backend="cuda", **options)
    assert prior.calls == 0


@pytest.fixture
def no_interpreter(monkeypatch):
    """Triton as a machine without a GPU and without TRITON_INTERPRET sees it."""
    from diffsolve.kernels import _dispatch

    _dispatch.reset()
    monkeypatch.setattr(_dispatch, "_interpreting", lambda: False)
    yield
    monkeypatch.undo()
    _dispatch.reset()


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU, Triton on CPU tensors is not this machine's case")
@pytest.mark.parametrize("method", ["ddim", "mpgd", "ddrm", "reddiff"])
@pytest.mark.parametrize("operator", [Inpainting.box(8, box=4, margin=1), GaussianBlur(3, 0.8)], ids=["mask", "blur"])
def test_triton_on_cpu_tensors_is_refused_before_any_model_call_naming_the_backend(method, operator, no_interpreter):
    prior = _prior()
    y = operator.A(torch.zeros(2, 3, 8, 8, dtype=D)) + 0.1
    if method == "ddim":
        call = lambda: diffsolve.solve("ddim", prior, None, None, shape=(2, 3, 8, 8), dtype=D, steps=3,
                                       backend="triton")
    else:
        call = lambda: diffsolve.solve(method, prior, operator, y, sigma=0.05, steps=3, backend="triton")
    with pytest.raises(BackendUnavailableError, match="backend='triton'"):
        call()
    assert prior.calls == 0


def test_check_backend_refuses_triton_on_cpu_without_the_interpreter(monkeypatch):
    from diffsolve.kernels import _dispatch

    monkeypatch.setattr(_dispatch, "_interpreting", lambda: False)
    with pytest.raises(BackendUnavailableError, match="Triton needs CUDA tensors"):
        _dispatch.check_backend("triton", torch.device("cpu"), torch.float32)
    _dispatch.check_backend("torch", torch.device("cpu"), torch.float32)
    _dispatch.check_backend("auto", torch.device("cpu"), torch.float32)


def test_mpgd_refuses_sigma_zero_which_would_ignore_y():
    prior = _prior()
    y = torch.zeros(1, 3, 8, 8, dtype=D) + 0.3
    with pytest.raises(ValueError, match="sigma must be a positive.*leave sigma out"):
        diffsolve.solve("mpgd", prior, Identity(), y, sigma=0.0, steps=3)
    assert prior.calls == 0


@pytest.mark.parametrize("method", ["mpgd", "pigdm", "diffpir", "ddnm", "dps", "cdps"])
def test_sigma_may_be_the_gaussian_noise_that_made_y(method):
    prior = _prior()
    op = Inpainting.box(8, box=4, margin=1)
    noise = GaussianNoise(0.05)
    y = noise(op.A(torch.zeros(2, 3, 8, 8, dtype=D)), generator=torch.Generator().manual_seed(0))
    by_noise = diffsolve.solve(method, prior, op, y, sigma=noise, steps=3, generator=torch.Generator().manual_seed(1))
    by_number = diffsolve.solve(method, prior, op, y, sigma=0.05, steps=3, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(by_noise, by_number, rtol=0, atol=0)


@pytest.mark.parametrize("task, size, fix", [("sr4", (3, 3), "side >= 4"), ("sr4", (2, 7), "side >= 4"),
                                             ("box", (1, 1), "side >= 3"), ("box", (2, 2), "side >= 3")])
def test_tasks_suggest_a_fix_that_exists_for_tiny_images(task, size, fix):
    with pytest.raises(ValueError, match=fix):
        make_operator(task, size)


@pytest.mark.parametrize("method", ["mpgd", "pigdm", "diffpir", "ddnm", "ddrm", "dps", "cdps", "daps", "reddiff",
                                    "mmps"])
@pytest.mark.parametrize("sigma", [1e-20, 1e-300])
def test_a_sigma_below_sigma_min_is_refused_before_any_model_call(method, sigma):
    prior = _prior()
    op = Inpainting.box(8, box=4, margin=1)
    y = op.A(torch.zeros(1, 3, 8, 8, dtype=D)) + 0.1
    with pytest.raises(ValueError, match="below 1e-15"):
        diffsolve.solve(method, prior, op, y, sigma=sigma, steps=3)
    assert prior.calls == 0


def test_a_default_backend_from_the_environment_is_named(monkeypatch):
    from diffsolve.kernels import _dispatch

    monkeypatch.setattr(_dispatch, "_interpreting", lambda: False)
    monkeypatch.setattr(_dispatch, "_env_default", lambda: "triton")
    with pytest.raises(BackendUnavailableError, match="DIFFSOLVE_BACKEND=triton .*unset DIFFSOLVE_BACKEND"):
        _dispatch.check_backend("auto", torch.device("cpu"), torch.float32)


@pytest.mark.parametrize("method, options", [
    ("dps", {"sigma": 0.05}), ("pigdm", {"sigma": 0.05}), ("mmps", {"sigma": 0.05}),
    ("mpgd", {"loss": lambda x0: x0.pow(2).mean(dim=(1, 2, 3)), "shape": (2, 3, 8, 8), "dtype": D})])
def test_methods_that_differentiate_refuse_inference_mode_before_any_model_call(method, options):
    """inference_mode cannot be left inside the loop: autograd failed after the first model call with a raw error.
    no_grad is fine: the methods turn gradients on where they need them."""
    prior = _prior()
    operator, y = (None, None) if "loss" in options else (GaussianBlur(3, 0.8), torch.zeros(2, 3, 8, 8, dtype=D))
    with torch.inference_mode(), pytest.raises(ValueError, match=rf"{method} differentiates through .* outside "
                                                                 "inference_mode"):
        diffsolve.solve(method, prior, operator, y, steps=2, **options)
    assert prior.calls == 0
    with torch.no_grad():
        assert torch.isfinite(diffsolve.solve(method, prior, operator, y, steps=2, **options)).all()
