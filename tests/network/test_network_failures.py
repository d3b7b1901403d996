"""Issue 9: failure-policy gaps (blocking behaviours, return values, held-back outputs,
state rollback) and typed statistics. "Fails on main" notes the behaviour on e778cd8."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
import trio

import reflowpy as rf
from reflowpy.network import events as ev


def one(component: str, reg: rf.Registry, metadata: dict[str, Any] | None = None) -> rf.Graph:
    g = rf.Graph("one")
    g.add_node("n", component, metadata or {})
    g.add_inport("input", "n", "in")
    g.add_outport("result", "n", "out")
    return g


def drain_events(sub: rf.EventSubscription) -> list[Any]:
    got = []
    while True:
        try:
            got.append(sub.get_nowait())
        except trio.WouldBlock:
            return got


# -- return values -------------------------------------------------------------------


@pytest.mark.parametrize("bad", [1, "x", [1], 0, [], (), (x for x in [1]), 0.0])
@pytest.mark.parametrize("observed", [False, True])
async def test_non_mapping_result_is_an_actor_error_naming_node_and_type(
    bad: Any, observed: bool,
) -> None:
    """Fails on main: raw AttributeError unobserved, falsy values silently ignored."""

    @rf.actor(inports=["in"], outports=["out"])
    def returns_bad(ctx: Any) -> Any:
        return bad

    reg = rf.Registry()
    reg.register("t/Bad", returns_bad)
    net = rf.Network(one("t/Bad", reg), reg)
    sub = net.events(10_000) if observed else None
    async with net:
        await net.send("input", 1)
        await net.idle()
    [letter] = net.dead_letters()
    assert letter.error_type == "ActorError"
    assert "'n'" in letter.error and type(bad).__name__ in letter.error
    assert "must return a mapping" in letter.error
    if sub is not None:
        failed = [e for e in drain_events(sub) if isinstance(e, ev.ActorFailed)]
        assert failed and failed[0].error_type == "ActorError"
        assert "Traceback" in failed[0].traceback


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("kind", ["def", "async"])
@pytest.mark.parametrize("observed", [False, True])
async def test_a_value_nested_past_the_recursion_limit_is_a_message_error(
    kind: str, observed: bool,
) -> None:
    """Freezing a value nested ~500 deep raised RecursionError out of the kernel: from
    `net.send` it crashed `reflowpy run --input`, from a node it was no MessageError."""
    deep = _nested(5000)
    with pytest.raises(rf.MessageError, match="nested more deeply"):
        rf.freeze(deep, where="node 'n' port 'out'")
    if kind == "def":
        @rf.actor(inports=["in"], outports=["out"])
        def nests(ctx: Any) -> Any:
            return {"out": _nested(ctx.inputs["in"])}
    else:
        @rf.actor(inports=["in"], outports=["out"])
        async def nests(ctx: Any) -> Any:
            await ctx.send("out", _nested(ctx.inputs["in"]))
            return None

    reg = rf.Registry()
    reg.register("t/Nests", nests)
    net = rf.Network(one("t/Nests", reg), reg)
    sub = net.events(10_000) if observed else None
    async with net:
        with pytest.raises(rf.MessageError, match="input 'input'.*nested more deeply"):
            await net.send("input", deep)
        await net.send("input", 5000)
        await net.send("input", 3)
        await net.idle()
        assert net.outputs("result").drain() == [[[[[]]]]]
        assert net.statistics().ledger.balanced
    [letter] = net.dead_letters()
    assert letter.error_type == "MessageError" and "nested more deeply" in letter.error
    if sub is not None:
        assert any(isinstance(e, ev.ActorFailed) for e in drain_events(sub))


# -- held-back outputs and state rollback --------------------------------------------------


class SendsThenFails(rf.Actor):
    """Sends two outputs, then fails the first time it sees a value."""

    inports = ["in"]
    outports = ["out"]
    seen: set[Any] = set()

    async def process(self, ctx: Any) -> None:
        value = ctx.inputs["in"]
        await ctx.send("out", ("a", value))
        await ctx.send("out", ("b", value))
        if value not in type(self).seen:
            type(self).seen.add(value)
            raise RuntimeError("after sending")


async def test_outputs_of_a_failed_activation_are_held_back_so_resend_never_duplicates() -> None:
    """Fails on main: the outputs sent before the failure were delivered, and the
    re-sent dead letter delivered them again."""
    SendsThenFails.seen = set()
    reg = rf.Registry()
    reg.register("t/S", SendsThenFails)
    async with rf.Network(one("t/S", reg), reg) as net:
        await net.send("input", 1)
        await net.idle()
        assert net.outputs("result").drain() == []
        [letter] = net.dead_letters()
        await net.resend(letter.id)
        await net.idle()
        assert net.outputs("result").drain() == [("a", 1), ("b", 1)]


class CountsThenFails(rf.Actor):
    inports = ["in"]
    outports = ["out"]
    policy = rf.Policy(retries=2, backoff=0)

    async def process(self, ctx: Any) -> dict[str, Any]:
        ctx.state["n"] = ctx.state.get("n", 0) + 1
        ctx.state["attempts"] = ctx.state.get("attempts", 0) + 1
        if ctx.state["attempts"] < 3:
            raise RuntimeError("flaky")
        ctx.state["attempts"] = 0
        return {"out": ctx.state["n"]}


async def test_state_of_a_failed_activation_is_rolled_back_before_the_retry() -> None:
    """Fails on main: the counter double-counted (3 for the first message)."""
    reg = rf.Registry()
    reg.register("t/C", CountsThenFails)
    async with rf.Network(one("t/C", reg), reg) as net:
        await net.send("input", "x")
        await net.send("input", "y")
        await net.idle()
    # Each attempt's changes are undone before the retry, so "attempts" never reaches 3
    # and each message fails for good; "n" is never double-counted.
    letters = net.dead_letters()
    assert len(letters) == 2
    assert net.outputs("result").drain() == []


class CountsFailsOnce(rf.Actor):
    inports = ["in"]
    outports = ["out"]
    policy = rf.Policy(retries=1, backoff=0)
    failed: set[Any] = set()

    async def process(self, ctx: Any) -> dict[str, Any]:
        ctx.state["n"] = ctx.state.get("n", 0) + 1
        value = ctx.inputs["in"]
        if value not in type(self).failed:
            type(self).failed.add(value)
            raise RuntimeError("once")
        return {"out": ctx.state["n"]}


async def test_retry_sees_the_state_from_before_the_failed_attempt() -> None:
    """Fails on main: outputs were [2, 4] (each failed attempt's increment persisted)."""
    CountsFailsOnce.failed = set()
    reg = rf.Registry()
    reg.register("t/C", CountsFailsOnce)
    async with rf.Network(one("t/C", reg), reg) as net:
        for v in ("x", "y"):
            await net.send("input", v)
        await net.idle()
    assert net.outputs("result").drain() == [1, 2]


# -- blocking behaviours ---------------------------------------------------------------


@rf.actor(inports=["in"], outports=["out"], policy=rf.Policy(timeout=0.05))
def blocks(ctx: Any) -> dict[str, Any]:
    time.sleep(0.2)
    return {"out": ctx.inputs["in"]}


@rf.actor(inports=["in"], outports=["out"],
          policy=rf.Policy(timeout=5, offload=True))
def blocks_offloaded(ctx: Any) -> dict[str, Any]:
    time.sleep(0.5)
    return {"out": ctx.inputs["in"]}


class Ticker(rf.Actor):
    outports = ["tick"]

    async def run(self, ctx: Any) -> None:
        while True:
            await trio.sleep(0.01)
            await ctx.send("tick", trio.current_time())


async def test_blocking_def_over_its_timeout_is_reported_as_activation_timeout() -> None:
    """Fails on main: Policy(timeout) on a blocking plain def was silently ignored."""
    reg = rf.Registry()
    reg.register("t/Blocks", blocks)
    net = rf.Network(one("t/Blocks", reg), reg)
    sub = net.events()
    async with net:
        await net.send("input", 1)
        await net.idle()
    [letter] = net.dead_letters()
    assert letter.error_type == "ActivationTimeout" and letter.reason == "timeout"
    assert "offload" in letter.error
    failed = [e for e in drain_events(sub) if isinstance(e, ev.ActorFailed)]
    assert failed[0].reason == "timeout"


@pytest.mark.parametrize("offload", [False, True])
async def test_offloaded_blocking_behaviour_does_not_freeze_a_ticking_neighbour(
    offload: bool,
) -> None:
    reg = rf.Registry()
    reg.register("t/Block", blocks_offloaded if offload else blocks)
    reg.register("t/Ticker", Ticker)
    g = one("t/Block", reg)
    g.add_node("tick", "t/Ticker")
    g.add_outport("ticks", "tick", "tick")
    async with rf.Network(g, reg) as net:
        started = trio.current_time()
        await net.send("input", 1)
        with trio.move_on_after(0.45):
            await net.outputs("result").receive()
        ticks = net.outputs("ticks").drain()
        await net.stop(drain=False)
    assert ticks
    first = ticks[0] - started
    if offload:  # the ticker kept ticking while the call blocked in its thread
        gaps = [b - a for a, b in itertools.pairwise(ticks)]
        assert first < 0.15 and len(ticks) >= 5 and max(gaps) < 0.3, ticks
    else:  # the trio thread was frozen for the 0.2 s call: no tick before it ended
        assert first >= 0.15, ticks


def test_offload_needs_a_plain_def() -> None:
    @rf.actor(inports=["in"], outports=["out"], policy=rf.Policy(offload=True))
    async def asyncy(ctx: Any) -> None:
        return None

    reg = rf.Registry()
    reg.register("t/A", asyncy)
    with pytest.raises(rf.ConfigError, match="offload"):
        rf.Network(one("t/A", reg), reg)


# -- statistics ----------------------------------------------------------------------------


class Loop(rf.Actor):
    inports = ["in"]
    outports = ["out"]

    async def run(self, ctx: Any) -> None:
        while True:
            _, value = await ctx.receive()
            await ctx.send("out", value)


async def test_statistics_are_typed_and_count_run_actors_and_high_water() -> None:
    """Fails on main: dicts, activations 0 for run() actors, high_water only updated
    when statistics() was called."""
    reg = rf.Registry()
    reg.register("t/Loop", Loop)
    async with rf.Network(one("t/Loop", reg), reg, capacity=8) as net:
        for i in range(5):
            await net.send("input", i)  # queued before the loop runs: depth grows to 5
        await net.idle()
        stats = net.statistics()
    assert isinstance(stats, rf.NetworkStatistics)
    node = stats.nodes["n"]
    assert isinstance(node, rf.NodeStatistics)
    assert node.activations == 5 and node.taken == 5 and node.delivered == 5
    assert node.messages_out == 5
    assert node.inports["in"].high_water == 5
    assert stats.ledger.balanced and stats.ledger.accepted == 5
    assert sum(node.latency) == 0  # run() actors have no per-activation latency
    assert node.busy_s >= 0.0
    import msgspec

    assert msgspec.json.decode(msgspec.json.encode(stats))["ledger"]["accepted"] == 5


# -- the registry on the context, and reflowpy.testing ------------------------------------


async def test_flow_retry_resolves_components_in_the_networks_registry() -> None:
    """Fails on main: flow/Retry looked in a fresh default_registry() and could not find
    a component registered only in the network's registry."""
    from reflowpy.testing import run_node

    calls = {"n": 0}

    @rf.actor(inports=["in"], outports=["out"])
    def flaky(ctx: Any) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] < 2:
            raise RuntimeError("flaky")
        return {"out": ctx.inputs["in"]}

    reg = rf.default_registry()
    reg.register("mine/Flaky", flaky)
    got = await run_node("flow/Retry", {"in": ["ok"]}, registry=reg,
                         config={"component": "mine/Flaky", "retries": 2, "backoff": 0},
                         outports=["out"])
    assert got["out"] == ["ok"] and calls["n"] == 2


def test_standard_components_come_from_the_entry_point() -> None:
    import importlib.metadata

    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="reflowpy.components")}
    assert eps.get("standard") == "reflowpy.components:register_all"
    assert "core/Repeat" in rf.default_registry()
    import ast
    import pathlib

    kernel = pathlib.Path(rf.__file__).parent / "network"
    for path in kernel.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(("reflowpy.components", "reflowpy.script",
                                                   "reflowpy.server")), path
            if isinstance(node, ast.ImportFrom) and node.module == "reflowpy":
                assert all(a.name not in ("components", "script") for a in node.names), path


async def test_testing_timeline_under_mock_clock(autojump_clock: Any) -> None:
    from reflowpy.testing import run_node, timeline

    got = await run_node(_Double, {"in": [1, 2]}, registry=rf.Registry())
    assert got["out"] == [2, 4] and got.dead_letters == []
    reg = rf.Registry()
    reg.register("t/Delay", _Delay)
    g = rf.Graph("t")
    g.add_node("d", "t/Delay")
    g.add_inport("in", "d", "in")
    g.add_outport("out", "d", "out")
    events = await timeline(g, [(0.0, "in", "a"), (5.0, "in", "b")], registry=reg)
    assert events == [(1.0, "out", "a"), (6.0, "out", "b")]


@rf.actor(inports=["in"], outports=["out"])
def _Double(ctx: Any) -> dict[str, Any]:
    return {"out": ctx.inputs["in"] * 2}


@rf.actor(inports=["in"], outports=["out"])
async def _Delay(ctx: Any) -> dict[str, Any]:
    await trio.sleep(1.0)
    return {"out": ctx.inputs["in"]}


class _HalfSetUp(rf.Actor):
    """Sets ``self.open`` only when its setup succeeds; teardown needs it."""

    inports = ["in"]
    outports = ["out"]
    torn: list[str] = []

    async def setup(self, ctx: rf.ActorContext) -> None:
        if ctx.config.get("fail"):
            raise rf.ConfigError(f"node {ctx.node_id!r}: refused")
        self.open = True

    async def process(self, ctx: rf.ActorContext) -> None:
        await ctx.send("out", ctx.inputs["in"])

    async def teardown(self, ctx: rf.ActorContext) -> None:
        assert self.open
        _HalfSetUp.torn.append(ctx.node_id)


async def test_a_node_whose_setup_failed_is_not_torn_down() -> None:
    # time/Window's teardown reported "'Window' object has no attribute 'open'" after
    # its setup had refused a bad config: teardown ran on what was never set up.
    reg = rf.default_registry()
    reg.register("t/Half", _HalfSetUp)
    _HalfSetUp.torn.clear()
    g = rf.Graph("half")
    g.add_node("good", "t/Half")
    g.add_node("bad", "t/Half", {"fail": True})
    g.add_edge("good", "out", "bad", "in")
    net = rf.Network(g, reg)
    with pytest.raises(rf.ConfigError, match="refused"):
        async with net:
            pass  # pragma: no cover - refused on entry
    assert _HalfSetUp.torn == ["good"]
    assert not [e for e in net.errors if "teardown" in str(e)], net.errors
    # A node added live whose setup fails is not torn down at the stop either.
    _HalfSetUp.torn.clear()
    g2 = rf.Graph("live")
    g2.add_node("good", "t/Half")
    async with rf.Network(g2, reg) as live:
        g2.add_node("late", "t/Half", {"fail": True})
        await live.idle()
    assert _HalfSetUp.torn == ["good"]
    assert [e for e in live.errors if "refused" in str(e)]
    assert not [e for e in live.errors if "teardown" in str(e)], live.errors


class _NurseryLoop(rf.Actor):
    """Owns its loop and receives in a task of its own nursery (as net/HttpServer and
    any server-like component do), so the stop reaches it inside an ExceptionGroup."""

    inports = ["in"]
    outports = ["out"]

    async def run(self, ctx: rf.ActorContext) -> None:
        async def pump() -> None:
            while True:
                _, value = await ctx.receive("in")
                if value == "boom":
                    raise KeyError("boom")
                await ctx.send("out", value)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump)


@pytest.mark.parametrize("fail", [False, True])
async def test_a_stop_seen_inside_the_actors_own_nursery_is_no_failure(fail: bool) -> None:
    # net/HttpServer reported "failed: ExceptionGroup: Exceptions from Trio nursery
    # (1 sub-exception)" at every clean stop: NetworkStopped arrived wrapped.
    reg = rf.default_registry()
    reg.register("t/NurseryLoop", _NurseryLoop)
    g = one("t/NurseryLoop", reg)
    async with rf.Network(g, reg) as net:
        await net.send("input", 1)
        assert await net.outputs("result").receive() == 1
        if fail:
            await net.send("input", "boom")
            await net.idle()
    errors = [str(e) for e in net.errors]
    if fail:  # a real failure names what the task raised, not the group
        assert len(errors) == 1 and "failed: KeyError: 'boom'" in errors[0], errors
    else:
        assert errors == []
