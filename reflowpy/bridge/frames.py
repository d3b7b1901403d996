"""The bridge's wire frames: what two reflowpy peers say to each other, and the limits.

One connection per pair of peers carries every edge between them as a numbered
**channel**. Each frame is a msgspec Struct encoded as a msgpack array whose first item
is its tag, inside the project's codec frame (:mod:`reflowpy.network.codec`: one flag
byte, zstd above the compression threshold):

=========  ==========================================================================
frame      meaning
=========  ==========================================================================
HELLO      ``(version, peer, nonce, proof, session, incarnation, channels, graph)``:
           the handshake. The acceptor speaks first with a fresh nonce; the dialer
           answers with an HMAC proof over both nonces; the acceptor proves itself
           back. ``channels`` declares the edges, ``graph`` the part to host.
DATA       ``(channel, seq, batch, credits)``: messages ``seq .. seq+len(batch)-1``;
           ``credits`` are CREDIT frames for the sender's own in-channels riding
           along (taken first), so a request/response exchange is one frame each way.
CREDIT     ``(channel, acked, grant_upto, checkpoint)``: everything ``<= acked`` is
           safe at the receiver (drop it from the resend buffer); the sender may send
           up to ``grant_upto`` (the free room of the receiver's bounded buffer). One
           frame is both the ack and the credit window. ``checkpoint`` (completion
           acks only) maps the acker's out-channels to their seq at that point.
RESUME     ``(channel, last_received)``: resend from ``last_received + 1`` (after a
           reconnect, or when the receiver saw a gap).
PING/PONG  ``(nonce, ...)``: liveness and round-trip time; PONG says how far each
           channel was received.
REJECT     ``(code, reason)``: the peer refuses (auth, protocol); the connection closes.
=========  ==========================================================================

:func:`decode_frame` checks size (before and after decompression), the tag, every
field's type and the batch length, and raises :class:`~reflowpy.BridgeProtocolError`
naming what was wrong; a peer that sends garbage loses only its own connection.
"""

from __future__ import annotations

from typing import Any, Union

import msgspec

from reflowpy.errors import BridgeProtocolError, CodecError, MessageError
from reflowpy.network import codec
from reflowpy.network.message import _LEAVES, freeze_decoded

#: What msgpack decodes into that is mutable (everything else is a leaf or bytes).
_CONTAINERS = (dict, list)

__all__ = [
    "MAX_BATCH",
    "MAX_CHANNELS",
    "MAX_FRAME",
    "PROTOCOL_VERSION",
    "ChannelSpec",
    "Credit",
    "Data",
    "Frame",
    "Hello",
    "Ping",
    "Pong",
    "Reject",
    "Resume",
    "decode_frame",
    "encode_frame",
]

#: Version of the frame set; a HELLO with another version is refused. (2: DATA carries
#: credits.)
PROTOCOL_VERSION = 2
#: Largest encoded frame accepted from a peer, before and after decompression.
MAX_FRAME = 16 * 1024 * 1024
#: Most messages one DATA frame may carry.
MAX_BATCH = 4096
#: Most channels one connection may declare.
MAX_CHANNELS = 1024


class ChannelSpec(msgspec.Struct, array_like=True, frozen=True):
    """One edge across the boundary. ``src``/``tgt`` are ``"node.port"``; ``sender`` is
    the peer id that sends on it; ``capacity`` the receiver's buffer (its credit);
    ``start`` the first seq a fresh receiver expects (after a peer process restarted,
    where delivery resumes); ``ack_on`` is ``"receipt"`` or ``"completion"``."""

    id: int
    sender: str
    src: str
    tgt: str
    capacity: int
    start: int = 1
    ack_on: str = "receipt"


class Hello(msgspec.Struct, array_like=True, frozen=True, tag="HELLO"):
    version: int
    peer: str
    nonce: bytes
    proof: bytes = b""
    session: str = ""
    incarnation: str = ""
    channels: list[ChannelSpec] = []
    graph: Any = None
    #: The largest decoded frame this peer accepts (0: the protocol default, MAX_FRAME).
    max_frame: int = 0


class Credit(msgspec.Struct, array_like=True, frozen=True, tag="CREDIT"):
    channel: int
    acked: int
    grant_upto: int
    #: With completion acks: how far each of the acking peer's own out-channels had
    #: sent when everything up to ``acked`` was complete (where a restarted peer
    #: resumes its outputs, so a deterministic node's replayed outputs are dropped).
    checkpoint: dict[int, int] = {}


class Data(msgspec.Struct, array_like=True, frozen=True, tag="DATA"):
    channel: int
    seq: int
    batch: list[Any]
    #: CREDIT frames riding along (for channels the other way), taken before the batch.
    credits: list[Credit] = []


class Resume(msgspec.Struct, array_like=True, frozen=True, tag="RESUME"):
    channel: int
    last_received: int


class Ping(msgspec.Struct, array_like=True, frozen=True, tag="PING"):
    nonce: int


class Pong(msgspec.Struct, array_like=True, frozen=True, tag="PONG"):
    nonce: int
    last_received: dict[int, int] = {}


class Reject(msgspec.Struct, array_like=True, frozen=True, tag="REJECT"):
    code: str
    reason: str


Frame = Union[Hello, Data, Credit, Resume, Ping, Pong, Reject]  # noqa: UP007


#: ``encode_frame(frame, *, compress_threshold=1024) -> bytes``: the bytes of one frame,
#: the project's codec frame itself (flag byte + msgpack, zstd above the threshold).
encode_frame = codec.encode


_frame_decoder = msgspec.msgpack.Decoder(Frame)


def decode_frame(data: bytes | memoryview, max_size: int = MAX_FRAME,
                 max_batch: int = MAX_BATCH) -> Frame:
    """The frame ``data`` holds; :class:`~reflowpy.BridgeProtocolError` if it is none.

    One typed msgpack pass checks the tag and every field's type; only the messages of a
    DATA batch are frozen afterwards (they become message values)."""
    try:
        frame: Frame = _frame_decoder.decode(codec.payload(data, max_size))
    except CodecError as exc:
        raise BridgeProtocolError(f"undecodable frame: {exc}") from None
    except msgspec.ValidationError as exc:
        raise BridgeProtocolError(f"not a valid bridge frame: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BridgeProtocolError(f"undecodable frame: bad msgpack payload: {exc}") from None
    except RecursionError:
        raise BridgeProtocolError("undecodable frame: nested past the recursion limit"
                                  ) from None
    if type(frame) is Data:
        batch = frame.batch
        if not batch or len(batch) > max_batch:
            raise BridgeProtocolError(
                f"DATA on channel {frame.channel} carries {len(batch)} messages;"
                f" 1..{max_batch} allowed")
        if frame.seq < 1:
            raise BridgeProtocolError(f"DATA on channel {frame.channel}: seq {frame.seq} < 1")
        if len(frame.credits) > MAX_CHANNELS:
            raise BridgeProtocolError(
                f"DATA on channel {frame.channel} carries {len(frame.credits)} credits;"
                f" at most {MAX_CHANNELS}")
        if not _LEAVES.issuperset(map(type, batch)):  # (one C-level pass when flat)
            try:
                for i, value in enumerate(batch):
                    if type(value) in _CONTAINERS:
                        batch[i] = freeze_decoded(value)
            except MessageError as exc:  # nested too deeply to be a message
                raise BridgeProtocolError(f"DATA on channel {frame.channel}: {exc}"
                                          ) from None
    elif type(frame) is Hello and len(frame.channels) > MAX_CHANNELS:
        raise BridgeProtocolError(
            f"HELLO declares {len(frame.channels)} channels; at most {MAX_CHANNELS}")
    return frame
