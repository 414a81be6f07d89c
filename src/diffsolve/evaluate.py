"""The ``diffsolve eval`` runner: every (image, task, method, seed) of a dataset scored, on one process
or many (torchrun), resumable.

Records. ``OUT/results.jsonl`` holds one JSON object per (image, task, method, seed) with ``image``
(file name), ``task``, ``method``, ``seed``, ``psnr`` (dB), ``ssim``, ``seconds`` (the record's share
of its batch's wall time), ``steps``, ``model``, ``size``, ``sigma`` (and ``lam`` for Tikhonov).
Each process appends its records to ``OUT/parts/rank-R.jsonl`` and flushes after every record, so a
killed run loses at most the batch in flight; a rerun with the same OUT skips every record already
in results.jsonl or a part file (``OUT/config.json`` pins the settings records depend on). When all
ranks are done, rank 0 merges the parts into results.jsonl (written to a temporary file, then
renamed) and writes ``summary.csv``, ``summary.md`` (mean ± std per task × method) and
``quality_vs_time.png`` (matplotlib, when installed).

Randomness. A record depends on (seed, image, task, method) alone, never on the number of
processes or the batch: the operator's random parts (box position, motion kernel, random mask) come
from ``seed`` (one operator per (seed, task), shared by all images, as in the demo); image i's
measurement noise from a generator seeded by hash(seed, image, task) (every method sees the same
y); the sampler's randomness from a per-image generator seeded by hash(seed, image, task, method),
passed as a list of per-sample generators (``diffsolve.solvers``). All generators live on the CPU.
Batches are formed from the image list before sharding (rank r takes batches r, r + K, …), so a
record's batch is the same for any number of processes K; results are bit-identical across K.

Scale-out. Under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is gloo on CPU, nccl on CUDA
(one device per local rank: ``--device cuda`` becomes ``cuda:LOCAL_RANK``).

Metrics: PSNR and SSIM (:mod:`diffsolve.metrics`, torchmetrics). LPIPS and FID need network weights
that diffsolve never downloads; they are not computed (the summary says so).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .eval_cli import UsageError

__all__ = ["EvalConfig", "ImageSet", "load_model", "record_key", "run_eval", "stream_seed", "summarize",
           "write_summary"]

RESULTS = "results.jsonl"
PARTS = "parts"
CONFIG = "config.json"
#: The settings a record depends on besides its key: a rerun into the same OUT must match them.
PINNED = ("size", "steps", "model", "sigma", "channels")


def stream_seed(*parts: object) -> int:
    """A 63-bit seed from the parts' text (SHA-256): the same on every machine, process and Python."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _generator(*parts: object) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(stream_seed(*parts))


def record_key(rec: dict[str, Any]) -> tuple[str, str, str, int]:
    """(image, task, method, seed): what identifies a record."""
    return (str(rec["image"]), str(rec["task"]), str(rec["method"]), int(rec["seed"]))


# --------------------------------------------------------------------------- images


@dataclass
class ImageSet:
    """Named images: ``names`` (file names) and ``load(indices) -> (n, C, S, S)`` in [−1, 1]."""

    names: list[str]
    load: Callable[[Sequence[int]], torch.Tensor]


def _square(path: Path, size: int, mode: str) -> torch.Tensor:
    """Read ``path``, centre-crop to a square, resize to size × size (bicubic); (C, S, S) in [−1, 1]."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert(mode)
        w, h = img.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
        if side != size:
            img = img.resize((size, size), Image.BICUBIC)
        arr = np.asarray(img, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr / 127.5 - 1.0).permute(2, 0, 1).contiguous()


def folder_images(paths: Sequence[Path], size: int, channels: int) -> ImageSet:
    mode = "L" if channels == 1 else "RGB"
    return ImageSet([p.name for p in paths], lambda idx: torch.stack([_square(paths[i], size, mode) for i in idx]))


def bundled_images(name: str, size: int, channels: int) -> ImageSet:
    """The bundled sets: ``digits16`` (360 held-out 16×16 digits) and ``photos`` (chelsea, coffee)."""
    from . import data

    if name == "digits16":
        digits = data.heldout_digits()
        if channels == 3:
            digits = digits.expand(-1, 3, -1, -1)
        return ImageSet([f"digit_{i:03d}.png" for i in range(len(digits))], lambda idx: digits[list(idx)])
    photos = [data.photo(p, size) for p in data.PHOTOS]
    if channels == 1:
        photos = [p.mean(0, keepdim=True) for p in photos]
    return ImageSet([f"{p}.png" for p in data.PHOTOS], lambda idx: torch.stack([photos[i] for i in idx]))


# --------------------------------------------------------------------------- models


def load_model(spec: str, device: torch.device, *, head_channels: int = 64) -> Any:
    """A denoiser from ``spec``: a shipped name, a local diffusers folder, or an ADM checkpoint file."""
    from .models.default import DEFAULT_MODELS, load_default

    if spec in DEFAULT_MODELS:
        return load_default(spec, device=device)
    path = Path(spec)
    if path.is_file():
        from .models.adm import load_adm

        return load_adm(path, device=device, num_head_channels=head_channels)
    from .models import DiffusersDenoiser

    return DiffusersDenoiser.from_pretrained(path, device=device)


def check_model_size(model: Any, spec: str, size: int, channels: int) -> None:
    """UsageError when the model cannot run on (channels, size, size) images."""
    from .models.denoiser import check_sample_shape

    try:
        check_sample_shape(model, (1, channels, size, size))
    except ValueError as err:
        raise UsageError("--size", f"{size}", f"--model {spec}: {err}") from None


# --------------------------------------------------------------------------- config


@dataclass
class EvalConfig:
    """A checked ``diffsolve eval`` request (see :func:`diffsolve.eval_cli.check`)."""

    data: str
    size: int
    tasks: list[str]
    methods: list[str]
    steps: int
    seeds: list[int]
    out: Path
    model: str
    channels: int
    batch: int = 1
    device: str = "cpu"
    save_images: bool = False
    sigma: float = 0.05
    head_channels: int = 64
    digits: bool = False
    image_paths: list[Path] | None = None  # a folder's files; None for a bundled set
    limit: int | None = None
    progress: bool = True
    threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def pinned(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items() if k in PINNED}


def read_pinned(out: Path) -> dict[str, Any] | None:
    path = out / CONFIG
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- records on disk


def read_records(out: Path) -> list[dict[str, Any]]:
    """Records in results.jsonl, then in every part file (a truncated last line is skipped)."""
    files = [out / RESULTS] + sorted((out / PARTS).glob("*.jsonl"))
    records = []
    for path in files:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
                record_key(rec)
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a kill: that record is recomputed
            records.append(rec)
    return records


def merge(out: Path, order: dict[str, int]) -> list[dict[str, Any]]:
    """Write every record once into results.jsonl (sorted by image order, task, method, seed); remove parts."""
    unique: dict[tuple, dict[str, Any]] = {}
    for rec in read_records(out):
        unique.setdefault(record_key(rec), rec)
    records = sorted(unique.values(), key=lambda r: (order.get(r["image"], len(order)), r["image"], r["task"],
                                                     r["method"], r["seed"]))
    _write_atomic(out / RESULTS, "".join(json.dumps(r) + "\n" for r in records))
    for part in (out / PARTS).glob("*.jsonl"):
        part.unlink()
    return records


class PartWriter:
    """Appends records to one rank's part file, flushing after each (nothing lost on a kill)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "a+", encoding="utf-8")
        self.file.seek(0, os.SEEK_END)
        if self.file.tell() > 0:
            self.file.seek(self.file.tell() - 1)
            if self.file.read(1) != "\n":
                self.file.write("\n")  # a line cut by a kill stays alone on its line

    def write(self, rec: dict[str, Any]) -> None:
        self.file.write(json.dumps(rec) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


# --------------------------------------------------------------------------- summary


def summarize(records: Sequence[dict[str, Any]], tasks: Sequence[str], methods: Sequence[str]) -> list[dict]:
    """Mean ± std (sample std, 0 for one record) of psnr, ssim, seconds per task × method."""
    rows = []
    for task in tasks:
        for method in methods:
            group = [r for r in records if r["task"] == task and r["method"] == method]
            if not group:
                continue
            row: dict[str, Any] = {"task": task, "method": method, "n": len(group)}
            for key in ("psnr", "ssim", "seconds"):
                vals = torch.tensor([float(r[key]) for r in group], dtype=torch.float64)
                row[f"{key}_mean"] = float(vals.mean())
                row[f"{key}_std"] = float(vals.std()) if len(vals) > 1 else 0.0
            rows.append(row)
    return rows


def write_summary(out: Path, rows: list[dict], cfg: EvalConfig, *, log: Callable[[str], None]) -> None:
    """summary.csv, summary.md and (with matplotlib) quality_vs_time.png."""
    keys = ["task", "method", "n", "psnr_mean", "psnr_std", "ssim_mean", "ssim_std", "seconds_mean", "seconds_std"]
    with open(out / "summary.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (round(r[k], 6) if isinstance(r[k], float) else r[k]) for k in keys})
    lines = [f"# diffsolve eval: {cfg.data}",
             "",
             f"model `{cfg.model}`, {cfg.size}x{cfg.size}, {cfg.steps} steps, sigma {cfg.sigma} (in [-1, 1]), "
             f"seeds {','.join(map(str, cfg.seeds))}. Mean ± std over images × seeds; seconds per record.",
             "",
             "LPIPS and FID: not computed (they need network weights; diffsolve never downloads them).",
             "",
             "| task | method | n | PSNR (dB) | SSIM | seconds |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['method']} | {r['n']} | {r['psnr_mean']:.2f} ± {r['psnr_std']:.2f} | "
                     f"{r['ssim_mean']:.4f} ± {r['ssim_std']:.4f} | "
                     f"{r['seconds_mean']:.3g} ± {r['seconds_std']:.2g} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    _plot(out / "quality_vs_time.png", rows, cfg, log=log)


def _plot(path: Path, rows: list[dict], cfg: EvalConfig, *, log: Callable[[str], None]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: skipped quality_vs_time.png (pip install 'diffsolve[plot]')")
        return
    tasks = [t for t in cfg.tasks if any(r["task"] == t for r in rows)]
    if not tasks:
        return
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.0), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for r in (r for r in rows if r["task"] == task):
            ax.errorbar(max(r["seconds_mean"], 1e-6), r["psnr_mean"], yerr=r["psnr_std"], fmt="o", capsize=2,
                        label=r["method"])
        ax.set_xscale("log")
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("seconds per record")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("PSNR (dB)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"{cfg.model}, {cfg.size}x{cfg.size}, {cfg.steps} steps", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- distributed


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialized: bool = False

    def barrier(self, device: torch.device) -> None:
        if self.initialized:
            import torch.distributed as td

            if device.type == "cuda":
                td.barrier(device_ids=[device.index or 0])
            else:
                td.barrier()

    def close(self) -> None:
        if self.initialized:
            import torch.distributed as td

            td.destroy_process_group()


def setup_distributed(device: str) -> tuple[Dist, torch.device]:
    """Join torchrun's process group when WORLD_SIZE > 1 (gloo on CPU, nccl on CUDA); the rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local if world > 1 else 0)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world <= 1:
        return Dist(), dev
    import datetime

    import torch.distributed as td

    backend = "nccl" if dev.type == "cuda" else "gloo"
    # ranks wait for the slowest at the end: a long timeout (a full evaluation can take hours)
    td.init_process_group(backend, timeout=datetime.timedelta(hours=48))
    return Dist(rank=rank, world=world, local_rank=local, initialized=True), dev


# --------------------------------------------------------------------------- the run


def _save_image(path: Path, img: torch.Tensor) -> None:
    from PIL import Image

    img = img.detach().float().cpu().clamp(-1, 1)
    arr = ((img + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(path)


def run_eval(cfg: EvalConfig, *, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the evaluation (module docstring); returns {"records": this rank's new count, "rows": summary
    rows (rank 0; [] elsewhere), "rank", "world", "seconds"}."""
    from .methods import get_method, restore
    from .metrics import scores
    from .tasks import make_operator

    log = log or (lambda msg: print(msg, file=sys.stderr))
    t_start = time.perf_counter()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    dist, device = setup_distributed(cfg.device)
    out = cfg.out
    try:
        if dist.rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            pinned = read_pinned(out)
            if pinned is None:
                _write_atomic(out / CONFIG, json.dumps(cfg.pinned(), indent=1) + "\n")
        dist.barrier(device)
        images = (bundled_images(cfg.data, cfg.size, cfg.channels) if cfg.image_paths is None
                  else folder_images(cfg.image_paths, cfg.size, cfg.channels))
        n_images = len(images.names) if cfg.limit is None else min(cfg.limit, len(images.names))
        names = images.names[:n_images]
        batches = [list(range(i, min(i + cfg.batch, n_images))) for i in range(0, n_images, cfg.batch)]
        mine = batches[dist.rank::dist.world]
        done = {record_key(r) for r in read_records(out)}
        specs = {m: get_method(m) for m in cfg.methods}
        todo = [(b, s, t, m) for b in mine for s in cfg.seeds for t in cfg.tasks for m in cfg.methods
                if any((names[i], t, m, s) not in done for i in b)]
        total = sum(sum((names[i], t, m, s) not in done for i in b) for b, s, t, m in todo)
        model = None
        if any(specs[m].uses_model for m in cfg.methods) and total:
            model = load_model(cfg.model, device, head_channels=cfg.head_channels)
            check_model_size(model, cfg.model, cfg.size, cfg.channels)
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="rec", desc=f"eval (rank 0 of {dist.world})" if dist.world > 1 else "eval",
                   disable=dist.rank != 0 or not cfg.progress, file=sys.stderr, dynamic_ncols=True)
        writer = PartWriter(out / PARTS / f"rank-{dist.rank}.jsonl")
        ops: dict[tuple[int, str], Any] = {}
        new = 0
        loaded: tuple[tuple[int, ...], torch.Tensor] | None = None
        try:
            for b, seed, task, method in todo:
                pending = [i for i in b if (names[i], task, method, seed) not in done]
                if loaded is None or loaded[0] != tuple(b):
                    loaded = (tuple(b), images.load(b).to(device))
                x_all = loaded[1]
                x = x_all[[b.index(i) for i in pending]]
                if (seed, task) not in ops:
                    ops[(seed, task)] = make_operator(task, (cfg.size, cfg.size), seed=seed, digits=cfg.digits)
                op = ops[(seed, task)]
                ax = op.A(x)
                noise = torch.cat([torch.randn((1, *ax.shape[1:]), generator=_generator(seed, names[i], task),
                                               dtype=ax.dtype) for i in pending]).to(device)
                y = ax + cfg.sigma * noise
                gens = [_generator(seed, names[i], task, method) for i in pending]
                t0 = time.perf_counter()
                xr, info = restore(method, model, op, y, steps=cfg.steps, sigma=cfg.sigma,
                                   generator=gens if specs[method].uses_model else None, x_true=x)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                seconds = (time.perf_counter() - t0) / len(pending)
                sc = scores(xr, x)
                for j, i in enumerate(pending):
                    rec = {"image": names[i], "task": task, "method": method, "seed": seed,
                           "psnr": round(float(sc["psnr"][j]), 4), "ssim": round(float(sc["ssim"][j]), 5),
                           "seconds": round(seconds, 5), "steps": cfg.steps, "model": cfg.model, "size": cfg.size,
                           "sigma": cfg.sigma, **info}
                    writer.write(rec)
                    if cfg.save_images:
                        _save_image(out / "images" / task / method / f"seed{seed}" / f"{Path(names[i]).stem}.png",
                                    xr[j])
                    new += 1
                    bar.update(1)
        finally:
            writer.close()
            bar.close()
        dist.barrier(device)
        rows: list[dict] = []
        if dist.rank == 0:
            records = merge(out, {n: k for k, n in enumerate(names)})
            wanted = set(names), set(cfg.tasks), set(cfg.methods), set(cfg.seeds)
            chosen = [r for r in records if r["image"] in wanted[0] and r["task"] in wanted[1]
                      and r["method"] in wanted[2] and r["seed"] in wanted[3]]
            rows = summarize(chosen, cfg.tasks, cfg.methods)
            write_summary(out, rows, cfg, log=log)
            expected = n_images * len(cfg.tasks) * len(cfg.methods) * len(cfg.seeds)
            log(f"wrote {out / RESULTS} ({len(chosen)} of {expected} records of this request, {new} new on rank 0), "
                f"summary.md, summary.csv")
        dist.barrier(device)
        return {"records": new, "rows": rows, "rank": dist.rank, "world": dist.world,
                "seconds": time.perf_counter() - t_start}
    finally:
        dist.close()
