"""``POST /events`` on a real server: another process's events into the trace store,
then the same questions over REST; hostile bodies are refused with the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reflowpy as rf
from tests.observe.components import failing_graph, registry
from tests.scale import long_scale
from tests.server.conftest import Served, start_server


async def _remote_events() -> list[Any]:
    """What a remote reflowpy (or a logger plugin) would post: a run's events."""
    net = rf.Network(failing_graph(), registry(), name="remote")
    events: list[Any] = []
    with net.events(10_000) as sub:
        async with net:
            await net.send("in", "3,y,4")
            await net.idle()
        while True:
            try:
                events.append(sub.get_nowait())
            except trio.WouldBlock:
                break
    return [msgspec.to_builtins(e) for e in events]


async def test_ingested_run_answers_root_cause_over_rest(served: Served) -> None:
    events = await _remote_events()
    half = len(events) // 2
    async with served.client() as c:
        for part in (events[:half], events[half:]):
            r = await c.post("/events", params={"sync": "1"},
                             json={"execution": "remote-1", "graph": "numbers",
                                   "events": part})
            assert r.status_code == 202, r.text
        assert r.json()["ended"] is True
        listing = (await c.get("/traces")).json()
        assert [(t["id"], t["source"], t["status"]) for t in listing] == [
            ("remote-1", "ingest", "completed")]
        fails = (await c.get("/traces/remote-1/failures")).json()
        assert [f["node"] for f in fails] == ["parse"]
        assert fails[0]["inputs"][0]["value"] == "3,y,4"
        assert "ValueError" in fails[0]["error"]
        outs = (await c.get("/traces/remote-1/events", params={"kind": "output"})).json()
        assert [row[10] for row in outs] == [6, 8]
        lin = (await c.get(f"/traces/remote-1/lineage/{outs[1][8]}")).json()
        assert [h["value"] for h in lin["inputs"]] == ["3,y,4"]
        assert (await c.get("/traces/nope")).status_code == 404
        metrics = (await c.get("/metrics")).text
        assert f"reflowpy_ingested_events {float(len(events))}" in metrics


BAD_BODIES = [
    (b"not json", "not JSON"),
    (b"[]", "Expected `object`"),
    (b'{"execution": "x", "events": [{"_type": "Bogus"}]}', "Bogus"),
    (b'{"execution": "x", "events": [{"_type": "MessageSent", "fromActor": 5}]}',
     "$.events[0].fromActor"),
    (b'{"execution": "../../etc", "events": []}', "`execution` must be"),
    (b'{"execution": "x", "events": [], "extra": 1}', "extra"),
    # msgspec raised RecursionError (a 500) past ~1000 levels
    (b'{"execution": "x", "events": [{"_type": "MessageSent", "fromActor": "a", "fromPort":'
     b' "o", "toActor": "b", "toPort": "i", "message": ' + b"[" * 5000 + b"]" * 5000 + b"}]}",
     "nest"),
]


@pytest.mark.parametrize(("body", "reason"), BAD_BODIES)
async def test_bad_batches_are_refused(served: Served, body: bytes, reason: str) -> None:
    async with served.client() as c:
        r = await c.post("/events", content=body,
                         headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text
        assert reason in r.json()["detail"]
        assert (await c.get("/traces")).json() == []


@settings(max_examples=long_scale(40), suppress_health_check=[HealthCheck.too_slow])
@given(body=st.one_of(st.binary(max_size=300), st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=4),
    max_leaves=20).map(lambda v: msgspec.json.encode(
        {"execution": "fz", "events": [v] if not isinstance(v, list) else v}))))
def test_fuzzed_bodies_never_crash_the_ingest(tmp_path_factory: pytest.TempPathFactory,
                                              body: bytes) -> None:
    from reflowpy.observe.ingest import IngestError, Ingestor
    from reflowpy.observe.store import SqliteStore

    store = SqliteStore(tmp_path_factory.mktemp("fz") / "t.sqlite")
    ingestor = Ingestor(store)

    async def run() -> None:
        try:
            batch = ingestor.decode(body)
        except IngestError:
            return
        await ingestor.ingest(batch)
        await ingestor.sync()

    trio.run(run)
    trio.run(ingestor.close)
    store.close()


async def test_oversized_and_unauthenticated(nursery: trio.Nursery, tmp_path: Path) -> None:
    s = await start_server(nursery, tmp_path / "d", token="t0k", max_body=1000)
    async with httpx.AsyncClient(base_url=s.url) as anon:
        r = await anon.post("/events", json={"execution": "a", "events": []})
        assert r.status_code == 401
    async with s.client() as c:
        r = await c.post("/events", content=b"x" * 5000)
        assert r.status_code == 413
        r = await c.post("/events", json={"execution": "a", "events": []})
        assert r.status_code == 202
    s.shutdown.set()


def test_the_ingest_itself_refuses_bodies_nested_past_the_recursion_limit(
        tmp_path: Path) -> None:
    # the server's request guard refuses them first; an Ingestor mounted without it
    # raised RecursionError from msgspec
    from reflowpy.observe.ingest import IngestError, Ingestor
    from reflowpy.observe.store import SqliteStore

    ingestor = Ingestor(SqliteStore(tmp_path / "t.sqlite"))
    with pytest.raises(IngestError, match="recursion limit"):
        ingestor.decode(BAD_BODIES[-1][0])
