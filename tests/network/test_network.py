"""The kernel's semantic rules (DESIGN.md section 2), each with a test that fails if it breaks."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import reflowpy as rf
from reflowpy.network import events as ev

# -- actors used across tests ---------------------------------------------------------


@rf.actor(inports=["in"], outports=["out"])
def double(ctx: Any) -> dict[str, Any]:
    return {"out": ctx.inputs["in"] * 2}


@rf.actor(inports=["in"], outports=["out"])
async def async_double(ctx: Any) -> dict[str, Any]:
    return {"out": ctx.inputs["in"] * 2}


@rf.actor(inports=["in"], outports=["out"])
def passthrough(ctx: Any) -> dict[str, Any]:
    return {"out": ctx.inputs["in"]}


class Counter(rf.Actor):
    inports = ["in"]
    outports = ["count"]

    async def process(self, ctx: Any) -> None:
        ctx.state["n"] = ctx.state.get("n", 0) + 1
        await ctx.send("count", ctx.state["n"])


class Ticker(rf.Actor):
    outports = ["tick"]

    async def run(self, ctx: Any) -> None:
        for i in range(3):
            await ctx.send("tick", i)


class Join(rf.Actor):
    inports = ["a", "b"]
    outports = ["out"]
    await_all_inports = True

    async def process(self, ctx: Any) -> dict[str, Any]:
        return {"out": dict(ctx.inputs)}


class Gate(rf.Actor):
    """Blocks each activation until the test opens it: a controllable slow consumer."""

    inports = ["in"]
    outports = ["out"]
    opened: trio.Event

    async def process(self, ctx: Any) -> dict[str, Any]:
        await type(self).opened.wait()
        return {"out": ctx.inputs["in"]}


class Mutator(rf.Actor):
    inports = ["in"]
    outports = ["out"]

    async def process(self, ctx: Any) -> dict[str, Any]:
        value = ctx.inputs["in"]
        try:
            value["x"] = "changed"
        except TypeError:
            return {"out": "refused"}
        return {"out": "mutated"}


class Flaky(rf.Actor):
    """Fails the first ``fails`` activations of each value (per instance)."""

    inports = ["in"]
    outports = ["out"]
    fails = 2

    def __init__(self) -> None:
        self.seen: dict[Any, int] = {}

    async def process(self, ctx: Any) -> dict[str, Any]:
        count = self.seen.get(ctx.inputs["in"], 0)
        self.seen[ctx.inputs["in"]] = count + 1
        if count < self.fails:
            raise ValueError(f"flaky failure {count + 1}")
        return {"out": ctx.inputs["in"]}


class Boom(rf.Actor):
    inports = ["in"]
    outports = ["out"]

    async def process(self, ctx: Any) -> None:
        raise RuntimeError(f"boom on {ctx.inputs['in']}")


class Sleepy(rf.Actor):
    inports = ["in"]
    outports = ["out"]

    async def process(self, ctx: Any) -> dict[str, Any]:
        await trio.sleep(ctx.inputs["in"])
        return {"out": ctx.inputs["in"]}


def registry() -> rf.Registry:
    reg = rf.Registry()
    for name, cls in {
        "double": double, "async_double": async_double, "pass": passthrough,
        "counter": Counter, "ticker": Ticker, "join": Join, "gate": Gate,
        "mutator": Mutator, "flaky": Flaky, "boom": Boom, "sleepy": Sleepy,
    }.items():
        reg.register(name, cls)
    return reg


def chain(*components: str) -> rf.Graph:
    g = rf.Graph("chain")
    for i, component in enumerate(components):
        g.add_node(f"n{i}", component)
        if i:
            g.add_edge(f"n{i - 1}", "out", f"n{i}", "in")
    g.add_inport("input", "n0", "in")
    g.add_outport("result", f"n{len(components) - 1}", "out")
    return g


# -- the public API as written in the issue -----------------------------------------------


def test_run_helper_and_readme_api() -> None:
    g = chain("double", "async_double")
    g.add_iip(100, "n0", "in")
    assert rf.run(g, inputs={"input": [1, 2, 3]}, registry=registry()) == {
        "result": [400, 4, 8, 12]}


async def test_context_manager_send_outputs_idle() -> None:
    net = rf.Network(chain("double"), registry())
    async with net:
        await net.send("input", 5)
        await net.send(("n0", "in"), 6)
        await net.idle()
        assert net.outputs("result").drain() == [10, 12]
    assert net.state == "stopped"


async def test_outputs_iteration_ends_after_stop() -> None:
    net = rf.Network(chain("double"), registry())
    got = []
    async with trio.open_nursery() as nursery, net:

        async def read() -> None:
            async for value in net.outputs("result"):
                got.append(value)

        nursery.start_soon(read)
        for i in range(5):
            await net.send("input", i)
        await net.idle()
    assert got == [0, 2, 4, 6, 8]


async def test_owned_loop_source() -> None:
    g = rf.Graph()
    g.add_node("t", "ticker")
    g.add_node("d", "double")
    g.add_edge("t", "tick", "d", "in")
    g.add_outport("out", "d", "out")
    net = rf.Network(g, registry())
    async with net:
        await net.idle()
        assert net.outputs("out").drain() == [0, 2, 4]


# -- one instance and state per node ------------------------------------------------------


async def test_one_actor_instance_and_state_per_node() -> None:
    g = rf.Graph()
    g.add_node("c1", "counter")
    g.add_node("c2", "counter")
    g.add_inport("a", "c1", "in")
    g.add_inport("b", "c2", "in")
    g.add_outport("ca", "c1", "count")
    g.add_outport("cb", "c2", "count")
    net = rf.Network(g, registry())
    async with net:
        for _ in range(3):
            await net.send("a", "x")
        await net.send("b", "x")
        await net.idle()
        assert net.outputs("ca").drain() == [1, 2, 3]
        assert net.outputs("cb").drain() == [1]
        assert net._runners["c1"].actor is not net._runners["c2"].actor


# -- broadcast, merge, FIFO ----------------------------------------------------------------


async def test_broadcast_fan_out_and_merge_fan_in_fifo_per_connection() -> None:
    g = rf.Graph()
    g.add_node("src", "pass")
    g.add_node("a", "pass")
    g.add_node("b", "async_double")
    g.add_node("sink", "pass")
    g.add_edge("src", "out", "a", "in")
    g.add_edge("src", "out", "b", "in")
    g.add_edge("a", "out", "sink", "in")
    g.add_edge("b", "out", "sink", "in")
    g.add_inport("in", "src", "in")
    g.add_outport("out", "sink", "out")
    net = rf.Network(g, registry())
    async with net:
        for i in range(1, 51):
            await net.send("in", i)
        await net.idle()
        out = net.outputs("out").drain()
    assert sorted(out) == sorted(list(range(1, 51)) + [2 * i for i in range(1, 51)])
    from_a = [v for v in out if v <= 50 and v % 2 == 1]  # odd values only come from a
    assert from_a == sorted(from_a)
    doubled = [v for v in out if v > 50]  # only b produces values above 50
    assert doubled == sorted(doubled)


# -- backpressure -------------------------------------------------------------------------


async def test_backpressure_bounds_the_queue_and_suspends_the_sender() -> None:
    Gate.opened = trio.Event()
    g = chain("pass", "gate")
    g.edges[0].capacity = 3
    net = rf.Network(g, registry(), capacity=2)
    sent = 0
    async with net:

        async def produce() -> None:
            nonlocal sent
            for i in range(100):
                await net.send("input", i)
                sent += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            await trio.testing.wait_all_tasks_blocked()
            stats = net.statistics()["nodes"]["n1"]["inports"]["in"]
            assert stats.queued <= 3 and stats.capacity == 3
            # gate holds 1 in process + 3 queued; pass holds 2 queued; 1 in flight
            assert sent < 10
            Gate.opened.set()
        await net.idle()
        assert net.outputs("result").drain() == list(range(100))


async def test_capacity_per_port_declaration() -> None:
    class Small(rf.Actor):
        inports = [rf.Port("in", capacity=5)]
        outports = ["out"]

        async def process(self, ctx: Any) -> None:
            pass

    reg = registry()
    reg.register("small", Small)
    net = rf.Network(chain("small"), reg)
    assert net._runners["n0"].inports["in"].capacity == 5


# -- await_all_inports ----------------------------------------------------------------------


async def test_await_all_inports_pairs_fifo_without_overwriting() -> None:
    g = rf.Graph()
    g.add_node("j", "join")
    g.add_inport("a", "j", "a")
    g.add_inport("b", "j", "b")
    g.add_outport("out", "j", "out")
    net = rf.Network(g, registry())
    async with net:
        await net.send("a", 1)
        await net.send("a", 2)
        await net.send("b", 10)
        await net.send("b", 20)
        await net.idle()
        assert net.outputs("out").drain() == [{"a": 1, "b": 10}, {"a": 2, "b": 20}]


async def test_unmatched_join_input_does_not_block_idle_and_is_not_lost() -> None:
    g = rf.Graph()
    g.add_node("j", "join")
    g.add_inport("a", "j", "a")
    g.add_outport("out", "j", "out")
    net = rf.Network(g, registry())
    async with net:
        await net.send("a", 1)
        await net.idle()
    letters = net.dead_letters()
    assert [(d.node, d.port, d.value) for d in letters] == [("j", "a", 1)]


# -- immutability ---------------------------------------------------------------------------


async def test_messages_are_frozen_and_receivers_cannot_mutate() -> None:
    g = rf.Graph()
    g.add_node("m1", "mutator")
    g.add_node("m2", "mutator")
    g.add_inport("in", "m1", "in")
    g.add_edge("m1", "out", "m2", "in")  # a second receiver through a different path
    g.add_outport("o1", "m1", "out")
    net = rf.Network(g, registry())
    original = {"x": "original", "items": [1, 2]}
    async with net:
        await net.send("in", original)
        await net.idle()
        assert net.outputs("o1").drain() == ["refused"]
    assert original == {"x": "original", "items": [1, 2]}  # the sender's dict is untouched


def test_freeze_is_deep_and_cheap_for_immutables() -> None:
    frozen = rf.freeze({"a": [1, {"b": {2, 3}}]})
    assert isinstance(frozen, rf.FrozenDict)
    assert isinstance(frozen["a"], rf.FrozenList)
    assert frozen["a"][1]["b"] == frozenset({2, 3})
    assert frozen == {"a": [1, {"b": {2, 3}}]}
    with pytest.raises(TypeError):
        frozen["a"].append(3)
    with pytest.raises(TypeError):
        frozen["z"] = 1
    assert rf.freeze(frozen) is frozen
    text = "x" * 100
    assert rf.freeze(text) is text
    assert rf.thaw(frozen) == {"a": [1, {"b": frozenset({2, 3})}]}
    assert type(rf.thaw(frozen)["a"]) is list


async def test_unserializable_value_is_refused_naming_node_and_port() -> None:
    @rf.actor(inports=["in"], outports=["out"])
    def bad(ctx: Any) -> dict[str, Any]:
        return {"out": object()}

    reg = registry()
    reg.register("bad", bad)
    net = rf.Network(chain("bad"), reg)
    async with net:
        await net.send("input", 1)
        await net.idle()
    [letter] = net.dead_letters()
    assert letter.error_type == "MessageError"
    assert "node 'n0' port 'out'" in letter.error
    with pytest.raises(rf.MessageError, match="port 'p'"):
        rf.freeze({"k": object()}, where="node 'n' port 'p'")


def test_unfrozen_struct_is_refused() -> None:
    import msgspec

    class Mutable(msgspec.Struct):
        x: int

    class Frozen(msgspec.Struct, frozen=True):
        x: int

    assert rf.freeze(Frozen(1)) == Frozen(1)
    with pytest.raises(rf.MessageError, match="frozen=True"):
        rf.freeze(Mutable(1))


# -- Reflow tagged messages ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("tagged", "value"),
    [
        ({"type": "Flow"}, None),
        ({"type": "Boolean", "data": True}, True),
        ({"type": "Integer", "data": 42}, 42),
        ({"type": "Float", "data": 1.5}, 1.5),
        ({"type": "String", "data": "hi"}, "hi"),
        ({"type": "Object", "data": {"a": 1}}, {"a": 1}),
        ({"type": "Array", "data": [1, "x"]}, [1, "x"]),
        ({"type": "Bytes", "data": [1, 2, 255]}, b"\x01\x02\xff"),
    ],
)
def test_reflow_tagged_round_trip(tagged: dict[str, Any], value: Any) -> None:
    assert rf.from_reflow(tagged) == value
    assert rf.to_reflow(value) == tagged


def test_reflow_all_variants_decode() -> None:
    from reflowpy.network.message import REFLOW_VARIANTS

    samples = {
        "Flow": None, "Event": {"k": 1}, "Boolean": False, "Integer": 1, "Float": 2.0,
        "String": "s", "Object": {"a": 1}, "Array": [1], "Bytes": [1], "Stream": [2],
        "StreamHandle": {"id": "s1"}, "Encoded": [3], "Optional": None, "Any": [1, 2],
        "Error": "bad", "RemoteReference": {"network_id": "n", "actor_id": "a", "port": "p"},
        "NetworkEvent": {"event_type": "ActorRegistered", "data": None},
    }
    assert set(samples) == set(REFLOW_VARIANTS)
    for kind, data in samples.items():
        rf.from_reflow({"type": kind, "data": data})
    err = rf.from_reflow({"type": "Error", "data": "bad"})
    assert rf.to_reflow(err) == {"type": "Error", "data": "bad"}
    with pytest.raises(rf.MessageError, match="unknown Reflow message type"):
        rf.from_reflow({"type": "Nope", "data": 1})
    with pytest.raises(rf.MessageError, match="Integer"):
        rf.from_reflow({"type": "Integer", "data": "1"})


# -- lifecycle --------------------------------------------------------------------------------


async def test_idle_event_and_awaitable() -> None:
    net = rf.Network(chain("sleepy"), registry())
    sub = net.events()
    async with net:
        assert net.is_idle()
        await net.send("input", 0.01)
        assert not net.is_idle()
        await net.idle()
        assert net.outputs("result").drain() == [0.01]
    kinds = [type(e).__name__ async for e in sub]
    assert kinds[0] == "NetworkStarted"
    assert "NetworkIdle" in kinds
    assert kinds[-1] == "NetworkShutdown"


async def test_stop_drains_in_flight_messages(autojump_clock: trio.testing.MockClock) -> None:
    net = rf.Network(chain("sleepy"), registry())
    async with net:
        for _ in range(3):
            await net.send("input", 5)
    assert net.outputs("result").drain() == [5, 5, 5]
    assert trio.current_time() >= 15


async def test_forced_stop_dead_letters_queued_messages(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = rf.Network(chain("sleepy"), registry())
    await net.start()
    for _ in range(3):
        await net.send("input", 100)
    await trio.sleep(1)
    await net.stop(drain=False)
    assert net.outputs("result").drain() == []
    letters = net.dead_letters()
    # The one being processed is dead-lettered too (it was lost on main, issue 9), the
    # other two were still queued; every letter says why.
    assert len(letters) == 3
    assert [d.reason for d in letters] == ["stopped"] * 3
    assert "activation interrupted" in letters[0].error
    assert all("stopped" in d.error for d in letters)
    assert net.statistics().ledger.balanced
    with pytest.raises(rf.NetworkStopped):
        await net.send("input", 1)


async def test_no_task_left_behind_after_stop() -> None:
    before = len(trio.lowlevel.current_root_task().child_nurseries[0].child_tasks)
    net = rf.Network(chain("double", "sleepy", "pass"), registry())
    async with net:
        await net.send("input", 0)
        await net.idle()
    after = len(trio.lowlevel.current_root_task().child_nurseries[0].child_tasks)
    assert after == before
    assert net._runner_nursery is not None
    assert not net._runner_nursery.child_tasks


async def test_start_fails_cleanly_on_bad_config() -> None:
    class NeedsKey(rf.Actor):
        inports = ["in"]

        async def setup(self, ctx: Any) -> None:
            if "key" not in ctx.config:
                raise rf.ConfigError(f"node {ctx.node_id!r}: metadata key 'key' is required")

    reg = registry()
    reg.register("needs", NeedsKey)
    g = rf.Graph()
    g.add_node("n", "needs")
    net = rf.Network(g, reg)
    with pytest.raises(rf.ConfigError, match="node 'n': metadata key 'key'"):
        await net.start()
    assert net.state == "stopped"


def test_env_vars_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    from reflowpy.network.runner import resolve_config

    monkeypatch.setenv("RF_SET", "yes")
    monkeypatch.delenv("RF_MISSING", raising=False)
    config = resolve_config("n", {"env_vars": {
        "RF_SET": "required", "RF_MISSING": "optional:dflt", "RF_MISSING2": "optional"}})
    assert config["env"] == {"RF_SET": "yes", "RF_MISSING": "dflt", "RF_MISSING2": None}
    with pytest.raises(rf.ConfigError, match="'RF_MISSING' is required"):
        resolve_config("n", {"env_vars": {"RF_MISSING": "required"}})


# -- bad input is a clear error -------------------------------------------------------------


def test_unknown_component_names_node() -> None:
    g = rf.Graph("g")
    g.add_node("x", "nope/Nothing")
    with pytest.raises(rf.ComponentNotFound, match="node 'x'.*nope/Nothing"):
        rf.Network(g, registry())


def test_unknown_port_names_node_and_port() -> None:
    g = rf.Graph("g")
    g.add_node("a", "pass")
    g.add_node("b", "pass")
    g.add_edge("a", "nope", "b", "in")
    with pytest.raises(rf.PortNotFound, match="node 'a'.*out-port 'nope'"):
        rf.Network(g, registry())
    g2 = rf.Graph("g")
    g2.add_node("a", "pass")
    g2.add_iip(1, "a", "wrong")
    with pytest.raises(rf.PortNotFound, match="in-port 'wrong'"):
        rf.Network(g2, registry())


def test_bad_iip_and_duplicate_node() -> None:
    g = rf.Graph("g")
    g.add_node("a", "pass")
    with pytest.raises(rf.DuplicateNode, match="'a'"):
        g.add_node("a", "pass")
    g.add_iip(object(), "a", "in")
    with pytest.raises(rf.MessageError, match="IIP"):
        rf.run(g, registry=registry())


async def test_send_to_unknown_exported_port() -> None:
    net = rf.Network(chain("pass"), registry())
    async with net:
        with pytest.raises(rf.PortNotFound, match="'nope'.*input"):
            await net.send("nope", 1)
        with pytest.raises(rf.PortNotFound):
            net.outputs("nope")


# -- live editing -----------------------------------------------------------------------------


async def test_add_and_remove_nodes_and_edges_while_running() -> None:
    g = chain("pass")
    net = rf.Network(g, registry())
    async with net:
        await net.send("input", 1)
        await net.idle()
        g.add_node("d", "double")
        g.add_edge("n0", "out", "d", "in")
        g.add_outport("doubled", "d", "out")
        await net.send("input", 2)
        await net.idle()
        assert net.outputs("result").drain() == [1, 2]
        assert net.outputs("doubled").drain() == [4]
        g.remove_edge("n0", "out", "d", "in")
        await net.send("input", 3)
        await net.idle()
        assert net.outputs("result").drain() == [3]
        g.remove_node("d")
        assert "d" not in net._runners
        g.add_iip(7, "n0", "in")
        await net.idle()
        assert net.outputs("result").drain() == [7]


# -- failure policy ----------------------------------------------------------------------------


async def test_retry_with_backoff_succeeds(autojump_clock: trio.testing.MockClock) -> None:
    g = chain("flaky")
    g.nodes["n0"].metadata["policy"] = {"retries": 2, "backoff": 1.0}
    net = rf.Network(g, registry())
    sub = net.events()
    async with net:
        start = trio.current_time()
        await net.send("input", "v")
        await net.idle()
        assert trio.current_time() - start == pytest.approx(3.0)  # 1 s + 2 s backoff
        assert net.outputs("result").drain() == ["v"]
    failures = [e async for e in sub if isinstance(e, ev.ActorFailed)]
    assert [f.will_retry for f in failures] == [True, True]
    assert net.dead_letters() == []


async def test_exhausted_retries_dead_letter_and_resend() -> None:
    g = chain("flaky")
    g.nodes["n0"].metadata["policy"] = {"retries": 0}
    net = rf.Network(g, registry())
    async with net:
        await net.send("input", "v")
        await net.idle()
        [letter] = net.dead_letters()
        assert (letter.node, letter.port, letter.value) == ("n0", "in", "v")
        assert "flaky failure 1" in letter.error and letter.error_type == "ValueError"
        await net.resend(letter.id)  # second failure
        await net.idle()
        [letter2] = net.dead_letters()
        await net.resend(letter2.id)  # third attempt succeeds
        await net.idle()
        assert net.outputs("result").drain() == ["v"]
        assert net.dead_letters() == []


async def test_timeout_policy(autojump_clock: trio.testing.MockClock) -> None:
    g = chain("sleepy")
    g.nodes["n0"].metadata["policy"] = {"timeout": 1.0}
    net = rf.Network(g, registry())
    async with net:
        await net.send("input", 5)
        await net.send("input", 0.5)
        await net.idle()
        assert net.outputs("result").drain() == [0.5]
    [letter] = net.dead_letters()
    assert letter.error_type == "ActivationTimeout" and letter.value == 5


async def test_restart_gives_fresh_state_within_budget() -> None:
    class Fragile(rf.Actor):
        inports = ["in"]
        outports = ["out"]
        instances = 0

        def __init__(self) -> None:
            type(self).instances += 1

        async def process(self, ctx: Any) -> dict[str, Any]:
            ctx.state["n"] = ctx.state.get("n", 0) + 1
            if ctx.inputs["in"] == "crash" and ctx.state["n"] == 1 and Fragile.instances < 3:
                raise RuntimeError("crash")
            return {"out": ctx.state["n"]}

    reg = registry()
    reg.register("fragile", Fragile)
    g = chain("fragile")
    g.nodes["n0"].metadata["policy"] = {"restart": True, "max_restarts": 1}
    net = rf.Network(g, reg)
    async with net:
        await net.send("input", "ok")
        await net.send("input", "ok")
        await net.send("input", "ok")
        await net.idle()
        assert net.outputs("result").drain() == [1, 2, 3]
    assert Fragile.instances == 1


async def test_failing_actor_does_not_stop_others() -> None:
    g = rf.Graph()
    g.add_node("boom", "boom")
    g.add_node("ok", "double")
    g.add_inport("a", "boom", "in")
    g.add_inport("b", "ok", "in")
    g.add_outport("out", "ok", "out")
    net = rf.Network(g, registry())
    async with net:
        await net.send("a", 1)
        await net.send("b", 1)
        await net.send("a", 2)
        await net.send("b", 2)
        await net.idle()
        assert net.outputs("out").drain() == [2, 4]
    assert [d.value for d in net.dead_letters()] == [1, 2]


async def test_stop_policy_stops_network_and_raises() -> None:
    g = chain("boom")
    g.nodes["n0"].metadata["policy"] = {"on_failure": "stop"}
    net = rf.Network(g, registry())
    with pytest.raises(rf.ActorError, match="node 'n0'.*boom on 1"):
        async with net:
            await net.send("input", 1)
            await trio.sleep_forever()
    assert net.state == "stopped"
    assert [d.value for d in net.dead_letters()] == [1]


def test_policy_in_code_and_bad_policy_config() -> None:
    class Guarded(rf.Actor):
        inports = ["in"]
        policy = rf.Policy(retries=4)

    reg = registry()
    reg.register("guarded", Guarded)
    g = rf.Graph()
    g.add_node("n", "guarded")
    assert rf.Network(g, reg)._runners["n"].policy.retries == 4
    g.nodes["n"].metadata["policy"] = {"retries": "many"}
    with pytest.raises(rf.ConfigError, match="node 'n'.*policy"):
        rf.Network(g, reg)


# -- events -------------------------------------------------------------------------------


async def test_events_have_reflow_names_and_camel_case() -> None:
    import msgspec

    net = rf.Network(chain("double"), registry())
    sub = net.events(buffer=100)
    async with net:
        await net.send("input", 1)
        await net.idle()
    events = [e async for e in sub]
    names = {type(e).__name__ for e in events}
    assert {"NetworkStarted", "ActorStarted", "MessageReceived", "MessageSent",
            "NetworkIdle", "NetworkShutdown"} <= names
    sent = next(e for e in events if isinstance(e, ev.MessageSent))
    wire = msgspec.json.decode(msgspec.json.encode(sent))
    assert wire["_type"] == "MessageSent"
    assert {"fromActor", "fromPort", "toActor", "toPort", "timestamp", "queueDepth"} <= set(wire)


async def test_slow_observer_loses_events_and_is_told() -> None:
    net = rf.Network(chain("double"), registry())
    sub = net.events(buffer=2)
    async with net:
        for i in range(10):
            await net.send("input", i)
        await net.idle()
    assert sub.dropped > 0
    assert net.outputs("result").drain() == [2 * i for i in range(10)]


def test_no_observer_no_event_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []
    for name in ("MessageSent", "MessageReceived"):
        original = getattr(ev, name)

        def counting(*args: Any, _name: str = name, _cls: Any = original, **kw: Any) -> Any:
            built.append(_name)
            return _cls(*args, **kw)

        monkeypatch.setattr(ev, name, counting)
    graph = chain("double", "async_double")
    rf.run(graph, inputs={"input": list(range(100))}, registry=registry())
    assert built == []

    async def observed() -> None:  # the same run with a subscriber does build them
        net = rf.Network(graph, registry())
        sub = net.events()
        async with net:
            await net.send("input", 1)
            await net.idle()
        sub.close()

    trio.run(observed)
    assert "MessageSent" in built and "MessageReceived" in built


# -- subgraphs and the registry ----------------------------------------------------------------


def test_subgraph_component() -> None:
    inner = chain("double", "double")
    reg = registry()
    reg.register("quad", inner)
    g = rf.Graph("outer")
    g.add_node("q", "quad")
    g.add_node("p", "pass")
    g.add_edge("q", "result", "p", "in")
    g.add_inport("input", "q", "input")
    g.add_outport("result", "p", "out")
    assert rf.run(g, inputs={"input": [1, 2]}, registry=reg) == {"result": [4, 8]}
    info = reg.describe("quad")
    assert info.subgraph and [p.name for p in info.inports] == ["input"]


def test_registry_errors() -> None:
    reg = registry()
    with pytest.raises(rf.ComponentError, match="already registered"):
        reg.register("pass", passthrough)
    with pytest.raises(rf.ComponentError, match="expected an Actor"):
        reg.register("x", 42)  # type: ignore[arg-type]
    reg.alias("tpl_passthrough", "pass")
    assert reg.get("tpl_passthrough") is passthrough
    with pytest.raises(rf.ComponentNotFound, match="nope"):
        reg.get("nope")


async def test_drain_lets_loop_owners_flush_and_dead_letter() -> None:
    class Batcher(rf.Actor):
        inports = ["in"]
        outports = ["out"]

        async def run(self, ctx: Any) -> None:
            held: list[Any] = []
            while True:
                try:
                    _, value = await ctx.receive()
                except rf.NetworkStopped:
                    await ctx.send("out", held)
                    return
                if value == "bad":
                    ctx.dead_letter("in", value, ValueError("bad value"))
                else:
                    held.append(value)

    reg = registry()
    reg.register("batcher", Batcher)
    net = rf.Network(chain("batcher", "pass"), reg)
    async with net:
        for value in (1, "bad", 2):
            await net.send("input", value)
        await net.idle()
        assert net.outputs("result").drain() == []
    assert net.outputs("result").drain() == [[1, 2]]
    assert [(d.value, d.error) for d in net.dead_letters()] == [("bad", "bad value")]


async def test_live_renames_and_capacity_changes_follow_the_graph() -> None:
    g = chain("pass", "double")
    net = rf.Network(g, registry())
    async with net:
        g.rename_node("n1", "dbl")
        g.rename_outport("result", "doubled")
        g.rename_inport("input", "numbers")
        await net.send("numbers", 4)
        await net.idle()
        assert net.outputs("doubled").drain() == [8]
        g.set_edge_metadata("n0", "out", "dbl", "in", {"capacity": 7})
        assert net._runners["dbl"].inports["in"].capacity == 7
        with pytest.raises(rf.PortNotFound):
            await net.send("input", 1)


async def test_strict_ports_check_types_when_sending() -> None:
    @rf.actor(inports=["in"], outports=[rf.Port("out", type="integer", strict=True)])
    def strict_out(ctx: Any) -> dict[str, Any]:
        return {"out": ctx.inputs["in"]}

    @rf.actor(inports=[rf.Port("in", type="array<float>", strict=True)], outports=["out"])
    def strict_in(ctx: Any) -> dict[str, Any]:
        return {"out": sum(ctx.inputs["in"])}

    reg = registry()
    reg.register("strict_out", strict_out)
    reg.register("strict_in", strict_in)
    net = rf.Network(chain("strict_out", "pass", "strict_in"), reg)
    async with net:
        await net.send("input", 3)  # an int, but strict_in wants array<float>
        await net.idle()
        g2 = chain("pass", "strict_in")
    letters = net.dead_letters()
    assert [(d.node, d.error_type) for d in letters] == [("n1", "MessageError")]
    assert "node 'n2' port 'in' is strict (array<float>)" in letters[0].error
    net2 = rf.Network(g2, reg)
    async with net2:
        await net2.send("input", [1, 2.5])
        await net2.send("input", ["x"])
        await net2.idle()
        assert net2.outputs("result").drain() == [3.5]
    assert [d.value for d in net2.dead_letters()] == [["x"]]
    net3 = rf.Network(chain("strict_out"), reg)
    async with net3:
        await net3.send("input", "seven")
        await net3.send("input", 7)
        await net3.idle()
        assert net3.outputs("result").drain() == [7]
    [letter] = net3.dead_letters()
    assert "port 'out' is strict (integer) and cannot send a str" in letter.error


def test_port_type_accepts() -> None:
    from reflowpy.network.porttypes import accepts

    assert accepts("any", object()) and accepts("flow", None)
    assert accepts("integer", 1) and not accepts("integer", True) and not accepts("integer", 1.0)
    assert accepts("float", 1) and accepts("float", 1.5) and not accepts("float", "1")
    assert accepts("optional<string>", None) and accepts("optional<string>", "s")
    assert accepts("array<integer>", rf.freeze([1, 2])) and not accepts("array<integer>", [1, "2"])
    assert accepts("object", rf.freeze({"a": 1})) and not accepts("object", [1])
    assert accepts("bytes", b"x") and not accepts("bytes", "x")
