"""Message values: what may travel between actors, freezing, and Reflow's tagged form.

A message is an immutable value msgspec can serialize: ``None``, ``bool``, ``int``,
``float``, ``str``, ``bytes``, ``datetime``/``date``/``time``/``timedelta``,
``uuid.UUID``, ``decimal.Decimal``, ``tuple``, ``frozenset``, frozen
``msgspec.Struct`` instances, and the two immutable containers defined here,
:class:`FrozenDict` and :class:`FrozenList`.

A ``dict``, ``list`` or ``set`` handed to an out-port is frozen **once**, at send time,
into those containers (recursively); values that are already immutable pass by
reference at no cost. So fan-out never shares mutable state, and a receiver that
wants to change a value makes its own copy with :func:`thaw`.

``FrozenDict``/``FrozenList`` subclass ``dict``/``list`` so they compare equal to plain
ones, work with ``json``/``msgspec`` as they are, and cost one C-level copy to build;
every mutating method raises ``TypeError``.

Reflow's tagged JSON (``{"type": "Integer", "data": 42}``) converts both ways with
:func:`to_reflow` and :func:`from_reflow`.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import uuid
from collections.abc import Mapping
from typing import Any, NoReturn

import msgspec

from reflowpy.errors import MessageError

__all__ = [
    "REFLOW_VARIANTS",
    "FrozenDict",
    "FrozenList",
    "freeze",
    "freeze_decoded",
    "from_reflow",
    "is_frozen",
    "thaw",
    "to_reflow",
]


def _immutable(self: object, *args: object, **kwargs: object) -> NoReturn:
    raise TypeError(
        f"{type(self).__name__} is an immutable message; make a mutable copy with"
        " reflowpy.thaw(value) before changing it"
    )


class FrozenDict(dict[str, Any]):
    """An immutable ``dict``: a message object. Equal to a plain dict with the same items."""

    __slots__ = ()
    __setitem__ = __delitem__ = _immutable
    clear = pop = popitem = setdefault = update = _immutable
    __ior__ = _immutable

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __repr__(self) -> str:
        return f"FrozenDict({dict.__repr__(self)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenDict:
        return self


class FrozenList(list[Any]):
    """An immutable ``list``: a message array. Equal to a plain list with the same items."""

    __slots__ = ()
    __setitem__ = __delitem__ = _immutable
    append = extend = insert = pop = remove = reverse = sort = clear = _immutable
    __iadd__ = __imul__ = _immutable

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"FrozenList({list.__repr__(self)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenList, (list(self),))

    def __copy__(self) -> FrozenList:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenList:
        return self


#: Types whose values are immutable leaves: passed by reference, never copied.
_LEAVES: frozenset[type] = frozenset(
    {
        type(None), bool, int, float, str, bytes, complex,
        FrozenDict, FrozenList,
        datetime.datetime, datetime.date, datetime.time, datetime.timedelta,
        uuid.UUID, decimal.Decimal,
    }
)


def is_frozen(value: Any) -> bool:
    """True when ``value`` is already a message leaf (no copy needed to send it)."""
    return type(value) in _LEAVES


#: Types a dict key may have (scalars; not the containers, though they are leaves).
_KEYS: frozenset[type] = _LEAVES - {FrozenDict, FrozenList}


def freeze(value: Any, *, where: str = "") -> Any:
    """Return ``value`` as an immutable message, copying only what is mutable.

    Raises :class:`~reflowpy.MessageError` for values that cannot be messages; ``where``
    (e.g. ``"node 'a' port 'out'"``) is put in front of the message.

    A flat ``dict`` or ``list`` (every item already a leaf, the common record) is
    checked in one C-level pass over its types and copied in one more; only nested or
    unusual values take the recursive walk, which names the path of what it refuses.
    """
    t = type(value)
    if t in _LEAVES:
        return value
    if t is dict:
        if _LEAVES.issuperset(map(type, value.values())) and _KEYS.issuperset(map(type, value)):
            return FrozenDict(value)
    elif t is list and _LEAVES.issuperset(map(type, value)):
        return FrozenList(value)
    try:
        return _freeze(value, where, "")
    except RecursionError:
        prefix = f"{where}: " if where else ""
        raise MessageError(f"{prefix}cannot send a value nested more deeply than the"
                           " interpreter's recursion limit allows") from None


def freeze_decoded(value: Any) -> Any:
    """:func:`freeze` for a value a JSON or msgpack decoder has just built.

    The same result as :func:`freeze` (whose flat-container check is what made this
    faster once); kept so decoders say what they hand over.
    """
    return freeze(value)


def _freeze(value: Any, where: str, path: str) -> Any:
    t = type(value)
    if t in _LEAVES:
        return value
    if t is dict or isinstance(value, dict):
        if t is dict and _LEAVES.issuperset(map(type, value.values())) \
                and _KEYS.issuperset(map(type, value)):
            return FrozenDict(value)  # flat: one check, one copy (as in freeze)
        out = {}
        for k, v in value.items():
            if type(k) not in _KEYS:
                _refuse(k, where, f"{path} key", "a dict key must be a str, int or other scalar")
            out[k] = v if type(v) in _LEAVES else _freeze(v, where, f"{path}.{k}")
        return FrozenDict(out)
    if t is list or isinstance(value, list):
        if t is list and _LEAVES.issuperset(map(type, value)):
            return FrozenList(value)
        return FrozenList(
            [v if type(v) in _LEAVES else _freeze(v, where, f"{path}[{i}]")
             for i, v in enumerate(value)]
        )
    if t is tuple or isinstance(value, tuple):
        items = [v if type(v) in _LEAVES else _freeze(v, where, f"{path}[{i}]")
                 for i, v in enumerate(value)]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return tuple(items)
    if t is set or t is frozenset:
        return frozenset(_freeze(v, where, f"{path}{{}}") for v in value)
    if t is bytearray or t is memoryview:
        return bytes(value)
    if isinstance(value, msgspec.Struct):
        if not type(value).__struct_config__.frozen:
            _refuse(value, where, path, "a msgspec.Struct message must be declared frozen=True")
        return value
    if isinstance(value, (int, float, str, bytes)):  # subclasses (enums, str-enums)
        return value
    _refuse(value, where, path, "messages must be JSON/msgpack values or frozen Structs")


def _refuse(value: Any, where: str, path: str, why: str) -> NoReturn:
    at = f" at {path.lstrip('.')}" if path else ""
    prefix = f"{where}: " if where else ""
    raise MessageError(
        f"{prefix}cannot send a value of type {type(value).__name__}{at}: {why}"
    )


def thaw(value: Any) -> Any:
    """A deep, mutable copy of a message: ``FrozenDict`` -> ``dict``, ``FrozenList`` -> ``list``."""
    if isinstance(value, dict):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, list):
        return [thaw(v) for v in value]
    if type(value) is tuple:
        return tuple(thaw(v) for v in value)
    return value


# -- Reflow's tagged messages ---------------------------------------------------------------

#: Reflow ``Message`` variant names (serde adjacently tagged: ``{"type": ..., "data": ...}``).
REFLOW_VARIANTS: tuple[str, ...] = (
    "Flow", "Event", "Boolean", "Integer", "Float", "String", "Object", "Array",
    "Bytes", "Stream", "StreamHandle", "Encoded", "Optional", "Any", "Error",
    "RemoteReference", "NetworkEvent",
)


class ReflowError_(msgspec.Struct, frozen=True, tag="Error"):
    """An ``Error`` message from Reflow, kept distinct from a plain string."""

    message: str


def to_reflow(value: Any) -> dict[str, Any]:
    """The Reflow tagged form of a message value (``{"type": ..., "data": ...}``)."""
    if value is None:
        return {"type": "Flow"}
    if isinstance(value, ReflowError_):
        return {"type": "Error", "data": value.message}
    if isinstance(value, bool):
        return {"type": "Boolean", "data": value}
    if isinstance(value, int):
        return {"type": "Integer", "data": value}
    if isinstance(value, float):
        return {"type": "Float", "data": value}
    if isinstance(value, str):
        return {"type": "String", "data": value}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"type": "Bytes", "data": list(bytes(value))}
    if isinstance(value, Mapping):
        return {"type": "Object", "data": msgspec.to_builtins(thaw(value))}
    if isinstance(value, (list, tuple, frozenset)):
        return {"type": "Array", "data": msgspec.to_builtins(thaw(list(value)))}
    return {"type": "Any", "data": msgspec.to_builtins(value)}


def from_reflow(tagged: Any) -> Any:
    """A message value from Reflow's tagged form; raises :class:`MessageError` if malformed."""
    if not isinstance(tagged, Mapping) or "type" not in tagged:
        raise MessageError(
            f"not a Reflow tagged message (expected {{'type': ..., 'data': ...}}): {tagged!r:.80}"
        )
    kind = tagged["type"]
    data = tagged.get("data")
    if kind == "Flow":
        return None
    if kind == "Boolean":
        _check(kind, data, bool)
        return data
    if kind == "Integer":
        if isinstance(data, bool) or not isinstance(data, int):
            _bad(kind, data, "an integer")
        return data
    if kind == "Float":
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            _bad(kind, data, "a number")
        return float(data)
    if kind == "String":
        _check(kind, data, str)
        return data
    if kind in ("Bytes", "Stream", "Encoded"):
        if isinstance(data, str):
            try:
                return base64.b64decode(data, validate=True)
            except ValueError:
                _bad(kind, data, "a byte array or base64 string")
        if not isinstance(data, list) or not all(
            isinstance(b, int) and 0 <= b < 256 for b in data
        ):
            _bad(kind, data, "a byte array")
        return bytes(data)
    if kind == "Error":
        if not isinstance(data, str):
            _bad(kind, data, "a string")
        return ReflowError_(data)
    if kind == "Optional":
        return None if data is None else freeze(data)
    if kind in ("Object", "Event", "Any", "Array", "StreamHandle"):
        if kind == "Array" and not isinstance(data, list):
            _bad(kind, data, "an array")
        return freeze(data)
    if kind in ("RemoteReference", "NetworkEvent"):
        payload = {k: v for k, v in tagged.items() if k != "type"}
        return freeze({"type": kind, **(payload if data is None else {"data": data})})
    raise MessageError(
        f"unknown Reflow message type {kind!r}; expected one of {', '.join(REFLOW_VARIANTS)}"
    )


def _check(kind: str, data: Any, t: type) -> None:
    if not isinstance(data, t):
        _bad(kind, data, f"a {t.__name__}")


def _bad(kind: str, data: Any, expected: str) -> NoReturn:
    raise MessageError(f"Reflow {kind} message: data must be {expected}, got {data!r:.60}")
