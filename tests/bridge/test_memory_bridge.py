"""A pipeline split across a bridge over the in-memory transport: same outputs as in
one process, under cuts of the connection at random moments."""

from __future__ import annotations

import random
from typing import Any

import trio

from reflowpy.bridge import Peer, Peers
from reflowpy.bridge.cluster import BridgedNetwork
from reflowpy.bridge.host import Host
from reflowpy.bridge.transport import MemoryTransport
from tests.bridge.helpers import check_exact, pipeline, registry
from tests.scale import long_scale


async def _run(bn: BridgedNetwork, n: int, sources: int = 1,
               on_progress: Any = None) -> list[Any]:
    got: list[Any] = []
    async with trio.open_nursery() as nursery:
        async def feed(src: int) -> None:
            for i in range(n):
                await bn.network.send("in", [src, i])

        for s in range(sources):
            nursery.start_soon(feed, s)
        async for v in bn.network.outputs("out"):
            got.append(v)
            if on_progress is not None:
                on_progress(len(got))
            if len(got) == n * sources:
                break
    return got


async def test_pipeline_across_a_memory_bridge_is_exact() -> None:
    reg = registry()
    async with trio.open_nursery() as nursery:
        host = Host(reg, nursery, local_id="peer", token="t0k")
        transport = MemoryTransport(host.handle, nursery)
        g = pipeline({"b": "remote:peer", "c": "remote:peer"})
        bn = BridgedNetwork(g, reg, transports={"remote:peer": transport},
                            peers=Peers({"peer": Peer("memory:", "t0k")}))
        async with bn:
            got = await _run(bn, 2000, sources=2)
        check_exact(got, 2000, sources=2)
        assert got[0][2:] == ["b", "c"]
        stats = bn.statistics()["bridges"]["remote:peer"]
        assert stats.msgs_out == 4000 and stats.msgs_in == 4000
        nursery.cancel_scope.cancel()


async def test_cuts_at_random_moments_lose_and_duplicate_nothing() -> None:
    reg = registry()
    rng = random.Random(7)
    n = long_scale(3000)
    async with trio.open_nursery() as nursery:
        host = Host(reg, nursery, local_id="peer", token="t0k")
        transport = MemoryTransport(host.handle, nursery)
        g = pipeline({"b": "remote:peer"}, capacity=16)
        bn = BridgedNetwork(g, reg, transports={"remote:peer": transport},
                            peers=Peers({"peer": Peer("memory:", "t0k")}))
        cuts = 0

        def maybe_cut(count: int) -> None:
            nonlocal cuts
            if rng.random() < 0.01 and transport.connections:
                transport.connections[-1].cut()
                cuts += 1

        async with bn:
            got = await _run(bn, n, on_progress=maybe_cut)
        check_exact(got, n)
        s = bn.statistics()["bridges"]["remote:peer"]
        assert cuts >= 20 and s.reconnects >= 20, (cuts, s.reconnects)
        nursery.cancel_scope.cancel()
