"""Hosting running networks: executions, their inputs and outputs, their lifecycle.

An :class:`Execution` is one graph running as a :class:`~reflowpy.Network` inside the
server's own trio nursery, for as long as it should: until it is stopped (a service),
or until it first becomes idle after its inputs were delivered (a batch job, policy
``until: "idle"``). With policy ``restart: "always"`` a network that fails is started
again (with a fresh network: fresh actor state), and the execution is resumed when the
server restarts.

The :class:`ExecutionManager` owns every execution and keeps it **durable**
(executions started with ``persist=True``, i.e. every REST and Reflow one):

* every input accepted for an execution — its creation ``inputs`` and every later
  ``POST .../inputs/{port}`` — is written to the store's journal *before* it is
  acknowledged, under a per-execution lock, so journal order is delivery order;
* a **checkpoint** is taken whenever the network is idle after new input: one
  transaction stores the values that left the exported out-ports since the last one
  and the journal position up to which everything was processed. A network that
  stays busy for ``checkpoint_interval`` seconds (a steady input stream never lets it
  go idle) is *quiesced*: new inputs wait (the input lock is held; their clients see
  backpressure) until what is in flight has drained and the checkpoint is taken, at
  most ``quiesce_timeout`` seconds; so a restart replays at most about
  ``checkpoint_interval`` seconds of input. A network busy on its own (an internal
  source) cannot drain: that is logged as a warning naming the execution, counted in
  ``checkpoint_stalls``, and retried with a doubling interval (a restart then
  replays everything since its last idle moment);
* a restart (of the process, or of a failed network) starts a fresh network, which
  gets its IIPs again (they are the graph's configuration), the stored outputs back
  in its buffers, and the journal entries after the checkpoint, in order.

**Dedup rule** (at-least-once): an input acknowledged but not yet covered by a
checkpoint when the process died is processed again after the restart. Its outputs
were not stored, so a deterministic graph produces the same values at the same output
cursors: a reader that keeps its cursor sees each value once. Side effects outside the
server (files, HTTP calls) may happen twice; make them idempotent.

Executions that ended stay ended: ``finished`` (with its outputs), ``stopped``,
``failed``; a ``restart: never`` execution that was running when the process died is
``interrupted`` after the restart and is not run again. Ended executions keep their
outputs in the store only (memory holds none of their values) and are evicted by the
retention settings (``retention_count`` newest ended ones, none older than
``retention_seconds``), or deleted with ``DELETE /executions/{id}``.

Nothing here uses threads: every network, pump and waiter is a task of the server's
nursery, so a request handler and the networks share one trio run.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import msgspec
import trio

from reflowpy.errors import NetworkError, ReflowError
from reflowpy.network.graph import Graph, GraphEvent
from reflowpy.network.network import Network
from reflowpy.network.registry import Registry
from reflowpy.server.schemas import ExecutionPolicy
from reflowpy.server.storage import ExecutionRecord, Storage

__all__ = ["Execution", "ExecutionManager", "OutputBuffer"]

_log = logging.getLogger("reflowpy.server")

#: Seconds between restarts of a failing ``restart: always`` execution (doubling, capped).
_RESTART_BACKOFF = (0.1, 5.0)
#: Statuses of an execution that is over ...
ENDED = frozenset({"finished", "stopped", "failed", "interrupted"})
#: ... and of one that is never run again (``interrupted`` restart-always ones resume).
FINAL = frozenset({"finished", "stopped", "failed"})

StoreReader = Callable[[int, int], list[tuple[int, Any]]]


class OutputBuffer:
    """The values that left one exported out-port, addressed by an absolute cursor.

    Holds at most ``size`` values in memory; older ones are dropped from memory.
    ``read(after)`` returns the values with index >= ``after``; ``wait(after)`` blocks
    until such a value exists or the buffer is closed. For a persisted execution the
    buffer is backed by the store (``store``): values older than what memory holds
    are read from there, and once the execution ended :meth:`release` frees the
    memory altogether. ``dropped`` counts the values no longer available anywhere.
    """

    def __init__(self, port: str, size: int, first: int = 0,
                 store: StoreReader | None = None) -> None:
        self.port = port
        self.size = size
        self._values: deque[Any] = deque()
        self._first = first  # absolute index of _values[0]
        self._end = first
        self._changed = trio.Event()
        self.closed = False
        #: Values before this index are in the store.
        self.persisted = first
        #: Oldest index the store holds (set by the manager after a checkpoint).
        self.stored_first = 0 if store is not None else first
        self._store = store
        self._released = False

    @property
    def end(self) -> int:
        """The cursor just past the newest value."""
        return self._end

    @property
    def dropped(self) -> int:
        """How many values are gone (before the oldest one kept in memory or store)."""
        if self._store is None:
            return self._first
        return min(self._first, self.stored_first) if self.persisted else self._first

    def append(self, value: Any) -> None:
        """Add a value, evicting the oldest beyond ``size`` from memory."""
        self._values.append(value)
        self._end += 1
        if len(self._values) > self.size:
            self._values.popleft()
            self._first += 1
        self._changed.set()
        self._changed = trio.Event()

    def unpersisted(self) -> tuple[int, list[Any]]:
        """``(first index, values)`` of what is in memory but not yet stored."""
        start = max(self.persisted, self._first)
        offset = start - self._first
        return start, [self._values[i] for i in range(offset, len(self._values))]

    def close(self) -> None:
        """No more values will come; wakes every waiter."""
        self.closed = True
        self._changed.set()

    def release(self) -> None:
        """Free the values kept in memory (all of them are stored)."""
        if self._store is not None:
            self._values.clear()
            self._first = self._end
            self._released = True

    def read(self, after: int, limit: int = 10_000) -> tuple[list[Any], int]:
        """Values from cursor ``after`` (clamped to the oldest kept), and the next cursor."""
        start = max(after, self.dropped)
        if self._store is not None and start < self._first:
            rows = self._store(start, min(limit, self._first - start))
            if rows:
                return [v for _, v in rows], rows[-1][0] + 1
            start = self._first
        offset = start - self._first
        values = [self._values[i] for i in range(offset, min(len(self._values),
                                                              offset + limit))]
        return values, start + len(values)

    async def wait(self, after: int) -> None:
        """Return once a value at or after ``after`` exists, or the buffer is closed."""
        while self.end <= after and not self.closed:
            await self._changed.wait()


class Execution:
    """One hosted network and what the server knows about it."""

    def __init__(
        self,
        execution_id: str,
        graph: Graph,
        *,
        graph_id: str | None,
        inputs: Mapping[str, list[Any]],
        policy: ExecutionPolicy,
        persist: bool = False,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        self.id = execution_id
        self.graph = graph
        self.graph_id = graph_id
        self.inputs = {k: list(v) for k, v in inputs.items()}
        self.policy = policy
        self.persist = persist
        #: The server's notes (e.g. ``workflow_id`` of a Reflow execution); stored.
        self.meta: dict[str, Any] = dict(meta or {})
        self.status = "starting"
        self.error = ""
        self.created = time.time()
        self.restarts = 0
        #: Wall-clock time the execution ended (``None`` while it runs).
        self.ended: float | None = None
        self.net: Network | None = None
        self.outputs: dict[str, OutputBuffer] = {}
        #: Called with each new Network before it starts (subscribe to its events here).
        self.on_network: list[Callable[[Network], None]] = []
        #: Called synchronously with ``(port, value)`` for every value leaving the graph.
        self.on_output: list[Callable[[str, Any], None]] = []
        #: Called when the execution is finally over (stopped, finished or failed).
        self.on_done: list[Callable[[Execution], None]] = []
        self.done = trio.Event()
        self.network_changed = trio.Event()
        self._stop_mode: str | None = None
        #: Whether how it ended is stored (a finished batch: before 'finished' shows).
        self._end_stored = False
        #: Set when a client (not the server shutting down) stopped it.
        self.user_stopped = False
        self._stop_requested = trio.Event()
        #: The scope a batch waits for idle in (a stop request cancels it).
        self._idle_scope: trio.CancelScope | None = None
        #: A network already built (by the acceptance check) for the first run.
        self.prebuilt: Network | None = None
        self._started_at: float | None = None
        #: Uptime of the last network, kept once it is down (``network:stopped``).
        self.last_uptime = 0.0
        self._nursery: trio.Nursery | None = None
        self._ready = trio.Event()
        self._start_error: BaseException | None = None
        #: Journal positions: last accepted, last delivered into the network, last
        #: covered by a checkpoint.
        self.seq = 0
        self.sent = 0
        self.processed = 0
        self._input_lock = trio.Lock()
        self._dirty = trio.Event()
        #: Checkpoints taken while running, and quiesce attempts that timed out.
        self.checkpoints = 0
        self.checkpoint_stalls = 0
        #: For a persisted execution: the store reader of one out-port's values.
        self.store_reader: Callable[[str], StoreReader] | None = None
        self._first_pending: list[tuple[int, str, Any]] | None = None

    @property
    def uptime(self) -> float:
        """Seconds since the current network started (0 when none runs)."""
        if self._started_at is None or self.done.is_set():
            return 0.0
        return time.monotonic() - self._started_at

    @property
    def running(self) -> bool:
        """A network is up and taking input."""
        return self.net is not None and self.net.state == "running"

    def live_status(self) -> str:
        """The status now: ``running`` becomes ``idle`` while nothing is being processed."""
        if self.status == "running" and self.net is not None and self.net.is_idle():
            return "idle"
        return self.status

    def counters(self) -> dict[str, Any]:
        """Per-node and per-port counters of the current network."""
        if self.net is None:
            return {}
        stats = self.net.statistics()
        counters: dict[str, Any] = msgspec.to_builtins(
            {k: stats[k] for k in ("active", "nodes", "outputs", "events",
                                   "dead_letters_evicted")}, str_keys=True
        )
        counters["journal"] = {"accepted": self.seq, "delivered": self.sent,
                               "processed": self.processed,
                               "checkpoints": self.checkpoints,
                               "checkpoint_stalls": self.checkpoint_stalls}
        return counters

    def buffer(self, port: str) -> OutputBuffer:
        """The output buffer of exported out-port ``port`` (created on demand)."""
        name = self.graph.port_name(port)
        buf = self.outputs.get(name)
        if buf is None:
            if name not in self.graph.outports:
                raise KeyError(port)
            store = self.store_reader(name) if self.store_reader is not None else None
            buf = self.outputs[name] = OutputBuffer(name, self.policy.output_buffer,
                                                    store=store)
            if self.done.is_set():
                buf.close()
        return buf

    async def send(self, port: str, value: Any) -> None:
        """Send into an exported in-port of the running network (not journaled; the
        manager's :meth:`ExecutionManager.accept` is the durable path)."""
        net = self.net
        if net is None or net.state != "running":
            raise NetworkError(f"execution {self.id!r} is {self.status}; it takes no input")
        await net.send(port, value)

    def request_stop(self, mode: str = "drain") -> None:
        """Ask the execution to stop (``drain`` or ``force``); returns at once."""
        if self._stop_mode != "force":
            self._stop_mode = mode
        self._stop_requested.set()
        if self._idle_scope is not None:
            self._idle_scope.cancel()

    async def stop(self, mode: str = "drain", timeout: float | None = None) -> None:
        """Stop and wait until the network is down (bounded by ``timeout`` seconds for a
        drain, after which the stop is forced)."""
        self.request_stop(mode)
        if timeout is not None and mode == "drain":
            with trio.move_on_after(timeout):
                await self.done.wait()
            if not self.done.is_set():
                self.request_stop("force")
        await self.done.wait()


class ExecutionManager:
    """Every execution of one server, hosted in ``nursery`` (see the module docstring)."""

    def __init__(self, registry: Registry, storage: Storage, nursery: trio.Nursery, *,
                 retention_count: int = 1000,
                 retention_seconds: float = 7 * 24 * 3600,
                 checkpoint_interval: float = 1.0,
                 quiesce_timeout: float = 5.0) -> None:
        self.registry = registry
        #: Seconds a busy network runs before it is quiesced for a checkpoint ...
        self.checkpoint_interval = checkpoint_interval
        #: ... and how long new inputs wait for it to drain.
        self.quiesce_timeout = quiesce_timeout
        self.storage = storage
        self.nursery = nursery
        self.executions: dict[str, Execution] = {}
        self.draining = False
        self.retention_count = retention_count
        self.retention_seconds = retention_seconds
        self._ended_heap: list[tuple[float, str]] = []
        self._ended_count = 0
        self._last_sweep = time.time()
        #: Wraps each run of a network (entered before it starts, left after it
        #: stopped): the observability layer's trace recording, or ``None``.
        self.recorder: (Callable[[Execution, Network], AbstractAsyncContextManager[Any]]
                        | None) = None

    def get(self, execution_id: str) -> Execution:
        """The execution ``execution_id``; raises ``KeyError``."""
        return self.executions[execution_id]

    def page(self, *, after: str | None = None, limit: int = 100,
             status: str | None = None) -> tuple[list[Execution], str | None]:
        """Executions in creation order after the one with id ``after``, at most
        ``limit``, optionally only those whose live status is ``status``; and the
        cursor of the next page (``None`` on the last)."""
        items = list(self.executions.values())
        if after is not None:
            ids = [ex.id for ex in items]
            items = items[ids.index(after) + 1:] if after in ids else []
        if status is not None:
            items = [ex for ex in items if ex.live_status() == status]
        page = items[:limit]
        return page, (page[-1].id if len(items) > limit and page else None)

    async def start(
        self,
        graph: Graph,
        *,
        graph_id: str | None = None,
        graph_text: str | None = None,
        inputs: Mapping[str, list[Any]] | None = None,
        policy: ExecutionPolicy | None = None,
        execution_id: str | None = None,
        persist: bool = True,
        on_network: Callable[[Network], None] | None = None,
        meta: Mapping[str, Any] | None = None,
        network: Network | None = None,
    ) -> Execution:
        """Start ``graph`` and return once its network runs.

        With ``persist`` and a ``graph_text`` (the JSON snapshot stored for a restart),
        the record and the creation inputs are stored before anything starts. Raises
        what building or starting the network raised (unknown component, missing
        port, a node's ``ConfigError``); nothing is left running or stored then.
        """
        if self.draining:
            raise NetworkError("the server is shutting down; no new executions")
        policy = policy or ExecutionPolicy()
        persist = persist and graph_text is not None
        ex = Execution(execution_id or uuid.uuid4().hex, graph, graph_id=graph_id,
                       inputs=inputs or {}, policy=policy, persist=persist, meta=meta)
        ex.prebuilt = network  # (built for graph, named ex.id, with the policy's capacity)
        if persist:
            ex.store_reader = self._store_reader(ex.id)
        for port in (inputs or {}):
            if graph.port_name(port) not in graph.inports:
                raise NetworkError(
                    f"graph {graph.name!r}: no exported in-port {port!r} for the inputs;"
                    f" exported in-ports: {sorted(graph.inports) or 'none'}")
        if persist:
            assert graph_text is not None
            journal = [(seq, port, value) for seq, (port, value) in enumerate(
                ((p, v) for p, vs in ex.inputs.items() for v in vs), start=1)]
            # recorded as running at once (one transaction less); if the start fails
            # the record is deleted again
            self.storage.put_execution(ex.id, graph_id=graph_id, graph=graph_text,
                                       inputs=ex.inputs, policy=policy, status="running",
                                       journal=journal, created=ex.created, meta=ex.meta)
            ex.seq = len(journal)
            ex._first_pending = journal
        return await self._launch(ex, on_network)

    async def _launch(self, ex: Execution, on_network: Callable[[Network], None] | None
                      ) -> Execution:
        if on_network is not None:
            ex.on_network.append(on_network)
        self.executions[ex.id] = ex
        self.nursery.start_soon(self._host, ex)
        await ex._ready.wait()
        if ex._start_error is not None:
            self.executions.pop(ex.id, None)
            if ex.persist:
                self.storage.delete_execution(ex.id)
            raise ex._start_error
        if ex.persist and ex.restarts:
            self.storage.set_execution_status(ex.id, "running", restarts=ex.restarts)
        ex.on_done.append(self._ended)
        return ex

    # -- inputs -------------------------------------------------------------------------

    async def accept(self, ex: Execution, port: str, values: list[Any]) -> None:
        """Journal ``values`` for in-port ``port`` (durable when this returns, for a
        persisted execution), then deliver them in order. Raises ``NetworkError`` if
        the execution takes no input; a value the network refuses is removed from the
        journal with every one after it, and its error raised."""
        async with ex._input_lock:
            if not ex.running:
                raise NetworkError(f"execution {ex.id!r} is {ex.status}; it takes no input")
            first = ex.seq + 1
            if ex.persist:
                self.storage.journal(ex.id, [(first + i, port, v)
                                             for i, v in enumerate(values)])
            ex.seq += len(values)
            seq = first
            try:
                for value in values:
                    await ex.send(port, value)
                    ex.sent = seq
                    seq += 1
            except BaseException:
                ex.seq = seq - 1
                if ex.persist:
                    self.storage.unjournal(ex.id, seq)
                raise
            finally:
                ex._dirty.set()

    def _collect(self, ex: Execution, net: Network) -> None:
        """Move every value waiting behind an exported out-port into its buffer."""
        for public in list(ex.graph.outports):
            try:
                stream = net.outputs(public)
            except ReflowError:
                continue
            values = stream.drain()
            if values:
                buf = ex.buffer(public)
                for value in values:
                    buf.append(value)
                    for callback in ex.on_output:
                        callback(public, value)

    def _checkpoint(self, ex: Execution, net: Network | None, *, status: str | None = None
                    ) -> None:
        """Store the new outputs and the processed journal position (one transaction)."""
        if net is not None:
            self._collect(ex, net)
        outputs = {port: buf.unpersisted() for port, buf in ex.outputs.items()}
        processed = ex.sent
        self.storage.checkpoint(ex.id, processed, outputs, ex.policy.output_buffer,
                                status=status, error=ex.error, ended=ex.ended)
        bounds = self.storage.output_bounds(ex.id)
        for port, buf in ex.outputs.items():
            buf.persisted = buf.end
            buf.stored_first = bounds.get(port, (buf.end, buf.end))[0]
        ex.processed = max(ex.processed, processed)

    async def _checkpointer(self, ex: Execution, net: Network) -> None:
        interval = self.checkpoint_interval
        while True:
            await ex._dirty.wait()
            with trio.move_on_after(interval) as busy:
                await net.idle()
            if net.state != "running":
                return
            if busy.cancelled_caught:
                # busy for a whole interval: hold new inputs back until it drains
                async with ex._input_lock:
                    with trio.move_on_after(self.quiesce_timeout) as stuck:
                        await net.idle()
                    if net.state != "running":
                        return
                    if stuck.cancelled_caught:
                        ex.checkpoint_stalls += 1
                        _log.warning(
                            "execution %s stayed busy for %.1f s with its inputs held back"
                            " (it keeps itself busy); its journal position cannot advance,"
                            " so a restart replays every input since it was last idle;"
                            " next try in %.0f s", ex.id, self.quiesce_timeout,
                            interval * 2)
                        interval = min(interval * 2, 300.0)
                        continue
                    self._checkpoint_if_new(ex, net)
                continue
            # No checkpoint between the test and the snapshot: everything delivered so
            # far is processed, and its outputs are behind the out-ports.
            self._checkpoint_if_new(ex, net)
            interval = self.checkpoint_interval

    def _checkpoint_if_new(self, ex: Execution, net: Network) -> None:
        if ex.sent > ex.processed:
            self._checkpoint(ex, net)
            ex.checkpoints += 1
        ex._dirty = trio.Event()

    # -- lifecycle ----------------------------------------------------------------------

    def _ended(self, ex: Execution) -> None:
        if ex.persist:
            self._record_end(ex)
        if ex.id in self.executions:
            self._note_ended(ex)
        self.evict()

    def _record_end(self, ex: Execution) -> None:
        if not ex._end_stored:
            self._store_end(ex)
        for buf in ex.outputs.values():
            buf.release()

    def _store_end(self, ex: Execution) -> None:
        """Store how ``ex`` ended (status, outputs, journal position), once."""
        status = ex.status
        if status != "finished" and self.draining and not ex.user_stopped:
            # The server stops, not the user: keep the execution resumable (or, for a
            # restart: never one, marked as interrupted by the shutdown).
            status = "interrupted"
        if ex.policy.until == "idle" and status == "finished":
            # a finished batch's inputs are all processed; nothing is replayed
            ex.sent = ex.seq
        self._checkpoint(ex, None, status=status)
        ex._end_stored = True

    def _store_reader(self, execution_id: str) -> Callable[[str], StoreReader]:
        def for_port(port: str) -> StoreReader:
            def read(after: int, limit: int) -> list[tuple[int, Any]]:
                return self.storage.read_outputs(execution_id, port, after, limit)
            return read
        return for_port

    async def _host(self, ex: Execution) -> None:
        delay = _RESTART_BACKOFF[0]
        while True:
            try:
                await self._run_once(ex)
            except Exception as exc:
                if not ex._ready.is_set():
                    # net.start() runs inside the pumps nursery: unwrap its group so the
                    # caller sees the node's own error (e.g. a ConfigError from setup).
                    while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
                        exc = exc.exceptions[0]
                    ex.status = "failed"
                    ex.error = str(exc)
                    ex._start_error = exc
                    ex.done.set()
                    ex._ready.set()
                    return
                ex.status = "failed"
                ex.error = f"{type(exc).__name__}: {exc}" if not isinstance(
                    exc, ReflowError) else str(exc)
                _log.warning("execution %s failed: %s", ex.id, ex.error, exc_info=exc)
            if (ex._stop_requested.is_set() or ex.status == "finished"
                    or ex.policy.restart != "always" or self.draining):
                break
            ex.restarts += 1
            if ex.persist:
                self.storage.set_execution_status(ex.id, "restarting", ex.error,
                                                  restarts=ex.restarts)
            with trio.move_on_after(delay):
                await ex._stop_requested.wait()
            if ex._stop_requested.is_set():
                break
            delay = min(delay * 2, _RESTART_BACKOFF[1])
        if ex.status not in ("failed", "finished"):
            ex.status = "stopped"
        for buf in ex.outputs.values():
            buf.close()
        ex.ended = ex.ended or time.time()
        ex.done.set()
        for callback in ex.on_done:
            try:
                callback(ex)
            except Exception:  # a broken observer must not take the server down
                _log.exception("execution %s: on_done callback failed", ex.id)

    def _pending(self, ex: Execution) -> list[tuple[int, str, Any]]:
        """The inputs a new network of ``ex`` gets: journal entries after the last
        checkpoint (persisted), or the creation inputs (not persisted)."""
        if ex._first_pending is not None:  # a fresh execution: its creation inputs
            pending, ex._first_pending = ex._first_pending, None
            return pending
        if ex.persist:
            return self.storage.pending_inputs(ex.id, ex.processed)
        return [(0, port, value) for port, values in ex.inputs.items() for value in values]

    async def _run_once(self, ex: Execution) -> None:
        net, ex.prebuilt = ex.prebuilt, None
        if net is None:
            net = Network(ex.graph, self.registry, name=ex.id, capacity=ex.policy.capacity)
        for hook in ex.on_network:
            hook(net)
        recording = (self.recorder(ex, net) if self.recorder is not None
                     else contextlib.nullcontext())
        async with recording, trio.open_nursery() as pumps:
            ex._nursery = pumps

            def follow_graph(event: GraphEvent) -> None:
                if event.type == "AddOutport" and net.state == "running":
                    public, _ = event.after
                    pumps.start_soon(self._pump, ex, net, public)

            unsubscribe = ex.graph.subscribe(follow_graph)
            try:
                await net.start()
                ex.net = net
                ex.network_changed.set()
                ex.network_changed = trio.Event()
                ex._started_at = time.monotonic()
                ex.error = ""
                for public in list(ex.graph.outports):
                    pumps.start_soon(self._pump, ex, net, public)
                if ex.persist and ex.policy.until != "idle":
                    # (a batch is checkpointed once, when it finishes)
                    pumps.start_soon(self._checkpointer, ex, net)
                went_idle = False
                try:
                    async with ex._input_lock:
                        ex.status = "running"
                        ex._ready.set()
                        for seq, port, value in self._pending(ex):
                            await net.send(port, value)
                            ex.sent = max(ex.sent, seq)
                        ex._dirty.set()
                    if ex.policy.until == "idle":
                        with trio.CancelScope() as idle_scope:
                            ex._idle_scope = idle_scope
                            if ex._stop_requested.is_set():
                                idle_scope.cancel()
                            await net.idle()
                            self._collect(ex, net)
                            went_idle = True
                        ex._idle_scope = None
                        if ex._stop_mode is None:
                            ex._stop_mode = "drain"
                    else:
                        await ex._stop_requested.wait()
                finally:
                    ex.status = "stopping"
                    ex.last_uptime = time.monotonic() - ex._started_at
                    # Not shielded: stop() must exit the network's nursery at the same
                    # cancel-scope depth that start() entered it.
                    await net.stop(drain=ex._stop_mode != "force")
                    self._collect(ex, net)
                    # A batch has finished only once its nodes' teardowns ran (a writer
                    # flushes its buffer there), never at the idle point before the stop.
                    if went_idle:
                        ex.status = "finished"
                        if ex.persist:
                            # Stored before any client can see it: a server killed
                            # right after answering 'finished' must not run the batch
                            # (and its writes) again when it restarts.
                            ex.ended = time.time()
                            self._store_end(ex)
            finally:
                unsubscribe()
                pumps.cancel_scope.cancel()

    async def _pump(self, ex: Execution, net: Network, public: str) -> None:
        buf = ex.buffer(public)
        try:
            stream = net.outputs(public)
        except ReflowError:
            return
        async for value in stream:
            buf.append(value)
            for callback in ex.on_output:
                callback(public, value)

    # -- restart of the server -------------------------------------------------------------

    async def resume(self) -> list[str]:
        """Load every stored execution: ``restart: always`` ones that were not over are
        started again (from their last checkpoint); ``restart: never`` ones that were
        running are marked ``interrupted``; ended ones are listed with their stored
        outputs. Returns the ids of the resumed ones. One that cannot start is marked
        failed, with the reason."""
        from reflowpy.server.graphs import load_graph

        self.evict(stored=True)
        resumed: list[str] = []
        for record in list(self.storage.executions()):
            try:
                policy = msgspec.convert(record.policy_value(), ExecutionPolicy)
                graph = load_graph(record.graph, "noflo")
            except (ReflowError, msgspec.ValidationError, ValueError) as exc:
                _log.warning("execution %s cannot be loaded: %s", record.id, exc)
                self.storage.set_execution_status(record.id, "failed",
                                                  f"cannot be loaded: {exc}")
                continue
            ex = Execution(record.id, graph, graph_id=record.graph_id,
                           inputs=msgspec.json.decode(record.inputs), policy=policy,
                           persist=True, meta=record.meta_value())
            ex.created = record.created
            ex.restarts = record.restarts
            ex.processed = ex.sent = record.processed
            ex.seq = max(record.processed, self.storage.last_seq(record.id))
            ex.store_reader = self._store_reader(ex.id)
            for port, (lo, hi) in self.storage.output_bounds(record.id).items():
                buf = OutputBuffer(port, policy.output_buffer, first=hi,
                                   store=ex.store_reader(port))
                buf.stored_first = lo
                ex.outputs[port] = buf
            if record.status not in FINAL and policy.restart == "always":
                ex.restarts += 1
                try:
                    await self._launch(ex, None)
                    resumed.append(record.id)
                    continue
                except Exception as exc:
                    _log.warning("execution %s could not be resumed: %s", record.id, exc)
                    self.storage.set_execution_status(record.id, "failed", str(exc),
                                                      ended=time.time())
                    record = self.storage.get_execution(record.id) or record
            elif record.status not in ENDED:
                self.storage.set_execution_status(
                    record.id, "interrupted", "the server stopped while it ran (restart:"
                    " never)", ended=time.time())
                record = self.storage.get_execution(record.id) or record
            self._dormant(ex, record)
        return resumed

    def _dormant(self, ex: Execution, record: ExecutionRecord) -> None:
        """List an ended execution (from the store) without running anything."""
        ex.status = record.status
        ex.error = record.error
        ex.ended = record.ended or record.updated
        for buf in ex.outputs.values():
            buf.release()
            buf.close()
        ex._ready.set()
        ex.done.set()
        self.executions[ex.id] = ex
        self._note_ended(ex)

    # -- retention ----------------------------------------------------------------------

    async def delete(self, ex: Execution) -> None:
        """Stop ``ex`` if it runs (forced) and forget it, its journal and its outputs."""
        if not ex.done.is_set():
            ex.user_stopped = True
            await ex.stop("force")
        self._forget(ex)

    def _note_ended(self, ex: Execution) -> None:
        heapq.heappush(self._ended_heap, (ex.created, ex.id))
        self._ended_count += 1

    def _forget(self, ex: Execution) -> None:
        if self.executions.pop(ex.id, None) is not None and ex.done.is_set():
            self._ended_count -= 1
        if ex.persist:
            self.storage.delete_execution(ex.id)

    def evict(self, *, stored: bool = False) -> int:
        """Forget ended executions beyond the ``retention_count`` newest (by creation),
        and (at most once a minute, or with ``stored``) those that ended more than
        ``retention_seconds`` ago; returns how many. With ``stored``, also records only
        in the store (at start, before they are loaded). Amortized O(log n) per call:
        ended executions sit in a heap by creation time."""
        count = 0
        heap = self._ended_heap
        while self._ended_count > self.retention_count and heap:
            _, ex_id = heapq.heappop(heap)
            ex = self.executions.get(ex_id)
            if ex is not None and ex.done.is_set():  # else: deleted already (stale entry)
                self._forget(ex)
                count += 1
        now = time.time()
        horizon = now - self.retention_seconds
        if stored or now - self._last_sweep > 60.0:
            self._last_sweep = now
            for ex in [ex for ex in self.executions.values()
                       if ex.done.is_set() and (ex.ended or now) < horizon]:
                self._forget(ex)
                count += 1
        if stored:
            records = [r for r in self.storage.executions() if r.status in ENDED]
            old = [r for r in records if (r.ended or r.updated) < horizon]
            rest = [r for r in records if (r.ended or r.updated) >= horizon]
            for record in old + rest[:max(0, len(rest) - self.retention_count)]:
                self.storage.delete_execution(record.id)
        return count

    async def drain(self, timeout: float = 10.0) -> None:
        """Stop every execution (drain, forced after ``timeout`` seconds)."""
        self.draining = True
        running = [ex for ex in self.executions.values() if not ex.done.is_set()]
        if not running:
            return
        async with trio.open_nursery() as nursery:
            for ex in running:
                nursery.start_soon(ex.stop, "drain", timeout)


