"""Questions asked of a trace: lineage, what happened to a message, root causes.

Everything here works on any :class:`~reflowpy.observe.store.TraceStore` and returns
plain structs, which the CLI prints and the REST routes encode as JSON.

* :func:`lineage` walks ``causes`` back from a message to the external inputs (IIPs and
  values sent into the network) that produced it: "which inputs produced this output".
* :func:`history` is "what happened to message X": where it was sent, received,
  failed or dead-lettered, and what it caused downstream.
* :func:`failures` explains each failure of an execution in one record: the node,
  the error, the message it failed on and the chain of hops back to the input that
  started it (the root cause in one command).
"""

from __future__ import annotations

from typing import Any

import msgspec

from reflowpy.observe.store import EventRow, TraceStore, TraceStoreError

__all__ = ["Failure", "Hop", "failures", "history", "inputs", "lineage", "outputs"]


class Hop(msgspec.Struct, frozen=True):
    """One message on its way: ``node.port`` it left, where it went, its value."""

    msg: int
    kind: str
    node: str
    port: str
    to_node: str
    to_port: str
    value: Any
    causes: list[int] | None
    seq: int


class Failure(msgspec.Struct, frozen=True):
    """One failure or dead letter with the message it was about and its lineage."""

    kind: str
    node: str
    port: str
    error: str | None
    attempt: int | None
    msg: int | None
    value: Any
    path: list[Hop]
    inputs: list[Hop]
    seq: int


def _hop(row: EventRow) -> Hop:
    return Hop(msg=row.msg or 0, kind=row.kind, node=row.node, port=row.port,
               to_node=row.peer_node, to_port=row.peer_port, value=row.value,
               causes=row.causes, seq=row.seq)


def _origin(store: TraceStore, execution: str, msgs: list[int]) -> dict[int, EventRow]:
    """For each message id, the row that created it (a send or an input)."""
    rows = store.events(execution, kinds=("sent", "output", "input", "unknown"), msgs=msgs)
    found: dict[int, EventRow] = {}
    for r in rows:
        if r.msg is not None and r.msg not in found:
            found[r.msg] = r
    return found


def lineage(store: TraceStore, execution: str, msg: int, *, limit: int = 10_000
            ) -> tuple[list[Hop], list[Hop]]:
    """All hops that led to ``msg`` (newest first) and the inputs at their roots."""
    hops: list[Hop] = []
    roots: list[Hop] = []
    seen: set[int] = set()
    frontier = [msg]
    while frontier and len(hops) < limit:
        frontier = [m for m in frontier if m not in seen]
        seen.update(frontier)
        if not frontier:
            break
        origin = _origin(store, execution, frontier)
        nxt: list[int] = []
        for m in frontier:
            row = origin.get(m)
            if row is None:
                continue
            hop = _hop(row)
            hops.append(hop)
            if row.kind in ("input", "unknown"):
                roots.append(hop)
            elif row.causes:
                # the message this node received, and then the send that delivered it
                nxt.extend(row.causes)
        # a received message's id is its send's id: the next round looks those up
        frontier = nxt
    if not hops:
        raise TraceStoreError(f"execution {execution!r} has no message {msg}")
    roots.sort(key=lambda h: h.seq)
    return hops, roots


def history(store: TraceStore, execution: str, msg: int) -> tuple[list[EventRow], list[Hop]]:
    """Every event about ``msg``, and the messages it caused (forward, one level)."""
    rows = store.events(execution, msgs=[msg])
    failed = [r for r in store.events(execution, kinds=("failed", "dead"))
              if r.causes and msg in r.causes and r.msg != msg]
    caused = [_hop(r) for r in store.caused_by(execution, msg)]
    if not rows and not failed:
        raise TraceStoreError(f"execution {execution!r} has no message {msg}")
    return sorted(rows + failed, key=lambda r: r.seq), caused


def failures(store: TraceStore, execution: str, *, limit: int = 100) -> list[Failure]:
    """Each failure (final attempts and dead letters) explained back to its inputs."""
    rows = store.events(execution, kinds=("failed", "dead"), limit=limit * 4)
    out: list[Failure] = []
    explained: set[tuple[str, int | None]] = set()
    for r in rows:
        extra = r.extra or {}
        if r.kind == "failed" and extra.get("willRetry"):
            continue  # a retry follows; the final attempt is what matters
        key = (r.node, r.msg)
        if r.kind == "dead" and key in explained:
            continue  # its failure is already listed
        explained.add(key)
        value: Any = None
        path: list[Hop] = []
        roots: list[Hop] = []
        if r.msg is not None:
            try:
                path, roots = lineage(store, execution, r.msg)
                value = path[0].value if path else None
            except TraceStoreError:
                pass
        if value is None and r.value is not None:
            value = r.value
        error = r.error
        if r.kind == "dead" and error is None:
            error = "dead-lettered"
        out.append(Failure(kind=r.kind, node=r.node, port=r.port, error=error,
                           attempt=extra.get("attempt"), msg=r.msg, value=value, path=path,
                           inputs=roots, seq=r.seq))
        if len(out) >= limit:
            break
    return out


def outputs(store: TraceStore, execution: str, limit: int = 100_000) -> list[EventRow]:
    """Values that left the network through exported out-ports, in order."""
    return store.events(execution, kinds=("output",), limit=limit)


def inputs(store: TraceStore, execution: str, limit: int = 100_000) -> list[EventRow]:
    """Values that entered without a sender (IIPs and ``Network.send``), in order."""
    return store.events(execution, kinds=("input",), limit=limit)
