"""One draw against the mean of K, the way a user measures it: ``diffsolve eval --data heldout`` twice, once
with one draw per record and once with ``--draws K``, the seed methods and Tikhonov on every demo task.
(a report, not a test)

    python benchmarks/bench_eval_draws.py [--size 64] [--steps 30] [--draws 4] [--methods mpgd cdps dps tikhonov]
    python benchmarks/bench_eval_draws.py --render OUT1 OUTK     # tables from two finished eval folders

Each run is the command line itself (a subprocess, one thread), so the records are the ones ``eval`` writes;
draw 0 of the K-draw run is the one-draw run's draw (``diffsolve.evaluate``: draw k extends the record's streams
by k). Writes ``results/eval-draws-heldout.md``: per task × method, mean PSNR / data consistency over the four
held-out photos for one draw and for the mean of K, against Tikhonov − 0.5 dB (the issues' bar).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
TASKS = "gaussian_blur,motion_blur,box,random,sr4"


def run_eval(out: Path, size: int, steps: int, methods: list[str], draws: int) -> None:
    cmd = [sys.executable, "-m", "diffsolve", "eval", "--data", "heldout", "--size", str(size), "--steps", str(steps),
           "--methods", ",".join(methods), "--tasks", TASKS, "--threads", "1", "--no-progress", "--out", str(out)]
    subprocess.run(cmd + (["--draws", str(draws)] if draws > 1 else []), check=True)


def _torch_version() -> str:
    from importlib import metadata

    return metadata.version("torch")


def _rows(out: Path) -> dict[tuple[str, str], dict]:
    with open(out / "summary.csv", newline="", encoding="utf-8") as f:
        return {(r["task"], r["method"]): r for r in csv.DictReader(f)}


def render(one: Path, many: Path) -> str:
    a, b = _rows(one), _rows(many)
    cfg1, cfg = (json.loads((p / "config.json").read_text()) for p in (one, many))
    k = cfg.get("draws", 1)
    lines = ["# One draw against the mean of K on the held-out photos (benchmarks/bench_eval_draws.py)", "",
             f"`diffsolve eval --data heldout --size {cfg['size']} --steps {cfg['steps']} --tasks {TASKS} --threads 1` "
             f"with one draw and with `--draws {k}` ({platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores visible, one thread per run, torch {_torch_version()}, "
             f"{time.strftime('%Y-%m-%d')}); model `{cfg['model']}`, σ = {cfg['sigma']}, the four held-out photos "
             f"(camera, grass, hopper, raccoon), seed 0. Cell: mean PSNR dB / mean data consistency over the photos; "
             "**bold**: PSNR ≥ Tikhonov − 0.5 dB (the bar) and consistency in [0.5, 1.5], on these means (one photo "
             "can miss where the mean passes: results/methods_photos_*.md has them one by one).", "",
             f"| task | Tikhonov | bar | method | one draw | mean of {k} | gain (dB) |", "|---|---|---|---|---|---|---|"]
    assert cfg1["size"] == cfg["size"] and cfg1["steps"] == cfg["steps"], "the two runs differ in size or steps"
    for task in TASKS.split(","):
        tik = float(a[(task, "tikhonov")]["psnr_mean"])
        for (t, method), r1 in a.items():
            if t != task or method == "tikhonov":
                continue
            rk = b[(task, method)]

            def cell(r: dict) -> str:
                p, dc = float(r["psnr_mean"]), float(r["dc_mean"])
                text = f"{p:.2f} / {dc:.2f}"
                return f"**{text}**" if p >= tik - 0.5 and 0.5 <= dc <= 1.5 else text

            gain = float(rk["psnr_mean"]) - float(r1["psnr_mean"])
            lines.append(f"| {task} | {tik:.2f} | {tik - 0.5:.2f} | {method} | {cell(r1)} | {cell(rk)} | {gain:+.2f} |")
    lines += ["", "The mean of K draws is an estimate of the posterior mean; its data consistency falls below a "
              "draw's because averaging removes part of each draw's own noise-level misfit.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--draws", type=int, default=4)
    p.add_argument("--methods", nargs="+", default=["mpgd", "cdps", "dps", "tikhonov"])
    p.add_argument("--render", nargs=2, type=Path, metavar=("OUT1", "OUTK"), help="tables from two eval folders")
    args = p.parse_args(argv)
    if not args.render and "tikhonov" not in args.methods:  # the tables' bar: checked before the two eval runs
        p.error("--methods must include tikhonov (the tables' bar is Tikhonov − 0.5 dB)")
    if args.render:
        one, many = args.render
    else:
        tmp = Path(tempfile.mkdtemp(prefix="eval-draws-"))
        one, many = tmp / "one", tmp / "many"
        run_eval(one, args.size, args.steps, args.methods, 1)
        run_eval(many, args.size, args.steps, args.methods, args.draws)
    text = render(one, many)
    (RESULTS / "eval-draws-heldout.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
