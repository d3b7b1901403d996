"""Port types: a small type language for ports, and Reflow's compatibility rules.

A port type is written as a string (the syntax of :attr:`reflowpy.Port.type`)::

    any  flow  event  boolean  integer  float  string  bytes  stream  encoded  error
    object  object<Name>  array<T>  optional<T>

NoFlo's names are accepted as aliases (``all``, ``int``, ``number``, ``bang``, ...).
:func:`to_reflow`/:func:`from_reflow` convert to and from Reflow's adjacently tagged
JSON (``{"type": "array", "value": {"type": "integer"}}``; ``optional`` is Reflow's
``option``). ``error`` has no Reflow variant and is written as ``{"type": "error"}``.

:func:`compatible` says whether an out-port of one type may feed an in-port of
another: ``any`` on either side, equal types, ``integer`` -> ``float``, ``stream`` on
either side (Reflow streams carry anything), arrays element-wise, ``optional<T>``
unwrapped on either side, and ``object<A>`` -> ``object<B>`` when a name is missing or
the names agree.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import msgspec

from reflowpy.errors import PortTypeError

__all__ = ["SIMPLE_TYPES", "PortType", "accepts", "compatible", "from_reflow", "parse",
           "to_reflow"]

#: Types without parameters.
SIMPLE_TYPES = frozenset(
    {"any", "flow", "event", "boolean", "integer", "float", "string", "bytes", "stream",
     "encoded", "error", "object"}
)
_ALIASES = {
    "all": "any", "*": "any", "bang": "flow", "bool": "boolean", "int": "integer",
    "number": "float", "double": "float", "str": "string", "text": "string",
    "binary": "bytes", "buffer": "bytes", "dict": "object", "map": "object",
    "option": "optional", "list": "array",
}


class PortType(msgspec.Struct, frozen=True):
    """A parsed port type: ``kind`` plus ``inner`` (array/optional) or ``name`` (object)."""

    kind: str
    inner: PortType | None = None
    name: str = ""

    def __str__(self) -> str:
        if self.kind in ("array", "optional"):
            return f"{self.kind}<{self.inner}>"
        if self.kind == "object" and self.name:
            return f"object<{self.name}>"
        return self.kind


ANY = PortType("any")
#: Deepest nesting of ``array<...>``/``optional<...>`` a port type may have.
MAX_TYPE_DEPTH = 32


def _too_deep(whole: object) -> PortTypeError:
    shown = repr(whole)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return PortTypeError(f"port type {shown}: nested more than {MAX_TYPE_DEPTH} levels deep")


def _parse(text: str, pos: int, whole: str, depth: int = 0) -> tuple[PortType, int]:
    if depth > MAX_TYPE_DEPTH:
        raise _too_deep(whole)
    start = pos
    while pos < len(text) and (text[pos].isalnum() or text[pos] in "_*"):
        pos += 1
    word = text[start:pos].lower()
    kind = _ALIASES.get(word, word)
    if not kind:
        raise PortTypeError(f"port type {whole!r}: expected a type name at offset {start}")
    if pos < len(text) and text[pos] == "<":
        if kind in ("array", "optional"):
            inner, pos = _parse(text, pos + 1, whole, depth + 1)
            if pos >= len(text) or text[pos] != ">":
                raise PortTypeError(f"port type {whole!r}: expected '>' at offset {pos}")
            return PortType(kind, inner), pos + 1
        if kind == "object":
            end = text.find(">", pos)
            if end < 0:
                raise PortTypeError(f"port type {whole!r}: expected '>' after object<")
            return PortType("object", name=text[pos + 1:end].strip()), end + 1
        raise PortTypeError(f"port type {whole!r}: {kind!r} takes no parameter")
    if kind in ("array", "optional"):
        return PortType(kind, ANY), pos
    if kind not in SIMPLE_TYPES:
        known = ", ".join(sorted(SIMPLE_TYPES | {"array<T>", "optional<T>"}))
        raise PortTypeError(f"port type {whole!r}: unknown type {word!r} (known: {known})")
    return PortType(kind), pos


@lru_cache(maxsize=1024)
def _parse_cached(text: str) -> PortType:
    compact = "".join(text.split())
    if not compact:
        return ANY
    parsed, pos = _parse(compact, 0, text)
    if pos != len(compact):
        raise PortTypeError(f"port type {text!r}: unexpected {compact[pos:]!r}")
    return parsed


def parse(text: str | PortType) -> PortType:
    """Parse a port type string (``"array<integer>"``); raises :class:`PortTypeError`."""
    if isinstance(text, PortType):
        return text
    if not isinstance(text, str):
        raise PortTypeError(f"port type must be a string, got {type(text).__name__}")
    return _parse_cached(text)


_REFLOW_TAG = {"optional": "option"}
_FROM_REFLOW_TAG = {"option": "optional"}


def to_reflow(port_type: str | PortType) -> dict[str, Any]:
    """Reflow's adjacently tagged JSON of a port type."""
    t = parse(port_type)
    tag = _REFLOW_TAG.get(t.kind, t.kind)
    if t.kind in ("array", "optional"):
        return {"type": tag, "value": to_reflow(t.inner or ANY)}
    if t.kind == "object":
        return {"type": "object", "value": t.name}
    return {"type": tag}


def from_reflow(data: Any, where: str = "portType", _depth: int = 0) -> PortType:
    """Parse Reflow's tagged JSON (or a plain type string) into a :class:`PortType`."""
    if _depth > MAX_TYPE_DEPTH:
        raise PortTypeError(f"{where}: nested more than {MAX_TYPE_DEPTH} levels deep")
    if data is None:
        return ANY
    if isinstance(data, str):
        return parse(data)
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise PortTypeError(
            f"{where}: expected {{'type': ..., 'value': ...}} (Reflow's PortType), got {data!r}"
        )
    kind = data["type"]
    kind = _FROM_REFLOW_TAG.get(kind, _ALIASES.get(kind.lower(), kind.lower()))
    if kind in ("array", "optional"):
        inner = from_reflow(data.get("value"), f"{where}.value" if _depth < 4 else where,
                            _depth + 1)
        return PortType(kind, inner)
    if kind == "object":
        value = data.get("value")
        return PortType("object", name=value if isinstance(value, str) else "")
    if kind not in SIMPLE_TYPES:
        raise PortTypeError(f"{where}: unknown Reflow port type {data['type']!r}")
    return PortType(kind)


def compatible(src: str | PortType, tgt: str | PortType) -> bool:
    """Whether an out-port of type ``src`` may be connected to an in-port of type ``tgt``."""
    a, b = parse(src), parse(tgt)
    if a == b or a.kind == "any" or b.kind == "any":
        return True
    if a.kind == "stream" or b.kind == "stream":
        return True
    if a.kind == "optional":
        return compatible(a.inner or ANY, b)
    if b.kind == "optional":
        return compatible(a, b.inner or ANY)
    if a.kind == "integer" and b.kind == "float":
        return True
    if a.kind == "array" and b.kind == "array":
        return compatible(a.inner or ANY, b.inner or ANY)
    if a.kind == "object" and b.kind == "object":
        return not a.name or not b.name or a.name == b.name
    return False


def accepts(port_type: str | PortType, value: Any) -> bool:
    """Whether ``value`` is a message of ``port_type`` (checked on strict ports at send).

    ``any``, ``flow``, ``event``, ``stream`` and ``error`` take every value; numbers
    follow :func:`compatible` (an integer is a float, a boolean is neither).
    """
    t = parse(port_type)
    kind = t.kind
    if kind in ("any", "flow", "event", "stream", "error"):
        return True
    if kind == "optional":
        return value is None or accepts(t.inner or ANY, value)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind in ("bytes", "encoded"):
        return isinstance(value, (bytes, bytearray, memoryview))
    if kind == "object":
        return isinstance(value, (dict, msgspec.Struct))
    if kind == "array":
        return isinstance(value, (list, tuple, frozenset)) and all(
            accepts(t.inner or ANY, v) for v in value)
    return False
