"""``validate`` finds what starting the network or placing the graph refuses in node
metadata (``policy``, ``env_vars``, ``partition``/``remote``), so ``reflowpy validate``
never says "ok" about a graph ``reflowpy run`` then refuses.

The property compares ``analysis.validate`` with the real thing: ``place`` (the bridge
layer's cut) and ``Network.start`` (which resolves config and builds policies). A
variable ``env_vars`` requires but the environment lacks is a warning, not an error:
the same graph runs where it is set, which the test checks by setting it and
starting again.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import reflowpy as rf
from reflowpy.bridge.placement import place
from reflowpy.network import analysis
from tests.scale import long_scale

SET, UNSET, OTHER = "RF_VALIDATE_SET", "RF_VALIDATE_UNSET", "RF_VALIDATE_OTHER"
GRAPH_ERRORS = {"bad_policy", "bad_config", "bad_placement"}


class Relay(rf.Actor):
    inports = ["in"]
    outports = ["out"]

    def process(self, ctx: Any, inputs: Any) -> Any:
        return {"out": inputs["in"]}


def _registry() -> rf.Registry:
    reg = rf.Registry()
    reg.register("t/Relay", Relay)
    return reg


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 5),
                     st.floats(-1, 5, allow_nan=False), st.sampled_from(["", "x", "2", "local"]))
_policies = st.one_of(
    _scalars, st.lists(_scalars, max_size=2),
    st.dictionaries(st.sampled_from(["retries", "timeout", "backoff", "backoff_factor",
                                     "max_restarts", "on_error", "nope"]),
                    _scalars, max_size=3))
_rules = st.one_of(st.sampled_from(["required", "optional", "optional:dflt", "bogus",
                                    "optional:"]), st.integers(0, 2))
_env_vars = st.one_of(st.integers(0, 3), st.just("required"), st.lists(st.just(SET), max_size=1),
                      st.dictionaries(st.sampled_from([SET, UNSET, OTHER]),
                                      _rules, max_size=3))
_places = st.one_of(_scalars, st.lists(st.just("p"), max_size=1),
                    st.sampled_from(["p1", "ws://127.0.0.1:9/bridge"]))


@st.composite
def _metadata(draw: st.DrawFn) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for key, values in (("policy", _policies), ("env_vars", _env_vars),
                        ("partition", _places), ("remote", _places)):
        if draw(st.booleans()):
            meta[key] = draw(values)
    return meta


def _graph(metas: list[dict[str, Any]], export: bool) -> rf.Graph:
    g = rf.Graph("meta")
    for i, meta in enumerate(metas):
        g.add_node(f"n{i}", "t/Relay", meta)
    for i in range(len(metas) - 1):
        g.add_edge(f"n{i}", "out", f"n{i + 1}", "in")
    if export:
        g.add_inport("feed", "n0", "in")
    return g


async def _start(g: rf.Graph) -> BaseException | None:
    try:
        net = rf.Network(g, _registry())
        await net.start()
    except rf.ConfigError as exc:
        return exc
    await net.stop()
    return None


def _refusal(g: rf.Graph) -> BaseException | None:
    """What running ``g`` refuses, in the order ``reflowpy run`` meets it."""
    try:
        place(g)
    except rf.GraphError as exc:
        return exc
    return trio.run(_start, g)


@settings(max_examples=long_scale(300), deadline=None)
@given(metas=st.lists(_metadata(), min_size=1, max_size=3), export=st.booleans())
def test_validate_errors_exactly_when_running_refuses(
        metas: list[dict[str, Any]], export: bool) -> None:
    g = _graph(metas, export)
    os.environ[SET] = "yes"
    for name in (UNSET, OTHER):
        os.environ.pop(name, None)
    try:
        report = analysis.validate(g, _registry())
        errors = [p for p in report.problems if p.kind in GRAPH_ERRORS]
        missing = [p for p in report.problems if p.kind == "missing_env"]
        assert all(p.severity == "error" for p in errors)
        assert all(p.severity == "warning" and p.node for p in missing)
        refused = _refusal(g)
        if isinstance(refused, rf.MissingEnvironment):
            assert missing, refused  # validate warned about what the start lacked
        elif refused is None:
            assert not missing, missing
        # with the environment complete, errors <=> refusal, and the refusal is one of them
        os.environ[UNSET] = os.environ[OTHER] = "now set"
        refused = _refusal(g)
        assert not isinstance(refused, rf.MissingEnvironment)
        assert bool(errors) == (refused is not None), (errors, refused)
        if refused is not None:
            assert str(refused) in {p.message for p in errors}, (refused, errors)
    finally:
        for name in (SET, UNSET, OTHER):
            os.environ.pop(name, None)


def test_each_kind_is_named_with_its_node() -> None:
    g = _graph([{"policy": {"retries": "x"}}, {"env_vars": {"A": "sometimes"}},
                {"partition": ["x"]}, {"remote": 5}, {"env_vars": {UNSET: "required"}}],
               export=False)
    os.environ.pop(UNSET, None)
    found = {(p.kind, p.node, p.severity) for p in analysis.validate(g).problems}
    assert {("bad_policy", "n0", "error"), ("bad_config", "n1", "error"),
            ("bad_placement", "n2", "error"), ("bad_placement", "n3", "error"),
            ("missing_env", "n4", "warning")} <= found


def test_an_exported_port_on_a_partition_node_is_an_error() -> None:
    g = _graph([{"partition": "p1"}], export=True)
    problems = [p for p in analysis.validate(g).problems if p.kind == "bad_placement"]
    assert len(problems) == 1 and "'feed'" in problems[0].message
    with pytest.raises(rf.GraphError, match="'feed'"):
        place(g)


def test_every_bad_rule_is_found_before_a_missing_variable() -> None:
    from reflowpy.network.runner import resolve_config

    os.environ.pop(UNSET, None)
    with pytest.raises(rf.ConfigError, match="rule for 'B'") as info:
        resolve_config("n", {"env_vars": {UNSET: "required", "B": "bogus"}})
    assert not isinstance(info.value, rf.MissingEnvironment)
    with pytest.raises(rf.MissingEnvironment, match=f"'{UNSET}', 'C' are required"):
        resolve_config("n", {"env_vars": {UNSET: "required", "C": "required"}})


async def test_a_plain_network_says_once_that_it_does_not_place_nodes(
        caplog: pytest.LogCaptureFixture) -> None:
    g = _graph([{"partition": "p1"}, {"remote": "ws://127.0.0.1:9/bridge"}, {}], export=True)
    with caplog.at_level("WARNING", logger="reflowpy.network"):
        async with rf.Network(g, _registry()) as net:
            await net.send("feed", 1)
            await net.idle()
    warnings = [r.getMessage() for r in caplog.records if "asks to run in" in r.getMessage()]
    assert warnings == ["graph 'meta': node 'n0' asks to run in 'p1', but a Network runs every"
                        " node in this process; use reflowpy.bridge.network_for (or `reflowpy"
                        " run`) to place it"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="reflowpy.network"):
        async with rf.Network(place(_graph([{"partition": "p1"}], export=False)).parts[
                "partition:p1"].graph, _registry()):
            pass  # a part of a placed graph has no placement keys left: no warning
    assert not [r for r in caplog.records if "asks to run in" in r.getMessage()]
