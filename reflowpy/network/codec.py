"""The wire codec: msgpack + zstd frames for anything that leaves the process.

Bridges, the trace store and the server share one encoding, so a message or event
written by one can be read by the others:

* a **payload** is msgpack (msgspec); :class:`~reflowpy.FrozenDict` and
  :class:`~reflowpy.FrozenList` encode as maps and arrays, frozen Structs as maps, and
  network events with their ``_type`` tag;
* a **frame** is one flag byte and the payload, zstd-compressed when the payload is at
  least ``compress_threshold`` bytes (flag ``0x01``), so small messages never pay for
  compression;
* on a byte stream each frame is prefixed by its length (4 bytes, big endian);
  :class:`FrameReader` reassembles frames from chunks of any size.

Everything decoded is checked: an unknown flag, a truncated or oversized frame (also
after decompression, so a zstd bomb cannot exhaust memory) or bad msgpack raises
:class:`~reflowpy.CodecError` saying which. Decoded values come back frozen, ready to be
sent as messages.

:func:`decode_json` is the one JSON-text decoder of the components (JSON parsing,
JSON-lines files): ``json.loads``'s result, frozen, built by msgspec (several times
faster) with ``json`` itself for the inputs msgspec refuses.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

import msgspec
import zstandard

from reflowpy.errors import CodecError, MessageError
from reflowpy.network.events import NetworkEvent
from reflowpy.network.message import _LEAVES, FrozenDict, FrozenList, freeze

__all__ = [
    "DEFAULT_COMPRESS_THRESHOLD",
    "DEFAULT_MAX_FRAME",
    "FrameReader",
    "decode",
    "decode_event",
    "decode_json",
    "encode",
    "encode_frame",
    "payload",
]

#: Payloads at least this large are zstd-compressed (Reflow uses the same 1 KiB).
DEFAULT_COMPRESS_THRESHOLD = 1024
#: Largest frame accepted, before and after decompression.
DEFAULT_MAX_FRAME = 64 * 1024 * 1024

_PLAIN = 0x00
_ZSTD = 0x01
_PLAIN_FLAG = bytes((_PLAIN,))
_LENGTH = struct.Struct(">I")

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()
_event_decoder = msgspec.msgpack.Decoder(NetworkEvent)
_json_decoder = msgspec.json.Decoder()
_compressor = zstandard.ZstdCompressor(level=3)
_decompressor = zstandard.ZstdDecompressor()


def encode(value: Any, *, compress_threshold: int = DEFAULT_COMPRESS_THRESHOLD) -> bytes:
    """One frame (flag byte + payload) holding ``value`` (a message or an event)."""
    try:
        payload = _encoder.encode(value)
    except (TypeError, msgspec.EncodeError) as exc:
        raise CodecError(f"cannot encode a {type(value).__name__}: {exc}") from None
    except RecursionError:
        raise CodecError(f"cannot encode a {type(value).__name__}: nested past the"
                         " recursion limit") from None
    if len(payload) >= compress_threshold:
        return bytes((_ZSTD,)) + _compressor.compress(payload)
    return _PLAIN_FLAG + payload


def payload(frame: bytes | memoryview, max_size: int = DEFAULT_MAX_FRAME
            ) -> bytes | memoryview:
    """The checked, decompressed msgpack payload of a frame, for a caller that decodes
    it with its own typed ``msgspec`` decoder (the bridge's frames)."""
    if len(frame) < 1:
        raise CodecError("empty frame: expected a flag byte and a payload")
    if len(frame) > max_size + 1:
        raise CodecError(f"frame of {len(frame)} bytes exceeds the limit of {max_size}")
    flag = frame[0]
    body = memoryview(frame)[1:]
    if flag == _PLAIN:
        return body
    if flag == _ZSTD:
        try:
            # The frame header may state the size (then max_output_size is not used):
            # check it before allocating anything.
            declared = zstandard.frame_content_size(body)
            if declared > max_size:
                raise CodecError(f"zstd payload declares {declared} bytes, larger than"
                                 f" {max_size}")
            return _decompressor.decompress(body, max_output_size=max_size)
        except zstandard.ZstdError as exc:
            raise CodecError(f"bad zstd payload (or larger than {max_size} bytes): {exc}"
                             ) from None
    raise CodecError(f"unknown frame flag 0x{flag:02x}; expected 0x00 (plain) or 0x01 (zstd)")


def decode(frame: bytes | memoryview, *, max_size: int = DEFAULT_MAX_FRAME) -> Any:
    """The frozen message value a frame holds."""
    try:
        return freeze(_decoder.decode(payload(frame, max_size)))
    except msgspec.DecodeError as exc:
        raise CodecError(f"bad msgpack payload: {exc}") from None
    except MessageError as exc:  # not a message value (too deep, an ext type)
        raise CodecError(f"bad msgpack payload: {exc}") from None
    except RecursionError:
        raise CodecError("bad msgpack payload: nested past the recursion limit") from None


def decode_event(frame: bytes | memoryview, *, max_size: int = DEFAULT_MAX_FRAME) -> Any:
    """The network event (``NetworkStarted``, ``MessageSent``, ...) a frame holds."""
    try:
        return _event_decoder.decode(payload(frame, max_size))
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CodecError(f"not a network event: {exc}") from None
    except RecursionError:
        raise CodecError("not a network event: nested past the recursion limit") from None


def decode_json(text: str | bytes) -> Any:
    """The frozen message value of JSON ``text``: equal to ``freeze(json.loads(text))``.

    msgspec decodes it (several times faster than ``json``), and each container is
    frozen in one check and one copy (a JSON object's keys are strings, so only its
    values are looked at). What msgspec refuses but ``json.loads`` accepts (``NaN``,
    ``Infinity``, numbers beyond a float, lone surrogates, UTF-16/32 bytes, a BOM) is
    decoded by ``json.loads``, which also raises its own ``ValueError`` for text that
    is not JSON, so the values and the errors are ``json.loads``'s.
    """
    try:
        value = _json_decoder.decode(text)
    except (msgspec.DecodeError, UnicodeEncodeError, RecursionError):
        value = json.loads(text)
    t = type(value)
    if t is dict:
        # An object whose text has one "{" and no "[" holds no container (each would
        # need one of them, in any encoding JSON may have): its dict is frozen by one
        # copy, without looking at its values.
        if isinstance(text, str):
            flat = "[" not in text and text.count("{") == 1
        else:
            flat = b"[" not in text and text.count(b"{") == 1
        return FrozenDict(value) if flat else _frozen_json(value)
    if t is list:
        return _frozen_json(value)
    return value


def _frozen_json(value: Any) -> Any:
    # a decoded JSON container: plain dicts with str keys, lists and scalars
    if type(value) is dict:
        if _LEAVES.issuperset(map(type, value.values())):
            return FrozenDict(value)
        return FrozenDict({k: v if type(v) in _LEAVES else _frozen_json(v)
                           for k, v in value.items()})
    if _LEAVES.issuperset(map(type, value)):
        return FrozenList(value)
    return FrozenList([v if type(v) in _LEAVES else _frozen_json(v) for v in value])


def encode_frame(value: Any, *, compress_threshold: int = DEFAULT_COMPRESS_THRESHOLD) -> bytes:
    """A length-prefixed frame for a byte stream."""
    frame = encode(value, compress_threshold=compress_threshold)
    return _LENGTH.pack(len(frame)) + frame


class FrameReader:
    """Reassembles length-prefixed frames from a byte stream, chunk by chunk.

    ``feed(chunk)`` returns the complete frames (still encoded; pass them to
    :func:`decode` or :func:`decode_event`). A length above ``max_size`` raises
    :class:`~reflowpy.CodecError` at once, before its bytes are buffered.
    """

    def __init__(self, max_size: int = DEFAULT_MAX_FRAME) -> None:
        self.max_size = max_size
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add ``chunk`` and return every frame it completed."""
        self._buffer += chunk
        return list(self._frames())

    def _frames(self) -> Iterator[bytes]:
        buf = self._buffer
        while len(buf) >= 4:
            (size,) = _LENGTH.unpack_from(buf)
            if size > self.max_size + 1:
                raise CodecError(f"frame length {size} exceeds the limit of {self.max_size}")
            if len(buf) < 4 + size:
                return
            frame = bytes(buf[4:4 + size])
            del buf[:4 + size]
            yield frame

    @property
    def pending(self) -> int:
        """Bytes buffered that do not yet form a whole frame."""
        return len(self._buffer)
