"""Where ``--trace FILE`` and ``--store FILE`` write: the caller's path, and never into a
SQLite database that is not a trace store."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from reflowpy.observe import SqliteStore
from reflowpy.observe.store import TraceStoreError

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "examples" / "hello.json"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "reflowpy.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def _tables(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return sorted(r[0] for r in db.execute("SELECT name FROM sqlite_master"))


def test_a_relative_trace_path_is_the_callers(tmp_path: Path) -> None:
    # run changes into the graph's folder (relative config paths); --trace t.db was
    # written there (into examples/ of the checkout), not where the user stood
    r = _cli("run", str(HELLO), "-i", "numbers=1", "--trace", "t.db", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "t.db").exists()
    assert not (HELLO.parent / "t.db").exists()
    listed = _cli("trace", "list", "--store", "t.db", cwd=tmp_path)
    assert listed.returncode == 0 and "hello" in listed.stdout, listed.stderr


@pytest.mark.parametrize("command", [["trace", "list", "--store"], ["trace", "show", "--store"],
                                     ["run", str(HELLO), "-i", "numbers=1", "--trace"]])
def test_a_foreign_sqlite_database_is_refused_and_left_as_it_was(tmp_path: Path,
                                                                 command: list[str]) -> None:
    # `trace list --store other.db` created the store's tables in someone's database
    other = tmp_path / "app.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE users (name TEXT)")
        db.execute("INSERT INTO users VALUES ('ada')")
    before = other.read_bytes()
    r = _cli(*command, str(other), cwd=tmp_path)
    assert r.returncode != 0
    assert "not a reflowpy trace store" in r.stderr and "users" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert other.read_bytes() == before and _tables(other) == ["users"]


def test_an_empty_file_and_a_store_still_open(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    SqliteStore(empty).close()  # an empty file becomes a store
    SqliteStore(empty).close()  # and opens again as one
    with pytest.raises(TraceStoreError, match="not a reflowpy trace store"):
        other = tmp_path / "x.db"
        with sqlite3.connect(other) as db:
            db.execute("CREATE TABLE t (a)")
        SqliteStore(other)
