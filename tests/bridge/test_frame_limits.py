"""Each side of a link tells the other, in HELLO, the largest decoded frame it accepts,
and senders split their batches to fit the *receiver's* limit.

This once failed only under load: when a backlog built up (a slow machine), the side
with the larger limit sent a batch the other side refused as too large, the link was
cut, the same batch was resent on the next link, and after five refusals the session
was lost -- every in-flight message then waited forever. Here the backlog is built on
purpose, so the test does not depend on the machine's speed.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
import trio
import trio.testing

from reflowpy.bridge.frames import MAX_FRAME, ChannelSpec, Hello
from reflowpy.bridge.session import Dialer, Session, accept
from reflowpy.bridge.transport import Connection, LinkClosed, MemoryTransport

BIG = b"0123456789abcdef" * 4096  # 64 KiB, compresses about 1000x
N = 300  # 19 MiB in all: several frames at either limit


async def _link(nursery: trio.Nursery, a: Session, b: Session, specs: list[ChannelSpec],
                max_refusals: int = 5) -> None:
    """Dial ``b`` from ``a`` over memory and wait until both sides granted credit."""

    async def on_hello(hello: Hello) -> tuple[Session, str]:
        return b, "incarnation-1"

    async def serve(conn: Connection) -> None:
        session, _ = await accept(conn, local_id="b", token="t", on_hello=on_hello)
        with contextlib.suppress(LinkClosed):  # a dialer that gives up hangs up
            await session.run_link(conn)

    dialer = Dialer(a, MemoryTransport(serve, nursery), token="t", hello=lambda: (specs, None))
    dialer.max_refusals = max_refusals
    nursery.start_soon(dialer.run)
    await dialer.connected.wait()
    await trio.testing.wait_all_tasks_blocked()


@pytest.mark.parametrize(("dialer_limit", "acceptor_limit"),
                         [(MAX_FRAME, 2 << 20), (2 << 20, MAX_FRAME), (1 << 20, 3 << 20)])
async def test_batches_fit_the_receivers_limit_in_both_directions(
        dialer_limit: int, acceptor_limit: int) -> None:
    a = Session("a", max_frame=dialer_limit)
    b = Session("b", max_frame=acceptor_limit, session_id=a.session_id)
    a_to_b = ChannelSpec(1, "a", "x.out", "y.in", capacity=N)
    b_to_a = ChannelSpec(2, "b", "y.out", "x.in", capacity=N)
    a.add_out(a_to_b)
    b.add_in(a_to_b)
    b.add_out(b_to_a)
    a.add_in(b_to_a)

    async with trio.open_nursery() as nursery:
        await _link(nursery, a, b, [a_to_b, b_to_a])
        assert a.peer_max_frame == acceptor_limit and b.peer_max_frame == dialer_limit
        # The whole backlog is queued before either writer runs: the first DATA frame
        # would hold all of it unless split by the receiver's limit.
        assert await a.send_many(1, [[i, BIG] for i in range(N)]) == N
        assert await b.send_many(2, [[i, BIG] for i in range(N)]) == N
        got: dict[str, list[Any]] = {"b": [], "a": []}
        for _ in range(N):
            got["b"].append((await b.receive(1))[0])
            got["a"].append((await a.receive(2))[0])
        assert got["b"] == list(range(N)) and got["a"] == list(range(N))
        assert a.reconnects == 0 and a.links == 1 and b.links == 1, "a frame was refused"
        # each side sent at least as many frames as the receiver's limit requires
        assert a.frames_out >= N * len(BIG) // acceptor_limit
        assert b.frames_out >= N * len(BIG) // dialer_limit
        nursery.cancel_scope.cancel()


async def test_a_single_message_above_the_peers_limit_is_an_error_naming_the_channel() -> None:
    a = Session("a")
    b = Session("b", max_frame=1 << 16, session_id=a.session_id)
    spec = ChannelSpec(1, "a", "x.out", "y.in", capacity=4)
    a.add_out(spec)
    b.add_in(spec)

    async with trio.open_nursery() as nursery:
        await _link(nursery, a, b, [spec], max_refusals=1)
        await a.send(1, b"x" * (1 << 17))  # the limit is on the decoded size: 128 KiB
        with trio.fail_after(10):
            while a.state != "lost":
                await a.changed()
        assert "above the peer's frame limit of 65536" in str(a.error)
        assert "x.out -> y.in" in str(a.error)
        nursery.cancel_scope.cancel()
