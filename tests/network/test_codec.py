"""The wire codec: round trips (hypothesis), compression, framing, and refusals."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reflowpy as rf
from reflowpy.network import codec
from reflowpy.network import events as ev

_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(
    allow_nan=False) | st.text(max_size=50) | st.binary(max_size=50)
values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=5),
    max_leaves=30,
)


@given(values, st.sampled_from([0, 16, 1024]))
@settings(max_examples=300)
def test_values_round_trip_frozen(value: Any, threshold: int) -> None:
    frame = codec.encode(rf.freeze(value), compress_threshold=threshold)
    decoded = codec.decode(frame)
    assert decoded == value
    assert rf.freeze(decoded) is decoded  # already frozen: ready to send


@given(st.lists(values, min_size=1, max_size=8), st.data())
def test_frames_reassemble_from_any_chunking(items: list[Any], data: st.DataObject) -> None:
    stream = b"".join(codec.encode_frame(v, compress_threshold=32) for v in items)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    reader = codec.FrameReader()
    frames: list[bytes] = []
    last = 0
    for cut in [*cuts, len(stream)]:
        frames += reader.feed(stream[last:cut])
        last = cut
    assert [codec.decode(f) for f in frames] == items
    assert reader.pending == 0


def test_large_payloads_are_compressed_small_ones_not() -> None:
    small = codec.encode({"i": 1})
    big = codec.encode({"text": "x" * 10_000})
    assert small[0] == 0x00 and big[0] == 0x01 and len(big) < 200
    assert codec.decode(big) == {"text": "x" * 10_000}


def test_events_round_trip_with_their_tag() -> None:
    event = ev.MessageSent(network="n", from_actor="a", from_port="out", to_actor="b",
                           to_port="in", message={"k": [1, 2]}, queue_depth=3)
    assert codec.decode_event(codec.encode(event)) == event
    assert codec.decode(codec.encode(event))["_type"] == "MessageSent"
    with pytest.raises(rf.CodecError, match="not a network event"):
        codec.decode_event(codec.encode({"_type": "Nope"}))


def test_bad_frames_are_refused_with_a_reason() -> None:
    with pytest.raises(rf.CodecError, match="empty frame"):
        codec.decode(b"")
    with pytest.raises(rf.CodecError, match="unknown frame flag 0x07"):
        codec.decode(b"\x07abc")
    with pytest.raises(rf.CodecError, match="bad msgpack"):
        codec.decode(b"\x00\xc1")
    with pytest.raises(rf.CodecError, match="bad zstd"):
        codec.decode(b"\x01not zstd")
    bomb = codec.encode(b"\x00" * 1_000_000)
    assert len(bomb) < 1000
    with pytest.raises(rf.CodecError, match="larger than 1000"):
        codec.decode(bomb, max_size=1000)
    with pytest.raises(rf.CodecError, match="exceeds the limit"):
        codec.FrameReader(max_size=10).feed(b"\x00\x00\x01\x00")
    with pytest.raises(rf.CodecError, match="cannot encode a object"):
        codec.encode(object())


def test_frozen_structs_encode_as_maps() -> None:
    class Point(msgspec.Struct, frozen=True):
        x: int
        y: int

    assert codec.decode(codec.encode(Point(1, 2))) == {"x": 1, "y": 2}
