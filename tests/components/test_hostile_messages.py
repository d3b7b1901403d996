"""Every standard component that starts with its defaults, hostile values into every
in-port: nothing escapes the network, nothing hangs, and the books balance after a
forced stop (every accepted message delivered, dead-lettered or still counted).

Components that reach outside (net/*, script/*, wasm/*, io/Stdin) are left out: their
hostile inputs are covered by their own suites."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

import reflowpy as rf

REGISTRY = rf.default_registry()
HOSTILE: list[Any] = [None, 0, -1, 2**70, 1e308, float("nan"), "", "x" * 10000, [], {},
                      [None] * 50, {"a": {"b": {"c": [1, {"d": None}]}}}, True, b"\x00\xff",
                      [[[[[[]]]]]], {"": 1}, "\x00", {"time": "never", "key": []}]
SKIP = ("net/", "script/", "wasm/")
NAMES = [n for n in sorted(REGISTRY.names()) if not n.startswith(SKIP) and n != "io/Stdin"]


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.CRITICAL)


@pytest.mark.parametrize("component", NAMES)
async def test_hostile_values_are_handled_and_accounted_for(component: str) -> None:
    info = REGISTRY.describe(component)
    graph = rf.Graph("hostile")
    graph.add_node("n", component)
    for port in info.inports:
        graph.add_inport(f"i_{port.name}", "n", port.name)
    for port in info.outports:
        graph.add_outport(f"o_{port.name}", "n", port.name)
    net = rf.Network(graph, REGISTRY)
    try:
        with trio.fail_after(20):
            async with net:
                for port in info.inports:
                    for value in HOSTILE:
                        with trio.move_on_after(1):  # a full queue: the value is not taken
                            await net.send(f"i_{port.name}", value)
                        await trio.testing.wait_all_tasks_blocked()
                await net.stop(drain=False)
    except BaseException as exc:
        leaf = rf.leaf_exception(exc)
        assert isinstance(leaf, rf.ReflowError), repr(leaf)
        if not net.statistics().ledger.accepted:
            return  # refused to start without config: nothing was accepted
    ledger = net.statistics().ledger
    assert ledger.balanced, ledger
    assert ledger.in_flight == 0, ledger
