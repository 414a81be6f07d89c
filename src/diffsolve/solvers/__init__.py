"""diffsolve.solvers."""

__all__: list[str] = []
