"""The trace store on PostgreSQL, with LISTEN/NOTIFY for live updates across servers.

Same schema and queries as :class:`~reflowpy.observe.store.SqliteStore` (the shared SQL
lives in ``store._SqlStore``). Every committed batch of events sends one
``NOTIFY reflowpy_trace, '<execution id>'``, so any number of server instances sharing
the database learn about new events without polling: :meth:`PostgresStore.listen`
yields the execution ids as they are notified (in a worker thread; the live page and
``reflowpy trace tail --follow`` use it).

Needs ``psycopg`` (``pip install 'reflowpy[postgres]'``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from reflowpy.observe.store import TraceStoreError, _SqlStore

__all__ = ["CHANNEL", "PostgresStore"]

#: The NOTIFY channel.
CHANNEL = "reflowpy_trace"


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise TraceStoreError("the PostgreSQL trace store needs psycopg: pip install"
                              " 'reflowpy[postgres]'") from None
    return psycopg


class PostgresStore(_SqlStore):
    """The trace store in a PostgreSQL database given by a ``postgresql://`` URL."""

    _P = "%s"
    _REAL = "DOUBLE PRECISION"
    _INT = "BIGINT"
    _BLOB = "BYTEA"

    def __init__(self, dsn: str, *, max_age: float | None = None,
                 max_events: int | None = None) -> None:
        super().__init__(max_age=max_age, max_events=max_events)
        self.dsn = dsn
        self.where = f"trace store {self._safe_dsn()}"
        self._pg = _psycopg()
        try:
            self._db = self._pg.connect(dsn, autocommit=False)
        except self._pg.Error as exc:
            raise TraceStoreError(f"trace store {self._safe_dsn()}: cannot connect:"
                                  f" {str(exc).strip()}") from None
        self._pending_notify: set[str] = set()
        self._schema()

    def _safe_dsn(self) -> str:
        _, at, tail = self.dsn.rpartition("@")
        return f"postgresql://...@{tail}" if at else self.dsn

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            cur = self._db.execute(sql, tuple(params))
            return list(cur.fetchall()) if cur.description else []
        except self._pg.Error as exc:
            self._db.rollback()
            raise TraceStoreError(f"trace store {self._safe_dsn()}: {str(exc).strip()}"
                                  ) from None

    def _tables(self) -> set[str]:
        rows = self._execute("SELECT table_name FROM information_schema.tables"
                             " WHERE table_schema = current_schema()")
        return {str(r[0]) for r in rows}

    def _rollback(self) -> None:
        self._db.rollback()

    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            with self._db.cursor() as cur:
                cur.executemany(sql, list(rows))
        except self._pg.Error as exc:
            self._db.rollback()
            raise TraceStoreError(f"trace store {self._safe_dsn()}: {str(exc).strip()}"
                                  ) from None

    def _notify(self, executions: list[str]) -> None:
        for ex in executions:
            self._execute("SELECT pg_notify(%s, %s)", (CHANNEL, ex))
        self._db.commit()

    def _commit(self) -> None:
        self._db.commit()

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def listen(self, stop: threading.Event | None = None, timeout: float = 0.5,
               ready: threading.Event | None = None) -> Iterator[str]:
        """Execution ids as other writers notify them; ends when ``stop`` is set.
        ``ready`` is set once the server is listening (nothing notified later is missed).

        Blocking: run it in a thread (``trio.to_thread.run_sync``)."""
        conn = self._pg.connect(self.dsn, autocommit=True)
        try:
            conn.execute(f"LISTEN {CHANNEL}")
            if ready is not None:
                ready.set()
            while stop is None or not stop.is_set():
                for note in conn.notifies(timeout=timeout, stop_after=1):
                    yield str(note.payload)
        finally:
            conn.close()
