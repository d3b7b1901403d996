"""``reflowpy serve`` hosts placed nodes on its ``/bridge`` endpoint and, with
``--bridge-listen``, on a port of its own (a real server process): the pipeline's
outputs are exact, a wrong token and a browser are refused, a session moves between
the two endpoints across cuts without loss or duplicates, and an exposed bridge port
without a token is refused at start."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import pytest
import trio

import reflowpy as rf
from reflowpy.bridge import BridgedNetwork, Peer, Peers
from reflowpy.bridge.transport import Connection
from reflowpy.bridge.websocket import WebSocketTransport
from reflowpy.errors import BridgeAuthError
from tests.bridge.helpers import check_exact
from tests.bridge.procs import CuttingProxy
from tests.bridge.test_partitions import feed_and_collect
from tests.scale import long_scale


@asynccontextmanager
async def serve_process(tmp: str, token: str = "", extra: tuple[str, ...] = ()
                        ) -> AsyncIterator[str]:
    """``reflowpy serve`` in a child process; yields its ``/bridge`` URL, and with
    ``--bridge-listen`` in ``extra`` the bridge port's URL after a space."""
    cmd = [sys.executable, "-m", "reflowpy.cli", "serve", "--port", "0", "--data-dir", tmp,
           *extra]
    env = {k: v for k, v in os.environ.items() if k != "REFLOWPY_TOKEN"}
    if token:
        env["REFLOWPY_TOKEN"] = token
    async with trio.open_nursery() as nursery:
        proc: trio.Process = await nursery.start(lambda task_status: trio.run_process(
            cmd, env=env, stdout=subprocess.PIPE, check=False, task_status=task_status))
        assert proc.stdout is not None
        out = b""
        lines = 2 if "--bridge-listen" in extra else 1
        with trio.fail_after(60):
            while out.count(b"listening on ") < lines or not out.endswith(b"\n"):
                chunk = await proc.stdout.receive_some(4096)
                assert chunk, f"serve exited: {out!r}"
                out += chunk
        urls = [line.split(b"listening on ", 1)[1].split()[0].decode()
                for line in out.splitlines() if b"listening on " in line]
        try:
            yield " ".join([urls[0].replace("http://", "ws://") + "/bridge", *urls[1:]])
        finally:
            proc.terminate()
            nursery.cancel_scope.cancel()


def graph() -> rf.Graph:
    g = rf.Graph("served")
    g.add_node("a", "core/Repeat")
    g.add_node("b", "core/Repeat", {"remote": "srv"})
    g.add_node("d", "core/Repeat")
    g.add_edge("a", "out", "b", "in")
    g.add_edge("b", "out", "d", "in")
    g.add_inport("in", "a", "in")
    g.add_outport("out", "d", "out")
    return g


@pytest.mark.parametrize("token", ["", "s3cret"])
async def test_serve_hosts_placed_nodes_on_bridge(tmp_path: object, token: str) -> None:
    # With a token the server's guard lets /bridge through unauthenticated (as FBP's
    # paths): the bridge proves the token by its own HELLO challenge, never a header.
    async with serve_process(str(tmp_path), token) as url:
        bn = BridgedNetwork(graph(), peers=Peers({"srv": Peer(url, token)}))
        async with bn:
            got = await feed_and_collect(bn.network, 5000)
        check_exact(got, 5000)
        wrong = BridgedNetwork(graph(), peers=Peers({"srv": Peer(url, "nope")}), deadline=5)
        with pytest.raises(BridgeAuthError, match="bad token proof"):
            async with wrong:
                pass


async def test_bridge_listen_serves_the_bridge_on_its_own_port(tmp_path: object) -> None:
    async with serve_process(str(tmp_path), "s3cret",
                             ("--bridge-listen", "127.0.0.1:0")) as urls:
        _, port_url = urls.split()
        assert port_url.startswith("ws://127.0.0.1:") and port_url.endswith("/bridge")
        bn = BridgedNetwork(graph(), peers=Peers({"srv": Peer(port_url, "s3cret")}))
        async with bn:
            got = await feed_and_collect(bn.network, 5000)
        check_exact(got, 5000)
        wrong = BridgedNetwork(graph(), peers=Peers({"srv": Peer(port_url, "nope")}),
                               deadline=5)
        with pytest.raises(BridgeAuthError, match="bad token proof"):
            async with wrong:
                pass
        # a browser page (it always sends Origin on a WebSocket handshake) is refused,
        # before any bridge frame, whatever it knows
        url = urlsplit(port_url)
        assert url.hostname is not None and url.port is not None
        stream = await trio.open_tcp_stream(url.hostname, url.port)
        await stream.send_all(
            b"GET /bridge HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\nOrigin: http://evil.example\r\n\r\n")
        answer = b""
        with trio.fail_after(30):
            while b"\r\n\r\n" not in answer:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 403"), answer
        await stream.aclose()
        # and the port still serves peers after all that
        again = BridgedNetwork(graph(), peers=Peers({"srv": Peer(port_url, "s3cret")}))
        async with again:
            check_exact(await feed_and_collect(again.network, 500), 500)


class _Alternating:
    """Dials its addresses in turn: every reconnect goes to the other endpoint."""

    def __init__(self, addresses: list[str]) -> None:
        self.transports = [WebSocketTransport(a) for a in addresses]
        self.address = " | ".join(addresses)
        self.dials = 0

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[Connection]:
        transport = self.transports[self.dials % len(self.transports)]
        self.dials += 1
        async with transport.connect() as conn:
            yield conn


async def test_a_session_moves_between_bridge_and_the_bridge_port_across_cuts(
        tmp_path: object) -> None:
    """Both endpoints front the server's one Host: a link cut on one resumes the same
    session on the other, with no loss and no duplicates (completion acks)."""
    n = long_scale(20_000)
    async with serve_process(str(tmp_path), "s3cret",
                             ("--bridge-listen", "127.0.0.1:0")) as urls, \
            trio.open_nursery() as nursery:
        proxies = []
        for url in urls.split():
            port = urlsplit(url).port
            assert port is not None
            proxy = CuttingProxy(port, cuts=15, seed=len(proxies) + 3,
                                 min_bytes=1_000, max_bytes=10_000)
            await nursery.start(proxy.serve)
            proxies.append(proxy)
        transport = _Alternating([f"ws://127.0.0.1:{p.port}/bridge" for p in proxies])
        bn = BridgedNetwork(graph(), peers=Peers({"srv": Peer(urls.split()[1], "s3cret")}),
                            transports={"remote:srv": transport},
                            ack_on={"remote:srv": "completion"}, liveness=2.0)
        with trio.fail_after(240):
            async with bn:
                got = await feed_and_collect(bn.network, n)
        check_exact(got, n)
        s = bn.statistics()["bridges"]["remote:srv"]
        cuts = sum(p.cuts for p in proxies)
        assert cuts >= 20 and s.reconnects >= 20, (cuts, s.reconnects)
        assert all(p.connections >= 10 for p in proxies), [p.connections for p in proxies]
        nursery.cancel_scope.cancel()


async def test_an_exposed_bridge_port_needs_a_token(tmp_path: object) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REFLOWPY_TOKEN"}
    with trio.fail_after(60):
        res = await trio.run_process(
            [sys.executable, "-m", "reflowpy.cli", "serve", "--port", "0", "--data-dir",
             str(tmp_path), "--bridge-listen", "0.0.0.0:0"], env=env, capture_stdout=True,
            capture_stderr=True, check=False)
    assert res.returncode == 2
    assert b"refusing to serve the bridge on '0.0.0.0' without a token" in res.stderr
    assert b"listening on" not in res.stdout
