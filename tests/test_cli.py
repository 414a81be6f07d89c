"""The command line: info, argument and input validation, restore, and a tiny demo run."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from diffsolve.cli import main
from diffsolve.cli.info import info
from diffsolve.data import heldout_digits


def _png(path, arr):
    Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(path)
    return str(path)


@pytest.fixture
def digit_png(tmp_path):
    d = ((heldout_digits()[0, 0] + 1) * 127.5).round().numpy()
    return _png(tmp_path / "digit.png", d)


def test_info_lists_versions_backends_and_models():
    buf = io.StringIO()
    result = info(out=buf)
    text = buf.getvalue()
    assert set(result["backends"]) == {"triton", "cpp", "torch"}
    assert result["backends"]["torch"]["available"] is True
    for name, b in result["backends"].items():
        assert b["reason"] and name in text
    assert result["models"]["digits16"]["in_channels"] == 1
    assert result["models"]["patches"]["in_channels"] == 3
    assert "digits16" in text and "patches" in text and result["versions"]["torch"] in text
    from diffsolve.data import HELDOUT

    assert result["data"]["heldout"] == [f"{p}.png" for p in HELDOUT] and "raccoon" in text
    from diffsolve.cli.common import BUNDLED_ABOUT

    assert all(p in BUNDLED_ABOUT["heldout"] for p in HELDOUT)  # the written description names the photos


def test_info_command_exit_status(capsys):
    assert main(["info"]) == 0
    assert "shipped models" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["restore", "--input", "x.png", "--task", "deblur", "--method", "mpgd", "--out", "o.png"],
    ["restore", "--input", "x.png", "--task", "sr4", "--method", "magic", "--out", "o.png"],
    ["restore", "--input", "x.png", "--task", "sr4", "--method", "mpgd", "--steps", "0", "--out", "o.png"],
    ["restore", "--task", "sr4", "--method", "mpgd", "--out", "o.png"],
    ["demo", "--steps", "-3"],
    ["frobnicate"],
])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def _restore(tmp_path, *extra):
    return main(["restore", "--out", str(tmp_path / "out.png"), "--steps", "2", *extra])


def test_unreadable_image(tmp_path, capsys):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    assert _restore(tmp_path, "--input", str(bad), "--task", "gaussian_blur", "--method", "mpgd") == 2
    assert "cannot read image" in capsys.readouterr().err
    assert _restore(tmp_path, "--input", str(tmp_path / "missing.png"), "--task", "sr4", "--method", "mpgd") == 2
    assert "cannot read image" in capsys.readouterr().err


def test_model_image_mismatches(tmp_path, digit_png, capsys):
    grey20 = _png(tmp_path / "g20.png", np.zeros((20, 20)))
    assert _restore(tmp_path, "--input", grey20, "--task", "gaussian_blur", "--method", "mpgd",
                    "--model", "digits16", "--simulate") == 2
    assert "size mismatch" in capsys.readouterr().err
    rgb = _png(tmp_path / "rgb.png", np.zeros((16, 16, 3)))
    assert _restore(tmp_path, "--input", rgb, "--task", "gaussian_blur", "--method", "mpgd", "--model", "digits16") == 2
    assert "1-channel" in capsys.readouterr().err
    rgb6 = _png(tmp_path / "rgb6.png", np.zeros((6, 6, 3)))  # below one block of the patches model
    assert _restore(tmp_path, "--input", rgb6, "--task", "gaussian_blur", "--method", "mpgd", "--simulate") == 2
    assert "at least 8x8" in capsys.readouterr().err
    assert _restore(tmp_path, "--input", digit_png, "--task", "sr4", "--method", "mpgd",
                    "--model", str(tmp_path / "nowhere")) == 2
    assert "local diffusers folder" in capsys.readouterr().err


def test_mask_rules(tmp_path, digit_png, capsys):
    common = ["--input", digit_png, "--method", "mpgd", "--model", "digits16"]
    assert _restore(tmp_path, *common, "--task", "inpaint") == 2
    assert "needs --mask" in capsys.readouterr().err
    assert _restore(tmp_path, *common, "--task", "box") == 2
    assert "--simulate" in capsys.readouterr().err
    small = _png(tmp_path / "m.png", np.full((8, 8), 255))
    assert _restore(tmp_path, *common, "--task", "inpaint", "--mask", small) == 2
    assert "--mask is 8x8" in capsys.readouterr().err


def test_restore_simulated_digit(tmp_path, digit_png, capsys):
    assert _restore(tmp_path, "--input", digit_png, "--task", "box", "--method", "mpgd",
                    "--model", "digits16", "--simulate") == 0
    out = capsys.readouterr().out
    assert "PSNR" in out and "data consistency" in out and "work size 16x16" in out
    assert Image.open(tmp_path / "out.png").size == (16, 16)
    assert (tmp_path / "out_measurement.png").is_file()


def test_restore_draws_writes_mean_and_spread(tmp_path, digit_png, capsys):
    """--draws K: K draws one after another; --out is their mean, OUT_std the per-pixel spread; both consistency
    figures and the draws' PSNR are printed. A model-free method refuses --draws (nothing to average)."""
    args = ("--input", digit_png, "--task", "box", "--method", "mpgd", "--model", "digits16", "--simulate")
    assert _restore(tmp_path, *args) == 0
    single = np.asarray(Image.open(tmp_path / "out.png"), dtype=float)
    capsys.readouterr()
    assert _restore(tmp_path, *args, "--draws", "3") == 0
    out = capsys.readouterr().out
    from diffsolve.cli.restore import draw_seed

    assert "mean of 3 draws" in out and f"draw 3/3 (seed {draw_seed(0, 2)})" in out
    assert "data consistency of the draws" in out and "PSNR of the draws" in out
    assert "(of the mean, out.png as written)" in out
    mean = np.asarray(Image.open(tmp_path / "out.png"), dtype=float)
    std = np.asarray(Image.open(tmp_path / "out_std.png"), dtype=float)
    assert mean.shape == single.shape == std.shape[:2] and np.abs(mean - single).max() > 0
    assert std.max() > 0 and std.min() >= 0  # the draws differ somewhere (the hole at least)
    assert _restore(tmp_path, *args[:4], "--method", "tikhonov", "--simulate", "--draws", "2") == 2
    assert "--draws 2: tikhonov is a deterministic" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: "expected an integer >= 1"
        _restore(tmp_path, *args, "--draws", "0")


def test_a_simulated_measurement_file_is_y_and_restores_back(tmp_path, capsys):
    """--simulate's OUT_measurement is y itself (SR x4: a quarter of the sides), so restore takes it back."""
    img = _png(tmp_path / "img.png", np.random.default_rng(2).integers(0, 255, (16, 16)))
    assert _restore(tmp_path, "--input", img, "--task", "sr4", "--method", "tikhonov", "--model", "digits16",
                    "--simulate") == 0
    assert Image.open(tmp_path / "out_measurement.png").size == (4, 4)
    assert main(["restore", "--input", str(tmp_path / "out_measurement.png"), "--task", "sr4", "--method", "tikhonov",
                 "--model", "digits16", "--out", str(tmp_path / "back.png")]) == 0
    assert Image.open(tmp_path / "back.png").size == (16, 16)


def test_restore_measurement_sr4_and_mask(tmp_path, capsys):
    low = _png(tmp_path / "low.png", np.random.default_rng(0).integers(0, 255, (4, 4)))
    assert _restore(tmp_path, "--input", low, "--task", "sr4", "--method", "tikhonov", "--model", "digits16") == 0
    assert Image.open(tmp_path / "out.png").size == (16, 16)
    mask = np.full((16, 16), 255)
    mask[4:10, 4:10] = 0
    img = _png(tmp_path / "img.png", np.random.default_rng(1).integers(0, 255, (16, 16)))
    assert _restore(tmp_path, "--input", img, "--task", "inpaint", "--mask", _png(tmp_path / "mask.png", mask),
                    "--method", "cdps", "--model", "digits16") == 0


def test_tiny_demo(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--steps", "2", "--size", "32", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["suites"]) == {"photos", "digits16"}
    for suite in metrics["suites"].values():
        assert set(suite) == {"gaussian_blur", "motion_blur", "box", "random", "sr4"}
        for task in suite.values():
            assert set(task) == {"pinv", "tikhonov", "mpgd", "cdps"}
            assert all(np.isfinite(m["psnr"]) and -1 <= m["ssim"] <= 1 for m in task.values())
            assert all(m["dc"] is not None and m["dc"] >= 0 for m in task.values())  # data consistency
    assert len(list(out.glob("*.png"))) == 10
    assert Image.open(out / "photos_box.png").size[0] > 6 * 32

    # a rerun into the same folder with fewer tasks leaves no grid its metrics.json does not describe (others' files
    # stay)
    (out / "mine.png").write_bytes((out / "photos_box.png").read_bytes())
    capsys.readouterr()
    assert main(["demo", "--quick", "--steps", "2", "--size", "32", "--out", str(out), "--tasks", "box",
                 "--methods", "mpgd"]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["digits16_box.png", "mine.png", "photos_box.png"]
    assert "removed 8 grid(s) of an earlier demo" in capsys.readouterr().out


def test_restore_no_discrepancy_returns_the_papers_result(tmp_path, digit_png, capsys):
    """--no-discrepancy: the method's paper result (no final pull towards y); 2 MPGD steps under-fit y, so the
    default ends nearer y than the flagged run. A model-free method refuses the flag (it has no such step)."""
    args = ("--input", digit_png, "--task", "gaussian_blur", "--method", "mpgd", "--model", "digits16", "--simulate")

    def dc(out: str) -> float:
        return float(out.split("(sigma sqrt(m)) = ")[1].split()[0])

    assert _restore(tmp_path, *args) == 0
    default = capsys.readouterr().out
    pulled = np.asarray(Image.open(tmp_path / "out.png"), dtype=float)
    assert _restore(tmp_path, *args, "--no-discrepancy") == 0
    paper = capsys.readouterr().out
    assert "the paper's result (--no-discrepancy)" in paper and "--no-discrepancy" not in default
    assert dc(paper) > 1.5 and dc(default) < dc(paper)
    assert np.abs(np.asarray(Image.open(tmp_path / "out.png"), dtype=float) - pulled).max() > 0
    assert _restore(tmp_path, *args[:4], "--method", "tikhonov", "--simulate", "--no-discrepancy") == 2
    assert "--no-discrepancy: tikhonov is a closed-form solve" in capsys.readouterr().err


def test_draw_seeds_stay_apart_from_the_noise_seed(tmp_path, digit_png, capsys, monkeypatch):
    """--simulate's noise comes from --seed + 1; the draws of --draws K used --seed + k, so draw 2 reused the noise's
    randomness. Now draw 1 keeps --seed (a single draw is unchanged) and the others come from hashed seeds."""
    import diffsolve.methods
    from diffsolve.cli.restore import draw_seed

    seen = []

    def fake_restore(method, model, op, y, **kwargs):
        seen.append(kwargs["generator"].initial_seed())
        return op.pseudo_inverse(y), {}

    monkeypatch.setattr(diffsolve.methods, "restore", fake_restore)
    args = ("--input", digit_png, "--task", "box", "--method", "mpgd", "--model", "digits16", "--simulate",
            "--seed", "7")
    assert _restore(tmp_path, *args) == 0
    assert seen == [7]  # the single-draw default: --seed itself
    seen.clear()
    assert _restore(tmp_path, *args, "--draws", "4") == 0
    assert seen[0] == 7 and len(set(seen)) == 4 and 8 not in seen  # 8: the noise's seed
    assert seen == [draw_seed(7, k) for k in range(4)]


def test_mask_is_resized_by_nearest_neighbour_at_mid_grey(tmp_path, capsys, monkeypatch):
    """--size resized the mask bicubically and called every pixel above black observed: the hole shrank and its
    painted-over (grey) border became data. Now: threshold at mid-grey, resize by nearest neighbour."""
    import diffsolve.methods
    import torch

    mask = np.full((64, 64), 255)
    mask[14:42, 14:42] = 100  # a partly painted border: not observed
    mask[16:40, 16:40] = 0
    mask[50:54, 50:54] = 200  # light grey: observed
    seen = {}

    def fake_restore(method, model, op, y, **kwargs):
        seen["mask"] = op.mask[0, 0].clone()
        return op.pseudo_inverse(y), {}

    monkeypatch.setattr(diffsolve.methods, "restore", fake_restore)
    img = _png(tmp_path / "img.png", np.random.default_rng(1).integers(0, 255, (64, 64, 3)))
    assert _restore(tmp_path, "--input", img, "--task", "inpaint", "--mask", _png(tmp_path / "m.png", mask),
                    "--method", "tikhonov", "--size", "48") == 0
    got = seen["mask"]
    assert got.shape == (48, 48) and set(got.unique().tolist()) <= {0.0, 1.0}
    observed = mask >= 128
    assert abs(float(got.mean()) - observed.mean()) < 0.02  # the observed fraction is kept
    nearest = Image.fromarray(observed.astype(np.uint8) * 255).resize((48, 48), Image.NEAREST)
    assert torch.equal(got, torch.from_numpy(np.asarray(nearest) >= 128).double())  # no grey pixel observed


def test_a_grey_input_gives_a_grey_result_and_y_is_written_losslessly(tmp_path, capsys):
    """A grey photo run by the colour model: the result file is grey (the channels' mean; they were written as RGB
    with a tint before), the printed PSNR is of that file, and with a .jpg --out the measurement is still a PNG
    (a JPEG's error exceeded y's noise)."""
    grey = _png(tmp_path / "grey.png", np.random.default_rng(3).integers(0, 255, (16, 16)))
    assert main(["restore", "--input", grey, "--task", "gaussian_blur", "--method", "mpgd", "--model", "patches",
                 "--steps", "2", "--simulate", "--out", str(tmp_path / "r.jpg")]) == 0
    captured = capsys.readouterr()
    assert "the result is written grey" in captured.err + captured.out
    assert Image.open(tmp_path / "r.jpg").mode == "L"
    assert (tmp_path / "r_measurement.png").is_file() and not (tmp_path / "r_measurement.jpg").exists()


def test_the_default_model_follows_the_restored_size_not_the_input_size(tmp_path, capsys):
    """A 16x16 grey input for SR x4 restores a 64x64 image: the default is `patches`; it was `digits16` (16x16 only),
    whose error then advised the --size the input already had."""
    low = _png(tmp_path / "low.png", np.random.default_rng(4).integers(0, 255, (16, 16)))
    assert main(["restore", "--input", low, "--task", "sr4", "--method", "mpgd", "--steps", "2",
                 "--out", str(tmp_path / "up.png")]) == 0
    assert "model patches" in capsys.readouterr().out
    assert Image.open(tmp_path / "up.png").size == (64, 64)
