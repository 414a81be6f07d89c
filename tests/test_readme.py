"""The README's one-minute example runs as written (at a smaller size and step count)."""

import re
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


def test_readme_example_runs(capsys):
    text = README.read_text()
    code = re.search(r"## One-minute example.*?```python\n(.*?)```", text, re.S).group(1)
    small = code.replace("size=128", "size=32").replace("Inpainting.random(128", "Inpainting.random(32")
    small = small.replace("steps=50", "steps=3").replace("progress=True", "progress=False")
    assert small.count("32") >= 2 and "steps=3" in small, "the README example changed: update this test"
    exec(compile(small, str(README), "exec"), {})
    out = capsys.readouterr().out
    assert re.search(r"PSNR: pseudo-inverse [\d.]+ dB, MPGD [\d.]+ dB", out), out


def test_readme_compressed_sensing_example_runs(capsys):
    text = README.read_text()
    code = re.search(r"A measurement need not be an image.*?```python\n(.*?)```", text, re.S).group(1)
    small = code.replace("steps=50", "steps=3")
    assert "steps=3" in small, "the README example changed: update this test"
    exec(compile(small, str(README), "exec"), {})
    out = capsys.readouterr().out
    assert re.search(r"pseudo-inverse: [\d.]+ dB\ncdps: [\d.]+ dB\ndps: [\d.]+ dB\nddrm: [\d.]+ dB", out), out


def test_readme_guided_generation_example_runs(capsys):
    text = README.read_text()
    code = re.search(r"Guided generation needs no operator.*?```python\n(.*?)```", text, re.S).group(1)
    small = code.replace("steps=50", "steps=10")
    assert small.count("steps=10") == 2, "the README example changed: update this test"
    exec(compile(small, str(README), "exec"), {})
    out = capsys.readouterr().out
    found = re.search(r"red minus blue: unguided (-?[\d.]+), guided (-?[\d.]+)", out)
    assert found, out
    assert float(found.group(2)) < float(found.group(1)) - 0.1, out  # the loss moved the samples
