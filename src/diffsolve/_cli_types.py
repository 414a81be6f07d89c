"""Argument types and the help formatter shared by the command line's subcommands (no torch)."""

from __future__ import annotations

import argparse
import math
import re

__all__ = ["DEVICE_PATTERN", "HelpFormatter", "device_unavailable", "int_at_least", "number", "positive_int", "seed"]

#: the device strings the command line accepts (checked without torch)
DEVICE_PATTERN = re.compile(r"^(cpu|mps|(cuda|xpu)(:\d+)?)$")


def int_at_least(low: int):
    """An argparse type: an integer >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value

    return parse


positive_int = int_at_least(1)


def seed(text: str) -> int:
    """An argparse type: a seed in [0, 2**63)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed in [0, 2**63), got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"expected an integer seed in [0, 2**63), got {value}")
    return value


def number(low: float, high: float | None = None, *, low_open: bool = False, high_open: bool = False):
    """An argparse type: a finite float in the given range."""
    lo, hi = ("(" if low_open else "["), ("inf)" if high is None else (f"{high})" if high_open else f"{high}]"))

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number in {lo}{low}, {hi}, got {text!r}") from None
        bad = (not math.isfinite(value) or value < low or (low_open and value == low)
               or (high is not None and (value > high or (high_open and value == high))))
        if bad:
            raise argparse.ArgumentTypeError(f"expected a number in {lo}{low}, {hi}, got {text}")
        return value

    return parse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` unless the help already says its default or there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or any(action.default is v for v in (None, False, True, argparse.SUPPRESS)):
            return text
        return super()._get_help_string(action)


def device_unavailable(device: str) -> tuple[str, str] | None:
    """(what is wrong, the fix) when ``device`` (matching DEVICE_PATTERN) cannot run here, else None.
    Imports torch: call it after every torch-free check."""
    import torch

    kind = device.split(":")[0]
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            return f"{device}: this torch ({torch.__version__}) sees no CUDA device", "use --device cpu"
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= count:
            return f"{device}: only {count} CUDA device(s) here", f"use cuda:0 ... cuda:{count - 1}"
    elif kind == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        return f"{device}: MPS is not available in this torch", "use --device cpu"
    elif kind == "xpu" and not (hasattr(torch, "xpu") and torch.xpu.is_available()):
        return f"{device}: XPU is not available in this torch", "use --device cpu"
    return None
