"""A Stable-Diffusion-style folder (unet/, vae/, scheduler/, optional text encoder) runs MPGD-LDM:
tiny random components saved with save_pretrained, loaded with load_latent_diffusion, conditioned by
precomputed embeddings or by a prompt (through stand-in tokenizer/encoder objects: ``transformers`` is
not a dependency)."""

import importlib.util

import pytest
import torch
from _tiny_models import tiny_kl, tiny_unet, tiny_unet_cond, tiny_vq
from diffusers import DDIMScheduler

from diffsolve.models import Autoencoder, DiffusersDenoiser
from diffsolve.models.latent_folder import encode_prompt, load_latent_diffusion
from diffsolve.operators import SuperResolution
from diffsolve.solvers import mpgd_ldm

SD_SCHEDULER = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                    set_alpha_to_one=False, steps_offset=1)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-sd")
    unet, vae = tiny_unet_cond(2, cross_dim=8), tiny_kl()
    vae.register_to_config(scaling_factor=0.5)
    unet.save_pretrained(root / "unet")
    vae.save_pretrained(root / "vae")
    DDIMScheduler(**SD_SCHEDULER).save_pretrained(root / "scheduler")
    return root, unet, vae


class CharTokenizer:
    """Stand-in for CLIPTokenizer's call: character codes padded/truncated to model_max_length."""

    model_max_length = 6

    def __call__(self, texts, padding, max_length, truncation, return_tensors):
        assert (padding, truncation, return_tensors) == ("max_length", True, "pt")
        rows = [[ord(c) % 64 for c in t][:max_length] + [0] * max(0, max_length - len(t)) for t in texts]
        return type("Batch", (), {"input_ids": torch.tensor(rows)})()


class EmbeddingEncoder(torch.nn.Module):
    """Stand-in for CLIPTextModel: (last_hidden_state,) from an embedding table, width 8."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(7)
        self.table = torch.nn.Embedding(64, 8)

    def forward(self, ids):
        return (self.table(ids),)


@torch.no_grad()
def test_embeddings_with_guidance_equal_the_direct_denoiser(sd_folder):
    root, unet, vae = sd_folder
    cond, uncond = torch.randn(1, 5, 8, generator=_gen(1)), torch.randn(1, 5, 8, generator=_gen(2))
    ld = load_latent_diffusion(root, prompt_embeds=cond, negative_prompt_embeds=uncond, guidance_scale=4.0)
    direct = DiffusersDenoiser(unet, DDIMScheduler(**SD_SCHEDULER), encoder_hidden_states=cond,
                               negative_encoder_hidden_states=uncond, guidance_scale=4.0)
    z, t = torch.randn(2, 2, 4, 4, generator=_gen(3)), torch.tensor([900, 50])
    torch.testing.assert_close(ld.denoiser(z, t), direct(z, t), rtol=0, atol=0)
    assert torch.equal(ld.denoiser.alphas_cumprod, direct.alphas_cumprod)
    assert ld.denoiser.final_alpha_cumprod == direct.final_alpha_cumprod < 1  # set_alpha_to_one=False
    assert ld.autoencoder.scaling_factor == 0.5
    x = torch.rand(1, 3, 8, 8, generator=_gen(4)) * 2 - 1
    torch.testing.assert_close(ld.autoencoder.encode(x), Autoencoder(vae).encode(x), rtol=0, atol=0)


def test_mpgd_ldm_runs_from_the_folder(sd_folder):
    root, _, _ = sd_folder
    ld = load_latent_diffusion(root, prompt_embeds=torch.randn(1, 5, 8, generator=_gen(1)),
                               negative_prompt_embeds=torch.zeros(1, 5, 8), guidance_scale=3.0)
    op = SuperResolution(2, input_size=(8, 8))
    y = op.A(torch.rand(2, 3, 8, 8, generator=_gen(0)) * 2 - 1)
    ts = ld.timesteps(3)
    sched = DDIMScheduler(**SD_SCHEDULER)
    sched.set_timesteps(3)
    assert torch.equal(ts, sched.timesteps)  # leading, steps_offset=1: [667, 334, 1]
    x, info = mpgd_ldm(ld.denoiser, ld.autoencoder, op, y, steps=3, timesteps=ts, generator=_gen(5),
                       return_info=True)
    assert x.shape == (2, 3, 8, 8) and bool(torch.isfinite(x).all())
    assert info["residual"].shape == (3, 2) and torch.equal(info["timesteps"], ts)
    again = mpgd_ldm(ld.denoiser, ld.autoencoder, op, y, steps=3, timesteps=ts, generator=_gen(5))
    torch.testing.assert_close(again, x, rtol=0, atol=0)


@torch.no_grad()
def test_prompt_is_encoded_as_stable_diffusion_does(sd_folder):
    root, unet, _ = sd_folder
    tok, enc = CharTokenizer(), EmbeddingEncoder()
    ld = load_latent_diffusion(root, prompt="a cat", guidance_scale=7.5, tokenizer=tok, text_encoder=enc)
    cond, uncond = encode_prompt("a cat", tok, enc), encode_prompt("", tok, enc)
    assert cond.shape == (1, 6, 8)
    torch.testing.assert_close(ld.denoiser.encoder_hidden_states, cond, rtol=0, atol=0)
    torch.testing.assert_close(ld.denoiser.negative_encoder_hidden_states, uncond, rtol=0, atol=0)
    direct = DiffusersDenoiser(unet, DDIMScheduler(**SD_SCHEDULER), encoder_hidden_states=cond,
                               negative_encoder_hidden_states=uncond, guidance_scale=7.5)
    z = torch.randn(1, 2, 4, 4, generator=_gen(3))
    torch.testing.assert_close(ld.denoiser(z, 500), direct(z, 500), rtol=0, atol=0)
    neg = load_latent_diffusion(root, prompt=["a cat", "a dog"], negative_prompt="blurry", guidance_scale=2.0,
                                tokenizer=tok, text_encoder=enc)
    assert neg.denoiser.encoder_hidden_states.shape == (2, 6, 8)
    torch.testing.assert_close(neg.denoiser.negative_encoder_hidden_states, encode_prompt("blurry", tok, enc))


def test_prompt_without_a_text_encoder_is_refused(sd_folder, tmp_path):
    root, _, _ = sd_folder
    with pytest.raises(ValueError, match="a prompt needs a text encoder.*prompt_embeds"):
        load_latent_diffusion(root, prompt="a cat")
    with pytest.raises(ValueError, match="give prompt= or prompt_embeds"):
        load_latent_diffusion(root)
    with pytest.raises(ValueError, match="cross_attention_dim is 8"):
        load_latent_diffusion(root, prompt_embeds=torch.zeros(1, 5, 16))
    with pytest.raises(ValueError, match="guidance_scale > 1"):
        load_latent_diffusion(root, prompt_embeds=torch.zeros(1, 5, 8), negative_prompt_embeds=torch.zeros(1, 5, 8))
    if importlib.util.find_spec("transformers") is None:
        folder = tmp_path / "with-text"
        for part in ("unet", "vae", "scheduler"):
            (folder / part).mkdir(parents=True)
            for f in (root / part).iterdir():
                (folder / part / f.name).write_bytes(f.read_bytes())
        (folder / "text_encoder").mkdir()
        (folder / "tokenizer").mkdir()
        with pytest.raises(ImportError, match="needs the `transformers` package"):
            load_latent_diffusion(folder, prompt="a cat")


def test_unconditional_latent_folder_and_bad_folders(tmp_path):
    tiny_unet(2).save_pretrained(tmp_path / "unet")
    tiny_vq().save_pretrained(tmp_path / "vae")
    DDIMScheduler(clip_sample=False).save_pretrained(tmp_path / "scheduler")
    ld = load_latent_diffusion(tmp_path)
    assert ld.autoencoder.is_vq and ld.denoiser.encoder_hidden_states is None
    x = mpgd_ldm(ld.denoiser, ld.autoencoder, None, None, loss=lambda img: img.square().flatten(1).sum(1),
                 shape=(1, 3, 8, 8), steps=2, generator=_gen(0))
    assert x.shape == (1, 3, 8, 8) and bool(torch.isfinite(x).all())
    with pytest.raises(ValueError, match="unconditional UNet2DModel"):
        load_latent_diffusion(tmp_path, prompt_embeds=torch.zeros(1, 5, 8))
    with pytest.raises(ValueError, match="lacks unet, vae, scheduler"):
        load_latent_diffusion(tmp_path / "unet")
    with pytest.raises(ValueError, match="not a directory"):
        load_latent_diffusion(tmp_path / "nowhere")
