"""PaddedDenoiser: a model that needs side multiples runs on any image size (reflect-pad in, crop out)."""

import pytest
import torch
import torch.nn.functional as F

import diffsolve
from diffsolve.models import EpsDenoiser, PaddedDenoiser, load_default
from diffsolve.models.padded import padding_for
from diffsolve.operators import GaussianBlur


class Recorder:
    """An ε-model that needs multiples of 8 and records the shapes it was called on."""

    spatial_multiple = 8
    final_alpha_cumprod = 1.0

    def __init__(self) -> None:
        self.alphas_cumprod = EpsDenoiser(lambda x, t: x).alphas_cumprod
        self.shapes = []
        self.x0_clip = "inner's"

    def __call__(self, x, t):
        self.shapes.append(tuple(x.shape))
        assert x.shape[-2] % 8 == 0 and x.shape[-1] % 8 == 0
        return torch.sin(x) + 0.01 * t.view(-1, 1, 1, 1)

    def x0_and_eps(self, x, t):
        eps = self(x, t)
        return x - eps, eps


def test_padding_goes_after_the_last_row_and_column():
    assert padding_for((20, 30), 8) == (0, 2, 0, 4)  # W 30 -> 32, H 20 -> 24
    assert padding_for((16, 13), 8) == (0, 3, 0, 0)
    assert padding_for((16, 16), 8) == (0, 0, 0, 0)


def test_off_multiple_input_is_padded_reflectively_and_cropped_back():
    inner = Recorder()
    den = PaddedDenoiser(inner)
    x = torch.randn(2, 3, 20, 30, dtype=torch.float64)
    t = torch.tensor([10, 500])
    out = den(x, t)
    assert out.shape == x.shape and inner.shapes == [(2, 3, 24, 32)]
    expected = inner(F.pad(x, (0, 2, 0, 4), mode="reflect"), t)[..., :20, :30]
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    x0, eps = den.x0_and_eps(x, t)  # diffusers' clipped-x̂0 path is padded the same way
    torch.testing.assert_close(eps, expected, rtol=0, atol=0)
    torch.testing.assert_close(x0, x - expected, rtol=0, atol=0)


def test_multiple_sizes_pass_through_and_attributes_are_the_inner_models():
    inner = Recorder()
    den = PaddedDenoiser(inner)
    x = torch.randn(1, 3, 16, 24)
    t = torch.tensor([3])
    torch.testing.assert_close(den(x, t), inner(x, t), rtol=0, atol=0)
    assert inner.shapes[0] == (1, 3, 16, 24)
    assert den.alphas_cumprod is inner.alphas_cumprod and den.x0_clip == "inner's"
    assert den.multiple == 8 and den.spatial_multiple == 1
    assert not hasattr(PaddedDenoiser(EpsDenoiser(lambda x, t: x)), "x0_and_eps")


def test_gradients_flow_through_the_padding():
    den = PaddedDenoiser(Recorder())
    x = torch.randn(1, 1, 10, 12, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([1])
    torch.autograd.gradcheck(lambda v: den(v, t), (x,))


@pytest.mark.parametrize("mode", ["replicate", "circular"])
def test_other_padding_modes(mode):
    inner = Recorder()
    x = torch.randn(1, 2, 13, 9, dtype=torch.float64)
    t = torch.tensor([7])
    expected = inner(F.pad(x, (0, 7, 0, 3), mode=mode), t)[..., :13, :9]  # W 9 -> 16, H 13 -> 16
    torch.testing.assert_close(PaddedDenoiser(inner, mode=mode)(x, t), expected, rtol=0, atol=0)


def test_bad_multiple_mode_and_too_small_images_are_refused():
    with pytest.raises(ValueError, match="multiple must be an int >= 1"):
        PaddedDenoiser(Recorder(), multiple=0)
    with pytest.raises(ValueError, match="mode must be one of"):
        PaddedDenoiser(Recorder(), mode="zeros")
    with pytest.raises(TypeError, match="denoiser must be callable"):
        PaddedDenoiser(object())
    with pytest.raises(ValueError, match="at least 8"):
        PaddedDenoiser(Recorder())(torch.zeros(1, 3, 6, 16), torch.tensor([1]))
    calls = Recorder()  # a solver refuses it before its loop: the model is never called
    with pytest.raises(ValueError, match="shape=.*at least 8"):
        diffsolve.solvers.ddim(PaddedDenoiser(calls), (1, 3, 6, 16), steps=2)
    assert calls.shapes == []


def test_a_solver_runs_the_shipped_model_on_an_off_multiple_image():
    model = load_default("patches")
    op = GaussianBlur(9, 1.5, "reflect")
    x = diffsolve.data.photo("coffee", size=64)[None][..., 2:62, 3:61]  # 60 x 58
    y = op.A(x)
    with pytest.raises(ValueError, match="PaddedDenoiser"):  # the bare model names the wrapper
        diffsolve.solve("mpgd", model, op, y, steps=2, sigma=0.05)
    x_hat = diffsolve.solve("mpgd", PaddedDenoiser(model), op, y, steps=4, sigma=0.05,
                            generator=torch.Generator().manual_seed(0))
    assert x_hat.shape == x.shape and torch.isfinite(x_hat).all()
