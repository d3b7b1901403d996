"""What watching costs: the monitor samples only while a page watches, a packet tap
observes the network only in bounded bursts, and the server records its executions
into its trace store by itself.

Time is trio's MockClock where the test waits for ticks; a real server on a loopback
port for the HTTP parts."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
import pytest
import trio
import trio.testing

import reflowpy as rf
from reflowpy.observe.live import Monitor, PacketTap
from tests.observe.conftest import feed, start_doubler
from tests.server.conftest import Served


@rf.actor(inports=["in"], outports=["out"])
def passthrough(ctx: rf.ActorContext) -> dict[str, Any]:
    return {"out": ctx.inputs["in"]}


def _chain() -> rf.Network:
    reg = rf.Registry()
    reg.register("t/Pass", passthrough)
    g = rf.Graph("chain")
    for n in ("a", "b", "c"):
        g.add_node(n, "t/Pass")
    g.add_edge("a", "out", "b", "in")
    g.add_edge("b", "out", "c", "in")
    g.add_inport("in", "a", "in")
    g.add_outport("out", "c", "out")
    return rf.Network(g, reg, output_capacity=100_000)


def test_monitor_samples_only_while_watched() -> None:
    clock = trio.testing.MockClock(autojump_threshold=0)

    async def main() -> None:
        net = _chain()
        mon = Monitor(lambda: {"n": net}, interval=0.25)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(mon.run)
            await trio.sleep(10)
            assert mon.version == 0  # nobody watches: not one sample in 10 s
            with mon.watching():
                await trio.sleep(1.01)
                assert 4 <= mon.version <= 5
                with mon.watching():  # two pages
                    await trio.sleep(1)
                assert mon.watchers == 1
                await trio.sleep(1)
                watched = mon.version
                assert watched >= 12
            await trio.sleep(10)
            assert mon.version <= watched + 1  # at most the tick already under way
            nursery.cancel_scope.cancel()

    trio.run(main, clock=clock)


async def test_packet_tap_numbers_packets_and_observes_only_in_bursts() -> None:
    net = _chain()
    async with net:
        tap = PacketTap(net, node="b", keep=30, burst=40)
        assert tap.poll() == []  # opens the first burst
        assert net.bus.active
        for i in range(10):
            await net.send("in", i)
        await net.idle()
        seen = tap.poll()
        # into b (a -> b) and out of b (b -> c), each value once each way, FIFO
        for hop in (("a", "b"), ("b", "c")):
            assert [p["value"] for p in seen if (p["from"], p["to"]) == hop] == [
                repr(i) for i in range(10)]
        assert len(seen) == 20
        assert [p["seq"] for p in seen] == list(range(1, 21))
        # a burst is bounded: 40 message events, then the bus is free again by itself
        for i in range(500):
            await net.send("in", 100 + i)
        await net.idle()
        assert not net.bus.active, "the tap kept the network observed past its burst"
        more = tap.poll()
        assert 0 < len(more) <= 40
        assert [p["seq"] for p in tap.packets] == list(range(tap.seq - 29, tap.seq + 1))
        assert net.bus.active  # the next burst
        tap.close()
        assert not net.bus.active
        edge = PacketTap(net, edge=("b", "out", "c", "in"), burst=40)
        edge.poll()
        for i in range(5):
            await net.send("in", 1000 + i)
        await net.idle()
        got = edge.poll()
        assert [(p["from"], p["to"], p["value"]) for p in got] == [
            ("b", "c", repr(1000 + i)) for i in range(5)]
        edge.close()
        assert len(net.outputs("out").drain()) == 515
    with pytest.raises(ValueError, match="one node or one edge"):
        PacketTap(net)


async def _sse_events(client: httpx.AsyncClient, url: str, want: str, until: Any
                      ) -> Any:
    """Read the SSE stream at ``url`` until an ``event: want`` whose data passes
    ``until``; returns that data."""
    async with client.stream("GET", url) as r:
        assert r.status_code == 200, await r.aread()
        kind = ""
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == want:
                data = msgspec.json.decode(line[6:])
                if until(data):
                    return data
    raise AssertionError("the stream ended")


async def test_server_records_executions_and_taps_packets(served: Served) -> None:
    state = served.state
    # the server samples 1 in 100 by default (REFLOWPY_TRACE_SAMPLE); whether its first
    # burst opens before the first values pass depends on scheduling, so this test
    # records everything to check what is recorded
    assert state.observe.record_sample == 100
    state.observe.record_sample = 1
    async with served.client() as client:
        ex = await start_doubler(client)
        assert state.observe.monitor.watchers == 0
        with trio.fail_after(30):
            await feed(client, ex, [1, 2, 3], 3)
            async with trio.open_nursery() as nursery:
                got: list[Any] = []

                async def watch() -> None:
                    got.append(await _sse_events(
                        client, f"/ui/events?network={ex}&tapNode=d", "packets",
                        lambda d: len(d["packets"]) >= 2))

                nursery.start_soon(watch)
                while state.observe.monitor.watchers == 0:
                    await trio.sleep(0.01)
                k = 4
                while not got:  # a burst opens at the next tick: keep the packets coming
                    await feed(client, ex, [k], k)
                    k += 1
                    await trio.sleep(0.05)
            packets = got[0]["packets"]
            assert got[0]["node"] == "d"
            assert all("d" in (p["from"], p["to"]) for p in packets)
            assert [p["seq"] for p in packets] == list(range(1, len(packets) + 1))
            bad = await client.get(f"/ui/events?network={ex}&tapEdge=nonsense")
            assert bad.status_code == 422 and "SRC.PORT->TGT.PORT" in bad.text
            # the execution is in the server's trace store under its own id
            r = await client.get(f"/traces/{ex}")
            assert r.status_code == 200, r.text
            assert r.json()["source"] == "server"
            await client.post(f"/executions/{ex}/stop", json={})
            while (await client.get(f"/traces/{ex}")).json()["ended"] is None:
                await trio.sleep(0.05)
            rows = (await client.get(f"/traces/{ex}/events",
                                     params={"kind": "output"})).json()
            # every output, with its lineage back to the input
            assert [r[10] for r in rows][:3] == [2, 4, 6]
            lin = (await client.get(f"/traces/{ex}/lineage/{rows[0][8]}")).json()
            assert [i["value"] for i in lin["inputs"]] == [1]
