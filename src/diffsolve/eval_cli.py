"""The ``diffsolve eval`` subcommand: its arguments and their checks (nothing heavy is imported here,
so ``--help`` answers at once; the runner is :mod:`diffsolve.evaluate`).

Wiring (``diffsolve.cli``)::

    from . import eval_cli
    eval_cli.add_parser(subparsers)          # adds "eval" with its flags
    ...
    return eval_cli.run(args)                 # when args.command == "eval": exit status (0, or 2)

``run`` checks every argument before a model is loaded or anything computed; a bad one prints one
line ``diffsolve eval: error: <argument>: <what was given>; <fix>`` to stderr and returns 2.
``python -m diffsolve.eval_cli eval ...`` runs it standalone (also under ``torchrun -m``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ._cli_types import DEVICE_PATTERN, HelpFormatter, device_unavailable, int_at_least
from .tasks import DEMO_TASKS

__all__ = ["DEFAULT_METHODS", "DEFAULT_TASKS", "IMAGE_SUFFIXES", "UsageError", "add_parser", "check", "main",
           "run"]

DEFAULT_TASKS = ",".join(DEMO_TASKS)
DEFAULT_METHODS = "mpgd,cdps,dps,tikhonov,pinv"
BUNDLED = {"digits16": 16, "photos": 256}  # bundled set -> its natural side
SHIPPED = ("digits16", "patches")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors")


class UsageError(ValueError):
    """A bad argument: ``argument``, what was given, and the fix (printed as one line, exit 2)."""

    def __init__(self, argument: str, given: str, fix: str) -> None:
        super().__init__(f"{argument}: {given}; {fix}")
        self.argument, self.given, self.fix = argument, given, fix






def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``eval`` subcommand to ``subparsers`` (from ``ArgumentParser.add_subparsers``); return it."""
    e = subparsers.add_parser(
        "eval", formatter_class=HelpFormatter,
        help="evaluate methods on a dataset: results.jsonl, summary.md/.csv, a quality-vs-time plot",
        description="Score every (image, task, method, seed) on a folder of images or a bundled set. "
                    "Reruns into the same --out skip finished records. Runs unchanged under "
                    "torchrun --nproc-per-node=K -m diffsolve eval ... (images sharded across ranks; the "
                    "records do not depend on K).",
        epilog="Errors print one line naming the argument and the fix; exit status 2. LPIPS/FID are not "
               "computed (their weights would have to be downloaded).")
    e.add_argument("--data", required=True,
                   help="a folder of PNG/JPEG images (centre-cropped and resized to --size), or a bundled set: "
                        + ", ".join(BUNDLED))
    e.add_argument("--size", type=int_at_least(1), default=None,
                   help="image side S in pixels (default: digits16 16, photos 256; required for a folder)")
    e.add_argument("--tasks", default=DEFAULT_TASKS, help="comma-separated tasks (diffsolve.tasks)")
    e.add_argument("--methods", default=DEFAULT_METHODS, help="comma-separated methods (diffsolve.methods)")
    e.add_argument("--steps", type=int_at_least(1), default=30, help="sampling steps")
    e.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1")
    e.add_argument("--out", required=True, help="output folder (results.jsonl, summary.md, summary.csv, plot)")
    e.add_argument("--model", default=None,
                   help="'digits16', 'patches', a local diffusers folder, or an ADM (guided-diffusion) checkpoint "
                        "file such as ffhq_10m.pt (default: digits16 for the digits16 set, else patches)")
    e.add_argument("--batch", type=int_at_least(1), default=1, help="images per solver call")
    e.add_argument("--device", default="cpu",
                   help="torch device: cpu, cuda (under torchrun: cuda:LOCAL_RANK), cuda:N")
    e.add_argument("--save-images", action="store_true", help="also write OUT/images/TASK/METHOD/seedS/NAME.png")
    e.add_argument("--sigma", type=float, default=0.05, help="measurement noise std in [-1, 1] units")
    e.add_argument("--limit", type=int_at_least(1), default=None, help="only the first N images (sorted by name)")
    e.add_argument("--head-channels", type=int_at_least(1), default=64,
                   help="ADM checkpoints: channels per attention head (num_head_channels; 64 for the FFHQ and "
                        "ImageNet 256 models)")
    e.add_argument("--threads", type=int_at_least(1), default=None,
                   help="torch CPU threads per process (default: torch's; torchrun sets 1 per process)")
    e.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return e


def _names(text: str, flag: str, allowed: tuple[str, ...], hidden: dict[str, str]) -> list[str]:
    items = [s.strip() for s in text.split(",")]
    if not text.strip() or any(not s for s in items):
        raise UsageError(flag, repr(text), f"give a comma-separated list from {','.join(allowed)}")
    for s in items:
        if s in hidden:
            raise UsageError(flag, s, hidden[s])
        if s not in allowed:
            raise UsageError(flag, f"unknown {flag[2:-1]} {s!r}", f"choose from {','.join(allowed)}")
    if len(set(items)) != len(items):
        raise UsageError(flag, repr(text), "list each name once")
    return items


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise UsageError("--seeds", repr(text), "give comma-separated integers, e.g. 0,1") from None
    if any(s < 0 or s >= 2**63 for s in seeds) or len(set(seeds)) != len(seeds):
        raise UsageError("--seeds", repr(text), "give distinct integers in [0, 2**63)")
    return seeds


def _folder_images(folder: Path) -> list[Path]:
    from PIL import Image

    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise UsageError("--data", f"{str(folder)!r} holds no PNG/JPEG image",
                         f"put {', '.join(IMAGE_SUFFIXES)} files in it or name a bundled set ({', '.join(BUNDLED)})")
    for p in paths:
        try:
            with Image.open(p) as img:
                img.load()
        except Exception as err:  # PIL raises many kinds for a corrupt file
            raise UsageError("--data", f"cannot read image {p.name!r} ({type(err).__name__}: {err})",
                             "remove or replace that file") from None
    return paths


def _model_geometry(spec: str) -> dict[str, Any] | None:
    """Channels, down-sampling multiple and fixed size from a shipped/diffusers model's config (no torch);
    None for a checkpoint file (known once loaded)."""
    path = Path(spec)
    if spec in SHIPPED:
        from importlib import resources

        path = Path(str(resources.files("diffsolve.models").joinpath("weights", spec)))
    elif path.is_file():
        if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
            raise UsageError("--model", f"{spec!r} is a file but not a checkpoint",
                             f"give an ADM checkpoint ({', '.join(CHECKPOINT_SUFFIXES)}), a diffusers folder, "
                             f"or one of {', '.join(SHIPPED)}")
        return None
    elif not path.is_dir():
        raise UsageError("--model", f"{spec!r} is neither a shipped model nor an existing file or folder",
                         f"use {' or '.join(SHIPPED)}, a local diffusers folder, or an ADM checkpoint file "
                         "(diffsolve never downloads models)")
    for cfg_path in (path / "unet" / "config.json", path / "config.json"):
        if cfg_path.is_file():
            break
    else:
        raise UsageError("--model", f"{spec!r} has no unet/config.json or config.json",
                         "give a diffusers model folder (unet/ + scheduler/)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as err:
        raise UsageError("--model", f"cannot read {cfg_path} ({err})", "fix or replace that file") from None
    blocks = cfg.get("block_out_channels") or ()
    attn = any("Attn" in b for b in cfg.get("down_block_types", ()))
    size = cfg.get("sample_size")
    return {"channels": int(cfg.get("in_channels", 3)), "multiple": 2 ** (len(blocks) - 1) if blocks else 1,
            "fixed": size if attn and isinstance(size, int) else None}


def _check_device(text: str) -> str:
    if not DEVICE_PATTERN.match(text):
        raise UsageError("--device", repr(text), "use cpu, cuda, cuda:N or mps")
    problem = device_unavailable(text)
    if problem is not None:
        raise UsageError("--device", *problem)
    return text


def check(args: argparse.Namespace):
    """Every check that needs no model; returns the :class:`diffsolve.evaluate.EvalConfig`."""
    from .methods import METHODS, get_method
    from .tasks import TASKS, make_operator, required_multiple

    data = args.data
    folder = Path(data)
    if data in BUNDLED:
        paths = None
        size = args.size if args.size is not None else BUNDLED[data]
        if data == "digits16" and size != 16:
            raise UsageError("--size", f"{size} with --data digits16",
                             "the bundled digits are 16x16: use --size 16 (or leave it out)")
    elif folder.is_dir():
        paths = _folder_images(folder)
        if args.size is None:
            raise UsageError("--size", "missing for a folder of images",
                             "give the side the images are centre-cropped and resized to, e.g. --size 256")
        size = args.size
    else:
        raise UsageError("--data", f"{data!r} is neither a folder nor a bundled set",
                         f"give a folder of PNG/JPEG images or one of {', '.join(BUNDLED)}")
    tasks = _names(args.tasks, "--tasks", TASKS, {})
    hidden = {m: f"{m} needs an autoencoder the command line cannot build; use diffsolve.solve"
              for m, spec in METHODS.items() if not spec.cli}
    methods = _names(args.methods, "--methods", tuple(m for m in METHODS if METHODS[m].cli), hidden)
    seeds = _seeds(args.seeds)
    if not (args.sigma >= 0 and args.sigma < float("inf")):
        raise UsageError("--sigma", str(args.sigma), "give a finite noise std >= 0")
    if "cdps" in methods and args.sigma == 0:
        raise UsageError("--sigma", "0 with cdps", "cdps needs the measurement noise level: give --sigma > 0")
    model = args.model or ("digits16" if data == "digits16" else "patches")
    uses_model = any(get_method(m).uses_model for m in methods)
    geo = _model_geometry(model)
    channels = geo["channels"] if geo is not None else 3
    if channels not in (1, 3):
        raise UsageError("--model", f"{model!r} takes {channels}-channel images", "use a grey (1) or RGB (3) model")
    if uses_model and geo is not None:
        if geo["fixed"] is not None and size != geo["fixed"]:
            raise UsageError("--size", f"{size} but --model {model} takes {geo['fixed']}x{geo['fixed']} images",
                             f"use --size {geo['fixed']}")
        if size % geo["multiple"]:
            m = geo["multiple"]
            raise UsageError("--size", f"{size} but --model {model} needs multiples of {m}",
                             f"use --size {max(m, size // m * m)}")
    digits = model == "digits16"
    for task in tasks:
        f = required_multiple(task)
        if size % f:
            raise UsageError("--size", f"{size} but task {task} needs multiples of {f}",
                             f"use --size {max(f, size // f * f)}")
        try:
            make_operator(task, (size, size), seed=seeds[0], digits=digits)
        except ValueError as err:
            raise UsageError("--tasks", f"{task} at {size}x{size}: {err}", "use a larger --size") from None
    _check_device(args.device)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError("--out", f"{str(out)!r} is a file", "give a folder (it is created if missing)")
    from .evaluate import EvalConfig, read_pinned

    cfg = EvalConfig(data=data, size=size, tasks=tasks, methods=methods, steps=args.steps, seeds=seeds, out=out,
                     model=model, channels=channels, batch=args.batch, device=args.device,
                     save_images=args.save_images, sigma=float(args.sigma), head_channels=args.head_channels,
                     digits=digits, image_paths=paths, limit=args.limit, progress=args.progress,
                     threads=args.threads)
    pinned = read_pinned(out) if out.is_dir() else None
    if pinned is not None:
        for key, value in cfg.pinned().items():
            if pinned.get(key) != value:
                raise UsageError("--out", f"{str(out)!r} holds records made with {key}={pinned.get(key)!r}, "
                                          f"this run has {key}={value!r}",
                                 "use the same settings to resume, or another --out")
    return cfg


def run(args: argparse.Namespace) -> int:
    """Check the arguments, then evaluate; 0 on success, 2 (one line on stderr) on a bad argument."""
    try:
        cfg = check(args)
        from .evaluate import run_eval

        run_eval(cfg)
    except UsageError as err:
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"diffsolve eval: error: {err}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m diffsolve.eval_cli eval ...``: the subcommand without the rest of the CLI."""
    p = argparse.ArgumentParser(prog="diffsolve")
    sub = p.add_subparsers(dest="command", required=True)
    add_parser(sub)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
