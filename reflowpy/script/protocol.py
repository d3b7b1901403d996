"""The worker protocol, host side: frames and message types (msgspec msgpack).

A frame is a 4-byte big-endian unsigned length ``N`` followed by ``N`` bytes of
msgpack holding one array whose first element is the message type (msgspec's
``array_like`` tagged structs). msgpack rather than JSON because messages may carry
``bytes`` and 64-bit integers unchanged; the in-sandbox worker
(:mod:`reflowpy.script.worker`) carries its own ~150-line stdlib msgpack so it runs
on a stock Python image.

::

    host -> worker   Init(source, filename, entry, config, sandbox)
                     Process(id, inputs, state | None)   None: the worker keeps its copy
                     Ping(id)
    worker -> host   Ready(pid, python)
                     Output(id, port, value)             streaming, any number per Process
                     Result(id, outputs | None, state | None)   None state: unchanged
                     Error(id, kind, exc_type, message, traceback)
                     Log(level, message)
                     Heartbeat(id, pid, max_rss_kb)      the answer to Ping

``Error.kind`` is ``"user"`` (the script raised), ``"memory"`` (MemoryError; the
worker exits), ``"encode"`` (a value could not be serialized), or ``"init"`` (the
script failed to load). A frame larger than the limit, a length that never
completes, undecodable bytes, an unknown type, or a body holding more values or
deeper nesting than ``limits.max_items`` / ``limits.max_depth`` are protocol errors:
the host ends the worker and reports :class:`~reflowpy.ScriptProtocolError`.
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec

from reflowpy.errors import ScriptProtocolError
from reflowpy.script.bounds import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_ITEMS,
    PayloadTooComplex,
    check_msgpack,
)

__all__ = [
    "DEFAULT_MAX_FRAME",
    "Error",
    "FrameReader",
    "Heartbeat",
    "Init",
    "Log",
    "Output",
    "Ping",
    "Process",
    "Ready",
    "Result",
    "WorkerMessage",
    "decode_worker_message",
    "encode_frame",
]

#: Default largest frame in either direction (16 MiB).
DEFAULT_MAX_FRAME = 16 * 1024 * 1024

_LEN = struct.Struct(">I")


class Init(msgspec.Struct, tag="init", array_like=True):
    """Load ``source`` (compiled as ``filename``) and call ``entry`` per message."""

    source: str
    filename: str
    entry: str
    config: dict[str, Any]
    sandbox: dict[str, Any]


class Process(msgspec.Struct, tag="process", array_like=True):
    """One firing: inputs by port; ``state`` only when the worker's copy is stale."""

    id: int
    inputs: Any
    state: Any = None


class Ping(msgspec.Struct, tag="ping", array_like=True):
    """Ask for a :class:`Heartbeat`."""

    id: int


class Ready(msgspec.Struct, tag="ready", array_like=True):
    """The script loaded; the worker takes ``Process`` frames."""

    pid: int
    python: str


class Output(msgspec.Struct, tag="output", array_like=True):
    """``send_output(port, value)`` called during message ``id``."""

    id: int
    port: str
    value: Any


class Result(msgspec.Struct, tag="result", array_like=True):
    """Message ``id`` done: returned outputs and, if it changed, the new state."""

    id: int
    outputs: dict[str, Any] | None
    state: dict[str, Any] | None


class Error(msgspec.Struct, tag="error", array_like=True):
    """Message ``id`` (0 for init) failed; ``kind`` says how (see module docstring)."""

    id: int
    kind: str
    exc_type: str
    message: str
    traceback: str


class Log(msgspec.Struct, tag="log", array_like=True):
    """A log line from the script (``log()`` or the ``logging`` module)."""

    level: str
    message: str


class Heartbeat(msgspec.Struct, tag="heartbeat", array_like=True):
    """Answer to :class:`Ping`: the worker is alive, with its pid and peak RSS."""

    id: int
    pid: int
    max_rss_kb: int


WorkerMessage = Ready | Output | Result | Error | Log | Heartbeat

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[WorkerMessage] = msgspec.msgpack.Decoder(WorkerMessage)


def encode_frame(message: Init | Process | Ping, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """Length-prefixed msgpack bytes of a host message.

    Raises :class:`~reflowpy.MessageError` via msgspec for values that cannot be
    encoded, and :class:`ScriptProtocolError` when the frame exceeds ``max_frame``.
    """
    body = _encoder.encode(message)
    if len(body) > max_frame:
        raise ScriptProtocolError(
            f"a {type(message).__name__.lower()} frame of {len(body)} bytes exceeds the"
            f" frame limit of {max_frame} bytes; send smaller messages or raise 'max_frame'"
        )
    return _LEN.pack(len(body)) + body


def decode_worker_message(
    body: bytes, max_items: int = DEFAULT_MAX_ITEMS, max_depth: int = DEFAULT_MAX_DEPTH
) -> WorkerMessage:
    """Decode one frame body from a worker; anything malformed is a protocol error.

    The body is pre-scanned (:func:`~reflowpy.script.bounds.check_msgpack`) so a frame
    of many tiny or deeply nested containers is refused before msgspec builds a
    single object: the host's memory per frame stays proportional to the limits
    (``limits.max_items``, ``limits.max_depth``), not to what the bytes expand to.
    """
    try:
        check_msgpack(body, max_items, max_depth)
        return _decoder.decode(body)
    except PayloadTooComplex as exc:
        raise ScriptProtocolError(
            f"the worker sent a frame over limits.{exc.limit} ({len(body)} bytes): {exc}"
            if exc.limit != "truncated" else
            f"the worker sent a malformed frame ({len(body)} bytes): {exc}"
        ) from None
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        head = bytes(body[:32])
        raise ScriptProtocolError(
            f"the worker sent a malformed frame ({len(body)} bytes, starting {head!r}):"
            f" {type(exc).__name__}: {exc}"
        ) from None


class FrameReader:
    """Splits a byte stream into frame bodies, enforcing the size limit.

    ``feed(data)`` appends bytes; ``next()`` returns the next complete body or
    ``None``. The limit is checked on the length prefix, before any body byte is
    buffered, so a hostile peer cannot make the host allocate more than ``max_frame``.
    """

    __slots__ = ("_buf", "_pos", "max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes."""
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        self._buf += data

    def next(self) -> bytes | None:
        """The next complete frame body, or ``None`` if more bytes are needed."""
        buf = self._buf
        pos = self._pos
        if len(buf) - pos < 4:
            return None
        (n,) = _LEN.unpack_from(buf, pos)
        if n > self.max_frame:
            raise ScriptProtocolError(
                f"the worker announced a frame of {n} bytes, over the limit of"
                f" {self.max_frame} bytes (starting {bytes(buf[pos:pos + 16])!r});"
                " it wrote garbage on the protocol channel or a too large value"
            )
        end = pos + 4 + n
        if len(buf) < end:
            return None
        body = bytes(buf[pos + 4 : end])
        if end == len(buf):
            buf.clear()
            self._pos = 0
        elif end > 1 << 16:
            del buf[:end]
            self._pos = 0
        else:
            self._pos = end
        return body

    @property
    def pending(self) -> int:
        """Bytes buffered that do not yet form a complete frame."""
        return len(self._buf) - self._pos
