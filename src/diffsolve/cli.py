"""The ``diffsolve`` command line (also ``python -m diffsolve``): ``demo``, ``restore``, ``info``.

- ``diffsolve demo [--out DIR] [--steps N] [--quick]``: the bundled photos and held-out digits,
  every task of :mod:`diffsolve.demo`, MPGD and C-DPS beside the pseudo-inverse and Tikhonov;
  PNG grids and metrics.json in DIR.
- ``diffsolve restore --input IMG --task TASK --method METHOD [--model M] --out OUT``: restore a
  measurement (or, with ``--simulate``, degrade a clean image first and score the result).
- ``diffsolve info``: versions, kernel backends (and why any is unavailable), shipped models.

Errors in the arguments or inputs print one line to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from importlib import metadata
from pathlib import Path

__all__ = ["main"]


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    from .demo import METHODS, SIGMA, TASKS

    p = argparse.ArgumentParser(prog="diffsolve", description="Inverse problems with pretrained diffusion models.")
    sub = p.add_subparsers(dest="command", required=True, metavar="{demo,restore,info}")

    d = sub.add_parser("demo", help="restore the bundled photos and digits for every task; grids + metrics.json")
    d.add_argument("--out", default="diffsolve-demo", help="output folder (default: %(default)s)")
    d.add_argument("--steps", type=_positive_int, default=None, help="sampling steps (default 30, --quick 20)")
    d.add_argument("--quick", action="store_true", help="64x64 photos, 4 digits, 20 steps")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--size", type=_positive_int, default=None, help="photo side in pixels, divisible by 8")
    d.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    d.add_argument("--methods", nargs="+", choices=("mpgd", "cdps", "dps"), default=["mpgd", "cdps"])

    r = sub.add_parser("restore", help="restore one image")
    r.add_argument("--input", required=True, help="the measurement image (PNG/JPEG/...), or the clean image with --simulate")
    r.add_argument("--task", required=True, choices=TASKS + ("inpaint",),
                   help="the measurement operator; 'inpaint' takes --mask")
    r.add_argument("--method", required=True, choices=METHODS)
    r.add_argument("--model", default=None,
                   help="'patches' (default for RGB), 'digits16', or a local diffusers folder (unet/ + scheduler/)")
    r.add_argument("--steps", type=_positive_int, default=50)
    r.add_argument("--seed", type=int, default=0, help="seeds the sampler, the operator and --simulate's noise")
    r.add_argument("--mask", help="inpaint: mask image, non-zero = observed pixel")
    r.add_argument("--simulate", action="store_true",
                   help=f"treat --input as the clean image: measure it (noise {SIGMA} in [-1,1]) and report PSNR/SSIM")
    r.add_argument("--device", default="cpu")
    r.add_argument("--out", required=True, help="output PNG (with --simulate also OUT_measurement.png)")

    sub.add_parser("info", help="versions, backends and shipped models")
    return p


# --------------------------------------------------------------------------- info


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def info(out=None) -> dict:
    """Print (to ``out``, default stdout) and return versions, backends (with why-not), shipped models."""
    out = sys.stdout if out is None else out
    import torch

    import diffsolve

    from .kernels import backends
    from .models.default import DEFAULT_MODELS, default_model_info

    versions = {"diffsolve": diffsolve.__version__, "python": platform.python_version()}
    versions.update({d: _version(d) for d in ("torch", "triton", "diffusers", "numpy", "scipy", "torchmetrics")})
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "not available"
    result = {"versions": versions, "cuda": cuda, "backends": {}, "models": {}}
    print("versions:", file=out)
    for k, v in versions.items():
        print(f"  {k:13s} {v}", file=out)
    print(f"  {'cuda':13s} {cuda}", file=out)
    print("backends:", file=out)
    for name, (ok, why) in backends().items():
        result["backends"][name] = {"available": ok, "reason": why}
        print(f"  {name:7s} {'yes' if ok else 'no ':3s}  {why}", file=out)
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


# --------------------------------------------------------------------------- restore


def _load_model(spec: str, device: str):
    from .models import DiffusersDenoiser
    from .models.default import DEFAULT_MODELS, load_default

    if spec in DEFAULT_MODELS:
        return load_default(spec, device=device)
    if not Path(spec).is_dir():
        raise CLIError(f"--model must be one of {DEFAULT_MODELS} or a local diffusers folder, got {spec!r} "
                       "(no such folder)")
    try:
        return DiffusersDenoiser.from_pretrained(spec, device=device)
    except (ValueError, OSError) as err:
        raise CLIError(f"--model {spec!r}: {err}") from err


def _check_size(model, image_hw: tuple[int, int], what: str) -> None:
    """Raise CLIError when the model cannot run on images of ``image_hw``."""
    cfg = model.unet.config
    attn = any("Attn" in b or "CrossAttn" in b for b in cfg.get("down_block_types", ()))
    mult = model.spatial_multiple
    size = cfg.get("sample_size")
    sq = (size, size) if isinstance(size, int) else tuple(size or ())
    if attn and sq and tuple(image_hw) != sq:
        raise CLIError(f"model/image size mismatch: the model takes {sq[0]}x{sq[1]} images, the {what} is "
                       f"{image_hw[0]}x{image_hw[1]}; resize or crop it to {sq[0]}x{sq[1]}")
    if image_hw[0] % mult or image_hw[1] % mult:
        raise CLIError(f"model/image size mismatch: the model needs sides divisible by {mult}, the {what} is "
                       f"{image_hw[0]}x{image_hw[1]}; crop it to "
                       f"{image_hw[0] // mult * mult}x{image_hw[1] // mult * mult}")


def restore_cmd(a: argparse.Namespace) -> dict:
    import torch

    from .data import read_image
    from .demo import SIGMA, make_operator, measurement_view, restore, scores
    from .operators import Inpainting

    from PIL import Image

    try:
        with Image.open(a.input) as img:
            bands = len(img.getbands())
    except (OSError, ValueError) as err:
        raise CLIError(f"cannot read image {a.input!r}: {err}") from err
    model_spec = a.model or "patches"
    model = _load_model(model_spec, a.device)
    channels = model.unet.config.in_channels
    if channels not in (1, 3):
        raise CLIError(f"--model has {channels} input channels; restore handles 1 (grey) or 3 (RGB) images")
    img_channels = 1 if bands in (1, 2) else 3
    if img_channels != channels:
        raise CLIError(f"model/image mismatch: the model takes {channels}-channel images, {a.input!r} has "
                       f"{img_channels} ({'grey' if img_channels == 1 else 'colour'}); convert it first "
                       "or choose another --model")
    try:
        img = read_image(a.input, mode="L" if channels == 1 else "RGB")[None].to(a.device)
    except ValueError as err:
        raise CLIError(str(err)) from err
    hw = tuple(img.shape[-2:])
    digits = model_spec == "digits16"
    if a.task == "inpaint":
        if a.mask is None:
            raise CLIError("--task inpaint needs --mask (an image of the same size, non-zero = observed)")
        try:
            mask = read_image(a.mask, mode="L")[None]
        except ValueError as err:
            raise CLIError(str(err)) from err
        if tuple(mask.shape[-2:]) != hw:
            raise CLIError(f"--mask is {mask.shape[-2]}x{mask.shape[-1]} but --input is {hw[0]}x{hw[1]}")
        op = Inpainting((mask > -1).double())
    else:
        if a.mask is not None:
            raise CLIError(f"--mask is only used by --task inpaint, not {a.task!r}")
        if not a.simulate and a.task in ("box", "random"):
            raise CLIError(f"--task {a.task} draws its mask from --seed, so it needs --simulate; to restore "
                           "your own masked image use --task inpaint --mask MASK")
        x_hw = (hw[0] * 4, hw[1] * 4) if a.task == "sr4" and not a.simulate else hw
        try:
            op = make_operator(a.task, x_hw, seed=a.seed, digits=digits)
        except ValueError as err:
            raise CLIError(f"--task {a.task}: {err}") from err
    x_true = None
    if a.simulate:
        x_true = img
        _check_size(model, hw, "image")
        ax = op.A(img)
        y = ax + SIGMA * torch.randn(ax.shape, generator=torch.Generator(a.device).manual_seed(a.seed + 1),
                                     device=a.device)
    else:
        y = img
        _check_size(model, tuple(op.A_adjoint(y).shape[-2:]), "restored image")
    x, _ = restore(a.method, model, op, y, steps=a.steps, seed=a.seed, progress=True, x_true=None)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _save_png(out, x[0])
    result: dict = {"out": str(out)}
    if x_true is not None:
        meas = out.with_name(out.stem + "_measurement.png")
        _save_png(meas, measurement_view(a.task, y, hw)[0])
        s = scores(x, x_true)
        result.update(psnr=round(float(s["psnr"][0]), 2), ssim=round(float(s["ssim"][0]), 4), measurement=str(meas))
        print(f"PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.4f}")
    print(f"wrote {out}")
    return result


def _save_png(path: Path, img) -> None:
    from PIL import Image

    img = img.detach().float().cpu().clamp(-1, 1)
    arr = ((img + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(path)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``diffsolve`` script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "info":
            info()
        elif args.command == "restore":
            restore_cmd(args)
        else:
            from .demo import run_demo

            steps = args.steps or (20 if args.quick else 30)
            if args.size is not None and args.size % 8:
                raise CLIError(f"--size must be divisible by 8 (the patches model's down-sampling), got {args.size}")
            metrics = run_demo(args.out, steps=steps, quick=args.quick, seed=args.seed, size=args.size,
                               methods=tuple(args.methods), tasks=tuple(args.tasks))
            print(f"wrote {args.out}/metrics.json and {len(metrics['suites']) * len(args.tasks)} grids")
    except CLIError as err:
        print(f"diffsolve {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
