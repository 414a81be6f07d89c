"""``diffsolve eval``: its arguments and their checks (nothing heavy imported until the run; the runner is
:mod:`diffsolve.evaluate`). Every argument is checked before a model is loaded or anything computed.

Under torchrun: ``torchrun --nproc-per-node=K -m diffsolve eval ...``.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..tasks import DEMO_TASKS, TASKS
from .common import (BUNDLED_ABOUT, BUNDLED_SETS, IMAGE_SUFFIXES, NO_DISCREPANCY_HELP, OTHER_COLOUR_SPACES,
                     HelpFormatter, UsageError, add_measurement_args, check_device, check_sigma, check_steps,
                     check_writable, image_info, int_at_least, name_list, not_offered, padding_note, print_error,
                     require_device, split_names, task_parameters)

__all__ = ["DEFAULT_TASKS", "add_parser", "check", "run", "run_config"]

DEFAULT_TASKS = list(DEMO_TASKS)


def _default_methods() -> list[str]:
    """Every method the command line offers (the registry's CLI_METHODS)."""
    from ..methods import CLI_METHODS

    return list(CLI_METHODS)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``eval`` subcommand to ``subparsers``; return it."""
    e = subparsers.add_parser(
        "eval", formatter_class=HelpFormatter,
        help="evaluate methods on a dataset: results.jsonl, summary.md/.csv, a quality-vs-time plot",
        description="Score every (image, task, method, seed) on a folder of images or a bundled set. "
                    "Reruns into the same --out skip finished records (config.json pins the settings, the model's "
                    "files and the SHA-256 of every input file; one --out holds one data set). Runs unchanged "
                    "under torchrun --nproc-per-node=K -m diffsolve eval ... (images sharded across ranks; the "
                    "records do not depend on K). Lists (--tasks, "
                    "--methods, --seeds) are comma- or space-separated. A method that cannot take a task's "
                    "operator (ddrm, and ddnm with sigma > 0, need an SVD: not motion_blur) is skipped for that "
                    "task with a note and listed in summary.md.",
        epilog="Errors print one line naming the argument and the fix; exit status 2. LPIPS/FID are not "
               "computed (their weights would have to be downloaded).")
    e.add_argument("--data", required=True,
                   help=f"a folder of images ({', '.join(IMAGE_SUFFIXES)}; centre-cropped and resized to --size), "
                        "or a bundled set: " + "; ".join(f"{k}: {v}" for k, v in BUNDLED_ABOUT.items())
                        + " (an existing folder of that name wins)")
    e.add_argument("--size", type=int_at_least(1), default=None,
                   help="image side S in pixels (default: digits16 16, photos and heldout 256; required for a folder)")
    e.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS, help=f"tasks, of {', '.join(TASKS)}")
    e.add_argument("--methods", nargs="+", default=_default_methods(),
                   help="methods, of " + ", ".join(_default_methods()))
    e.add_argument("--steps", type=int_at_least(1), default=30, help="sampling steps")
    e.add_argument("--seeds", nargs="+", default=["0"], help="seeds, e.g. 0,1 or 0 1")
    e.add_argument("--out", required=True, help="output folder (results.jsonl, summary.md, summary.csv, plot)")
    e.add_argument("--model", default=None,
                   help="'digits16', 'patches', a local diffusers folder, or an ADM (guided-diffusion) checkpoint "
                        "file such as ffhq_10m.pt (default: digits16 for the digits16 set, else patches)")
    e.add_argument("--batch", type=int_at_least(1), default=1, help="images per solver call")
    e.add_argument("--draws", type=int_at_least(1), default=1,
                   help="model-based methods: score the mean of K posterior draws per record instead of one draw "
                        "(draw k's randomness: the record's streams extended by k; K times the time); a draw's "
                        "squared error is about twice the posterior mean's where y leaves the image uncertain")
    e.add_argument("--no-discrepancy", dest="discrepancy", action="store_false", help=NO_DISCREPANCY_HELP
                   + "; pinned in config.json (a resume must match it)")
    e.add_argument("--device", default="cpu",
                   help="torch device: cpu, cuda (under torchrun: cuda:LOCAL_RANK), cuda:N")
    e.add_argument("--save-images", action="store_true",
                   help="also write OUT/images/TASK/METHOD/seedS/NAME.png (the image's stem; its full name + .png "
                        "where two images share a stem) for the records this run computes (a resumed run says how "
                        "many finished records have no image)")
    e.add_argument("--limit", type=int_at_least(1), default=None, help="only the first N images (sorted by name)")
    e.add_argument("--head-channels", type=int_at_least(1), default=64,
                   help="ADM checkpoints: channels per attention head (num_head_channels; 64 for the FFHQ and "
                        "ImageNet 256 models)")
    e.add_argument("--threads", type=int_at_least(1), default=None,
                   help="torch CPU threads per process (default: torch's; torchrun sets 1 per process)")
    e.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    add_measurement_args(e, 0.05)  # pinned in config.json with the other settings
    return e


def _seeds(values: Any) -> list[int]:
    items = split_names(values)
    try:
        seeds = [int(s) for s in items]
    except ValueError:
        raise UsageError("--seeds", repr(" ".join(items)), "give integers, e.g. 0,1 or 0 1") from None
    if not seeds or any(s < 0 or s >= 2**63 for s in seeds) or len(set(seeds)) != len(seeds):
        raise UsageError("--seeds", repr(" ".join(items)), "give distinct integers in [0, 2**63)")
    return seeds


def _some(names: list[str]) -> str:
    """The first five names, and "..." where there are more."""
    return ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")


def _folder_images(folder: Path, limit: int | None, channels_wanted: int | None,
                   size: int | None = None) -> tuple[list[Path], list[str]]:
    """The folder's own image files (sorted, limited; not hidden ones, not sub-folders'), every one readable;
    notices for what is skipped and what is converted (colour, alpha, colour space, frames, and with ``size`` the
    ones centre-cropped to a square or enlarged to size × size)."""
    from PIL import Image

    entries = sorted(folder.iterdir())
    files = [p for p in entries if p.is_file() and not p.name.startswith(".")]
    paths = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    others = [p.name for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
    apple = [p.name for p in entries if p.is_file() and p.name.startswith("._")]  # macOS's AppleDouble metadata
    hidden = [p.name for p in entries if p.is_file() and p.name.startswith(".") and not p.name.startswith("._")]
    subfolders = [p.name + "/" for p in entries if p.is_dir() and not p.name.startswith(".")]
    if not paths:
        fix = f"put images in it or name a bundled set ({', '.join(BUNDLED_SETS)})"
        if subfolders:
            fix = (f"put images in it, name a bundled set ({', '.join(BUNDLED_SETS)}) or name one of its sub-folders, "
                   f"which eval does not search ({_some(subfolders)}), as --data")
        raise UsageError("--data", f"{str(folder)!r} holds no image ({', '.join(IMAGE_SUFFIXES)})", fix)
    paths = paths[:limit] if limit is not None else paths
    for p in paths:
        try:
            with Image.open(p) as img:
                img.load()
        except Exception as err:  # PIL raises many kinds for a corrupt file
            raise UsageError("--data", f"cannot read image {p.name!r} ({type(err).__name__}: {err})",
                             "remove or replace that file") from None
    infos = [image_info(p, "--data") for p in paths]

    def named(kind: list, sizes: bool = False) -> str:
        return _some([Path(i.path).name + (f" ({i.size[0]}x{i.size[1]})" if sizes else "") for i in kind])

    notes = []
    if subfolders:
        notes.append(f"{len(subfolders)} sub-folder(s) not searched (eval reads the folder's own files): "
                     f"{_some(subfolders)}")
    if apple:
        notes.append(f"{len(apple)} file(s) named ._* skipped: macOS metadata (AppleDouble), not images")
    if hidden:
        notes.append(f"{len(hidden)} hidden file(s) skipped (names starting with '.'): {_some(hidden)}")
    if others:
        notes.append(f"{len(others)} file(s) skipped, not {'/'.join(IMAGE_SUFFIXES)}: {_some(others)}")
    alpha = [i for i in infos if i.alpha]
    if alpha:
        notes.append(f"{len(alpha)} image(s) have an alpha channel; it was dropped: {named(alpha)}")
    spaces = [i for i in infos if i.mode in OTHER_COLOUR_SPACES]
    if spaces:
        notes.append(f"{len(spaces)} image(s) in another colour space ({'/'.join(sorted({i.mode for i in spaces}))}),"
                     f" converted to RGB by PIL's own formula (no colour profile): {named(spaces)}")
    frames = [i for i in infos if i.frames > 1]
    if frames:
        notes.append(f"{len(frames)} image(s) with several frames (pages or animation), only the first read: "
                     + _some([f"{Path(i.path).name} ({i.frames} frames)" for i in frames]))
    grey = [i for i in infos if i.grey]
    if channels_wanted == 3 and grey:
        notes.append(f"{len(grey)} grayscale image(s) converted to RGB for the colour model: {named(grey)}")
    if size is not None:
        cropped = [i for i in infos if i.size[0] != i.size[1]]
        if cropped:
            notes.append(f"{len(cropped)} non-square image(s) centre-cropped to a square before resizing: "
                         + named(cropped, sizes=True))
        small = [i for i in infos if min(i.size) < size]
        if small:
            notes.append(f"{len(small)} image(s) smaller than --size {size}, enlarged (the truth they are scored "
                         f"against is then an interpolation): {named(small, sizes=True)}")
    colour = [i for i in infos if not i.grey]
    if channels_wanted == 1 and colour:
        notes.append(f"{len(colour)} colour image(s) converted to grey for the grey model: {named(colour)}")
    return paths, notes


def check(args: argparse.Namespace):
    """Every check that needs no model; returns the :class:`diffsolve.evaluate.EvalConfig`."""
    from ..methods import METHODS, get_method
    from ..tasks import TASKS, make_operator, required_multiple
    from .common import model_geometry, sigma_in_data_range

    data = args.data
    path = Path(data)
    shadow = ""
    if path.exists():  # an existing path always wins over a bundled set's name
        if not path.is_dir():
            raise UsageError("--data", f"{data!r} is a file", "give a folder of images or a bundled set name")
        kind = "folder"
        if data in BUNDLED_SETS:
            shadow = (f"the folder {str(path.resolve())!r} here shadows the bundled set {data!r}; for the bundled "
                      "set run from another directory or rename the folder")
    elif data in BUNDLED_SETS:
        kind = "bundled"
    else:
        raise UsageError("--data", f"{data!r} is neither a folder nor a bundled set",
                         f"give a folder of images or one of {', '.join(BUNDLED_SETS)}")
    tasks = name_list(args.tasks, "--tasks", TASKS)
    refused = {m: not_offered(m) for m, spec in METHODS.items() if not spec.cli}
    methods = name_list(args.methods, "--methods", tuple(m for m in METHODS if METHODS[m].cli), refused)
    seeds = _seeds(args.seeds)
    params = task_parameters(args, tasks)
    check_sigma(args.sigma, args.sigma_unit)
    sigma = sigma_in_data_range(args.sigma, args.sigma_unit)
    if any(get_method(m).required == ("sigma",) or "sigma" in get_method(m).required for m in methods) \
            and sigma == 0:
        raise UsageError("--sigma", "0 with " + ",".join(m for m in methods if "sigma" in get_method(m).required),
                         "that method needs the measurement noise level: give --sigma > 0")
    model = args.model or ("digits16" if data == "digits16" and kind == "bundled" else "patches")
    uses_model = any(get_method(m).uses_model for m in methods)
    if not args.discrepancy and not uses_model:
        raise UsageError("--no-discrepancy", f"with --methods {','.join(methods)} (closed-form solves with no "
                         "discrepancy step)", "drop the flag, or add a model-based method")
    geo = model_geometry(model)
    channels = geo["channels"] if geo is not None else 3
    if channels not in (1, 3):
        raise UsageError("--model", f"{model!r} takes {channels}-channel images", "use a grey (1) or RGB (3) model")
    if uses_model and geo is not None:
        check_steps(args.steps, geo["timesteps"], model)
    notes: list[str] = []
    if kind == "bundled":
        paths = None
        size = args.size if args.size is not None else BUNDLED_SETS[data]
        if data == "digits16" and size != 16:
            raise UsageError("--size", f"{size} with --data digits16",
                             "the bundled digits are 16x16: use --size 16 (or leave it out)")
        from ..data import PHOTO_MIN_SIZE as least

        if data != "digits16" and size < least:
            raise UsageError("--size", f"{size} with --data {data}",
                             f"the bundled photos are resized to at least {least}x{least}: use --size {least} or more")
    else:
        try:
            paths, notes = _folder_images(path, args.limit, channels, args.size)
            if args.size is None:
                raise UsageError("--size", "missing for a folder of images",
                                 "give the side the images are centre-cropped and resized to, e.g. --size 256")
        except UsageError as err:  # a folder error where the user may have meant the bundled set: say so
            raise UsageError(f"{err} (--data {data}: {shadow})" if shadow else str(err)) from None
        notes = [f"--data {data}: {shadow}", *notes] if shadow else notes
        size = args.size
    if uses_model and geo is not None:
        if geo["fixed"] is not None and (size, size) != tuple(geo["fixed"]):
            fw = geo["fixed"][0]
            raise UsageError("--size", f"{size} but --model {model} takes {fw}x{fw} images", f"use --size {fw}")
        if size < geo["multiple"]:
            raise UsageError("--size", f"{size} but --model {model} needs sides of at least {geo['multiple']}",
                             f"use --size {geo['multiple']} or more")
        padded = padding_note(model, geo, (size, size))
        if padded is not None:  # printed with the run's other notes
            notes = [*notes, padded]
    digits = model == "digits16"
    for task in tasks:
        f = required_multiple(task, params)
        if size % f:
            raise UsageError("--size", f"{size} but task {task} needs multiples of {f}",
                             f"use --size {max(f, size // f * f)}")
        try:
            make_operator(task, (size, size), seed=seeds[0], digits=digits, params=params)
        except ValueError as err:
            raise UsageError("--tasks", f"{task} at {size}x{size}: {err}", "use a larger --size") from None
    check_device(args.device)
    require_device(args.device)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError("--out", f"{str(out)!r} is a file", "give a folder (it is created if missing)")
    if kind == "folder" and out.resolve() == path.resolve():  # the plot written there would be read as data
        raise UsageError("--out", f"{args.out!r} is the --data folder", "give another folder (eval writes its plot "
                         "quality_vs_time.png there, which a rerun would score as an image)")
    package = Path(__file__).resolve().parents[1]  # the installed diffsolve (its bundled sets live in data/)
    if out.resolve() == package or package in out.resolve().parents:
        raise UsageError("--out", f"{args.out!r} is inside the installed diffsolve package ({str(package)!r})",
                         "give a folder outside it (the bundled sets and models live there)")
    check_writable(out, args.out)
    from .. import evaluate

    try:  # every field was checked above; the config's own checks guard the library side
        cfg = evaluate.EvalConfig(data=data, size=size, tasks=tasks, methods=methods, steps=args.steps, seeds=seeds,
                                  out=out, model=model, channels=channels, batch=args.batch, device=args.device,
                                  save_images=args.save_images, sigma=float(sigma), head_channels=args.head_channels,
                                  digits=digits, image_paths=paths, limit=args.limit if paths is None else None,
                                  progress=args.progress, threads=args.threads, draws=args.draws,
                                  discrepancy=args.discrepancy, params=asdict(params), notes=notes)
    except ValueError as err:
        raise UsageError(str(err)) from None
    names = ([p.name for p in paths] if paths is not None
             else evaluate.bundled_names(data)[: args.limit] if args.limit else evaluate.bundled_names(data))
    skipped = evaluate.unsupported_pairs(cfg)
    if len(skipped) == len(tasks) * len(methods):  # nothing left to run: say so now, not after loading
        from ..methods import ANY_OPERATOR, Method

        why = Method.brief(next(iter(skipped.values())))
        raise UsageError("--methods", f"{','.join(methods)} cannot take --tasks {','.join(tasks)} ({why})",
                         f"add a method that takes any operator ({', '.join(ANY_OPERATOR)}) or a task with an SVD")
    cfg.hashes = evaluate.data_hashes(data if kind == "bundled" else str(path), paths, names)
    try:
        evaluate.check_resume(cfg)
    except ValueError as err:
        raise UsageError(str(err)) from None
    return cfg


def run_config(cfg: Any, *, log: Any = None) -> dict[str, Any]:
    """Run a checked request, the model loaded (and its size checked) by the command line's loader."""
    from .. import evaluate
    from .common import check_loaded_size, load_model

    def loader(device: Any) -> Any:
        model = load_model(cfg.model, device, head_channels=cfg.head_channels)
        steps = cfg.steps if cfg.uses_model else None
        return check_loaded_size(model, cfg.model, (1, cfg.channels, cfg.size, cfg.size), steps=steps)

    return evaluate.run_eval(cfg, load_model=loader, log=log)


def run(args: argparse.Namespace) -> int:
    """Check the arguments, then evaluate; 0 on success, 2 (one line on stderr, rank 0) on a bad argument or an
    --out that another run is writing."""
    try:
        cfg = check(args)
        from ..evaluate import OutInUseError, RankDeviceError  # loaded by check(): argument errors never import torch

        try:
            run_config(cfg)
        except RankDeviceError as err:  # raised by the rank without a device, which may not be rank 0: it prints
            print_error("eval", UsageError(str(err)))
            return 2
        except OutInUseError as err:
            raise UsageError(str(err)) from None
    except UsageError as err:
        print_error("eval", err, rank0=int(os.environ.get("RANK", "0")) == 0)
        return 2
    return 0
