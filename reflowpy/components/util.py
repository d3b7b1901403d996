"""util/*: small tools for building and debugging graphs — log, tap, count, sample,
constants, ids, clocks, and assertions for graphs used as tests."""

from __future__ import annotations

import datetime
import logging
import random
import uuid
from collections.abc import Mapping
from typing import Any

import reflowpy as rf
from reflowpy.components._common import MISSING, Config, compile_expression, report
from reflowpy.components.expression import Template

__all__ = ["Assert", "Const", "Counter", "Inspect", "Log", "Now", "Sample", "Uuid"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


class Log(rf.Actor):
    """Log each packet through the node's logger and forward it unchanged.

    Config: ``level`` (``debug``, ``info`` default, ``warning``, ``error``),
    ``message`` (a ``{{ expression }}`` template; default the packet itself).
    """

    description = "Logs packets and forwards them"
    icon = "list-alt"
    inports = [rf.Port("in", description="Packet to log")]
    outports = [rf.Port("out", required=False, description="The same packet")]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = Config(ctx)
        self.level = _LEVELS[cfg.get("level", "str", "info", choices=tuple(_LEVELS))]
        source = cfg.get("message", "str", None)
        try:
            self.template = Template(source) if source is not None else None
        except rf.ExpressionError as exc:
            raise cfg.error("message", f"is not a valid template: {exc}") from None

    async def process(self, ctx: rf.ActorContext) -> Mapping[str, Any] | None:
        value = ctx.inputs["in"]
        try:
            text = self.template.render(value) if self.template else repr(rf.thaw(value))
        except rf.ExpressionError as exc:
            text = f"<template failed: {exc}> {value!r}"
        ctx.log.log(self.level, "%s", text)
        return {"out": value} if ctx.connected("out") else None


class Inspect(rf.Actor):
    """A tap: forward each packet on ``out`` and a copy on ``tap`` (when connected).

    Registered as ``util/Inspect`` and ``util/Tap``. Also keeps the last ``keep``
    packets (default 10) in ``ctx.state['recent']`` for debuggers.
    """

    description = "Forwards packets and copies them to a tap port"
    icon = "search"
    inports = [rf.Port("in", description="Packet")]
    outports = [
        rf.Port("out", description="The same packet"),
        rf.Port("tap", required=False, description="A copy for observers"),
    ]

    async def setup(self, ctx: rf.ActorContext) -> None:
        self.keep = Config(ctx).get("keep", "int", 10, minimum=0)
        ctx.state["recent"] = []

    async def process(self, ctx: rf.ActorContext) -> None:
        value = ctx.inputs["in"]
        recent = ctx.state["recent"]
        recent.append(value)
        del recent[: max(len(recent) - self.keep, 0)]
        if ctx.connected("tap"):
            await ctx.send("tap", value)
        await ctx.send("out", value)


class Counter(rf.Actor):
    """Forward packets and send the running count on ``count``; ``reset`` zeroes it.

    Config: ``start`` (default 0), ``step`` (default 1).
    """

    description = "Counts packets passing through"
    icon = "plus-square"
    inports = [
        rf.Port("in", description="Packet"),
        rf.Port("reset", type="bang", required=False, description="Back to start"),
    ]
    outports = [
        rf.Port("out", required=False, description="The same packet"),
        rf.Port("count", type="integer", description="Count after this packet"),
    ]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = Config(ctx)
        self.start = cfg.get("start", "int", 0)
        self.step = cfg.get("step", "int", 1)
        ctx.state["count"] = self.start

    async def process(self, ctx: rf.ActorContext) -> None:
        if "reset" in ctx.inputs:
            ctx.state["count"] = self.start
        if "in" in ctx.inputs:
            ctx.state["count"] += self.step
            if ctx.connected("out"):
                await ctx.send("out", ctx.inputs["in"])
            await ctx.send("count", ctx.state["count"])


class Sample(rf.Actor):
    """Pass a sample of the packets: every ``every``-th one, or each with probability ``rate``.

    Config: ``every`` (int >= 1) or ``rate`` (0..1) with optional ``seed`` for a
    repeatable sample.
    """

    description = "Passes every n-th packet or a random fraction"
    icon = "filter"
    inports = [rf.Port("in", description="Packet")]
    outports = [rf.Port("out", description="Sampled packets")]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = Config(ctx)
        self.every = cfg.get("every", "int", None, minimum=1)
        self.rate = cfg.get("rate", "number", None, minimum=0, maximum=1)
        if (self.every is None) == (self.rate is None):
            raise cfg.error("every", "or 'rate' is required (exactly one of them)")
        self.random = random.Random(cfg.get("seed", "any", None))
        ctx.state["seen"] = 0

    async def process(self, ctx: rf.ActorContext) -> None:
        ctx.state["seen"] += 1
        if self.every is not None:
            keep = ctx.state["seen"] % self.every == 0
        else:
            keep = self.random.random() < self.rate
        if keep:
            await ctx.send("out", ctx.inputs["in"])


class Uuid(rf.Actor):
    """On each packet on ``in``, send a fresh random UUID (version 4) string."""

    description = "Generates a UUID per trigger"
    icon = "barcode"
    inports = [rf.Port("in", type="bang", description="Trigger")]
    outports = [rf.Port("out", type="string", description="UUID string")]

    async def process(self, ctx: rf.ActorContext) -> Mapping[str, Any]:
        return {"out": str(uuid.uuid4())}


class Now(rf.Actor):
    """On each packet on ``in``, send the current wall-clock time.

    Config: ``format``: ``"iso"`` (default, UTC ISO 8601), ``"epoch"`` (seconds,
    float) or ``"epoch_ms"`` (integer milliseconds).
    """

    description = "Sends the current time per trigger"
    icon = "clock-o"
    inports = [rf.Port("in", type="bang", description="Trigger")]
    outports = [rf.Port("out", description="Current time")]

    async def setup(self, ctx: rf.ActorContext) -> None:
        self.format = Config(ctx).get("format", "str", "iso", choices=("iso", "epoch", "epoch_ms"))

    async def process(self, ctx: rf.ActorContext) -> Mapping[str, Any]:
        now = datetime.datetime.now(datetime.UTC)
        if self.format == "epoch":
            return {"out": now.timestamp()}
        if self.format == "epoch_ms":
            return {"out": int(now.timestamp() * 1000)}
        return {"out": now.isoformat()}


class Const(rf.Actor):
    """On each packet on ``in``, send the configured ``value`` (required)."""

    description = "Sends a constant per trigger"
    icon = "thumb-tack"
    inports = [rf.Port("in", type="bang", description="Trigger")]
    outports = [rf.Port("out", description="The constant")]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = Config(ctx)
        if "value" not in cfg.data:
            raise cfg.error("value", "is required")
        self.value = cfg.data["value"]

    async def process(self, ctx: rf.ActorContext) -> Mapping[str, Any]:
        return {"out": self.value}


class Assert(rf.Actor):
    """Check packets, for graphs used as tests.

    Config: ``expect`` (a list: the i-th packet must equal the i-th item), and/or
    ``expression`` (must be truthy for every packet). Passing packets go to ``out``;
    a failing one goes to ``failed`` as ``{value, index, reason}`` if connected, else
    the node fails (``ActorFailed`` event, dead letter) so a test harness sees it.
    ``ctx.state`` holds ``passed`` and ``failed`` counts.
    """

    description = "Asserts packets equal expected values or satisfy an expression"
    icon = "check"
    inports = [rf.Port("in", description="Packet to check")]
    outports = [
        rf.Port("out", required=False, description="Packets that passed"),
        rf.Port("failed", type="object", required=False, description="Packets that failed"),
    ]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = Config(ctx)
        self.expect = cfg.get("expect", "list", None)
        self.expr = compile_expression(cfg) if cfg.has("expression") else None
        if self.expect is None and self.expr is None:
            raise cfg.error("expect", "or 'expression' is required")
        ctx.state.update(index=0, passed=0, failed=0)

    async def process(self, ctx: rf.ActorContext) -> None:
        value = ctx.inputs["in"]
        index = ctx.state["index"]
        ctx.state["index"] += 1
        reason = None
        if self.expect is not None:
            expected = self.expect[index] if index < len(self.expect) else MISSING
            if expected is MISSING:
                reason = f"packet {index} is more than the {len(self.expect)} expected"
            elif expected != value:
                reason = f"packet {index}: expected {expected!r}, got {value!r}"
        if reason is None and self.expr is not None:
            try:
                ok = self.expr(value)
            except rf.ExpressionError as exc:
                ok, reason = False, str(exc)
            if not ok and reason is None:
                reason = f"packet {index}: {self.expr.source!r} is false for {value!r}"
        if reason is None:
            ctx.state["passed"] += 1
            if ctx.connected("out"):
                await ctx.send("out", value)
            return
        ctx.state["failed"] += 1
        if ctx.connected("failed"):
            await ctx.send("failed", {"value": value, "index": index, "reason": reason})
        else:
            await report(ctx, AssertionError(f"node {ctx.node_id!r}: {reason}"), value,
                         port="failed")
