"""Morozov's discrepancy principle on a result (``_inverse.discrepancy_pull``) and every method given σ, which
finishes with it: against a dense bisection, its three cases, and that it acts exactly where a run under-fits y."""

from __future__ import annotations

import pytest
import torch
from _small_problem import OPS, SHAPE, correlated_prior, dense_discrepancy_pull, gen, measure, prior

from diffsolve.models.priors import operator_matrix
from diffsolve import solve
from diffsolve.solvers._inverse import discrepancy_pull, final_residual, measured_entries

D = torch.float64
SIGMA = 0.05


def _consistency(op, x, y):
    return final_residual(op, x, y) / SIGMA


def _ceiling(op, y):
    """(B,) the data consistency the pull stops at: √(1 + 3√(2/m)), the χ²_m band's 3-σ edge."""
    m = measured_entries(op, y)
    return (1 + 3 * (2 / m).sqrt()).sqrt()


@pytest.mark.parametrize("name", sorted(OPS))
def test_pull_matches_dense_bisection(name):
    """Sample 0 misfits y (pulled to the χ² band's edge), sample 1 fits it already (unchanged, bit for bit)."""
    op = OPS[name]()
    y = measure(op, sigma=SIGMA)
    truth_like = op.pseudo_inverse(y) if name != "denoise" else y.clone()
    x = torch.stack([torch.randn(SHAPE, generator=gen(5), dtype=D), truth_like[1]])
    v = 1.0  # x's error taken as large: x* would fit y below the noise, so the pull stops on the way
    out = discrepancy_pull(op, x, y, SIGMA, v)
    ref = dense_discrepancy_pull(operator_matrix(op, SHAPE), x, y, SIGMA, v, measured_entries(op, y))
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-9)
    dc = _consistency(op, out, y)
    assert float(_consistency(op, x, y)[0]) > 2 and float(dc[0]) == pytest.approx(float(_ceiling(op, y)[0]), abs=1e-9)
    assert float(_consistency(op, x, y)[1]) < 1 and torch.equal(out[1], x[1])


def test_pull_continues_past_the_posterior_mean():
    """Where the whole move to x* stays above the ceiling (a tiny v: x trusted far more than y), the first round
    ends at x*, the Gaussian posterior mean, and the next ones start from there with v × 10 until the residual
    reaches the ceiling: the dense iterated-Tikhonov reference, and the ceiling itself."""
    op = OPS["blur"]()
    y = measure(op, sigma=SIGMA)
    x = torch.randn(2, *SHAPE, generator=gen(6), dtype=D)
    v = 3e-3
    a = operator_matrix(op, SHAPE)
    r = (y.flatten(1) - x.flatten(1) @ a.T).T
    star = x.flatten(1) + (v * a.T @ torch.linalg.solve(SIGMA**2 * torch.eye(16, dtype=D) + v * a @ a.T, r)).T
    assert bool((final_residual(op, star.view_as(x), y) / SIGMA > _ceiling(op, y)).all())  # one round is not enough
    one_round = dense_discrepancy_pull(a, x, y, SIGMA, v, measured_entries(op, y), rounds=1)
    torch.testing.assert_close(one_round.flatten(1), star, rtol=0, atol=1e-10)
    out = discrepancy_pull(op, x, y, SIGMA, v)
    torch.testing.assert_close(out, dense_discrepancy_pull(a, x, y, SIGMA, v, measured_entries(op, y)), rtol=0,
                               atol=1e-9)
    torch.testing.assert_close(_consistency(op, out, y), _ceiling(op, y), rtol=0, atol=1e-9)


def test_pull_rounds_are_bounded():
    """σ ten times below y's real noise and a tiny first v: no round reaches the ceiling. The rounds go on until v
    reaches 1, 1 + ⌈log₁₀(1/v)⌉ of them (the dense reference's), and stop there, nearer y than before but above the
    band (the method then warns)."""
    import math

    from diffsolve.solvers._inverse import PULL_ROUNDS

    op = OPS["blur"]()
    y = measure(op, sigma=SIGMA)
    x = torch.randn(2, *SHAPE, generator=gen(6), dtype=D)
    tiny, v = SIGMA * 0.1, 1e-8
    rounds = 1 + math.ceil(math.log10(1 / v))
    assert rounds > PULL_ROUNDS
    out = discrepancy_pull(op, x, y, tiny, v)
    a = operator_matrix(op, SHAPE)
    ref = dense_discrepancy_pull(a, x, y, tiny, v, measured_entries(op, y), rounds=rounds)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-9)
    fewer = dense_discrepancy_pull(a, x, y, tiny, v, measured_entries(op, y), rounds=rounds - 1)
    assert not torch.allclose(out, fewer, rtol=0, atol=1e-6)  # the last round (v = 1) ran
    assert bool((final_residual(op, out, y) / tiny > _ceiling(op, y)).all())
    assert bool((final_residual(op, out, y) < final_residual(op, x, y)).all())


def test_a_tiny_first_v_still_reaches_the_noise_in_an_svd():
    """A last model call near t = 0 (DAPS at two levels) hands the pull v ≈ 1e-4 for a result far from y: three
    rounds (v up to 1e-2) left SR ×2 above the band; the rounds up to v = 1 end each sample at its edge."""
    from diffsolve.solvers._inverse import PULL_ROUNDS

    op = OPS["sr"]()
    y = measure(op, sigma=SIGMA)
    x = torch.randn(2, *SHAPE, generator=gen(8), dtype=D)
    a, m = operator_matrix(op, SHAPE), measured_entries(op, y)
    three = dense_discrepancy_pull(a, x, y, SIGMA, 1e-4, m, rounds=PULL_ROUNDS)
    assert bool((_consistency(op, three, y) > 1.5 * _ceiling(op, y)).all())
    out = discrepancy_pull(op, x, y, SIGMA, 1e-4)
    torch.testing.assert_close(_consistency(op, out, y), _ceiling(op, y), rtol=0, atol=1e-9)


def test_a_tiny_first_v_still_reaches_the_noise_with_cg(monkeypatch):
    """The same where CG takes each round's step (a reflect motion blur, no SVD): three rounds leave every sample
    above the band, the rounds up to v = 1 end each at its edge."""
    from diffsolve.operators import MotionBlur
    from diffsolve.solvers import _inverse

    op = MotionBlur(3, 0.5, seed=0)
    assert _inverse.range_svd(op, SHAPE[-2:], "test") is None
    y = measure(op, sigma=SIGMA)
    x = 3 * torch.randn(2, *SHAPE, generator=gen(8), dtype=D)
    out = discrepancy_pull(op, x, y, SIGMA, 1e-4)
    torch.testing.assert_close(_consistency(op, out, y), _ceiling(op, y), rtol=0, atol=1e-9)
    monkeypatch.setattr(_inverse, "PULL_MAX_ROUNDS", _inverse.PULL_ROUNDS)
    three = discrepancy_pull(op, x, y, SIGMA, 1e-4)
    assert bool((_consistency(op, three, y) > 1.5 * _ceiling(op, y)).all())


def test_the_round_count_takes_a_tensor_variance_and_is_capped():
    """v as a per-sample tensor runs as the same float (its smallest value sets the rounds); a subnormal v neither
    overflows the round count nor runs more than PULL_MAX_ROUNDS rounds (v then still far below 1)."""
    from diffsolve.solvers._inverse import PULL_MAX_ROUNDS, pull_rounds

    assert pull_rounds(1e-4) == 5 and pull_rounds(0.5) == pull_rounds(2.0) == 3 and pull_rounds(float("nan")) == 3

    op = OPS["sr"]()
    y = measure(op, sigma=SIGMA)
    x = torch.randn(2, *SHAPE, generator=gen(8), dtype=D)
    as_float = discrepancy_pull(op, x, y, SIGMA, 1e-4)
    torch.testing.assert_close(discrepancy_pull(op, x, y, SIGMA, torch.full((2, 1, 1, 1), 1e-4, dtype=D)), as_float,
                               rtol=0, atol=0)
    tiny = discrepancy_pull(op, x, y, SIGMA, 5e-324)
    a, m = operator_matrix(op, SHAPE), measured_entries(op, y)
    torch.testing.assert_close(tiny, dense_discrepancy_pull(a, x, y, SIGMA, 5e-324, m, rounds=PULL_MAX_ROUNDS),
                               rtol=0, atol=1e-9)


def test_a_draw_within_the_noise_band_is_left_alone():
    """An exact posterior draw has E‖A x − y‖² = m σ²: one slightly above σ√m (inside the χ² band) is not moved."""
    op = OPS["denoise"]()
    y = measure(op, sigma=SIGMA)
    m = measured_entries(op, y)
    scale = (1 + 1.5 * (2 / m).sqrt()).sqrt()  # half-way into the band
    x = y - scale.view(-1, 1, 1, 1) * SIGMA * torch.nn.functional.normalize(
        torch.randn(y.shape, generator=gen(4), dtype=D).flatten(1), dim=1).view_as(y) * m.sqrt().view(-1, 1, 1, 1)
    assert bool((_consistency(op, x, y) > 1.01).all())
    assert torch.equal(discrepancy_pull(op, x, y, SIGMA, 0.03), x)


def test_a_batch_within_the_noise_runs_no_solve(monkeypatch):
    """Where no sample is above the ceiling the pull returns x itself without the solve (one host read after the
    loop); one sample above it and the solve runs for the batch (once per round: v = 0.03 is small against this
    blur's weak directions), the fitted sample still left bit for bit."""
    import diffsolve.solvers._inverse as inverse

    op = OPS["blur"]()
    y = measure(op, sigma=SIGMA)
    solved = []
    real = inverse.solver_of

    def counting(operator, max_iters=None, **options):
        solve = real(operator, max_iters, **options)
        return lambda *a, **k: solved.append(1) or solve(*a, **k)

    real_range = inverse.range_solve

    def counting_range(*a, **k):
        solved.append(1)
        return real_range(*a, **k)

    monkeypatch.setattr(inverse, "solver_of", counting)
    monkeypatch.setattr(inverse, "range_solve", counting_range)  # a blur with an SVD pulls in it
    x = torch.linalg.lstsq(operator_matrix(op, SHAPE), y.flatten(1).T).solution.T.reshape(y.shape[0], *SHAPE)
    assert bool((_consistency(op, x, y) < 1).all())  # the least-squares fit: within the noise
    assert discrepancy_pull(op, x, y, SIGMA, 0.03) is x and solved == []
    far = torch.cat([x[:1], torch.zeros_like(x[1:])])  # sample 1 misfits y
    out = discrepancy_pull(op, far, y, SIGMA, 0.03)
    assert len(solved) >= 1 and torch.equal(out[:1], x[:1]) and not torch.equal(out[1:], far[1:])
    torch.testing.assert_close(_consistency(op, out, y)[1:], _ceiling(op, y)[1:], rtol=0, atol=1e-9)


#: per method, options that leave two steps short of y (prior-heavy DiffPIR and RED-diff; MPGD with a fixed small ρ:
#: its default ρ scales with y's RMS, which is up to 1.8 here, beyond an image's [-1, 1])
UNDER_FIT = {"cdps": {}, "daps": {}, "ddnm": {}, "ddrm": {}, "diffpir": {"lam": 1e4}, "dps": {}, "mmps": {},
             "mpgd": {"rho": 1.0}, "pigdm": {}, "reddiff": {"lam": 1e2}}
RUNS = {name: (lambda op, y, name=name, **k: solve(name, prior(), op, y, sigma=SIGMA, **UNDER_FIT[name], **k))
        for name in UNDER_FIT}


@pytest.mark.filterwarnings("ignore::diffsolve.solvers._inverse.DataConsistencyWarning")  # discrepancy=False
@pytest.mark.parametrize("method", sorted(RUNS))
def test_methods_finish_within_the_noise(method):
    """Two steps under-fit a random inpainting (the last model call sees x_t far noisier than y): the paper's last
    step leaves the observed pixels above the noise level; the default ends at the χ² band's edge per sample and
    changes nothing a run with discrepancy=False already fits."""
    op = OPS["inpaint"]()
    y = measure(op, sigma=SIGMA, batch=3)
    paper = RUNS[method](op, y, steps=2, generator=[gen(b) for b in range(3)], discrepancy=False)
    held = RUNS[method](op, y, steps=2, generator=[gen(b) for b in range(3)])
    before, after = _consistency(op, paper, y), _consistency(op, held, y)
    assert bool((before > 1.2).any())
    edge = _ceiling(op, y)
    for b in range(3):
        if before[b] > edge[b]:
            assert float(after[b]) < float(before[b]) and float(after[b]) >= float(edge[b]) - 1e-9
        else:
            assert torch.equal(held[b], paper[b])
    with pytest.raises(TypeError, match="discrepancy"):
        RUNS[method](op, y, steps=2, discrepancy="yes")


def test_rounds_bring_an_unnormalised_kernel_to_the_noise(monkeypatch):
    """DAPS on a sharpening kernel (gains 1…9, σ fixed: its Langevin step, sized for the largest gain, leaves the
    gain-1 directions far from y): with one round the result stays 1.8–8× above the χ² band's edge for every sample
    of this batch; the default rounds end each at the edge."""
    from diffsolve.operators import Blur
    from diffsolve.solvers import _inverse

    op = Blur(torch.tensor([[0.0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=D))
    x = torch.randn(3, *SHAPE, generator=gen(1), dtype=D)
    y = op.A(x) + SIGMA * torch.randn(op.A(x).shape, generator=gen(2), dtype=D)

    def run():
        return solve("daps", prior(), op, y, sigma=SIGMA, steps=6, generator=gen(3))

    with pytest.warns(_inverse.DataConsistencyWarning):
        monkeypatch.setattr(_inverse, "PULL_MAX_ROUNDS", 1)
        one = run()
    assert bool((_consistency(op, one, y) > 1.5 * _ceiling(op, y)).all())
    monkeypatch.undo()
    torch.testing.assert_close(_consistency(op, run(), y), _ceiling(op, y), rtol=0, atol=1e-9)


def test_the_pull_builds_no_graph():
    """It runs after the sampling loop under no_grad: a result that carries a graph (DPS's x, a user's
    requires_grad x_T) does not grow one through the rounds' solves."""
    op = OPS["blur"]()
    y = measure(op, sigma=SIGMA)
    x = torch.randn(2, *SHAPE, generator=gen(6), dtype=D, requires_grad=True)
    out = discrepancy_pull(op, 2 * x, y, SIGMA, 0.03)
    assert out.grad_fn is None and not out.requires_grad


def _reflect_motion_problem(sigma: float):
    """Two photos at 16², float32, the task's motion blur (reflect boundary: CG, no exact solve), y at noise σ, and
    a smooth estimate of them (a Gaussian blur of the truth: misfits y like a last denoiser call's x̂0)."""
    from diffsolve.data import photo
    from diffsolve.operators import GaussianBlur
    from diffsolve.tasks import make_operator

    truth = torch.stack([photo(n, size=16) for n in ("camera", "hopper")])
    op = make_operator("motion_blur", (16, 16))
    y = op.A(truth) + sigma * torch.randn(op.A(truth).shape, generator=gen(1))
    return op, truth, y, GaussianBlur(5, 1.0).A(truth)


def test_a_nearly_noiseless_blur_without_an_exact_solve_is_fitted():
    """σ = 1e-3 on the reflect motion blur: the pull's plain CG to PULL_CG_TOL ends each sample at the χ² band's
    edge and brings it nearer the truth (ten CG iterations preconditioned by the blur's circulant version, the
    earlier default, left these two at 2.4 and 3.2)."""
    sigma = 1e-3
    op, truth, y, estimate = _reflect_motion_problem(sigma)
    out = discrepancy_pull(op, estimate, y, sigma, 1e-2)
    torch.testing.assert_close(final_residual(op, out, y) / sigma, _ceiling(op, y).float(), rtol=1e-4, atol=0)
    before, after = ((v - truth).flatten(1).norm(dim=1) for v in (estimate, out))
    assert bool((after < 0.6 * before).all())


def test_a_sample_pulled_with_cg_does_not_depend_on_its_batch():
    """A batch of three whose samples misfit y by different amounts: each pulled sample equals the same sample pulled
    alone (CG's per-sample tolerance freezes a sample once it is there, whatever the others still need)."""
    sigma = 1e-2
    op, truth, y, estimate = _reflect_motion_problem(sigma)
    x = torch.cat([estimate, 0.5 * estimate[:1]])
    y = torch.cat([y, y[:1]])
    batch = discrepancy_pull(op, x, y, sigma, 1e-2)
    for i in range(3):
        assert torch.equal(batch[i:i + 1], discrepancy_pull(op, x[i:i + 1], y[i:i + 1], sigma, 1e-2))


@pytest.mark.parametrize("method", ["cdps", "daps", "diffpir", "dps", "mmps", "mpgd", "pigdm", "reddiff"])
def test_every_method_fits_a_nearly_noiseless_blur_without_an_exact_solve(method):
    """End to end at σ = 1e-3 (16×16 exact prior, a 7-tap motion blur with reflect boundaries: CG, no exact solve, 10
    steps): every method that takes the blur ends within the noise, consistency in [0.5, the χ² band's edge]. The
    earlier pull (ten CG iterations preconditioned by the blur's circulant version) left MPGD, DPS, C-DPS and ΠGDM at
    1.3–3.4 here."""
    from diffsolve.operators import MotionBlur

    sigma = 1e-3
    pr = correlated_prior(16)
    op = MotionBlur(7, seed=1, boundary="reflect")
    x = pr.sample(2, generator=gen(1))
    y = op.A(x) + sigma * torch.randn(op.A(x).shape, generator=gen(2), dtype=D)
    out = solve(method, pr, op, y, sigma=sigma, steps=10, generator=[gen(5), gen(6)])
    consistency = final_residual(op, out, y) / sigma
    assert bool((consistency >= 0.5).all()) and bool((consistency <= _ceiling(op, y) + 1e-6).all()), consistency
