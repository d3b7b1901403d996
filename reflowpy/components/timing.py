"""time/*: components whose behaviour depends on time — batches, windows, rates, timers.

All of them read time from trio (``trio.current_time()``, ``trio.sleep``,
``trio.move_on_at``), never from ``time.time()``, so a test can run them on
``trio.testing.MockClock(autojump_threshold=0)`` and get the same answer every run
in no wall time at all. Components that hold messages while waiting (Batch, Window,
Debounce, Timer) own their loop (``run``) and wait for "the next message or the next
deadline, whichever is first".

Durations in config are seconds (numbers); ``*_ms`` variants are accepted where
Reflow uses milliseconds.
"""

from __future__ import annotations

import datetime
import heapq
import math
import time as _time
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

import msgspec
import trio

import reflowpy as rf
from reflowpy.components._common import (
    MISSING,
    Config,
    get_path,
    load_config,
    parse_pointer,
    report_in_loop,
    send_at_stop,
)
from reflowpy.components.cron import Cron, CronError

__all__ = ["Batch", "CronTrigger", "Debounce", "Delay", "Interval", "RateLimit", "Throttle",
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


class Batch(rf.Actor):
    """Group packets into lists by count and/or time.

    Config: ``size`` (emit when the batch holds this many), ``interval`` (seconds:
    emit this long after the batch's first packet); at least one is required. A
    ``flush`` packet emits what is held now. A partial batch is also emitted when
    the network stops.

    Example: ``{"size": 100, "interval": 1.0}`` — at most 100 per batch, at most 1 s late.
    """

    description = "Groups packets into arrays by count and/or time"
    icon = "th-large"
    inports = [
        rf.Port("in", description="Packets to batch"),
        rf.Port("flush", type="bang", required=False, description="Emit the current batch now"),
    ]
    outports = [rf.Port("out", type="array", description="Batches")]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = Config(ctx)
        self.size = cfg.get("size", "int", None, minimum=1)
        self.interval = _seconds(cfg, "interval", None)
        if self.size is None and self.interval is None:
            raise cfg.error("size", "or 'interval' is required")

    async def run(self, ctx: rf.ActorContext) -> None:
        self.batch: list[Any] = []
        deadline = math.inf
        while True:
            got = await _receive_until(ctx, deadline)
            if got is not None:
                port, value = got
                if port == "in":
                    self.batch.append(value)
                    if len(self.batch) == 1 and self.interval is not None:
                        deadline = trio.current_time() + self.interval
                    if self.size is None or len(self.batch) < self.size:
                        continue
            if self.batch:
                out, self.batch = self.batch, []
                await ctx.send("out", out)
            deadline = math.inf

    async def teardown(self, ctx: rf.ActorContext) -> None:
        if getattr(self, "batch", None):
            await send_at_stop(ctx, "out", self.batch)


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

    class Config(msgspec.Struct, frozen=True, kw_only=True):
        kind: Annotated[Literal["tumbling", "sliding", "session"], msgspec.Meta(
            description="Window kind")] = "tumbling"
        size: Annotated[float | None, msgspec.Meta(description="Window length, s")] = None
        size_ms: Annotated[float | None, msgspec.Meta(description="Window length, ms")] = None
        step: Annotated[float | None, msgspec.Meta(description="Sliding step, s")] = None
        step_ms: Annotated[float | None, msgspec.Meta(description="Sliding step, ms")] = None
        gap: Annotated[float | None, msgspec.Meta(description="Session gap, s")] = None
        gap_ms: Annotated[float | None, msgspec.Meta(description="Session gap, ms")] = None
        time_field: Annotated[str | None, msgspec.Meta(
            description="Path to the event time (number); none: processing time")] = None
        key: Annotated[str | None, msgspec.Meta(description="Path to the window key")] = None
        lateness: Annotated[float, msgspec.Meta(description="Allowed lateness, s")] = 0.0
        lateness_ms: Annotated[float | None, msgspec.Meta(
            description="Allowed lateness, ms")] = None
        items: Annotated[bool, msgspec.Meta(description="Include the packets")] = True
        max_items: Annotated[int, msgspec.Meta(ge=0, description="Packets kept per window")] = (
            10_000)

    async def setup(self, ctx: rf.ActorContext) -> None:
        load_config(ctx, Window.Config)  # types, with the field path in the error
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
        self.time_of = _reader(self.time_path)
        self.key_of = _reader(self.key_path)
        self.lateness = _seconds(cfg, "lateness", 0.0, positive=False)
        self.keep_items = cfg.get("items", "bool", True)
        self.max_items = cfg.get("max_items", "int", 10_000, minimum=0)
        # open windows: (key, start) -> [end, count, items, created]; ``created`` (a
        # counter) orders windows that tie on (start, str(key)) by creation
        self.open: dict[tuple[Any, float], list[Any]] = {}
        # due times: (end, start, str(key), created, key); an entry whose window is gone
        # or whose end moved (a session that grew) is skipped when it comes up
        self.due: list[tuple[float, float, str, int, Any]] = []
        self.created = 0
        self.origin: float | None = None

    def _open(self, key: Any, start: float, end: float) -> list[Any]:
        self.created += 1
        win = [end, 0, [], self.created]
        self.open[(key, start)] = win
        heapq.heappush(self.due, (end, start, str(key), self.created, key))
        return win

    def _assign(self, key: Any, t: float) -> None:
        if self.kind == "session":
            mine = [k for k in self.open if k[0] == key]
            current = max(mine, key=lambda k: k[1]) if mine else None
            if current is not None and t < self.open[current][0]:
                win = self.open[current]
                win[0] = t + self.gap
                heapq.heappush(self.due, (win[0], current[1], str(key), win[3], key))
                self._add(win)
                return
            self._add(self._open(key, t, t + self.gap))
            return
        origin = 0.0 if self.time_path is not None else (self.origin or 0.0)
        last = origin + math.floor((t - origin) / self.step) * self.step
        start = last
        while start > t - self.size - 1e-12:
            if start <= t < start + self.size:
                found = self.open.get((key, start))
                self._add(found if found is not None
                          else self._open(key, start, start + self.size))
            start -= self.step

    def _add(self, win: list[Any]) -> None:
        win[1] += 1
        if self.keep_items and len(win[2]) < self.max_items:
            win[2].append(self._current)

    def _pop_due(self, now: float) -> list[tuple[Any, float]]:
        """The open windows that end by ``now``, in (start, str(key), creation) order."""
        due = self.due
        found: dict[int, tuple[float, str, int, Any]] = {}
        while due and due[0][0] <= now:
            end, start, skey, created, key = heapq.heappop(due)
            win = self.open.get((key, start))
            if win is not None and win[0] == end and win[3] == created:
                found[created] = (start, skey, created, key)  # once, if pushed twice
        return [(f[3], f[0]) for f in sorted(found.values())]

    async def _close(self, ctx: rf.ActorContext, now: float) -> None:
        if not self.due or self.due[0][0] > now:
            return
        for k in self._pop_due(now):
            end, count, items, _ = self.open.pop(k)
            out: dict[str, Any] = {"start": k[1], "end": end, "count": count, "key": k[0]}
            if self.keep_items:
                out["items"] = items
            await ctx.send("out", out)

    def _deadline(self) -> float:
        if self.time_path is not None or not self.open:
            return math.inf
        due = self.due
        while due:  # drop entries of windows already closed or moved
            end, start, _, created, key = due[0]
            win = self.open.get((key, start))
            if win is not None and win[0] == end and win[3] == created:
                return float(end)
            heapq.heappop(due)
        return math.inf

    async def run(self, ctx: rf.ActorContext) -> None:
        if self.time_path is not None:
            await self._run_event_time(ctx)
            return
        # processing time: windows close when their end comes on trio's clock
        key_of = self.key_of
        while True:
            got = await _receive_until(ctx, self._deadline())
            if got is None:
                await self._close(ctx, trio.current_time())
                continue
            port, value = got
            if port == "flush":
                await self._close(ctx, math.inf)
                continue
            t = trio.current_time()
            if self.origin is None:
                self.origin = t
            key = key_of(value)
            self._current = value
            self._assign(key, t)

    async def _run_event_time(self, ctx: rf.ActorContext) -> None:
        # The loop of run() for event time, with its steps inlined (one pass per
        # packet of a log stream): no timer can be due (windows close when a later
        # packet moves the watermark), so it waits with a plain receive, and it looks
        # for closed windows only when the heap's first end has passed.
        watermark = -math.inf
        time_of, key_of = self.time_of, self.key_of
        lateness, due, assign = self.lateness, self.due, self._assign
        session = self.kind == "session"
        gap = self.gap if session else 0.0
        step = 0.0 if session else self.step
        size = 0.0 if session else self.size
        floor = math.floor
        receive = ctx.receive
        while True:
            port, value = await receive()
            if port == "flush":
                await self._close(ctx, math.inf)
                continue
            t = time_of(value)
            kind = type(t)
            if kind is not float and kind is not int and (
                    isinstance(t, bool) or not isinstance(t, (int, float))):
                await report_in_loop(ctx, ValueError(
                    f"node {ctx.node_id!r}: packet has no numeric time at"
                    f" {'/'.join(self.time_path)!r}"), value)  # type: ignore[arg-type]
                continue
            t = float(t)
            key = key_of(value)
            self._current = value
            # when the last window holding t ends
            end = float(t + gap) if session else float(floor(t / step) * step + size)
            if end <= watermark - lateness:
                await report_in_loop(ctx, ValueError(
                    f"node {ctx.node_id!r}: packet at t={t} is later than the"
                    f" allowed lateness ({self.lateness}s)"), value)
                continue
            assign(key, t)
            if t > watermark:
                watermark = t
            if due and due[0][0] <= watermark - lateness:  # as _close's first test
                await self._close(ctx, watermark - lateness)

    async def teardown(self, ctx: rf.ActorContext) -> None:
        for key in sorted(self.open, key=lambda k: (k[1], str(k[0]), self.open[k][3])):
            end, count, items, _ = self.open.pop(key)
            out: dict[str, Any] = {"start": key[1], "end": end, "count": count, "key": key[0]}
            if self.keep_items:
                out["items"] = items
            await send_at_stop(ctx, "out", out)
        self.due.clear()


def _reader(path: tuple[str, ...] | None) -> Callable[[Any], Any]:
    """``get_path(value, path, None)``, precomputed for the common one-key path."""
    if path is None:
        return lambda value: None
    if len(path) == 1 and not path[0].lstrip("-").isdigit():
        key = path[0]

        def one(value: Any) -> Any:
            if type(value) is rf.FrozenDict or isinstance(value, Mapping):
                return value.get(key)
            return None

        return one
    return lambda value: get_path(value, path, None)


class Debounce(rf.Actor):
    """Emit a packet only after ``wait`` seconds pass with no newer packet.

    Bursts collapse to their last packet. Config: ``wait`` (seconds, required),
    ``max_wait`` (optional: emit at the latest this long after the burst began).
    """

    description = "Emits the last packet of each burst after a quiet period"
    icon = "hourglass-half"
    inports = [rf.Port("in", description="Packets")]
    outports = [rf.Port("out", description="Last packet of each burst")]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = Config(ctx)
        self.wait = _seconds(cfg, "wait")
        self.max_wait = _seconds(cfg, "max_wait", None)

    async def run(self, ctx: rf.ActorContext) -> None:
        self.pending: Any = MISSING
        deadline = hard = math.inf
        while True:
            got = await _receive_until(ctx, min(deadline, hard))
            if got is None:
                value, self.pending = self.pending, MISSING
                deadline = hard = math.inf
                await ctx.send("out", value)
                continue
            now = trio.current_time()
            if self.pending is MISSING and self.max_wait is not None:
                hard = now + self.max_wait
            self.pending = got[1]
            deadline = now + self.wait

    async def teardown(self, ctx: rf.ActorContext) -> None:
        if getattr(self, "pending", MISSING) is not MISSING:
            await send_at_stop(ctx, "out", self.pending)


class Throttle(rf.Actor):
    """Let at most one packet through per ``interval`` seconds; drop the rest.

    The first packet passes at once; later ones within the interval go to
    ``dropped`` (if connected; otherwise they are counted in
    ``ctx.state['dropped']``). For smoothing without loss use :class:`RateLimit`.
    """

    description = "Passes at most one packet per interval, dropping the rest"
    icon = "tachometer"
    inports = [rf.Port("in", description="Packets")]
    outports = [
        rf.Port("out", description="Packets let through"),
        rf.Port("dropped", required=False, description="Packets that came too soon"),
    ]

    async def setup(self, ctx: rf.ActorContext) -> None:
        self.interval = _seconds(Config(ctx), "interval")
        ctx.state["last"] = -math.inf

    async def process(self, ctx: rf.ActorContext) -> None:
        now = trio.current_time()
        value = ctx.inputs["in"]
        if now - ctx.state["last"] >= self.interval:
            ctx.state["last"] = now
            await ctx.send("out", value)
        elif ctx.connected("dropped"):
            await ctx.send("dropped", value)
        else:
            ctx.state["dropped"] = ctx.state.get("dropped", 0) + 1


class RateLimit(rf.Actor):
    """Token bucket: pass packets at ``rate`` per second with bursts up to ``burst``.

    Nothing is dropped: when the bucket is empty the node waits, its in-port queue
    fills, and backpressure slows the sender. Config: ``rate`` (packets per second,
    required), ``burst`` (bucket size, default 1).
    """

    description = "Token-bucket rate limiter (waits, never drops)"
    icon = "tachometer"
    inports = [rf.Port("in", description="Packets")]
    outports = [rf.Port("out", description="Packets, no faster than the rate")]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = Config(ctx)
        self.rate = cfg.get("rate", "number", minimum=0)
        if self.rate <= 0:
            raise cfg.error("rate", f"must be > 0 packets per second, got {self.rate!r}")
        self.burst = cfg.get("burst", "number", 1, minimum=1)
        ctx.state.update(tokens=float(self.burst), at=trio.current_time())

    async def process(self, ctx: rf.ActorContext) -> None:
        now = trio.current_time()
        tokens = min(self.burst, ctx.state["tokens"] + (now - ctx.state["at"]) * self.rate)
        if tokens < 1:
            wait = (1 - tokens) / self.rate
            await trio.sleep(wait)
            now += wait
            tokens = 1.0
        ctx.state.update(tokens=tokens - 1, at=now)
        await ctx.send("out", ctx.inputs["in"])


class Delay(rf.Actor):
    """Forward each packet after ``delay`` seconds (``delay_ms`` also accepted).

    Packets keep their order; the node holds one at a time, so upstream feels
    backpressure rather than building an unbounded timer list.
    """

    description = "Forwards packets after a fixed delay"
    icon = "clock-o"
    inports = [rf.Port("in", description="Packets")]
    outports = [rf.Port("out", description="The same packets, later")]

    async def setup(self, ctx: rf.ActorContext) -> None:
        self.delay = _seconds(Config(ctx), "delay", positive=False)

    async def process(self, ctx: rf.ActorContext) -> None:
        await trio.sleep(self.delay)
        await ctx.send("out", ctx.inputs["in"])


class Interval(rf.Actor):
    """Emit a tick every ``interval`` seconds: 1, 2, 3, ... (or a constant ``value``).

    Config: ``interval`` (required), ``max`` (stop after this many ticks; default
    unlimited), ``autostart`` (default ``true``; else wait for ``start``),
    ``immediate`` (first tick at once instead of after one interval). ``start`` and
    ``stop`` packets resume and pause the ticking.
    """

    description = "Emits ticks at a fixed interval"
    icon = "clock-o"
    inports = [
        rf.Port("start", type="bang", required=False, description="Start or resume ticking"),
        rf.Port("stop", type="bang", required=False, description="Pause ticking"),
    ]
    outports = [rf.Port("out", description="Tick number (or the configured value)")]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = Config(ctx)
        self.interval = _seconds(cfg, "interval")
        self.max = cfg.get("max", "int", 0, minimum=0)
        self.autostart = cfg.get("autostart", "bool", True)
        self.immediate = cfg.get("immediate", "bool", False)
        self.value = cfg.data.get("value", MISSING)

    async def run(self, ctx: rf.ActorContext) -> None:
        running = self.autostart
        count = 0
        now = trio.current_time()
        next_tick = now if self.immediate else now + self.interval
        while not self.max or count < self.max:
            got = await _receive_until(ctx, next_tick if running else math.inf)
            if got is not None:
                port, _ = got
                if port == "start" and not running:
                    running = True
                    now = trio.current_time()
                    next_tick = now if self.immediate else now + self.interval
                elif port == "stop":
                    running = False
                continue
            count += 1
            await ctx.send("out", count if self.value is MISSING else self.value)
            next_tick += self.interval


class Timer(rf.Actor):
    """A restartable one-shot timer: ``delay`` seconds after the last ``start``, emit it.

    Each ``start`` packet (re)arms the timer and is what ``out`` later carries; a
    ``cancel`` packet disarms it. Use it as a watchdog: feed heartbeats to
    ``start`` and connect ``out`` to an alert.
    """

    description = "Emits the last start packet once its delay passes without a restart"
    icon = "bell-o"
    inports = [
        rf.Port("start", description="Arms (or re-arms) the timer with this packet"),
        rf.Port("cancel", type="bang", required=False, description="Disarms the timer"),
    ]
    outports = [rf.Port("out", description="The start packet, when the timer fires")]

    async def setup(self, ctx: rf.ActorContext) -> None:
        self.delay = _seconds(Config(ctx), "delay", positive=False)

    async def run(self, ctx: rf.ActorContext) -> None:
        armed: Any = MISSING
        deadline = math.inf
        while True:
            got = await _receive_until(ctx, deadline)
            if got is None:
                value, armed, deadline = armed, MISSING, math.inf
                await ctx.send("out", value)
                continue
            port, value = got
            if port == "start":
                armed, deadline = value, trio.current_time() + self.delay
            elif port == "cancel":
                armed, deadline = MISSING, math.inf


class CronTrigger(rf.Actor):
    """Emit on a 5-field cron schedule (``"*/5 * * * *"``, ``"0 9 * * mon-fri"``, ``@hourly``).

    Config: ``schedule`` (required; also read as ``cron`` or ``cronExpression``),
    ``timezone`` (``"UTC"`` default, ``"local"``, or an IANA name), ``max`` (stop after
    this many), ``start`` (ISO timestamp the clock starts from, for tests and
    replays; default: now). Emits ``{"time": ISO timestamp, "count": n}``. Registered
    as ``time/Cron``.

    The wall clock is read once; after that time advances with trio's clock, so a
    MockClock test covers days of schedule instantly.
    """

    description = "Emits on a cron schedule"
    icon = "calendar"
    inports = [rf.Port("stop", type="bang", required=False, description="Stop the schedule")]
    outports = [rf.Port("out", type="object", description="{time, count} per firing")]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = Config(ctx)
        expr = cfg.get("schedule", "str", alt=("cron", "cronExpression"))
        try:
            self.cron = Cron(expr)
        except CronError as exc:
            raise cfg.error("schedule", f"is not a valid cron expression: {exc}") from None
        tz_name = cfg.get("timezone", "str", "UTC")
        if tz_name.upper() == "UTC":
            self.tz: datetime.tzinfo | None = datetime.UTC
        elif tz_name == "local":
            self.tz = None
        else:
            import zoneinfo

            try:
                self.tz = zoneinfo.ZoneInfo(tz_name)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise cfg.error("timezone", f"is not a known time zone: {tz_name!r}") from None
        self.max = cfg.get("max", "int", 0, minimum=0)
        self.start: float | None = None
        if cfg.has("start"):
            try:
                start = datetime.datetime.fromisoformat(cfg.get("start", "str"))
            except ValueError:
                raise cfg.error("start", "must be an ISO 8601 timestamp") from None
            if start.tzinfo is None:
                start = start.replace(tzinfo=self.tz or datetime.UTC)
            self.start = start.timestamp()

    async def run(self, ctx: rf.ActorContext) -> None:
        wall0 = self.start if self.start is not None else _time.time()
        trio0 = trio.current_time()
        count = 0
        while not self.max or count < self.max:
            now = datetime.datetime.fromtimestamp(wall0 + trio.current_time() - trio0, self.tz)
            naive_next = self.cron.next_after(now.replace(tzinfo=None))
            nxt = naive_next.replace(tzinfo=now.tzinfo)
            if self.tz is None:
                nxt = naive_next.astimezone()
            deadline = trio0 + (nxt.timestamp() - wall0)
            got = await _receive_until(ctx, deadline)
            if got is not None:
                if got[0] == "stop":
                    return
                continue
            count += 1
            await ctx.send("out", {"time": nxt.isoformat(), "count": count})
