"""The lineage model against hostile event streams: it never raises, and every
disagreement with a reported queue depth is counted and marks the lineage inexact.

The collector runs the model inside the network's event handling; an exception there
would end the recording. Streams here are arbitrary (lost, reordered, impossible
depths), so the model's only duty is to stay consistent and say it is unsure.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import reflowpy as rf
from reflowpy.observe import Collector, SqliteStore, query
from reflowpy.observe.lineage import Lineage
from tests.scale import long_scale

_NODES = st.sampled_from(["a", "b", "c"])
_PORTS = st.sampled_from(["in", "x"])
_EVENT = st.one_of(
    st.tuples(st.just("sent"), _NODES, _NODES, _PORTS, st.integers(-2, 6)),
    st.tuples(st.just("recv"), _NODES, _PORTS, st.integers(-2, 6)),
    st.tuples(st.just("failed"), _NODES),
    st.tuples(st.just("dead"), _NODES, _PORTS),
)


@settings(max_examples=long_scale(300))
@given(events=st.lists(_EVENT, max_size=60),
       rules=st.dictionaries(_NODES, st.sampled_from(["message", "join", "loop"])),
       midstream=st.booleans())
def test_any_event_stream_is_absorbed(events: list[tuple[object, ...]],
                                      rules: dict[str, str], midstream: bool) -> None:
    lin = Lineage(rules, {("b", "in"): 2} if midstream else None)
    ids: set[int] = set()
    for e in events:
        before = lin.mismatches
        if e[0] == "sent":
            _, frm, to, port, depth = e
            msg, causes = lin.sent(str(frm), str(to), str(port), int(str(depth)))
            assert msg not in ids
            ids.add(msg)
            assert causes is None or all(isinstance(c, int) for c in causes)
        elif e[0] == "recv":
            _, node, port, depth = e
            msg, kind = lin.received(str(node), str(port), int(str(depth)))
            assert kind in ("recv", "input", "unknown")
            assert kind != "recv" or msg in ids
            ids.add(msg)
        elif e[0] == "failed":
            lin.failed(str(e[1]))
        else:
            _, why = lin.dead_lettered(str(e[1]), str(e[2]))
            assert why in ("failed", "rejected")
        assert lin.mismatches >= before
        assert lin.inexact == (lin.mismatches > 0)


def test_receive_before_its_send_is_a_counted_mismatch() -> None:
    """The order the kernel's broadcast once produced: c takes b's value, then b's send
    to c is announced with depth 0. Counted, never an IndexError."""
    lin = Lineage({})
    lin.sent("b", "c", "in", 1)
    lin.received("c", "in", 0)
    assert not lin.inexact
    lin.received("c", "in", 0)  # a value the model never saw announced
    lin.sent("b", "c", "in", 0)  # ... announced after it was taken: impossible depth
    assert lin.inexact and lin.mismatches == 1


def test_exact_stream_has_no_mismatch() -> None:
    lin = Lineage({})
    m1, _ = lin.sent("a", "b", "in", 1)
    m2, _ = lin.sent("a", "b", "in", 2)
    assert lin.received("b", "in", 1) == (m1, "recv")
    _, causes = lin.sent("b", "c", "in", 1)
    assert causes == [m1]
    assert lin.received("b", "in", 0) == (m2, "recv")
    assert lin.received("b", "in", 0)[1] == "input"  # queued without a send: a root
    assert lin.mismatches == 0 and not lin.inexact


def test_a_failing_model_never_breaks_the_recording(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Even a model that raises (a bug) leaves the trace whole: every event still gets
    its row when the trace is read (the model runs then), and the execution says its
    lineage is inexact."""
    calls = 0
    real = Lineage.queue

    class Flaky(deque[int]):
        """A model queue that fails every third append (the model's bug)."""

        def append(self, x: int) -> None:
            nonlocal calls
            calls += 1
            if calls % 3 == 0:
                raise IndexError("pop from an empty deque")
            super().append(x)

    def flaky(self: Lineage, node: str, port: str) -> Any:
        q = real(self, node, port)
        if type(q) is not Flaky:
            q = self._queues[(node, port)] = Flaky(q)
        return q

    monkeypatch.setattr(Lineage, "queue", flaky)

    @rf.actor(inports=["in"], outports=["out"])
    def inc(ctx: rf.ActorContext) -> dict[str, Any]:
        return {"out": ctx.inputs["in"] + 1}

    reg = rf.Registry()
    reg.register("t/Inc", inc)
    g = rf.Graph("flaky")
    g.add_node("a", "t/Inc")
    g.add_node("b", "t/Inc")
    g.add_edge("a", "out", "b", "in")
    g.add_inport("in", "a", "in")
    g.add_outport("out", "b", "out")
    store = SqliteStore(tmp_path / "t.sqlite")

    async def main() -> Any:
        net = rf.Network(g, reg)
        async with Collector(store).record(net) as rec, net:
            for i in range(10):
                await net.send("in", i)
            await net.idle()
        return rec

    rec = trio.run(main)
    assert calls == 0  # lineage is derived when the trace is read, not while recording
    assert rec.dropped == 0 and not rec.inexact
    # ... and a model that fails then leaves the answers whole, marked inexact
    assert sorted(r.value for r in query.outputs(store, rec.execution_id)) == list(
        range(2, 12))
    assert calls > 3
    info = store.execution(rec.execution_id)
    assert info.inexact and info.status == "completed"
    # a reader of the same file learns it from the store
    other = SqliteStore(tmp_path / "t.sqlite")
    assert other._execute("SELECT lineage FROM executions")[0][0] == 1
    assert other.executions()[0].inexact
    other.close()
    store.close()
