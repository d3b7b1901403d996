"""The trace store: executions and their events in SQL (SQLite by default).

One table of executions and one of events. An event row is::

    (execution, seq, ts, kind, node, port, peer_node, peer_port, msg, causes, value,
     error, extra)

``kind`` is one of ``sent`` (node -> node), ``output`` (to an exported out-port),
``input`` (a value that entered without a sender: an IIP or ``Network.send``), ``recv``,
``unknown`` (queued before sampling started), ``failed``, ``dead``, ``started``,
``actor_started``, ``actor_completed``, ``idle``, ``shutdown`` and ``ingest`` (an
event posted by another process that has no message). ``msg`` is the causality id
assigned by :mod:`reflowpy.observe.lineage`, ``causes`` a JSON array of the ids that
produced it. ``value`` is the message as JSON, cut at ``max_value_bytes``.

:class:`SqliteStore` opens the file in WAL mode, so the collector's writer thread and
any number of readers (CLI, server) work at once. Writes come in batches, one
transaction each. Retention deletes whole executions, oldest first, beyond
``max_age`` seconds or ``max_events`` events. :class:`~reflowpy.observe.postgres.PostgresStore`
implements the same queries on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from reflowpy.errors import ReflowError

__all__ = ["EventRow", "ExecutionRecord", "SqliteStore", "TraceStore", "TraceStoreError",
           "new_execution_id", "open_store"]

_COLUMNS = ("execution, seq, ts, kind, node, port, peer_node, peer_port, msg, causes,"
            " value, error, extra")


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


_DECODE_JSON = msgspec.json.Decoder()


def _loads(text: str | None) -> Any:
    return None if text is None else _DECODE_JSON.decode(text)


class _SqlStore:
    """Schema and queries shared by the SQLite and PostgreSQL stores."""

    #: Placeholder style of the driver.
    _P = "?"
    _REAL = "REAL"
    _INT = "INTEGER"
    #: Prefix that keeps the planner from using an index on a column (SQLite's ``+``).
    _NOINDEX = ""

    def __init__(self, *, max_age: float | None = None, max_events: int | None = None) -> None:
        self.max_age = max_age
        self.max_events = max_events
        self._lock = threading.Lock()

    # -- driver hooks ----------------------------------------------------------------

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        raise NotImplementedError

    def _commit(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Close the connection."""

    def _q(self, sql: str) -> str:
        return sql if self._P == "?" else sql.replace("?", self._P)

    def _schema(self) -> None:
        r, i = self._REAL, self._INT
        self._execute(f"""CREATE TABLE IF NOT EXISTS executions (
            id TEXT PRIMARY KEY, graph TEXT NOT NULL, started {r} NOT NULL, ended {r},
            status TEXT NOT NULL, source TEXT NOT NULL, sample {i} NOT NULL,
            dropped {i} NOT NULL, inexact {i} NOT NULL, error TEXT, graph_json TEXT,
            events {i} NOT NULL)""")
        self._execute(f"""CREATE TABLE IF NOT EXISTS events (
            execution TEXT NOT NULL, seq {i} NOT NULL, ts {r} NOT NULL, kind TEXT NOT NULL,
            node TEXT NOT NULL, port TEXT NOT NULL, peer_node TEXT NOT NULL,
            peer_port TEXT NOT NULL, msg {i}, causes TEXT, value TEXT, error TEXT,
            extra TEXT, PRIMARY KEY (execution, seq))""")
        self._execute("CREATE INDEX IF NOT EXISTS events_msg ON events (execution, msg)")
        self._execute("CREATE INDEX IF NOT EXISTS events_kind ON events (execution, kind)")
        self._execute("CREATE INDEX IF NOT EXISTS executions_started ON executions (started)")
        self._commit()

    # -- writing (the collector's writer thread) ----------------------------------------

    def begin(self, rec: ExecutionRecord) -> None:
        """Record a new execution (or replace a record with the same id)."""
        with self._lock:
            self._execute(self._q("DELETE FROM events WHERE execution = ?"), (rec.id,))
            self._execute(self._q("DELETE FROM executions WHERE id = ?"), (rec.id,))
            self._execute(self._q(
                "INSERT INTO executions (id, graph, started, ended, status, source, sample,"
                " dropped, inexact, error, graph_json, events)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                (rec.id, rec.graph, rec.started, rec.ended, rec.status, rec.source,
                 rec.sample, rec.dropped, int(rec.inexact), rec.error, rec.graph_json, 0))
            self._commit()

    def append(self, rows: Sequence[Sequence[Any]]) -> None:
        """Insert encoded event rows (tuples in column order), one transaction."""
        if not rows:
            return
        with self._lock:
            self._executemany(self._q(
                f"INSERT INTO events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                rows)
            counts: dict[str, int] = {}
            for row in rows:
                counts[row[0]] = counts.get(row[0], 0) + 1
            for ex, n in counts.items():
                self._execute(self._q("UPDATE executions SET events = events + ? WHERE id = ?"),
                              (n, ex))
            self._commit()
            self._notify(list(counts))

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

    def _delete(self, execution: str) -> None:
        self._execute(self._q("DELETE FROM events WHERE execution = ?"), (execution,))
        self._execute(self._q("DELETE FROM executions WHERE id = ?"), (execution,))

    def clear_events(self, execution: str) -> None:
        """Delete an execution's events, keeping its record."""
        with self._lock:
            self._execute(self._q("DELETE FROM events WHERE execution = ?"), (execution,))
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
                  " graph_json, events")

    def _record(self, row: Sequence[Any]) -> ExecutionRecord:
        return ExecutionRecord(
            id=row[0], graph=row[1], started=float(row[2]),
            ended=None if row[3] is None else float(row[3]), status=row[4], source=row[5],
            sample=int(row[6]), dropped=int(row[7]), inexact=bool(row[8]), error=row[9],
            graph_json=row[10], events=int(row[11]))

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
        return self._record(rows[0])

    def events(
        self, execution: str, *, kinds: Sequence[str] | None = None, node: str | None = None,
        msgs: Sequence[int] | None = None, after_seq: int = 0, limit: int = 10_000,
        newest: bool = False,
    ) -> list[EventRow]:
        """Events of one execution in order, filtered by kind, node or message ids."""
        where = ["execution = ?"]
        params: list[Any] = [execution]
        if after_seq:
            where.append("seq > ?")
            params.append(after_seq)
        if kinds:
            # with message ids, the (execution, msg) index is the selective one
            col = self._NOINDEX + "kind" if msgs is not None else "kind"
            where.append(f"{col} IN ({', '.join('?' * len(kinds))})")
            params.extend(kinds)
        if node is not None:
            where.append("(node = ? OR peer_node = ?)")
            params.extend([node, node])
        if msgs is not None:
            if not msgs:
                return []
            where.append(f"msg IN ({', '.join('?' * len(msgs))})")
            params.extend(msgs)
        order = "DESC" if newest else "ASC"
        # sorting a handful of rows beats walking the primary key to find them
        seq = self._NOINDEX + "seq" if msgs is not None else "seq"
        params.append(limit)
        with self._lock:
            rows = self._execute(self._q(
                f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(where)}"
                f" ORDER BY {seq} {order} LIMIT ?"), params)
        out = [EventRow(r[0], int(r[1]), float(r[2]), r[3], r[4], r[5], r[6], r[7],
                        None if r[8] is None else int(r[8]), _loads(r[9]), _loads(r[10]),
                        r[11], _loads(r[12])) for r in rows]
        if newest:
            out.reverse()
        return out

    def caused_by(self, execution: str, msg: int, limit: int = 1000) -> list[EventRow]:
        """Sends whose causes include ``msg`` (forward lineage)."""
        pattern_rows = self.events(execution, kinds=("sent", "output"), limit=1_000_000)
        return [r for r in pattern_rows if r.causes and msg in r.causes][:limit]


class SqliteStore(_SqlStore):
    """The trace store in one SQLite file (WAL mode; safe for one writer + readers)."""

    _NOINDEX = "+"

    def __init__(self, path: str | Path, *, max_age: float | None = None,
                 max_events: int | None = None) -> None:
        super().__init__(max_age=max_age, max_events=max_events)
        self.path = Path(path)
        try:
            if self.path.parent and not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False,
                                       isolation_level=None, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._in_tx = False
            self._schema()
        except (sqlite3.Error, OSError) as exc:
            raise TraceStoreError(f"trace store {str(self.path)!r}: cannot open: {exc}"
                                  ) from None

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


def open_store(spec: str | Path, **retention: Any) -> _SqlStore:
    """A store from a file path or a ``postgresql://`` URL."""
    text = str(spec)
    if text.startswith(("postgresql://", "postgres://")):
        from reflowpy.observe.postgres import PostgresStore

        return PostgresStore(text, **retention)
    return SqliteStore(text, **retention)
