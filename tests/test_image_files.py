"""Image files in and out (diffsolve.data): a written image reads back within 8-bit rounding; what cannot be
written faithfully (another shape, NaN/Inf, an extension PIL cannot write) is refused before the file exists.
16-bit grey reads on its full range (not clipped to white), the EXIF orientation is applied, and pixels without
a known white level (32-bit integer, float) are refused."""

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


def test_jpeg_keeps_colour_at_full_resolution(tmp_path):
    """Quality 95 with PIL's default 4:2:0 chroma halved colour's resolution: a colour-noise image read back at
    12.7 dB; without subsampling it stays above 30 dB."""
    img = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    write_image(tmp_path / "a.jpg", img)
    back = read_image(tmp_path / "a.jpg")
    assert float(10 * torch.log10(4 / ((back - img) ** 2).mean())) > 30


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


def _gradient16(h: int = 24, w: int = 40):
    import numpy as np

    return np.linspace(0, 65535, h * w).reshape(h, w).astype(np.uint16)


@pytest.mark.parametrize("mode, suffix", [("I;16", ".png"), ("I;16B", ".tif")])
def test_16_bit_grey_is_scaled_by_its_full_range(tmp_path, mode, suffix):
    """PIL's own conversion of 16-bit grey to L / RGB clips at 255 (an all-white image); the reader scales it."""
    import numpy as np
    from PIL import Image

    grad = _gradient16()
    path = tmp_path / f"g{suffix}"
    Image.frombytes(mode, grad.shape[::-1], grad.astype(">u2" if mode.endswith("B") else "<u2").tobytes()).save(path)
    assert Image.open(path).mode == mode
    for channels in ("L", "RGB"):
        back = read_image(path, channels)
        assert back.shape == (1 if channels == "L" else 3, *grad.shape)
        assert (((back.double() + 1) / 2) - torch.from_numpy(grad / 65535.0)).abs().max() <= 1 / 255
    half = read_image(path, "L", (20, 12))  # resized: still the gradient from black to white
    assert half.min() < -0.9 and half.max() > 0.9 and np.isclose(float(half.mean()), 0.0, atol=0.05)


@pytest.mark.parametrize("dtype, mode", [("float32", "F"), ("int32", "I")])
def test_pixels_without_a_white_level_are_refused(tmp_path, dtype, mode):
    import numpy as np
    from PIL import Image

    path = tmp_path / "x.tif"
    Image.fromarray(np.zeros((4, 4), dtype=dtype)).save(path)
    with pytest.raises(ValueError, match=f"PIL mode {mode}.*8- or 16-bit PNG"):
        read_image(path, "L")


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_exif_orientation_is_applied(tmp_path, suffix):
    """A phone photo stored 50x70 (W x H) with Orientation = 6 (turn 90° clockwise to view) reads as 70x50, its
    stored top row (white) on the right."""
    import numpy as np
    from PIL import Image

    stored = np.zeros((70, 50, 3), np.uint8)
    stored[:10] = 255  # the stored top rows
    img = Image.fromarray(stored)
    exif = img.getexif()
    exif[0x0112] = 6
    path = tmp_path / f"phone{suffix}"
    img.save(path, exif=exif)
    back = read_image(path)
    assert back.shape == (3, 50, 70)
    assert back[:, :, -8:].min() > 0.9 and back[:, :, :-12].max() < -0.9
    from diffsolve.cli.common import image_info

    assert image_info(path, "--input").size == (70, 50)  # the command line's size check sees the same


def test_nearest_resample_keeps_values(tmp_path):
    import numpy as np
    from PIL import Image

    arr = np.zeros((8, 8), np.uint8)
    arr[:, ::2] = 255
    Image.fromarray(arr).save(tmp_path / "m.png")
    back = read_image(tmp_path / "m.png", "L", (12, 12), resample="nearest")
    assert set(back.unique().tolist()) == {-1.0, 1.0}  # no blend of neighbours
    with pytest.raises(ValueError, match="resample"):
        read_image(tmp_path / "m.png", "L", (12, 12), resample="bilinear")
