"""``diffsolve eval`` throughput (records per minute) on CPU with the shipped ``digits16`` model:
1 process vs 2 processes under torchrun (gloo), in one run.

Each configuration evaluates the same request from an empty OUT (held-out digits × tasks × methods ×
one seed) as a subprocess, timed end to end (imports, model load and the torchrun start-up included:
what a user waits for) and, from the records' own ``seconds``, the compute per record. The records of
every configuration are checked equal to the first one's (scores to the stored precision): the
scale-out changes the speed, not the results.

Run:  python benchmarks/bench_eval.py [--images 16] [--steps 10] [--threads2] [--name eval-cpu]
      -> benchmarks/results/NAME.{json,md}  (with the load average: the machine may be shared)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(label: str, procs: int, threads: int, batch: int, request: list[str], out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT / "src")}
    args = [*request, "--out", str(out), "--batch", str(batch), "--threads", str(threads), "--no-progress"]
    if procs == 1:
        cmd = [sys.executable, "-m", "diffsolve", "eval", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={procs}",
               f"--master-port={_free_port()}", "-m", "diffsolve", "eval", *args]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{label} failed:\n{proc.stderr[-3000:]}")
    recs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    compute = sum(r["seconds"] for r in recs)
    return {"label": label, "processes": procs, "threads_per_process": threads, "batch": batch, "records": len(recs),
            "wall_s": round(wall, 2), "records_per_min": round(len(recs) / wall * 60, 1),
            "compute_s_per_record": round(compute / len(recs), 4), "load_before": round(load, 2),
            "scores": [(r["image"], r["task"], r["method"], r["psnr"], r["ssim"]) for r in recs]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--threads2", action="store_true", help="also 1 process with 2 threads")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--name", default="eval-cpu")
    a = p.parse_args()
    request = ["--data", "digits16", "--limit", str(a.images), "--tasks", "box,sr4", "--methods", "mpgd,cdps,pinv",
               "--steps", str(a.steps), "--seeds", "0"]
    configs = [("1 process, 1 thread", 1, 1, 1), ("2 processes x 1 thread (torchrun, gloo)", 2, 1, 1),
               ("1 process, 1 thread, --batch 8", 1, 1, 8), ("2 processes x 1 thread, --batch 8", 2, 1, 8)]
    if a.threads2:  # on a loaded machine 2 OpenMP threads can be far slower (measured 12x at load 12)
        configs.insert(1, ("1 process, 2 threads", 1, 2, 1))
    tmp = Path(tempfile.mkdtemp(prefix="bench_eval_"))
    rows = []
    try:
        for k, (label, procs, threads, batch) in enumerate(configs):
            rows.append(_run(label, procs, threads, batch, request, tmp / f"c{k}"))
            print(f"{label:42s} {rows[-1]['records']} records in {rows[-1]['wall_s']:7.1f} s: "
                  f"{rows[-1]['records_per_min']:6.1f} records/min (compute {rows[-1]['compute_s_per_record']:.3f} "
                  f"s/record, load {rows[-1]['load_before']})", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ref = rows[0]["scores"]
    same_batch = {r["label"]: r["scores"] == ref for r in rows if r["batch"] == 1}
    import numpy as np

    batched = [r for r in rows if r["batch"] != 1]
    dev = {r["label"]: float(np.max(np.abs(np.array([s[3] for s in r["scores"]]) - np.array([s[3] for s in ref]))))
           for r in batched}
    same_b8 = batched[0]["scores"] == batched[1]["scores"] if len(batched) == 2 else None
    info = {"machine": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "request": " ".join(request), "rows": [{k: v for k, v in r.items() if k != "scores"} for r in rows],
            "equal_to_1_process": same_batch, "batch8_1_vs_2_processes_equal": same_b8,
            "batch8_max_psnr_difference_vs_batch1_db": dev}
    res = ROOT / "benchmarks" / "results"
    res.mkdir(exist_ok=True)
    (res / f"{a.name}.json").write_text(json.dumps(info, indent=1) + "\n")
    lines = [f"# diffsolve eval throughput on CPU ({a.name})", "",
             f"`diffsolve eval {' '.join(request)}` from an empty OUT, shipped digits16 model, {os.cpu_count()} "
             "CPU cores. **The machine is shared with other agents' jobs** (load average before each run in the "
             "table): the numbers are indicative; ratios within this one run are the meaningful part.", "",
             "| configuration | records | wall (s) | records/min | compute s/record | load |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['records']} | {r['wall_s']} | {r['records_per_min']} | "
                     f"{r['compute_s_per_record']} | {r['load_before']} |")
    lines += ["", "Wall time includes interpreter start, imports, the model load and (torchrun) the process "
              "group start-up. Records equal to the 1-process run (batch 1): "
              + ", ".join(f"{k}: {v}" for k, v in same_batch.items()) + f". Batch 8, 1 vs 2 processes equal: "
              f"{same_b8}; batch 8 vs batch 1, max PSNR difference (float32 round-off of batched convolutions): "
              + ", ".join(f"{v:.2g} dB" for v in dev.values()) + "."]
    (res / f"{a.name}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {res / (a.name + '.md')}")


if __name__ == "__main__":
    main()
