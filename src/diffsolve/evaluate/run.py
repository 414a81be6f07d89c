"""One evaluation: plan what this rank computes, run the batches, write the records and, on rank 0, merge them and
summarise (records, randomness and unsupported pairs: :mod:`diffsolve.evaluate`)."""

from __future__ import annotations

import hashlib
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data import write_image
from ..solvers import UNFIT_CONSISTENCY, DataConsistencyWarning
from ..solvers.dps import DPSStepsWarning
from .distributed import setup_distributed
from .images import ImageSet, bundled_images, folder_images, saved_names
from .records import (PARTS, RESULTS, EvalConfig, PartWriter, check_resume, lock_out, merge, read_records,
                      record_key, write_config)
from .summary import summarize, unfit_lines, write_summary

__all__ = ["EvalPlan", "plan_eval", "run_batch", "run_eval", "stream_seed", "summarise", "unsupported_pairs"]

def stream_seed(*parts: object) -> int:
    """A 63-bit seed from the parts' text (SHA-256): the same on every machine, process and Python."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _generator(*parts: object) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(stream_seed(*parts))


@dataclass
class EvalPlan:
    """What one rank computes: image ``names`` (after --limit), ``batches`` (index lists, formed before
    sharding), ``todo`` = (batch, seed, task, method) with a missing record, ``done`` keys, ``total``
    records to compute."""

    names: list[str]
    batches: list[list[int]]
    todo: list[tuple[list[int], int, str, str]]
    done: set[tuple[str, str, str, int]]
    total: int
    advised: set[str] = field(default_factory=set)  # the methods whose advice about --steps was shown

    def pending(self, batch: Sequence[int], seed: int, task: str, method: str) -> list[int]:
        return [i for i in batch if (self.names[i], task, method, seed) not in self.done]


def unsupported_pairs(cfg: EvalConfig) -> dict[tuple[str, str], str]:
    """(task, method) -> why the method cannot take the task's operator at ``cfg.size`` (module docstring,
    Unsupported pairs): host-side, one operator per task that an SVD method meets (seed ``cfg.seeds[0]``:
    the seed moves a motion kernel, not the operator's structure)."""
    from ..methods import get_method
    from ..tasks import make_operator

    out: dict[tuple[str, str], str] = {}
    for task in cfg.tasks:
        op = None
        for method in cfg.methods:
            spec = get_method(method)
            if not spec.svd:
                continue
            if op is None:
                op = make_operator(task, (cfg.size, cfg.size), seed=cfg.seeds[0], digits=cfg.digits,
                                   params=cfg.task_parameters())
            why = spec.unsupported(op, (cfg.size, cfg.size), cfg.sigma)
            if why is not None:
                out[(task, method)] = why
    return out


def plan_eval(cfg: EvalConfig, images: ImageSet, rank: int = 0, world: int = 1,
              skipped: dict[tuple[str, str], str] | None = None) -> EvalPlan:
    """The records rank ``rank`` of ``world`` still has to compute (module docstring, Randomness), leaving
    out the (task, method) pairs in ``skipped`` (default: :func:`unsupported_pairs`)."""
    skipped = unsupported_pairs(cfg) if skipped is None else skipped
    n_images = len(images.names) if cfg.limit is None else min(cfg.limit, len(images.names))
    names = images.names[:n_images]
    batches = [list(range(i, min(i + cfg.batch, n_images))) for i in range(0, n_images, cfg.batch)]
    done = {record_key(r) for r in read_records(cfg.out)}
    plan = EvalPlan(names, batches, [], done, 0)
    for b in batches[rank::world]:
        for s in cfg.seeds:
            for t in cfg.tasks:
                for m in cfg.methods:
                    if (t, m) in skipped:
                        continue
                    n = len(plan.pending(b, s, t, m))
                    if n:
                        plan.todo.append((b, s, t, m))
                        plan.total += n
    return plan


def run_batch(cfg: EvalConfig, plan: EvalPlan, item: tuple[list[int], int, str, str], x_batch: torch.Tensor,
              operator: Any, model: Any, device: torch.device) -> tuple[list[dict[str, Any]], torch.Tensor]:
    """The records of one (batch, seed, task, method): measure (per-image noise streams), restore (per-image
    sampler streams; with ``cfg.draws`` = K > 1 a model-based method draws K times and the record scores their
    mean, its ``seconds`` the K draws' time), score. ``x_batch``: the batch's images on ``device``. Returns
    (records, x̂ of the pending images)."""
    from ..methods import get_method, restore, takes_discrepancy
    from ..metrics import data_consistency, scores
    from ..operators import GaussianNoise

    b, seed, task, method = item
    pending = plan.pending(b, seed, task, method)
    names = plan.names
    x = x_batch[[b.index(i) for i in pending]]
    ax = operator.A(x)
    noise = GaussianNoise(cfg.sigma)
    y = torch.cat([noise(ax[j:j + 1].cpu(), generator=_generator(seed, names[i], task)).to(device)
                   for j, i in enumerate(pending)])
    uses_model = get_method(method).uses_model
    paper = not cfg.discrepancy and takes_discrepancy(method)  # --no-discrepancy reaches the methods that have it
    t0 = time.perf_counter()
    draws = []
    for k in range(cfg.draws if uses_model else 1):  # draw k's streams: the record's, extended by k (k = 0: as is)
        gens = [_generator(seed, names[i], task, method, *([k] if k else [])) for i in pending]
        with warnings.catch_warnings():  # every record keeps its dc; the summary counts the unfit ones instead
            warnings.simplefilter("ignore", DataConsistencyWarning)
            if method in plan.advised:  # advice about the run's --steps (DPS below 20): once, not per batch
                warnings.simplefilter("ignore", DPSStepsWarning)
            plan.advised.add(method)
            xk, info = restore(method, model, operator, y, steps=cfg.steps, sigma=cfg.sigma,
                               generator=gens if uses_model else None, x_true=x, discrepancy=not paper)
        draws.append(xk)
    xr = draws[0] if len(draws) == 1 else torch.stack(draws).mean(0)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - t0) / len(pending)
    sc = scores(xr, x)
    dc = data_consistency(operator, xr, y, cfg.sigma) if cfg.sigma > 0 else None
    records = []
    for j, i in enumerate(pending):
        records.append({"image": names[i], "task": task, "method": method, "seed": seed,
                        "psnr": round(float(sc["psnr"][j]), 4), "ssim": round(float(sc["ssim"][j]), 5),
                        "cast": round(float(sc["cast"][j]), 5),
                        "dc": None if dc is None else round(float(dc[j]), 5),
                        "seconds": round(seconds, 5), "size": cfg.size, "sigma": cfg.sigma,
                        **({"steps": cfg.steps, "model": cfg.model} if uses_model else {}),  # Tikhonov / pinv: neither
                        **({"draws": len(draws)} if len(draws) > 1 else {}),
                        **({"discrepancy": False} if paper else {}), **{k: v[j] for k, v in info.items()}})
    return records, xr


def summarise(cfg: EvalConfig, names: Sequence[str], *, new: int, log: Callable[[str], None],
              skipped: dict[tuple[str, str], str] | None = None) -> list[dict]:
    """Merge the parts into results.jsonl, write the summary files of this request; its rows. ``skipped``:
    the (task, method) pairs not run (:func:`unsupported_pairs`)."""
    skipped = skipped or {}
    out = cfg.out
    records = merge(out, {n: k for k, n in enumerate(names)})
    wanted = set(names), set(cfg.tasks), set(cfg.methods), set(cfg.seeds)
    chosen = [r for r in records if r["image"] in wanted[0] and r["task"] in wanted[1]
              and r["method"] in wanted[2] and r["seed"] in wanted[3]]
    rows = summarize(chosen, cfg.tasks, cfg.methods)
    write_summary(out, rows, cfg, log=log, skipped=skipped)
    for line in unfit_lines(rows):
        log(f"warning: {line} with data consistency above {UNFIT_CONSISTENCY:g} (y largely ignored): more --steps, "
            "or check --sigma")
    expected = len(names) * (len(cfg.tasks) * len(cfg.methods) - len(skipped)) * len(cfg.seeds)
    log(f"wrote {out / RESULTS} ({len(chosen)} of {expected} records of this request, {new} new on rank 0), "
        f"summary.md, summary.csv")
    return rows


def run_eval(cfg: EvalConfig, *, load_model: Callable[[torch.device], Any] | None = None,
             log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the evaluation (module docstring): plan, run the batches, summarise. ``load_model(device)``
    returns the denoiser (called only when a model-based method has records to compute). Returns
    {"records": this rank's new count, "rows": summary rows (rank 0; [] elsewhere), "rank", "world",
    "seconds"}. ValueError when ``cfg.out`` holds records of other settings or data; :class:`OutInUseError` (a
    ValueError) when another run is writing it."""
    from ..methods import get_method
    from ..metrics import scores
    from ..tasks import make_operator

    log = log or (lambda msg: print(msg, file=sys.stderr))
    t_start = time.perf_counter()
    scores(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))  # loads torchmetrics now: no record's seconds pay it
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    notices = check_resume(cfg)
    dist, device = setup_distributed(cfg.device)
    out = cfg.out
    lock = None
    try:
        skipped = unsupported_pairs(cfg)
        if dist.rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            lock = lock_out(out)  # rank 0 holds OUT to the end: another run into it is refused here
            log(f"eval: data = {cfg.describe_data()}")
            for line in [*notices, *cfg.notes]:
                log(f"note: {line}")
            for (task, method), why in skipped.items():
                log(f"note: {method} × {task} not run: {get_method(method).brief(why)}")
            write_config(cfg)
        dist.barrier(device)
        images = (bundled_images(cfg.data, cfg.size, cfg.channels) if cfg.image_paths is None
                  else folder_images(cfg.image_paths, cfg.size, cfg.channels))
        plan = plan_eval(cfg, images, dist.rank, dist.world, skipped)
        saved = saved_names(plan.names)
        if cfg.save_images and dist.rank == 0 and any(s != f"{Path(n).stem}.png" for n, s in saved.items()):
            log("note: two images share a file stem: --save-images names every image by its full file name + .png")
        if cfg.save_images and dist.rank == 0:  # a resumed run computes (and saves) only the missing records
            unsaved = sum(1 for n, t, m, s in plan.done if n in saved and t in cfg.tasks and m in cfg.methods
                          and s in cfg.seeds and not (out / "images" / t / m / f"seed{s}" / saved[n]).is_file())
            if unsaved:
                log(f"note: --save-images saves the images of the records this run computes; {unsaved} record(s) "
                    f"already in {str(out)!r} have no saved image: use a new --out to save every image")
        model = None
        if plan.total and any(get_method(m).uses_model for _, _, _, m in plan.todo):
            if load_model is None:
                raise ValueError(f"run_eval needs load_model= (a function of the device) for {cfg.methods}")
            model = load_model(device)
        from tqdm.auto import tqdm

        bar = tqdm(total=plan.total, unit="rec", desc=f"eval (rank 0 of {dist.world})" if dist.world > 1 else "eval",
                   disable=dist.rank != 0 or not cfg.progress, file=sys.stderr, dynamic_ncols=True)
        writer = PartWriter(out / PARTS / f"rank-{dist.rank}.jsonl")
        ops: dict[tuple[int, str], Any] = {}
        new = 0
        loaded: tuple[tuple[int, ...], torch.Tensor] | None = None
        try:
            for item in plan.todo:
                b, seed, task, method = item
                if loaded is None or loaded[0] != tuple(b):
                    loaded = (tuple(b), images.load(b).to(device))
                if (seed, task) not in ops:
                    ops[(seed, task)] = make_operator(task, (cfg.size, cfg.size), seed=seed, digits=cfg.digits,
                                                      params=cfg.task_parameters())
                records, xr = run_batch(cfg, plan, item, loaded[1], ops[(seed, task)], model, device)
                for j, rec in enumerate(records):
                    writer.write(rec)
                    if cfg.save_images:
                        write_image(out / "images" / task / method / f"seed{seed}" / saved[rec["image"]], xr[j])
                    new += 1
                    bar.update(1)
        finally:
            writer.close()
            bar.close()
        dist.barrier(device)
        rows: list[dict] = summarise(cfg, plan.names, new=new, log=log, skipped=skipped) if dist.rank == 0 else []
        dist.barrier(device)
        return {"records": new, "rows": rows, "rank": dist.rank, "world": dist.world,
                "seconds": time.perf_counter() - t_start}
    finally:
        if lock is not None:
            lock.close()
        dist.close()
