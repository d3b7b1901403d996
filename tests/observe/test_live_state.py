"""Busy / backpressured / idle derived from the counters, and the root-cause hint, on a
network really stalled behind a slow node (held on an event: no sleeps)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import reflowpy as rf
from reflowpy.observe.live import Monitor
from reflowpy.observe.stats import StateTracker, snapshot

GATE: dict[str, trio.Event] = {}


class Source(rf.Actor):
    outports = ["out"]

    async def run(self, ctx: Any) -> None:
        for i in range(int(ctx.config["n"])):
            await ctx.send("out", i)


@rf.actor(inports=["in"], outports=["out"])
def passthrough(ctx: rf.ActorContext) -> dict[str, Any]:
    return {"out": ctx.inputs["in"]}


class Slow(rf.Actor):
    """Holds its first message until the test opens the gate."""

    inports = ["in"]
    outports = ["out"]

    async def process(self, ctx: Any) -> dict[str, Any]:
        await GATE["slow"].wait()
        return {"out": ctx.inputs["in"]}


def _graph(n: int) -> tuple[rf.Graph, rf.Registry]:
    reg = rf.Registry()
    reg.register("t/Source", Source)
    reg.register("t/Pass", passthrough)
    reg.register("t/Slow", Slow)
    g = rf.Graph("stall")
    g.add_node("src", "t/Source", {"n": n})
    g.add_node("a", "t/Pass")
    g.add_node("slow", "t/Slow")
    g.add_node("b", "t/Pass")
    g.add_edge("src", "out", "a", "in", capacity=4)
    g.add_edge("a", "out", "slow", "in", capacity=4)
    g.add_edge("slow", "out", "b", "in", capacity=4)
    g.add_outport("out", "b", "out")
    return g, reg


async def test_root_cause_is_the_busy_node_behind_backpressure() -> None:
    GATE["slow"] = trio.Event()
    g, reg = _graph(1000)
    clock = [0.0]
    net = rf.Network(g, reg, output_capacity=10_000)
    async with net:
        tracker = StateTracker(net, clock=lambda: clock[0])
        tracker.update()
        # the network can do nothing more until the gate opens: it stalls for real
        while not (net._runners["src"].waiter is None and all(
                p.queued >= p.capacity for s in snapshot(net).values() for p in s.inports
                if s.node in ("a", "slow"))):
            await trio.testing.wait_all_tasks_blocked()
        clock[0] = 1.0
        states = tracker.update()
        assert states["slow"].state == "busy"
        assert states["a"].state == "backpressured"
        assert states["src"].state == "backpressured"
        assert states["b"].state == "idle"
        assert tracker.root_cause(["src", "a", "slow", "b"]) == "slow"
        # times are the kernel's clocks: a block still under way counts, and grows
        bp = {n: states[n].backpressured_s for n in ("src", "a")}
        assert all(v > 0 for v in bp.values())
        assert states["b"].backpressured_s == 0.0 and states["slow"].backpressured_s == 0.0
        slow_busy = states["slow"].busy_s
        assert slow_busy > 0  # awaiting inside process(): not parked, so busy
        assert 0.5 < states["b"].idle_s <= 1.0  # the interval less b's (tiny) busy time
        kernel = net.statistics().nodes
        assert kernel["a"].backpressured_s >= bp["a"]
        states = tracker.update()
        assert states["a"].backpressured_s > bp["a"] and states["slow"].busy_s > slow_busy
        assert states["a"].state == "backpressured"
        view = Monitor(lambda: {"stall": net}).view("stall")
        assert view is not None and view["rootCause"] == "slow"
        fills = {(e["from"], e["to"]): e["fill"] for e in view["edges"]}
        assert fills[("a", "slow")] == 1.0 and fills[("slow", "b")] == 0.0
        GATE["slow"].set()
        await net.idle()
        clock[0] = 2.0
        tracker.update()
        clock[0] = 3.0
        states = tracker.update()
        assert {st.state for st in states.values()} == {"idle"}
        assert tracker.root_cause(["src", "a", "slow", "b"]) is None
    assert len(net.outputs("out").drain()) == 1000


class Reporter(rf.Actor):
    """Says what it is doing in its status line (Node-RED's node status)."""

    inports = ["in"]
    outports = ["out"]

    async def process(self, ctx: Any) -> dict[str, Any]:
        ctx.status(f"working on {ctx.inputs['in']}\n\x1b[2J" + "x" * 500)
        await GATE["reporter"].wait()
        ctx.status("done")
        return {"out": ctx.inputs["in"]}


async def test_ctx_status_reaches_statistics_and_the_live_view() -> None:
    GATE["reporter"] = trio.Event()
    reg = rf.Registry()
    reg.register("t/Reporter", Reporter)
    g = rf.Graph("status")
    g.add_node("r", "t/Reporter")
    g.add_inport("in", "r", "in")
    g.add_outport("out", "r", "out")
    with trio.fail_after(30):
        async with rf.Network(g, reg) as net:
            assert net.statistics().nodes["r"].status == ""
            await net.send("in", 7)
            await trio.testing.wait_all_tasks_blocked()
            line = net.statistics().nodes["r"].status
            # one line, no control characters, cut at 200 characters
            assert line.startswith("working on 7 [2J") and "\n" not in line
            assert "\x1b" not in line
            assert len(line) == 200 and line.endswith("...")
            view = Monitor(lambda: {"status": net}).view("status")
            assert view is not None and view["nodes"][0]["status"] == line
            GATE["reporter"].set()
            assert await net.outputs("out").receive() == 7
            assert net.statistics().nodes["r"].status == "done"
            with pytest.raises(TypeError, match="ctx.status\\(\\) takes a str"):
                net._runners["r"].ctx.status(42)  # type: ignore[arg-type]
