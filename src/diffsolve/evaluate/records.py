"""What ``diffsolve eval`` keeps on disk in OUT: the pinned settings and data (``config.json``), the records
(``results.jsonl``, one part file per rank while a run is going) and the checked request they belong to
(:class:`EvalConfig`). Record fields and the resume rules: :mod:`diffsolve.evaluate`."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CONFIG", "PARTS", "PINNED", "RESULTS", "EvalConfig", "PartWriter", "check_resume", "merge", "read_pinned",
           "read_records", "record_key", "write_config"]

RESULTS = "results.jsonl"
PARTS = "parts"
CONFIG = "config.json"
#: The settings a record depends on besides its key: a rerun into the same OUT must match them.
PINNED = ("size", "steps", "model", "sigma", "channels", "draws", "discrepancy")
#: what a pinned setting was before config.json recorded it (runs made before ``draws`` existed drew once, before
#: ``discrepancy`` existed every method ended as its default did then)
PINNED_BEFORE = {"draws": 1, "discrepancy": True}


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
        if not isinstance(self.out, (str, Path)):
            fail("out", "a folder path (str or Path)")
        self.out = Path(self.out)

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
