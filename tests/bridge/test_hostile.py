"""Hostile input: fuzzed frames, garbage on a live link, a peer gone past its deadline.

* ``decode_frame`` on mutated corpus frames (``tests/bridge/corpus/``) and random bytes
  raises only :class:`~reflowpy.BridgeProtocolError` (never another exception, never
  a huge allocation: sizes are checked before decompression);
* garbage sent after a valid handshake is answered with REJECT and closes only that
  connection; a second session on the same host keeps delivering;
* a peer that stays away past the deadline: the messages it never confirmed and the
  ones still queued for it become dead letters with the reason ``peer lost``, the
  node it hosted fails (``ActorFailed``), and with ``on_failure="stop"`` the network
  stops with that error.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import reflowpy as rf
from reflowpy.bridge import BridgedNetwork, Host, Peer, Peers
from reflowpy.bridge.frames import MAX_FRAME, Reject, decode_frame
from reflowpy.bridge.session import dial
from reflowpy.bridge.transport import LinkClosed, MemoryConnection, MemoryTransport
from reflowpy.errors import ActorError, BridgeProtocolError
from tests.bridge.helpers import check_exact, pipeline, registry
from tests.bridge.test_partitions import feed_and_collect
from tests.scale import long_scale

CORPUS = [p.read_bytes() for p in sorted((Path(__file__).parent / "corpus").glob("*.bin"))]
FUZZ = {"inputs": 0, "refused": 0, "accepted": 0}


def test_corpus_frames_decode() -> None:
    assert len(CORPUS) >= 8
    for raw in CORPUS:
        decode_frame(raw)


@settings(max_examples=long_scale(800))
@given(st.sampled_from(CORPUS), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                         max_size=8),
       st.integers(0, 3), st.binary(max_size=64))
def test_mutated_frames_raise_only_protocol_errors(seed: bytes, flips: list[tuple[int, int]],
                                                   cut: int, tail: bytes) -> None:
    data = bytearray(seed)
    for pos, byte in flips:
        if data:
            data[pos % len(data)] = byte
    if cut:
        data = data[: len(data) * cut // 4]
    data += tail
    FUZZ["inputs"] += 1
    try:
        decode_frame(bytes(data), max_size=1 << 20)
        FUZZ["accepted"] += 1
    except BridgeProtocolError:
        FUZZ["refused"] += 1


@settings(max_examples=long_scale(300))
@given(st.binary(max_size=256))
def test_random_bytes_raise_only_protocol_errors(data: bytes) -> None:
    FUZZ["inputs"] += 1
    with contextlib.suppress(BridgeProtocolError):
        decode_frame(data)


def test_credits_riding_in_data_are_checked() -> None:
    """DATA may carry CREDIT frames (protocol 2): at most one per channel a link may
    declare, each for a channel the receiver sends on, else a protocol error."""
    from reflowpy.bridge.frames import MAX_CHANNELS, ChannelSpec, Credit, Data, encode_frame
    from reflowpy.bridge.session import Session

    flood = Data(1, 1, [0], [Credit(i, 0, 1) for i in range(MAX_CHANNELS + 1)])
    with pytest.raises(BridgeProtocolError, match=f"credits; at most {MAX_CHANNELS}"):
        decode_frame(encode_frame(flood))
    session = Session("a")
    session.add_in(ChannelSpec(1, "b", "x.out", "y.in", 8))
    stray = decode_frame(encode_frame(Data(1, 1, [0], [Credit(9, 0, 1)])))
    with pytest.raises(BridgeProtocolError, match="CREDIT for unknown channel 9"):
        session._dispatch(stray)
    assert not session.inc[1].buffer  # refused before the batch was taken


@pytest.mark.parametrize("depth", [400, 600, 2000, 200_000])
def test_frames_nested_past_the_recursion_limit_are_protocol_errors(depth: int) -> None:
    """A forged DATA frame whose message nests deeply raised RecursionError out of
    decode_frame (msgspec past ~1000 levels, freeze past ~500), which no reader catches;
    the plain codec (journals, worker frames) the same as CodecError."""
    from reflowpy.bridge.frames import Data, encode_frame
    from reflowpy.errors import CodecError
    from reflowpy.network import codec

    marker = "\x00deep\x00"
    frame = encode_frame(Data(1, 1, [marker]))
    packed = b"\xa6" + marker.encode()
    assert frame.count(packed) == 1 and frame[0] == 0  # plain, so the bytes can be spliced
    deep = b"\x91" * depth + b"\x90"
    forged = frame.replace(packed, deep)
    if depth < 450:
        [value] = decode_frame(forged).batch  # shallow enough to be a message
        assert rf.freeze(value) == value
        return
    with pytest.raises(BridgeProtocolError, match="nested"):
        decode_frame(forged)
    with pytest.raises(CodecError, match="nested"):
        codec.decode(b"\x00" + deep)
    value: Any = []
    for _ in range(depth):
        value = [value]
    if depth > 1000:  # msgspec encodes what freeze refuses, up to its own limit
        with pytest.raises(CodecError, match="nested"):
            codec.encode(value)


def test_zstd_bomb_is_refused_before_allocation() -> None:
    import zstandard

    bomb = b"\x01" + zstandard.ZstdCompressor().compress(b"\x00" * (MAX_FRAME + 10))
    with pytest.raises(BridgeProtocolError, match="larger than|exceeds"):
        decode_frame(bomb)


@contextlib.asynccontextmanager
async def _host() -> AsyncIterator[tuple[Host, MemoryTransport]]:
    async with trio.open_nursery() as nursery:
        host = Host(registry(), nursery, local_id="peer", token="tok", deadline=0.5)
        yield host, MemoryTransport(host.handle, nursery)
        nursery.cancel_scope.cancel()


async def test_garbage_after_the_handshake_closes_only_that_link() -> None:
    async with _host() as (_, transport):
        bn = BridgedNetwork(pipeline({"b": "remote:peer"}), registry(),
                            transports={"remote:peer": transport},
                            peers=Peers({"peer": Peer("memory:", "tok")}))
        async with bn, trio.open_nursery() as nursery:
            got: list[list[Any]] = []

            async def healthy() -> None:
                got.append(await feed_and_collect(bn.network, 3000))

            nursery.start_soon(healthy)
            for i, garbage in enumerate([b"\x00\x93\xa4DATA", b"\xff" * 40, CORPUS[0][:9],
                                         b"\x00" + b"\x92\xa6CREDIT\x01"]):
                async with transport.connect() as conn:
                    g = pipeline({"b": "remote:peer"}).to_dict("reflow")
                    await dial(conn, local_id="evil", token="tok", session=f"evil{i}",
                               graph={"graph": g, "location": "remote:peer"})
                    await conn.send(garbage)
                    rejects = []
                    with pytest.raises(LinkClosed):
                        while True:
                            frame = decode_frame(await conn.receive())
                            if isinstance(frame, Reject):
                                rejects.append(frame.code)
                    assert rejects == ["protocol"], rejects
                    FUZZ["refused"] += 1
        check_exact(got[0], 3000)
        assert bn.statistics()["bridges"]["remote:peer"].reconnects == 0


class _Gone:
    """A transport whose peer can vanish (every connect fails once ``gone``) or go
    deaf (once ``deaf``, nothing it sends reaches us: no acks, no credit)."""

    address = "memory:gone"

    def __init__(self, inner: MemoryTransport) -> None:
        self.inner = inner
        self.gone = False
        self.deaf = False

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[_DeafEnd]:
        if self.gone:
            raise OSError("connection refused (peer gone)")
        async with self.inner.connect() as conn:
            yield _DeafEnd(conn, self)


class _DeafEnd:
    def __init__(self, conn: MemoryConnection, transport: _Gone) -> None:
        self.conn = conn
        self.transport = transport
        self.description = conn.description

    async def send(self, frame: bytes) -> None:
        await self.conn.send(frame)

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        await self.conn.send_frames(frames)

    async def receive(self) -> bytes:
        while True:
            frame = await self.conn.receive()
            if not self.transport.deaf:
                return frame

    async def aclose(self) -> None:
        await self.conn.aclose()


@pytest.mark.parametrize("unacked_only", [False, True], ids=["send-after", "unacked-only"])
@pytest.mark.parametrize("on_failure", ["dead_letter", "stop"])
async def test_peer_lost_past_deadline_dead_letters_and_fails_per_policy(
        on_failure: str, unacked_only: bool) -> None:
    """``unacked-only``: the peer goes deaf after its first credit (none of the sends is
    ever acked) and nothing is sent after the loss, so every message sits in the resend
    buffer; they must become dead letters the moment the session is lost (they once
    waited forever, neither delivered nor reported)."""
    async with _host() as (_, inner):
        transport = _Gone(inner)
        g = pipeline({"b": "remote:peer"})
        g.nodes["b"].metadata["policy"] = {"on_failure": on_failure}
        bn = BridgedNetwork(g, registry(), transports={"remote:peer": transport},
                            peers=Peers({"peer": Peer("memory:", "tok")}), deadline=0.5,
                            liveness=0.3, ping_interval=0.1)
        sent = 0

        def ledger() -> int:
            out = bn.network.statistics()["outputs"]["out"].total
            return out + len(bn.network.dead_letters())

        with pytest.raises(ActorError) if on_failure == "stop" else contextlib.nullcontext():
            async with bn:
                await trio.testing.wait_all_tasks_blocked()  # the first credit is in
                transport.deaf = unacked_only
                for i in range(200):
                    await bn.network.send("in", [0, i])
                    sent += 1
                session = bn.session("remote:peer")
                transport.gone = True
                for c in inner.connections:
                    c.cut()
                while session.state != "lost":
                    await session.changed()
                with contextlib.suppress(rf.NetworkStopped):
                    for i in range(200, 200 if unacked_only else 300):
                        await bn.network.send("in", [0, i])
                        sent += 1
                with trio.fail_after(30):
                    while ledger() < sent:  # every accepted message: delivered or lettered
                        await bn.binding.progress()
        letters = bn.network.dead_letters()
        lost = [d for d in letters if "peer lost" in d.error]
        assert lost and bn.binding.lost_letters == len(lost)
        # with on_failure="stop" the network stops: what its queues held is dead-lettered
        # with that reason
        assert all("stop" in d.error for d in letters if d not in lost), letters
        assert len(lost) == len(letters) or on_failure == "stop"
        # nothing lost: every seq came out or is a dead letter. A message the peer had
        # processed but not yet confirmed is both (it was unconfirmed when the peer was
        # lost): at-least-once, and the overlap is what a re-send would duplicate.
        delivered = {v[1] for v in bn.network.outputs("out").drain()}
        lettered = {d.value[1] for d in letters}
        assert delivered | lettered == set(range(sent))
        assert ledger() >= sent
        errors = [e for e in bn.network.errors if e.node == "b"]
        assert errors and "peer lost" in str(errors[0])


def test_zz_fuzz_counts(capsys: pytest.CaptureFixture[str]) -> None:
    """How many hostile inputs ran (for the report); each one was refused cleanly."""
    with capsys.disabled():
        print(f"\nhostile inputs: {FUZZ}")
    if FUZZ["inputs"]:
        assert FUZZ["refused"] > 0


async def test_a_direct_link_attaches_only_with_the_announced_channels() -> None:
    """A HELLO naming a direct link's session attaches to the deployment that announced
    it only with exactly the channels announced (same ids, target and sender); a part
    whose direct links are malformed is refused. Either refusal closes that link only."""
    from reflowpy.bridge.frames import ChannelSpec
    from reflowpy.errors import BridgeAuthError

    part = rf.Graph("part")
    part.add_node("c", "core/Repeat")
    spec = ChannelSpec(7, "partition:p1", "b.out", "c.in", 16, 1, "completion")
    announced = {"graph": part.to_dict("reflow"), "location": "partition:p2",
                 "direct_in": [{"session": "d1", "location": "partition:p1",
                                "channels": [[7, "partition:p1", "b.out", "c.in", 16, 1,
                                              "completion"]]}]}
    async with _host() as (host, transport):
        async def hello(session: str, channels: list[ChannelSpec], graph: Any) -> None:
            async with transport.connect() as conn:
                await dial(conn, local_id="x", token="tok", session=session,
                           channels=channels, graph=graph, incarnation="i1")

        for bad in ("nope", [{"session": 1}], [{"session": "d", "location": "p",
                                               "channels": [["x"]]}]):
            with pytest.raises(BridgeAuthError, match="refused"):
                await hello("s-bad", [], {**announced, "direct_in": bad})
        with trio.fail_after(5):
            await hello("s1", [], announced)
        assert "d1" in host.attached
        wrong = [ChannelSpec(8, "partition:p1", "b.out", "c.in", 16),  # another id
                 ChannelSpec(7, "partition:p1", "b.out", "c.other", 16),  # another port
                 ChannelSpec(7, "partition:p3", "b.out", "c.in", 16)]  # another sender
        for channels in ([], [wrong[0]], [wrong[1]], [wrong[2]], [spec, wrong[0]]):
            with pytest.raises(BridgeAuthError, match="not the ones announced"):
                await hello("d1", channels, {"attach": True})
        with trio.fail_after(5):
            await hello("d1", [spec], {"attach": True})  # the right ones: attached
        assert host.attached["d1"].incarnation == "i1"
