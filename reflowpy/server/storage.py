"""Persistent state of a server: graphs, execution records, the input journal and the
stored outputs, in one SQLite file.

The server keeps what must survive a restart here and nothing else: every stored
graph (its canonical JSON text, as the graph layer writes it), every execution
record (which graph, which policy, its last known status), the **journal** of every
input accepted for an execution (written before the client gets its ``202``), and the
values that left its exported out-ports up to its last **checkpoint**.

A checkpoint is one transaction that stores the outputs produced so far together with
``processed``, the journal position up to which every input was completely processed
(the network was idle after it). A restart replays the journal after ``processed``, so
every acknowledged input is processed at least once; the outputs of inputs replayed
were not stored, so a deterministic graph produces the same values again at the same
output cursors (readers deduplicate by cursor). See :mod:`reflowpy.server.executions`.

Every write is one SQLite transaction (WAL journal, ``synchronous=NORMAL``: a killed
process loses nothing committed; a power cut may lose the last transactions), so a
crash or a refused request never leaves half a record behind. The data dir is 0700
and the database and its ``-wal``/``-shm`` files 0600. A file that is not a readable
reflowpy store is refused at open with :class:`StoreDamaged`, saying what to do.
Calls are synchronous and short; the server runs them on its trio thread.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from reflowpy.errors import ReflowError, ServerConfigError

__all__ = ["ExecutionRecord", "GraphRecord", "Storage", "StoreDamaged"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS graphs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY,
    graph_id TEXT,
    graph TEXT NOT NULL,
    inputs TEXT NOT NULL,
    policy TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    execution_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    port TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (execution_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outputs (
    execution_id TEXT NOT NULL,
    port TEXT NOT NULL,
    idx INTEGER NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (execution_id, port, idx)
) WITHOUT ROWID;
"""

#: Columns added after the first release: (name, declaration).
_ADDED_COLUMNS = (
    ("processed", "INTEGER NOT NULL DEFAULT 0"),
    ("restarts", "INTEGER NOT NULL DEFAULT 0"),
    ("ended", "REAL"),
    ("meta", "TEXT NOT NULL DEFAULT '{}'"),
)

_ENCODE = msgspec.json.Encoder()


def _json_text(value: Any) -> str:
    try:
        return _ENCODE.encode(value).decode()
    except (TypeError, msgspec.EncodeError):
        return _ENCODE.encode(repr(value)).decode()


class StoreDamaged(ReflowError):
    """The SQLite store cannot be used (not a database, corrupted, wrong schema)."""


def _private(path: Path, mode: int) -> None:
    """Make ``path`` (if it exists) accessible to its owner only."""
    try:
        current = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if current & 0o077:
        path.chmod(mode)


class GraphRecord(msgspec.Struct, frozen=True):
    """A stored graph: ``body`` is its canonical JSON text."""

    id: str
    name: str
    body: str
    created: float
    updated: float


class ExecutionRecord(msgspec.Struct, frozen=True):
    """A stored execution: the graph snapshot it runs, its inputs and policy (JSON
    texts), and its last recorded status."""

    id: str
    graph_id: str | None
    graph: str
    inputs: str
    policy: str
    status: str
    error: str
    created: float
    updated: float
    processed: int = 0
    restarts: int = 0
    ended: float | None = None
    meta: str = "{}"

    def meta_value(self) -> dict[str, Any]:
        """The server's own notes on the execution (e.g. its Reflow workflow id)."""
        value = msgspec.json.decode(self.meta)
        return value if isinstance(value, dict) else {}

    def policy_value(self) -> dict[str, Any]:
        """The policy as a mapping."""
        value = msgspec.json.decode(self.policy)
        return value if isinstance(value, dict) else {}


class Storage:
    """SQLite-backed store of graphs and executions.

    ``Storage(None)`` keeps everything in memory (tests, ``--data-dir`` not given
    explicitly by an embedding program); ``Storage(dir)`` creates ``dir/reflowpy.db``.
    """

    def __init__(self, data_dir: str | Path | None) -> None:
        if data_dir is None:
            self.path: Path | None = None
            target = ":memory:"
        else:
            directory = Path(data_dir)
            self.path = directory / "reflowpy.db"
            target = str(self.path)
            try:
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                _private(directory, 0o700)
                # Create the file 0600 before SQLite does: its -wal and -shm files take
                # the database file's permissions.
                os.close(os.open(target, os.O_RDWR | os.O_CREAT, 0o600))
            except OSError as exc:
                raise ServerConfigError(f"data dir {str(directory)!r}: cannot keep the store"
                                        f" there: {exc.strerror or exc}") from None
            for suffix in ("", "-wal", "-shm"):
                _private(Path(target + suffix), 0o600)
        try:
            self._db = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            check = self._db.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {check[0] if check else '?'}")
            self._db.executescript(_SCHEMA)
            have = {row[1] for row in self._db.execute("PRAGMA table_info(executions)")}
            for name, decl in _ADDED_COLUMNS:
                if name not in have:
                    self._db.execute(f"ALTER TABLE executions ADD COLUMN {name} {decl}")
        except sqlite3.DatabaseError as exc:
            raise StoreDamaged(
                f"the store {target} cannot be used: {exc}. Stop every server using it,"
                f" move it aside (mv {target} {target}.damaged, with its -wal and -shm"
                " files) and start again with an empty store, or restore a backup;"
                f" 'sqlite3 {target}.damaged .recover' may save what it holds") from None
        if self.path is not None:
            for suffix in ("-wal", "-shm"):
                _private(Path(target + suffix), 0o600)

    def close(self) -> None:
        """Close the database file."""
        self._db.close()

    def _write(self, sql: str, params: tuple[Any, ...]) -> int:
        return self._transaction([(sql, [params])])

    def _transaction(self, statements: list[tuple[str, list[tuple[Any, ...]]]]) -> int:
        """Run ``(sql, rows)`` pairs in one transaction; returns the last rowcount."""
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        count = 0
        try:
            for sql, rows in statements:
                if len(rows) == 1:
                    cur.execute(sql, rows[0])
                else:
                    cur.executemany(sql, rows)
                count = cur.rowcount
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return count

    # -- graphs ---------------------------------------------------------------------

    def put_graph(self, graph_id: str, name: str, body: str) -> GraphRecord:
        """Create or replace the graph ``graph_id``; keeps the original creation time."""
        now = time.time()
        self._write(
            "INSERT INTO graphs (id, name, body, created, updated) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT(id) DO UPDATE SET name=excluded.name, body=excluded.body,"
            " updated=excluded.updated",
            (graph_id, name, body, now, now),
        )
        record = self.get_graph(graph_id)
        assert record is not None
        return record

    def get_graph(self, graph_id: str) -> GraphRecord | None:
        """The graph ``graph_id``, or ``None``."""
        row = self._db.execute(
            "SELECT id, name, body, created, updated FROM graphs WHERE id = ?", (graph_id,)
        ).fetchone()
        return GraphRecord(*row) if row else None

    def list_graphs(self) -> list[GraphRecord]:
        """Every stored graph, oldest first."""
        rows = self._db.execute(
            "SELECT id, name, body, created, updated FROM graphs ORDER BY created, id"
        ).fetchall()
        return [GraphRecord(*row) for row in rows]

    def delete_graph(self, graph_id: str) -> bool:
        """Delete a graph; ``False`` if there was none."""
        return self._write("DELETE FROM graphs WHERE id = ?", (graph_id,)) > 0

    # -- executions -----------------------------------------------------------------

    _COLUMNS = ("id, graph_id, graph, inputs, policy, status, error, created, updated,"
                " processed, restarts, ended, meta")

    def put_execution(
        self,
        execution_id: str,
        *,
        graph_id: str | None,
        graph: str,
        inputs: Any,
        policy: Any,
        status: str,
        journal: Sequence[tuple[int, str, Any]] = (),
        created: float | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> ExecutionRecord:
        """Record a new execution (or replace one with the same id), with the first
        ``journal`` entries ``(seq, port, value)``, in one transaction."""
        now = time.time()
        statements: list[tuple[str, list[tuple[Any, ...]]]] = [
            ("DELETE FROM journal WHERE execution_id = ?", [(execution_id,)]),
            ("DELETE FROM outputs WHERE execution_id = ?", [(execution_id,)]),
            ("INSERT OR REPLACE INTO executions (id, graph_id, graph, inputs, policy, status,"
             " error, created, updated, meta) VALUES (?, ?, ?, ?, ?, ?, '', ?, ?, ?)",
             [(execution_id, graph_id, graph, _json_text(inputs),
               msgspec.json.encode(policy).decode(), status, created or now, now,
               _json_text(dict(meta or {})))]),
        ]
        if journal:
            statements.append((
                "INSERT INTO journal (execution_id, seq, port, value) VALUES (?, ?, ?, ?)",
                [(execution_id, seq, port, _json_text(value)) for seq, port, value in journal]))
        self._transaction(statements)
        return ExecutionRecord(execution_id, graph_id, graph, _json_text(inputs),
                               msgspec.json.encode(policy).decode(), status, "",
                               created or now, now, meta=_json_text(dict(meta or {})))

    def set_execution_status(self, execution_id: str, status: str, error: str = "",
                             *, ended: float | None = None,
                             restarts: int | None = None) -> None:
        """Update the recorded status (and error text, end time, restart count)."""
        self._write(
            "UPDATE executions SET status = ?, error = ?, updated = ?,"
            " ended = COALESCE(?, ended), restarts = COALESCE(?, restarts) WHERE id = ?",
            (status, error, time.time(), ended, restarts, execution_id),
        )

    def set_execution_meta(self, execution_id: str, meta: Mapping[str, Any]) -> None:
        """Replace the recorded metadata of an execution (e.g. a webhook delivered)."""
        self._write("UPDATE executions SET meta = ?, updated = ? WHERE id = ?",
                    (_json_text(dict(meta)), time.time(), execution_id))

    def journal(self, execution_id: str, entries: list[tuple[int, str, Any]]) -> None:
        """Append accepted inputs ``(seq, port, value)`` to the journal (one transaction;
        durable when this returns)."""
        self._transaction([(
            "INSERT INTO journal (execution_id, seq, port, value) VALUES (?, ?, ?, ?)",
            [(execution_id, seq, port, _json_text(value)) for seq, port, value in entries])])

    def unjournal(self, execution_id: str, from_seq: int) -> None:
        """Forget journal entries from ``from_seq`` on (inputs that were refused)."""
        self._write("DELETE FROM journal WHERE execution_id = ? AND seq >= ?",
                    (execution_id, from_seq))

    def pending_inputs(self, execution_id: str, after: int) -> list[tuple[int, str, Any]]:
        """Journal entries after position ``after`` (not yet processed), in order."""
        rows = self._db.execute(
            "SELECT seq, port, value FROM journal WHERE execution_id = ? AND seq > ?"
            " ORDER BY seq", (execution_id, after)).fetchall()
        return [(seq, port, msgspec.json.decode(value)) for seq, port, value in rows]

    def last_seq(self, execution_id: str) -> int:
        """The newest journal position of an execution (0 when none)."""
        row = self._db.execute("SELECT MAX(seq) FROM journal WHERE execution_id = ?",
                               (execution_id,)).fetchone()
        return int(row[0] or 0)

    def checkpoint(self, execution_id: str, processed: int,
                   outputs: dict[str, tuple[int, list[Any]]], keep: int,
                   status: str | None = None, error: str = "",
                   ended: float | None = None) -> None:
        """One transaction: store ``outputs`` (port -> (first index, values)), set
        ``processed``, forget journal entries up to it, keep at most ``keep`` stored
        values per port, and optionally record the final ``status``."""
        statements: list[tuple[str, list[tuple[Any, ...]]]] = []
        for port, (first, values) in outputs.items():
            if values:
                statements.append((
                    "INSERT OR REPLACE INTO outputs (execution_id, port, idx, value)"
                    " VALUES (?, ?, ?, ?)",
                    [(execution_id, port, first + i, _json_text(v))
                     for i, v in enumerate(values)]))
                statements.append((
                    "DELETE FROM outputs WHERE execution_id = ? AND port = ? AND idx < ?",
                    [(execution_id, port, first + len(values) - keep)]))
        statements.append(("UPDATE executions SET processed = MAX(processed, ?), updated = ?"
                           " WHERE id = ?", [(processed, time.time(), execution_id)]))
        statements.append(("DELETE FROM journal WHERE execution_id = ? AND seq <= ?",
                           [(execution_id, processed)]))
        if status is not None:
            statements.append(("UPDATE executions SET status = ?, error = ?, ended = ?"
                               " WHERE id = ?", [(status, error, ended, execution_id)]))
        self._transaction(statements)

    def read_outputs(self, execution_id: str, port: str, after: int, limit: int
                     ) -> list[tuple[int, Any]]:
        """Stored ``(index, value)`` of one out-port from index ``after`` on."""
        rows = self._db.execute(
            "SELECT idx, value FROM outputs WHERE execution_id = ? AND port = ? AND idx >= ?"
            " ORDER BY idx LIMIT ?", (execution_id, port, after, limit)).fetchall()
        return [(idx, msgspec.json.decode(value)) for idx, value in rows]

    def output_bounds(self, execution_id: str) -> dict[str, tuple[int, int]]:
        """Per port: (oldest stored index, index just past the newest)."""
        rows = self._db.execute(
            "SELECT port, MIN(idx), MAX(idx) FROM outputs WHERE execution_id = ?"
            " GROUP BY port", (execution_id,)).fetchall()
        return {port: (lo, hi + 1) for port, lo, hi in rows}

    def delete_execution(self, execution_id: str) -> bool:
        """Forget an execution, its journal and its outputs; ``False`` if unknown."""
        return self._transaction([
            ("DELETE FROM journal WHERE execution_id = ?", [(execution_id,)]),
            ("DELETE FROM outputs WHERE execution_id = ?", [(execution_id,)]),
            ("DELETE FROM executions WHERE id = ?", [(execution_id,)]),
        ]) > 0

    def get_execution(self, execution_id: str) -> ExecutionRecord | None:
        """The execution ``execution_id``, or ``None``."""
        row = self._db.execute(
            f"SELECT {self._COLUMNS} FROM executions WHERE id = ?", (execution_id,),
        ).fetchone()
        return ExecutionRecord(*row) if row else None

    def executions(self, *, status: str | None = None) -> Iterator[ExecutionRecord]:
        """Stored executions, oldest first, optionally only those with ``status``."""
        sql = f"SELECT {self._COLUMNS} FROM executions"
        params: tuple[Any, ...] = ()
        if status is not None:
            sql += " WHERE status = ?"
            params = (status,)
        rows = self._db.execute(sql + " ORDER BY created, id", params).fetchall()
        return (ExecutionRecord(*row) for row in rows)
