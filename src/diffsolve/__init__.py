"""diffsolve: fast solvers for inverse problems and guided generation with diffusion models."""

__version__ = "0.1.0"

from .solve import solve  # noqa: E402

__all__ = ["__version__", "solve"]
