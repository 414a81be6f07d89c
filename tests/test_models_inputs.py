"""Input checks of the models layer: each bad input is refused at once with a message naming the argument and
the fix, instead of a silent cast, a NaN result or a raw torch/diffusers error later."""

import json
import math

import numpy as np
import pytest
import torch
from _tiny_models import SCHEDULER, tiny_unet, tiny_unet_cond

from diffsolve.models import DiffusersDenoiser, EpsDenoiser, GaussianMixturePrior, GaussianPrior, PaddedDenoiser
from diffsolve.models.adm import load_adm
from diffsolve.models.latent_folder import load_latent_diffusion
from diffsolve.schedules import alphas_cumprod_from_config, final_alpha_cumprod_from_config
from diffsolve.solvers import ddim

D = torch.float64
DDPM = {"_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02,
        "beta_schedule": "linear", "clip_sample": True}


def _cond(**kwargs):
    """A tiny text-conditioned denoiser (cross_attention_dim 8) with states (1, 5, 8) unless overridden."""
    kwargs.setdefault("encoder_hidden_states", torch.zeros(1, 5, 8))
    return DiffusersDenoiser(tiny_unet_cond(), SCHEDULER, **kwargs)


# ----------------------------------------------------------------- 1. mixture weights

@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_mixture_weights_must_be_finite(bad):
    with pytest.raises(ValueError, match="weights must be finite"):
        GaussianMixturePrior(torch.zeros(2, 1, 2, dtype=D), 1.0, torch.tensor([bad, 1.0], dtype=D))


# ----------------------------------------------------------------- 2. guidance_scale

@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), np.float64("nan")])
def test_guidance_scale_must_be_finite(bad):
    with pytest.raises(ValueError, match="guidance_scale must be finite"):
        _cond(negative_encoder_hidden_states=torch.zeros(1, 5, 8), guidance_scale=bad)


@pytest.mark.parametrize("bad", [True, "7.5", np.bool_(True)])
def test_guidance_scale_must_be_a_real_number(bad):
    with pytest.raises(TypeError, match="guidance_scale must be a real number"):
        _cond(negative_encoder_hidden_states=torch.zeros(1, 5, 8), guidance_scale=bad)


@torch.no_grad()
def test_guidance_scale_takes_numpy_numbers():
    neg, x = torch.zeros(1, 5, 8), torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    ref = _cond(negative_encoder_hidden_states=neg, guidance_scale=7.5)
    for value in (np.float32(7.5), np.float64(7.5)):
        den = _cond(negative_encoder_hidden_states=neg, guidance_scale=value)
        assert type(den.guidance_scale) is float and den.guidance_scale == 7.5
        torch.testing.assert_close(den(x, 10), ref(x, 10), rtol=0, atol=0)


def test_load_latent_diffusion_checks_guidance_scale_first(tmp_path):
    root = _latent_folder(tmp_path)
    with pytest.raises(ValueError, match="guidance_scale must be finite"):
        load_latent_diffusion(root, prompt_embeds=torch.zeros(1, 5, 8), guidance_scale=float("nan"))


# ----------------------------------------------------------------- 3. encoder states

@pytest.mark.parametrize("states, error, match", [
    (torch.ones(1, 5, 8, dtype=torch.int64), TypeError, "encoder_hidden_states must be a floating.*int64"),
    (torch.ones(1, 5, 8, dtype=torch.bool), TypeError, "encoder_hidden_states must be a floating.*bool"),
    ([[0.0] * 8], TypeError, "encoder_hidden_states must be a floating .* torch.Tensor"),
    (torch.ones(5, 8), ValueError, r"no batch dimension; add it: encoder_hidden_states\[None\]"),
    (torch.ones(1, 1, 5, 8), ValueError, r"must have shape \(1\|B, L, D\)"),
    (torch.ones(1, 5, 7), ValueError, "width D = 7 but the UNet's cross_attention_dim is 8"),
    (torch.full((1, 5, 8), float("nan")), ValueError, "encoder_hidden_states must be finite"),
])
def test_encoder_states_are_checked_at_construction(states, error, match):
    with pytest.raises(error, match=match):
        _cond(encoder_hidden_states=states)


def test_negative_states_are_checked_against_the_positive_ones():
    with pytest.raises(ValueError, match="negative_encoder_hidden_states has width D = 7"):
        _cond(negative_encoder_hidden_states=torch.zeros(1, 5, 7), guidance_scale=3.0)
    with pytest.raises(ValueError, match="negative_encoder_hidden_states has L = 6 tokens but encoder_hidden_states "
                                         "has L = 5"):
        _cond(negative_encoder_hidden_states=torch.zeros(1, 6, 8), guidance_scale=3.0)
    with pytest.raises(ValueError, match="negative_encoder_hidden_states has batch 3 and encoder_hidden_states "
                                         "batch 2"):
        _cond(encoder_hidden_states=torch.zeros(2, 5, 8), negative_encoder_hidden_states=torch.zeros(3, 5, 8),
              guidance_scale=3.0)
    _cond(encoder_hidden_states=torch.zeros(2, 5, 8), negative_encoder_hidden_states=torch.zeros(1, 5, 8),
          guidance_scale=3.0)


def test_states_are_required_by_a_conditional_unet_and_refused_by_an_unconditional_one():
    with pytest.raises(ValueError, match="UNet2DConditionModel: pass encoder_hidden_states="):
        DiffusersDenoiser(tiny_unet_cond(), SCHEDULER)
    with pytest.raises(ValueError, match="unconditional UNet2DModel.*leave encoder_hidden_states"):
        DiffusersDenoiser(tiny_unet(), SCHEDULER, encoder_hidden_states=torch.zeros(1, 5, 8))


def _latent_folder(tmp_path):
    """A folder with only the configs load_latent_diffusion reads before any weights (cross_attention_dim 8)."""
    for part, cfg in (("unet", {"_class_name": "UNet2DConditionModel", "in_channels": 2, "cross_attention_dim": 8}),
                      ("vae", {"_class_name": "AutoencoderKL", "latent_channels": 2}),
                      ("scheduler", dict(SCHEDULER))):
        (tmp_path / part).mkdir()
        name = "scheduler_config.json" if part == "scheduler" else "config.json"
        (tmp_path / part / name).write_text(json.dumps(cfg))
    return tmp_path


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(negative_prompt_embeds=torch.zeros(1, 5, 7)), ValueError,
     "negative_prompt_embeds has width D = 7 but the UNet's cross_attention_dim is 8"),
    (dict(negative_prompt_embeds=torch.zeros(1, 6, 8)), ValueError,
     "negative_prompt_embeds has L = 6 tokens but prompt_embeds has L = 5"),
    (dict(negative_prompt_embeds=torch.zeros(1, 5, 8, dtype=torch.int64)), TypeError,
     "negative_prompt_embeds must be a floating"),
    (dict(negative_prompt_embeds=torch.zeros(5, 8)), ValueError, r"negative_prompt_embeds\[None\]"),
    (dict(negative_prompt_embeds=torch.full((1, 5, 8), float("inf"))), ValueError,
     "negative_prompt_embeds must be finite"),
])
def test_load_latent_diffusion_checks_negative_embeds_before_loading(tmp_path, kwargs, error, match):
    root = _latent_folder(tmp_path)  # no weights: the check must come first
    with pytest.raises(error, match=match):
        load_latent_diffusion(root, prompt_embeds=torch.zeros(1, 5, 8), guidance_scale=3.0, **kwargs)


# ----------------------------------------------------------------- 4. x's dtype

def test_denoiser_refuses_non_floating_x():
    den = DiffusersDenoiser(tiny_unet(), DDPM)
    for x in (torch.zeros(1, 3, 8, 8, dtype=torch.int64), torch.zeros(1, 3, 8, 8, dtype=torch.bool)):
        with pytest.raises(TypeError, match="x must be a floating tensor.*x.float()"):
            den(x, 10)
        with pytest.raises(TypeError, match="x must be a floating tensor"):
            den.x0_and_eps(x, 10)


@torch.no_grad()
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("prediction_type", ["epsilon", "sample"])
def test_half_precision_x_gives_a_finite_eps_at_small_t(dtype, prediction_type):
    """float16 rounds ᾱ_0, ᾱ_1 to 1: the ᾱ arithmetic must run in float32, ε̂ cast at the end."""
    den = DiffusersDenoiser(tiny_unet(), DDPM, prediction_type=prediction_type)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)).to(dtype)
    for t in (0, 1, 2):
        eps, ref = den(x, t), den(x.float(), t)
        assert eps.dtype == dtype and bool(torch.isfinite(eps).all())
        torch.testing.assert_close(eps, ref.to(dtype), rtol=0, atol=0)
        x0, eps2 = den.x0_and_eps(x, t)
        assert x0.dtype == eps2.dtype == dtype and bool(torch.isfinite(x0).all() & torch.isfinite(eps2).all())


# ----------------------------------------------------------------- 5. loaders: torch_dtype, device

def test_from_pretrained_refuses_a_dtype_string(tmp_path):
    with pytest.raises(TypeError, match="torch_dtype must be a floating torch.dtype, got the string 'float16'; "
                                        "pass torch_dtype=torch.float16"):
        DiffusersDenoiser.from_pretrained(tmp_path, torch_dtype="float16")
    with pytest.raises(TypeError, match="torch_dtype must be a floating torch.dtype"):
        DiffusersDenoiser.from_pretrained(tmp_path, torch_dtype=torch.int64)


def test_load_latent_diffusion_checks_dtype_and_device_first(tmp_path):
    root = _latent_folder(tmp_path)  # no weights: the checks must come first
    with pytest.raises(TypeError, match="pass torch_dtype=torch.float16"):
        load_latent_diffusion(root, prompt_embeds=torch.zeros(1, 5, 8), torch_dtype="float16")
    with pytest.raises(ValueError, match="device must be a torch device.*'banana'"):
        load_latent_diffusion(root, prompt_embeds=torch.zeros(1, 5, 8), device="banana")


def test_load_adm_checks_device_before_reading(tmp_path):
    with pytest.raises(ValueError, match="device must be a torch device.*'banana'"):
        load_adm(tmp_path / "never-read.pt", device="banana")
    with pytest.raises(TypeError, match="torch_dtype=torch.float16"):
        load_adm(tmp_path / "never-read.pt", torch_dtype="float16")


# ----------------------------------------------------------------- 6. PaddedDenoiser's module methods

def test_padded_module_methods_return_the_wrapper():
    inner = DiffusersDenoiser(tiny_unet(), SCHEDULER)
    padded = PaddedDenoiser(inner)
    for call in (lambda p: p.to("cpu"), lambda p: p.to(torch.float32), lambda p: p.eval(), lambda p: p.train(False),
                 lambda p: p.float(), lambda p: p.cpu()):
        assert call(padded) is padded
    assert padded.double() is padded and next(inner.parameters()).dtype == torch.float64
    assert padded.train() is padded and inner.training
    assert padded.eval() is padded and not inner.training
    with torch.no_grad():  # a non-multiple size still works through the returned object
        out = padded.to("cpu")(torch.zeros(1, 3, 7, 10, dtype=D), 5)
    assert out.shape == (1, 3, 7, 10)
    with pytest.raises(AttributeError, match=r"has no \.to\(\)"):
        PaddedDenoiser(EpsDenoiser(lambda x, t: x)).to("cpu")


# ----------------------------------------------------------------- 7. scheduler-config types

@pytest.mark.parametrize("cfg, key", [
    ({"num_train_timesteps": 999.7}, "num_train_timesteps"),
    ({"num_train_timesteps": "1000"}, "num_train_timesteps"),
    ({"num_train_timesteps": True}, "num_train_timesteps"),
    ({"beta_start": "0.0001"}, "beta_start"),
    ({"beta_end": True}, "beta_end"),
    ({"beta_end": float("nan")}, "beta_end"),
    ({"rescale_betas_zero_snr": "false"}, "rescale_betas_zero_snr"),
    ({"rescale_betas_zero_snr": 0}, "rescale_betas_zero_snr"),
])
def test_scheduler_config_values_are_not_coerced(cfg, key):
    with pytest.raises(ValueError, match=f"scheduler config's {key} must be"):
        alphas_cumprod_from_config(cfg)


def test_set_alpha_to_one_must_be_a_bool():
    with pytest.raises(ValueError, match="scheduler config's set_alpha_to_one must be true or false"):
        final_alpha_cumprod_from_config({"set_alpha_to_one": "no"})
    assert final_alpha_cumprod_from_config({"set_alpha_to_one": np.bool_(True)}) == 1.0
    table = alphas_cumprod_from_config({"num_train_timesteps": np.int64(10), "beta_start": np.float32(0.001)})
    assert table.shape == (10,)


# ----------------------------------------------------------------- 8. ᾱ_t = 1 in the training table

def test_a_table_with_alpha_bar_one_is_refused():
    with pytest.raises(ValueError, match="ε is undefined at zero noise"):
        DiffusersDenoiser(tiny_unet(), dict(DDPM, beta_start=0.0))
    with pytest.raises(ValueError, match=r"alphas_cumprod is 1 at t = \[0, 1\].*undefined at zero noise"):
        EpsDenoiser(lambda x, t: x, torch.tensor([1.0, 1.0, 0.5], dtype=D))
    with pytest.raises(ValueError, match="undefined at zero noise"):
        GaussianPrior(torch.zeros(1, 2, dtype=D), 1.0, alphas_cumprod=torch.tensor([1.0, 0.5], dtype=D))


# ----------------------------------------------------------------- 9. the loop's check of ε̂

@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex128])
def test_loop_refuses_a_non_real_floating_eps(dtype):
    den = EpsDenoiser(lambda x, t: torch.zeros(x.shape, dtype=dtype))
    with pytest.raises(TypeError, match=f"denoiser's output ε̂ has dtype {dtype}"):
        ddim(den, (1, 2, 3), steps=2)


def test_loop_says_a_tensor_was_expected():
    den = EpsDenoiser(lambda x, t: np.zeros(tuple(x.shape)))
    with pytest.raises(TypeError, match=r"denoiser returned a ndarray, expected a torch.Tensor ε̂ of shape "
                                        r"\(1, 2, 3\)"):
        ddim(den, (1, 2, 3), steps=2)


# ----------------------------------------------------------------- 10. NumPy scalars

@torch.no_grad()
def test_numpy_scalars_are_taken_as_python_numbers():
    x = torch.randn(2, 3, 8, 8, dtype=D, generator=torch.Generator().manual_seed(0))
    den = DiffusersDenoiser(tiny_unet().to(D), SCHEDULER)
    torch.testing.assert_close(den(x, np.int64(5)), den(x, 5), rtol=0, atol=0)
    prior = GaussianPrior(torch.zeros(1, 2, 2, dtype=D), np.float32(0.5))
    assert float(prior.cov[0, 0]) == 0.5
    xp = torch.randn(2, 1, 2, 2, dtype=D, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(prior(xp, np.int64(5)), prior(xp, 5), rtol=0, atol=0)
    torch.testing.assert_close(prior.eps(xp, np.float32(0.5)), prior.eps(xp, 0.5), rtol=0, atol=0)
    assert prior.sample(np.int64(4)).shape == (4, 1, 2, 2)
    assert prior.sample(2, alpha_bar=np.float64(0.5)).shape == (2, 1, 2, 2)
    assert PaddedDenoiser(den, multiple=np.int64(8)).multiple == 8
    with pytest.raises(TypeError, match="multiple must be an int"):
        PaddedDenoiser(den, multiple=True)
    with pytest.raises(TypeError, match="multiple must be an int"):
        PaddedDenoiser(den, multiple=8.0)
    with pytest.raises(TypeError, match="t must be an int"):
        den(x, np.float64(5.0))


# ----------------------------------------------------------------- 11. priors: smaller gaps

def test_prior_inputs_are_checked():
    prior = GaussianPrior(torch.zeros(2, 2, dtype=D), 1.0)
    a_mat = torch.randn(3, 4, dtype=D, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="y must be finite"):
        prior.posterior(a_mat, torch.full((3,), float("nan"), dtype=D), sigma=0.1)
    with pytest.raises(ValueError, match="A must be finite"):
        prior.posterior(torch.full((3, 4), float("nan"), dtype=D), torch.zeros(3, dtype=D), sigma=0.1)
    with pytest.raises(TypeError, match="y must be a floating tensor.*int64"):
        prior.posterior(a_mat, torch.tensor([1, 2, 3]), sigma=0.1)
    with pytest.raises(TypeError, match="num must be a positive int, got bool"):
        prior.sample(True)
    with pytest.raises(ValueError, match="num must be a positive int"):
        prior.sample(0)
    with pytest.raises(TypeError, match="alpha_bar must be a number in"):
        prior.sample(4, alpha_bar="0.5")
    x = torch.zeros(3, 2, 2, dtype=D)
    with pytest.raises(TypeError, match="alpha_bar must be a number in"):
        prior.eps(x, True)
    with pytest.raises(TypeError, match="alpha_bar must be a number in"):
        prior.eps(x, "0.5")
    with pytest.raises(ValueError, match=r"alpha_bar must be a number or hold 1 or B = 3 values.*\(2,\)"):
        prior.eps(x, torch.tensor([0.5, 0.5], dtype=D))
    with pytest.raises(ValueError, match="final_alpha_cumprod"):
        GaussianPrior(torch.zeros(2, 2, dtype=D), 1.0, final_alpha_cumprod=True)
    with pytest.raises(ValueError, match="^var must be positive semi-definite"):
        GaussianPrior(torch.zeros(2, 2, dtype=D), torch.diag(torch.tensor([1.0, -1.0, 1.0, 1.0], dtype=D)))
    with pytest.raises(TypeError, match="var must be a floating torch.Tensor or a number, got a torch.int64 "
                                        "tensor"):
        GaussianPrior(torch.zeros(2, 2, dtype=D), torch.ones(2, 2, dtype=torch.int64))
    assert math.isfinite(float(prior.log_prob(torch.zeros(1, 2, 2, dtype=D))))


def test_autoencoder_quantize_must_be_a_bool():
    """quantize="no" was read as True (bool of a non-empty string)."""
    from _tiny_models import tiny_kl

    from diffsolve.models import Autoencoder

    with pytest.raises(TypeError, match="quantize must be True or False, got str 'no'"):
        Autoencoder(tiny_kl(), quantize="no")
    assert Autoencoder(tiny_kl(), quantize=False).quantize is False
