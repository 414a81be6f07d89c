"""Front-door bugs of the command line, each pinned by a test that failed before the fix: an existing
--data path wins over a bundled name; resume pins the data by content; restore --size, the pixel limit,
the work size and a line for every method; grey / RGBA inputs; one list convention; readable
quality-vs-time ticks; argparse errors in one line; data consistency everywhere."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffsolve import evaluate
from diffsolve.cli import eval as cli_eval
from diffsolve.cli import main
from diffsolve.metrics import data_consistency
from diffsolve.operators import Identity, SuperResolution

REPO = Path(__file__).resolve().parents[1]


def _png(path, arr, mode=None):
    Image.fromarray(np.asarray(arr, dtype=np.uint8), mode=mode).save(path)
    return str(path)


def parse_eval(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="diffsolve")
    cli_eval.add_parser(p.add_subparsers(dest="command", required=True))
    return p.parse_args(["eval", *argv])


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# --------------------------------------------------------------------------- eval --data


def test_existing_folder_wins_over_the_bundled_name(tmp_path, monkeypatch, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    _png(photos / "mine.png", rng.integers(0, 255, (16, 16, 3)))
    monkeypatch.chdir(tmp_path)
    assert cli_eval.run(parse_eval("--data", "photos", "--size", "16", "--tasks", "box", "--methods", "pinv",
                                   "--no-progress", "--out", "o")) == 0
    recs = [json.loads(x) for x in (tmp_path / "o" / "results.jsonl").read_text().splitlines()]
    assert [r["image"] for r in recs] == ["mine.png"]  # not chelsea.png / coffee.png
    err = capsys.readouterr().err
    assert f"eval: data = folder {photos.resolve()} (1 image)" in err
    shadow = f"note: --data photos: the folder '{photos.resolve()}' here shadows the bundled set 'photos'"
    assert shadow in err and "run from another directory or rename the folder" in err
    assert "shadows the bundled set 'photos'" in (tmp_path / "o" / "summary.md").read_text()


@pytest.mark.parametrize("content", ["image", "empty"])
def test_a_folder_shadowing_a_bundled_set_is_named_in_its_errors(tmp_path, monkeypatch, capsys, no_compute, content):
    """./photos wins over the bundled set; where the folder then fails (no --size, no image) the error says why the
    folder was read and how to reach the bundled set."""
    photos = tmp_path / "photos"
    photos.mkdir()
    if content == "image":
        _png(photos / "mine.png", np.zeros((16, 16, 3)))
    monkeypatch.chdir(tmp_path)
    line = _one_line_error(capsys, ["eval", "--data", "photos", "--methods", "pinv", "--out", "o"])
    assert ("--size: missing for a folder" if content == "image" else "holds no image") in line
    assert f"the folder '{photos.resolve()}' here shadows the bundled set 'photos'" in line
    assert "run from another directory or rename the folder" in line


def test_bundled_set_is_named_in_the_output(tmp_path, capsys):
    assert cli_eval.run(parse_eval("--data", "digits16", "--limit", "1", "--tasks", "box", "--methods", "pinv",
                                   "--no-progress", "--out", str(tmp_path / "o"))) == 0
    assert "eval: data = bundled set 'digits16'" in capsys.readouterr().err
    assert "bundled set 'digits16'" in (tmp_path / "o" / "summary.md").read_text()


def test_bundled_heldout_set_is_the_benchmark_photos(tmp_path, capsys):
    from diffsolve.data import HELDOUT

    out = tmp_path / "o"
    assert cli_eval.run(parse_eval("--data", "heldout", "--size", "16", "--tasks", "box", "--methods", "pinv",
                                   "--no-progress", "--out", str(out))) == 0
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["image"] for r in recs) == sorted(f"{p}.png" for p in HELDOUT)
    assert "eval: data = bundled set 'heldout'" in capsys.readouterr().err
    pinned = json.loads((out / "config.json").read_text())["data"]
    assert all(v.startswith("bundled:heldout:") for v in pinned.values()) and len(set(pinned.values())) == len(HELDOUT)


def test_resume_refuses_changed_input_files(tmp_path, capsys):
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(1)
    _png(d / "a.png", rng.integers(0, 255, (16, 16)))
    _png(d / "b.png", rng.integers(0, 255, (16, 16)))
    args = ("--data", str(d), "--size", "16", "--model", "digits16", "--tasks", "box", "--methods", "pinv",
            "--no-progress", "--out", str(tmp_path / "o"))
    assert cli_eval.run(parse_eval(*args)) == 0
    pinned = json.loads((tmp_path / "o" / "config.json").read_text())
    assert set(pinned["data"]) == {"a.png", "b.png"}
    capsys.readouterr()
    _png(d / "a.png", rng.integers(0, 255, (16, 16)))  # same name, other content
    assert cli_eval.run(parse_eval(*args)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("diffsolve eval: error: --data: 'a.png'"), err
    assert "another --out" in err[0]
    # the library refuses too (ValueError), without the command line
    cfg = evaluate.EvalConfig(data=str(d), size=16, tasks=["box"], methods=["pinv"], steps=30, seeds=[0],
                              out=tmp_path / "o", model="digits16", channels=1, image_paths=sorted(d.glob("*.png")))
    cfg.hashes = evaluate.data_hashes(str(d), cfg.image_paths, ["a.png", "b.png"])
    with pytest.raises(ValueError, match="'a.png'"):
        evaluate.run_eval(cfg)


# --------------------------------------------------------------------------- lists


def test_lists_take_commas_or_spaces_everywhere(tmp_path):
    from diffsolve.cli import demo, parser

    for tasks in (["box,sr4"], ["box", "sr4"], ["box,", "sr4"]):
        a = parser().parse_args(["demo", "--tasks", *tasks, "--methods", "mpgd,cdps", "--out", str(tmp_path)])
        assert demo.plan(a)["tasks"] == ["box", "sr4"] and demo.plan(a)["methods"] == ["mpgd", "cdps"]
        cfg = cli_eval.check(parse_eval("--data", "digits16", "--tasks", *tasks, "--methods", "pinv", "tikhonov",
                                        "--seeds", "0", "1", "--out", str(tmp_path / "e")))
        assert cfg.tasks == ["box", "sr4"] and cfg.methods == ["pinv", "tikhonov"] and cfg.seeds == [0, 1]


def test_demo_refuses_a_baseline_as_method(tmp_path, capsys):
    line = _one_line_error(capsys, ["demo", "--methods", "tikhonov", "--out", str(tmp_path / "d")])
    assert "tikhonov runs in the demo anyway" in line


# --------------------------------------------------------------------------- argparse errors


@pytest.mark.parametrize("argv", [["restore", "--input", "x.png", "--task", "box", "--method", "mpgd", "--out",
                                   "o.png", "--steps", "0"],
                                  ["demo", "--missing", "1.5"],
                                  ["eval", "--data", "digits16", "--out", "o", "--steps", "-1"]])
def test_out_of_range_values_are_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "usage:" not in err, err
    assert err.startswith(f"diffsolve {argv[0]}: error: argument ")


# --------------------------------------------------------------------------- restore


def test_restore_size_work_size_and_a_line_for_baselines(tmp_path, capsys):
    img = _png(tmp_path / "big.png", np.random.default_rng(2).integers(0, 255, (40, 48, 3)))
    out = tmp_path / "o.png"
    assert main(["restore", "--input", img, "--task", "gaussian_blur", "--method", "tikhonov", "--simulate",
                 "--size", "24", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert Image.open(out).size == (24, 24)
    assert "work size 24x24" in text and "running tikhonov" in text
    assert text.index("work size") < text.index("running tikhonov") < text.index("PSNR")
    assert "data consistency" in text
    assert main(["restore", "--input", img, "--task", "sr4", "--method", "pinv", "--simulate",
                 "--size", "32x16", "--out", str(out)]) == 0
    assert Image.open(out).size == (32, 16)


def test_restore_pixel_limit(tmp_path, capsys, no_compute):
    from diffsolve.cli.common import MAX_PIXELS

    side = int(MAX_PIXELS ** 0.5) + 8
    big = _png(tmp_path / "huge.png", np.zeros((side, side, 3)))
    line = _one_line_error(capsys, ["restore", "--input", big, "--task", "gaussian_blur", "--method", "tikhonov",
                                    "--simulate", "--out", str(tmp_path / "o.png")])
    assert f"{side}x{side}" in line and f"{MAX_PIXELS:,}" in line and "--size" in line
    low = _png(tmp_path / "low.png", np.zeros((300, 300, 3)))  # sr4 measurement: the work image is 1200x1200
    line = _one_line_error(capsys, ["restore", "--input", low, "--task", "sr4", "--method", "pinv",
                                    "--out", str(tmp_path / "o.png")])
    assert "1200x1200" in line and "--size" in line
    with pytest.raises(SystemExit):
        main(["restore", "--help"])
    assert f"{MAX_PIXELS:,} pixels" in " ".join(capsys.readouterr().out.split())


def test_grey_input_is_converted_before_any_size_complaint(tmp_path, capsys, no_compute):
    grey = _png(tmp_path / "grey.png", np.zeros((6, 6)))
    assert main(["restore", "--input", grey, "--task", "gaussian_blur", "--method", "mpgd", "--simulate",
                 "--out", str(tmp_path / "o.png")]) == 2
    captured = capsys.readouterr()
    assert "grey.png is grayscale: converted it to RGB" in captured.out
    assert "takes 16x16" not in captured.err and "at least 8x8" in captured.err  # the colour model's rule


def test_grey_input_restored_in_rgb(tmp_path, capsys, monkeypatch):
    seen = {}

    def fake_restore(method, model, op, y, **kwargs):
        seen["y"] = y
        return y.clone(), {}

    import diffsolve.cli.common
    import diffsolve.methods

    monkeypatch.setattr(diffsolve.methods, "restore", fake_restore)
    monkeypatch.setattr(diffsolve.cli.common, "load_model", lambda *a, **k: object())
    monkeypatch.setattr(diffsolve.cli.common, "check_loaded_size", lambda *a, **k: None)
    grey = _png(tmp_path / "grey.png", np.full((16, 16), 100))
    assert main(["restore", "--input", grey, "--task", "gaussian_blur", "--method", "mpgd", "--model", "patches",
                 "--simulate", "--steps", "1", "--out", str(tmp_path / "o.png")]) == 0
    assert "converted it to RGB" in capsys.readouterr().out
    assert seen["y"].shape[1] == 3


def test_rgba_alpha_is_not_dropped_silently(tmp_path, capsys):
    rgba = np.random.default_rng(3).integers(0, 255, (16, 16, 4))
    path = _png(tmp_path / "rgba.png", rgba, mode="RGBA")
    assert main(["restore", "--input", path, "--task", "gaussian_blur", "--method", "pinv", "--simulate",
                 "--out", str(tmp_path / "o.png")]) == 0
    assert "rgba.png has an alpha channel (transparency): it is dropped" in capsys.readouterr().out
    d = tmp_path / "imgs"
    d.mkdir()
    _png(d / "t.png", rgba, mode="RGBA")
    assert cli_eval.run(parse_eval("--data", str(d), "--size", "16", "--tasks", "box", "--methods", "pinv",
                                   "--no-progress", "--out", str(tmp_path / "e"))) == 0
    assert "alpha channel; it was dropped: t.png" in capsys.readouterr().err


# --------------------------------------------------------------------------- plot


def test_quality_vs_time_labels_do_not_overlap():
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    for times in ([0.1012, 0.1018, 0.1031], [0.0021, 0.35, 41.0], [2.0, 2.0, 2.0]):
        rows = [{"task": "box", "method": m, "seconds_mean": t, "psnr_mean": 20.0 + k, "psnr_std": 0.5}
                for k, (m, t) in enumerate(zip(("pinv", "tikhonov", "mpgd"), times))]
        fig = evaluate.plot_quality_vs_time(rows, ["box"], "t")
        fig.canvas.draw()
        ax = fig.axes[0]
        labels = [t for t in ax.get_xticklabels() + ax.get_xticklabels(minor=True)
                  if t.get_visible() and t.get_text() and ax.get_xlim()[0] <= t.get_position()[0] <= ax.get_xlim()[1]]
        assert 2 <= len(labels) <= 6, [t.get_text() for t in labels]
        texts = [t.get_text() for t in labels]
        assert len(set(texts)) == len(texts), texts
        boxes = sorted((t.get_window_extent() for t in labels), key=lambda b: b.x0)
        assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:])), texts
        annotated = {t.get_text() for t in ax.texts}
        assert {"pinv", "tikhonov", "mpgd"} <= annotated
        plt.close(fig)


# --------------------------------------------------------------------------- data consistency


def test_data_consistency_is_one_at_the_noise_level():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 32, 32, generator=g, dtype=torch.float64) * 2 - 1
    op = SuperResolution(2, "bicubic")
    sigma = 0.05
    ax = op.A(x)
    y = ax + sigma * torch.randn(ax.shape, generator=g, dtype=ax.dtype)
    dc = data_consistency(op, x, y, sigma)
    assert dc.shape == (3,) and torch.allclose(dc, torch.ones(3, dtype=dc.dtype), atol=0.05)
    assert torch.allclose(data_consistency(Identity(), y, y, sigma), torch.zeros(3, dtype=dc.dtype))
    # per sample: a sample's value does not depend on the others
    assert torch.allclose(data_consistency(op, x[1:2], y[1:2], sigma), dc[1:2])
    with pytest.raises(ValueError, match="sigma"):
        data_consistency(op, x, y, 0.0)
    with pytest.raises(ValueError, match="shape"):
        data_consistency(op, x, x, sigma)


def test_eval_records_and_summary_carry_data_consistency(tmp_path):
    out = tmp_path / "o"
    assert cli_eval.run(parse_eval("--data", "digits16", "--limit", "2", "--tasks", "random", "--methods",
                                   "pinv,tikhonov", "--no-progress", "--out", str(out))) == 0
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    # the missing pixels carry no data: the pseudo-inverse fits the observed ones exactly, Tikhonov's λ does not
    assert all(r["dc"] < 1e-6 for r in recs if r["method"] == "pinv")
    assert all(r["dc"] > 0 for r in recs if r["method"] == "tikhonov")
    assert {r["method"] for r in recs} == {"pinv", "tikhonov"}
    assert "dc_mean" in (out / "summary.csv").read_text().splitlines()[0]
    assert "| DC |" in (out / "summary.md").read_text()


def test_python_m_diffsolve_and_cli_module():
    for module in ("diffsolve", "diffsolve.cli"):
        done = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True,
                              timeout=120, env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})
        assert done.returncode == 0 and done.stdout.startswith("diffsolve "), done.stderr


def test_evaluate_imports_nothing_from_the_cli():
    done = subprocess.run([sys.executable, "-c", "import sys, diffsolve.evaluate; "
                           "print(sorted(m for m in sys.modules if m.startswith('diffsolve.cli')))"],
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
    for path in (REPO / "src" / "diffsolve" / "evaluate").glob("*.py"):
        src = path.read_text()
        assert "from ..cli" not in src and "import cli" not in src, path


def test_restore_denoise_task_with_an_svd_method(tmp_path, capsys):
    """``--task denoise`` is A = I; DDRM (which needs an SVD) runs on it and the printout has its consistency."""
    from diffsolve.tasks import DEMO_TASKS, make_operator

    assert isinstance(make_operator("denoise", (8, 12)), Identity) and "denoise" not in DEMO_TASKS
    img = _png(tmp_path / "clean.png", np.random.default_rng(3).integers(0, 255, (16, 16, 3)))
    out = tmp_path / "o.png"
    assert main(["restore", "--input", img, "--task", "denoise", "--method", "ddrm", "--simulate", "--steps", "3",
                 "--sigma", "0.1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert Image.open(out).size == (16, 16) and "data consistency" in text and "PSNR" in text


# --------------------------------------------------------------------------- a method that cannot take the task


def test_method_unsupported_names_the_svd_and_leaves_supported_pairs_alone():
    """DDRM always, DDNM only with σ > 0, need A's SVD; a reflect motion blur has none, a circular one has."""
    from diffsolve.methods import ANY_OPERATOR, get_method
    from diffsolve.operators import MotionBlur

    reflect, circular = MotionBlur(9, 0.5, seed=0), MotionBlur(9, 0.5, seed=0, boundary="circular")
    why = get_method("ddrm").unsupported(reflect, (16, 16), 0.05)
    assert why is not None and "SVD" in why and "MotionBlur" in why
    assert get_method("ddrm").unsupported(circular, (16, 16), 0.05) is None
    assert "sigma > 0" in get_method("ddnm").unsupported(reflect, (16, 16), 0.05)
    assert get_method("ddnm").unsupported(reflect, (16, 16), 0.0) is None  # plain DDNM: A⁺ by CG
    for name in ("mpgd", "cdps", "dps", "pigdm", "diffpir", "daps", "reddiff", "mmps", "tikhonov", "pinv"):
        assert get_method(name).unsupported(reflect, (16, 16), 0.05) is None
    assert "ddrm" not in ANY_OPERATOR and "ddnm" not in ANY_OPERATOR and "mpgd" in ANY_OPERATOR


def test_restore_refuses_an_svd_method_on_motion_blur_before_loading(tmp_path, capsys, no_compute):
    """Before: a traceback from inside the solver after the model had loaded; now one line, exit 2."""
    img = _png(tmp_path / "clean.png", np.random.default_rng(3).integers(0, 255, (16, 16)))
    line = _one_line_error(capsys, ["restore", "--input", img, "--task", "motion_blur", "--method", "ddrm",
                                    "--simulate", "--model", "digits16", "--out", str(tmp_path / "o.png")])
    assert "--method" in line and "SVD" in line and "mpgd" in line and "Traceback" not in line


def test_eval_skips_unsupported_pairs_and_lists_them(tmp_path, capsys):
    """The default --methods hold DDRM and DDNM+ and the default --tasks motion blur: before, eval crashed
    at that pair; now it runs every other pair, logs a note and lists the pair in summary.md."""
    out = tmp_path / "o"
    assert cli_eval.run(parse_eval("--data", "digits16", "--limit", "1", "--tasks", "motion_blur,box", "--methods",
                                   "ddrm,pinv", "--steps", "2", "--no-progress", "--out", str(out))) == 0
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert {(r["task"], r["method"]) for r in recs} == {("motion_blur", "pinv"), ("box", "pinv"), ("box", "ddrm")}
    assert "ddrm × motion_blur not run" in capsys.readouterr().err
    assert "- ddrm × motion_blur: ddrm needs the SVD of A" in (out / "summary.md").read_text()
    # a rerun plans nothing new and skips the same pair again
    assert cli_eval.run(parse_eval("--data", "digits16", "--limit", "1", "--tasks", "motion_blur,box", "--methods",
                                   "ddrm,pinv", "--steps", "2", "--no-progress", "--out", str(out))) == 0
    assert len((out / "results.jsonl").read_text().splitlines()) == 3


def test_eval_with_nothing_to_run_is_one_line(tmp_path, capsys, no_compute):
    line = _one_line_error(capsys, ["eval", "--data", "digits16", "--tasks", "motion_blur", "--methods", "ddrm,ddnm",
                                    "--out", str(tmp_path / "o")])
    assert "--methods" in line and "SVD" in line and not (tmp_path / "o").exists()


def test_demo_notes_an_unsupported_pair_instead_of_crashing(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--steps", "2", "--size", "32", "--methods", "ddrm", "--tasks", "motion_blur,box",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for suite in metrics["suites"].values():
        assert "SVD" in suite["motion_blur"]["ddrm"]["unsupported"]
        assert np.isfinite(suite["box"]["ddrm"]["psnr"])
    printed = capsys.readouterr()
    assert "not run: ddrm needs the SVD" in printed.out + printed.err


def test_a_result_that_ignores_y_warns_in_one_line(tmp_path):
    """Two C-DPS steps with the paper's last step (--no-discrepancy) leave y largely ignored: the command line says
    so in one line of its own form (no source path), beside the consistency it prints anyway (a subprocess: pytest
    records warnings instead of printing)."""
    img = tmp_path / "clean.png"
    _png(img, np.random.default_rng(3).integers(0, 255, (16, 16, 3)))
    proc = subprocess.run([sys.executable, "-m", "diffsolve", "restore", "--input", str(img), "--task", "box",
                           "--method", "cdps", "--simulate", "--steps", "2", "--no-discrepancy",
                           "--out", str(tmp_path / "x.png")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(x for x in proc.stderr.splitlines() if "warning" in x)
    assert line.startswith("diffsolve restore: warning: cdps: the result does not fit y: data consistency")
    assert "steps=2" in line and "methods.py" not in proc.stderr


def test_main_puts_pythons_warning_format_back():
    import warnings

    before = warnings.formatwarning
    assert main(["info"]) == 0
    assert warnings.formatwarning is before
