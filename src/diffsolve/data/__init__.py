"""Bundled data: the demo's two photos, four benchmark photos and the held-out ``digits16`` split.

The files are written by ``python -m diffsolve.models.train bundle`` from what scikit-image, scikit-learn,
matplotlib and SciPy ship; SOURCES.md beside them gives their origin and licence. None of them was seen
when training the shipped models.

- :func:`photo` ``(name, size=None) -> (3, H, W)`` float32 in [-1, 1]; names in :data:`PHOTOS` (the demo's
  and ``eval``'s bundled set) and :data:`HELDOUT` (the benchmarks' held-out set: kept out of training and
  out of every run that tuned a default).
- :func:`heldout_digits` ``() -> (N, 1, 16, 16)`` float32 in [-1, 1], N = 360, in the order of
  ``models/weights/digits16/split.json``.
"""

from __future__ import annotations

import os
from importlib import resources

import numpy as np
import torch

__all__ = ["HELDOUT", "PHOTOS", "DIGITS_PER_ROW", "DIGITS_TILE", "HELDOUT_DIGITS", "PHOTO_MIN_SIZE", "heldout_digits",
           "photo", "read_image", "write_image"]

PHOTOS = ("chelsea", "coffee")
HELDOUT = ("camera", "grass", "hopper", "raccoon")
DIGITS_TILE = 16  # the held-out digits are stored row-major as a mosaic of 16x16 tiles
DIGITS_PER_ROW = 20
HELDOUT_DIGITS = 360  # tiles in digits16_heldout.png
PHOTO_MIN_SIZE = 8  # the smallest side :func:`photo` resizes to


def read_image(path: str | os.PathLike[str], mode: str = "RGB", size: tuple[int, int] | None = None, *,
               resample: str = "bicubic") -> torch.Tensor:
    """Read an image file into a ``(C, H, W)`` float32 tensor in [-1, 1] (C = 3 for RGB, 1 for L).

    The EXIF orientation (a phone photo's rotation) is applied. Grey files read as RGB are replicated; an alpha
    channel is dropped (the command line says so); a mode PIL cannot convert directly (LAB to grey) goes through
    RGB; a multi-frame file gives its first frame. 16-bit grey (PIL modes ``I;16*``, and ``I`` from a PNG) is
    scaled by its full range 65535; 32-bit integer (``I`` from other formats) and float (``F``) files, whose white
    level is not known, are refused. ``size`` = (W, H): centre-crop to that aspect ratio, then resize to it
    (``resample``: "bicubic", or "nearest" for masks). Raises ``ValueError`` naming the file when it cannot be
    read as an image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', got {mode!r}")
    filters = {"bicubic": Image.BICUBIC, "nearest": Image.NEAREST}
    if resample not in filters:
        raise ValueError(f"resample must be 'bicubic' or 'nearest', got {resample!r}")
    try:
        with Image.open(path) as src:
            img = _eight_bit_scale(ImageOps.exif_transpose(src), src.format, path)
            if img.mode == "P" and "transparency" in img.info:  # the same colours, without PIL's UserWarning
                img = img.convert("RGBA")
            img = img if img.mode == "F" else _convert(img, mode, path)  # "F": 16-bit grey, on the 0-255 scale
            if size is not None and img.size != tuple(size):
                img = img.crop(_centre_box(img.size, size))
                if img.size != tuple(size):
                    img = img.resize(tuple(size), filters[resample])
            arr = np.asarray(img, dtype=np.float32)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot read image {str(path)!r}: {err}") from err
    if img.mode == "F":  # bicubic may overshoot, as in the 8-bit path (which PIL clips)
        arr = np.clip(arr, 0, 255)[:, :, None].repeat(3 if mode == "RGB" else 1, axis=2)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr / 127.5 - 1.0).permute(2, 0, 1).contiguous()


def _convert(img, mode, path):  # noqa: ANN001, ANN202 - PIL images
    """``img`` in ``mode``, through RGB where PIL has no direct conversion (LAB to grey); ValueError naming the file
    where it has none to RGB either."""
    try:
        return img.convert(mode)
    except ValueError:
        try:
            return img.convert("RGB").convert(mode)
        except ValueError as err:
            raise ValueError(f"cannot read image {str(path)!r}: {err}") from None


def _eight_bit_scale(img, file_format, path):  # noqa: ANN001, ANN202 - PIL images
    """``img``, 16-bit grey as a float (``F``) image on the 0-255 scale (PIL's own conversion clips at 255,
    turning it white); ValueError for 32-bit integer or float pixels (no known white level)."""
    from PIL import Image

    if img.mode.startswith("I;16") or (img.mode == "I" and file_format == "PNG"):  # a PNG holds at most 16 bits
        return Image.fromarray(np.asarray(img, dtype=np.float32) * np.float32(255 / 65535))
    if img.mode in ("I", "F"):
        kind = "32-bit integer" if img.mode == "I" else "floating-point"
        raise ValueError(f"cannot read image {str(path)!r}: its {kind} pixels (PIL mode {img.mode}) have no known "
                         "white level; save it as an 8- or 16-bit PNG scaled to its full range")
    return img


def write_image(path: str | os.PathLike[str], img: torch.Tensor) -> None:
    """Write a ``(C, H, W)`` tensor in [-1, 1] (clamped: an 8-bit file holds no more) as an image file (C = 1 or
    3), the format by ``path``'s extension (JPEG at quality 95 without chroma subsampling, WebP lossless); creates
    the folder. TypeError / ValueError, before anything is written, for another shape, a NaN or infinite value (no
    pixel value stands for it) or an extension PIL cannot write."""
    from pathlib import Path

    from PIL import Image

    path = Path(path)
    if not isinstance(img, torch.Tensor):
        raise TypeError(f"img must be a torch.Tensor (C, H, W) in [-1, 1], got {type(img).__name__}")
    if img.dim() != 3 or img.shape[0] not in (1, 3) or img.is_complex():
        raise ValueError(f"img must be a real (C, H, W) tensor with C = 1 (grey) or 3 (RGB), got shape "
                         f"{tuple(img.shape)} {img.dtype}; write one image of a batch at a time")
    bad = int((~torch.isfinite(img.detach())).sum())
    if bad:
        raise ValueError(f"img has {bad} NaN or infinite value(s), which no pixel value stands for; check the "
                         f"result before writing it to {str(path)!r}")
    Image.init()
    if Image.registered_extensions().get(path.suffix.lower()) not in Image.SAVE:
        raise ValueError(f"path must end in an image extension PIL can write (.png, .jpg, .bmp, .tif, .webp, ...), "
                         f"got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    img = img.detach().float().cpu().clamp(-1, 1)
    arr = ((img + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    fmt = Image.registered_extensions()[path.suffix.lower()]
    # PIL's defaults: JPEG quality 75 with 4:2:0 chroma (colour at half resolution), WebP lossy
    options = {"JPEG": {"quality": 95, "subsampling": 0}, "WEBP": {"lossless": True}}.get(fmt, {})
    Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(path, **options)


def _centre_box(size: tuple[int, int], target: tuple[int, int]) -> tuple[int, int, int, int]:
    """The centre crop (left, top, right, bottom) of a (W, H) image with the aspect ratio of ``target``."""
    w, h = size
    tw, th = target
    if w * th > h * tw:  # wider than the target
        cw, ch = max(1, round(h * tw / th)), h
    else:
        cw, ch = w, max(1, round(w * th / tw))
    left, top = (w - cw) // 2, (h - ch) // 2
    return left, top, left + cw, top + ch


def _file(name: str):
    return resources.files(__name__).joinpath(name)


def photo(name: str, size: int | None = None) -> torch.Tensor:
    """A bundled photo (256x256 centre crop) as ``(3, H, W)`` in [-1, 1], resized to ``size``."""
    if name not in PHOTOS + HELDOUT:
        raise ValueError(f"photo name must be one of {PHOTOS + HELDOUT}, got {name!r}")
    with resources.as_file(_file(f"{name}.png")) as path:
        img = read_image(path)
    if size is not None:
        if not isinstance(size, int) or size < PHOTO_MIN_SIZE:
            raise ValueError(f"size must be an int >= {PHOTO_MIN_SIZE} or None, got {size!r}")
        img = torch.nn.functional.interpolate(
            img[None], size=(size, size), mode="bicubic", antialias=True, align_corners=False
        )[0].clamp(-1, 1)
    return img


def heldout_digits() -> torch.Tensor:
    """The 360 held-out digits (never trained on) as ``(360, 1, 16, 16)`` in [-1, 1]."""
    with resources.as_file(_file("digits16_heldout.png")) as path:
        mosaic = read_image(path, mode="L")[0]
    t = DIGITS_TILE
    rows, cols = mosaic.shape[0] // t, mosaic.shape[1] // t
    tiles = mosaic.reshape(rows, t, cols, t).permute(0, 2, 1, 3).reshape(rows * cols, 1, t, t)
    return tiles.contiguous()
