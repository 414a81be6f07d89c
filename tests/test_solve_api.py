"""diffsolve.solve: dispatch to each method, same results as the direct calls, clear errors."""

from __future__ import annotations

import pytest
import torch

import diffsolve
from diffsolve.models import GaussianPrior
from diffsolve.operators import Inpainting
from diffsolve.solvers import cdps, ddim, dps, ge, mpgd, mpgd_ldm

D = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def setup():
    prior = GaussianPrior(torch.zeros(1, 4, 5, dtype=D), 0.3)
    op = Inpainting.random((4, 5), 0.5, seed=1)
    y = op.A(torch.randn(2, 1, 4, 5, generator=gen(0), dtype=D))
    return prior, op, y


@pytest.mark.parametrize("method, fn, options", [
    ("dps", dps, {"zeta": 0.5}),
    ("mpgd", mpgd, {"rho": 0.2, "eta": 0.3}),
    ("cdps", cdps, {"sigma": 0.05, "chain": "fresh"}),
])
def test_solve_equals_the_direct_call(setup, method, fn, options):
    prior, op, y = setup
    got = diffsolve.solve(method, prior, op, y, steps=4, generator=gen(3), **options)
    ref = fn(prior, op, y, steps=4, generator=gen(3), **options)
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    x, info = diffsolve.solve(method, prior, op, y, steps=4, generator=gen(3), return_info=True, **options)
    torch.testing.assert_close(x, ref, rtol=0, atol=0)
    assert info["residual"].shape == (4, 2)


@pytest.mark.parametrize("method, fn, options", [("ddim", ddim, {"eta": 0.5}), ("ge", ge, {"gamma": 2.0, "mu": 0.3})])
def test_unconditional_samplers_take_the_shape_from_y_and_ignore_its_values(setup, method, fn, options):
    prior, op, y = setup
    a = diffsolve.solve(method, prior, op, y, steps=3, generator=gen(1), **options)
    b = diffsolve.solve(method, prior, op, torch.zeros_like(y), steps=3, generator=gen(1), **options)
    ref = fn(prior, (2, 1, 4, 5), steps=3, generator=gen(1), dtype=D, **options)
    torch.testing.assert_close(a, ref, rtol=0, atol=0)
    torch.testing.assert_close(b, ref, rtol=0, atol=0)
    c = diffsolve.solve(method, prior, None, None, steps=3, generator=gen(1), shape=(2, 1, 4, 5), dtype=D, **options)
    torch.testing.assert_close(c, ref, rtol=0, atol=0)
    with pytest.raises(ValueError, match=f"method='{method}' needs shape="):
        diffsolve.solve(method, prior, None, None, steps=2)


def test_mpgd_ldm_dispatch(setup):
    prior, op, y = setup

    class Halve:  # a latent space at twice the image scale
        def encode(self, x):
            return 2 * x

        def decode(self, z):
            return z / 2

    got = diffsolve.solve("mpgd_ldm", prior, op, y, steps=3, generator=gen(2), autoencoder=Halve(), rho=0.1)
    ref = mpgd_ldm(prior, Halve(), op, y, steps=3, generator=gen(2), rho=0.1)
    torch.testing.assert_close(got, ref, rtol=0, atol=0)


def test_errors(setup):
    prior, op, y = setup
    with pytest.raises(ValueError, match="method must be one of"):
        diffsolve.solve("not_a_method", prior, op, y, steps=2)
    with pytest.raises(ValueError, match="sigma"):
        diffsolve.solve("cdps", prior, op, y, steps=2)
    with pytest.raises(ValueError, match="autoencoder"):
        diffsolve.solve("mpgd_ldm", prior, op, y, steps=2)
    with pytest.raises(ValueError, match="shape"):
        diffsolve.solve("ddim", prior, None, None, steps=2)
    with pytest.raises(TypeError, match=r"unknown option\(s\) \[.rho.\]; its own options are"):
        diffsolve.solve("dps", prior, op, y, steps=2, rho=1.0)
    with pytest.raises(ValueError, match="y of shape"):
        diffsolve.solve("mpgd", prior, op, y[..., :4], steps=2)
    assert "solve" in diffsolve.__all__


@pytest.mark.parametrize("method, options", [("dps", {}), ("mpgd", {}), ("cdps", {"sigma": 0.05})])
def test_callback_sees_every_step(setup, method, options):
    prior, op, y = setup
    seen = []
    diffsolve.solve(method, prior, op, y, steps=3, generator=gen(0), **options,
                    callback=lambda i, t, x, x0: seen.append((i, t, tuple(x.shape))))
    assert [s[0] for s in seen] == [0, 1, 2] and seen[0][1] > seen[-1][1] and seen[0][2] == (2, 1, 4, 5)


@pytest.mark.parametrize("method", ["dps", "mpgd"])
def test_kernel_noise_source_is_reproducible(setup, method):
    prior, op, y = setup
    a = diffsolve.solve(method, prior, op, y, steps=3, generator=gen(4), noise_source="kernel")
    b = diffsolve.solve(method, prior, op, y, steps=3, generator=gen(4), noise_source="kernel")
    c = diffsolve.solve(method, prior, op, y, steps=3, generator=gen(4))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)  # a different (in-kernel) noise stream


def test_timesteps_alone_set_the_step_count(setup):
    """An explicit timestep list is the schedule: N is its length, with or without steps=."""
    prior, op, y = setup
    ts = [900, 400, 50]
    ref = diffsolve.solve("mpgd", prior, op, y, steps=3, timesteps=ts, generator=gen(5))
    for given in (ts, torch.tensor(ts), tuple(ts)):
        got = diffsolve.solve("mpgd", prior, op, y, timesteps=given, generator=gen(5))
        torch.testing.assert_close(got, ref, rtol=0, atol=0)
    assert diffsolve.solvers.Sampling(timesteps=ts).steps == 3
    with pytest.raises(TypeError, match="needs steps= .* or timesteps="):
        diffsolve.solvers.Sampling()
    with pytest.raises(TypeError, match="needs steps= .* or timesteps="):
        mpgd(prior, op, y)
    with pytest.raises(TypeError, match="timesteps must be a 1-D sequence"):
        diffsolve.solve("mpgd", prior, op, y, timesteps=900)
    with pytest.raises(ValueError, match="strictly decreasing"):
        diffsolve.solve("mpgd", prior, op, y, timesteps=[50, 400])


def test_a_misfit_x_T_is_named_and_y_with_a_graph_is_read_quietly(setup):
    prior, op, y = setup
    with pytest.raises(ValueError, match=r"x_T of shape \(2, 1, 3, 5\) does not fit"):
        diffsolve.solve("mpgd", prior, op, y, steps=2, x_T=torch.zeros(2, 1, 3, 5, dtype=D))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "converting a tensor with requires_grad to a scalar" from the checks
        out = diffsolve.solve("mpgd", prior, op, y.clone().requires_grad_(True), steps=2, generator=gen(1))
    torch.testing.assert_close(out, diffsolve.solve("mpgd", prior, op, y, steps=2, generator=gen(1)), rtol=0, atol=0)


def test_the_tikhonov_baseline_solves_exactly_in_float64_and_returns_float32():
    """A λ sweep's small λ leaves a float32 exact solve above its tol (a warning in every eval): the baseline's one
    exact solve runs in float64 and returns y's dtype."""
    import warnings

    from diffsolve.operators import SuperResolution

    op = SuperResolution(4)
    y = op.A(torch.rand(2, 3, 64, 64, generator=gen(0)) * 2 - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = diffsolve.solve("tikhonov", None, op, y, lam=1e-3)
    assert x.dtype == torch.float32
    torch.testing.assert_close(x, op.tikhonov(y.double(), 1e-3).float(), rtol=0, atol=0)
