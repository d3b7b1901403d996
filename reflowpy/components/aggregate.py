"""aggregate/*: components that combine many packets — collect, count, distinct, join.

Every buffer here is bounded by config, and what a full buffer or a timeout pushes
out goes to a named port (``expired``, ``error``) instead of disappearing. Count and
Distinct handle each packet on its own and are plain-``def`` steps
(:class:`~reflowpy.components._common.PerMessage`); every component declares its
config as a msgspec Struct ``Config``.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec
import trio

import reflowpy as rf
from reflowpy.components._common import (
    Config,
    PerMessage,
    get_path,
    load_config,
    parse_pointer,
    report_in_loop,
    send_at_stop,
)

__all__ = ["Collect", "Count", "Distinct", "Join"]

_ABSENT: Any = object()


class Collect(rf.Actor):
    """Collect packets into one array: every ``count`` packets, on ``flush``, or at stop.

    Config: ``count`` (optional; without it only ``flush`` or the network stopping
    emit), ``max`` (hard bound on the held packets, default 100000: beyond it the
    packet goes to ``error``). ``size`` on ``out``'s sibling port gives the length.
    """

    description = "Collects packets into an array until count/flush"
    icon = "archive"
    inports = [
        rf.Port("in", description="Packets to collect"),
        rf.Port("flush", type="bang", required=False, description="Emit what is collected now"),
    ]
    outports = [
        rf.Port("out", type="array", description="Collected packets"),
        rf.Port("size", type="integer", required=False, description="Length of each emitted array"),
        rf.Port("error", type="object", required=False, description="Packets past the bound"),
    ]

    class Config(msgspec.Struct, frozen=True, kw_only=True):
        count: Annotated[int, msgspec.Meta(ge=1, description="Emit every this many")] | None = (
            None)
        max: Annotated[int, msgspec.Meta(ge=1, description="Packets held at most")] = 100_000

    async def setup(self, ctx: rf.ActorContext) -> None:
        load_config(ctx, Collect.Config)  # types, with the field path in the error
        cfg = Config(ctx)
        self.count = cfg.get("count", "int", None, minimum=1)
        self.max = cfg.get("max", "int", 100_000, minimum=1)

    async def _emit(self, ctx: rf.ActorContext, items: list[Any]) -> None:
        await ctx.send("out", items)
        if ctx.connected("size"):
            await ctx.send("size", len(items))

    async def run(self, ctx: rf.ActorContext) -> None:
        self.items: list[Any] = []
        while True:
            port, value = await ctx.receive()
            if port == "in":
                if len(self.items) >= self.max:
                    await report_in_loop(ctx, OverflowError(
                        f"node {ctx.node_id!r}: already holding {self.max} packets"), value)
                    continue
                self.items.append(value)
                if self.count is None or len(self.items) < self.count:
                    continue
            if self.items or port == "flush":
                out, self.items = self.items, []
                await self._emit(ctx, out)

    async def teardown(self, ctx: rf.ActorContext) -> None:
        if getattr(self, "items", None):
            await send_at_stop(ctx, "out", self.items)


class Count(PerMessage):
    """Count packets: the running total after each one, or per key.

    Config: ``by`` (path; counts per value of that field, emitted as an object
    ``{value: count}``), ``emit``: ``"each"`` (default, after every packet) or
    ``"flush"`` (only when a ``flush`` packet arrives, then reset). ``reset``
    restarts from zero.
    """

    description = "Counts packets (in total or per key)"
    icon = "sort-numeric-asc"
    inports = [
        rf.Port("in", description="Packets to count"),
        rf.Port("flush", type="bang", required=False, description="Emit the count and reset"),
        rf.Port("reset", type="bang", required=False, description="Reset to zero"),
    ]
    outports = [rf.Port("out", description="Count (integer) or counts per key (object)")]

    class Config(msgspec.Struct, frozen=True, kw_only=True):
        by: Annotated[str | None, msgspec.Meta(
            description="Count per value of this path")] = None
        emit: Annotated[Literal["each", "flush"], msgspec.Meta(
            description="After every packet, or on flush")] = "each"

    def configure(self, ctx: rf.ActorContext) -> None:
        cfg = load_config(ctx, Count.Config)
        self.by = parse_pointer(cfg.by) if cfg.by is not None else None
        self.each = cfg.emit == "each"
        ctx.state["counts"] = {} if self.by is not None else 0

    def _snapshot(self, ctx: rf.ActorContext) -> Any:
        counts = ctx.state["counts"]
        return dict(counts) if isinstance(counts, dict) else counts

    def step(self, ctx: rf.ActorContext) -> Mapping[str, Any] | None:
        # one packet per firing (one port), so at most one output
        inputs = ctx.inputs
        if "reset" in inputs:
            ctx.state["counts"] = {} if self.by is not None else 0
        if "in" in inputs:
            if self.by is None:
                ctx.state["counts"] += 1
            else:
                key = get_path(inputs["in"], self.by, None)
                key = key if isinstance(key, str) else str(key)
                ctx.state["counts"][key] = ctx.state["counts"].get(key, 0) + 1
            if self.each:
                return {"out": self._snapshot(ctx)}
        if "flush" in inputs:
            out = self._snapshot(ctx)
            ctx.state["counts"] = {} if self.by is not None else 0
            return {"out": out}
        return None


class Distinct(PerMessage):
    """Pass each distinct packet (or key) once; repeats go to ``duplicate``.

    Config: ``key`` (path; default the whole packet), ``max_keys`` (how many keys
    are remembered, least recently seen forgotten first; default 100000), ``ttl``
    (seconds a key is remembered; default forever).
    """

    description = "Drops repeated packets (by value or key), with a bounded memory"
    icon = "star-o"
    inports = [rf.Port("in", description="Packets")]
    outports = [
        rf.Port("out", description="First occurrences"),
        rf.Port("duplicate", required=False, description="Repeats"),
    ]

    class Config(msgspec.Struct, frozen=True, kw_only=True):
        key: Annotated[str | None, msgspec.Meta(
            description="Path of the key (default: the whole packet)")] = None
        max_keys: Annotated[int, msgspec.Meta(ge=1, description="Keys remembered")] = 100_000
        ttl: Annotated[float, msgspec.Meta(ge=0, description="Seconds a key is remembered")] | (
            None) = None

    def configure(self, ctx: rf.ActorContext) -> None:
        cfg = load_config(ctx, Distinct.Config)
        self.key = parse_pointer(cfg.key) if cfg.key is not None else None
        self.max_keys = cfg.max_keys
        self.ttl = cfg.ttl
        self.seen: OrderedDict[Any, float] = OrderedDict()

    def step(self, ctx: rf.ActorContext) -> Mapping[str, Any] | None:
        value = ctx.inputs["in"]
        key = value if self.key is None else get_path(value, self.key, None)
        try:
            hash(key)
        except TypeError:
            key = repr(key)
        now = trio.current_time()
        seen_at = self.seen.get(key)
        if seen_at is not None and (self.ttl is None or now - seen_at < self.ttl):
            self.seen.move_to_end(key)
            if ctx.connected("duplicate"):
                return {"duplicate": value}
            return None
        self.seen[key] = now
        self.seen.move_to_end(key)
        while len(self.seen) > self.max_keys:
            self.seen.popitem(last=False)
        return {"out": value}


class Join(rf.Actor):
    """Join two streams by key: a ``left`` and a ``right`` packet with equal keys pair up.

    Config: ``key`` (path in both) or ``left_key`` / ``right_key``; ``max_pending``
    (packets held per side, default 10000: when full the oldest goes to
    ``expired``); ``timeout`` (seconds a packet waits for its partner; then it goes
    to ``expired``; default forever). Pairs go to ``out`` as
    ``{"key", "left", "right"}``; several waiting packets with one key pair FIFO.
    Expired packets carry ``{"side", "key", "value", "reason"}`` — never silently lost.
    """

    description = "Joins left and right packets by key, with a bounded buffer and a timeout"
    icon = "link"
    inports = [
        rf.Port("left", description="Left stream"),
        rf.Port("right", description="Right stream"),
    ]
    outports = [
        rf.Port("out", type="object", description="{key, left, right}"),
        rf.Port("expired", type="object", required=False,
                description="Packets that found no partner in time or were evicted"),
        rf.Port("error", type="object", required=False, description="Packets without a key"),
    ]

    class Config(msgspec.Struct, frozen=True, kw_only=True):
        key: Annotated[str | None, msgspec.Meta(description="Path of the key in both")] = None
        left_key: Annotated[str | None, msgspec.Meta(description="Path in left packets")] = None
        right_key: Annotated[str | None, msgspec.Meta(
            description="Path in right packets")] = None
        max_pending: Annotated[int, msgspec.Meta(ge=1, description="Held per side")] = 10_000
        timeout: Annotated[float, msgspec.Meta(
            ge=0, description="Seconds a packet waits for its partner")] | None = None

    async def setup(self, ctx: rf.ActorContext) -> None:
        load_config(ctx, Join.Config)  # types, with the field path in the error
        cfg = Config(ctx)
        both = cfg.get("key", "str", None)
        if both is None and not (cfg.has("left_key") and cfg.has("right_key")):
            raise cfg.error("key", "is required (or both 'left_key' and 'right_key')")
        self.paths = {
            "left": parse_pointer(cfg.get("left_key", "str", both)),
            "right": parse_pointer(cfg.get("right_key", "str", both)),
        }
        self.max_pending = cfg.get("max_pending", "int", 10_000, minimum=1)
        self.timeout = cfg.get("timeout", "number", None, minimum=0)

    async def _expire(self, ctx: rf.ActorContext, side: str, key: Any, value: Any,
                      reason: str) -> None:
        item = {"side": side, "key": key, "value": value, "reason": reason}
        if ctx.connected("expired"):
            await ctx.send("expired", item)
        else:
            raise rf.ActorError(
                f"node {ctx.node_id!r}: {side} packet with key {key!r} {reason}",
                node=ctx.node_id, port=side)

    async def run(self, ctx: rf.ActorContext) -> None:
        # Per side: entries [deadline, key, value, matched] in arrival order (for
        # timeouts and eviction) and by key (for matching). A matched entry stays in
        # `order` flagged until it reaches the head, so matching costs O(1).
        order: dict[str, deque[list[Any]]] = {"left": deque(), "right": deque()}
        by_key: dict[str, dict[Any, deque[list[Any]]]] = {"left": {}, "right": {}}
        live = {"left": 0, "right": 0}

        def take(side: str, entry: list[Any]) -> None:
            queue = by_key[side][entry[1]]
            queue.remove(entry)
            if not queue:
                del by_key[side][entry[1]]
            entry[3] = True
            live[side] -= 1
            while order[side] and order[side][0][3]:
                order[side].popleft()

        while True:
            deadline = min((order[s][0][0] for s in order if order[s]), default=math.inf)
            got: tuple[str, Any] | None = None
            with trio.move_on_at(deadline):
                got = await ctx.receive()
            if got is None:
                now = trio.current_time()
                for s in ("left", "right"):
                    while order[s] and order[s][0][0] <= now:
                        entry = order[s][0]
                        take(s, entry)
                        await self._expire(ctx, s, entry[1], entry[2], "timed out")
                continue
            side, value = got
            key = get_path(value, self.paths[side], _ABSENT)
            if key is _ABSENT:
                await report_in_loop(ctx, KeyError(f"node {ctx.node_id!r}: {side} packet has no key"
                                           f" {'/'.join(self.paths[side])!r}"), value)
                continue
            try:
                hash(key)
            except TypeError:
                key = repr(key)
            other = "right" if side == "left" else "left"
            waiting = by_key[other].get(key)
            if waiting:
                entry = waiting[0]
                take(other, entry)
                left, right = (value, entry[2]) if side == "left" else (entry[2], value)
                await ctx.send("out", {"key": key, "left": left, "right": right})
                continue
            if live[side] >= self.max_pending:
                oldest = order[side][0]
                take(side, oldest)
                await self._expire(ctx, side, oldest[1], oldest[2], "evicted: buffer full")
            timeout = self.timeout
            entry = [trio.current_time() + timeout if timeout is not None else math.inf,
                     key, value, False]
            order[side].append(entry)
            by_key[side].setdefault(key, deque()).append(entry)
            live[side] += 1
