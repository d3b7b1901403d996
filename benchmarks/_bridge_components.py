"""Components the bridge benchmark places in worker processes (loaded with --plugin)."""

from __future__ import annotations

import time
from typing import Any

import reflowpy as rf


@rf.actor(inports=["in"], outports=["out"])
def burn(ctx: Any) -> dict[str, Any]:
    """``work_us`` microseconds of CPU per message, then forwards it. Counted in this
    thread's CPU time, not wall time: on a shared machine a stage preempted mid-way
    still does its full share of work, so one process and partitions do the same."""
    end = time.thread_time() + float(ctx.config.get("work_us", 50)) / 1e6
    while time.thread_time() < end:
        pass
    return {"out": ctx.inputs["in"]}


def register(registry: rf.Registry) -> None:
    """Register ``bench/Burn``."""
    registry.register("bench/Burn", burn, replace=True)
