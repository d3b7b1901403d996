"""The chunked store layout (version 2) against an in-memory model of the event table.

Random event streams are cut into random batches (shuffled inside a batch, several
executions mixed), appended, and every query (kinds, node, message ids, after seq,
limit, newest first, forward lineage, event counts) must give what filtering the plain
list of events gives. Values shared by several hops are one object (as a pass-through
chain sends them) and must come back on every hop. Also: a file of the first layout is
migrated with its answers unchanged, a newer layout and damaged chunks are refused with
errors naming the store, out-of-order appends are refused, retention counts events
across chunks.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reflowpy.observe import SqliteStore, TraceStoreError
from reflowpy.observe.store import (
    NOVALUE,
    EventRow,
    ExecutionRecord,
    _SqlStore,
    encode_value,
)
from tests.scale import long_scale

KINDS = ["sent", "output", "input", "recv", "unknown", "failed", "dead", "started",
         "idle", "shutdown", "ingest", "custom-kind"]
NODES = ["a", "b", "c", ""]
LIMIT = 64  # max_value_bytes: some values are cut

_values = st.one_of(st.none(), st.integers(-2**40, 2**40), st.text(max_size=40),
                    st.tuples(st.integers(0, 9), st.text(max_size=90)),
                    st.binary(max_size=8), st.floats(allow_nan=False))


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[tuple[Any, ...]], list[list[tuple[Any, ...]]]]:
    pool = draw(st.lists(_values, min_size=1, max_size=6))
    # one object per pool entry, reused by many rows (the dedup path), plus fresh copies
    objects = [(v,) if draw(st.booleans()) else v for v in pool]
    n = draw(st.integers(1, 70))
    rows: list[tuple[Any, ...]] = []
    seqs = {"e1": 0, "e2": 0}
    for _ in range(n):
        ex = draw(st.sampled_from(["e1", "e2"]))
        seqs[ex] += draw(st.integers(1, 3))
        kind = draw(st.sampled_from(KINDS))
        has_value = draw(st.booleans())
        value = (objects[draw(st.integers(0, len(objects) - 1))] if has_value
                 else NOVALUE)
        rows.append((
            ex, seqs[ex], float(draw(st.integers(0, 10**6))), kind,
            draw(st.sampled_from(NODES)), draw(st.sampled_from(["in", "out", ""])),
            draw(st.sampled_from(NODES)), "in",
            draw(st.one_of(st.none(), st.integers(1, 30))),
            draw(st.one_of(st.none(), st.lists(st.integers(1, 30), max_size=3))),
            value, draw(st.one_of(st.none(), st.text(max_size=10))),
            draw(st.one_of(st.none(), st.dictionaries(st.sampled_from(["x", "y"]),
                                                      st.integers(0, 5), max_size=2)))))
    # batches: cut in order per execution (appends are in seq order), mixed, shuffled
    cuts = sorted(draw(st.sets(st.integers(1, max(1, n - 1)), max_size=8)))
    batches = [rows[a:b] for a, b in zip([0, *cuts], [*cuts, n], strict=True) if rows[a:b]]
    shuffled = []
    for b in batches:
        b = list(b)
        random.Random(draw(st.integers(0, 1000))).shuffle(b)
        shuffled.append(b)
    return rows, shuffled


def _model_row(r: tuple[Any, ...]) -> EventRow:
    value = None if r[10] is NOVALUE else msgspec.json.decode(encode_value(r[10], LIMIT))
    return EventRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], value,
                    r[11], r[12])


def _model_events(model: list[EventRow], ex: str, *, kinds: list[str] | None,
                  node: str | None, msgs: list[int] | None, after_seq: int, limit: int,
                  newest: bool) -> list[EventRow]:
    rows = [r for r in model if r.execution == ex and r.seq > after_seq
            and (not kinds or r.kind in kinds)
            and (node is None or node in (r.node, r.peer_node))
            and (msgs is None or r.msg in msgs)]
    rows.sort(key=lambda r: r.seq, reverse=newest)
    rows = rows[:limit]
    if newest:
        rows.reverse()
    return rows


_queries = st.lists(st.tuples(
    st.sampled_from(["e1", "e2"]),
    st.one_of(st.none(), st.lists(st.sampled_from(KINDS), max_size=3)),
    st.one_of(st.none(), st.sampled_from(NODES)),
    st.one_of(st.none(), st.lists(st.integers(1, 32), max_size=4)),
    st.integers(0, 100), st.integers(0, 150), st.booleans()), min_size=1, max_size=12)


def check_store_against_model(store: _SqlStore, rows: list[tuple[Any, ...]],
                              batches: list[list[tuple[Any, ...]]],
                              queries: list[tuple[Any, ...]], together: bool = False
                              ) -> None:
    for ex in ("e1", "e2"):
        store.begin(ExecutionRecord(id=ex, started=1.0))
    if together:  # the collector's writer: every queued batch in one transaction
        store.append_batches(batches, LIMIT)
    else:
        for b in batches:
            store.append(b, LIMIT)
    model = [_model_row(r) for r in rows]
    for ex in ("e1", "e2"):
        assert store.execution(ex).events == sum(r.execution == ex for r in model)
        assert store.events(ex, limit=10**6) == _model_events(
            model, ex, kinds=None, node=None, msgs=None, after_seq=0, limit=10**6,
            newest=False)
    for ex, kinds, node, msgs, after, limit, newest in queries:
        got = store.events(ex, kinds=kinds, node=node, msgs=msgs, after_seq=after,
                           limit=limit, newest=newest)
        want = _model_events(model, ex, kinds=kinds, node=node, msgs=msgs, after_seq=after,
                             limit=limit, newest=newest)
        assert got == want, (ex, kinds, node, msgs, after, limit, newest)
        for m in msgs or [1]:
            assert store.caused_by(ex, m, limit=limit or 1) == [
                r for r in model if r.execution == ex and r.kind in ("sent", "output")
                and r.causes and m in r.causes][:limit or 1]


@settings(max_examples=long_scale(40), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(stream=streams(), queries=_queries, together=st.booleans())
def test_chunked_store_answers_like_the_event_list(tmp_path: Path, stream: Any,
                                                   queries: Any, together: bool) -> None:
    rows, batches = stream
    store = SqliteStore(":memory:")
    try:
        check_store_against_model(store, rows, batches, queries, together)
    finally:
        store.close()


def test_a_value_passed_on_is_stored_once_and_read_on_every_hop(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "t.sqlite")
    store.begin(ExecutionRecord(id="e", started=1.0))
    big = ("x" * 1000, 7)
    rows = [("e", i, 0.0, "sent", f"p{i}", "out", f"p{i + 1}", "in", i, [i - 1], big, None,
             None) for i in range(1, 11)]
    store.append(rows, 4096)
    (blob,) = store._execute("SELECT data FROM chunks")[0]
    assert len(blob) < 2 * 1000 + 500  # the value once, not ten times
    assert [r.value for r in store.events("e")] == [["x" * 1000, 7]] * 10
    store.close()


def test_out_of_order_and_duplicate_seqs_are_refused(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "t.sqlite")
    store.begin(ExecutionRecord(id="e", started=1.0))

    def row(seq: int) -> tuple[Any, ...]:
        return ("e", seq, 0.0, "idle", "", "", "", "", None, None, NOVALUE, None, None)

    store.append([row(5), row(6)])
    with pytest.raises(TraceStoreError, match=r"'e': events from seq 3 arrived after seq 6"):
        store.append([row(3), row(9)])
    with pytest.raises(TraceStoreError, match="two events with the same seq"):
        store.append([row(10), row(10)])
    assert [r.seq for r in store.events("e")] == [5, 6]
    assert store.execution("e").events == 2
    store.append([row(7)])  # the store still works after a refused batch
    assert [r.seq for r in store.events("e")] == [5, 6, 7]
    # several batches in one transaction: an overlap between two of them (or with what
    # is stored) refuses them all; each batch is its own chunk
    with pytest.raises(TraceStoreError, match=r"events from seq 9 arrived after seq 9"):
        store.append_batches([[row(8), row(9)], [row(9), row(11)]])
    with pytest.raises(TraceStoreError, match=r"events from seq 7 arrived after seq 7"):
        store.append_batches([[row(7)]])
    assert [r.seq for r in store.events("e")] == [5, 6, 7]
    store.append_batches([[row(8), row(9)], [], [row(10), row(12)]])
    assert [r.seq for r in store.events("e")] == [5, 6, 7, 8, 9, 10, 12]
    assert store.execution("e").events == 7
    assert store._execute("SELECT COUNT(*) FROM chunks")[0][0] == 4
    with pytest.raises(TraceStoreError, match="two events with the same seq"):
        store.append([row(20), row(21), row(20)])  # not adjacent
    with pytest.raises(TraceStoreError, match="columns"):
        store.append([row(30)[:-1]])
    assert [r.seq for r in store.events("e")] == [5, 6, 7, 8, 9, 10, 12]
    store.close()


def test_retention_counts_events_across_chunks(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "t.sqlite", max_events=100)
    for i in range(4):
        ex = f"e{i}"
        store.begin(ExecutionRecord(id=ex, started=1000.0 * (i + 1), ended=1.0))
        for part in range(4):  # 4 chunks of 10 events each
            store.append([(ex, part * 10 + s, 0.0, "sent", "a", "out", "b", "in", s, None,
                           s, None, None) for s in range(1, 11)])
    assert [r.events for r in store.executions()] == [40] * 4
    assert store.enforce_retention() == 2  # 40 + 40 fit, the third crosses 100
    assert [r.id for r in store.executions()] == ["e3", "e2"]
    assert store.events("e1") == [] and store._execute(
        "SELECT COUNT(*) FROM chunks WHERE execution IN ('e0', 'e1')") == [(0,)]
    store.max_events, store.max_age = None, 5.0
    assert store.enforce_retention(now=3.5 + 5.0) == 1  # e2 started at 3 s
    assert [r.id for r in store.executions()] == ["e3"]
    assert len(store.events("e3")) == 40
    store.close()


_V1_SCHEMA = """
CREATE TABLE executions (
    id TEXT PRIMARY KEY, graph TEXT NOT NULL, started REAL NOT NULL, ended REAL,
    status TEXT NOT NULL, source TEXT NOT NULL, sample INTEGER NOT NULL,
    dropped INTEGER NOT NULL, inexact INTEGER NOT NULL, error TEXT, graph_json TEXT,
    events INTEGER NOT NULL);
CREATE TABLE events (
    execution TEXT NOT NULL, seq INTEGER NOT NULL, ts REAL NOT NULL, kind TEXT NOT NULL,
    node TEXT NOT NULL, port TEXT NOT NULL, peer_node TEXT NOT NULL,
    peer_port TEXT NOT NULL, msg INTEGER, causes TEXT, value TEXT, error TEXT,
    extra TEXT, PRIMARY KEY (execution, seq));
"""


def test_a_first_layout_file_is_migrated_with_the_same_answers(tmp_path: Path) -> None:
    path = tmp_path / "old.trace"
    db = sqlite3.connect(path)
    db.executescript(_V1_SCHEMA)
    db.execute("INSERT INTO executions VALUES ('old', 'g', 1.0, 2.0, 'completed', 'run',"
               " 1, 0, 0, NULL, NULL, 2500)")
    rng = random.Random(7)
    want = []
    for seq in range(1, 2501):  # more than one chunk's worth
        kind = rng.choice(["sent", "output", "failed", "idle"])
        value = None if kind in ("failed", "idle") else f"[{seq}, \"v\"]"
        causes = None if seq == 1 else f"[{seq - 1}]"
        extra = '{"attempt": 1}' if kind == "failed" else None
        db.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   ("old", seq, seq * 1.5, kind, "a", "out", "b", "in", seq, causes, value,
                    "boom" if kind == "failed" else None, extra))
        want.append(EventRow("old", seq, seq * 1.5, kind, "a", "out", "b", "in", seq,
                             None if causes is None else [seq - 1],
                             None if value is None else [seq, "v"],
                             "boom" if kind == "failed" else None,
                             {"attempt": 1} if kind == "failed" else None))
    db.commit()
    db.close()
    store = SqliteStore(path)
    assert store.events("old", limit=10**6) == want
    assert store.events("old", msgs=[1234]) == [want[1233]]
    assert store.events("old", kinds=["failed"]) == [r for r in want if r.kind == "failed"]
    assert store.execution("old").events == 2500
    assert "events" not in store._tables()
    store.close()
    reopened = SqliteStore(path)  # migrated once; opening again changes nothing
    assert reopened.events("old", limit=10**6) == want
    reopened.close()


def test_a_newer_layout_and_a_damaged_chunk_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.trace"
    store = SqliteStore(path)
    store.begin(ExecutionRecord(id="e", started=1.0))
    store.append([("e", 1, 0.0, "sent", "a", "out", "b", "in", 1, None, 5, None, None)])
    store._execute("UPDATE chunks SET data = ?", (b"\xc1garbage",))
    store._commit()
    with pytest.raises(TraceStoreError, match=r"new.trace.*'e': the chunk from seq 1 is"
                                              r" damaged"):
        store.events("e")
    store._execute("UPDATE trace_meta SET value = '99' WHERE key = 'layout'")
    store._commit()
    store.close()
    with pytest.raises(TraceStoreError, match=r"new.trace.*layout 99 by a newer reflowpy"):
        SqliteStore(path)
