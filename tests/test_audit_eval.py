"""The command line on a user's own files: one run at a time per eval --out, --out never the --data folder, an
unwritable --out refused before any work, an over-large image refused in one line, colour images meeting a grey
model announced, Ctrl-C one line (exit 130) with eval's finished records kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffsolve.cli import main

FAST = ("--size", "16", "--tasks", "box", "--methods", "pinv", "--no-progress")


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    d = tmp_path / "imgs"
    d.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(d / name)
    return d


def one_line_error(capsys, rc: int, *needles: str):
    """Exit status 2 and one line on stderr holding ``needles``; returns what was captured (out and err)."""
    captured = capsys.readouterr()
    err = captured.err
    assert rc == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return captured


def test_a_second_run_into_an_out_in_use_is_refused(folder, tmp_path, capsys):
    """Two runs into one --out each merged and deleted the part file the other was still appending to: records
    were lost. While one run holds OUT (its lock), another is refused in one line and writes no record."""
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".lock", "a") as held:  # what a running eval holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        rc = main(["eval", "--data", str(folder), "--out", str(out), *FAST])
        one_line_error(capsys, rc, "--out:", "another diffsolve eval")
        assert not (out / "results.jsonl").exists() and not (out / "parts").exists()
    assert main(["eval", "--data", str(folder), "--out", str(out), *FAST]) == 0  # released: it runs
    assert len((out / "results.jsonl").read_text().splitlines()) == 2


def test_out_that_is_the_data_folder_is_refused(folder, capsys):
    """The plot written into --out was read back as an image by the rerun (and then refused as changed data)."""
    rc = main(["eval", "--data", str(folder), "--out", str(folder) + "/", *FAST])
    one_line_error(capsys, rc, "--out:", "is the --data folder")
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "b.png"]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc: a folder nobody can write, even root")
def test_an_out_that_cannot_be_written_is_refused_before_the_work(folder, capsys):
    rc = main(["eval", "--data", str(folder), "--out", "/proc/diffsolve-audit/run", *FAST])
    one_line_error(capsys, rc, "--out:", "cannot be written")
    rc = main(["restore", "--input", str(folder / "a.png"), "--simulate", "--task", "box", "--method", "pinv",
               "--out", "/proc/diffsolve-audit/x.png"])
    assert "restore:" not in one_line_error(capsys, rc, "--out:", "cannot be written").out  # before the work
    rc = main(["demo", "--quick", "--out", "/proc/diffsolve-audit/demo"])
    one_line_error(capsys, rc, "--out:", "cannot be written")


def test_an_image_above_pils_pixel_limit_is_one_line(folder, capsys, monkeypatch):
    """PIL's DecompressionBombError is not an OSError: it escaped as a traceback."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 24x24 = 576 pixels > 2 x 100: refused as a bomb
    rc = main(["restore", "--input", str(folder / "a.png"), "--simulate", "--task", "box", "--method", "pinv",
               "--out", str(folder.parent / "x.png")])
    one_line_error(capsys, rc, "--input:", "downscale it first")
    from diffsolve.data import read_image

    with pytest.raises(ValueError, match="cannot read image"):
        read_image(folder / "a.png")


def test_colour_images_for_a_grey_model_are_announced(folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["eval", "--data", str(folder), "--out", str(out), "--model", "digits16", *FAST]) == 0
    err = capsys.readouterr().err
    assert "2 colour image(s) converted to grey for the grey model: a.png, b.png" in err
    assert "converted to grey" in (out / "summary.md").read_text()


def test_ctrl_c_is_one_line_exit_130_and_eval_keeps_its_records(folder, tmp_path, capsys, monkeypatch):
    from diffsolve.evaluate import run as run_module

    real = run_module.run_batch
    calls = []

    def interrupted_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "run_batch", interrupted_second)
    out = tmp_path / "out"
    try:
        rc = main(["eval", "--data", str(folder), "--out", str(out), *FAST])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped diffsolve eval as a traceback")
    err = capsys.readouterr().err
    assert rc == 130 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"diffsolve eval: interrupted; the records finished so far are kept in "
                                            f"{str(out)!r}: rerun the same command to resume")
    kept = [json.loads(line) for line in (out / "parts" / "rank-0.jsonl").read_text().splitlines()]
    assert [r["image"] for r in kept] == ["a.png"]
    monkeypatch.setattr(run_module, "run_batch", real)
    assert main(["eval", "--data", str(folder), "--out", str(out), *FAST]) == 0  # the rerun resumes
    assert "2 of 2 records of this request, 1 new" in capsys.readouterr().err

    from diffsolve.cli import restore

    def stopped(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(restore, "run", stopped)
    try:
        rc = main(["restore", "--input", str(folder / "a.png"), "--simulate", "--task", "box", "--method", "pinv",
                   "--out", str(tmp_path / "x.png")])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped diffsolve restore as a traceback")
    assert rc == 130 and capsys.readouterr().err == "diffsolve restore: interrupted\n"


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_a_palette_image_with_transparency_reads_without_pils_warning(tmp_path, mode):
    """A palette PNG whose transparency is a byte table made PIL warn (two lines, each image, each run) on
    convert; it is read through RGBA instead: the same pixels, no warning."""
    import warnings

    from diffsolve.data import read_image

    rgba = np.random.default_rng(0).integers(0, 255, (12, 12, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").quantize(16).save(tmp_path / "p.png")
    with Image.open(tmp_path / "p.png") as im:
        assert isinstance(im.info.get("transparency"), bytes)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = np.asarray(im.convert(mode), dtype=np.float32) / 127.5 - 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = read_image(tmp_path / "p.png", mode)
    assert np.array_equal(got.permute(1, 2, 0).numpy().reshape(want.shape), want)


def test_save_images_on_a_resumed_out_says_which_records_have_no_image(folder, tmp_path, capsys):
    """--save-images added on a rerun computed nothing and saved nothing, silently."""
    out = tmp_path / "out"
    assert main(["eval", "--data", str(folder), "--out", str(out), "--limit", "1", *FAST]) == 0
    capsys.readouterr()
    assert main(["eval", "--data", str(folder), "--out", str(out), "--save-images", *FAST]) == 0
    err = capsys.readouterr().err
    assert "1 record(s) already in" in err and "have no saved image" in err
    assert [p.name for p in (out / "images" / "box" / "pinv" / "seed0").iterdir()] == ["b.png"]
    assert main(["eval", "--data", str(folder), "--out", str(tmp_path / "new"), "--save-images", *FAST]) == 0
    assert "no saved image" not in capsys.readouterr().err


def test_macos_appledouble_files_are_skipped_with_a_note(folder, tmp_path, capsys):
    (folder / "._a.png").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 60)  # what a macOS copy leaves beside a.png
    out = tmp_path / "out"
    assert main(["eval", "--data", str(folder), "--out", str(out), *FAST]) == 0
    assert "1 file(s) named ._* skipped" in capsys.readouterr().err
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["image"] for r in records} == {"a.png", "b.png"}


def test_files_of_other_kinds_are_named_as_skipped(folder, tmp_path, capsys):
    Image.fromarray(np.zeros((24, 24, 3), dtype=np.uint8)).save(folder / "c.gif")
    (folder / "notes.txt").write_text("not an image")
    assert main(["eval", "--data", str(folder), "--out", str(tmp_path / "out"), *FAST]) == 0
    assert "2 file(s) skipped" in capsys.readouterr().err


def test_out_inside_the_package_is_refused(tmp_path, capsys):
    import diffsolve.data

    data_dir = Path(diffsolve.data.__file__).parent
    before = sorted(p.name for p in data_dir.iterdir())
    assert main(["eval", "--data", "heldout", "--out", str(data_dir), *FAST]) == 2
    assert "inside the installed diffsolve package" in capsys.readouterr().err
    assert sorted(p.name for p in data_dir.iterdir()) == before


@pytest.mark.parametrize("device, local, needle", [("cuda:0", "0", "would put all 2 ranks on GPU 0"),
                                                   ("cuda", "1", "local rank 1 has no GPU of its own")])
def test_cuda_ranks_without_a_gpu_of_their_own_are_named(monkeypatch, device, local, needle):
    import torch

    from diffsolve.evaluate import RankDeviceError, setup_distributed

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", local)
    monkeypatch.setenv("LOCAL_RANK", local)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(RankDeviceError, match=needle):
        setup_distributed(device)
