"""Components the bridge tests place on peers (workers load them with --plugin)."""

from __future__ import annotations

import time
from typing import Any

import trio

import reflowpy as rf


@rf.actor(inports=["in"], outports=["out"])
def tag(ctx: Any) -> dict[str, Any]:
    """(source, seq) -> (source, seq, node): deterministic, stateless."""
    return {"out": [*ctx.inputs["in"], ctx.node_id]}


@rf.actor(inports=["in"], outports=["out"])
async def slow(ctx: Any) -> dict[str, Any]:
    """Forwards after ``delay`` seconds (metadata), a slow consumer."""
    await trio.sleep(float(ctx.config.get("delay", 0.001)))
    return {"out": ctx.inputs["in"]}


@rf.actor(inports=["in"], outports=["out"])
def burn(ctx: Any) -> dict[str, Any]:
    """About ``work_us`` microseconds of CPU per message (metadata), then forwards."""
    end = time.perf_counter() + float(ctx.config.get("work_us", 50)) / 1e6
    x = 0
    while time.perf_counter() < end:
        x += 1
    return {"out": ctx.inputs["in"]}


def register(registry: rf.Registry) -> None:
    """Register the test components as ``test/Tag``, ``test/Slow``, ``test/Burn``."""
    for name, cls in (("test/Tag", tag), ("test/Slow", slow), ("test/Burn", burn)):
        registry.register(name, cls, replace=True)
