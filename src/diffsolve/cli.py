"""The ``diffsolve`` command line (also ``python -m diffsolve``): ``demo``, ``restore``, ``eval``, ``info``.

- ``diffsolve demo [--out DIR] [--steps N] [--quick]``: the bundled photos and held-out digits,
  every task of :mod:`diffsolve.tasks`, MPGD and C-DPS beside the pseudo-inverse and Tikhonov;
  PNG grids and metrics.json in DIR, one progress bar over the whole run.
- ``diffsolve restore --input IMG --task TASK --method METHOD [--model M] --out OUT``: restore a
  measurement (or, with ``--simulate``, degrade a clean image first and score the result).
- ``diffsolve eval --data DIR ...``: evaluate methods over a folder of images (see ``eval --help``).
- ``diffsolve info``: versions, kernel backends (and why any is unavailable), shipped models.

Every argument is checked before torch is imported, a model is loaded or a step runs: an error is
one line ``diffsolve CMD: error: ...`` naming the argument, the value and the fix, exit status 2
(argparse's own errors print its usage block first). ``--help``, ``--version`` and these errors
never import torch. Sizes are written width×height everywhere.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from . import __version__
from ._cli_types import DEVICE_PATTERN, HelpFormatter, device_unavailable
from ._cli_types import number as _number
from ._cli_types import positive_int as _positive_int
from ._cli_types import seed as _seed
from .tasks import DEMO_TASKS, SIGMA, TASK_PARAMETERS, TASKS, TaskParameters, check_parameters, required_multiple

__all__ = ["CLIError", "main"]

#: methods of ``restore`` / ``demo`` (torch-free copies of diffsolve.methods: CLI_METHODS split by
#: ``uses_model``; tests/test_cli_errors.py checks they agree); the samplers run the model
SAMPLERS = ("mpgd", "cdps", "dps")
BASELINES = ("tikhonov", "pinv")
METHODS = SAMPLERS + BASELINES
SHIPPED_MODELS = ("digits16", "patches")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
SIZE_RULES = ("Size rules: the samplers (mpgd, cdps, dps) need image sides that are multiples of the model's "
              "down-sampling factor (patches: 8; digits16: exactly 16x16); sr4/sr need sides that are "
              "multiples of the SR factor; the baselines (tikhonov, pinv) need nothing else.")


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def _add_measurement_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("measurement (y = A x + sigma * noise)")
    g.add_argument("--sigma", type=_number(0.0), default=SIGMA, help="measurement noise std, in --sigma-unit")
    g.add_argument("--sigma-unit", choices=("[-1,1]", "[0,1]"), default="[-1,1]",
                   help="the pixel range --sigma is measured in")
    g.add_argument("--blur-std", type=_number(0.0, low_open=True), default=None,
                   help="gaussian_blur: std in pixels (default: 3 * side / 256; 1 on 16x16 digits)")
    g.add_argument("--motion-size", type=_positive_int, default=None,
                   help="motion_blur: odd kernel side in pixels (default: 61 * side / 256; 9 on digits)")
    g.add_argument("--box", type=_positive_int, default=None,
                   help="box: side of the square hole in pixels (default: side / 2; 6 on digits)")
    g.add_argument("--missing", type=_number(0.0, 1.0, low_open=True, high_open=True), default=0.7,
                   help="random: fraction of the pixels lost")
    g.add_argument("--factor", type=_positive_int, default=4, help="sr: the down-sampling factor (sr4 is 4)")


def _parser() -> argparse.ArgumentParser:
    fmt = HelpFormatter
    p = argparse.ArgumentParser(prog="diffsolve", formatter_class=fmt,
                                description="Inverse problems with pretrained diffusion models.",
                                epilog="Errors print one line naming the argument and the fix; exit status 2.")
    p.add_argument("--version", action="version", version=f"diffsolve {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="{demo,restore,eval,info}")

    d = sub.add_parser("demo", formatter_class=fmt, epilog=SIZE_RULES,
                       help="restore the bundled photos and digits for every task; grids + metrics.json")
    d.add_argument("--out", default="diffsolve-demo", help="output folder")
    d.add_argument("--steps", type=_positive_int, default=None, help="sampling steps (default 30; --quick: 20)")
    d.add_argument("--quick", action="store_true", help="64x64 photos, 4 digits, 20 steps")
    d.add_argument("--seed", type=_seed, default=0, help="seeds the samplers, the operators and the noise")
    d.add_argument("--size", type=_positive_int, default=None,
                   help="photo side in pixels, a multiple of 8 (default 128; --quick: 64)")
    d.add_argument("--tasks", nargs="+", choices=TASKS, default=list(DEMO_TASKS), help="tasks to run")
    d.add_argument("--methods", nargs="+", choices=SAMPLERS, default=["mpgd", "cdps"],
                   help="samplers to run beside the pseudo-inverse and Tikhonov")
    _add_measurement_args(d)

    r = sub.add_parser("restore", formatter_class=fmt, epilog=SIZE_RULES, help="restore one image")
    r.add_argument("--input", required=True,
                   help="the measurement image (PNG/JPEG/...), or the clean image with --simulate")
    r.add_argument("--task", required=True, choices=TASKS + ("inpaint",),
                   help="the measurement operator; 'inpaint' takes --mask")
    r.add_argument("--method", required=True, choices=METHODS)
    r.add_argument("--model", default=None,
                   help="'patches' (default for RGB), 'digits16' (default for grey), or a local diffusers "
                        "folder (unet/ + scheduler/); unused by tikhonov and pinv")
    r.add_argument("--steps", type=_positive_int, default=50, help="sampling steps")
    r.add_argument("--seed", type=_seed, default=0, help="seeds the sampler, the operator and --simulate's noise")
    r.add_argument("--mask", help="inpaint: mask image of the input's size, non-zero = observed pixel")
    r.add_argument("--simulate", action="store_true",
                   help="treat --input as the clean image: measure it (noise --sigma) and report PSNR/SSIM")
    r.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:N, mps")
    r.add_argument("--out", required=True,
                   help=f"output image, one of {', '.join(IMAGE_SUFFIXES)} (with --simulate also "
                        "OUT_measurement.EXT)")
    _add_measurement_args(r)

    try:  # the eval subcommand (its module imports nothing heavy)
        from . import eval_cli
    except ImportError:  # pragma: no cover - eval_cli is part of the package
        eval_cli = None
    if eval_cli is not None and hasattr(eval_cli, "add_parser"):
        eval_cli.add_parser(sub)

    sub.add_parser("info", formatter_class=fmt, help="versions, backends and shipped models")
    return p


# --------------------------------------------------------------------------- checks (no torch)


def _params(a: argparse.Namespace) -> TaskParameters:
    given = {"blur_std": a.blur_std, "motion_size": a.motion_size, "box": a.box}
    params = TaskParameters(blur_std=a.blur_std, motion_size=a.motion_size, box=a.box, missing=a.missing,
                            factor=a.factor)
    try:
        check_parameters(params)
    except ValueError as err:
        raise CLIError(f"--{str(err).replace('_', '-', 1)}") from None
    tasks = [a.task] if hasattr(a, "task") else list(a.tasks)
    if a.factor != 4 and "sr" not in tasks:
        raise CLIError(f"--factor {a.factor} is only read by --task sr (sr4 is always x4); use --task sr")
    for name, value in given.items():
        users = [t for t in TASKS if name in TASK_PARAMETERS[t]]
        if value is not None and not any(t in tasks for t in users):
            raise CLIError(f"--{name.replace('_', '-')} {value} is only read by --task {'/'.join(users)}, "
                           f"not {'/'.join(tasks)}; drop it")
    return params


def _sigma(a: argparse.Namespace) -> float:
    """--sigma in [-1, 1] units (the solvers' unit)."""
    return a.sigma * 2.0 if a.sigma_unit == "[0,1]" else a.sigma


def _check_device(text: str) -> str:
    if not DEVICE_PATTERN.match(text):
        raise CLIError(f"--device must be cpu, cuda, cuda:N or mps, got {text!r}")
    return text


def _check_device_available(device: str) -> None:
    """Needs torch: call after every torch-free check."""
    problem = device_unavailable(device)
    if problem is not None:
        raise CLIError(f"--device {problem[0]}; {problem[1]}")


def _check_out_file(text: str) -> Path:
    out = Path(text)
    if out.is_dir():
        raise CLIError(f"--out {text!r} is a directory; give an image file name such as {text.rstrip('/')}/restored.png")
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise CLIError(f"--out {text!r} has no image extension; use one of {', '.join(IMAGE_SUFFIXES)} "
                       f"(e.g. {out.with_suffix('.png')})")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise CLIError(f"--out {text!r}: {str(parent)!r} is a file, not a folder")
            break
    return out


def _check_out_dir(text: str) -> Path:
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {text!r} is a file; give a folder for the demo's grids and metrics.json")
    return out


def _model_folder(spec: str) -> Path:
    if spec in SHIPPED_MODELS:
        return Path(__file__).parent / "models" / "weights" / spec
    folder = Path(spec)
    if not folder.is_dir():
        raise CLIError(f"--model must be one of {SHIPPED_MODELS} or a local diffusers folder, got {spec!r} "
                       "(no such folder)")
    return folder


def _model_geometry(spec: str) -> dict:
    """Channels, down-sampling multiple and fixed size (attention models) read from the UNet config."""
    folder = _model_folder(spec)
    for cfg_path in (folder / "unet" / "config.json", folder / "config.json"):
        if cfg_path.is_file():
            break
    else:
        raise CLIError(f"--model {spec!r}: no unet/config.json or config.json in that folder")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as err:
        raise CLIError(f"--model {spec!r}: cannot read {cfg_path}: {err}") from None
    blocks = cfg.get("block_out_channels") or ()
    attn = any("Attn" in b for b in cfg.get("down_block_types", ()))
    size = cfg.get("sample_size")
    fixed = None
    if attn and size:
        fixed = (size, size) if isinstance(size, int) else (size[1], size[0])  # (W, H)
    return {"channels": int(cfg.get("in_channels", 3)), "multiple": 2 ** (len(blocks) - 1) if blocks else 1,
            "fixed": fixed}


def _crop_hint(w: int, h: int, m: int) -> str:
    if w < m or h < m:
        return f"use an image of at least {m}x{m}"
    return f"crop it to {w // m * m}x{h // m * m}"


def _check_model_size(spec: str, geo: dict, wh: tuple[int, int], what: str) -> None:
    w, h = wh
    if geo["fixed"] is not None and (w, h) != geo["fixed"]:
        fw, fh = geo["fixed"]
        raise CLIError(f"model/image size mismatch: --model {spec} takes {fw}x{fh} images (width x height), "
                       f"the {what} is {w}x{h}; resize or crop it to {fw}x{fh}")
    m = geo["multiple"]
    if w % m or h % m:
        raise CLIError(f"model/image size mismatch: --model {spec} needs sides divisible by {m}, the {what} is "
                       f"{w}x{h} (width x height); {_crop_hint(w, h, m)}")


def _image_info(path: str, flag: str) -> tuple[tuple[int, int], int]:
    """((width, height), channels 1 or 3) of an image file, without reading its pixels."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.size, (1 if len(img.getbands()) in (1, 2) else 3)
    except (OSError, ValueError) as err:
        raise CLIError(f"{flag}: cannot read image {path!r}: {err}") from None


# --------------------------------------------------------------------------- info


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def info(out=None) -> dict:
    """Print (to ``out``, default stdout) and return versions, backends (with why-not), the kernel
    dispatch table and the shipped models."""
    out = sys.stdout if out is None else out
    import platform

    import torch

    from . import kernels
    from .models.default import DEFAULT_MODELS, default_model_info

    versions = {"diffsolve": __version__, "python": platform.python_version()}
    versions.update({d: _version(d) for d in ("torch", "triton", "diffusers", "numpy", "scipy", "torchmetrics")})
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "not available"
    result: dict = {"versions": versions, "cuda": cuda, "backends": {}, "models": {}}
    print("versions:", file=out)
    for k, v in versions.items():
        print(f"  {k:13s} {v}", file=out)
    print(f"  {'cuda':13s} {cuda}", file=out)
    print("backends:", file=out)
    for name, (ok, why) in kernels.backends().items():
        result["backends"][name] = {"available": ok, "reason": why}
        print(f"  {name:7s} {'yes' if ok else 'no ':3s}  {why}", file=out)
    table = getattr(kernels, "dispatch_table", None)
    if table is not None:
        rows = table()
        result["dispatch"] = rows
        print("kernels (implementations usable here; what backend='auto' runs on cpu / cuda):", file=out)
        for line in _dispatch_lines(rows):
            print("  " + line, file=out)
    print("shipped models:", file=out)
    for name in DEFAULT_MODELS:
        try:
            m = default_model_info(name)
        except FileNotFoundError as err:
            result["models"][name] = {"error": str(err)}
            print(f"  {name:9s} missing: {err}", file=out)
            continue
        result["models"][name] = m
        c, s = m["in_channels"], m["sample_size"]
        shape = f"(B, {c}, {s}, {s})" if name == "digits16" else f"(B, {c}, H, W), trained on {s}x{s} crops"
        params = f"{m['params'] / 1e6:.2f}M params" if m["params"] else "? params"
        print(f"  {name:9s} {shape}, {params}, {m['bytes'] / 1e6:.1f} MB, {m['steps']} steps on {m['device']}",
              file=out)
    return result


def _dispatch_lines(rows: list) -> list[str]:
    """The dispatch table as aligned text: one row per op, yes/no for booleans."""
    if not rows:
        return []
    dicts = [row if isinstance(row, dict) else dict(enumerate(row)) for row in rows]
    keys = list(dicts[0])
    cells = [[str(k) for k in keys]] + [["yes" if d.get(k) is True else "no" if d.get(k) is False else str(d.get(k, ""))
                                         for k in keys] for d in dicts]
    widths = [max(len(r[i]) for r in cells) for i in range(len(keys))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]


# --------------------------------------------------------------------------- restore


def _load_model(spec: str, device: str):
    from .models import DiffusersDenoiser
    from .models.default import load_default

    if spec in SHIPPED_MODELS:
        return load_default(spec, device=device)
    try:
        return DiffusersDenoiser.from_pretrained(spec, device=device)
    except (ValueError, OSError) as err:
        raise CLIError(f"--model {spec!r}: {err}") from err


def _plan_restore(a: argparse.Namespace) -> dict:
    """Every check of ``restore`` that needs neither torch nor a model; returns the plan."""
    out = _check_out_file(a.out)
    device = _check_device(a.device)
    params = _params(a)
    sigma = _sigma(a)
    (w, h), img_channels = _image_info(a.input, "--input")
    sampler = a.method in SAMPLERS
    if a.method == "cdps" and sigma <= 0:
        raise CLIError("--sigma 0: cdps needs the measurement noise level (> 0); give the noise std of your image")
    if a.task == "inpaint":
        if a.mask is None:
            raise CLIError("--task inpaint needs --mask (an image of the same size, non-zero = observed)")
        (mw, mh), _ = _image_info(a.mask, "--mask")
        if (mw, mh) != (w, h):
            raise CLIError(f"--mask is {mw}x{mh} but --input is {w}x{h} (width x height); give a mask of the same size")
    else:
        if a.mask is not None:
            raise CLIError(f"--mask is only used by --task inpaint, not {a.task!r}")
        if not a.simulate and a.task in ("box", "random"):
            raise CLIError(f"--task {a.task} draws its mask from --seed, so it needs --simulate; to restore "
                           "your own masked image use --task inpaint --mask MASK")
    factor = required_multiple(a.task, params) if a.task != "inpaint" else 1
    if a.simulate:
        x_wh = (w, h)
        if factor > 1 and (w % factor or h % factor):
            raise CLIError(f"--task {a.task} with --simulate needs image sides that are multiples of {factor}, "
                           f"--input is {w}x{h} (width x height); {_crop_hint(w, h, factor)}")
    else:
        x_wh = (w * factor, h * factor)  # SR: the input is the low-resolution measurement
    model_spec = a.model or ("digits16" if img_channels == 1 else "patches")
    if sampler:
        geo = _model_geometry(model_spec)
        if geo["channels"] not in (1, 3):
            raise CLIError(f"--model has {geo['channels']} input channels; restore handles 1 (grey) or 3 (RGB) images")
        if img_channels != geo["channels"]:
            kind = "grey" if img_channels == 1 else "colour"
            raise CLIError(f"model/image mismatch: --model {model_spec} takes {geo['channels']}-channel images, "
                           f"{a.input!r} has {img_channels} ({kind}); convert it first or choose another --model")
        what = "image" if a.simulate or factor == 1 else f"restored image (x{factor} the input)"
        _check_model_size(model_spec, geo, x_wh, what)
    elif a.model is not None and not Path(a.model).is_dir() and a.model not in SHIPPED_MODELS:
        _model_folder(a.model)  # a wrong --model is still an error, though the baselines do not use it
    return {"out": out, "device": device, "params": params, "sigma": sigma, "channels": img_channels,
            "model": model_spec if sampler else None, "digits": model_spec == "digits16", "x_wh": x_wh}


def restore_cmd(a: argparse.Namespace) -> dict:
    plan = _plan_restore(a)
    _check_device_available(plan["device"])

    import torch

    from .data import read_image
    from .demo import measurement_view, restore, scores
    from .operators import Inpainting
    from .tasks import make_operator

    device = plan["device"]
    mode = "L" if plan["channels"] == 1 else "RGB"
    try:
        img = read_image(a.input, mode=mode)[None].to(device)
    except ValueError as err:
        raise CLIError(f"--input: {err}") from err
    x_w, x_h = plan["x_wh"]
    if a.task == "inpaint":
        try:
            mask = read_image(a.mask, mode="L")[None]
        except ValueError as err:
            raise CLIError(f"--mask: {err}") from err
        op = Inpainting((mask > -1).double())
    else:
        try:
            op = make_operator(a.task, (x_h, x_w), seed=a.seed, digits=plan["digits"],
                               params=plan["params"])
        except ValueError as err:
            raise CLIError(f"--task {a.task}: {err}") from err
    model = _load_model(plan["model"], device) if plan["model"] is not None else None
    x_true = None
    if a.simulate:
        x_true = img
        ax = op.A(img)
        gen = torch.Generator(device).manual_seed(a.seed + 1)
        y = ax + plan["sigma"] * torch.randn(ax.shape, generator=gen, device=device, dtype=ax.dtype)
    else:
        y = img
    x, _ = restore(a.method, model, op, y, steps=a.steps, seed=a.seed, progress=True, x_true=None,
                   sigma=plan["sigma"])
    out = plan["out"]
    out.parent.mkdir(parents=True, exist_ok=True)
    _save_image(out, x[0])
    result: dict = {"out": str(out)}
    if x_true is not None:
        meas = out.with_name(out.stem + "_measurement" + out.suffix)
        _save_image(meas, measurement_view(a.task, y, (x_h, x_w))[0])
        s = scores(x, x_true)
        result.update(psnr=round(float(s["psnr"][0]), 2), ssim=round(float(s["ssim"][0]), 4), measurement=str(meas))
        print(f"PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.4f}")
    print(f"wrote {out}")
    return result


def _save_image(path: Path, img) -> None:
    from PIL import Image

    img = img.detach().float().cpu().clamp(-1, 1)
    arr = ((img + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(path)


# --------------------------------------------------------------------------- demo


DIGIT_SIDE = 16


def _plan_demo(a: argparse.Namespace) -> dict:
    out = _check_out_dir(a.out)
    params = _params(a)
    sigma = _sigma(a)
    side = a.size or (64 if a.quick else 128)
    if a.size is not None and (a.size % 8 or a.size < 16):
        fix = f"use {max(16, a.size // 8 * 8)}"
        raise CLIError(f"--size must be a multiple of 8 (the patches model's down-sampling) and >= 16, "
                       f"got {a.size}; {fix}")
    for task in a.tasks:
        f = required_multiple(task, params)
        if DIGIT_SIDE % f:
            raise CLIError(f"--factor {f}: the demo's digits are {DIGIT_SIDE}x{DIGIT_SIDE}, so the SR factor must "
                           f"divide {DIGIT_SIDE} (2, 4, 8 or 16)")
        if side % f:
            both = 8 * f // math.gcd(8, f)  # the model's multiple and the factor's
            raise CLIError(f"--task {task} needs the photo side to be a multiple of {f}, --size is {side}; "
                           f"use --size {max(both, side // both * both)}")
    if "cdps" in a.methods and sigma <= 0:
        raise CLIError("--sigma 0: cdps needs a measurement noise level > 0")
    return {"out": out, "params": params, "sigma": sigma}


def demo_cmd(a: argparse.Namespace) -> dict:
    plan = _plan_demo(a)
    from .demo import run_demo

    steps = a.steps or (20 if a.quick else 30)
    metrics = run_demo(plan["out"], steps=steps, quick=a.quick, seed=a.seed, size=a.size,
                       methods=tuple(a.methods), tasks=tuple(a.tasks), sigma=plan["sigma"], params=plan["params"])
    print(f"wrote {plan['out']}/metrics.json and {len(metrics['suites']) * len(a.tasks)} grids")
    return metrics


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``diffsolve`` script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "info":
            info()
        elif args.command == "restore":
            restore_cmd(args)
        elif args.command == "demo":
            demo_cmd(args)
        else:
            from . import eval_cli

            return int(eval_cli.run(args))
    except CLIError as err:
        print(f"diffsolve {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
