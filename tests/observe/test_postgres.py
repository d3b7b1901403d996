"""The PostgreSQL trace store against a real server (scripts/setup-postgres.sh starts
Debian's PostgreSQL; each test run creates and drops its own database), with
LISTEN/NOTIFY seen by a second store instance, as a second server would."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings

import reflowpy as rf
from reflowpy.observe import Collector, TraceStoreError, open_store, query
from reflowpy.observe.postgres import PostgresStore
from tests.observe.components import failing_graph, registry
from tests.observe.test_store_layout import _queries, check_store_against_model, streams
from tests.scale import long_scale

psycopg = pytest.importorskip("psycopg")

ADMIN_DSN = os.environ.get("REFLOWPY_PG_DSN",
                           "postgresql://reflowpy:reflowpy@127.0.0.1:5432/postgres")


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    try:
        admin = psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL at {ADMIN_DSN} (run scripts/setup-postgres.sh): {exc}")
    name = f"reflowpy_test_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield ADMIN_DSN.rsplit("/", 1)[0] + "/" + name
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


async def test_postgres_store_records_and_notifies(pg_dsn: str) -> None:
    store = open_store(pg_dsn)
    other = PostgresStore(pg_dsn)  # another server instance sharing the database
    assert isinstance(store, PostgresStore)
    stop, ready = threading.Event(), threading.Event()
    seen: list[str] = []

    def listen() -> None:
        for ex in other.listen(stop, timeout=0.2, ready=ready):
            seen.append(ex)
            stop.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, listen)
        await trio.to_thread.run_sync(ready.wait, 10)
        net = rf.Network(failing_graph(), registry())
        async with Collector(store).record(net) as rec, net:
            await net.send("in", "1,x")
            await net.idle()
        with trio.fail_after(20):
            await trio.to_thread.run_sync(stop.wait, 20)
    assert seen and seen[0] == rec.execution_id
    record = other.execution()
    assert record.id == rec.execution_id and record.status == "dead_letters"
    fails = query.failures(other, rec.execution_id)
    assert [(f.node, f.inputs[0].value) for f in fails] == [("parse", "1,x")]
    outs = query.outputs(other, rec.execution_id)
    assert [o.value for o in outs] == [2]
    _, roots = query.lineage(other, rec.execution_id, outs[0].msg or 0)
    assert [r.value for r in roots] == ["1,x"]
    other.max_events = 1
    assert other.enforce_retention() == 0  # the newest execution is always kept
    store.close()
    other.close()


def test_postgres_errors_name_the_server(pg_dsn: str) -> None:
    bad = pg_dsn.replace("reflowpy:reflowpy@", "reflowpy:wrong@")
    with pytest.raises(TraceStoreError, match=r"postgresql://\.\.\.@127\.0\.0\.1") as err:
        PostgresStore(bad)
    assert "wrong" not in str(err.value)  # the password is never echoed


@settings(max_examples=long_scale(8), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(stream=streams(), queries=_queries)
def test_postgres_chunked_store_answers_like_the_event_list(pg_dsn: str, stream: Any,
                                                            queries: Any) -> None:
    # the same model check as SQLite's (tests/observe/test_store_layout.py): the chunk
    # layout's bit-set and range filters in PostgreSQL's SQL, BYTEA blobs
    rows, batches = stream
    store = PostgresStore(pg_dsn)
    try:
        check_store_against_model(store, rows, batches, queries)
    finally:
        store.close()
