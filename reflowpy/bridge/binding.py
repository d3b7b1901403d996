"""Binding: the two proxies that join a local Network to bridge channels.

Built only on the Network's public API (a kernel ``Receiver`` on an exported out-port,
``Network.send_nowait`` / ``Network.send`` into an in-port):

* a **sender proxy** (:class:`_Export`) is the kernel ``Receiver`` of the private
  exported out-port of a source port (``__bridge/node.port``, a bounded queue,
  ``Network.attach_receiver``): the moment a value is queued there it is pushed on
  every channel of that port and written to the socket, from the producing task (no
  task of its own, no task switch). What finds no credit stays queued in the export
  and is pushed when a CREDIT arrives (the session's room hook): a slow remote
  consumer leaves it there, the full export queue holds the producer (backpressure,
  flat memory); several channels from one port are a **broadcast**, the slowest sets
  the pace;
* a **receiver proxy** (:meth:`Binding._deliver`) puts the messages of an in-channel
  into the real in-port: straight from the session's reader task with
  ``Network.send_nowait`` while the port has room (a parked plain-``def`` node runs
  inline there, for at most :data:`INLINE_BUDGET` seconds in a row), and from its own
  task with ``Network.send`` (which waits for room) for what found the port full.

**Completion acks.** For channels with ``ack_on="completion"`` a tracker confirms a
message only once its whole effect is safe: the network is idle (every message
delivered so far was processed), nothing waits in an export, and every out-channel is
fully acked downstream. It then acks everything delivered and records, as the
checkpoint, how far each out-channel had sent -- where a restarted process resumes.

**Peer lost.** The moment a session is lost, every unacked value of its channels
becomes a dead letter of the channel's source port with the reason ``peer lost``, and
the remote nodes fail per their policy (``on_failure="stop"`` stops this network);
what reaches the export for it afterwards (and everything it still holds) is
dead-lettered the same way.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import trio

from reflowpy.bridge.placement import export_name, split_endpoint
from reflowpy.bridge.session import Session
from reflowpy.errors import ActorError, NetworkStopped, PeerLost
from reflowpy.network import events as ev
from reflowpy.network.network import Network
from reflowpy.network.ports import InPort, OutputSink

__all__ = ["INLINE_BUDGET", "Binding"]

#: How long the reader task may deliver (and run plain-``def`` nodes inline) in a row
#: before it leaves the rest of the buffer to the receiver proxy's own task, so a
#: slow node does not hold the socket (credits, pings, other channels) for long.
INLINE_BUDGET = 0.02

_log = logging.getLogger("reflowpy.bridge")

_ENDED = ("lost", "closed")  # the session states after which nothing is sent


class _Frozen:
    """A checkpoint captured at a completion point (what later CREDIT frames carry)."""

    def __init__(self, value: dict[int, int]) -> None:
        self.value = value

    def __call__(self) -> dict[int, int]:
        return self.value


class _Export:
    """The sender proxy of one source port: the kernel ``Receiver`` of its exported
    out-port's sink (see the module docstring). ``order``/``parked`` are the protocol's:
    woken on every value."""

    sink: OutputSink


    def __init__(self, binding: Binding, src: str) -> None:
        self.binding = binding
        self.src = src
        self.node, self.port = split_endpoint(src)
        self.targets: list[tuple[Session, int]] = []
        self.order: deque[InPort] | None = None
        self.parked = True
        #: A push is deferred to a session's writer (see :meth:`wake`).
        self.deferred = False

    def wake(self, port: InPort) -> None:
        """A value arrived: push it now if every target link is quiet (it leaves from
        this task at once), else leave it queued for the writer's next round (a busy
        link batches: one frame and one write for all that arrived meanwhile)."""
        if self.deferred:
            return
        for session, _ in self.targets:
            if session.state == "up" and not session.quiet():
                self.deferred = True
                session.defer(self.push)
                return
        self.binding._push(self)

    def push(self) -> None:
        self.deferred = False
        self.binding._push(self)

    def room(self) -> None:
        """A target channel may have room again (the session's room hook)."""
        if self.sink.queue:
            self.push()

    def reject(self, port: InPort, value: Any, reason: str | None) -> None:
        raise AssertionError("an exported out-port's sink dead-letters by itself")


class Binding:
    """Joins ``net`` to the channels of one or more sessions (see the module docstring).

    ``remote_nodes`` maps a session to the ids of the nodes it hosts (for failure
    reports when it is lost); ``relays`` maps an in-channel to the out-channel (and
    session) it continues on, for peer-to-peer edges this process relays.
    """

    def __init__(self, net: Network) -> None:
        self.net = net
        self._exports: dict[str, _Export] = {}
        self._inputs: list[tuple[Session, int, str, str]] = []
        self._relays: list[tuple[Session, int, Session, int]] = []
        self.sessions: list[Session] = []
        self.remote_nodes: dict[int, tuple[list[str], Callable[[str], str]]] = {}
        self._delivered = trio.Event()
        self.completion = False
        self.lost_letters = 0
        self._failed_sessions: set[int] = set()
        self._relaying = 0  # values a relay took and has not handed on yet

    def _add_session(self, session: Session) -> None:
        if all(s is not session for s in self.sessions):
            self.sessions.append(session)

    def send_channel(self, session: Session, channel: int, src: str) -> None:
        """Feed out-channel ``channel`` from the source port ``src`` ("node.port")."""
        self._add_session(session)
        export = self._exports.get(src)
        if export is None:
            export = self._exports[src] = _Export(self, src)
            export.sink = self.net.attach_receiver(export_name(src), export)
        export.targets.append((session, channel))
        session.on_room(channel, export.room)

    def receive_channel(self, session: Session, channel: int, tgt: str) -> None:
        """Deliver in-channel ``channel`` into the in-port ``tgt`` ("node.port")."""
        self._add_session(session)
        node, port = split_endpoint(tgt)
        self._inputs.append((session, channel, node, port))
        if session.inc[channel].ack_on == "completion":
            self.completion = True

    def relay(self, src: Session, src_channel: int, dst: Session, dst_channel: int) -> None:
        """Forward in-channel ``src_channel`` to out-channel ``dst_channel`` as it is."""
        self._add_session(src)
        self._add_session(dst)
        self._relays.append((src, src_channel, dst, dst_channel))

    async def run(self) -> None:
        """Run every proxy until cancelled."""
        try:
            for export in self._exports.values():
                self._push(export)  # what was queued before we attached
            await self._run_tasks()
        finally:
            for export in self._exports.values():
                export.parked = False  # no pushes from a stopped binding
                for session, channel in export.targets:
                    session.on_room(channel, None)

    async def _run_tasks(self) -> None:
        async with trio.open_nursery() as nursery:
            for session, channel, node, port in self._inputs:
                nursery.start_soon(self._deliver, session, channel, node, port,
                                   name=f"bridge delivery {node}.{port}")
            for relay in self._relays:
                nursery.start_soon(self._relay, *relay)
            if self.completion:
                nursery.start_soon(self._track_completion)
            for session in self.sessions:
                nursery.start_soon(self._watch, session, name="bridge loss watch")

    # -- sender proxy -------------------------------------------------------------------

    def _push(self, export: _Export) -> None:
        """Move what the export holds into its channels, as far as every live channel
        has room (a broadcast goes at the pace of the slowest); a lost session's share
        is dead-lettered. Called from the producing task (a value arrived), from the
        reader (a CREDIT) or on a state change; never waits."""
        sink = export.sink
        queue = sink.queue
        if not queue or not export.parked:
            return
        k = len(queue)
        for session, channel in export.targets:
            if session.state not in _ENDED:
                room = session.out[channel].room()
                if room < k:
                    k = room
        if k <= 0:
            return
        take = sink.take
        values = [take()] if k == 1 else [take() for _ in range(k)]
        for session, channel in export.targets:
            if session.state in _ENDED:
                self._lost(session, export.node, export.port, values)
                continue
            pushed = session.push_nowait(channel, values)
            if pushed < k:  # room was checked above: never, but never silently either
                _log.error("bridge %s: channel %d took %d of %d values", export.src,
                           channel, pushed, k)
                self._lost(session, export.node, export.port, values[pushed:])
        self._delivered.set()

    def _lost(self, session: Session, node: str, port: str, values: Iterable[Any]) -> None:
        """``values`` of ``node.port`` could not go to the lost ``session``."""
        error = self._settle_loss(session)
        for value in values:
            self.net.dead_letter(node, port, value, error, 1)
            self.lost_letters += 1

    def _settle_loss(self, session: Session) -> PeerLost:
        """Once per lost session: every unacked value of its out-channels becomes a dead
        letter of the channel's source port, and the nodes it hosted fail."""
        error = PeerLost(f"peer lost: {session.remote_id or session.session_id}:"
                         f" {session.error or 'unreachable past its deadline'}")
        if id(session) in self._failed_sessions:
            return error
        self._failed_sessions.add(id(session))
        for out in session.out.values():
            node, port = split_endpoint(out.spec.src)
            for value in out.unacked():
                self.net.dead_letter(node, port, value, error, 1)
                self.lost_letters += 1
            out.buffer.clear()
        self._fail_remote_nodes(session, error)
        self._delivered.set()  # progress: the books moved
        return error

    async def _watch(self, session: Session) -> None:
        """Settle a lost session as soon as it is lost, not at the next send: what it
        holds unacked would otherwise wait forever, neither delivered nor reported."""
        while session.state not in ("lost", "closed"):
            await session.changed()
        if session.state == "lost":
            self._settle_loss(session)

    def _fail_remote_nodes(self, session: Session, error: PeerLost) -> None:
        nodes, policy_of = self.remote_nodes.get(id(session), ([], lambda _n: "dead_letter"))
        net = self.net
        for node in nodes:
            failure = ActorError(f"{net.where()}: node {node!r} ran on peer"
                                 f" {session.remote_id!r}: {error}", node=node)
            failure.__cause__ = error
            if net.bus.active:
                net.bus.publish(ev.ActorFailed(network=net.name, actor_id=node,
                                               component="", error=str(error)))
            if policy_of(node) == "stop":
                net.fail(failure)
            else:
                net.report_error(failure)

    # -- receiver proxy -------------------------------------------------------------------

    async def _deliver(self, session: Session, channel: int, node: str, port: str) -> None:
        """The receiver proxy of one in-channel. What arrives is put into the in-port
        while it has room, straight from the session's reader task (no task switch; a
        parked plain-``def`` node even runs inline there, for at most
        :data:`INLINE_BUDGET` seconds in a row); this task takes over for what found
        the port full (it waits for room: backpressure) or the budget left, in order."""
        net = self.net
        target = (node, port)
        send_nowait = partial(net.send_nowait, target)  # values arrive frozen
        holding = False
        clock = time.perf_counter

        def deliver_nowait() -> bool:
            """Put what fits; False when the rest is for this task (it holds a value
            that must go first, the port is full, the time budget ran out, or the
            network stops)."""
            if holding or net.state != "running":
                return False
            until = 0.0

            def put(value: Any) -> bool:  # the first always goes: progress
                nonlocal until
                if not until:
                    until = clock() + INLINE_BUDGET
                elif clock() > until:
                    return False
                return send_nowait(value)

            try:
                if session.take_nowait(channel, put):
                    self._delivered.set()
            except NetworkStopped:
                return False  # the task below dead-letters the rest
            return not session.inc[channel].buffer

        session.on_arrival(channel, deliver_nowait)
        try:
            while True:
                try:
                    await session.wait_arrival(channel)
                except PeerLost:
                    return
                if deliver_nowait():
                    continue
                if not session.inc[channel].buffer:
                    continue
                await trio.lowlevel.checkpoint()  # the budget ran out: let others run
                if not session.inc[channel].buffer:
                    continue
                holding = True
                value = session.take(channel)
                try:
                    await net.send(target, value)  # waits for room; raises once stopped
                except NetworkStopped as exc:
                    net.dead_letter(node, port, value, exc, 1)
                    for value in session.receive_nowait(channel):
                        net.dead_letter(node, port, value, exc, 1)
                    return
                finally:
                    holding = False
                self._delivered.set()
        finally:
            session.on_arrival(channel, None)

    async def _relay(self, src: Session, src_channel: int, dst: Session, dst_channel: int
                     ) -> None:
        """Forward what arrives on ``src_channel`` to ``dst_channel``, a batch at a time
        (whatever is buffered moves together, in order, as credit allows)."""
        spec = src.inc[src_channel].spec
        node, port = split_endpoint(spec.src)
        while True:
            try:
                await src.wait_arrival(src_channel)
            except PeerLost:
                return
            values = src.receive_nowait(src_channel)
            self._relaying += len(values)
            try:
                sent = await dst.send_many(dst_channel, values)
                if sent < len(values):
                    self._lost(dst, node, port, values[sent:])
            finally:
                self._relaying -= len(values)
            self._delivered.set()

    # -- quiescence ---------------------------------------------------------------------

    def busy(self) -> bool:
        """Whether a proxy holds a message (export queues included)."""
        if any(e.sink.queue for e in self._exports.values()):
            return True
        return bool(any(s.inc[c].buffer for s, c, _, _ in self._inputs) or self._relaying
                    or any(s.inc[c].buffer for s, c, _, _ in self._relays))

    async def progress(self) -> None:
        """Wait until a proxy moved something (an export pushed, a delivery was made)."""
        self._delivered = trio.Event()
        await self._delivered.wait()

    # -- completion acks ----------------------------------------------------------------

    def _quiet(self) -> bool:
        # values an export holds have left the kernel's idle accounting: look at them
        return (self.net.is_idle() and all(s.all_acked() for s in self.sessions)
                and not any(e.sink.queue for e in self._exports.values()))

    async def _track_completion(self) -> None:
        net = self.net
        while True:
            if self._quiet():
                marks = {(id(s), c): s.inc[c].delivered for s, c, _, _ in self._inputs}
                checkpoint = {cid: out.next_seq - 1 for s in self.sessions
                              for cid, out in s.out.items()}
                for s, c, _, _ in self._inputs:
                    s.checkpoint = _Frozen(checkpoint)
                    s.complete(c, marks[(id(s), c)])
                self._delivered = trio.Event()
                await self._delivered.wait()
                continue
            if not net.is_idle():
                await net.idle()
                await trio.lowlevel.checkpoint()
                continue
            waits = [s for s in self.sessions if not s.all_acked()]
            if waits:
                await waits[0].progressed()
                continue
            # an export waits for credit: a push sets _delivered
            self._delivered = trio.Event()
            await self._delivered.wait()
