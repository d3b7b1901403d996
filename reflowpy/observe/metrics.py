"""Prometheus metrics of running networks, from the counters the kernel keeps anyway.

:class:`NetworkMetrics` is a ``prometheus_client`` custom collector: at each scrape it
reads the :class:`~reflowpy.observe.live.Monitor`'s latest samples (the stats adapter)
and yields metric families. Labels are ``network`` (the execution), ``graph``, ``node``
and, for queues, ``port``: per graph/node/port, never per message, so the number of
series is bounded by the running graphs' size. Busy / backpressured / idle seconds are
the monitor's sampled estimates (see :mod:`reflowpy.observe.stats`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from reflowpy.observe.live import Monitor

__all__ = ["CONTENT_TYPE", "NetworkMetrics", "render"]

#: The text exposition format's content type.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class NetworkMetrics(Collector):
    """Yields the metric families of every network the monitor watches.

    ``extra`` returns additional ``(name, help, value)`` gauges (e.g. trace drops)."""

    def __init__(self, monitor: Monitor,
                 extra: Callable[[], list[tuple[str, str, float]]] | None = None) -> None:
        self.monitor = monitor
        self.extra = extra

    def collect(self) -> Iterator[Metric]:
        node_labels = ["network", "graph", "node", "component"]
        port_labels = ["network", "graph", "node", "port"]
        c: dict[str, Any] = {
            "activations": CounterMetricFamily(
                "reflowpy_node_activations", "Activations (behaviour calls) of a node",
                labels=node_labels),
            "failures": CounterMetricFamily(
                "reflowpy_node_failures", "Failed activations of a node", labels=node_labels),
            "in": CounterMetricFamily(
                "reflowpy_node_messages_in", "Messages a node took from its in-ports",
                labels=node_labels),
            "out": CounterMetricFamily(
                "reflowpy_node_messages_out", "Messages a node sent", labels=node_labels),
            "busy": CounterMetricFamily(
                "reflowpy_node_busy_seconds",
                "Seconds a node was busy (kernel clock, backpressure not included)",
                labels=node_labels),
            "bp": CounterMetricFamily(
                "reflowpy_node_backpressured_seconds",
                "Seconds a node was blocked by a full downstream queue (kernel clock)",
                labels=node_labels),
            "idle": CounterMetricFamily(
                "reflowpy_node_idle_seconds",
                "Seconds a node was idle between samples (sampled time less busy time)",
                labels=node_labels),
        }
        g: dict[str, Any] = {
            "depth": GaugeMetricFamily("reflowpy_port_queue_depth",
                                       "Values queued at an in-port", labels=port_labels),
            "cap": GaugeMetricFamily("reflowpy_port_queue_capacity",
                                     "Bound of an in-port queue", labels=port_labels),
            "hw": GaugeMetricFamily("reflowpy_port_queue_high_water",
                                    "Highest queue depth seen at an in-port",
                                    labels=port_labels),
            "wait": GaugeMetricFamily("reflowpy_port_waiting_senders",
                                      "Senders waiting for room at an in-port",
                                      labels=port_labels),
        }
        dead = GaugeMetricFamily("reflowpy_network_dead_letters",
                                 "Messages in a network's dead-letter store",
                                 labels=["network", "graph"])
        up = GaugeMetricFamily("reflowpy_network_running", "1 while a network is running",
                               labels=["network", "graph"])
        nets = self.monitor.networks()
        for name, tracker in list(self.monitor.trackers.items()):
            net = nets.get(name)
            if net is None:
                continue
            graph = net.graph.name
            dead.add_metric([name, graph], len(net.dead_letters()))
            up.add_metric([name, graph], 1.0 if net.state == "running" else 0.0)
            for node_id, s in tracker.samples.items():
                labels = [name, graph, node_id, s.component]
                st = tracker.states.get(node_id)
                c["activations"].add_metric(labels, s.activations)
                c["failures"].add_metric(labels, s.failures)
                c["in"].add_metric(labels, s.messages_in)
                c["out"].add_metric(labels, s.messages_out)
                if st is not None:
                    c["busy"].add_metric(labels, st.busy_s)
                    c["bp"].add_metric(labels, st.backpressured_s)
                    c["idle"].add_metric(labels, st.idle_s)
                for p in s.inports:
                    pl = [name, graph, node_id, p.port]
                    g["depth"].add_metric(pl, p.queued)
                    g["cap"].add_metric(pl, p.capacity)
                    g["hw"].add_metric(pl, p.high_water)
                    g["wait"].add_metric(pl, p.waiting_senders)
        yield from c.values()
        yield from g.values()
        yield dead
        yield up
        for metric, text, value in (self.extra() if self.extra else []):
            fam = GaugeMetricFamily(metric, text)
            fam.add_metric([], value)
            yield fam


def render(monitor: Monitor, extra: Callable[[], list[tuple[str, str, float]]] | None = None
           ) -> bytes:
    """The text exposition of ``monitor``'s networks (one scrape)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NetworkMetrics(monitor, extra))
    return generate_latest(registry)
