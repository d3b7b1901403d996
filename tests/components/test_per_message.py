"""Standard components as plain-``def`` steps (PerMessage): the same outputs, errors,
dead letters, restarts and config errors as when they were ``async def process``, in a
real network, with and without observers (the kernel's fast and observed paths)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reflowpy as rf
from reflowpy.components import transform
from reflowpy.network.message import FrozenDict, FrozenList, freeze, freeze_decoded
from tests.components.helpers import REGISTRY, config_error, run_node
from tests.scale import long_scale

PURE = ["transform/Map", "transform/Expression", "transform/Filter", "transform/Pick",
        "transform/Set", "transform/Template", "transform/JsonParse",
        "transform/JsonStringify", "transform/Validate"]


@pytest.mark.parametrize("name", PURE)
def test_declares_a_config_struct_with_a_schema(name: str) -> None:
    cls = REGISTRY.get(name)
    assert issubclass(cls.Config, msgspec.Struct)  # type: ignore[attr-defined]
    schema = msgspec.json.schema(cls.Config)  # type: ignore[attr-defined]
    assert schema["$defs"]["Config"]["type"] == "object"
    assert cls.behaviour_is_async is False  # type: ignore[attr-defined]


async def _chain(nodes: list[tuple[str, dict[str, Any]]], values: list[Any], *,
                 observe: bool = False, policy: dict[str, Any] | None = None,
                 ) -> tuple[list[Any], rf.Network]:
    g = rf.Graph("chain")
    prev = None
    for i, (component, config) in enumerate(nodes):
        meta = dict(config)
        if policy is not None:
            meta["policy"] = policy
        g.add_node(f"n{i}", component, meta)
        if prev is None:
            g.add_inport("in", f"n{i}", "in")
        else:
            g.add_edge(prev, "out", f"n{i}", "in")
        prev = f"n{i}"
    g.add_outport("out", prev, "out")  # type: ignore[arg-type]
    net = rf.Network(g, REGISTRY, output_capacity=100_000)
    async with net:
        events = net.events(100_000) if observe else None
        for v in values:
            await net.send("in", v)
        await net.idle()
        got = net.outputs("out").drain()
    if events is not None:
        events.close()
    return got, net


W6 = [("transform/JsonParse", {}),
      ("transform/Filter", {"expression": "level == 'error' or latency > 100"}),
      ("transform/Map", {"expression": "{'ts': ts, 'service': service, 'latency': latency}"})]


@settings(max_examples=long_scale(40), deadline=None)
@given(st.lists(st.fixed_dictionaries({
    "ts": st.integers(0, 10**6), "level": st.sampled_from(["info", "error", "warn"]),
    "service": st.sampled_from(["a", "b"]), "latency": st.integers(0, 300),
    "tags": st.lists(st.sampled_from(["x", "y"]), max_size=2)}), max_size=30),
    st.booleans())
async def test_chain_of_plain_steps_matches_python(records: list[dict[str, Any]],
                                                   observe: bool) -> None:
    lines = [json.dumps(r) for r in records] + ["{not json"]
    got, net = await _chain(W6, lines, observe=observe)
    want = [{"ts": r["ts"], "service": r["service"], "latency": r["latency"]}
            for r in records if r["level"] == "error" or r["latency"] > 100]
    assert got == want
    assert all(type(v) is FrozenDict for v in got)
    # the bad line has nowhere to go (error not connected): dead-lettered, not lost
    dead = net.dead_letters()
    assert [d.value for d in dead] == ["{not json"]
    assert dead[0].node == "n0"
    stats = {n: net.statistics()["nodes"][n]["activations"] for n in ("n0", "n1", "n2")}
    assert stats == {"n0": len(lines), "n1": len(records), "n2": len(want)}


async def test_restart_rebinds_the_step() -> None:
    """A restart gives the node fresh state; setup runs again and binds the step."""
    got, net = await _chain([("transform/Map", {"expression": "10 / x"})], [2, 0, 5],
                            policy={"retries": 1, "backoff": 0, "restart": True})
    assert got == [5.0, 2.0]
    assert [d.value for d in net.dead_letters()] == [0]
    assert net.statistics()["nodes"]["n0"]["failures"] == 3  # 1 try + 1 retry + 1 after restart


async def test_error_and_rejected_ports_only_when_connected() -> None:
    r = await run_node("transform/Filter", {"expression": "x > 1"},
                       inputs={"in": [0, 2, "s"]}, outports=["out"])
    assert r["out"] == [2]
    assert [d.value for d in r.dead] == ["s"]  # error port not connected: dead letter
    stats = r.net.statistics()["nodes"]["n"]["outports"]
    assert "rejected" not in stats or stats["rejected"].unconnected == 0
    r = await run_node("transform/Filter", {"expression": "x > 1"}, inputs={"in": [0, 2, "s"]})
    assert r["rejected"] == [0]
    assert r["error"][0]["value"] == "s" and r["error"][0]["node"] == "n"
    assert r.dead == []


async def test_pick_set_template_stringify_validate() -> None:
    r = await run_node("transform/Pick", {"pointer": "/a/b", "default": None},
                       inputs={"in": [{"a": {"b": 1}}, {}]})
    assert r["out"] == [1, None]
    r = await run_node("transform/Pick", {"field": "a.b"}, inputs={"in": [{"a": {"b": 1}}, {}]})
    assert r["out"] == [1]
    assert "no field" in r["error"][0]["error"]
    r = await run_node("transform/Set", {"pointer": "/a", "value": None}, inputs={"in": [{}]})
    assert r["out"] == [{"a": None}]
    r = await run_node("transform/Set", {"path": "n", "expression": "n + 1"},
                       inputs={"in": [{"n": 1}, {"n": "s"}]})
    assert r["out"] == [{"n": 2}]
    assert r["error"][0]["value"] == {"n": "s"}
    r = await run_node("transform/Template", {"template": "{{ a }}!"}, inputs={"in": [{"a": 1}]})
    assert r["out"] == ["1!"]
    r = await run_node("transform/JsonStringify", {"indent": "2", "sort_keys": "true"},
                       inputs={"in": [{"b": 1, "a": [1]}]})
    assert r["out"] == ['{\n  "a": [\n    1\n  ],\n  "b": 1\n}']
    r = await run_node("transform/Validate", {"schema": {"type": "integer"}},
                       inputs={"in": [1, "x"]})
    assert r["out"] == [1]
    assert r["invalid"][0]["value"] == "x"


@pytest.mark.parametrize(("component", "config", "match"), [
    ("transform/Map", {}, r"node 'n': config key 'expression' is required"),
    ("transform/Map", {"expression": 5}, r"node 'n': config key 'expression': Expected `str`"),
    ("transform/Map", {"expression": "1 +"}, r"node 'n'.*'expression' is not a valid"),
    ("transform/Expression", {"fields": {"a": 1}}, r"node 'n': config key 'fields.a'"),
    ("transform/Expression", {"fields": {"a": "1 +"}}, r"node 'n'.*'fields.a' is not a valid"),
    ("transform/Expression", {}, r"node 'n'.*'expression' is required"),
    ("transform/Filter", {"expression": None}, r"node 'n'.*'expression' is required"),
    ("transform/JsonStringify", {"indent": -1}, r"node 'n': config key 'indent'.*>= 0"),
    ("transform/JsonStringify", {"sort_keys": "maybe"}, r"node 'n'.*'sort_keys'"),
    ("transform/Pick", {}, r"node 'n'.*'pointer' is required"),
    ("transform/Pick", {"fields": ["a"]}, r"node 'n'.*'fields': Expected `object"),
    ("transform/Set", {"pointer": "/a"}, r"node 'n'.*'value' or 'expression'"),
    ("transform/Template", {"template": "{{ a"}, r"node 'n'.*'template' is not a valid"),
    ("transform/Validate", {"schema": {"type": 5}}, r"node 'n'.*'schema' is not a valid"),
    ("transform/Validate", {"schema": "x"}, r"node 'n'.*'schema': Expected `object`"),
])
async def test_bad_config_names_node_and_field(component: str, config: dict[str, Any],
                                               match: str) -> None:
    with config_error(match):
        await run_node(component, config, inputs={"in": [1]})


def test_config_ignores_unknown_keys_and_converts_strings() -> None:
    cfg = msgspec.convert({"indent": "3", "x": 10, "label": "ui"}, transform.JsonStringify.Config,
                          strict=False)
    assert cfg.indent == 3


_decoded = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text()),
    lambda kids: st.one_of(st.lists(kids), st.dictionaries(st.text(), kids)), max_leaves=20)


def _deep_frozen(v: Any) -> bool:
    if isinstance(v, dict):
        return type(v) is FrozenDict and all(_deep_frozen(x) for x in v.values())
    if isinstance(v, list):
        return type(v) is FrozenList and all(_deep_frozen(x) for x in v)
    return True


@settings(max_examples=long_scale(300), deadline=None)
@given(_decoded)
def test_freeze_decoded_equals_freeze(value: Any) -> None:
    text = json.dumps(value)
    fast, slow = freeze_decoded(json.loads(text)), freeze(json.loads(text))
    assert fast == slow
    assert _deep_frozen(fast)


def test_freeze_decoded_falls_back_for_other_values() -> None:
    assert freeze_decoded({1: [2]}) == {1: [2]} and _deep_frozen(freeze_decoded({1: [2]}))
    assert freeze_decoded((1, [2])) == (1, FrozenList([2]))
    with pytest.raises(rf.MessageError):
        freeze_decoded({"a": object()})
    with pytest.raises(rf.MessageError):
        freeze_decoded([{"a": {object()}}])


@pytest.mark.parametrize(("component", "config", "values", "want"), [
    ("core/Repeat", {}, [1, {"a": [1]}, None], [1, {"a": [1]}, None]),
    ("core/Copy", {}, ["x"], ["x"]),
    ("core/Kick", {"data": {"k": 1}}, [True, True], [{"k": 1}, {"k": 1}]),
    ("aggregate/Count", {}, ["a", "b", "c"], [1, 2, 3]),
    ("aggregate/Count", {"by": "k"}, [{"k": 1}, {"k": "1"}, {"k": 2}],
     [{"1": 1}, {"1": 2}, {"1": 2, "2": 1}]),
    ("aggregate/Distinct", {"key": "id"}, [{"id": 1}, {"id": 1}, {"id": 2}, [1]],
     [{"id": 1}, {"id": 2}, [1]]),
    ("core/Output", {"prefix": "> ", "format": "json"}, [1, "s"], [1, "s"]),
])
@pytest.mark.parametrize("observe", [False, True])
async def test_core_and_aggregate_steps_fast_and_observed(
        component: str, config: dict[str, Any], values: list[Any], want: list[Any],
        observe: bool, capsys: pytest.CaptureFixture[str]) -> None:
    got, net = await _chain([(component, config)], values, observe=observe)
    assert got == want
    assert net.dead_letters() == []
    if component == "core/Output":
        assert capsys.readouterr().out == '> 1\n> "s"\n'


async def test_count_state_resets_on_restart() -> None:
    """A restart resets the node's state and runs setup again: the count restarts."""
    g = rf.Graph("c")
    g.add_node("m", "transform/Map", {"expression": "10 / x", "policy": {"restart": True}})
    g.add_node("c", "aggregate/Count", {})
    g.add_inport("in", "m", "in")
    g.add_edge("m", "out", "c", "in")
    g.add_outport("out", "c", "out")
    net = rf.Network(g, REGISTRY, output_capacity=100)
    async with net:
        for v in (1, 2, 0, 5):
            await net.send("in", v)
        await net.idle()
        got = net.outputs("out").drain()
    assert got == [1, 2, 3]  # Count never failed: its state is untouched by m's restart
    assert [d.value for d in net.dead_letters()] == [0]


def test_every_declared_config_has_a_json_schema() -> None:
    """The graph/CLI helper prints ``component.Config`` with msgspec.json.schema: every
    Struct a component declares must produce one (no unencodable defaults)."""
    declared = 0
    for name in REGISTRY.names():
        cls = REGISTRY.get(name)
        config = getattr(cls, "Config", None)
        if config is None:
            continue
        assert isinstance(config, type) and issubclass(config, msgspec.Struct), name
        schema = msgspec.json.schema(config)
        assert "$defs" in schema, name
        declared += 1
    assert declared >= 20


async def test_flow_steps_route_as_before() -> None:
    r = await run_node("flow/If", {"expression": "x > 1"}, inputs={"in": [0, 2, "s"]},
                       outports=["true"])
    assert r["true"] == [2]
    assert [d.value for d in r.dead] == ["s"]  # no error port: the policy dead-letters it
    r = await run_node("flow/Switch", {"cases": ["a", "b"]}, inputs={"in": ["b", "z", "a"]},
                       outports=["case1", "case2"])
    assert (r["case1"], r["case2"]) == (["a"], ["b"])
    assert r.net.dead_letters() == []  # 'z' went to the unconnected default: counted
    r = await run_node("flow/Router", {"key": "k", "routes": {"1": "out2"}},
                       inputs={"in": [{"k": 1}, {"j": 1}]})
    assert r["out2"] == [{"k": 1}]
    assert "no routing key" in r["error"][0]["error"]
    r = await run_node("flow/RoundRobin", inputs={"in": [1, 2, 3, 4, 5]},
                       outports=["out1", "out3"])
    assert (r["out1"], r["out3"]) == ([1, 3, 5], [2, 4])
    with config_error(r"node 'n': config key 'routes'"):
        await run_node("flow/Router", {"key": "k", "routes": ["out1"]}, inputs={"in": [1]})
    with config_error(r"node 'n': config key 'match'"):
        await run_node("flow/Switch", {"cases": [1], "match": "regex"}, inputs={"in": [1]})
