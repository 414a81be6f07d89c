"""``python -m diffsolve``: the command line (see diffsolve.cli)."""

from .cli import main

__all__: list[str] = []

raise SystemExit(main())
