"""Hosting running networks: executions, their outputs, their lifecycle.

An :class:`Execution` is one graph running as a :class:`~reflowpy.Network` inside the
server's own trio nursery, for as long as it should: until it is stopped (a service),
or until it first becomes idle after its inputs were delivered (a batch job, policy
``until: "idle"``). With policy ``restart: "always"`` a network that fails is started
again (with a fresh network: fresh actor state), and the execution is resumed when the
server restarts.

The :class:`ExecutionManager` owns every execution. It records each one in the
:class:`~reflowpy.server.storage.Storage` so the record outlives the process, reads
every exported out-port into a bounded :class:`OutputBuffer` (readers long-poll or
stream it with a cursor, so several readers see the same values and a slow one only
loses the oldest values, counted), and drains all networks when the server stops.

Nothing here uses threads: every network, pump and waiter is a task of the server's
nursery, so a request handler and the networks share one trio run.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
import trio

from reflowpy.errors import NetworkError, ReflowError
from reflowpy.network.graph import Graph, GraphEvent
from reflowpy.network.network import Network
from reflowpy.network.registry import Registry
from reflowpy.server.schemas import ExecutionPolicy
from reflowpy.server.storage import Storage

__all__ = ["Execution", "ExecutionManager", "OutputBuffer"]

_log = logging.getLogger("reflowpy.server")

#: Seconds between restarts of a failing ``restart: always`` execution (doubling, capped).
_RESTART_BACKOFF = (0.1, 5.0)


class OutputBuffer:
    """The values that left one exported out-port, addressed by an absolute cursor.

    Holds at most ``size`` values; older ones are dropped (``dropped`` counts them).
    ``read(after)`` returns the values with index >= ``after``; ``wait(after)`` blocks
    until such a value exists or the buffer is closed.
    """

    def __init__(self, port: str, size: int) -> None:
        self.port = port
        self.size = size
        self._values: deque[Any] = deque()
        self._first = 0  # absolute index of _values[0]
        self._changed = trio.Event()
        self.closed = False

    @property
    def end(self) -> int:
        """The cursor just past the newest value."""
        return self._first + len(self._values)

    @property
    def dropped(self) -> int:
        """How many values were evicted (they are before :attr:`start`)."""
        return self._first

    def append(self, value: Any) -> None:
        """Add a value, evicting the oldest beyond ``size``."""
        self._values.append(value)
        if len(self._values) > self.size:
            self._values.popleft()
            self._first += 1
        self._changed.set()
        self._changed = trio.Event()

    def close(self) -> None:
        """No more values will come; wakes every waiter."""
        self.closed = True
        self._changed.set()

    def read(self, after: int, limit: int = 10_000) -> tuple[list[Any], int]:
        """Values from cursor ``after`` (clamped to the oldest kept), and the next cursor."""
        start = max(after, self._first)
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
    ) -> None:
        self.id = execution_id
        self.graph = graph
        self.graph_id = graph_id
        self.inputs = {k: list(v) for k, v in inputs.items()}
        self.policy = policy
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
        #: Set when a client (not the server shutting down) stopped it.
        self.user_stopped = False
        self._stop_requested = trio.Event()
        self._started_at: float | None = None
        self._nursery: trio.Nursery | None = None
        self._ready = trio.Event()
        self._start_error: BaseException | None = None

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
        return counters

    def buffer(self, port: str) -> OutputBuffer:
        """The output buffer of exported out-port ``port`` (created on demand)."""
        name = self.graph.port_name(port)
        buf = self.outputs.get(name)
        if buf is None:
            if name not in self.graph.outports:
                raise KeyError(port)
            buf = self.outputs[name] = OutputBuffer(name, self.policy.output_buffer)
        return buf

    async def send(self, port: str, value: Any) -> None:
        """Send into an exported in-port of the running network."""
        net = self.net
        if net is None or net.state != "running":
            raise NetworkError(f"execution {self.id!r} is {self.status}; it takes no input")
        await net.send(port, value)

    def request_stop(self, mode: str = "drain") -> None:
        """Ask the execution to stop (``drain`` or ``force``); returns at once."""
        if self._stop_mode != "force":
            self._stop_mode = mode
        self._stop_requested.set()

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
    """Every execution of one server, hosted in ``nursery``."""

    def __init__(self, registry: Registry, storage: Storage, nursery: trio.Nursery) -> None:
        self.registry = registry
        self.storage = storage
        self.nursery = nursery
        self.executions: dict[str, Execution] = {}
        self.draining = False

    def get(self, execution_id: str) -> Execution:
        """The execution ``execution_id``; raises ``KeyError``."""
        return self.executions[execution_id]

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
    ) -> Execution:
        """Start ``graph`` and return once its network runs.

        Raises what building or starting the network raised (unknown component,
        missing port, a node's ``ConfigError``); nothing is left running then.
        ``graph_text`` is the JSON snapshot stored for a restart after a server restart.
        """
        if self.draining:
            raise NetworkError("the server is shutting down; no new executions")
        policy = policy or ExecutionPolicy()
        ex = Execution(execution_id or uuid.uuid4().hex, graph, graph_id=graph_id,
                       inputs=inputs or {}, policy=policy)
        for port in (inputs or {}):
            if graph.port_name(port) not in graph.inports:
                raise NetworkError(
                    f"graph {graph.name!r}: no exported in-port {port!r} for the inputs;"
                    f" exported in-ports: {sorted(graph.inports) or 'none'}")
        if on_network is not None:
            ex.on_network.append(on_network)
        self.executions[ex.id] = ex
        self.nursery.start_soon(self._host, ex)
        await ex._ready.wait()
        if ex._start_error is not None:
            self.executions.pop(ex.id, None)
            raise ex._start_error
        if persist and graph_text is not None:
            self.storage.put_execution(ex.id, graph_id=graph_id, graph=graph_text,
                                       inputs=ex.inputs, policy=policy, status="running")
            ex.on_done.append(self._record_end)
        return ex

    def _record_end(self, ex: Execution) -> None:
        status = ex.status
        if self.draining and not ex.user_stopped:
            # The server stops, not the user: keep restart-always executions resumable.
            status = "interrupted"
        self.storage.set_execution_status(ex.id, status, ex.error)

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
            with trio.move_on_after(delay):
                await ex._stop_requested.wait()
            if ex._stop_requested.is_set():
                break
            delay = min(delay * 2, _RESTART_BACKOFF[1])
        if ex.status not in ("failed", "finished"):
            ex.status = "stopped"
        for buf in ex.outputs.values():
            buf.close()
        ex.ended = time.time()
        ex.done.set()
        for callback in ex.on_done:
            try:
                callback(ex)
            except Exception:  # a broken observer must not take the server down
                _log.exception("execution %s: on_done callback failed", ex.id)

    async def _run_once(self, ex: Execution) -> None:
        net = Network(ex.graph, self.registry, name=ex.id, capacity=ex.policy.capacity)
        for hook in ex.on_network:
            hook(net)
        async with trio.open_nursery() as pumps:
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
                ex.status = "running"
                ex.error = ""
                for public in list(ex.graph.outports):
                    pumps.start_soon(self._pump, ex, net, public)
                ex._ready.set()
                try:
                    for port, values in ex.inputs.items():
                        for value in values:
                            await net.send(port, value)
                    if ex.policy.until == "idle":
                        with trio.CancelScope() as idle_scope:
                            pumps.start_soon(_cancel_on, ex._stop_requested, idle_scope)
                            await net.idle()
                            ex.status = "finished"
                        if ex._stop_mode is None:
                            ex._stop_mode = "drain"
                    else:
                        await ex._stop_requested.wait()
                finally:
                    if ex.status != "finished":
                        ex.status = "stopping"
                    # Not shielded: stop() must exit the network's nursery at the same
                    # cancel-scope depth that start() entered it.
                    await net.stop(drain=ex._stop_mode != "force")
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

    async def resume(self) -> list[str]:
        """Start again every stored ``restart: always`` execution that was running when
        the server stopped; returns their ids. One that cannot start is marked failed."""
        from reflowpy.server.graphs import load_graph

        resumed: list[str] = []
        for record in list(self.storage.executions()):
            policy_value = record.policy_value()
            if policy_value.get("restart") != "always" or record.status not in (
                "running", "interrupted", "starting"
            ):
                continue
            try:
                policy = msgspec.convert(policy_value, ExecutionPolicy)
                graph = load_graph(record.graph, "noflo")
                inputs = msgspec.json.decode(record.inputs)
                ex = await self.start(graph, graph_id=record.graph_id, graph_text=record.graph,
                                      inputs=inputs, policy=policy,
                                      execution_id=record.id)
                ex.restarts += 1
                resumed.append(record.id)
            except Exception as exc:
                _log.warning("execution %s could not be resumed: %s", record.id, exc)
                self.storage.set_execution_status(record.id, "failed", str(exc))
        return resumed

    async def drain(self, timeout: float = 10.0) -> None:
        """Stop every execution (drain, forced after ``timeout`` seconds)."""
        self.draining = True
        running = [ex for ex in self.executions.values() if not ex.done.is_set()]
        if not running:
            return
        async with trio.open_nursery() as nursery:
            for ex in running:
                nursery.start_soon(ex.stop, "drain", timeout)


async def _cancel_on(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
