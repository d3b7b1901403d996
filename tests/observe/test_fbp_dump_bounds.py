"""``trace:dump`` bounds (FbpTraces): the newest events that fit the count limit and the
``buffersize`` in bytes, across several recorded networks of one graph.

Two real networks are recorded into a real SQLite store; for any bounds, the dump must be
exactly the longest suffix of the unbounded dump within both (sizes measured as the
compact UTF-8 JSON that is sent, so non-ASCII values count their bytes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import reflowpy as rf
from reflowpy.observe import SqliteStore
from reflowpy.observe.flowtrace import FbpTraces
from tests.scale import long_scale


@rf.actor(inports=["in"], outports=["out"])
def _shout(ctx: rf.ActorContext) -> dict[str, Any]:
    return {"out": f"{ctx.inputs['in']}!"}


def _net(name: str) -> rf.Network:
    reg = rf.Registry()
    reg.register("t/Shout", _shout)
    g = rf.Graph("g")
    g.add_node("a", "t/Shout")
    g.add_node("b", "t/Shout")
    g.add_edge("a", "out", "b", "in")
    g.add_inport("in", "a", "in")
    g.add_outport("out", "b", "out")
    return rf.Network(g, reg, name=name)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    path = tmp_path_factory.mktemp("dump") / "trace.sqlite"
    store = SqliteStore(path)

    async def main() -> list[str]:
        async with trio.open_nursery() as nursery:
            traces = FbpTraces(store, nursery)
            traces.start("g", None)
            for run, values in (("one", ["ä" * 3, "b", "ç"]), ("two", ["€" * 5, "e", "f"])):
                net = _net(f"g-{run}")
                traces.network("g", net)
                await trio.testing.wait_all_tasks_blocked()  # the recorder subscribed
                async with net:
                    for v in values:
                        await net.send("in", v)
                    await net.idle()
            traces.stop("g")
        return traces.recorded["g"]

    ids = trio.run(main)
    store.close()
    return path, ids


def _dump(path: Path, ids: list[str], limit: int, buffersize: int | None
          ) -> list[dict[str, Any]]:
    store = SqliteStore(path)

    async def main() -> list[dict[str, Any]]:
        async with trio.open_nursery() as nursery:
            traces = FbpTraces(store, nursery, limit=limit)
            traces.start("g", None, buffersize=buffersize)
            traces.recorded["g"] = list(ids)
            return await traces.dump("g")

    try:
        return trio.run(main)
    finally:
        store.close()


def _size(event: dict[str, Any]) -> int:
    return len(msgspec.json.encode(event))


@settings(max_examples=long_scale(40), deadline=None)
@given(limit=st.integers(1, 20), buffersize=st.one_of(st.none(), st.integers(0, 3000)))
def test_dump_is_the_newest_suffix_within_both_bounds(
        recorded: tuple[Path, list[str]], limit: int, buffersize: int | None) -> None:
    path, ids = recorded
    full = _dump(path, ids, 100_000, None)
    # 3 values x (a -> b, b -> out) per network, two networks, oldest first
    data = [e["payload"].get("data", e["payload"].get("payload")) for e in full]
    assert data[0] == "äää!" and data[-1] == "f!!" and len(data) == 12
    want = 0
    total = 0
    for event in reversed(full):
        if want == limit or (buffersize is not None and total + _size(event) > buffersize):
            break
        total += _size(event)
        want += 1
    got = _dump(path, ids, limit, buffersize)
    assert got == (full[-want:] if want else [])
    assert len(got) <= limit
    assert buffersize is None or sum(_size(e) for e in got) <= buffersize


def test_buffersize_must_be_bytes() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            traces = FbpTraces(None, nursery)
            for bad in (-1, 1.5, True, "10"):
                with pytest.raises(ValueError, match="buffersize must be a number of bytes"):
                    traces.start("g", None, buffersize=bad)  # type: ignore[arg-type]
            assert "g" not in traces.tracing

    trio.run(main)
