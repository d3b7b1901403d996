"""``/metrics`` of a real server, scraped and parsed by prometheus-client's text parser."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.observe.conftest import feed, start_doubler
from tests.server.conftest import Served


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
           **labels: str) -> float:
    hits = [v for (n, lab), v in samples.items()
            if n == name and all(dict(lab).get(k) == want for k, want in labels.items())]
    assert len(hits) == 1, (name, labels, hits)
    return hits[0]


async def test_metrics_scraped_by_prometheus_parser(served: Served) -> None:
    async with served.client() as client:
        ex = await start_doubler(client)
        await feed(client, ex, [1, 2, 3], 3)
        first = await client.get("/metrics")
        assert first.status_code == 200
        assert first.headers["content-type"].startswith("text/plain; version=0.0.4")
        s1 = _samples(first.text)
        assert _value(s1, "reflowpy_node_activations_total", network=ex, node="d") == 3
        assert _value(s1, "reflowpy_node_messages_in_total", node="d", graph="doubler") == 3
        assert _value(s1, "reflowpy_node_messages_out_total", node="r") == 3
        assert _value(s1, "reflowpy_port_queue_capacity", node="r", port="in") == 64
        assert _value(s1, "reflowpy_port_queue_depth", node="r", port="in") == 0
        assert _value(s1, "reflowpy_network_running", network=ex) == 1
        assert _value(s1, "reflowpy_network_dead_letters", network=ex) == 0
        await feed(client, ex, list(range(200)), 203)
        s2 = _samples((await client.get("/metrics")).text)
        assert _value(s2, "reflowpy_node_activations_total", network=ex, node="d") == 203
        assert _value(s2, "reflowpy_port_queue_high_water", node="d", port="in") >= 1
        # low cardinality: 200 more messages, not one more series
        assert set(s1) == set(s2)
        assert all("msg" not in dict(lab) for _, lab in s2)
        busy = [v for (n, _), v in s2.items() if n.startswith("reflowpy_node_") and
                n.endswith("_seconds_total")]
        assert busy and all(v >= 0 for v in busy)
        await client.post(f"/executions/{ex}/stop", json={})


async def test_metrics_need_the_token(nursery: object, tmp_path: object) -> None:
    import trio

    from tests.server.conftest import start_server

    assert isinstance(nursery, trio.Nursery)
    s = await start_server(nursery, tmp_path / "d", token="s3cret")  # type: ignore[operator]
    async with httpx.AsyncClient(base_url=s.url) as anon:
        r = await anon.get("/metrics")
        assert r.status_code == 401
        assert "reflowpy_" not in r.text
    async with s.client() as c:
        assert (await c.get("/metrics")).status_code == 200
    s.shutdown.set()
