"""The ``diffsolve eval`` runner: every (image, task, method, seed) of a dataset scored, on one process
or many (torchrun), resumable.

Records. ``OUT/results.jsonl`` holds one JSON object per (image, task, method, seed) with ``image``
(file name), ``task``, ``method``, ``seed``, ``psnr`` (dB; the string ``"inf"`` for an exact recovery, so
every line is valid JSON: :func:`json_line`), ``ssim``, ``cast`` (the colour cast,
:func:`diffsolve.metrics.colour_cast`), ``seconds`` (the record's share
of its batch's wall time), ``dc`` (data consistency ‖A x̂ − y‖/(σ√m), 1 = the residual matches the
noise level; null when σ = 0), ``steps``, ``model``, ``size``, ``sigma`` (and ``lam`` for Tikhonov; ``draws``
with ``--draws`` K > 1, where a model-based record scores the mean of K draws; ``discrepancy: false`` with
``--no-discrepancy``, on the records of the methods it switches to the paper's result).
The task parameters (``--blur-std``, ``--motion-size``, ``--box``, ``--missing``, ``--factor``; :class:`EvalConfig`
``params``) are pinned with the other settings and listed in summary.md where they differ from the defaults.
Each process appends its records to ``OUT/parts/rank-R.jsonl`` and flushes after every record, so a
killed run loses at most the batch in flight; a rerun with the same OUT skips every record already
in results.jsonl or a part file. One run at a time writes an OUT: rank 0 holds a lock on it
(:func:`lock_out`), and a second run into it is refused with :class:`OutInUseError`. ``OUT/config.json`` pins the
settings records depend on, the model's files
(:func:`model_fingerprint`) and the data: the SHA-256 of every input file by image name (:func:`data_hashes`);
:func:`check_resume` refuses a rerun whose settings, model files or input files differ, or that brings another
data set (one OUT holds one data set: it may grow by new images, not switch), with a ValueError naming the
setting, the file or the data and the fix. An OUT that holds no records (a run that ended before its first)
refuses nothing: its config.json is replaced, with a notice. When all
ranks are done, rank 0 merges the parts into results.jsonl (written to a temporary file, then
renamed) and writes ``summary.csv``, ``summary.md`` (mean ± std per task × method) and
``quality_vs_time.png`` (matplotlib, when installed). ``--save-images`` writes
``OUT/images/TASK/METHOD/seedS/`` + :func:`saved_names` (the image's stem + .png; its full name + .png for every
image when two share a stem) for the records the run computes; a resumed run notes how many finished records have none.

Randomness. A record depends on (seed, image, task, method) alone, never on the number of
processes or the batch: the operator's random parts (box position, motion kernel, random mask) come
from ``seed`` (one operator per (seed, task), shared by all images, as in the demo); image i's
measurement noise from a generator seeded by hash(seed, image, task) (every method sees the same
y); the sampler's randomness from a per-image generator seeded by hash(seed, image, task, method),
passed as a list of per-sample generators (``diffsolve.solvers``); draw k > 0 of ``--draws`` appends k to
those parts. All generators live on the CPU.
Batches are formed from the image list before sharding (rank r takes batches r, r + K, …), so a
record's batch is the same for any number of processes K; results are bit-identical across K.

Unsupported pairs. A method that cannot take a task's operator (DDRM, and DDNM+ at σ > 0, need A's SVD,
which a reflect-boundary motion blur has not) is not planned for that task: :func:`unsupported_pairs` finds
those pairs before any model call, the run logs one note per pair, and summary.md lists them.

Files. :mod:`.images` (the images and their hashes), :mod:`.records` (the request, config.json and the
records on disk), :mod:`.run` (:func:`plan_eval`: what this rank computes, :func:`run_batch`: one batch × seed ×
task × method -> records, :func:`summarise`: merge and summary files; :func:`run_eval` runs the three),
:mod:`.summary` (summary.csv / .md and the plot), :mod:`.distributed` (``torchrun``: gloo on CPU, nccl on CUDA).
This package is the library side of ``diffsolve eval``: it imports nothing from the command line and
raises ValueError for bad input; the model comes from the caller (``load_model(device)``).

Metrics: PSNR and SSIM (:mod:`diffsolve.metrics`, torchmetrics). LPIPS and FID need network weights
that diffsolve never downloads; they are not computed (the summary says so).
"""

from .distributed import Dist, RankDeviceError, setup_distributed
from .images import (BUNDLED, ImageSet, bundled_images, bundled_names, bundled_photos, data_hashes, file_sha256,
                     folder_images, saved_names)
from .records import (CONFIG, DEFAULT_PARAMS, LOCK, MODEL_FILES, PARTS, PINNED, RESULTS, EvalConfig, OutInUseError, PartWriter,
                      check_resume, json_line, lock_out, merge, model_fingerprint, read_pinned, read_records,
                      record_key, write_config)
from .run import EvalPlan, plan_eval, run_batch, run_eval, stream_seed, summarise, unsupported_pairs
from .summary import METRICS, plot_quality_vs_time, summarize, time_axis, unfit_lines, write_summary

__all__ = ["BUNDLED", "CONFIG", "DEFAULT_PARAMS", "LOCK", "METRICS", "MODEL_FILES", "PARTS", "PINNED", "RESULTS", "Dist", "EvalConfig",
           "EvalPlan", "ImageSet", "OutInUseError", "PartWriter", "bundled_images", "bundled_names", "bundled_photos",
           "check_resume", "data_hashes", "file_sha256", "folder_images", "json_line", "lock_out", "merge",
           "model_fingerprint", "plan_eval", "plot_quality_vs_time", "read_pinned", "read_records", "record_key",
           "RankDeviceError", "run_batch", "run_eval", "saved_names", "setup_distributed", "stream_seed", "summarise",
           "summarize", "time_axis", "unfit_lines", "unsupported_pairs", "write_config", "write_summary"]
