"""Schedules: training tables and timestep spacing equal diffusers'; the GE log-linear schedule."""

import math

import pytest
import torch
from diffusers import DDIMScheduler

from diffsolve.schedules import (SPACINGS, alphas_cumprod_from_config, diffusers_ddim_schedule,
                                 final_alpha_cumprod_from_config, loglinear_timesteps, make_alphas_cumprod,
                                 make_betas, sampling_schedule,
                                 sigmas_from_alphas_cumprod, spaced_timesteps, validate_alphas_cumprod)


@pytest.mark.parametrize("beta_schedule,start,end", [("linear", 1e-4, 0.02), ("scaled_linear", 0.00085, 0.012),
                                                     ("squaredcos_cap_v2", 1e-4, 0.02)])
@pytest.mark.parametrize("zero_snr", [False, True])
def test_table_equals_diffusers(beta_schedule, start, end, zero_snr):
    sched = DDIMScheduler(num_train_timesteps=500, beta_schedule=beta_schedule, beta_start=start, beta_end=end,
                          rescale_betas_zero_snr=zero_snr)
    for source in (sched, sched.config, dict(sched.config)):
        table = alphas_cumprod_from_config(source)
        assert table.dtype == torch.float64
        assert torch.equal(table, sched.alphas_cumprod.double())
    betas = make_betas(500, start, end, beta_schedule, rescale_betas_zero_snr=zero_snr)
    assert betas.dtype == torch.float32 and torch.equal(betas, sched.betas)


def test_trained_betas_and_final_alpha():
    betas = torch.linspace(1e-3, 0.05, 50)
    table = make_alphas_cumprod(trained_betas=betas)
    torch.testing.assert_close(table, torch.cumprod(1 - betas.double(), 0), rtol=1e-6, atol=0)
    assert final_alpha_cumprod_from_config({"set_alpha_to_one": True}) == 1.0
    cfg = {"set_alpha_to_one": False, "num_train_timesteps": 50, "trained_betas": betas.tolist()}
    assert final_alpha_cumprod_from_config(cfg) == pytest.approx(float(table[0]))


@pytest.mark.parametrize("total", [1000, 37])
@pytest.mark.parametrize("spacing", SPACINGS)
def test_spacing_equals_diffusers_for_every_step_count(total, spacing):
    sched = DDIMScheduler(num_train_timesteps=total, timestep_spacing=spacing)
    for steps in range(1, total + 1):
        sched.set_timesteps(steps)
        ours = spaced_timesteps(total, steps, spacing)
        assert ours.shape == (steps,)
        # diffusers' trailing np.arange has one extra entry (timestep -1) for some N; the rest agree
        assert torch.equal(ours, sched.timesteps[:steps]), (spacing, steps)
        assert bool((ours[1:] < ours[:-1]).all()) and int(ours.min()) >= 0


def test_leading_with_offset_equals_diffusers():
    sched = DDIMScheduler(num_train_timesteps=1000, timestep_spacing="leading", steps_offset=1)
    for steps in (1, 7, 10, 50, 333):
        sched.set_timesteps(steps)
        assert torch.equal(spaced_timesteps(1000, steps, "leading", 1), sched.timesteps)


def test_loglinear_is_geometric_and_snapped():
    table = make_alphas_cumprod()
    sig = sigmas_from_alphas_cumprod(table)
    for steps in (1, 5, 10, 20, 50, 200, 1000):
        ts = loglinear_timesteps(table, steps)
        assert ts.shape == (steps,) and ts.dtype == torch.int64
        assert bool((ts[1:] < ts[:-1]).all())
        assert int(ts[0]) == 999
        if steps > 1:
            assert int(ts[-1]) == int(spaced_timesteps(1000, steps, "trailing")[-1])
    # without collisions every timestep is the table's nearest (in log σ) to its geometric target
    s_max, s_min = 80.0, 0.5
    ts = loglinear_timesteps(table, 10, s_max, s_min)
    targets = torch.logspace(math.log10(s_max), math.log10(s_min), 10, dtype=torch.float64)
    nearest = (sig.log()[None] - targets.log()[:, None]).abs().argmin(1)
    assert torch.equal(ts, nearest)


@pytest.mark.parametrize("spacing", SPACINGS)
def test_diffusers_ddim_schedule_is_ddim_schedulers_rule(spacing):
    """prev = t − T//N (DDIMScheduler.step), ᾱ of it, or the final ᾱ below 0; listed timesteps unchanged."""
    table = make_alphas_cumprod()
    for steps in (1, 7, 10, 50, 333):
        ts = spaced_timesteps(1000, steps, spacing)
        pairs = diffusers_ddim_schedule(table, ts, final_alpha_cumprod=0.5)
        prev = ts - 1000 // steps
        assert torch.equal(pairs.timesteps, ts) and torch.equal(pairs.alpha_t, table[ts])
        assert pairs.prev_timesteps.tolist() == [p if p >= 0 else -1 for p in prev.tolist()]
        assert pairs.alpha_s.tolist() == [float(table[p]) if p >= 0 else 0.5 for p in prev.tolist()]


def test_sampling_schedule_pairs():
    table = make_alphas_cumprod(num_train_timesteps=100)
    sched = sampling_schedule(table, [99, 50, 10], final_alpha_cumprod=float(table[0]))
    assert sched.prev_timesteps.tolist() == [50, 10, -1]
    assert sched.alpha_t.tolist() == table[[99, 50, 10]].tolist()
    assert sched.alpha_s.tolist() == table[[50, 10, 0]].tolist()
    assert len(sched) == 3


@pytest.mark.parametrize("call,match", [
    (lambda: spaced_timesteps(1000, 10, "cosine"), "spacing must be one of"),
    (lambda: spaced_timesteps(1000, 1001, "trailing"), r"steps must be in \[1, 1000\]"),
    (lambda: spaced_timesteps(1000, 0, "trailing"), "steps must be in"),
    (lambda: spaced_timesteps(10, 5, "leading", steps_offset=5), "steps_offset=5"),
    (lambda: loglinear_timesteps(make_alphas_cumprod(), 10, 1.0, 2.0), "sigma_min"),
    (lambda: loglinear_timesteps(make_alphas_cumprod(), 10, -1.0), "sigma_max"),
    (lambda: sampling_schedule(make_alphas_cumprod(), [10, 20]), "strictly decreasing"),
    (lambda: sampling_schedule(make_alphas_cumprod(), [1000]), r"\[0, 999\]"),
    (lambda: sampling_schedule(make_alphas_cumprod(), [5], final_alpha_cumprod=0.0), "final_alpha_cumprod"),
    (lambda: validate_alphas_cumprod(torch.tensor([0.5, 0.9])), "non-increasing"),
    (lambda: validate_alphas_cumprod(torch.tensor([1.5, 0.9])), r"\(0, 1\]"),
    (lambda: make_alphas_cumprod(beta_schedule="cosine"), "beta_schedule"),
])
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bad_types_raise_type_error():
    with pytest.raises(TypeError, match="steps must be an int"):
        spaced_timesteps(1000, 2.5, "trailing")
    with pytest.raises(TypeError, match="alphas_cumprod"):
        validate_alphas_cumprod([0.9, 0.5])
    with pytest.raises(TypeError, match="scheduler"):
        alphas_cumprod_from_config(3)
