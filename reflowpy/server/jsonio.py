"""Bounded JSON decoding for everything clients send (HTTP bodies, WebSocket frames).

msgspec decodes nesting up to about a thousand levels and then raises
``RecursionError``; values a little less deep still reach code that walks them
recursively (freezing a message, converting a graph). :func:`decode_json` refuses
both with :class:`JsonTooDeep`, a ``ValueError`` the handlers turn into ``400`` or an
FBP ``error`` — never a ``500`` or a closed socket. The depth is measured by an
iterative walk after decoding, so the limit holds without any recursion of ours.
"""

from __future__ import annotations

from typing import Any

import msgspec

from reflowpy.errors import ReflowError

__all__ = ["DEFAULT_MAX_DEPTH", "JsonTooDeep", "decode_json", "depth_exceeds"]

#: Deepest nesting a client may send (objects and arrays each count one level).
DEFAULT_MAX_DEPTH = 64

_DECODER = msgspec.json.Decoder()


class JsonTooDeep(ReflowError, ValueError):
    """A JSON document nests deeper than the server accepts."""


def depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` (decoded JSON) nests more than ``limit`` containers deep."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        for child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


def decode_json(data: bytes | str, max_depth: int = DEFAULT_MAX_DEPTH,
                what: str = "the JSON document") -> Any:
    """``data`` decoded, refusing nesting deeper than ``max_depth`` with
    :class:`JsonTooDeep` (``msgspec.DecodeError`` for malformed JSON, as msgspec)."""
    try:
        value = _DECODER.decode(data)
    except RecursionError:
        raise JsonTooDeep(f"{what} nests deeper than {max_depth} levels") from None
    if depth_exceeds(value, max_depth):
        raise JsonTooDeep(f"{what} nests deeper than {max_depth} levels")
    return value
