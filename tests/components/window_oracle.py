"""time/Window as it was before its heap of due windows (commit e778cd8), unchanged:
the oracle of test_window_heap.py. Not imported by the library."""

# ruff: noqa
# mypy: ignore-errors
from __future__ import annotations

import datetime
import math
import time as _time
from typing import Any

import trio

import reflowpy as rf
from reflowpy.components._common import (
    MISSING,
    Config,
    get_path,
    parse_pointer,
    report_in_loop,
    send_at_stop,
)

_unused = ["Batch", "CronTrigger", "Debounce", "Delay", "Interval", "RateLimit", "Throttle",
           "Timer", "Window"]


def _seconds(cfg: Config, key: str, default: Any = MISSING, *, positive: bool = True) -> Any:
    """A duration in seconds from ``key`` or ``key_ms`` (milliseconds)."""
    if cfg.has(f"{key}_ms") and not cfg.has(key):
        value = cfg.get(f"{key}_ms", "number", minimum=0) / 1000.0
        key = f"{key}_ms"
    else:
        value = cfg.get(key, "number", default)
    if value is None or value is MISSING:
        return value
    if value < 0 or (positive and value == 0) or math.isinf(value):
        raise cfg.error(key, f"must be a finite duration {'> 0' if positive else '>= 0'} s,"
                        f" got {value!r}")
    return value


async def _receive_until(ctx: rf.ActorContext, deadline: float) -> tuple[str, Any] | None:
    """The next ``(port, value)``, or ``None`` if ``deadline`` (trio time) comes first.

    A pending deadline keeps the network busy, so ``idle()`` waits for the timer."""
    return await ctx.receive_until(deadline)


class Window(rf.Actor):
    """Group packets into time windows: tumbling, sliding or session.

    Config:
      ``kind``: ``"tumbling"`` (default; needs ``size``), ``"sliding"`` (``size`` and
      ``step``) or ``"session"`` (``gap``: a window closes after this long without
      packets). Durations in seconds.
      ``time_field``: path to an event timestamp (seconds, number) in each packet;
      windows then follow event time and close when a later packet shows they are
      over (plus ``lateness``); without it, processing time (trio's clock).
      ``key``: path; windows are kept per key value.
      ``items``: include the packets (default ``true``; at most ``max_items`` each).

    Each closed window goes to ``out`` as ``{"start", "end", "count", "key", "items"}``.
    A ``flush`` packet, or the network stopping, closes every open window.

    Example — errors per minute: ``{"kind": "tumbling", "size": 60, "time_field": "ts",
    "items": false}``.
    """

    description = "Tumbling, sliding and session windows by processing or event time"
    icon = "columns"
    inports = [
        rf.Port("in", description="Packets to window"),
        rf.Port("flush", type="bang", required=False, description="Close all open windows now"),
    ]
    outports = [
        rf.Port("out", type="object", description="Closed windows"),
        rf.Port("error", type="object", required=False,
                description="Packets without a usable time"),
    ]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = Config(ctx)
        self.kind = cfg.get("kind", "str", "tumbling", choices=("tumbling", "sliding", "session"))
        if self.kind == "session":
            self.gap = _seconds(cfg, "gap")
        else:
            self.size = _seconds(cfg, "size")
            self.step = _seconds(cfg, "step") if self.kind == "sliding" else self.size
            if self.step > self.size:
                raise cfg.error("step", f"must be <= size ({self.size}), got {self.step}")
        self.time_path = (
            parse_pointer(cfg.get("time_field", "str")) if cfg.has("time_field") else None
        )
        self.key_path = parse_pointer(cfg.get("key", "str")) if cfg.has("key") else None
        self.lateness = _seconds(cfg, "lateness", 0.0, positive=False)
        self.keep_items = cfg.get("items", "bool", True)
        self.max_items = cfg.get("max_items", "int", 10_000, minimum=0)
        # open windows: (key, start) -> [end, count, items]
        self.open: dict[tuple[Any, float], list[Any]] = {}
        self.origin: float | None = None

    def _assign(self, key: Any, t: float) -> None:
        if self.kind == "session":
            mine = [k for k in self.open if k[0] == key]
            current = max(mine, key=lambda k: k[1]) if mine else None
            if current is not None and t < self.open[current][0]:
                win = self.open[current]
                win[0] = t + self.gap
                self._add(win)
                return
            self.open[(key, t)] = [t + self.gap, 0, []]
            self._add(self.open[(key, t)])
            return
        origin = 0.0 if self.time_path is not None else (self.origin or 0.0)
        last = origin + math.floor((t - origin) / self.step) * self.step
        start = last
        while start > t - self.size - 1e-12:
            if start <= t < start + self.size:
                win = self.open.setdefault((key, start), [start + self.size, 0, []])
                self._add(win)
            start -= self.step

    def _add(self, win: list[Any]) -> None:
        win[1] += 1
        if self.keep_items and len(win[2]) < self.max_items:
            win[2].append(self._current)

    async def _close(self, ctx: rf.ActorContext, now: float) -> None:
        due = sorted((k for k, w in self.open.items() if w[0] <= now),
                     key=lambda k: (k[1], str(k[0])))
        for k in due:
            end, count, items = self.open.pop(k)
            out: dict[str, Any] = {"start": k[1], "end": end, "count": count, "key": k[0]}
            if self.keep_items:
                out["items"] = items
            await ctx.send("out", out)

    def _end_of(self, t: float) -> float:
        """When the last window a packet at ``t`` belongs to ends (event time)."""
        if self.kind == "session":
            return float(t + self.gap)
        return float(math.floor(t / self.step) * self.step + self.size)

    def _deadline(self) -> float:
        if self.time_path is not None or not self.open:
            return math.inf
        return float(min(w[0] for w in self.open.values()))

    async def run(self, ctx: rf.ActorContext) -> None:
        watermark = -math.inf
        while True:
            got = await _receive_until(ctx, self._deadline())
            if got is None:
                await self._close(ctx, trio.current_time())
                continue
            port, value = got
            if port == "flush":
                await self._close(ctx, math.inf)
                continue
            if self.time_path is not None:
                t = get_path(value, self.time_path, None)
                if isinstance(t, bool) or not isinstance(t, (int, float)):
                    await report_in_loop(ctx, ValueError(
                        f"node {ctx.node_id!r}: packet has no numeric time at"
                        f" {'/'.join(self.time_path)!r}"), value)
                    continue
                t = float(t)
            else:
                t = trio.current_time()
                if self.origin is None:
                    self.origin = t
            key = get_path(value, self.key_path, None) if self.key_path else None
            self._current = value
            if self.time_path is not None:
                if self._end_of(t) <= watermark - self.lateness:
                    await report_in_loop(ctx, ValueError(
                        f"node {ctx.node_id!r}: packet at t={t} is later than the"
                        f" allowed lateness ({self.lateness}s)"), value)
                    continue
                self._assign(key, t)
                watermark = max(watermark, t)
                await self._close(ctx, watermark - self.lateness)
            else:
                self._assign(key, t)

    async def teardown(self, ctx: rf.ActorContext) -> None:
        for key in sorted(self.open, key=lambda k: (k[1], str(k[0]))):
            end, count, items = self.open.pop(key)
            out: dict[str, Any] = {"start": key[1], "end": end, "count": count, "key": key[0]}
            if self.keep_items:
                out["items"] = items
            await send_at_stop(ctx, "out", out)


