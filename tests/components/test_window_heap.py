"""time/Window with its heap of due windows against the Window it replaced
(tests/components/window_oracle.py): random packet streams, every kind, keys (also keys
that print alike), lateness, flushes and stop, event time; outputs and errors must be
identical, in the same order."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import reflowpy as rf
from tests.components import window_oracle
from tests.scale import long_scale

REGISTRY = rf.default_registry()
REGISTRY.register("test/OldWindow", window_oracle.Window)


async def _run(component: str, config: dict[str, Any], inputs: list[tuple[str, Any]]
               ) -> tuple[list[Any], list[Any], list[Any]]:
    g = rf.Graph("w")
    g.add_node("n", component, config)
    g.add_inport("in", "n", "in")
    g.add_inport("flush", "n", "flush")
    g.add_outport("out", "n", "out")
    g.add_outport("error", "n", "error")
    net = rf.Network(g, REGISTRY, output_capacity=1_000_000)
    out: list[Any] = []
    async with net:
        for port, value in inputs:
            await net.send(port, value)
            await net.idle()
            out += net.outputs("out").drain()
    out += net.outputs("out").drain()
    errors = [{k: v for k, v in e.items() if k != "node"} for e in net.outputs("error").drain()]
    return out, errors, [d.value for d in net.dead_letters()]


_configs = st.one_of(
    st.fixed_dictionaries({"kind": st.just("tumbling"), "size": st.sampled_from([1, 2.5, 10])}),
    st.fixed_dictionaries({"kind": st.just("sliding"), "size": st.sampled_from([2, 4, 6]),
                           "step": st.sampled_from([1, 2])}),
    st.fixed_dictionaries({"kind": st.just("session"), "gap": st.sampled_from([1, 3])}),
    st.fixed_dictionaries({"kind": st.just("session"), "gap": st.sampled_from([2, 4])}),
).flatmap(lambda base: st.fixed_dictionaries({
    **{k: st.just(v) for k, v in base.items()},
    "time_field": st.just("t"),
    "lateness": st.sampled_from([0, 1, 5]),
    "items": st.booleans(),
    "max_items": st.sampled_from([0, 2, 100]),
}).map(lambda d: d | {"key": "k"}))

_BAD_TIMES = [None, "x", True]


@st.composite
def _inputs(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """Mostly advancing event time (as real streams), with jumps, repeats, packets from
    the past (late or within lateness), bad times and flushes."""
    t = 0.0
    out: list[tuple[str, Any]] = []
    for _ in range(draw(st.integers(3, 30))):
        kind = draw(st.integers(0, 19))
        if kind == 0:
            out.append(("flush", True))
            continue
        if kind == 1:
            when: Any = draw(st.sampled_from(_BAD_TIMES))
        else:
            step = draw(st.sampled_from([0, 0.5, 1, 1, 2, 3, 7, -1, -4]))
            t = max(0.0, t + step) if step >= 0 else t
            when = max(0.0, t + step) if step < 0 else t
        out.append(("in", {"t": when, "k": draw(st.sampled_from(["a", "b", "c", 1, "1", None]))}))
    return out


@settings(max_examples=long_scale(250), deadline=None)
@given(_configs, _inputs())
async def test_heap_window_matches_old_window(config: dict[str, Any],
                                              inputs: list[tuple[str, Any]]) -> None:
    new = await _run("time/Window", config, inputs)
    old = await _run("test/OldWindow", config, inputs)
    assert new == old


async def test_processing_time_windows_close_on_the_heap_deadline(autojump_clock: Any) -> None:
    import trio

    config = {"kind": "session", "gap": 2, "key": "k", "items": False}
    g = rf.Graph("w")
    g.add_node("n", "time/Window", config)
    g.add_inport("in", "n", "in")
    g.add_outport("out", "n", "out")
    net = rf.Network(g, REGISTRY, output_capacity=1000)
    async with net:
        await net.send("in", {"k": "a"})
        await trio.sleep(1)
        await net.send("in", {"k": "a"})  # extends the session: the old due entry is stale
        await net.send("in", {"k": "b"})
        await net.idle()  # the pending timer keeps the network busy until both closed
        got = net.outputs("out").drain()
    assert [(w["key"], w["count"]) for w in got] == [("a", 2), ("b", 1)]
    assert got[0]["end"] - got[0]["start"] == 3
