"""The hop stream replayed at query time answers exactly as the lineage model run per hop.

One network is recorded twice at once: by the collector (raw hop records, lineage
derived when the trace is read: layout 3) and by the reference, the collector's former
per-hop path (:class:`~reflowpy.observe.collector._TraceTap` on the bus: message ids and
causes assigned as each event happens, rows written as they are). Over random
broadcast / merge / failing / backpressured runs, random batch sizes (chunks cut
anywhere in a message's hops) and random queries, every answer must be the same: the
events (all but the time of a row derived from a receive, which a hop record does not
take), their filters, forward lineage, ``lineage``/``history``/``failures``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reflowpy as rf
from reflowpy.observe import Collector, SqliteStore, query, stats
from reflowpy.observe.collector import Recording, _RowSink, _TraceTap, _Writer
from reflowpy.observe.lineage import Lineage
from reflowpy.observe.store import HOPS, ROWS, EventRow, ExecutionRecord
from tests.observe.test_trace_store import _graph, _registry
from tests.scale import long_scale


def _same(a: EventRow, b: EventRow, with_ts: bool) -> tuple[Any, ...]:
    got = (a.seq, a.kind, a.node, a.port, a.peer_node, a.peer_port, a.msg, a.causes,
           a.value, a.error, a.extra)
    return (*got, a.ts) if with_ts else got


async def _both(store: SqliteStore, origins: list[int], fail_on: list[int],
                externals: list[int], capacity: int, batch: int) -> tuple[str, str]:
    net = rf.Network(_graph(fail_on, capacity), _registry(), capacity=capacity)
    ref = Recording("reference", 1)
    writer = _Writer(store, 1 << 20, 4096)
    writer.submit("begin", ExecutionRecord(id="reference", started=1.0))
    sink = _RowSink(ref, writer, batch)
    tap = _TraceTap(sink, Lineage(stats.firing_rules(net), None), bus=net.bus)
    net.bus.tap(tap)
    async with Collector(store, batch=batch, backlog=1 << 20).record(
            net, execution_id="hops") as rec, net:
        for i, o in enumerate(origins):
            await net.send("in", (o, ()))
            if i < len(externals):  # straight into the merged port, no MessageSent
                await net.send(("e", "in"), (externals[i], ("ext",)))
        await net.idle()
    net.bus.untap(tap)
    sink.flush()
    writer.submit("finish", {"execution": "reference", "status": "completed",
                             "dropped": 0, "inexact": False, "error": None})
    await writer.close()
    assert rec.dropped == 0 and ref.dropped == 0
    return "reference", rec.execution_id


@settings(max_examples=long_scale(30), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(origins=st.lists(st.integers(0, 50), min_size=1, max_size=10),
       fail_on=st.lists(st.integers(0, 50), max_size=3),
       externals=st.lists(st.integers(100, 120), max_size=3),
       capacity=st.integers(1, 4), batch=st.sampled_from([1, 2, 5, 8000]),
       queries=st.lists(st.tuples(
           st.one_of(st.none(), st.lists(st.sampled_from(
               ["sent", "output", "input", "failed", "dead", "idle"]), max_size=2)),
           st.one_of(st.none(), st.sampled_from(["a", "b", "c", "e"])),
           st.one_of(st.none(), st.lists(st.integers(1, 60), max_size=3)),
           st.integers(0, 80), st.integers(0, 50), st.booleans()), max_size=6))
def test_replayed_hops_answer_as_the_per_hop_model(
        tmp_path: Path, origins: list[int], fail_on: list[int], externals: list[int],
        capacity: int, batch: int, queries: list[Any]) -> None:
    store = SqliteStore(tmp_path / f"t{batch}-{capacity}-{len(origins)}.sqlite")
    store.clear_events("reference")
    store.clear_events("hops")
    try:
        ref, hops = trio.run(_both, store, origins, fail_on, externals, capacity, batch)
        forms = {f for (f,) in store._execute(
            "SELECT DISTINCT form FROM chunks WHERE execution = ?", (hops,))}
        assert forms == {HOPS}
        assert {f for (f,) in store._execute(
            "SELECT DISTINCT form FROM chunks WHERE execution = ?", (ref,))} == {ROWS}
        want = store.events(ref, limit=10**6)
        got = store.events(hops, limit=10**6)
        assert [_same(r, r, False) for r in got] == [_same(r, r, False) for r in want]
        # a send's time is its own record's
        assert all(g.ts > 0 for g in got)
        # a hop recording counts its records (a receive of a sent message is one, and
        # makes no row)
        assert store.execution(hops).events >= store.execution(ref).events == len(want)
        assert not store.execution(hops).inexact
        for kinds, node, msgs, after, limit, newest in queries:
            kw = {"kinds": kinds, "node": node, "msgs": msgs, "after_seq": after,
                  "limit": limit, "newest": newest}
            assert [_same(r, r, False) for r in store.events(hops, **kw)] == [
                _same(r, r, False) for r in store.events(ref, **kw)], kw
            for m in msgs or [1]:
                assert [_same(r, r, False) for r in store.caused_by(hops, m)] == [
                    _same(r, r, False) for r in store.caused_by(ref, m)]
        for row in query.outputs(store, ref):
            assert row.msg is not None
            h1, r1 = query.lineage(store, ref, row.msg)
            h2, r2 = query.lineage(store, hops, row.msg)
            assert [(h.msg, h.kind, h.node, h.value, h.causes) for h in h2] == [
                (h.msg, h.kind, h.node, h.value, h.causes) for h in h1]
            assert [h.seq for h in r2] == [h.seq for h in r1]
        assert [(f.node, f.msg, f.error, [h.seq for h in f.inputs])
                for f in query.failures(store, hops)] == [
            (f.node, f.msg, f.error, [h.seq for h in f.inputs])
            for f in query.failures(store, ref)]
    finally:
        store.close()


def test_a_layout_2_file_keeps_its_answers_and_takes_hop_chunks(tmp_path: Path) -> None:
    """A file written by layout 2 (chunks of rows, no ``form``/``lineage`` columns) is
    migrated in place: its executions answer as before and new recordings go in as
    hop chunks beside them."""
    import sqlite3

    path = tmp_path / "v2.trace"
    store = SqliteStore(path)
    store.begin(ExecutionRecord(id="old", started=1.0, ended=2.0, status="completed"))
    rows = [("old", i, float(i), "sent", "a", "out", "b", "in", i, [i - 1], (i, "v"),
             None, None) for i in range(1, 40)]
    store.append(rows)
    want = store.events("old")
    store.close()
    db = sqlite3.connect(path)  # back to layout 2's shape
    db.execute("ALTER TABLE chunks DROP COLUMN form")
    db.execute("ALTER TABLE executions DROP COLUMN lineage")
    db.execute("UPDATE trace_meta SET value = '2' WHERE key = 'layout'")
    db.commit()
    db.close()
    store = SqliteStore(path)
    assert store._execute("SELECT value FROM trace_meta WHERE key = 'layout'") == [("3",)]
    assert store.events("old") == want
    assert store.events("old", msgs=[7]) == [want[6]]
    assert not store.execution("old").inexact

    @rf.actor(inports=["in"], outports=["out"])
    def inc(ctx: rf.ActorContext) -> dict[str, Any]:
        return {"out": ctx.inputs["in"] + 1}

    reg = rf.Registry()
    reg.register("t/Inc", inc)
    g = rf.Graph("g")
    g.add_node("a", "t/Inc")
    g.add_inport("in", "a", "in")
    g.add_outport("out", "a", "out")

    async def main() -> str:
        net = rf.Network(g, reg)
        async with Collector(store).record(net) as rec, net:
            for i in range(5):
                await net.send("in", i)
            await net.idle()
        return rec.execution_id

    ex = trio.run(main)
    assert sorted(r.value for r in query.outputs(store, ex)) == [1, 2, 3, 4, 5]
    assert store.events("old") == want
    store.close()


@pytest.mark.parametrize("cut", [0, 1, 2])
def test_a_damaged_hop_chunk_is_refused_naming_the_store(tmp_path: Path, cut: int) -> None:
    from reflowpy.observe import TraceStoreError

    store = SqliteStore(tmp_path / "d.trace")

    async def main() -> str:
        net = rf.Network(_graph([], 4), _registry())
        async with Collector(store, batch=3).record(net) as rec, net:
            await net.send("in", (1, ()))
            await net.idle()
        return rec.execution_id

    ex = trio.run(main)
    firsts = [f for (f,) in store._execute(
        "SELECT first_seq FROM chunks WHERE execution = ? ORDER BY first_seq", (ex,))]
    store._execute("UPDATE chunks SET data = ? WHERE first_seq = ?",
                   (b"\x93\x01", firsts[cut]))
    store._commit()
    fresh = SqliteStore(tmp_path / "d.trace")
    with pytest.raises(TraceStoreError, match=rf"d.trace.*the chunk from seq {firsts[cut]}"):
        fresh.events(ex)
    fresh.close()
    store.close()
