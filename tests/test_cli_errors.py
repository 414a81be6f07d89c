"""The command line answers every argument error in one line with exit status 2, before torch is
imported (torch-free checks) or at least before a model is loaded or a step runs."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from diffsolve import cli


def _png(path, arr):
    Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(path)
    return str(path)


@pytest.fixture
def rgb16(tmp_path):
    return _png(tmp_path / "rgb16.png", np.random.default_rng(0).integers(0, 255, (16, 16, 3)))


def _error(capsys, argv) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _restore(tmp_path, image, *extra):
    return ["restore", "--input", image, "--out", str(tmp_path / "out.png"), *extra]


@pytest.mark.parametrize("device, needle", [
    ("tpu", "--device must be cpu, cuda"),
    ("cuda:x", "--device must be cpu, cuda"),
    ("mps", "diffsolve runs on CPU and CUDA devices"),  # the library refuses them: the CLI does so up front
    ("xpu:0", "diffsolve runs on CPU and CUDA devices"),
])
def test_bad_device_syntax(tmp_path, rgb16, capsys, no_compute, device, needle):
    line = _error(capsys, _restore(tmp_path, rgb16, "--task", "box", "--method", "mpgd", "--simulate",
                                   "--device", device))
    assert needle in line and repr(device) in line


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a torch without CUDA devices")
def test_cuda_on_a_cpu_torch(tmp_path, rgb16, capsys, no_compute):
    line = _error(capsys, _restore(tmp_path, rgb16, "--task", "box", "--method", "mpgd", "--simulate",
                                   "--device", "cuda"))
    assert "--device cuda" in line and "use --device cpu" in line


def test_out_checked_before_the_solve(tmp_path, rgb16, capsys, no_compute):
    argv = ["restore", "--input", rgb16, "--task", "box", "--method", "mpgd", "--simulate"]
    line = _error(capsys, argv + ["--out", str(tmp_path / "restored")])
    assert "no image extension" in line and "restored.png" in line
    line = _error(capsys, argv + ["--out", str(tmp_path)])
    assert "is a directory" in line
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = _error(capsys, argv + ["--out", str(blocker / "x.png")])
    assert "is a file, not a folder" in line


def test_sizes_width_by_height_and_possible_crops(tmp_path, capsys, no_compute):
    tiny = _png(tmp_path / "tiny.png", np.zeros((1, 1, 3)))
    line = _error(capsys, _restore(tmp_path, tiny, "--task", "gaussian_blur", "--method", "mpgd", "--simulate"))
    assert "at least 8x8" in line and "0x0" not in line
    wide = _png(tmp_path / "wide.png", np.zeros((20, 30, 3)))  # H=20, W=30
    line = _error(capsys, _restore(tmp_path, wide, "--task", "sr4", "--method", "tikhonov", "--simulate"))
    assert "multiples of 4" in line and "30x20" in line and "28x20" in line
    odd = _png(tmp_path / "odd.png", np.zeros((75, 100, 3)))  # H=75, W=100: the SR factor's crop, not the model's
    line = _error(capsys, _restore(tmp_path, odd, "--task", "sr4", "--method", "mpgd", "--simulate"))
    assert "multiples of 4" in line and "crop it to 100x72" in line and "divisible by 8" not in line


@pytest.mark.parametrize("simulate, hw, work", [(True, (20, 30), "30x20"), (False, (9, 13), "52x36")])
def test_sides_off_the_model_multiple_pad_the_model_input(tmp_path, capsys, simulate, hw, work):
    """30x20 (gaussian blur) and a 13x9 SR x4 measurement (restored 52x36) are not multiples of the patches
    model's 8: the run says the model's input is padded and writes an image of the work size."""
    rng = np.random.default_rng(0)
    image = _png(tmp_path / "in.png", rng.integers(0, 255, (*hw, 3)))
    task = ["--task", "gaussian_blur", "--simulate"] if simulate else ["--task", "sr4"]
    assert cli.main(_restore(tmp_path, image, *task, "--method", "mpgd", "--steps", "3")) == 0
    out = capsys.readouterr()
    assert "reflect-padded" in out.err + out.out and f"{work} to" in out.err + out.out
    from PIL import Image

    assert "x".join(map(str, Image.open(tmp_path / "out.png").size)) == work


def test_baselines_take_any_size(tmp_path, capsys):
    odd = _png(tmp_path / "odd.png", np.random.default_rng(1).integers(0, 255, (30, 30, 3)))
    assert cli.main(_restore(tmp_path, odd, "--task", "gaussian_blur", "--method", "tikhonov", "--simulate")) == 0
    assert "PSNR" in capsys.readouterr().out


@pytest.mark.parametrize("extra, needle", [
    (["--task", "box", "--blur-std", "2"], "--blur-std 2.0 is only read by --task gaussian_blur"),
    (["--task", "sr4", "--factor", "2"], "--factor 2 is only read by --task sr"),
    (["--task", "motion_blur", "--motion-size", "8"], "--motion-size must be an odd int >= 3"),
])
def test_measurement_parameters(tmp_path, rgb16, capsys, no_compute, extra, needle):
    argv = _restore(tmp_path, rgb16, "--method", "mpgd", "--simulate", *extra)
    assert needle in _error(capsys, argv)


@pytest.mark.parametrize("flag, value", [("--missing", "1.5"), ("--missing", "0"), ("--sigma", "nan"),
                                         ("--sigma", "-1"), ("--blur-std", "0"), ("--seed", "-1"),
                                         ("--seed", str(2**64)), ("--steps", "0")])
def test_out_of_range_numbers(tmp_path, rgb16, capsys, flag, value):
    with pytest.raises(SystemExit) as exc:
        cli.main(_restore(tmp_path, rgb16, "--task", "random", "--method", "mpgd", "--simulate", flag, value))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err


def test_cdps_needs_noise(tmp_path, rgb16, capsys, no_compute):
    line = _error(capsys, _restore(tmp_path, rgb16, "--task", "box", "--method", "cdps", "--simulate",
                                   "--sigma", "0"))
    assert "--sigma 0" in line


def test_sigma_unit_is_converted(tmp_path, rgb16, monkeypatch, capsys):
    seen = {}

    def fake_restore(method, model, op, y, **kwargs):
        seen["sigma"] = kwargs["sigma"]
        return op.pseudo_inverse(y), {}

    import diffsolve.methods

    monkeypatch.setattr(diffsolve.methods, "restore", fake_restore)
    argv = _restore(tmp_path, rgb16, "--task", "box", "--method", "pinv", "--simulate", "--sigma", "0.02",
                    "--sigma-unit", "[0,1]")
    assert cli.main(argv) == 0
    assert seen["sigma"] == pytest.approx(0.04)


def test_demo_size_rules(tmp_path, capsys, no_compute):
    assert "multiple of 8" in _error(capsys, ["demo", "--size", "12", "--out", str(tmp_path / "d")])
    line = _error(capsys, ["demo", "--size", "72", "--tasks", "sr", "--factor", "16", "--out", str(tmp_path / "d")])
    assert "multiple of 16" in line and "--size 64" in line
    line = _error(capsys, ["demo", "--tasks", "sr", "--factor", "3", "--out", str(tmp_path / "d")])
    assert "must divide 16" in line
    f = tmp_path / "f"
    f.write_text("x")
    assert "is a file" in _error(capsys, ["demo", "--out", str(f)])


@pytest.mark.parametrize("argv, flag, best", [
    (["--quick", "--tasks", "box", "--box", "40"], "--box", "14"),  # fits the 64x64 photos, not the 16x16 digits
    (["--size", "32", "--tasks", "motion_blur", "--motion-size", "17"], "--motion-size", "15"),
])
def test_demo_checks_task_parameters_on_both_suites(tmp_path, capsys, no_compute, argv, flag, best):
    """A --box / --motion-size the photos take but the 16x16 digits do not: the demo ran the photos, then stopped
    with a traceback. Now one line before any run names the flag and the largest value both suites take."""
    line = _error(capsys, ["demo", *argv, "--methods", "mpgd", "--out", str(tmp_path / "d")])
    assert line.startswith(f"diffsolve demo: error: {flag}: ") and "16x16 digits" in line
    assert f"use {flag} {best} at most" in line
    assert not (tmp_path / "d").exists()
    from diffsolve.cli import demo, parser

    argv[argv.index(flag) + 1] = best  # the advised value passes every check
    assert demo.plan(parser().parse_args(["demo", *argv, "--out", str(tmp_path / "d")]))["tasks"]


def _run_cli(*argv: str) -> subprocess.CompletedProcess:
    code = ("import sys; from diffsolve.cli import main\n"
            "try:\n    rc = main(sys.argv[1:])\nexcept SystemExit as e:\n    rc = e.code\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', 'DIFFUSERS' if 'diffusers' in sys.modules "
            "else 'NO-DIFFUSERS', rc)")
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["restore", "--help"], ["demo", "--steps", "0"],
                                  ["restore", "--input", "x.png", "--task", "box", "--method", "mpgd",
                                   "--out", "o.png", "--device", "tpu"],
                                  ["restore", "--input", "nowhere.png", "--task", "box", "--method", "mpgd",
                                   "--out", "o.png"]])
def test_fast_paths_import_neither_torch_nor_diffusers(argv):
    done = _run_cli(*argv)
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("NO-TORCH NO-DIFFUSERS"), done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    import diffsolve

    assert capsys.readouterr().out.strip() == f"diffsolve {diffsolve.__version__}"


def test_cli_method_lists_follow_the_registry(monkeypatch, capsys):
    """restore/demo/eval offer what the registry offers: a method registered later appears without a CLI edit."""
    import dataclasses

    import diffsolve.methods as registry

    new = dataclasses.replace(registry.METHODS["mpgd"], name="newmethod")
    monkeypatch.setattr(registry, "METHODS", {**registry.METHODS, "newmethod": new})
    monkeypatch.setattr(registry, "CLI_METHODS", registry.CLI_METHODS + ("newmethod",))
    for command in ("restore", "demo"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        text = capsys.readouterr().out
        assert "newmethod" in text
        for m in registry.CLI_METHODS:
            if registry.METHODS[m].uses_model or command == "restore":
                assert m in text, (command, m)


@pytest.mark.parametrize("command, needles", [
    ("restore", ["(default 30, as in demo and eval", "(default: 0)", "(default: cpu)", "(default: 0.05)",
                 "(default: 0.7)"]),
    ("demo", ["(default: diffsolve-demo)", "(default: 0)"]),
    ("eval", ["(default: 1)", "(default: 30)"]),
])
def test_help_shows_defaults(command, needles, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for needle in needles:
        assert needle in text, needle


@pytest.mark.parametrize("value", ["0", "1.5", "x"])
def test_eval_draws_must_be_a_positive_int(tmp_path, capsys, no_compute, value):
    with pytest.raises(SystemExit) as exit_info:  # argparse's own type check: one line, exit status 2
        cli.main(["eval", "--data", "heldout", "--draws", value, "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("diffsolve eval: error: argument --draws: expected an integer >= 1")
    assert repr(value) in lines[0] or value in lines[0]


# --------------------------------------------------------------------------- found by the CLI audit


@pytest.mark.parametrize("argv", [
    ["restore", "--task", "denoise", "--method", "mpgd", "--simulate", "--steps", "5000"],
    ["eval", "--data", "photos", "--size", "32", "--tasks", "denoise", "--methods", "mpgd", "--steps", "5000"],
    ["demo", "--steps", "5000"],
])
def test_steps_above_the_models_timesteps_before_loading(tmp_path, rgb16, capsys, no_compute, argv):
    if argv[0] == "restore":
        argv = _restore(tmp_path, rgb16, *argv[1:])
    else:
        argv = [*argv, "--out", str(tmp_path / "o")]
    line = _error(capsys, argv)
    assert line.startswith(f"diffsolve {argv[0]}: error: --steps: 5000")
    assert "trained with 1000 timesteps" in line and "--steps 1000 or fewer" in line


def test_steps_of_a_model_known_only_once_loaded(monkeypatch):
    """A checkpoint's schedule is known once it is loaded: check_loaded_size checks --steps then."""
    from diffsolve.cli import common
    from diffsolve.models.default import load_default

    model = load_default("digits16")
    with pytest.raises(common.UsageError, match="--steps: 1001 but --model x.pt was trained with 1000 timesteps"):
        common.check_loaded_size(model, "x.pt", (1, 1, 16, 16), steps=1001)
    assert common.check_loaded_size(model, "x.pt", (1, 1, 16, 16), steps=1000) is model


@pytest.mark.parametrize("argv, unit_fix", [
    (["restore", "--task", "denoise", "--method", "mpgd", "--simulate", "--sigma", "25"], "--sigma 0.196 (25/127.5)"),
    (["restore", "--task", "denoise", "--method", "tikhonov", "--simulate", "--sigma", "25", "--sigma-unit", "[0,1]"],
     "--sigma 0.098 (25/255)"),
    (["eval", "--data", "photos", "--size", "32", "--methods", "pinv", "--sigma", "25"], "--sigma 0.196"),
    (["demo", "--sigma", "3"], "--sigma 0.0235 (3/127.5)"),
])
def test_sigma_on_the_0_255_scale_is_refused_up_front(tmp_path, rgb16, capsys, no_compute, argv, unit_fix):
    """--sigma is in [-1, 1] (or [0, 1]) units: a value above the whole pixel range is a 0-255 habit (tikhonov used
    to run on it and print a PSNR of 5 dB, mpgd to stop with a traceback about y's range)."""
    argv = _restore(tmp_path, rgb16, *argv[1:]) if argv[0] == "restore" else [*argv, "--out", str(tmp_path / "o")]
    line = _error(capsys, argv)
    assert "--sigma: " in line and "pixel range" in line and unit_fix in line
    from diffsolve.cli.common import check_sigma

    check_sigma(2.0, "[-1,1]"), check_sigma(1.0, "[0,1]")  # the whole range itself is allowed


@pytest.mark.parametrize("task, method", [("denoise", "tikhonov"), ("box", "pinv"), ("gaussian_blur", "tikhonov")])
def test_a_4x4_image_is_scored(tmp_path, capsys, task, method):
    tiny = _png(tmp_path / "tiny4.png", np.random.default_rng(0).integers(0, 255, (4, 4, 3)))
    assert cli.main(_restore(tmp_path, tiny, "--task", task, "--method", method, "--simulate")) == 0
    assert "SSIM" in capsys.readouterr().out and (tmp_path / "out.png").is_file()


def test_no_output_is_written_before_the_scores(tmp_path, rgb16, monkeypatch):
    """Every number is computed before the first file is written: a failure leaves no partial output."""
    import diffsolve.metrics

    def broken(*args, **kwargs):
        raise RuntimeError("scores failed")

    monkeypatch.setattr(diffsolve.metrics, "scores", broken)
    with pytest.raises(RuntimeError, match="scores failed"):
        cli.main(_restore(tmp_path, rgb16, "--task", "denoise", "--method", "tikhonov", "--simulate"))
    assert not list(tmp_path.glob("out*"))


def test_eval_size_below_the_bundled_photos_minimum(tmp_path, capsys, no_compute):
    argv = ["eval", "--data", "photos", "--size", "4", "--methods", "pinv", "--out", str(tmp_path / "o")]
    line = _error(capsys, argv)
    assert line.startswith("diffsolve eval: error: --size: 4 with --data photos") and "--size 8" in line


def test_eval_folder_of_4x4_images_is_scored(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    _png(folder / "a.png", np.random.default_rng(0).integers(0, 255, (4, 4, 3)))
    argv = ["eval", "--data", str(folder), "--size", "4", "--tasks", "denoise", "--methods", "pinv", "--no-progress",
            "--out", str(tmp_path / "o")]
    assert cli.main(argv) == 0
    assert '"ssim"' in (tmp_path / "o" / "results.jsonl").read_text()


@pytest.mark.parametrize("command", ["eval", "demo"])
@pytest.mark.parametrize("method", ["ddim", "ge"])
def test_unconditional_samplers_are_named_as_such(tmp_path, capsys, no_compute, command, method):
    argv = [command, "--methods", method, "--out", str(tmp_path / "o")]
    line = _error(capsys, argv + (["--data", "photos"] if command == "eval" else []))
    assert f"{method} is an unconditional sampler" in line and "autoencoder" not in line


@pytest.mark.parametrize("argv", [["eval", "--data", "photos", "--frobnicate", "2", "--out", "o"],
                                  ["restore", "--input", "x.png", "--task", "box", "--method", "mpgd", "--out",
                                   "o.png", "--frobnicate"],
                                  ["info", "--verbose"]])
def test_unknown_arguments_are_the_subcommands_error(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"diffsolve {argv[0]}: error: unrecognized arguments: "), lines


def test_all_black_mask_is_refused_before_loading(tmp_path, rgb16, capsys, no_compute):
    black = _png(tmp_path / "black.png", np.zeros((16, 16)))
    line = _error(capsys, _restore(tmp_path, rgb16, "--task", "inpaint", "--mask", black, "--method", "mpgd"))
    assert line.startswith("diffsolve restore: error: --mask: black.png observes no pixel") and "inverted" in line


def test_float_image_is_refused_before_loading(tmp_path, capsys, no_compute):
    path = tmp_path / "f.tif"
    Image.fromarray(np.zeros((16, 16), np.float32)).save(path)
    line = _error(capsys, _restore(tmp_path, str(path), "--task", "denoise", "--method", "mpgd", "--simulate"))
    assert "--input" in line and "PIL mode F" in line and "16-bit PNG" in line


@pytest.mark.parametrize("value, unit", [("1e-20", "[-1,1]"), ("1e-300", "[-1,1]"), ("1e-16", "[0,1]")])
def test_a_sigma_below_the_solvers_smallest_is_one_line(tmp_path, rgb16, capsys, no_compute, value, unit):
    line = _error(capsys, _restore(tmp_path, rgb16, "--task", "box", "--method", "pigdm", "--simulate",
                                   "--sigma", value, "--sigma-unit", unit))
    assert "--sigma" in line and "below" in line


def test_a_latent_folder_is_named_as_such(tmp_path, rgb16, capsys, no_compute):
    import json

    folder = tmp_path / "ldm"
    (folder / "unet").mkdir(parents=True)
    (folder / "vae").mkdir()
    (folder / "unet" / "config.json").write_text(json.dumps(
        {"_class_name": "UNet2DModel", "in_channels": 4, "out_channels": 4, "block_out_channels": [8, 16],
         "down_block_types": ["DownBlock2D", "DownBlock2D"], "sample_size": 8}))
    (folder / "vae" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL", "latent_channels": 4}))
    line = _error(capsys, _restore(tmp_path, rgb16, "--task", "box", "--method", "mpgd", "--simulate",
                                   "--model", str(folder)))
    assert "latent diffusion folder" in line and "mpgd_ldm" in line


def test_out_that_is_the_input_is_refused(tmp_path, rgb16, capsys, no_compute):
    argv = ["restore", "--input", rgb16, "--out", rgb16, "--task", "box", "--method", "tikhonov", "--simulate"]
    assert "would overwrite the --input file" in _error(capsys, argv)
