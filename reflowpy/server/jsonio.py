"""Bounded JSON decoding for everything clients send (HTTP bodies, WebSocket frames).

msgspec decodes nesting up to about a thousand levels and then raises
``RecursionError``; values a little less deep still reach code that walks them
recursively (freezing a message, converting a graph). :func:`decode_json` refuses
both with :class:`JsonTooDeep`, a ``ValueError`` the handlers turn into ``400`` or an
FBP ``error`` — never a ``500`` or a closed socket. The depth is measured by an
iterative walk after decoding, so the limit holds without any recursion of ours. A key
written twice in one object is refused (:class:`JsonDuplicateKey`) as in graph files.
"""

from __future__ import annotations

from typing import Any

import msgspec

from reflowpy.errors import GraphFormatError, ReflowError
from reflowpy.network.formats import check_duplicate_keys

__all__ = ["DEFAULT_MAX_DEPTH", "JsonDuplicateKey", "JsonTooDeep", "decode_json",
           "depth_exceeds"]

#: Deepest nesting a client may send (objects and arrays each count one level).
DEFAULT_MAX_DEPTH = 64

_DECODER = msgspec.json.Decoder()


class JsonTooDeep(ReflowError, ValueError):
    """A JSON document nests deeper than the server accepts."""


class JsonDuplicateKey(ReflowError, ValueError):
    """A JSON document writes one key twice in one object (a graph posted with two
    processes of one id, a message with two ``id``): refused as graph files are, naming
    the key and both places, since decoding would keep the last one silently."""


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
    :class:`JsonTooDeep` and a key written twice in one object with
    :class:`JsonDuplicateKey` (``msgspec.DecodeError`` for malformed JSON, as msgspec)."""
    try:
        value = _DECODER.decode(data)
    except RecursionError:
        raise JsonTooDeep(f"{what} nests deeper than {max_depth} levels") from None
    if depth_exceeds(value, max_depth):
        raise JsonTooDeep(f"{what} nests deeper than {max_depth} levels")
    try:
        check_duplicate_keys(data, value, "json")  # one count in C unless there is one
    except GraphFormatError as exc:
        raise JsonDuplicateKey(f"{what} at {exc.where}: {exc.detail}") from None
    return value
