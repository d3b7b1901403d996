"""Fault injection on the recording: cancelled at random points, a store that fails.

Whatever happens to the trace, the dataflow is not affected (the ledger of the network
holds), the execution record ends with a status, and a failing store is reported, not
swallowed."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import trio

import reflowpy as rf
from reflowpy.observe import Collector, SqliteStore, TraceStoreError
from tests.observe.components import failing_graph, registry
from tests.scale import long_scale


@pytest.mark.parametrize("sample", [1, 7])
async def test_cancel_at_random_points(tmp_path: Path, sample: int) -> None:
    rng = random.Random(1234 + sample)
    store = SqliteStore(tmp_path / "t.sqlite")
    runs = long_scale(12)
    for i in range(runs):
        net = rf.Network(failing_graph(), registry(), output_capacity=100_000)
        checkpoints = rng.randrange(1, 400)

        async def body(net: rf.Network = net, checkpoints: int = checkpoints,
                       i: int = i) -> None:
            async with Collector(store, sample=sample, burst=20).record(
                    net, execution_id=f"run{sample}-{i}"), net:
                for k in range(checkpoints):
                    await net.send("in", f"{k},{k + 1},x{k}" if k % 5 == 0 else str(k))
                    await trio.lowlevel.checkpoint()
                await net.idle()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(body)
            for _ in range(rng.randrange(0, 300)):  # cancel at a random point
                await trio.lowlevel.checkpoint()
            nursery.cancel_scope.cancel()
        rec = store.execution(f"run{sample}-{i}")
        assert rec.ended is not None and rec.status in (
            "failed", "completed", "dead_letters", "stopped")
        assert net.state == "stopped"
        outs = sorted(net.outputs("out").drain())
        traced_outs = sorted(r.value for r in store.events(rec.id, kinds=("output",)))
        traced_dead = store.events(rec.id, kinds=("dead",))
        if sample == 1 and rec.dropped == 0:
            # a full trace is the network's own ledger: every output and dead letter
            assert traced_outs == outs
            assert len(traced_dead) == len(net.dead_letters())
        else:  # sampled: what was traced did happen
            assert all(outs.count(v) >= traced_outs.count(v) for v in set(traced_outs))
            assert len(traced_dead) <= len(net.dead_letters())
    store.close()


class _FailingStore(SqliteStore):
    def append(self, rows: Any, max_value_bytes: int = 4096) -> None:
        raise TraceStoreError(f"trace store {str(self.path)!r}: disk I/O error (injected)")

    # the collector's writer stores chunks encoded on the trio thread
    def write_chunks(self, chunks: Any) -> None:
        raise TraceStoreError(f"trace store {str(self.path)!r}: disk I/O error (injected)")


async def test_a_failing_store_is_reported_and_the_dataflow_finishes(tmp_path: Path) -> None:
    store = _FailingStore(tmp_path / "t.sqlite")
    net = rf.Network(failing_graph(), registry())
    with pytest.raises(TraceStoreError, match="disk I/O error"):
        async with Collector(store, batch=2).record(net), net:
            for k in range(20):
                await net.send("in", str(k))
            await net.idle()
    assert sorted(net.outputs("out").drain()) == sorted(2 * k for k in range(20))


async def test_a_batch_that_cannot_be_encoded_is_reported_at_close(tmp_path: Path) -> None:
    # the writer's rows are encoded on the trio thread: an error there is kept and
    # raised by close(), as a failed write is, and never reaches the kernel's call
    from reflowpy.observe.collector import _Writer
    from reflowpy.observe.store import NOVALUE, ExecutionRecord

    store = SqliteStore(tmp_path / "t.sqlite")
    writer = _Writer(store, 4, 4096)
    writer.submit("begin", ExecutionRecord(id="e", started=1.0))

    def row(seq: int) -> tuple[Any, ...]:
        return ("e", seq, 0.0, "idle", "", "", "", "", None, None, NOVALUE, None, None)

    assert writer.submit_rows([row(1), row(2)])
    assert writer.submit_rows([row(3), row(3)])  # taken, fails to encode
    assert writer.submit_rows([row(4)])
    with pytest.raises(TraceStoreError, match="two events with the same seq"):
        await writer.close()
    assert [r.seq for r in store.events("e")] == [1, 2, 4]
    store.close()
