"""Every standard component, every declared config key, hostile values: the network
either starts (and stops cleanly) or refuses with a ReflowError naming the node; no
other exception, no report of a failed teardown or of an exception group.

Found by this sweep (every value for every key): time/Window
logged a teardown ``AttributeError`` after refusing its config, and net/HttpServer
reported ``failed: ExceptionGroup`` at every clean stop. (About 1,300 cases, 15 s.)"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import pytest
import trio

import reflowpy as rf

REGISTRY = rf.default_registry()
BAD: list[Any] = [None, -1, 0, 1e308, float("nan"), float("inf"), "abc", "", [], {}, [1, 2],
                  {"a": 1}, True, 2**70, "../../../../etc/passwd", "\x00", "x" * 5000]


def _cases() -> list[tuple[str, str, int]]:
    cases = []
    for name in sorted(REGISTRY.names()):
        config = getattr(REGISTRY.get(name), "Config", None)
        keys = [f.encode_name for f in msgspec.structs.fields(config)] if config else []
        for key in keys:
            for i in range(len(BAD)):
                cases.append((name, key, i))
    return cases


CASES = _cases()


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL)


@pytest.mark.parametrize(("component", "key", "bad"), CASES,
                         ids=[f"{c}-{k}-{i}" for c, k, i in CASES])
async def test_a_bad_config_value_is_refused_or_harmless(component: str, key: str,
                                                         bad: int) -> None:
    graph = rf.Graph("hostile")
    graph.add_node("n", component, {key: BAD[bad]})
    net = rf.Network(graph, REGISTRY)
    try:
        with trio.fail_after(10):
            async with net:
                await trio.testing.wait_all_tasks_blocked()
    except BaseException as exc:
        leaf = rf.leaf_exception(exc)
        assert isinstance(leaf, rf.ReflowError), repr(leaf)
        assert "'n'" in str(leaf)
    noise = [str(e) for e in net.errors
             if any(w in str(e) for w in ("ExceptionGroup", "teardown failed", "NetworkStopped"))]
    assert noise == []
