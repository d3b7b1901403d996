"""OpenTelemetry spans, checked with the SDK's in-memory exporter."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import reflowpy as rf
from reflowpy.errors import ConfigError
from reflowpy.observe.otel import otel_recording, tracer_provider_from_env
from tests.observe.components import failing_graph, registry


def _provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def test_spans_follow_a_message_and_mark_the_failure() -> None:
    provider, exporter = _provider()
    net = rf.Network(failing_graph(), registry())
    async with otel_recording(net, provider), net:
        await net.send("in", "1,x")
        await net.idle()
    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    names = sorted({s.name for s in spans})
    assert names == ["double process", "double send", "parse process", "parse send",
                     "split process", "split send"]
    out = next(s for s in spans if s.name == "double send")
    assert out.kind is SpanKind.PRODUCER
    assert out.attributes is not None
    assert out.attributes["messaging.destination.name"] == "outport out"
    assert out.attributes["messaging.operation.type"] == "send"
    # walk the parents: the output's trace goes back to the input's activation
    chain = []
    span: Any = out
    while span is not None:
        chain.append(span.name)
        span = by_id.get(span.parent.span_id) if span.parent else None
    assert chain == ["double send", "double process", "parse send", "parse process",
                     "split send", "split process"]
    assert len({s.context.trace_id for s in spans if s.name != "parse process"
                or s.status.status_code is not StatusCode.ERROR}) >= 1
    failed = [s for s in spans if s.status.status_code is StatusCode.ERROR]
    assert [s.name for s in failed] == ["parse process"]
    assert failed[0].events[0].name == "exception"
    assert failed[0].events[0].attributes is not None
    assert failed[0].events[0].attributes["exception.type"] == "ValueError"
    assert failed[0].context.trace_id == out.context.trace_id  # same input, same trace


async def test_join_send_links_every_cause() -> None:
    provider, exporter = _provider()
    g = rf.Graph("join")
    g.add_node("pa", "t/Pass")
    g.add_node("pb", "t/Pass")
    g.add_node("j", "t/Add")
    g.add_edge("pa", "out", "j", "a")
    g.add_edge("pb", "out", "j", "b")
    g.add_inport("a", "pa", "in")
    g.add_inport("b", "pb", "in")
    g.add_outport("out", "j", "out")
    net = rf.Network(g, registry())
    async with otel_recording(net, provider), net:
        await net.send("a", 1)
        await net.send("b", 2)
        await net.idle()
    spans = exporter.get_finished_spans()
    send = next(s for s in spans if s.name == "j send")
    upstream = {s.context.span_id for s in spans if s.name in ("pa send", "pb send")}
    assert len(upstream) == 2
    assert {link.context.span_id for link in send.links} == upstream


def test_exporter_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "svc-x")
    provider = tracer_provider_from_env()
    assert provider.resource.attributes["service.name"] == "svc-x"
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "carrier-pigeon")
    with pytest.raises(ConfigError, match="carrier-pigeon"):
        tracer_provider_from_env()
