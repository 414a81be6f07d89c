"""Diffusers interop gaps found by an audit: DDPMScheduler's ``sigmoid`` / ``laplace`` tables, zero-terminal-SNR
configs, class-conditional UNets (``class_labels``), weight variants and folders without a scheduler config."""

import warnings

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

import diffsolve
from diffsolve.models import DiffusersDenoiser
from diffsolve.operators import GaussianNoise, Inpainting
from diffsolve.schedules import alphas_cumprod_from_config, make_alphas_cumprod, validate_alphas_cumprod
from diffsolve.solvers import ddim

D = torch.float64
SHAPE = (2, 1, 8, 8)


def _unet(dtype=D, **kwargs):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 8), layers_per_block=1,
                           norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                           up_block_types=("UpBlock2D", "UpBlock2D"), **kwargs).to(dtype).eval()


@torch.no_grad()
def _diffusers_loop(unet, sched, steps, eta, seed, **unet_kwargs):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(SHAPE, generator=gen, dtype=D)
    sched.set_timesteps(steps)
    for t in sched.timesteps:
        x = sched.step(unet(x, t, **unet_kwargs).sample, t, x, eta=eta, generator=gen).prev_sample
    return x


@pytest.mark.parametrize("schedule", ["laplace", "sigmoid"])
@pytest.mark.parametrize("total", [50, 1000])
def test_ddpm_scheduler_laplace_and_sigmoid_tables(schedule, total):
    sched = DDPMScheduler(beta_schedule=schedule, num_train_timesteps=total)
    torch.testing.assert_close(alphas_cumprod_from_config(sched), sched.alphas_cumprod.double(), rtol=0, atol=0)


def test_zero_snr_table_is_refused_with_its_cause():
    table = make_alphas_cumprod(rescale_betas_zero_snr=True)
    assert float(table[-1]) == 0.0
    with pytest.raises(ValueError, match="zero-terminal-SNR.*rescale_betas_zero_snr.*2\\*\\*-24"):
        validate_alphas_cumprod(table)


def test_zero_snr_epsilon_model_is_refused_at_construction():
    with pytest.raises(ValueError, match="prediction_type='epsilon'.*rescale_betas_zero_snr"):
        DiffusersDenoiser(_unet(), DDIMScheduler(rescale_betas_zero_snr=True))


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_zero_snr_runs_and_stays_near_ddim_scheduler(prediction_type):
    sched = DDIMScheduler(rescale_betas_zero_snr=True, prediction_type=prediction_type, timestep_spacing="trailing",
                          clip_sample=False)
    unet = _unet()
    den = DiffusersDenoiser(unet, sched)
    a = den.alphas_cumprod
    assert 0 < float(a[-1]) <= 2.0**-24 and bool((a[1:] < a[:-1]).all())
    for eta in (0.0, 1.0):
        ours = ddim(den, SHAPE, steps=5, eta=eta, dtype=D, step_rule="diffusers",
                    generator=torch.Generator().manual_seed(5))
        expected = _diffusers_loop(unet, sched, 5, eta, seed=5)  # diffusers keeps ᾱ_{T−1} = 0 exactly
        assert bool(expected.isfinite().all())
        assert float((ours - expected).abs().max()) < 1e-3
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=D) * 2 - 1
    op = Inpainting.random(8, missing=0.5, seed=0)
    y = GaussianNoise(0.05)(op.A(x), generator=torch.Generator().manual_seed(1))
    for method in ("mpgd", "cdps", "ge"):
        out = diffsolve.solve(method, den, op, y, steps=4, sigma=0.05, generator=torch.Generator().manual_seed(2)) \
            if method == "cdps" else diffsolve.solve(method, den, op, y, steps=4,
                                                      generator=torch.Generator().manual_seed(2))
        assert bool(out.isfinite().all()), method


def test_class_conditional_unet_takes_class_labels():
    unet = _unet(num_class_embeds=5)
    sched = DDIMScheduler(clip_sample=False, set_alpha_to_one=False, timestep_spacing="trailing")
    with pytest.raises(ValueError, match="class-conditional \\(num_class_embeds=5\\).*class_labels="):
        DiffusersDenoiser(unet, sched)
    with pytest.raises(ValueError, match="class_labels must lie in \\[0, 4\\]"):
        DiffusersDenoiser(unet, sched, class_labels=torch.tensor([7]))
    with pytest.raises(ValueError, match="not class-conditional"):
        DiffusersDenoiser(_unet(), sched, class_labels=torch.tensor([1]))
    for labels in (torch.tensor([3]), torch.tensor([1, 4])):
        den = DiffusersDenoiser(unet, sched, class_labels=labels)
        ours = ddim(den, SHAPE, steps=4, eta=1.0, dtype=D, step_rule="diffusers",
                    generator=torch.Generator().manual_seed(3))
        expected = _diffusers_loop(unet, sched, 4, 1.0, seed=3, class_labels=labels.expand(SHAPE[0]))
        assert float((ours - expected).abs().max() / expected.abs().max()) < 1e-5


def test_from_pretrained_weight_variants(tmp_path):
    unet = _unet(torch.float32)
    sched = DDIMScheduler(clip_sample=False)
    unet.save_pretrained(tmp_path / "one" / "unet", variant="fp16")
    sched.save_pretrained(tmp_path / "one" / "scheduler")
    x = torch.randn(SHAPE)
    expected = DiffusersDenoiser(unet, sched)(x, 500)
    for variant in (None, "fp16"):  # the folder's only variant is taken without asking
        den = DiffusersDenoiser.from_pretrained(tmp_path / "one", variant=variant)
        torch.testing.assert_close(den(x, 500), expected)
    unet.save_pretrained(tmp_path / "one" / "unet", variant="ema")
    with pytest.raises(FileNotFoundError, match="variants \\['ema', 'fp16'\\]; pass variant="):
        DiffusersDenoiser.from_pretrained(tmp_path / "one")
    with pytest.raises(FileNotFoundError, match="no variant='bf16' weights"):
        DiffusersDenoiser.from_pretrained(tmp_path / "one", variant="bf16")
    torch.testing.assert_close(DiffusersDenoiser.from_pretrained(tmp_path / "one", variant="ema")(x, 500), expected)


def test_from_pretrained_folder_without_scheduler(tmp_path):
    unet = _unet(torch.float32)
    unet.save_pretrained(tmp_path / "bare")
    with pytest.raises(ValueError, match="no scheduler_config.json .*pass scheduler_or_config="):
        DiffusersDenoiser.from_pretrained(tmp_path / "bare")
    den = DiffusersDenoiser.from_pretrained(tmp_path / "bare", scheduler_or_config=DDPMScheduler(
        prediction_type="v_prediction"))
    assert den.prediction_type == "v_prediction" and den.scheduler_class == "DDPMScheduler"
    x = torch.randn(SHAPE)
    torch.testing.assert_close(den(x, 300), DiffusersDenoiser(unet, DDPMScheduler(prediction_type="v_prediction"))(
        x, 300))


@pytest.mark.parametrize("device", ["banana", "mps"] + ([] if torch.cuda.is_available() else ["cuda"]))
def test_from_pretrained_checks_the_device_first(tmp_path, device):
    _unet(torch.float32).save_pretrained(tmp_path / "m")
    DDIMScheduler().save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match=f"device={device!r}|got {device!r}"):
        DiffusersDenoiser.from_pretrained(tmp_path / "m", device=device)


def test_unet_with_added_cond_kwargs_is_refused_at_construction():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=2, out_channels=2, block_out_channels=(8, 8),
                                layers_per_block=1, norm_num_groups=4, cross_attention_dim=8, attention_head_dim=2,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), addition_embed_type="text_time",
                                addition_time_embed_dim=4, projection_class_embeddings_input_dim=8 + 6 * 4).eval()
    with pytest.raises(ValueError, match="addition_embed_type='text_time'.*added_cond_kwargs"):
        DiffusersDenoiser(unet, DDIMScheduler(), encoder_hidden_states=torch.randn(1, 3, 8))


def test_leading_spacing_adds_the_configs_steps_offset_as_diffusers_does():
    """Stable Diffusion configs set steps_offset = 1 with leading spacing: diffusers then lists 801, 601, …"""
    unet = _unet()
    sched = DDIMScheduler(timestep_spacing="leading", steps_offset=1, clip_sample=False, set_alpha_to_one=False)
    sched.alphas_cumprod = sched.alphas_cumprod.double()  # diffusers' scalar arithmetic in float64 too
    sched.final_alpha_cumprod = sched.final_alpha_cumprod.double()
    expected = _diffusers_loop(unet, sched, 5, 0.0, 0)
    x, info = ddim(DiffusersDenoiser(unet, sched), SHAPE, steps=5, spacing="leading", dtype=D, step_rule="diffusers",
                   generator=torch.Generator().manual_seed(0), return_info=True)
    assert info["timesteps"].tolist() == sched.timesteps.tolist() == [801, 601, 401, 201, 1]
    torch.testing.assert_close(x, expected, rtol=1e-12, atol=1e-12)
    trailing = ddim(DiffusersDenoiser(unet, sched), SHAPE, steps=5, dtype=D, return_info=True)[1]["timesteps"]
    assert trailing.tolist() == [999, 799, 599, 399, 199]  # diffusers adds no offset to trailing spacing


def test_leading_spacing_past_t_with_the_configs_offset_names_the_fix():
    sched = DDIMScheduler(timestep_spacing="leading", steps_offset=1)
    denoiser = DiffusersDenoiser(_unet(), sched)
    with pytest.raises(ValueError, match=r"steps_offset=1 .*e\.g\. steps=999, or spacing='trailing'"):
        ddim(denoiser, SHAPE, steps=1000, spacing="leading", dtype=D)


@pytest.mark.parametrize("spacing", [None, "trailing", "leading"])
def test_ge_scheduler_takes_a_zero_snr_config_as_solve_does(spacing):
    """GEScheduler kept ᾱ_{T−1} = 0: loglinear refused the config with advice a scheduler user cannot follow, and
    trailing failed inside the loop's first step. It now patches the table as DiffusersDenoiser does."""
    from diffsolve.solvers import GEScheduler

    base = DDIMScheduler(rescale_betas_zero_snr=True, prediction_type="v_prediction", clip_sample=False)
    unet = _unet()
    den = DiffusersDenoiser(unet, base.config)
    sched = GEScheduler.from_config(base.config, **({} if spacing is None else {"timestep_spacing": spacing}))
    torch.testing.assert_close(sched.alphas_cumprod, den.alphas_cumprod.double())
    sched.set_timesteps(6)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0), dtype=D)
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(unet(x, t).sample, t, x).prev_sample
    ref = diffsolve.solve("ge", den, None, None, shape=SHAPE, steps=6, spacing=spacing, dtype=D,
                          generator=torch.Generator().manual_seed(0))
    assert bool(torch.isfinite(x).all())
    torch.testing.assert_close(x, ref)
    with pytest.raises(ValueError, match="prediction_type='epsilon'.*rescale_betas_zero_snr"):
        GEScheduler.from_config(DDIMScheduler(rescale_betas_zero_snr=True).config)
