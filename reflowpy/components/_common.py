"""Helpers every standard component shares: reading config, paths, error ports.

Paths into values (``get_path``, ``set_path``, ``parse_pointer``) live in
:mod:`~reflowpy.components.paths`, which the expression language uses too; they are
re-exported here for the components.

Config comes from node metadata (``ctx.config``). :class:`Config` reads one key at a
time with a type and a range, and raises :class:`~reflowpy.ConfigError` naming the
node and the key, so a bad graph is refused when the network starts (components call
it from ``setup``). Reflow templates nest their settings under ``propertyValues``;
``Config(ctx, reflow=True)`` looks there first.

:func:`report` is the one rule for bad input: if the node's ``error`` port is
connected, an error object goes there; otherwise the exception is raised, which the
kernel turns into an ``ActorFailed`` event and a dead letter. Either way the network
keeps running and nothing is silently lost. :func:`evaluate_or_report` applies that
rule to one evaluation of an expression (or template, or rule group), and
:func:`compile_expression` is the one way a config key becomes an expression.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import msgspec
import trio

import reflowpy as rf
from reflowpy.components.expression import Expression
from reflowpy.components.paths import MISSING, get_path, parse_pointer, set_path

__all__ = [
    "MISSING",
    "Config",
    "PerMessage",
    "compile_expression",
    "describe_value",
    "error_output",
    "error_value",
    "evaluate_or_report",
    "expression_at",
    "get_path",
    "load_config",
    "parse_pointer",
    "report",
    "report_in_loop",
    "send_at_stop",
    "set_path",
    "settings_error",
]


_KIND_NAMES = {
    "int": "an integer",
    "number": "a number",
    "str": "a string",
    "bool": "a boolean",
    "list": "a list",
    "dict": "an object",
    "any": "a value",
}


class Config:
    """Typed access to a node's config with errors that name node and key.

    >>> cfg = Config(ctx)                                     # doctest: +SKIP
    >>> size = cfg.get("size", "int", 10, minimum=1)          # doctest: +SKIP
    """

    def __init__(self, ctx: rf.ActorContext, *, reflow: bool = False) -> None:
        self.node = ctx.node_id
        raw: Mapping[str, Any] = ctx.config or {}
        data: dict[str, Any] = dict(raw)
        if reflow:
            nested = raw.get("propertyValues")
            if isinstance(nested, Mapping):
                data.update(nested)
        self.data = data

    def error(self, key: str, why: str) -> rf.ConfigError:
        """A :class:`~reflowpy.ConfigError` for ``key`` of this node."""
        return rf.ConfigError(f"node {self.node!r}: config key {key!r} {why}")

    def has(self, key: str) -> bool:
        """Whether ``key`` is set (and not ``None``)."""
        return self.data.get(key) is not None

    def get(
        self,
        key: str,
        kind: str = "any",
        default: Any = MISSING,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        choices: Sequence[Any] | None = None,
        alt: Sequence[str] = (),
    ) -> Any:
        """The value of ``key`` (or the first of ``alt`` that is set), checked.

        ``kind`` is one of ``int``, ``number``, ``str``, ``bool``, ``list``, ``dict``,
        ``any``. With no ``default`` the key is required.
        """
        value: Any = None
        for name in (key, *alt):
            if self.data.get(name) is not None:
                value, key = self.data[name], name
                break
        if value is None:
            if default is MISSING:
                raise self.error(key, f"is required ({_KIND_NAMES[kind]})")
            return default
        value = self._convert(key, kind, value)
        if choices is not None and value not in choices:
            options = ", ".join(repr(c) for c in choices)
            raise self.error(key, f"must be one of {options}, got {describe_value(value)}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be >= {minimum}, got {describe_value(value)}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"must be <= {maximum}, got {describe_value(value)}")
        return value

    def _convert(self, key: str, kind: str, value: Any) -> Any:
        bad = self.error(key, f"must be {_KIND_NAMES[kind]}, got {describe_value(value)}")
        if kind == "int":
            if isinstance(value, bool):
                raise bad
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, str):
                try:
                    return int(value)
                except ValueError:
                    raise bad from None
            if not isinstance(value, int):
                raise bad
            return value
        if kind == "number":
            if isinstance(value, bool):
                raise bad
            if isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    raise bad from None
            if not isinstance(value, (int, float)) or math.isnan(value):
                raise bad
            return value
        if kind == "str":
            if not isinstance(value, str):
                raise bad
            return value
        if kind == "bool":
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            if not isinstance(value, bool):
                raise bad
            return value
        if kind == "list":
            if not isinstance(value, (list, tuple)):
                raise bad
            return list(value)
        if kind == "dict":
            if not isinstance(value, Mapping):
                raise bad
            return dict(value)
        return value


# -- declared config (msgspec Structs) ---------------------------------------------------
#
# A component declares its config as a frozen msgspec Struct in its class attribute
# ``Config`` (``reflowpy components`` prints its keys, types, defaults and JSON Schema
# from it). :func:`load_config` converts the node's metadata to it once, in ``setup``;
# a bad value fails with a ConfigError naming the node and the field path msgspec
# reports (``fields.total``, ``items[0]``). Keys set to ``null`` count as unset, and
# keys the Struct does not declare (editor positions, labels, ``env``) are ignored.

_S = TypeVar("_S", bound=msgspec.Struct)
_MISSING_FIELD = re.compile(r"missing required field `([^`]*)`")
_AT = re.compile(r" - at `\$(.*)`$")


def load_config(ctx: rf.ActorContext, schema: type[_S], *, reflow: bool = False,
                keep_null: Sequence[str] = ()) -> _S:
    """The node's config as ``schema`` (a msgspec Struct), or a ConfigError naming the
    node and the field. Strings that spell numbers/booleans convert, as in YAML/CLI
    config (``"10"`` -> ``10``, ``"true"`` -> ``True``). A ``null`` counts as unset,
    except for the keys in ``keep_null`` (where ``null`` is a value, e.g. a default)."""
    raw: Mapping[str, Any] = ctx.config or {}
    data = {k: v for k, v in raw.items() if v is not None or k in keep_null}
    if reflow:
        nested = raw.get("propertyValues")
        if isinstance(nested, Mapping):
            data.update((k, v) for k, v in nested.items() if v is not None)
    try:
        return msgspec.convert(data, schema, strict=False)
    except msgspec.ValidationError as exc:
        raise settings_error(ctx.node_id, exc) from None


def settings_error(node: str, exc: msgspec.ValidationError) -> rf.ConfigError:
    """A ConfigError for node ``node`` from msgspec's message (which holds the path)."""
    text = str(exc)
    at = _AT.search(text)
    path = at.group(1).lstrip(".") if at else ""
    text = text[: at.start()] if at else text
    missing = _MISSING_FIELD.search(text)
    if missing:
        key = f"{path}.{missing.group(1)}" if path else missing.group(1)
        return rf.ConfigError(f"node {node!r}: config key {key!r} is required")
    if not path:
        return rf.ConfigError(f"node {node!r}: config: {text}")
    return rf.ConfigError(f"node {node!r}: config key {path!r}: {text}")


# -- plain-def components ----------------------------------------------------------------

#: Where a :class:`PerMessage` node keeps its bound ``step`` (in its own state, so a
#: restart, which resets the state, rebinds it when ``setup`` runs again).
_STEP = "\x00step"


def _behaviour(ctx: rf.ActorContext) -> Mapping[str, Any] | None:
    step: Callable[[rf.ActorContext], Mapping[str, Any] | None] = ctx.state[_STEP]
    return step(ctx)


class PerMessage(rf.Actor):
    """Base of components that are pure per-message functions.

    A subclass defines ``configure(ctx)`` (read config, once per start or restart) and
    a plain ``def step(ctx)`` that returns the outputs as a mapping (or ``None``). The
    kernel calls plain-``def`` behaviours without a coroutine and gives them its fast
    paths (inline activation, batch hand-over), as for ``@rf.actor`` functions. Its
    plain-``def`` path binds the behaviour per class, so the node's bound ``step`` waits
    in the node's state, where ``setup`` puts it.
    """

    behaviour: ClassVar[Callable[[rf.ActorContext], Any]] = staticmethod(_behaviour)
    behaviour_is_async: ClassVar[bool] = False

    def configure(self, ctx: rf.ActorContext) -> None:
        """Read the node's config (raise ConfigError naming node and key)."""

    def step(self, ctx: rf.ActorContext) -> Mapping[str, Any] | None:
        """Handle one message: return ``{port: value}`` or ``None``."""
        raise NotImplementedError

    async def setup(self, ctx: rf.ActorContext) -> None:
        self.configure(ctx)
        ctx.state[_STEP] = self.step

    async def process(self, ctx: rf.ActorContext) -> Mapping[str, Any] | None:
        return self.step(ctx)


def error_output(
    ctx: rf.ActorContext, exc: BaseException, value: Any, port: str = "error", **extra: Any
) -> dict[str, Any]:
    """:func:`report` for plain-``def`` steps: the outputs that send the error object
    on ``port`` if it is connected; else ``exc`` is raised (to the failure policy)."""
    if ctx.connected(port):
        return {port: error_value(ctx, exc, value, **extra)}
    raise exc


def expression_at(ctx: rf.ActorContext, key: str, source: str) -> Expression:
    """Compile ``source`` (config ``key`` of the node); a syntax error is a ConfigError
    naming the node and the key, so the network refuses to start."""
    try:
        return Expression(source)
    except rf.ExpressionError as exc:
        raise rf.ConfigError(
            f"node {ctx.node_id!r}: config key {key!r} is not a valid expression: {exc}"
        ) from None


def compile_expression(
    cfg: Config, key: str = "expression", default: str | None = None
) -> Expression:
    """The expression at config ``key`` (required unless ``default`` is given).

    A syntax error is a :class:`~reflowpy.ConfigError` naming the node and the key,
    so the network refuses to start.
    """
    source = cfg.get(key, "str", default if default is not None else MISSING)
    try:
        return Expression(source)
    except rf.ExpressionError as exc:
        raise cfg.error(key, f"is not a valid expression: {exc}") from None


# -- errors ------------------------------------------------------------------------------


def error_value(
    ctx: rf.ActorContext, exc: BaseException, value: Any, **extra: Any
) -> dict[str, Any]:
    """The object sent on an ``error`` port: what failed, why, and the input."""
    out = {
        "error": str(exc) or type(exc).__name__,
        "type": type(exc).__name__,
        "node": ctx.node_id,
        "value": value,
    }
    out.update(extra)
    return out


async def report(
    ctx: rf.ActorContext, exc: BaseException, value: Any, port: str = "error", **extra: Any
) -> None:
    """Send an error object on ``port`` if it is connected, else raise ``exc``.

    Raising hands the message to the node's failure policy (retry, then dead letter),
    so bad input is never silently dropped.
    """
    if ctx.connected(port):
        await ctx.send(port, error_value(ctx, exc, value, **extra))
    else:
        raise exc


async def evaluate_or_report(
    ctx: rf.ActorContext, fn: Callable[..., Any], value: Any, **names: Any
) -> Any:
    """``fn(value, **names)``, or :data:`MISSING` if it raised an
    :class:`~reflowpy.ExpressionError`: that failure has then been dealt with by
    :func:`report` for ``value`` (sent on ``error``, or raised to the failure policy).
    """
    try:
        return fn(value, **names)
    except rf.ExpressionError as exc:
        await report(ctx, exc, value)
        return MISSING


async def report_in_loop(
    ctx: rf.ActorContext, exc: BaseException, value: Any, port: str = "error", **extra: Any
) -> None:
    """:func:`report` for actors that own their loop (``run``).

    Raising there would end the actor, not just this message, so when ``port`` is
    not connected the error is logged at ERROR level with the node and the value
    instead, and the loop goes on.
    """
    if ctx.connected(port):
        await ctx.send(port, error_value(ctx, exc, value, **extra))
    else:
        ctx.log.error("node %r: %s: %.300s (value: %s)", ctx.node_id, type(exc).__name__,
                      exc, describe_value(value))


async def send_at_stop(ctx: rf.ActorContext, port: str, value: Any) -> None:
    """Send what a component still holds when the network stops (from ``teardown``).

    The network is stopping, so a full receiver may never drain: wait at most a
    second, then log what could not be delivered rather than hang the shutdown.
    """
    try:
        with trio.move_on_after(1.0):
            await ctx.send(port, value)
            return
        reason = "the receiver did not take it within 1 s"
    except Exception as exc:  # the receiver may already be gone
        reason = f"{type(exc).__name__}: {exc}"
    ctx.log.error("node %r: network stopped; a held packet on %r was not delivered (%s): %s",
                  ctx.node_id, port, reason, describe_value(value))


def describe_value(value: Any) -> str:
    """A short repr of a value for error messages."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
