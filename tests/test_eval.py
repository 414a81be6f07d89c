"""diffsolve eval: end to end on small images (records, summary, resume), 2 gloo processes equal to 1,
bad input answered in one line with exit status 2 before any model is loaded."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffsolve import evaluate
from diffsolve.cli import eval as eval_cli

REPO = Path(__file__).resolve().parents[1]


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="diffsolve")
    eval_cli.add_parser(p.add_subparsers(dest="command", required=True))
    return p.parse_args(["eval", *argv])


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def without_time(recs: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in recs]


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """Three small grey images of different sizes and formats (centre-cropped and resized to 16x16)."""
    rng = np.random.default_rng(0)
    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(rng.integers(0, 255, (20, 24), dtype=np.uint8)).save(d / "a.png")
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(d / "b.jpg")
    Image.fromarray(rng.integers(0, 255, (32, 18), dtype=np.uint8)).save(d / "c.jpeg")
    (d / "notes.txt").write_text("not an image: ignored")
    return d


ARGS = ("--size", "16", "--model", "digits16", "--tasks", "box,sr4", "--methods", "mpgd,tikhonov,pinv",
        "--steps", "2", "--seeds", "0,1", "--no-progress")


def test_eval_end_to_end_records_summary_and_resume(folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert eval_cli.run(parse("--data", str(folder), "--out", str(out), *ARGS)) == 0
    recs = records(out)
    assert len(recs) == 3 * 2 * 3 * 2  # images x tasks x methods x seeds
    keys = {evaluate.record_key(r) for r in recs}
    assert len(keys) == len(recs)
    assert {r["image"] for r in recs} == {"a.png", "b.jpg", "c.jpeg"}
    for r in recs:
        assert {"image", "task", "method", "seed", "psnr", "ssim", "seconds"} <= set(r)
        assert np.isfinite(r["psnr"]) and -1 <= r["ssim"] <= 1 and r["seconds"] >= 0
    assert all("lam" in r for r in recs if r["method"] == "tikhonov")
    # a model-free record is the same at any --steps and with any model: it does not claim either
    assert all(("steps" in r and "model" in r) == (r["method"] == "mpgd") for r in recs)
    # every method saw the same measurement: pinv and tikhonov differ, but both are deterministic
    rows = list((out / "summary.csv").read_text().splitlines())
    assert rows[0].startswith("task,method,n,psnr_mean") and len(rows) == 1 + 2 * 3
    md = (out / "summary.md").read_text()
    assert "| box | mpgd | 6 |" in md and "LPIPS and FID: not computed" in md
    assert not list((out / "parts").glob("*.jsonl"))  # merged
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "quality_vs_time.png").stat().st_size > 1000
    else:
        assert "matplotlib is not installed: skipped quality_vs_time.png" in capsys.readouterr().err

    # a rerun skips everything; a lost record (and a line cut by a kill) is recomputed identically
    before = without_time(recs)
    assert eval_cli.run_config(eval_cli.check(parse("--data", str(folder), "--out", str(out), *ARGS)))["records"] == 0
    kept = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text("\n".join(kept[:-3]) + "\n")
    (out / "parts").mkdir(exist_ok=True)
    (out / "parts" / "rank-0.jsonl").write_text(kept[-3] + "\n" + kept[-2][: len(kept[-2]) // 2])
    res = eval_cli.run_config(eval_cli.check(parse("--data", str(folder), "--out", str(out), *ARGS)))
    assert res["records"] == 2
    assert without_time(records(out)) == before


@pytest.mark.filterwarnings("ignore:dps. steps=2")  # DPS's few-steps advice
def test_eval_records_do_not_depend_on_the_batch(tmp_path):
    common = ("--data", "digits16", "--limit", "3", "--tasks", "random", "--methods", "cdps,dps", "--steps", "2",
              "--no-progress")
    assert eval_cli.run(parse(*common, "--out", str(tmp_path / "b1"))) == 0
    assert eval_cli.run(parse(*common, "--batch", "2", "--save-images", "--out", str(tmp_path / "b2"))) == 0
    a, b = records(tmp_path / "b1"), records(tmp_path / "b2")
    saved = sorted(p.relative_to(tmp_path / "b2" / "images").as_posix() for p in (tmp_path / "b2").rglob("*.png")
                   if "images" in p.parts)
    assert saved == [f"random/{m}/seed0/digit_00{i}.png" for m in ("cdps", "dps") for i in range(3)]
    assert [evaluate.record_key(r) for r in a] == [evaluate.record_key(r) for r in b]
    # the same random streams per record; batched convolutions round differently in float32
    np.testing.assert_allclose([r["psnr"] for r in a], [r["psnr"] for r in b], atol=1e-2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_give_the_records_of_one(tmp_path):
    common = ["--data", "digits16", "--limit", "3", "--tasks", "box", "--methods", "mpgd,cdps,pinv",
              "--steps", "2", "--seeds", "0", "--no-progress"]
    assert eval_cli.run(parse(*common, "--out", str(tmp_path / "one"))) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", f"--master-port={_free_port()}",
         "-m", "diffsolve", "eval", *common, "--out", str(tmp_path / "two")],
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = records(tmp_path / "one"), records(tmp_path / "two")
    assert len(one) == 3 * 3
    assert without_time(two) == without_time(one)  # bit-identical scores, same order
    assert not list((tmp_path / "two" / "parts").glob("*.jsonl"))


# --------------------------------------------------------------------------- bad input


def _error(capsys, *argv: str) -> str:
    assert eval_cli.run(parse(*argv)) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("diffsolve eval: error: "), err
    return lines[0]


@pytest.fixture()
def no_model(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("a model was loaded before the arguments were checked")

    import diffsolve.cli.common

    monkeypatch.setattr(diffsolve.cli.common, "load_model", fail)


def test_bad_input_is_one_line_and_exit_2(folder, tmp_path, capsys, no_model):
    out = str(tmp_path / "o")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "--data:" in _error(capsys, "--data", str(empty), "--size", "16", "--out", out)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"not a png at all")
    line = _error(capsys, "--data", str(bad), "--size", "16", "--out", out)
    assert "--data:" in line and "'x.png'" in line
    assert "unknown task 'blurr'" in _error(capsys, "--data", str(folder), "--size", "16", "--tasks", "box,blurr",
                                             "--out", out)
    assert "unknown method 'bogus'" in _error(capsys, "--data", str(folder), "--size", "16", "--methods", "bogus",
                                              "--out", out)
    assert "autoencoder" in _error(capsys, "--data", str(folder), "--size", "16", "--methods", "mpgd_ldm",
                                   "--out", out)
    assert "--size:" in _error(capsys, "--data", str(folder), "--out", out)  # a folder needs --size
    assert "use --size 16" in _error(capsys, "--data", str(folder), "--size", "32", "--model", "digits16",
                                     "--out", out)
    assert "--data:" in _error(capsys, "--data", str(tmp_path / "nowhere"), "--size", "16", "--out", out)
    assert "--model:" in _error(capsys, "--data", "digits16", "--model", str(tmp_path / "nowhere"), "--out", out)
    assert "--seeds:" in _error(capsys, "--data", "digits16", "--seeds", "0,x", "--out", out)
    assert "--sigma:" in _error(capsys, "--data", "digits16", "--sigma", "0", "--methods", "cdps", "--out", out)
    (tmp_path / "file").write_text("")
    assert "--out:" in _error(capsys, "--data", "digits16", "--out", str(tmp_path / "file"))


def test_resume_with_other_settings_is_refused(tmp_path, capsys):
    out = tmp_path / "o"
    assert eval_cli.run(parse("--data", "digits16", "--limit", "1", "--tasks", "box", "--methods", "mpgd",
                              "--steps", "2", "--no-progress", "--out", str(out))) == 0
    capsys.readouterr()
    line = _error(capsys, "--data", "digits16", "--limit", "1", "--tasks", "box", "--methods", "mpgd", "--steps", "3",
                  "--out", str(out))
    assert "steps=2" in line and "another --out" in line


def test_model_free_records_do_not_pin_the_model_settings(tmp_path, capsys):
    """A Tikhonov / pinv record is the same at any --steps: an OUT holding only those takes a rerun with other steps;
    once a model-based record is there its steps are pinned, and a model-free run in between keeps them."""
    out = str(tmp_path / "o")
    common = ("--data", "digits16", "--limit", "1", "--tasks", "box", "--no-progress", "--out", out)
    assert eval_cli.run(parse(*common, "--methods", "pinv", "--steps", "3")) == 0
    md = (tmp_path / "o" / "summary.md").read_text()
    assert "model-free methods (no model, no steps)" in md and "3 steps" not in md
    assert eval_cli.run(parse(*common, "--methods", "pinv,tikhonov", "--steps", "30")) == 0
    assert eval_cli.run(parse(*common, "--methods", "mpgd", "--steps", "2")) == 0
    assert eval_cli.run(parse(*common, "--methods", "tikhonov", "--steps", "9")) == 0
    assert json.loads((tmp_path / "o" / "config.json").read_text())["steps"] == 2
    capsys.readouterr()
    assert eval_cli.run(parse(*common, "--methods", "mpgd", "--steps", "9")) == 2
    assert "holds records made with steps=2" in capsys.readouterr().err


def test_cli_module_is_light_and_errors_exit_2(tmp_path):
    """``python -m diffsolve eval`` (the lead's CLI) answers a bad argument in one line, no traceback;
    importing diffsolve.cli.eval imports neither torch nor diffusers (fast --help)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    code = "import sys, diffsolve.cli.eval; print(sorted(m for m in ('torch', 'diffusers') if m in sys.modules))"
    light = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert light.stdout.strip() == "[]", light.stdout + light.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run([sys.executable, "-m", "diffsolve", "eval", "--data", str(empty), "--size", "16", "--out",
                           str(tmp_path / "o")], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("diffsolve eval: error: --data: ")


def test_a_size_off_the_model_multiple_runs_padded_with_a_note(folder, tmp_path, capsys):
    """--size 20 with the patches model (multiples of 8): the model's input is padded, the run says so, and
    every record is scored at 20x20."""
    out = tmp_path / "out"
    assert eval_cli.run(parse("--data", str(folder), "--out", str(out), "--size", "20", "--model", "patches",
                              "--tasks", "gaussian_blur", "--methods", "mpgd", "--steps", "2", "--limit", "1",
                              "--no-progress")) == 0
    assert "reflect-padded from the image's 20x20 to 24x24" in capsys.readouterr().err
    assert "reflect-padded from the image's 20x20 to 24x24" in (out / "summary.md").read_text()  # and kept
    recs = records(out)
    assert len(recs) == 1 and np.isfinite(recs[0]["psnr"])


def test_results_that_ignore_y_are_counted_not_warned_per_record(tmp_path, capsys):
    """Two C-DPS steps with the paper's last step (--no-discrepancy) leave y largely ignored (DC far above 3): each
    record keeps its dc, the solver's per-call DataConsistencyWarning stays quiet, and the run says once, in the
    log and in summary.md, how many records of which method × task do not fit y."""
    import warnings

    from diffsolve.solvers import UNFIT_CONSISTENCY, DataConsistencyWarning

    out = tmp_path / "o"
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataConsistencyWarning)
        assert eval_cli.run(parse("--data", "digits16", "--limit", "2", "--tasks", "box", "--methods", "cdps,pinv",
                                  "--steps", "2", "--no-discrepancy", "--no-progress", "--out", str(out))) == 0
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    unfit = [r for r in recs if r["dc"] > UNFIT_CONSISTENCY]
    assert unfit and all(r["method"] == "cdps" for r in unfit)
    line = f"cdps × box: {len(unfit)} of 2 records"
    assert line in capsys.readouterr().err
    assert f"- {line}" in (out / "summary.md").read_text()


def test_the_dps_steps_advice_is_given_once_per_run_not_per_batch(tmp_path):
    import warnings

    from diffsolve.solvers.dps import DPSStepsWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert eval_cli.run(parse("--data", "digits16", "--limit", "2", "--batch", "1", "--tasks", "box,denoise",
                                  "--methods", "dps", "--steps", "2", "--no-progress", "--out",
                                  str(tmp_path / "o"))) == 0
    assert sum(issubclass(w.category, DPSStepsWarning) for w in caught) == 1


def test_draws_score_the_mean_and_are_pinned(tmp_path, capsys):
    """--draws 2: a model-based record scores the mean of two draws (draw 0 is the one-draw record's own), a
    model-free one is unchanged, the records say so, and an OUT made with one draw refuses to resume with two."""
    import torch

    from diffsolve.data import heldout_digits
    from diffsolve.metrics import scores

    common = ["--data", "digits16", "--limit", "1", "--tasks", "random", "--methods", "cdps,pinv", "--steps", "3",
              "--no-progress", "--save-images"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert eval_cli.run(parse(*common, "--out", str(one))) == 0
    assert eval_cli.run(parse(*common, "--draws", "2", "--out", str(two))) == 0
    rec1 = {r["method"]: r for r in map(json.loads, (one / "results.jsonl").read_text().splitlines())}
    rec2 = {r["method"]: r for r in map(json.loads, (two / "results.jsonl").read_text().splitlines())}
    assert rec2["cdps"]["draws"] == 2 and "draws" not in rec1["cdps"] and "draws" not in rec2["pinv"]
    assert rec2["pinv"]["psnr"] == rec1["pinv"]["psnr"]  # deterministic: one solve
    assert rec2["cdps"]["psnr"] != rec1["cdps"]["psnr"]
    # the saved mean of two draws is halfway between draw 0 (the one-draw image) and another draw
    from diffsolve.data import read_image

    def img(out):
        return read_image(out / "images" / "random" / "cdps" / "seed0" / "digit_000.png", mode="L")

    x = heldout_digits()[:1]
    assert float(scores(img(two)[None], x)["psnr"]) == pytest.approx(rec2["cdps"]["psnr"], abs=0.2)
    assert not torch.equal(img(one), img(two))
    assert "mean of 2 draws" in (two / "summary.md").read_text()
    capsys.readouterr()
    assert eval_cli.run(parse(*common, "--draws", "2", "--out", str(one))) == 2
    assert "draws=1" in capsys.readouterr().err
    # config.json written before draws existed counts as one draw
    cfg = json.loads((one / "config.json").read_text())
    del cfg["draws"]
    (one / "config.json").write_text(json.dumps(cfg))
    assert eval_cli.run(parse(*common, "--out", str(one))) == 0
    capsys.readouterr()
    assert eval_cli.run(parse(*common, "--draws", "3", "--out", str(one))) == 2
    assert "holds records made with draws=1" in capsys.readouterr().err


def test_no_discrepancy_reaches_the_model_based_methods_and_is_pinned(tmp_path, capsys):
    """--no-discrepancy: a model-based record is the paper's result (it says so; MPGD's 2-step under-fit stays),
    a model-free one is unchanged; config.json pins the setting, and an OUT made before it existed counts as the
    default."""
    common = ["--data", "digits16", "--limit", "1", "--tasks", "gaussian_blur", "--methods", "mpgd,pinv", "--steps",
              "2", "--no-progress"]
    default, paper = tmp_path / "default", tmp_path / "paper"
    assert eval_cli.run(parse(*common, "--out", str(default))) == 0
    assert eval_cli.run(parse(*common, "--no-discrepancy", "--out", str(paper))) == 0
    rec0 = {r["method"]: r for r in map(json.loads, (default / "results.jsonl").read_text().splitlines())}
    rec1 = {r["method"]: r for r in map(json.loads, (paper / "results.jsonl").read_text().splitlines())}
    assert rec1["mpgd"]["discrepancy"] is False and "discrepancy" not in rec0["mpgd"]
    assert "discrepancy" not in rec1["pinv"] and rec1["pinv"]["psnr"] == rec0["pinv"]["psnr"]
    assert rec1["mpgd"]["dc"] > 1.5 and rec0["mpgd"]["dc"] < rec1["mpgd"]["dc"]
    assert "--no-discrepancy" in (paper / "summary.md").read_text()
    capsys.readouterr()
    assert eval_cli.run(parse(*common, "--out", str(paper))) == 2
    assert "discrepancy=False" in capsys.readouterr().err
    cfg = json.loads((default / "config.json").read_text())
    del cfg["discrepancy"]  # made before the setting existed: every method ended as its default
    (default / "config.json").write_text(json.dumps(cfg))
    assert eval_cli.run(parse(*common, "--out", str(default))) == 0
    capsys.readouterr()
    assert eval_cli.run(parse(*common, "--no-discrepancy", "--out", str(default))) == 2
    assert "holds records made with discrepancy=True" in capsys.readouterr().err
    assert eval_cli.run(parse("--data", "digits16", "--methods", "pinv", "--no-discrepancy", "--out",
                              str(tmp_path / "x"))) == 2
    assert "--no-discrepancy" in capsys.readouterr().err


def test_task_parameters_reach_the_operators_and_are_pinned(tmp_path, capsys):
    """--missing / --factor (as demo and restore take them) change eval's operators, appear in summary.md and are
    pinned: a resume with another value is refused. eval once had none, and its `sr` ran sr4's ×4."""
    common = ("--data", "digits16", "--limit", "1", "--methods", "pinv", "--steps", "2", "--no-progress")
    runs = {"default": (), "missing": ("--missing", "0.3"), "sr2": ("--factor", "2")}
    psnr = {}
    for name, extra in runs.items():
        tasks = "random,sr" if name != "missing" else "random"
        assert eval_cli.run(parse(*common, "--tasks", tasks, *extra, "--out", str(tmp_path / name))) == 0
        psnr[name] = {r["task"]: r["psnr"] for r in records(tmp_path / name)}
    capsys.readouterr()
    assert psnr["missing"]["random"] > psnr["default"]["random"] + 3  # 30 % of the pixels lost, not 70 %
    assert psnr["sr2"]["sr"] > psnr["default"]["sr"] + 3 and psnr["sr2"]["random"] == psnr["default"]["random"]
    assert json.loads((tmp_path / "missing" / "config.json").read_text())["params"]["missing"] == 0.3
    assert "Task parameters: --missing 0.3." in (tmp_path / "missing" / "summary.md").read_text()
    assert eval_cli.run(parse(*common, "--tasks", "random", "--missing", "0.5", "--out", str(tmp_path / "missing"))) == 2
    assert "holds records made with params=" in capsys.readouterr().err


CONFIG = dict(data="photos", size=16, tasks=["box"], methods=["pinv"], steps=3, seeds=[0], model="patches",
              channels=3)


@pytest.mark.parametrize("field, value", [
    ("size", 0), ("size", True), ("steps", 0), ("batch", 0), ("draws", 0), ("limit", 0), ("threads", 0),
    ("channels", 2), ("data", "nope"), ("tasks", []), ("tasks", "box"), ("tasks", ["box", "box"]),
    ("tasks", ["nope"]), ("methods", ["ddim"]), ("seeds", []), ("seeds", [1, 1]), ("seeds", [-1]),
    ("sigma", -1.0), ("sigma", float("nan")), ("out", 3), ("params", {}), ("params", {"factor": 2}),
    ("params", {**evaluate.DEFAULT_PARAMS, "missing": 1.5})])
def test_a_config_built_directly_checks_every_field(tmp_path, field, value):
    """The library side (no command line in front of it) refuses a bad field at construction, naming it."""
    fields = {**CONFIG, "out": tmp_path, field: value}
    with pytest.raises(ValueError, match=rf"EvalConfig\.{field} must be"):
        evaluate.EvalConfig(**fields)
    cfg = evaluate.EvalConfig(**{**CONFIG, "out": str(tmp_path)})  # the good config, out given as a str
    assert cfg.out == tmp_path and cfg.seeds == [0]


def test_the_command_line_offers_the_library_bundled_sets():
    from diffsolve.cli.common import BUNDLED_SETS

    assert tuple(BUNDLED_SETS) == evaluate.BUNDLED
