"""``diffsolve restore``: restore one image (or, with ``--simulate``, measure a clean image first and score
the result). Every check that needs neither torch nor a model runs first (:func:`plan`)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..tasks import SIGMA, TASKS
from . import common
from .common import (MAX_PIXELS, HelpFormatter, UsageError, add_measurement_args, check_device, check_model_size,
                     check_out_file, check_sigma, check_steps, crop_hint, image_info, model_geometry, note,
                     padding_note, positive_int, seed, sigma_in_data_range, size_spec, task_parameters)

__all__ = ["SIZE_RULES", "add_parser", "draw_seed", "plan", "run"]

SIZE_RULES = (f"Size rules: the work image (the restored one) may have at most {MAX_PIXELS:,} pixels "
              f"({int(MAX_PIXELS ** 0.5)}x{int(MAX_PIXELS ** 0.5)}); larger inputs are refused: pass --size to "
              "resize them. A model-based method on sides that are not multiples of the model's down-sampling factor "
              "(patches: 8) reflect-pads the model's input to the next multiple and crops its output back, with a "
              "notice; digits16 takes exactly 16x16; with --simulate, sr4/sr need sides that are multiples of the SR "
              "factor; the baselines need nothing else.")


def draw_seed(seed: int, k: int) -> int:
    """The sampler seed of draw ``k`` (0-based) of ``--draws``: ``seed`` for the first (as a single draw), then a
    63-bit SHA-256 of (``seed``, "draw", k) (:func:`diffsolve.evaluate.stream_seed`), apart from the seed + 1
    of --simulate's measurement noise."""
    if k == 0:
        return seed
    from ..evaluate import stream_seed

    return stream_seed(seed, "draw", k)


def _methods() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(model-based, model-free) methods the command line offers, from the registry (no torch)."""
    from .. import methods

    names = tuple(methods.CLI_METHODS)
    return (tuple(m for m in names if methods.METHODS[m].uses_model),
            tuple(m for m in names if not methods.METHODS[m].uses_model))


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    samplers, baselines = _methods()
    r = subparsers.add_parser("restore", formatter_class=HelpFormatter, epilog=SIZE_RULES, help="restore one image")
    r.add_argument("--input", required=True,
                   help="the measurement image (PNG/JPEG/...), or the clean image with --simulate; a grey image "
                        "is converted to RGB for a colour model, an alpha channel is dropped (both with a notice)")
    r.add_argument("--task", required=True, choices=TASKS + ("inpaint",),
                   help="the measurement operator; 'inpaint' takes --mask")
    r.add_argument("--method", required=True, choices=samplers + baselines,
                   help=f"model-based: {', '.join(samplers)}; model-free: {', '.join(baselines)}")
    r.add_argument("--model", default=None,
                   help="'patches' (default), 'digits16' (default for a 16x16 grey image), a local diffusers "
                        "folder (unet/ + scheduler/), or an ADM checkpoint file (.pt); unused by the model-free "
                        "methods")
    r.add_argument("--head-channels", type=positive_int, default=64,
                   help="ADM checkpoints: channels per attention head")
    r.add_argument("--size", type=size_spec, default=None,
                   help="centre-crop and resize --input to S x S (or WxH) pixels first (default: as it is; a note "
                        f"says when it crops or enlarges); needed for inputs whose work image exceeds {MAX_PIXELS:,} "
                        "pixels")
    r.add_argument("--steps", type=positive_int, default=30,
                   help="sampling steps (default 30, as in demo and eval: the step count the methods' defaults are "
                        "checked at)")
    r.add_argument("--seed", type=seed, default=0,
                   help="seeds the sampler and the operator (--seed) and --simulate's noise (--seed + 1)")
    r.add_argument("--draws", type=positive_int, default=1,
                   help="model-based methods: draw K samples of the posterior (one after another: the first from "
                        "--seed, the others from seeds hashed from (--seed, k), never the noise's) and write "
                        "their mean to --out and their per-pixel standard deviation to "
                        "OUT_std.EXT (black 0, white 0.5 in [-1,1] units); the mean is the better estimate where "
                        "y leaves the image uncertain, e.g. a box's hole or SR's fine detail (a draw's squared "
                        "error is about twice the posterior mean's: benchmarks/results/box-spread.md, "
                        "sr4-spread.md)")
    r.add_argument("--no-discrepancy", dest="discrepancy", action="store_false", help=common.NO_DISCREPANCY_HELP)
    r.add_argument("--mask", help="inpaint: mask image of the input's size, white (>= 128 of 255) = observed pixel, "
                                  "black = missing; --size resizes it by nearest neighbour")
    r.add_argument("--simulate", action="store_true",
                   help="treat --input as the clean image: measure it (noise --sigma) and report PSNR/SSIM")
    r.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:N")
    r.add_argument("--out", required=True,
                   help=f"output image, one of {', '.join(common.IMAGE_SUFFIXES)} (a grey --input gives a grey "
                        "result; with --simulate also OUT_measurement.png, y itself in a lossless 8-bit file: restore "
                        "takes it back with the same --task; with --draws K > 1 also OUT_std.EXT; none of them may be "
                        "the --input or --mask file). The printed scores are of the file as written (8-bit; JPEG "
                        "compressed)")
    add_measurement_args(r, SIGMA)
    return r


@dataclass
class RestorePlan:
    out: Path
    device: str
    params: Any
    sigma: float  # [-1, 1] units
    channels: int
    model: str | None  # None: a model-free method
    digits: bool
    input_wh: tuple[int, int]  # after --size
    x_wh: tuple[int, int]  # the work (restored) image
    grey_input: bool = False  # a grey --input run by a colour model: the result is written grey
    measurement: Path | None = None  # --simulate: OUT_measurement.png
    std: Path | None = None  # --draws > 1: OUT_std.EXT

    def describe(self, a: argparse.Namespace) -> str:
        w, h = self.x_wh
        src = f"--input {self.input_wh[0]}x{self.input_wh[1]}" + (" after --size" if a.size else "")
        model = f"model {self.model}, {a.steps} steps" if self.model else "model-free"
        if a.draws > 1:
            model += f", mean of {a.draws} draws"
        if not a.discrepancy:
            model += ", the paper's result (--no-discrepancy)"
        return (f"restore: {a.method} on task {a.task}, work size {w}x{h} ({src}), {model}, sigma {self.sigma:g} "
                f"in [-1,1], device {self.device}")


def plan(a: argparse.Namespace) -> RestorePlan:
    """Every check of ``restore`` that needs neither torch nor a model; notices (grey / alpha) come first."""
    from .. import methods

    out = check_out_file(a.out)
    measurement = out.with_name(out.stem + "_measurement.png") if a.simulate else None  # lossless: y itself
    std = out.with_name(out.stem + "_std" + out.suffix) if a.draws > 1 else None
    _check_overwrites(a, [("the result", out), ("the measurement (--simulate)", measurement),
                          ("the per-pixel std (--draws)", std)])
    device = check_device(a.device)
    tasks = [a.task]
    params = task_parameters(a, tasks)
    check_sigma(a.sigma, a.sigma_unit)
    sigma = sigma_in_data_range(a.sigma, a.sigma_unit)
    spec = methods.METHODS[a.method]
    if a.draws > 1 and not spec.uses_model:
        raise UsageError(f"--draws {a.draws}: {a.method} is a deterministic closed-form solve (one answer, nothing "
                         "to average); --draws needs a model-based method, e.g. --method cdps")
    if not a.discrepancy and not spec.uses_model:
        raise UsageError(f"--no-discrepancy: {a.method} is a closed-form solve with no discrepancy step; drop "
                         "the flag, or use it with a model-based method")
    if "sigma" in spec.required and sigma <= 0:
        raise UsageError(f"--sigma 0: {a.method} needs the measurement noise level (> 0); give the noise std of "
                         "your image")
    info = image_info(a.input, "--input")
    wh = a.size or info.size
    from ..tasks import required_multiple

    factor = required_multiple(a.task, params) if a.task != "inpaint" else 1
    w, h = wh
    x_wh = (w, h) if a.simulate else (w * factor, h * factor)  # SR: the input is the low-resolution measurement
    # the colour questions first: a grey photo is converted for a colour model before any size complaint
    for line in info.notices("--input"):
        note(line)
    model_spec = None
    geo = None
    if spec.uses_model:
        model_spec = a.model or ("digits16" if info.grey and x_wh == (16, 16) else "patches")
        geo = model_geometry(model_spec)
        channels = geo["channels"] if geo is not None else 3
        if channels not in (1, 3):
            latent = Path(model_spec, "vae", "config.json").is_file()
            why = ("it is a latent diffusion folder (unet/ + vae/): the CLI runs pixel-space models only; from Python "
                   "use diffsolve.models.load_latent_diffusion(folder) with diffsolve.solvers.mpgd_ldm"
                   if latent else "restore handles 1 (grey) or 3 (RGB) images")
            raise UsageError(f"--model has {channels} input channels; {why}")
        if channels == 1 and not info.grey:
            raise UsageError(f"model/image mismatch: --model {model_spec} takes 1-channel (grey) images, "
                             f"{a.input!r} is in colour; convert it to grey first or choose another --model")
        if channels == 3 and info.grey:
            note(f"--input {Path(a.input).name} is grayscale: converted it to RGB for --model {model_spec} "
                 "(a colour model); the result is written grey (the mean of its channels)"
                 + ("; --simulate measures the grey image once and gives the model that y in each channel"
                    if a.simulate else ""))
        if geo is not None:
            check_steps(a.steps, geo["timesteps"], model_spec)
    else:
        channels = info.channels
        if a.model is not None:
            model_geometry(a.model)  # a wrong --model is still an error, though the method does not use it
    if a.task == "inpaint":
        if a.mask is None:
            raise UsageError("--task inpaint needs --mask (an image of the same size, white = observed)")
        mw, mh = image_info(a.mask, "--mask").size
        if (mw, mh) != info.size:
            raise UsageError(f"--mask is {mw}x{mh} but --input is {info.size[0]}x{info.size[1]} (width x height); "
                             "give a mask of the same size")
    else:
        if a.mask is not None:
            raise UsageError(f"--mask is only used by --task inpaint, not {a.task!r}")
        if not a.simulate and a.task in ("box", "random"):
            raise UsageError(f"--task {a.task} draws its mask from --seed, so it needs --simulate; to restore "
                             "your own masked image use --task inpaint --mask MASK")
    if x_wh[0] * x_wh[1] > MAX_PIXELS:
        fw, fh = _fitting_size(w, h, 1 if a.simulate else factor)
        raise UsageError(f"--input: the work image would be {x_wh[0]}x{x_wh[1]} = {x_wh[0] * x_wh[1]:,} pixels, "
                         f"above the limit of {MAX_PIXELS:,}; pass --size {fw}x{fh} (width x height, the input's "
                         "aspect; or smaller) to resize it")
    if a.simulate and factor > 1 and (w % factor or h % factor):  # SR measures the input itself
        raise UsageError(f"--task {a.task} with --simulate needs image sides that are multiples of {factor}, "
                         f"--input is {w}x{h} (width x height); {crop_hint(w, h, factor)} (or pass --size)")
    if spec.uses_model:
        what = "image" if a.simulate or factor == 1 else f"restored image (x{factor} the input)"
        check_model_size(model_spec, geo, x_wh, what)
        padded = padding_note(model_spec, geo, x_wh, what)
        if padded is not None:
            note(padded)
    if a.size is not None:  # last: the crop rule is the reader's (diffsolve.data imports torch)
        resized = _size_note(info.size, a.size, Path(a.input).name, a.mask is not None, a.simulate)
        if resized is not None:
            note(resized)
    return RestorePlan(out=out, device=device, params=params, sigma=sigma, channels=channels, model=model_spec,
                       digits=model_spec == "digits16", input_wh=(w, h), x_wh=x_wh,
                       grey_input=bool(info.grey and channels == 3), measurement=measurement, std=std)


def _check_overwrites(a: argparse.Namespace, written: list[tuple[str, Path | None]]) -> None:
    """UsageError where a file the run writes is the --input or the --mask file (symbolic links and relative
    paths resolved)."""
    import os

    for flag, given in (("--input", a.input), ("--mask", a.mask)):
        if given is None or not Path(given).is_file():
            continue  # a missing input is image_info's error
        for what, path in written:
            if path is not None and path.exists() and os.path.samefile(path, given):
                raise UsageError("--out", f"{a.out!r} would overwrite the {flag} file: {what} is written to "
                                 f"{str(path)!r}", "give another --out")


def _fitting_size(w: int, h: int, factor: int) -> tuple[int, int]:
    """The largest --size W x H of a w x h input's aspect, sides multiples of 8 (the patches model's), whose work
    image (x ``factor`` per side) has at most MAX_PIXELS pixels: the exact aspect where such sides keep at least
    three quarters of the pixels, else the nearest (--size then crops a sliver, with a note)."""
    import math

    budget = MAX_PIXELS // (factor * factor)
    p, q = w // math.gcd(w, h), h // math.gcd(w, h)  # the aspect in lowest terms
    k = math.isqrt(budget // (p * q)) // 8 * 8
    scale = (budget / (w * h)) ** 0.5
    fw, fh = (max(8, int(n * scale) // 8 * 8) for n in (w, h))
    fh = min(fh, budget // fw)  # an extreme aspect, whose short side was raised to 8
    return (k * p, k * q) if 4 * (k * p) * (k * q) >= 3 * fw * fh else (fw, fh)


def _size_note(wh: tuple[int, int], size: tuple[int, int], name: str, mask: bool, simulate: bool) -> str | None:
    """The notice for what --size does to the input beyond shrinking it: a centre crop to its aspect, enlarging."""
    from ..data import _centre_box

    left, top, right, bottom = _centre_box(wh, size)
    crop = (right - left, bottom - top)
    if crop == tuple(wh) and crop[0] >= size[0] and crop[1] >= size[1]:
        return None
    steps = []
    if crop != tuple(wh):
        steps.append(f"centre-cropped to {crop[0]}x{crop[1]} (the aspect of {size[0]}x{size[1]})")
    if crop[0] < size[0] or crop[1] < size[1]:
        steps.append(f"enlarged to {size[0]}x{size[1]} by interpolation"
                     + (" (the truth it is scored against is then an interpolation)" if simulate else ""))
    else:
        steps.append(f"resized to {size[0]}x{size[1]}")
    return (f"--size {size[0]}x{size[1]}: --input {name} ({wh[0]}x{wh[1]}) is {', then '.join(steps)}"
            + ("; --mask likewise (nearest neighbour)" if mask else ""))


def run(a: argparse.Namespace) -> dict:
    p = plan(a)
    common.require_device(p.device)
    print(p.describe(a), flush=True)

    import torch

    from .. import methods
    from ..metrics import data_consistency, scores
    from ..operators import Inpainting
    from ..tasks import make_operator

    device = p.device
    img = common.read_image(a.input, channels=p.channels, size=a.size, notify=lambda m: None)[None].to(device)
    x_w, x_h = p.x_wh
    if a.task == "inpaint":
        op = Inpainting(common.read_mask(a.mask, size=a.size))
    else:
        try:
            op = make_operator(a.task, (x_h, x_w), seed=a.seed, digits=p.digits, params=p.params)
        except ValueError as err:
            raise UsageError(f"--task {a.task}: {err}") from err
    spec = methods.get_method(a.method)
    why = spec.unsupported(op, (x_h, x_w), p.sigma)
    if why is not None:  # before the model loads: DDRM / DDNM+ on an operator without an SVD
        raise UsageError("--method", f"{a.method} cannot restore --task {a.task}: {spec.brief(why)}",
                         f"choose a method that takes any operator ({', '.join(methods.ANY_OPERATOR)})")
    model = None
    if p.model is not None:
        model = common.load_model(p.model, device, head_channels=a.head_channels)
        model = common.check_loaded_size(model, p.model, (1, p.channels, x_h, x_w), steps=a.steps)
    x_true = None
    if a.simulate:
        x_true = img
        clean = img[:, :1] if p.grey_input else img  # a grey image is measured once, as a grey measurement would be
        y = common.measure(op, clean, a.sigma, a.sigma_unit, generator=torch.Generator(device).manual_seed(a.seed + 1))
        y = y.expand(-1, p.channels, -1, -1).contiguous()  # the model's channels, each the same y
    else:
        y = img
    if not spec.uses_model:
        print(f"running {a.method} ({spec.summary.split(':')[0]}): one closed-form solve, no sampling steps",
              flush=True)
    draws = []
    for k in range(a.draws):  # one draw at a time: the memory of a single solve
        if a.draws > 1:
            print(f"draw {k + 1}/{a.draws} (seed {draw_seed(a.seed, k)})", flush=True)
        generator = torch.Generator(device).manual_seed(draw_seed(a.seed, k))
        xk, _ = methods.restore(a.method, model, op, y, steps=a.steps, sigma=p.sigma, generator=generator,
                                x_true=None, progress=spec.uses_model, discrepancy=a.discrepancy)
        draws.append(xk)
    # every number first, every file after: a failure leaves no partial output. The numbers are of the images as
    # written: a grey input's result is grey (the channels' mean), and --out is scored as its file reads back
    def as_file(v: torch.Tensor) -> torch.Tensor:  # grey in, grey out
        return v.mean(-3, keepdim=True) if p.grey_input else v

    def as_model(v: torch.Tensor) -> torch.Tensor:  # a grey image in each of the model's channels
        return v.expand(-1, p.channels, -1, -1)

    stack = as_file(torch.cat(draws))  # (K, C, H, W), as the files hold them
    x = stack.mean(0, keepdim=True)
    out_bytes, written = _encoded(x[0], p.out.suffix)
    written = written[None].to(x)
    dc = dc_draws = score = score_draws = None
    # an 8-bit file holds [-1, 1] only: values beyond its edge by more than half a level (1/255) are clipped
    outside = float((x.abs() > 1 + 1 / 255).float().mean())
    if p.sigma > 0:
        dc = float(data_consistency(op, as_model(written), y, p.sigma)[0])
        if outside > 0:
            raw = float(data_consistency(op, as_model(x), y, p.sigma)[0])
            note(f"{max(outside, 1e-3):.1%}{'' if outside >= 1e-3 else ' or fewer'} of the result's values lie outside "
                 f"[-1, 1] and are clipped in {p.out.name} (an 8-bit file); its data consistency is {raw:.3f} before "
                 "the clipping")
        dc_draws = data_consistency(op, as_model(stack), y.expand(a.draws, *y.shape[1:]), p.sigma) \
            if a.draws > 1 else None
    if x_true is not None:
        score = scores(written, as_file(x_true))
        score_draws = scores(stack, as_file(x_true).expand_as(stack))["psnr"] if a.draws > 1 else None
    out = p.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(out_bytes)
    of = f"(of {'the mean, ' if a.draws > 1 else ''}{out.name} as written)"
    result: dict = {"out": str(out)}
    if p.std is not None:
        spread = stack.std(0, unbiased=True)  # per-pixel, [-1, 1] units
        common.save_image(p.std, (4 * spread - 1).clamp(-1, 1))  # 0 → black, 0.5 → white
        result.update(std=str(p.std), draws=a.draws, mean_std=round(float(spread.mean()), 4))
        print(f"per-pixel std of the {a.draws} draws: mean {result['mean_std']:.4f} in [-1,1] units "
              f"(wrote {p.std})")
    if dc is not None:
        result["dc"] = round(dc, 4)
        print(f"data consistency ||A x - y|| / (sigma sqrt(m)) = {dc:.3f} (1 = residual at the noise level) {of}")
        if dc_draws is not None:
            result["dc_draws"] = round(float(dc_draws.mean()), 4)
            print(f"data consistency of the draws: {result['dc_draws']:.3f} on average")
    if score is not None:
        y_file = as_file(y[0])  # y itself (SR: the small image), so restore --task TASK can take it back
        common.save_image(p.measurement, y_file)
        clipped = float((y_file.abs() > 1).float().mean())
        if clipped > 0:
            note(f"{max(clipped, 1e-3):.1%}{'' if clipped >= 1e-3 else ' or fewer'} of y's entries lie outside [-1, 1] "
                 f"(its noise) and are clipped in "
                 f"{p.measurement.name}, an 8-bit file; a restore from that file sees them at the range's edge")
        result.update(psnr=round(float(score["psnr"][0]), 2), ssim=round(float(score["ssim"][0]), 4),
                      measurement=str(p.measurement))
        print(f"PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.4f} {of}")
        if score_draws is not None:
            result.update(psnr_draws=round(float(score_draws.mean()), 2),
                          psnr_draws_std=round(float(score_draws.std()), 2))
            print(f"PSNR of the draws: {result['psnr_draws']:.2f} ± {result['psnr_draws_std']:.2f} dB")
    print(f"wrote {out}")
    return result


def _encoded(img: Any, suffix: str) -> tuple[bytes, Any]:
    """The bytes :func:`diffsolve.data.write_image` writes for ``img`` as a ``suffix`` file (8-bit; JPEG
    compressed), and the image those bytes read back as."""
    import tempfile

    from ..data import read_image, write_image

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"result{suffix}"
        write_image(path, img)
        return path.read_bytes(), read_image(path, "L" if img.shape[0] == 1 else "RGB")
