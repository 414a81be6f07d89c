"""The files the command line reads and writes, each case pinned by a test that failed before its fix: restore never
writes over its --input or --mask; a grey input's measurement, consistency and spread are grey as its result is;
the printed scores are of the file as written; --size advice keeps the aspect and its crops are noted; eval --data
names hidden files and sub-folders; image kinds (LAB, 16-bit grey + alpha, grey palette, several frames)."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import torch
from PIL import Image

from diffsolve.cli import main
from diffsolve.cli.common import image_info
from diffsolve.data import read_image
from diffsolve.metrics import data_consistency, psnr
from diffsolve.tasks import make_operator


def _png(path, arr, mode=None):
    Image.fromarray(np.asarray(arr, dtype=np.uint8), mode=mode).save(path)
    return str(path)


def _rgb(path, h=16, w=16, seed=0):
    return _png(path, np.random.default_rng(seed).integers(0, 255, (h, w, 3)))


@pytest.fixture
def fake_model(monkeypatch):
    """mpgd without a model: each draw is A⁺y plus noise that differs per channel (so a grey input's channels
    differ), from the draw's generator; the draws and y are kept."""
    import diffsolve.cli.common
    import diffsolve.methods

    seen: dict = {"draws": []}

    def fake_restore(method, model, op, y, **kwargs):
        g = kwargs["generator"]
        x = op.pseudo_inverse(y) + 0.1 * torch.randn(y.shape[0], 3, 16, 16, generator=g, dtype=torch.float64)
        seen["y"] = y
        seen["draws"].append(x)
        return x, {}

    monkeypatch.setattr(diffsolve.methods, "restore", fake_restore)
    monkeypatch.setattr(diffsolve.cli.common, "load_model", lambda *a, **k: object())
    monkeypatch.setattr(diffsolve.cli.common, "check_loaded_size", lambda model, *a, **k: model)
    return seen


def _number(text: str, before: str) -> float:
    return float(re.search(re.escape(before) + r"\s*([-0-9.]+)", text).group(1))


# --------------------------------------------------------------------------- restore: its own inputs


@pytest.mark.parametrize("case", ["measurement", "std", "mask", "symlink"])
def test_restore_never_writes_over_its_input_or_mask(tmp_path, capsys, no_compute, case):
    """OUT_measurement.png (--simulate), OUT_std.EXT (--draws) and --out itself were written over the --input or
    --mask file without a check; now every file the run writes is compared with them first."""
    img = _rgb(tmp_path / "a_measurement.png")
    mask = _png(tmp_path / "mask.png", np.full((16, 16), 255))
    argv = {"measurement": ["--input", img, "--simulate", "--task", "gaussian_blur", "--method", "tikhonov",
                            "--out", str(tmp_path / "a.png")],
            "std": ["--input", img, "--simulate", "--task", "denoise", "--method", "mpgd", "--draws", "2",
                    "--out", str(tmp_path / "a_measurement_std.png")[:-len("_std.png")] + ".png"],
            "mask": ["--input", img, "--task", "inpaint", "--mask", mask, "--method", "pinv", "--out", mask],
            "symlink": ["--input", img, "--task", "gaussian_blur", "--method", "pinv",
                        "--out", str(tmp_path / "link.png")]}[case]
    if case == "std":  # --out a_measurement.png writes its spread to a_measurement_std.png: make that the input
        os.replace(img, tmp_path / "a_measurement_std.png")
        argv[1] = str(tmp_path / "a_measurement_std.png")
        argv[-1] = str(tmp_path / "a_measurement.png")
    if case == "symlink":
        os.symlink(img, tmp_path / "link.png")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert main(["restore", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "would overwrite the" in err and "give another --out" in err
    assert ("--mask file" if case == "mask" else "--input file") in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


# --------------------------------------------------------------------------- restore: grey input, colour model


def test_a_grey_input_is_measured_scored_and_spread_in_grey(tmp_path, capsys, fake_model):
    """A grey input run by the colour model: y was measured with noise per channel (OUT_measurement.png was a
    colour file), and the printed consistency and spread were of the colour draws, not of the grey ones written."""
    grey = _png(tmp_path / "grey.png", np.random.default_rng(3).integers(0, 255, (16, 16)))
    out = tmp_path / "r.png"
    assert main(["restore", "--input", grey, "--task", "gaussian_blur", "--method", "mpgd", "--model", "patches",
                 "--steps", "2", "--draws", "2", "--simulate", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    y = fake_model["y"]
    assert y.shape[1] == 3 and torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 0], y[:, 2])  # measured once
    assert Image.open(tmp_path / "r_measurement.png").mode == "L" and Image.open(out).mode == "L"
    op = make_operator("gaussian_blur", (16, 16))
    written = read_image(out, "L")[None].double().expand(-1, 3, -1, -1)
    dc = float(data_consistency(op, written, y, 0.05)[0])
    assert _number(text, "(sigma sqrt(m)) =") == pytest.approx(dc, abs=1e-3)
    grey_draws = torch.cat(fake_model["draws"]).mean(1)
    assert _number(text, "draws: mean") == pytest.approx(float(grey_draws.std(0).mean()), abs=1e-4)
    colour_spread = float(torch.cat(fake_model["draws"]).std(0).mean())
    assert abs(_number(text, "draws: mean") - colour_spread) > 1e-3  # the old number differs from the grey one


# --------------------------------------------------------------------------- restore: scores of the file


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_the_printed_scores_are_of_the_file_as_written(tmp_path, capsys, monkeypatch, suffix):
    """The printed PSNR / consistency were of the float result, not of the 8-bit (and JPEG-compressed) file."""
    import diffsolve.methods

    seen = {}
    restore = diffsolve.methods.restore

    def keep_y(method, model, op, y, **kwargs):
        seen["y"], seen["op"] = y, op
        return restore(method, model, op, y, **kwargs)

    monkeypatch.setattr(diffsolve.methods, "restore", keep_y)
    img = _rgb(tmp_path / "in.png", 32, 32)
    out = tmp_path / f"r{suffix}"
    assert main(["restore", "--input", img, "--simulate", "--task", "gaussian_blur", "--method", "tikhonov",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    written = read_image(out)[None].double()
    assert _number(text, "PSNR") == pytest.approx(float(psnr(written, read_image(img)[None].double())), abs=0.006)
    dc = float(data_consistency(seen["op"], written, seen["y"], 0.05)[0])
    assert _number(text, "(sigma sqrt(m)) =") == pytest.approx(dc, abs=6e-4)
    assert f"(of {out.name} as written)" in text


# --------------------------------------------------------------------------- restore --size


def test_the_size_advice_keeps_the_aspect(tmp_path, capsys, no_compute):
    """A 1600x1000 photo was advised --size 1024, a square: following it cut a third of the photo away."""
    from diffsolve.cli import parser, restore
    from diffsolve.cli.common import MAX_PIXELS

    big = _png(tmp_path / "big.png", np.zeros((1000, 1600, 3)))
    argv = ["restore", "--input", big, "--task", "gaussian_blur", "--method", "tikhonov", "--out",
            str(tmp_path / "o.png")]
    assert main(argv) == 2
    w, h = map(int, re.search(r"--size (\d+)x(\d+)", capsys.readouterr().err).groups())
    assert w * h <= MAX_PIXELS and w % 8 == 0 and h % 8 == 0 and abs(w / h - 1.6) < 0.01 and w * h > 0.95 * MAX_PIXELS
    restore.plan(parser().parse_args([*argv, "--size", f"{w}x{h}"]))  # the advice passes


@pytest.mark.parametrize("size, needle", [("16", "centre-cropped to 16x16 (the aspect of 16x16), then resized to "
                                                 "16x16"),
                                          ("64x32", "is enlarged to 64x32 by interpolation"),
                                          ("16x8", None)])
def test_restore_notes_what_size_crops_or_enlarges(tmp_path, capsys, no_compute, size, needle):
    """--size cropped a non-square input to its aspect (and enlarged a small one) without a word."""
    from diffsolve.cli import parser, restore

    img = _rgb(tmp_path / "wide.png", 16, 32)
    restore.plan(parser().parse_args(["restore", "--input", img, "--task", "gaussian_blur", "--method", "tikhonov",
                                      "--size", size, "--out", str(tmp_path / "o.png")]))
    text = capsys.readouterr().out
    if needle is None:  # the same aspect, shrunk: nothing to say
        assert "--size" not in text
    else:
        assert f"note: --size {size if 'x' in size else f'{size}x{size}'}: --input wide.png (32x16)" in text
        assert needle in text


# --------------------------------------------------------------------------- eval --data


def test_eval_data_skips_hidden_files_and_names_sub_folders(tmp_path):
    """A hidden .x.png was scored as data and a sub-folder skipped without a word (also where it held every image)."""
    from diffsolve.cli.common import UsageError
    from diffsolve.cli.eval import _folder_images

    folder = tmp_path / "d"
    (folder / "sub").mkdir(parents=True)
    _rgb(folder / "a.png")
    _rgb(folder / ".x.png")
    _rgb(folder / "sub" / "inner.png")
    paths, notes = _folder_images(folder, None, 3, 16)
    assert [p.name for p in paths] == ["a.png"]
    assert any("hidden file(s) skipped" in n and ".x.png" in n for n in notes)
    assert any("sub-folder(s) not searched" in n and "sub/" in n for n in notes)
    (folder / "a.png").unlink()
    with pytest.raises(UsageError, match=r"holds no image.*sub-folders, which eval does not search \(sub/\)"):
        _folder_images(folder, None, 3, 16)


# --------------------------------------------------------------------------- image kinds


def _la16_png(path, grey):
    """A 16-bit grey + alpha PNG (PIL opens it as RGBA, 8-bit)."""
    import struct
    import zlib

    h, w = grey.shape
    arr = np.dstack([grey.astype(np.uint16) * 257, np.full_like(grey, 65535, dtype=np.uint16)])
    raw = b"".join(b"\x00" + arr[i].astype(">u2").tobytes() for i in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    head = chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 4, 0, 0, 0))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + head + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return str(path)


def test_image_kinds_are_read_for_what_they_are(tmp_path):
    """LAB's A band was taken for alpha and LAB could not be read as grey; a 16-bit grey + alpha PNG and a grey
    palette image counted as colour; only the first frame of a multi-frame file was read, silently."""
    rgb = np.random.default_rng(0).integers(0, 255, (16, 16, 3)).astype(np.uint8)
    grey = rgb[..., 0]
    lab = tmp_path / "lab.tif"
    Image.fromarray(rgb).convert("LAB").save(lab)
    info = image_info(lab, "--data")
    assert not info.alpha and not info.grey and info.mode == "LAB"
    assert read_image(lab, "L").shape == (1, 16, 16)  # through RGB: PIL has no LAB to L conversion
    assert any("LAB colour space" in n for n in info.notices("--input"))

    la16 = image_info(_la16_png(tmp_path / "la16.png", grey), "--input")
    assert Image.open(la16.path).mode == "RGBA" and la16.grey and la16.alpha

    pal = Image.new("P", (16, 16))
    pal.putpalette([v for i in range(256) for v in (i, i, i)])
    pal.putdata(grey.ravel().tolist())
    pal.save(tmp_path / "greypal.png")
    assert image_info(tmp_path / "greypal.png", "--input").grey
    assert torch.equal(read_image(tmp_path / "greypal.png", "L")[0], read_image(_png(tmp_path / "g.png", grey), "L")[0])
    Image.fromarray(rgb).convert("P").save(tmp_path / "colourpal.png")
    assert not image_info(tmp_path / "colourpal.png", "--input").grey

    frames = [Image.fromarray(rgb), Image.fromarray(rgb[::-1])]
    frames[0].save(tmp_path / "pages.tif", save_all=True, append_images=frames[1:])
    pages = image_info(tmp_path / "pages.tif", "--input")
    assert pages.frames == 2 and "pages.tif has 2 frames (pages or animation): only the first is read" in \
        " ".join(pages.notices("--input"))


def test_a_lab_image_in_data_is_noted_and_read_by_a_grey_model(tmp_path, capsys):
    """eval --data with a LAB file and the grey digits model crashed after loading the model (no LAB to L)."""
    folder = tmp_path / "d"
    folder.mkdir()
    rgb = np.random.default_rng(0).integers(0, 255, (16, 16, 3)).astype(np.uint8)
    Image.fromarray(rgb).convert("LAB").save(folder / "lab.tif")
    assert main(["eval", "--data", str(folder), "--size", "16", "--model", "digits16", "--tasks", "box",
                 "--methods", "pinv", "--no-progress", "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert "in another colour space (LAB), converted to RGB" in err and "lab.tif" in err


def test_a_bright_image_is_no_unit_mistake_on_the_command_line(tmp_path, capsys):
    """The CLI puts the files on [-1, 1] itself, so y inside [0, 1] (a bright photo) is no [0, 1]-units mistake: the
    library's warning (a raw UserWarning with a source line, advising 2 * y - 1) is not shown there."""
    import warnings

    import diffsolve
    from diffsolve.operators import Identity
    from diffsolve.solvers import MeasurementRangeWarning

    bright = _png(tmp_path / "bright.png", np.random.default_rng(0).integers(170, 255, (16, 16)))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert main(["restore", "--input", bright, "--task", "gaussian_blur", "--method", "tikhonov",
                     "--out", str(tmp_path / "o.png")]) == 0
    assert not [w for w in seen if "y lies in" in str(w.message)]
    with pytest.warns(MeasurementRangeWarning, match=r"y lies in \[.*\] ⊂ \[0, 1\]"):  # the library still says so
        diffsolve.solve("tikhonov", None, Identity(), torch.full((1, 1, 16, 16), 0.5), lam=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and the command line's filter did not outlive its run
        with pytest.raises(MeasurementRangeWarning):
            diffsolve.solve("tikhonov", None, Identity(), torch.full((1, 1, 16, 16), 0.5), lam=0.1)


def test_restore_notes_a_result_it_clips_and_its_consistency_before(tmp_path, capsys):
    """A real photo that does not fit the operator's model can restore beyond [-1, 1]; the 8-bit file clips it, and the
    printed consistency (of the file) then rose with no word of why. Rounding at the edge is not noted."""
    rng = np.random.default_rng(0)
    sharp = _png(tmp_path / "sharp.png", rng.integers(0, 2, (32, 32, 3)) * 255)
    assert main(["restore", "--input", sharp, "--task", "motion_blur", "--method", "tikhonov",
                 "--out", str(tmp_path / "o.png")]) == 0
    err = "".join(capsys.readouterr())
    assert re.search(r"\d+\.\d% of the result's values lie outside \[-1, 1\] and are clipped in o\.png .* its data "
                     r"consistency is \d+\.\d+ before the clipping", err)
    grey = _png(tmp_path / "grey.png", rng.integers(0, 2, (16, 16)) * 255)  # pinv fits it: |x| exceeds 1 by rounding
    assert main(["restore", "--input", grey, "--task", "gaussian_blur", "--method", "pinv",
                 "--out", str(tmp_path / "g.png")]) == 0
    assert "clipped in g.png" not in "".join(capsys.readouterr())
