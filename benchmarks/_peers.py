"""Adapters that drive the public implementations (azula, deepinv) with a diffsolve ε-model on diffsolve's step
table. Shared by ``agreement.py`` (which checks that both sides then compute the same samples) and
``bench_peers.py`` (which times them on the same problem).

Neither library is a dependency: install them beside diffsolve without their dependencies
(``pip install --no-deps azula deepinv einops``; their torchvision is a CUDA build that does not import beside
CPU torch). :func:`import_deepinv` answers deepinv's torchvision / natsort / h5py imports with stubs first.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def azula_denoiser(eps_fn: EpsFn, timesteps: Sequence[int], abar: Sequence[float], image_shape: Sequence[int],
                   *, dtype: torch.dtype, flat: bool = False):
    """An azula ``Denoiser`` on diffsolve's step table: azula's time k ∈ {0, …, N} ↦ (√ᾱ_k, √(1−ᾱ_k)) with
    ``abar`` the N + 1 levels (the N steps' ᾱ_t, then the final ᾱ), run azula's samplers with ``start=0,
    stop=N, steps=N``. It returns azula's ``DiracPosterior(mean = x̂0)`` from ε̂ = eps_fn(x, t_k), t_k =
    ``timesteps[k]``. ``flat``: azula sees x as (B, D) vectors (its CG and GMRES take inner products over the
    last dimension), reshaped to ``image_shape`` (C, H, W) for the model."""
    from azula.denoise import Denoiser, DiracPosterior
    from azula.noise import Schedule

    ts = list(timesteps)

    class TableSchedule(Schedule):
        def __init__(self):
            self.a = torch.tensor(list(abar), dtype=dtype)

        def __call__(self, t):
            a = self.a[t.round().long()]
            return a.sqrt(), (1 - a).sqrt()

    class EpsAdapter(Denoiser):
        def __init__(self):
            super().__init__()
            self._schedule = TableSchedule()

        @property
        def schedule(self):
            return self._schedule

        def forward(self, x_t, t, **kwargs):
            alpha, sigma = self.schedule(t)
            x_img = x_t.view(-1, *image_shape) if flat else x_t
            eps = eps_fn(x_img, torch.full((x_t.shape[0],), ts[int(t.round())], dtype=torch.long))
            return DiracPosterior(mean=(x_t - sigma * eps.reshape(x_t.shape)) / alpha)

    return EpsAdapter()


def deepinv_denoiser(eps_fn: EpsFn, table: torch.Tensor, timestep_of: Callable[[torch.Tensor], int]):
    """deepinv's denoiser convention ``model(x01, s) → x̂0`` on [0, 1] images from a diffsolve ε-model on
    [−1, 1]: t = ``timestep_of(s)`` (each deepinv sampler names its noise level differently), x = √ᾱ_t (2 x01 − 1),
    x̂0 = (x − √(1−ᾱ_t) ε̂(x, t))/√ᾱ_t, returned as x̂0/2 + 1/2."""

    def model(x01: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        t = timestep_of(s)
        at = table[t]
        x = at.sqrt() * (2 * x01 - 1)
        x0 = (x - (1 - at).sqrt() * eps_fn(x, torch.full((x.shape[0],), t, dtype=torch.long))) / at.sqrt()
        return x0 / 2 + 0.5

    return model


def import_deepinv():
    """``import deepinv`` with its torchvision / natsort / h5py imports answered by stub modules
    (``_shims/stubmods.py``; nothing the benchmarks run touches them)."""
    shims = str(Path(__file__).resolve().parent / "_shims")
    if shims not in sys.path:
        sys.path.insert(0, shims)
    import stubmods

    stubmods.install()
    import deepinv

    return deepinv
