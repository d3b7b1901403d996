"""Paths into message values: JSON pointers and dotted paths, read and written.

``parse_pointer`` splits ``/a/b/0`` (RFC 6901 escapes) or ``a.b.0`` into keys,
``get_path`` follows them through objects and arrays, and ``set_path`` returns a copy
with one value replaced. The standard components and the expression language's
``get()`` share them, so a path means the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import reflowpy as rf

__all__ = ["MISSING", "get_path", "parse_pointer", "set_path"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def parse_pointer(path: str) -> tuple[str, ...]:
    """Split a path into keys: a JSON pointer (``/a/b/0``, RFC 6901 escapes ``~0``
    ``~1``) or a dotted path (``a.b.0``). ``""`` and ``"/"``-less empty mean the
    whole value."""
    if path == "":
        return ()
    if path.startswith("/"):
        return tuple(p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/"))
    return tuple(path.split("."))


def get_path(value: Any, keys: Sequence[str], default: Any = MISSING) -> Any:
    """Follow ``keys`` into nested objects/arrays; ``default`` (or ``KeyError``) if absent."""
    current = value
    for key in keys:
        if isinstance(current, Mapping):
            if key in current:
                current = current[key]
                continue
        elif isinstance(current, (list, tuple)) and _is_index(key):
            idx = int(key)
            if -len(current) <= idx < len(current):
                current = current[idx]
                continue
        if default is MISSING:
            raise KeyError("/" + "/".join(keys))
        return default
    return current


def set_path(value: Any, keys: Sequence[str], new: Any) -> Any:
    """A copy of ``value`` with ``new`` at ``keys`` (objects are created as needed;
    ``-`` appends to an array, as in JSON Patch)."""
    if not keys:
        return new
    head, rest = keys[0], keys[1:]
    if isinstance(value, (list, tuple)):
        items = rf.thaw(list(value))
        if head == "-":
            items.append(set_path(None, rest, new))
        elif _is_index(head) and -len(items) <= int(head) < len(items):
            items[int(head)] = set_path(items[int(head)], rest, new)
        else:
            raise KeyError(f"array index {head!r} out of range")
        return items
    obj = rf.thaw(dict(value)) if isinstance(value, Mapping) else {}
    if value is not None and not isinstance(value, Mapping):
        raise KeyError(f"cannot set key {head!r} inside a {type(value).__name__}")
    obj[head] = set_path(obj.get(head), rest, new)
    return obj


def _is_index(key: str) -> bool:
    return key.lstrip("-").isdigit()
