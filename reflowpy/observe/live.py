"""The live view of running networks: sampled node states for the page, SSE and metrics.

A :class:`Monitor` samples every running network's counters a few times a second
(:class:`~reflowpy.observe.stats.StateTracker`, through the stats adapter only) and
keeps, per network, the derived busy / backpressured / idle / failed states, rates,
queue fill and the Flink-style root-cause hint. It never subscribes to per-message
events, so watching a network costs a statistics snapshot per tick, not a cost per
message. :meth:`Monitor.view` is the JSON-ready picture the page draws: the graph laid
out with :func:`reflowpy.network.analysis.layout`, plus the live numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import trio

from reflowpy.network import analysis
from reflowpy.observe.stats import StateTracker, edges_of

if TYPE_CHECKING:
    from reflowpy.network.network import Network

__all__ = ["Monitor"]


class Monitor:
    """Samples the networks ``networks()`` returns (name -> network) every ``interval``."""

    def __init__(self, networks: Callable[[], Mapping[str, Network]],
                 interval: float = 0.25) -> None:
        self.networks = networks
        self.interval = interval
        self.trackers: dict[str, StateTracker] = {}
        self._layouts: dict[str, tuple[int, dict[str, tuple[float, float]], list[str]]] = {}
        self.version = 0
        self._changed = trio.Event()

    def tick(self) -> None:
        """Sample every running network once."""
        nets = self.networks()
        for name, net in nets.items():
            tracker = self.trackers.get(name)
            if tracker is None or tracker.net is not net:
                tracker = self.trackers[name] = StateTracker(net)
            if net.state in ("running", "stopping"):
                tracker.update()
        for gone in set(self.trackers) - set(nets):
            del self.trackers[gone]
            self._layouts.pop(gone, None)
        self.version += 1
        self._changed.set()
        self._changed = trio.Event()

    async def run(self) -> None:
        """Tick forever (a task of the server's nursery)."""
        while True:
            self.tick()
            await trio.sleep(self.interval)

    async def changed(self) -> None:
        """Return after the next tick."""
        await self._changed.wait()

    def _layout(self, name: str, net: Network) -> tuple[dict[str, tuple[float, float]],
                                                        list[str]]:
        key = len(net.graph.nodes) * 1_000_003 + len(net.graph.edges)
        cached = self._layouts.get(name)
        if cached is None or cached[0] != key:
            coords = analysis.layout(net.graph, dx=240.0, dy=100.0, write=False)
            order = analysis.topological_order(net.graph) if not analysis.cycles(
                net.graph, limit=1) else list(net.graph.nodes)
            cached = self._layouts[name] = (key, coords, order)
        return cached[1], cached[2]

    def names(self) -> list[dict[str, Any]]:
        """The networks watched: name, graph, state, nodes."""
        return [{"name": name, "graph": net.graph.name, "state": net.state,
                 "nodes": len(net.graph.nodes)} for name, net in self.networks().items()]

    def view(self, name: str) -> dict[str, Any] | None:
        """The page's picture of network ``name`` (``None`` if unknown)."""
        net = self.networks().get(name)
        if net is None:
            return None
        tracker = self.trackers.get(name)
        if tracker is None or tracker.net is not net:
            tracker = self.trackers[name] = StateTracker(net)
            tracker.update()
        coords, order = self._layout(name, net)
        samples = tracker.samples
        nodes = []
        for node_id, node in net.graph.nodes.items():
            s = samples.get(node_id)
            st = tracker.states.get(node_id)
            x, y = coords.get(node_id, (0.0, 0.0))
            nodes.append({
                "id": node_id, "component": node.component, "x": x, "y": y,
                "state": st.state if st else "idle",
                "in": s.messages_in if s else 0, "out": s.messages_out if s else 0,
                "activations": s.activations if s else 0,
                "failures": s.failures if s else 0,
                "rateIn": round(st.rate_in, 1) if st else 0.0,
                "rateOut": round(st.rate_out, 1) if st else 0.0,
                "busyS": round(st.busy_s, 3) if st else 0.0,
                "backpressuredS": round(st.backpressured_s, 3) if st else 0.0,
                "idleS": round(st.idle_s, 3) if st else 0.0,
                "status": s.status if s else "",
            })
        depth: dict[tuple[str, str], tuple[int, int]] = {}
        for s in samples.values():
            for p in s.inports:
                depth[(p.node, p.port)] = (p.queued, p.capacity)
        fold = net.graph.port_name
        edges = []
        for src, sport, tgt, tport in edges_of(net):
            q, cap = depth.get((tgt, fold(tport)), depth.get((tgt, tport), (0, 0)))
            st = tracker.states.get(tgt)
            edges.append({"from": src, "fromPort": sport, "to": tgt, "toPort": tport,
                          "queued": q, "capacity": cap,
                          "fill": round(q / cap, 3) if cap else 0.0,
                          "rate": round(st.rate_in, 1) if st else 0.0})
        letters = net.dead_letters()[-20:]
        return {
            "name": name, "graph": net.graph.name, "state": net.state,
            "time": time.time() * 1000.0, "version": self.version,
            "rootCause": tracker.root_cause(order),
            "nodes": nodes, "edges": edges,
            "errors": [{"id": d.id, "node": d.node, "port": d.port, "error": d.error,
                        "errorType": d.error_type, "value": _preview(d.value),
                        "timestamp": d.timestamp * 1000.0} for d in reversed(letters)],
        }


def _preview(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
