"""Pipelines split over real worker processes (partitions, Unix sockets).

Two processes (this one and one worker) and three (two workers, the edge between them
relayed here; tests/bridge/test_direct.py connects them directly): the same outputs as
in one process, counted and ordered per source.
"""

from __future__ import annotations

from typing import Any

import trio

import reflowpy as rf
from reflowpy.bridge import BridgedNetwork
from tests.bridge.helpers import check_exact, pipeline, registry
from tests.scale import long_scale

PLUGIN = ["tests.bridge.components:register"]


async def feed_and_collect(net: rf.Network, n: int, sources: int = 1,
                           on_value: Any = None) -> list[Any]:
    got: list[Any] = []
    async with trio.open_nursery() as nursery:
        async def feed(src: int) -> None:
            for i in range(n):
                await net.send("in", [src, i])

        for s in range(sources):
            nursery.start_soon(feed, s)
        async for v in net.outputs("out"):
            got.append(v)
            if on_value is not None:
                await on_value(len(got))
            if len(got) == n * sources:
                break
    return got


async def in_one_process(n: int, sources: int) -> list[Any]:
    async with rf.Network(pipeline({}), registry()) as net:
        return await feed_and_collect(net, n, sources)


async def test_two_processes_same_outputs_as_one() -> None:
    n = long_scale(50_000)
    bn = BridgedNetwork(pipeline({"b": "partition:p1", "c": "partition:p1"}), registry(),
                        worker_plugins=PLUGIN)
    async with bn:
        got = await feed_and_collect(bn.network, n, sources=2)
    check_exact(got, n, sources=2)
    assert sorted(map(tuple, got)) == sorted(map(tuple, await in_one_process(n, 2)))
    s = bn.statistics()["bridges"]["partition:p1"]
    assert s.msgs_out == 2 * n and s.msgs_in == 2 * n and s.duplicates == 0


async def test_three_processes_with_a_relayed_edge() -> None:
    n = long_scale(15_000)
    bn = BridgedNetwork(pipeline({"b": "partition:p1", "c": "partition:p2"}), registry(),
                        worker_plugins=PLUGIN, direct=False)
    async with bn:
        got = await feed_and_collect(bn.network, n, sources=2)
    check_exact(got, n, sources=2)
    assert got[0][2:] == ["b", "c"]
    stats = bn.statistics()
    assert stats["bridges"]["partition:p1"].msgs_in == 2 * n
    assert stats["bridges"]["partition:p2"].msgs_in == 2 * n
