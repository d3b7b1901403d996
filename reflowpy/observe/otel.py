"""OpenTelemetry spans for activations and sends (optional extra ``reflowpy[otel]``).

:func:`otel_recording` follows a network's events like the trace collector (the same
causality ids, :mod:`reflowpy.observe.lineage`) and turns them into spans with the
messaging semantic conventions:

* ``{node} send`` (kind PRODUCER, ``messaging.operation.type=send``,
  ``messaging.destination.name={to_node}.{to_port}``) for every message sent, a child of
  the activation that sent it; when a send has several causes (a join, a batch), the
  span carries a **link** to the send span of each cause;
* ``{node} process`` (kind CONSUMER, ``messaging.operation.type=process``) for every
  activation, from the ``MessageReceived`` that started it to the node's next receive
  (or the network's end), a child of the send that delivered its message; a failed
  activation has status ERROR and an ``exception`` event.

So one input's whole path through the graph is one trace. Without a ``tracer_provider``
the SDK's provider is built from the standard ``OTEL_*`` variables
(``OTEL_TRACES_EXPORTER=console|otlp|none``, ``OTEL_SERVICE_NAME``, ``OTEL_EXPORTER_OTLP_*``;
``otlp`` needs ``opentelemetry-exporter-otlp``). Per-message spans cost what full
tracing costs (the kernel's observed path); use the SDK's sampler to export fewer.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio

from reflowpy.errors import ConfigError
from reflowpy.network import events as ev
from reflowpy.observe import stats
from reflowpy.observe.lineage import Lineage

if TYPE_CHECKING:
    from reflowpy.network.network import Network

__all__ = ["otel_recording", "tracer_provider_from_env"]

#: Send-span contexts kept for parenting the receive of each in-flight message.
_MAX_INFLIGHT = 100_000


def _otel() -> Any:
    try:
        from opentelemetry import trace
    except ImportError:
        raise ConfigError("OpenTelemetry export needs the extra: pip install"
                          " 'reflowpy[otel]'") from None
    return trace


def tracer_provider_from_env() -> Any:
    """An SDK ``TracerProvider`` configured by the standard ``OTEL_*`` variables."""
    _otel()
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider(resource=Resource.create(
        {"service.name": os.environ.get("OTEL_SERVICE_NAME", "reflowpy")}))
    kinds = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")
    for kind in (k.strip() for k in kinds):
        if kind == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        elif kind == "otlp":
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found]
                    OTLPSpanExporter,
                )
            except ImportError:
                raise ConfigError("OTEL_TRACES_EXPORTER=otlp needs the package"
                                  " opentelemetry-exporter-otlp-proto-http") from None
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        elif kind not in ("none", ""):
            raise ConfigError(f"OTEL_TRACES_EXPORTER: unknown exporter {kind!r}"
                              " (console, otlp or none)")
    return provider


class _Spans:
    def __init__(self, tracer: Any, lineage: Lineage, network: str) -> None:
        trace = _otel()
        self.trace = trace
        self.tracer = tracer
        self.lin = lineage
        self.network = network
        self.sent: OrderedDict[int, Any] = OrderedDict()  # msg -> send span context
        self.open: dict[str, Any] = {}  # node -> its current process span
        self.recent: OrderedDict[int, Any] = OrderedDict()  # msg -> send span (for links)
        self.kind = trace.SpanKind

    def _end(self, node: str, at_ns: int) -> None:
        span = self.open.pop(node, None)
        if span is not None:
            span.end(end_time=at_ns)

    def handle(self, e: Any) -> None:
        t = type(e)
        at = int(e.timestamp * 1_000_000)
        trace = self.trace
        if t is ev.MessageReceived:
            msg, kind = self.lin.received(e.actor_id, e.port, e.queue_depth)
            self._end(e.actor_id, at)
            parent = self.sent.pop(msg, None)
            ctx = trace.set_span_in_context(trace.NonRecordingSpan(parent)) if parent else None
            span = self.tracer.start_span(
                f"{e.actor_id} process", context=ctx, kind=self.kind.CONSUMER,
                start_time=at, attributes={
                    "messaging.system": "reflowpy", "messaging.operation.type": "process",
                    "messaging.operation.name": "process",
                    "messaging.destination.name": f"{e.actor_id}.{e.port}",
                    "messaging.message.id": str(msg), "reflowpy.network": self.network,
                    "reflowpy.node": e.actor_id, "reflowpy.origin": kind,
                    "reflowpy.queue_depth": e.queue_depth})
            self.open[e.actor_id] = span
        elif t is ev.MessageSent:
            msg, causes = self.lin.sent(e.from_actor, e.to_actor, e.to_port, e.queue_depth)
            parent = self.open.get(e.from_actor)
            ctx = trace.set_span_in_context(parent) if parent is not None else None
            links = []
            if causes and len(causes) > 1:
                links = [trace.Link(c) for c in (self._ctx_of(m) for m in causes) if c]
            dest = f"{e.to_actor}.{e.to_port}" if e.to_actor else f"outport {e.to_port}"
            span = self.tracer.start_span(
                f"{e.from_actor} send", context=ctx, kind=self.kind.PRODUCER, start_time=at,
                links=links, attributes={
                    "messaging.system": "reflowpy", "messaging.operation.type": "send",
                    "messaging.operation.name": "send", "messaging.destination.name": dest,
                    "messaging.message.id": str(msg), "reflowpy.network": self.network,
                    "reflowpy.node": e.from_actor, "reflowpy.port": e.from_port,
                    "reflowpy.causes": [str(c) for c in causes or []]})
            span.end(end_time=at)
            if e.to_actor:
                self.sent[msg] = span.get_span_context()
                if len(self.sent) > _MAX_INFLIGHT:
                    self.sent.popitem(last=False)
            self._remember(msg, span.get_span_context())
        elif t is ev.ActorFailed:
            self.lin.failed(e.actor_id)
            span = self.open.get(e.actor_id)
            if span is not None:
                span.add_event("exception", timestamp=at, attributes={
                    "exception.type": e.error_type, "exception.message": e.error,
                    "reflowpy.attempt": e.attempt, "reflowpy.will_retry": e.will_retry})
                if not e.will_retry:
                    span.set_status(trace.Status(trace.StatusCode.ERROR,
                                                 f"{e.error_type}: {e.error}"))
        elif t is ev.DeadLettered:
            self.lin.dead_lettered(e.actor_id, e.port)
            span = self.open.get(e.actor_id)
            if span is not None:
                span.set_attribute("reflowpy.dead_letter", e.letter_id)
        elif t is ev.NetworkShutdown:
            for node in list(self.open):
                self._end(node, at)

    def _remember(self, msg: int, ctx: Any) -> None:
        self.recent[msg] = ctx
        if len(self.recent) > _MAX_INFLIGHT:
            self.recent.popitem(last=False)

    def _ctx_of(self, msg: int) -> Any:
        return self.recent.get(msg)


@asynccontextmanager
async def otel_recording(net: Network, tracer_provider: Any = None, *,
                         buffer: int = 100_000) -> AsyncIterator[None]:
    """Export ``net``'s activations and sends as spans while the block runs (enter it
    before the network starts; stop the network inside the block)."""
    trace = _otel()
    provider = tracer_provider if tracer_provider is not None else tracer_provider_from_env()
    tracer = provider.get_tracer("reflowpy.observe", schema_url=None) if hasattr(
        provider, "get_tracer") else trace.get_tracer("reflowpy.observe")
    spans = _Spans(tracer, Lineage(stats.firing_rules(net)), net.name)
    sub = net.events(buffer)

    def take() -> None:
        while True:
            try:
                event = sub.get_nowait()
            except trio.WouldBlock:
                return
            spans.handle(event)

    try:
        async with trio.open_nursery() as nursery:
            async def follow() -> None:
                while not sub.closed:
                    await sub.wait()
                    take()

            nursery.start_soon(follow)
            try:
                yield
            finally:
                take()
                nursery.cancel_scope.cancel()
    finally:
        sub.close()
        spans.handle(ev.NetworkShutdown(network=net.name))
        if tracer_provider is None and hasattr(provider, "shutdown"):
            provider.shutdown()
