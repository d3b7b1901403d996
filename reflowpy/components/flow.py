"""flow/*: routing and control — gates, branches, loops, barriers, supervision wrappers.

Branching components (If, Switch, Router) decide per message with either a safe
expression (:mod:`reflowpy.components.expression`) or Reflow's rule groups
(``is``, ``is_not``, ``contains``, ``greater_than`` ... joined with AND/OR), so graphs
from Reflow's editor keep their conditions. The wrappers (Retry, Timeout,
CircuitBreaker) run another registered component inside themselves and add the
behaviour around each of its firings. If, Switch, Router and RoundRobin decide each
packet on its own and are plain-``def`` steps
(:class:`~reflowpy.components._common.PerMessage`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal

import msgspec
import trio

import reflowpy as rf
from reflowpy.components._common import (
    Config,
    PerMessage,
    compile_expression,
    error_output,
    get_path,
    load_config,
    parse_pointer,
    report,
)
from reflowpy.components.expression import Expression

__all__ = [
    "Barrier", "CircuitBreaker", "ForEach", "Gate", "If", "Retry", "RoundRobin", "Router",
    "Rules", "Sequencer", "Switch", "Timeout",
]

_OUTS = 8  # numbered out-ports of Switch / Router / RoundRobin


# -- Reflow-style rules ------------------------------------------------------------------


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        if isinstance(v, str):
            try:
                return float(v)
            except ValueError:
                return None
        return None
    return float(v)


def _cmp(test: Callable[[float, float], bool]) -> Callable[[Any, Any], bool]:
    def check(a: Any, b: Any) -> bool:
        x, y = _num(a), _num(b)
        return x is not None and y is not None and test(x, y)

    return check


def _contains(a: Any, b: Any) -> bool:
    if isinstance(a, str):
        return isinstance(b, str) and b in a
    if isinstance(a, (list, tuple)):
        return b in a
    if isinstance(a, Mapping):
        return b in a
    return False


def _empty(a: Any, _b: Any = None) -> bool:
    return a is None or (isinstance(a, (str, list, tuple, Mapping)) and len(a) == 0)


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "is": lambda a, b: a == b,
    "is_not": lambda a, b: a != b,
    "contains": _contains,
    "not_contains": lambda a, b: not _contains(a, b),
    "greater_than": _cmp(lambda x, y: x > y),
    "less_than": _cmp(lambda x, y: x < y),
    "greater_equal": _cmp(lambda x, y: x >= y),
    "less_equal": _cmp(lambda x, y: x <= y),
    "empty": _empty,
    "not_empty": lambda a, b: not _empty(a),
    "starts_with": lambda a, b: isinstance(a, str) and a.startswith(str(b)),
    "ends_with": lambda a, b: isinstance(a, str) and a.endswith(str(b)),
    "in": lambda a, b: isinstance(b, (list, tuple, str)) and a in b,
    "not_in": lambda a, b: not (isinstance(b, (list, tuple, str)) and a in b),
    "exists": lambda a, b: a is not _ABSENT,
    "not_exists": lambda a, b: a is _ABSENT,
}
_ALIASES = {
    "equals": "is", "eq": "is", "==": "is", "not_equals": "is_not", "ne": "is_not",
    "!=": "is_not", "gt": "greater_than", ">": "greater_than", "lt": "less_than",
    "<": "less_than", "gte": "greater_equal", ">=": "greater_equal",
    "lte": "less_equal", "<=": "less_equal", "is_empty": "empty",
    "is_not_empty": "not_empty",
}
_ABSENT: Any = object()


class Rules:
    """Reflow's rule groups, checked once and evaluated per message.

    Accepted shapes (``field`` is a dotted path or JSON pointer into the message;
    without ``field`` the rule tests the whole message)::

        {"type": "IF", "groups": [{"connector": "AND", "rules": [
            {"field": "status", "operator": "is", "value": "active"},
            {"field": "age", "operator": "greater_than", "value": 17}]}]}
        [{"field": "x", "operator": "less_than", "value": 3}]      # one AND group

    ``type`` ``IF``/``AND`` needs every group to match, ``OR`` any group; a group's
    ``connector`` (``AND``/``OR``) joins its rules. Operators: ``is``, ``is_not``,
    ``contains``, ``not_contains``, ``greater_than``, ``less_than``,
    ``greater_equal``, ``less_equal``, ``empty``, ``not_empty``, ``starts_with``,
    ``ends_with``, ``in``, ``not_in``, ``exists``, ``not_exists`` (and the aliases
    ``equals``, ``eq``, ``gt``, ``>=`` ...).
    """

    def __init__(self, spec: Any, cfg: Config, key: str) -> None:
        if isinstance(spec, (list, tuple)):
            spec = {"type": "IF", "groups": [{"connector": "AND", "rules": spec}]}
        if not isinstance(spec, Mapping):
            raise cfg.error(key, "must be a rule object {type, groups} or a list of rules")
        kind = str(spec.get("type", "IF")).upper()
        if kind not in ("IF", "AND", "OR"):
            raise cfg.error(f"{key}.type", f"must be IF, AND or OR, got {kind!r}")
        self.any_group = kind == "OR"
        groups = spec.get("groups")
        if not isinstance(groups, (list, tuple)) or not groups:
            raise cfg.error(f"{key}.groups", "must be a non-empty list of rule groups")
        self.groups: list[tuple[bool, list[tuple[tuple[str, ...] | None, Any, Any]]]] = []
        for gi, group in enumerate(groups):
            where = f"{key}.groups[{gi}]"
            if not isinstance(group, Mapping):
                raise cfg.error(where, "must be an object {connector, rules}")
            connector = str(group.get("connector", "AND")).upper()
            if connector not in ("AND", "OR"):
                raise cfg.error(f"{where}.connector", f"must be AND or OR, got {connector!r}")
            rules = group.get("rules")
            if not isinstance(rules, (list, tuple)) or not rules:
                raise cfg.error(f"{where}.rules", "must be a non-empty list of rules")
            compiled = []
            for ri, rule in enumerate(rules):
                rwhere = f"{where}.rules[{ri}]"
                if not isinstance(rule, Mapping):
                    raise cfg.error(rwhere, "must be an object {field, operator, value}")
                op = str(rule.get("operator", "is"))
                op = _ALIASES.get(op, op)
                if op not in _OPERATORS:
                    known = ", ".join(sorted(_OPERATORS))
                    raise cfg.error(f"{rwhere}.operator", f"is unknown: {op!r} (known: {known})")
                field = rule.get("field")
                path = parse_pointer(str(field)) if field not in (None, "") else None
                compiled.append((path, _OPERATORS[op], rule.get("value")))
            self.groups.append((connector == "OR", compiled))

    def __call__(self, msg: Any) -> bool:
        results = (self._group(any_rule, rules, msg) for any_rule, rules in self.groups)
        return any(results) if self.any_group else all(results)

    @staticmethod
    def _group(any_rule: bool, rules: Sequence[Any], msg: Any) -> bool:
        outcomes = (
            op(msg if path is None else get_path(msg, path, _ABSENT), value)
            for path, op, value in rules
        )
        return any(outcomes) if any_rule else all(outcomes)


def condition_from_config(cfg: Config, *, required: bool = True) -> Callable[[Any], Any] | None:
    """A predicate from ``expression`` (safe expression) or ``rules`` (rule groups)."""
    if cfg.has("expression"):
        return compile_expression(cfg)
    if cfg.has("rules"):
        return Rules(cfg.get("rules"), cfg, "rules")
    if required:
        raise cfg.error("expression", "or 'rules' is required to decide each message")
    return None


# -- Gate --------------------------------------------------------------------------------


class Gate(rf.Actor):
    """Pass packets from ``in`` to ``out`` while open; ``open``/``close`` switch it.

    Config: ``open`` (bool, default ``false``: the gate starts closed, as in NoFlo);
    ``when_closed``: ``"drop"`` (default: the packet goes to ``blocked`` if
    connected, else is counted in ``ctx.state['dropped']``) or ``"buffer"`` (kept, up
    to ``max_buffer`` = 1000, and released in order when the gate opens; past that,
    an error).
    """

    description = "Passes packets while open; open/close ports control it"
    icon = "pause"
    inports = [
        rf.Port("in", description="Packets to pass"),
        rf.Port("open", type="bang", required=False, description="Open the gate"),
        rf.Port("close", type="bang", required=False, description="Close the gate"),
    ]
    outports = [
        rf.Port("out", description="Packets passed while open"),
        rf.Port("blocked", required=False, description="Packets that arrived while closed"),
        rf.Port("error", type="object", required=False, description="Buffer overflow"),
    ]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = Config(ctx)
        ctx.state["open"] = cfg.get("open", "bool", False)
        mode = cfg.get("when_closed", "str", "drop", choices=("drop", "buffer"))
        self.buffering = mode == "buffer"
        self.max_buffer = cfg.get("max_buffer", "int", 1000, minimum=1)
        ctx.state["buffer"] = []

    async def process(self, ctx: rf.ActorContext) -> None:
        if "open" in ctx.inputs:
            ctx.state["open"] = True
            buffered, ctx.state["buffer"] = ctx.state["buffer"], []
            for value in buffered:
                await ctx.send("out", value)
        if "close" in ctx.inputs:
            ctx.state["open"] = False
        if "in" in ctx.inputs:
            value = ctx.inputs["in"]
            if ctx.state["open"]:
                await ctx.send("out", value)
            elif self.buffering:
                if len(ctx.state["buffer"]) >= self.max_buffer:
                    await report(ctx, OverflowError(
                        f"node {ctx.node_id!r}: gate closed and buffer full"
                        f" ({self.max_buffer} packets)"), value)
                else:
                    ctx.state["buffer"].append(value)
            elif ctx.connected("blocked"):
                await ctx.send("blocked", value)
            else:
                ctx.state["dropped"] = ctx.state.get("dropped", 0) + 1


# -- If / Switch / Router ----------------------------------------------------------------


class If(PerMessage):
    """Route each packet to ``true`` or ``false`` by a condition.

    Config: ``expression`` (safe expression over the message, e.g.
    ``"amount > 100 and currency == 'EUR'"``) or ``rules`` (Reflow rule groups, see
    :class:`Rules`). An expression that fails on a message sends it to ``error``.

    Example: ``{"component": "flow/If", "metadata": {"rules": [{"field": "level",
    "operator": "is", "value": "error"}]}}``.
    """

    description = "Routes packets to true/false by an expression or rule groups"
    icon = "code-fork"
    inports = [rf.Port("in", description="Packet to test")]
    outports = [
        rf.Port("true", description="Packets for which the condition holds"),
        rf.Port("false", required=False, description="Packets for which it does not"),
        rf.Port("error", type="object", required=False, description="Evaluation errors"),
    ]

    class Config(msgspec.Struct, frozen=True, kw_only=True):
        expression: Annotated[str | None, msgspec.Meta(
            description="A safe expression over the packet")] = None
        rules: Annotated[Any, msgspec.Meta(description="Reflow rule groups")] = None

    def configure(self, ctx: rf.ActorContext) -> None:
        load_config(ctx, If.Config)  # types, with the field path in the error
        test = condition_from_config(Config(ctx))
        assert test is not None
        self.test = test

    def step(self, ctx: rf.ActorContext) -> Mapping[str, Any] | None:
        value = ctx.inputs["in"]
        try:
            ok = self.test(value)
        except rf.ExpressionError as exc:
            return error_output(ctx, exc, value)
        port = "true" if ok else "false"
        if ctx.connected(port):
            return {port: value}
        return None


def _route(ctx: rf.ActorContext, port: str, value: Any) -> Mapping[str, Any] | None:
    """The output sending ``value`` on ``port`` if connected, else count it in
    ``state['unrouted']`` (Switch and Router: an unconnected case or route is a
    choice, not an error)."""
    if ctx.connected(port):
        return {port: value}
    ctx.state["unrouted"] = ctx.state.get("unrouted", 0) + 1
    return None


class Switch(PerMessage):
    """Send each packet to the first matching case ``case1`` .. ``case8``, else ``default``.

    Config: ``cases`` — a list (up to 8) of values compared with the switch value, or
    of expressions when ``match`` is ``"expression"`` (each evaluated over the message;
    the first truthy wins). The switch value is the message, the field at ``field``
    (path), or the result of ``expression``.

    Example: ``{"field": "kind", "cases": ["click", "view"]}`` sends clicks to
    ``case1``, views to ``case2``, everything else to ``default``.
    """

    description = "Routes packets to case1..case8 by value or expression, else default"
    icon = "random"
    inports = [rf.Port("in", description="Packet to route")]
    outports = [
        *(rf.Port(f"case{i}", required=False, description=f"Packets matching case {i}")
          for i in range(1, _OUTS + 1)),
        rf.Port("default", required=False, description="Packets matching no case"),
        rf.Port("error", type="object", required=False, description="Evaluation errors"),
    ]

    class Config(msgspec.Struct, frozen=True, kw_only=True):
        cases: Annotated[list[Any], msgspec.Meta(
            description="Up to 8 values (or expressions, with match: expression)")]
        match: Annotated[Literal["value", "expression"], msgspec.Meta(
            description="Compare values, or evaluate the cases")] = "value"
        field: Annotated[str | None, msgspec.Meta(
            description="Path of the switch value (default: the packet)")] = None
        expression: Annotated[str | None, msgspec.Meta(
            description="Expression giving the switch value")] = None

    def configure(self, ctx: rf.ActorContext) -> None:
        load_config(ctx, Switch.Config)  # types, with the field path in the error
        cfg = Config(ctx)
        self.mode = cfg.get("match", "str", "value", choices=("value", "expression"))
        cases = cfg.get("cases", "list")
        if not 1 <= len(cases) <= _OUTS:
            raise cfg.error("cases", f"must hold 1 to {_OUTS} cases, got {len(cases)}")
        self.cases: list[Any] = cases
        if self.mode == "expression":
            try:
                self.cases = [Expression(str(c)) for c in cases]
            except rf.ExpressionError as exc:
                raise cfg.error("cases", f"holds an invalid expression: {exc}") from None
        self.path = parse_pointer(cfg.get("field", "str")) if cfg.has("field") else None
        self.expr = compile_expression(cfg) if cfg.has("expression") else None

    def _port(self, value: Any) -> str:
        if self.mode == "expression":
            return next((f"case{i}" for i, c in enumerate(self.cases, 1) if c(value)), "default")
        key = value
        if self.path is not None:
            key = get_path(value, self.path, None)
        if self.expr is not None:
            key = self.expr(value)
        return next((f"case{i}" for i, c in enumerate(self.cases, 1) if c == key), "default")

    def step(self, ctx: rf.ActorContext) -> Mapping[str, Any] | None:
        value = ctx.inputs["in"]
        try:
            port = self._port(value)
        except rf.ExpressionError as exc:
            return error_output(ctx, exc, value)
        return _route(ctx, port, value)


class Router(PerMessage):
    """Route by key: the value at ``key`` (a path) picks the out-port through ``routes``.

    Config: ``key`` (path, required), ``routes`` — an object mapping key values to
    out-port names ``out1`` .. ``out8``. Unknown keys go to ``default``; a packet
    without the key goes to ``error``.

    Example: ``{"key": "region", "routes": {"eu": "out1", "us": "out2"}}``.
    """

    description = "Routes packets to out1..out8 by the value of a key"
    icon = "sitemap"
    inports = [rf.Port("in", type="object", description="Packet with a routing key")]
    outports = [
        *(rf.Port(f"out{i}", required=False, description=f"Route {i}")
          for i in range(1, _OUTS + 1)),
        rf.Port("default", required=False, description="Packets whose key has no route"),
        rf.Port("error", type="object", required=False, description="Packets without the key"),
    ]

    class Config(msgspec.Struct, frozen=True, kw_only=True):
        key: Annotated[str, msgspec.Meta(description="Path of the routing key")]
        routes: Annotated[dict[str, Any], msgspec.Meta(
            description="Key value -> out1..out8")]

    def configure(self, ctx: rf.ActorContext) -> None:
        load_config(ctx, Router.Config)  # types, with the field path in the error
        cfg = Config(ctx)
        self.path = parse_pointer(cfg.get("key", "str"))
        routes = cfg.get("routes", "dict")
        valid = {f"out{i}" for i in range(1, _OUTS + 1)}
        for k, port in routes.items():
            if port not in valid:
                raise cfg.error(f"routes.{k}", f"must name one of out1..out{_OUTS}, got {port!r}")
        self.routes = routes

    def step(self, ctx: rf.ActorContext) -> Mapping[str, Any] | None:
        value = ctx.inputs["in"]
        key = get_path(value, self.path, _ABSENT)
        if key is _ABSENT:
            return error_output(ctx, KeyError(f"node {ctx.node_id!r}: packet has no routing"
                                              f" key {'/' + '/'.join(self.path)!r}"), value)
        port = self.routes.get(str(key), self.routes.get(key, "default"))
        return _route(ctx, port, value)


class RoundRobin(PerMessage):
    """Spread packets over the connected out-ports ``out1`` .. ``out8`` in turn.

    Only connected ports take part, checked per packet, so live edits that add or
    remove a worker are followed. Each send waits for its receiver (backpressure), so
    a slow worker slows its turns. Registered as ``flow/RoundRobin`` and
    ``flow/LoadBalancer``.
    """

    description = "Distributes packets over connected out1..out8 in turn"
    icon = "refresh"
    inports = [rf.Port("in", description="Packets to distribute")]
    outports = [rf.Port(f"out{i}", required=False, description=f"Worker {i}")
                for i in range(1, _OUTS + 1)]

    class Config(msgspec.Struct, frozen=True, kw_only=True):
        pass

    def step(self, ctx: rf.ActorContext) -> Mapping[str, Any] | None:
        ports = [f"out{i}" for i in range(1, _OUTS + 1) if ctx.connected(f"out{i}")]
        if not ports:
            raise rf.ActorError(
                f"node {ctx.node_id!r}: no out-port connected (out1..out{_OUTS})",
                node=ctx.node_id, port="in")
        turn = ctx.state.get("turn", 0)
        ctx.state["turn"] = turn + 1
        return {ports[turn % len(ports)]: ctx.inputs["in"]}


# -- loops and synchronisation -----------------------------------------------------------


class ForEach(rf.Actor):
    """Send each item of a collection on ``item``, then ``completed`` with the count.

    A list gives its items; an object gives ``{"key": k, "value": v}`` pairs; with
    config ``with_index: true`` list items come as ``{"index": i, "value": v}``. A
    non-collection goes to ``error``. Registered as ``flow/ForEach`` and ``flow/Loop``.
    """

    description = "Splits a collection into items, then signals completed"
    icon = "repeat"
    inports = [rf.Port("in", type="array", description="Collection to iterate")]
    outports = [
        rf.Port("item", description="Each item in order"),
        rf.Port("completed", type="integer", required=False,
                description="Item count, after the last"),
        rf.Port("error", type="object", required=False, description="Input was not a collection"),
    ]

    async def setup(self, ctx: rf.ActorContext) -> None:
        self.with_index = Config(ctx).get("with_index", "bool", False)

    async def process(self, ctx: rf.ActorContext) -> None:
        value = ctx.inputs["in"]
        if isinstance(value, Mapping):
            items: list[Any] = [{"key": k, "value": v} for k, v in value.items()]
        elif isinstance(value, (list, tuple)):
            items = (
                [{"index": i, "value": v} for i, v in enumerate(value)]
                if self.with_index else list(value)
            )
        else:
            await report(ctx, TypeError(
                f"node {ctx.node_id!r}: expected an array or object, got"
                f" {type(value).__name__}"), value)
            return
        for item in items:
            await ctx.send("item", item)
        if ctx.connected("completed"):
            await ctx.send("completed", len(items))


class Barrier(rf.Actor):
    """Wait for one packet on each of ``in1`` .. ``inN``, then send them as a list.

    Config: ``inputs`` — N, how many in-ports take part (2 to 8, default 2). Packets
    are taken in rounds, FIFO per port, so nothing is overwritten and a fast input
    is held back by the kernel's bounded queue (backpressure) until the slow ones
    catch up.
    """

    description = "Synchronises N inputs: emits [in1, ..., inN] once each has a packet"
    icon = "align-justify"
    inports = [rf.Port(f"in{i}", required=False, description=f"Input {i}")
               for i in range(1, _OUTS + 1)]
    outports = [rf.Port("out", type="array", description="One packet of each input, in port order")]

    async def setup(self, ctx: rf.ActorContext) -> None:
        self.n = Config(ctx).get("inputs", "int", 2, minimum=2, maximum=_OUTS)

    async def run(self, ctx: rf.ActorContext) -> None:
        while True:
            row = []
            for i in range(1, self.n + 1):
                _, value = await ctx.receive(f"in{i}")
                row.append(value)
            await ctx.send("out", row)


class Sequencer(rf.Actor):
    """Restore order: emit packets by their sequence number, holding early ones back.

    Config: ``field`` (path of the sequence number, default ``seq``), ``start``
    (first number, default 0), ``max_pending`` (early packets held, default 1000).
    A packet whose number was already emitted goes to ``late``; a full buffer or a
    packet without a number goes to ``error``.
    """

    description = "Reorders packets by a sequence number field"
    icon = "sort-numeric-asc"
    inports = [rf.Port("in", type="object", description="Packets carrying a sequence number")]
    outports = [
        rf.Port("out", description="Packets in sequence order"),
        rf.Port("late", required=False, description="Duplicates and packets already passed"),
        rf.Port("error", type="object", required=False, description="Bad or overflowing packets"),
    ]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = Config(ctx)
        self.path = parse_pointer(cfg.get("field", "str", "seq"))
        ctx.state["next"] = cfg.get("start", "int", 0)
        self.max_pending = cfg.get("max_pending", "int", 1000, minimum=1)
        ctx.state["pending"] = {}

    async def process(self, ctx: rf.ActorContext) -> None:
        value = ctx.inputs["in"]
        seq = get_path(value, self.path, None)
        if isinstance(seq, bool) or not isinstance(seq, int):
            await report(ctx, ValueError(f"node {ctx.node_id!r}: packet has no integer"
                                         f" sequence number at {'/'.join(self.path)!r}"), value)
            return
        pending: dict[int, Any] = ctx.state["pending"]
        if seq < ctx.state["next"] or seq in pending:
            if ctx.connected("late"):
                await ctx.send("late", value)
            return
        if seq > ctx.state["next"]:
            if len(pending) >= self.max_pending:
                await report(ctx, OverflowError(
                    f"node {ctx.node_id!r}: {self.max_pending} packets waiting for sequence"
                    f" number {ctx.state['next']}"), value)
                return
            pending[seq] = value
            return
        await ctx.send("out", value)
        ctx.state["next"] += 1
        while ctx.state["next"] in pending:
            await ctx.send("out", pending.pop(ctx.state["next"]))
            ctx.state["next"] += 1


# -- wrappers ----------------------------------------------------------------------------


class _InnerContext:
    """The context a wrapped component sees: sends are captured, not delivered."""

    def __init__(self, outer: rf.ActorContext, config: Mapping[str, Any]) -> None:
        self._outer = outer
        self.node_id = f"{outer.node_id}/inner"
        self.config = config
        self.state: dict[str, Any] = {}
        self.log = outer.log
        self.inputs: Mapping[str, Any] = {}
        self.sent: list[tuple[str, Any]] = []

    async def send(self, port: str, value: Any) -> None:
        self.sent.append((port, value))

    async def send_all(self, port: str, values: Sequence[Any]) -> None:
        for value in values:
            await self.send(port, value)

    async def receive(self, port: str | None = None) -> tuple[str, Any]:
        raise rf.ComponentError("a wrapped component cannot receive; it must use process()")

    async def receive_until(self, deadline: float,
                            port: str | None = None) -> tuple[str, Any] | None:
        return await self.receive(port)

    def connected(self, port: str) -> bool:
        return True

    def dead_letter(self, port: str, value: Any, error: BaseException) -> None:
        self._outer.dead_letter(port, value, error)

    def status(self, text: str) -> None:
        self._outer.status(text)


def _registry() -> rf.Registry:
    """Where wrapped components are looked up (a seam tests replace)."""
    return rf.default_registry()


class _Wrapper(rf.Actor):
    """Runs another component (config ``component`` + ``config``) once per packet."""

    inports = [rf.Port("in", description="Packet for the wrapped component")]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = Config(ctx)
        name = cfg.get("component", "str")
        inner_config = cfg.get("config", "dict", {})
        # The network's own registry (ctx.registry), so a wrapper can run a component
        # registered there; a context without one falls back to the default registry.
        registry: rf.Registry | None = getattr(ctx, "registry", None)
        if registry is None:
            registry = _registry()
        try:
            component = registry.get(name)
        except rf.ComponentNotFound as exc:
            raise cfg.error("component", f"names no registered component: {exc}") from None
        if not isinstance(component, type) or component.owns_loop():
            raise cfg.error("component", f"{name!r} must be an actor with process(), not a"
                            " subgraph or a run() loop")
        inports = component.inport_specs()
        if not inports:
            raise cfg.error("component", f"{name!r} has no in-port to feed")
        self.inner_port = cfg.get("port", "str", inports[0].name)
        self.inner = component()
        self.ictx = _InnerContext(ctx, inner_config)
        await self.inner.setup(self.ictx)

    async def teardown(self, ctx: rf.ActorContext) -> None:
        inner = getattr(self, "inner", None)
        if inner is not None:
            await inner.teardown(self.ictx)

    async def call(self, value: Any) -> list[tuple[str, Any]]:
        """One firing of the wrapped component; raises if it failed or reported an error."""
        self.ictx.inputs = {self.inner_port: value}
        self.ictx.sent = []
        result = await self.inner.process(self.ictx)
        sent = list(self.ictx.sent)
        if result:
            sent.extend(result.items())
        for port, out in sent:
            if port == "error":
                message = out.get("error") if isinstance(out, Mapping) else out
                raise rf.ActorError(f"wrapped component reported: {message}", port="error")
        return sent

    async def forward(self, ctx: rf.ActorContext, sent: list[tuple[str, Any]]) -> None:
        for _port, out in sent:
            await ctx.send("out", out)


class Retry(_Wrapper):
    """Run a component per packet and retry it with exponential backoff when it fails.

    Config: ``component`` (registered name, e.g. ``"net/HttpRequest"``), ``config``
    (its config), ``retries`` (default 3), ``backoff`` (seconds, default 0.1),
    ``factor`` (default 2), ``max_backoff`` (default 10). Every output of the wrapped
    component goes to ``out``; its ``error`` output counts as a failure. After the
    last attempt the packet goes to ``error`` with the attempts made.
    """

    description = "Retries a wrapped component with exponential backoff"
    icon = "repeat"
    outports = [
        rf.Port("out", description="Outputs of the wrapped component"),
        rf.Port("error", type="object", required=False,
                description="Packets that failed every attempt"),
    ]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = Config(ctx)
        self.retries = cfg.get("retries", "int", 3, minimum=0)
        self.backoff = cfg.get("backoff", "number", 0.1, minimum=0)
        self.factor = cfg.get("factor", "number", 2.0, minimum=1)
        self.max_backoff = cfg.get("max_backoff", "number", 10.0, minimum=0)
        await super().setup(ctx)

    async def process(self, ctx: rf.ActorContext) -> None:
        value = ctx.inputs["in"]
        for attempt in range(1, self.retries + 2):
            try:
                sent = await self.call(value)
            except Exception as exc:
                ctx.log.info("attempt %d failed: %s", attempt, exc)
                if attempt > self.retries:
                    await report(ctx, exc, value, attempts=attempt)
                    return
                delay = min(self.backoff * self.factor ** (attempt - 1), self.max_backoff)
                await trio.sleep(delay)
                continue
            await self.forward(ctx, sent)
            return


class Timeout(_Wrapper):
    """Run a component per packet with a time limit.

    Config: ``component``, ``config``, ``seconds`` (required, > 0). Outputs go to
    ``out``; a packet whose firing took longer goes to ``timeout`` (or ``error`` if
    that is not connected, else it is dead-lettered); a failure goes to ``error``.
    """

    description = "Limits the time a wrapped component may take per packet"
    icon = "clock-o"
    outports = [
        rf.Port("out", description="Outputs of the wrapped component"),
        rf.Port("timeout", required=False, description="Packets that ran out of time"),
        rf.Port("error", type="object", required=False, description="Failures"),
    ]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = Config(ctx)
        self.seconds = cfg.get("seconds", "number", minimum=0)
        if self.seconds <= 0 or math.isinf(self.seconds):
            raise cfg.error("seconds", f"must be a finite number > 0, got {self.seconds!r}")
        await super().setup(ctx)

    async def process(self, ctx: rf.ActorContext) -> None:
        value = ctx.inputs["in"]
        sent: list[tuple[str, Any]] | None = None
        try:
            with trio.move_on_after(self.seconds):
                sent = await self.call(value)
        except Exception as exc:
            await report(ctx, exc, value)
            return
        if sent is None:
            if ctx.connected("timeout"):
                await ctx.send("timeout", value)
            else:
                await report(ctx, rf.ActivationTimeout(
                    f"node {ctx.node_id!r}: wrapped component took longer than"
                    f" {self.seconds}s", node=ctx.node_id, port="in"), value)
            return
        await self.forward(ctx, sent)


class CircuitBreaker(_Wrapper):
    """Stop calling a failing component for a while, then probe it again.

    Config: ``component``, ``config``, ``failures`` (consecutive failures that open
    the circuit, default 5), ``reset`` (seconds the circuit stays open, default 30).
    Closed: packets go through; failures go to ``error``. Open: packets go straight
    to ``rejected``. After ``reset`` seconds one packet is let through (half-open):
    success closes the circuit, failure opens it again. State changes are sent on
    ``state`` (``"open"``, ``"half_open"``, ``"closed"``).
    """

    description = "Rejects packets while a wrapped component keeps failing"
    icon = "bolt"
    outports = [
        rf.Port("out", description="Outputs of the wrapped component"),
        rf.Port("rejected", required=False,
                description="Packets refused while the circuit is open"),
        rf.Port("state", type="string", required=False, description="Circuit state changes"),
        rf.Port("error", type="object", required=False, description="Failures"),
    ]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = Config(ctx)
        self.threshold = cfg.get("failures", "int", 5, minimum=1)
        self.reset = cfg.get("reset", "number", 30.0, minimum=0)
        ctx.state.update(circuit="closed", failures=0, opened_at=0.0)
        await super().setup(ctx)

    async def _set(self, ctx: rf.ActorContext, state: str) -> None:
        if ctx.state["circuit"] != state:
            ctx.state["circuit"] = state
            if ctx.connected("state"):
                await ctx.send("state", state)

    async def process(self, ctx: rf.ActorContext) -> None:
        value = ctx.inputs["in"]
        if ctx.state["circuit"] == "open":
            if trio.current_time() - ctx.state["opened_at"] < self.reset:
                if ctx.connected("rejected"):
                    await ctx.send("rejected", value)
                else:
                    await report(ctx, rf.ActorError(
                        f"node {ctx.node_id!r}: circuit open", node=ctx.node_id), value)
                return
            await self._set(ctx, "half_open")
        try:
            sent = await self.call(value)
        except Exception as exc:
            ctx.state["failures"] += 1
            if ctx.state["circuit"] == "half_open" or ctx.state["failures"] >= self.threshold:
                ctx.state["opened_at"] = trio.current_time()
                await self._set(ctx, "open")
            await report(ctx, exc, value)
            return
        ctx.state["failures"] = 0
        await self._set(ctx, "closed")
        await self.forward(ctx, sent)
