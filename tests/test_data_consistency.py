"""Data consistency ‖A x − y‖/(σ√m) counts only measured entries: the truth scores ≈ 1 on every operator."""

from __future__ import annotations

import pytest
import torch

from diffsolve.metrics import data_consistency
from diffsolve.operators import GaussianBlur, Inpainting, SuperResolution

SIGMA = 0.05


@pytest.mark.parametrize("op", [Inpainting.random(64, missing=0.7, seed=0), Inpainting.box(64, box=32, margin=8),
                                GaussianBlur(), SuperResolution(4)], ids=["random", "box", "blur", "sr4"])
def test_the_truth_scores_one(op):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    y = op.A(x) + SIGMA * op.A(torch.randn(x.shape, generator=g)) if isinstance(op, Inpainting) else None
    if y is None:
        ax = op.A(x)
        y = ax + SIGMA * torch.randn(ax.shape, generator=g)
    dc = data_consistency(op, x, y, SIGMA)
    assert torch.allclose(dc, torch.ones(2, dtype=dc.dtype), atol=0.05), dc


def test_masks_count_only_the_observed_pixels():
    mask = torch.zeros(4, 5)
    mask[1:3, 2:] = 1
    op = Inpainting(mask)
    assert op.measured_entries(torch.zeros(2, 3, 4, 5)).tolist() == [18.0, 18.0]
    assert SuperResolution(4).measured_entries(torch.zeros(2, 3, 4, 5)).tolist() == [60.0, 60.0]


def test_noise_in_the_holes_is_not_data():
    """The README's y = GaussianNoise(σ)(A x) puts noise on a mask's missing pixels too: the truth still scores ≈ 1
    (before ``data_part`` it scored √(1/observed fraction) ≈ 1.8 on random inpainting), and ``data_part`` keeps
    observed entries exactly, NaN included, for signed weights too. It is a product with 1[mask ≠ 0] (the solvers
    check y is finite before the loop), so a non-finite entry at a missing pixel stays non-finite: NaN is never
    turned into a number."""
    from diffsolve.operators import GaussianNoise

    g = torch.Generator().manual_seed(1)
    op = Inpainting.random(64, missing=0.7, seed=0)
    x = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    y = GaussianNoise(SIGMA)(op.A(x), generator=g)
    dc = data_consistency(op, x, y, SIGMA)
    assert torch.allclose(dc, torch.ones(2, dtype=dc.dtype), atol=0.05), dc
    weights = torch.tensor([[0.0, -2.0, 0.5], [1.0, 0.0, 3.0]], dtype=torch.float64)
    r = torch.tensor([[[[1.0, float("nan"), 2.0], [float("nan"), 5.0, -1.0]]]], dtype=torch.float64)
    part = Inpainting(weights).data_part(r)
    expected = torch.tensor([[[[0.0, float("nan"), 2.0], [float("nan"), 0.0, -1.0]]]], dtype=torch.float64)
    assert torch.equal(part.isnan(), expected.isnan())
    assert torch.equal(part.nan_to_num(), expected.nan_to_num())
    assert GaussianBlur(3, 0.8).data_part(r) is r  # default: every entry is data
    hole_nan = torch.zeros(1, 1, 2, 3, dtype=torch.float64)
    hole_nan[0, 0, 0, 0] = float("nan")  # weight 0 there
    assert Inpainting(weights).data_part(hole_nan).isnan().tolist() == hole_nan.isnan().tolist()


# --------------------------------------------------------------------------- DataConsistencyWarning
def _exact_problem():
    """An exact Gaussian prior (tests/_small_problem.py) and its blurred, noisy measurement, σ = 0.05."""
    from _small_problem import OPS, measure, prior

    op = OPS["blur"]()
    return prior(), op, measure(op, batch=2, sigma=SIGMA)


@pytest.mark.parametrize("name", ["cdps", "pigdm", "ddrm", "ddnm"])  # MMPS is exact on a Gaussian prior
def test_a_result_that_ignores_y_is_named(name):
    """One step returns (about) the prior's Tweedie mean at t = T: y is ignored, and the warning says so with the
    value, the sample and the fixes; 50 steps on the same exact-prior problem fit y and stay silent. (The paper's
    result, ``discrepancy=False``: by default the one-step result is pulled to the noise level, tested below.)"""
    import warnings

    import diffsolve
    from diffsolve.solvers import DataConsistencyWarning
    from diffsolve.solvers._inverse import UNFIT_CONSISTENCY

    den, op, y = _exact_problem()
    g = [torch.Generator().manual_seed(i) for i in range(2)]
    with pytest.warns(DataConsistencyWarning, match=rf"{name}: the result does not fit y: .* with steps=1: use more "
                                                   "steps, or check sigma"):
        x = diffsolve.solve(name, den, op, y, steps=1, sigma=SIGMA, generator=g, discrepancy=False)
    assert float(data_consistency(op, x, y, SIGMA).max()) > UNFIT_CONSISTENCY  # the warning tells the truth
    with warnings.catch_warnings():  # the default ends within the noise: silent
        warnings.simplefilter("error", DataConsistencyWarning)
        x = diffsolve.solve(name, den, op, y, steps=1, sigma=SIGMA, generator=g)
    assert float(data_consistency(op, x, y, SIGMA).max()) <= UNFIT_CONSISTENCY
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataConsistencyWarning)
        x = diffsolve.solve(name, den, op, y, steps=50, sigma=SIGMA, generator=g)
    assert float(data_consistency(op, x, y, SIGMA).max()) <= UNFIT_CONSISTENCY


def test_the_warning_needs_sigma_and_a_measurement():
    """Without σ there is no noise level to compare with (DPS, MPGD, DDNM, RED-diff take it as optional), and MPGD
    guided by a loss has no y: no check, whatever the result."""
    import warnings

    import diffsolve
    from diffsolve.solvers import DataConsistencyWarning, mpgd

    den, op, y = _exact_problem()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataConsistencyWarning)
        diffsolve.solve("ddnm", den, op, y, steps=1)  # σ = 0: hard data consistency, nothing to compare with
        mpgd(den, None, None, shape=(2, 1, 4, 4), dtype=torch.float64, steps=1,
             loss=lambda v: v.flatten(1).square().sum(1))
