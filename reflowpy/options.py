"""Value types for command-line options: ports, counts, byte sizes and seconds.

argparse's ``type=int`` and ``type=float`` accept ``-5``, ``nan`` and ``inf``, which
then reach trio or a limit as nonsense: ``--timeout -5`` crashed ``run`` with a
traceback, ``--port 70000`` crashed ``serve``, and ``--max-connections -5`` started a
server that silently refused everyone. Each option names its type here instead, so a
bad value is a usage error (exit 2) that says what is allowed, before anything runs.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = ["count", "port", "seconds"]


def port(text: str) -> int:
    """A TCP port, 0 (any free one) to 65535."""
    value = _integer(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0 to 65535)")
    return value


def count(minimum: int = 0) -> Callable[[str], int]:
    """An integer of at least ``minimum`` (a count, a limit, a byte size)."""

    def parse(text: str) -> int:
        value = _integer(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be at least {minimum}")
        return value

    parse.__name__ = f"integer >= {minimum}"  # argparse names the type in its messages
    return parse


def seconds(*, positive: bool = False, unit: str = "seconds") -> Callable[[str], float]:
    """A finite number of ``unit``, at least 0 (or above 0 with ``positive``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of {unit}") from None
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            bound = "above 0" if positive else "0 or more"
            raise argparse.ArgumentTypeError(f"{text!r} must be a finite number of {unit},"
                                             f" {bound}")
        return value

    parse.__name__ = unit
    return parse


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
