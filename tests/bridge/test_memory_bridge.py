"""A pipeline split across a bridge over the in-memory transport: same outputs as in
one process, under cuts of the connection at random moments."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest
import trio

import reflowpy as rf
from reflowpy.bridge import Peer, Peers
from reflowpy.bridge.cluster import BridgedNetwork
from reflowpy.bridge.events import BridgeStatus
from reflowpy.bridge.host import Host
from reflowpy.bridge.transport import MemoryTransport
from reflowpy.errors import BridgeAuthError
from reflowpy.network import codec
from reflowpy.network.events import NetworkEvent
from tests.bridge.helpers import check_exact, pipeline, registry
from tests.scale import long_scale


async def _run(bn: BridgedNetwork, n: int, sources: int = 1,
               on_progress: Any = None) -> list[Any]:
    got: list[Any] = []
    # a hang fails here, not at CI's timeout
    with trio.fail_after(120):
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


class _Steps(trio.abc.Instrument):
    """Counts task steps per task name."""

    def __init__(self) -> None:
        self.steps: dict[str, int] = {}

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps[task.name] = self.steps.get(task.name, 0) + 1


async def test_a_quiet_link_delivers_from_the_reader_without_a_task_switch() -> None:
    """One message at a time through a remote node and back: each arrival reaches its
    in-port from the session's reader task (the receiver proxies' own tasks never
    run), the writer task does not wake per message (the sender writes inline), and
    each side writes one frame per message (the idle credit rides inside the next
    DATA). Ledger: every message back, in order."""
    reg = registry()
    async with trio.open_nursery() as nursery:
        host = Host(reg, nursery, local_id="peer", token="t0k")
        transport = MemoryTransport(host.handle, nursery)
        g = pipeline({"b": "remote:peer", "c": "remote:peer"})
        bn = BridgedNetwork(g, reg, transports={"remote:peer": transport},
                            peers=Peers({"peer": Peer("memory:", "t0k")}),
                            ping_interval=3600)
        async with bn:
            (dep,) = host.deployments.values()
            for s in (bn.session("remote:peer"), dep.session):
                s.ack_delay = 3600  # an idle credit may only ride along, not time out
            out = bn.network.outputs("out")
            sessions = (bn.session("remote:peer"), dep.session)
            with trio.fail_after(60):
                await bn.network.send("in", [0, -1])
                await out.receive()
                steps = _Steps()
                frames = [s.frames_out for s in sessions]
                trio.lowlevel.add_instrument(steps)
                got = []
                for i in range(200):
                    await bn.network.send("in", [0, i])
                    got.append(await out.receive())
                trio.lowlevel.remove_instrument(steps)
                frames = [s.frames_out - f for s, f in zip(sessions, frames, strict=True)]
        check_exact(got, 200)
        # one frame each way per message: the credit rides inside the next DATA
        assert frames == [200, 200], frames
        delivery = {k: v for k, v in steps.steps.items() if k.startswith("bridge delivery")}
        assert len(delivery) == 0, delivery  # neither side's receiver proxy ran
        writers = sum(v for k, v in steps.steps.items() if k.endswith("_writer_loop"))
        assert writers <= 4, steps.steps
        nursery.cancel_scope.cancel()


async def test_allow_list_refuses_components_not_listed() -> None:
    reg = registry()
    async with trio.open_nursery() as nursery:
        host = Host(reg, nursery, local_id="peer", token="t0k", allow=["core/Repeat"])
        transport = MemoryTransport(host.handle, nursery)
        bn = BridgedNetwork(pipeline({"b": "remote:peer"}), reg,
                            transports={"remote:peer": transport},
                            peers=Peers({"peer": Peer("memory:", "t0k")}), deadline=5)
        with pytest.raises(BridgeAuthError, match="'test/Tag' is not in this peer's allow-list"):
            async with bn:
                pass
        assert host.refused == 1 and not host.deployments
        nursery.cancel_scope.cancel()


async def test_bridge_status_events_and_statistics() -> None:
    reg = registry()
    async with trio.open_nursery() as nursery:
        host = Host(reg, nursery, local_id="peer", token="t0k")
        transport = MemoryTransport(host.handle, nursery)
        bn = BridgedNetwork(pipeline({"b": "remote:peer"}), reg,
                            transports={"remote:peer": transport},
                            peers=Peers({"peer": Peer("memory:", "t0k")}), ping_interval=0.05)
        sub = bn.network.events(10_000)
        async with bn:
            await _run(bn, 500)
            async for event in sub:  # reports come once per ping: wait for the final one
                if (isinstance(event, BridgeStatus) and event.msgs_out == 500
                        and event.msgs_in == 500):
                    break
        assert event.state == "up" and event.location == "remote:peer"
        assert event.peer == "peer" and event.msgs_in == 500
        # a consumer of the event stream decodes it like any kernel event: msgpack
        # (codec.decode_event) and JSON (NetworkEvent, as the trace store's /events)
        assert codec.decode_event(codec.encode(event)) == event
        wire = msgspec.json.encode(event)
        assert b'"_type":"BridgeStatus"' in wire and b'"rttMs"' in wire
        assert msgspec.json.decode(wire, type=NetworkEvent) == event
        s = bn.statistics()["bridges"]["remote:peer"]
        assert {c.role for c in s.channels} == {"send", "receive"}
        assert s.resend_buffer == 0 and s.bytes_out > 0 and s.frames_in > 0
        nursery.cancel_scope.cancel()


async def test_big_compressible_batches_respect_the_decompressed_frame_limit() -> None:
    """The sender splits batches by what the receiver will decompress, not by the
    compressed size (a 64 MiB batch compresses to kilobytes)."""
    reg = registry()
    big = b"0123456789abcdef" * 4096  # 64 KiB, compresses ~1000x
    async with trio.open_nursery() as nursery:
        limit = 2 << 20  # 2 MiB: 32 messages per frame at most, in both directions
        host = Host(reg, nursery, local_id="peer", token="t0k", max_frame=limit)
        transport = MemoryTransport(host.handle, nursery)
        g = pipeline({"b": "remote:peer"})
        bn = BridgedNetwork(g, reg, transports={"remote:peer": transport},
                            peers=Peers({"peer": Peer("memory:", "t0k")}), max_frame=limit)
        async with bn:
            got = []
            async with trio.open_nursery() as inner:
                async def feed() -> None:
                    for i in range(300):
                        await bn.network.send("in", [0, i, big])

                inner.start_soon(feed)
                async for v in bn.network.outputs("out"):
                    got.append(v)
                    if len(got) == 300:
                        break
        assert [v[1] for v in got] == list(range(300))
        s = bn.statistics()["bridges"]["remote:peer"]
        assert s.reconnects == 0 and s.frames_out >= 300 // 32
        nursery.cancel_scope.cancel()


async def test_a_lone_idle_credit_leaves_after_the_ack_delay() -> None:
    """A few messages one way, nothing coming back: the receiver's credit moved by less
    than a quarter of the window (idle), and no answer carries it; it must leave alone
    once the ack delay (2 ms) runs out, not with the next PING a second later (the
    drain waits for that ack)."""
    reg = registry()
    g = rf.Graph("oneway")
    g.add_node("a", "core/Repeat")
    g.add_node("sink", "core/Drop", {"remote": "peer"})
    g.add_edge("a", "out", "sink", "in")
    g.add_inport("in", "a", "in")
    async with trio.open_nursery() as nursery:
        host = Host(reg, nursery, local_id="peer", token="t0k")
        bn = BridgedNetwork(g, reg, transports={"remote:peer": MemoryTransport(host.handle,
                                                                               nursery)},
                            peers=Peers({"peer": Peer("memory:", "t0k")}),
                            ack_on={"remote:peer": "receipt"}, ping_interval=30)
        async with bn:
            start = trio.current_time()
            for i in range(5):
                for j in range(3):
                    await bn.send("in", [i, j])
                await bn.drain()
            took = trio.current_time() - start
        nursery.cancel_scope.cancel()
    assert took < 1.0, took  # the host pings once a second: 5 rounds of waiting for it
    assert bn.session("remote:peer").statistics().msgs_out == 15
