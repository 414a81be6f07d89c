"""PaddedDenoiser against native sizes: does reflect-padding the model's input cost quality? (a report, not a test)

    python benchmarks/bench_padded.py [--methods ...] [--tasks ...] [--images hopper camera grass] [--steps 30]
                                      [--modes] [--merge] [--report]

The `patches` model needs sides divisible by 8. For each held-out photo the same scene is restored three ways,
σ = 0.05, each method at its defaults (the command line's options, σ passed where taken):

- ``native 64``: the 64×64 crop (the model's own size);
- ``padded 60``: the central 60×60 crop, the model's input reflect-padded to 64×64 (PaddedDenoiser);
- ``cropped 56``: the central 56×56 crop (what the old refusal told users to do: crop to the multiple).

Each is measured at its own size (its own operator and noise draw), so the rows differ by a draw as well; the
table compares PSNR on the central 56×56 region every variant restores, the data consistency, and the PSNR
of each restored image's own 2-pixel border ring (for ``padded 60`` where the model saw mirrored noise).
``--modes`` runs the padded 60² variant once per padding mode (reflect, replicate, circular) and once with the
reflect padding split between both sides of each axis (instead of after the last row and column); ``--report``
rewrites the .md from the saved .json. Writes ``benchmarks/results/padded-denoiser.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_methods import RESULTS, SIGMA, machine, measure  # noqa: E402

OUT = RESULTS / "padded-denoiser"
VARIANTS = {"native 64": (64, 0), "padded 60": (60, 2), "cropped 56": (56, 4)}  # side, offset in the 64² crop
DEFAULT_METHODS = ["mpgd", "cdps", "dps", "pigdm", "ddrm", "diffpir", "ddnm", "reddiff", "mmps", "daps"]


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR (dB) of a one-image batch: ``diffsolve.metrics.psnr``."""
    from diffsolve.metrics import psnr

    return float(psnr(a, b).mean())


def _ring_psnr(xr: torch.Tensor, x: torch.Tensor, origin: int, side: int) -> float:
    """PSNR over the 2-pixel border ring of the side×side window at (origin, origin)."""
    window = (..., slice(origin, origin + side), slice(origin, origin + side))
    err = ((xr[window].clamp(-1, 1) - x[window]) ** 2).mean(1)  # (B, side, side)
    ring = torch.ones(side, side, dtype=torch.bool)
    ring[2:side - 2, 2:side - 2] = False
    return 10 * torch.log10(torch.tensor(4.0) / err[:, ring].mean()).item()


def run(methods: list[str], tasks: list[str], images: list[str], steps: int) -> list[dict]:
    from diffsolve import methods as registry
    from diffsolve.data import photo
    from diffsolve.metrics import data_consistency
    from diffsolve.models import PaddedDenoiser, load_default
    from diffsolve.tasks import make_operator

    model = load_default("patches")
    padded = PaddedDenoiser(model)
    rows = []
    for image in images:
        full = photo(image, size=64)[None]
        for task in tasks:
            for variant, (side, off) in VARIANTS.items():
                x = full[..., off:off + side, off:off + side]
                op = make_operator(task, (side, side))
                y = measure(op, x, seed=side)
                for name in methods:
                    spec = registry.get_method(name)
                    if spec.unsupported(op, (side, side), SIGMA) is not None:
                        continue
                    start = time.perf_counter()
                    xr, _ = registry.restore(name, padded if side % 8 else model, op, y, steps=steps, sigma=SIGMA,
                                             generator=torch.Generator().manual_seed(0))
                    sec = time.perf_counter() - start
                    c = 4 - off  # the central 56² inside this variant's crop
                    row = {"image": image, "task": task, "variant": variant, "method": name, "steps": steps,
                           "psnr_center": _psnr(xr[..., c:c + 56, c:c + 56], x[..., c:c + 56, c:c + 56]),
                           "psnr": _psnr(xr, x), "dc": float(data_consistency(op, xr, y, SIGMA)), "sec": sec}
                    row["psnr_edge"] = _ring_psnr(xr, x, 0, side)  # the restored image's own 2-pixel border
                    rows.append(row)
                    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}),
                          flush=True)
    return rows


def _both_sides():
    """PaddedDenoiser with the padding split between both sides of each axis (the layout it used first)."""
    from diffsolve.models import PaddedDenoiser

    class BothSides(PaddedDenoiser):
        def _padding(self, size: tuple[int, int]) -> tuple[int, int, int, int]:
            ph, pw = -size[0] % self.multiple, -size[1] % self.multiple
            return pw // 2, pw - pw // 2, ph // 2, ph - ph // 2

    return BothSides


VARIANT_MODES = ("reflect", "replicate", "circular", "reflect, both sides")


def run_modes(methods: list[str], tasks: list[str], images: list[str], steps: int) -> list[dict]:
    """The padded 60² variant with each padding mode (``PaddedDenoiser(mode=...)``) and with reflect padding
    split between both sides: central 56² and border."""
    from diffsolve import methods as registry
    from diffsolve.data import photo
    from diffsolve.models import PaddedDenoiser, load_default
    from diffsolve.tasks import make_operator

    model = load_default("patches")
    rows = []
    for image in images:
        x = photo(image, size=64)[None][..., 2:62, 2:62]
        for task in tasks:
            op = make_operator(task, (60, 60))
            y = measure(op, x, seed=60)
            for name in methods:
                if registry.get_method(name).unsupported(op, (60, 60), SIGMA) is not None:
                    continue
                for mode in VARIANT_MODES:
                    den = _both_sides()(model) if mode == "reflect, both sides" else PaddedDenoiser(model, mode=mode)
                    xr, _ = registry.restore(name, den, op, y, steps=steps, sigma=SIGMA,
                                             generator=torch.Generator().manual_seed(0))
                    rows.append({"image": image, "task": task, "method": name, "mode": mode, "steps": steps,
                                 "psnr_center": _psnr(xr[..., 2:58, 2:58], x[..., 2:58, 2:58]),
                                 "psnr_edge": _ring_psnr(xr, x, 0, 60)})
                    print(json.dumps(rows[-1]), flush=True)
    return rows


def _modes_section(modes: list[dict]) -> list[str]:
    import statistics

    by = {(r["image"], r["task"], r["method"], r["mode"]): r for r in modes}
    cells = sorted(c for c in {k[:3] for k in by} if all(c + (v,) in by for v in VARIANT_MODES))
    lines = ["", "## Padding mode (padded 60 only)", "",
             f"`python benchmarks/bench_padded.py --modes`: {len(cells)} image × task × method cells "
             f"({', '.join(sorted({c[1] for c in cells}))}; {', '.join(sorted({c[2] for c in cells}))}), each with "
             "`PaddedDenoiser(mode=...)`, and reflect padding split between both sides of each axis instead of "
             "after the last row and column. The default (reflect, after) minus the other variant:", "",
             "| other variant | central 56²: mean / range (dB) | border: mean / range (dB) | border: default ≥ other |",
             "|---|---|---|---|"]
    for other in VARIANT_MODES[1:]:
        dc = [by[c + ("reflect",)]["psnr_center"] - by[c + (other,)]["psnr_center"] for c in cells]
        de = [by[c + ("reflect",)]["psnr_edge"] - by[c + (other,)]["psnr_edge"] for c in cells]
        lines.append(f"| {other} | {statistics.mean(dc):+.2f} / {min(dc):+.2f} … {max(dc):+.2f} | "
                     f"{statistics.mean(de):+.2f} / {min(de):+.2f} … {max(de):+.2f} | "
                     f"{sum(d >= 0 for d in de)} of {len(de)} |")
    return lines


def write(rows: list[dict], args: argparse.Namespace, modes: list[dict] | None = None,
          machine_line: str | None = None) -> None:
    machine_line = machine_line or machine()
    OUT.with_suffix(".json").write_text(json.dumps({"machine": machine_line, "rows": rows, "modes": modes or []},
                                                   indent=1))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    images = list(dict.fromkeys(r["image"] for r in rows))

    def mean(key: str, **match: str) -> float | None:
        vals = [r[key] for r in rows if all(r[k] == v for k, v in match.items()) and key in r]
        return sum(vals) / len(vals) if vals else None

    lines = ["# PaddedDenoiser: reflect-padding the model's input against native sizes", "",
             f"`python benchmarks/bench_padded.py` ({machine_line}); held-out photos {', '.join(images)} "
             "(64×64 crops), "
             f"σ = 0.05, {rows[0]['steps']} steps, each method at its defaults, the `patches` model (sides divisible "
             "by 8). `native 64`: the 64² crop; `padded 60`: its central 60² crop with the model's input "
             "reflect-padded to 64² (`diffsolve.models.PaddedDenoiser`); `cropped 56`: the central 56² crop. Each "
             "variant has its own operator and noise draw. Cell: mean over the photos of the PSNR (dB) on the "
             "central 56² every variant restores / data consistency.", "",
             "Border: PSNR on each restored image's own 2-pixel border ring (native / padded / cropped).", "",
             "| method | task | native 64 | padded 60 | cropped 56 | border: native / padded / cropped |",
             "|---|---|---|---|---|---|"]
    for name in methods:
        for task in tasks:
            cells = []
            for variant in VARIANTS:
                p, d = mean("psnr_center", method=name, task=task, variant=variant), mean(
                    "dc", method=name, task=task, variant=variant)
                cells.append("—" if p is None else f"{p:.2f} / {d:.2f}")
            if cells[0] == "—":
                continue
            edges = " / ".join(f"{mean('psnr_edge', method=name, task=task, variant=v):.2f}" for v in VARIANTS)
            lines.append(f"| {name} | {task} | " + " | ".join(cells) + f" | {edges} |")
    pairs = [(r, o) for r in rows if r["variant"] == "padded 60" for o in rows
             if o["variant"] != "padded 60" and (o["image"], o["task"], o["method"]) == (r["image"], r["task"],
                                                                                       r["method"])]
    lines += ["", "## Summary", ""]
    for other in ("native 64", "cropped 56"):
        d = [r["psnr_center"] - o["psnr_center"] for r, o in pairs if o["variant"] == other]
        d.sort()
        lines.append(f"- padded 60 − {other}, central 56² PSNR over {len(d)} image × task × method cells: mean "
                     f"{sum(d) / len(d):+.2f} dB, median {d[len(d) // 2]:+.2f}, range {d[0]:+.2f} … {d[-1]:+.2f}.")
    for other in ("native 64", "cropped 56"):
        d = sorted(r["psnr_edge"] - o["psnr_edge"] for r, o in pairs if o["variant"] == other)
        lines.append(f"- The image's own 2-pixel border (where the padded model saw mirrored noise), padded 60 − "
                     f"{other}: mean {sum(d) / len(d):+.2f} dB, median {d[len(d) // 2]:+.2f}, range {d[0]:+.2f} … "
                     f"{d[-1]:+.2f}.")
    dcs = [r["dc"] for r in rows if r["variant"] == "padded 60"]
    lines.append(f"- Data consistency of the padded runs: {min(dcs):.2f} … {max(dcs):.2f}.")
    if modes:
        lines += _modes_section(modes)
    lines += ["", "## Reading", "", READING]
    OUT.with_suffix(".md").write_text("\n".join(lines) + "\n")


READING = """Hand-written from the tables above (rerun with the closing discrepancy pull and every current default).

- **Inside the image** (the central 56² every variant restores) padding costs nothing measurable: padded 60 −
  cropped 56 is −0.07 dB on average (median −0.10) over 144 image × task × method cells, padded 60 − native 64
  +0.22 dB. Single cells move by up to ±2–3 dB either way: each variant has its own operator, noise and draw, and
  one draw's PSNR moves by ±0.3–1.3 dB with the seed on these photos (box-spread.md).
- **On the image's own 2-pixel border** padding is level with cropping on average (−0.08 dB). Random inpainting is
  the task where the mirrored noise (beyond the bottom and right borders) shows: its border is 0.6–1.3 dB under
  the cropped image's for C-DPS, DPS, MMPS, DiffPIR, ΠGDM, MPGD and DAPS (−1.34 … −0.60 dB, mean over the photos),
  within ±0.3 dB for DDRM, DDNM+ and RED-diff; C-DPS's and DAPS's motion-blur borders are 1.0–1.2 dB under too,
  and DAPS's SR ×4 border 0.8 dB. Elsewhere the border is within about ±1 dB of the cropped image's.
- **Data consistency** of every padded run is 0.64–1.07 (every method given σ ends within the noise), with padding
  as without it.
- **Layout and mode**: padding after the last row and column (the default) against splitting it between both
  sides of each axis: +0.19 dB on the border on average (99 of 144 cells), level inside; on random inpainting
  +0.64 dB (−0.22 … +1.68, 26 of 30 cells), on the blurs +0.01–0.07. With both sides every border is next to
  mirrored noise, with the default only the bottom and right ones. Reflect against circular padding (independent
  noise, opposite edges joined): +0.94 dB on the border (108 of 144); against replicate +0.39 dB (99 of 144);
  inside the image all agree to within 0.1 dB on average.
- Hence the command line pads with a notice instead of refusing: a 100×75 photo keeps all its pixels, at the
  price of a noisier bottom and right edge on random masks."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=DEFAULT_METHODS)
    parser.add_argument("--tasks", nargs="+", default=["gaussian_blur", "motion_blur", "box", "random", "sr4"])
    parser.add_argument("--images", nargs="+", default=["hopper", "camera", "grass"])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--modes", action="store_true", help="compare the padding modes (padded 60 only)")
    parser.add_argument("--merge", action="store_true", help="add these rows to the existing .json's")
    parser.add_argument("--report", action="store_true", help="only rewrite the .md from the saved .json")
    args = parser.parse_args()
    if args.report:
        saved = json.loads(OUT.with_suffix(".json").read_text())
        return write(saved["rows"], args, saved.get("modes"), saved["machine"])
    torch.set_num_threads(1)
    new = (run_modes if args.modes else run)(args.methods, args.tasks, args.images, args.steps)
    # read the saved rows only now, so two runs side by side with --merge keep each other's rows
    old = json.loads(OUT.with_suffix(".json").read_text()) if OUT.with_suffix(".json").exists() else {}
    rows, modes = old.get("rows", []), old.get("modes", [])
    key = ("image", "task", "method", "mode") if args.modes else ("image", "task", "variant", "method")
    keys = {tuple(r[k] for k in key) for r in new}
    kept = [r for r in (modes if args.modes else rows) if tuple(r[k] for k in key) not in keys] if args.merge else []
    if args.modes:
        modes = kept + new
    else:
        rows = kept + new
    write(rows, args, modes)


if __name__ == "__main__":
    main()
