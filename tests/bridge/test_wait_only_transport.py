"""A transport that can only write waiting (as ``reflowpy serve``'s ``/bridge`` through
ASGI, where every frame is one awaited message): the session's reader writes the
answers its dispatch produced itself, instead of waking the writer task.

The host's connections here have no ``send_frames_nowait`` and yield a varying number
of times before every frame (as Hypercorn's send path does). Checked: round trips one
at a time leave the host's writer task asleep, one frame per answer; a stream (where
the writer batches) with pings every 2 ms and cuts of the link delivers exactly, in
order, with no gap on either side, also when a node answers from its own task.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
import trio

from reflowpy.bridge import Peer, Peers
from reflowpy.bridge.cluster import BridgedNetwork
from reflowpy.bridge.host import Host
from reflowpy.bridge.transport import Connection, MemoryConnection, MemoryTransport
from tests.bridge.helpers import check_exact, pipeline, registry
from tests.scale import long_scale

STATS: Counter[str] = Counter()


class _WaitOnly:
    """A connection that writes only waiting (no ``send_frames_nowait``), yielding
    0-3 times before each frame (a send of varying latency, seeded)."""

    def __init__(self, conn: MemoryConnection, rng: random.Random) -> None:
        self._conn = conn
        self._rng = rng
        self.description = f"wait-only {conn.description}"

    async def send(self, frame: bytes) -> None:
        await self.send_frames([frame])

    async def send_frames(self, frames: Sequence[bytes]) -> None:
        for frame in frames:
            for _ in range(self._rng.randint(0, 3)):  # as an ASGI server's send does
                await trio.lowlevel.checkpoint()
            await self._conn.send(frame)

    async def receive(self) -> bytes:
        return await self._conn.receive()

    async def aclose(self) -> None:
        await self._conn.aclose()


def _wait_only(handler: Callable[[Connection], Awaitable[None]], seed: int = 0
               ) -> Callable[[Connection], Awaitable[None]]:
    rng = random.Random(seed)

    async def handle(conn: Connection) -> None:
        assert isinstance(conn, MemoryConnection)
        await handler(_WaitOnly(conn, rng))
    return handle


class _Steps(trio.abc.Instrument):
    def __init__(self) -> None:
        self.by_name: Counter[str] = Counter()

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.by_name[task.name.rsplit(".", 1)[-1]] += 1


def _gaps(bn: BridgedNetwork, host: Host) -> int:
    (dep,) = host.deployments.values()
    return sum(c.gaps for s in (bn.session("remote:peer"), dep.session)
               for c in s.inc.values())


async def test_round_trips_leave_the_host_writer_asleep() -> None:
    reg = registry()
    async with trio.open_nursery() as nursery:
        host = Host(reg, nursery, local_id="peer", token="t0k")
        transport = MemoryTransport(_wait_only(host.handle), nursery)
        bn = BridgedNetwork(pipeline({"b": "remote:peer", "c": "remote:peer"}), reg,
                            transports={"remote:peer": transport},
                            peers=Peers({"peer": Peer("memory:", "t0k")}),
                            ping_interval=3600)
        async with bn:
            (dep,) = host.deployments.values()
            for s in (bn.session("remote:peer"), dep.session):
                s.ack_delay = 3600  # idle credits only ride along
            out = bn.network.outputs("out")
            with trio.fail_after(60):
                await bn.network.send("in", [0, -1])
                await out.receive()
                steps = _Steps()
                before = dep.session.frames_out
                trio.lowlevel.add_instrument(steps)
                got = []
                for i in range(200):
                    await bn.network.send("in", [0, i])
                    got.append(await out.receive())
                trio.lowlevel.remove_instrument(steps)
            frames = dep.session.frames_out - before
        nursery.cancel_scope.cancel()
    check_exact(got, 200)
    # the host's answers left from its reader; its writer woke for none of them
    assert steps.by_name["_writer_loop"] <= 2, steps.by_name
    assert frames == 200, frames  # one frame per answer (the credit rode along)
    STATS["round_trips"] += 200


@pytest.mark.parametrize(("seed", "slow"), [(0, False), (1, False), (2, True)])
async def test_a_stream_with_pings_and_cuts_has_no_gaps(seed: int, slow: bool) -> None:
    """A plain node answers inline from the reader when it is idle and from its own
    task (through the writer) when messages queue up: both write the same channel."""
    rng = random.Random(seed)
    n = long_scale(400)
    reg = registry()
    g = pipeline({"b": "remote:peer", "c": "remote:peer"})
    if slow:  # c answers from its own task only
        g.nodes["c"].component = "test/Slow"
        g.nodes["c"].metadata["delay"] = 0.0
    async with trio.open_nursery() as nursery:
        host = Host(reg, nursery, local_id="peer", token="t0k")
        transport = MemoryTransport(_wait_only(host.handle, seed), nursery)
        bn = BridgedNetwork(g, reg, transports={"remote:peer": transport},
                            peers=Peers({"peer": Peer("memory:", "t0k")}),
                            ping_interval=0.002)
        got: list[Any] = []
        cuts = 0
        async with bn:
            (dep,) = host.deployments.values()
            dep.session.ping_interval = 0.002
            with trio.fail_after(120):
                async with trio.open_nursery() as inner:
                    async def feed() -> None:
                        for i in range(n):
                            await bn.network.send("in", [0, i])
                            if rng.random() < 0.3:  # now a stream, now an exchange
                                await trio.sleep(0)

                    inner.start_soon(feed)
                    async for v in bn.network.outputs("out"):
                        got.append(v)
                        if rng.random() < 0.01:
                            transport.connections[-1].cut()
                            cuts += 1
                        if len(got) == n:
                            break
                await bn.drain()
            gaps = _gaps(bn, host)
            stats = bn.statistics()["bridges"]["remote:peer"]
        nursery.cancel_scope.cancel()
    check_exact(got, n)
    assert gaps == 0, gaps
    assert stats.reconnects >= 1 or cuts == 0, (stats.reconnects, cuts)
    STATS["messages"] += n
    STATS["cuts"] += cuts


def test_zz_counts_are_reported(capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print(f"\nwait-only transport: {dict(STATS)}")

