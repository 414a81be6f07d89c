"""``ddim(step_rule="diffusers")`` reproduces diffusers' ``DDIMScheduler`` loop (t → t − T//N) for every
spacing and N, η ∈ {0, 1}, the three prediction types, with the same noise; ``step_rule="listed"``
differs exactly where the rules differ. Models, float64: a one-convolution time-conditioned network for the
72-case matrix (the sampler's arithmetic is what is compared; it keeps the matrix at a few seconds), a tiny
random UNet2DModel for the rest."""

import pytest
import torch
from diffusers import DDIMScheduler, UNet2DModel

from diffsolve.models import DiffusersDenoiser
from diffsolve.schedules import SPACINGS, diffusers_ddim_schedule, make_alphas_cumprod, spaced_timesteps
from diffsolve.solvers import ddim

D = torch.float64
SHAPE = (2, 1, 8, 8)


class TinyModel(torch.nn.Module):
    """out = tanh(conv3x3(x)) · (1 + t/1000) + 0.1 x: a cheap deterministic f(x, t), returned as diffusers' (out,)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1, dtype=D)

    def forward(self, x, t):
        t = torch.as_tensor(t, dtype=x.dtype).reshape(-1, 1, 1, 1)
        return (torch.tanh(self.conv(x)) * (1 + t / 1000) + 0.1 * x,)


@pytest.fixture(scope="module")
def tiny():
    return TinyModel().eval()


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 8), layers_per_block=1,
                       norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D")).to(D).eval()


@torch.no_grad()
def _diffusers_loop(unet, sched, steps, eta, seed, **step_kwargs):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(SHAPE, generator=gen, dtype=D)  # as DDIMPipeline: x_T, then each step's z
    sched.set_timesteps(steps)
    for t in sched.timesteps:
        x = sched.step(unet(x, t)[0], t, x, eta=eta, generator=gen, **step_kwargs).prev_sample
    return x


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("steps", [1, 7, 10, 50])
@pytest.mark.parametrize("spacing", SPACINGS)
def test_diffusers_rule_equals_ddim_scheduler(tiny, spacing, steps, eta, prediction_type):
    sched = DDIMScheduler(timestep_spacing=spacing, prediction_type=prediction_type, clip_sample=False,
                          set_alpha_to_one=False)
    den = DiffusersDenoiser(tiny, sched)
    ours = ddim(den, SHAPE, steps=steps, eta=eta, spacing=spacing, dtype=D, step_rule="diffusers",
                generator=torch.Generator().manual_seed(steps))
    # as shipped, diffusers forms √ᾱ, √(1−ᾱ) in float32 from its float32 table: float32 agreement
    # (measured ≤ 9e-7 over the matrix)
    expected = _diffusers_loop(tiny, sched, steps, eta, seed=steps)
    assert _rel(ours, expected) < 1e-5, _rel(ours, expected)
    # with the same table values held in float64, diffusers' arithmetic is float64 too: equal to round-off
    sched.alphas_cumprod = sched.alphas_cumprod.double()
    sched.final_alpha_cumprod = sched.final_alpha_cumprod.double()
    expected64 = _diffusers_loop(tiny, sched, steps, eta, seed=steps)
    assert _rel(ours, expected64) < 1e-12, _rel(ours, expected64)


def test_leading_with_offset_and_alpha_one(unet):
    """Stable Diffusion's config: leading, steps_offset=1 (timesteps passed as diffusers lists them)."""
    sched = DDIMScheduler(timestep_spacing="leading", steps_offset=1, clip_sample=False, set_alpha_to_one=True)
    for steps in (7,):
        expected = _diffusers_loop(unet, sched, steps, 1.0, seed=1)
        ours = ddim(DiffusersDenoiser(unet, sched), SHAPE, steps=steps, eta=1.0, timesteps=sched.timesteps,
                    dtype=D, step_rule="diffusers", generator=torch.Generator().manual_seed(1))
        assert _rel(ours, expected) < 1e-5


def test_listed_rule_differs_only_where_the_rules_differ(tiny):
    """linspace N = 7: diffusers lands on 857 after 999, the listed rule on 832 — different images."""
    sched = DDIMScheduler(timestep_spacing="linspace", clip_sample=False, set_alpha_to_one=False)
    expected = _diffusers_loop(tiny, sched, 7, 0.0, seed=2)
    den = DiffusersDenoiser(tiny, sched)
    listed = ddim(den, SHAPE, steps=7, spacing="linspace", dtype=D, generator=torch.Generator().manual_seed(2))
    assert _rel(listed, expected) > 1e-3
    table = make_alphas_cumprod()
    sched_pairs = diffusers_ddim_schedule(table, spaced_timesteps(1000, 7, "linspace"))
    assert sched_pairs.prev_timesteps.tolist()[:2] == [857, 690]
    # trailing with N | T and leading: both rules land on the next listed timestep
    for spacing, steps in (("trailing", 10), ("leading", 7), ("leading", 50)):
        ts = spaced_timesteps(1000, steps, spacing)
        assert diffusers_ddim_schedule(table, ts).prev_timesteps.tolist() == ts.tolist()[1:] + [-1]


@pytest.mark.parametrize("spacing", SPACINGS)
def test_clip_sample_equals_diffusers_with_clipped_model_output(unet, spacing):
    """clipped_model_output=True: diffusers' use_clipped_model_output=True, exactly; the default (None, a
    DDIMScheduler config) is DDIMScheduler.step's default, use_clipped_model_output=False."""
    sched = DDIMScheduler(timestep_spacing=spacing, clip_sample=True, clip_sample_range=0.8, set_alpha_to_one=False)
    expected = _diffusers_loop(unet, sched, 7, 1.0, seed=3, use_clipped_model_output=True)
    den = DiffusersDenoiser(unet, sched)
    assert den.x0_clip.clip_sample and den.x0_clip.clip_sample_range == 0.8
    ours = ddim(den, SHAPE, steps=7, eta=1.0, spacing=spacing, dtype=D, step_rule="diffusers",
                clipped_model_output=True, generator=torch.Generator().manual_seed(3))
    assert _rel(ours, expected) < 1e-5
    default = ddim(den, SHAPE, steps=7, eta=1.0, spacing=spacing, dtype=D, step_rule="diffusers",
                   generator=torch.Generator().manual_seed(3))
    assert _rel(default, _diffusers_loop(unet, sched, 7, 1.0, seed=3)) < 1e-5
    raw = ddim(DiffusersDenoiser(unet, sched, clip_sample=False), SHAPE, steps=7, eta=1.0, spacing=spacing, dtype=D,
               step_rule="diffusers", generator=torch.Generator().manual_seed(3))
    assert _rel(raw, expected) > 1e-3  # the clip is not ignored


def test_bad_step_rule(unet):
    with pytest.raises(ValueError, match="step_rule must be one of"):
        ddim(DiffusersDenoiser(unet, DDIMScheduler()), SHAPE, steps=2, step_rule="next")


# --- clip_sample / thresholding: which ε̂ the direction term uses (diffusers' use_clipped_model_output) ---

def _tiny_unet_loop(unet, sched, steps, eta, seed, shape, dtype, **step_kwargs):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=dtype)
    sched.set_timesteps(steps)
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(unet(x, t).sample, t, x, eta=eta, generator=gen, **step_kwargs).prev_sample
    return x


# float32: the fused step rounds differently from diffusers' separate tensor ops (FMA), and the model carries that
# through 10 steps: 1.1e-5 on an AMD EPYC; the two clipping rules differ by > 1e-3 on this model (asserted below)
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 5e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("eta", [0.0, 0.7])
@pytest.mark.parametrize("clip", [dict(clip_sample=True), dict(clip_sample=True, clip_sample_range=0.5),
                                  dict(thresholding=True, dynamic_thresholding_ratio=0.8, sample_max_value=1.5)])
def test_clipped_x0_with_raw_model_eps_equals_ddim_scheduler(dtype, tol, eta, clip):
    """DDIMScheduler.step's default (use_clipped_model_output=False): clip(x̂0) in the mean term, the raw ε̂ in
    the direction term; ddim follows the config's scheduler class (None), and True gives the clipped ε̂."""
    from _tiny_models import tiny_unet

    unet = tiny_unet(channels=3).to(dtype)
    shape = (2, 3, 8, 8)
    sched = DDIMScheduler(timestep_spacing="trailing", set_alpha_to_one=False, **clip)
    if dtype == torch.float64:  # diffusers' arithmetic in float64 too (its table is float32 as shipped)
        sched.alphas_cumprod = sched.alphas_cumprod.double()
        sched.final_alpha_cumprod = sched.final_alpha_cumprod.double()
    den = DiffusersDenoiser(unet, sched)
    assert den.scheduler_class == "DDIMScheduler" and den.clipped_model_output is False
    for steps in (5, 10):
        run = dict(steps=steps, eta=eta, dtype=dtype, step_rule="diffusers")
        expected = _tiny_unet_loop(unet, sched, steps, eta, steps, shape, dtype)
        ours = ddim(den, shape, generator=torch.Generator().manual_seed(steps), **run)
        assert _rel(ours, expected) < tol, (steps, _rel(ours, expected))
        explicit = ddim(den, shape, generator=torch.Generator().manual_seed(steps), clipped_model_output=False, **run)
        torch.testing.assert_close(explicit, ours, rtol=0, atol=0)
        clipped = _tiny_unet_loop(unet, sched, steps, eta, steps, shape, dtype, use_clipped_model_output=True)
        assert _rel(clipped, expected) > 1e-3  # the two rules differ on this model
        ours_c = ddim(den, shape, generator=torch.Generator().manual_seed(steps), clipped_model_output=True, **run)
        assert _rel(ours_c, clipped) < tol, (steps, _rel(ours_c, clipped))
    # the trajectory's x̂0 is the processed one (diffusers' pred_original_sample)
    _, traj = ddim(den, shape, steps=5, eta=eta, dtype=dtype, step_rule="diffusers", return_trajectory=True,
                   generator=torch.Generator().manual_seed(5))
    bound = clip.get("clip_sample_range", 1.0) if "clip_sample" in clip else 1.0
    assert float(traj.abs().max()) <= bound  # the processed x̂0 itself, as diffusers' pred_original_sample


def test_ddpm_config_keeps_the_clipped_eps():
    """A DDPMScheduler config: the clipped ε̂ (exactly DDPM's step, x̂0 alone) — ddim as before the option."""
    from diffusers import DDPMScheduler
    from _tiny_models import tiny_unet

    unet = tiny_unet(channels=3).to(D)
    shape = (2, 3, 8, 8)
    for den in (DiffusersDenoiser(unet, DDPMScheduler(clip_sample=True)),
                DiffusersDenoiser(unet, dict(DDPMScheduler(clip_sample=True).config, _class_name="DDPMScheduler"))):
        assert den.scheduler_class == "DDPMScheduler" and den.clipped_model_output is True
        run = dict(steps=6, eta=1.0, dtype=D, step_rule="diffusers")
        ours = ddim(den, shape, generator=torch.Generator().manual_seed(4), **run)
        forced = ddim(den, shape, generator=torch.Generator().manual_seed(4), clipped_model_output=True, **run)
        torch.testing.assert_close(ours, forced, rtol=0, atol=0)
        raw = ddim(den, shape, generator=torch.Generator().manual_seed(4), clipped_model_output=False, **run)
        assert _rel(raw, ours) > 1e-3
    # a scheduler's config mapping carries no class name: a DDIM config is told by its keys
    for config, rule in ((DDIMScheduler().config, False), (DDPMScheduler().config, True), ({}, True)):
        den = DiffusersDenoiser(unet, config)
        assert den.scheduler_class is None and den.clipped_model_output is rule


def test_x0_and_eps_and_clipped_model_output_option(unet):
    sched = DDIMScheduler(clip_sample=True, clip_sample_range=0.5)
    den = DiffusersDenoiser(unet, sched)
    x = 3 * torch.randn(SHAPE, generator=torch.Generator().manual_seed(0), dtype=D)
    t = torch.tensor([700, 120])
    with torch.no_grad():
        x0, eps_raw = den.x0_and_eps(x, t)
        torch.testing.assert_close(eps_raw, unet(x, t).sample, rtol=0, atol=0)
        a = sched.alphas_cumprod.double()[t].reshape(-1, 1, 1, 1)
        torch.testing.assert_close(x0, ((x - (1 - a).sqrt() * eps_raw) / a.sqrt()).clamp(-0.5, 0.5), rtol=0, atol=0)
        torch.testing.assert_close(den(x, t), (x - a.sqrt() * x0) / (1 - a).sqrt(), rtol=1e-12, atol=1e-12)
    assert float(x0.abs().max()) == 0.5
    with pytest.raises(TypeError, match="clipped_model_output"):
        ddim(den, SHAPE, steps=2, clipped_model_output=1)
