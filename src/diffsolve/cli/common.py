"""What every ``diffsolve`` subcommand shares (torch is imported only inside the functions that need it):

- :class:`UsageError`, the one user-error type: printed as one line ``diffsolve CMD: error: ...``, exit 2;
  :class:`Parser` prints argparse's own errors the same way (no usage block), :class:`SubcommandParser` a
  subcommand's unknown arguments under its name;
- argument types (:func:`int_at_least`, :func:`number`, :func:`seed`, :func:`name_list` — lists are
  accepted comma- or space-separated everywhere), :func:`not_offered` and the :class:`HelpFormatter`;
- images: :data:`IMAGE_SUFFIXES` (the one list of accepted files), :func:`image_info` (size after the EXIF
  orientation, colour kind, alpha, colour space and frames, with the notices for them), :func:`read_image`
  (grey/RGBA/other colour spaces handled with a notice, optional centre-crop + resize to a work size),
  :func:`read_mask` (nearest-neighbour, mid-grey threshold) and
  :func:`save_image`;
- models: :func:`model_geometry` (torch-free size rules and training timesteps), :func:`check_steps`,
  :func:`load_model` (shipped name, diffusers folder, or an ADM ``.pt`` checkpoint — everywhere a model is
  accepted), :func:`check_model_size`;
- measurement noise through :class:`diffsolve.operators.GaussianNoise` (:func:`measure`; :func:`check_sigma`
  refuses a σ above the pixel range);
- the device check (:func:`check_device` torch-free, :func:`require_device` after the torch-free checks).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

__all__ = [
    "BUNDLED_ABOUT", "BUNDLED_SETS", "CHECKPOINT_SUFFIXES", "DEVICE_PATTERN", "HelpFormatter", "IMAGE_SUFFIXES",
    "ImageInfo", "MAX_PIXELS", "OTHER_COLOUR_SPACES", "Parser", "SHIPPED_MODELS", "UsageError", "add_measurement_args",
    "check_device", "check_loaded_size", "check_model_size", "check_out_dir", "check_out_file", "check_writable",
    "crop_hint", "image_info", "check_sigma", "check_steps", "int_at_least", "load_model", "measure", "model_geometry",
    "name_list", "not_offered", "note", "number", "padding_note", "positive_int", "print_error", "read_image",
    "read_mask", "require_device", "save_image", "seed", "sigma_in_data_range", "size_spec", "split_names",
    "SubcommandParser", "task_parameters",
]

#: the image files every subcommand reads and writes
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: model files read as ADM (guided-diffusion) checkpoints
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors")
SHIPPED_MODELS = ("digits16", "patches")
#: bundled image sets (name -> natural side) of ``eval --data``
BUNDLED_SETS = {"digits16": 16, "photos": 256, "heldout": 256}
#: what each bundled set is (``eval --help``, ``diffsolve info``)
BUNDLED_ABOUT = {"digits16": "360 held-out 16x16 digits", "photos": "the demo's photos (chelsea, coffee)",
                 "heldout": "the photos no default was tuned on (camera, grass, hopper, raccoon)"}
#: the largest work image ``restore`` accepts (width x height); larger ones need --size
MAX_PIXELS = 1024 * 1024
#: the device strings the command line accepts (checked without torch)
DEVICE_PATTERN = re.compile(r"^(cpu|cuda(:\d+)?)$")


class UsageError(Exception):
    """A user error, printed as one line ``diffsolve CMD: error: <message>`` with exit status 2.

    ``UsageError(message)`` or ``UsageError(argument, given, fix)`` (``"argument: given; fix"``)."""

    def __init__(self, argument: str, given: str | None = None, fix: str | None = None) -> None:
        text = argument if given is None else f"{argument}: {given}"
        if fix:
            text += f"; {fix}"
        super().__init__(text)
        self.argument, self.given, self.fix = argument, given, fix


def note(message: str) -> None:
    """A notice to the user (stdout): what was converted or assumed."""
    print(f"note: {message}", flush=True)


# --------------------------------------------------------------------------- argparse


class Parser(argparse.ArgumentParser):
    """argparse's errors as one line ``PROG: error: ...`` (no usage block), exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class SubcommandParser(Parser):
    """A subcommand's parser: an argument it does not know is its error (``diffsolve CMD: error: ...``), not the
    top-level parser's (argparse hands every argument after the command to the subcommand)."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]  # noqa: ANN001
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` unless the help already says its default or there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or any(action.default is v for v in (None, False, True, argparse.SUPPRESS)):
            return text
        default = action.default
        if isinstance(default, (list, tuple)):
            return f"{text} (default: {','.join(map(str, default))})"
        return super()._get_help_string(action)


def not_offered(method: str) -> str:
    """Why a registered method is not on the command line, and what to use instead."""
    from ..methods import METHODS

    spec = METHODS[method]
    if "autoencoder" in spec.required:
        return f"{method} needs an autoencoder the command line cannot build; use diffsolve.solve"
    if spec.kind == "sampler":
        return (f"{method} is an unconditional sampler (y only fixes the shape): it restores nothing; choose a "
                "restoration method, e.g. mpgd or cdps")
    return f"{method} is not offered on the command line; use diffsolve.solve"


def int_at_least(low: int):
    """An argparse type: an integer >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value

    return parse


positive_int = int_at_least(1)


def seed(text: str) -> int:
    """An argparse type: a seed in [0, 2**63)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed in [0, 2**63), got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"expected an integer seed in [0, 2**63), got {value}")
    return value


def number(low: float, high: float | None = None, *, low_open: bool = False, high_open: bool = False):
    """An argparse type: a finite float in the given range."""
    lo, hi = ("(" if low_open else "["), ("inf)" if high is None else (f"{high})" if high_open else f"{high}]"))

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number in {lo}{low}, {hi}, got {text!r}") from None
        bad = (not math.isfinite(value) or value < low or (low_open and value == low)
               or (high is not None and (value > high or (high_open and value == high))))
        if bad:
            raise argparse.ArgumentTypeError(f"expected a number in {lo}{low}, {hi}, got {text}")
        return value

    return parse


def split_names(values: str | Sequence[str]) -> list[str]:
    """``["a,b", "c"]`` / ``"a, b c"`` -> ``["a", "b", "c"]``: lists are comma- or space-separated."""
    if isinstance(values, str):
        values = [values]
    return [s for v in values for s in re.split(r"[,\s]+", v) if s]


def name_list(values: str | Sequence[str], flag: str, allowed: Sequence[str],
              refused: dict[str, str] | None = None) -> list[str]:
    """Check a list of names (comma- or space-separated) against ``allowed``; ``refused[name]`` is the fix
    for a name that exists but is not offered here."""
    items = split_names(values)
    what = flag.lstrip("-").rstrip("s")
    listing = ",".join(allowed)
    if not items:
        raise UsageError(flag, "empty", f"give names from {listing} (comma- or space-separated)")
    for s in items:
        if refused and s in refused:
            raise UsageError(flag, s, refused[s])
        if s not in allowed:
            raise UsageError(flag, f"unknown {what} {s!r}", f"choose from {listing}")
    if len(set(items)) != len(items):
        raise UsageError(flag, " ".join(items), "list each name once")
    return items


# --------------------------------------------------------------------------- images


#: colour spaces PIL converts to RGB by its own formula (no colour profile): a notice where the CLI reads one
OTHER_COLOUR_SPACES = ("CMYK", "YCbCr", "LAB", "HSV")


@dataclass(frozen=True)
class ImageInfo:
    """An image file's size (width, height), whether it is grey, whether it has an alpha channel, its PIL mode
    and its number of frames (pages, animation: only the first is read)."""

    path: str
    size: tuple[int, int]
    grey: bool
    alpha: bool
    mode: str = "RGB"
    frames: int = 1

    @property
    def channels(self) -> int:
        return 1 if self.grey else 3

    def notices(self, flag: str) -> list[str]:
        """What reading the file does to it, beyond grey/colour: alpha dropped, another colour space converted,
        frames after the first ignored."""
        name, out = Path(self.path).name, []
        if self.alpha:
            out.append(f"{flag} {name} has an alpha channel (transparency): it is dropped")
        if self.mode in OTHER_COLOUR_SPACES:
            out.append(f"{flag} {name} is in the {self.mode} colour space: PIL converts it to RGB by its own formula "
                       "(no colour profile)")
        if self.frames > 1:
            out.append(f"{flag} {name} has {self.frames} frames (pages or animation): only the first is read")
        return out


def _is_grey(img: Any, path: str | Path) -> bool:
    """Whether an open PIL image is grey: by its mode; a palette image by its pixels (the palette may be all grey);
    a PNG by its header's colour type, since PIL widens 16-bit grey + alpha to RGBA."""
    import numpy as np

    if img.mode in ("1", "L", "LA", "I", "F") or img.mode.startswith("I;16"):
        return True
    if img.mode in ("P", "PA"):
        rgb = np.asarray(img.convert("RGBA"))[..., :3]
        return bool((rgb == rgb[..., :1]).all())
    if img.format == "PNG" and img.mode == "RGBA":
        with open(path, "rb") as f:
            head = f.read(26)  # signature, IHDR length and type, width, height, bit depth, colour type
        return head[12:16] == b"IHDR" and head[25] == 4  # 4: grey + alpha
    return False


def image_info(path: str | Path, flag: str) -> ImageInfo:
    """Size, colour kind, alpha, PIL mode and frames of an image file (no torch; pixels are decoded only for a
    palette image's greyness). UsageError for a file that cannot be read as RGB."""
    from PIL import Image

    p = Path(path)
    if p.is_file() and p.suffix.lower() not in IMAGE_SUFFIXES:
        raise UsageError(flag, f"{str(path)!r} is not one of {', '.join(IMAGE_SUFFIXES)}",
                         "convert it to PNG")
    try:
        with Image.open(path) as img:
            alpha = img.has_transparency_data  # by the mode (RGBA, LA, PA, ...) or a transparent colour; not LAB's A
            grey = _is_grey(img, path)
            size = img.size[::-1] if img.getexif().get(0x0112) in (5, 6, 7, 8) else img.size  # EXIF: turned 90°
            unscaled = img.mode == "F" or (img.mode == "I" and img.format != "PNG")
            mode, frames = img.mode, int(getattr(img, "n_frames", 1))
            frames = 1 if img.format == "MPO" else frames  # a phone photo's extra frames are previews, not pages
    except Image.DecompressionBombError as err:  # not an OSError: PIL's guard against decompression bombs
        raise UsageError(flag, f"cannot read image {str(path)!r}: {str(err).rstrip('.')}",
                         "downscale it first") from None
    except (OSError, ValueError) as err:
        raise UsageError(f"{flag}: cannot read image {str(path)!r}: {err}") from None
    if unscaled:  # the reader scales 8- and 16-bit pixels; these have no known white level
        raise UsageError(flag, f"{str(path)!r} has {'floating-point' if mode == 'F' else '32-bit integer'} pixels "
                         f"(PIL mode {mode}) with no known white level", "save it as an 8- or 16-bit PNG scaled to "
                         "its full range")
    try:  # the reader goes through RGB where PIL has no direct conversion (LAB to grey)
        Image.new(mode, (1, 1)).convert("RGB")
    except ValueError:
        raise UsageError(flag, f"{str(path)!r} is PIL mode {mode}, which PIL cannot convert to RGB",
                         "save it as an RGB or grey PNG first") from None
    return ImageInfo(str(path), size, grey, alpha, mode, frames)


def read_image(path: str | Path, *, channels: int, size: tuple[int, int] | None = None, flag: str = "--input",
               notify: Any = None):
    """An image file as ``(C, H, W)`` float32 in [−1, 1], C = ``channels`` (1 or 3)
    (:func:`diffsolve.data.read_image`, the one pixel reader).

    A grey file read as RGB is converted, an alpha channel dropped, another colour space converted and frames
    after the first ignored, each with a notice to ``notify(message)`` (default :func:`note`); ``size`` = (W, H):
    centre-crop to its aspect, then resize.
    A file that cannot be read is a :class:`UsageError`.
    """
    from ..data import read_image as read_pixels

    notify = notify or note
    info = image_info(path, flag)
    for line in info.notices(flag):
        notify(line)
    if info.grey and channels == 3:
        notify(f"{flag} {Path(path).name} is grayscale: converted it to RGB for this colour model")
    try:
        return read_pixels(path, mode="L" if channels == 1 else "RGB", size=size)
    except ValueError as err:
        raise UsageError(f"{flag}: {err}") from None


def read_mask(path: str | Path, size: tuple[int, int] | None = None, flag: str = "--mask"):
    """A mask file as a ``(1, 1, H, W)`` float64 tensor, 1 = observed: pixels at least mid-grey (128 of 255) are
    observed; ``size`` = (W, H): centre-crop and resize by nearest neighbour (no pixel is blended with its
    neighbours, so no painted-over pixel becomes data). UsageError for a mask that observes nothing."""
    from ..data import read_image as read_pixels

    try:
        mask = (read_pixels(path, mode="L", size=size, resample="nearest") > 0).double()[None]
    except ValueError as err:
        raise UsageError(f"{flag}: {err}") from None
    if not mask.any():
        given = f"{Path(path).name} observes no pixel" + (" after --size" if size is not None else "")
        raise UsageError(flag, given, "white (>= 128 of 255) marks the observed pixels, black the missing ones: "
                         "check that the mask is not inverted")
    return mask


def save_image(path: str | Path, img) -> None:
    """Write a (C, H, W) tensor in [−1, 1] (clamped) as an 8-bit image (:func:`diffsolve.data.write_image`)."""
    from ..data import write_image

    write_image(path, img)


def crop_hint(w: int, h: int, m: int) -> str:
    if w < m or h < m:
        return f"use an image of at least {m}x{m}"
    return f"crop it to {w // m * m}x{h // m * m}"


# --------------------------------------------------------------------------- models


def _shipped_folder(name: str) -> Path:
    return Path(__file__).resolve().parents[1] / "models" / "weights" / name


def model_geometry(spec: str, flag: str = "--model") -> dict[str, Any] | None:
    """Channels, down-sampling ``multiple``, ``fixed`` (W, H) size (attention models) and training ``timesteps`` of a
    shipped or diffusers model, read from its configs without torch; None for a checkpoint file (known once loaded)."""
    path = Path(spec)
    if spec in SHIPPED_MODELS:
        path = _shipped_folder(spec)
    elif path.is_file():
        if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
            raise UsageError(flag, f"{spec!r} is a file but not a checkpoint",
                             f"give an ADM checkpoint ({', '.join(CHECKPOINT_SUFFIXES)}), a local diffusers folder, "
                             f"or one of {', '.join(SHIPPED_MODELS)}")
        return None
    elif not path.is_dir():
        raise UsageError(flag, f"{spec!r} is neither a shipped model nor an existing file or folder",
                         f"use {' or '.join(SHIPPED_MODELS)}, a local diffusers folder, or an ADM checkpoint file "
                         "(diffsolve never downloads models)")
    for cfg_path in (path / "unet" / "config.json", path / "config.json"):
        if cfg_path.is_file():
            break
    else:
        raise UsageError(flag, f"{spec!r} has no unet/config.json or config.json",
                         "give a diffusers model folder (unet/ + scheduler/) or an ADM .pt checkpoint")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as err:
        raise UsageError(flag, f"cannot read {cfg_path} ({err})", "fix or replace that file") from None
    blocks = cfg.get("block_out_channels") or ()
    attn = any("Attn" in b for b in cfg.get("down_block_types", ()))
    size = cfg.get("sample_size")
    fixed = None
    if attn and size:
        fixed = (size, size) if isinstance(size, int) else (size[1], size[0])
    return {"channels": int(cfg.get("in_channels", 3)), "multiple": 2 ** (len(blocks) - 1) if blocks else 1,
            "fixed": fixed, "timesteps": _training_timesteps(cfg_path.parent)}


def _training_timesteps(unet_dir: Path) -> int:
    """T of the scheduler config beside a unet config (as :func:`diffsolve.schedules.alphas_cumprod_from_config`
    reads it: ``trained_betas``' length, else ``num_train_timesteps``, default 1000)."""
    for sched in (unet_dir.parent / "scheduler" / "scheduler_config.json", unet_dir / "scheduler_config.json"):
        if sched.is_file():
            try:
                cfg = json.loads(sched.read_text())
            except (OSError, ValueError):
                break  # the loader names the broken file
            return len(cfg["trained_betas"]) if cfg.get("trained_betas") else int(cfg.get("num_train_timesteps", 1000))
    return 1000


def check_steps(steps: int, timesteps: int, spec: str, flag: str = "--steps") -> None:
    """UsageError where ``steps`` exceeds the ``timesteps`` the model ``spec`` was trained with."""
    if steps > timesteps:
        raise UsageError(flag, f"{steps} but --model {spec} was trained with {timesteps} timesteps",
                         f"use --steps {timesteps} or fewer")


def check_model_size(spec: str, geo: dict[str, Any] | None, wh: tuple[int, int], what: str,
                     flag: str = "--size") -> None:
    """UsageError when a model of geometry ``geo`` cannot run on a ``wh`` = (W, H) image."""
    if geo is None:
        return
    w, h = wh
    if geo["fixed"] is not None and (w, h) != tuple(geo["fixed"]):
        fw, fh = geo["fixed"]
        raise UsageError(f"model/image size mismatch: --model {spec} takes {fw}x{fh} images (width x height), "
                         f"the {what} is {w}x{h}; resize or crop it to {fw}x{fh} ({flag} {fw})")
    m = geo["multiple"]
    if w < m or h < m:
        raise UsageError(f"model/image size mismatch: --model {spec} needs an image of at least {m}x{m}, the {what} "
                         f"is {w}x{h} (width x height); use a larger image (or pass {flag})")


def padding_note(spec: str, geo: dict[str, Any] | None, wh: tuple[int, int], what: str = "image") -> str | None:
    """The notice that the model's input is padded, where ``wh`` = (W, H) is not a multiple of the model's
    (:class:`diffsolve.models.PaddedDenoiser`), else None."""
    if geo is None or geo["fixed"] is not None:
        return None
    m, (w, h) = geo["multiple"], wh
    if w % m == 0 and h % m == 0:
        return None
    pw, ph = w + -w % m, h + -h % m
    return (f"--model {spec} needs sides divisible by {m}: the model's input is reflect-padded from the {what}'s "
            f"{w}x{h} to {pw}x{ph} and its output cropped back (diffsolve.models.PaddedDenoiser)")


def load_model(spec: str, device: Any, *, head_channels: int = 64, flag: str = "--model") -> Any:
    """A denoiser from ``spec``: a shipped name, a local diffusers folder, or an ADM checkpoint file."""
    from ..models.default import DEFAULT_MODELS, load_default

    try:
        if spec in DEFAULT_MODELS:
            return load_default(spec, device=device)
        path = Path(spec)
        if path.is_file():
            from ..models.adm import load_adm

            return load_adm(path, device=device, num_head_channels=head_channels)
        from ..models import DiffusersDenoiser

        return DiffusersDenoiser.from_pretrained(path, device=device)
    except (ValueError, OSError) as err:
        raise UsageError(flag, f"cannot load {spec!r} ({err})", "give a working model") from None


def check_loaded_size(model: Any, spec: str, shape: tuple[int, int, int, int], flag: str = "--size", *,
                      steps: int | None = None) -> Any:
    """The loaded ``model``, ready for ``shape`` (B, C, H, W) samples: wrapped in
    :class:`~diffsolve.models.PaddedDenoiser` where H or W is not a multiple of its ``spatial_multiple`` (the
    caller has printed :func:`padding_note`); UsageError where it cannot run on them at all, or (a checkpoint's
    schedule is known only now) where ``steps`` exceeds its training timesteps."""
    from ..models import PaddedDenoiser
    from ..models.denoiser import check_sample_shape

    if steps is not None:
        check_steps(steps, int(model.alphas_cumprod.numel()), spec)

    multiple = int(getattr(model, "spatial_multiple", 1) or 1)
    if multiple > 1 and min(shape[2:]) >= multiple and any(s % multiple for s in shape[2:]):
        model = PaddedDenoiser(model)
    try:
        check_sample_shape(model, shape)
    except ValueError as err:
        raise UsageError(flag, f"{shape[-1]}x{shape[-2]}", f"--model {spec}: {err}") from None
    return model


# --------------------------------------------------------------------------- noise, device


def measure(operator: Any, x: Any, sigma: float, unit: str = "[-1,1]", *, generator: Any) -> Any:
    """y = A x + σ n through :class:`diffsolve.operators.GaussianNoise` (``sigma`` in ``unit``); ``generator``
    one torch.Generator, or one per sample (drawn on the generators' device, then moved to x's)."""
    from ..operators import GaussianNoise

    noise = GaussianNoise(sigma, unit)
    ax = operator.A(x)
    if isinstance(generator, (list, tuple)):
        import torch

        return torch.cat([noise(ax[j:j + 1].to(g.device), generator=g).to(ax.device)
                          for j, g in enumerate(generator)])
    return noise(ax, generator=generator)


def sigma_in_data_range(sigma: float, unit: str) -> float:
    """``sigma`` (in ``unit``) in the solvers' [−1, 1] units, without torch."""
    return sigma * 2.0 if unit == "[0,1]" else sigma


def check_sigma(sigma: float, unit: str) -> None:
    """UsageError for a ``sigma`` (in ``unit``) above the whole pixel range (a 0-255 habit, not a noise level) or
    positive but below the solvers' smallest (``SIGMA_MIN``; torch-free, so the number is repeated here)."""
    top = 1.0 if unit == "[0,1]" else 2.0
    least = 1e-15 if unit == "[-1,1]" else 5e-16  # the solvers' SIGMA_MIN (diffsolve.solvers._inverse), in --sigma-unit
    if 0 < sigma < least:
        raise UsageError("--sigma", f"{sigma:g} is below {least:g}, beneath float64's resolution of a pixel value",
                         f"use --sigma 0 (noiseless, where the method takes it) or --sigma >= {least:g}")
    if sigma > top:
        scale = 255.0 if unit == "[0,1]" else 127.5
        raise UsageError("--sigma", f"{sigma:g} is above {top:g}, the whole {unit} pixel range",
                         f"--sigma is in --sigma-unit {unit} units: a noise std of {sigma:g} on the 0-255 scale is "
                         f"--sigma {sigma / scale:.3g} ({sigma:g}/{scale:g})")


def check_device(text: str, flag: str = "--device") -> str:
    """The device string's syntax (no torch)."""
    if not DEVICE_PATTERN.match(text):
        raise UsageError(f"{flag} must be cpu, cuda or cuda:N (diffsolve runs on CPU and CUDA devices), got {text!r}")
    return text


def require_device(device: str, flag: str = "--device") -> None:
    """UsageError when ``device`` cannot run here. Imports torch: call it after every torch-free check."""
    import torch

    kind = device.split(":")[0]
    problem = None
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.split(":")[1]) if ":" in device else 0
        if count == 0:
            problem = f"{device}: this torch ({torch.__version__}) sees no CUDA device", "use --device cpu"
        elif index >= count:
            problem = f"{device}: only {count} CUDA device(s) here", f"use cuda:0 ... cuda:{count - 1}"
    if problem is not None:
        raise UsageError(f"{flag} {problem[0]}; {problem[1]}")


def print_error(command: str, err: UsageError, *, rank0: bool = True) -> None:
    if rank0:
        print(f"diffsolve {command}: error: {err}", file=sys.stderr)


# --------------------------------------------------------------------------- shared arguments (demo, restore)


def size_spec(text: str) -> tuple[int, int]:
    """An argparse type: ``S`` (S x S) or ``WxH``, sides >= 1; returns (W, H)."""
    parts = text.lower().split("x")
    try:
        sides = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected S or WxH in pixels, e.g. 256 or 320x240, got {text!r}") from None
    if len(sides) not in (1, 2) or min(sides) < 1:
        raise argparse.ArgumentTypeError(f"expected S or WxH in pixels (sides >= 1), got {text!r}")
    return (sides[0], sides[0]) if len(sides) == 1 else (sides[0], sides[1])


NO_DISCREPANCY_HELP = ("model-based methods: return the paper's result as it is. By default a result whose "
                       "residual the noise cannot explain (||A x - y||^2 above the 3-sigma edge of the noise's "
                       "chi-square, sigma^2 (m + 3 sqrt(2m))) is moved just far enough towards the Gaussian posterior "
                       "mean given y to reach that edge (one solve after the last step, up to three where that mean "
                       "still misfits y; a result within the noise is left as it is)")


def add_measurement_args(p: argparse.ArgumentParser, sigma_default: float) -> None:
    g = p.add_argument_group("measurement (y = A x + sigma * noise)")
    g.add_argument("--sigma", type=number(0.0), default=sigma_default, help="measurement noise std, in --sigma-unit")
    g.add_argument("--sigma-unit", choices=("[-1,1]", "[0,1]"), default="[-1,1]",
                   help="the pixel range --sigma is measured in")
    g.add_argument("--blur-std", type=number(0.0, low_open=True), default=None,
                   help="gaussian_blur: std in pixels (default: 3 * side / 256; 1 on 16x16 digits)")
    g.add_argument("--motion-size", type=positive_int, default=None,
                   help="motion_blur: odd kernel side in pixels (default: 61 * side / 256; 9 on digits)")
    g.add_argument("--box", type=positive_int, default=None,
                   help="box: side of the square hole in pixels (default: side / 2; 6 on digits)")
    g.add_argument("--missing", type=number(0.0, 1.0, low_open=True, high_open=True), default=0.7,
                   help="random: fraction of the pixels lost")
    g.add_argument("--factor", type=positive_int, default=4, help="sr: the down-sampling factor (sr4 is 4)")


def task_parameters(a: argparse.Namespace, tasks: Sequence[str]):
    """The checked :class:`diffsolve.tasks.TaskParameters` of the measurement arguments (no torch)."""
    from ..tasks import TASK_PARAMETERS, TASKS, TaskParameters, check_parameters

    given = {"blur_std": a.blur_std, "motion_size": a.motion_size, "box": a.box}
    params = TaskParameters(blur_std=a.blur_std, motion_size=a.motion_size, box=a.box, missing=a.missing,
                            factor=a.factor)
    try:
        check_parameters(params)
    except ValueError as err:
        raise UsageError(f"--{str(err).replace('_', '-', 1)}") from None
    if a.factor != 4 and "sr" not in tasks:
        raise UsageError(f"--factor {a.factor} is only read by --task sr (sr4 is always x4); use --task sr")
    for name, value in given.items():
        users = [t for t in TASKS if name in TASK_PARAMETERS[t]]
        if value is not None and not any(t in tasks for t in users):
            raise UsageError(f"--{name.replace('_', '-')} {value} is only read by --task {'/'.join(users)}, "
                             f"not {'/'.join(tasks)}; drop it")
    return params


def check_writable(folder: Path, text: str, flag: str = "--out") -> None:
    """UsageError where ``folder`` (or, while it is missing, its nearest existing parent, which must then create
    it) cannot take a new file: one probe file, created and removed; nothing else is created."""
    import tempfile

    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        return  # the caller names a file in the way
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise UsageError(flag, f"{text!r} cannot be written ({str(existing)!r}: {err.strerror or err})",
                         "give a path in a folder you can write to") from None


def check_out_file(text: str) -> Path:
    out = Path(text)
    if out.is_dir():
        example = f"{text.rstrip('/')}/restored.png" if text.strip() else "restored.png"
        raise UsageError(f"--out {text!r} is a directory; give an image file name such as {example}")
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise UsageError(f"--out {text!r} has no image extension; use one of {', '.join(IMAGE_SUFFIXES)} "
                         f"(e.g. {out.with_suffix('.png')})")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"--out {text!r}: {str(parent)!r} is a file, not a folder")
            break
    check_writable(out.parent, text)
    return out


def check_out_dir(text: str) -> Path:
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {text!r} is a file; give a folder")
    check_writable(out, text)
    return out
