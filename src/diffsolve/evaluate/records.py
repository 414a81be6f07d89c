"""What ``diffsolve eval`` keeps on disk in OUT: the pinned settings, model files and data (``config.json``), the
records (``results.jsonl``, one part file per rank while a run is going) and the checked request they belong to
(:class:`EvalConfig`). Record fields and the resume rules: :mod:`diffsolve.evaluate`."""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

__all__ = ["CONFIG", "DEFAULT_PARAMS", "LOCK", "MODEL_FILES", "PARTS", "PINNED", "RESULTS", "EvalConfig", "OutInUseError", "PartWriter",
           "check_resume", "json_line", "lock_out", "merge", "model_fingerprint", "read_pinned", "read_records",
           "record_key", "write_config"]

RESULTS = "results.jsonl"
PARTS = "parts"
CONFIG = "config.json"
LOCK = ".lock"
#: The settings a record depends on besides its key: a rerun into the same OUT must match them.
PINNED = ("size", "steps", "model", "sigma", "channels", "draws", "discrepancy", "params")
#: the pinned settings only the model-based methods' records depend on (and the model's files): checked where both the
#: records in OUT and this run have a model-based method (a Tikhonov / pinv record is the same at any --steps)
MODEL_PINNED = ("steps", "model", "draws", "discrepancy")
#: the task parameters (:class:`diffsolve.tasks.TaskParameters`) of a run that gives none: every task's default
DEFAULT_PARAMS = {"blur_std": None, "motion_size": None, "box": None, "missing": 0.7, "factor": 4}
#: what a pinned setting was before config.json recorded it (runs made before ``draws`` existed drew once, before
#: ``discrepancy`` existed every method ended as its default did then, before ``params`` every task had its default)
PINNED_BEFORE = {"draws": 1, "discrepancy": True, "params": DEFAULT_PARAMS}
#: the files of a model folder that :func:`model_fingerprint` pins: its JSON configs and its weights
MODEL_FILES = (".json", ".safetensors", ".bin", ".pt", ".pth", ".ckpt")
_WHOLE = 64 << 20  # model files up to this size are hashed whole; larger ones by their first and last MiB


def model_fingerprint(model: str, head_channels: int = 64) -> dict[str, str] | None:
    """What config.json pins of ``model`` besides its name: ``{file: digest}`` over the files of a shipped model's
    folder or a model folder that :data:`MODEL_FILES` names (by path inside the folder; hidden ones left out), or
    of a checkpoint file (by name, with ``head_channels``, which shapes an ADM network). A digest is the file's
    size and SHA-256; a file above 64 MiB is hashed by its first and last MiB only (multi-GB weights are not read
    whole), so a change confined to the middle of such a file goes unseen. None for a name that is neither a
    shipped model nor an existing path (a model only the caller's ``load_model`` knows: its name alone is pinned)."""
    from ..models.default import DEFAULT_MODELS, default_model_path

    path = default_model_path(model) if model in DEFAULT_MODELS else Path(model)
    if path.is_file():
        return {path.name: _digest(path), "head_channels": str(head_channels)}
    if not path.is_dir():
        return None
    files = sorted(p.relative_to(path) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MODEL_FILES)
    return {f.as_posix(): _digest(path / f) for f in files if not any(part.startswith(".") for part in f.parts)}


def _digest(path: Path) -> str:
    size, h = path.stat().st_size, hashlib.sha256()
    with open(path, "rb") as f:
        if size <= _WHOLE:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        else:
            h.update(f.read(1 << 20))
            f.seek(size - (1 << 20))
            h.update(f.read(1 << 20))
    return f"{size}:{h.hexdigest()}"


def record_key(rec: dict[str, Any]) -> tuple[str, str, str, int]:
    """(image, task, method, seed): what identifies a record."""
    return (str(rec["image"]), str(rec["task"]), str(rec["method"]), int(rec["seed"]))


@dataclass
class EvalConfig:
    """A ``diffsolve eval`` request (built by ``diffsolve.cli.eval.check``, which also checks the data and the
    model; built directly, every field is checked here: a ValueError/TypeError names the field, the value and the fix).

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
    params: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_PARAMS))  # the tasks' TaskParameters fields
    hashes: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """The field checks (class docstring); ``out`` may be given as a str."""
        from ..methods import METHODS
        from ..tasks import TASKS
        from .images import BUNDLED

        def fail(name: str, fix: str) -> None:
            raise ValueError(f"EvalConfig.{name} must be {fix}, got {getattr(self, name)!r}")

        def count(name: str, low: int, optional: bool = False) -> None:
            value = getattr(self, name)
            if optional and value is None:
                return
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                fail(name, f"an int >= {low}" + (" or None" if optional else ""))

        for name, low in (("size", 1), ("steps", 1), ("batch", 1), ("draws", 1), ("head_channels", 1)):
            count(name, low)
        count("limit", 1, optional=True)
        count("threads", 1, optional=True)
        if self.channels not in (1, 3) or isinstance(self.channels, bool):
            fail("channels", "1 (grey) or 3 (RGB)")
        if self.image_paths is None and self.data not in BUNDLED:
            fail("data", f"a bundled set ({', '.join(BUNDLED)}) when image_paths is None")
        for name, known in (("tasks", TASKS), ("methods", tuple(m for m in METHODS if METHODS[m].cli))):
            names = getattr(self, name)
            if (isinstance(names, str) or not names or any(n not in known for n in names)
                    or len(set(names)) != len(names)):
                fail(name, f"a non-empty list of distinct names from {', '.join(known)}")
        if (isinstance(self.seeds, (str, bytes)) or not self.seeds or len(set(self.seeds)) != len(self.seeds)
                or any(not isinstance(s, int) or isinstance(s, bool) or not 0 <= s < 2**63 for s in self.seeds)):
            fail("seeds", "a non-empty list of distinct ints in [0, 2**63)")
        if (not isinstance(self.sigma, (int, float)) or isinstance(self.sigma, bool) or not math.isfinite(self.sigma)
                or self.sigma < 0):
            fail("sigma", "a finite number >= 0 (the noise std on the model's [-1, 1] scale)")
        from ..tasks import TaskParameters, check_parameters

        if not isinstance(self.params, dict) or set(self.params) != set(DEFAULT_PARAMS):
            fail("params", f"a dict with the TaskParameters fields {', '.join(DEFAULT_PARAMS)}")
        try:
            check_parameters(TaskParameters(**self.params))
        except (TypeError, ValueError) as err:
            raise ValueError(f"EvalConfig.params must be valid task parameters: {err}") from None
        if not isinstance(self.out, (str, Path)):
            fail("out", "a folder path (str or Path)")
        self.out = Path(self.out)

    def pinned(self) -> dict[str, Any]:
        """The settings config.json pins (without the model files and the data hashes)."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items() if k in PINNED}

    @property
    def uses_model(self) -> bool:
        """Whether a method of this run calls the model (the model settings then matter)."""
        from ..methods import get_method

        return any(get_method(m).uses_model for m in self.methods)

    @cached_property
    def model_files(self) -> dict[str, str] | None:
        """:func:`model_fingerprint` of ``model``, read once: the files that are checked are the files pinned."""
        return model_fingerprint(self.model, self.head_channels)

    def task_parameters(self) -> Any:
        """``params`` as the :class:`diffsolve.tasks.TaskParameters` that ``make_operator`` takes."""
        from ..tasks import TaskParameters

        return TaskParameters(**self.params)

    def describe_data(self) -> str:
        """Which data this run uses: the folder's path or the bundled set's name, and how many images."""
        n = len(self.image_paths) if self.image_paths is not None else None
        if self.image_paths is not None:
            folder = Path(self.image_paths[0]).parent.resolve() if self.image_paths else Path(self.data).resolve()
            return f"folder {folder} ({n} image{'s' * (n != 1)})"
        return f"bundled set {self.data!r}" + (f" (first {self.limit})" if self.limit else "")


def check_resume(cfg: EvalConfig) -> list[str]:
    """ValueError when ``cfg.out`` holds records made with other settings, another model (:func:`model_fingerprint`)
    or other data (one line: the setting, the model file or the data, and the fix). Data: one OUT holds one data
    set; a rerun may add images (a folder that grew, a larger --limit), but a same-named file must be the same
    file, and another bundled set, a folder after a bundled set (or back), or a folder sharing no image name with
    the records is refused. An OUT that holds no records (a run that ended before its first) refuses nothing:
    write_config replaces its config.json. Returns the notices to print: that replacement, or a config.json
    written before model fingerprints existed (the records' model cannot be checked; this run's is pinned)."""
    pinned = read_pinned(cfg.out)
    if pinned is None:
        return []
    records = read_records(cfg.out)
    model_records = _model_records(records)
    why = _mismatch(cfg, pinned, model_records)
    if not records:
        return [] if why is None else [f"{str(cfg.out)!r} holds no records: its config.json, made by a run that "
                                       "ended before its first record, is replaced by this run's settings"]
    if why is not None:
        raise ValueError(why)
    if "model_files" not in pinned and cfg.uses_model and model_records:
        return [f"{str(cfg.out)!r} was written before config.json pinned the model's files: the records' model "
                f"cannot be checked against --model {cfg.model}; its files are pinned from this run on"]
    return []


def _model_records(records: list[dict[str, Any]]) -> bool:
    """Whether any record was made by a model-based method."""
    from ..methods import METHODS

    return any(METHODS[r["method"]].uses_model for r in records if r.get("method") in METHODS)


def _mismatch(cfg: EvalConfig, pinned: dict[str, Any], model_records: bool = True) -> str | None:
    """The error for the first way config.json (``pinned``) differs from ``cfg`` (:func:`check_resume`), or None.
    The model settings (:data:`MODEL_PINNED`, the model's files) count only where ``model_records`` (OUT holds a
    model-based record) and this run has a model-based method."""
    out = repr(str(cfg.out))
    model_matters = model_records and cfg.uses_model
    for key, value in cfg.pinned().items():
        if key in MODEL_PINNED and not model_matters:
            continue
        then = pinned.get(key, PINNED_BEFORE.get(key, value))
        if then != value:
            return (f"--out: {out} holds records made with {key}={then!r}, this run has {key}={value!r}; use the "
                    "same settings to resume, or another --out")
    then_files, now_files = pinned.get("model_files") or {}, cfg.model_files or {}
    if model_matters and "model_files" in pinned and then_files != now_files:
        name = next(k for k in sorted({*then_files, *now_files}) if then_files.get(k) != now_files.get(k))
        how = "added" if name not in then_files else "removed" if name not in now_files else "changed"
        return (f"--model: {cfg.model!r} is not the model the records in {out} were made with ({name} {how}); "
                "restore it to resume, or use a new --out for this model")
    old = pinned.get("data") or {}
    for name, digest in cfg.hashes.items():
        if name in old and old[name] != digest:
            now_d, then_d = digest.rsplit(":", 1)[-1][:12], old[name].rsplit(":", 1)[-1][:12]
            return (f"--data: {name!r} is not the file the records in {out} were made from (sha256 {now_d}…, pinned "
                    f"{then_d}…); restore the original file, or use another --out for the new data")
    if old and cfg.hashes:
        was, this = _sources(old), _sources(cfg.hashes)
        if not this <= was or (this == {"a folder"} and not old.keys() & cfg.hashes.keys()):
            shown = ", ".join(sorted(old)[:3]) + (", …" if len(old) > 3 else "")
            uses = " and ".join(sorted(this)) + (" with none of those images" if this <= was else "")
            return (f"--data: {out} holds records of {' and '.join(sorted(was))} ({shown}), this run uses {uses}; "
                    "one --out holds one data set (it may grow): use another --out for other data")
    return None


def _sources(hashes: dict[str, str]) -> set[str]:
    """Where :func:`~diffsolve.evaluate.data_hashes` digests come from: "bundled set 'NAME'" or "a folder"."""
    return {f"bundled set {d.split(':')[1]!r}" if d.startswith("bundled:") else "a folder" for d in hashes.values()}


def write_config(cfg: EvalConfig) -> None:
    """config.json: the pinned settings, the model's files and the data hashes (the union over the runs into this
    OUT; only this run's where OUT holds no records). A run without a model-based method keeps the model settings
    that OUT's model-based records were made with."""
    records = read_records(cfg.out)
    pinned = (read_pinned(cfg.out) if records else None) or {}
    data = {**(pinned.get("data") or {}), **cfg.hashes}
    settings = {**cfg.pinned(), "model_files": cfg.model_files}
    if not cfg.uses_model and _model_records(records):  # keep the model settings the model-based records pin
        settings.update({k: pinned[k] for k in (*MODEL_PINNED, "model_files") if k in pinned})
    _write_atomic(cfg.out / CONFIG, json.dumps({**settings, "data": data}, indent=1) + "\n")


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


def json_line(rec: dict[str, Any]) -> str:
    """One record as a line of valid JSON: a float that is not finite (PSNR ``inf`` of an exact recovery) is written
    as the string ``"inf"``, ``"-inf"`` or ``"nan"`` (``float()`` reads it back), never as bare Infinity/NaN."""
    return json.dumps({k: str(v) if isinstance(v, float) and not math.isfinite(v) else v for k, v in rec.items()},
                      allow_nan=False) + "\n"


def merge(out: Path, order: dict[str, int]) -> list[dict[str, Any]]:
    """Write every record once into results.jsonl (sorted by image order, task, method, seed); remove parts."""
    unique: dict[tuple, dict[str, Any]] = {}
    for rec in read_records(out):
        unique.setdefault(record_key(rec), rec)
    records = sorted(unique.values(), key=lambda r: (order.get(r["image"], len(order)), r["image"], r["task"],
                                                     r["method"], r["seed"]))
    _write_atomic(out / RESULTS, "".join(json_line(r) for r in records))
    for part in (out / PARTS).glob("*.jsonl"):
        part.unlink()
    return records


class OutInUseError(ValueError):
    """Another run is writing the same OUT (:func:`lock_out`)."""


def lock_out(out: Path) -> Any:
    """Hold OUT for one run: an exclusive ``flock`` on ``OUT/.lock`` (the kernel drops it when the process ends, a
    kill included, so a killed run never blocks its rerun). Two runs into one OUT would write the same part file and
    each merge would delete the part file the other is still appending to, losing records. Returns the open lock
    file (close it to release; None where ``fcntl`` or the file system has no locks); :class:`OutInUseError` when
    another run holds it."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        return None
    f = open(out / LOCK, "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        f.close()
        if not isinstance(err, BlockingIOError):  # a file system without locks: run unguarded, as without fcntl
            return None
        raise OutInUseError(f"--out: {str(out)!r} is being written by another diffsolve eval; wait for it to end "
                            "(then rerun to add this request's records), or use another --out") from None
    return f


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
        self.file.write(json_line(rec))
        self.file.flush()

    def close(self) -> None:
        self.file.close()
