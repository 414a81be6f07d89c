"""Diffusers adapters: ε conversion per prediction_type (checked through DDIMScheduler), CFG,
local from_pretrained, and the autoencoder wrappers."""

import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel, UNet2DModel, VQModel

from diffsolve.kernels import ddim_step
from diffsolve.models import Autoencoder, DiffusersDenoiser
from diffsolve.solvers import ddim

D = torch.float64


def _unet(out_channels=1, seed=0):
    torch.manual_seed(seed)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=out_channels, block_out_channels=(8, 16),
                       layers_per_block=1, norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D")).to(D).eval()


def _cond_unet(seed=0):
    torch.manual_seed(seed)
    return UNet2DConditionModel(sample_size=8, in_channels=2, out_channels=2, block_out_channels=(8, 16),
                                layers_per_block=1, norm_num_groups=4, cross_attention_dim=12, attention_head_dim=4,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")).to(D).eval()


def _inputs(shape=(2, 1, 8, 8), seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=D), torch.tensor([700, 120])


@torch.no_grad()
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_prediction_types_give_diffusers_ddim_step(prediction_type):
    """Our ε through ddim_step equals DDIMScheduler.step on the raw output (which converts itself)."""
    unet = _unet()
    sched = DDIMScheduler(prediction_type=prediction_type, clip_sample=False, timestep_spacing="trailing",
                          set_alpha_to_one=False)
    sched.set_timesteps(10)
    den = DiffusersDenoiser(unet, sched)
    assert den.prediction_type == prediction_type
    x, _ = _inputs()
    t = int(sched.timesteps[3])
    raw = unet(x, t).sample
    expected = sched.step(raw, t, x, eta=0.0).prev_sample
    eps = den(x, torch.tensor([t, t]))
    a_t, a_s = float(sched.alphas_cumprod[t]), float(sched.alphas_cumprod[t - 100])
    # diffusers forms its coefficients from float32 ᾱ (√ᾱ, √(1−ᾱ) rounded to float32): ~1e-7 relative
    torch.testing.assert_close(ddim_step(x, eps, a_t, a_s, backend="torch"), expected, rtol=1e-5, atol=1e-7)
    if prediction_type == "epsilon":
        torch.testing.assert_close(eps, raw, rtol=0, atol=0)


@torch.no_grad()
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("clip", [dict(clip_sample=True, clip_sample_range=0.3),
                                  dict(thresholding=True, dynamic_thresholding_ratio=0.7, sample_max_value=1.2)])
def test_clip_and_thresholding_are_honoured(prediction_type, clip):
    """The config's x̂0 processing reaches ε̂: through ddim_step it equals DDIMScheduler.step with
    use_clipped_model_output=True (and the processed x̂0), for every prediction type."""
    unet = _unet()
    sched = DDIMScheduler(prediction_type=prediction_type, timestep_spacing="trailing", **clip)
    sched.set_timesteps(10)
    den = DiffusersDenoiser(unet, sched)
    assert den.x0_clip.active
    x, _ = _inputs()
    x = 3 * x  # large x̂0, so the clip acts
    t = int(sched.timesteps[2])
    raw = unet(x, t).sample
    want = sched.step(raw, t, x, eta=0.0, use_clipped_model_output=True)
    eps = den(x, torch.tensor([t, t]))
    a_t, a_s = float(sched.alphas_cumprod[t]), float(sched.alphas_cumprod[t - 100])
    x_s, x0 = ddim_step(x, eps, a_t, a_s, return_x0=True, backend="torch")
    torch.testing.assert_close(x0, want.pred_original_sample, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x_s, want.prev_sample, rtol=1e-5, atol=1e-6)
    unclipped = DiffusersDenoiser(unet, sched, clip_sample=False, thresholding=False)
    assert not unclipped.x0_clip.active and not torch.allclose(unclipped(x, torch.tensor([t, t])), eps)


@torch.no_grad()
def test_learned_variance_keeps_the_mean_half():
    unet = _unet(out_channels=2)
    den = DiffusersDenoiser(unet, DDIMScheduler(clip_sample=False))
    x, t = _inputs()
    torch.testing.assert_close(den(x, t), unet(x, t).sample[:, :1], rtol=0, atol=0)


@torch.no_grad()
def test_conditional_unet_with_classifier_free_guidance():
    unet = _cond_unet()
    g = torch.Generator().manual_seed(2)
    cond, uncond = torch.randn(1, 5, 12, generator=g, dtype=D), torch.randn(1, 5, 12, generator=g, dtype=D)
    x, t = _inputs((2, 2, 8, 8))
    eps_c = unet(x, t, encoder_hidden_states=cond.expand(2, 5, 12)).sample
    eps_u = unet(x, t, encoder_hidden_states=uncond.expand(2, 5, 12)).sample
    sched = DDIMScheduler(clip_sample=False)
    plain = DiffusersDenoiser(unet, sched, encoder_hidden_states=cond)
    torch.testing.assert_close(plain(x, t), eps_c, rtol=1e-10, atol=1e-12)
    cfg = DiffusersDenoiser(unet, sched, encoder_hidden_states=cond,
                            negative_encoder_hidden_states=uncond, guidance_scale=7.5)
    torch.testing.assert_close(cfg(x, t), eps_u + 7.5 * (eps_c - eps_u), rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(cfg(x[:1], torch.tensor(700)), cfg(x[:1], 700), rtol=0, atol=0)
    with pytest.raises(ValueError, match="negative_encoder_hidden_states"):
        DiffusersDenoiser(unet, DDIMScheduler(), encoder_hidden_states=cond, guidance_scale=3.0)
    # diffusers' pipelines guide only for w > 1: w ≤ 1 (SD-Turbo's 0.0) is the conditional branch, not a mix
    for w in (0.0, 0.5, 1.0):
        off = DiffusersDenoiser(unet, sched, encoder_hidden_states=cond, negative_encoder_hidden_states=uncond,
                                guidance_scale=w)
        torch.testing.assert_close(off(x, t), eps_c, rtol=1e-10, atol=1e-12)


@torch.no_grad()
@pytest.mark.parametrize("layout", ["pipeline", "model"])
def test_from_pretrained_local_folder(tmp_path, layout):
    unet = _unet()
    sched = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                          prediction_type="v_prediction", set_alpha_to_one=False)
    if layout == "pipeline":
        unet.save_pretrained(tmp_path / "unet")
        sched.save_pretrained(tmp_path / "scheduler")
    else:
        unet.save_pretrained(tmp_path)
        sched.save_config(tmp_path)
    den = DiffusersDenoiser.from_pretrained(tmp_path, torch_dtype=D)
    ref = DiffusersDenoiser(unet, sched)
    x, t = _inputs()
    torch.testing.assert_close(den(x, t), ref(x, t), rtol=0, atol=0)
    assert torch.equal(den.alphas_cumprod, sched.alphas_cumprod.double())
    assert den.final_alpha_cumprod == pytest.approx(float(sched.alphas_cumprod[0]))
    assert den.prediction_type == "v_prediction"


def test_from_pretrained_rejects_missing_folders(tmp_path):
    _cond_unet().save_pretrained(tmp_path / "sd" / "unet")
    DDIMScheduler().save_pretrained(tmp_path / "sd" / "scheduler")
    with pytest.raises(ValueError, match="encoder_hidden_states=.*load_latent_diffusion"):
        DiffusersDenoiser.from_pretrained(tmp_path / "sd")
    with pytest.raises(ValueError, match="not a directory"):
        DiffusersDenoiser.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="holds neither"):
        DiffusersDenoiser.from_pretrained(tmp_path)


def test_denoiser_rejects_bad_arguments():
    with pytest.raises(TypeError, match="unet"):
        DiffusersDenoiser(lambda x, t: x, DDIMScheduler())
    with pytest.raises(TypeError, match="scheduler_or_config"):
        DiffusersDenoiser(_unet(), 5)
    with pytest.raises(ValueError, match="prediction_type"):
        DiffusersDenoiser(_unet(), {"prediction_type": "score"})


def test_shape_mismatch_with_the_model():
    den = DiffusersDenoiser(_unet(), DDIMScheduler())
    with pytest.raises(ValueError, match=r"per-sample shape must be \(1, \*, \*\)"):
        ddim(den, (1, 3, 8, 8), steps=2)
    with pytest.raises(ValueError, match="multiples of 2"):
        ddim(den, (1, 1, 7, 8), steps=2)
    # called directly, the adapter names the same faults (not the UNet's raw convolution error)
    t = torch.tensor([3])
    with pytest.raises(ValueError, match=r"x=\(1, 3, 8, 8\) does not fit the model: per-sample shape must be \(1, \*"):
        den(torch.randn(1, 3, 8, 8), t)
    with pytest.raises(ValueError, match="multiples of 2"):
        den.x0_and_eps(torch.randn(1, 1, 7, 8), t)
    with pytest.raises(ValueError, match=r"x must be \(B, C, H, W\), got shape \(1, 8, 8\)"):
        den(torch.randn(1, 8, 8), t)


def _vae_kwargs():
    return dict(in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), block_out_channels=(8, 8),
                latent_channels=2, norm_num_groups=4, layers_per_block=1, sample_size=8)


@torch.no_grad()
def test_autoencoder_kl_scaling():
    torch.manual_seed(3)
    vae = AutoencoderKL(**_vae_kwargs(), scaling_factor=0.5, shift_factor=0.1).to(D).eval()
    ae = Autoencoder(vae)
    assert ae.scaling_factor == 0.5 and ae.shift_factor == 0.1 and not ae.is_vq
    x, _ = _inputs()
    z = ae.encode(x)
    torch.testing.assert_close(z, (vae.encode(x).latent_dist.mode() - 0.1) * 0.5, rtol=0, atol=0)
    assert z.shape == (2, 2, 4, 4)
    torch.testing.assert_close(ae.decode(z), vae.decode(z / 0.5 + 0.1).sample, rtol=0, atol=0)
    s1 = ae.encode(x, sample=True, generator=torch.Generator().manual_seed(0))
    s2 = ae.encode(x, sample=True, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(s1, s2, rtol=0, atol=0)
    assert not torch.equal(s1, z)
    torch.testing.assert_close(ae(x), ae.decode(z), rtol=0, atol=0)
    # an SDXL-family VAE's per-channel latents_mean/std (which diffusers' pipelines apply) is refused, not ignored
    norm = AutoencoderKL(**_vae_kwargs(), latents_mean=[0.1, 0.2], latents_std=[1.0, 2.0]).to(D).eval()
    with pytest.raises(ValueError, match="latents_mean/latents_std"):
        Autoencoder(norm)


def test_autoencoder_vq_and_gradients():
    torch.manual_seed(4)
    vq = VQModel(**_vae_kwargs(), num_vq_embeddings=16, vq_embed_dim=2).to(D).eval()
    ae = Autoencoder(vq)
    assert ae.is_vq and ae.scaling_factor == pytest.approx(0.18215)
    x, _ = _inputs()
    with torch.no_grad():
        z = ae.encode(x)
        torch.testing.assert_close(z, vq.encode(x).latents * 0.18215, rtol=0, atol=0)
        torch.testing.assert_close(ae.decode(z), vq.decode(z / 0.18215).sample, rtol=0, atol=0)
        raw = Autoencoder(vq, quantize=False).decode(z)
        torch.testing.assert_close(raw, vq.decode(z / 0.18215, force_not_quantize=True).sample, rtol=0, atol=0)
    zg = z.clone().requires_grad_()
    Autoencoder(vq, quantize=False).decode(zg).square().sum().backward()
    assert zg.grad is not None and bool(zg.grad.abs().sum() > 0)
    with pytest.raises(ValueError, match="KL autoencoder"):
        ae.encode(x, sample=True)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        ae.encode(x[0])
    with pytest.raises(TypeError, match="AutoencoderKL or VQModel"):
        Autoencoder(torch.nn.Linear(2, 2))


def _saved(tmp_path, layout="pipeline"):
    """A tiny UNet2DModel + DDIM scheduler saved with save_pretrained; returns (root, unet folder, scheduler file)."""
    root = tmp_path / f"model-{layout}"
    if layout == "pipeline":
        _unet().save_pretrained(root / "unet")
        DDIMScheduler().save_pretrained(root / "scheduler")
        return root, root / "unet", root / "scheduler" / "scheduler_config.json"
    _unet().save_pretrained(root)
    DDIMScheduler().save_config(root)
    return root, root, root / "scheduler_config.json"


def _one_line(err):
    msg = str(err.value)
    assert "\n" not in msg and err.value.__cause__ is None
    return msg


@pytest.mark.parametrize("layout", ["pipeline", "model"])
@pytest.mark.parametrize("which", ["config", "scheduler"])
@pytest.mark.parametrize("text", ['{"_class_name": "UNet2DModel", ', "", "[1, 2]"])
def test_from_pretrained_corrupt_config_names_the_file(tmp_path, layout, which, text):
    root, unet_dir, sched_file = _saved(tmp_path, layout)
    bad = unet_dir / "config.json" if which == "config" else sched_file
    bad.write_text(text)
    with pytest.raises(ValueError, match="re-save the model with save_pretrained") as err:
        DiffusersDenoiser.from_pretrained(root)
    msg = _one_line(err)
    assert msg.startswith(str(bad)) and ("not valid JSON" in msg or "must hold a JSON object" in msg)


def test_from_pretrained_binary_config_names_the_file(tmp_path):
    root, unet_dir, _ = _saved(tmp_path)
    (unet_dir / "config.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="config.json is not") as err:
        DiffusersDenoiser.from_pretrained(root)
    _one_line(err)


@pytest.mark.parametrize("layout", ["pipeline", "model"])
def test_from_pretrained_without_weights_is_file_not_found(tmp_path, layout):
    root, unet_dir, _ = _saved(tmp_path, layout)
    (unet_dir / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="has a config.json but no weights.*diffusion_pytorch_model"
                                                ".safetensors") as err:
        DiffusersDenoiser.from_pretrained(root)
    assert _one_line(err).startswith(str(unet_dir))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "bin"])
def test_from_pretrained_corrupt_weights_names_the_file(tmp_path, damage):
    root, unet_dir, _ = _saved(tmp_path)
    weights = unet_dir / "diffusion_pytorch_model.safetensors"
    data = weights.read_bytes()
    if damage == "garbage":
        weights.write_bytes(b"not a safetensors file" * 8)
    elif damage == "truncated":
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        weights.write_bytes(b"")
    else:
        weights.unlink()
        weights = unet_dir / "diffusion_pytorch_model.bin"
        weights.write_bytes(b"junk")
    with pytest.raises(ValueError, match="corrupt or truncated") as err:
        DiffusersDenoiser.from_pretrained(root)
    assert _one_line(err).startswith(str(weights))


def test_from_pretrained_weights_that_do_not_fit_the_config(tmp_path):
    import json

    root, unet_dir, _ = _saved(tmp_path)
    cfg = json.loads((unet_dir / "config.json").read_text())
    cfg["block_out_channels"] = [8, 32]
    (unet_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="does not match .*config.json .*size mismatch") as err:
        DiffusersDenoiser.from_pretrained(root)
    _one_line(err)
