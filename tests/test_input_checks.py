"""One home for input checks (kernels/_checks.py) and per-sample range checks at the public kernels.

- ``per_sample`` has one implementation that never casts or moves a tensor silently;
- the seed range is one constant, ``SEED_LIMIT = 2**64``;
- tensor-valued ᾱ, η, γ, λ, precisions and diagonals out of range are rejected by name (with
  ``check=True``, the default: one host sync), and ``check=False`` is the unchecked path for solvers.
"""

from __future__ import annotations

import pytest
import torch

from diffsolve.kernels import _checks, ddim_step, diagonal_posterior_step, fused_step, ge_step, mpgd_step
from diffsolve.kernels import posterior as posterior_mod
from diffsolve.kernels import step as step_mod
from diffsolve.operators import _validate

F64 = torch.float64


def _t(*v, dtype=F64):
    return torch.tensor(v, dtype=dtype)


@pytest.fixture
def xe():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 1, 4, 4, generator=g, dtype=F64), torch.randn(2, 1, 4, 4, generator=g, dtype=F64)


# ----------------------------------------------------------------------------- one per_sample
def test_per_sample_has_one_implementation():
    assert _validate.per_sample is _checks.per_sample
    assert step_mod.per_sample is _checks.per_sample and posterior_mod.per_sample is _checks.per_sample


def test_per_sample_refuses_silent_casts_and_moves():
    ref = torch.zeros(2, 1, 3, 3, dtype=F64)
    with pytest.raises(TypeError, match=r"shift must have the images' dtype torch.float64, got torch.float32; "
                                        r"convert it with shift.to\(torch.float64\)"):
        _checks.per_sample("shift", torch.ones(2), ref)
    with pytest.raises(TypeError, match="shift must have the images' dtype"):
        _checks.per_sample("shift", torch.ones(2, dtype=torch.int64), ref)
    with pytest.raises(ValueError, match=r"shift is on meta but the images are on cpu; move it there with "
                                         r"shift.to\('cpu'\)"):
        _checks.per_sample("shift", torch.ones(2, dtype=F64, device="meta"), ref)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="shift must be finite and >= 0"):
            _checks.per_sample("shift", bad, ref)
    with pytest.raises(TypeError, match="shift must be a number"):
        _checks.per_sample("shift", True, ref)
    out = _checks.per_sample("shift", torch.tensor(0.5, dtype=F64), ref)
    assert out.shape == (2,) and out.dtype == F64


def test_kernels_refuse_a_float64_alpha_with_float32_images(xe):
    x, e = (t.float() for t in xe)
    with pytest.raises(TypeError, match="alpha_bar_t must have the images' dtype torch.float32"):
        ddim_step(x, e, _t(0.3, 0.5), 0.6)  # was cast to float32 silently
    with pytest.raises(TypeError, match="precision must have the images' dtype"):
        diagonal_posterior_step(x, _t(1.0, 2.0), torch.ones(1, 1, 4, 4), x, 1.0)


# ----------------------------------------------------------------------------- one seed range
def test_seed_range_is_one_constant():
    assert _checks.SEED_LIMIT == 2**64
    assert step_mod.check_seeds(_checks.SEED_LIMIT - 1, 1) == 2**64 - 1
    assert step_mod.check_offset(_checks.SEED_LIMIT - 1) == 2**64 - 1
    with pytest.raises(ValueError, match=r"seed must lie in \[0, 2\*\*64\)"):
        step_mod.check_seeds(_checks.SEED_LIMIT, 1)
    with pytest.raises(ValueError, match=r"offset must lie in \[0, 2\*\*64\)"):
        step_mod.check_offset(_checks.SEED_LIMIT)
    with pytest.raises(TypeError, match="offset must be an int"):
        step_mod.check_offset(1.5)
    assert _checks.check_seed("seed", 0) == 0


# ----------------------------------------------------------------------------- step kernels: tensor ranges
ALPHA_CASES = [
    ("alpha_bar_t", dict(alpha_bar_t=_t(0.3, 1.2)), r"alpha_bar_t must lie in \(0, 1\) per sample.*1\.2"),
    ("alpha_bar_t", dict(alpha_bar_t=_t(0.3, 1.0)), r"alpha_bar_t must lie in \(0, 1\)"),
    ("alpha_bar_t", dict(alpha_bar_t=_t(0.3, 0.0)), r"alpha_bar_t must lie in \(0, 1\)"),
    ("alpha_bar_t", dict(alpha_bar_t=_t(-0.2, 0.3)), r"alpha_bar_t must lie in \(0, 1\).*-0\.2"),
    ("alpha_bar_t", dict(alpha_bar_t=_t(0.3, float("nan"))), r"alpha_bar_t must lie in \(0, 1\)"),
    ("alpha_bar_s", dict(alpha_bar_s=_t(0.6, 1.5)), r"alpha_bar_s must lie in \(0, 1\].*1\.5"),
    ("alpha_bar_s", dict(alpha_bar_s=_t(0.6, 0.0)), r"alpha_bar_s must lie in \(0, 1\]"),
    ("alpha_bar_s", dict(alpha_bar_t=_t(0.3, 0.7), eta=1.0), "alpha_bar_s must be >= alpha_bar_t"),
    ("alpha_bar_s", dict(alpha_bar_t=_t(0.3, 0.7), eta=_t(0.0, 0.5)), "alpha_bar_s must be >= alpha_bar_t"),
    ("eta", dict(eta=_t(0.5, 1.5)), r"eta must be finite and in \[0.0, 1.0\]"),
    ("eta", dict(eta=_t(-0.5, 0.5)), r"eta must be finite and in \[0.0, 1.0\]"),
]


@pytest.mark.parametrize("arg,kw,match", ALPHA_CASES)
def test_ddim_step_rejects_tensor_values_out_of_range(xe, arg, kw, match):
    x, e = xe
    args = {"alpha_bar_t": 0.3, "alpha_bar_s": 0.6, **{k: v for k, v in kw.items() if k != "eta"}}
    eta = kw.get("eta", 0.0)
    with pytest.raises(ValueError, match=match) as err:
        ddim_step(x, e, args["alpha_bar_t"], args["alpha_bar_s"], eta=eta, backend="torch")
    assert "check=False" in str(err.value)  # the message names the unchecked path
    with pytest.raises(ValueError, match=match):
        mpgd_step(x, e, e, args["alpha_bar_t"], args["alpha_bar_s"], step_size=0.1, eta=eta, backend="torch")


def test_alpha_above_one_gave_nan_and_check_false_skips(xe):
    x, e = xe
    out = ddim_step(x, e, _t(0.3, 1.2), 0.6, check=False, backend="torch")  # the unchecked path: as before
    assert bool(out[1].isnan().all()) and bool(torch.isfinite(out[0]).all())


def test_ddim_step_per_sample_inversion_allowed_where_deterministic(xe):
    x, e = xe
    out = ddim_step(x, e, _t(0.3, 0.7), 0.6, eta=_t(0.5, 0.0), backend="torch")  # sample 1: η = 0
    assert bool(torch.isfinite(out).all())


@pytest.mark.parametrize("v", [-1.0, float("nan"), float("inf")])
def test_scales_as_tensors_are_checked(xe, v):
    x, e = xe
    with pytest.raises(ValueError, match="guidance_scale must be finite and in"):
        ddim_step(x, e, 0.3, 0.6, guidance=e, guidance_scale=_t(0.1, v))
    with pytest.raises(ValueError, match="step_size must be finite and in"):
        mpgd_step(x, e, e, 0.3, 0.6, step_size=_t(0.1, v))
    with pytest.raises(ValueError, match="gamma must be finite and in"):
        ge_step(x, e, e, 0.3, 0.6, gamma=_t(2.0, v))


def test_ge_step_checks_tensor_alphas(xe):
    x, e = xe
    with pytest.raises(ValueError, match=r"alpha_bar_t must lie in \(0, 1\)"):
        ge_step(x, e, None, _t(0.3, 1.2), 0.6)
    with pytest.raises(ValueError, match=r"alpha_bar_s must lie in \(0, 1\]"):
        ge_step(x, e, None, 0.3, _t(0.6, -1.0))
    with pytest.raises(ValueError, match="alpha_bar_s must be >= alpha_bar_t"):
        ge_step(x, e, None, _t(0.3, 0.7), 0.6, mu=0.5)
    ge_step(x, e, None, _t(0.3, 0.7), 0.6)  # μ = 0: a deterministic inversion step is fine


def test_fused_step_checks_coefs(xe):
    x, e = xe
    with pytest.raises(ValueError, match="coefs must be finite"):
        fused_step(x, e, torch.full((2, 8), float("nan"), dtype=F64))
    with pytest.raises(TypeError, match="coefs must have the images' dtype"):
        fused_step(x, e, torch.zeros(2, 8))  # was cast silently
    fused_step(x, e, torch.full((2, 8), float("nan"), dtype=F64), check=False)


def test_valid_tensors_match_floats(xe):
    x, e = xe
    got = ddim_step(x, e, _t(0.3, 0.3), _t(0.6, 0.6), eta=_t(0.5, 0.5), noise=e, guidance=e,
                    guidance_scale=_t(0.2, 0.2))
    want = ddim_step(x, e, 0.3, 0.6, eta=0.5, noise=e, guidance=e, guidance_scale=0.2)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_no_tensor_check_for_numbers_or_check_false(xe, monkeypatch):
    """Python numbers: no tensor check (no sync); check=False: never called."""
    x, e = xe
    seen = []
    monkeypatch.setattr(step_mod, "check_tensor_ranges", lambda checks: seen.append(len(checks)))
    monkeypatch.setattr(posterior_mod, "check_tensor_ranges", lambda checks: seen.append(len(checks)))
    ddim_step(x, e, 0.3, 0.6, eta=0.5, noise=e)
    mpgd_step(x, e, e, 0.3, 0.6, step_size=0.1)
    ge_step(x, e, e, 0.3, 0.6)
    assert seen == [0, 0, 0]
    seen.clear()
    ddim_step(x, e, _t(0.3, 0.4), 0.6, check=False)
    mpgd_step(x, e, e, _t(0.3, 0.4), 0.6, step_size=_t(0.1, 0.1), check=False)
    ge_step(x, e, e, _t(0.3, 0.4), 0.6, check=False)
    fused_step(x, e, torch.zeros(2, 8, dtype=F64), check=False)
    diagonal_posterior_step(x, _t(1.0, 2.0), torch.ones(1, 1, 4, 4, dtype=F64), x, 1.0, check=False)
    assert seen == []
    ddim_step(x, e, _t(0.3, 0.4), 0.6)
    assert seen == [2]  # ᾱ_t and the coefficients, in one read (η = 0: no order check)


def test_check_tensor_ranges_reads_back_once(monkeypatch):
    calls = []
    real = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: calls.append(1) or real(self))
    v = _t(0.5, 0.6)
    _checks.check_tensor_ranges([("a", v, v < 0, "r", "f"), ("b", v, v > 1, "r", "f"), ("c", v, v != v, "r", "f")])
    assert len(calls) == 1
    _checks.check_tensor_ranges([])
    assert len(calls) == 1


# ----------------------------------------------------------------------------- posterior
@pytest.mark.parametrize("name", ["precision", "noise_precision"])
@pytest.mark.parametrize("v", [-1.0, 0.0, float("nan"), float("inf")])
def test_posterior_rejects_bad_precision_tensors(xe, name, v):
    x, _ = xe
    kw = dict(precision=1.0, noise_precision=2.0)
    kw[name] = _t(1.0, v)
    with pytest.raises(ValueError, match=f"{name} must be finite and > 0 per sample") as err:
        diagonal_posterior_step(x, kw["precision"], torch.ones(1, 1, 4, 4, dtype=F64), x, kw["noise_precision"])
    assert "check=False" in str(err.value)


def test_posterior_rejects_negative_diagonal_and_names_the_fix(xe):
    x, e = xe
    g = torch.Generator().manual_seed(3)
    d = torch.rand(1, 1, 4, 4, generator=g, dtype=F64) - 0.5
    with pytest.raises(ValueError, match=r"diag must be non-negative.*diag.abs\(\) and target \* diag.sign\(\)"):
        diagonal_posterior_step(x, 1.0, d, e, 2.0)
    # the fix the message names gives the posterior of A = diag(d) (the unchecked path computes it directly)
    want = diagonal_posterior_step(x, 1.0, d, e, 2.0, check=False)
    torch.testing.assert_close(diagonal_posterior_step(x, 1.0, d.abs(), e * d.sign(), 2.0), want)
    diagonal_posterior_step(x, 1.0, torch.zeros(1, 1, 4, 4, dtype=F64), e, 2.0)  # zero is fine (inpainting)
