"""Components the bridge benchmark places in worker processes (loaded with --plugin)."""

from __future__ import annotations

import time
from typing import Any

import reflowpy as rf


@rf.actor(inports=["in"], outports=["out"])
def burn(ctx: Any) -> dict[str, Any]:
    """About ``work_us`` microseconds of CPU per message, then forwards it."""
    end = time.perf_counter() + float(ctx.config.get("work_us", 50)) / 1e6
    while time.perf_counter() < end:
        pass
    return {"out": ctx.inputs["in"]}


def register(registry: rf.Registry) -> None:
    """Register ``bench/Burn``."""
    registry.register("bench/Burn", burn, replace=True)
