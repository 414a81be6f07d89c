"""The photo × task × σ sweep that ``bench_mpgd_small_sigma.py``, ``bench_mpgd_stability.py`` and
``bench_reddiff_sigma.py`` share (a report helper, not a test)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import torch


def noisy_measurements(runs, tasks, sigmas) -> Iterator[tuple[list[str], int, str, float, object, torch.Tensor,
                                                             torch.Tensor]]:
    """(images, size, task, σ, A, x (B, 3, size, size), y = A x + σ n) for each (images, size) of ``runs``, task and
    σ: the photos bundled with diffsolve, the task's operator at that size, n from seed 3 on every entry."""
    from diffsolve.data import photo
    from diffsolve.tasks import make_operator

    for names, size in runs:
        x = torch.stack([photo(n, size=size) for n in names])
        for task in tasks:
            op = make_operator(task, (size, size))
            ax = op.A(x)
            for sigma in sigmas:
                y = ax + sigma * torch.randn(ax.shape, generator=torch.Generator().manual_seed(3))
                yield list(names), size, task, sigma, op, x, y


def sweep(runs, tasks, sigmas, cells) -> list[dict]:
    """One row per problem of :func:`noisy_measurements`: {"images", "size", "task", "sigma"} and the cells
    ``cells(op, x, y, sigma)`` returns (column label → cell), each row printed as it is done."""
    rows = []
    for names, size, task, sigma, op, x, y in noisy_measurements(runs, tasks, sigmas):
        rows.append({"images": names, "size": size, "task": task, "sigma": sigma, **cells(op, x, y, sigma)})
        print(rows[-1], flush=True)
    return rows


def score_with(module, constant: str, value, method: str, model, op, x: torch.Tensor, y: torch.Tensor, sigma: float,
               steps: int) -> tuple[float, float]:
    """(mean PSNR dB, worst data consistency) of ``method`` at its defaults given σ, one draw per image (generator i),
    with ``module.<constant>`` set to ``value`` for the run and restored after it; warnings silenced."""
    from diffsolve import solve
    from diffsolve.metrics import data_consistency, scores

    default = getattr(module, constant)
    setattr(module, constant, value)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = solve(method, model, op, y, sigma=sigma, steps=steps,
                        generator=[torch.Generator().manual_seed(i) for i in range(x.shape[0])])
    finally:
        setattr(module, constant, default)
    return float(scores(out, x)["psnr"].mean()), float(data_consistency(op, out, y, sigma).max())


def run_and_write(name: str, run, markdown) -> None:
    """One thread, ``rows = run()``, then ``results/{name}.{md,json}`` with ``markdown(rows, seconds)``."""
    import time

    from bench_dps import write_results
    from bench_methods import machine

    torch.set_num_threads(1)
    start = time.perf_counter()
    rows = run()
    write_results(name, {"machine": machine(), "rows": rows}, markdown(rows, time.perf_counter() - start))
