"""reflow/*: Reflow's template actors (``tpl_*``), with Reflow's port and config names.

Reflow graphs (from its Zeal editor) name components like ``tpl_if_branch`` and
connect ports such as ``data``, ``true-out``, ``response_out``; settings live in the
node metadata, often nested under ``propertyValues``. Each class here keeps those
names and reads those settings, and reuses the logic of the matching standard
component, so a Reflow graph runs unchanged. :data:`TEMPLATE_ALIASES` maps each
``tpl_*`` name to the component registered for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import trio

import reflowpy as rf
from reflowpy.components._common import (
    MISSING,
    Config,
    evaluate_or_report,
    get_path,
    parse_pointer,
    report,
)
from reflowpy.components.flow import Rules
from reflowpy.components.net import HttpRequest
from reflowpy.components.timing import CronTrigger

__all__ = ["TEMPLATES", "TEMPLATE_ALIASES"]


def _cfg(ctx: rf.ActorContext) -> Config:
    return Config(ctx, reflow=True)


class IfBranch(rf.Actor):
    """Reflow ``tpl_if_branch``: route ``data`` to ``true-out`` or ``false-out``.

    Settings (top level or under ``propertyValues``): ``decisionRules``
    (``{type: IF|OR, groups: [{connector, rules: [{field, operator, value}]}]}``, see
    :class:`reflowpy.components.flow.Rules`) or the simple form ``condition_type``
    (``equals``, ``greater_than``, ``less_than``, ``contains``, ``is_empty``, else a
    truthiness test), ``condition_field``/``field`` and ``condition_value``/``value``.
    """

    description = "Reflow tpl_if_branch: routes data by rule groups to true-out/false-out"
    icon = "git-branch"
    inports = [rf.Port("data", description="Data to test")]
    outports = [
        rf.Port("true-out", required=False, description="Data matching the rules"),
        rf.Port("false-out", required=False, description="Data not matching"),
    ]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = _cfg(ctx)
        if cfg.has("decisionRules"):
            self.test = Rules(cfg.get("decisionRules"), cfg, "decisionRules")
            return
        ops = {"equals": "is", "greater_than": "greater_than", "less_than": "less_than",
               "contains": "contains", "is_empty": "empty"}
        kind = cfg.get("condition_type", "str", "truthy")
        field = cfg.get("condition_field", "str", None, alt=("field",))
        if kind in ops:
            rule = {"operator": ops[kind], "value": cfg.data.get("condition_value",
                                                                 cfg.data.get("value"))}
            if field:
                rule["field"] = field
            self.test = Rules([rule], cfg, "condition_type")
        else:
            path = parse_pointer(field) if field else ()
            self.test = lambda v: bool(get_path(v, path, None))  # type: ignore[assignment]

    async def process(self, ctx: rf.ActorContext) -> None:
        value = ctx.inputs["data"]
        port = "true-out" if self.test(value) else "false-out"
        if ctx.connected(port):
            await ctx.send(port, value)


class SwitchCase(rf.Actor):
    """Reflow ``tpl_switch``: ``data`` to ``case1`` .. ``case4`` by ``caseN_value``, else
    ``default``. The switch value is the data or its ``switch_field``/``field``."""

    description = "Reflow tpl_switch: routes data to case1..case4 or default"
    icon = "shuffle"
    inports = [rf.Port("data", description="Data to route")]
    outports = [*(rf.Port(f"case{i}", required=False,
                          description=f"Case {i}") for i in range(1, 5)),
                rf.Port("default", required=False, description="No case matched")]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = _cfg(ctx)
        field = cfg.get("switch_field", "str", None, alt=("field",))
        self.path = parse_pointer(field) if field else None
        self.cases = [(f"case{i}", cfg.data[f"case{i}_value"]) for i in range(1, 5)
                      if cfg.data.get(f"case{i}_value") is not None]

    async def process(self, ctx: rf.ActorContext) -> None:
        value = ctx.inputs["data"]
        key = get_path(value, self.path, None) if self.path is not None else value
        port = next((p for p, c in self.cases if c == key), "default")
        if ctx.connected(port):
            await ctx.send(port, value)


class Loop(rf.Actor):
    """Reflow ``tpl_loop``: each element of ``collection`` on ``item`` as
    ``{value, index}``, then ``true`` on ``completed``. ``initial_value`` is accepted
    for compatibility and ignored."""

    description = "Reflow tpl_loop: iterates a collection into items, then completed"
    icon = "repeat"
    inports = [
        rf.Port("collection", type="array", description="Array to iterate"),
        rf.Port("initial_value", required=False, description="Accepted for compatibility"),
    ]
    outports = [
        rf.Port("item", type="object", description="{value, index} per element"),
        rf.Port("completed", type="boolean", required=False, description="true after the last"),
    ]

    async def process(self, ctx: rf.ActorContext) -> None:
        if "collection" not in ctx.inputs:
            return
        items = ctx.inputs["collection"]
        if isinstance(items, (list, tuple)):
            for index, value in enumerate(items):
                await ctx.send("item", {"value": value, "index": index})
        if ctx.connected("completed"):
            await ctx.send("completed", True)


class DataTransformer(rf.Actor):
    """Reflow ``tpl_data_transformer``: ``input`` -> ``output`` through a safe expression.

    Settings: ``expression`` (one value) or ``fields``/``mappings`` (object of name
    -> expression). Failures go to ``error``.
    """

    description = "Reflow tpl_data_transformer: transforms input with expressions"
    icon = "shuffle"
    inports = [rf.Port("input", description="Data to transform")]
    outports = [rf.Port("output", description="Transformed data"),
                rf.Port("error", required=False, description="Failures")]

    async def setup(self, ctx: rf.ActorContext) -> None:
        from reflowpy.components.expression import Expression

        cfg = _cfg(ctx)
        try:
            if cfg.has("expression"):
                expr = Expression(cfg.get("expression", "str"))
                self.fn = expr
            else:
                fields = cfg.get("fields", "dict", alt=("mappings",))
                compiled = {k: Expression(str(v)) for k, v in fields.items()}
                self.fn = lambda v: {k: e(v) for k, e in compiled.items()}  # type: ignore[assignment]
        except rf.ExpressionError as exc:
            raise cfg.error("expression", f"is not a valid expression: {exc}") from None

    async def process(self, ctx: rf.ActorContext) -> None:
        out = await evaluate_or_report(ctx, self.fn, ctx.inputs["input"])
        if out is not MISSING:
            await ctx.send("output", out)


class ReflowHttpRequest(HttpRequest):
    """Reflow ``tpl_http_request``: ``data_in`` (body or request) and ``headers_in`` ->
    ``response_out`` / ``error_out``. Settings ``url``, ``method``, ``timeout``
    (milliseconds, as in Reflow), ``headers``; 4xx/5xx and failures go to ``error_out``.
    """

    description = "Reflow tpl_http_request: HTTP request per data_in packet"
    inports = [rf.Port("data_in", description="Request body (or request object)"),
               rf.Port("headers_in", type="object", required=False, description="Extra headers")]
    outports = [rf.Port("response_out", type="object", description="Responses"),
                rf.Port("error_out", type="object", required=False, description="Failures")]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = _cfg(ctx)
        wrapped = dict(cfg.data)
        if cfg.has("timeout"):
            wrapped["timeout"] = cfg.get("timeout", "number", minimum=1) / 1000.0
        self._ctx_config = wrapped
        await super().setup(_ConfigView(ctx, wrapped))
        ctx.state["headers"] = {}

    async def process(self, ctx: rf.ActorContext) -> None:
        if "headers_in" in ctx.inputs:
            h = ctx.inputs["headers_in"]
            ctx.state["headers"] = dict(h) if isinstance(h, Mapping) else {}
        if "data_in" not in ctx.inputs:
            return
        data = ctx.inputs["data_in"]
        req: dict[str, Any]
        if isinstance(data, Mapping) and "url" in data:
            req = dict(data)
        elif data is None or self.method in ("GET", "HEAD", "DELETE", "OPTIONS"):
            req = {}
        else:
            req = {"body": data}
        req["headers"] = {**ctx.state["headers"], **dict(req.get("headers") or {})}
        view = _PortView(ctx, {"response": "response_out", "status": "error_out",
                               "error": "error_out"}, {"in": req})
        await super().process(view)


class _ConfigView:
    """A context that shows a different config (for reusing a standard setup)."""

    def __init__(self, ctx: rf.ActorContext, config: Mapping[str, Any]) -> None:
        self._ctx = ctx
        self.config = config
        self.node_id = ctx.node_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)


class _PortView:
    """A context that renames ports and inputs (for reusing a standard process)."""

    def __init__(self, ctx: rf.ActorContext, ports: Mapping[str, str],
                 inputs: Mapping[str, Any]) -> None:
        self._ctx = ctx
        self._ports = ports
        self.inputs = inputs
        self.node_id = ctx.node_id
        self.state = ctx.state
        self.config = ctx.config
        self.log = ctx.log

    async def send(self, port: str, value: Any) -> None:
        await self._ctx.send(self._ports.get(port, port), value)

    async def send_all(self, port: str, values: Sequence[Any]) -> None:
        await self._ctx.send_all(self._ports.get(port, port), values)

    def connected(self, port: str) -> bool:
        return self._ctx.connected(self._ports.get(port, port))

    async def receive(self, port: str | None = None) -> tuple[str, Any]:
        return await self._ctx.receive(port)

    async def receive_until(self, deadline: float,
                            port: str | None = None) -> tuple[str, Any] | None:
        return await self._ctx.receive_until(deadline, port)

    def dead_letter(self, port: str, value: Any, error: BaseException) -> None:
        self._ctx.dead_letter(self._ports.get(port, port), value, error)

    def status(self, text: str) -> None:
        self._ctx.status(text)


class Passthrough(rf.Actor):
    """Reflow ``tpl_passthrough``: ``input`` -> ``output`` unchanged."""

    description = "Reflow tpl_passthrough: identity / debug tap"
    icon = "arrow-right"
    inports = [rf.Port("input", description="Data")]
    outports = [rf.Port("output", description="The same data")]

    async def process(self, ctx: rf.ActorContext) -> Mapping[str, Any]:
        return {"output": ctx.inputs["input"]}


def _field(item: Any, field: str) -> Any:
    return get_path(item, parse_pointer(field), None) if field else item


class ArrayMap(rf.Actor):
    """Reflow ``tpl_map``: apply ``operation`` (``identity``, ``to_string``,
    ``to_number``, ``extract_field`` with ``field``) to each item of the ``input`` array."""

    description = "Reflow tpl_map: transforms each array item"
    icon = "list"
    inports = [rf.Port("input", type="array", description="Array")]
    outports = [rf.Port("output", type="array", description="Mapped array"),
                rf.Port("error", required=False, description="Failures")]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = _cfg(ctx)
        self.op = cfg.get("operation", "str", "identity",
                          choices=("identity", "to_string", "to_number", "extract_field"))
        self.field = cfg.get("field", "str", "")

    def _one(self, item: Any) -> Any:
        if self.op == "to_string":
            from reflowpy.components.expression import _to_str

            return _to_str(item)
        if self.op == "to_number":
            n = float(item)
            return int(n) if n.is_integer() and not isinstance(item, float) else n
        if self.op == "extract_field":
            return _field(item, self.field)
        return item

    async def process(self, ctx: rf.ActorContext) -> None:
        items = ctx.inputs["input"]
        try:
            if not isinstance(items, (list, tuple)):
                raise TypeError(f"expected an array, got {type(items).__name__}")
            out = [self._one(i) for i in items]
        except (TypeError, ValueError) as exc:
            await report(ctx, exc, items)
            return
        await ctx.send("output", out)


class ArrayFilter(rf.Actor):
    """Reflow ``tpl_filter``: split the ``input`` array into ``output`` (kept) and
    ``rejected`` by ``condition`` (``truthy``, ``not_null``, ``equals``,
    ``greater_than``, ``less_than``, ``contains``) on ``field`` against ``value``."""

    description = "Reflow tpl_filter: keeps array items matching a condition"
    icon = "filter"
    inports = [rf.Port("input", type="array", description="Array")]
    outports = [rf.Port("output", type="array", description="Kept items"),
                rf.Port("rejected", type="array", required=False, description="Other items"),
                rf.Port("error", required=False, description="Failures")]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = _cfg(ctx)
        self.test: Callable[[Any], Any]
        cond = cfg.get("condition", "str", "truthy", choices=(
            "truthy", "not_null", "equals", "greater_than", "less_than", "contains"))
        self.field = cfg.get("field", "str", "")
        value = cfg.data.get("value")
        if cond == "truthy":
            self.test = lambda v: bool(v)
        elif cond == "not_null":
            self.test = lambda v: v is not None
        else:
            op = {"equals": "is"}.get(cond, cond)
            rules = Rules([{"operator": op, "value": value}], cfg, "condition")
            self.test = rules

    async def process(self, ctx: rf.ActorContext) -> None:
        items = ctx.inputs["input"]
        if not isinstance(items, (list, tuple)):
            await report(ctx, TypeError(f"expected an array, got {type(items).__name__}"), items)
            return
        kept: list[Any] = []
        rejected: list[Any] = []
        for item in items:
            (kept if self.test(_field(item, self.field)) else rejected).append(item)
        await ctx.send("output", kept)
        if ctx.connected("rejected"):
            await ctx.send("rejected", rejected)


class ArrayReduce(rf.Actor):
    """Reflow ``tpl_reduce``: reduce the ``input`` array by ``operation`` (``sum``,
    ``product``, ``min``, ``max``, ``count``, ``concat``, ``first``, ``last``)."""

    description = "Reflow tpl_reduce: reduces an array to one value"
    icon = "minimize-2"
    inports = [rf.Port("input", type="array", description="Array")]
    outports = [rf.Port("output", description="Result"),
                rf.Port("error", required=False, description="Failures")]

    async def setup(self, ctx: rf.ActorContext) -> None:
        self.op = _cfg(ctx).get("operation", "str", "sum", choices=(
            "sum", "product", "min", "max", "count", "concat", "first", "last"))

    async def process(self, ctx: rf.ActorContext) -> None:
        items = ctx.inputs["input"]
        try:
            if not isinstance(items, (list, tuple)):
                raise TypeError(f"expected an array, got {type(items).__name__}")
            op = self.op
            if op == "sum":
                out: Any = sum(items)
            elif op == "product":
                out = math.prod(items)
            elif op in ("min", "max"):
                out = (min if op == "min" else max)(items) if items else None
            elif op == "count":
                out = len(items)
            elif op == "concat":
                out = "".join(map(str, items)) if all(isinstance(i, str) for i in items) else [
                    x for i in items for x in (i if isinstance(i, (list, tuple)) else [i])]
            else:
                out = (items[0] if op == "first" else items[-1]) if items else None
        except (TypeError, ValueError) as exc:
            await report(ctx, exc, items)
            return
        await ctx.send("output", out)


class CombineMerge(rf.Actor):
    """Reflow ``tpl_merge``: on every packet on ``a``..``d``, send the latest value of
    each port seen so far, as an object (``mode: object``) or array (``mode: array``)."""

    description = "Reflow tpl_merge: combines the latest a/b/c/d values"
    icon = "git-merge"
    inports = [rf.Port(p, required=False, description=f"Input {p.upper()}") for p in "abcd"]
    outports = [rf.Port("output", description="Merged value")]

    async def setup(self, ctx: rf.ActorContext) -> None:
        self.mode = _cfg(ctx).get("mode", "str", "object", choices=("object", "array"))
        ctx.state["latest"] = {}

    async def process(self, ctx: rf.ActorContext) -> Mapping[str, Any]:
        latest = ctx.state["latest"]
        latest.update(ctx.inputs)
        if self.mode == "array":
            return {"output": [latest.get(p) for p in "abcd"]}
        return {"output": {p: latest[p] for p in "abcd" if p in latest}}


class HeadTail(rf.Actor):
    """Reflow ``tpl_split``: ``input`` array -> ``head`` (first item), ``tail`` (the
    rest) and ``count``."""

    description = "Reflow tpl_split: head/tail decomposition of an array"
    icon = "scissors"
    inports = [rf.Port("input", type="array", description="Array")]
    outports = [rf.Port("head", required=False, description="First item"),
                rf.Port("tail", type="array", required=False, description="Remaining items"),
                rf.Port("count", type="integer", required=False, description="Length")]

    async def process(self, ctx: rf.ActorContext) -> Mapping[str, Any]:
        items = ctx.inputs["input"]
        items = list(items) if isinstance(items, (list, tuple)) else [items]
        return {"head": items[0] if items else None, "tail": items[1:], "count": len(items)}


class ControlGate(rf.Actor):
    """Reflow ``tpl_gate``: ``input`` passes to ``output`` while the last ``control``
    was true (``invert`` flips it), else goes to ``blocked``. Starts closed."""

    description = "Reflow tpl_gate: passes or blocks data by a boolean control"
    icon = "toggle-left"
    inports = [rf.Port("input", description="Data"),
               rf.Port("control", type="boolean", required=False,
                       description="Open (true) / close")]
    outports = [rf.Port("output", description="Passed data"),
                rf.Port("blocked", required=False, description="Blocked data")]

    async def setup(self, ctx: rf.ActorContext) -> None:
        self.invert = _cfg(ctx).get("invert", "bool", False)
        ctx.state["open"] = self.invert

    async def process(self, ctx: rf.ActorContext) -> None:
        if "control" in ctx.inputs:
            ctx.state["open"] = bool(ctx.inputs["control"]) != self.invert
        if "input" in ctx.inputs:
            port = "output" if ctx.state["open"] else "blocked"
            if ctx.connected(port):
                await ctx.send(port, ctx.inputs["input"])


class DelayMs(rf.Actor):
    """Reflow ``tpl_delay``: ``input`` -> ``output`` after ``delayMs`` milliseconds
    (default 1000)."""

    description = "Reflow tpl_delay: timed passthrough"
    icon = "clock"
    inports = [rf.Port("input", description="Data")]
    outports = [rf.Port("output", description="The same data, later")]

    async def setup(self, ctx: rf.ActorContext) -> None:
        self.delay = _cfg(ctx).get("delayMs", "number", 1000, minimum=0) / 1000.0

    async def process(self, ctx: rf.ActorContext) -> Mapping[str, Any]:
        await trio.sleep(self.delay)
        return {"output": ctx.inputs["input"]}


class CollectN(rf.Actor):
    """Reflow ``tpl_collect``: every ``count`` (default 10) ``input`` packets, send
    them as an array on ``output`` and the length on ``count``."""

    description = "Reflow tpl_collect: accumulates N items into an array"
    icon = "inbox"
    inports = [rf.Port("input", description="Item")]
    outports = [rf.Port("output", type="array", description="Collected items"),
                rf.Port("count", type="integer", required=False, description="Array length")]

    async def setup(self, ctx: rf.ActorContext) -> None:
        self.n = _cfg(ctx).get("count", "int", 10, minimum=1)
        ctx.state["items"] = []

    async def process(self, ctx: rf.ActorContext) -> None:
        items = ctx.state["items"]
        items.append(ctx.inputs["input"])
        if len(items) >= self.n:
            ctx.state["items"] = []
            await ctx.send("output", items)
            if ctx.connected("count"):
                await ctx.send("count", len(items))


_UNITS = {"milliseconds": 0.001, "seconds": 1.0, "minutes": 60.0, "hours": 3600.0,
          "days": 86400.0}


class IntervalTrigger(rf.Actor):
    """Reflow ``tpl_interval_trigger``: emit ``{count, time}`` on ``trigger`` every
    ``interval`` ``intervalUnit`` (default milliseconds); ``startImmediately``
    (default true) fires at once; ``maxExecutions`` (0 = unlimited). A packet on
    ``start`` (re)starts the schedule when it is not running."""

    description = "Reflow tpl_interval_trigger: periodic trigger"
    icon = "clock"
    inports = [rf.Port("start", required=False, description="Start the trigger")]
    outports = [rf.Port("trigger", type="object", description="{count, time}")]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = _cfg(ctx)
        unit = cfg.get("intervalUnit", "str", "milliseconds", choices=tuple(_UNITS))
        self.interval = cfg.get("interval", "number", 60000, minimum=0) * _UNITS[unit]
        if self.interval <= 0:
            raise cfg.error("interval", "must be > 0")
        self.immediate = cfg.get("startImmediately", "bool", True)
        self.max = cfg.get("maxExecutions", "int", 0, minimum=0)

    async def run(self, ctx: rf.ActorContext) -> None:
        count = 0
        t0 = trio.current_time()
        next_tick = t0 if self.immediate else t0 + self.interval
        while not self.max or count < self.max:
            if await ctx.receive_until(next_tick, "start"):
                continue
            count += 1
            await ctx.send("trigger", {"count": count, "time": trio.current_time() - t0})
            next_tick += self.interval


class CronTriggerTpl(CronTrigger):
    """Reflow ``tpl_cron_trigger``: emit on ``trigger`` per ``cronExpression``;
    ``maxExecutions`` (0 = unlimited)."""

    description = "Reflow tpl_cron_trigger: cron-scheduled trigger"
    inports = [rf.Port("start", required=False, description="Accepted for compatibility")]
    outports = [rf.Port("trigger", type="object", description="{time, count}")]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = _cfg(ctx)
        config = dict(cfg.data)
        config.setdefault("schedule", config.get("cronExpression", "0 * * * *"))
        if "maxExecutions" in config:
            config["max"] = config["maxExecutions"]
        await super().setup(_ConfigView(ctx, config))

    async def run(self, ctx: rf.ActorContext) -> None:
        view = _PortView(ctx, {"out": "trigger", "stop": "__none__"}, {})
        await super().run(view)


#: component name -> class, registered by :func:`reflowpy.components.register_all`.
TEMPLATES: dict[str, type[rf.Actor]] = {
    "reflow/IfBranch": IfBranch,
    "reflow/Switch": SwitchCase,
    "reflow/Loop": Loop,
    "reflow/DataTransformer": DataTransformer,
    "reflow/HttpRequest": ReflowHttpRequest,
    "reflow/Passthrough": Passthrough,
    "reflow/Map": ArrayMap,
    "reflow/Filter": ArrayFilter,
    "reflow/Reduce": ArrayReduce,
    "reflow/Merge": CombineMerge,
    "reflow/Split": HeadTail,
    "reflow/Gate": ControlGate,
    "reflow/Delay": DelayMs,
    "reflow/Collect": CollectN,
    "reflow/IntervalTrigger": IntervalTrigger,
    "reflow/CronTrigger": CronTriggerTpl,
}

#: Reflow template id -> registered component name.
TEMPLATE_ALIASES: dict[str, str] = {
    "tpl_if_branch": "reflow/IfBranch",
    "tpl_switch": "reflow/Switch",
    "tpl_loop": "reflow/Loop",
    "tpl_data_transformer": "reflow/DataTransformer",
    "tpl_http_request": "reflow/HttpRequest",
    "tpl_passthrough": "reflow/Passthrough",
    "tpl_map": "reflow/Map",
    "tpl_filter": "reflow/Filter",
    "tpl_reduce": "reflow/Reduce",
    "tpl_merge": "reflow/Merge",
    "tpl_split": "reflow/Split",
    "tpl_gate": "reflow/Gate",
    "tpl_delay": "reflow/Delay",
    "tpl_collect": "reflow/Collect",
    "tpl_interval_trigger": "reflow/IntervalTrigger",
    "tpl_cron_trigger": "reflow/CronTrigger",
}
