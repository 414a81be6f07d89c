"""GEScheduler as a diffusers scheduler.

1. diffusers' ``SchedulerCommonTest`` checks, written out here (the diffusers wheel ships no tests):
   save/load gives identical steps, compatibles round-trip, public API, step shape at arbitrary
   timesteps, dict/tuple outputs, add_noise device, deprecated kwargs, trained betas, config getattr.
2. What a diffusers user relies on: ``from_config`` of a DDPM/DDIM config keeps GE's log-linear
   spacing; img2img-style loops over ``timesteps[k:]`` (strength < 1); a full ``DDPMPipeline`` from a
   saved folder (``clip_sample=True``); clip/thresholding equal to ``DiffusersDenoiser``'s.
"""

import inspect
import warnings

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler, DiffusionPipeline, UNet2DModel
from diffusers.utils.torch_utils import randn_tensor

from diffsolve.models import DiffusersDenoiser
from diffsolve.models.x0_clip import X0Clip
from diffsolve.schedules import loglinear_timesteps, make_alphas_cumprod
from diffsolve.solvers import GEScheduler, ge

D = torch.float64
CONFIG = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear")
FORWARD = dict(eta=0.0, num_inference_steps=50)  # as diffusers' DDIM scheduler tests


def _sample():
    return torch.rand((4, 3, 8, 8), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                       layers_per_block=1, norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D")).to(D).eval()


# --- 1. diffusers' SchedulerCommonTest checks -------------------------------------------------------

@pytest.mark.parametrize("overrides", [{}, {"mu": 0.3, "gamma": 1.5}, {"prediction_type": "v_prediction"},
                                       {"timestep_spacing": "trailing", "clip_sample": True}])
@pytest.mark.parametrize("time_step", [0, 999, 500])
def test_save_load_gives_identical_steps(tmp_path, overrides, time_step):
    """check_over_configs / check_over_forward / test_from_save_pretrained."""
    sched = GEScheduler(**CONFIG, **overrides)
    sched.save_config(tmp_path)
    again = GEScheduler.from_pretrained(tmp_path)
    sample = _sample()
    outs = []
    for s in (sched, again):
        s.set_timesteps(FORWARD["num_inference_steps"])
        s.scale_model_input(sample, 0)
        outs.append(s.step(0.1 * sample, time_step, sample, eta=0.0, generator=torch.manual_seed(0)).prev_sample)
    assert torch.sum(torch.abs(outs[0] - outs[1])) < 1e-5
    assert torch.isfinite(outs[0]).all()


def test_compatibles_round_trip():
    sched = GEScheduler(**CONFIG)
    assert sched.compatibles and all(c is not None for c in sched.compatibles)
    for comp_cls in sched.compatibles:
        comp = comp_cls.from_config(sched.config)
        assert comp is not None
        new = GEScheduler.from_config(comp.config)
        same = {k: v for k, v in new.config.items() if k in sched.config}
        assert same == dict(sched.config), comp_cls
        extra = {k for k in new.config if k not in sched.config}
        assert not extra & set(inspect.signature(GEScheduler.__init__).parameters)


def test_from_pretrained_keeps_the_config(tmp_path):
    sched = GEScheduler(**CONFIG, gamma=1.7)
    sched.save_pretrained(tmp_path)
    again = GEScheduler.from_pretrained(tmp_path)
    cfg = dict(sched.config)
    del cfg["_use_default_values"]
    assert cfg == again.config


def test_step_shape_and_outputs_equivalence():
    sched = GEScheduler(**CONFIG)
    sample = _sample()
    sched.set_timesteps(FORWARD["num_inference_steps"])
    out0 = sched.step(0.1 * sample, 0, sample, eta=0.0).prev_sample
    out1 = sched.step(0.1 * sample, 1, sample, eta=0.0).prev_sample
    assert out0.shape == sample.shape == out1.shape
    for t in (0, int(sched.timesteps[3])):
        sched.set_timesteps(50)
        as_dict = sched.step(0.1 * sample, t, sample, generator=torch.manual_seed(0))
        sched.set_timesteps(50)
        as_tuple = sched.step(0.1 * sample, t, sample, generator=torch.manual_seed(0), return_dict=False)
        assert isinstance(as_tuple, tuple) and len(as_tuple) == 2
        for a, b in zip(as_tuple, as_dict.values()):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_public_api_and_add_noise():
    sched = GEScheduler(**CONFIG)
    assert sched.init_noise_sigma == 1.0 and sched.order == 1 and len(sched) == 1000
    sample = _sample()
    assert sched.scale_model_input(sample, 0.0).shape == sample.shape
    sched.set_timesteps(100)
    t = sched.timesteps[5][None]
    noise = torch.randn_like(sample)
    noised = sched.add_noise(sample, noise, t)
    ref = DDIMScheduler(**CONFIG).add_noise(sample, noise, t)
    assert noised.shape == sample.shape
    torch.testing.assert_close(noised, ref, rtol=1e-6, atol=1e-6)
    velocity = DDIMScheduler(**CONFIG).get_velocity(sample, noise, t)
    torch.testing.assert_close(sched.get_velocity(sample, noise, t), velocity, rtol=1e-6, atol=1e-6)


def test_carries_the_diffusers_attributes():
    ours, theirs = GEScheduler(**CONFIG, set_alpha_to_one=False), DDIMScheduler(**CONFIG, set_alpha_to_one=False)
    assert torch.equal(ours.betas, theirs.betas) and torch.equal(ours.alphas, theirs.alphas)
    assert torch.equal(ours.alphas_cumprod.float(), theirs.alphas_cumprod)
    assert ours.final_alpha_cumprod == pytest.approx(float(theirs.final_alpha_cumprod), rel=1e-7)
    assert ours.num_inference_steps is None and ours.timesteps.shape == (1000,)
    assert ours.step_index is None and ours.begin_index is None


def test_no_deprecated_kwargs():
    has_kwargs = "kwargs" in inspect.signature(GEScheduler.__init__).parameters
    assert has_kwargs == (len(GEScheduler._deprecated_kwargs) > 0)


def test_trained_betas_round_trip(tmp_path):
    sched = GEScheduler(**CONFIG, trained_betas=np.array([0.1, 0.3]))
    sched.save_pretrained(tmp_path)
    again = GEScheduler.from_pretrained(tmp_path)
    assert sched.betas.tolist() == again.betas.tolist() == pytest.approx([0.1, 0.3])


def test_getattr_is_correct():
    sched = GEScheduler(**CONFIG)
    sched.dummy_attribute = 5
    sched.register_to_config(test_attribute=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sched.dummy_attribute == 5 and getattr(sched, "save_pretrained") == sched.save_pretrained
    with pytest.warns(FutureWarning):
        assert sched.test_attribute == 5
    with pytest.raises(AttributeError, match="'GEScheduler' object has no attribute 'does_not_exist'"):
        sched.does_not_exist  # noqa: B018


# --- 2. what a diffusers user relies on -------------------------------------------------------------

@pytest.mark.parametrize("source", [DDPMScheduler, DDIMScheduler])
def test_from_config_keeps_loglinear_unless_asked(tmp_path, source):
    # a saved config lists timestep_spacing explicitly ("leading"), as every hub checkpoint does
    source(**CONFIG, clip_sample=False).save_config(tmp_path)
    cfg = source.from_pretrained(tmp_path).config
    assert cfg.timestep_spacing == "leading" and "timestep_spacing" not in cfg.get("_use_default_values", [])
    sched = GEScheduler.from_config(cfg)
    assert sched.config.timestep_spacing == "loglinear"
    sched.set_timesteps(10)
    assert torch.equal(sched.timesteps, loglinear_timesteps(make_alphas_cumprod(), 10))
    assert int(sched.timesteps[0]) == 999
    assert GEScheduler.from_config(source.from_pretrained(tmp_path)).config.timestep_spacing == "loglinear"
    asked = GEScheduler.from_config(cfg, timestep_spacing="trailing")
    assert asked.config.timestep_spacing == "trailing"
    again = GEScheduler.from_config(asked.config)  # a GE config keeps its own spacing
    assert again.config.timestep_spacing == "trailing"
    sched.save_config(tmp_path / "ge")
    assert GEScheduler.from_pretrained(tmp_path / "ge").config.timestep_spacing == "loglinear"


class TinyImg2ImgPipeline(DiffusionPipeline):
    """The timestep logic of diffusers' StableDiffusionImg2Img/Inpaint pipelines (which need ``transformers``)
    on a pixel UNet2DModel: get_timesteps(strength), set_begin_index, add_noise at the first timestep and, with
    a ``mask`` (1 = generate), the inpaint pipelines' re-noising of the known region at the next timestep."""

    def __init__(self, unet, scheduler):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)

    @torch.no_grad()
    def __call__(self, image, strength, num_inference_steps, generator, mask=None):
        self.scheduler.set_timesteps(num_inference_steps, device=image.device)
        init_timestep = min(int(num_inference_steps * strength), num_inference_steps)
        t_start = max(num_inference_steps - init_timestep, 0)
        timesteps = self.scheduler.timesteps[t_start * self.scheduler.order:]
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(t_start * self.scheduler.order)
        noise = randn_tensor(image.shape, generator=generator, dtype=image.dtype)
        x = self.scheduler.add_noise(image, noise, timesteps[:1].repeat(image.shape[0]))
        start = x.clone()
        for i, t in enumerate(self.progress_bar(timesteps)):
            model_input = self.scheduler.scale_model_input(x, t)
            x = self.scheduler.step(self.unet(model_input, t).sample, t, x, generator=generator).prev_sample
            if mask is not None:
                known = image
                if i < len(timesteps) - 1:
                    known = self.scheduler.add_noise(image, noise, timesteps[i + 1: i + 2])
                x = (1 - mask) * known + mask * x
        return x, start, timesteps


@pytest.mark.parametrize("strength", [0.6, 0.25, 1.0])
def test_img2img_pipeline_starts_mid_schedule(unet, strength):
    """strength < 1 starts at timesteps[k:] (set_begin_index(k)); equals ge() from the same x_T."""
    base = DDIMScheduler(**CONFIG, clip_sample=False, set_alpha_to_one=False)
    pipe = TinyImg2ImgPipeline(unet, base)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = GEScheduler.from_config(pipe.scheduler.config, gamma=2.0)
    image = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(3), dtype=D) * 2 - 1
    steps = 8
    x, start, timesteps = pipe(image, strength, steps, torch.Generator().manual_seed(4))
    assert len(timesteps) == int(steps * strength) and pipe.scheduler.step_index == steps
    ours = ge(DiffusersDenoiser(unet, base), (2, 1, 8, 8), steps=len(timesteps), gamma=2.0, timesteps=timesteps,
              x_T=start)
    torch.testing.assert_close(x, ours, rtol=1e-12, atol=1e-12)
    pipe.scheduler = base  # the reference behaviour: diffusers' DDIMScheduler runs the same pipeline
    y, _, ddim_timesteps = pipe(image, strength, steps, torch.Generator().manual_seed(4))
    assert len(ddim_timesteps) == len(timesteps) and torch.isfinite(y).all()


def test_inpaint_pipeline_keeps_the_known_region():
    """Inpainting re-noises the known region between steps; GE's chain continues (the timesteps follow on)
    and the known pixels come back exactly."""
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                       norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D")).to(D).eval()
    pipe = TinyImg2ImgPipeline(unet, GEScheduler(**CONFIG, clip_sample=True, mu=0.3))
    pipe.set_progress_bar_config(disable=True)
    image = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=D) * 2 - 1
    mask = torch.zeros_like(image)
    mask[..., 2:6, 2:6] = 1
    x, _, timesteps = pipe(image, 0.75, 12, torch.Generator().manual_seed(2), mask=mask)
    assert len(timesteps) == 9 and pipe.scheduler.step_index == 12
    torch.testing.assert_close(x * (1 - mask), image * (1 - mask), rtol=0, atol=0)
    assert torch.isfinite(x).all() and float(x[mask.bool()].abs().max()) < 5


def test_begin_index_is_checked_and_bad_calls_refused():
    sched = GEScheduler(**CONFIG)
    sched.set_timesteps(10)
    sched.set_begin_index(4)
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError, match=r"set_begin_index\(4\) expects the first step at timestep"):
        sched.step(x, int(sched.timesteps[3]), x)
    sched.step(x, int(sched.timesteps[4]), x)
    assert sched.step_index == 5
    with pytest.raises(ValueError, match="eta=0.5"):
        sched.step(x, int(sched.timesteps[5]), x, eta=0.5)
    with pytest.raises(ValueError, match="integer training timestep"):
        sched.step(x, 10.5, x)
    with pytest.raises(ValueError, match="not both"):
        _set(GEScheduler(**CONFIG, mu=0.2)).step(x, 0, x, generator=torch.Generator(), variance_noise=x)
    with pytest.raises(ValueError, match="strictly decreasing"):
        sched.set_timesteps(timesteps=[10, 20])
    sched.set_timesteps(timesteps=[900, 500, 100])
    assert sched.timesteps.tolist() == [900, 500, 100] and sched.num_inference_steps == 3


def _set(sched):
    sched.set_timesteps(5)
    return sched


def test_history_used_only_when_the_chain_continues():
    """ε̄ uses the previous ε̂ when the step starts where the last one landed; elsewhere GE's first step."""
    prior_eps = lambda x, t: 0.3 * x + 0.01 * t  # noqa: E731
    sched = GEScheduler(**CONFIG, gamma=2.0)
    sched.set_timesteps(6)
    ts = sched.timesteps.tolist()
    x = torch.ones(1, 1, 2, 2, dtype=D)
    chain = x
    for t in ts[:3]:
        chain = sched.step(prior_eps(chain, t), t, chain).prev_sample
    fresh = GEScheduler(**CONFIG, gamma=2.0)
    fresh.set_timesteps(6)
    jump = fresh.step(prior_eps(x, ts[2]), ts[2], x).prev_sample  # a new chain at t_2: plain first step
    restart = sched.step(prior_eps(x, ts[2]), ts[2], x).prev_sample  # back to t_2 on the old scheduler
    torch.testing.assert_close(restart, jump, rtol=0, atol=0)


@torch.no_grad()
@pytest.mark.parametrize("clip", [dict(clip_sample=True, clip_sample_range=0.5),
                                  dict(thresholding=True, sample_max_value=1.5, dynamic_thresholding_ratio=0.9)])
def test_full_ddpm_pipeline_from_a_saved_folder(tmp_path, unet, clip):
    """A DDPM checkpoint folder (timestep_spacing="leading", clip on): GEScheduler in DDPMPipeline equals ge()."""
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(**CONFIG, **clip)).save_pretrained(tmp_path)
    pipe = DDPMPipeline.from_pretrained(tmp_path).to(D)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = GEScheduler.from_config(pipe.scheduler.config, gamma=2.0, mu=0.2)
    assert pipe.scheduler.config.timestep_spacing == "loglinear" and pipe.scheduler.x0_clip.active
    images = pipe(batch_size=2, generator=torch.Generator().manual_seed(4), num_inference_steps=6,
                  output_type="pt").images
    den = DiffusersDenoiser.from_pretrained(tmp_path, torch_dtype=D)
    assert den.x0_clip == pipe.scheduler.x0_clip
    ours = ge(den, (2, 1, 8, 8), steps=6, gamma=2.0, mu=0.2, dtype=D, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(images, (ours / 2 + 0.5).clamp(0, 1), rtol=1e-10, atol=1e-10)


def test_x0_clip_equals_diffusers_threshold_and_clamp():
    g = torch.Generator().manual_seed(1)
    x0 = 3 * torch.randn(3, 2, 5, 7, generator=g, dtype=D)
    for kw in (dict(thresholding=True, dynamic_thresholding_ratio=0.8, sample_max_value=2.0),
               dict(thresholding=True), dict(clip_sample=True, clip_sample_range=1.7)):
        ref = DDIMScheduler(**kw)
        want = ref._threshold_sample(x0) if kw.get("thresholding") else x0.clamp(-ref.config.clip_sample_range,
                                                                               ref.config.clip_sample_range)
        torch.testing.assert_close(X0Clip.from_config(ref.config)(x0), want, rtol=0, atol=0)
    assert not X0Clip.from_config({}).active
    # guided solvers differentiate through x̂0: the processing has the right gradient (away from the kinks)
    v = (3 * torch.randn(2, 3, 4, 4, generator=g, dtype=D)).requires_grad_()
    for clip in (X0Clip(thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=2.0),
                 X0Clip(clip_sample=True, clip_sample_range=1.5)):
        assert torch.autograd.gradcheck(clip, (v,))
    with pytest.raises(ValueError, match="dynamic_thresholding_ratio"):
        X0Clip.from_config({"thresholding": True, "dynamic_thresholding_ratio": 1.5})
    with pytest.raises(ValueError, match="clip_sample_range"):
        X0Clip.from_config({"clip_sample": True, "clip_sample_range": -1})
    with pytest.raises(TypeError, match="clip_sample"):
        X0Clip.from_config({"clip_sample": "yes"})
