"""io readers hand a whole read chunk to one emit (no coroutine per line): the records,
their order, line numbers in errors and the done count must not depend on where the
chunk boundaries fall; JSON lines arrive deeply immutable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reflowpy.network.message import FrozenDict, FrozenList
from tests.components.helpers import config_error, run_node
from tests.scale import long_scale

_lines = st.lists(st.one_of(
    st.fixed_dictionaries({"a": st.integers(), "b": st.lists(st.integers(), max_size=2)})
    .map(json.dumps),
    st.just(""), st.just("   "), st.just("{bad"), st.text("xyz", max_size=5)), max_size=20)


def _deep_frozen(v: Any) -> bool:
    if isinstance(v, dict):
        return type(v) is FrozenDict and all(_deep_frozen(x) for x in v.values())
    if isinstance(v, list):
        return type(v) is FrozenList and all(_deep_frozen(x) for x in v)
    return True


@settings(max_examples=long_scale(40), deadline=None)
@given(_lines, st.integers(1, 7))
async def test_json_lines_independent_of_batch(tmp_path_factory: pytest.TempPathFactory,
                                               lines: list[str], batch: int) -> None:
    path = tmp_path_factory.mktemp("jl") / "in.jsonl"
    path.write_text("\n".join(lines) + ("\n" if lines else ""))
    r = await run_node("io/JsonLinesRead", {"path": str(path), "batch": batch})
    want, bad = [], []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            want.append(json.loads(line))
        except ValueError:
            bad.append(i + 1)
    assert r["out"] == want
    assert all(_deep_frozen(v) for v in r["out"])
    assert [e["line"] for e in r["error"]] == bad
    assert r["done"] == [{"path": str(path), "count": len(lines)}]


@settings(max_examples=long_scale(30), deadline=None)
@given(st.lists(st.text("ab \t", max_size=6), max_size=15), st.integers(1, 5))
async def test_read_file_lines_independent_of_batch(tmp_path_factory: pytest.TempPathFactory,
                                                    lines: list[str], batch: int) -> None:
    path: Path = tmp_path_factory.mktemp("rf") / "in.txt"
    path.write_text("".join(line + "\n" for line in lines))
    r = await run_node("io/ReadFile", {"path": str(path), "batch": batch})
    assert r["out"] == lines
    assert r["done"] == [{"path": str(path), "count": len(lines)}]


@pytest.mark.parametrize(("component", "config", "match"), [
    ("io/ReadFile", {"path": "x", "batch": 0}, r"node 'n': config key 'batch'.*>= 1"),
    ("io/ReadFile", {"path": "x", "mode": "words"}, r"node 'n': config key 'mode'"),
    ("io/ReadFile", {"path": 5}, r"node 'n': config key 'path': Expected `str"),
    ("io/JsonLinesRead", {"encoding": ["utf-8"]}, r"node 'n': config key 'encoding'"),
    ("io/CsvRead", {"header": "perhaps"}, r"node 'n': config key 'header'"),
])
async def test_reader_config_errors(component: str, config: dict[str, Any], match: str) -> None:
    with config_error(match):
        await run_node(component, config)


@pytest.mark.parametrize("component", ["io/ReadFile", "io/JsonLinesRead"])
@pytest.mark.parametrize("batch", [1, 7, 64, 512])
async def test_read_error_mid_file_keeps_what_was_read(tmp_path: Path, batch: int,
                                                       component: str) -> None:
    """A piece of text that fails to decode (bad UTF-8 after 5,000 good lines) is
    reported once, after every line decoded before it was sent; the reading stops
    there. Text is decoded 8 KiB at a time (as iterating a text file does), so the
    lines sent are those wholly inside the pieces before the failing one, whatever
    the batch."""
    path = tmp_path / "bad.txt"
    good = [f"{i:>8}" for i in range(5000)]  # 9 bytes a line
    path.write_bytes(("\n".join(good) + "\n").encode() + b"\xff\xfe\nafter\n")
    r = await run_node(component, {"path": str(path), "batch": batch})
    sent = len(r["out"])
    want = good if component == "io/ReadFile" else [int(x) for x in good]
    assert r["out"] == want[:sent]
    assert sent == (45_000 // 8192 * 8192) // 9  # the lines of the five good pieces
    assert len(r["error"]) == 1 and r["error"][0]["record"] == sent
    assert r["done"] == [{"path": str(path), "count": sent}]


_text = st.lists(st.sampled_from(["a", "bc", " ", "\r", "\n", "\r\n", "\u00e9", "\u2028",
                                  "\x0c", "\x85", "{}"]), max_size=60).map("".join)


@settings(max_examples=long_scale(300), deadline=None)
@given(_text, st.integers(1, 9), st.integers(1, 5))
def test_line_splitter_equals_iterating_the_file(text: str, hop: int, piece: int) -> None:
    """The reader's line splitter (whole hops of text, split with str operations)
    gives the lines that iterating the file with ``newline=""`` and stripping the line
    ends gives, wherever its hop and decode boundaries fall (a \\r\\n split across two
    hops included)."""
    import io

    from reflowpy.components import io as rio

    want = [line.rstrip("\r\n") for line in io.StringIO(text, newline="")]
    old = rio._HOP_CHARS, rio._DECODE_CHARS
    rio._HOP_CHARS, rio._DECODE_CHARS = hop, piece
    try:
        pull = rio._Lines(io.StringIO(text, newline=""))
        got: list[str] = []
        while chunk := pull():
            got.extend(chunk)
    finally:
        rio._HOP_CHARS, rio._DECODE_CHARS = old
    assert got == want


@settings(max_examples=long_scale(30), deadline=None)
@given(_text)
async def test_read_file_lines_with_any_line_ends(tmp_path_factory: pytest.TempPathFactory,
                                                  text: str) -> None:
    path: Path = tmp_path_factory.mktemp("le") / "in.txt"
    path.write_bytes(text.encode())
    with open(path, encoding="utf-8", newline="") as f:
        want = [line.rstrip("\r\n") for line in f]
    r = await run_node("io/ReadFile", {"path": str(path)})
    assert r["out"] == want
    assert r["done"] == [{"path": str(path), "count": len(want)}]


async def test_forced_stop_while_reading_a_big_file(tmp_path: Path) -> None:
    """Stopping mid-file ends the prefetching task and closes the file: nothing hangs."""
    import reflowpy as rf
    from tests.components.helpers import REGISTRY

    path = tmp_path / "big.txt"
    path.write_text("".join(f"{i}\n" for i in range(200_000)))
    g = rf.Graph("r")
    g.add_node("n", "io/ReadFile", {"path": str(path), "batch": 64})
    g.add_node("d", "core/Drop")
    g.add_edge("n", "out", "d", "in")
    net = rf.Network(g, REGISTRY)
    async with net:
        while net.statistics()["nodes"]["d"]["activations"] < 1000:
            await trio_sleep0()
        await net.stop(drain=False)
    assert net.statistics()["nodes"]["d"]["activations"] < 200_000


async def trio_sleep0() -> None:
    import trio

    await trio.lowlevel.checkpoint()
