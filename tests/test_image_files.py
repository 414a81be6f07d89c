"""Image files in and out (diffsolve.data): a written image reads back within 8-bit rounding; what cannot be
written faithfully (another shape, NaN/Inf, an extension PIL cannot write) is refused before the file exists."""

from __future__ import annotations

import pytest
import torch

from diffsolve.data import read_image, write_image


@pytest.mark.parametrize("channels, suffix", [(3, ".png"), (1, ".png"), (3, ".bmp")])
def test_a_written_image_reads_back_within_rounding(tmp_path, channels, suffix):
    img = torch.rand(channels, 9, 13, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    path = tmp_path / "sub" / f"img{suffix}"
    write_image(path, img)
    back = read_image(path, "RGB" if channels == 3 else "L", (13, 9))  # (W, H)
    assert back.shape == img.shape
    assert (back.double() - img).abs().max() <= 0.5 / 127.5 + 1e-6  # half an 8-bit level


@pytest.mark.parametrize("img, name, message", [
    (torch.zeros(5, 8, 8), "a.png", "C = 1"),
    (torch.zeros(1, 3, 8, 8), "a.png", "one image of a batch"),
    (torch.full((3, 8, 8), float("nan")), "a.png", "NaN or infinite"),
    (torch.tensor([[[0.0, float("inf")]]]), "a.png", "NaN or infinite"),
    (torch.zeros(3, 8, 8), "a.xyz", "extension"),
    (torch.zeros(3, 8, 8), "noext", "extension"),
])
def test_what_cannot_be_written_is_refused_before_the_file_exists(tmp_path, img, name, message):
    path = tmp_path / "out" / name
    with pytest.raises(ValueError, match=message):
        write_image(path, img)
    assert not path.exists() and not path.parent.exists()
    with pytest.raises(TypeError, match="torch.Tensor"):
        write_image(tmp_path / "a.png", [[0.0]])
