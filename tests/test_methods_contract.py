"""The one suite every registered model-based inverse method runs through (docs/adding-a-method.md).

Adding a method adds one line to ``CASES``: the options that make a short run meaningful. Each case is
checked for: an exact-prior sanity bound (the sample mean near the exact posterior mean of a Gaussian
prior), every kernel backend against torch (float64, the operator routed by the solver's ``backend``),
the backend reaching every kernel (a spy on the dispatch table), batch independence under a list of
generators, bad input rejected before the first model call, the result's consistency with y checked once after
the loop, and the ``return_info`` keys.
"""

from __future__ import annotations

import pytest
import torch
from _backends import fast_backends

import diffsolve
from diffsolve.kernels import _dispatch
from diffsolve.methods import METHODS
from diffsolve.models import GaussianPrior
from diffsolve.operators import GaussianBlur, Inpainting

D = torch.float64
SIGMA = 0.05
SIZE = 6

#: method -> its own options for these tests (the shared sampling options are set by each test)
CASES: dict[str, dict] = {
    "dps": {},
    "mpgd": {},
    "cdps": {"sigma": SIGMA},
    "pigdm": {"sigma": SIGMA},
    "diffpir": {"sigma": SIGMA},
    "ddnm": {"sigma": SIGMA},
    "ddrm": {"sigma": SIGMA},
    "daps": {"sigma": SIGMA, "ode_steps": 1, "langevin_steps": 5, "lr": 2e-3},  # a short inner loop
    "reddiff": {},
    "mmps": {"sigma": SIGMA},
}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def smooth_prior() -> GaussianPrior:
    idx = torch.arange(SIZE * SIZE)
    d2 = ((idx // SIZE)[:, None] - (idx // SIZE)[None]) ** 2 + ((idx % SIZE)[:, None] - (idx % SIZE)[None]) ** 2
    cov = 0.25 * torch.exp(-d2.double() / 4.0) + 1e-2 * torch.eye(SIZE * SIZE, dtype=D)
    return GaussianPrior(0.1 * torch.randn(1, SIZE, SIZE, generator=gen(3), dtype=D), cov)


def operators(backend: str = "auto") -> dict:
    return {"inpaint": Inpainting.random(SIZE, missing=0.5, seed=1, backend=backend),
            "blur": GaussianBlur(3, 0.8, backend=backend)}


class Counting:
    """A denoiser that counts its calls (to prove a check ran before the loop)."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0
        self.alphas_cumprod = inner.alphas_cumprod

    def __call__(self, x, t):
        self.calls += 1
        return self.inner(x, t)


def measurement(op, prior, batch: int, seed: int = 0) -> torch.Tensor:
    x = prior.sample(1, generator=gen(seed), dtype=D)
    y = op.A(x) + SIGMA * torch.randn(op.A(x).shape, generator=gen(seed + 1), dtype=D)
    return y.expand(batch, *y.shape[1:]).contiguous()


def run(name: str, prior, op, y, **sampling):
    context = torch.enable_grad() if METHODS[name].backward else torch.no_grad()
    with context:
        return diffsolve.solve(name, prior, op, y, **CASES[name], **sampling)


@pytest.mark.parametrize("task", ["inpaint", "blur"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_exact_prior_sample_mean_near_the_posterior_mean(name, task):
    prior, op = smooth_prior(), operators()[task]
    y = measurement(op, prior, batch=64)
    post = prior.posterior(op, y[0], sigma=SIGMA)
    x = run(name, prior, op, y, steps=30, generator=gen(5))
    gap = (x.mean(0).flatten() - post.mean.flatten()).norm() / (prior.means[0].flatten() - post.mean.flatten()).norm()
    assert torch.isfinite(x).all()
    assert gap < 0.6, f"{name} on {task}: mean gap {float(gap):.3f} to the exact posterior mean"


@pytest.mark.parametrize("backend", fast_backends())
@pytest.mark.parametrize("name", sorted(CASES))
def test_every_backend_agrees_with_torch(name, backend):
    prior = smooth_prior()
    results = {}
    for be in ("torch", backend):
        op = operators()["blur"]  # built on "auto": the solver's backend must reach it
        y = measurement(op, prior, batch=2)
        results[be] = run(name, prior, op, y, steps=4, generator=gen(7), backend=be)
    torch.testing.assert_close(results[backend], results["torch"], rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("backend", ["torch", *fast_backends(("cpp",))])
@pytest.mark.parametrize("name", sorted(CASES))
def test_the_backend_reaches_every_kernel(name, backend, monkeypatch):
    prior, op = smooth_prior(), operators()["blur"]
    y = measurement(op, prior, batch=2)
    seen = []
    original = _dispatch.resolve

    def spy(op, chosen, device, dtype):
        seen.append((op, chosen))
        return original(op, chosen, device, dtype)

    monkeypatch.setattr(_dispatch, "resolve", spy)
    run(name, prior, op, y, steps=3, generator=gen(7), backend=backend)
    assert seen, f"{name} resolved no kernel"
    assert {chosen for _, chosen in seen} == {backend}, f"{name}: kernels resolved {sorted(set(seen))}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_generator_list_makes_each_sample_independent_of_its_batch(name):
    prior, op = smooth_prior(), operators()["inpaint"]
    y = measurement(op, prior, batch=3)
    together = run(name, prior, op, y, steps=5, generator=[gen(10), gen(11), gen(12)])
    alone = run(name, prior, op, y[1:2], steps=5, generator=[gen(11)])
    torch.testing.assert_close(together[1:2], alone, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", sorted(CASES))
def test_numpy_numbers_are_the_same_as_python_numbers(name):
    """steps as a NumPy integer and σ as a NumPy float32 (e.g. read from an array or a config) give the result
    of the equal Python numbers, bit for bit; a float step count and a NumPy bool stay refused."""
    import numpy as np

    prior, op = smooth_prior(), operators()["blur"]
    y = measurement(op, prior, batch=2)
    as_numpy, as_python = dict(CASES[name]), dict(CASES[name])
    if "sigma" in as_numpy:
        as_numpy["sigma"], as_python["sigma"] = np.float32(SIGMA), float(np.float32(SIGMA))
    with torch.enable_grad() if METHODS[name].backward else torch.no_grad():
        numpy_run = diffsolve.solve(name, prior, op, y, **as_numpy, steps=np.int64(4), generator=gen(3))
        python_run = diffsolve.solve(name, prior, op, y, **as_python, steps=4, generator=gen(3))
    assert torch.equal(numpy_run, python_run)
    for bad in (4.0, np.bool_(True)):
        with pytest.raises(TypeError, match="steps must be an int"):
            run(name, prior, op, y, steps=bad)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_rejected_before_the_first_model_call(name):
    prior, op = smooth_prior(), operators()["inpaint"]
    counting = Counting(prior)
    y = measurement(op, prior, batch=2)
    bad = y.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="y contains NaN"):
        run(name, counting, op, bad, steps=5)
    with pytest.raises(ValueError, match="steps"):
        run(name, counting, op, y, steps=0)
    with pytest.raises(TypeError, match="unknown option"):
        run(name, counting, op, y, steps=5, not_an_option=1)
    with pytest.raises(ValueError, match="generator"):
        run(name, counting, op, y, steps=5, generator=[gen(1)])
    assert counting.calls == 0


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_result_is_checked_against_y_after_the_loop(name, monkeypatch):
    """Every method given σ checks its result's consistency once, after the loop (``warn_if_unfit``, which warns
    where y is largely ignored, called by the solvers' shared ending ``finish_run``): a spy on the hook sees this
    call's name, x, y and σ."""
    from diffsolve.solvers import _inverse

    seen = []
    monkeypatch.setattr(_inverse, "warn_if_unfit", lambda *args, **kwargs: seen.append(args))
    prior, op = smooth_prior(), operators()["inpaint"]
    y = measurement(op, prior, batch=2)
    context = torch.enable_grad() if METHODS[name].backward else torch.no_grad()
    with context:
        x = diffsolve.solve(name, prior, op, y, **{**CASES[name], "sigma": SIGMA}, steps=3)
    assert len(seen) == 1
    got_name, got_op, got_x, got_y, got_sigma, steps = seen[0]
    assert got_name == name and got_x is x and got_y is y and got_sigma == SIGMA and steps == 3


@pytest.mark.parametrize("name", sorted(CASES))
def test_return_info_has_per_step_residuals(name):
    prior, op = smooth_prior(), operators()["inpaint"]
    y = measurement(op, prior, batch=2)

    class Counted:  # the model calls the method makes, against the NFE it reports
        calls = 0

        def __getattr__(self, key):
            return getattr(prior, key)

        def __call__(self, x, t):
            Counted.calls += 1
            return prior(x, t)

    x, info = run(name, Counted(), op, y, steps=5, generator=gen(3), return_info=True)
    assert info["nfe"] == Counted.calls >= 5
    assert x.shape == (2, 1, SIZE, SIZE)
    assert info["residual"].shape[1:] == (2,) and info["timesteps"].shape == (info["residual"].shape[0],)
    assert torch.isfinite(info["residual"]).all()
    # over the measured entries: y carries noise at the missing pixels too, which is not data
    expected = op.data_part(op.A(x) - y).flatten(1).norm(dim=1) / op.measured_entries(y).sqrt()
    torch.testing.assert_close(info["final_residual"], expected)
    if "sigma" in CASES[name]:
        torch.testing.assert_close(info["data_consistency"], expected / CASES[name]["sigma"])


def test_measurements_that_cannot_be_right_are_named():
    """A numpy y, a channel-last y, a 0–255 y: refused before the loop with the conversion; a [0, 1] y warns."""
    prior = GaussianPrior(torch.zeros(3, 8, 8, dtype=D), 0.2)
    op = GaussianBlur(3, 0.8)
    x = torch.rand(1, 3, 8, 8, generator=gen(0), dtype=D) * 2 - 1
    y = op.A(x)
    with pytest.raises(TypeError, match=r"torch.from_numpy\(y\)"):
        diffsolve.solve("mpgd", prior, op, y.numpy(), steps=2)
    with pytest.raises(ValueError, match=r"channel-last .* y.permute\(0, 3, 1, 2\)"):
        diffsolve.solve("mpgd", prior, op, y.permute(0, 2, 3, 1).contiguous(), steps=2)
    with pytest.raises(ValueError, match=r"y / 127.5 - 1"):
        diffsolve.solve("mpgd", prior, op, (y + 1) * 127.5, steps=2)
    with pytest.warns(UserWarning, match=r"2 \* y - 1"):
        diffsolve.solve("mpgd", prior, op, (y + 1) / 2 * 0.9, steps=2)


@pytest.mark.parametrize("device", ["meta", "mps", "xla"])
def test_an_unsupported_device_is_named(device):
    prior = GaussianPrior(torch.zeros(1, 4, 4, dtype=D), 0.3)
    with pytest.raises(ValueError, match=rf"device='{device}': diffsolve runs on 'cpu' and 'cuda'"):
        diffsolve.solvers.ddim(prior, (1, 1, 4, 4), steps=2, device=device)


@pytest.mark.parametrize("layout", ["per-sample", "per-channel"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_a_mask_per_sample_or_per_channel_runs_and_each_sample_is_its_own(name, layout):
    """``Inpainting`` takes a mask (B, 1, H, W) or (1, C, H, W): every method runs with it, and sample 1 in the batch
    is sample 1 alone with its own mask (a generator list)."""
    if layout == "per-sample":
        prior, shape = smooth_prior(), (3, 1, SIZE, SIZE)
    else:  # three channels, each its own mask
        prior = GaussianPrior(0.1 * torch.randn(3, SIZE, SIZE, generator=gen(7), dtype=D), 0.3)
        shape = (1, 3, SIZE, SIZE)
    mask = (torch.rand(shape, generator=gen(8)) > 0.5).to(D)
    mask[..., 0, 0] = 1  # every sample observes a pixel
    x = prior.sample(3, gen(9))
    y = Inpainting(mask).A(x) + SIGMA * torch.randn(x.shape, generator=gen(10), dtype=D)
    batch = run(name, prior, Inpainting(mask), y, steps=4, generator=[gen(11 + i) for i in range(3)])
    alone = run(name, prior, Inpainting(mask[1:2] if layout == "per-sample" else mask), y[1:2].clone(), steps=4,
                generator=[gen(12)])
    torch.testing.assert_close(batch[1:2], alone, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_sample_with_no_observed_pixel_is_refused_before_the_loop(name):
    prior = smooth_prior()
    counting = Counting(prior)
    mask = torch.ones(2, 1, SIZE, SIZE, dtype=D)
    mask[1] = 0
    y = Inpainting(mask).A(prior.sample(2, gen(13)))
    with pytest.raises(ValueError, match=r"measures nothing of sample\(s\) \[1\]"):
        run(name, counting, Inpainting(mask), y, steps=4)
    assert counting.calls == 0


@pytest.mark.parametrize("name", sorted(CASES))
def test_missing_pixels_carry_no_data(name):
    """Whatever y holds at a mask's missing pixels (the README's GaussianNoise(σ)(A x) puts noise there; a real
    photo has paint or the scene) changes neither the result, nor ``return_info``, nor the data consistency:
    residual norms count the measured entries only (``operator.data_part``)."""
    from diffsolve.metrics import data_consistency

    prior, op = smooth_prior(), operators()["inpaint"]
    x = prior.sample(2, gen(4))
    y = op.A(x) + SIGMA * op.A(torch.randn(x.shape, generator=gen(5), dtype=D))
    missing = (op.mask == 0).to(D)
    junk = y + missing * (3.0 * torch.randn(y.shape, generator=gen(6), dtype=D))
    assert (junk != y).any()
    runs = []
    for meas in (y, junk):
        with torch.enable_grad():
            runs.append(diffsolve.solve(name, prior, op, meas, steps=4, generator=gen(7), return_info=True,
                                        **CASES[name]))
    (a, info_a), (b, info_b) = runs
    assert torch.equal(a, b)
    for key, value in info_a.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            assert torch.allclose(value, info_b[key], rtol=1e-12, atol=1e-12), key
    assert torch.equal(data_consistency(op, a, y, SIGMA), data_consistency(op, a, junk, SIGMA))


def test_every_solver_is_a_function_of_diffsolve_solvers():
    """``diffsolve.solvers.<name>`` is the solver function for every registered method (a submodule of the same
    name would otherwise shadow it: ``from diffsolve.solvers import pigdm`` gave the module)."""
    import inspect

    import diffsolve.solvers as solvers

    names = sorted({m.solver for m in METHODS.values() if m.solver})
    assert len(names) >= 12
    for name in names:
        fn = getattr(solvers, name)
        assert inspect.isfunction(fn) and fn.__name__ == name, f"diffsolve.solvers.{name} is {fn!r}"
        assert name in solvers.__all__
        assert "sampling" in inspect.signature(inspect.unwrap(fn)).parameters
