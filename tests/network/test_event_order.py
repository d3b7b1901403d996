"""The observed event stream is a faithful FIFO history of every in-port.

Observers (the trace collector's lineage model, the FBP runtime's ``network:data``)
rebuild each queue from ``MessageSent``/``MessageReceived`` alone, so the kernel must
announce a send the moment the value enters a target's queue, with the depth right
after it: also while a broadcast still waits for room at a later target (the earlier
target may take the value meanwhile). Replayed here against a plain deque per in-port,
over broadcast, merge, several sends per activation and tiny queues (backpressure).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import trio
from hypothesis import example, given, settings
from hypothesis import strategies as st

import reflowpy as rf
from reflowpy.network import events as ev
from tests.scale import long_scale


@rf.actor(inports=["in"], outports=["out"])
def _tag(ctx: rf.ActorContext) -> dict[str, Any]:
    origin, path = ctx.inputs["in"]
    return {"out": (origin, (*path, ctx.node_id))}


class _Fan(rf.Actor):
    inports = ["in"]
    outports = ["out"]

    async def process(self, ctx: Any) -> None:
        origin, path = ctx.inputs["in"]
        for i in range(int(ctx.config["copies"])):
            await ctx.send("out", (origin, (*path, f"fan{i}")))


def _network(caps: list[int], copies: int) -> rf.Network:
    """in -> a(Fan) -> b, broadcast to c, d and f; c, d -> e (merge) -> out; f -> out2."""
    reg = rf.Registry()
    reg.register("t/Tag", _tag)
    reg.register("t/Fan", _Fan)
    g = rf.Graph("order")
    g.add_node("a", "t/Fan", {"copies": copies})
    for node in "bcdef":
        g.add_node(node, "t/Tag")
    g.add_edge("a", "out", "b", "in", capacity=caps[0])
    g.add_edge("b", "out", "c", "in", capacity=caps[1])
    g.add_edge("b", "out", "d", "in", capacity=caps[2])
    g.add_edge("b", "out", "f", "in", capacity=caps[3])
    g.add_edge("c", "out", "e", "in", capacity=caps[4])
    g.add_edge("d", "out", "e", "in", capacity=caps[4])
    g.add_inport("in", "a", "in")
    g.add_outport("out", "e", "out")
    g.add_outport("out2", "f", "out")
    return rf.Network(g, reg, capacity=min(caps), output_capacity=10_000)


@settings(max_examples=long_scale(30), deadline=None)
@given(n=st.integers(1, 10), caps=st.lists(st.integers(1, 3), min_size=5, max_size=5),
       copies=st.integers(1, 3))
@example(n=9, caps=[3, 3, 3, 3, 3], copies=2)  # received before announced (kernel merge)
def test_observed_events_are_a_fifo_history(n: int, caps: list[int], copies: int) -> None:
    async def main() -> list[Any]:
        net = _network(caps, copies)
        sub = net.events(1_000_000)
        async with net:
            for i in range(n):
                await net.send("in", (i, ()))
            await net.idle()
        events = [e async for e in sub]
        assert sub.dropped == 0
        return events

    events = trio.run(main)
    queues: dict[tuple[str, str], deque[Any]] = {}
    sends = receives = 0
    for e in events:
        if type(e) is ev.MessageSent and e.to_actor:
            q = queues.setdefault((e.to_actor, e.to_port), deque())
            q.append(e.message)
            assert e.queue_depth == len(q), (e, list(q))
            sends += 1
        elif type(e) is ev.MessageReceived and e.actor_id != "a":  # a.in: Network.send
            q = queues.setdefault((e.actor_id, e.port), deque())
            assert q, f"{e.actor_id}.{e.port} received {e.message!r} before it was sent"
            assert q.popleft() == e.message
            assert e.queue_depth == len(q), (e, list(q))
            receives += 1
    assert all(not q for q in queues.values())
    # a -> b, then b's broadcast to c, d, f, then c, d -> e
    assert receives == sends == n * copies * (1 + 3 + 2)
