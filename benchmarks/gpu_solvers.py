"""Every model-based method end to end on one device: finite, on the device, data consistency, PSNR, seconds.

The GPU issue's check that whole solvers (not only kernels) run on CUDA; on a lent GPU it is run by
``bash benchmarks/gpu_session.sh solvers``, and here on the CPU with ``--device cpu`` to test the script itself.

    python benchmarks/gpu_solvers.py [--device cuda] [--size 128] [--steps 20] [--backends auto torch]
                                     [--methods ...] [--tasks ...] [--out results/gpu-solvers]

Per (backend, method, task): the held-out photos hopper and camera (one batch of 2, one generator per sample),
σ = 0.05, the `patches` model, the command line's options (``diffsolve.methods.restore``). The first call of
each (backend, method) is a warm-up (Triton compiles there) and is not timed; the timed call repeats it. Each
row also says whether the result is finite and on the device. The same seeds on the ``auto`` (Triton) and
``torch`` backends give the same draws only up to each backend's own noise stream (kernels.md), so the table
compares quality and time, not bits. Writes ``OUT.md`` and ``OUT.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_methods import SIGMA, measure  # noqa: E402

TASKS = ["gaussian_blur", "motion_blur", "box", "random", "sr4"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(args: argparse.Namespace) -> dict:
    from diffsolve import methods as registry
    from diffsolve.data import photo
    from diffsolve.metrics import data_consistency, scores
    from diffsolve.models import load_default
    from diffsolve.tasks import make_operator

    device = torch.device(args.device)
    model = load_default("patches", device=device)
    x = torch.stack([photo(name, size=args.size) for name in ("hopper", "camera")]).to(device)
    names = args.methods or [n for n, m in registry.METHODS.items() if m.kind == "inverse" and m.uses_model]
    rows = []
    for backend in args.backends:
        for task in args.tasks:
            op = make_operator(task, (args.size, args.size))
            op = op if backend == "auto" else op.with_backend(backend)
            y = measure(op, x.cpu(), seed=args.size).to(device)  # the benchmarks' y, drawn on the CPU
            for name in names:
                spec = registry.get_method(name)
                if spec.unsupported(op, (args.size, args.size), SIGMA) is not None:
                    continue
                row = {"backend": backend, "task": task, "method": name}
                try:
                    for timed in (False, True):
                        gens = [torch.Generator(device=device).manual_seed(i) for i in range(x.shape[0])]
                        _sync(device)
                        start = time.perf_counter()
                        xr, _ = registry.restore(name, model, op, y, steps=args.steps, sigma=SIGMA, generator=gens)
                        _sync(device)
                        if timed:
                            row["sec"] = time.perf_counter() - start
                    row["finite"] = bool(torch.isfinite(xr).all())
                    row["on_device"] = xr.device.type == device.type
                    row["psnr"] = float(scores(xr, x)["psnr"].mean())
                    row["dc"] = float(data_consistency(op, xr, y, SIGMA).mean())
                except Exception as err:  # a failure is a result here: record it and go on
                    row["error"] = f"{type(err).__name__}: {str(err)[:200]}"
                rows.append(row)
                print(json.dumps(row), flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {"device": name, "torch": torch.__version__, "size": args.size, "steps": args.steps, "rows": rows}


def write(result: dict, out: Path) -> None:
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    rows = result["rows"]
    bad = [r for r in rows if "error" in r or not r.get("finite") or not r.get("on_device")]
    lines = ["# Whole solvers on one device (benchmarks/gpu_solvers.py)", "",
             f"Device: {result['device']}, torch {result['torch']}; hopper + camera at {result['size']}², batch 2, "
             f"{result['steps']} steps, σ = 0.05, the `patches` model, each method at the command line's defaults. "
             "Seconds: the second of two identical calls (the first compiles).", "",
             f"**{len(rows) - len(bad)} of {len(rows)} runs finite and on the device.**", "",
             "| backend | task | method | PSNR | DC | s (batch of 2) | note |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        note = r.get("error", "" if r.get("finite") and r.get("on_device") else "NOT FINITE / NOT ON DEVICE")
        cells = (f"{r['psnr']:.2f} | {r['dc']:.2f} | {r['sec']:.2f}" if "psnr" in r else "— | — | —")
        lines.append(f"| {r['backend']} | {r['task']} | {r['method']} | {cells} | {note} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--backends", nargs="+", default=["auto", "torch"])
    parser.add_argument("--methods", nargs="+", default=None)
    parser.add_argument("--tasks", nargs="+", default=TASKS)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "gpu-solvers")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here; use --device cpu to test the script")
    write(run(args), args.out)


if __name__ == "__main__":
    main()
