"""benchmarks/report.py turns saved pytest-benchmark runs into Markdown tables."""

import importlib.util
import json
from pathlib import Path

_spec = importlib.util.spec_from_file_location("report", Path(__file__).parents[1] / "benchmarks" / "report.py")
report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(report)


def _bench(name, median, **extra):
    return {"name": name, "group": "blur", "stats": {"median": median}, "extra_info": extra}


def test_report_tables_ratios_and_fragments(tmp_path):
    run = {"datetime": "2026-11-22T19:00:00", "benchmarks": [
        _bench("conv2d", 0.020, baseline=True, device="cpu", torch="2.13"),
        _bench("fused", 0.001, bytes=4e6),
    ]}
    (tmp_path / "cpu-run.json").write_text(json.dumps(run))
    (tmp_path / "z-fidelity.md").write_text("## Fidelity\n\n| a |\n")
    text = report.render(tmp_path)
    assert "## cpu-run" in text and "Machine: device cpu; torch 2.13" in text
    assert "| `fused` | 1.000 | 20.00× | 4.0 |" in text
    assert "| `conv2d` | 20.000 | 1.00× |  |" in text
    assert text.index("| `fused`") < text.index("| `conv2d`") < text.index("## Fidelity")


def test_fragment_links_point_from_results_md_one_folder_up():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("report", Path(__file__).parents[1] / "benchmarks" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    text = ("[a](cdps-bar.md) ![p](x.png) [b](benchmarks/results/y.md) [c](benchmarks/z.py) [d](src/m.py) "
            "[e](https://x.org/a.md) [f](results/q.md) [g](#anchor) rule (documented)")
    assert report._relinked(text) == ("[a](results/cdps-bar.md) ![p](results/x.png) [b](results/y.md) [c](z.py) "
                                      "[d](../src/m.py) [e](https://x.org/a.md) [f](results/q.md) [g](#anchor) "
                                      "rule (documented)")
