"""Sweep bad and edge inputs over diffsolve's public API and count the outcomes (issue 15).

    python benchmarks/bad_inputs_sweep.py [--out benchmarks/results/bad-inputs.md] [--show raw,accepted-wrong]

The cases and how each is judged live in tests/_bad_input_cases.py (shared with
tests/test_bad_inputs.py). Targets: accepted-wrong 0, raw errors <= 5. CPU, tiny shapes, a cheap
ε-model (ε = 0.1·x) and the shipped digits16 model for the timestep checks: about 10-30 s.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402

from _bad_input_cases import GOOD, build_cases, judge  # noqa: E402

OUTCOMES = ("rejected", "accepted-ok", "reported", "propagated", "accepted-wrong", "raw")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bad-inputs.md"))
    parser.add_argument("--show", default="raw,accepted-wrong", help="outcomes to list case by case")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    start = time.perf_counter()
    cases = build_cases()
    results = [(case, *judge(case)) for case in cases]
    elapsed = time.perf_counter() - start
    counts = collections.Counter(outcome for _, outcome, _ in results)
    by_entry: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for case, outcome, _ in results:
        by_entry[case.entry.split("[")[0].split(".")[0].split("(")[0]][outcome] += 1
    show = set(args.show.split(","))
    lines = [
        "# Bad and edge inputs over the public API",
        "",
        f"`python benchmarks/bad_inputs_sweep.py` — {len(results)} cases (tests/_bad_input_cases.py), "
        f"torch {torch.__version__}, CPU, {elapsed:.1f} s. Each case is one call a user could write; "
        "a bad input must give a ValueError/TypeError naming the argument, an edge input a finite result in the "
        "problem's dtype (or a warning saying the solve fell short), a NaN input a NaN output.",
        "",
        "| outcome | count | meaning |",
        "|---|---:|---|",
    ]
    meaning = {"rejected": "ValueError/TypeError naming the argument",
               "accepted-ok": "valid edge input, finite result in the problem's dtype",
               "reported": "result with a warning / converged=False (solve fell short and says so)",
               "propagated": "NaN/Inf input carried to the output, never turned into a number",
               "accepted-wrong": "**target 0**: bad input accepted, or a non-finite/cast result",
               "raw": "**target <= 5**: other exception, or a message not naming the argument"}
    for outcome in OUTCOMES:
        lines.append(f"| {outcome} | {counts.get(outcome, 0)} | {meaning[outcome]} |")
    lines += ["", "Per entry (rejected / accepted-ok / reported / propagated / accepted-wrong / raw):", "",
              "| entry | " + " | ".join(OUTCOMES) + " |", "|---|" + "---:|" * len(OUTCOMES)]
    for entry in sorted(by_entry):
        lines.append(f"| {entry} | " + " | ".join(str(by_entry[entry].get(o, 0)) for o in OUTCOMES) + " |")
    listed = [(c, o, d) for c, o, d in results if o in show]
    if listed:
        lines += ["", "Cases not judged good:", ""]
        lines += [f"- `{c.name}` → {o}: {d}" for c, o, d in listed]
    lines += ["", "Good outcomes: " + ", ".join(GOOD) + "."]
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
