"""``reflowpy serve`` hosts placed nodes on its ``/bridge`` endpoint (a real server
process): the pipeline's outputs are exact, and a wrong token is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

import reflowpy as rf
from reflowpy.bridge import BridgedNetwork, Peer, Peers
from reflowpy.errors import BridgeAuthError
from tests.bridge.helpers import check_exact
from tests.bridge.test_partitions import feed_and_collect


@asynccontextmanager
async def serve_process(tmp: str) -> AsyncIterator[str]:
    cmd = [sys.executable, "-m", "reflowpy.cli", "serve", "--port", "0", "--data-dir", tmp]
    env = {k: v for k, v in os.environ.items() if k != "REFLOWPY_TOKEN"}
    async with trio.open_nursery() as nursery:
        proc: trio.Process = await nursery.start(lambda task_status: trio.run_process(
            cmd, env=env, stdout=subprocess.PIPE, check=False, task_status=task_status))
        assert proc.stdout is not None
        out = b""
        with trio.fail_after(60):
            while b"listening on " not in out or not out.endswith(b"\n"):
                chunk = await proc.stdout.receive_some(4096)
                assert chunk, f"serve exited: {out!r}"
                out += chunk
        url = out.split(b"listening on ", 1)[1].split()[0].decode()
        try:
            yield url.replace("http://", "ws://") + "/bridge"
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


async def test_serve_hosts_placed_nodes_on_bridge(tmp_path: object) -> None:
    async with serve_process(str(tmp_path)) as url:
        bn = BridgedNetwork(graph(), peers=Peers({"srv": Peer(url, "")}))
        async with bn:
            got = await feed_and_collect(bn.network, 5000)
        check_exact(got, 5000)
        wrong = BridgedNetwork(graph(), peers=Peers({"srv": Peer(url, "nope")}), deadline=5)
        with pytest.raises(BridgeAuthError, match="bad token proof"):
            async with wrong:
                pass
