"""The trace store: executions and their events in SQL (SQLite by default).

An event is::

    (execution, seq, ts, kind, node, port, peer_node, peer_port, msg, causes, value,
     error, extra)

``kind`` is one of ``sent`` (node -> node), ``output`` (to an exported out-port),
``input`` (a value that entered without a sender: an IIP or ``Network.send``), ``recv``,
``unknown`` (queued before sampling started), ``failed``, ``dead``, ``started``,
``actor_started``, ``actor_completed``, ``idle``, ``shutdown`` and ``ingest`` (an
event posted by another process that has no message). ``msg`` is the causality id
assigned by :mod:`reflowpy.observe.lineage`, ``causes`` the ids that produced it.
``value`` is the message as JSON, cut at ``max_value_bytes``.

**Layout (version 3).** A chunk has a ``form``: ``rows`` (below: events as columns,
what :meth:`_SqlStore.append` and posted events write) or ``hops``: the raw hop stream
of a recording (:mod:`reflowpy.observe.hops`; the collector writes these), whose
message ids and causes are derived when it is read, by replaying the lineage model from
the execution's first chunk: an execution with hop chunks is read whole, in seq order,
whatever the query (the store keeps the last replay, so asking again costs only what is
new). Its ``events`` count is the records it holds (a receive is one, and makes no row),
and ``lineage`` (NULL until a replay of the ended execution) says whether the replay
disagreed with the recorded queue depths; :meth:`_SqlStore.execution` replays an ended
execution to learn it and reports it in ``inexact``.

Rows: events are not stored one row each: a traced message makes a
row per hop, and a SQL insert per hop costs several times the hop itself. Each batch
the collector writes becomes one row of the ``chunks`` table: its events as columns
(one list per field) in one msgpack blob encoded in a single call, each distinct
message value encoded once and referenced by every hop that carried it (a pass-through
chain sends the same immutable object on, so a message crossing ten nodes stores its
value once per chunk, not ten times). Beside the blob, a chunk row keeps what queries
filter on: its seq range, its range of causality ids and a bit set of the kinds it
holds, so "the failures of X", "the hops of message 42" or "events after seq N" read
only the chunks that can match. Chunks of one execution never overlap in seq
(:meth:`_SqlStore.append` refuses a batch that would), so reading them in ``first_seq``
order gives the events in order.

A file of the first layout (one ``events`` row per event) or of the second (row chunks,
no ``form``/``lineage`` columns) is migrated in place when opened; a store written by a
newer layout is refused with an error that says so.

:class:`SqliteStore` opens the file in WAL mode, so the collector's writer thread and
any number of readers (CLI, server) work at once. Writes come in batches, one
transaction each. Retention deletes whole executions, oldest first, beyond
``max_age`` seconds or ``max_events`` events. :class:`~reflowpy.observe.postgres.PostgresStore`
implements the same queries on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import operator
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec

from reflowpy.errors import ReflowError
from reflowpy.observe import hops

__all__ = ["LAYOUT", "EventRow", "ExecutionRecord", "SqliteStore", "TraceStore",
           "TraceStoreError", "encode_chunks", "encode_value", "new_execution_id"]

#: The store layout this code writes and reads (see the module docstring).
LAYOUT = 3


class TraceStoreError(ReflowError):
    """The trace store cannot be opened or queried (bad path, schema, unknown execution)."""


def new_execution_id() -> str:
    """A short, time-ordered execution id."""
    return f"{int(time.time() * 1000):x}-{uuid.uuid4().hex[:6]}"


class ExecutionRecord(msgspec.Struct, kw_only=True):
    """One recorded execution: what ran, when, how it ended, how complete its trace is."""

    id: str
    graph: str = ""
    started: float = 0.0
    ended: float | None = None
    status: str = "running"
    source: str = "run"
    sample: int = 1
    dropped: int = 0
    inexact: bool = False
    error: str | None = None
    graph_json: str | None = None
    events: int = 0


class EventRow(msgspec.Struct, frozen=True, array_like=True):
    """One stored event (see the module docstring for the columns)."""

    execution: str
    seq: int
    ts: float
    kind: str
    node: str
    port: str
    peer_node: str
    peer_port: str
    msg: int | None
    causes: list[int] | None
    value: Any
    error: str | None
    extra: dict[str, Any] | None


#: A row's ``value`` when the event carries no message (lifecycle, failures).
NOVALUE: Any = msgspec.UNSET

_ENC_JSON = msgspec.json.Encoder(enc_hook=repr)
_DECODE_JSON = msgspec.json.Decoder()


def encode_value(value: Any, limit: int) -> str:
    """A message value as stored: JSON (``repr`` for what JSON cannot hold), replaced
    by ``{"$truncated": size, "head": ...}`` beyond ``limit`` bytes."""
    try:
        data = _ENC_JSON.encode(value)
    except (TypeError, ValueError, OverflowError):
        data = _ENC_JSON.encode(repr(value))
    if len(data) > limit:
        return _ENC_JSON.encode({"$truncated": len(data),
                                 "head": data[:limit].decode("utf-8", "replace")}).decode()
    return data.decode()


class _Chunk(msgspec.Struct, array_like=True):
    """One batch of events of one execution, as columns (the blob of a ``chunks`` row).

    ``vref[i]`` indexes ``values`` (the distinct values of the chunk, as JSON text), or
    is -1 for an event without a value."""

    seq: list[int]
    ts: list[float]
    kind: list[str]
    node: list[str]
    port: list[str]
    peer_node: list[str]
    peer_port: list[str]
    msg: list[int | None]
    causes: list[list[int] | None]
    vref: list[int]
    values: list[str]
    error: list[str | None]
    extra: list[dict[str, Any] | None]


_ENC_CHUNK = msgspec.msgpack.Encoder(enc_hook=repr)
_DEC_CHUNK = msgspec.msgpack.Decoder(_Chunk)
_ENC_HOPS = msgspec.msgpack.Encoder()
_DEC_HOPS = msgspec.msgpack.Decoder(hops.Hops)

#: One bit per known kind in a chunk's ``kinds`` column; anything else sets _OTHER.
_KIND_BITS = {k: 1 << i for i, k in enumerate((
    "sent", "output", "input", "recv", "unknown", "failed", "dead", "started",
    "actor_started", "actor_completed", "idle", "shutdown", "ingest", "event"))}
_OTHER = 1 << 30


def _kind_mask(kinds: Iterable[str]) -> int:
    mask = 0
    for k in kinds:
        mask |= _KIND_BITS.get(k, _OTHER)
    return mask


class _ChunkRow(msgspec.Struct, frozen=True):
    """A chunk ready to insert: the blob and the columns queries filter on."""

    execution: str
    first_seq: int
    last_seq: int
    n: int
    msg_lo: int | None
    msg_hi: int | None
    kinds: int
    data: bytes
    #: :data:`ROWS` (a :class:`_Chunk`) or :data:`HOPS` (a :class:`~reflowpy.observe.hops.Hops`).
    form: int = 0


def _seal(ex: str, cols: list[tuple[Any, ...]], vref: list[int], values: list[str]
          ) -> _ChunkRow:
    """Columns of one execution's rows (seq ascending) -> one chunk row."""
    _, seq, ts, kind, node, port, pnode, pport, msg, causes, _, error, extra = cols
    msgs = set(msg)
    msgs.discard(None)
    # (tuples encode as the lists they decode to: no copies)
    chunk = _Chunk(seq=seq, ts=ts, kind=kind, node=node, port=port,  # type: ignore[arg-type]
                   peer_node=pnode, peer_port=pport, msg=msg,  # type: ignore[arg-type]
                   causes=causes, vref=vref, values=values,  # type: ignore[arg-type]
                   error=error, extra=extra)  # type: ignore[arg-type]
    return _ChunkRow(ex, seq[0], seq[-1], len(seq), min(msgs) if msgs else None,
                     max(msgs) if msgs else None, _kind_mask(set(kind)),
                     _ENC_CHUNK.encode(chunk))


def _columns(rows: Sequence[Sequence[Any]]) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
    """Rows -> (execution, its columns in seq order), one per execution. Everything per
    row runs in C (zip, set, sorted); the rows of one batch rarely need sorting."""
    try:
        cols = list(zip(*rows, strict=True))
    except ValueError:
        cols = []
    if len(cols) != len(EventRow.__struct_fields__):
        raise TraceStoreError(f"event rows must have {len(EventRow.__struct_fields__)}"
                              " columns")
    exs = set(cols[0])
    parts = [(next(iter(exs)), cols)] if len(exs) == 1 else [
        (ex, list(zip(*[r for r in rows if r[0] == ex], strict=True))) for ex in exs]
    for ex, part in parts:
        seq = part[1]
        if all(map(operator.lt, seq, seq[1:])):  # strictly ascending, as a sink writes
            yield ex, part
            continue
        if len(set(seq)) != len(seq):
            raise TraceStoreError(f"execution {ex!r}: two events with the same seq in one"
                                  " batch")
        if sorted(seq) != list(seq):
            part = list(zip(*sorted(zip(*part, strict=True), key=lambda r: int(r[1])),
                            strict=True))
        yield ex, part


def encode_chunks(rows: Sequence[Sequence[Any]], limit: int) -> list[_ChunkRow]:
    """Rows (tuples in column order; ``value`` a Python object or :data:`NOVALUE`) ->
    one chunk per execution, each distinct value object encoded once."""
    out: list[_ChunkRow] = []
    if not rows:
        return out
    for ex, cols in _columns(rows):
        refs, values = hops.unique_values(cols[10], NOVALUE, encode_value, limit)
        out.append(_seal(ex, cols, refs, values))
    return out


def _json_chunks(rows: Sequence[Sequence[Any]]) -> list[_ChunkRow]:
    """Rows of the first layout (causes, value, extra as JSON text) -> chunks."""
    out = []
    for ex, cols in _columns(rows):
        index: dict[str, int] = {}
        values: list[str] = []
        vref = []
        for v in cols[10]:
            if v is None:
                vref.append(-1)
                continue
            i = index.get(v)
            if i is None:
                i = index[v] = len(values)
                values.append(v)
            vref.append(i)
        cols[1] = tuple(int(s) for s in cols[1])
        cols[2] = tuple(float(t) for t in cols[2])
        cols[8] = tuple(None if m is None else int(m) for m in cols[8])
        cols[9] = tuple(_loads(c) for c in cols[9])
        cols[12] = tuple(_loads(e) for e in cols[12])
        out.append(_seal(ex, cols, vref, values))
    return out


def _loads(text: str | None) -> Any:
    return None if text is None else _DECODE_JSON.decode(text)


def _chunk_rows(chunk: _Chunk, execution: str, keep: Iterable[int]) -> list[EventRow]:
    """The events ``keep`` (indexes into the chunk) as rows."""
    decoded: dict[int, Any] = {}
    out = []
    for i in keep:
        ref = chunk.vref[i]
        if ref < 0:
            value = None
        elif ref in decoded:
            value = decoded[ref]
        else:
            value = decoded[ref] = _DECODE_JSON.decode(chunk.values[ref])
        out.append(EventRow(execution, chunk.seq[i], chunk.ts[i], chunk.kind[i],
                            chunk.node[i], chunk.port[i], chunk.peer_node[i],
                            chunk.peer_port[i], chunk.msg[i], chunk.causes[i], value,
                            chunk.error[i], chunk.extra[i]))
    return out


#: Chunk forms (the ``form`` column).
ROWS = 0
HOPS = 1
#: A hop chunk's ``kinds``: every bit (what it holds is known once it is replayed).
_ALL_KINDS = (1 << 31) - 1


def encode_hops(execution: str, first_seq: int, ports: list[tuple[str, str, str, str, str]],
                buf: list[Any], specials: list[int], limit: int) -> _ChunkRow:
    """Raw hop records (:mod:`reflowpy.observe.hops`, 4 slots each, from seq
    ``first_seq``; at least one that takes a seq) -> one chunk row of form :data:`HOPS`."""
    chunk, n = hops.encode(first_seq, ports, buf, specials, limit, encode_value, NOVALUE)
    if n == 0:
        raise TraceStoreError(f"execution {execution!r}: a chunk of hops from seq"
                              f" {first_seq} holds no event")
    return _ChunkRow(execution, first_seq, first_seq + n - 1, n, None, None,
                     _ALL_KINDS, _ENC_HOPS.encode(chunk), HOPS)


def _replayed_chunk(rows: list[tuple[Any, ...]], values: list[str]) -> _Chunk:
    """A replay's rows (``value`` a ``vref`` or NOVALUE) as a chunk of rows."""
    if not rows:
        return _Chunk([], [], [], [], [], [], [], [], [], [], [], [], [])
    _, seq, ts, kind, node, port, pnode, pport, msg, causes, value, error, extra = zip(
        *rows, strict=True)
    return _Chunk(seq=seq, ts=ts, kind=kind, node=node, port=port,  # type: ignore[arg-type]
                  peer_node=pnode, peer_port=pport, msg=msg,  # type: ignore[arg-type]
                  causes=causes,  # type: ignore[arg-type]
                  vref=[-1 if v is NOVALUE else v for v in value],
                  values=values, error=error, extra=extra)  # type: ignore[arg-type]


#: Most replayed rows a store keeps (see ``_SqlStore._replayed``).
_REPLAY_CACHE = 2_000_000
_CHUNK_COLS = "execution, first_seq, last_seq, n, msg_lo, msg_hi, kinds, data, form"
#: Chunks read per query round trip (a query stops reading once it has its limit).
_PAGE = 16


class _SqlStore:
    """Schema and queries shared by the SQLite and PostgreSQL stores."""

    #: Placeholder style of the driver.
    _P = "?"
    _REAL = "REAL"
    _INT = "INTEGER"
    _BLOB = "BLOB"
    #: Where the store is, for error messages.
    where = "trace store"

    def __init__(self, *, max_age: float | None = None, max_events: int | None = None) -> None:
        self.max_age = max_age
        self.max_events = max_events
        self._lock = threading.Lock()
        #: Executions replayed to their end by this store: whether their lineage was
        #: inexact (also written to the store when it can be).
        self._lineage_inexact: dict[str, bool] = {}
        self._replay_cache: tuple[str, hops.Replay, list[_Chunk], int | None] | None = None

    # -- driver hooks ----------------------------------------------------------------

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        raise NotImplementedError

    def _commit(self) -> None:
        raise NotImplementedError

    def _tables(self) -> set[str]:
        """Names of the tables that exist."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the connection."""

    def _q(self, sql: str) -> str:
        return sql if self._P == "?" else sql.replace("?", self._P)

    def _schema(self) -> None:
        r, i, b = self._REAL, self._INT, self._BLOB
        tables = self._tables()
        layout = 1 if "events" in tables else LAYOUT
        stored = None
        if "trace_meta" in tables:
            rows = self._execute("SELECT value FROM trace_meta WHERE key = 'layout'")
            if rows:
                layout = stored = int(rows[0][0])
        if stored == LAYOUT and {"executions", "chunks"} <= tables:
            self._commit()  # (ends PostgreSQL's read transaction)
            return  # nothing to create or migrate: a reader opens without writing
        if layout > LAYOUT:
            raise TraceStoreError(
                f"{self.where}: written in layout {layout} by a newer reflowpy; this one"
                f" reads layouts 1 to {LAYOUT} (upgrade reflowpy, or use another store)")
        # layout 3 adds the chunk's form (every chunk of layout 2 holds rows) and the
        # lineage a replay of an execution found (none replayed yet)
        if layout < 3 and "chunks" in tables:
            self._execute(f"ALTER TABLE chunks ADD COLUMN form {i} NOT NULL DEFAULT 0")
        if layout < 3 and "executions" in tables:
            self._execute(f"ALTER TABLE executions ADD COLUMN lineage {i}")
        self._execute(f"""CREATE TABLE IF NOT EXISTS executions (
            id TEXT PRIMARY KEY, graph TEXT NOT NULL, started {r} NOT NULL, ended {r},
            status TEXT NOT NULL, source TEXT NOT NULL, sample {i} NOT NULL,
            dropped {i} NOT NULL, inexact {i} NOT NULL, error TEXT, graph_json TEXT,
            events {i} NOT NULL, lineage {i})""")
        self._execute(f"""CREATE TABLE IF NOT EXISTS chunks (
            execution TEXT NOT NULL, first_seq {i} NOT NULL, last_seq {i} NOT NULL,
            n {i} NOT NULL, msg_lo {i}, msg_hi {i}, kinds {i} NOT NULL, data {b} NOT NULL,
            form {i} NOT NULL DEFAULT 0, PRIMARY KEY (execution, first_seq))""")
        self._execute("CREATE INDEX IF NOT EXISTS executions_started ON executions (started)")
        self._execute("CREATE TABLE IF NOT EXISTS trace_meta (key TEXT PRIMARY KEY,"
                      " value TEXT NOT NULL)")
        if layout == 1:
            self._migrate_v1()
        self._execute("DELETE FROM trace_meta WHERE key = 'layout'")
        self._execute(self._q("INSERT INTO trace_meta (key, value) VALUES ('layout', ?)"),
                      (str(LAYOUT),))
        self._commit()

    def _migrate_v1(self) -> None:
        """Move the first layout's ``events`` rows into chunks (one transaction)."""
        cols = ("execution, seq, ts, kind, node, port, peer_node, peer_port, msg, causes,"
                " value, error, extra")
        for (ex,) in self._execute("SELECT DISTINCT execution FROM events"):
            rows = self._execute(self._q(
                f"SELECT {cols} FROM events WHERE execution = ? ORDER BY seq"), (ex,))
            for k in range(0, len(rows), 2000):
                self._insert_chunks(_json_chunks(rows[k:k + 2000]), count=False)
        self._execute("DROP TABLE events")

    # -- writing (the collector's writer thread) ----------------------------------------

    def begin(self, rec: ExecutionRecord) -> None:
        """Record a new execution (or replace a record with the same id)."""
        with self._lock:
            self._forget(rec.id)
            self._execute(self._q("DELETE FROM chunks WHERE execution = ?"), (rec.id,))
            self._execute(self._q("DELETE FROM executions WHERE id = ?"), (rec.id,))
            self._execute(self._q(
                "INSERT INTO executions (id, graph, started, ended, status, source, sample,"
                " dropped, inexact, error, graph_json, events)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                (rec.id, rec.graph, rec.started, rec.ended, rec.status, rec.source,
                 rec.sample, rec.dropped, int(rec.inexact), rec.error, rec.graph_json, 0))
            self._commit()

    def append(self, rows: Sequence[Sequence[Any]], max_value_bytes: int = 4096) -> None:
        """Store event rows (tuples in column order, Python values; ``value``
        :data:`NOVALUE` for none) as one chunk per execution, one transaction.

        Raises :class:`TraceStoreError` if a batch's seqs overlap what an execution
        already holds (events are appended in order)."""
        self.append_batches([rows], max_value_bytes)

    def append_batches(self, batches: Sequence[Sequence[Sequence[Any]]],
                       max_value_bytes: int = 4096) -> None:
        """:meth:`append` of several batches, in order: a chunk per batch and execution,
        all in one transaction. (The collector's writer takes every batch queued when it
        wakes: each SQL call lets go of the interpreter lock, and getting it back from a
        busy trio thread takes a switch interval, so the calls per wake are what bound
        its pace, not the rows.)"""
        self.write_chunks([c for rows in batches if rows
                           for c in encode_chunks(rows, max_value_bytes)])

    def write_chunks(self, chunks: Sequence[_ChunkRow]) -> None:
        """Store chunks made by :func:`encode_chunks` (in seq order), one transaction."""
        if not chunks:
            return
        with self._lock:
            self._insert_chunks(chunks)
            self._commit()
            self._notify(list(dict.fromkeys(c.execution for c in chunks)))

    def _insert_chunks(self, chunks: Sequence[_ChunkRow], count: bool = True) -> None:
        last: dict[str, int] = {}
        for c in chunks:
            if c.execution not in last:
                got = self._execute(self._q(
                    "SELECT last_seq FROM chunks WHERE execution = ? ORDER BY first_seq DESC"
                    " LIMIT 1"), (c.execution,))
                last[c.execution] = int(got[0][0]) if got else -1 << 62
            if last[c.execution] >= c.first_seq:
                self._rollback()
                raise TraceStoreError(
                    f"execution {c.execution!r}: events from seq {c.first_seq} arrived after"
                    f" seq {last[c.execution]} was stored (events are appended in order)")
            last[c.execution] = c.last_seq
        self._executemany(self._q(
            f"INSERT INTO chunks ({_CHUNK_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"),
            [(c.execution, c.first_seq, c.last_seq, c.n, c.msg_lo, c.msg_hi, c.kinds,
              c.data, c.form) for c in chunks])
        events: dict[str, int] = {}
        for c in chunks if count else ():
            events[c.execution] = events.get(c.execution, 0) + c.n
        for ex, n in events.items():
            self._execute(self._q("UPDATE executions SET events = events + ? WHERE id = ?"),
                          (n, ex))

    def _rollback(self) -> None:
        """Abandon the open transaction (driver hook)."""

    def _notify(self, executions: list[str]) -> None:
        """Hook for stores that push live updates (PostgreSQL NOTIFY)."""

    def finish(self, execution: str, *, status: str, dropped: int, inexact: bool,
               error: str | None, ended: float | None = None) -> None:
        """Mark an execution ended."""
        with self._lock:
            self._execute(self._q(
                "UPDATE executions SET ended = ?, status = ?, dropped = ?, inexact = ?,"
                " error = ? WHERE id = ?"),
                (ended if ended is not None else time.time() * 1000.0, status, dropped,
                 int(inexact), error, execution))
            self._commit()
            self._notify([execution])

    def enforce_retention(self, now: float | None = None) -> int:
        """Delete executions beyond ``max_age`` / ``max_events`` (oldest first; the newest
        execution is kept whatever its size); returns how many."""
        removed = 0
        with self._lock:
            if self.max_age is not None:
                cutoff = (time.time() if now is None else now) * 1000.0 - self.max_age * 1000.0
                old = self._execute(self._q(
                    "SELECT id FROM executions WHERE started < ? AND ended IS NOT NULL"),
                    (cutoff,))
                for (ex,) in old:
                    self._delete(ex)
                    removed += 1
            if self.max_events is not None:
                rows = self._execute(
                    "SELECT id, events FROM executions ORDER BY started DESC, id DESC")
                total = 0
                for i, (ex, n) in enumerate(rows):
                    total += int(n)
                    if total > self.max_events and i > 0:  # the newest one always stays
                        self._delete(ex)
                        removed += 1
            self._commit()
        return removed

    def _forget(self, execution: str) -> None:
        # its chunks change: what a replay of them found no longer holds
        self._lineage_inexact.pop(execution, None)
        if self._replay_cache is not None and self._replay_cache[0] == execution:
            self._replay_cache = None

    def _delete(self, execution: str) -> None:
        self._forget(execution)
        self._execute(self._q("DELETE FROM chunks WHERE execution = ?"), (execution,))
        self._execute(self._q("DELETE FROM executions WHERE id = ?"), (execution,))

    def clear_events(self, execution: str) -> None:
        """Delete an execution's events, keeping its record."""
        with self._lock:
            self._forget(execution)
            self._execute(self._q("DELETE FROM chunks WHERE execution = ?"), (execution,))
            self._execute(self._q("UPDATE executions SET events = 0 WHERE id = ?"),
                          (execution,))
            self._commit()

    def delete(self, execution: str) -> None:
        """Delete one execution and its events."""
        with self._lock:
            self._delete(execution)
            self._commit()

    # -- queries ------------------------------------------------------------------------

    _EXEC_COLS = ("id, graph, started, ended, status, source, sample, dropped, inexact, error,"
                  " graph_json, events, lineage")

    def _record(self, row: Sequence[Any]) -> ExecutionRecord:
        return ExecutionRecord(
            id=row[0], graph=row[1], started=float(row[2]),
            ended=None if row[3] is None else float(row[3]), status=row[4], source=row[5],
            sample=int(row[6]), dropped=int(row[7]), inexact=bool(row[8]) or bool(row[12]),
            error=row[9], graph_json=row[10], events=int(row[11]))

    def executions(self, limit: int = 50) -> list[ExecutionRecord]:
        """The most recent executions, newest first."""
        with self._lock:
            rows = self._execute(self._q(
                f"SELECT {self._EXEC_COLS} FROM executions ORDER BY started DESC, id DESC"
                " LIMIT ?"), (limit,))
        return [self._record(r) for r in rows]

    def execution(self, execution: str | None = None) -> ExecutionRecord:
        """One execution by id, or the latest when ``execution`` is ``None``/``last``.

        A unique prefix of an id is enough. Raises :class:`TraceStoreError` if none
        matches."""
        with self._lock:
            if execution in (None, "", "last", "latest"):
                rows = self._execute(
                    f"SELECT {self._EXEC_COLS} FROM executions ORDER BY started DESC, id DESC"
                    " LIMIT 1")
            else:
                assert execution is not None
                rows = self._execute(self._q(
                    f"SELECT {self._EXEC_COLS} FROM executions WHERE id = ?"), (execution,))
                if not rows:
                    rows = self._execute(self._q(
                        f"SELECT {self._EXEC_COLS} FROM executions WHERE id LIKE ?"
                        " ORDER BY started DESC LIMIT 2"), (execution.replace("%", "") + "%",))
                    if len(rows) > 1:
                        raise TraceStoreError(f"execution id prefix {execution!r} is ambiguous")
        if not rows:
            raise TraceStoreError(
                "the trace store holds no executions" if execution in (None, "", "last",
                                                                       "latest")
                else f"no execution {execution!r} in the trace store")
        row = rows[0]
        if row[3] is not None and row[12] is None and self._has_hops(row[0]):
            # its lineage is known once replayed (see _replayed): replay it now
            for _ in self._replayed(row[0]):
                pass
            row = (*row[:12], int(self._lineage_inexact.get(row[0], False)))
        return self._record(row)

    def _has_hops(self, execution: str) -> bool:
        with self._lock:
            return bool(self._execute(self._q(
                "SELECT 1 FROM chunks WHERE execution = ? AND form = ? LIMIT 1"),
                (execution, HOPS)))

    def _replayed(self, execution: str) -> Iterator[_Chunk]:
        """Every chunk of an execution that holds hop chunks, in seq order, hop chunks
        replayed into rows (:mod:`reflowpy.observe.hops`). A replay that reaches the end
        of an ended execution records whether its lineage was exact.

        The store keeps the replayed chunks of the last execution it replayed (up to
        :data:`_REPLAY_CACHE` rows) and the replay's state after them: asking again
        (each step of a lineage walk, a tail that follows) replays only what is new."""
        cached, self._replay_cache = self._replay_cache, None  # (one user at a time)
        if cached is not None and cached[0] == execution:
            _, replay, done, after = cached
        else:
            replay, done, after = hops.Replay(execution), [], None
        kept = sum(len(c.seq) for c in done)
        whole = True  # the replay's state matches ``done`` and ``after``
        try:
            yield from done
            while True:
                w = "execution = ?"
                p: list[Any] = [execution]
                if after is not None:
                    w += " AND first_seq > ?"
                    p.append(after)
                with self._lock:
                    rows = self._execute(self._q(
                        f"SELECT first_seq, data, form FROM chunks WHERE {w}"
                        " ORDER BY first_seq ASC LIMIT ?"), [*p, _PAGE])
                for first, data, form in rows:
                    whole = False
                    try:
                        if int(form) == ROWS:
                            chunk = _DEC_CHUNK.decode(bytes(data))
                        else:
                            chunk = _replayed_chunk(*replay.chunk(
                                _DEC_HOPS.decode(bytes(data)), NOVALUE))
                    except msgspec.DecodeError as exc:
                        raise TraceStoreError(
                            f"{self.where}: execution {execution!r}: the chunk from seq"
                            f" {first} is damaged: {exc}") from None
                    after = int(first)
                    done.append(chunk)
                    kept += len(chunk.seq)
                    whole = kept < _REPLAY_CACHE
                    yield chunk
                if len(rows) < _PAGE:
                    break
        finally:
            if whole:
                self._replay_cache = (execution, replay, done, after)
        if self._lineage_inexact.get(execution) is replay.inexact:
            return
        self._lineage_inexact[execution] = replay.inexact
        with self._lock:
            try:
                self._execute(self._q(
                    "UPDATE executions SET lineage = ? WHERE id = ? AND ended IS NOT NULL"),
                    (int(replay.inexact), execution))
                self._commit()
            except TraceStoreError:  # a read-only store: known to this reader only
                pass

    def _chunks(self, execution: str, where: list[str], params: list[Any], newest: bool
                ) -> Iterator[_Chunk]:
        """The execution's chunks that pass ``where``, in seq order (newest first if
        ``newest``), read a page at a time."""
        if self._has_hops(execution):
            # every chunk is read: a replay carries the lineage model from the first
            chunks: Iterable[_Chunk] = self._replayed(execution)
            if newest:
                chunks = list(chunks)
                chunks.reverse()
            yield from chunks
            return
        order = "DESC" if newest else "ASC"
        cmp = "<" if newest else ">"
        after: int | None = None
        while True:
            w = ["execution = ?", *where]
            p: list[Any] = [execution, *params]
            if after is not None:
                w.append(f"first_seq {cmp} ?")
                p.append(after)
            p.append(_PAGE)
            with self._lock:
                rows = self._execute(self._q(
                    f"SELECT first_seq, data FROM chunks WHERE {' AND '.join(w)}"
                    f" ORDER BY first_seq {order} LIMIT ?"), p)
            for first, data in rows:
                try:
                    yield _DEC_CHUNK.decode(bytes(data))
                except msgspec.DecodeError as exc:
                    raise TraceStoreError(f"{self.where}: execution {execution!r}: the chunk"
                                          f" from seq {first} is damaged: {exc}") from None
            if len(rows) < _PAGE:
                return
            after = int(rows[-1][0])

    def events(
        self, execution: str, *, kinds: Sequence[str] | None = None, node: str | None = None,
        msgs: Sequence[int] | None = None, after_seq: int = 0, limit: int = 10_000,
        newest: bool = False,
    ) -> list[EventRow]:
        """Events of one execution in order, filtered by kind, node or message ids."""
        where: list[str] = []
        params: list[Any] = []
        if after_seq:
            where.append("last_seq > ?")
            params.append(after_seq)
        kind_set = None
        if kinds:
            kind_set = set(kinds)
            where.append("(kinds & ?) != 0")
            params.append(_kind_mask(kind_set) | _OTHER)
        msg_set = None
        if msgs is not None:
            if not msgs:
                return []
            msg_set = set(msgs)
            where.append("msg_lo <= ? AND msg_hi >= ?")
            params.extend([max(msg_set), min(msg_set)])
        out: list[EventRow] = []
        if limit <= 0:
            return out
        for chunk in self._chunks(execution, where, params, newest):
            idx: Iterable[int] = range(len(chunk.seq))
            if after_seq:
                idx = [i for i in idx if chunk.seq[i] > after_seq]
            if kind_set is not None:
                ks = chunk.kind
                idx = [i for i in idx if ks[i] in kind_set]
            if msg_set is not None:
                ms = chunk.msg
                idx = [i for i in idx if ms[i] in msg_set]
            if node is not None:
                ns, ps = chunk.node, chunk.peer_node
                idx = [i for i in idx if ns[i] == node or ps[i] == node]
            idx = list(idx)
            if newest:
                idx.reverse()
            want = limit - len(out)
            out.extend(_chunk_rows(chunk, execution, idx[:want]))
            if len(out) >= limit:
                break
        if newest:
            out.reverse()
        return out

    def caused_by(self, execution: str, msg: int, limit: int = 1000) -> list[EventRow]:
        """Sends whose causes include ``msg`` (forward lineage)."""
        out: list[EventRow] = []
        for chunk in self._chunks(execution, ["(kinds & ?) != 0"],
                                  [_kind_mask(("sent", "output"))], False):
            keep = [i for i, (k, c) in enumerate(zip(chunk.kind, chunk.causes, strict=True))
                    if c and msg in c and k in ("sent", "output")]
            out.extend(_chunk_rows(chunk, execution, keep[:limit - len(out)]))
            if len(out) >= limit:
                break
        return out


class SqliteStore(_SqlStore):
    """The trace store in one SQLite file (WAL mode; safe for one writer + readers)."""

    def __init__(self, path: str | Path, *, max_age: float | None = None,
                 max_events: int | None = None) -> None:
        super().__init__(max_age=max_age, max_events=max_events)
        self.path = Path(path)
        self.where = f"trace store {str(self.path)!r}"
        try:
            if self.path.parent and not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False,
                                       isolation_level=None, timeout=30.0)
            self._refuse_foreign()
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._in_tx = False
            self._schema()
        except (sqlite3.Error, OSError) as exc:
            raise TraceStoreError(f"trace store {str(self.path)!r}: cannot open: {exc}"
                                  ) from None

    def _tables(self) -> set[str]:
        rows = self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {str(r[0]) for r in rows.fetchall()}

    def _refuse_foreign(self) -> None:
        """Refuse a SQLite database that is no trace store (it has tables, none of them
        a store's): creating the store's tables there would change someone's data,
        even for a command that only reads."""
        tables = self._tables()
        if tables and not tables & {"trace_meta", "executions"}:
            self._db.close()
            shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
            raise TraceStoreError(f"{self.where}: not a reflowpy trace store (it holds the"
                                  f" tables {shown}); record into a new file")

    def _begin(self) -> None:
        if not self._in_tx:
            self._db.execute("BEGIN")
            self._in_tx = True

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            if not sql.lstrip().upper().startswith("SELECT"):
                self._begin()
            return self._db.execute(sql, tuple(params)).fetchall()
        except sqlite3.DatabaseError as exc:
            self._rollback()
            raise TraceStoreError(f"trace store {str(self.path)!r}: {exc}") from None

    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            self._begin()
            self._db.executemany(sql, rows)
        except sqlite3.DatabaseError as exc:
            self._rollback()
            raise TraceStoreError(f"trace store {str(self.path)!r}: {exc}") from None

    def _rollback(self) -> None:
        if self._in_tx:
            self._in_tx = False
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    def _commit(self) -> None:
        if self._in_tx:
            self._in_tx = False
            self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the database file."""
        with self._lock:
            self._db.close()


TraceStore = _SqlStore
