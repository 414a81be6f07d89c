"""A small σ in float32: every step that weighs y by 1/σ² is written so that it never divides float32 rounding by σ²
(A's SVD where it has one, CG on a rescaled system, the discrepancy weight about the full step's residual)."""
import pytest
import torch

import diffsolve
from diffsolve.models import GaussianPrior
from diffsolve.operators import MatrixOperator, SuperResolution
from diffsolve.solvers._inverse import discrepancy_weight

OPERATORS = {
    "sr-average": lambda: SuperResolution(2, "average", input_size=(8, 8)),
    "sr-bicubic": lambda: SuperResolution(2, input_size=(8, 8)),
    "matrix": lambda: MatrixOperator.gaussian(96, (3, 8, 8), seed=4),
}


def _problem(name, dtype, sigma):
    prior = GaussianPrior(torch.zeros(3, 8, 8, dtype=dtype), 0.25)
    op = OPERATORS[name]()
    x = 0.5 * torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = op.A(x)
    y = (y + sigma * torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)).to(dtype)
    return prior, op, y


@pytest.mark.parametrize("operator", sorted(OPERATORS))
@pytest.mark.parametrize("method", ["cdps", "pigdm", "ddrm", "mpgd", "dps"])
def test_float32_fits_y_as_float64_does_at_a_small_sigma(method, operator):
    sigma = 1e-5
    consistency = {}
    for dtype in (torch.float32, torch.float64):
        prior, op, y = _problem(operator, dtype, sigma)
        _, info = diffsolve.solve(method, prior, op, y, sigma=sigma, steps=3, return_info=True,
                                  generator=torch.Generator().manual_seed(2))
        consistency[dtype] = info["data_consistency"].double()
    assert torch.isfinite(consistency[torch.float32]).all()
    assert ((consistency[torch.float32] > 0.5) & (consistency[torch.float32] < 1.5)).all(), consistency
    torch.testing.assert_close(consistency[torch.float32], consistency[torch.float64], rtol=0.05, atol=0)


def test_cdps_truncated_steps_stay_finite_when_w_is_huge():
    """w = 1/(ᾱ_s σ²) reaches 1e14 at the first steps: CG's inner products must not overflow float32."""
    prior, op, y = _problem("sr-average", torch.float32, 1e-6)
    x = diffsolve.solve("cdps", prior, op, y, sigma=1e-6, steps=20, generator=torch.Generator().manual_seed(2))
    assert torch.isfinite(x).all()


def test_discrepancy_weight_lands_on_the_floor_when_the_step_overshoots_far():
    """d ≈ r0 (a step that fits y far below the floor): ‖r0 − g d‖² must come out at the floor in float32."""
    gen = torch.Generator().manual_seed(0)
    r0 = torch.randn(3, 500, generator=gen, dtype=torch.float64)
    e = 1e-4 * torch.randn(3, 500, generator=gen, dtype=torch.float64)  # the full step's residual
    d = r0 - e
    floor = (3e-3 * r0).pow(2).sum(1)
    g = discrepancy_weight(r0.float(), d.float(), floor.float()).double()
    landed = (r0 - g[:, None] * d).pow(2).sum(1)
    torch.testing.assert_close(landed, floor, rtol=1e-3, atol=0)
    g64 = discrepancy_weight(r0, d, floor)
    torch.testing.assert_close((r0 - g64[:, None] * d).pow(2).sum(1), floor, rtol=1e-9, atol=0)
