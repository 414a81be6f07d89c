"""RED-diff: the loss gradient against autograd and a hand-computed one, the loop against torch.optim.Adam on the
per-sample loss, the weighting, bad input (every backend and batch independence: tests/test_methods_contract.py)."""

from __future__ import annotations

import importlib
import math

import pytest
import torch
from _small_problem import correlated_prior

from diffsolve.methods import METHODS
from diffsolve.models import GaussianPrior
from diffsolve.operators import Inpainting, MotionBlur, SuperResolution
from diffsolve.solvers._loop import select_schedule
from diffsolve.solvers.reddiff import GATE_WIDTH, gradient, initial_mean, reddiff, step_adam, step_lam, weights

D = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def problem(b: int = 2):
    p = GaussianPrior(torch.zeros(3, 8, 8, dtype=D), 0.3)
    x = p.sample(b, generator=gen(12))
    op = SuperResolution(2)
    y = op.A(x) + 0.05 * torch.randn(op.A(x).shape, generator=gen(13), dtype=D)
    return p, op, x, y


def loss(op, mu, y, eps_hat, eps, lam_t):
    m, n = y[0].numel(), mu[0].numel()
    data = (y - op.A(mu)).flatten(1).pow(2).sum(1) / (2 * m)
    reg = lam_t * ((eps_hat - eps).flatten(1) * mu.flatten(1)).sum(1) / n
    return data + reg


def random_state(x):
    """μ, ε̂, ε: three standard-normal arrays of x's shape."""
    g = gen(1)
    return tuple(torch.randn(x.shape, generator=g, dtype=D) for _ in range(3))


def test_gradient_matches_autograd_and_hand_formula():
    p, op, x, y = problem()
    mu, eps_hat, eps = random_state(x)
    grad, r = gradient(op, mu, y, eps_hat, eps, 0.7)
    mug = mu.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(loss(op, mug, y, eps_hat, eps, 0.7).sum(), mug)
    assert torch.allclose(grad, auto, atol=1e-12)
    # by hand: −Aᵀ(y − Aμ)/m + λ_t(ε̂ − ε)/n
    hand = -op.A_adjoint(y - op.A(mu)) / y[0].numel() + 0.7 * (eps_hat - eps) / mu[0].numel()
    assert torch.allclose(grad, hand, atol=1e-14)
    assert torch.allclose(r, y - op.A(mu))


def test_weights_are_inverse_sqrt_snr():
    assert weights([0.25, 0.5], 0.25) == pytest.approx([0.25 * math.sqrt(3), 0.25])


def test_step_rules():
    """λ ∝ N up to N_ref = 50 and fixed beyond; lr fixed up to N_ref and ∝ 1/N beyond; betas β^(1000/N) (the
    paper's at its 1000 steps); "constant": the values as given."""
    assert step_lam("steps", 0.25, 20) == pytest.approx(0.1) and step_lam("steps", 0.25, 200) == 0.25
    assert step_lam("constant", 0.25, 20) == 0.25
    lr, betas = step_adam("steps", 0.1, 1000)
    assert lr == pytest.approx(0.005) and betas == pytest.approx((0.9, 0.99), rel=1e-12)
    lr, betas = step_adam("steps", 0.1, 20)
    assert lr == 0.1 and betas == pytest.approx((0.9**50, 0.99**50), rel=1e-12)
    assert step_adam("constant", 0.1, 20) == (0.1, (0.9, 0.99))


@pytest.mark.parametrize("steps, adam_rule, lam, lr, betas", [
    (4, "steps", 0.25 * 4 / 50, 0.1, (0.9**250, 0.99**250)),  # λ_N = 0.25·N/50; the paper's betas at its 1000 steps
    (4, "constant", 0.25 * 4 / 50, 0.1, (0.9, 0.99)),  # the paper's betas
    (60, "steps", 0.25, 0.1 * 50 / 60, (0.9 ** (1000 / 60), 0.99 ** (1000 / 60))),  # past N_ref: λ fixed, lr ∝ 1/N
])
def test_loop_equals_adam_on_the_per_sample_loss(steps, adam_rule, lam, lr, betas):
    """The loop is torch.optim.Adam on the per-sample loss with the rules' λ_N, lr_N and betas."""
    p, op, x, y = problem()
    out = reddiff(p, op, y, steps=steps, generator=gen(5), adam_rule=adam_rule)
    assert torch.equal(reddiff(p, op, y, steps=steps, generator=gen(5), lam=lam, lam_rule="constant",
                               adam_rule=adam_rule), out)
    # by hand: μ0 = c Aᵀy, x_T drawn first (unused), then one ε per step; torch.optim.Adam with those betas
    g = gen(5)
    torch.randn(x.shape, generator=g, dtype=D)
    sched = select_schedule(p, steps, "trailing")
    aty = op.A_adjoint(y)
    c = [float((y[b] * op.A(aty)[b]).sum() / op.A(aty)[b].pow(2).sum()) for b in range(y.shape[0])]
    mu = (aty * torch.tensor(c, dtype=D).view(-1, 1, 1, 1)).clone().requires_grad_(True)
    opt = torch.optim.Adam([mu], lr=lr, betas=betas)
    for i in range(steps):
        a = float(sched.alpha_t[i])
        eps = torch.randn(x.shape, generator=g, dtype=D)
        x_t = a**0.5 * mu.detach() + (1 - a) ** 0.5 * eps
        eps_hat = p(x_t, sched.timesteps[i].expand(x.shape[0]))
        opt.zero_grad()
        loss(op, mu, y, eps_hat, eps, lam * math.sqrt((1 - a) / a)).sum().backward()
        previous = mu.detach().clone()
        opt.step()
    last = reddiff(p, op, y, steps=steps, generator=gen(5), adam_rule=adam_rule, midpoint=False)
    assert torch.allclose(last, mu.detach(), atol=1e-12), (last - mu).abs().max()  # the paper's result: μ_N
    midpoint = (previous + mu.detach()) / 2  # the default: the last update's midpoint
    assert torch.allclose(out, midpoint, atol=1e-12), (out - midpoint).abs().max()
    assert (last - out).abs().max() > 1e-3  # the two differ: the last update is not negligible at these N


def test_initial_mean_is_pinv_for_a_mask_and_least_squares_scaled():
    p, _, x, _ = problem()
    op = Inpainting.box(8, box=4, margin=2)
    y = op.A(x)
    assert torch.allclose(initial_mean(op, y), op.pseudo_inverse(y), atol=1e-12)
    op = SuperResolution(2)
    y = op.A(x)
    mu = initial_mean(op, y)
    for c in (0.9, 1.1):  # c minimises ‖y − A(c Aᵀy)‖ per sample
        assert ((y - op.A(mu)).flatten(1).norm(dim=1) <= (y - op.A(c * mu)).flatten(1).norm(dim=1)).all()
    assert torch.equal(initial_mean(op, torch.zeros_like(y)), torch.zeros_like(mu))


def test_x_T_is_the_initial_mean_and_info():
    p, op, x, y = problem()
    start = torch.zeros(x.shape, dtype=D)
    out, info = reddiff(p, op, y, steps=3, x_T=start, generator=gen(2), return_info=True)
    assert torch.allclose(info["residual"][0], y.flatten(1).norm(dim=1))  # μ0 = 0: ‖y‖
    assert info["residual"].shape == (3, 2) and info["timesteps"].shape == (3,)
    assert torch.allclose(info["final_residual"], (op.A(out) - y).flatten(1).norm(dim=1) / y[0].numel() ** 0.5)
    m = METHODS["reddiff"]
    assert not m.backward and m.required == () and m.kind == "inverse"
    assert "data_consistency" not in info
    # from μ0 = 0 the residual stays far above σ√(m/2) for 3 steps: the gate is open, the same μ, and the data
    # consistency is the final residual over σ
    out_s, info_s = reddiff(p, op, y, steps=3, x_T=start, generator=gen(2), return_info=True, sigma=0.05,
                            discrepancy=False)
    assert torch.equal(out_s, out) and torch.allclose(info_s["data_consistency"], info["final_residual"] / 0.05)


def test_discrepancy_gate_scales_only_the_data_part():
    """g = clamp((‖r‖² − floor)/(w·floor), 0, 1) per sample on −Aᵀr/m; the regulariser's part is untouched."""
    p, op, x, y = problem()
    mu, eps_hat, eps = random_state(x)
    open_, r = gradient(op, mu, y, eps_hat, eps, 0.7)
    sq = r.flatten(1).pow(2).sum(1)
    reg = 0.7 * (eps_hat - eps) / mu[0].numel()
    data = open_ - reg
    floors = torch.stack([sq[0] * 2, sq[1] / (1 + GATE_WIDTH / 2)])  # sample 0 closed, sample 1 half open
    gated, _ = gradient(op, mu, y, eps_hat, eps, 0.7, floors)
    assert torch.allclose(gated[0], reg[0], atol=1e-15)
    assert torch.allclose(gated[1], reg[1] + 0.5 * data[1], atol=1e-12)
    assert torch.equal(gradient(op, mu, y, eps_hat, eps, 0.7, sq / (1 + GATE_WIDTH) / 1.01)[0], open_)


def test_sigma_stops_the_fit_at_the_discrepancy_floor():
    """Without σ RED-diff's point estimate (the paper's betas) fits SR's noise (‖Aμ − y‖ far below σ√m); with σ the
    gate stops the data pull at ‖r‖ = σ√(m/2) (Adam's momentum coasts a little past it), step 5 takes the result
    back to that floor, and every sample is gated on its own (batch independent)."""
    from diffsolve.metrics import data_consistency

    p, op, x, y = problem()
    free = data_consistency(op, reddiff(p, op, y, steps=20, generator=gen(1), adam_rule="constant"), y, 0.05)
    gate_only = reddiff(p, op, y, steps=20, generator=gen(1), sigma=0.05, adam_rule="constant", discrepancy=False)
    assert (free < 0.5).all() and (data_consistency(op, gate_only, y, 0.05) > 0.65).all()
    # the last iterate (midpoint=False) shows the gate and step 5 alone
    coasted = reddiff(p, op, y, steps=20, generator=gen(1), sigma=0.05, discrepancy=False, midpoint=False)
    settled = reddiff(p, op, y, steps=20, generator=gen(1), sigma=0.05, midpoint=False)
    before, after = data_consistency(op, coasted, y, 0.05), data_consistency(op, settled, y, 0.05)
    assert before[0] < 0.705 and after[0] == pytest.approx(0.5**0.5, rel=1e-9)  # step 5 lifts it to the floor
    assert before[1] > 0.75 and torch.equal(settled[1], coasted[1])  # above the floor (and within the noise): as is
    # the default's midpoint of the last update fits y closer (sample 1 below the floor too); step 5 lifts both
    mid = data_consistency(op, reddiff(p, op, y, steps=20, generator=gen(1), sigma=0.05, discrepancy=False), y, 0.05)
    lifted = data_consistency(op, reddiff(p, op, y, steps=20, generator=gen(1), sigma=0.05), y, 0.05)
    assert (mid < 0.705).all() and torch.allclose(lifted, torch.full_like(lifted, 0.5**0.5), rtol=1e-9)
    gated = reddiff(p, op, y, steps=20, generator=[gen(1), gen(2)], sigma=0.05)
    alone = reddiff(p, op, y[1:], steps=20, generator=[gen(2)], sigma=0.05)
    assert torch.allclose(alone, gated[1:], atol=1e-12)


@pytest.mark.parametrize("options, error, words", [
    (dict(lam=-1.0), ValueError, "lam"),
    (dict(lam_rule="linear"), ValueError, "lam_rule"),
    (dict(adam_rule="paper"), ValueError, "adam_rule"),
    (dict(adam_rule=None), ValueError, "adam_rule"),
    (dict(lam="x"), TypeError, "lam"),
    (dict(lr=0.0), ValueError, "lr"),
    (dict(lr=float("inf")), ValueError, "lr"),
    (dict(noise_source="kernel"), ValueError, "noise_source"),
    (dict(sigma=-0.1), ValueError, "sigma"),
    (dict(sigma="0.1"), TypeError, "sigma"),
    (dict(midpoint=1), TypeError, "midpoint"),
    (dict(midpoint="no"), TypeError, "midpoint"),
])
def test_bad_input_rejected_before_the_loop(options, error, words):
    p, op, x, y = problem()
    calls = []

    def den(x_t, t):
        calls.append(1)
        return p(x_t, t)

    den.alphas_cumprod = p.alphas_cumprod
    with pytest.raises(error, match=words):
        reddiff(den, op, y, steps=3, **options)
    assert not calls


def test_operator_gain_is_one_for_normalised_operators_and_k2_for_kA():
    """g_A² = ‖A 1‖²/m over the measured entries: 1 for the demo tasks' operators (a blur's kernel sums to 1, masks,
    bicubic down-sampling, the identity), k² for kA, per sample (a batch of masks)."""
    from diffsolve.operators import Inpainting
    from diffsolve.solvers.reddiff import operator_gain
    from diffsolve.tasks import make_operator

    x = torch.zeros(2, 3, 32, 32, dtype=torch.float64)
    for task in ("gaussian_blur", "motion_blur", "box", "random", "sr4", "denoise"):
        op = make_operator(task, (32, 32), seed=0)
        torch.testing.assert_close(operator_gain(op, op.A(x), x), torch.ones(2, dtype=torch.float64))
    masks = torch.stack([torch.ones(1, 32, 32), 0.5 * (torch.rand(1, 32, 32, generator=torch.Generator().manual_seed(0))
                                                       > 0.5)]).to(torch.float64)
    op = Inpainting(masks)
    torch.testing.assert_close(operator_gain(op, op.A(x), x), torch.tensor([1.0, 0.25], dtype=torch.float64))


def test_a_noisier_measurement_weighs_less(monkeypatch):
    """With the data term's weight the same at every σ, a blur at σ = 0.5 was fitted deep into its noise (a 16×16
    exact Gaussian prior, 9-tap motion blur: far from the posterior mean). Above σ_ref the weight falls as σ_ref/σ,
    and the result ends much nearer; at σ ≤ σ_ref nothing changes."""
    reddiff_module = importlib.import_module("diffsolve.solvers.reddiff")
    n = 16
    pr = correlated_prior(n)
    op = MotionBlur(9, 0.5, seed=1)
    x = pr.sample(4, generator=gen(1))
    noise = torch.randn(op.A(x).shape, generator=gen(2), dtype=D)

    def run(sigma):
        y = op.A(x) + sigma * noise
        mu = torch.stack([pr.posterior(op, y[i:i + 1], sigma=sigma).mean.reshape(1, n, n) for i in range(4)])
        out = reddiff(pr, op, y, steps=30, sigma=sigma, generator=gen(3))
        return out, float(((out - mu).flatten(1).norm(dim=1) / (pr.mean - mu).flatten(1).norm(dim=1)).mean())

    (_, gap), (at_ref, _), (below, _) = run(0.5), run(reddiff_module.NOISE_REFERENCE), run(0.02)
    monkeypatch.setattr(reddiff_module, "NOISE_REFERENCE", math.inf)
    (_, constant_gap), (constant_at_ref, _), (constant_below, _) = run(0.5), run(0.05), run(0.02)
    assert gap < 0.6 * constant_gap, (gap, constant_gap)
    torch.testing.assert_close(at_ref, constant_at_ref, rtol=0, atol=0)
    torch.testing.assert_close(below, constant_below, rtol=0, atol=0)
