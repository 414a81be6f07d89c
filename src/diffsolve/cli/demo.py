"""``diffsolve demo``: the bundled photos and held-out digits, every task of :mod:`diffsolve.tasks`, the
chosen model-based methods beside the model-free baselines; PNG grids and metrics.json, one progress bar
over the whole run. Lists (--tasks, --methods) are comma- or space-separated."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from ..tasks import DEMO_TASKS, SIGMA, TASKS, TaskParameters
from .common import (HelpFormatter, UsageError, add_measurement_args, check_out_dir, check_sigma, check_steps,
                     model_geometry, name_list, not_offered, positive_int, seed, sigma_in_data_range, task_parameters)

__all__ = ["DIGIT_SIDE", "add_parser", "plan", "run", "run_demo", "save_grid"]

DIGIT_SIDE = 16
SIZE_RULES = ("Size rules: photos are square with a side that is a multiple of 8 (the patches model's "
              "down-sampling) and of the SR factor; the digits are 16x16, so the SR factor must divide 16.")


def _samplers() -> tuple[str, ...]:
    from .. import methods

    return tuple(m for m in methods.CLI_METHODS if methods.METHODS[m].uses_model)


def _baselines() -> tuple[str, ...]:
    from .. import methods

    return tuple(m for m in methods.CLI_METHODS if not methods.METHODS[m].uses_model)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    samplers = _samplers()
    d = subparsers.add_parser("demo", formatter_class=HelpFormatter, epilog=SIZE_RULES,
                              help="restore the bundled photos and digits for every task; grids + metrics.json")
    d.add_argument("--out", default="diffsolve-demo", help="output folder")
    d.add_argument("--steps", type=positive_int, default=None,
                   help="sampling steps (default 30, the step count the defaults are checked at)")
    d.add_argument("--quick", action="store_true", help="64x64 photos, 4 digits (30 steps as the full demo)")
    d.add_argument("--seed", type=seed, default=0, help="seeds the samplers, the operators and the noise")
    d.add_argument("--size", type=positive_int, default=None,
                   help="photo side in pixels, a multiple of 8 (default 128; --quick: 64)")
    d.add_argument("--tasks", nargs="+", default=list(DEMO_TASKS),
                   help=f"tasks to run, comma- or space-separated, from {', '.join(TASKS)}")
    d.add_argument("--methods", nargs="+", default=[m for m in ("mpgd", "cdps") if m in samplers],
                   help=f"model-based methods to run beside {' and '.join(_baselines())}, from {', '.join(samplers)}")
    add_measurement_args(d, SIGMA)
    return d


def plan(a: argparse.Namespace) -> dict:
    """Every check of ``demo``: the torch-free ones, then the tasks' operators at both suites' sizes."""
    from .. import methods
    from ..tasks import required_multiple

    out = check_out_dir(a.out)
    tasks = name_list(a.tasks, "--tasks", TASKS)
    samplers = _samplers()
    refused = {m: f"{m} runs in the demo anyway (a model-free baseline); list model-based methods only"
               for m in _baselines()}
    refused.update({m: not_offered(m) for m in methods.METHODS if m not in methods.CLI_METHODS})
    meths = name_list(a.methods, "--methods", samplers, refused)
    params = task_parameters(a, tasks)
    check_sigma(a.sigma, a.sigma_unit)
    sigma = sigma_in_data_range(a.sigma, a.sigma_unit)
    if a.steps is not None:
        for model in ("patches", "digits16"):  # the demo's two models
            check_steps(a.steps, model_geometry(model)["timesteps"], model)
    side = a.size or (64 if a.quick else 128)
    if a.size is not None and (a.size % 8 or a.size < 16):
        raise UsageError(f"--size must be a multiple of 8 (the patches model's down-sampling) and >= 16, "
                         f"got {a.size}; use {max(16, a.size // 8 * 8)}")
    for task in tasks:
        f = required_multiple(task, params)
        if DIGIT_SIDE % f:
            raise UsageError(f"--factor {f}: the demo's digits are {DIGIT_SIDE}x{DIGIT_SIDE}, so the SR factor must "
                             f"divide {DIGIT_SIDE} (2, 4, 8 or 16)")
        if side % f:
            both = 8 * f // math.gcd(8, f)  # the model's multiple and the factor's
            raise UsageError(f"--task {task} needs the photo side to be a multiple of {f}, --size is {side}; "
                             f"use --size {max(both, side // both * both)}")
    needs_sigma = [m for m in meths if "sigma" in methods.METHODS[m].required]
    if needs_sigma and sigma <= 0:
        raise UsageError(f"--sigma 0: {','.join(needs_sigma)} needs a measurement noise level > 0")
    _check_fit(tasks, params, side, a.seed)  # last: it builds the operators (imports torch)
    return {"out": out, "params": params, "sigma": sigma, "tasks": tasks, "methods": meths}


def _check_fit(tasks: list[str], params: TaskParameters, side: int, seed: int) -> None:
    """UsageError where a task's parameter does not fit both suites (side x side photos, 16x16 digits), naming its
    flag and the largest value both take. The rules are :func:`diffsolve.tasks.make_operator`'s: it is asked."""
    from dataclasses import replace

    from ..tasks import TASK_PARAMETERS, make_operator

    suites = ((f"{side}x{side} photos", side, False), (f"{DIGIT_SIDE}x{DIGIT_SIDE} digits", DIGIT_SIDE, True))

    def problem(task: str, p: TaskParameters) -> str | None:
        for what, s, digits in suites:
            try:
                make_operator(task, (s, s), seed=seed, digits=digits, params=p)
            except ValueError as err:  # "problem; fix": the fix is for that one size, so it is left off
                return f"the {what}: {str(err).split('; ')[0]}"
        return None

    for task in tasks:
        why = problem(task, params)
        if why is None:
            continue
        field = next((f for f in TASK_PARAMETERS[task] if getattr(params, f) is not None), None)
        value = getattr(params, field) if field else None
        if not isinstance(value, int):  # a default, or a float parameter: no smaller value to offer
            raise UsageError(f"--tasks {task} does not fit {why}")
        flag = "--" + field.replace("_", "-")
        fits = (v for v in range(min(value, side, DIGIT_SIDE) - 1, 0, -1)
                if problem(task, replace(params, **{field: v})) is None)
        best = next(fits, None)
        fix = (f"use {flag} {best} at most, the largest value both the {suites[0][0]} and the {suites[1][0]} take"
               if best else f"drop {flag}")
        raise UsageError(flag, f"{value} does not fit {why}", fix)


def run(a: argparse.Namespace) -> dict:
    p = plan(a)
    steps = a.steps or 30  # --quick shrinks the images, not the steps: at 20 C-DPS under-fits the inpaintings
    print(f"demo: bundled photos ({a.size or (64 if a.quick else 128)}px) and held-out digits (16px); "
          f"tasks {','.join(p['tasks'])}; methods {','.join(_baselines() + tuple(p['methods']))}; {steps} steps",
          flush=True)
    metrics = run_demo(p["out"], steps=steps, quick=a.quick, seed=a.seed, size=a.size, methods=tuple(p["methods"]),
                       tasks=tuple(p["tasks"]), sigma=p["sigma"], params=p["params"])
    print(f"wrote {p['out']}/metrics.json and {len(metrics['suites']) * len(p['tasks'])} grids")
    return metrics


def save_grid(path: str | Path, rows: list[list[Any]], labels: list[str], *, scale: int = 1) -> None:
    """Save images (C, H, W) in [−1, 1] as a PNG grid, one column per label, a header row of text."""
    import torch
    from PIL import Image, ImageDraw

    h, w = rows[0][0].shape[-2:]
    h, w = h * scale, w * scale
    cell_w, head, pad = max(w, 70), 14, 2
    canvas = Image.new("RGB", (len(labels) * (cell_w + pad) + pad, head + len(rows) * (h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for j, label in enumerate(labels):
        draw.text((pad + j * (cell_w + pad) + 2, 1), label, fill="black")
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            img = img.detach().float().cpu().clamp(-1, 1)
            if img.shape[0] == 1:
                img = img.expand(3, -1, -1)
            if scale > 1:
                img = torch.nn.functional.interpolate(img[None], scale_factor=scale, mode="nearest")[0]
            arr = ((img + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
            canvas.paste(Image.fromarray(arr), (pad + j * (cell_w + pad), head + pad + i * (h + pad)))
    canvas.save(path)


def _suites(quick: bool, size: int | None) -> list[dict]:
    import torch

    from ..data import heldout_digits, photo

    side = size or (64 if quick else 128)
    photos = torch.stack([photo(name, side) for name in ("chelsea", "coffee")])
    digits = heldout_digits()[: 4 if quick else 8]
    return [
        {"name": "photos", "model": "patches", "x": photos, "digits": False, "scale": 1},
        {"name": "digits16", "model": "digits16", "x": digits, "digits": True, "scale": 4},
    ]


def run_demo(out: str | Path, *, steps: int = 30, quick: bool = False, seed: int = 0, size: int | None = None,
             methods: tuple[str, ...] = ("mpgd", "cdps"), tasks: tuple[str, ...] = DEMO_TASKS, sigma: float = SIGMA,
             params: TaskParameters | None = None, progress: bool = True, log=None) -> dict:
    """Restore the bundled photos and held-out digits for every task; write grids and metrics.json.

    The model-free baselines of the registry run beside ``methods``. One progress bar runs over the whole
    demo (suites × tasks × methods × steps, with an ETA); ``log(line)``, when given, also gets one line per
    result. Returns the metrics: ``{suite: {task: {method: {"psnr": mean, "ssim": mean, "dc": mean,
    "seconds": s}}}}`` (dc: ‖A x̂ − y‖/(σ√m), 1 = the residual matches the noise level; None at σ = 0), or
    ``{"unsupported": why}`` for a method that cannot take the task's operator (DDRM / DDNM+ without an SVD:
    no column in that task's grid).
    """
    import torch
    from tqdm.auto import tqdm

    from .. import methods as registry
    from ..metrics import data_consistency, scores
    from ..models.default import load_default
    from ..tasks import make_operator, measurement_view
    from .common import measure

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cols = _baselines() + tuple(methods)
    suites = _suites(quick, size)
    # progress units: one per sampling step, one per baseline
    total = len(suites) * len(tasks) * sum(steps if registry.get_method(m).uses_model else 1 for m in cols)
    bar = tqdm(total=total, desc="diffsolve demo", unit="step", disable=not progress, dynamic_ncols=True)
    metrics: dict = {"steps": steps, "sigma": sigma, "seed": seed, "suites": {}}
    for suite in suites:
        model = load_default(suite["model"]) if any(registry.get_method(m).uses_model for m in cols) else None
        x = suite["x"]
        size_hw = tuple(x.shape[-2:])
        res: dict = {}
        for task in tasks:
            op = make_operator(task, size_hw, seed=seed, digits=suite["digits"], params=params)
            y = measure(op, x, sigma, generator=torch.Generator().manual_seed(seed + 1))
            row_imgs = {"truth": x, "measurement": measurement_view(task, y, size_hw)}
            res[task] = {}
            for method in cols:
                bar.set_postfix_str(f"{suite['name']} {task} {method}")
                spec = registry.get_method(method)
                sampler = spec.uses_model
                why = spec.unsupported(op, size_hw, sigma)
                if why is not None:  # DDRM / DDNM+ on an operator without an SVD: a note, not a crash
                    res[task][method] = {"unsupported": why}
                    bar.update(steps if sampler else 1)
                    line = f"{suite['name']:8s} {task:13s} {method:8s} not run: {spec.brief(why)}"
                    if log is not None:
                        log(line)
                    elif progress:
                        bar.write(line)
                    continue
                t0 = time.perf_counter()
                xr, info = registry.restore(method, model, op, y, steps=steps, sigma=sigma,
                                            generator=torch.Generator(y.device).manual_seed(seed), x_true=x,
                                            callback=(lambda *_: bar.update(1)) if sampler else None)
                if not sampler:
                    bar.update(1)
                sec = time.perf_counter() - t0
                s = scores(xr, x)
                dc = float(data_consistency(op, xr, y, sigma).mean()) if sigma > 0 else None
                res[task][method] = {"psnr": round(float(s["psnr"].mean()), 2),
                                     "ssim": round(float(s["ssim"].mean()), 4),
                                     "dc": None if dc is None else round(dc, 3),
                                     "seconds": round(sec, 2), **info}
                row_imgs[method] = xr
                line = (f"{suite['name']:8s} {task:13s} {method:8s} PSNR {res[task][method]['psnr']:6.2f} "
                        f"SSIM {res[task][method]['ssim']:.3f} DC {'n/a' if dc is None else format(dc, '.2f')} "
                        f"({sec:.1f}s)")
                if log is not None:
                    log(line)
                elif progress:
                    bar.write(line)
            labels = list(row_imgs)
            rows = [[row_imgs[k][i] for k in labels] for i in range(len(x))]
            save_grid(out / f"{suite['name']}_{task}.png", rows, labels, scale=suite["scale"])
        metrics["suites"][suite["name"]] = res
    bar.close()
    stale = _stale_grids(out, [f"{s['name']}_{t}.png" for s in suites for t in tasks])
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    if stale:
        for path in stale:
            path.unlink()
        line = f"removed {len(stale)} grid(s) of an earlier demo in {out} ({', '.join(p.name for p in stale)})"
        if log is not None:
            log(line)
        elif progress:
            print(line, flush=True)
    return metrics


def _stale_grids(out: Path, written: list[str]) -> list[Path]:
    """The grids an earlier demo wrote to ``out`` for tasks this run did not run: removed, so the folder holds
    what its metrics.json describes. Only in a demo's folder (one holding metrics.json) and only the demo's own
    grid names (``{suite}_{task}.png``)."""
    if not (out / "metrics.json").is_file():
        return []
    names = {f"{suite}_{task}.png" for suite in ("photos", "digits16") for task in TASKS} - set(written)
    return sorted(p for p in out.iterdir() if p.name in names and p.is_file())
