"""core/*: NoFlo's core components, with NoFlo's names and port names.

FBP tools (noflo-ui, fbp-spec, the FBP protocol's examples) expect ``core/Repeat``,
``core/Kick``, ``core/Output`` ... to exist with ``in``/``out`` ports, so these keep
NoFlo's interface exactly. They are also the smallest complete examples of the
actor API: a ``process`` method per firing, state in ``ctx.state``, config checked
in ``setup``. The ones that handle each packet on its own (Repeat, Copy, Merge, Split,
Drop, Output, Kick) are plain-``def`` steps, which the kernel calls without a
coroutine (:class:`~reflowpy.components._common.PerMessage`).
"""

from __future__ import annotations

import contextvars
import json
import sys
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

import msgspec
import trio

import reflowpy as rf
from reflowpy.components._common import (
    MISSING,
    Config,
    PerMessage,
    compile_expression,
    evaluate_or_report,
    load_config,
    report,
)
from reflowpy.components.expression import Expression, _to_str

__all__ = ["Copy", "Drop", "Kick", "MakeFunction", "Merge", "Output", "Repeat",
           "RepeatAsync", "Split"]


class _Forward(PerMessage):
    """What Repeat, Copy, Merge and Split do: send each ``in`` packet on ``out``.

    They differ only in name and port declarations (NoFlo's interfaces), so the
    logic lives here once.
    """

    class Config(msgspec.Struct, frozen=True, kw_only=True):
        pass

    def step(self, ctx: rf.ActorContext) -> Mapping[str, Any] | None:
        return {"out": ctx.inputs["in"]}


class Repeat(_Forward):
    """Forward every packet from ``in`` to ``out`` unchanged.

    Example (``.fbp``)::

        'hello' -> IN Repeat(core/Repeat) OUT -> IN Show(core/Output)
    """

    description = "Forwards packets from in to out unchanged"
    icon = "forward"
    inports = [rf.Port("in", description="Packet to forward")]
    outports = [rf.Port("out", description="The same packet")]


class RepeatAsync(rf.Actor):
    """Like :class:`Repeat`, but yields to the scheduler before forwarding.

    NoFlo uses it to break long synchronous chains; here it lets every other ready
    task run first (a trio checkpoint), so a tight loop through it cannot starve
    the network.
    """

    description = "Forwards packets from in to out after yielding to other tasks"
    icon = "forward"
    inports = [rf.Port("in", description="Packet to forward")]
    outports = [rf.Port("out", description="The same packet, one scheduler turn later")]

    async def process(self, ctx: rf.ActorContext) -> Mapping[str, Any]:
        await trio.lowlevel.checkpoint()
        return {"out": ctx.inputs["in"]}


class Copy(_Forward):
    """Send a copy of each packet from ``in`` to ``out``.

    Messages are immutable (frozen at send time), so the copy is the same object:
    no receiver can change what another sees. Use ``rf.thaw(value)`` in your own
    actor for a mutable copy.
    """

    description = "Copies packets from in to out (messages are immutable, so this is free)"
    icon = "copy"
    inports = [rf.Port("in", description="Packet to copy")]
    outports = [rf.Port("out", description="The copy")]


class Drop(PerMessage):
    """Consume packets and do nothing with them (counts them in ``ctx.state['dropped']``).

    Use it to terminate an out-port on purpose, so the graph validator does not
    report it as unconnected.
    """

    description = "Drops every packet it receives"
    icon = "trash-o"
    inports = [rf.Port("in", description="Packet to drop")]
    outports = ()

    class Config(msgspec.Struct, frozen=True, kw_only=True):
        pass

    def step(self, ctx: rf.ActorContext) -> Mapping[str, Any] | None:
        ctx.state["dropped"] = ctx.state.get("dropped", 0) + 1
        return None


#: Where :class:`Output` writes. ``None`` (the default, library use): its text line to
#: stdout. ``reflowpy run`` sets a function ``(node id, value, text)`` so the lines join
#: its JSON-lines stdout as ``{"node": ..., "value": ..., "text": ...}`` beside the
#: exported ports' ``{"port": ..., "value": ...}``, and stdout stays parseable.
output_sink: contextvars.ContextVar[Callable[[str, Any, str], None] | None] = \
    contextvars.ContextVar("reflowpy_output_sink", default=None)


class Output(PerMessage):
    """Print each packet to stdout and forward it on ``out``.

    Config: ``format`` — ``"text"`` (default: strings as they are, other values as
    JSON), ``"json"`` or ``"repr"``; ``prefix`` — text put in front of each line.
    Under ``reflowpy run`` each line is a JSON line ``{"node", "value", "text"}`` on
    the run's stdout instead (see :data:`output_sink`).

    Example: ``{"component": "core/Output", "metadata": {"prefix": "got: "}}``.
    """

    description = "Prints packets to stdout and forwards them"
    icon = "bug"
    inports = [rf.Port("in", description="Packet to print")]
    outports = [rf.Port("out", required=False, description="The printed packet")]

    class Config(msgspec.Struct, frozen=True, kw_only=True):
        format: Annotated[Literal["text", "json", "repr"], msgspec.Meta(
            description="text: strings as they are, other values as JSON")] = "text"
        prefix: Annotated[str, msgspec.Meta(description="Put in front of each line")] = ""

    def configure(self, ctx: rf.ActorContext) -> None:
        cfg = load_config(ctx, Output.Config)
        self.format = cfg.format
        self.prefix = cfg.prefix

    def step(self, ctx: rf.ActorContext) -> Mapping[str, Any] | None:
        value = ctx.inputs["in"]
        if self.format == "repr":
            text = repr(rf.thaw(value))
        elif self.format == "json" or not isinstance(value, str):
            text = json.dumps(rf.thaw(value), default=_to_str, ensure_ascii=False)
        else:
            text = value
        sink = output_sink.get()
        if sink is None:
            print(self.prefix + text, file=sys.stdout, flush=True)
        else:
            sink(ctx.node_id, value, self.prefix + text)
        if ctx.connected("out"):
            return {"out": value}
        return None


class Kick(PerMessage):
    """On each packet on ``in`` (a bang), send the stored ``data`` packet to ``out``.

    ``data`` is set by the ``data`` in-port (usually an IIP) or the ``data`` config
    key; it defaults to ``null``. Typical use: start a pipeline when the network
    starts, ``'go' -> IN Kick(core/Kick) OUT -> ...`` with ``'/tmp/x' -> DATA Kick``.
    """

    description = "Sends the stored data packet whenever a bang arrives on in"
    icon = "share"
    inports = [
        rf.Port("in", type="bang", description="Signal to send the data packet"),
        rf.Port("data", required=False, description="Packet to be sent (kept until replaced)"),
    ]
    outports = [rf.Port("out", description="The data packet")]

    class Config(msgspec.Struct, frozen=True, kw_only=True):
        data: Annotated[Any, msgspec.Meta(description="Packet sent on each bang")] = None

    def configure(self, ctx: rf.ActorContext) -> None:
        ctx.state.setdefault("data", load_config(ctx, Kick.Config).data)

    def step(self, ctx: rf.ActorContext) -> Mapping[str, Any] | None:
        if "data" in ctx.inputs:
            ctx.state["data"] = ctx.inputs["data"]
        if "in" in ctx.inputs:
            return {"out": ctx.state.get("data")}
        return None


class Merge(_Forward):
    """Forward packets from every connection into ``in`` to ``out``, in arrival order.

    Connections into one in-port already merge in reflowpy; this component keeps
    NoFlo graphs (which use ``Merge`` with indexed ``in[0]``, ``in[1]``) working.
    """

    description = "Merges all connections into in onto out"
    icon = "compress"
    inports = [rf.Port("in", addressable=True, description="Packets to merge")]
    outports = [rf.Port("out", description="Merged stream")]


class Split(_Forward):
    """Send each packet from ``in`` to every connection of ``out``.

    An out-port with several connections broadcasts in reflowpy; this component
    keeps NoFlo graphs (``out[0]``, ``out[1]``) working.
    """

    description = "Sends each packet to every connection of out"
    icon = "expand"
    inports = [rf.Port("in", description="Packet to split")]
    outports = [rf.Port("out", addressable=True, description="Every attached connection")]


class MakeFunction(rf.Actor):
    """Evaluate a function of ``x`` for each packet on ``in``; the result goes to ``out``.

    NoFlo takes a JavaScript body here; reflowpy takes a safe expression (see
    :mod:`reflowpy.components.expression`) in which ``x`` is the packet, e.g.
    ``"x * x"``. The function comes from the ``function`` in-port (IIP) or config
    key; a new one replaces the old and is echoed on the ``function`` out-port. A bad
    function or a failing evaluation goes to ``error`` (or is dead-lettered).
    """

    description = "Evaluates an expression of x for every packet"
    icon = "code"
    inports = [
        rf.Port("in", description="Packet to be processed (bound to x)"),
        rf.Port("function", type="string", required=False, description="Expression to evaluate"),
    ]
    outports = [
        rf.Port("out", description="Result of the expression"),
        rf.Port("function", type="string", required=False,
                description="The expression in force, after it changes"),
        rf.Port("error", type="object", required=False, description="Errors"),
    ]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = Config(ctx)
        self.fn: Expression | None = (
            compile_expression(cfg, "function") if cfg.has("function") else None)

    async def process(self, ctx: rf.ActorContext) -> None:
        if "function" in ctx.inputs:
            source = ctx.inputs["function"]
            fn = await evaluate_or_report(ctx, Expression, source)
            if fn is MISSING:
                return
            self.fn = fn
            if ctx.connected("function"):
                await ctx.send("function", source)
        if "in" in ctx.inputs:
            value = ctx.inputs["in"]
            if self.fn is None:
                await report(ctx, rf.ExpressionError(
                    f"node {ctx.node_id!r}: no function yet; send one to the 'function' port"
                    " or set the 'function' config key"), value)
                return
            result = await evaluate_or_report(ctx, self.fn, value)
            if result is not MISSING:
                await ctx.send("out", result)
