"""The non-waiting paths of a bridge: the kernel hooks (``Network.send_nowait``,
``Network.attach_receiver``) and the sender proxy that writes from the producing task.

The sender proxy pushes a value into its channels from the task that produced it and
writes it to the socket there, without waiting; what the socket does not take is left
for the writer task. These tests drive that over a real Unix socket with messages
larger than the socket buffer (so writes are partial), both ways, while the link is
cut at random moments: every message arrives exactly once, in order, and the
ledgers balance on both sides.
"""

from __future__ import annotations

import os
import random
import tempfile
from collections import deque
from typing import Any

import pytest
import trio

import reflowpy as rf
from reflowpy.bridge import BridgedNetwork, Peer, Peers
from reflowpy.bridge.host import Host
from reflowpy.bridge.transport import Connection, StreamTransport, serve_stream
from reflowpy.errors import MessageError, NetworkStopped, PortNotFound
from reflowpy.network.ports import InPort
from tests.bridge.helpers import check_exact, pipeline, registry
from tests.scale import long_scale

STATS = {"runs": 0, "cuts": 0, "messages": 0, "partial_writes": 0}


def _pass_graph() -> rf.Graph:
    g = rf.Graph("hooks")
    g.add_node("a", "core/Repeat")
    g.add_node("b", "core/Repeat")
    g.add_edge("a", "out", "b", "in", capacity=2)
    g.add_inport("in", "b", "in")
    g.add_outport("out", "b", "out")
    return g


class _Probe:
    """A kernel Receiver that takes at most ``take`` values per wake."""

    def __init__(self, take: int) -> None:
        self.order: deque[InPort] | None = None
        self.parked = True
        self.take = take
        self.got: list[Any] = []

    def wake(self, port: InPort) -> None:
        for _ in range(min(self.take, len(port.queue))):
            self.got.append(port.take())

    def reject(self, port: InPort, value: Any, reason: str | None) -> None:
        raise AssertionError("not for sinks")


async def test_send_nowait_queues_refuses_and_names_the_input() -> None:
    g = rf.Graph("nowait")
    g.add_node("slow", "test/Slow", {"delay": 3600})
    g.add_inport("in", "slow", "in")
    net = rf.Network(g, registry(), capacity=2)
    with pytest.raises(NetworkStopped):
        net.send_nowait("in", 1)  # not started: refused, as send
    async with net:
        with trio.fail_after(30):
            # the node takes the first and sleeps on it; then two fit, the next does not
            assert net.send_nowait("in", 0)
            while net.statistics()["nodes"]["slow"].inports["in"].queued:
                await trio.sleep(0)
            assert net.send_nowait(("slow", "in"), 1) and net.send_nowait("in", 2)
            assert not net.send_nowait("in", 3)
            with pytest.raises(MessageError, match="input 'in'"):
                net.send_nowait("in", object())
            with pytest.raises(PortNotFound):
                net.send_nowait("nope", 1)
            await net.stop(drain=False)
        with pytest.raises(NetworkStopped):
            net.send_nowait("in", 4)


async def test_attach_receiver_gets_every_value_and_backpressure_holds() -> None:
    net = rf.Network(_pass_graph(), registry(), output_capacity=3)
    probe = _Probe(take=0)
    sink = net.attach_receiver("out", probe)
    with pytest.raises(PortNotFound):
        net.attach_receiver("nope", probe)
    async with net:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                async def feed() -> None:
                    for i in range(10):
                        await net.send("in", i)

                nursery.start_soon(feed)
                # nothing taken: the sink fills to its bound and holds the sender
                while len(sink.queue) < 3 or not sink.putters:
                    await trio.sleep(0)
                assert probe.got == []
                probe.take = 100
                probe.wake(sink)  # as a credit would: take what waits
                while len(probe.got) < 10:
                    await trio.sleep(0)
            assert probe.got == list(range(10))
            await net.idle()
        ledger = net.statistics()["ledger"]
        assert ledger.balanced, ledger


async def _cut_run(seed: int, n: int, payload: int) -> None:
    rng = random.Random(seed)
    reg = registry()
    live: list[Connection] = []
    with tempfile.TemporaryDirectory(prefix="rfb-") as tmp:
        path = os.path.join(tmp, "s")
        async with trio.open_nursery() as nursery:
            host = Host(reg, nursery, local_id="peer", token="t0k")

            async def handle(conn: Connection) -> None:
                live.append(conn)
                await host.handle(conn)

            sock = trio.socket.socket(trio.socket.AF_UNIX)
            await sock.bind(path)
            sock.listen(8)
            nursery.start_soon(serve_stream, [trio.SocketListener(sock)], handle)
            g = pipeline({"b": "remote:peer", "c": "remote:peer"}, capacity=8)
            bn = BridgedNetwork(g, reg, transports={"remote:peer": StreamTransport(
                f"unix:{path}")}, peers=Peers({"peer": Peer("unix:", "t0k")}),
                                channel_capacity=16, compress_threshold=1 << 30)
            blob = rng.randbytes(payload)
            cuts = 0
            got: list[Any] = []
            async with bn:
                session = bn.session("remote:peer")
                with trio.fail_after(240):
                    async with trio.open_nursery() as inner:
                        async def feed(src: int) -> None:
                            for i in range(n):
                                await bn.network.send("in", [src, i, blob])

                        for src in range(2):
                            inner.start_soon(feed, src)
                        async for v in bn.network.outputs("out"):
                            assert v[2] == blob
                            got.append([v[0], v[1]])
                            if rng.random() < 0.03 and live:
                                await live[-1].aclose()  # cut: the dialer reconnects
                                cuts += 1
                            if len(got) == 2 * n:
                                break
                    await bn.drain()
                stats = session.statistics()
                local = bn.network.statistics()["ledger"]
                (dep,) = host.deployments.values()
                remote = dep.net.statistics()["ledger"]
            check_exact(got, n, sources=2)
            assert local.balanced and remote.balanced, (local, remote)
            assert bn.network.dead_letters() == [] and dep.net.dead_letters() == []
            assert stats.reconnects >= 1 or cuts == 0, (stats.reconnects, cuts)
            STATS["cuts"] += cuts
            STATS["messages"] += 2 * n
            STATS["runs"] += 1
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("seed", range(3))
async def test_partial_writes_and_cuts_deliver_exactly(seed: int) -> None:
    """Messages of 96 KiB (incompressible; over the Unix socket's buffer, so a
    non-waiting write sends part and leaves the rest to the writer task) through two
    remote nodes and back, cut at random moments: exact, both ledgers balanced."""
    real = __import__("reflowpy.bridge.transport", fromlist=["_Pipe"])._Pipe
    original = real.write_nowait

    def counting(self: Any, data: bytes) -> bool:
        left = original(self, data)
        STATS["partial_writes"] += left and not self.broken
        return left

    real.write_nowait = counting
    try:
        await _cut_run(seed, long_scale(120), 96 * 1024)
    finally:
        real.write_nowait = original


def test_zz_counts_are_reported(capsys: pytest.CaptureFixture[str]) -> None:
    if STATS["runs"]:
        assert STATS["partial_writes"] > 0, STATS  # the leftover path really ran
    with capsys.disabled():
        print(f"\nnowait paths: {STATS}")


class _StepCounter(trio.abc.Instrument):
    """How many activations of the slow node ran inside each task step (by task)."""

    def __init__(self) -> None:
        self.current: dict[int, int] = {}
        self.most: dict[str, int] = {}

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.current[id(task)] = 0

    def ran(self) -> None:
        task = trio.lowlevel.current_task()
        n = self.current[id(task)] = self.current.get(id(task), 0) + 1
        self.most[task.name] = max(self.most.get(task.name, 0), n)


async def test_a_slow_plain_def_node_holds_the_reader_for_one_budget_at_most() -> None:
    """A plain-``def`` node that burns 5 ms of CPU per message, fed through a bridge in
    bursts: the reader task delivers (and runs it inline) for one INLINE_BUDGET at
    most, then the receiver proxy's task takes the rest, so one reader step runs at
    most budget / 5 ms + 1 activations (5 ms of CPU each, so at least 5 ms of wall
    time: a loaded machine only lowers the count). Every message arrives, in order."""
    import time

    from reflowpy.bridge import binding
    from reflowpy.bridge.transport import MemoryTransport

    counter = _StepCounter()
    per_message = 0.005

    @rf.actor(inports=["in"], outports=["out"])
    def spin(ctx: Any) -> dict[str, Any]:
        counter.ran()
        end = time.thread_time() + per_message
        while time.thread_time() < end:
            pass
        return {"out": ctx.inputs["in"]}

    reg = registry()
    reg.register("test/Spin", spin, replace=True)
    n = 60
    async with trio.open_nursery() as nursery:
        host = Host(reg, nursery, local_id="peer", token="t0k")
        transport = MemoryTransport(host.handle, nursery)
        g = pipeline({"b": "remote:peer"})
        g.nodes["b"].component = "test/Spin"
        bn = BridgedNetwork(g, reg, transports={"remote:peer": transport},
                            peers=Peers({"peer": Peer("memory:", "t0k")}))
        got: list[Any] = []
        async with bn:
            trio.lowlevel.add_instrument(counter)
            try:
                with trio.fail_after(120):
                    for i in range(n):  # a burst: the peer's reader gets many at once
                        await bn.network.send("in", [0, i])
                    async for v in bn.network.outputs("out"):
                        got.append(v)
                        if len(got) == n:
                            break
            finally:
                trio.lowlevel.remove_instrument(counter)
            frames = bn.session("remote:peer").frames_out
        nursery.cancel_scope.cancel()
    assert [v[:2] for v in got] == [[0, i] for i in range(n)]
    assert frames < n // 2, frames  # the burst crossed in batches (credits included)
    bound = int(binding.INLINE_BUDGET / per_message) + 1
    # the reader: one budget; the receiver proxy's task: the value it waited with, then
    # one budget (whichever ran them: the peer's network may still be starting)
    assert max(counter.most.values()) <= bound + 1, (counter.most, bound)
