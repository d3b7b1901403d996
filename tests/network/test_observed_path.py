"""Observing a network changes nothing but the cost: same outputs, ledger, statistics.

The kernel publishes per-message events from the same loops that run unobserved (the
batch loops of plain-``def`` and ``async def`` nodes), and keeps a general path for
nodes with timeouts, offload or retries. Here random graphs (merge, broadcast, filters,
several outputs per activation, failures with and without retries, tiny queues) run
in several modes and are compared:

* ``plain``: nothing subscribed;
* ``events``: one ``net.events()`` subscriber;
* ``general``: a subscriber, and every node forced onto the general path
  (``Policy(timeout=1e6)``: a timeout that never fires, so the behaviour is the same);
* ``tap``: a trace collector recording into a real SQLite store, beside a subscriber.

Every mode must give the same outputs, dead letters and per-node counters, and a
balanced ledger. Every observed stream must be a FIFO history of every queue (depths
exact, a send before its receive), each send must follow the receive that caused it
(the lineage model's rule), and the fast path's events must be the general path's,
as multisets. A trace recorded beside them must have exact lineage.
"""

from __future__ import annotations

import random
import tempfile
from collections import Counter, deque
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import example, given, settings
from hypothesis import strategies as st

import reflowpy as rf
from reflowpy.network import events as ev
from tests.scale import long_scale

# -- components: every output is (origin, path + (node,)) of the input it came from ----


def _tag(ctx: Any) -> tuple[Any, tuple[str, ...]]:
    origin, path = ctx.inputs["in"]
    return (origin, (*path, ctx.node_id))


def _fails(ctx: Any) -> bool:
    mod = int(ctx.config.get("fail", 0))
    return bool(mod) and ctx.inputs["in"][0] % mod == 0


@rf.actor(inports=["in"], outports=["out"])
def _def(ctx: Any) -> dict[str, Any] | None:
    if _fails(ctx):
        raise ValueError(f"refused {ctx.inputs['in']!r}")
    if int(ctx.config.get("drop", 0)) and ctx.inputs["in"][0] % int(ctx.config["drop"]) == 1:
        return None
    return {"out": _tag(ctx)}


@rf.actor(inports=["in"], outports=["out"])
async def _async(ctx: Any) -> dict[str, Any] | None:
    if _fails(ctx):
        raise ValueError(f"refused {ctx.inputs['in']!r}")
    if int(ctx.config.get("yield", 0)):
        await trio.lowlevel.checkpoint()
    return {"out": _tag(ctx)}


@rf.actor(inports=["in"], outports=["out", "aux"])
def _two(ctx: Any) -> dict[str, Any]:
    # two entries: the general result path (aux is not connected)
    return {"out": _tag(ctx), "aux": 0}


class _Twice(rf.Actor):
    """Sends each input twice with ctx.send (held back until the activation succeeds)."""

    inports = ["in"]
    outports = ["out"]

    async def process(self, ctx: Any) -> None:
        if _fails(ctx):
            await ctx.send("out", _tag(ctx))  # held back, then discarded
            raise ValueError("after a send")
        await ctx.send("out", _tag(ctx))
        await ctx.send("out", _tag(ctx))


class _Flaky(rf.Actor):
    """Fails the first attempt of every third message (succeeds on a retry)."""

    inports = ["in"]
    outports = ["out"]

    def __init__(self) -> None:
        self.seen: set[Any] = set()

    async def process(self, ctx: Any) -> dict[str, Any]:
        value = ctx.inputs["in"]
        if value[0] % 3 == 0 and value not in self.seen:
            self.seen.add(value)
            raise ValueError("first attempt")
        return {"out": _tag(ctx)}


KINDS = ["def", "async", "two", "twice", "flaky"]


def registry() -> rf.Registry:
    reg = rf.Registry()
    reg.register("o/def", _def)
    reg.register("o/async", _async)
    reg.register("o/two", _two)
    reg.register("o/twice", _Twice)
    reg.register("o/flaky", _Flaky)
    return reg


# -- random graphs -----------------------------------------------------------------------


@st.composite
def graphs(draw: st.DrawFn) -> dict[str, Any]:
    """A DAG n0..nk: n0 fed from outside, each later node from 1-2 earlier ones (merge),
    a node feeding several (broadcast); nodes nothing reads are exported."""
    k = draw(st.integers(1, 6))
    nodes = []
    edges = []
    for i in range(k):
        kind = draw(st.sampled_from(KINDS))
        config: dict[str, Any] = {}
        if kind in ("def", "async", "twice") and draw(st.booleans()):
            config["fail"] = draw(st.integers(2, 7))
        if kind == "def" and draw(st.booleans()):
            config["drop"] = draw(st.integers(2, 4))
        if kind == "async" and draw(st.booleans()):
            config["yield"] = 1
        retries = 1 if kind == "flaky" else draw(st.sampled_from([0, 0, 1]))
        nodes.append((f"n{i}", kind, config, retries))
        if i:
            sources = draw(st.lists(st.integers(0, i - 1), min_size=1, max_size=2,
                                    unique=True))
            for s in sources:
                edges.append((f"n{s}", f"n{i}", draw(st.integers(1, 4))))
    return {"nodes": nodes, "edges": edges, "n": draw(st.integers(1, 40)),
            "capacity": draw(st.integers(1, 4))}


def build(spec: dict[str, Any], general: bool) -> tuple[rf.Network, list[str]]:
    g = rf.Graph("observed")
    fed = {src for src, _, _ in spec["edges"]}
    exported = []
    for node, kind, config, retries in spec["nodes"]:
        policy: dict[str, Any] = {"retries": retries, "backoff": 0.0}
        if general:
            policy["timeout"] = 1e6  # never fires: only moves the node to the general path
        g.add_node(node, f"o/{kind}", {**config, "policy": policy})
        if node not in fed:
            g.add_outport(f"out_{node}", node, "out")
            exported.append(f"out_{node}")
    for src, tgt, cap in spec["edges"]:
        g.add_edge(src, "out", tgt, "in", capacity=cap)
    g.add_inport("in", "n0", "in")
    return rf.Network(g, registry(), capacity=spec["capacity"],
                      output_capacity=1_000_000), exported


# -- running and comparing ------------------------------------------------------------------


def run(spec: dict[str, Any], mode: str) -> dict[str, Any]:
    net, exported = build(spec, general=(mode == "general"))
    events: list[Any] = []
    trace: dict[str, Any] = {}

    async def main() -> None:
        with trio.fail_after(60):
            sub = net.events(10_000_000) if mode != "plain" else None
            if mode == "tap":
                from reflowpy.observe import Collector, SqliteStore

                with tempfile.TemporaryDirectory() as d:
                    store = SqliteStore(Path(d) / "t.sqlite")
                    try:
                        async with Collector(store).record(net) as rec, net:
                            await feed(net, spec["n"])
                        trace["rec"] = rec
                        trace["rows"] = store.events(rec.execution_id, limit=10**9)
                    finally:
                        store.close()
            else:
                async with net:
                    await feed(net, spec["n"])
            if sub is not None:
                events.extend(sub.take_all())
                assert sub.dropped == 0

    trio.run(main)
    stats = net.statistics()
    assert stats.ledger.balanced, stats.ledger
    assert stats.ledger.in_flight == 0, stats.ledger
    nodes = {n: (s.taken, s.delivered, s.activations, s.failures, s.messages_out,
                 s.dead_lettered, s.queued,
                 {p: (ps.total, ps.abandoned) for p, ps in s.inports.items()},
                 {p: (ps.sent, ps.unconnected) for p, ps in s.outports.items()})
             for n, s in stats.nodes.items()}
    return {
        "outputs": {name: sorted(net.outputs(name).drain()) for name in exported},
        "dead": sorted((d.node, d.port, repr(d.value), d.reason) for d in net.dead_letters()),
        "nodes": nodes,
        "events": events,
        "trace": trace,
    }


async def feed(net: rf.Network, n: int) -> None:
    for i in range(n):
        await net.send("in", (i, ()))
    await net.idle()


def check_fifo_history(events: list[Any]) -> None:
    """Replay the stream against a deque per in-port: every send enters the queue its
    depth says, every receive takes the head; each send follows its cause's receive."""
    queues: dict[tuple[str, str], deque[Any]] = {}
    last_received: dict[str, Any] = {}
    for e in events:
        t = type(e)
        if t is ev.MessageSent:
            value = e.message
            assert value[1][-1] == e.from_actor
            cause = last_received.get(e.from_actor)
            assert cause == (value[0], value[1][:-1]), (
                f"{e.from_actor} sent {value!r} after receiving {cause!r}")
            if e.to_actor:
                q = queues.setdefault((e.to_actor, e.to_port), deque())
                q.append(value)
                assert e.queue_depth == len(q), (e, list(q))
        elif t is ev.MessageReceived:
            q = queues.setdefault((e.actor_id, e.port), deque())
            if e.actor_id == "n0":  # fed by Network.send: no MessageSent
                q.append(e.message)
            assert q, f"{e.actor_id}.{e.port} received {e.message!r} before it was sent"
            assert q.popleft() == e.message, (e, list(q))
            assert e.queue_depth == len(q) or e.actor_id == "n0", (e, list(q))
            last_received[e.actor_id] = e.message
    assert all(not q for q in queues.values()), {k: list(q) for k, q in queues.items() if q}


def message_events(events: list[Any]) -> Counter[Any]:
    out: Counter[Any] = Counter()
    for e in events:
        t = type(e)
        if t is ev.MessageSent:
            out[("sent", e.from_actor, e.from_port, e.to_actor, e.to_port, e.message)] += 1
        elif t is ev.MessageReceived:
            out[("recv", e.actor_id, e.port, e.message)] += 1
        elif t is ev.ActorFailed:
            out[("failed", e.actor_id, e.port, e.error_type, e.attempt, e.will_retry,
                 e.reason)] += 1
        elif t is ev.DeadLettered:
            out[("dead", e.actor_id, e.port, e.error_type, e.reason)] += 1
        elif t in (ev.NetworkStarted, ev.ActorStarted, ev.ActorCompleted, ev.NetworkShutdown):
            out[(t.__name__, getattr(e, "actor_id", ""))] += 1
    return out


def check_trace(trace: dict[str, Any], got: dict[str, Any]) -> None:
    rec, rows = trace["rec"], trace["rows"]
    assert rec.dropped == 0 and rec.lineage_mismatches == 0 and not rec.inexact, (
        rec.dropped, rec.lineage_mismatches)
    by_msg = {r.msg: r for r in rows if r.kind in ("sent", "input", "output")}
    outputs = [r for r in rows if r.kind == "output"]
    assert sorted((o, tuple(p)) for o, p in (r.value for r in outputs)) == sorted(
        v for vs in got["outputs"].values() for v in vs)
    for r in outputs:
        # walk the causes back to the input: one hop per node on the value's path
        origin, path = r.value
        hops = 0
        row = r
        while row.kind != "input":
            assert row.causes and len(row.causes) == 1, row
            row = by_msg[row.causes[0]]
            hops += 1
        assert row.value == [origin, []], (row, r)
        assert hops == len(path), (r, hops)


#: Found by this test: two senders blocked on a capacity-1 port; the receiver's inline
#: activation took the value without letting the second one in, and the graph hung.
_LOST_WAKEUP = {
    "nodes": [("n0", "two", {}, 0), ("n1", "def", {}, 0), ("n2", "def", {"drop": 2}, 0),
              ("n3", "def", {}, 0), ("n4", "def", {"fail": 2}, 0)],
    "edges": [("n0", "n1", 1), ("n0", "n2", 1), ("n1", "n2", 1), ("n0", "n3", 1),
              ("n1", "n3", 2), ("n2", "n4", 3), ("n3", "n4", 4)],
    "n": 16, "capacity": 3}


@settings(max_examples=long_scale(60), deadline=None)
@given(spec=graphs())
@example(spec=_LOST_WAKEUP)
def test_observed_fast_path_changes_nothing_but_cost(spec: dict[str, Any]) -> None:
    results = {mode: run(spec, mode) for mode in ("plain", "events", "general", "tap")}
    base = results["plain"]
    for mode, got in results.items():
        assert got["outputs"] == base["outputs"], mode
        assert got["dead"] == base["dead"], mode
        assert got["nodes"] == base["nodes"], mode
    for mode in ("events", "general", "tap"):
        check_fifo_history(results[mode]["events"])
    assert message_events(results["events"]["events"]) == message_events(
        results["general"]["events"])
    assert message_events(results["tap"]["events"]) == message_events(
        results["general"]["events"])
    check_trace(results["tap"]["trace"], base)


# -- bursts: subscribers that come and go mid-stream ---------------------------------------


@settings(max_examples=long_scale(30), deadline=None)
@given(spec=graphs(), bursts=st.lists(st.integers(1, 30), min_size=1, max_size=4))
def test_bursts_opening_mid_batch_change_nothing(spec: dict[str, Any],
                                                 bursts: list[int]) -> None:
    """Burst subscriptions (the sampler's and the packet timeline's) open and close
    themselves while nodes are part-way through batches: the dataflow is unaffected."""
    from reflowpy.observe import stats as ostats

    base = run(spec, "plain")
    net, exported = build(spec, general=False)

    async def main() -> None:
        with trio.fail_after(60):
            async with net, trio.open_nursery() as nursery:
                async def sampler() -> None:
                    for k in bursts:
                        sub = ostats.burst_subscription(net, k)
                        while not sub.closed and net.state == "running":
                            await sub.wait()
                            sub.take_all()
                        await trio.lowlevel.checkpoint()

                nursery.start_soon(sampler)
                await feed(net, spec["n"])
                nursery.cancel_scope.cancel()

    trio.run(main)
    stats = net.statistics()
    assert stats.ledger.balanced and stats.ledger.in_flight == 0, stats.ledger
    assert {name: sorted(net.outputs(name).drain()) for name in exported} == base["outputs"]
    assert sorted((d.node, d.port, repr(d.value), d.reason)
                  for d in net.dead_letters()) == base["dead"]


# -- faults: stopped or cancelled at random points while observed --------------------------


@pytest.mark.parametrize("mode", ["forced", "drain_timeout", "outer_cancel"])
@pytest.mark.parametrize("kind", ["def", "async"])
async def test_stop_at_random_points_while_observed(mode: str, kind: str) -> None:
    """A chain observed by a subscriber and a trace collector, stopped after a random
    number of events: every value came out or is a dead letter, the ledger balances."""
    from reflowpy.observe import Collector, SqliteStore

    rnd = random.Random(f"{mode}-{kind}")
    for run_i in range(long_scale(8)):
        spec = {"nodes": [(f"n{i}", kind, {"fail": 7} if i == 2 else {}, 0)
                          for i in range(5)],
                "edges": [(f"n{i}", f"n{i + 1}", rnd.randint(1, 3)) for i in range(4)],
                "capacity": rnd.randint(1, 3)}
        net, _ = build(spec, general=False)
        sent: list[Any] = []
        at = rnd.randrange(1, 600)
        with tempfile.TemporaryDirectory() as d:
            store = SqliteStore(Path(d) / "t.sqlite")
            sub = net.events(1_000_000)
            try:
                with trio.fail_after(60):
                    with trio.move_on_after(30) as outer:
                        async with Collector(store).record(net) as rec, net, \
                                trio.open_nursery() as nursery:
                            async def feeder(net: rf.Network = net,
                                             sent: list[Any] = sent) -> None:
                                for i in range(300):
                                    try:
                                        await net.send("in", (i, ()))
                                    except rf.NetworkStopped:
                                        return
                                    sent.append((i, ()))

                            nursery.start_soon(feeder)
                            seen = 0
                            while seen < at and not sub.closed:
                                await sub.wait()
                                seen += len(sub.take_all())
                            if mode == "forced":
                                await net.stop(drain=False)
                            elif mode == "drain_timeout":
                                await net.stop(timeout=0)
                            else:
                                outer.cancel()
                    assert net.state == "stopped"
            finally:
                store.close()
        out = net.outputs("out_n4").drain()
        # every value fed is at the end, or dead-lettered somewhere on its way
        done = {v[0] for v in out} | {d.value[0] for d in net.dead_letters()}
        assert {v[0] for v in sent} <= done, (run_i, sorted({v[0] for v in sent} - done))
        ledger = net.statistics().ledger
        assert ledger.balanced and ledger.in_flight == 0, ledger
        assert rec.lineage_mismatches == 0, (run_i, mode, kind)
