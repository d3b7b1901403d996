"""The live view of running networks: sampled node states for the page, SSE and metrics.

A :class:`Monitor` samples every running network's counters a few times a second
(:class:`~reflowpy.observe.stats.StateTracker`, through the stats adapter only) and
keeps, per network, the derived busy / backpressured / idle / failed states, rates,
queue fill and the Flink-style root-cause hint. It never subscribes to per-message
events, so watching a network costs a statistics snapshot per tick, not a cost per
message; and it ticks only while someone watches (a live page's event stream holds
:meth:`Monitor.watching`): with no page open it costs nothing. A Prometheus scrape
takes its own sample. :meth:`Monitor.view` is the JSON-ready picture the page draws: the graph laid
out with :func:`reflowpy.network.analysis.layout`, plus the live numbers.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import trio

from reflowpy.network import analysis
from reflowpy.network import events as ev
from reflowpy.observe import stats
from reflowpy.observe.stats import StateTracker, edges_of

if TYPE_CHECKING:
    from reflowpy.network.network import Network

__all__ = ["Monitor", "PacketTap", "peer_rows"]


class Monitor:
    """Samples the networks ``networks()`` returns (name -> network) every ``interval``."""

    def __init__(self, networks: Callable[[], Mapping[str, Network]],
                 interval: float = 0.25,
                 peers: Callable[[], list[dict[str, Any]]] | None = None) -> None:
        self.networks = networks
        self.interval = interval
        #: The bridge peers of this process (see :func:`peer_rows`), or ``None``.
        self.peers = peers
        self.trackers: dict[str, StateTracker] = {}
        self._layouts: dict[str, tuple[int, dict[str, tuple[float, float]], list[str]]] = {}
        self.version = 0
        self._changed = trio.Event()
        #: Live views open now (event streams); the monitor ticks only while > 0.
        self.watchers = 0
        self._watched = trio.Event()

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
        """Tick every ``interval`` while someone watches (a task of the server's
        nursery); sleep without sampling while nobody does."""
        while True:
            if not self.watchers:
                await self._watched.wait()
            self.tick()
            await trio.sleep(self.interval)

    @contextmanager
    def watching(self) -> Iterator[None]:
        """Held by each live view (an SSE client) while it is open."""
        self.watchers += 1
        self._watched.set()
        try:
            yield
        finally:
            self.watchers -= 1
            if not self.watchers:
                self._watched = trio.Event()

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
        peers = self.peers() if self.peers is not None else []
        return {
            "peers": peers,
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


def peer_rows(bridges: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Bridge statistics (location -> :class:`~reflowpy.bridge.session.BridgeStatistics`,
    as a host's or a cluster's ``statistics()`` give them) as the page's peer rows."""
    rows = []
    for location, st in bridges.items():
        rows.append({
            "location": location, "peer": st.peer, "state": st.state,
            "rttMs": None if st.rtt_ms is None else round(st.rtt_ms, 2),
            "credits": st.credits, "resendBuffer": st.resend_buffer,
            "receiveBuffer": st.receive_buffer, "reconnects": st.reconnects,
            "msgsIn": st.msgs_in, "msgsOut": st.msgs_out, "bytesIn": st.bytes_in,
            "bytesOut": st.bytes_out})
    return rows


class PacketTap:
    """Recent packets on one node or edge, for the page's packet timeline (noflo-ui's
    edge inspector): numbered in the order they were seen (``seq``), at most ``keep``.

    The monitor never subscribes to per-message events, and a tap does so only in
    bursts: :meth:`poll` (once per monitor tick, while the page watches) takes what the
    last burst saw and opens the next one of at most ``burst`` message events
    (:func:`~reflowpy.observe.stats.burst_subscription`), which detaches itself when
    full. So a page inspecting a node costs at most ``burst`` observed events per tick,
    and the network runs on its fast paths the rest of the time (the timeline is a
    sample of the traffic, numbered as seen).

    ``node``: packets into or out of that node; ``edge``: ``(src, sport, tgt, tport)``.
    """

    def __init__(self, net: Network, *, node: str | None = None,
                 edge: tuple[str, str, str, str] | None = None, keep: int = 50,
                 burst: int = 200) -> None:
        if (node is None) == (edge is None):
            raise ValueError("a packet tap watches one node or one edge")
        self.net = net
        self.node = node
        self.edge = edge
        self.burst = burst
        self.packets: deque[dict[str, Any]] = deque(maxlen=keep)
        self.seq = 0
        self._sub: ev.EventSubscription | None = None

    def _match(self, e: ev.MessageSent) -> bool:
        if self.node is not None:
            return self.node in (e.from_actor, e.to_actor)
        return (e.from_actor, e.from_port, e.to_actor, e.to_port) == self.edge

    def poll(self) -> list[dict[str, Any]]:
        """Packets seen since the previous poll (also appended to :attr:`packets`)."""
        new = []
        sub = self._sub
        if sub is not None:
            sent = ev.MessageSent
            for e in sub.take_all():
                if type(e) is sent and self._match(e):
                    self.seq += 1
                    packet = {"seq": self.seq, "time": e.timestamp, "from": e.from_actor,
                              "fromPort": e.from_port, "to": e.to_actor,
                              "toPort": e.to_port, "queueDepth": e.queue_depth,
                              "value": _preview(e.message)}
                    self.packets.append(packet)
                    new.append(packet)
        if (sub is None or sub.closed) and self.net.state == "running":
            self._sub = stats.burst_subscription(self.net, self.burst)
        return new

    def close(self) -> None:
        """Stop watching (the current burst ends now)."""
        if self._sub is not None:
            self._sub.close()
            self._sub = None

    def as_json(self) -> dict[str, Any]:
        """What the page draws: the target and the recent packets, oldest first."""
        return {"node": self.node, "edge": list(self.edge) if self.edge else None,
                "packets": list(self.packets)}
