"""io/*: real files, directories, CSV, JSON lines, SQLite, stdin/stdout."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio
import trio.testing

import reflowpy as rf
from tests.components.helpers import REGISTRY, config_error, run_node

ROOT = Path(__file__).resolve().parents[2]


async def test_read_file_lines_text_bytes(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    p.write_text("one\ntwo\r\nthree")
    r = await run_node("io/ReadFile", {"path": str(p)}, inports=["in"])
    assert r["out"] == ["one", "two", "three"]
    assert r["done"] == [{"path": str(p), "count": 3}]
    r = await run_node("io/ReadFile", {"mode": "bytes", "chunk_size": 4},
                       inputs={"in": [str(p)]})
    assert b"".join(r["out"]) == p.read_bytes() and len(r["out"]) == 4
    r = await run_node("io/ReadFile", {"mode": "text"}, inputs={"in": [str(p)]})
    assert r["out"] == ["one\ntwo\r\nthree"]


async def test_read_file_missing_goes_to_error(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    r = await run_node("io/ReadFile", inputs={"in": [str(tmp_path / "nope"), 5]})
    assert [e["type"] for e in r["error"]] == ["FileNotFoundError", "TypeError"]
    ok = tmp_path / "ok.txt"
    ok.write_text("fine\n")
    # without an error port the reader logs the failure and goes on with the next file
    r = await run_node("io/ReadFile", inputs={"in": [str(tmp_path / "nope"), str(ok)]},
                       outports=["out"])
    assert r["out"] == ["fine"]
    assert "FileNotFoundError" in caplog.text and "node 'n'" in caplog.text


async def test_write_file_lines_and_append(tmp_path: Path) -> None:
    p = tmp_path / "out.txt"
    r = await run_node("io/WriteFile", {"path": str(p)}, inputs={"in": ["a", {"b": 1}, b"c"]})
    assert p.read_text() == 'a\n{"b": 1}\nc\n'
    assert sum(w["count"] for w in r["written"]) <= 3
    await run_node("io/WriteFile", {"path": str(p), "append": True, "mode": "text"},
                   inputs={"in": ["d"]})
    assert p.read_text().endswith("c\nd")
    with config_error("node 'n'.*'path'"):
        await run_node("io/WriteFile", {"path": str(tmp_path / "no" / "x")}, inputs={"in": [1]})


async def test_write_file_flushes_on_interval(tmp_path: Path,
                                             autojump_clock: trio.testing.MockClock) -> None:
    p = tmp_path / "log.txt"
    g = rf.Graph("t")
    g.add_node("w", "io/WriteFile", {"path": str(p), "flush_interval": 1.0})
    g.add_inport("in", "w", "in")
    g.add_outport("written", "w", "written")
    async with rf.Network(g, REGISTRY) as net:
        start = trio.current_time()
        await net.send("in", "first")
        # the flush timer fires while the network still runs (mock time)
        written = await net.outputs("written").receive()
        assert written["count"] == 1 and trio.current_time() - start >= 1.0
        assert p.read_text() == "first\n"


async def test_csv_read_write_roundtrip(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text('name,qty\nann,2\n"b, c",3\n')
    r = await run_node("io/CsvRead", {"path": str(src), "numbers": True}, inports=["in"])
    assert r["out"] == [{"name": "ann", "qty": 2}, {"name": "b, c", "qty": 3}]
    dst = tmp_path / "out.csv"
    r2 = await run_node("io/CsvWrite", {"path": str(dst)},
                        inputs={"in": [*r["out"], {"name": "x", "bad": 1}, 7]})
    assert dst.read_text() == 'name,qty\nann,2\n"b, c",3\n'
    assert len(r2["error"]) == 2
    r = await run_node("io/CsvRead", {"path": str(src), "header": False}, inports=["in"])
    assert r["out"][0] == ["name", "qty"]


async def test_jsonlines_read_write(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"a": 1}\n\nnot json\n[2]\n')
    r = await run_node("io/JsonLinesRead", {"path": str(src)}, inports=["in"])
    assert r["out"] == [{"a": 1}, [2]]
    assert r["error"][0]["line"] == 3
    dst = tmp_path / "out.jsonl"
    await run_node("io/JsonLinesWrite", {"path": str(dst)}, inputs={"in": r["out"]})
    assert [json.loads(x) for x in dst.read_text().splitlines()] == [{"a": 1}, [2]]


async def test_read_dir_and_errors(tmp_path: Path) -> None:
    for n in ("b.log", "a.log", "c.txt"):
        (tmp_path / n).write_text(n)
    r = await run_node("io/ReadDir", {"path": str(tmp_path), "pattern": "*.log"}, inports=["in"])
    assert r["out"] == [str(tmp_path / "a.log"), str(tmp_path / "b.log")]
    r = await run_node("io/ReadDir", inputs={"in": [str(tmp_path / "missing")]})
    assert len(r["error"]) == 1


async def test_watch_emits_new_files(tmp_path: Path) -> None:
    (tmp_path / "old.log").write_text("x")
    g = rf.Graph("t")
    g.add_node("w", "io/Watch", {"path": str(tmp_path), "interval": 0.01, "pattern": "*.log"})
    g.add_outport("out", "w", "out")
    async with rf.Network(g, REGISTRY) as net:
        (tmp_path / "new.log").write_text("y")
        (tmp_path / "skip.txt").write_text("z")
        with trio.fail_after(10):
            assert await net.outputs("out").receive() == str(tmp_path / "new.log")
    with config_error("node 'n'.*'path'"):
        await run_node("io/Watch", {"path": str(tmp_path / "nope")}, inputs={"stop": [1]})


async def test_stdin_and_stdout(monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"a": 1}\nbad\n'))
    r = await run_node("io/Stdin", {"mode": "json"}, inports=[])
    assert r["out"] == [{"a": 1}] and r["done"] == [2] and len(r["error"]) == 1
    await run_node("io/Stdout", inputs={"in": ["x", {"y": 2}]}, outports=[])
    assert capsys.readouterr().out == 'x\n{"y": 2}\n'


async def test_sqlite_insert_and_query(tmp_path: Path) -> None:
    db = str(tmp_path / "t.db")
    r = await run_node("io/SqliteInsert", {"database": db, "table": "ev", "create": True},
                       inputs={"in": [{"k": "a", "n": 1}, {"k": "b", "n": 2}, {"bad-col": 1}]})
    assert r["out"] == [1, 2] and len(r["error"]) == 1
    r = await run_node("io/SqliteQuery",
                       {"database": db, "query": "SELECT k, n FROM ev WHERE n >= ? ORDER BY n"},
                       inputs={"in": [1, 2]})
    assert r["out"] == [{"k": "a", "n": 1}, {"k": "b", "n": 2}, {"k": "b", "n": 2}]
    assert r["done"] == [{"rows": 2, "changes": 0}, {"rows": 1, "changes": 0}]
    r = await run_node("io/SqliteQuery", {"database": db, "query": "SELECT * FROM nope"},
                       inputs={"in": [None]})
    assert "no such table" in r["error"][0]["error"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM ev").fetchone() == (2,)
    with config_error("node 'n'.*'query'"):
        await run_node("io/SqliteQuery", {"database": db, "query": "SELECT 'unterminated"},
                       inputs={"in": [None]})
    with config_error("node 'n'.*'table'"):
        await run_node("io/SqliteInsert", {"database": db, "table": "x; drop"},
                       inputs={"in": [{}]})


BIG_SCRIPT = textwrap.dedent("""
    import resource, sys, reflowpy as rf
    path, out = sys.argv[1], sys.argv[2]
    g = rf.Graph("big")
    g.add_node("read", "io/ReadFile", {"path": path, "mode": "bytes", "chunk_size": 1 << 20})
    g.add_node("write", "io/WriteFile", {"path": out, "mode": "bytes"})
    g.add_node("count", "aggregate/Count", {"emit": "flush"})
    g.add_edge("read", "out", "write", "in")
    g.add_edge("read", "done", "count", "flush")
    g.add_outport("done", "read", "done")
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    result = rf.run(g, timeout=120)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(result["done"][0]["count"], peak - base)
""")


@pytest.mark.slow
def test_large_file_streams_with_bounded_memory(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    size_mb = 400
    block = os.urandom(1 << 20)
    with open(big, "wb") as f:
        for _ in range(size_mb):
            f.write(block)
    copy = tmp_path / "copy.bin"
    proc = subprocess.run(
        [sys.executable, "-c", BIG_SCRIPT, str(big), str(copy)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr
    chunks, growth_mb = map(int, proc.stdout.split())
    assert chunks == size_mb
    assert copy.stat().st_size == big.stat().st_size
    # Bounded: the in-port queue holds at most its capacity (64) of 1 MiB chunks and the
    # reader at most three more (seen: 25-96 MiB of growth); allow the allocator and a
    # loaded machine up to half the file. Growth is measured from the imported process, so
    # the bound does not depend on how much the package imports.
    assert growth_mb < size_mb / 2, f"RSS grew {growth_mb} MiB for a {size_mb} MiB file"
