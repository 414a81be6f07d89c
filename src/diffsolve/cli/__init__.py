"""The ``diffsolve`` command line (also ``python -m diffsolve``): ``demo``, ``restore``, ``eval``, ``info``.

- ``diffsolve demo [--out DIR] [--steps N] [--quick]``: the bundled photos and held-out digits, every
  task, the chosen model-based methods beside the model-free baselines; grids and metrics.json.
- ``diffsolve restore --input IMG --task TASK --method METHOD [--model M] [--size S] --out OUT``: restore a
  measurement (or, with ``--simulate``, degrade a clean image first and score the result).
- ``diffsolve eval --data DIR ...``: evaluate methods over a folder of images or a bundled set.
- ``diffsolve info``: versions, kernel backends (and why any is unavailable), shipped models.

Layout: :mod:`.common` (the one usage-error type, image I/O, model loading, noise, the device check) and
one module per subcommand. The method lists come from :mod:`diffsolve.methods` (the registry).

Every argument is checked before torch is imported, a model is loaded or a step runs: an error is one
line ``diffsolve CMD: error: ...`` naming the argument, the value and the fix, exit status 2 (argparse's
own errors too: no usage block). ``--help``, ``--version`` and these errors never import torch. Ctrl-C prints one
line (eval: its finished records are kept for a rerun to resume) and exits with status 130. Sizes are
written width×height everywhere. Every result reports its data consistency ‖A x̂ − y‖/(σ√m). diffsolve's own
warnings (a result that ignores y, CG short of its tolerance, too few DPS steps) print as one line
``diffsolve CMD: warning: ...``.
"""

from __future__ import annotations

from .. import __version__
from .common import HelpFormatter, Parser, SubcommandParser, UsageError, print_error

__all__ = ["UsageError", "main", "parser"]

COMMANDS = ("demo", "restore", "eval", "info")


def parser() -> Parser:
    """The ``diffsolve`` argument parser with every subcommand."""
    from . import demo, eval, info, restore

    p = Parser(prog="diffsolve", formatter_class=HelpFormatter,
               description="Inverse problems with pretrained diffusion models.",
               epilog="Errors print one line naming the argument and the fix; exit status 2.")
    p.add_argument("--version", action="version", version=f"diffsolve {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}",
                           parser_class=SubcommandParser)
    demo.add_parser(sub)
    restore.add_parser(sub)
    eval.add_parser(sub)
    info.add_parser(sub)
    return p


def _one_line_warnings(command: str):
    """Format diffsolve's warnings as ``diffsolve CMD: warning: message`` (no source line), others as Python does;
    returns the previous formatter (for :func:`main` to put back)."""
    import warnings

    plain = warnings.formatwarning

    def format_warning(message, category, filename, lineno, line=None):  # noqa: ANN001 - warnings' signature
        if category.__module__.startswith("diffsolve"):
            return f"diffsolve {command}: warning: {message}\n"
        return plain(message, category, filename, lineno, line)

    warnings.formatwarning = format_warning
    return plain


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``diffsolve`` script; returns the exit status."""
    import warnings

    args = parser().parse_args(argv)
    plain = _one_line_warnings(args.command)
    try:
        with warnings.catch_warnings():
            # the CLI reads y from image files onto [-1, 1] itself: a bright image's y inside [0, 1] is no unit mistake
            warnings.filterwarnings("ignore", message=r"y lies in \[.*\] ⊂ \[0, 1\]")
            return _run(args)
    except KeyboardInterrupt:  # Ctrl-C: one line, no traceback; 130 as a shell reports SIGINT
        _interrupted(args)
        return 130
    finally:
        warnings.formatwarning = plain


def _interrupted(args) -> None:  # noqa: ANN001 - the parsed namespace
    """The one line for Ctrl-C (rank 0 only under torchrun): what was kept and how to go on."""
    import os
    import sys

    if os.environ.get("RANK", "0") != "0":
        return
    hint = (f"; the records finished so far are kept in {args.out!r}: rerun the same command to resume"
            if args.command == "eval" else "")
    print(f"diffsolve {args.command}: interrupted{hint}", file=sys.stderr, flush=True)


def _run(args) -> int:  # noqa: ANN001 - the parsed namespace
    if args.command == "eval":  # prints its own errors (rank 0 only under torchrun)
        from . import eval

        return int(eval.run(args))
    from . import demo, info, restore

    try:
        {"info": info.run, "restore": restore.run, "demo": demo.run}[args.command](args)
    except UsageError as err:
        print_error(args.command, err)
        return 2
    return 0
