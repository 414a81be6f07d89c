"""Morozov's discrepancy principle on a result (``_inverse.discrepancy_pull``) and every method given σ, which
finishes with it: against a dense bisection, its three cases, and that it acts exactly where a run under-fits y."""

from __future__ import annotations

import pytest
import torch
from _small_problem import OPS, SHAPE, dense_discrepancy_pull, gen, measure, prior

from diffsolve.models.priors import operator_matrix
from diffsolve import solve
from diffsolve.solvers._inverse import discrepancy_pull, final_residual, measured_entries

D = torch.float64
SIGMA = 0.05


def _consistency(op, x, y):
    return final_residual(op, x, y) / SIGMA


@pytest.mark.parametrize("name", sorted(OPS))
def test_pull_matches_dense_bisection(name):
    """Sample 0 misfits y (pulled to consistency 1), sample 1 fits it already (unchanged, bit for bit)."""
    op = OPS[name]()
    y = measure(op, sigma=SIGMA)
    truth_like = op.pseudo_inverse(y) if name != "denoise" else y.clone()
    x = torch.stack([torch.randn(SHAPE, generator=gen(5), dtype=D), truth_like[1]])
    v = 1.0  # x's error taken as large: x* would fit y below the noise, so the pull stops on the way
    out = discrepancy_pull(op, x, y, SIGMA, v)
    ref = dense_discrepancy_pull(operator_matrix(op, SHAPE), x, y, SIGMA, v, measured_entries(op, y))
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-9)
    dc = _consistency(op, out, y)
    assert float(_consistency(op, x, y)[0]) > 2 and float(dc[0]) == pytest.approx(1.0, abs=1e-9)
    assert float(_consistency(op, x, y)[1]) < 1 and torch.equal(out[1], x[1])


@pytest.mark.parametrize("name", ["blur", "sr"])
def test_pull_falls_back_to_the_unit_variance(name):
    """A tiny v (x trusted far more than y): x*(v) barely moves and stays above the noise level, so the search
    runs towards x*(1) instead and still meets it; the direction is x*(1)'s, not a rescaled x*(v)'s."""
    op = OPS[name]()
    y = measure(op, sigma=SIGMA)
    x = torch.randn(2, *SHAPE, generator=gen(6), dtype=D)
    v = 1e-4
    a = operator_matrix(op, SHAPE)
    r = (y.flatten(1) - x.flatten(1) @ a.T).T
    near = x.flatten(1) + (v * a.T @ torch.linalg.solve(SIGMA**2 * torch.eye(a.shape[0], dtype=D) + v * a @ a.T, r)).T
    assert bool((_consistency(op, near.view_as(x), y) > 1.5).all())  # x*(v) cannot reach the noise level
    out = discrepancy_pull(op, x, y, SIGMA, v)
    ref = dense_discrepancy_pull(a, x, y, SIGMA, v, measured_entries(op, y))
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-9)
    torch.testing.assert_close(_consistency(op, out, y), torch.ones(2, dtype=D), rtol=0, atol=1e-9)


#: per method, options that leave two steps short of y (prior-heavy DiffPIR and RED-diff)
UNDER_FIT = {"cdps": {}, "daps": {}, "ddnm": {}, "ddrm": {}, "diffpir": {"lam": 1e4}, "dps": {}, "mmps": {},
             "mpgd": {}, "pigdm": {}, "reddiff": {"lam": 1e2}}
RUNS = {name: (lambda op, y, name=name, **k: solve(name, prior(), op, y, sigma=SIGMA, **UNDER_FIT[name], **k))
        for name in UNDER_FIT}


@pytest.mark.filterwarnings("ignore::diffsolve.solvers._inverse.DataConsistencyWarning")  # discrepancy=False
@pytest.mark.parametrize("method", sorted(RUNS))
def test_methods_finish_within_the_noise(method):
    """Two steps under-fit a random inpainting (the last model call sees x_t far noisier than y): the paper's last
    step leaves the observed pixels above the noise level; the default meets ‖A x − y‖ = σ√m per sample and
    changes nothing a generator-for-generator run with discrepancy=False already fits."""
    op = OPS["inpaint"]()
    y = measure(op, sigma=SIGMA, batch=3)
    paper = RUNS[method](op, y, steps=2, generator=[gen(b) for b in range(3)], discrepancy=False)
    held = RUNS[method](op, y, steps=2, generator=[gen(b) for b in range(3)])
    before, after = _consistency(op, paper, y), _consistency(op, held, y)
    assert bool((before > 1.2).any())
    for b in range(3):
        if before[b] > 1:
            assert float(after[b]) == pytest.approx(1.0, abs=1e-9)
        else:
            assert torch.equal(held[b], paper[b])
    with pytest.raises(TypeError, match="discrepancy"):
        RUNS[method](op, y, steps=2, discrepancy="yes")
