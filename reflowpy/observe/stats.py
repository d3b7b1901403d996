"""The one adapter between the kernel's statistics and everything in :mod:`reflowpy.observe`.

Metrics, the live page and the trace collector's burst sampler read node counters only
through :func:`snapshot`, which turns the kernel's typed ``Network.statistics()``
(:class:`~reflowpy.network.network.NetworkStatistics`) into the :class:`NodeSample` values
they need. This module is the only place that knows the kernel's statistics layout.

Time comes from the kernel's exact clocks (``NodeStatistics.busy_s``: seconds the
node's task was not parked, including ``backpressured_s``: seconds its sends waited for
room, both counting a wait or run still under way). :class:`StateTracker` reports them as
exclusive parts: **backpressured_s** is the kernel's, **busy_s** the kernel's busy time
less it, and **idle_s** the rest of each interval between two updates (the tracker's
clock less the kernel's busy time in it; from the tracker's first update on).

The *state* is derived from consecutive snapshots (:class:`StateTracker`), the way Flink
samples its busy/backpressured ratios:

* **backpressured**: a node feeds an in-port that is full (queued >= capacity) or has a
  sender waiting for room;
* **busy**: not backpressured, and it holds queued input or ran activations since the
  previous sample;
* **idle**: neither; **failed**: its failure counter grew since the previous sample.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from reflowpy.network import events as ev

if TYPE_CHECKING:
    from reflowpy.network.network import Network

__all__ = ["NodeSample", "PortSample", "StateTracker", "burst_subscription", "edges_of",
           "firing_rules", "messages_moved", "snapshot"]


class PortSample(msgspec.Struct, frozen=True):
    """One in-port at one instant: queue depth and bound, totals, waiting senders."""

    node: str
    port: str
    queued: int
    capacity: int
    total: int
    waiting_senders: int
    high_water: int


class NodeSample(msgspec.Struct, frozen=True):
    """One node's counters at one instant (see the module docstring)."""

    node: str
    component: str
    activations: int
    failures: int
    messages_in: int
    messages_out: int
    inports: tuple[PortSample, ...]
    sent: Mapping[str, int]
    #: The kernel's clocks: seconds not parked (including backpressure), and seconds
    #: blocked on full queues.
    busy_s: float = 0.0
    backpressured_s: float = 0.0
    #: The actor's own status line (``ctx.status()``).
    status: str = ""


def snapshot(net: Network) -> dict[str, NodeSample]:
    """Every node's counters now, keyed by node id."""
    out: dict[str, NodeSample] = {}
    for node_id, node in net.statistics().nodes.items():
        ports = tuple(
            PortSample(node=p.node, port=p.port, queued=p.queued, capacity=p.capacity,
                       total=p.total, waiting_senders=p.waiting_senders,
                       high_water=p.high_water)
            for p in node.inports.values())
        sent = {name: o.sent for name, o in node.outports.items()}
        out[node_id] = NodeSample(
            node=node_id, component=node.component,
            activations=node.activations, failures=node.failures,
            messages_in=node.taken, messages_out=node.messages_out, inports=ports,
            sent=sent, busy_s=node.busy_s, backpressured_s=node.backpressured_s,
            status=node.status)
    return out


def edges_of(net: Network) -> list[tuple[str, str, str, str]]:
    """The network's connections as ``(src node, src port, tgt node, tgt port)``."""
    return [(e.src.node, e.src.port, e.tgt.node, e.tgt.port) for e in net.graph.edges]


class NodeState(msgspec.Struct):
    """Derived per-node state and its times in seconds (exclusive parts; see the module
    docstring)."""

    state: str = "idle"
    busy_s: float = 0.0
    backpressured_s: float = 0.0
    idle_s: float = 0.0
    rate_in: float = 0.0
    rate_out: float = 0.0


class StateTracker:
    """Derives busy / backpressured / idle / failed per node from successive snapshots.

    Call :meth:`update` periodically (metrics scrapes, the live page's ticker); each
    call classifies every node over the interval since the previous call and reads its
    times from the kernel's clocks (idle: the interval's rest).
    """

    def __init__(self, net: Network, clock: Any = time.monotonic) -> None:
        self.net = net
        self._clock = clock
        self._last: dict[str, NodeSample] = {}
        self._at = 0.0
        self.states: dict[str, NodeState] = {}
        self.samples: dict[str, NodeSample] = {}

    def update(self) -> dict[str, NodeState]:
        """Take a snapshot, classify every node, accumulate times; returns the states."""
        now = self._clock()
        samples = snapshot(self.net)
        dt = now - self._at if self._last else 0.0
        full = {(p.node, p.port) for s in samples.values() for p in s.inports
                if p.queued >= p.capacity or p.waiting_senders > 0}
        blocked = {src for src, sport, tgt, tport in edges_of(self.net)
                   if (tgt, self.net.graph.port_name(tport)) in full
                   or (tgt, tport) in full}
        for node_id, s in samples.items():
            st = self.states.setdefault(node_id, NodeState())
            prev = self._last.get(node_id)
            ran = prev is None or s.activations != prev.activations
            if prev is not None and s.failures > prev.failures:
                st.state = "failed"
            elif node_id in blocked:
                st.state = "backpressured"
            elif (ran and prev is not None) or any(p.queued for p in s.inports):
                st.state = "busy"
            else:
                st.state = "idle"
            # counters never go back (the kernel reads its two clocks one after the other)
            st.backpressured_s = max(st.backpressured_s, s.backpressured_s)
            st.busy_s = max(st.busy_s, s.busy_s - s.backpressured_s)
            if dt > 0 and prev is not None:
                st.idle_s += max(0.0, dt - (s.busy_s - prev.busy_s))
                st.rate_in = (s.messages_in - prev.messages_in) / dt
                st.rate_out = (s.messages_out - prev.messages_out) / dt
        for gone in set(self.states) - set(samples):
            del self.states[gone]
        self._last = samples
        self.samples = samples
        self._at = now
        return self.states

    def root_cause(self, order: list[str]) -> str | None:
        """Flink's hint: the first node (in ``order``, upstream first) that is busy and
        not backpressured while something upstream of it is backpressured."""
        if not any(st.state == "backpressured" for st in self.states.values()):
            return None
        upstream: dict[str, set[str]] = {}
        for src, _, tgt, _ in edges_of(self.net):
            upstream.setdefault(tgt, set()).add(src)
        for node_id in order:
            st = self.states.get(node_id)
            if st is None or st.state != "busy":
                continue
            if any(self.states.get(u, NodeState()).state == "backpressured"
                   for u in upstream.get(node_id, ())):
                return node_id
        return None


def firing_rules(net: Network) -> dict[str, str]:
    """Each node's firing rule: ``message`` (per message), ``join`` or ``loop``."""
    rules: dict[str, str] = {}
    for node_id, runner in net._runners.items():
        if getattr(runner, "owns_loop", False):
            rules[node_id] = "loop"
        elif getattr(runner, "await_all", False):
            rules[node_id] = "join"
        else:
            rules[node_id] = "message"
    return rules


def messages_moved(net: Network) -> int:
    """Values taken into in-ports so far, over the whole network (the sampler's clock)."""
    return sum(p.total for r in net._runners.values() for p in r.inports.values())


class _BurstSubscription(ev.EventSubscription):
    """A subscription that detaches itself from the bus after ``limit`` message events,
    in the kernel's own publish call, so the network is back on its unobserved fast
    paths at once, not when the sampler next gets to run."""

    def __init__(self, bus: ev.EventBus, limit: int) -> None:
        super().__init__(bus, limit + 1024)
        self._left = limit

    def _push(self, event: Any) -> None:
        super()._push(event)
        t = type(event)
        if t is ev.MessageSent or t is ev.MessageReceived:
            self._left -= 1
            if self._left <= 0:
                self._detach()

    def _detach(self) -> None:
        self._bus._remove(self)  # a new list: the bus may be walking the old one now
        self.closed = True
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None


def burst_subscription(net: Network, events: int) -> ev.EventSubscription:
    """Subscribe to ``net`` for the next ``events`` message events only (burst sampling)."""
    return net.bus._add(_BurstSubscription(net.bus, events))
