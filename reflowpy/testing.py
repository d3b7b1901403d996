"""Helpers for users' tests, as trio ships ``trio.testing``.

* :func:`run_node` runs one component as a one-node network on lists of inputs and
  returns what each out-port emitted, with the dead letters -- the quickest way to
  test an actor the way the kernel really runs it (own instance, setup/teardown,
  policy, freezing, backpressure).
* :func:`timeline` feeds timed inputs into a graph and records every output with the
  trio time it left, for time-based components under ``trio.testing.MockClock``
  (``autojump_clock`` in pytest-trio): the test reads as a timeline, without sleeps.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec
import trio

from reflowpy.network.actor import Actor
from reflowpy.network.graph import Graph
from reflowpy.network.network import Network
from reflowpy.network.registry import Registry, default_registry
from reflowpy.network.supervision import DeadLetter

__all__ = ["NodeRun", "run_node", "timeline"]


class NodeRun(msgspec.Struct, frozen=True):
    """What :func:`run_node` saw: values per out-port (in order) and the dead letters."""

    outputs: dict[str, list[Any]]
    dead_letters: list[DeadLetter]

    def __getitem__(self, port: str) -> list[Any]:
        return self.outputs[port]


async def run_node(
    component: str | type[Actor],
    inputs: Mapping[str, Iterable[Any]],
    *,
    config: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
    outports: Sequence[str] | None = None,
    timeout: float = 10.0,
) -> NodeRun:
    """Run ``component`` (a registered name or an actor class) as node ``"n"``.

    Sends every value of ``inputs`` (in-port -> values) in order, waits until the
    network is idle, drains (so ``run()`` actors flush on stop) and returns the outputs
    of ``outports`` (default: every declared out-port). Raises
    :class:`~reflowpy.NetworkTimeout` semantics via ``trio.TooSlowError`` after
    ``timeout`` seconds (of trio time: a MockClock makes it instant).
    """
    reg = registry if registry is not None else default_registry()
    if not isinstance(component, str):
        reg = reg.copy()
        reg.register("testing/Component", component, replace=True)
        component = "testing/Component"
    cls = reg.get(component)
    g = Graph("testing")
    g.add_node("n", component, dict(config or {}))
    for port in inputs:
        g.add_inport(port, "n", port)
    if outports is None:
        if isinstance(cls, Graph):
            outports = list(cls.outports)
        else:
            outports = [p.name for p in cls.outport_specs()]
    for port in outports:
        g.add_outport(port, "n", port)
    net = Network(g, reg, output_capacity=sys.maxsize)
    with trio.fail_after(timeout):
        async with net:
            for port, values in inputs.items():
                for value in values:
                    await net.send(port, value)
            await net.idle()
    return NodeRun(outputs={p: net.outputs(p).drain() for p in outports},
                   dead_letters=net.dead_letters())


async def timeline(
    graph: Graph,
    events: Iterable[tuple[float, str, Any]],
    *,
    registry: Registry | None = None,
    until: float | None = None,
) -> list[tuple[float, str, Any]]:
    """Feed ``(time, in-port, value)`` events into ``graph``; return every output as
    ``(time, out-port, value)`` in the order it left, times relative to the start.

    Run it under ``trio.testing.MockClock(autojump_threshold=0)`` (pytest-trio's
    ``autojump_clock``): time then advances only when every task waits, so the result
    is exact and the test takes no wall time. The network is stopped (drained) at
    ``until`` (default: the last event, once idle).
    """
    reg = registry if registry is not None else default_registry()
    net = Network(graph, reg, output_capacity=sys.maxsize)
    got: list[tuple[float, str, Any]] = []
    start = trio.current_time()

    async with net, trio.open_nursery() as nursery:

        async def record(port: str) -> None:
            async for value in net.outputs(port):
                got.append((trio.current_time() - start, port, value))

        for port in graph.outports:
            nursery.start_soon(record, port)
        for at, port, value in sorted(events, key=lambda e: e[0]):
            await trio.sleep_until(start + at)
            await net.send(port, value)
        if until is not None:
            await trio.sleep_until(start + until)
        else:
            await net.idle()
        await net.stop()
    return got
