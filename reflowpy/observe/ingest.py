"""``POST /events``: events from other processes into the same trace store.

Bridge peers, other reflowpy servers, or a foreign engine's logger plugin (as FlowO
does for Snakemake) post batches of events in the wire form of
:mod:`reflowpy.network.events` (``_type`` tag, camelCase fields)::

    {"execution": "run-42", "graph": "etl", "events": [{"_type": "MessageSent", ...}]}

Each execution gets causality ids exactly as a local recording does (the same
:class:`~reflowpy.observe.lineage.Lineage` and row builder), across batches, so lineage
and failure queries work on ingested runs too. A ``NetworkShutdown`` ends the execution.
Bad input is refused with an error that names the batch index and field; nothing of a
refused batch is stored.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
import trio

from reflowpy.errors import ReflowError
from reflowpy.network import events as ev
from reflowpy.observe.collector import Recording, _RowSink, _Writer
from reflowpy.observe.lineage import Lineage
from reflowpy.observe.store import ExecutionRecord, TraceStore

__all__ = ["IngestBatch", "IngestError", "Ingestor"]

_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


class IngestError(ReflowError):
    """A posted batch was refused (the message names what and where)."""


class IngestBatch(msgspec.Struct, forbid_unknown_fields=True):
    """One posted batch of events for one execution."""

    execution: str
    events: list[ev.NetworkEvent]
    graph: str = ""


_DECODER = msgspec.json.Decoder(IngestBatch)


class _Run:
    def __init__(self, execution: str, writer: _Writer, batch: int) -> None:
        self.rec = Recording(execution, 1)
        self.sink = _RowSink(self.rec, writer, batch)
        self.sink.handle = self.sink.handler(Lineage())
        self.last = time.monotonic()


class Ingestor:
    """Keeps per-execution lineage across posted batches and writes rows off the trio
    thread. At most ``max_runs`` executions are tracked at once (the least recently
    posted one is finished when a new one arrives)."""

    def __init__(self, store: TraceStore, *, max_events: int = 10_000, max_runs: int = 1000,
                 max_value_bytes: int = 4096) -> None:
        self.store = store
        self.max_events = max_events
        self.max_runs = max_runs
        self.writer = _Writer(store, 256, max_value_bytes)
        self.runs: dict[str, _Run] = {}
        self.accepted = 0

    def decode(self, body: bytes) -> IngestBatch:
        """Parse and check a posted body; raises :class:`IngestError`."""
        try:
            batch = _DECODER.decode(body)
        except msgspec.ValidationError as exc:
            raise IngestError(f"POST /events: {exc}") from None
        except msgspec.DecodeError as exc:
            raise IngestError(f"POST /events: the body is not JSON: {exc}") from None
        except RecursionError:
            raise IngestError("POST /events: the body nests past the recursion limit"
                              ) from None
        if not batch.execution or len(batch.execution) > 128 or not set(
                batch.execution) <= _ID_CHARS:
            raise IngestError("POST /events: `execution` must be 1-128 characters of"
                              " letters, digits and -_.:")
        if len(batch.events) > self.max_events:
            raise IngestError(f"POST /events: at most {self.max_events} events per batch,"
                              f" got {len(batch.events)}")
        return batch

    async def ingest(self, batch: IngestBatch) -> dict[str, Any]:
        """Store one decoded batch; returns the execution id and counts."""
        run = self.runs.get(batch.execution)
        if run is None:
            if len(self.runs) >= self.max_runs:
                oldest = min(self.runs.values(), key=lambda r: r.last)
                await self._finish(oldest, "stale")
            run = self.runs[batch.execution] = _Run(batch.execution, self.writer, 1 << 30)
            rec = ExecutionRecord(id=batch.execution, graph=batch.graph,
                                  started=time.time() * 1000.0, source="ingest")
            try:
                existing = await trio.to_thread.run_sync(self.store.execution, batch.execution)
                rec = existing if existing.source == "ingest" and existing.ended is None \
                    else rec
            except ReflowError:
                pass
            if rec.events == 0:
                await trio.to_thread.run_sync(self.writer.submit, "begin", rec)
        run.last = time.monotonic()
        ended = False
        for event in batch.events:
            run.sink.handle(event)
            if type(event) is ev.NetworkShutdown:
                ended = True
        rows, run.sink.rows = run.sink.rows, []
        if rows:
            await trio.to_thread.run_sync(self.writer.submit, "rows", rows)
        self.accepted += len(batch.events)
        if ended:
            await self._finish(run, "completed")
        return {"execution": batch.execution, "accepted": len(batch.events), "ended": ended}

    async def _finish(self, run: _Run, status: str) -> None:
        self.runs.pop(run.rec.execution_id, None)
        inexact = bool(run.sink.lineage and run.sink.lineage.inexact)
        await trio.to_thread.run_sync(self.writer.submit, "finish", {
            "execution": run.rec.execution_id, "status": status, "dropped": 0,
            "inexact": inexact, "error": None})

    async def sync(self) -> None:
        """Wait until everything accepted so far is written."""
        await self.writer.sync()
        if self.writer.error is not None:
            raise self.writer.error

    async def close(self) -> None:
        """Finish open executions and stop the writer thread."""
        for run in list(self.runs.values()):
            await self._finish(run, "incomplete")
        await self.writer.close()
