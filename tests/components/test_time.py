"""time/* and aggregate/*: deterministic on trio's MockClock (autojump), no real sleeps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import trio
import trio.testing

import reflowpy as rf
from tests.components.helpers import REGISTRY, config_error, run_node, single


async def timeline(component: str, config: dict[str, Any],
                   events: Sequence[tuple[float, str, Any]], until: float,
                   outports: Sequence[str] = ("out",)) -> list[tuple[float, str, Any]]:
    """Send each ``(t, port, value)`` at mock time ``t`` (seconds from start) and record
    ``(t, port, value)`` of every output until ``until``."""
    inports = sorted({p for _, p, _ in events})
    g = single(component, config, inports=inports, outports=outports)
    seen: list[tuple[float, str, Any]] = []
    async with rf.Network(g, REGISTRY, output_capacity=100_000) as net:
        t0 = trio.current_time()

        async def watch(port: str) -> None:
            async for value in net.outputs(port):
                seen.append((round(trio.current_time() - t0, 6), port, value))

        async with trio.open_nursery() as nursery:
            for p in outports:
                nursery.start_soon(watch, p)
            for t, port, value in events:
                await trio.sleep_until(t0 + t)
                await net.send(port, value)
            await trio.sleep_until(t0 + until)
            nursery.cancel_scope.cancel()
    return seen


async def test_batch_by_size_and_time(autojump_clock: trio.testing.MockClock) -> None:
    ev = [(0, "in", 1), (0.1, "in", 2), (0.2, "in", 3), (5, "in", 4), (20, "in", 5)]
    out = await timeline("time/Batch", {"size": 2, "interval": 1.0}, ev, until=30)
    assert out == [(0.1, "out", [1, 2]), (1.2, "out", [3]), (6.0, "out", [4]), (21.0, "out", [5])]


async def test_batch_flush_port_and_stop(autojump_clock: trio.testing.MockClock) -> None:
    r = await run_node("time/Batch", {"size": 10}, inputs=[("in", 1), ("flush", None), ("in", 2)])
    assert r["out"] == [[1], [2]]  # the second one is emitted when the network stops
    with config_error("node 'n'.*'size'"):
        await run_node("time/Batch", {}, inputs={"in": [1]})


async def test_tumbling_window_processing_time(autojump_clock: trio.testing.MockClock) -> None:
    ev = [(0, "in", "a"), (3, "in", "b"), (11, "in", "c"), (35, "in", "d")]
    out = await timeline("time/Window", {"kind": "tumbling", "size": 10}, ev, until=60)
    assert [(t, w["start"] - out[0][2]["start"], w["count"], w["items"]) for t, _, w in out] == [
        (10.0, 0.0, 2, ["a", "b"]), (20.0, 10.0, 1, ["c"]), (40.0, 30.0, 1, ["d"])]


async def test_sliding_window_event_time(autojump_clock: trio.testing.MockClock) -> None:
    events = [(0, "in", {"ts": t, "v": t}) for t in (1, 4, 6, 12)]
    cfg = {"kind": "sliding", "size": 10, "step": 5, "time_field": "ts", "items": False}
    out = await timeline("time/Window", cfg, events, until=1)
    closed = [(w["start"], w["end"], w["count"]) for _, _, w in out]
    # windows [-5,5) and [0,10) are closed by ts=12; [5,15) and [10,20) close at stop
    assert closed == [(-5.0, 5.0, 2), (0.0, 10.0, 3)]


async def test_session_window_per_key(autojump_clock: trio.testing.MockClock) -> None:
    ev = [(0, "in", {"u": "a"}), (2, "in", {"u": "b"}), (3, "in", {"u": "a"}),
          (20, "in", {"u": "a"})]
    out = await timeline("time/Window", {"kind": "session", "gap": 5, "key": "u"}, ev, until=40)
    got = [(t, w["key"], w["count"]) for t, _, w in out]
    assert got == [(7.0, "b", 1), (8.0, "a", 2), (25.0, "a", 1)]


async def test_window_errors() -> None:
    r = await run_node("time/Window", {"size": 10, "time_field": "ts"},
                       inputs={"in": [{"ts": "late"}]})
    assert r["error"][0]["value"] == {"ts": "late"}
    with config_error("node 'n'.*'step'"):
        await run_node("time/Window", {"kind": "sliding", "size": 5, "step": 10},
                       inputs={"in": [1]})
    with config_error("node 'n'.*'kind'"):
        await run_node("time/Window", {"kind": "hopping", "size": 5}, inputs={"in": [1]})


async def test_debounce(autojump_clock: trio.testing.MockClock) -> None:
    ev = [(0, "in", 1), (0.5, "in", 2), (0.9, "in", 3), (5, "in", 4)]
    out = await timeline("time/Debounce", {"wait": 1}, ev, until=10)
    assert out == [(1.9, "out", 3), (6.0, "out", 4)]
    ev = [(round(t * 0.3, 6), "in", t) for t in range(10)]
    out = await timeline("time/Debounce", {"wait": 1, "max_wait": 2}, ev, until=10)
    assert out[0] == (2.0, "out", 6)


async def test_throttle(autojump_clock: trio.testing.MockClock) -> None:
    ev = [(t, "in", t) for t in (0, 0.4, 1.0, 1.5, 2.1)]
    out = await timeline("time/Throttle", {"interval": 1}, ev, until=3,
                         outports=["out", "dropped"])
    assert [(p, v) for _, p, v in out] == [("out", 0), ("dropped", 0.4), ("out", 1.0),
                                           ("dropped", 1.5), ("out", 2.1)]


async def test_rate_limit_token_bucket(autojump_clock: trio.testing.MockClock) -> None:
    ev = [(0, "in", i) for i in range(6)]
    out = await timeline("time/RateLimit", {"rate": 2, "burst": 2}, ev, until=10)
    assert [t for t, _, _ in out] == [0.0, 0.0, 0.5, 1.0, 1.5, 2.0]
    assert [v for _, _, v in out] == list(range(6))
    with config_error("node 'n'.*'rate'"):
        await run_node("time/RateLimit", {"rate": 0}, inputs={"in": [1]})


async def test_delay_keeps_order(autojump_clock: trio.testing.MockClock) -> None:
    out = await timeline("time/Delay", {"delay_ms": 1500}, [(0, "in", "a"), (0.1, "in", "b")],
                         until=5)
    assert out == [(1.5, "out", "a"), (3.0, "out", "b")]
    with config_error("node 'n'.*'delay'"):
        await run_node("time/Delay", {"delay": -1}, inputs={"in": [1]})


async def test_interval_ticks_stop_and_start(autojump_clock: trio.testing.MockClock) -> None:
    ev = [(2.5, "stop", None), (10, "start", None)]
    out = await timeline("time/Interval", {"interval": 1, "max": 4}, ev, until=20)
    assert out == [(1.0, "out", 1), (2.0, "out", 2), (11.0, "out", 3), (12.0, "out", 4)]


async def test_timer_watchdog(autojump_clock: trio.testing.MockClock) -> None:
    ev = [(0, "start", "hb1"), (3, "start", "hb2"), (10, "start", "hb3"), (11, "cancel", None)]
    out = await timeline("time/Timer", {"delay": 5}, ev, until=30)
    assert out == [(8.0, "out", "hb2")]


async def test_cron_on_mock_clock(autojump_clock: trio.testing.MockClock) -> None:
    cfg = {"schedule": "30 9 * * mon-fri", "start": "2024-01-05T09:00:00", "max": 3}
    out = await timeline("time/Cron", cfg, [], until=7 * 86400)
    assert [v["time"] for _, _, v in out] == [
        "2024-01-05T09:30:00+00:00", "2024-01-08T09:30:00+00:00", "2024-01-09T09:30:00+00:00"]
    assert out[0][0] == 1800.0
    with config_error("node 'n'.*'schedule'"):
        await run_node("time/Cron", {"schedule": "61 * * * *"}, inputs={"stop": [1]})
    with config_error("node 'n'.*'timezone'"):
        await run_node("time/Cron", {"schedule": "@daily", "timezone": "Mars/Base"},
                       inputs={"stop": [1]})


async def test_collect_count_flush_and_bound() -> None:
    r = await run_node("aggregate/Collect", {"count": 2}, inputs={"in": [1, 2, 3]})
    assert r["out"] == [[1, 2], [3]] and r["size"] == [2]
    r = await run_node("aggregate/Collect", {"max": 1}, inputs=[("in", 1), ("in", 2),
                                                                ("flush", None)])
    assert r["out"] == [[1]] and r["error"][0]["value"] == 2


async def test_count_total_and_by_key() -> None:
    r = await run_node("aggregate/Count", inputs=[("in", "a"), ("in", "b"), ("reset", 1),
                                                  ("in", "c")])
    assert r["out"] == [1, 2, 1]
    msgs = [{"level": "info"}, {"level": "error"}, {"level": "info"}]
    r = await run_node("aggregate/Count", {"by": "level", "emit": "flush"},
                       inputs=[*(("in", m) for m in msgs), ("flush", True)])
    assert r["out"] == [{"info": 2, "error": 1}]


async def test_distinct_with_bound_and_ttl(autojump_clock: trio.testing.MockClock) -> None:
    r = await run_node("aggregate/Distinct", {"key": "id", "max_keys": 2},
                       inputs={"in": [{"id": 1}, {"id": 2}, {"id": 1}, {"id": 3}, {"id": 2}]})
    assert [m["id"] for m in r["out"]] == [1, 2, 3, 2]  # 2 was forgotten (max_keys)
    assert r["duplicate"] == [{"id": 1}]
    ev = [(0, "in", "x"), (1, "in", "x"), (11, "in", "x")]
    out = await timeline("aggregate/Distinct", {"ttl": 10}, ev, until=12)
    assert [t for t, _, _ in out] == [0.0, 11.0]


async def test_join_by_key_with_timeout_and_bound(autojump_clock: trio.testing.MockClock) -> None:
    ev = [(0, "left", {"id": 1, "l": "a"}), (1, "right", {"id": 1, "r": "b"}),
          (2, "left", {"id": 2}), (3, "right", {"id": 3}), (4, "right", {"id": 9})]
    out = await timeline("aggregate/Join", {"key": "id", "timeout": 5, "max_pending": 1}, ev,
                         until=20, outports=["out", "expired"])
    pairs = [v for _, p, v in out if p == "out"]
    assert pairs == [{"key": 1, "left": {"id": 1, "l": "a"}, "right": {"id": 1, "r": "b"}}]
    expired = [(t, v["side"], v["key"], v["reason"]) for t, p, v in out if p == "expired"]
    assert expired == [(4.0, "right", 3, "evicted: buffer full"), (7.0, "left", 2, "timed out"),
                       (9.0, "right", 9, "timed out")]


async def test_join_errors() -> None:
    r = await run_node("aggregate/Join", {"key": "id"}, inputs={"left": [{"x": 1}]})
    assert r["error"][0]["value"] == {"x": 1}
    with config_error("node 'n'.*'key'"):
        await run_node("aggregate/Join", {}, inputs={"left": [1]})
