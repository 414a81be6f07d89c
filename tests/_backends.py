"""The fast backends as pytest parameters: each one that cannot run here is skipped with the dispatcher's reason."""

from __future__ import annotations

import pytest

from diffsolve.kernels import _dispatch


def fast_backends(names: tuple[str, ...] = ("cpp", "triton")) -> list:
    """``names`` (default ["cpp", "triton"]), each a skipped param where ``_dispatch.backends()`` says it is
    unavailable (and why): filter by ``names``, not the returned list, so an unavailable one shows as skipped."""
    out = []
    for name in names:
        ok, why = _dispatch.backends()[name]
        out.append(name if ok else pytest.param(name, marks=pytest.mark.skip(reason=f"{name} unavailable: {why}")))
    return out
