"""DDIM and GE samplers against diffusers and an independent float64 VE implementation;
GEScheduler inside a diffusers pipeline; the shared loop's options and errors."""

import pytest
import torch
from diffusers import DDIMPipeline, DDIMScheduler, UNet2DModel

from diffsolve.models import DiffusersDenoiser, EpsDenoiser, GaussianMixturePrior, GaussianPrior
from diffsolve.schedules import make_alphas_cumprod, sampling_schedule
from diffsolve.solvers import GEScheduler, ddim, ge

D = torch.float64


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                       layers_per_block=1, norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D")).eval()


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def _gmm(alphas_cumprod=None):
    g = torch.Generator().manual_seed(5)
    means = torch.randn(3, 1, 3, 5, generator=g, dtype=D)
    vars_ = 0.05 + 0.2 * torch.rand(3, 1, 3, 5, generator=g, dtype=D)
    return GaussianMixturePrior(means, vars_, torch.tensor([0.5, 0.3, 0.2], dtype=D), alphas_cumprod=alphas_cumprod)


@torch.no_grad()
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ddim_equals_diffusers_step_by_step(unet, eta, dtype):
    model = unet.to(dtype)
    sched = DDIMScheduler(timestep_spacing="trailing", clip_sample=False, set_alpha_to_one=False)
    steps, shape = 10, (2, 1, 8, 8)
    # diffusers, as DDIMPipeline runs it: x_T then each step's noise from one generator
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(shape, generator=gen, dtype=dtype)
    sched.set_timesteps(steps)
    expected = []
    for t in sched.timesteps:
        x = sched.step(model(x, t).sample, t, x, eta=eta, generator=gen).prev_sample
        expected.append(x)
    ours = []
    out = ddim(DiffusersDenoiser(model, sched), shape, steps=steps, eta=eta, spacing="trailing", dtype=dtype,
               generator=torch.Generator().manual_seed(7), callback=lambda i, t, x_s, x0: ours.append(x_s))
    assert len(ours) == steps
    for i, (a, b) in enumerate(zip(ours, expected)):
        assert _rel(a, b) <= 1e-5, (i, _rel(a, b))
    assert out.dtype == dtype and torch.equal(out, ours[-1])


@torch.no_grad()
def test_ddim_equals_diffusers_leading_with_offset(unet):
    model = unet.to(D)
    sched = DDIMScheduler(timestep_spacing="leading", steps_offset=1, clip_sample=False, set_alpha_to_one=True)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 1, 8, 8, generator=gen, dtype=D)
    sched.set_timesteps(20)
    for t in sched.timesteps:
        x = sched.step(model(x, t).sample, t, x, eta=0.0).prev_sample
    out = ddim(DiffusersDenoiser(model, sched), (1, 1, 8, 8), steps=20, spacing="leading", dtype=D,
               generator=torch.Generator().manual_seed(3), timesteps=sched.timesteps)
    assert _rel(out, x) <= 1e-5


def test_ge_with_gamma_one_equals_ddim():
    prior = _gmm()
    shape = (4, 1, 3, 5)
    for spacing in ("loglinear", "trailing"):
        a = ge(prior, shape, steps=8, gamma=1.0, spacing=spacing, dtype=D, generator=torch.Generator().manual_seed(1))
        b = ddim(prior, shape, steps=8, spacing=spacing, dtype=D, generator=torch.Generator().manual_seed(1),
                 timesteps=None if spacing == "trailing" else ge_timesteps(prior, 8))
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # γ = 2 is a different sampler
    c = ge(prior, shape, steps=8, dtype=D, generator=torch.Generator().manual_seed(1))
    assert _rel(c, a) > 1e-3


def ge_timesteps(denoiser, steps, **kw):
    seen = []
    ge(denoiser, (1, *denoiser.sample_shape), steps=steps, dtype=D, callback=lambda i, t, x, x0: seen.append(t), **kw)
    return seen


def _reference_ge_ve(eps_fn, alphas, timesteps, final_alpha, x_T, gamma, mu, gen):
    """Independent float64 GE in VE coordinates (smalldiffusion's loop): x̃ = x/√ᾱ, σ = √(1/ᾱ − 1)."""
    sig = lambda a: (1 / a - 1) ** 0.5  # noqa: E731
    abar = [float(alphas[t]) for t in timesteps] + [final_alpha]
    sigmas = [sig(a) for a in abar]
    xt = x_T.double() / abar[0] ** 0.5
    eps = None
    for i, t in enumerate(timesteps):
        s_t, s_s = sigmas[i], sigmas[i + 1]
        x_vp = xt * abar[i] ** 0.5
        eps_prev, eps = eps, eps_fn(x_vp, torch.full((x_T.shape[0],), t)).double()
        e = eps if eps_prev is None else gamma * eps + (1 - gamma) * eps_prev
        s_p = (s_s / s_t**mu) ** (1 / (1 - mu))
        noise = torch.randn(x_T.shape, generator=gen, dtype=D) if mu > 0 else 0.0
        xt = xt - (s_t - s_p) * e + max(s_s**2 - s_p**2, 0.0) ** 0.5 * noise
    return xt * abar[-1] ** 0.5


@pytest.mark.parametrize("gamma,mu", [(2.0, 0.0), (1.5, 0.0), (2.0, 0.4)])
@pytest.mark.parametrize("final", [1.0, "alpha0"])
def test_ge_equals_independent_ve_implementation(gamma, mu, final):
    table = make_alphas_cumprod(num_train_timesteps=200, beta_schedule="squaredcos_cap_v2")
    prior = _gmm(table)
    prior.final_alpha_cumprod = float(table[0]) if final == "alpha0" else 1.0
    shape = (3, 1, 3, 5)
    steps = 7
    gen = torch.Generator().manual_seed(11)
    out, traj = ge(prior, shape, steps=steps, gamma=gamma, mu=mu, dtype=D, generator=gen,
                   return_trajectory=True, sigma_max=50.0, sigma_min=0.05)
    timesteps = ge_timesteps(prior, steps, sigma_max=50.0, sigma_min=0.05)
    gen = torch.Generator().manual_seed(11)
    x_T = torch.randn(shape, generator=gen, dtype=D)
    expected = _reference_ge_ve(prior, table, timesteps, prior.final_alpha_cumprod, x_T, gamma, mu, gen)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    assert traj.shape == (steps, *shape)


@torch.no_grad()
def test_ge_scheduler_in_a_diffusers_pipeline_equals_ge(unet):
    model = unet.to(D)
    base = DDIMScheduler(beta_end=0.002, clip_sample=False, set_alpha_to_one=False)  # ᾱ_T ≈ 0.35: no blow-up
    pipe = DDIMPipeline(unet=model, scheduler=base)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = GEScheduler.from_config(base.config, gamma=2.0)
    assert isinstance(pipe.scheduler, GEScheduler)
    finals = []
    step = pipe.scheduler.step

    def recording_step(*args, **kwargs):
        out = step(*args, **kwargs)
        finals.append(out.prev_sample)
        return out

    pipe.scheduler.step = recording_step
    images = pipe(batch_size=2, generator=torch.Generator().manual_seed(4), num_inference_steps=6,
                  output_type="pt").images
    ours = ge(DiffusersDenoiser(model, base), (2, 1, 8, 8), steps=6, gamma=2.0, dtype=D,
              generator=torch.Generator().manual_seed(4))
    assert len(finals) == 6
    torch.testing.assert_close(finals[-1], ours, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(images, (ours / 2 + 0.5).clamp(0, 1), rtol=1e-10, atol=1e-10)


def test_ge_scheduler_stochastic_and_v_prediction_equal_ge():
    table_cfg = dict(num_train_timesteps=100, beta_schedule="linear", beta_end=0.05)
    prior = _gmm(make_alphas_cumprod(**table_cfg))
    for pred in ("epsilon", "v_prediction"):
        sched = GEScheduler(**table_cfg, gamma=1.7, mu=0.3, prediction_type=pred, timestep_spacing="trailing")
        sched.set_timesteps(5)
        gen = torch.Generator().manual_seed(9)
        x = torch.randn(2, 1, 3, 5, generator=gen, dtype=D)
        for t in sched.timesteps:
            eps = prior(x, int(t))
            a = float(sched.alphas_cumprod[t])
            out = eps if pred == "epsilon" else (eps - (1 - a) ** 0.5 * x) / a**0.5  # v from ε
            x = sched.step(out, t, x, generator=gen).prev_sample
        ours = ge(prior, (2, 1, 3, 5), steps=5, gamma=1.7, mu=0.3, spacing="trailing", dtype=D,
                  generator=torch.Generator().manual_seed(9))
        torch.testing.assert_close(x, ours, rtol=1e-10, atol=1e-10)


def test_ge_scheduler_config_round_trip(tmp_path):
    sched = GEScheduler(num_train_timesteps=300, beta_schedule="scaled_linear", gamma=1.8, mu=0.2, sigma_max=20.0,
                        sigma_min=0.1, set_alpha_to_one=False)
    sched.save_config(tmp_path)
    again = GEScheduler.from_pretrained(tmp_path)
    public = lambda cfg: {k: v for k, v in cfg.items() if not k.startswith("_use_default")}  # noqa: E731
    assert public(again.config) == public(sched.config) and again.config.gamma == 1.8
    sched.set_timesteps(12)
    again.set_timesteps(12)
    assert torch.equal(sched.timesteps, again.timesteps)
    ddim_cfg = DDIMScheduler.from_config(sched.config)
    assert torch.equal(ddim_cfg.alphas_cumprod.double(), sched.alphas_cumprod)
    with pytest.raises(ValueError, match="set_timesteps"):
        GEScheduler().step(torch.zeros(1, 1, 2, 2), 999, torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="integer training timestep"):  # any t in [0, T) is a valid start
        sched.step(torch.zeros(1, 1, 2, 2), 300, torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="timestep_spacing"):
        GEScheduler(timestep_spacing="karras")


def test_ddim_on_a_gaussian_prior_is_the_closed_form_map():
    """DDIM(η=0) with the exact ε of N(μ, diag v) is, per pixel in VE coordinates,
    x̃_s − μ = (x̃_t − μ)(v + σ_s σ_t)/(v + σ_t²); at N = 100 the output variance is within 10% of v
    and below it (DDIM's discretization shrinks it: (v + σ_sσ_t)² < (v + σ_s²)(v + σ_t²))."""
    g = torch.Generator().manual_seed(2)
    mean = torch.randn(1, 4, 4, generator=g, dtype=D)
    var = 0.1 + torch.rand(1, 4, 4, generator=g, dtype=D)
    prior = GaussianPrior(mean, var)
    x_T = torch.randn(3, 1, 4, 4, generator=g, dtype=D)
    out = ddim(prior, x_T.shape, steps=100, x_T=x_T)
    table = prior.alphas_cumprod
    ts = list(range(999, 0, -10))
    sig = [float((1 / table[t] - 1) ** 0.5) for t in ts] + [0.0]
    gain = torch.ones_like(var)
    for s_t, s_s in zip(sig[:-1], sig[1:]):
        gain = gain * (var + s_s * s_t) / (var + s_t**2)
    expected = mean + (x_T / float(table[999]) ** 0.5 - mean) * gain
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)
    out_var = gain**2 / float(table[999])  # Var x_0 for x_T ~ N(0, I)
    torch.testing.assert_close(out_var, var, rtol=0.1, atol=0)
    assert bool((out_var < var).all())


def test_trajectory_callback_and_progress(capsys):
    prior = _gmm()
    calls = []
    x, traj = ddim(prior, (2, 1, 3, 5), steps=4, dtype=D, return_trajectory=True, progress=True,
                   callback=lambda i, t, x_s, x0: calls.append((i, t, x0.shape)))
    assert traj.shape == (4, 2, 1, 3, 5)
    assert [c[0] for c in calls] == [0, 1, 2, 3] and [c[1] for c in calls] == [999, 749, 499, 249]
    torch.testing.assert_close(traj[-1], x, rtol=0, atol=1e-12)  # final ᾱ = 1: x_0 = x̂0
    assert "ddim" in capsys.readouterr().err


def test_kernel_noise_source_is_reproducible():
    prior = _gmm()
    run = lambda seed, **kw: ddim(prior, (2, 1, 3, 5), steps=5, eta=1.0, dtype=D, noise_source="kernel",  # noqa
                                  generator=torch.Generator().manual_seed(seed), **kw)
    a, b, c = run(0), run(0), run(1)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)
    deterministic = ddim(prior, (2, 1, 3, 5), steps=5, eta=0.0, dtype=D, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(a, deterministic)
    x_T = torch.randn(2, 1, 3, 5, generator=torch.Generator().manual_seed(0), dtype=D)
    torch.testing.assert_close(ddim(prior, x_T.shape, steps=5, x_T=x_T), deterministic, rtol=0, atol=0)


def test_nan_is_reported_once_at_the_end():
    den = EpsDenoiser(lambda x, t: torch.full_like(x, float("nan")))
    with pytest.raises(FloatingPointError, match="NaN/Inf after 3 steps"):
        ddim(den, (1, 2), steps=3)


@pytest.mark.parametrize("call,error,match", [
    (lambda p: ddim(p, (1, 1, 3, 5), steps=4, spacing="uniform"), ValueError, "spacing must be one of"),
    (lambda p: ddim(p, (1, 1, 3, 5), steps=1001), ValueError, r"steps must be in \[1, 1000\]"),
    (lambda p: ge(p, (1, 1, 3, 5), steps=0), ValueError, "steps must be in"),
    (lambda p: ddim(p, (1, 1, 3, 5), steps=2.0), TypeError, "steps must be an int"),
    (lambda p: ddim(p, (1, 1, 5, 3), steps=4), ValueError, r"per-sample shape must be \(1, 3, 5\)"),
    (lambda p: ddim(p, (1, 1, 3, 5), steps=4, eta=1.5), ValueError, "eta must lie in"),
    (lambda p: ge(p, (1, 1, 3, 5), steps=4, mu=1.0), ValueError, "mu must lie in"),
    (lambda p: ge(p, (1, 1, 3, 5), steps=4, gamma="2"), TypeError, "gamma must be a number"),
    (lambda p: ddim(p, (1, 1, 3, 5), steps=4, generator=3), TypeError, "generator must be a torch.Generator"),
    (lambda p: ddim(p, (1, 1, 3, 5), steps=4, x_T=torch.zeros(2, 1, 3, 5)), ValueError, "x_T has shape"),
    (lambda p: ddim(p, (1, 1, 3, 5), steps=4, dtype=torch.float16), TypeError, "dtype must be"),
    (lambda p: ddim(p, (1, 1, 3, 5), steps=4, noise_source="philox"), ValueError, "noise_source"),
    (lambda p: ddim(p, (1, 1, 3, 5), steps=2, timesteps=[5, 9]), ValueError, "strictly decreasing"),
    (lambda p: ddim(p, (1, 1, 3, 5), steps=3, timesteps=[9, 5]), ValueError, "timesteps has 2 entries"),
    (lambda p: ddim(p, (1, 1, 3, 5), steps=4, sigma_max=3.0), ValueError, "apply to spacing=.loglinear."),
    (lambda p: ge(p, (1, 1, 3, 5), steps=4, spacing="trailing", sigma_max=3.0), ValueError, "sigma_max/sigma_min"),
    (lambda p: ddim(lambda x, t: x, (1, 1, 3, 5), steps=4), TypeError, "alphas_cumprod"),
    (lambda p: ddim(EpsDenoiser(lambda x, t: x[:, :1]), (1, 2, 3), steps=2), ValueError, "denoiser returned"),
])
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call(_gmm())


def test_schedule_helpers_agree_with_the_sampler():
    prior = _gmm()
    seen = ge_timesteps(prior, 6)
    sched = sampling_schedule(prior.alphas_cumprod, seen)
    assert sched.timesteps.tolist() == seen and seen[0] == 999


def test_samplers_build_no_autograd_graph(unet):
    den = DiffusersDenoiser(unet.float(), DDIMScheduler())
    assert any(p.requires_grad for p in unet.parameters())
    for sampler in (ddim, ge):
        out = sampler(den, (1, 1, 8, 8), steps=2, generator=torch.Generator().manual_seed(0))
        assert not out.requires_grad


def test_ge_warns_where_float32_cannot_resolve_the_first_level():
    """A linear β table at T = 4000 starts at ᾱ ≈ 3e-18: GE in float32 warns; float64 and the usual tables do not."""
    import warnings

    from diffsolve.models import GaussianPrior
    from diffsolve.schedules import make_alphas_cumprod
    from diffsolve.solvers import ge

    deep = GaussianPrior(torch.zeros(1, 4, 4), 0.5, alphas_cumprod=make_alphas_cumprod(num_train_timesteps=4000))
    with pytest.warns(UserWarning, match="first level has ᾱ"):
        ge(deep, (1, 1, 4, 4), steps=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ge(deep, (1, 1, 4, 4), steps=4, dtype=torch.float64)
        ge(GaussianPrior(torch.zeros(1, 4, 4), 0.5), (1, 1, 4, 4), steps=4)
        cosine = make_alphas_cumprod(beta_schedule="squaredcos_cap_v2")
        ge(GaussianPrior(torch.zeros(1, 4, 4), 0.5, alphas_cumprod=cosine), (1, 1, 4, 4), steps=4)
