"""Limits every graph reader enforces, so a hostile file costs bounded time and memory.

A graph file is data from outside. Whatever a reader returns is later walked by code
that recurses (freezing messages, deep copies for graph events, the JSON and YAML
writers), printed, and encoded as UTF-8, so the readers refuse, with a
:class:`~reflowpy.GraphFormatError` naming the place, what those steps cannot carry:

* values nested more than :data:`MAX_DEPTH` levels deep (also what a YAML alias that
  contains itself looks like);
* integers outside the 64-bit range msgspec (and so every message codec) can encode;
* strings that are not valid Unicode text (a lone UTF-16 surrogate such as ``\\ud800``);
* mapping keys that are not strings (YAML ``1: x``), and values that are no JSON value
  (YAML ``!!binary``, ``!!set``);
* files and streams longer than :data:`MAX_TEXT_BYTES` (``/dev/zero``, a runaway pipe),
  read no further than one byte past the limit (:func:`read_limited`);
* documents whose YAML aliases expand to more than :data:`EXPANSION_FACTOR` times the
  size of the text (the "billion laughs" file), counted while walking, never built.

:func:`check_value` walks one value (IIP data, metadata, properties) against all of these
and is cheap on the common case: one type test per scalar, ASCII strings in O(1).
"""

from __future__ import annotations

from typing import Any, BinaryIO

from reflowpy.errors import GraphFormatError
from reflowpy.network.message import FrozenDict, FrozenList

__all__ = ["EXPANSION_FACTOR", "MAX_DEPTH", "MAX_INDEX", "MAX_INT", "MAX_TEXT_BYTES", "MIN_INT",
           "Budget", "check_int", "check_text", "check_value", "line_col", "read_limited"]

#: Deepest nesting of lists/objects inside one value (IIP data, metadata).
MAX_DEPTH = 64
#: Largest and smallest integer a graph may hold (msgspec encodes int64 and uint64).
MAX_INT = 2**64 - 1
MIN_INT = -(2**63)
#: Largest port index (addressable ports are arrays; JavaScript's int32 range).
MAX_INDEX = 2**31 - 1
#: Longest graph (or map) file or stream read, in bytes: five times the 50 MB graphs the
#: loaders are measured on, far below what loading it would take in memory.
MAX_TEXT_BYTES = 256 * 2**20
#: Values visited (aliases expanded) may exceed the text's length by this factor.
EXPANSION_FACTOR = 10


class Budget:
    """How many values a reader may still visit for one document: ``10 * len(text)``
    plus a floor, so aliases cannot make a small text expand into a huge one."""

    __slots__ = ("left", "total")

    def __init__(self, text_length: int) -> None:
        self.total = EXPANSION_FACTOR * text_length + 100_000
        self.left = self.total


class _Bad(Exception):
    """A refused value; ``path`` is filled in while the walk unwinds."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.path: list[str] = []


def check_int(value: int, fmt: str, where: str) -> int:
    """``value`` if it fits in 64 bits, else a GraphFormatError at ``where``."""
    if MIN_INT <= value <= MAX_INT:
        return value
    raise GraphFormatError(_int_message(value), format=fmt, where=where)


def _int_message(value: int) -> str:
    digits = value.bit_length() * 30103 // 100000 + 1
    return (f"an integer of about {digits} digits is out of range (graphs hold 64-bit"
            " integers); write it as a string")


def _walk(value: Any, depth: int, budget: Budget) -> None:
    budget.left -= 1
    if budget.left < 0:
        raise _Bad(f"the document expands to more than {budget.total} values (YAML aliases"
                   " repeated inside each other); refusing to expand it")
    t = type(value)
    if t is str:
        if not value.isascii():
            _check_text(value)
        return
    if t is dict or t is FrozenDict:  # frozen: metadata of a graph a network runs
        if depth >= MAX_DEPTH:
            raise _Bad(f"nested more than {MAX_DEPTH} levels deep (a YAML alias that"
                       " contains itself does this too)")
        for key, item in value.items():
            if type(key) is not str:
                raise _Bad(f"a mapping key must be a string, got {type(key).__name__}"
                           f" {_short(key)}; quote it")
            try:
                if not key.isascii():
                    _check_text(key)
                _walk(item, depth + 1, budget)
            except _Bad as exc:
                exc.path.append(f".{key}")
                raise
        return
    if t is list or t is FrozenList:
        if depth >= MAX_DEPTH:
            raise _Bad(f"nested more than {MAX_DEPTH} levels deep (a YAML alias that"
                       " contains itself does this too)")
        for i, item in enumerate(value):
            try:
                _walk(item, depth + 1, budget)
            except _Bad as exc:
                exc.path.append(f"[{i}]")
                raise
        return
    if t is int:
        if not MIN_INT <= value <= MAX_INT:
            raise _Bad(_int_message(value))
        return
    if value is None or t is bool or t is float:
        return
    raise _Bad(f"a {t.__name__} value is not JSON data (use strings, numbers, booleans,"
               " null, lists and mappings)")


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start]
        raise _Bad(f"the text holds a lone surrogate {bad!a}, which is not Unicode"
                   " text") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_value(value: Any, fmt: str, where: str, budget: Budget | None = None) -> Any:
    """Return ``value`` after checking it against every limit of this module; a refused
    value raises GraphFormatError at ``where`` plus the path inside the value."""
    try:
        _walk(value, 0, budget or Budget(0))
    except _Bad as exc:
        parts = exc.path[::-1]
        if len(parts) > 12:
            parts = [*parts[:8], "...", *parts[-2:]]
        inner = "".join(parts)
        raise GraphFormatError(exc.message, format=fmt, where=(where + inner).lstrip(".")
                               or "top level") from None
    except RecursionError:  # the caller's stack was already deep
        raise GraphFormatError("nested too deeply for this program's stack", format=fmt,
                               where=where or "top level") from None
    return value


def check_text(text: str, fmt: str) -> None:
    """Refuse a text with a lone surrogate (only a ``str`` handed to the API can hold
    one; decoded UTF-8 never does), naming its line and column."""
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise GraphFormatError(
            f"the text holds a lone surrogate {text[exc.start]!a}, which is not"
            " Unicode text", format=fmt, where=line_col(text, exc.start)) from None


def read_limited(stream: BinaryIO, fmt: str = "") -> bytes:
    """All of ``stream``'s bytes, refused with a GraphFormatError once it holds more than
    :data:`MAX_TEXT_BYTES` (reading stops one byte past the limit)."""
    data = stream.read(MAX_TEXT_BYTES + 1)
    if len(data) > MAX_TEXT_BYTES:
        raise GraphFormatError(f"longer than {MAX_TEXT_BYTES // 2**20} MiB, the most reflowpy"
                               " reads from one file (split a graph into subgraphs)",
                               format=fmt)
    return data


def line_col(text: str | bytes, pos: int) -> str:
    """``line L, column C`` (1-based) of offset ``pos`` in ``text``."""
    nl = "\n" if isinstance(text, str) else b"\n"
    line = text.count(nl, 0, pos) + 1  # type: ignore[arg-type]
    col = pos - (text.rfind(nl, 0, pos) + 1) + 1  # type: ignore[arg-type]
    return f"line {line}, column {col}"
