"""Issue 15: ``ctx.send_all(port, values)`` is ``ctx.send`` for each value, minus the puts.

What the receiving queue has room for moves in one hand-over (readers send their chunks
this way). These tests run random graphs twice, once with ``send_all`` and once with a
loop of ``send``, from a ``run()`` source and from inside a ``process()`` activation
(where sends are held back until it succeeds), into chains of small queues, strict
ports and exported ports, with values to freeze and a value that cannot be a message;
the outputs (in order), the per-node counters, the failures and the ledger must be the
same. Stops at random points must leave balanced books.
"""

from __future__ import annotations

import random
from typing import Any

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import reflowpy as rf
from reflowpy.network.ports import InPort
from tests.scale import long_scale


def _values(ctx: Any, chunk: list[int]) -> list[Any]:
    bad = ctx.config.get("bad", -1)  # the position of a value that cannot be a message
    return [object() if i == bad else ({"v": v} if v % 3 == 0 else v)
            for i, v in enumerate(chunk)]


async def _emit(ctx: Any, values: list[Any]) -> None:
    if ctx.config["mode"] == "all":
        await ctx.send_all("out", values)
    else:
        for value in values:
            await ctx.send("out", value)


class Source(rf.Actor):
    outports = ["out"]

    async def run(self, ctx: Any) -> None:
        for chunk in ctx.config["chunks"]:
            await _emit(ctx, _values(ctx, chunk))


class Spread(rf.Actor):
    """A process() actor: its sends are held back until the activation succeeds."""

    inports = ["in"]
    outports = ["out"]

    async def process(self, ctx: Any) -> None:
        await _emit(ctx, _values(ctx, list(ctx.inputs["in"])))


@rf.actor(inports=["in"], outports=["out"])
def step(ctx: Any) -> dict[str, Any]:
    v = ctx.inputs["in"]
    return {"out": v["v"] * 10 if isinstance(v, rf.FrozenDict) else v * 10}


class Strict(rf.Actor):
    inports = [rf.Port("in", type="integer", strict=True)]
    outports = ["out"]

    async def process(self, ctx: Any) -> dict[str, Any]:
        return {"out": ctx.inputs["in"]}


def _registry() -> rf.Registry:
    reg = rf.Registry()
    for name, c in (("s/Source", Source), ("s/Spread", Spread), ("s/Step", step),
                    ("s/Strict", Strict)):
        reg.register(name, c)
    return reg


async def _run(chunks: list[list[int]], head: str, tail: list[str], capacity: int,
               bad: int, mode: str, stop_after: int | None) -> dict[str, Any]:
    g = rf.Graph("send_all")
    meta: dict[str, Any] = {"mode": mode, "bad": bad}
    if head == "source":
        g.add_node("head", "s/Source", metadata={**meta, "chunks": chunks})
    else:
        g.add_node("head", "s/Spread", metadata=meta)
        g.add_inport("input", "head", "in")
    prev = "head"
    for i, kind in enumerate(tail):
        g.add_node(f"t{i}", kind)
        g.add_edge(prev, "out", f"t{i}", "in", capacity=capacity)
        prev = f"t{i}"
    g.add_outport("result", prev, "out")
    with trio.fail_after(60):
        async with rf.Network(g, _registry(), output_capacity=10**6) as net:
            if head != "source":
                for chunk in chunks:
                    await net.send("input", tuple(chunk))
            if stop_after is None:
                await net.idle()
            else:
                for _ in range(stop_after):
                    await trio.sleep(0)
                await net.stop(drain=False)
    stats = net.statistics()
    assert stats.ledger.balanced and stats.ledger.in_flight == 0, stats.ledger
    for node, s in stats.nodes.items():
        for port in s.inports.values():  # no room is promised that the queue lacks
            assert port.high_water <= port.capacity, (node, port)
    return {
        "out": net.outputs("result").drain(),
        "nodes": {n: (s.activations, s.failures, s.taken, s.delivered, s.dead_lettered,
                      s.messages_out, {p: x.total for p, x in s.inports.items()})
                  for n, s in stats.nodes.items()},
        "dead": sorted((d.node, d.port, d.reason) for d in net.dead_letters()),
        "errors": [str(e) for e in net.errors],
    }


@settings(max_examples=long_scale(120), deadline=None)
@given(chunks=st.lists(st.lists(st.integers(0, 50), max_size=40), min_size=1, max_size=5),
       head=st.sampled_from(["source", "spread"]),
       tail=st.lists(st.sampled_from(["s/Step", "s/Strict"]), max_size=3),
       capacity=st.sampled_from([1, 2, 3, 8, 1000]),
       bad=st.sampled_from([-1, -1, 0, 3, 9]))
def test_send_all_equals_a_loop_of_send(chunks: list[list[int]], head: str, tail: list[str],
                                        capacity: int, bad: int) -> None:
    if "s/Strict" in tail:
        tail = [t for t in tail if t != "s/Step"]  # a strict port refuses the dicts
        chunks = [[v for v in c if v % 3] for c in chunks]
    batched = trio.run(_run, chunks, head, tail, capacity, bad, "all", None)
    looped = trio.run(_run, chunks, head, tail, capacity, bad, "loop", None)
    assert batched == looped


def test_send_all_hands_over_in_one_put() -> None:
    # Pins that the comparison above is of two paths: a chunk moves in batches.
    puts: list[int] = []
    batch = InPort.put_batch

    def counting(port: InPort, values: list[Any]) -> None:
        puts.append(len(values))
        batch(port, values)

    InPort.put_batch = counting  # type: ignore[method-assign]
    try:
        out = trio.run(_run, [list(range(1, 200, 3))], "source", ["s/Step"], 1000, -1,
                       "all", None)["out"]
    finally:
        InPort.put_batch = batch  # type: ignore[method-assign]
    assert out == [v * 10 for v in range(1, 200, 3)]
    assert max(puts) > 1, puts


def test_stops_at_random_points_keep_the_books() -> None:
    rnd = random.Random(1515)
    for _ in range(long_scale(30)):
        chunks = [[rnd.randrange(50) for _ in range(rnd.randrange(60))]
                  for _ in range(rnd.randrange(1, 5))]
        tail = ["s/Step"] * rnd.randrange(0, 4)
        trio.run(_run, chunks, rnd.choice(["source", "spread"]), tail,
                 rnd.choice([1, 2, 5, 1000]), rnd.choice([-1, 2, 20]), "all",
                 rnd.randrange(0, 200))
