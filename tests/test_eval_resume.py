"""diffsolve eval into an OUT that already holds something: a changed model, another data set, an OUT left without
records, exact recoveries (PSNR inf) in the records, and saved images whose names differ only by extension."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from diffsolve import evaluate
from diffsolve.cli import eval as eval_cli
from diffsolve.evaluate import records as records_module
from diffsolve.models.default import default_model_path


def run(*argv: str) -> int:
    p = argparse.ArgumentParser(prog="diffsolve")
    eval_cli.add_parser(p.add_subparsers(dest="command", required=True))
    return eval_cli.run(p.parse_args(["eval", "--no-progress", *argv]))


def strict_records(out: Path) -> list[dict]:
    """results.jsonl read as strict JSON (bare Infinity / NaN refused)."""
    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return [json.loads(line, parse_constant=refuse) for line in (out / "results.jsonl").read_text().splitlines()]


def save(path: Path, seed: int) -> None:
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path)


# pinv needs no model call, so these runs are quick; the model's files are pinned all the same
PINV = ("--size", "16", "--tasks", "denoise", "--methods", "pinv")
#: a model-based method: only its records pin the model's settings and files (a pinv record is the same at any)
MPGD = ("--size", "16", "--tasks", "denoise", "--methods", "mpgd")


def test_a_changed_model_folder_is_refused_and_an_old_config_resumes(tmp_path, capsys):
    model, out = tmp_path / "model", tmp_path / "out"
    shutil.copytree(default_model_path("patches"), model)
    common = ("--data", "photos", *MPGD, "--steps", "2", "--model", str(model), "--out", str(out))
    assert run(*common) == 0
    scheduler = model / "scheduler" / "scheduler_config.json"
    original = scheduler.read_text()
    scheduler.write_text(original.replace('"beta_end"', '"beta_end": 0.03, "old_beta_end"'))
    capsys.readouterr()
    assert run(*common, "--seeds", "0,1") == 2
    err = capsys.readouterr().err
    assert "--model:" in err and "scheduler/scheduler_config.json changed" in err and "new --out" in err
    scheduler.write_text(original)
    weights = model / "unet" / "diffusion_pytorch_model.safetensors"
    original_weights = weights.read_bytes()
    with open(weights, "ab") as f:
        f.write(b"\0")  # another weight file: its size is pinned
    assert run(*common, "--seeds", "0,1") == 2
    assert "unet/diffusion_pytorch_model.safetensors changed" in capsys.readouterr().err
    weights.write_bytes(original_weights)
    # an OUT written before config.json pinned the model's files resumes with a notice, and pins them from then on
    cfg = json.loads((out / "config.json").read_text())
    del cfg["model_files"]
    (out / "config.json").write_text(json.dumps(cfg))
    assert run(*common, "--seeds", "0,1") == 0
    assert "before config.json pinned the model's files" in capsys.readouterr().err
    assert "unet/diffusion_pytorch_model.safetensors" in json.loads((out / "config.json").read_text())["model_files"]
    assert len(strict_records(out)) == 4


def test_a_large_model_file_is_fingerprinted_by_its_ends(tmp_path, monkeypatch):
    monkeypatch.setattr(records_module, "_WHOLE", 2 << 20)
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(bytes(3 << 20))
    first = evaluate.model_fingerprint(str(ckpt), head_channels=64)
    assert set(first) == {"model.pt", "head_channels"} and first["model.pt"].startswith(f"{3 << 20}:")
    assert evaluate.model_fingerprint(str(ckpt), head_channels=32) != first  # another ADM network
    data = bytearray(ckpt.read_bytes())
    data[(3 << 20) // 2] = 1  # the middle is not read (documented)
    ckpt.write_bytes(bytes(data))
    assert evaluate.model_fingerprint(str(ckpt)) == first
    data[-1] = 1
    ckpt.write_bytes(bytes(data))
    assert evaluate.model_fingerprint(str(ckpt)) != first
    assert evaluate.model_fingerprint("only-the-caller-knows-it") is None


def test_an_out_without_records_takes_the_new_settings(tmp_path, capsys):
    """A run that ended before its first record leaves config.json and an empty part file: a rerun with other
    settings replaces config.json with a notice, where an OUT with records refuses it."""
    out = tmp_path / "out"
    assert run("--data", "heldout", *MPGD, "--steps", "3", "--out", str(out)) == 0
    (out / "results.jsonl").unlink()
    (out / "parts").mkdir(exist_ok=True)
    (out / "parts" / "rank-0.jsonl").write_text("")
    capsys.readouterr()
    assert run("--data", "photos", *MPGD, "--steps", "5", "--out", str(out)) == 0
    assert "holds no records" in capsys.readouterr().err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["steps"] == 5 and sorted(cfg["data"]) == ["chelsea.png", "coffee.png"]  # heldout's hashes gone
    assert run("--data", "photos", *MPGD, "--steps", "6", "--out", str(out)) == 2
    assert "steps=5" in capsys.readouterr().err


def test_another_data_set_is_refused_and_a_grown_one_resumes(tmp_path, capsys):
    out = tmp_path / "bundled"
    assert run("--data", "heldout", *PINV, "--out", str(out)) == 0
    capsys.readouterr()
    assert run("--data", "photos", *PINV, "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "--data:" in err and "bundled set 'heldout'" in err and "another --out" in err
    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "folder"
    a.mkdir(), b.mkdir()
    save(a / "x.png", 0), save(b / "y.png", 1)
    assert run("--data", str(a), *PINV, "--out", str(out)) == 0
    assert run("--data", "photos", *PINV, "--out", str(out)) == 2  # a bundled set after a folder
    assert run("--data", str(b), *PINV, "--out", str(out)) == 2  # a folder with none of the images
    assert "with none of those images" in capsys.readouterr().err
    save(a / "z.png", 2)  # the folder grew: the new image is added
    assert run("--data", str(a), *PINV, "--out", str(out)) == 0
    assert [r["image"] for r in strict_records(out)] == ["x.png", "z.png"]
    limited = tmp_path / "limited"  # a larger --limit grows a bundled set
    assert run("--data", "digits16", "--limit", "1", *PINV, "--out", str(limited)) == 0
    assert run("--data", "digits16", "--limit", "2", *PINV, "--out", str(limited)) == 0
    assert len(strict_records(limited)) == 2


def test_an_exact_recovery_is_written_as_valid_json_and_summarised(tmp_path):
    out = tmp_path / "out"
    common = ("--data", "digits16", "--limit", "2", "--sigma", "0", "--tasks", "denoise,box", "--methods",
              "pinv,tikhonov", "--out", str(out))
    assert run(*common) == 0
    recs = strict_records(out)
    assert {r["psnr"] for r in recs if (r["task"], r["method"]) == ("denoise", "pinv")} == {"inf"}
    assert all(isinstance(r["psnr"], float) for r in recs if r["task"] == "box")
    md = (out / "summary.md").read_text()
    assert "| denoise | pinv | 2 | inf | 1.0000 ± 0.0000 |" in md and "nan" not in md and "PSNR inf:" in md
    csv = {tuple(line.split(",")[:2]): line.split(",") for line in (out / "summary.csv").read_text().splitlines()}
    assert csv[("denoise", "pinv")][3:5] == ["inf", ""]  # mean inf, std undefined
    assert run(*common) == 0 and len(strict_records(out)) == len(recs)  # resumed: read back, nothing recomputed
    # records written as bare Infinity before this change are rewritten as valid JSON by the merge
    lines = (out / "results.jsonl").read_text().replace('"inf"', "Infinity")
    (out / "results.jsonl").write_text(lines)
    evaluate.merge(out, {})
    assert strict_records(out) == recs
    rows = evaluate.summarize([{"task": "t", "method": "m", "psnr": v, "ssim": 1.0, "seconds": 0.1}
                               for v in (30.0, "inf")], ["t"], ["m"])
    assert rows[0]["psnr_mean"] == float("inf") and rows[0]["psnr_std"] is None and rows[0]["ssim_std"] == 0.0


def test_saved_images_whose_names_differ_by_extension_do_not_overwrite(tmp_path, capsys):
    data, out = tmp_path / "imgs", tmp_path / "out"
    data.mkdir()
    save(data / "rgb64.png", 0), save(data / "rgb64.jpg", 1), save(data / "c.png", 2)
    assert run("--data", str(data), *PINV, "--save-images", "--out", str(out)) == 0
    saved = sorted(p.name for p in (out / "images" / "denoise" / "pinv" / "seed0").iterdir())
    assert saved == ["c.png.png", "rgb64.jpg.png", "rgb64.png.png"] and len(strict_records(out)) == 3
    assert "share a file stem" in capsys.readouterr().err
    assert evaluate.saved_names(["a.png", "b.jpg"]) == {"a.png": "a.png", "b.jpg": "b.png"}  # distinct stems: kept
