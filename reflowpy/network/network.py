"""Network: a graph turned into running actors under a trio nursery, and its lifecycle.

``Network(graph, registry)`` checks every node against its component, creates one
:class:`~reflowpy.network.runner.NodeRunner` per node (one actor instance and state per
node), wires out-ports to in-port queues, and on :meth:`Network.start` runs every
actor's ``setup``, starts the actors that own their loop, and delivers the IIPs.

Lifecycle and shutdown rules:

* ``async with Network(...) as net:`` starts on entry and stops on exit: a clean exit
  **drains** (in-flight messages finish), an exception in the body **forces** the stop.
* :meth:`Network.idle` returns when nothing is queued that can run and nothing is
  being processed anywhere; the ``NetworkIdle`` event says the same.
* :meth:`Network.stop` stops accepting input, cancels pure sources (``run()`` actors
  without connected in-ports), waits for idle (``drain=True``, optionally bounded by
  ``timeout``), then cancels every actor task, runs every ``teardown``, and moves any
  message still queued to the dead-letter store, so nothing is silently lost. When it
  returns no task of the network is left running.
* A failure whose policy is ``on_failure="stop"`` cancels the body of the ``async
  with`` block and the block raises the :class:`~reflowpy.ActorError`.

The graph stays live: the network subscribes to it, so adding or removing nodes,
edges, IIPs and exported ports on ``net.graph`` while it runs takes effect at once.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

import trio

from reflowpy.errors import (
    ActorError,
    ComponentError,
    NetworkError,
    NetworkStopped,
    NodeNotFound,
    PortNotFound,
    ReflowError,
)
from reflowpy.network import events as ev
from reflowpy.network import porttypes
from reflowpy.network.actor import Actor, Port, port_specs
from reflowpy.network.graph import IIP, Edge, ExportedPort, Graph, GraphEvent, Node
from reflowpy.network.message import freeze
from reflowpy.network.ports import InPort, OutPort, OutputSink
from reflowpy.network.registry import Registry
from reflowpy.network.runner import NodeRunner, resolve_config
from reflowpy.network.supervision import DeadLetter, DeadLetterStore, Policy

__all__ = ["DEFAULT_CAPACITY", "Network", "OutputStream", "run"]

#: Default bound of an in-port queue. Enough to move messages in batches; small
#: enough that a stalled consumer holds back its producers quickly.
DEFAULT_CAPACITY = 64

_log = logging.getLogger("reflowpy.network")


class OutputStream:
    """Values leaving the network through one exported out-port.

    ``async for value in net.outputs("result")`` ends when the network has stopped
    and every value was read. Several readers of the same port compete for values.
    """

    def __init__(self, sink: OutputSink) -> None:
        self._sink = sink

    def __aiter__(self) -> OutputStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._sink.get()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def receive(self) -> Any:
        """The next value; raises ``trio.EndOfChannel`` after the network stopped."""
        return await self._sink.get()

    def drain(self) -> list[Any]:
        """Every value waiting right now, without blocking."""
        values = list(self._sink.queue)
        for _ in values:
            self._sink.take()
        return values


class Network:
    """A running graph. See the module docstring for lifecycle and shutdown rules.

    ``capacity`` is the default in-port queue bound; ``output_capacity`` bounds the
    queue behind each exported out-port; ``policy`` is the default failure policy of
    nodes that declare none.
    """

    def __init__(
        self,
        graph: Graph,
        registry: Registry | None = None,
        *,
        name: str | None = None,
        capacity: int = DEFAULT_CAPACITY,
        output_capacity: int = 1024,
        policy: Policy | None = None,
        dead_letter_limit: int = 10_000,
    ) -> None:
        if capacity < 1 or output_capacity < 1:
            raise ValueError("queue capacities must be >= 1")
        if registry is None:
            from reflowpy.network.registry import default_registry

            registry = default_registry()
        self.graph = graph
        self.registry = registry
        self.name = name if name is not None else graph.name
        self.capacity = capacity
        self.output_capacity = output_capacity
        self.default_policy = policy or Policy()
        self.bus = ev.EventBus()
        #: Runners with work in hand (see runner.py); zero means idle.
        self.active = 0
        #: Nesting of inline activations in the current call stack (see runner.py).
        self.inline_depth = 0
        #: Whether the current send may activate a parked plain-``def`` node inline.
        self.inline_ok = True
        self._runners: dict[str, NodeRunner] = {}
        self._sinks: dict[str, OutputSink] = {}
        #: The largest capacity a connection declared for an in-port (ports without one
        #: keep their declared or default capacity).
        self._explicit_capacity: dict[InPort, int] = {}
        self._specs: dict[type[Actor], tuple[tuple[Port, ...], tuple[Port, ...]]] = {}
        self._dead = DeadLetterStore(dead_letter_limit)
        self._state = "new"
        self._accepting = False
        #: ``run()`` actors waiting with a deadline (``receive_until``): pending timers
        #: are work still to do, so the network is not idle while there are any.
        self.timers = 0
        self._error: ActorError | None = None
        self._errors: list[ActorError] = []
        self._idle_event = trio.Event()
        self._nursery_cm: Any = None
        self._nursery: trio.Nursery | None = None
        self._runner_nursery: trio.Nursery | None = None
        self._host_done: trio.Event | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._started_at = 0.0
        self._build()

    # -- construction -------------------------------------------------------------------

    def where(self) -> str:
        """How errors name this network's graph."""
        return f"graph {self.name!r}" if self.name else "graph"

    def _build(self) -> None:
        for node in self.graph.nodes.values():
            self._runners[node.id] = self._create_runner(node)
        for edge in self.graph.edges:
            self._connect(edge)
        for iip in self.graph.iips:
            self._target_of(iip.tgt.node, iip.tgt.port)
        for public, exported in self.graph.inports.items():
            self._target_of(exported.node, exported.port, public=public)
        for public, exported in self.graph.outports.items():
            self._add_sink(public, exported)

    def _component_class(self, node: Node) -> type[Actor]:
        try:
            component = self.registry.get(node.component)
        except ComponentError as exc:
            raise type(exc)(f"{self.where()}: node {node.id!r}: {exc}") from None
        if isinstance(component, Graph):
            return subgraph_actor(component, self.registry, name=node.component)
        return component

    def port_specs(self, runner: NodeRunner) -> tuple[tuple[Port, ...], tuple[Port, ...]]:
        """Declared in- and out-ports of a node (dynamic via ``ports_for(config)``)."""
        cls = runner.cls
        ports_for = getattr(cls, "ports_for", None)
        if ports_for is not None:
            inports, outports = ports_for(runner.ctx.config)
            return port_specs(inports), port_specs(outports)
        specs = self._specs.get(cls)
        if specs is None:  # one normalization per component, not per node
            specs = self._specs[cls] = (cls.inport_specs(), cls.outport_specs())
        return specs

    def _create_runner(self, node: Node) -> NodeRunner:
        cls = self._component_class(node)
        config = resolve_config(node.id, node.metadata)
        if "policy" in node.metadata:
            policy = Policy.from_config(node.metadata["policy"], node=node.id)
        else:
            policy = cls.policy or self.default_policy
        runner = NodeRunner(self, node.id, node.component, cls, config, policy)
        inspecs, outspecs = self.port_specs(runner)
        fold = self.graph.port_name
        for spec in inspecs:
            runner.inports[fold(spec.name)] = InPort(
                runner, node.id, spec.name, spec.capacity or self.capacity,
                porttypes.parse(spec.type) if spec.strict else None)
        for spec in outspecs:
            runner.outports[fold(spec.name)] = OutPort(
                node.id, spec.name, porttypes.parse(spec.type) if spec.strict else None)
        runner.update_dispatch()
        return runner

    def _runner(self, node_id: str) -> NodeRunner:
        try:
            return self._runners[node_id]
        except KeyError:
            raise NodeNotFound(f"{self.where()}: no node {node_id!r}") from None

    def _target_of(self, node_id: str, port: str, *, public: str | None = None) -> InPort:
        try:
            return self._runner(node_id).inport(port)
        except (NodeNotFound, PortNotFound) as exc:
            if public is None:
                raise
            raise type(exc)(f"exported in-port {public!r}: {exc}") from None

    def _connect(self, edge: Edge) -> None:
        src = self._runner(edge.src.node)
        out = src.outport(edge.src.port)
        target = self._runner(edge.tgt.node).inport(edge.tgt.port)
        if edge.capacity is not None:
            target.capacity = max(self._explicit_capacity.get(target, 0), edge.capacity)
            self._explicit_capacity[target] = target.capacity
            target.wake_putters()
        out.connect(target, edge.src.index)

    def _disconnect(self, edge: Edge) -> None:
        src = self._runners.get(edge.src.node)
        dst = self._runners.get(edge.tgt.node)
        if src is None or dst is None:
            return
        out = src.outports.get(self.graph.port_name(edge.src.port))
        target = dst.inports.get(self.graph.port_name(edge.tgt.port))
        if out is not None and target is not None:
            out.disconnect(target, edge.src.index)

    def _add_sink(self, public: str, exported: ExportedPort) -> None:
        runner = self._runner(exported.node)
        try:
            out = runner.outport(exported.port)
        except PortNotFound as exc:
            raise PortNotFound(f"exported out-port {public!r}: {exc}") from None
        sink = OutputSink(exported.node, public, self.output_capacity)
        self._sinks[public] = sink
        out.connect(sink, exported.index)

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Network:
        try:  # under asyncio trio fails deep inside with an AttributeError: say why
            trio.lowlevel.current_task()
        except RuntimeError:
            raise NetworkError(
                "reflowpy runs on trio, not on this event loop: use trio.run(main), or"
                " from asyncio run the blocking API in a thread:"
                " await asyncio.to_thread(rf.run, graph, inputs, registry)") from None
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self._state in ("running", "stopping", "starting"):
            await self._shutdown(forced=exc is not None, drain_timeout=None)
        await self._close_nursery()
        if self._error is not None and (exc is None or isinstance(exc, trio.Cancelled)):
            raise self._error
        return False

    async def _close_nursery(self) -> None:
        # After _shutdown no task is left in the nursery, so leaving it only closes its
        # cancel scope; an exception from the body propagates unwrapped (no group).
        cm, self._nursery_cm = self._nursery_cm, None
        if cm is not None:
            await cm.__aexit__(None, None, None)

    async def start(self) -> None:
        """Set up every actor, start the loop owners, deliver IIPs.

        Raises what a node's ``setup`` raised (e.g. :class:`~reflowpy.ConfigError`);
        nothing is left running then. Prefer ``async with network:``; if you call
        ``start``/``stop`` yourself, call both from the same task.
        """
        if self._state != "new":
            raise NetworkError(f"{self.where()}: a network can be started once (it is"
                               f" {self._state})")
        self._state = "starting"
        self._nursery_cm = trio.open_nursery()
        self._nursery = await self._nursery_cm.__aenter__()
        try:
            await self._nursery.start(self._host)
            await self._setup_all(self._runners.values())
            self._started_at = time.monotonic()
            self._state = "running"
            self._accepting = True
            if self.bus.active:
                self.bus.publish(ev.NetworkStarted(network=self.name, nodes=len(self._runners)))
                for runner in self._runners.values():
                    self.bus.publish(ev.ActorStarted(network=self.name,
                                                     actor_id=runner.node_id,
                                                     component=runner.component))
            self._unsubscribe = self.graph.subscribe(self._on_graph_event)
            for runner in self._runners.values():
                if runner.owns_loop:
                    runner.spawn()
            for iip in list(self.graph.iips):
                await self._deliver_iip(iip)
            if self.active == 0 and self.timers == 0:
                self.became_idle()
        except BaseException:
            self._state = "stopping"
            await self._shutdown(forced=True, drain_timeout=None)
            await self._close_nursery()
            raise

    async def _host(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # Every actor task lives in this inner nursery, so cancelling it stops them all
        # and this task returns only when the last one has exited.
        self._host_done = trio.Event()
        try:
            async with trio.open_nursery() as nursery:
                self._runner_nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._host_done.set()

    async def _setup_all(self, runners: Iterable[NodeRunner]) -> None:
        pending = [r for r in runners if type(r.actor).setup is not Actor.setup]
        if not pending:
            return
        errors: list[BaseException] = []

        async def setup(runner: NodeRunner) -> None:
            try:
                await runner.actor.setup(runner.ctx)
            except ReflowError as exc:
                errors.append(exc)
            except Exception as exc:
                err = ComponentError(
                    f"{self.where()}: node {runner.node_id!r} ({runner.component}) failed"
                    f" to set up: {type(exc).__name__}: {exc}")
                err.__cause__ = exc
                errors.append(err)

        async with trio.open_nursery() as nursery:
            for runner in pending:
                nursery.start_soon(setup, runner)
        if errors:
            raise errors[0]

    async def _deliver_iip(self, iip: IIP) -> None:
        target = self._target_of(iip.tgt.node, iip.tgt.port)
        value = freeze(iip.data, where=f"{self.where()}: IIP for {iip.tgt}")
        if not target.put_nowait(value):
            await target.put(value)

    def spawn_system(self, fn: Callable[[], Awaitable[None]], name: str) -> None:
        """Run ``fn`` as a task of this network (used by runners)."""
        if self._runner_nursery is None:
            raise NetworkError(f"{self.where()}: the network is not running")
        self._runner_nursery.start_soon(fn, name=name)

    async def stop(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop the network; see the module docstring. Idempotent."""
        if self._state in ("new",):
            self._state = "stopped"
            return
        if self._state in ("running", "starting"):
            await self._shutdown(forced=not drain, drain_timeout=timeout)
        await self._close_nursery()
        if self._error is not None:
            raise self._error

    async def _shutdown(self, *, forced: bool, drain_timeout: float | None) -> None:
        if self._state == "stopped":
            return
        self._state = "stopping"
        self._accepting = False
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        with trio.CancelScope(shield=True):
            if not forced and self._error is None:
                self._stop_sources()
                with trio.move_on_after(math.inf if drain_timeout is None else drain_timeout):
                    await self.idle()
                    await self._drain_loop_owners()
                forced = self.active > 0 or self.timers > 0
            if self._runner_nursery is not None:
                self._runner_nursery.cancel_scope.cancel()
                assert self._host_done is not None
                await self._host_done.wait()
            await self._teardown_all()
            reason = "network stopped before the message was processed"
            for runner in self._runners.values():
                runner._reject_queued(reason)
            for sink in self._sinks.values():
                sink.close()
            self._state = "stopped"
            self.bus.publish(ev.NetworkShutdown(
                network=self.name, forced=forced,
                error=str(self._error) if self._error is not None else None))

    def _stop_sources(self) -> None:
        # Loop owners that nothing feeds produce new work rather than finish old work:
        # one waiting for input (a stop port, a timer) is asked to stop, which its
        # receive() reports as NetworkStopped; one busy elsewhere is cancelled.
        fed = {id(t) for r in self._runners.values() for out in r.outports.values()
               for t in out.targets}
        for runner in self._runners.values():
            if not runner.owns_loop or any(id(p) in fed for p in runner.inports.values()):
                continue
            runner.stop_requested = True
            if runner.waiter is not None:
                runner.wake_parked()
            elif runner.scope is not None:
                runner.scope.cancel()

    def _drain_order(self) -> list[NodeRunner]:
        """Runners upstream before downstream (Kahn's order; cycles in graph order)."""
        runners = list(self._runners.values())
        indegree = {id(r): 0 for r in runners}
        downstream: dict[int, list[NodeRunner]] = {id(r): [] for r in runners}
        for r in runners:
            for out in r.outports.values():
                for target in out.targets:
                    if target.runner is not None and target.runner is not r:
                        downstream[id(r)].append(target.runner)
                        indegree[id(target.runner)] += 1
        ready = [r for r in runners if indegree[id(r)] == 0]
        order: list[NodeRunner] = []
        seen: set[int] = set()
        while ready:
            r = ready.pop(0)
            order.append(r)
            seen.add(id(r))
            for d in downstream[id(r)]:
                indegree[id(d)] -= 1
                if indegree[id(d)] == 0:
                    ready.append(d)
        return order + [r for r in runners if id(r) not in seen]

    async def _drain_loop_owners(self) -> None:
        # Upstream first: a loop owner waiting for input gets NetworkStopped from
        # receive() and may flush what it holds; its teardown runs while the rest of the
        # network still runs, so what it sends there is delivered too. Then the next.
        for runner in self._drain_order():
            if runner.owns_loop and not runner.finished:
                runner.stop_requested = True
                runner.wake_parked()
                if self.active or self.timers:
                    await self.idle()
            if type(runner.actor).teardown is not Actor.teardown and not runner.torn_down:
                await self._teardown(runner)
                if self.active or self.timers:
                    await self.idle()

    async def _teardown(self, runner: NodeRunner) -> None:
        runner.torn_down = True
        try:
            with trio.move_on_after(10):
                await runner.actor.teardown(runner.ctx)
        except Exception as exc:
            self.report_error(ActorError(
                f"{self.where()}: node {runner.node_id!r} teardown failed: {exc}",
                node=runner.node_id))

    async def _teardown_all(self) -> None:
        pending = [r for r in self._runners.values()
                   if type(r.actor).teardown is not Actor.teardown and not r.torn_down]
        if pending:
            async with trio.open_nursery() as nursery:
                for runner in pending:
                    nursery.start_soon(self._teardown, runner)

    # -- state the runners report -----------------------------------------------------

    def became_idle(self) -> None:
        """Called when the active count reaches zero."""
        self._idle_event.set()
        if self.bus.active and self._state == "running":
            self.bus.publish(ev.NetworkIdle(network=self.name))

    def dead_letter(
        self, node: str, port: str, value: Any, error: BaseException, attempts: int
    ) -> DeadLetter:
        """Store a message that could not be processed and announce it."""
        letter = self._dead.add(node, port, value, error, attempts)
        if self.bus.active:
            self.bus.publish(ev.DeadLettered(network=self.name, actor_id=node, port=port,
                                             letter_id=letter.id, error=letter.error))
        return letter

    def fail(self, error: ActorError) -> None:
        """A node's policy says stop: record the error and cancel the network."""
        if self._error is None:
            self._error = error
        self.report_error(error)
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def report_error(self, error: ActorError) -> None:
        """Keep an error that did not stop the network (see :attr:`errors`)."""
        _log.error("%s", error)
        self._errors.append(error)
        del self._errors[:-100]

    # -- public API ---------------------------------------------------------------------

    @property
    def state(self) -> str:
        """``new``, ``starting``, ``running``, ``stopping`` or ``stopped``."""
        return self._state

    @property
    def errors(self) -> list[ActorError]:
        """The most recent errors that did not stop the network (up to 100)."""
        return list(self._errors)

    @property
    def error(self) -> ActorError | None:
        """The error that stopped the network, if one did."""
        return self._error

    def _resolve_input(self, target: str | tuple[str, str]) -> InPort:
        if isinstance(target, tuple):
            node, port = target
            return self._target_of(node, port)
        public = self.graph.port_name(target)
        exported = self.graph.inports.get(public)
        if exported is None:
            raise PortNotFound(
                f"{self.where()}: no exported in-port {target!r}; exported in-ports:"
                f" {sorted(self.graph.inports) or 'none'} (or send to a (node, port) tuple)")
        return self._target_of(exported.node, exported.port, public=public)

    async def send(self, target: str | tuple[str, str], value: Any) -> None:
        """Send ``value`` into an exported in-port, or to ``(node, port)``.

        Suspends while the port's queue is full (backpressure reaches the caller).
        Raises :class:`~reflowpy.NetworkStopped` once the network stops accepting input.
        """
        if not self._accepting:
            raise NetworkStopped(f"{self.where()}: the network is {self._state}; it takes no"
                                 " input")
        port = self._resolve_input(target)
        value = freeze(value, where=f"{self.where()}: input {target!r}")
        if not port.put_nowait(value):
            await port.put(value)

    def outputs(self, name: str) -> OutputStream:
        """The values leaving through the exported out-port ``name``."""
        sink = self._sinks.get(self.graph.port_name(name))
        if sink is None:
            raise PortNotFound(f"{self.where()}: no exported out-port {name!r}; exported"
                               f" out-ports: {sorted(self._sinks) or 'none'}")
        return OutputStream(sink)

    async def idle(self) -> None:
        """Return once nothing is queued that can run and nothing is being processed."""
        await trio.lowlevel.checkpoint()
        while self.active > 0 or self.timers > 0:
            if self._idle_event.is_set():
                self._idle_event = trio.Event()
            await self._idle_event.wait()

    def is_idle(self) -> bool:
        """True when the network is idle right now."""
        return self.active == 0 and self.timers == 0

    def events(self, buffer: int = 1000) -> ev.EventSubscription:
        """Subscribe to this network's events (bounded; a slow reader loses events and
        its ``dropped`` counter says how many). Subscribe before ``start`` to see
        ``NetworkStarted``."""
        return self.bus.subscribe(buffer)

    def dead_letters(self) -> list[DeadLetter]:
        """Messages that could not be processed, oldest first."""
        return list(self._dead)

    async def resend(self, letter_id: int) -> None:
        """Deliver a dead letter to its node and port again (removing it from the store)."""
        letter = self._dead.get(letter_id)
        ports = letter.port.split(",")
        if len(ports) == 1:
            deliveries = [(ports[0], letter.value)]
        else:
            if not isinstance(letter.value, Mapping):
                raise NetworkError(f"dead letter {letter_id}: cannot split value over {ports}")
            deliveries = [(p, letter.value[p]) for p in ports]
        targets = [(self._target_of(letter.node, p), v) for p, v in deliveries]
        self._dead.remove(letter_id)
        for target, value in targets:
            if not self._accepting:
                raise NetworkStopped(f"{self.where()}: cannot re-send: network {self._state}")
            if not target.put_nowait(value):
                await target.put(value)

    def discard(self, letter_id: int) -> DeadLetter:
        """Delete a dead letter for good and return it."""
        return self._dead.remove(letter_id)

    def statistics(self) -> dict[str, Any]:
        """A snapshot: state, activity, per-node and per-port counters, outputs, events."""
        return {
            "name": self.name,
            "state": self._state,
            "uptime": time.monotonic() - self._started_at if self._started_at else 0.0,
            "active": self.active,
            "dead_letters": len(self._dead),
            "dead_letters_evicted": self._dead.evicted,
            "events": self.bus.statistics(),
            "nodes": {node_id: r.statistics() for node_id, r in self._runners.items()},
            "outputs": {name: s.statistics() for name, s in self._sinks.items()},
        }

    # -- live editing ---------------------------------------------------------------------

    def _on_graph_event(self, event: GraphEvent) -> None:
        handler = _GRAPH_HANDLERS.get(event.type)
        if handler is not None and self._state == "running":
            handler(self, event)

    def _live_add_node(self, event: GraphEvent) -> None:
        node: Node = event.after
        runner = self._create_runner(node)
        self._runners[node.id] = runner

        async def start_node() -> None:
            try:
                await runner.actor.setup(runner.ctx)
            except Exception as exc:
                runner.finished = True
                self.report_error(runner._wrap(exc, None))
                return
            if self.bus.active:
                self.bus.publish(ev.ActorStarted(network=self.name, actor_id=node.id,
                                                 component=node.component))
            if runner.owns_loop:
                runner.spawn()

        self.spawn_system(start_node, f"setup {node.id}")

    def _live_remove_node(self, event: GraphEvent) -> None:
        node: Node = event.before
        runner = self._runners.pop(node.id, None)
        if runner is None:
            return
        for other in self._runners.values():
            for out in other.outports.values():
                for target in list(out.targets):
                    if target.runner is runner:
                        out.disconnect(target, out.indices[out.targets.index(target)])
        if runner.scope is not None:
            runner.scope.cancel()
        for port in runner.inports.values():
            port.wake_putters()
        runner._reject_queued("the node was removed from the graph")
        self.spawn_system(lambda: self._teardown(runner), f"teardown {node.id}")

    def _live_rename_node(self, event: GraphEvent) -> None:
        old, new = str(event.before), str(event.after)
        runner = self._runners.pop(old, None)
        if runner is None:
            return
        runner.node_id = new
        runner.ctx.node_id = new
        for port in runner.inports.values():
            port.node = new
        for out in runner.outports.values():
            out.node = new
        self._runners[new] = runner

    def _live_add_edge(self, event: GraphEvent) -> None:
        self._connect(event.after)

    def _live_remove_edge(self, event: GraphEvent) -> None:
        self._disconnect(event.before)

    def _live_add_iip(self, event: GraphEvent) -> None:
        iip: IIP = event.after
        target = self._target_of(iip.tgt.node, iip.tgt.port)
        value = freeze(iip.data, where=f"{self.where()}: IIP for {iip.tgt}")
        if not target.put_nowait(value):
            async def deliver() -> None:
                await target.put(value)

            self.spawn_system(deliver, f"iip {iip.tgt}")

    def _live_add_outport(self, event: GraphEvent) -> None:
        public, exported = event.after
        self._add_sink(public, exported)

    def _live_remove_outport(self, event: GraphEvent) -> None:
        public, exported = event.before
        sink = self._sinks.pop(public, None)
        runner = self._runners.get(exported.node)
        if sink is None or runner is None:
            return
        out = runner.outports.get(self.graph.port_name(exported.port))
        if out is not None:
            out.disconnect(sink, exported.index)
        sink.close()

    def _live_rename_outport(self, event: GraphEvent) -> None:
        sink = self._sinks.pop(self.graph.port_name(str(event.before)), None)
        if sink is not None:
            sink.name = str(event.after)
            self._sinks[self.graph.port_name(str(event.after))] = sink

    def _live_change_outport(self, event: GraphEvent) -> None:
        self._live_remove_outport(GraphEvent("RemoveOutport", event.before, None))
        self._live_add_outport(GraphEvent("AddOutport", None, event.after))

    def _live_change_edge(self, event: GraphEvent) -> None:
        # Metadata changes need nothing; a capacity change applies to the target queue.
        before: Edge = event.before
        after: Edge = event.after
        if before.capacity != after.capacity and after.capacity is not None:
            self._connect(after)

    def _live_change_node(self, event: GraphEvent) -> None:
        node: Node = event.after
        runner = self._runners.get(node.id)
        if runner is not None:
            runner.ctx.config = resolve_config(node.id, node.metadata)

    def __repr__(self) -> str:
        return f"<Network {self.name!r} {self._state} nodes={len(self._runners)}>"


_GRAPH_HANDLERS: dict[str, Callable[[Network, GraphEvent], None]] = {
    "AddNode": Network._live_add_node,
    "RemoveNode": Network._live_remove_node,
    "RenameNode": Network._live_rename_node,
    "ChangeNode": Network._live_change_node,
    "AddConnection": Network._live_add_edge,
    "RemoveConnection": Network._live_remove_edge,
    "AddInitial": Network._live_add_iip,
    "AddOutport": Network._live_add_outport,
    "RemoveOutport": Network._live_remove_outport,
    "RenameOutport": Network._live_rename_outport,
    "ChangeOutport": Network._live_change_outport,
    "ChangeConnection": Network._live_change_edge,
    # Exported in-ports need no handler: Network.send resolves them at each call.
}


def subgraph_actor(graph: Graph, registry: Registry, *, name: str) -> type[Actor]:
    """An actor class that runs ``graph`` as a nested network behind its exported ports.

    Each message on an in-port is sent into the inner network; the actor then waits
    until the inner network is idle and every output was forwarded, so the outer
    network's idle detection covers the inner one.
    """
    inports = [Port(p) for p in graph.inports]
    outports = [Port(p) for p in graph.outports]

    class Subgraph(Actor):
        async def run(self, ctx: Any) -> None:
            inner = Network(graph, registry, name=f"{ctx.node_id}/{graph.name or name}")
            async with inner, trio.open_nursery() as nursery:

                async def forward(public: str) -> None:
                    async for value in inner.outputs(public):
                        await ctx.send(public, value)

                for public in graph.outports:
                    nursery.start_soon(forward, public)
                while True:
                    port, value = await ctx.receive()
                    await inner.send(port, value)
                    await inner.idle()
                    # let the forwarders pass on everything the inner network produced
                    while any(sink.queue for sink in inner._sinks.values()):
                        await trio.sleep(0)

    Subgraph.inports = inports
    Subgraph.outports = outports
    Subgraph.description = str(graph.properties.get("description", ""))
    Subgraph.__name__ = Subgraph.__qualname__ = f"Subgraph[{name}]"
    return Subgraph


def run(
    graph: Graph | str,
    inputs: Mapping[str, Iterable[Any]] | None = None,
    registry: Registry | None = None,
    *,
    timeout: float | None = None,
    capacity: int = DEFAULT_CAPACITY,
) -> dict[str, list[Any]]:
    """Run ``graph`` until idle and return every exported out-port's values.

    A synchronous helper for scripts and tests: it starts a trio run, sends each
    value of ``inputs`` (exported in-port -> values) in order, waits for idle, stops
    the network and returns ``{outport: [values]}``. ``graph`` may be a file path.
    Raises :class:`~reflowpy.ActorError` if a node's policy stopped the network and
    ``TimeoutError`` if it did not become idle within ``timeout`` seconds.
    """
    if isinstance(graph, str):
        graph = Graph.load(graph)
    assert isinstance(graph, Graph)
    return trio.run(_run_async, graph, inputs or {}, registry, timeout, capacity)


async def _run_async(
    graph: Graph,
    inputs: Mapping[str, Iterable[Any]],
    registry: Registry | None,
    timeout: float | None,
    capacity: int,
) -> dict[str, list[Any]]:
    net = Network(graph, registry, capacity=capacity, output_capacity=sys.maxsize)
    with trio.fail_after(math.inf if timeout is None else timeout):
        async with net:
            for port, values in inputs.items():
                for value in values:
                    await net.send(port, value)
            await net.idle()
    return {name: net.outputs(name).drain() for name in net._sinks}

