"""Replay: re-run a recorded execution on its recorded inputs and diff the outputs.

The trace holds the graph (as Reflow JSON) and every value that entered a node without
a sender (``input`` rows: IIPs and values sent into the network). :func:`replay` builds
a fresh network from that graph, sends the recorded inputs in their recorded order to
the same node ports (the IIPs come from the graph itself, so the first *k* inputs of a
port that has *k* IIPs are skipped), waits for idle and compares what leaves each
exported out-port with what was recorded, value by value. For a deterministic graph
the outputs are the same; a difference names the port and position.

A trace can be replayed only if it is complete: recorded with every message (no
sampling), nothing dropped, no value cut at ``max_value_bytes``.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import msgspec
import trio

from reflowpy.network.graph import Graph
from reflowpy.network.network import Network
from reflowpy.network.registry import Registry
from reflowpy.observe.store import TraceStore, TraceStoreError

__all__ = ["ReplayResult", "replay"]


class ReplayResult(msgspec.Struct):
    """What a replay sent and found: ``same`` when every output matched."""

    execution: str
    same: bool
    inputs: int
    outputs: int
    differences: list[str]
    replayed: dict[str, list[Any]]


def _truncated(value: Any) -> bool:
    return isinstance(value, dict) and "$truncated" in value


def _plain(value: Any) -> Any:
    return msgspec.json.decode(msgspec.json.encode(value, enc_hook=repr))


def replay(store: TraceStore, execution: str, *, registry: Registry | None = None,
           timeout: float | None = 60.0) -> ReplayResult:
    """Replay ``execution`` from ``store`` (see the module docstring)."""
    rec = store.execution(execution)
    if rec.sample != 1 or rec.dropped or rec.inexact:
        raise TraceStoreError(
            f"execution {rec.id} cannot be replayed: its trace is incomplete (sample 1/"
            f"{rec.sample}, {rec.dropped} events dropped); record with every message")
    if not rec.graph_json:
        raise TraceStoreError(f"execution {rec.id} has no recorded graph")
    graph = Graph.loads(rec.graph_json, "reflow")
    iips: dict[tuple[str, str], int] = {}
    for iip in graph.iips:
        key = (iip.tgt.node, graph.port_name(iip.tgt.port))
        iips[key] = iips.get(key, 0) + 1
    sends: list[tuple[tuple[str, str], Any]] = []
    for row in store.events(rec.id, kinds=("input",), limit=sys.maxsize >> 1):
        key = (row.node, row.port)
        if iips.get(key, 0) > 0:
            iips[key] -= 1
            continue
        if _truncated(row.value):
            raise TraceStoreError(f"execution {rec.id}: input #{row.msg} into"
                                  f" {row.node}.{row.port} was cut when recorded")
        sends.append((key, row.value))
    recorded: dict[str, list[Any]] = {p: [] for p in graph.outports}
    for row in store.events(rec.id, kinds=("output",), limit=sys.maxsize >> 1):
        recorded.setdefault(row.peer_port, []).append(row.value)

    async def run() -> dict[str, list[Any]]:
        net = Network(graph, registry, output_capacity=sys.maxsize)
        with trio.fail_after(math.inf if timeout is None else timeout):
            async with net:
                for target, value in sends:
                    await net.send(target, value)
                await net.idle()
        return {name: [_plain(v) for v in net.outputs(name).drain()]
                for name in graph.outports}

    replayed = trio.run(run)
    differences: list[str] = []
    for port in sorted(set(recorded) | set(replayed)):
        want, got = recorded.get(port, []), replayed.get(port, [])
        if len(want) != len(got):
            differences.append(f"port {port!r}: {len(want)} values recorded, {len(got)}"
                               " replayed")
        for i, (a, b) in enumerate(zip(want, got, strict=False)):
            if _truncated(a):
                continue
            if a != b:
                differences.append(f"port {port!r} value {i}: recorded {a!r}, replayed {b!r}")
                if len(differences) > 50:
                    break
    return ReplayResult(execution=rec.id, same=not differences, inputs=len(sends),
                        outputs=sum(len(v) for v in recorded.values()),
                        differences=differences, replayed=replayed)
