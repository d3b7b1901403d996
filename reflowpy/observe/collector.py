"""The trace collector: a network's events -> causality ids -> batches in a trace store.

:meth:`Collector.record` subscribes to a network (before it starts, so it sees
``NetworkStarted``), turns each event into a row with the message's causality id
(:mod:`reflowpy.observe.lineage`) and hands rows in batches to one writer thread, which
encodes each batch as one chunk (:mod:`reflowpy.observe.store`) and writes it in one
transaction. Nothing here can
make the dataflow wait:

* the subscription is bounded (``buffer`` events); when the collector lags, the bus
  drops events for it and counts them;
* the writer's backlog is bounded (``backlog`` batches); a batch that does not fit is
  dropped and counted.

Both counts end up in the execution's ``dropped``, and a drop marks its lineage
``inexact``. Nothing is silently lost from the trace.

**Sampling** (``sample=N``) is decided before the kernel builds any event object: the
collector is subscribed only for bursts of ``burst`` message events, one burst per
``burst * N`` messages the network moves (read from the counters through
:mod:`reflowpy.observe.stats`); between bursts the network runs unobserved, on its fast
paths. Failures between bursts are still recorded, from the dead-letter store. Values
queued when a burst starts are recorded as ``unknown``. Inside a burst the lineage model
can still disagree with the queue depths the kernel reports (seen in W1 bursts, a few
times per run; likely a node part-way through a batch on the unobserved path when the
burst opened): each disagreement is counted and marks the execution ``inexact``.
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
from reflowpy.observe.lineage import Lineage
from reflowpy.observe.store import NOVALUE, ExecutionRecord, TraceStore, new_execution_id

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
        self.thread = threading.Thread(target=self._loop, name="reflowpy-trace-writer",
                                       daemon=True)
        self.thread.start()

    def submit_rows(self, rows: list[tuple[Any, ...]]) -> bool:
        try:
            self.queue.put_nowait(("rows", rows))
            return True
        except queue.Full:
            self.dropped_rows += len(rows)
            return False

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

    def _loop(self) -> None:
        while True:
            op, arg = self.queue.get()
            try:
                if op == "rows":
                    self.store.append(arg, self.limit)
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
        #: Events turned into rows.
        self.events = 0
        self.inexact = False
        #: Times the event stream disagreed with the lineage model (or the model failed
        #: on an event): each marks the lineage inexact.
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
    ``buffer``: events the subscription holds; ``batch``: rows per write;
    ``flush_interval``: seconds a partial batch waits; ``backlog``: batches the writer
    may have queued; ``max_value_bytes``: longest stored message value (JSON).
    """

    def __init__(self, store: TraceStore, *, sample: int = 1, burst: int = 1000,
                 buffer: int = 200_000, batch: int = 2000, flush_interval: float = 0.25,
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
        sink = _RowSink(rec, writer, self.batch)

        async def sync() -> None:
            sink.flush()
            await writer.sync()

        rec._sync = sync
        sub = net.events(self.buffer) if self.sample == 1 else None
        error: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                if sub is not None:
                    # entered while the network already runs (FBP trace:start): what is
                    # queued now has no known origin
                    queued = None if net.state == "new" else {
                        (s.node, p.port): p.queued for s in stats.snapshot(net).values()
                        for p in s.inports}
                    sink.handle = sink.handler(Lineage(stats.firing_rules(net), queued))
                    nursery.start_soon(self._follow, sub, rec, sink)
                else:
                    nursery.start_soon(self._sample, net, rec, sink)
                nursery.start_soon(sink.ticker, self.flush_interval)
                try:
                    yield rec
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    # Events are published synchronously, so whatever the network said
                    # up to now is buffered: take it here instead of waiting for the
                    # follower task (the network may never stop if the body did not).
                    if sub is not None:
                        self._take_buffered(sub, rec, sink)
                    else:
                        sink.dead_letters(net)
                        sink.synthetic("shutdown")
                    nursery.cancel_scope.cancel()
        finally:
            if sub is not None:
                sub.close()
            with trio.CancelScope(shield=True):
                sink.note_lineage()
                if rec.lineage_mismatches:
                    _log.warning("trace %s: the event stream disagreed with the lineage"
                                 " model %d time(s); its lineage is marked inexact",
                                 rec.execution_id, rec.lineage_mismatches)
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

    @staticmethod
    def _drain(sub: ev.EventSubscription, sink: _RowSink) -> bool:
        """Handle what is buffered; True once the network's shutdown was handled."""
        handle = sink.handle
        shutdown = ev.NetworkShutdown
        while True:
            events = sub.take_all()
            if not events:
                return False
            try:
                while events:
                    event = events.popleft()
                    handle(event)
                    if type(event) is shutdown:
                        return True
            finally:
                sub.put_back(events)  # what was not handled stays for the next drain

    @classmethod
    def _take_buffered(cls, sub: ev.EventSubscription, rec: Recording, sink: _RowSink
                       ) -> bool:
        ended = cls._drain(sub, sink)
        rec.bus_dropped = sub.dropped
        if sub.dropped:
            rec.inexact = True
        sink.note_lineage()
        if ended:
            sink.flush()
            rec.finished.set()
        return ended

    async def _follow(self, sub: ev.EventSubscription, rec: Recording, sink: _RowSink
                      ) -> None:
        """Every event, in order, as it comes."""
        while not sub.closed:
            await sub.wait()
            ended = self._take_buffered(sub, rec, sink)
            if ended:
                return

    async def _sample(self, net: Network, rec: Recording, sink: _RowSink) -> None:
        """Burst sampling (see the module docstring) and dead letters between bursts."""
        while net.state in ("new", "starting"):
            await trio.sleep(0.005)
        first_id = 1
        rules = stats.firing_rules(net)
        sink.synthetic("started")
        while net.state == "running":
            queued = {(s.node, p.port): p.queued for s in stats.snapshot(net).values()
                      for p in s.inports}
            lineage = Lineage(rules, queued, first_id)
            sink.handle = sink.handler(lineage)
            rec.bursts += 1
            # about two message events (a send and its receive) per hop
            sub = stats.burst_subscription(net, 2 * self.burst)
            try:
                while True:
                    with trio.move_on_after(0.05):
                        await sub.wait()
                    self._drain(sub, sink)
                    if sub.closed or net.state != "running" or net.is_idle():
                        break
            finally:
                sub.close()
            self._drain(sub, sink)
            rec.bus_dropped += sub.dropped
            if sub.dropped:
                rec.inexact = True
            sink.note_lineage()
            first_id = lineage.next_id
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


class _RowSink:
    """Builds rows on the trio thread and hands full batches to the writer."""

    def __init__(self, rec: Recording, writer: _Writer, batch: int) -> None:
        self.rec = rec
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

    def model_failed(self, event: Any, exc: Exception) -> None:
        """The lineage model raised on ``event`` (a bug, not a lost event): the event is
        still recorded, without lineage, and the trace is marked inexact."""
        if self.rec.lineage_mismatches == 0:
            _log.warning("trace %s: the lineage model failed on %s: %s: %s",
                         self.rec.execution_id, type(event).__name__, type(exc).__name__,
                         exc)
        self.rec.lineage_mismatches += 1
        self.rec.inexact = True

    def flush(self) -> None:
        if self.rows:
            rows, self.rows = self.rows, []
            if not self.writer.submit_rows(rows):
                self.rec.store_dropped += len(rows)
                self.rec.inexact = True

    async def ticker(self, interval: float) -> None:
        while True:
            await trio.sleep(interval)
            self.flush()

    def _add(self, row: tuple[Any, ...]) -> None:
        self.rows.append(row)
        self.rec.events += 1
        if len(self.rows) >= self.batch:
            self.flush()

    def synthetic(self, kind: str) -> None:
        self.seq += 1
        self._add((self.rec.execution_id, self.seq, ev.now_ms(), kind, "", "", "", "",
                   None, None, _NOVALUE, None, None))

    def dead_letters(self, net: Network) -> None:
        """Record the dead letters not recorded yet (burst mode: failures between bursts)."""
        for letter in net.dead_letters():
            if letter.id > self.dead_seen:
                self.seq += 1
                self._add((self.rec.execution_id, self.seq, letter.timestamp * 1000.0, "dead",
                           letter.node, letter.port, "", "", None, None, letter.value,
                           f"{letter.error_type}: {letter.error}",
                           {"letterId": letter.id, "attempts": letter.attempts}))
                self.dead_seen = letter.id

    def handler(self, lin: Lineage) -> Callable[[Any], None]:
        """The per-event function (kept flat: it runs once per traced event)."""
        self.note_lineage()
        self.lineage = lin
        self._counted = lin.mismatches
        ex = self.rec.execution_id
        add = self._add
        sent, received = lin.sent, lin.received
        failed = self.model_failed

        def handle(e: Any) -> None:
            t = type(e)
            self.seq += 1
            seq = self.seq
            if t is ev.MessageSent:
                try:
                    msg, causes = sent(e.from_actor, e.to_actor, e.to_port, e.queue_depth)
                except Exception as exc:
                    failed(e, exc)
                    msg, causes = None, None
                add((ex, seq, e.timestamp, "sent" if e.to_actor else "output", e.from_actor,
                     e.from_port, e.to_actor, e.to_port, msg, causes, e.message, None, None))
            elif t is ev.MessageReceived:
                # A receive of a sent message only moves the lineage model (the send's
                # row already holds the message); values that came from outside are
                # the roots of lineage and get a row.
                try:
                    msg, kind = received(e.actor_id, e.port, e.queue_depth)
                except Exception as exc:
                    failed(e, exc)
                    msg, kind = None, "unknown"
                if kind != "recv":
                    add((ex, seq, e.timestamp, kind, e.actor_id, e.port, "", "", msg, None,
                         e.message, None, None))
            elif t is ev.ActorFailed:
                msgs = lin.failed(e.actor_id)
                add((ex, seq, e.timestamp, "failed", e.actor_id, e.port or "", "", "",
                     msgs[-1] if msgs else None, msgs, _NOVALUE, f"{e.error_type}: {e.error}",
                     {"attempt": e.attempt, "willRetry": e.will_retry,
                      "durationMs": e.duration_ms, "component": e.component}))
            elif t is ev.DeadLettered:
                msgs, why = lin.dead_lettered(e.actor_id, e.port)
                self.dead_seen = max(self.dead_seen, e.letter_id)
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

        return handle


_LIFECYCLE: dict[type, str] = {
    ev.NetworkStarted: "started",
    ev.ActorStarted: "actor_started",
    ev.ActorCompleted: "actor_completed",
    ev.NetworkIdle: "idle",
    ev.NetworkShutdown: "shutdown",
}
