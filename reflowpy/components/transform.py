"""transform/*: per-message transformations — map, filter, reduce, fields, JSON, schemas.

Each takes its logic from config as a safe expression (``x``/``msg`` is the message,
an object's fields are names too) so graphs stay data, not code. A message the logic
cannot handle goes to the node's ``error`` port when it is connected and is
dead-lettered otherwise; the network never stops for bad input.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import reflowpy as rf
from reflowpy.components._common import (
    MISSING,
    Config,
    compile_expression,
    evaluate_or_report,
    get_path,
    parse_pointer,
    report,
    set_path,
)
from reflowpy.components.expression import Expression, Template, _to_str

__all__ = [
    "Expr",
    "Filter",
    "FlatMap",
    "JsonParse",
    "JsonStringify",
    "Map",
    "Pick",
    "Reduce",
    "RenderTemplate",
    "Scan",
    "SetField",
    "Validate",
]


class Map(rf.Actor):
    """Apply an expression to each packet: ``out = expression(x)``.

    Config: ``expression`` (required), e.g. ``"x * 2"`` or ``"{'name': upper(name)}"``.
    Example graph fragment::

        {"component": "transform/Map", "metadata": {"expression": "x * 2"}}
    """

    description = "Applies an expression to each packet"
    icon = "exchange"
    inports = [rf.Port("in", description="Packet (bound to x and msg)")]
    outports = [
        rf.Port("out", description="The expression's value"),
        rf.Port("error", type="object", required=False, description="Evaluation errors"),
    ]

    async def setup(self, ctx: rf.ActorContext) -> None:
        self.expr = compile_expression(Config(ctx))

    async def process(self, ctx: rf.ActorContext) -> None:
        result = await evaluate_or_report(ctx, self.expr, ctx.inputs["in"])
        if result is not MISSING:
            await ctx.send("out", result)


class Expr(Map):
    """Evaluate an expression per packet, or build an object from several.

    Config: ``expression`` (one value) or ``fields`` (an object of name ->
    expression; the result is an object with those names). Registered as
    ``transform/Expression``.

    Example: ``{"fields": {"total": "price * qty", "big": "price * qty > 100"}}``.
    """

    description = "Evaluates a safe expression (or an object of them) per packet"
    icon = "calculator"

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = Config(ctx)
        self.fields: dict[str, Expression] | None = None
        if cfg.has("fields"):
            fields = cfg.get("fields", "dict")
            self.fields = {}
            for name, source in fields.items():
                try:
                    self.fields[name] = Expression(source)
                except rf.ExpressionError as exc:
                    raise cfg.error(f"fields.{name}", f"is not a valid expression: {exc}") from None
        else:
            self.expr = compile_expression(cfg)

    async def process(self, ctx: rf.ActorContext) -> None:
        if self.fields is None:
            await super().process(ctx)
            return
        fields = self.fields
        result = await evaluate_or_report(
            ctx, lambda v: {name: expr(v) for name, expr in fields.items()}, ctx.inputs["in"])
        if result is not MISSING:
            await ctx.send("out", result)


class Filter(rf.Actor):
    """Pass packets for which ``expression`` is truthy; others go to ``rejected``.

    Config: ``expression`` (required), e.g. ``"level in ['error', 'fatal']"``.
    """

    description = "Keeps packets matching an expression"
    icon = "filter"
    inports = [rf.Port("in", description="Packet to test")]
    outports = [
        rf.Port("out", description="Packets that pass"),
        rf.Port("rejected", required=False, description="Packets that do not"),
        rf.Port("error", type="object", required=False, description="Evaluation errors"),
    ]

    async def setup(self, ctx: rf.ActorContext) -> None:
        self.expr = compile_expression(Config(ctx))

    async def process(self, ctx: rf.ActorContext) -> None:
        value = ctx.inputs["in"]
        keep = await evaluate_or_report(ctx, self.expr, value)
        if keep is MISSING:
            return
        if keep:
            await ctx.send("out", value)
        elif ctx.connected("rejected"):
            await ctx.send("rejected", value)


_REDUCERS: dict[str, tuple[Any, str]] = {
    "sum": (0, "acc + x"),
    "product": (1, "acc * x"),
    "count": (0, "acc + 1"),
    "min": (None, "x if acc == null or x < acc else acc"),
    "max": (None, "x if acc == null or x > acc else acc"),
    "concat": ([], "acc + (x if type(x) == 'array' else [x])"),
    "first": (None, "x if index == 0 else acc"),
    "last": (None, "x"),
}


def _reducer(cfg: Config) -> tuple[Any, Expression]:
    if cfg.has("expression"):
        return cfg.get("initial", "any", None), compile_expression(cfg)
    op = cfg.get("operation", "str", "sum", choices=tuple(_REDUCERS))
    initial, source = _REDUCERS[op]
    return cfg.get("initial", "any", initial), Expression(source)


class Reduce(rf.Actor):
    """Fold each array on ``in`` into one value on ``out``.

    Config: ``expression`` over ``acc`` (accumulator), ``x`` (item) and ``index``,
    with ``initial`` (default ``null``); or ``operation``: ``sum`` (default),
    ``product``, ``count``, ``min``, ``max``, ``concat``, ``first``, ``last``.

    Example: ``{"expression": "acc + x.amount", "initial": 0}``.
    """

    description = "Reduces an array to one value"
    icon = "compress"
    inports = [rf.Port("in", type="array", description="Array to reduce")]
    outports = [
        rf.Port("out", description="The reduced value"),
        rf.Port("error", type="object", required=False,
                description="Bad input or evaluation errors"),
    ]

    async def setup(self, ctx: rf.ActorContext) -> None:
        self.initial, self.expr = _reducer(Config(ctx))

    async def process(self, ctx: rf.ActorContext) -> None:
        items = ctx.inputs["in"]
        if not isinstance(items, (list, tuple)):
            await report(ctx, TypeError(f"node {ctx.node_id!r}: expected an array, got"
                                        f" {type(items).__name__}"), items)
            return
        acc = self.initial
        try:
            for index, item in enumerate(items):
                acc = self.expr(item, acc=acc, index=index)
        except rf.ExpressionError as exc:
            await report(ctx, exc, items)
            return
        await ctx.send("out", acc)


class Scan(rf.Actor):
    """Running fold over the stream: after each packet, send the accumulator.

    Config as for :class:`Reduce` (``expression`` with ``acc``/``x``/``index`` and
    ``initial``, or ``operation``). A ``reset`` packet restores ``initial``.

    Example: running total — ``{"operation": "sum"}``: 1, 2, 3 -> 1, 3, 6.
    """

    description = "Emits the running accumulation of the stream"
    icon = "line-chart"
    inports = [
        rf.Port("in", description="Next item"),
        rf.Port("reset", type="bang", required=False, description="Restart from initial"),
    ]
    outports = [
        rf.Port("out", description="Accumulator after each item"),
        rf.Port("error", type="object", required=False, description="Evaluation errors"),
    ]

    async def setup(self, ctx: rf.ActorContext) -> None:
        self.initial, self.expr = _reducer(Config(ctx))
        ctx.state.update(acc=self.initial, index=0)

    async def process(self, ctx: rf.ActorContext) -> None:
        if "reset" in ctx.inputs:
            ctx.state.update(acc=self.initial, index=0)
        if "in" not in ctx.inputs:
            return
        acc = await evaluate_or_report(ctx, self.expr, ctx.inputs["in"],
                                       acc=ctx.state["acc"], index=ctx.state["index"])
        if acc is MISSING:
            return
        ctx.state["acc"] = acc
        ctx.state["index"] += 1
        await ctx.send("out", acc)


class FlatMap(rf.Actor):
    """Send every element of ``expression(x)`` (default ``x``) as its own packet.

    Config: ``expression`` — must give an array, e.g. ``"split(x, ' ')"`` for words.
    A non-array result goes to ``error``.
    """

    description = "Maps each packet to an array and emits its elements"
    icon = "list"
    inports = [rf.Port("in", description="Packet")]
    outports = [
        rf.Port("out", description="Each element"),
        rf.Port("error", type="object", required=False, description="Non-array results, errors"),
    ]

    async def setup(self, ctx: rf.ActorContext) -> None:
        self.expr = compile_expression(Config(ctx), default="x")

    async def process(self, ctx: rf.ActorContext) -> None:
        value = ctx.inputs["in"]
        result = await evaluate_or_report(ctx, self.expr, value)
        if result is MISSING:
            return
        if not isinstance(result, (list, tuple)):
            await report(ctx, TypeError(f"node {ctx.node_id!r}: expression gave a"
                                        f" {type(result).__name__}, not an array"), value)
            return
        for item in result:
            await ctx.send("out", item)


class Pick(rf.Actor):
    """Take a field by JSON pointer (``/user/name``) or dotted path (``user.name``).

    Config: ``pointer`` (one value) or ``fields`` (object of name -> pointer, giving
    an object); ``default`` — used when a field is missing (without it a missing
    field sends the packet to ``error``).
    """

    description = "Extracts fields by JSON pointer"
    icon = "crosshairs"
    inports = [rf.Port("in", type="object", description="Packet to read")]
    outports = [
        rf.Port("out", description="The picked value (or object of values)"),
        rf.Port("error", type="object", required=False, description="Missing fields"),
    ]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = Config(ctx)
        self.default = cfg.data.get("default", MISSING)
        if cfg.has("fields"):
            self.fields: dict[str, tuple[str, ...]] | None = {
                k: parse_pointer(str(v)) for k, v in cfg.get("fields", "dict").items()
            }
        else:
            self.fields = None
            self.path = parse_pointer(cfg.get("pointer", "str", alt=("path", "field")))

    async def process(self, ctx: rf.ActorContext) -> None:
        value = ctx.inputs["in"]
        try:
            if self.fields is None:
                result = get_path(value, self.path, self.default)
            else:
                result = {k: get_path(value, p, self.default) for k, p in self.fields.items()}
        except KeyError as exc:
            await report(ctx, KeyError(f"node {ctx.node_id!r}: no field {exc.args[0]!r}"), value)
            return
        await ctx.send("out", result)


class SetField(rf.Actor):
    """Set a field by JSON pointer: to a constant ``value`` or an ``expression``.

    Config: ``pointer`` (required; ``/a/b`` creates objects on the way, ``/list/-``
    appends) and ``value`` or ``expression`` (over the whole message). The message is
    copied (messages are immutable); the copy goes to ``out``. Registered as
    ``transform/Set``.
    """

    description = "Sets a field by JSON pointer"
    icon = "pencil"
    inports = [rf.Port("in", type="object", description="Packet to change")]
    outports = [
        rf.Port("out", type="object", description="Changed copy"),
        rf.Port("error", type="object", required=False, description="Paths that cannot be set"),
    ]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = Config(ctx)
        self.path = parse_pointer(cfg.get("pointer", "str", alt=("path", "field")))
        self.expr = compile_expression(cfg) if cfg.has("expression") else None
        if self.expr is None and "value" not in cfg.data:
            raise cfg.error("value", "or 'expression' is required")
        self.value = cfg.data.get("value")

    async def process(self, ctx: rf.ActorContext) -> None:
        msg = ctx.inputs["in"]
        try:
            new = self.expr(msg) if self.expr is not None else self.value
            result = set_path(msg, self.path, new)
        except (rf.ExpressionError, KeyError) as exc:
            await report(ctx, exc, msg)
            return
        await ctx.send("out", result)


class RenderTemplate(rf.Actor):
    """Render a string template with ``{{ expression }}`` holes per packet.

    Config: ``template`` (required), e.g. ``"{{ count }} errors in {{ window.start }}"``.
    Registered as ``transform/Template``.
    """

    description = "Renders a {{ expression }} string template per packet"
    icon = "file-text-o"
    inports = [rf.Port("in", description="Packet (names in the template)")]
    outports = [
        rf.Port("out", type="string", description="Rendered text"),
        rf.Port("error", type="object", required=False, description="Evaluation errors"),
    ]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = Config(ctx)
        try:
            self.template = Template(cfg.get("template", "str"))
        except rf.ExpressionError as exc:
            raise cfg.error("template", f"is not a valid template: {exc}") from None

    async def process(self, ctx: rf.ActorContext) -> None:
        text = await evaluate_or_report(ctx, self.template.render, ctx.inputs["in"])
        if text is not MISSING:
            await ctx.send("out", text)


class JsonParse(rf.Actor):
    """Parse JSON text (str or bytes) into a value; bad JSON goes to ``error``."""

    description = "Parses JSON text"
    icon = "code"
    inports = [rf.Port("in", type="string", description="JSON text")]
    outports = [
        rf.Port("out", description="Parsed value"),
        rf.Port("error", type="object", required=False, description="Text that is not JSON"),
    ]

    async def process(self, ctx: rf.ActorContext) -> None:
        text = ctx.inputs["in"]
        try:
            if not isinstance(text, (str, bytes)):
                raise TypeError(f"expected str or bytes, got {type(text).__name__}")
            value = json.loads(text)
        except (ValueError, TypeError) as exc:
            await report(ctx, ValueError(f"node {ctx.node_id!r}: invalid JSON: {exc}"), text)
            return
        await ctx.send("out", value)


class JsonStringify(rf.Actor):
    """Serialise each packet to JSON text.

    Config: ``indent`` (int, default none: compact), ``sort_keys`` (bool).
    Bytes, datetimes and other non-JSON values are written with ``str()``.
    """

    description = "Serialises packets to JSON text"
    icon = "code"
    inports = [rf.Port("in", description="Value to serialise")]
    outports = [rf.Port("out", type="string", description="JSON text")]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = Config(ctx)
        self.indent = cfg.get("indent", "int", None, minimum=0)
        self.sort_keys = cfg.get("sort_keys", "bool", False)

    async def process(self, ctx: rf.ActorContext) -> Mapping[str, Any]:
        text = json.dumps(
            rf.thaw(ctx.inputs["in"]),
            indent=self.indent,
            sort_keys=self.sort_keys,
            ensure_ascii=False,
            default=_to_str,
            separators=None if self.indent is not None else (",", ":"),
        )
        return {"out": text}


class Validate(rf.Actor):
    """Check packets against a JSON Schema; valid ones to ``out``, invalid to ``invalid``.

    Config: ``schema`` (required; drafts 4 to 2020-12, chosen by ``$schema``). The
    schema itself is checked when the network starts. An invalid packet goes to
    ``invalid`` as ``{"value", "errors": [{"path", "message"}, ...]}``; if ``invalid``
    is not connected, to ``error``, else it is dead-lettered. Uses the ``jsonschema``
    library.
    """

    description = "Validates packets against a JSON Schema"
    icon = "check-square-o"
    inports = [rf.Port("in", description="Packet to validate")]
    outports = [
        rf.Port("out", description="Valid packets"),
        rf.Port("invalid", type="object", required=False,
                description="Invalid packets with errors"),
        rf.Port("error", type="object", required=False, description="Invalid packets (fallback)"),
    ]

    async def setup(self, ctx: rf.ActorContext) -> None:
        import jsonschema

        cfg = Config(ctx)
        schema = cfg.get("schema", "dict")
        try:
            cls = jsonschema.validators.validator_for(schema)
            cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise cfg.error("schema", f"is not a valid JSON Schema: {exc.message}") from None
        self.validator = cls(schema)

    async def process(self, ctx: rf.ActorContext) -> None:
        value = ctx.inputs["in"]
        errors = [
            {"path": "/" + "/".join(str(p) for p in err.absolute_path), "message": err.message}
            for err in sorted(self.validator.iter_errors(rf.thaw(value)),
                              key=lambda e: list(map(str, e.absolute_path)))
        ]
        if not errors:
            await ctx.send("out", value)
        elif ctx.connected("invalid"):
            await ctx.send("invalid", {"value": value, "errors": errors})
        else:
            first = errors[0]
            await report(ctx, ValueError(
                f"node {ctx.node_id!r}: {len(errors)} schema error(s); first at"
                f" {first['path']!r}: {first['message']}"), value, errors=errors)
