"""The method registry: described once, read by solve and restore; baselines, tuned options, errors."""

from __future__ import annotations

import inspect

import pytest
import torch

from diffsolve import methods
from diffsolve.methods import CLI_METHODS, METHODS, get_method, restore
from diffsolve.models import GaussianPrior
from diffsolve.operators import Inpainting, SuperResolution
from diffsolve.solve import solve
from diffsolve.solvers import SAMPLING_FIELDS, cdps, dps, mpgd

D = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def problem():
    prior = GaussianPrior(torch.zeros(1, 4, 6, dtype=D), 0.4)
    op = Inpainting.random((4, 6), 0.5, seed=1)
    x = torch.randn(2, 1, 4, 6, generator=gen(0), dtype=D) * 0.4
    return prior, op, x, op.A(x) + 0.05 * torch.randn(op.A(x).shape, generator=gen(5), dtype=D)


def test_registry_fields_and_defaults_come_from_the_solvers():
    assert set(CLI_METHODS) == {"mpgd", "cdps", "dps", "tikhonov", "pinv", "pigdm", "diffpir", "ddnm", "ddrm", "daps",
                                "reddiff", "mmps"}  # ddim ignores y: not a restoration
    assert "mpgd_ldm" in METHODS and not METHODS["mpgd_ldm"].cli
    assert {m for m, s in METHODS.items() if s.backward} == {"dps", "pigdm", "mmps"}
    assert {m for m, s in METHODS.items() if not s.uses_model} == {"tikhonov", "pinv"}
    assert METHODS["cdps"].required == ("sigma",) and METHODS["mpgd_ldm"].required == ("autoencoder",)
    sig = inspect.signature(mpgd).parameters
    assert METHODS["mpgd"].defaults()["eta"] is sig["eta"].default is None  # 1 given sigma, else 0.5
    assert METHODS["dps"].defaults()["zeta"] == inspect.signature(dps).parameters["zeta"].default
    assert "steps" not in METHODS["cdps"].defaults() and "generator" not in METHODS["cdps"].defaults()
    assert METHODS["tikhonov"].defaults() == {"lam": 1e-2}
    assert set(SAMPLING_FIELDS) >= {"steps", "spacing", "timesteps", "generator", "x_T", "backend", "return_info"}
    with pytest.raises(ValueError, match="method must be one of"):
        get_method("not_a_method")


@pytest.mark.filterwarnings("ignore:dps. steps=3")  # DPS's few-steps advice
@pytest.mark.parametrize("method, fn, needs", [("mpgd", mpgd, {"sigma": 0.05}), ("cdps", cdps, {"sigma": 0.05}),
                                               ("dps", dps, {"sigma": 0.05})])
def test_restore_is_the_solver_with_the_cli_options(problem, method, fn, needs):
    prior, op, x, y = problem
    got, info = restore(method, prior, op, y, steps=3, sigma=0.05, generator=gen(2))
    ref = fn(prior, op, y, steps=3, generator=gen(2), **needs)
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    assert info == {} and not got.requires_grad


@pytest.mark.filterwarnings("ignore:dps. steps=3")
@pytest.mark.filterwarnings("ignore::diffsolve.solvers.DataConsistencyWarning")
@pytest.mark.parametrize("method, fn", [("mpgd", mpgd), ("cdps", cdps), ("dps", dps)])
def test_restore_discrepancy_false_is_the_solvers_papers_result(problem, method, fn):
    prior, op, x, y = problem
    got, _ = restore(method, prior, op, y, steps=3, sigma=0.05, generator=gen(2), discrepancy=False)
    ref = fn(prior, op, y, steps=3, generator=gen(2), sigma=0.05, discrepancy=False)
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    assert methods.takes_discrepancy(method)


def test_restore_discrepancy_is_refused_where_it_cannot_apply(problem):
    prior, op, x, y = problem
    assert methods.discrepancy_methods() == tuple(m for m in CLI_METHODS if METHODS[m].uses_model)
    with pytest.raises(ValueError, match="discrepancy=False: tikhonov has no discrepancy step.*mpgd"):
        restore("tikhonov", None, op, y, steps=3, sigma=0.05, discrepancy=False)
    with pytest.raises(TypeError, match="discrepancy must be True or False, got 'no'"):
        restore("mpgd", prior, op, y, steps=3, sigma=0.05, discrepancy="no")


def test_mpgd_cli_passes_the_noise_level():
    """σ sets MPGD's scale-free ρ and its discrepancy cap (no per-operator special case)."""
    op = SuperResolution(2, "bicubic")
    y = torch.zeros(1, 1, 4, 4, dtype=D)
    assert METHODS["mpgd"].cli_options(methods.Problem(steps=10, sigma=0.05, operator=op, y=y)) == {"sigma": 0.05}


def test_baselines_through_solve_and_restore(problem):
    prior, op, x, y = problem
    torch.testing.assert_close(solve("pinv", None, op, y), op.pseudo_inverse(y))
    torch.testing.assert_close(solve("tikhonov", None, op, y, lam=0.1), op.tikhonov(y, 0.1))
    with pytest.raises(TypeError, match="runs no model"):
        solve("pinv", None, op, y, steps=3)
    with pytest.raises(ValueError, match="needs steps"):
        solve("mpgd", prior, op, y)
    # Tikhonov's λ: the default without the truth, the best-PSNR candidate with it
    _, info = restore("tikhonov", None, op, y, steps=3, sigma=0.05)
    assert info == {"lam": [1e-2] * len(y)}
    xr, info = restore("tikhonov", None, op, y, steps=3, sigma=0.05, x_true=x)
    from diffsolve.metrics import psnr

    # per sample: each record's λ is its own best, whatever else is in the batch
    best = [max((1e-3, 1e-2, 1e-1), key=lambda lam: float(psnr(op.tikhonov(y[b:b + 1], lam), x[b:b + 1])))
            for b in range(len(y))]
    assert info == {"lam": best}
    for b in range(len(y)):
        torch.testing.assert_close(xr[b:b + 1], op.tikhonov(y[b:b + 1], best[b]))
        alone = restore("tikhonov", None, op, y[b:b + 1], steps=3, sigma=0.05, x_true=x[b:b + 1])
        assert alone[1] == {"lam": [best[b]]}


def test_required_options_are_named(problem):
    prior, op, x, y = problem
    with pytest.raises(ValueError, match="needs sigma="):
        solve("cdps", prior, op, y, steps=2)
    with pytest.raises(ValueError, match="needs autoencoder="):
        solve("mpgd_ldm", prior, op, y, steps=2)


def test_info_lists_every_method_with_what_it_needs():
    import io

    from diffsolve.cli.info import info

    out = io.StringIO()
    result = info(out)
    assert set(result["methods"]) == set(METHODS)
    for name, m in METHODS.items():
        assert f"  {name:9s} {m.needs}; {m.nfe} per step" in out.getvalue()
        (line,) = [line for line in out.getvalue().splitlines() if line.startswith(f"  {name:9s} {m.needs};")]
        assert ("; best at " in line) == bool(m.steps) and f"; best at {m.steps}" in line + "; best at "
        assert result["methods"][name]["steps"] == m.steps
    assert {n for n, m in METHODS.items() if m.steps} == {"cdps", "pigdm", "ddrm", "ddnm", "daps"}


def test_tikhonov_lambda_is_picked_per_sample_not_per_batch():
    """eval picked one λ for a batch by its mean PSNR, so a record's λ, consistency and PSNR moved with its batch-mates:
    a smooth image's best λ here is 0.1, a rough one's 0.01; each keeps its own in a batch of both."""
    from diffsolve.operators import GaussianBlur

    op = GaussianBlur(5, 1.0)
    smooth = torch.linspace(-0.5, 0.5, 12, dtype=D).view(1, 1, 1, 12).expand(1, 1, 12, 12)
    x = torch.cat([smooth, torch.randn(1, 1, 12, 12, generator=gen(0), dtype=D) * 0.5])
    y = op.A(x) + 0.05 * torch.randn(op.A(x).shape, generator=gen(5), dtype=D)
    xr, info = restore("tikhonov", None, op, y, steps=3, sigma=0.05, x_true=x)
    assert info == {"lam": [1e-1, 1e-2]}
    for b, lam in enumerate((1e-1, 1e-2)):
        torch.testing.assert_close(xr[b:b + 1], op.tikhonov(y[b:b + 1], lam))
        assert restore("tikhonov", None, op, y[b:b + 1], steps=3, sigma=0.05, x_true=x[b:b + 1])[1] == {"lam": [lam]}


@pytest.mark.parametrize("method", ["tikhonov", "pinv"])
def test_the_baselines_take_backend_and_route_it_to_the_operator(method, monkeypatch):
    """They run the operator's kernels (CG on a dense blur) but refused backend= as a sampling option."""
    from diffsolve.kernels import _dispatch
    from diffsolve.operators import Blur

    kernel = torch.full((3, 3), 0.1, dtype=D)
    kernel[1, 1] = 1.0  # dense, reflect: A's solves run CG (well conditioned: converged on every backend)
    op = Blur(kernel, "reflect")
    y = op.A(torch.rand(1, 1, 12, 12, generator=gen(0), dtype=D) * 2 - 1)
    seen = []
    plain = type(op).with_backend
    monkeypatch.setattr(type(op), "with_backend", lambda self, b: seen.append(b) or plain(self, b))
    a = solve(method, None, op, y, backend="torch")
    b = solve(method, None, op, y, backend="cpp" if _dispatch.backends()["cpp"][0] else "torch")
    assert seen and seen[0] == "torch"
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="backend must be one of"):
        solve(method, None, op, y, backend="cuda")
