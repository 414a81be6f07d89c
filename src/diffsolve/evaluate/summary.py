"""The summary of an evaluation: mean ± std per task × method (``summary.csv``, ``summary.md``) and the
quality-against-time figure (``quality_vs_time.png``, with matplotlib)."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..solvers import UNFIT_CONSISTENCY
from .records import EvalConfig

__all__ = ["METRICS", "plot_quality_vs_time", "summarize", "time_axis", "unfit_lines", "write_summary"]

METRICS = ("psnr", "ssim", "dc", "cast", "seconds")


def summarize(records: Sequence[dict[str, Any]], tasks: Sequence[str], methods: Sequence[str]) -> list[dict]:
    """Mean ± std (sample std, 0 for one record) of psnr, ssim, dc, seconds per task × method (dc: over the
    records that have it; None when none has), and ``unfit``: the records whose dc exceeds
    ``UNFIT_CONSISTENCY`` (y largely ignored: the solvers' DataConsistencyWarning, counted here instead).
    A value that is not finite (PSNR ``inf`` of an exact recovery, stored as the string "inf") is read with
    float(): a mean over it is inf (or nan), and its std is None (undefined)."""
    rows = []
    for task in tasks:
        for method in methods:
            group = [r for r in records if r["task"] == task and r["method"] == method]
            if not group:
                continue
            row: dict[str, Any] = {"task": task, "method": method, "n": len(group),
                                   "unfit": sum(1 for r in group if float(r.get("dc") or 0.0) > UNFIT_CONSISTENCY)}
            for key in METRICS:
                vals = [float(r[key]) for r in group if r.get(key) is not None]
                if not vals:
                    row[f"{key}_mean"] = row[f"{key}_std"] = None
                    continue
                t = torch.tensor(vals, dtype=torch.float64)
                mean = float(t.mean())
                row[f"{key}_mean"] = mean
                row[f"{key}_std"] = None if not math.isfinite(mean) or len(t) < 2 else float(t.std())  # n = 1: none
            rows.append(row)
    return rows


def unfit_lines(rows: list[dict]) -> list[str]:
    """"METHOD × TASK: k of n records" for the summary rows with records whose dc exceeds UNFIT_CONSISTENCY."""
    return [f"{r['method']} × {r['task']}: {r['unfit']} of {r['n']} records" for r in rows if r.get("unfit")]


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
             (f"model `{cfg.model}`, {cfg.size}x{cfg.size}, {cfg.steps} steps, " if cfg.uses_model
              else f"model-free methods (no model, no steps), {cfg.size}x{cfg.size}, ")
             + f"sigma {cfg.sigma} (in [-1, 1]), "
             f"seeds {','.join(map(str, cfg.seeds))}. Mean ± std over images × seeds; seconds per record."
             + (f" Each model-based record scores the mean of {cfg.draws} draws (the model-free methods are "
                "deterministic: one solve)." if cfg.draws > 1 else "")
             + (" `--no-discrepancy`: the model-based methods return the paper's result (no final pull of a result "
                "the noise cannot explain towards y)." if not cfg.discrepancy else "")
             + _params_line(cfg),
             "",
             "DC is the data consistency ‖A x̂ − y‖/(σ√m), m = measurement entries per sample: 1 means the "
             "residual matches the noise level.",
             "",
             "LPIPS and FID: not computed (they need network weights; diffsolve never downloads them).",
             "",
             "Cast is the colour cast max_c |mean(x̂_c) − mean(x_c)| in [0, 1] units (a tint over the whole image).",
             "",
             "| task | method | n | PSNR (dB) | SSIM | DC | cast | seconds |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['method']} | {r['n']} | {_cell(r, 'psnr', '.2f', '.2f')} | "
                     f"{_cell(r, 'ssim', '.4f', '.4f')} | {_cell(r, 'dc', '.3f', '.3f')} | "
                     f"{_cell(r, 'cast', '.3f', '.3f')} | {_cell(r, 'seconds', '.3g', '.2g')} |")
    if any(r["psnr_mean"] == math.inf for r in rows):
        lines += ["", "PSNR inf: some x̂ equal x exactly (no noise to undo, e.g. sigma 0), and a mean over them is "
                  "inf; results.jsonl writes that PSNR as the string \"inf\"."]
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


def _cell(row: dict, key: str, mean: str, std: str) -> str:
    """"mean ± std" of ``key`` for summary.md: "n/a" without values, the mean alone where the std is undefined."""
    m, s = row[f"{key}_mean"], row[f"{key}_std"]
    return "n/a" if m is None else f"{m:{mean}}" if s is None else f"{m:{mean}} ± {s:{std}}"


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
    """The quality-vs-time figure (one panel per task; each point labelled with its method; a method whose mean PSNR
    is inf is named in its panel instead)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(3.4 * len(tasks), 3.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        group = [r for r in rows if r["task"] == task and math.isfinite(r["psnr_mean"])]
        infinite = [r["method"] for r in rows if r["task"] == task and r["psnr_mean"] == math.inf]
        if infinite:  # no height to place them at: named in the panel instead
            ax.text(0.02, 0.98, "PSNR inf: " + ", ".join(infinite), transform=ax.transAxes, va="top", fontsize=6)
        xs = [max(r["seconds_mean"], 1e-6) for r in group]
        ax.set_title(task, fontsize=9)
        if not group:
            continue
        for x, r in zip(xs, group):
            ax.errorbar(x, r["psnr_mean"], yerr=r["psnr_std"], fmt="o", capsize=2, label=r["method"])
            ax.annotate(r["method"], (x, r["psnr_mean"]), textcoords="offset points", xytext=(4, 4), fontsize=6)
        time_axis(ax, xs)
        ax.set_xlabel("seconds per record", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("PSNR (dB)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _params_line(cfg: EvalConfig) -> str:
    """The task parameters that differ from the defaults, as the command line's flags (empty: none)."""
    from .records import DEFAULT_PARAMS

    changed = {k: v for k, v in cfg.params.items() if v != DEFAULT_PARAMS[k]}
    return (" Task parameters: " + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in changed.items()) + "."
            if changed else "")


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

    title = f"{cfg.model}, {cfg.size}x{cfg.size}, {cfg.steps} steps" if cfg.uses_model else f"{cfg.size}x{cfg.size}"
    fig = plot_quality_vs_time(rows, tasks, title)
    fig.savefig(path, dpi=120)
    plt.close(fig)
