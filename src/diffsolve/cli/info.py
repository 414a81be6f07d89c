"""``diffsolve info``: versions, kernel backends (and why any is unavailable), the dispatch table, shipped
models."""

from __future__ import annotations

import sys
from typing import Any

from .. import __version__
from .common import BUNDLED_ABOUT, BUNDLED_SETS, HelpFormatter, model_geometry

__all__ = ["add_parser", "info", "run"]


def add_parser(subparsers: Any):
    return subparsers.add_parser("info", formatter_class=HelpFormatter, help="versions, backends and shipped models")


def run(args: Any = None) -> int:
    info()
    return 0


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def info(out=None) -> dict:
    """Print (to ``out``, default stdout) and return versions, backends (with why-not), the kernel
    dispatch table and the shipped models."""
    out = sys.stdout if out is None else out
    import platform

    import torch

    from .. import kernels
    from ..models.default import DEFAULT_MODELS, default_model_info

    versions = {"diffsolve": __version__, "python": platform.python_version()}
    versions.update({d: _version(d) for d in ("torch", "triton", "diffusers", "numpy", "scipy", "torchmetrics")})
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "not available"
    result: dict = {"versions": versions, "cuda": cuda, "backends": {}, "models": {}}
    print("versions:", file=out)
    for k, v in versions.items():
        print(f"  {k:13s} {v}", file=out)
    print(f"  {'cuda':13s} {cuda}", file=out)
    print("backends:", file=out)
    for name, (ok, why) in kernels.backends().items():
        result["backends"][name] = {"available": ok, "reason": why}
        print(f"  {name:7s} {'yes' if ok else 'no ':3s}  {why}", file=out)
    table = getattr(kernels, "dispatch_table", None)
    if table is not None:
        rows = table()
        result["dispatch"] = rows
        print("kernels (implementations usable here; what backend='auto' runs on cpu / cuda):", file=out)
        for line in _dispatch_lines(rows):
            print("  " + line, file=out)
    from ..methods import METHODS

    print("methods (what each needs; model calls per step):", file=out)
    result["methods"] = {}
    for name, m in METHODS.items():
        result["methods"][name] = {"summary": m.summary, "needs": m.needs, "nfe": m.nfe, "backward": m.backward,
                                   "required": list(m.required), "steps": m.steps}
        req = f" [needs {', '.join(o + '=' for o in m.required)}]" if m.required else ""
        steps = f"; best at {m.steps}" if m.steps else ""
        api = "" if m.cli else " (Python API only: " + ("an unconditional sampler)" if m.kind == "sampler"
                                                       else "needs an autoencoder the CLI cannot build)")
        print(f"  {name:9s} {m.needs}; {m.nfe} per step{steps}{req}{api}", file=out)
    print("  given σ, every inverse method ends with a residual y's noise explains, ‖A x̂ − y‖² ≤ σ²(m + 3√(2m)) "
          "(discrepancy=False, --no-discrepancy: the paper's result)", file=out)
    print("shipped models:", file=out)
    for name in DEFAULT_MODELS:
        try:
            m = default_model_info(name)
        except FileNotFoundError as err:
            result["models"][name] = {"error": str(err)}
            print(f"  {name:9s} missing: {err}", file=out)
            continue
        result["models"][name] = m
        c, s = m["in_channels"], m["sample_size"]
        geo = model_geometry(name)
        shape = (f"(B, {c}, {s}, {s})" if geo["fixed"] is not None
                 else f"(B, {c}, H, W), H and W multiples of {geo['multiple']}, trained on {s}x{s} crops")
        params = f"{m['params'] / 1e6:.2f}M params" if m["params"] else "? params"
        print(f"  {name:9s} {shape}, {params}, {m['bytes'] / 1e6:.1f} MB, T = {geo['timesteps']} diffusion timesteps "
              f"(sampling steps <= T); trained {m['steps']} optimiser steps on {m['device']}", file=out)
    from ..evaluate import bundled_names

    print("bundled image sets (eval --data NAME):", file=out)
    result["data"] = {name: bundled_names(name) for name in BUNDLED_SETS}
    for name in BUNDLED_SETS:
        print(f"  {name:9s} {BUNDLED_ABOUT[name]}", file=out)
    return result


def _dispatch_lines(rows: list) -> list[str]:
    """The dispatch table as aligned text: one row per op, yes/no for booleans."""
    if not rows:
        return []
    dicts = [row if isinstance(row, dict) else dict(enumerate(row)) for row in rows]
    keys = list(dicts[0])
    cells = [[str(k) for k in keys]] + [["yes" if d.get(k) is True else "no" if d.get(k) is False else str(d.get(k, ""))
                                         for k in keys] for d in dicts]
    widths = [max(len(r[i]) for r in cells) for i in range(len(keys))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
