"""FBP ``trace:start/stop/dump/clear`` backed by the trace store.

The FBP runtime (``reflowpy.server.fbp``) calls :class:`FbpTraces`: ``start`` records the
graph's running network (and each network the graph starts later) into the store with
the collector, as execution ``<network name>``; ``stop`` ends the recordings; ``dump``
reads the recorded executions back and returns their events in the flowtrace format
(``network:data`` per message with the FBP edge id, ``runtime:packet`` per value that
left the graph, ``network:processerror`` per final failure, ``network:error``);
``clear`` deletes them from the store.

A dump holds the *newest* events that fit both bounds: at most ``limit`` events (the
server's ``trace_limit``) and, when ``trace:start`` gave a ``buffersize``, at most that
many bytes of events (each measured as its compact JSON, as it is sent). The store
keeps everything recorded (its own retention applies); the bounds only cut the dump.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from reflowpy.observe.collector import Collector, Recording
from reflowpy.observe.store import EventRow, TraceStore, new_execution_id

if TYPE_CHECKING:
    from reflowpy.network.network import Network

__all__ = ["FbpTraces", "flowtrace_events"]

#: The row kinds :func:`flowtrace_events` can turn into events.
_DUMPED = ("sent", "output", "failed", "shutdown")
_JSON = msgspec.json.Encoder()


def _iso(ms: float) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000.0, datetime.UTC).isoformat().replace(
        "+00:00", "Z")


def _edge(src: tuple[str, str], tgt: tuple[str, str]) -> str:
    # NoFlo's textual edge id (as reflowpy.server.fbp.edge_id)
    return f"{src[0]}() {src[1].upper()} -> {tgt[1].upper()} {tgt[0]}()"


def flowtrace_events(rows: list[EventRow], graph: str) -> list[dict[str, Any]]:
    """Store rows as flowtrace events."""
    out: list[dict[str, Any]] = []
    for r in rows:
        if r.kind == "sent":
            entry = {"protocol": "network", "command": "data", "payload": {
                "id": _edge((r.node, r.port), (r.peer_node, r.peer_port)), "graph": graph,
                "src": {"node": r.node, "port": r.port},
                "tgt": {"node": r.peer_node, "port": r.peer_port}, "data": r.value}}
        elif r.kind == "output":
            entry = {"protocol": "runtime", "command": "packet", "payload": {
                "port": r.peer_port, "event": "data", "payload": r.value, "graph": graph}}
        elif r.kind == "failed" and not (r.extra or {}).get("willRetry"):
            entry = {"protocol": "network", "command": "processerror", "payload": {
                "id": r.node, "error": r.error, "graph": graph}}
        elif r.kind == "shutdown" and r.error:
            entry = {"protocol": "network", "command": "error", "payload": {
                "message": r.error, "graph": graph}}
        else:
            continue
        entry["time"] = _iso(r.ts)
        out.append(entry)
    return out


class FbpTraces:
    """Store-backed FBP tracing for the graphs of one server (see the module docstring)."""

    def __init__(self, store: Any, nursery: trio.Nursery, *, limit: int = 100_000) -> None:
        self._store = store  # a TraceStore or a callable returning one (opened lazily)
        self.nursery = nursery
        self.limit = limit
        self.tracing: set[str] = set()
        #: ``trace:start``'s ``buffersize`` per graph (bytes a dump may hold).
        self.buffersize: dict[str, int | None] = {}
        self.recorded: dict[str, list[str]] = {}
        self._scopes: dict[str, list[trio.CancelScope]] = {}
        self._recording: set[int] = set()
        self._live: dict[str, list[Recording]] = {}

    @property
    def store(self) -> TraceStore:
        store = self._store() if callable(self._store) else self._store
        return store  # type: ignore[no-any-return]

    def start(self, graph: str, net: Network | None, *, buffersize: int | None = None
              ) -> None:
        """``trace:start``: record ``net`` (if running) and the graph's later networks;
        ``buffersize`` bounds the graph's dumps in bytes (``None``: only ``limit``)."""
        if buffersize is not None and (isinstance(buffersize, bool)
                                       or not isinstance(buffersize, int) or buffersize < 0):
            raise ValueError(f"buffersize must be a number of bytes >= 0, got"
                             f" {buffersize!r:.40}")
        self.tracing.add(graph)
        self.buffersize[graph] = buffersize
        if net is not None and net.state in ("new", "starting", "running"):
            self.network(graph, net)

    def network(self, graph: str, net: Network) -> None:
        """A network of ``graph`` is about to start (or runs): record it if traced."""
        if graph not in self.tracing or id(net) in self._recording:
            return
        self._recording.add(id(net))
        scope = trio.CancelScope()
        self._scopes.setdefault(graph, []).append(scope)

        async def record() -> None:
            try:
                with scope:
                    # its own id: the server records every execution under net.name
                    async with Collector(self.store).record(
                            net, execution_id=f"{net.name}.fbp-{new_execution_id()}",
                            source="fbp") as rec:
                        self.recorded.setdefault(graph, []).append(rec.execution_id)
                        self._live.setdefault(graph, []).append(rec)
                        try:
                            await rec.finished.wait()
                        finally:
                            self._live[graph].remove(rec)
            finally:
                self._recording.discard(id(net))
                if scope in self._scopes.get(graph, []):
                    self._scopes[graph].remove(scope)

        self.nursery.start_soon(record)

    def stop(self, graph: str) -> None:
        """``trace:stop``: end the graph's recordings (what they hold stays)."""
        self.tracing.discard(graph)
        for scope in self._scopes.pop(graph, []):
            scope.cancel()

    async def dump(self, graph: str) -> list[dict[str, Any]]:
        """``trace:dump``: the newest recorded events of ``graph`` that fit the bounds
        (see the module docstring), as flowtrace events, oldest first."""
        for rec in list(self._live.get(graph, [])):
            await rec.sync()  # what the live recordings hold is written first
        ids = list(self.recorded.get(graph, []))
        limit = self.limit
        buffersize = self.buffersize.get(graph)

        def read() -> list[dict[str, Any]]:
            # newest execution first, each read newest first; rows that make no event
            # (a retried failure, a clean shutdown) are skipped, so read on until the
            # bounds are met or the rows run out
            newest: list[dict[str, Any]] = []
            size = 0
            for ex in reversed(ids):
                want = limit - len(newest)
                while True:
                    rows = self.store.events(ex, kinds=_DUMPED, limit=want, newest=True)
                    events = flowtrace_events(rows, graph)  # the newest rows, in order
                    if len(events) >= limit - len(newest) or len(rows) < want:
                        break
                    want *= 2
                for event in reversed(events):
                    if len(newest) >= limit:
                        break
                    if buffersize is not None:
                        size += len(_JSON.encode(event))
                        if size > buffersize:
                            return newest
                    newest.append(event)
                if len(newest) >= limit:
                    break
            return newest

        newest = await trio.to_thread.run_sync(read)
        newest.reverse()
        return newest

    async def clear(self, graph: str) -> None:
        """``trace:clear``: delete what the graph's recordings hold (live recordings go
        on recording from now)."""
        for rec in list(self._live.get(graph, [])):
            await rec.sync()
        live = {rec.execution_id for rec in self._live.get(graph, [])}
        ids = self.recorded.pop(graph, [])
        for ex in ids:
            await trio.to_thread.run_sync(self.store.clear_events, ex)
        self.recorded[graph] = [ex for ex in ids if ex in live]
