"""transform/*: per-message transformations — map, filter, reduce, fields, JSON, schemas.

Each takes its logic from config as a safe expression (``x``/``msg`` is the message,
an object's fields are names too) so graphs stay data, not code. A message the logic
cannot handle goes to the node's ``error`` port when it is connected and is
dead-lettered otherwise; the network never stops for bad input.

The components that are pure per-message functions (Map, Expression, Filter, Pick,
Set, Template, JsonParse, JsonStringify, Validate) are plain-``def`` steps
(:class:`~reflowpy.components._common.PerMessage`) returning their outputs, so they get
the kernel's fast paths; each declares its config as a msgspec Struct ``Config``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, Literal

import msgspec

import reflowpy as rf
from reflowpy.components._common import (
    MISSING,
    Config,
    PerMessage,
    compile_expression,
    error_output,
    evaluate_or_report,
    expression_at,
    get_path,
    load_config,
    parse_pointer,
    report,
    set_path,
)
from reflowpy.components.expression import Expression, Template, _to_str
from reflowpy.network.codec import decode_json

_EXPRESSION = msgspec.Meta(description="A safe expression over the packet (x, msg, its fields)")
_POINTER = msgspec.Meta(description="A JSON pointer (/a/b/0) or dotted path (a.b.0)")

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


class Map(PerMessage):
    """Apply an expression to each packet: ``out = expression(x)``.

    Config: ``expression`` (required), e.g. ``"x * 2"`` or ``"{'name': upper(name)}"``.
    Example graph fragment::

        {"component": "transform/Map", "metadata": {"expression": "x * 2"}}
    """

    class Config(msgspec.Struct, frozen=True, kw_only=True):
        expression: Annotated[str, _EXPRESSION]

    description = "Applies an expression to each packet"
    icon = "exchange"
    inports = [rf.Port("in", description="Packet (bound to x and msg)")]
    outports = [
        rf.Port("out", description="The expression's value"),
        rf.Port("error", type="object", required=False, description="Evaluation errors"),
    ]

    def configure(self, ctx: rf.ActorContext) -> None:
        cfg = load_config(ctx, Map.Config)
        self.call = expression_at(ctx, "expression", cfg.expression).call

    def step(self, ctx: rf.ActorContext) -> Mapping[str, Any] | None:
        value = ctx.inputs["in"]
        try:
            return {"out": self.call(value)}
        except rf.ExpressionError as exc:
            return error_output(ctx, exc, value)


class Expr(Map):
    """Evaluate an expression per packet, or build an object from several.

    Config: ``expression`` (one value) or ``fields`` (an object of name ->
    expression; the result is an object with those names). Registered as
    ``transform/Expression``.

    Example: ``{"fields": {"total": "price * qty", "big": "price * qty > 100"}}``.
    """

    class Config(msgspec.Struct, frozen=True, kw_only=True):
        expression: Annotated[str | None, _EXPRESSION] = None
        fields: Annotated[dict[str, Any] | None, msgspec.Meta(
            description="Object of name -> expression; the result has those names")] = None

    description = "Evaluates a safe expression (or an object of them) per packet"
    icon = "calculator"

    def configure(self, ctx: rf.ActorContext) -> None:
        cfg = load_config(ctx, Expr.Config)
        if cfg.fields is not None:
            fields = {name: expression_at(ctx, f"fields.{name}", _text(ctx, f"fields.{name}",
                                                                       source)).call
                      for name, source in cfg.fields.items()}
            self.call = lambda v: {name: call(v) for name, call in fields.items()}
        elif cfg.expression is not None:
            self.call = expression_at(ctx, "expression", cfg.expression).call
        else:
            raise rf.ConfigError(f"node {ctx.node_id!r}: config key 'expression' is required"
                                 " (or 'fields')")


#: Where a Filter node keeps its compiled expression (in its state, as PerMessage's step).
_FILTER = "\x00filter"


def _filter(ctx: rf.ActorContext) -> Mapping[str, Any] | None:
    # Filter's behaviour, called by the kernel directly (no bound step in between: it
    # sees every packet of a stream)
    value = ctx.inputs["in"]
    try:
        keep = ctx.state[_FILTER](value)
    except rf.ExpressionError as exc:
        return error_output(ctx, exc, value)
    if keep:
        return {"out": value}
    if ctx.connected("rejected"):
        return {"rejected": value}
    return None


class Filter(PerMessage):
    """Pass packets for which ``expression`` is truthy; others go to ``rejected``.

    Config: ``expression`` (required), e.g. ``"level in ['error', 'fatal']"``.
    """

    behaviour: ClassVar[Callable[[rf.ActorContext], Any]] = staticmethod(_filter)

    class Config(msgspec.Struct, frozen=True, kw_only=True):
        expression: Annotated[str, _EXPRESSION]

    description = "Keeps packets matching an expression"
    icon = "filter"
    inports = [rf.Port("in", description="Packet to test")]
    outports = [
        rf.Port("out", description="Packets that pass"),
        rf.Port("rejected", required=False, description="Packets that do not"),
        rf.Port("error", type="object", required=False, description="Evaluation errors"),
    ]

    def configure(self, ctx: rf.ActorContext) -> None:
        cfg = load_config(ctx, Filter.Config)
        ctx.state[_FILTER] = expression_at(ctx, "expression", cfg.expression).call

    def step(self, ctx: rf.ActorContext) -> Mapping[str, Any] | None:
        return _filter(ctx)


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


class _ReducerConfig(msgspec.Struct, frozen=True, kw_only=True):
    expression: Annotated[str | None, msgspec.Meta(
        description="Over acc (accumulator), x (item) and index")] = None
    operation: Annotated[Literal["sum", "product", "count", "min", "max", "concat", "first",
                                 "last"], msgspec.Meta(
        description="A named fold, when no expression is given")] = "sum"
    initial: Annotated[Any, msgspec.Meta(description="The accumulator's first value")] = None


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

    Config = _ReducerConfig
    description = "Reduces an array to one value"
    icon = "compress"
    inports = [rf.Port("in", type="array", description="Array to reduce")]
    outports = [
        rf.Port("out", description="The reduced value"),
        rf.Port("error", type="object", required=False,
                description="Bad input or evaluation errors"),
    ]

    async def setup(self, ctx: rf.ActorContext) -> None:
        load_config(ctx, Reduce.Config)  # types, with the field path in the error
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

    Config = _ReducerConfig
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
        load_config(ctx, Scan.Config)  # types, with the field path in the error
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

    class Config(msgspec.Struct, frozen=True, kw_only=True):
        expression: Annotated[str, _EXPRESSION] = "x"

    description = "Maps each packet to an array and emits its elements"
    icon = "list"
    inports = [rf.Port("in", description="Packet")]
    outports = [
        rf.Port("out", description="Each element"),
        rf.Port("error", type="object", required=False, description="Non-array results, errors"),
    ]

    async def setup(self, ctx: rf.ActorContext) -> None:
        load_config(ctx, FlatMap.Config)  # types, with the field path in the error
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


class Pick(PerMessage):
    """Take a field by JSON pointer (``/user/name``) or dotted path (``user.name``).

    Config: ``pointer`` (one value) or ``fields`` (object of name -> pointer, giving
    an object); ``default`` — used when a field is missing (without it a missing
    field sends the packet to ``error``).
    """

    class Config(msgspec.Struct, frozen=True, kw_only=True):
        pointer: Annotated[str | None, _POINTER] = None
        path: Annotated[str | None, msgspec.Meta(description="Same as pointer")] = None
        field: Annotated[str | None, msgspec.Meta(description="Same as pointer")] = None
        fields: Annotated[dict[str, Any] | None, msgspec.Meta(
            description="Object of name -> pointer; the result has those names")] = None
        default: Annotated[Any, msgspec.Meta(
            description="Value for a missing field (else the packet goes to error)"),
        ] = msgspec.UNSET

    description = "Extracts fields by JSON pointer"
    icon = "crosshairs"
    inports = [rf.Port("in", type="object", description="Packet to read")]
    outports = [
        rf.Port("out", description="The picked value (or object of values)"),
        rf.Port("error", type="object", required=False, description="Missing fields"),
    ]

    def configure(self, ctx: rf.ActorContext) -> None:
        cfg = load_config(ctx, Pick.Config, keep_null=("default",))
        self.default = MISSING if cfg.default is msgspec.UNSET else cfg.default
        if cfg.fields is not None:
            self.fields: dict[str, tuple[str, ...]] | None = {
                k: parse_pointer(str(v)) for k, v in cfg.fields.items()
            }
        else:
            self.fields = None
            pointer = _first(cfg.pointer, cfg.path, cfg.field)
            if pointer is None:
                raise rf.ConfigError(f"node {ctx.node_id!r}: config key 'pointer' is required"
                                     " (a string)")
            self.path = parse_pointer(pointer)

    def step(self, ctx: rf.ActorContext) -> Mapping[str, Any] | None:
        value = ctx.inputs["in"]
        try:
            if self.fields is None:
                result = get_path(value, self.path, self.default)
            else:
                result = {k: get_path(value, p, self.default) for k, p in self.fields.items()}
        except KeyError as exc:
            return error_output(ctx, KeyError(f"node {ctx.node_id!r}: no field"
                                              f" {exc.args[0]!r}"), value)
        return {"out": result}


def _text(ctx: rf.ActorContext, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise rf.ConfigError(f"node {ctx.node_id!r}: config key {key!r} must be a string,"
                             f" got {value!r:.60}")
    return value


def _first(*values: str | None) -> str | None:
    return next((v for v in values if v is not None), None)


class SetField(PerMessage):
    """Set a field by JSON pointer: to a constant ``value`` or an ``expression``.

    Config: ``pointer`` (required; ``/a/b`` creates objects on the way, ``/list/-``
    appends) and ``value`` or ``expression`` (over the whole message). The message is
    copied (messages are immutable); the copy goes to ``out``. Registered as
    ``transform/Set``.
    """

    class Config(msgspec.Struct, frozen=True, kw_only=True):
        pointer: Annotated[str | None, _POINTER] = None
        path: Annotated[str | None, msgspec.Meta(description="Same as pointer")] = None
        field: Annotated[str | None, msgspec.Meta(description="Same as pointer")] = None
        value: Annotated[Any, msgspec.Meta(description="The constant to set")] = msgspec.UNSET
        expression: Annotated[str | None, _EXPRESSION] = None

    description = "Sets a field by JSON pointer"
    icon = "pencil"
    inports = [rf.Port("in", type="object", description="Packet to change")]
    outports = [
        rf.Port("out", type="object", description="Changed copy"),
        rf.Port("error", type="object", required=False, description="Paths that cannot be set"),
    ]

    def configure(self, ctx: rf.ActorContext) -> None:
        cfg = load_config(ctx, SetField.Config, keep_null=("value",))
        pointer = _first(cfg.pointer, cfg.path, cfg.field)
        if pointer is None:
            raise rf.ConfigError(f"node {ctx.node_id!r}: config key 'pointer' is required"
                                 " (a string)")
        self.path = parse_pointer(pointer)
        self.expr: Callable[[Any], Any] | None = (
            expression_at(ctx, "expression", cfg.expression).call
            if cfg.expression is not None else None)
        if self.expr is None and cfg.value is msgspec.UNSET:
            raise rf.ConfigError(f"node {ctx.node_id!r}: config key 'value' or 'expression'"
                                 " is required")
        self.value = None if cfg.value is msgspec.UNSET else cfg.value

    def step(self, ctx: rf.ActorContext) -> Mapping[str, Any] | None:
        msg = ctx.inputs["in"]
        try:
            new = self.expr(msg) if self.expr is not None else self.value
            result = set_path(msg, self.path, new)
        except (rf.ExpressionError, KeyError) as exc:
            return error_output(ctx, exc, msg)
        return {"out": result}


class RenderTemplate(PerMessage):
    """Render a string template with ``{{ expression }}`` holes per packet.

    Config: ``template`` (required), e.g. ``"{{ count }} errors in {{ window.start }}"``.
    Registered as ``transform/Template``.
    """

    class Config(msgspec.Struct, frozen=True, kw_only=True):
        template: Annotated[str, msgspec.Meta(description="Text with {{ expression }} holes")]

    description = "Renders a {{ expression }} string template per packet"
    icon = "file-text-o"
    inports = [rf.Port("in", description="Packet (names in the template)")]
    outports = [
        rf.Port("out", type="string", description="Rendered text"),
        rf.Port("error", type="object", required=False, description="Evaluation errors"),
    ]

    def configure(self, ctx: rf.ActorContext) -> None:
        cfg = load_config(ctx, RenderTemplate.Config)
        try:
            self.template = Template(cfg.template)
        except rf.ExpressionError as exc:
            raise rf.ConfigError(f"node {ctx.node_id!r}: config key 'template' is not a valid"
                                 f" template: {exc}") from None

    def step(self, ctx: rf.ActorContext) -> Mapping[str, Any] | None:
        value = ctx.inputs["in"]
        try:
            return {"out": self.template.render(value)}
        except rf.ExpressionError as exc:
            return error_output(ctx, exc, value)


def _parse_json(ctx: rf.ActorContext) -> Mapping[str, Any] | None:
    # JsonParse's behaviour, called by the kernel directly (it has no per-node state)
    text = ctx.inputs["in"]
    try:
        if not isinstance(text, (str, bytes)):
            raise TypeError(f"expected str or bytes, got {type(text).__name__}")
        value = decode_json(text)
    except (ValueError, TypeError) as exc:
        return error_output(ctx, ValueError(f"node {ctx.node_id!r}: invalid JSON: {exc}"), text)
    return {"out": value}


class JsonParse(PerMessage):
    """Parse JSON text (str or bytes) into a value; bad JSON goes to ``error``.

    The parsed value is ``json.loads``'s, built immutable by
    :func:`~reflowpy.network.codec.decode_json` (msgspec; no freeze-copy at send).
    """

    class Config(msgspec.Struct, frozen=True, kw_only=True):
        pass

    description = "Parses JSON text"
    icon = "code"
    inports = [rf.Port("in", type="string", description="JSON text")]
    outports = [
        rf.Port("out", description="Parsed value"),
        rf.Port("error", type="object", required=False, description="Text that is not JSON"),
    ]

    behaviour: ClassVar[Callable[[rf.ActorContext], Any]] = staticmethod(_parse_json)

    def configure(self, ctx: rf.ActorContext) -> None:
        load_config(ctx, JsonParse.Config)

    def step(self, ctx: rf.ActorContext) -> Mapping[str, Any] | None:
        return _parse_json(ctx)


class JsonStringify(PerMessage):
    """Serialise each packet to JSON text.

    Config: ``indent`` (int, default none: compact), ``sort_keys`` (bool).
    Bytes, datetimes and other non-JSON values are written with ``str()``.
    """

    class Config(msgspec.Struct, frozen=True, kw_only=True):
        indent: Annotated[int, msgspec.Meta(ge=0, description="Indent")] | None = None
        sort_keys: Annotated[bool, msgspec.Meta(description="Sort object keys")] = False

    description = "Serialises packets to JSON text"
    icon = "code"
    inports = [rf.Port("in", description="Value to serialise")]
    outports = [rf.Port("out", type="string", description="JSON text")]

    def configure(self, ctx: rf.ActorContext) -> None:
        cfg = load_config(ctx, JsonStringify.Config)
        self.indent = cfg.indent
        self.sort_keys = cfg.sort_keys

    def step(self, ctx: rf.ActorContext) -> Mapping[str, Any] | None:
        text = json.dumps(
            rf.thaw(ctx.inputs["in"]),
            indent=self.indent,
            sort_keys=self.sort_keys,
            ensure_ascii=False,
            default=_to_str,
            separators=None if self.indent is not None else (",", ":"),
        )
        return {"out": text}


class Validate(PerMessage):
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

    class Config(msgspec.Struct, frozen=True, kw_only=True):
        schema: Annotated[dict[str, Any], msgspec.Meta(description="A JSON Schema")]

    def configure(self, ctx: rf.ActorContext) -> None:
        import jsonschema

        schema = rf.thaw(load_config(ctx, Validate.Config).schema)
        try:
            cls = jsonschema.validators.validator_for(schema)
            cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise rf.ConfigError(f"node {ctx.node_id!r}: config key 'schema' is not a valid"
                                 f" JSON Schema: {exc.message}") from None
        self.validator = cls(schema)

    def step(self, ctx: rf.ActorContext) -> Mapping[str, Any] | None:
        value = ctx.inputs["in"]
        errors = [
            {"path": "/" + "/".join(str(p) for p in err.absolute_path), "message": err.message}
            for err in sorted(self.validator.iter_errors(rf.thaw(value)),
                              key=lambda e: list(map(str, e.absolute_path)))
        ]
        if not errors:
            return {"out": value}
        if ctx.connected("invalid"):
            return {"invalid": {"value": value, "errors": errors}}
        first = errors[0]
        return error_output(ctx, ValueError(
            f"node {ctx.node_id!r}: {len(errors)} schema error(s); first at"
            f" {first['path']!r}: {first['message']}"), value, errors=errors)
