"""The ``diffsolve eval`` runner: every (image, task, method, seed) of a dataset scored, on one process
or many (torchrun), resumable.

Records. ``OUT/results.jsonl`` holds one JSON object per (image, task, method, seed) with ``image``
(file name), ``task``, ``method``, ``seed``, ``psnr`` (dB), ``ssim``, ``seconds`` (the record's share
of its batch's wall time), ``dc`` (data consistency ‖A x̂ − y‖/(σ√m), 1 = the residual matches the
noise level; null when σ = 0), ``steps``, ``model``, ``size``, ``sigma`` (and ``lam`` for Tikhonov; ``draws``
with ``--draws`` K > 1, where a model-based record scores the mean of K draws; ``discrepancy: false`` with
``--no-discrepancy``, on the records of the methods it switches to the paper's result).
Each process appends its records to ``OUT/parts/rank-R.jsonl`` and flushes after every record, so a
killed run loses at most the batch in flight; a rerun with the same OUT skips every record already
in results.jsonl or a part file. ``OUT/config.json`` pins the settings records depend on and the data:
the SHA-256 of every input file by image name (:func:`data_hashes`); :func:`check_resume` refuses a
rerun whose settings or files differ (ValueError naming the setting or the file, and the fix). When all
ranks are done, rank 0 merges the parts into results.jsonl (written to a temporary file, then
renamed) and writes ``summary.csv``, ``summary.md`` (mean ± std per task × method) and
``quality_vs_time.png`` (matplotlib, when installed).

Randomness. A record depends on (seed, image, task, method) alone, never on the number of
processes or the batch: the operator's random parts (box position, motion kernel, random mask) come
from ``seed`` (one operator per (seed, task), shared by all images, as in the demo); image i's
measurement noise from a generator seeded by hash(seed, image, task) (every method sees the same
y); the sampler's randomness from a per-image generator seeded by hash(seed, image, task, method),
passed as a list of per-sample generators (``diffsolve.solvers``); draw k > 0 of ``--draws`` appends k to
those parts. All generators live on the CPU.
Batches are formed from the image list before sharding (rank r takes batches r, r + K, …), so a
record's batch is the same for any number of processes K; results are bit-identical across K.

Scale-out. Under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is gloo on CPU, nccl on CUDA
(one device per local rank: ``--device cuda`` becomes ``cuda:LOCAL_RANK``).

Unsupported pairs. A method that cannot take a task's operator (DDRM, and DDNM+ at σ > 0, need A's SVD,
which a reflect-boundary motion blur has not) is not planned for that task: :func:`unsupported_pairs` finds
those pairs before any model call, the run logs one note per pair, and summary.md lists them.

Steps. :func:`plan_eval` (what this rank computes), :func:`run_batch` (one batch × seed × task ×
method -> records), :func:`summarise` (merge, summary files); :func:`run_eval` runs the three.
This module is the library side of ``diffsolve eval``: it imports nothing from the command line and
raises ValueError for bad input; the model comes from the caller (``load_model(device)``).

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
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .data import write_image
from .solvers import UNFIT_CONSISTENCY, DataConsistencyWarning

__all__ = ["EvalConfig", "EvalPlan", "ImageSet", "bundled_images", "check_resume", "data_hashes", "folder_images",
           "plan_eval", "record_key", "run_batch", "run_eval", "stream_seed", "summarise", "summarize",
           "unsupported_pairs", "write_summary"]

RESULTS = "results.jsonl"
PARTS = "parts"
CONFIG = "config.json"
#: The settings a record depends on besides its key: a rerun into the same OUT must match them.
PINNED = ("size", "steps", "model", "sigma", "channels", "draws", "discrepancy")
#: what a pinned setting was before config.json recorded it (runs made before ``draws`` existed drew once, before
#: ``discrepancy`` existed every method ended as its default did then)
PINNED_BEFORE = {"draws": 1, "discrepancy": True}


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


def folder_images(paths: Sequence[Path], size: int, channels: int) -> ImageSet:
    """Files centre-cropped to a square and resized to size × size (:func:`diffsolve.data.read_image`)."""
    from .data import read_image

    mode = "L" if channels == 1 else "RGB"
    return ImageSet([p.name for p in paths],
                    lambda idx: torch.stack([read_image(paths[i], mode, (size, size)) for i in idx]))


def bundled_photos(name: str) -> tuple[str, ...]:
    """The photo names of a bundled photo set: ``photos`` (the demo's: chelsea, coffee) or ``heldout`` (the
    benchmarks' held-out photos: camera, grass, hopper, raccoon)."""
    from . import data

    return {"photos": data.PHOTOS, "heldout": data.HELDOUT}[name]


def bundled_names(name: str) -> list[str]:
    """The image names of a bundled set (without decoding it)."""
    from . import data

    if name == "digits16":
        return [f"digit_{i:03d}.png" for i in range(data.HELDOUT_DIGITS)]
    return [f"{p}.png" for p in bundled_photos(name)]


def bundled_images(name: str, size: int, channels: int) -> ImageSet:
    """The bundled sets: ``digits16`` (360 held-out 16×16 digits) and the photo sets of :func:`bundled_photos`."""
    from . import data

    if name == "digits16":
        digits = data.heldout_digits()
        if channels == 3:
            digits = digits.expand(-1, 3, -1, -1)
        return ImageSet([f"digit_{i:03d}.png" for i in range(len(digits))], lambda idx: digits[list(idx)])
    names = bundled_photos(name)
    photos = [data.photo(p, size) for p in names]  # (3, S, S)
    if channels == 1:
        photos = [p.mean(0, keepdim=True) for p in photos]
    return ImageSet([f"{p}.png" for p in names], lambda idx: torch.stack([photos[i] for i in idx]))


# --------------------------------------------------------------------------- data identity


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def data_hashes(data: str, image_paths: Sequence[Path] | None, names: Sequence[str]) -> dict[str, str]:
    """``{image name: SHA-256}`` of the files the images come from (a bundled set: its bundled file, plus
    the set's name, so a folder of the same names never matches it)."""
    if image_paths is not None:
        return {p.name: file_sha256(Path(p)) for p in image_paths}
    from importlib import resources

    from . import data as bundled

    files = ["digits16_heldout.png"] if data == "digits16" else [f"{p}.png" for p in bundled_photos(data)]
    digests = []
    for name in files:
        with resources.as_file(resources.files(bundled.__name__).joinpath(name)) as path:
            digests.append(file_sha256(path))
    if data != "digits16":
        return {n: f"bundled:{data}:{d}" for n, d in zip(names, digests)}
    return {n: f"bundled:digits16:{digests[0]}" for n in names}


# --------------------------------------------------------------------------- config


@dataclass
class EvalConfig:
    """A checked ``diffsolve eval`` request (built by ``diffsolve.cli.eval.check``).

    ``image_paths``: a folder's files (already limited); None for the bundled set ``data``.
    ``hashes``: :func:`data_hashes` of the images (pinned in config.json); ``notes``: lines printed at the
    start of the run (converted images)."""

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
    draws: int = 1  # model-based methods: each record scores the mean of this many draws
    discrepancy: bool = True  # False: the paper's result for the methods that end within the noise by default
    hashes: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def pinned(self) -> dict[str, Any]:
        """The settings config.json pins (without the data hashes)."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items() if k in PINNED}

    def describe_data(self) -> str:
        """Which data this run uses: the folder's path or the bundled set's name, and how many images."""
        n = len(self.image_paths) if self.image_paths is not None else None
        if self.image_paths is not None:
            folder = Path(self.image_paths[0]).parent.resolve() if self.image_paths else Path(self.data).resolve()
            return f"folder {folder} ({n} image{'s' * (n != 1)})"
        return f"bundled set {self.data!r}" + (f" (first {self.limit})" if self.limit else "")


def check_resume(cfg: EvalConfig) -> None:
    """ValueError when ``cfg.out`` holds records made with other settings or other input files (one line:
    the setting or the file, and the fix)."""
    pinned = read_pinned(cfg.out)
    if pinned is None:
        return
    for key, value in cfg.pinned().items():
        then = pinned.get(key, PINNED_BEFORE.get(key, value))
        if then != value:
            raise ValueError(f"--out: {str(cfg.out)!r} holds records made with {key}={then!r}, this run has "
                             f"{key}={value!r}; use the same settings to resume, or another --out")
    old = pinned.get("data") or {}
    for name, digest in cfg.hashes.items():
        if name in old and old[name] != digest:
            now, then = digest.rsplit(":", 1)[-1][:12], old[name].rsplit(":", 1)[-1][:12]
            raise ValueError(f"--data: {name!r} is not the file the records in {str(cfg.out)!r} were made from "
                             f"(sha256 {now}…, pinned {then}…); restore the original file, or use another --out "
                             "for the new data")


def write_config(cfg: EvalConfig) -> None:
    """config.json: the pinned settings and the data hashes (the union over the runs into this OUT)."""
    pinned = read_pinned(cfg.out) or {}
    data = dict(pinned.get("data") or {})
    data.update(cfg.hashes)
    _write_atomic(cfg.out / CONFIG, json.dumps({**cfg.pinned(), "data": data}, indent=1) + "\n")


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

METRICS = ("psnr", "ssim", "dc", "seconds")


def summarize(records: Sequence[dict[str, Any]], tasks: Sequence[str], methods: Sequence[str]) -> list[dict]:
    """Mean ± std (sample std, 0 for one record) of psnr, ssim, dc, seconds per task × method (dc: over the
    records that have it; None when none has), and ``unfit``: the records whose dc exceeds
    ``UNFIT_CONSISTENCY`` (y largely ignored: the solvers' DataConsistencyWarning, counted here instead)."""
    rows = []
    for task in tasks:
        for method in methods:
            group = [r for r in records if r["task"] == task and r["method"] == method]
            if not group:
                continue
            row: dict[str, Any] = {"task": task, "method": method, "n": len(group),
                                   "unfit": sum(1 for r in group if (r.get("dc") or 0.0) > UNFIT_CONSISTENCY)}
            for key in METRICS:
                vals = [float(r[key]) for r in group if r.get(key) is not None]
                if not vals:
                    row[f"{key}_mean"] = row[f"{key}_std"] = None
                    continue
                t = torch.tensor(vals, dtype=torch.float64)
                row[f"{key}_mean"] = float(t.mean())
                row[f"{key}_std"] = float(t.std()) if len(t) > 1 else 0.0
            rows.append(row)
    return rows


def unfit_lines(rows: list[dict]) -> list[str]:
    """"METHOD × TASK: k of n records" for the summary rows with records whose dc exceeds UNFIT_CONSISTENCY."""
    return [f"{r['method']} × {r['task']}: {r['unfit']} of {r['n']} records" for r in rows if r.get("unfit")]


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def write_summary(out: Path, rows: list[dict], cfg: EvalConfig, *, log: Callable[[str], None],
                  skipped: dict[tuple[str, str], str] | None = None) -> None:
    """summary.csv, summary.md and (with matplotlib) quality_vs_time.png; ``skipped``: (task, method) -> why
    it was not run (listed in summary.md, with ``cfg.notes``)."""
    keys = ["task", "method", "n"] + [f"{k}_{s}" for k in METRICS for s in ("mean", "std")]
    with open(out / "summary.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (round(r[k], 6) if isinstance(r[k], float) else ("" if r[k] is None else r[k]))
                        for k in keys})
    lines = [f"# diffsolve eval: {cfg.data}",
             "",
             f"data: {cfg.describe_data()}.",
             "",
             f"model `{cfg.model}`, {cfg.size}x{cfg.size}, {cfg.steps} steps, sigma {cfg.sigma} (in [-1, 1]), "
             f"seeds {','.join(map(str, cfg.seeds))}. Mean ± std over images × seeds; seconds per record."
             + (f" Each model-based record scores the mean of {cfg.draws} draws (the model-free methods are "
                "deterministic: one solve)." if cfg.draws > 1 else "")
             + (" `--no-discrepancy`: the model-based methods return the paper's result (no final pull of a result "
                "the noise cannot explain towards y)." if not cfg.discrepancy else ""),
             "",
             "DC is the data consistency ‖A x̂ − y‖/(σ√m), m = measurement entries per sample: 1 means the "
             "residual matches the noise level.",
             "",
             "LPIPS and FID: not computed (they need network weights; diffsolve never downloads them).",
             "",
             "| task | method | n | PSNR (dB) | SSIM | DC | seconds |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        dc = "n/a" if r["dc_mean"] is None else f"{r['dc_mean']:.3f} ± {r['dc_std']:.3f}"
        lines.append(f"| {r['task']} | {r['method']} | {r['n']} | {r['psnr_mean']:.2f} ± {r['psnr_std']:.2f} | "
                     f"{r['ssim_mean']:.4f} ± {r['ssim_std']:.4f} | {dc} | "
                     f"{r['seconds_mean']:.3g} ± {r['seconds_std']:.2g} |")
    if skipped:
        lines += ["", "Not run (the method cannot take the task's operator):", ""]
        lines += [f"- {method} × {task}: {why}" for (task, method), why in skipped.items()]
    unfit = unfit_lines(rows)
    if unfit:
        lines += ["", f"Results that do not fit y (DC above {UNFIT_CONSISTENCY:g}: y largely ignored; more --steps, "
                  "or check --sigma):", ""] + [f"- {line}" for line in unfit]
    if cfg.notes:  # what was done to the data or the model on the way (padding, grey to RGB, alpha dropped)
        lines += ["", "Notes:", ""] + [f"- {line}" for line in cfg.notes]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    _plot(out / "quality_vs_time.png", rows, cfg, log=log)


def _seconds_label(value: float, _pos: Any = None) -> str:
    """A tick label for seconds: up to 4 significant digits (the locator's round numbers need no more)."""
    if value <= 0:
        return "0"
    if value >= 1000:
        return f"{value:.0f}"
    return f"{value:.4g}"


def time_axis(ax: Any, seconds: Sequence[float]) -> None:
    """Readable seconds axis: log scale (major ticks only, plain labels) when the times span more than
    a decade; else a linear axis with at most 4 ticks, padded so close timings still get distinct labels."""
    from matplotlib import ticker

    lo, hi = min(seconds), max(seconds)
    if hi > 10 * lo > 0:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(ticker.LogLocator(base=10, numticks=5))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(_seconds_label))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlim(lo / 2, hi * 3)
    else:
        pad = max((hi - lo) * 0.25, hi * 0.05, 1e-6)
        ax.set_xlim(max(0.0, lo - pad), hi + pad)
        ax.xaxis.set_major_locator(ticker.MaxNLocator(nbins=3, min_n_ticks=2))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(_seconds_label))
    ax.tick_params(axis="x", labelsize=7)


def plot_quality_vs_time(rows: list[dict], tasks: Sequence[str], title: str) -> Any:
    """The quality-vs-time figure (one panel per task; each point labelled with its method)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(3.4 * len(tasks), 3.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        group = [r for r in rows if r["task"] == task]
        xs = [max(r["seconds_mean"], 1e-6) for r in group]
        for x, r in zip(xs, group):
            ax.errorbar(x, r["psnr_mean"], yerr=r["psnr_std"], fmt="o", capsize=2, label=r["method"])
            ax.annotate(r["method"], (x, r["psnr_mean"]), textcoords="offset points", xytext=(4, 4), fontsize=6)
        time_axis(ax, xs)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("seconds per record", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("PSNR (dB)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _plot(path: Path, rows: list[dict], cfg: EvalConfig, *, log: Callable[[str], None]) -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log("matplotlib is not installed: skipped quality_vs_time.png (pip install 'diffsolve[plot]')")
        return
    tasks = [t for t in cfg.tasks if any(r["task"] == t for r in rows)]
    if not tasks:
        return
    import matplotlib.pyplot as plt

    fig = plot_quality_vs_time(rows, tasks, f"{cfg.model}, {cfg.size}x{cfg.size}, {cfg.steps} steps")
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


@dataclass
class EvalPlan:
    """What one rank computes: image ``names`` (after --limit), ``batches`` (index lists, formed before
    sharding), ``todo`` = (batch, seed, task, method) with a missing record, ``done`` keys, ``total``
    records to compute."""

    names: list[str]
    batches: list[list[int]]
    todo: list[tuple[list[int], int, str, str]]
    done: set[tuple[str, str, str, int]]
    total: int

    def pending(self, batch: Sequence[int], seed: int, task: str, method: str) -> list[int]:
        return [i for i in batch if (self.names[i], task, method, seed) not in self.done]


def unsupported_pairs(cfg: EvalConfig) -> dict[tuple[str, str], str]:
    """(task, method) -> why the method cannot take the task's operator at ``cfg.size`` (module docstring,
    Unsupported pairs): host-side, one operator per task that an SVD method meets (seed ``cfg.seeds[0]``:
    the seed moves a motion kernel, not the operator's structure)."""
    from .methods import get_method
    from .tasks import make_operator

    out: dict[tuple[str, str], str] = {}
    for task in cfg.tasks:
        op = None
        for method in cfg.methods:
            spec = get_method(method)
            if not spec.svd:
                continue
            if op is None:
                op = make_operator(task, (cfg.size, cfg.size), seed=cfg.seeds[0], digits=cfg.digits)
            why = spec.unsupported(op, (cfg.size, cfg.size), cfg.sigma)
            if why is not None:
                out[(task, method)] = why
    return out


def plan_eval(cfg: EvalConfig, images: ImageSet, rank: int = 0, world: int = 1,
              skipped: dict[tuple[str, str], str] | None = None) -> EvalPlan:
    """The records rank ``rank`` of ``world`` still has to compute (module docstring, Randomness), leaving
    out the (task, method) pairs in ``skipped`` (default: :func:`unsupported_pairs`)."""
    skipped = unsupported_pairs(cfg) if skipped is None else skipped
    n_images = len(images.names) if cfg.limit is None else min(cfg.limit, len(images.names))
    names = images.names[:n_images]
    batches = [list(range(i, min(i + cfg.batch, n_images))) for i in range(0, n_images, cfg.batch)]
    done = {record_key(r) for r in read_records(cfg.out)}
    plan = EvalPlan(names, batches, [], done, 0)
    for b in batches[rank::world]:
        for s in cfg.seeds:
            for t in cfg.tasks:
                for m in cfg.methods:
                    if (t, m) in skipped:
                        continue
                    n = len(plan.pending(b, s, t, m))
                    if n:
                        plan.todo.append((b, s, t, m))
                        plan.total += n
    return plan


def run_batch(cfg: EvalConfig, plan: EvalPlan, item: tuple[list[int], int, str, str], x_batch: torch.Tensor,
              operator: Any, model: Any, device: torch.device) -> tuple[list[dict[str, Any]], torch.Tensor]:
    """The records of one (batch, seed, task, method): measure (per-image noise streams), restore (per-image
    sampler streams; with ``cfg.draws`` = K > 1 a model-based method draws K times and the record scores their
    mean, its ``seconds`` the K draws' time), score. ``x_batch``: the batch's images on ``device``. Returns
    (records, x̂ of the pending images)."""
    from .methods import get_method, restore, takes_discrepancy
    from .metrics import data_consistency, scores
    from .operators import GaussianNoise

    b, seed, task, method = item
    pending = plan.pending(b, seed, task, method)
    names = plan.names
    x = x_batch[[b.index(i) for i in pending]]
    ax = operator.A(x)
    noise = GaussianNoise(cfg.sigma)
    y = torch.cat([noise(ax[j:j + 1].cpu(), generator=_generator(seed, names[i], task)).to(device)
                   for j, i in enumerate(pending)])
    uses_model = get_method(method).uses_model
    paper = not cfg.discrepancy and takes_discrepancy(method)  # --no-discrepancy reaches the methods that have it
    t0 = time.perf_counter()
    draws = []
    for k in range(cfg.draws if uses_model else 1):  # draw k's streams: the record's, extended by k (k = 0: as is)
        gens = [_generator(seed, names[i], task, method, *([k] if k else [])) for i in pending]
        with warnings.catch_warnings():  # every record keeps its dc; the summary counts the unfit ones instead
            warnings.simplefilter("ignore", DataConsistencyWarning)
            xk, info = restore(method, model, operator, y, steps=cfg.steps, sigma=cfg.sigma,
                               generator=gens if uses_model else None, x_true=x, discrepancy=not paper)
        draws.append(xk)
    xr = draws[0] if len(draws) == 1 else torch.stack(draws).mean(0)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - t0) / len(pending)
    sc = scores(xr, x)
    dc = data_consistency(operator, xr, y, cfg.sigma) if cfg.sigma > 0 else None
    records = []
    for j, i in enumerate(pending):
        records.append({"image": names[i], "task": task, "method": method, "seed": seed,
                        "psnr": round(float(sc["psnr"][j]), 4), "ssim": round(float(sc["ssim"][j]), 5),
                        "dc": None if dc is None else round(float(dc[j]), 5),
                        "seconds": round(seconds, 5), "steps": cfg.steps, "model": cfg.model, "size": cfg.size,
                        "sigma": cfg.sigma, **({"draws": len(draws)} if len(draws) > 1 else {}),
                        **({"discrepancy": False} if paper else {}), **info})
    return records, xr


def summarise(cfg: EvalConfig, names: Sequence[str], *, new: int, log: Callable[[str], None],
              skipped: dict[tuple[str, str], str] | None = None) -> list[dict]:
    """Merge the parts into results.jsonl, write the summary files of this request; its rows. ``skipped``:
    the (task, method) pairs not run (:func:`unsupported_pairs`)."""
    skipped = skipped or {}
    out = cfg.out
    records = merge(out, {n: k for k, n in enumerate(names)})
    wanted = set(names), set(cfg.tasks), set(cfg.methods), set(cfg.seeds)
    chosen = [r for r in records if r["image"] in wanted[0] and r["task"] in wanted[1]
              and r["method"] in wanted[2] and r["seed"] in wanted[3]]
    rows = summarize(chosen, cfg.tasks, cfg.methods)
    write_summary(out, rows, cfg, log=log, skipped=skipped)
    for line in unfit_lines(rows):
        log(f"warning: {line} with data consistency above {UNFIT_CONSISTENCY:g} (y largely ignored): more --steps, "
            "or check --sigma")
    expected = len(names) * (len(cfg.tasks) * len(cfg.methods) - len(skipped)) * len(cfg.seeds)
    log(f"wrote {out / RESULTS} ({len(chosen)} of {expected} records of this request, {new} new on rank 0), "
        f"summary.md, summary.csv")
    return rows


def run_eval(cfg: EvalConfig, *, load_model: Callable[[torch.device], Any] | None = None,
             log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the evaluation (module docstring): plan, run the batches, summarise. ``load_model(device)``
    returns the denoiser (called only when a model-based method has records to compute). Returns
    {"records": this rank's new count, "rows": summary rows (rank 0; [] elsewhere), "rank", "world",
    "seconds"}. ValueError when ``cfg.out`` holds records of other settings or data."""
    from .methods import get_method
    from .tasks import make_operator

    log = log or (lambda msg: print(msg, file=sys.stderr))
    t_start = time.perf_counter()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    check_resume(cfg)
    dist, device = setup_distributed(cfg.device)
    out = cfg.out
    try:
        skipped = unsupported_pairs(cfg)
        if dist.rank == 0:
            log(f"eval: data = {cfg.describe_data()}")
            for line in cfg.notes:
                log(f"note: {line}")
            for (task, method), why in skipped.items():
                log(f"note: {method} × {task} not run: {get_method(method).brief(why)}")
            out.mkdir(parents=True, exist_ok=True)
            write_config(cfg)
        dist.barrier(device)
        images = (bundled_images(cfg.data, cfg.size, cfg.channels) if cfg.image_paths is None
                  else folder_images(cfg.image_paths, cfg.size, cfg.channels))
        plan = plan_eval(cfg, images, dist.rank, dist.world, skipped)
        model = None
        if plan.total and any(get_method(m).uses_model for _, _, _, m in plan.todo):
            if load_model is None:
                raise ValueError(f"run_eval needs load_model= (a function of the device) for {cfg.methods}")
            model = load_model(device)
        from tqdm.auto import tqdm

        bar = tqdm(total=plan.total, unit="rec", desc=f"eval (rank 0 of {dist.world})" if dist.world > 1 else "eval",
                   disable=dist.rank != 0 or not cfg.progress, file=sys.stderr, dynamic_ncols=True)
        writer = PartWriter(out / PARTS / f"rank-{dist.rank}.jsonl")
        ops: dict[tuple[int, str], Any] = {}
        new = 0
        loaded: tuple[tuple[int, ...], torch.Tensor] | None = None
        try:
            for item in plan.todo:
                b, seed, task, method = item
                if loaded is None or loaded[0] != tuple(b):
                    loaded = (tuple(b), images.load(b).to(device))
                if (seed, task) not in ops:
                    ops[(seed, task)] = make_operator(task, (cfg.size, cfg.size), seed=seed, digits=cfg.digits)
                records, xr = run_batch(cfg, plan, item, loaded[1], ops[(seed, task)], model, device)
                for j, rec in enumerate(records):
                    writer.write(rec)
                    if cfg.save_images:
                        write_image(out / "images" / task / method / f"seed{seed}" / f"{Path(rec['image']).stem}.png",
                                    xr[j])
                    new += 1
                    bar.update(1)
        finally:
            writer.close()
            bar.close()
        dist.barrier(device)
        rows: list[dict] = summarise(cfg, plan.names, new=new, log=log, skipped=skipped) if dist.rank == 0 else []
        dist.barrier(device)
        return {"records": new, "rows": rows, "rank": dist.rank, "world": dist.world,
                "seconds": time.perf_counter() - t_start}
    finally:
        dist.close()
