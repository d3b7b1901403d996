"""Persistent state of a server: graphs and execution records in one SQLite file.

The server keeps what must survive a restart here and nothing else: every stored
graph (its canonical JSON text, as the graph layer writes it) and every execution
record (which graph, which inputs, which policy, and its last known status). On
start the server reads the executions marked ``restart: always`` that were running
and starts them again.

Every write is one SQLite transaction (WAL journal, ``synchronous=NORMAL``), so a
crash or a refused request never leaves half a record behind. Calls are synchronous
and short; the server runs them on its trio thread, which is fine for the sizes a
graph store holds (a write is well under a millisecond).
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

__all__ = ["ExecutionRecord", "GraphRecord", "Storage"]

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
"""


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
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            _private(directory, 0o700)
            self.path = directory / "reflowpy.db"
            target = str(self.path)
            # Create the file 0600 before SQLite does: its -wal and -shm files take the
            # database file's permissions.
            os.close(os.open(target, os.O_RDWR | os.O_CREAT, 0o600))
            for suffix in ("", "-wal", "-shm"):
                _private(Path(target + suffix), 0o600)
        self._db = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database file."""
        self._db.close()

    def _write(self, sql: str, params: tuple[Any, ...]) -> int:
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.execute(sql, params)
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

    def put_execution(
        self,
        execution_id: str,
        *,
        graph_id: str | None,
        graph: str,
        inputs: Any,
        policy: Any,
        status: str,
    ) -> ExecutionRecord:
        """Record a new execution (or replace one with the same id)."""
        now = time.time()
        self._write(
            "INSERT OR REPLACE INTO executions (id, graph_id, graph, inputs, policy, status,"
            " error, created, updated) VALUES (?, ?, ?, ?, ?, ?, '', ?, ?)",
            (
                execution_id,
                graph_id,
                graph,
                msgspec.json.encode(inputs).decode(),
                msgspec.json.encode(policy).decode(),
                status,
                now,
                now,
            ),
        )
        record = self.get_execution(execution_id)
        assert record is not None
        return record

    def set_execution_status(self, execution_id: str, status: str, error: str = "") -> None:
        """Update the recorded status (and error text) of an execution."""
        self._write(
            "UPDATE executions SET status = ?, error = ?, updated = ? WHERE id = ?",
            (status, error, time.time(), execution_id),
        )

    def get_execution(self, execution_id: str) -> ExecutionRecord | None:
        """The execution ``execution_id``, or ``None``."""
        row = self._db.execute(
            "SELECT id, graph_id, graph, inputs, policy, status, error, created, updated"
            " FROM executions WHERE id = ?",
            (execution_id,),
        ).fetchone()
        return ExecutionRecord(*row) if row else None

    def executions(self, *, status: str | None = None) -> Iterator[ExecutionRecord]:
        """Stored executions, oldest first, optionally only those with ``status``."""
        sql = (
            "SELECT id, graph_id, graph, inputs, policy, status, error, created, updated"
            " FROM executions"
        )
        params: tuple[Any, ...] = ()
        if status is not None:
            sql += " WHERE status = ?"
            params = (status,)
        rows = self._db.execute(sql + " ORDER BY created, id", params).fetchall()
        return (ExecutionRecord(*row) for row in rows)
