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
