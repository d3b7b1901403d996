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
  without connected in-ports), waits until no work is in hand (``drain=True``,
  optionally bounded by ``timeout``), asks every loop owner to stop (upstream first,
  also those whose in-ports are connected, such as an ``Interval`` with a ``start``
  port), then cancels every actor task, runs every ``teardown``, and moves whatever is
  still in flight -- queued, inside an activation, blocked in a send -- to the
  dead-letter store with the reason (``stopped``, ``timeout``, ``cancelled``), so the
  ledger balances. When it returns no task of the network is left running.
* ``stop()`` may be wrapped in any cancel scope: a cancellation during the drain turns
  it into a forced stop (reason ``cancelled``), which is shielded and bounded, and the
  cancellation then propagates. Cancelling the scope that holds the network does the
  same.
* :meth:`Network.send` on a stopping or stopped network raises
  :class:`~reflowpy.NetworkStopped`, and the value was **not accepted** (it is in no
  queue and no dead letter: it is still the caller's). A sender blocked in ``send``
  when the network stops gets the same error.
* A failure whose policy is ``on_failure="stop"`` cancels the body of the ``async
  with`` block and the block raises the :class:`~reflowpy.ActorError`; after a bare
  ``start()``, ``idle()`` and ``stop()`` raise it.
* A network that cannot make progress (see :mod:`reflowpy.network.scheduler`) emits
  ``NetworkStalled``; ``idle()`` raises :class:`~reflowpy.NetworkStalled`
  (``on_stall="fail"``, the default) or keeps waiting (``on_stall="wait"``).

The graph stays live: the network subscribes to it, so adding or removing nodes,
edges, IIPs and exported ports on ``net.graph`` while it runs takes effect at once.
Live edits are transactional: the network validates each change *before* the graph
applies it (a graph validator hook), so an edit it cannot apply (unknown component,
port or node) raises the same error from the graph mutation and leaves the graph
unchanged. A live-added node runs ``setup()`` before it takes its first message (what
arrives earlier waits in its queue, backpressure included). A removed node's queue,
its activation in progress and later sends into it go to the dead letters with reason
``node removed``; its task ends and is not replaced.

**The ledger** (:meth:`Network.statistics`): every message accepted by an in-port is at
any moment queued, inside an activation, in a blocked send, delivered, or
dead-lettered: ``accepted == delivered + dead_lettered + in_flight``.
"""

from __future__ import annotations

import contextvars
import logging
import math
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Literal

import msgspec
import trio

from reflowpy.errors import (
    ActorError,
    ComponentError,
    GraphCycleError,
    MessageError,
    NetworkError,
    NetworkStalled,
    NetworkStopped,
    NetworkTimeout,
    NodeNotFound,
    PortNotFound,
    ReflowError,
    leaf_exception,
)
from reflowpy.network import events as ev
from reflowpy.network import porttypes
from reflowpy.network.actor import Actor, Port, port_specs
from reflowpy.network.graph import IIP, Edge, ExportedPort, Graph, GraphEvent, Node
from reflowpy.network.message import freeze
from reflowpy.network.ports import InPort, OutPort, OutputSink, PortStatistics, Receiver
from reflowpy.network.registry import Registry
from reflowpy.network.runner import NodeRunner, NodeStatistics, resolve_config
from reflowpy.network.scheduler import Scheduler, Stall
from reflowpy.network.supervision import DeadLetter, DeadLetterStore, Policy

__all__ = ["DEFAULT_CAPACITY", "Ledger", "Network", "NetworkStatistics", "OutputStream",
           "run"]

#: Default bound of an in-port queue. Enough to move messages in batches; small
#: enough that a stalled consumer holds back its producers quickly.
DEFAULT_CAPACITY = 64

_log = logging.getLogger("reflowpy.network")


class Ledger(msgspec.Struct, frozen=True):
    """Where every accepted message is: ``accepted == delivered + dead_lettered +
    in_flight``, with ``in_flight == queued + in_activation + blocked``.

    ``accepted`` counts values that entered an in-port's custody (queued, or blocked
    in a send into it); ``delivered`` finished an activation (or were received by a
    ``run()`` actor); ``dead_lettered`` went to the dead letters (counting every
    message of a join's letter). Exported out-ports are outside the ledger: a value
    reaching one has left the network.
    """

    accepted: int
    delivered: int
    dead_lettered: int
    in_flight: int
    queued: int
    in_activation: int
    blocked: int

    @property
    def balanced(self) -> bool:
        """Whether every accepted message is accounted for."""
        return self.accepted == self.delivered + self.dead_lettered + self.in_flight



def _require_trio() -> None:
    """Refuse, saying why, to start under another event loop (under asyncio trio fails
    deep inside with an AttributeError or "must be called from async context")."""
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        raise NetworkError(
            "reflowpy runs on trio, not on this event loop: use trio.run(main), or"
            " from asyncio run the blocking API in a thread:"
            " await asyncio.to_thread(rf.run, graph, inputs, registry)") from None

class NetworkStatistics(msgspec.Struct, frozen=True):
    """A snapshot of a network (cheap to take: counters the kernel keeps anyway).

    ``active`` runners have work in hand, ``stall`` is set while stalled, ``ledger``
    is the network-wide ledger (removed nodes included), ``nodes`` per node,
    ``outputs`` per exported out-port, ``events`` the event bus (subscribers, dropped).
    """

    name: str
    state: str
    uptime: float
    active: int
    timers: int
    dead_letters: int
    dead_letters_evicted: int
    ledger: Ledger
    events: dict[str, int]
    nodes: dict[str, NodeStatistics]
    outputs: dict[str, PortStatistics]
    stall: Stall | None = None

    def __getitem__(self, key: str) -> Any:
        # Mapping-style reads of the former dict form (``stats["nodes"]``).
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """Mapping-style read of a field (the former dict form)."""
        return getattr(self, key, default)


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
    nodes that declare none; ``on_stall`` says what ``idle()`` does when the network
    stalls (``"fail"``: raise :class:`~reflowpy.NetworkStalled`; ``"wait"``: keep
    waiting -- the ``NetworkStalled`` event is emitted either way). A node parked for
    ``idle_release`` seconds gives its task back (a new one starts with its next
    message; ``math.inf`` keeps every task), so idle nodes cost little after work too.
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
        on_stall: Literal["fail", "wait"] = "fail",
        idle_release: float = 10.0,
        chain: bool = True,
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
        if not idle_release > 0:
            raise ValueError("idle_release must be > 0 seconds (math.inf: never)")
        if on_stall not in ("fail", "wait"):
            raise ValueError("on_stall must be 'fail' or 'wait'")
        self.on_stall = on_stall
        #: Operator chaining (see runner.NodeRunner._claim_next); False: every node in
        #: its own task, as a reference for tests and measurements.
        self.chain = chain and os.environ.get("REFLOWPY_CHAIN", "1") != "0"
        self.bus = ev.EventBus(self.name)
        #: Activity, idle and stall accounting (see scheduler.py).
        self.scheduler = Scheduler(self.became_idle, self._stalled, idle_release)
        #: Why in-flight work is being cancelled (``stopped``, ``timeout``, ...), set by
        #: the stop that cancels it; a runner cancelled with none set says ``cancelled``.
        self.stop_reason: str | None = None
        #: Nodes whose first dead letter was logged (the rest are logged at DEBUG).
        self.dead_warned: set[str] = set()
        self._unplaced_warned = False
        self._dead_counts: dict[str, int] = {}
        self._dead_total = 0
        #: Ledger counters of removed nodes (so the network's ledger still balances).
        self._retired = [0, 0, 0]  # accepted, delivered, dead_taken
        self._system_host = False
        self._runners: dict[str, NodeRunner] = {}
        self._sinks: dict[str, OutputSink] = {}
        #: ``send_nowait``'s resolved targets (emptied by every graph change).
        self._nowait_ports: dict[str | tuple[str, str], InPort] = {}
        #: The largest capacity a connection declared for an in-port (ports without one
        #: keep their declared or default capacity).
        self._explicit_capacity: dict[InPort, int] = {}
        self._specs: dict[type[Actor], tuple[tuple[Port, ...], tuple[Port, ...]]] = {}
        self._dead = DeadLetterStore(dead_letter_limit)
        self._state = "new"
        self._accepting = False
        self._error: ActorError | None = None
        self._errors: list[ActorError] = []
        self._nursery_cm: Any = None
        self._nursery: trio.Nursery | None = None
        self._runner_nursery: trio.Nursery | None = None
        self._host_done: trio.Event | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._started_at = 0.0
        self._unvalidate: Callable[[], None] | None = None
        self._shutting_down = False
        self._stopped = trio.Event()
        self._crash: BaseException | None = None
        self._sink_dead = 0
        #: Runners built by the live-edit validator, picked up by the AddNode handler.
        self._prepared: dict[str, NodeRunner] = {}
        #: Removed runners whose ledger still counts (folded into _retired once done).
        self._removed: list[NodeRunner] = []
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
            cycle = self.registry.subgraph_cycle(node.component)
            if cycle is not None:
                raise GraphCycleError(
                    f"{self.where()}: node {node.id!r}: subgraph {cycle[0]!r} contains itself"
                    f" ({' -> '.join(cycle)}), so its networks would nest without end",
                    cycle)
            return subgraph_actor(component, self.registry, name=node.component)
        return component

    def _warn_unplaced(self, node: Node) -> None:
        """Say (once per network) that placement metadata is not honoured here: this
        Network runs every node in this process."""
        if self._unplaced_warned:
            return
        self._unplaced_warned = True
        where = node.metadata.get("partition") or node.metadata.get("remote")
        _log.warning("%s: node %r asks to run in %r, but a Network runs every node in this"
                     " process; use reflowpy.bridge.network_for (or `reflowpy run`) to place"
                     " it", self.where(), node.id, where)

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
        if "partition" in node.metadata or "remote" in node.metadata:
            self._warn_unplaced(node)
        runner = NodeRunner(self, node.id, node.component, cls, config, policy)
        inspecs, outspecs = self.port_specs(runner)
        fold = self.graph.port_name
        for spec in inspecs:
            runner.inports[fold(spec.name)] = InPort(
                runner, node.id, spec.name, spec.capacity or self.capacity,
                porttypes.parse(spec.type) if spec.strict else None)
        for spec in outspecs:
            runner.outports[fold(spec.name)] = OutPort(
                node.id, spec.name, porttypes.parse(spec.type) if spec.strict else None,
                owner=runner)
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
            target.set_capacity(max(self._explicit_capacity.get(target, 0), edge.capacity))
            self._explicit_capacity[target] = target.capacity
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
        sink.on_abandon = self._sink_abandoned
        self._sinks[public] = sink
        out.connect(sink, exported.index)

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Network:
        _require_trio()
        if self._state != "new":
            raise NetworkError(f"{self.where()}: a network can be started once (it is"
                               f" {self._state})")
        self._nursery_cm = trio.open_nursery()
        self._nursery = await self._nursery_cm.__aenter__()
        try:
            await self._start()
        except BaseException:
            await self._close_nursery()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        try:
            if self._state in ("running", "stopping", "starting"):
                await self._shutdown(forced=exc is not None, drain_timeout=None,
                                     reason=_reason_for(exc))
        finally:
            await self._close_nursery()
        if self._error is not None and (exc is None or isinstance(exc, trio.Cancelled)):
            raise self._error
        return False

    async def _close_nursery(self) -> None:
        # After _shutdown no task is left in the nursery, so leaving it only closes its
        # cancel scope; an exception from the body propagates unwrapped (no group).
        # Only __aexit__ (and a failed __aenter__) call this: they are at the depth where
        # the nursery was entered, whatever scopes the body opened since.
        cm, self._nursery_cm = self._nursery_cm, None
        if cm is not None:
            await cm.__aexit__(None, None, None)

    async def start(self) -> None:
        """Set up every actor, start the loop owners, deliver IIPs.

        Raises what a node's ``setup`` raised (e.g. :class:`~reflowpy.ConfigError`);
        nothing is left running then. Prefer ``async with network:``. Without it the
        network's tasks live in a trio system task until :meth:`stop`, so ``start`` and
        ``stop`` may be called from any task and inside any cancel scope; a failure
        whose policy is ``stop`` is then raised by :meth:`idle` and :meth:`stop`.
        """
        _require_trio()
        if self._state != "new":
            raise NetworkError(f"{self.where()}: a network can be started once (it is"
                               f" {self._state})")
        self._system_host = True
        await self._start()

    async def _start(self) -> None:
        self._state = "starting"
        try:
            if self._nursery is not None:
                await self._nursery.start(self._host)
            else:
                ready = trio.Event()
                trio.lowlevel.spawn_system_task(
                    self._system_host_task, ready, name=f"network {self.name!r}",
                    context=contextvars.copy_context())
                await ready.wait()
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
            self._unvalidate = self.graph.add_validator(self._check_graph_change)
            for runner in self._runners.values():
                if runner.owns_loop:
                    runner.spawn()
            for iip in list(self.graph.iips):
                await self._deliver_iip(iip)
            if self.scheduler.is_idle():
                self.became_idle()
        except BaseException:
            self._state = "stopping"
            await self._shutdown(forced=True, drain_timeout=None, reason="stopped")
            raise

    async def _host(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
                    ready: trio.Event | None = None) -> None:
        # Every actor task lives in this inner nursery, so cancelling it stops them all
        # and this task returns only when the last one has exited.
        self._host_done = trio.Event()
        try:
            async with trio.open_nursery() as nursery:
                self._runner_nursery = nursery
                task_status.started()
                if ready is not None:
                    ready.set()
                await trio.sleep_forever()
        finally:
            self._host_done.set()

    async def _system_host_task(self, ready: trio.Event) -> None:
        # A system task must not raise: a kernel bug is kept and raised by stop().
        try:
            await self._host(ready=ready)
        except BaseException as exc:  # reported, see above
            if not isinstance(exc, trio.Cancelled):
                _log.error("%s: network task crashed", self.where(), exc_info=exc)
                self._crash = exc
            ready.set()

    async def _setup_all(self, runners: Iterable[NodeRunner]) -> None:
        pending = [r for r in runners if type(r.actor).setup is not Actor.setup]
        if not pending:
            return
        errors: list[BaseException] = []

        async def setup(runner: NodeRunner) -> None:
            try:
                await runner.actor.setup(runner.ctx)
            except ReflowError as exc:
                runner.torn_down = True  # (a node whose setup failed has no teardown)
                errors.append(exc)
            except Exception as exc:
                runner.torn_down = True
                leaf = leaf_exception(exc)
                err = ComponentError(
                    f"{self.where()}: node {runner.node_id!r} ({runner.component}) failed"
                    f" to set up: {type(leaf).__name__}: {leaf}")
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
        await target.put(value)

    def spawn_system(self, fn: Callable[[], Awaitable[None]], name: str) -> bool:
        """Run ``fn`` as a task of this network (used by runners).

        Returns False, starting nothing, once the stop has closed the network's nursery
        (what the task would have processed is still queued, and the stop dead-letters
        it).
        """
        if self._runner_nursery is None:
            raise NetworkError(f"{self.where()}: the network is not running")
        try:
            self._runner_nursery.start_soon(fn, name=name)
        except RuntimeError:
            # Closed by the stop, or by a cancellation of the scope that holds the network
            # (its nursery closes before the stop begins, while the caller -- cancelled too
            # -- still runs to its next checkpoint). Either way the stop follows and
            # dead-letters what is queued; a send that queued the value has accepted it.
            if self._state != "stopping" and trio.current_effective_deadline() != -math.inf:
                raise
            return False
        return True

    async def stop(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop the network; see the module docstring. Idempotent.

        ``drain=False`` forces the stop: what is in flight goes to the dead letters with
        reason ``stopped``. With ``timeout``, a drain that takes longer becomes a forced
        stop (reason ``timeout``).
        """
        if self._state == "new":
            self._state = "stopped"
            return
        if self._state in ("running", "starting"):
            await self._shutdown(forced=not drain, drain_timeout=timeout, reason="stopped")
        elif self._state == "stopping":
            await self._stopped.wait()
        if self._crash is not None:
            raise NetworkError(f"{self.where()}: the network task crashed: {self._crash!r}") \
                from self._crash
        if self._error is not None:
            raise self._error

    async def _shutdown(self, *, forced: bool, drain_timeout: float | None,
                        reason: str) -> None:
        if self._state == "stopped" or self._shutting_down:
            return
        self._shutting_down = True
        self._state = "stopping"
        self._accepting = False
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._unvalidate is not None:
            self._unvalidate()
            self._unvalidate = None
        cancelled: BaseException | None = None
        if not forced and self._error is None:
            try:
                self._stop_sources()
                with trio.move_on_after(math.inf if drain_timeout is None
                                        else drain_timeout) as scope:
                    await self._drain()
                if scope.cancelled_caught:
                    reason = "timeout"
                    forced = True
                else:
                    forced = not self.scheduler.is_idle()
            except trio.Cancelled as exc:
                cancelled, reason, forced = exc, "cancelled", True
            except NetworkStalled:
                reason, forced = "stalled", True
        if self._error is not None and reason == "stopped":
            reason = "failed"
        with trio.CancelScope(shield=True):
            self.stop_reason = reason
            self.scheduler.stopping = True
            if self._runner_nursery is not None:
                self._runner_nursery.cancel_scope.cancel()
                for runner in self._runners.values():  # (a chained stage's own scope)
                    if runner.scope is not None:
                        runner.scope.cancel()
                assert self._host_done is not None
                await self._host_done.wait()
            # No actor task is left: close every in-port first (a sender still blocked
            # gets NetworkStopped instead of queueing into a network without tasks), then
            # run the teardowns and dead-letter what is queued.
            for runner in self._runners.values():
                for port in runner.inports.values():
                    port.close()
            await self._teardown_all()
            why = f"network stopped before the message was processed ({reason})"
            for runner in self._runners.values():
                runner._reject_queued(why, reason)
            for sink in self._sinks.values():
                sink.close()
            self._state = "stopped"
            self._stopped.set()
            self.bus.publish(ev.NetworkShutdown(
                network=self.name, forced=forced,
                error=str(self._error) if self._error is not None else None))
        if cancelled is not None:
            raise cancelled

    async def _drain(self) -> None:
        # Wait until no work is in hand (pending timers aside: a loop owner waiting for
        # its next tick is asked to stop below), then stop the loop owners.
        await self._wait_quiet()
        await self._drain_loop_owners()

    async def _wait_quiet(self) -> None:
        await self.scheduler.wait(timers=False, stalled=True)
        self._raise_stall()

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
                await self._wait_quiet()
            if type(runner.actor).teardown is not Actor.teardown and not runner.torn_down:
                await self._teardown(runner)
                await self._wait_quiet()

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
        """Called by the scheduler each time the network becomes idle."""
        if self.bus.active and self._state == "running":
            self.bus.publish(ev.NetworkIdle(network=self.name))

    def _stalled(self, stall: Stall) -> None:
        _log.warning("%s stalled: %s", self.where(), stall.describe())
        if self.bus.active:
            self.bus.publish(ev.NetworkStalled(network=self.name, cycle=stall.cycle,
                                               nodes=stall.nodes, queues=stall.queues))

    def _raise_stall(self) -> None:
        stall = self.scheduler.stall
        if stall is not None and not self.scheduler.is_idle():
            raise NetworkStalled(f"{self.where()} stalled: {stall.describe()}", stall=stall)

    def dead_letter(
        self, node: str, port: str, value: Any, error: BaseException, attempts: int,
        *, reason: str = "failed", count: int = 1,
    ) -> DeadLetter:
        """Store a message that could not be processed and announce it.

        ``count`` is how many ledger messages the letter holds (a join's letter holds
        one per in-port).
        """
        letter = self._dead.add(node, port, value, error, attempts, reason)
        self._dead_total += count
        self._dead_counts[node] = self._dead_counts.get(node, 0) + count
        if self.bus.active:
            self.bus.publish(ev.DeadLettered(
                network=self.name, actor_id=node, port=port, letter_id=letter.id,
                error=letter.error, error_type=letter.error_type,
                traceback=letter.traceback, reason=reason))
        return letter

    def dead_count(self, node: str) -> int:
        """Messages addressed to ``node`` that went to the dead letters."""
        return self._dead_counts.get(node, 0)

    def _sink_abandoned(self, sink: OutputSink, value: Any, reason: str | None) -> None:
        reason = reason or self.stop_reason or "cancelled"
        self.dead_letter(sink.node, sink.name, value,
                         ActorError(f"exported out-port {sink.name!r}: the value was not"
                                    f" delivered ({reason})", node=sink.node,
                                    port=sink.name), 0, reason=reason)
        self._sink_dead += 1

    def fail(self, error: ActorError) -> None:
        """A node's policy says stop: record the error and cancel the network."""
        if self._error is None:
            self._error = error
        self.report_error(error)
        if self.stop_reason is None:
            self.stop_reason = "failed"
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        elif self._runner_nursery is not None:
            self._runner_nursery.cancel_scope.cancel()
        self.scheduler.poke()

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
    def active(self) -> int:
        """Runners with work in hand right now (zero, with no timer pending, is idle)."""
        return self.scheduler.active

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
        Raises :class:`~reflowpy.NetworkStopped` once the network stops accepting input,
        also when it stops while this send waits for room; the value was then not
        accepted (it is in no queue and no dead letter). Cancelled while waiting, the
        value is not accepted either.
        """
        if not self._accepting:
            raise NetworkStopped(f"{self.where()}: the network is {self._state}; it takes no"
                                 " input (the value was not accepted)")
        port = self._resolve_input(target)
        value = freeze(value, where=f"{self.where()}: input {target!r}")
        await port.put(value, abandon=False)

    def send_nowait(self, target: str | tuple[str, str], value: Any) -> bool:
        """The non-waiting half of :meth:`send`: ``value`` is queued if the port has
        room right now (True), else nothing happens and the value stays the caller's
        (False). Never yields; a parked plain-``def`` receiver may run its activation
        inline before this returns. Raises :class:`~reflowpy.NetworkStopped` as
        :meth:`send` does. (A bridge's receiver proxy delivers this way from its
        socket reader, and waits with :meth:`send` only for what found the port full.)
        """
        if not self._accepting:
            raise NetworkStopped(f"{self.where()}: the network is {self._state}; it takes no"
                                 " input (the value was not accepted)")
        port = self._nowait_ports.get(target)
        if port is None:
            port = self._nowait_ports[target] = self._resolve_input(target)
        try:
            value = freeze(value)
        except MessageError:  # again, for the error that names the input
            freeze(value, where=f"{self.where()}: input {target!r}")
            raise
        return port.put_nowait(value)

    def attach_receiver(self, name: str, receiver: Receiver) -> OutputSink:
        """Hand the values reaching the exported out-port ``name`` to ``receiver`` as
        they arrive, instead of waiting for a reader of :meth:`outputs`.

        ``receiver.wake(sink)`` is called (while ``receiver.parked``) from the sending
        task, right after a value was queued in the returned sink; the receiver takes
        what it can with ``sink.take()`` and leaves the rest queued. The sink stays
        bounded, so a receiver that takes nothing holds the sender (backpressure), and
        a sender cancelled while blocked on it dead-letters its value, as for any
        exported out-port. (A bridge's sender proxy is such a receiver: it pushes
        values into its channels from the producing task, without a task of its own.)
        """
        sink = self._sinks.get(self.graph.port_name(name))
        if sink is None:
            raise PortNotFound(f"{self.where()}: no exported out-port {name!r}; exported"
                               f" out-ports: {sorted(self._sinks) or 'none'}")
        sink.receiver = receiver
        return sink

    def outputs(self, name: str) -> OutputStream:
        """The values leaving through the exported out-port ``name``."""
        sink = self._sinks.get(self.graph.port_name(name))
        if sink is None:
            raise PortNotFound(f"{self.where()}: no exported out-port {name!r}; exported"
                               f" out-ports: {sorted(self._sinks) or 'none'}")
        return OutputStream(sink)

    async def idle(self) -> None:
        """Return once nothing is queued that can run and nothing is being processed.

        Raises :class:`~reflowpy.NetworkStalled` when the network stalls (unless
        ``on_stall="wait"``), and, after a bare :meth:`start`, the error of a failure
        whose policy stopped the network.
        """
        _require_trio()
        await trio.lowlevel.checkpoint()
        fail = self.on_stall == "fail"
        await self.scheduler.wait(stalled=fail)
        if self._system_host and self._error is not None:
            raise self._error
        if fail:
            self._raise_stall()

    def is_idle(self) -> bool:
        """True when the network is idle right now."""
        return self.scheduler.is_idle()

    def events(self, buffer: int = 1000) -> ev.EventSubscription:
        """Subscribe to this network's events (bounded; a slow reader loses events and
        its ``dropped`` counter says how many). Subscribe before ``start`` to see
        ``NetworkStarted``."""
        return self.bus.subscribe(buffer)

    def dead_letters(self) -> list[DeadLetter]:
        """Messages that could not be processed, oldest first."""
        return list(self._dead)

    async def resend(self, letter_id: int) -> None:
        """Deliver a dead letter to its node and port again (removing it from the store).

        Raises :class:`~reflowpy.NetworkStopped` (the letter stays in the store) when
        the network takes no input.
        """
        letter = self._dead.get(letter_id)
        ports = letter.port.split(",")
        if len(ports) == 1:
            deliveries = [(ports[0], letter.value)]
        else:
            if not isinstance(letter.value, Mapping):
                raise NetworkError(f"dead letter {letter_id}: cannot split value over {ports}")
            deliveries = [(p, letter.value[p]) for p in ports]
        targets = [(self._target_of(letter.node, p), v) for p, v in deliveries]
        if not self._accepting:
            raise NetworkStopped(f"{self.where()}: cannot re-send: network {self._state}")
        self._dead.remove(letter_id)
        for target, value in targets:
            await target.put(value)

    def discard(self, letter_id: int) -> DeadLetter:
        """Delete a dead letter for good and return it."""
        return self._dead.remove(letter_id)

    def statistics(self) -> NetworkStatistics:
        """A snapshot: state, activity, the ledger, per-node and per-port counters.

        Cheap enough to sample (it reads counters the kernel keeps anyway), but it walks
        every node: sample it, do not call it per message.
        """
        nodes = {node_id: r.statistics() for node_id, r in self._runners.items()}
        accepted = delivered = queued = in_activation = blocked = 0
        for node_stats in nodes.values():
            delivered += node_stats.delivered
            in_activation += node_stats.in_activation
            for p in node_stats.inports.values():
                accepted += p.total + p.abandoned + p.waiting_senders
                queued += p.queued
                blocked += p.waiting_senders
        still: list[NodeRunner] = []
        for r in self._removed:  # removed nodes still finishing an activation
            r_taken, r_delivered = r.ledger()
            busy = r_taken - r_delivered - r.dead_taken
            if busy or r.running:
                still.append(r)
                in_activation += busy
            self._fold(r, count=not (busy or r.running))
        self._removed = still
        for r in still:
            accepted += sum(p.total + p.abandoned for p in r.inports.values())
            delivered += r.ledger()[1]
        accepted += self._retired[0]
        delivered += self._retired[1]
        outputs = {name: s.statistics() for name, s in self._sinks.items()}
        # Values dead-lettered from blocked sends into exported out-ports entered the
        # ledger there (they never reached the outside).
        accepted += self._sink_dead
        dead = self._dead_total
        return NetworkStatistics(
            name=self.name,
            state=self._state,
            uptime=time.monotonic() - self._started_at if self._started_at else 0.0,
            active=self.scheduler.active,
            timers=self.scheduler.timers,
            dead_letters=len(self._dead),
            dead_letters_evicted=self._dead.evicted,
            ledger=Ledger(accepted=accepted, delivered=delivered, dead_lettered=dead,
                          in_flight=queued + in_activation + blocked, queued=queued,
                          in_activation=in_activation, blocked=blocked),
            events=self.bus.statistics(),
            nodes=nodes,
            outputs=outputs,
            stall=self.scheduler.stall,
        )

    def retire_runner(self, runner: NodeRunner) -> None:
        """A removed node's task ended: keep only its totals (no runner is kept)."""
        if runner in self._removed:
            self._removed.remove(runner)
        self._fold(runner, count=True)

    def _fold(self, runner: NodeRunner, *, count: bool) -> None:
        # A removed runner with nothing left in an activation: keep only its totals.
        if count and not runner.folded:
            runner.folded = True
            self._retired[0] += sum(p.total + p.abandoned for p in runner.inports.values())
            self._retired[1] += runner.delivered

    # -- live editing ---------------------------------------------------------------------

    def _check_graph_change(self, kind: str, before: Any, after: Any) -> None:
        """The graph's validator: refuse, before the graph changes, what we cannot apply."""
        if self._state != "running":
            return
        if kind == "AddNode":
            node: Node = after
            self._prepared[node.id] = self._create_runner(node)
        elif kind == "AddConnection":
            edge: Edge = after
            self._live_runner(edge.src.node).outport(edge.src.port)
            self._live_runner(edge.tgt.node).inport(edge.tgt.port)
        elif kind == "AddInitial":
            iip: IIP = after
            self._live_runner(iip.tgt.node).inport(iip.tgt.port)
            freeze(iip.data, where=f"{self.where()}: IIP for {iip.tgt}")
        elif kind in ("AddOutport", "ChangeOutport"):
            public, exported = after
            try:
                self._live_runner(exported.node).outport(exported.port)
            except (NodeNotFound, PortNotFound) as exc:
                raise type(exc)(f"exported out-port {public!r}: {exc}") from None
        elif kind in ("AddInport", "ChangeInport"):
            public, exported = after
            try:
                self._live_runner(exported.node).inport(exported.port)
            except (NodeNotFound, PortNotFound) as exc:
                raise type(exc)(f"exported in-port {public!r}: {exc}") from None
        elif kind == "ChangeNode":
            changed: Node = after
            resolve_config(changed.id, changed.metadata)
            if "policy" in changed.metadata:
                Policy.from_config(changed.metadata["policy"], node=changed.id)

    def _live_runner(self, node_id: str) -> NodeRunner:
        runner = self._runners.get(node_id) or self._prepared.get(node_id)
        if runner is None:
            raise NodeNotFound(f"{self.where()}: no node {node_id!r}")
        return runner

    def _on_graph_event(self, event: GraphEvent) -> None:
        self._nowait_ports.clear()
        self.scheduler.chain_epoch += 1  # a running chain splits at its next message
        handler = _GRAPH_HANDLERS.get(event.type)
        if handler is not None and self._state == "running":
            handler(self, event)

    def _live_add_node(self, event: GraphEvent) -> None:
        node: Node = event.after
        runner = self._prepared.pop(node.id, None) or self._create_runner(node)
        self._prepared.clear()
        self._runners[node.id] = runner
        # Until setup() has run, arrivals only queue (parked=False: nobody wakes it), and
        # the pending setup is work in hand, so the network is not idle meanwhile.
        runner.parked = False
        self.scheduler.enter()

        async def start_node() -> None:
            try:
                try:
                    await runner.actor.setup(runner.ctx)
                except Exception as exc:
                    runner.finished = True
                    runner.torn_down = True  # (nothing was set up to tear down)
                    self.report_error(runner.wrap(exc, None))
                else:
                    if self.bus.active:
                        self.bus.publish(ev.ActorStarted(network=self.name, actor_id=node.id,
                                                         component=node.component))
            finally:
                runner.parked = True
                if not runner.removed and (
                        runner.owns_loop or runner.finished
                        or any(p.queue for p in runner.inports.values())):
                    runner.spawn()
                self.scheduler.leave()

        self.spawn_system(start_node, f"setup {node.id}")

    def _live_remove_node(self, event: GraphEvent) -> None:
        node: Node = event.before
        runner = self._runners.pop(node.id, None)
        if runner is None:
            return
        for other in self._runners.values():
            for out in other.outports.values():
                for target, index in list(zip(out.targets, out.indices, strict=True)):
                    if target.runner is runner:
                        out.disconnect(target, index)
        runner.removed = True
        runner.cancel_reason = "node removed"
        runner._reject_queued("the node was removed from the graph", "node removed")
        for port in runner.inports.values():
            port.retire()  # stale senders and blocked puts: dead-lettered, not queued
        self._dead_counts.pop(node.id, None)
        if runner.running:
            self._removed.append(runner)  # folded when its task ends (retire_runner)
        else:
            self._fold(runner, count=True)
        if runner.scope is not None:
            runner.scope.cancel()
        if runner.waiter is not None:
            runner.wake_parked()
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
        if old in self._dead_counts:
            self._dead_counts[new] = self._dead_counts.pop(old)

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
    Raises :class:`~reflowpy.ActorError` if a node's policy stopped the network,
    :class:`~reflowpy.NetworkStalled` if it stalled, and
    :class:`~reflowpy.NetworkTimeout` (also a ``TimeoutError``) if it did not become
    idle within ``timeout`` seconds.
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
    async with net:
        with trio.move_on_after(math.inf if timeout is None else timeout) as scope:
            for port, values in inputs.items():
                for value in values:
                    await net.send(port, value)
            await net.idle()
        if scope.cancelled_caught:
            ledger = net.statistics().ledger
            await net._shutdown(forced=True, drain_timeout=None, reason="timeout")
            raise NetworkTimeout(
                f"{net.where()} was not idle after {timeout:g} s; in flight then:"
                f" {ledger.queued} queued, {ledger.in_activation} in an activation,"
                f" {ledger.blocked} in blocked sends (now in the dead letters with reason"
                " 'timeout')", in_flight=ledger)
    return {name: net.outputs(name).drain() for name in net._sinks}


def _reason_for(exc: BaseException | None) -> str:
    """The dead-letter reason for a stop caused by ``exc`` leaving the network's block."""
    if exc is None:
        return "stopped"
    if isinstance(exc, trio.Cancelled):
        return "cancelled"
    if isinstance(exc, NetworkStalled):
        return "stalled"
    return "stopped"
