"""Bridges over WebSocket to real peer processes on loopback.

Two and three processes give the same outputs as one; a proxy that cuts the TCP
connection at random moments (>= 20 cuts) gives exact delivery; a wrong token, a
replayed handshake and garbage frames are refused and close only that connection.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import trio
import trio_websocket

from reflowpy.bridge import BridgedNetwork, Peer, Peers
from reflowpy.bridge.frames import Hello, Reject, decode_frame, encode_frame
from reflowpy.bridge.session import dial
from reflowpy.bridge.websocket import WebSocketTransport
from reflowpy.errors import BridgeAuthError, BridgeError
from tests.bridge.helpers import check_exact, pipeline, registry
from tests.bridge.procs import CuttingProxy, peer_process
from tests.bridge.test_partitions import feed_and_collect
from tests.scale import long_scale

TOKEN = "s3cret-token"


def peers(**urls: str) -> Peers:
    return Peers({name: Peer(url, TOKEN) for name, url in urls.items()})


async def test_two_processes_over_websocket() -> None:
    n = long_scale(50_000)
    async with peer_process(TOKEN) as (url, _):
        bn = BridgedNetwork(pipeline({"b": "remote:A", "c": "remote:A"}), registry(),
                            peers=peers(A=url))
        async with bn:
            got = await feed_and_collect(bn.network, n, sources=2)
    check_exact(got, n, sources=2)
    s = bn.statistics()["bridges"]["remote:A"]
    assert s.msgs_out == 2 * n and s.msgs_in == 2 * n and s.rtt_ms is not None


async def test_three_processes_over_websocket() -> None:
    n = long_scale(20_000)
    async with peer_process(TOKEN, peer_id="A") as (url_a, _), \
            peer_process(TOKEN, peer_id="B") as (url_b, _):
        bn = BridgedNetwork(pipeline({"b": "remote:A", "c": "remote:B"}), registry(),
                            peers=peers(A=url_a, B=url_b))
        async with bn:
            got = await feed_and_collect(bn.network, n, sources=2)
    check_exact(got, n, sources=2)
    assert got[-1][2:] == ["b", "c"]


async def test_cutting_proxy_exact_delivery() -> None:
    n = long_scale(20_000)
    async with peer_process(TOKEN) as (url, _), trio.open_nursery() as nursery:
        proxy = CuttingProxy(urlsplit(url).port or 0, cuts=long_scale(25), seed=3,
                             min_bytes=1_000, max_bytes=20_000)
        await nursery.start(proxy.serve)
        bn = BridgedNetwork(pipeline({"b": "remote:A"}, capacity=128), registry(),
                            peers=peers(A=f"ws://127.0.0.1:{proxy.port}/bridge"),
                            liveness=2.0)
        async with bn:
            got = await feed_and_collect(bn.network, n)
        check_exact(got, n)
        s = bn.statistics()["bridges"]["remote:A"]
        assert proxy.cuts >= 20 and s.reconnects >= 20, (proxy.cuts, s.reconnects)
        nursery.cancel_scope.cancel()


async def test_wrong_token_replay_and_garbage_are_refused_and_only_that_link_closes(
) -> None:
    n = long_scale(5_000)
    async with peer_process(TOKEN) as (url, proc):
        bn = BridgedNetwork(pipeline({"b": "remote:A"}), registry(), peers=peers(A=url))
        # a healthy session runs through all of it
        async with bn, trio.open_nursery() as nursery:
            results: list[list[object]] = []

            async def healthy() -> None:
                results.append(await feed_and_collect(bn.network, n))

            nursery.start_soon(healthy)

            # 1. wrong token: the HELLO is refused
            bad = BridgedNetwork(pipeline({"b": "remote:A"}), registry(),
                                 peers=Peers({"A": Peer(url, "wrong")}), deadline=5)
            with pytest.raises(BridgeAuthError, match="bad token proof"):
                async with bad:
                    pass

            # 2. replay: record a good dialer HELLO, send it on a new connection
            async with WebSocketTransport(url).connect() as conn:
                sent: list[bytes] = []
                real_send = conn.send

                async def recording(frame: bytes) -> None:
                    sent.append(frame)
                    await real_send(frame)

                conn.send = recording  # type: ignore[method-assign]
                with pytest.raises(BridgeAuthError, match="no graph to host"):
                    await dial(conn, local_id="spy", token=TOKEN, session="s-replay",
                               graph=None)
            async with trio_websocket.open_websocket_url(url) as ws:
                first = decode_frame(await ws.get_message())
                assert isinstance(first, Hello)
                await ws.send_message(sent[0])  # the recorded dialer HELLO
                reply = decode_frame(await ws.get_message())
                assert isinstance(reply, Reject) and reply.code == "auth", reply
                assert "replayed" in reply.reason

            # 3. garbage instead of a HELLO, and garbage after it
            for garbage in (b"\x00\xff\xfe garbage", b"\x07", encode_frame(
                    Reject("x", "y"))[:1] + b"\xc1" * 10, b""):
                async with trio_websocket.open_websocket_url(url) as ws:
                    await ws.get_message()
                    await ws.send_message(garbage)
                    reply = decode_frame(await ws.get_message())
                    assert isinstance(reply, Reject) and reply.code == "protocol"
                    with pytest.raises(trio_websocket.ConnectionClosed):
                        await ws.get_message()
        assert proc.returncode is None  # the peer process is still serving
        check_exact(results[0], n)
        assert bn.statistics()["bridges"]["remote:A"].reconnects == 0


async def test_wss_with_the_peers_ca(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True,
                   capture_output=True)
    async with peer_process(TOKEN, scheme="wss",
                            extra=["--certfile", str(cert), "--keyfile", str(key)]) as (url, _):
        assert url.startswith("wss://")
        bn = BridgedNetwork(pipeline({"b": "remote:A"}), registry(),
                            peers=Peers({"A": Peer(url, TOKEN, ca=str(cert))}))
        async with bn:
            got = await feed_and_collect(bn.network, 2000)
        check_exact(got, 2000)
        untrusted = BridgedNetwork(pipeline({"b": "remote:A"}), registry(),
                                   peers=Peers({"A": Peer(url, TOKEN)}), deadline=2)
        with pytest.raises(BridgeError, match="cannot reach"):
            async with untrusted:
                pass
