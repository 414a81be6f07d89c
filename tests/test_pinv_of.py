"""The pseudo-inverse of the noiseless steps (solvers/_inverse.py ``pinv_of``; DDNM, DiffPIR and ΠGDM at σ = 0)."""

from __future__ import annotations

import pytest
import torch
from _small_problem import D, OPS, SHAPE, dense_pinv, gen

import diffsolve
from diffsolve.data import heldout_digits
from diffsolve.models import load_default
from diffsolve.models.priors import operator_matrix
from diffsolve.operators import GaussianBlur
from diffsolve.solvers._inverse import SINGULAR_CUTOFF, pinv_of


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("cutoff", [SINGULAR_CUTOFF, 0.0])
def test_pinv_of_matches_dense(name, cutoff):
    """A⁺ r against the dense SVD with the blur's per-axis singular values below ``cutoff`` of the largest zeroed
    (the reference codes' H_pinv); 0 and the operators with nothing to cut: torch.linalg.pinv."""
    op = OPS[name]()
    r = op.A(torch.randn(2, *SHAPE, generator=gen(3), dtype=D)) + 0.1 * torch.randn(
        op.A(torch.zeros(2, *SHAPE, dtype=D)).shape, generator=gen(4), dtype=D)
    out = pinv_of(op, SHAPE[-2:], cutoff)(r)
    ref = r.flatten(1) @ dense_pinv(op, cutoff).T
    torch.testing.assert_close(out.flatten(1), ref, rtol=1e-10, atol=1e-10)
    if name == "blur" and cutoff > 0:  # the cut acts here: not the exact A⁺
        assert (out.flatten(1) - r.flatten(1) @ torch.linalg.pinv(operator_matrix(op, SHAPE)).T).abs().max() > 1e-3


@pytest.mark.parametrize("method", ["ddnm", "diffpir", "pigdm"])
def test_noiseless_blur_of_an_8bit_image_stays_an_image(method):
    """σ = 0 on a strong Gaussian blur (per-axis singular values down to 1e-4 of the largest) of digits saved as 8-bit
    values: the exact A⁺ scales the rounding of y by up to 1e4 (DDNM with singular_cutoff=0 ends at |x| in the
    thousands); with the negligible directions counted as zero every noiseless method returns an image."""
    x = heldout_digits()[:2]
    op = GaussianBlur(9, 2.0)
    y = torch.round((op.A(x) + 1) * 127.5) / 127.5 - 1
    den = load_default("digits16")
    options = {"sigma": 0.0} if method != "ddnm" else {}
    with torch.enable_grad() if method == "pigdm" else torch.no_grad():
        out = diffsolve.solve(method, den, op, y, steps=20, generator=torch.Generator().manual_seed(0), **options)
    assert out.abs().max() < 2 and ((out.clamp(-1, 1) - x) ** 2).mean() < 0.05
    if method == "ddnm":
        exact = diffsolve.solve("ddnm", den, op, y, steps=20, generator=torch.Generator().manual_seed(0),
                                singular_cutoff=0.0)
        assert exact.abs().max() > 100


@pytest.mark.parametrize("method", ["ddnm", "pigdm", "diffpir"])
def test_a_cg_pseudo_inverse_syncs_only_before_the_loop(method, monkeypatch):
    """A dense reflect blur has no exact A⁺: its CG read its convergence every ten iterations inside every step
    (a host sync each time on a GPU). The loop now runs a fixed budget sized once before it from A⁺y, and gives the
    exact A⁺ wherever that budget converges."""
    from diffsolve.models import GaussianPrior
    from diffsolve.operators import Blur

    kernel = torch.full((3, 3), 0.1, dtype=D)
    kernel[1, 1] = 1.0  # not separable, reflect boundary: CG (well conditioned: converged within the budget)
    op = Blur(kernel, "reflect")
    prior = GaussianPrior(torch.zeros(1, 12, 12, dtype=D), 0.3)
    y = op.A(torch.randn(2, 1, 12, 12, generator=gen(1), dtype=D) * 0.3)
    calls, syncs, inside = [0], [], [False]

    class Counted:
        alphas_cumprod = prior.alphas_cumprod

        def __call__(self, x, t):
            calls[0], inside[0] = calls[0] + 1, True
            try:
                return prior(x, t)
            finally:
                inside[0] = False

    plain = torch.Tensor.__bool__

    def counted_bool(self):
        if not inside[0]:  # the exact prior's own CPU-only range checks are the model's, not the loop's
            syncs.append(calls[0])
        return plain(self)

    monkeypatch.setattr(torch.Tensor, "__bool__", counted_bool)
    out = diffsolve.solve(method, Counted(), op, y, sigma=0.0, steps=4, generator=gen(2))
    monkeypatch.undo()
    assert calls[0] == 4 and not [c for c in syncs if 1 <= c < 4]  # none between the first and the last model call
    assert torch.isfinite(out).all()
    if method != "pigdm":  # DDNM's and DiffPIR's noiseless steps end on A x = y (ΠGDM's guidance is a gradient step)
        torch.testing.assert_close(op.A(out), y, rtol=0, atol=1e-8)
