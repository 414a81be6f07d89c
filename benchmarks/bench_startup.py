"""Start-up cost of the command line and of ``import diffsolve`` (fresh interpreter each time).

Each command runs ``--repeat`` times in a new Python process; the table gives the median wall time
and, for the imports, the cost beyond ``import torch`` measured in the same run. Targets (issue
"a new machine passes"): ``diffsolve --help`` / ``--version`` / an argument error <= 1 s on 2 cores
without importing torch or diffusers; ``import diffsolve`` (and its solvers) <= torch + 0.5 s.

Usage: ``python benchmarks/bench_startup.py [--repeat 7] [--out benchmarks/results/startup.md]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = {
    "python (empty)": [sys.executable, "-c", "pass"],
    "import torch": [sys.executable, "-c", "import torch"],
    "import diffsolve": [sys.executable, "-c", "import diffsolve"],
    "import diffsolve + solvers, operators, models": [
        sys.executable, "-c", "import diffsolve, diffsolve.solvers, diffsolve.operators, diffsolve.models"],
    "import diffsolve.cli": [sys.executable, "-c", "import diffsolve.cli"],
    "diffsolve --help": [sys.executable, "-m", "diffsolve", "--help"],
    "diffsolve --version": [sys.executable, "-m", "diffsolve", "--version"],
    "diffsolve restore (argument error)": [sys.executable, "-m", "diffsolve", "restore", "--input", "x.png",
                                           "--task", "box", "--method", "mpgd", "--out", "o.png",
                                           "--device", "tpu"],
}


def _time(cmd: list[str], repeat: int) -> float:
    times = []
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, env=env, check=False)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _loaded(code: str) -> str:
    probe = code + "; import sys; print(' '.join(m for m in ('torch', 'diffusers', 'triton', 'scipy') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "startup.md"))
    a = ap.parse_args()
    results = {name: _time(cmd, a.repeat) for name, cmd in CASES.items()}
    torch_s = results["import torch"]
    lines = ["## Start-up: command line and import", "",
             f"Machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}; "
             f"median of {a.repeat} fresh processes each; {time.strftime('%Y-%m-%d')}.", "",
             "| command | median (s) | beyond `import torch` (s) | heavy modules loaded |", "|---|---:|---:|---|"]
    for name, cmd in CASES.items():
        beyond = f"{results[name] - torch_s:+.2f}" if "import" in name and name != "import torch" else ""
        loaded = _loaded(cmd[2]) if cmd[1] == "-c" else ""
        lines.append(f"| `{name}` | {results[name]:.2f} | {beyond} | {loaded} |")
    text = "\n".join(lines) + "\n"
    Path(a.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
