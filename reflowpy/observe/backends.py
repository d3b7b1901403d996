"""Which trace store a spec names: a SQLite file path or a PostgreSQL URL.

:mod:`~reflowpy.observe.store` holds the SQL store and its SQLite backend,
:mod:`~reflowpy.observe.postgres` the PostgreSQL one (built on the same SQL store);
:func:`open_store` is the one place that chooses between them, so neither backend
module imports the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reflowpy.observe.store import SqliteStore, _SqlStore

__all__ = ["open_store"]


def open_store(spec: str | Path, **retention: Any) -> _SqlStore:
    """A store from a file path or a ``postgresql://`` URL (``retention``: the stores'
    age and size limits)."""
    text = str(spec)
    if text.startswith(("postgresql://", "postgres://")):
        from reflowpy.observe.postgres import PostgresStore  # psycopg only when asked

        return PostgresStore(text, **retention)
    return SqliteStore(text, **retention)
