"""The worker protocol: the worker's stdlib msgpack against msgspec, framing, limits."""

from __future__ import annotations

import struct
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reflowpy.errors import ScriptProtocolError
from reflowpy.script import protocol as P
from reflowpy.script import worker as W

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda children: st.lists(children, max_size=20)
    | st.dictionaries(st.text(max_size=10), children, max_size=20),
    max_leaves=60,
)


@given(values)
def test_worker_msgpack_reads_what_msgspec_writes(value: Any) -> None:
    assert W.unpackb(msgspec.msgpack.encode(value)) == value


@given(values)
def test_msgspec_reads_what_the_worker_writes(value: Any) -> None:
    assert msgspec.msgpack.decode(W.packb(value)) == value


_HEADER_SIZES = [0, 15, 16, 31, 32, 255, 256, 65535, 65536]


@pytest.mark.parametrize("n", _HEADER_SIZES)
@pytest.mark.parametrize("kind", ["str", "bin", "array", "map"])
def test_worker_length_headers_match_msgspec_byte_for_byte(kind: str, n: int) -> None:
    # Every header form (fix, 8-, 16-, 32-bit) of every sized type, at its boundaries.
    value: Any = {
        "str": lambda: "a" * n,
        "bin": lambda: b"a" * n,
        "array": lambda: [0] * n,
        "map": lambda: {str(i): 0 for i in range(n)},
    }[kind]()
    assert W.packb(value) == msgspec.msgpack.encode(value)


@given(st.lists(values, min_size=1, max_size=5), st.integers(min_value=1, max_value=64))
def test_frame_reader_reassembles_any_chunking(items: list[Any], chunk: int) -> None:
    messages = [P.Output(i, "out", v) for i, v in enumerate(items)]
    stream = b"".join(struct.pack(">I", len(b)) + b for b in map(W.packb, (
        ["output", m.id, m.port, m.value] for m in messages)))
    reader = P.FrameReader()
    got = []
    for start in range(0, len(stream), chunk):
        reader.feed(stream[start:start + chunk])
        while (body := reader.next()) is not None:
            got.append(P.decode_worker_message(body))
    assert got == messages
    assert reader.pending == 0


def test_host_frames_decode_in_the_worker() -> None:
    frame = P.encode_frame(P.Process(7, {"in": [1, b"x", "y"]}, None))
    (n,) = struct.unpack(">I", frame[:4])
    assert n == len(frame) - 4
    assert W.unpackb(frame[4:]) == ["process", 7, {"in": [1, b"x", "y"]}, None]


def test_oversize_frame_is_refused_before_buffering() -> None:
    reader = P.FrameReader(max_frame=1024)
    reader.feed(struct.pack(">I", 1 << 30) + b"abc")
    with pytest.raises(ScriptProtocolError, match="over the limit of 1024 bytes"):
        reader.next()
    with pytest.raises(ScriptProtocolError, match="frame limit"):
        P.encode_frame(P.Process(1, {"in": "x" * 2000}), max_frame=1024)


@pytest.mark.parametrize(
    "body",
    [b"\xc1", W.packb(["nonsense", 1]), W.packb(["result", "x", None, None]), W.packb(42),
     W.packb(["output", 1, "out"]), b"\x92\xa6output"],
)
def test_malformed_worker_frames_are_protocol_errors(body: bytes) -> None:
    with pytest.raises(ScriptProtocolError, match="malformed frame"):
        P.decode_worker_message(body)


def test_worker_rejects_values_it_cannot_send() -> None:
    with pytest.raises(W.EncodeError, match="type set"):
        W.packb({"out": {1, 2}})
    with pytest.raises(W.EncodeError, match="64 bits"):
        W.packb(2**70)
    with pytest.raises(W.DecodeError):
        W.unpackb(b"\x92\x01")
