"""MPGD guided by a loss, and MPGD-AE/Z: what a loss or an autoencoder cannot do is refused before sampling."""
import pytest
import torch
import torch.nn.functional as F

from _tiny_models import SCHEDULER, tiny_kl, tiny_unet
from diffsolve.models import Autoencoder, DiffusersDenoiser, EpsDenoiser
from diffsolve.operators import Inpainting
from diffsolve.solvers import Projection, ddim, mpgd, mpgd_ldm


def _colour(x):
    return (x.mean(dim=(2, 3)) - 0.5).square().sum(1)


BAD_LOSSES = {
    "detached": (lambda x: _colour(x.detach()), ValueError, "does not depend on x0"),
    "constant": (lambda x: torch.zeros(x.shape[0]), ValueError, "does not depend on x0"),
    "integer": (lambda x: torch.ones(x.shape[0], dtype=torch.long), TypeError, "real floating"),
    "complex": (lambda x: _colour(x).to(torch.complex64), TypeError, "real floating"),
}


@pytest.mark.parametrize("kind", sorted(BAD_LOSSES))
def test_a_loss_without_a_gradient_is_named(kind):
    loss, error, words = BAD_LOSSES[kind]
    denoiser = DiffusersDenoiser(tiny_unet(3), SCHEDULER)
    with pytest.raises(error, match=words):
        mpgd(denoiser, None, None, loss=loss, shape=(2, 3, 8, 8), steps=3)


def test_mpgd_ldm_names_a_detached_loss():
    loss, error, words = BAD_LOSSES["detached"]
    with pytest.raises(error, match=words):
        mpgd_ldm(DiffusersDenoiser(tiny_unet(2), SCHEDULER), Autoencoder(tiny_kl()), None, None, loss=loss,
                 shape=(2, 3, 8, 8), steps=3)


def test_a_differentiable_loss_still_guides():
    """The same starting noise with and without the loss: the guided samples have the lower loss."""
    denoiser = DiffusersDenoiser(tiny_unet(3), SCHEDULER)
    x_T = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    free = ddim(denoiser, (2, 3, 8, 8), steps=3, eta=0.5, x_T=x_T, generator=torch.Generator().manual_seed(1))
    x = mpgd(denoiser, None, None, loss=_colour, x_T=x_T, steps=3, rho=1.0,
             generator=torch.Generator().manual_seed(1))
    assert x.shape == (2, 3, 8, 8) and torch.isfinite(x).all()
    assert bool((_colour(x) < _colour(free)).all()), (_colour(x), _colour(free))


@pytest.mark.parametrize("shape", ["abc", [2, 3, "8", 8], (2, 3, 8.0, 8)])
def test_a_shape_that_is_not_ints_is_named(shape):
    denoiser = DiffusersDenoiser(tiny_unet(3), SCHEDULER)
    with pytest.raises(TypeError, match="shape must be a tuple of ints"):
        mpgd(denoiser, None, None, loss=_colour, shape=shape, steps=2)


class _PoolAutoencoder:
    """2×2 average pooling and nearest up-sampling: a 9×9 image comes back 8×8."""

    def encode(self, x):
        return F.avg_pool2d(x, 2)

    def decode(self, z):
        return F.interpolate(z, scale_factor=2.0)


@pytest.mark.parametrize("space", ["ae", "z"])
def test_projection_that_changes_the_image_size_is_refused_before_any_model_call(space):
    calls = []
    base = DiffusersDenoiser(tiny_unet(3), SCHEDULER)
    counted = EpsDenoiser(lambda x, t: calls.append(1) or base(x, t), base.alphas_cumprod)
    op = Inpainting.box(9, box=3, margin=1)
    y = op.A(torch.rand(1, 3, 9, 9, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    with pytest.raises(ValueError, match=r"come back from the autoencoder as \(3, 8, 8\)"):
        mpgd(counted, op, y, steps=10, projection=Projection(_PoolAutoencoder(), space))
    assert not calls


def test_projection_round_trip_checks_in_x_t_dtype():
    """Without y the samples take x_T's dtype: a float64 autoencoder with a float64 x_T runs."""
    base = DiffusersDenoiser(tiny_unet(3), SCHEDULER).double()
    x_T = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ae = Autoencoder(tiny_kl()).double()
    x = mpgd(base, None, None, loss=_colour, x_T=x_T, steps=3, projection=Projection(ae, "ae", (0, 1)))
    assert x.dtype == torch.float64 and torch.isfinite(x).all()
