"""Latent and ADM model paths refuse what they cannot run, with a ValueError/TypeError naming it, before any step:
ADM checkpoints that do not map onto UNet2DModel, autoencoder inputs off the VAE's channels, dtype or factor,
mpgd_ldm's shape arguments, and latent folders whose UNet does not take the VAE's latents."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from _tiny_models import SCHEDULER, tiny_kl, tiny_unet
from test_adm import adm_state_dict

from diffsolve.models import Autoencoder, DiffusersDenoiser, load_latent_diffusion
from diffsolve.models.adm import load_adm
from diffsolve.operators import Inpainting
from diffsolve.solvers import mpgd_ldm


def _save(tmp_path, sd, name="adm.pt"):
    path = tmp_path / name
    torch.save({k: v.float() for k, v in sd.items()}, path)
    return path


# ----------------------------------------------------------------- ADM checkpoints


def test_adm_first_level_wider_than_the_model_is_refused(tmp_path):
    """channel_mult[0] != 1 (ImageNet 512's 0.5): UNet2DModel's conv_in cannot hold it (was a raw RuntimeError)."""
    path = _save(tmp_path, adm_state_dict(mc=32, mult=(2, 2), nrb=1, attn_levels=(1,)))
    with pytest.raises(ValueError, match=r"channel_mult\[0\] = 2"):
        load_adm(path, num_head_channels=16)


def test_adm_tensor_of_the_wrong_shape_is_refused(tmp_path):
    sd = adm_state_dict(mc=32, mult=(1, 2), nrb=1, attn_levels=(1,))
    sd["output_blocks.0.0.out_layers.3.weight"] = torch.zeros(3, 3, 3, 3)
    with pytest.raises(ValueError, match=r"wrong shape.*up_blocks\.0\.resnets\.0\.conv2\.weight"):
        load_adm(_save(tmp_path, sd), num_head_channels=16)


def test_adm_missing_middle_attention_is_refused(tmp_path):
    sd = {k: v for k, v in adm_state_dict(mc=32, mult=(1, 2), nrb=1).items() if not k.startswith("middle_block.1")}
    with pytest.raises(ValueError, match=r"no 'middle_block\.1\.qkv\.weight'"):
        load_adm(_save(tmp_path, sd), num_head_channels=16)


def test_adm_output_channels_must_be_eps_or_eps_and_variance(tmp_path):
    path = _save(tmp_path, adm_state_dict(mc=32, mult=(1, 2), nrb=1, attn_levels=(1,), out_ch=4))
    with pytest.raises(ValueError, match="4 output channels for 3 input channels.*learn_sigma"):
        load_adm(path, num_head_channels=16)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"image_size": 0}, ValueError, "image_size must be a positive int"),
    ({"image_size": "256"}, ValueError, "image_size must be a positive int"),
    ({"torch_dtype": "float16"}, TypeError, "torch_dtype must be a floating torch.dtype"),
    ({"torch_dtype": torch.int32}, TypeError, "torch_dtype must be a floating torch.dtype"),
])
def test_adm_loader_options_are_checked(tmp_path, kwargs, error, match):
    path = _save(tmp_path, adm_state_dict(mc=32, mult=(1, 2), nrb=1, attn_levels=(1,)))
    with pytest.raises(error, match=match):
        load_adm(path, num_head_channels=16, **kwargs)


# ----------------------------------------------------------------- the autoencoder


@pytest.mark.parametrize("kwargs, match", [
    ({"shift_factor": float("nan")}, "shift_factor must be a finite number"),
    ({"scaling_factor": float("inf")}, "scaling_factor must be a finite number"),
    ({"scaling_factor": "0.5"}, "scaling_factor must be a finite number"),
    ({"scaling_factor": True}, "scaling_factor must be a finite number"),
])
def test_autoencoder_scaling_must_be_finite_numbers(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Autoencoder(tiny_kl(), **kwargs)


def test_autoencoder_refuses_tensors_the_vae_cannot_take():
    ae = Autoencoder(tiny_kl())  # 3 image channels, 2 latent channels, factor 2
    assert (ae.spatial_factor, ae.image_channels, ae.latent_channels) == (2, 3, 2)
    with pytest.raises(TypeError, match="x must be a floating tensor.*int64"):
        ae.encode(torch.zeros(1, 3, 8, 8, dtype=torch.long))  # was cast and returned as int64 latents
    with pytest.raises(ValueError, match="x has 1 channels but the autoencoder's config says 3"):
        ae.encode(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="z has 4 channels but the autoencoder's config says 2"):
        ae.decode(torch.zeros(1, 4, 4, 4))
    with pytest.raises(ValueError, match="x is 9×9 but the autoencoder down-samples by 2.*8×8"):
        ae.encode(torch.zeros(1, 3, 9, 9))  # was 4×4 latents that decode to 8×8


# ----------------------------------------------------------------- mpgd_ldm's shapes


def _latent_setup():
    return DiffusersDenoiser(tiny_unet(2), SCHEDULER), Autoencoder(tiny_kl())


def _colour(x):
    return x.mean(dim=(2, 3)).square().sum(1)


class _PoolAE:
    """A generic autoencoder (no config): 2×2 average pooling, nearest up-sampling; 9×9 comes back 8×8."""

    def encode(self, x):
        return F.avg_pool2d(x[:, :2], 2)

    def decode(self, z):
        return F.interpolate(torch.cat([z, z[:, :1]], 1), scale_factor=2.0)


def test_mpgd_ldm_refuses_images_the_autoencoder_gives_back_smaller():
    den, ae = _latent_setup()
    with pytest.raises(ValueError, match="x is 9×9 but the autoencoder down-samples by 2"):
        mpgd_ldm(den, ae, None, None, loss=_colour, shape=(1, 3, 9, 9), steps=2)  # was an 8×8 result
    with pytest.raises(ValueError, match=r"come back from the autoencoder as \(3, 8, 8\)"):
        mpgd_ldm(DiffusersDenoiser(tiny_unet(2), SCHEDULER), _PoolAE(), None, None, loss=_colour,
                 shape=(1, 3, 9, 9), steps=2)


def test_mpgd_ldm_names_the_latent_models_multiple_in_image_pixels():
    den, ae = _latent_setup()
    with pytest.raises(ValueError, match="latents of 5×5.*multiples of 2: give images with sides multiples of 4"):
        mpgd_ldm(den, ae, None, None, loss=_colour, shape=(1, 3, 10, 10), steps=2)


def test_mpgd_ldm_checks_shape_latent_shape_and_y_against_each_other():
    den, ae = _latent_setup()
    with pytest.raises(ValueError, match=r"latent_shape=\(3, 2, 4, 4\) disagrees"):
        mpgd_ldm(den, ae, None, None, loss=_colour, shape=(2, 3, 8, 8), latent_shape=(3, 2, 4, 4), steps=2)
    op = Inpainting.box(8, box=4, margin=1)
    y = op.A(torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    with pytest.raises(ValueError, match=r"shape=\(5, 3, 8, 8\) disagrees with the measurement"):
        mpgd_ldm(den, ae, op, y, shape=(5, 3, 8, 8), steps=2)
    with pytest.raises(ValueError, match=r"shape must be \(B, C, H, W\), got \(3, 8, 8\)"):
        mpgd_ldm(den, ae, None, None, loss=_colour, shape=(3, 8, 8), steps=2)
    with pytest.raises(TypeError, match="latent_shape must be a tuple of ints"):
        mpgd_ldm(den, ae, None, None, loss=_colour, latent_shape="abc", steps=2)


# ----------------------------------------------------------------- latent folders


def test_latent_folder_whose_unet_does_not_take_the_vae_latents_is_refused(tmp_path):
    root = tmp_path / "ldm"
    tiny_kl().save_pretrained(root / "vae")  # 2 latent channels
    tiny_unet(3).save_pretrained(root / "unet")  # takes 3
    (root / "scheduler").mkdir()
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps({"_class_name": "DDIMScheduler",
                                                                          **SCHEDULER}))
    with pytest.raises(ValueError, match="UNet takes 3 input channels but the VAE's latents have 2"):
        load_latent_diffusion(root)


def test_mpgd_ldm_given_sigma_reports_the_data_consistency_and_warns_when_unfit():
    """σ is optional: given, return_info has "data_consistency" = final_residual/σ, and a result far outside y's noise
    warns (DataConsistencyWarning); the steps do not use σ (the same result with and without it)."""
    from diffsolve.solvers import DataConsistencyWarning

    den, ae = _latent_setup()
    op = Inpainting.random(16, missing=0.5, seed=0)
    y = op.A(torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    run = lambda **k: mpgd_ldm(den, ae, op, y, steps=3, generator=torch.Generator().manual_seed(1), **k)  # noqa: E731
    x, info = run(return_info=True)
    assert "data_consistency" not in info and info["final_residual"].shape == (2,)
    with pytest.warns(DataConsistencyWarning, match="mpgd_ldm: the result does not fit y"):
        x_s, info_s = run(return_info=True, sigma=1e-3)  # a random tiny VAE fits no y to 1e-3
    torch.testing.assert_close(x_s, x, rtol=0, atol=0)
    torch.testing.assert_close(info_s["data_consistency"], info_s["final_residual"] / 1e-3)
    with pytest.raises(ValueError, match="sigma is the noise std of the measurement y"):
        mpgd_ldm(den, ae, None, None, loss=_colour, shape=(1, 3, 16, 16), steps=2, sigma=0.05)
