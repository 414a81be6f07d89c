"""diffsolve.models."""

__all__: list[str] = []
