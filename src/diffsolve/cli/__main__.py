"""``python -m diffsolve.cli``: the command line (see :mod:`diffsolve.cli`)."""

from . import main

raise SystemExit(main())
