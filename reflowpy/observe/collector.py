"""The trace collector: a network's events -> the raw hop stream -> a trace store.

:meth:`Collector.record` taps a network's event bus (before it starts, so it sees
``NetworkStarted``) with a :class:`~reflowpy.observe.hops.HopTap`, called by the kernel
as each message enters or leaves a queue with the raw values (no event struct is built
for it). The tap appends four slots per hop to a list and nothing else; message ids
and causes are derived when the trace is read (:mod:`reflowpy.observe.hops`, layout 3
of :mod:`reflowpy.observe.store`). Each full batch of records is encoded as one chunk
at once and handed to one writer thread, which writes every chunk queued when it wakes
in one transaction. Nothing here can make the dataflow wait: the writer's backlog is
bounded (``backlog`` batches); a batch that does not fit is dropped and counted in the
execution's ``dropped``, and a drop marks its lineage ``inexact``. Nothing is silently
lost from the trace. Events posted by other processes (:mod:`reflowpy.observe.ingest`)
are turned into rows with their lineage at once (:class:`_RowSink`, :class:`_TraceTap`,
the same row code a replay runs).

**Sampling** (``sample=N``) is decided before the kernel builds any event object: the
collector taps the bus only for bursts of ``burst`` hops, one burst per
``burst * N`` messages the network moves (read from the counters through
:mod:`reflowpy.observe.stats`); between bursts the network runs unobserved, on its fast
paths. Failures between bursts are still recorded, from the dead-letter store. Values
queued when a burst starts are recorded as ``unknown``: each burst starts with a model
record (the queue depths then, and a first message id past any the bursts before could
have given). A node part-way through a batch when a burst opens announces its messages
from the next one on (a plain-``def`` node after its next wait); should the replayed
model still disagree with the queue depths the kernel reported, the execution reads as
``inexact``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio

from reflowpy.network import events as ev
from reflowpy.observe import stats
from reflowpy.observe.hops import MODEL, ROW, HopTap
from reflowpy.observe.lineage import Lineage
from reflowpy.observe.store import (
    NOVALUE,
    ExecutionRecord,
    TraceStore,
    encode_chunks,
    encode_hops,
    new_execution_id,
)

if TYPE_CHECKING:
    from reflowpy.network.network import Network

__all__ = ["Collector", "Recording"]

_log = logging.getLogger("reflowpy.observe")
_NOVALUE: Any = NOVALUE
#: Seconds between the burst sampler's looks at the counters: busy, and at most (idle).
_POLL = (0.01, 0.5)


class _Writer:
    """One thread that owns the store's writes; fed through a bounded queue."""

    def __init__(self, store: TraceStore, backlog: int, max_value_bytes: int) -> None:
        self.store = store
        self.limit = max_value_bytes
        self.queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=backlog)
        self.dropped_rows = 0
        self.error: BaseException | None = None
        self.pending: tuple[str, Any] | None = None
        self.thread = threading.Thread(target=self._loop, name="reflowpy-trace-writer",
                                       daemon=True)
        self.thread.start()

    def submit_rows(self, rows: list[tuple[Any, ...]]) -> bool:
        """Encode ``rows`` (here, on the caller's thread) and queue the chunks; False if
        the backlog is full (the rows are dropped and counted).

        Encoding here rather than in the writer costs the same CPU, but the rows (many
        small objects the garbage collector would scan while they wait) die at once and
        the backlog holds bytes; a writer thread that must win the interpreter lock from
        the busy trio thread for every step would otherwise fall behind."""
        if self.queue.full():
            self.dropped_rows += len(rows)
            return False
        chunks = self._encode(rows)
        try:
            self.queue.put_nowait(("chunks", chunks))
            return True
        except queue.Full:
            self.dropped_rows += len(rows)
            return False

    def submit_hops(self, execution: str, first_seq: int, ports: list[Any],
                    buf: list[Any], specials: list[int], n: int) -> bool:
        """:meth:`submit_rows` for raw hop records (:mod:`reflowpy.observe.hops`) that
        take ``n`` seqs."""
        if self.queue.full():
            self.dropped_rows += n
            return False
        try:
            chunk = encode_hops(execution, first_seq, ports, buf, specials, self.limit)
        except Exception as exc:  # kept and raised by close(), as a failed write is
            if self.error is None:
                self.error = exc
            return True
        try:
            self.queue.put_nowait(("chunks", [chunk]))
            return True
        except queue.Full:
            self.dropped_rows += n
            return False

    def _encode(self, rows: list[tuple[Any, ...]]) -> list[Any]:
        try:
            return encode_chunks(rows, self.limit)
        except Exception as exc:  # kept and raised by close(), as a failed write is
            if self.error is None:
                self.error = exc
            return []

    def submit(self, op: str, arg: Any) -> None:
        """Control operations (begin, finish, sync) wait for room: they are rare."""
        self.queue.put((op, arg))

    async def sync(self) -> None:
        done = threading.Event()
        await trio.to_thread.run_sync(self.submit, "sync", done)
        await trio.to_thread.run_sync(done.wait)

    async def close(self) -> None:
        await trio.to_thread.run_sync(self.submit, "stop", None)
        await trio.to_thread.run_sync(self.thread.join)
        if self.error is not None:
            raise self.error

    def _next(self) -> tuple[str, Any]:
        """The next operation; every batch already queued joins one ``chunks``
        operation, written in one transaction. Each SQL call lets go of the interpreter
        lock, and the writer gets it back from a busy trio thread only at a switch
        interval (a few ms): one batch per wake would fall behind."""
        op, arg = self.pending if self.pending is not None else self.queue.get()
        self.pending = None
        if op not in ("rows", "chunks"):
            return op, arg
        chunks = list(arg) if op == "chunks" else self._encode(arg)
        while True:
            try:
                nop, narg = self.queue.get_nowait()
            except queue.Empty:
                break
            if nop == "chunks":
                chunks.extend(narg)
            elif nop == "rows":
                chunks.extend(self._encode(narg))
            else:
                self.pending = (nop, narg)
                break
        return "chunks", chunks

    def _loop(self) -> None:
        while True:
            op, arg = self._next()
            try:
                if op == "chunks":
                    self.store.write_chunks(arg)
                elif op == "begin":
                    self.store.begin(arg)
                elif op == "finish":
                    self.store.finish(**arg)
                    self.store.enforce_retention()
                elif op == "sync":
                    arg.set()
                elif op == "stop":
                    return
            except Exception as exc:  # keep the first error; the recording reports it
                if self.error is None:
                    self.error = exc
                if op == "sync":
                    arg.set()


class Recording:
    """What :meth:`Collector.record` yields: the execution id and live counters."""

    def __init__(self, execution_id: str, sample: int) -> None:
        self.execution_id = execution_id
        self.sample = sample
        #: Events the bus dropped for the collector (it lagged behind).
        self.bus_dropped = 0
        #: Rows the writer could not take (its backlog was full).
        self.store_dropped = 0
        #: Events recorded (hop records for a recording: a send and a receive are two;
        #: rows for posted events).
        self.events = 0
        self.inexact = False
        #: Times posted events disagreed with the lineage model (or the model failed on
        #: one): each marks the lineage inexact. A recording's lineage is derived when
        #: it is read (the store's execution record says whether it was exact).
        self.lineage_mismatches = 0
        self.bursts = 0
        #: Set when the network's shutdown has been recorded.
        self.finished = trio.Event()
        self._sync: Callable[[], Awaitable[None]] | None = None

    async def sync(self) -> None:
        """Write everything recorded so far to the store before returning."""
        if self._sync is not None:
            await self._sync()

    @property
    def dropped(self) -> int:
        """Everything lost from this trace, counted."""
        return self.bus_dropped + self.store_dropped


class Collector:
    """Records networks into a :class:`~reflowpy.observe.store.TraceStore`.

    ``sample``: trace 1 in ``sample`` messages (1: every message, from the start), in
    bursts of ``burst`` hops (a value taken into an in-port);
    ``buffer``: unused (the collector used to be a subscription of that size; it now
    taps the bus and cannot lag behind it), kept so existing callers work;
    ``batch``: records per write (large: the writer thread wins the interpreter lock
    from a busy network only now and then, and each chunk it writes costs it several
    such waits; the buffer holds each value it records until the next write, at most
    ``flush_interval`` seconds);
    ``flush_interval``: seconds a partial batch waits; ``backlog``: batches the writer
    may have queued; ``max_value_bytes``: longest stored message value (JSON).
    """

    def __init__(self, store: TraceStore, *, sample: int = 1, burst: int = 1000,
                 buffer: int = 200_000, batch: int = 32_000, flush_interval: float = 0.25,
                 backlog: int = 256, max_value_bytes: int = 4096) -> None:
        if sample < 1:
            raise ValueError(f"sample must be >= 1 (trace 1 in N messages), got {sample}")
        if burst < 1 or buffer < 1 or batch < 1 or backlog < 1:
            raise ValueError("burst, buffer, batch and backlog must be >= 1")
        self.store = store
        self.sample = sample
        self.burst = burst
        self.buffer = buffer
        self.batch = batch
        self.flush_interval = flush_interval
        self.backlog = backlog
        self.max_value_bytes = max_value_bytes

    @asynccontextmanager
    async def record(self, net: Network, *, execution_id: str | None = None,
                     source: str = "run") -> AsyncIterator[Recording]:
        """Record ``net`` while the block runs. Enter it before the network starts to see
        everything (entered later, values already queued are recorded as ``unknown``).
        The recording ends with the block; stopping the network inside the block records
        its shutdown. ``rec.finished`` is set once the network's shutdown was recorded."""
        rec = Recording(execution_id or new_execution_id(), self.sample)
        try:
            graph_json: str | None = net.graph.dumps("reflow")
        except Exception:  # a graph that cannot be written still runs and is traced
            graph_json = None
        writer = _Writer(self.store, self.backlog, self.max_value_bytes)
        writer.submit("begin", ExecutionRecord(
            id=rec.execution_id, graph=net.graph.name or net.name, started=time.time() * 1000,
            source=source, sample=self.sample, graph_json=graph_json))
        sink = _HopSink(rec, writer, self.batch, net.bus)

        async def sync() -> None:
            sink.flush()
            await writer.sync()

        rec._sync = sync
        whole = self.sample == 1
        error: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                if whole:
                    # entered while the network already runs (FBP trace:start): what is
                    # queued now has no known origin
                    queued = None if net.state == "new" else stats.snapshot(net)
                    sink.model(stats.firing_rules(net), queued, 1)
                    sink.whole = True
                    net.bus.tap(sink.tap)
                else:
                    nursery.start_soon(self._sample, net, rec, sink)
                nursery.start_soon(sink.ticker, self.flush_interval)
                try:
                    yield rec
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    # The tap is called synchronously: whatever the network did up to
                    # now is recorded (the network may never stop if the body did not).
                    if not whole:
                        sink.end_burst()
                        sink.dead_letters(net)
                        sink.synthetic("shutdown")
                    nursery.cancel_scope.cancel()
        finally:
            net.bus.untap(sink.tap)
            with trio.CancelScope(shield=True):
                sink.flush()
                err = net.error if net.error is not None else error
                status = ("failed" if err is not None
                          else "dead_letters" if net.dead_letters()
                          else "completed" if net.state == "stopped" else net.state)
                rec.store_dropped = writer.dropped_rows
                rec._sync = None  # the writer is closing: nothing more to wait for
                writer.submit("finish", {
                    "execution": rec.execution_id, "status": status,
                    "dropped": rec.dropped, "inexact": rec.inexact or rec.dropped > 0,
                    "error": None if err is None else f"{type(err).__name__}: {err}"})
                await writer.close()

    async def _sample(self, net: Network, rec: Recording, sink: _HopSink) -> None:
        """Burst sampling (see the module docstring) and dead letters between bursts."""
        while net.state in ("new", "starting"):
            await trio.sleep(0.005)
        first_id = 1
        rules = stats.firing_rules(net)
        sink.synthetic("started")
        while net.state == "running":
            # the model of this burst starts after the ids the last one could have
            # given: one per record (a replay gives at most one id per record)
            first_id += sink.burst_records
            sink.model(rules, stats.snapshot(net), first_id)
            rec.bursts += 1
            # about two message calls (a send and its receive) per hop
            done = sink.start_burst(2 * self.burst)
            try:
                while not done.is_set():
                    with trio.move_on_after(0.05):
                        await done.wait()
                    if net.state != "running" or net.is_idle():
                        break
            finally:
                sink.end_burst()
            sink.dead_letters(net)
            moved = stats.messages_moved(net)
            target = moved + self.burst * (self.sample - 1)
            delay = _POLL[0]
            while net.state == "running" and moved < target:
                await trio.sleep(delay)
                sink.dead_letters(net)
                now = stats.messages_moved(net)
                # a quiet network is polled less and less often (a server may host
                # many idle ones)
                delay = _POLL[0] if now != moved else min(delay * 2, _POLL[1])
                moved = now
        rec.finished.set()


class _HopSink:
    """Owns a recording's :class:`~reflowpy.observe.hops.HopTap` (tapped on ``bus`` for
    the whole recording, or for each sampling burst) and hands its records to the
    writer: when ``batch`` records are buffered (in the kernel's call), on each tick
    and at the end. Each record takes a seq, as each row did (model records none)."""

    def __init__(self, rec: Recording, writer: _Writer, batch: int, bus: ev.EventBus
                 ) -> None:
        self.rec = rec
        self.writer = writer
        self.bus = bus
        self.slots = 4 * batch
        self.ports: list[Any] = []
        self.tap = HopTap(self.ports, self._full, self.slots)
        self.tap.watch = self._watch
        #: Whether the tap records the whole network's life (not sampling bursts).
        self.whole = False
        self.seq = 1  # of the first buffered record
        self.models = 0  # model records buffered
        self.dead_seen = 0
        #: Records of the current burst so far (of the last one, after it).
        self.burst_records = 0
        self._burst: trio.Event | None = None
        self._burst_left = 0
        self._mark = 0  # slots of the buffer already counted for the burst

    def _account(self) -> None:
        # count the burst's records buffered since the last look
        n = (len(self.tap.buf) - self._mark) // 4
        self._mark = len(self.tap.buf)
        self.burst_records += n
        self._burst_left -= n

    def _full(self) -> None:
        # the tap's buffer reached its limit: the batch is full, or the burst is over
        if self._burst is not None:
            self._account()
            if self._burst_left <= 0:
                self.end_burst()
        if len(self.tap.buf) >= self.slots:
            self.flush()
        self._limit()

    def _limit(self) -> None:
        tap = self.tap
        tap.limit = self.slots if self._burst is None else min(
            self.slots, len(tap.buf) + 4 * max(self._burst_left, 1))

    def start_burst(self, records: int) -> trio.Event:
        """Tap the bus for ``records`` records; the event is set when they are in."""
        self._burst = done = trio.Event()
        self._burst_left = records
        self.burst_records = 0
        self._mark = len(self.tap.buf)
        self._limit()
        self.bus.tap(self.tap)
        return done

    def end_burst(self) -> None:
        """Untap (safe inside the tap's own call, and twice)."""
        if self._burst is not None:
            self._account()
            self.bus.untap(self.tap)
            self._burst.set()
            self._burst = None
            self._limit()

    def flush(self) -> None:
        tap = self.tap
        buf = tap.buf
        if len(buf) <= 4 * self.models:  # nothing that takes a seq: it joins the next
            return
        if self._burst is not None:
            self._account()
        specials = tap.specials
        tap.buf = []
        tap.specials = []
        self._mark = 0
        n = len(buf) // 4 - self.models
        self.models = 0
        rec = self.rec
        rec.events += n
        if not self.writer.submit_hops(rec.execution_id, self.seq, self.ports, buf,
                                       specials, n):
            rec.store_dropped += n
            rec.inexact = True
        self.seq += n

    async def ticker(self, interval: float) -> None:
        while True:
            await trio.sleep(interval)
            self.flush()

    def model(self, rules: dict[str, str], snapshot: dict[str, Any] | None,
              first_id: int) -> None:
        """A lineage model starts here (``snapshot``: the network's statistics when it
        starts mid-stream, None when it sees the network from its start)."""
        queued = None if snapshot is None else [
            (s.node, p.port, p.queued) for s in snapshot.values() for p in s.inports
            if p.queued]
        self.models += 1
        self.tap.special(MODEL, (rules, queued, first_id), None)

    def _watch(self, e: Any) -> None:
        t = type(e)
        if t is ev.DeadLettered:
            self.dead_seen = max(self.dead_seen, e.letter_id)
        elif t is ev.NetworkShutdown and self.whole:  # the recording ends here
            self.flush()
            self.rec.finished.set()

    def synthetic(self, kind: str) -> None:
        self.tap.special(ROW, (ev.now_ms(), kind, "", "", "", "", None, None, _NOVALUE,
                               None, None), None)

    def dead_letters(self, net: Network) -> None:
        """Record the dead letters not recorded yet (burst mode: failures between bursts)."""
        for letter in net.dead_letters():
            if letter.id > self.dead_seen:
                self.tap.special(ROW, (
                    letter.timestamp * 1000.0, "dead", letter.node, letter.port, "", "",
                    None, None, letter.value, f"{letter.error_type}: {letter.error}",
                    {"letterId": letter.id, "attempts": letter.attempts}), None)
                self.dead_seen = letter.id


class _RowSink:
    """Builds rows on the trio thread and hands full batches to the writer."""

    def __init__(self, rec: Recording, writer: _Writer, batch: int) -> None:
        self.rec = rec
        self.ex = rec.execution_id
        self.writer = writer
        self.batch = batch
        self.rows: list[tuple[Any, ...]] = []
        self.seq = 0
        self.dead_seen = 0
        self.lineage: Lineage | None = None
        #: Mismatches of the lineage models already added to ``rec.lineage_mismatches``.
        self._counted = 0
        self.handle: Callable[[Any], None] = lambda e: None

    def note_lineage(self) -> None:
        """Carry the current lineage model's disagreements over to the recording."""
        lin = self.lineage
        if lin is not None and lin.mismatches > self._counted:
            self.rec.lineage_mismatches += lin.mismatches - self._counted
            self._counted = lin.mismatches
        if lin is not None and lin.inexact:
            self.rec.inexact = True

    def model_failed(self, what: str, exc: Exception) -> None:
        """The lineage model raised on a ``what`` event (a bug, not a lost event): the
        event is still recorded, without lineage, and the trace is marked inexact."""
        if self.rec.lineage_mismatches == 0:
            _log.warning("trace %s: the lineage model failed on %s: %s: %s",
                         self.rec.execution_id, what, type(exc).__name__, exc)
        self.rec.lineage_mismatches += 1
        self.rec.inexact = True

    def flush(self) -> None:
        if self.rows:
            rows, self.rows = self.rows, []
            self.rec.events += len(rows)
            if not self.writer.submit_rows(rows):
                self.rec.store_dropped += len(rows)
                self.rec.inexact = True

    def _add(self, row: tuple[Any, ...]) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.batch:
            self.flush()

    def attach(self, lin: Lineage) -> None:
        """Record with the lineage model ``lin`` from now on."""
        self.note_lineage()
        self.lineage = lin
        self._counted = lin.mismatches

    def handler(self, lin: Lineage) -> Callable[[Any], None]:
        """A function taking events (structs, as posted to ``/events``) into rows."""
        return _TraceTap(self, lin).any_event


_time = time.time


class _TraceTap:
    """The rows of one lineage model: :meth:`any_event` for event structs (posted
    events), ``sent_row``/``received_row``/``event`` for a replay of hop records
    (:mod:`reflowpy.observe.hops`), and the bus's
    :class:`~reflowpy.network.events.MessageTap` (raw calls from the kernel, on ``bus``:
    lineage assigned as each hop happens, the per-hop path the hop stream replaced, kept
    as its reference in the tests). Each port the kernel names is resolved once
    (``_ports``: the port object -> its model queue and names)."""

    __slots__ = ("_bus", "_last", "_pending", "_ports", "done", "lin", "sink")

    def __init__(self, sink: _RowSink, lin: Lineage, *, bus: ev.EventBus | None = None
                 ) -> None:
        sink.attach(lin)
        self.sink = sink
        self.lin = lin
        self._bus = bus
        self._ports: dict[Any, tuple[Any, str, str, bool]] = {}
        # the model's own tables (never replaced): the fast path below reads them
        self._pending = lin._pending
        self._last = lin._last
        self.done = trio.Event()

    def _port(self, port: Any) -> tuple[Any, str, str, bool]:
        # (model queue or None for an exported out-port's sink, node, port name, whether
        # the node fires per message)
        node = port.node if port.runner is not None else ""
        entry = (self.lin.queue(node, port.name) if node else None, node, port.name,
                 self.lin.rule(node) == "message")
        self._ports[port] = entry
        return entry

    # MessageTap: the kernel's calls. The common case (the model agrees with the
    # reported depth; a node that fires per message) is Lineage.sent_to/received_from
    # inlined; everything else is left to them.

    def sent(self, out: Any, target: Any, value: Any, depth: int) -> None:
        entry = self._ports.get(target)
        if entry is None:
            entry = self._port(target)
        q, to_node, to_port, _ = entry
        node = out.node
        sink = self.sink
        seq = sink.seq = sink.seq + 1
        try:
            pending = self._pending.get(node)
            if (q is None or len(q) == depth - 1) and (
                    type(pending) is list or (pending is None and node in self._last)):
                lin = self.lin
                if pending is None:
                    causes = self._last[node]
                else:
                    del self._pending[node]
                    causes = self._last[node] = pending
                msg: int | None = lin._next
                lin._next = msg + 1  # type: ignore[operator]
                if q is not None:
                    q.append(msg)
            else:
                msg, causes = self.lin.sent_to(node, q, depth)
        except Exception as exc:
            sink.model_failed("MessageSent", exc)
            msg, causes = None, None
        rows = sink.rows
        rows.append((sink.ex, seq, _time() * 1000.0, "sent" if to_node else "output", node,
                     out.name, to_node, to_port, msg, causes, value, None, None))
        if len(rows) >= sink.batch:
            sink.flush()

    def received(self, port: Any, value: Any, depth: int) -> None:
        entry = self._ports.get(port)
        if entry is None:
            entry = self._port(port)
        q, node, name, per_message = entry
        sink = self.sink
        seq = sink.seq = sink.seq + 1
        try:
            if per_message and q and q[0] >= 0 and len(q) <= depth + 1 \
                    and not self.lin._failing:
                self._pending[node] = [q.popleft()]
                return  # a sent message arrived: the send's row holds it
            msg, kind = self.lin.received_from(node, name, q, depth)
        except Exception as exc:
            sink.model_failed("MessageReceived", exc)
            msg, kind = None, "unknown"
        if kind != "recv":  # see received_row
            sink._add((sink.ex, seq, _time() * 1000.0, kind, node, name, "", "", msg, None,
                       value, None, None))

    # the rows

    def sent_row(self, node: str, port: str, to_node: str, to_port: str, value: Any,
                 depth: int, ts: float) -> None:
        sink = self.sink
        sink.seq += 1
        try:
            msg, causes = self.lin.sent(node, to_node, to_port, depth)
        except Exception as exc:
            sink.model_failed("MessageSent", exc)
            msg, causes = None, None
        sink._add((sink.ex, sink.seq, ts, "sent" if to_node else "output", node, port,
                   to_node, to_port, msg, causes, value, None, None))

    def received_row(self, node: str, port: str, value: Any, depth: int, ts: float
                     ) -> None:
        # A receive of a sent message only moves the lineage model (the send's row
        # already holds the message); values that came from outside are the roots of
        # lineage and get a row.
        sink = self.sink
        sink.seq += 1
        try:
            msg, kind = self.lin.received(node, port, depth)
        except Exception as exc:
            sink.model_failed("MessageReceived", exc)
            msg, kind = None, "unknown"
        if kind != "recv":
            sink._add((sink.ex, sink.seq, ts, kind, node, port, "", "", msg, None, value,
                       None, None))

    def any_event(self, e: Any) -> None:
        """One event struct (posted events, or the tap's ``event``)."""
        t = type(e)
        if t is ev.MessageSent:
            self.sent_row(e.from_actor, e.from_port, e.to_actor, e.to_port, e.message,
                          e.queue_depth, e.timestamp)
        elif t is ev.MessageReceived:
            self.received_row(e.actor_id, e.port, e.message, e.queue_depth, e.timestamp)
        else:
            self.event(e)

    def event(self, e: Any) -> None:
        """Every event but the per-message ones (MessageTap.event)."""
        sink, lin = self.sink, self.lin
        t = type(e)
        sink.seq += 1
        ex, seq, add = sink.ex, sink.seq, sink._add
        if t is ev.ActorFailed:
            msgs = lin.failed(e.actor_id)
            add((ex, seq, e.timestamp, "failed", e.actor_id, e.port or "", "", "",
                 msgs[-1] if msgs else None, msgs, _NOVALUE, f"{e.error_type}: {e.error}",
                 {"attempt": e.attempt, "willRetry": e.will_retry,
                  "durationMs": e.duration_ms, "component": e.component}))
        elif t is ev.DeadLettered:
            msgs, why = lin.dead_lettered(e.actor_id, e.port)
            sink.dead_seen = max(sink.dead_seen, e.letter_id)
            add((ex, seq, e.timestamp, "dead", e.actor_id, e.port, "", "",
                 msgs[-1] if msgs else None, msgs, _NOVALUE, e.error,
                 {"letterId": e.letter_id, "reason": why}))
        else:
            extra: dict[str, Any] | None = None
            error = None
            if t is ev.NetworkShutdown:
                extra = {"forced": e.forced}
                error = e.error
            elif t is ev.ActorCompleted:
                extra = {"activations": e.activations}
            elif t is ev.ActorStarted:
                extra = {"component": e.component}
            add((ex, seq, e.timestamp, _LIFECYCLE.get(t, "event"),
                 getattr(e, "actor_id", ""), "", "", "", None, None, _NOVALUE, error,
                 extra))
            if t is ev.NetworkShutdown and type(self) is _TraceTap and self._bus is not None:
                # the whole recording's tap: the recording ends here
                sink.note_lineage()
                sink.flush()
                sink.rec.finished.set()


_LIFECYCLE: dict[type, str] = {
    ev.NetworkStarted: "started",
    ev.ActorStarted: "actor_started",
    ev.ActorCompleted: "actor_completed",
    ev.NetworkIdle: "idle",
    ev.NetworkShutdown: "shutdown",
}
