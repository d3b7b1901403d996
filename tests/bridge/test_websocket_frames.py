"""The bridge's own WebSocket framing, checked against wsproto as the reference.

The data path after the HTTP upgrade is ours (reflowpy/bridge/websocket.py), so it is
held to the RFC by the library it replaced: what we send, wsproto reads back exactly;
what wsproto sends (fragmented, with pings between the fragments, cut into chunks of
any size), we read back exactly; random bytes never make the reader raise anything
but a refusal, nor buffer past its limit; and over real sockets an oversized, text or
wrongly masked message closes only that connection with the matching close code.
"""

from __future__ import annotations

import os
import struct

import pytest
import trio
import trio_websocket
import wsproto
import wsproto.events as wse
from hypothesis import given, settings
from hypothesis import strategies as st

from reflowpy.bridge.transport import LinkClosed
from reflowpy.bridge.websocket import (
    WebSocketTransport,
    _frame,
    _FrameReader,
    _Refused,
    serve_websocket,
)
from reflowpy.errors import BridgeProtocolError
from tests.scale import long_scale

STATS = {"ours_to_wsproto": 0, "wsproto_to_ours": 0, "garbage": 0, "refused": 0}


def _pair() -> tuple[wsproto.WSConnection, wsproto.WSConnection]:
    client = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    server = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
    server.receive_data(client.send(wse.Request(host="x", target="/bridge")))
    assert isinstance(next(server.events()), wse.Request)
    client.receive_data(server.send(wse.AcceptConnection()))
    assert isinstance(next(client.events()), wse.AcceptConnection)
    return client, server


payloads = st.lists(st.binary(max_size=300) | st.sampled_from(
    [b"", b"x" * 125, b"y" * 126, b"z" * 65535, b"w" * 65536, os.urandom(70_000)]),
    min_size=1, max_size=8)


@settings(max_examples=long_scale(60), deadline=None)
@given(payloads, st.booleans())
def test_what_we_send_wsproto_reads(messages: list[bytes], client: bool) -> None:
    STATS["ours_to_wsproto"] += 1
    ws_client, ws_server = _pair()
    reader = ws_server if client else ws_client  # the peer of the side we play
    reader.receive_data(b"".join(_frame(0x2, m, client) for m in messages))
    got, partial = [], b""
    for event in reader.events():
        assert isinstance(event, wse.BytesMessage), event
        partial += event.data
        if event.message_finished:
            got.append(partial)
            partial = b""
    assert got == messages


@settings(max_examples=long_scale(80), deadline=None)
@given(payloads, st.data())
def test_what_wsproto_sends_we_read_in_any_chunking(messages: list[bytes],
                                                    data: st.DataObject) -> None:
    STATS["wsproto_to_ours"] += 1
    ws_client, _ = _pair()
    wire = b""
    for m in messages:  # fragmented at random points, pings between the fragments
        cuts = sorted(data.draw(st.lists(st.integers(0, len(m)), max_size=3)))
        pieces = [m[a:b] for a, b in zip([0, *cuts], [*cuts, len(m)], strict=True)]
        for i, piece in enumerate(pieces):
            wire += ws_client.send(wse.Message(data=piece,
                                               message_finished=i == len(pieces) - 1))
            if data.draw(st.booleans()):
                wire += ws_client.send(wse.Ping(payload=b"p"))
    reader = _FrameReader(masked=True, limit=1 << 20)
    got, pings = [], 0
    pos = 0
    while pos < len(wire):
        step = data.draw(st.integers(1, max(1, len(wire) // 3)))
        reader.feed(wire[pos:pos + step])
        pos += step
        while (msg := reader.next()) is not None:
            if msg[0] == 0x9:
                pings += 1
            else:
                assert msg[0] == 0x2
                got.append(msg[1])
    assert got == messages


@settings(max_examples=long_scale(300), deadline=None)
@given(st.binary(max_size=400), st.booleans(), st.integers(1, 64))
def test_garbage_is_refused_or_waited_for_never_crashes(garbage: bytes, masked: bool,
                                                        chunk: int) -> None:
    STATS["garbage"] += 1
    limit = 256
    reader = _FrameReader(masked=masked, limit=limit)
    try:
        for i in range(0, len(garbage), chunk):
            reader.feed(garbage[i:i + chunk])
            while (msg := reader.next()) is not None:
                assert msg[0] in (0x1, 0x2, 0x8, 0x9, 0xA)
                assert len(msg[1]) <= limit
            # never more buffered than a frame within the limit, its header, one chunk
            assert len(reader._buf) - reader._pos <= limit + 14 + chunk
    except _Refused as exc:
        STATS["refused"] += 1
        assert exc.code in (1002, 1009)


def test_an_oversized_message_is_refused_from_its_header() -> None:
    reader = _FrameReader(masked=True, limit=1000)
    # a header announcing 2**40 bytes: refused before any payload arrives
    reader.feed(struct.pack(">BBQ", 0x82, 0x80 | 127, 1 << 40) + b"k3y!")
    with pytest.raises(_Refused) as info:
        reader.next()
    assert info.value.code == 1009 and "exceeds the limit" in str(info.value)
    # fragments that add up past the limit: refused at the fragment that passes it
    reader = _FrameReader(masked=False, limit=1000)
    reader.feed(bytes((0x02, 126)) + struct.pack(">H", 600) + b"a" * 600)  # no FIN
    assert reader.next() is None
    reader.feed(bytes((0x80, 126)) + struct.pack(">H", 600))  # FIN continuation
    with pytest.raises(_Refused, match="1200 bytes exceeds"):
        reader.next()


def test_wrong_masking_reserved_bits_and_bad_control_frames_are_refused() -> None:
    for frame, masked, why in (
            (b"\x82\x01x", True, "must be masked"),          # unmasked from a client
            (b"\x82\x81abcdx", False, "must be masked"),     # masked from a server
            (b"\xc2\x01x", False, "reserved bits"),
            (b"\x83\x01x", False, "unknown data opcode"),
            (b"\x8b\x00", False, "unknown control opcode"),
            (b"\x09\x00", False, "control frames must be whole"),
            (b"\x80\x01x", False, "continuation frame without"),
    ):
        reader = _FrameReader(masked=masked, limit=100)
        reader.feed(frame)
        with pytest.raises(_Refused, match=why):
            reader.next()


async def test_over_real_sockets_limits_close_only_that_connection() -> None:
    results: list[BaseException | bytes] = []

    async def echo(conn: object) -> None:
        try:
            while True:
                frame = await conn.receive()  # type: ignore[attr-defined]
                results.append(frame)
                await conn.send(frame)  # type: ignore[attr-defined]
        except (LinkClosed, BridgeProtocolError) as exc:
            results.append(exc)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                lambda task_status: serve_websocket(echo, "127.0.0.1", 0, max_frame=1000,
                                                    task_status=task_status))
            url = f"ws://127.0.0.1:{server.port}/bridge"
            # a healthy connection, kept open across the hostile ones
            async with WebSocketTransport(url).connect() as healthy:
                await healthy.send_frames([b"a", b"b" * 1001])
                assert await healthy.receive() == b"a"
                assert await healthy.receive() == b"b" * 1001  # the limit + flag byte
                # too big: the server refuses it with 1009 and the link closes
                async with WebSocketTransport(url).connect() as big:
                    await big.send(b"c" * 5000)
                    with pytest.raises(LinkClosed, match="1009"):
                        await big.receive()
                # text, from a third-party client (trio-websocket): 1003
                async with trio_websocket.open_websocket_url(url) as ws:
                    await ws.send_message("hello")
                    with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                        await ws.get_message()
                    assert closed.value.reason.code == 1003
                # the healthy one still works
                await healthy.send(b"still here")
                assert await healthy.receive() == b"still here"
            nursery.cancel_scope.cancel()
    errors = [r for r in results if isinstance(r, BaseException)]
    assert any("exceeds the limit of 1000" in str(e) for e in errors), errors
    assert any("text message" in str(e) for e in errors), errors


def test_zz_report() -> None:
    print(f"\nwebsocket framing: {STATS}")
