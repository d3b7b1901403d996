"""Issue 15: operator chaining changes nothing but cost.

Random linear chains of plain-``def`` and ``async def`` stages (failing stages, retries,
state, drops, ``ctx.send``, results for unconnected ports, an async stage that suspends,
queues of 1-4) run twice, chained and with ``Network(chain=False)``: the same outputs in
order, the same dead letters, the same per-node counters and state, a balanced ledger.
A pin test checks that the chained run really chains. Live edits, stops and
cancellation while chained are covered by test_network_live_fuzz.py and
test_batch_handover.py, which run chained by default.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import reflowpy as rf
from reflowpy.network import chain as chain_mod
from tests.scale import long_scale

_SEEN: dict[tuple[str, str], set[int]] = {}


def _step(ctx: Any) -> dict[str, Any] | None:
    v = ctx.inputs["in"]
    mode = ctx.config.get("fail", "")
    if v % 13 == 6:
        seen = _SEEN.setdefault((ctx.config["run"], ctx.node_id), set())
        if mode == "always" or (mode == "once" and v not in seen):
            seen.add(v)
            raise ValueError(f"fails on {v}")
    ctx.state["n"] = ctx.state.get("n", 0) + 1
    if v % 5 == 1 and ctx.config.get("drop"):
        return None
    if v % 17 == 9 and ctx.config.get("two"):
        return {"out": v + 1, "side": v}  # two entries: off the fast path
    return {"out": v + 1}


@rf.actor(inports=["in"], outports=["out", "side"])
def dstage(ctx: Any) -> dict[str, Any] | None:
    return _step(ctx)


@rf.actor(inports=["in"], outports=["out", "side"])
async def astage(ctx: Any) -> dict[str, Any] | None:
    v = ctx.inputs["in"]
    if ctx.config.get("sleep") and v % 7 == 2:
        await trio.sleep(0)  # suspends: the chain splits here
    if ctx.config.get("send") and v % 11 == 4:
        await ctx.send("side", v)  # held back: off the fast path
    return _step(ctx)


class Feeder(rf.Actor):
    inports = ["in"]
    outports = ["out"]

    async def run(self, ctx: Any) -> None:
        while True:
            _, values = await ctx.receive()
            for v in values:
                await ctx.send("out", v)


def _registry() -> rf.Registry:
    reg = rf.Registry()
    reg.register("c/D", dstage)
    reg.register("c/A", astage)
    reg.register("c/Feeder", Feeder)
    return reg


spec = st.fixed_dictionaries({
    "async": st.booleans(),
    "fail": st.sampled_from(["", "", "", "always", "once"]),
    "retries": st.sampled_from([0, 0, 0, 1]),
    "capacity": st.sampled_from([None, None, 1, 2, 3, 4]),
    "drop": st.booleans(),
    "sleep": st.sampled_from([False, False, True]),
    "send": st.sampled_from([False, False, True]),
    "two": st.sampled_from([False, False, True]),
})

_RUNS = iter(range(10**9))
_COUNTERS = ("activations", "failures", "taken", "delivered", "dead_lettered",
             "in_activation", "queued", "messages_out")


def _graph(specs: list[dict[str, Any]], run: str) -> rf.Graph:
    g = rf.Graph("chain")
    g.add_node("feed", "c/Feeder")
    g.add_inport("input", "feed", "in")
    prev = "feed"
    for i, s in enumerate(specs):
        g.add_node(f"s{i}", "c/A" if s["async"] else "c/D", metadata={
            "fail": s["fail"], "run": run, "drop": s["drop"], "sleep": s["sleep"],
            "send": s["send"], "two": s["two"],
            "policy": {"retries": s["retries"], "backoff": 0.0}})
        g.add_edge(prev, "out", f"s{i}", "in", capacity=s["capacity"])
        prev = f"s{i}"
    g.add_outport("result", prev, "out")
    return g


async def _run(specs: list[dict[str, Any]], values: list[int], chained: bool,
               run: str, events: bool) -> dict[str, Any]:
    g = _graph(specs, run)
    seen: list[Any] = []
    with trio.fail_after(60):
        async with rf.Network(g, _registry(), output_capacity=10**6, chain=chained) as net:
            sub = net.events(buffer=10**6) if events else None
            for phase in (values[0::2], values[1::2]):
                await net.send("input", phase)
                await net.idle()
            out = net.outputs("result").drain()
            stats = net.statistics()
            nodes = {n: ({k: getattr(s, k) for k in _COUNTERS},
                         {p: x.total for p, x in s.inports.items()},
                         {p: (x.sent, x.unconnected) for p, x in s.outports.items()},
                         dict(net._runners[n].ctx.state))
                     for n, s in stats.nodes.items()}
            dead = sorted((d.node, d.port, repr(d.value), d.reason)
                          for d in net.dead_letters())
            ledger = stats.ledger
            if sub is not None:
                seen = [(type(e).__name__, getattr(e, "actor_id", None),
                         getattr(e, "port", None)) for e in sub._buffer]
                sub.close()
    assert ledger.balanced and ledger.in_flight == 0, ledger
    return {"out": out, "nodes": nodes, "dead": dead,
            "events": sorted(map(repr, seen)) if events else None}


@settings(max_examples=long_scale(120), deadline=None)
@given(specs=st.lists(spec, min_size=1, max_size=6),
       values=st.lists(st.integers(0, 300), min_size=5, max_size=120, unique=True))
def test_chained_equals_unchained(specs: list[dict[str, Any]], values: list[int]) -> None:
    run = str(next(_RUNS))
    chained = trio.run(_run, specs, values, True, run + "c", False)
    plain = trio.run(_run, specs, values, False, run + "p", False)
    assert chained["out"] == plain["out"]
    assert chained["dead"] == plain["dead"]
    assert chained["nodes"] == plain["nodes"]


@pytest.mark.parametrize("is_async", [False, True])
def test_chained_run_chains_and_keeps_counts(is_async: bool) -> None:
    # The property compares two runs; this pins that one of them chains (else it
    # compares one path twice): 2000 values through 5 def stages run in chains.
    runs: list[int] = []
    orig = chain_mod.run

    async def counting(stages: list[Any], n: int) -> int:
        runs.append(len(stages))
        return await orig(stages, n)

    chain_mod.run = counting  # type: ignore[assignment]
    try:
        # an async head, plain def stages after it (async stages are not claimed)
        specs = [{"async": is_async and i == 0, "fail": "", "retries": 0, "capacity": None,
                  "drop": False, "sleep": False, "send": False, "two": False} for i in range(5)]
        got = trio.run(_run, specs, list(range(2000)), True, "pin", False)
    finally:
        chain_mod.run = orig  # type: ignore[assignment]
    assert runs and min(runs) == max(runs) == 5, runs  # never split
    assert len(runs) < 200, len(runs)  # batches, not one chain run per value
    assert got["nodes"]["s4"][0]["activations"] == 2000


def test_subscribed_runs_report_the_same_events() -> None:
    specs = [{"async": i % 2 == 0, "fail": "once" if i == 1 else "", "retries": 1,
              "capacity": 2, "drop": True, "sleep": False, "send": False, "two": True}
             for i in range(4)]
    values = list(range(60))
    a = trio.run(_run, specs, values, True, "ev-c", True)
    b = trio.run(_run, specs, values, False, "ev-p", True)
    assert a["events"] == b["events"] and a["out"] == b["out"]


@pytest.mark.parametrize("seed", range(4))
def test_an_async_stage_that_sleeps_after_a_chain_head_under_a_host(seed: int) -> None:
    """A ``def`` head chained to ``time/Delay`` (an async stage that sleeps in a cancel
    scope of its own): stepping the stage in the head's task and resuming it under a
    new shielded scope corrupted trio's cancel-scope stack (the server's kill -9 test
    hung). Async stages are no longer claimed; the host here is the server's
    ExecutionManager, as in that test."""
    import random
    import tempfile
    from pathlib import Path

    from reflowpy.server.executions import ExecutionManager
    from reflowpy.server.graphs import graph_text, load_graph
    from reflowpy.server.schemas import ExecutionPolicy
    from reflowpy.server.storage import Storage
    from tests.server.test_durability import SLOW
    from tests.server.testkit import test_registry

    async def main() -> None:
        rng = random.Random(seed)
        storage = Storage(Path(tempfile.mkdtemp()) / "data")
        async with trio.open_nursery() as nursery:
            manager = ExecutionManager(test_registry(), storage, nursery)
            graph = load_graph(SLOW)
            ex = await manager.start(graph, graph_text=graph_text(graph),
                                     policy=ExecutionPolicy(restart="always"))
            sent = 0
            for _ in range(150):
                batch = [sent + k for k in range(rng.randint(1, 5))]
                with trio.fail_after(10):
                    await manager.accept(ex, "x", batch)
                sent += len(batch)
                if rng.random() < 0.2:
                    await trio.sleep(rng.random() * 0.005)
            assert ex.net is not None
            with trio.fail_after(20):
                while not ex.net.is_idle():
                    await trio.sleep(0.005)
            ledger = ex.net.statistics().ledger
            assert ledger.balanced and ledger.in_flight == 0, ledger
            assert ex.net.statistics().nodes["z"].delivered == sent
            nursery.cancel_scope.cancel()

    trio.run(main)
