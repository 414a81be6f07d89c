"""The images ``diffsolve eval`` scores: a folder's files or a bundled set, and the SHA-256 of the files they
come from (pinned in OUT/config.json, so a resumed run cannot mix data)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["BUNDLED", "ImageSet", "bundled_images", "bundled_names", "bundled_photos", "data_hashes", "file_sha256",
           "folder_images", "saved_names"]


#: the bundled image sets (:func:`bundled_images`)
BUNDLED = ("digits16", "photos", "heldout")


@dataclass
class ImageSet:
    """Named images: ``names`` (file names) and ``load(indices) -> (n, C, S, S)`` in [−1, 1]."""

    names: list[str]
    load: Callable[[Sequence[int]], torch.Tensor]


def folder_images(paths: Sequence[Path], size: int, channels: int) -> ImageSet:
    """Files centre-cropped to a square and resized to size × size (:func:`diffsolve.data.read_image`)."""
    from ..data import read_image

    mode = "L" if channels == 1 else "RGB"
    return ImageSet([p.name for p in paths],
                    lambda idx: torch.stack([read_image(paths[i], mode, (size, size)) for i in idx]))


def bundled_photos(name: str) -> tuple[str, ...]:
    """The photo names of a bundled photo set: ``photos`` (the demo's: chelsea, coffee) or ``heldout`` (the
    benchmarks' held-out photos: camera, grass, hopper, raccoon)."""
    from .. import data

    return {"photos": data.PHOTOS, "heldout": data.HELDOUT}[name]


def bundled_names(name: str) -> list[str]:
    """The image names of a bundled set (without decoding it)."""
    from .. import data

    if name == "digits16":
        return [f"digit_{i:03d}.png" for i in range(data.HELDOUT_DIGITS)]
    return [f"{p}.png" for p in bundled_photos(name)]


def bundled_images(name: str, size: int, channels: int) -> ImageSet:
    """The bundled sets: ``digits16`` (360 held-out 16×16 digits) and the photo sets of :func:`bundled_photos`."""
    from .. import data

    if name == "digits16":
        digits = data.heldout_digits()
        if channels == 3:
            digits = digits.expand(-1, 3, -1, -1)
        return ImageSet([f"digit_{i:03d}.png" for i in range(len(digits))], lambda idx: digits[list(idx)])
    names = bundled_photos(name)
    photos = [data.photo(p, size) for p in names]  # (3, S, S)
    if channels == 1:
        photos = [p.mean(0, keepdim=True) for p in photos]
    return ImageSet([f"{p}.png" for p in names], lambda idx: torch.stack([photos[i] for i in idx]))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def data_hashes(data: str, image_paths: Sequence[Path] | None, names: Sequence[str]) -> dict[str, str]:
    """``{image name: SHA-256}`` of the files the images come from (a bundled set: its bundled file, plus
    the set's name, so a folder of the same names never matches it)."""
    if image_paths is not None:
        return {p.name: file_sha256(Path(p)) for p in image_paths}
    from importlib import resources

    from .. import data as bundled

    files = ["digits16_heldout.png"] if data == "digits16" else [f"{p}.png" for p in bundled_photos(data)]
    digests = []
    for name in files:
        with resources.as_file(resources.files(bundled.__name__).joinpath(name)) as path:
            digests.append(file_sha256(path))
    if data != "digits16":
        return {n: f"bundled:{data}:{d}" for n, d in zip(names, digests)}
    return {n: f"bundled:digits16:{digests[0]}" for n in names}


def saved_names(names: Sequence[str]) -> dict[str, str]:
    """The file ``--save-images`` writes for each image name: its stem + ``.png`` where all stems differ, else (two
    images such as x.png and x.jpg share one) every image's full name + ``.png``, so no image overwrites another.
    A function of the run's image list alone: the same on every rank."""
    full = len({Path(n).stem for n in names}) < len(names)
    return {n: f"{n if full else Path(n).stem}.png" for n in names}
