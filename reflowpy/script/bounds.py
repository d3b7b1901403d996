"""Bounded decoding of untrusted payloads: element count and nesting depth, before decoding.

msgspec bounds nothing but the input's size: one byte of msgpack (``0x90``, an empty
array) becomes a 56-byte Python list, so a 2 MiB frame of them costs the host about
150 MB and seconds of a frozen trio loop, and 5000 nested arrays end in a
``RecursionError``. Every payload that comes from a sandbox (worker frames, WASM
outputs, state and logs) is therefore pre-scanned here first: the scan walks the
msgpack headers (or the JSON brackets) without building any object, counts values
and tracks depth, and stops at the first limit crossed. It runs in time linear in the
number of values it admits, so ``max_items`` also bounds the time it takes.

:func:`check_msgpack` / :func:`check_json` raise :class:`PayloadTooComplex` naming
the limit; callers turn it into their own error (``ScriptProtocolError`` for a
worker, ``WasmTrap`` for a plugin). A payload no longer than ``max_depth`` bytes
cannot break either limit and is not scanned (the hot path of small messages).
"""

from __future__ import annotations

import re
from itertools import accumulate

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_ITEMS",
    "PayloadTooComplex",
    "check_json",
    "check_msgpack",
]

#: Default most values (scalars and containers, map keys included) in one payload.
DEFAULT_MAX_ITEMS = 262_144
#: Default deepest nesting of arrays/maps in one payload.
DEFAULT_MAX_DEPTH = 64


class PayloadTooComplex(ValueError):
    """A payload crosses ``limit`` (``"max_items"``, ``"max_depth"``) or is truncated."""

    def __init__(self, message: str, limit: str) -> None:
        self.limit = limit
        super().__init__(message)


# Bytes to skip after a fixed-size msgpack type byte (ints, floats, fixext).
_FIXED: dict[int, int] = {
    0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8,
    0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8,
    0xCA: 4, 0xCB: 8,
    0xD4: 2, 0xD5: 3, 0xD6: 5, 0xD7: 9, 0xD8: 17,
}
# Width of the length field of str/bin/ext types (ext has one more type byte).
_SIZED: dict[int, int] = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}
_EXT: dict[int, int] = {0xC7: 1, 0xC8: 2, 0xC9: 4}


def check_msgpack(data: bytes, max_items: int = DEFAULT_MAX_ITEMS,
                  max_depth: int = DEFAULT_MAX_DEPTH) -> None:
    """Raise :class:`PayloadTooComplex` unless ``data`` holds a msgpack value within limits.

    Counts every value (a map entry is two) and the depth of nested non-empty
    arrays/maps from the headers alone; a container announcing more elements than bytes remain is
    refused at once (it is truncated, whatever it would have held).
    """
    n = len(data)
    if n <= max_depth:
        return
    i = 0
    items = 0
    remaining = 1  # values still to read in the innermost open container
    stack: list[int] = []
    fixed = _FIXED
    while True:
        if remaining == 0:
            if not stack:
                return
            remaining = stack.pop()
            continue
        if i >= n:
            raise PayloadTooComplex(f"the payload ends inside a value at byte {i}", "truncated")
        b = data[i]
        i += 1
        remaining -= 1
        items += 1
        if items > max_items:
            raise PayloadTooComplex(
                f"the payload holds more than max_items={max_items} values", "max_items")
        if b < 0x80 or b >= 0xE0 or b == 0xC0 or b == 0xC2 or b == 0xC3:
            continue
        if 0xA0 <= b <= 0xBF:
            i += b & 0x1F
            continue
        if b <= 0x9F:
            count = (b & 0x0F) if b >= 0x90 else 2 * (b & 0x0F)
        elif b == 0xDC or b == 0xDE:
            count = int.from_bytes(data[i:i + 2], "big") * (1 if b == 0xDC else 2)
            i += 2
        elif b == 0xDD or b == 0xDF:
            count = int.from_bytes(data[i:i + 4], "big") * (1 if b == 0xDD else 2)
            i += 4
        elif b in fixed:
            i += fixed[b]
            continue
        elif b in _SIZED:
            w = _SIZED[b]
            i += w + int.from_bytes(data[i:i + w], "big")
            continue
        elif b in _EXT:
            w = _EXT[b]
            i += w + 1 + int.from_bytes(data[i:i + w], "big")
            continue
        else:
            continue  # 0xC1 (never used): msgspec refuses it with its own message
        if count:
            if count > n - i:
                raise PayloadTooComplex(
                    f"a container at byte {i} announces {count} elements but only"
                    f" {n - i} bytes follow", "truncated")
            if len(stack) >= max_depth:
                raise PayloadTooComplex(
                    f"the payload nests deeper than max_depth={max_depth}", "max_depth")
            stack.append(remaining)
            remaining = count


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_BRACKETS = bytes(range(256)).translate(None, b"[]{}")  # delete-table complement
_DEPTH_DELTA = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def check_json(data: bytes, max_items: int = DEFAULT_MAX_ITEMS,
               max_depth: int = DEFAULT_MAX_DEPTH) -> None:
    """:func:`check_msgpack` for JSON: strings are skipped, brackets and commas counted."""
    if len(data) <= max_depth:
        return
    skeleton = _JSON_STRING.sub(b'""', data)
    items = skeleton.count(b",") + skeleton.count(b":") + 1
    if items > max_items:
        raise PayloadTooComplex(
            f"the payload holds more than max_items={max_items} values", "max_items")
    brackets = skeleton.translate(None, _JSON_BRACKETS)
    if brackets.count(b"[") + brackets.count(b"{") > max_depth and max(
            accumulate(map(_DEPTH_DELTA.__getitem__, brackets)), default=0) > max_depth:
        raise PayloadTooComplex(
            f"the payload nests deeper than max_depth={max_depth}", "max_depth")
