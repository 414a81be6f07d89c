"""diffsolve.metrics.scores on images smaller than SSIM's 11-pixel window: no crash (the reflect padding of
torchmetrics' window used to exceed a side of 5 or fewer), 1 for identical images, and the scores of every image
with sides of 6 or more exactly torchmetrics' default SSIM (σ = 1.5)."""

from __future__ import annotations

import pytest
import torch

from diffsolve.metrics import scores


def _pair(h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, h, w, generator=g, dtype=torch.float64) * 2 - 1
    return (x + 0.3 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(-1, 1), x


@pytest.mark.parametrize("h, w", [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (4, 64), (64, 2), (3, 7)])
def test_tiny_images_are_scored(h, w):
    x, truth = _pair(h, w)
    s = scores(x, truth)
    assert s["ssim"].shape == (2,) and torch.isfinite(s["ssim"]).all() and (s["ssim"].abs() <= 1).all()
    assert (s["ssim"] < 1).all()
    assert torch.allclose(scores(truth, truth)["ssim"], torch.ones(2))


@pytest.mark.parametrize("h, w", [(6, 6), (8, 8), (10, 10), (16, 16), (6, 40)])
def test_sides_of_six_or_more_keep_torchmetrics_default(h, w):
    from torchmetrics.functional.image import structural_similarity_index_measure

    x, truth = _pair(h, w, seed=1)
    plain = structural_similarity_index_measure((x + 1) / 2, (truth + 1) / 2, data_range=1.0, reduction="none")
    assert torch.equal(scores(x, truth)["ssim"], plain.float())


def test_colour_cast_is_the_largest_channel_mean_shift_and_eval_reports_it():
    from diffsolve.evaluate.summary import METRICS
    from diffsolve.metrics import colour_cast, scores

    x_true = torch.zeros(2, 3, 8, 8)
    x = x_true.clone()
    x[0, 2] += 0.2  # sample 0: blue up by 0.2 in [-1, 1], 0.1 in [0, 1]
    x[1] = 1.5  # sample 1: past the range, clamped to 1 first (as for PSNR): every channel 0.5 up
    torch.testing.assert_close(colour_cast(x, x_true), torch.tensor([0.1, 0.5]))
    torch.testing.assert_close(scores(x, x_true)["cast"], colour_cast(x, x_true))
    assert "cast" in METRICS  # eval's records and summary carry it
