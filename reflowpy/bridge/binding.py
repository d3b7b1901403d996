"""Binding: the two proxies that join a local Network to bridge channels.

Built only on the Network's public API, so it can later become a kernel ``Receiver``:

* a **sender proxy** (:class:`_Pump`) reads the private exported out-port of a source
  port (``net.outputs("__bridge/node.port")``, a bounded queue) and sends each value
  on every channel of that port, waiting for credit -- a slow remote consumer holds
  the pump, the full export queue holds the producer (backpressure, flat memory);
  several channels from one port are a **broadcast**, the slowest sets the pace;
* a **receiver proxy** (:class:`_Deliverer`) takes the next message of an in-channel
  and puts it into the real in-port with ``net.send((node, port), value)``, which
  waits while the port is full; the channel grants credit as its buffer frees.

**Completion acks.** For channels with ``ack_on="completion"`` a tracker confirms a
message only once its whole effect is safe: the network is idle (every message
delivered so far was processed), nothing waits in a pump, and every out-channel is
fully acked downstream. It then acks everything delivered and records, as the
checkpoint, how far each out-channel had sent -- where a restarted process resumes.

**Peer lost.** The moment a session is lost, every unacked value of its channels
becomes a dead letter of the channel's source port with the reason ``peer lost``, and
the remote nodes fail per their policy (``on_failure="stop"`` stops this network);
what a pump sends to it afterwards (and everything the export still holds) is
dead-lettered the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import trio

from reflowpy.bridge.placement import export_name, split_endpoint
from reflowpy.bridge.session import Session
from reflowpy.errors import ActorError, NetworkStopped, PeerLost
from reflowpy.network import events as ev
from reflowpy.network.network import Network, OutputStream

__all__ = ["Binding"]

_log = logging.getLogger("reflowpy.bridge")


class _Frozen:
    """A checkpoint captured at a completion point (what later CREDIT frames carry)."""

    def __init__(self, value: dict[int, int]) -> None:
        self.value = value

    def __call__(self) -> dict[int, int]:
        return self.value


class _Pump:
    def __init__(self, src: str, stream: OutputStream) -> None:
        self.src = src
        self.stream = stream
        self.targets: list[tuple[Session, int]] = []
        self.holding = 0
        self.waiting = False


class Binding:
    """Joins ``net`` to the channels of one or more sessions (see the module docstring).

    ``remote_nodes`` maps a session to the ids of the nodes it hosts (for failure
    reports when it is lost); ``relays`` maps an in-channel to the out-channel (and
    session) it continues on, for peer-to-peer edges this process relays.
    """

    def __init__(self, net: Network) -> None:
        self.net = net
        self._pumps: dict[str, _Pump] = {}
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
        pump = self._pumps.get(src)
        if pump is None:
            pump = self._pumps[src] = _Pump(src, self.net.outputs(export_name(src)))
        pump.targets.append((session, channel))

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
        async with trio.open_nursery() as nursery:
            for pump in self._pumps.values():
                nursery.start_soon(self._pump, pump, name=f"bridge pump {pump.src}")
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

    async def _pump(self, pump: _Pump) -> None:
        stream = pump.stream
        node, port = split_endpoint(pump.src)
        while True:
            pump.waiting = True
            try:
                first = await stream.receive()
            except trio.EndOfChannel:
                return
            finally:
                pump.waiting = False
            values = [first, *stream.drain()]
            pump.holding = len(values)
            for session, channel in pump.targets:
                if session.state in ("lost", "closed"):
                    self._lost(session, node, port, values)
                    continue
                sent = await session.send_many(channel, values)
                if sent < len(values):
                    self._lost(session, node, port, values[sent:])
            pump.holding = 0
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
        parked plain-``def`` node even runs inline there); this task takes over only
        for what found the port full: it waits for room (backpressure), in order."""
        net = self.net
        target = (node, port)
        # The in-port itself, for the non-waiting half of ``Network.send`` (the kernel
        # has no public ``send_nowait`` yet). Values arrive frozen (decode_frame).
        put_nowait = net._resolve_input(target).put_nowait
        holding = False

        def deliver_nowait() -> bool:
            """Put what fits; False when the rest is for this task (it holds a value
            that must go first, the port is full, or the network stops)."""
            if holding or net.state != "running":
                return False
            try:
                if session.take_nowait(channel, put_nowait):
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
        """Whether a proxy holds or is about to take a message (export queues included)."""
        if any(p.holding or not p.waiting for p in self._pumps.values()):
            return True
        if any(s.inc[c].buffer for s, c, _, _ in self._inputs) or self._relaying or any(
                s.inc[c].buffer for s, c, _, _ in self._relays):
            return True
        if not self._pumps:
            return False
        outputs = self.net.statistics()["outputs"]
        return any(outputs[self.net.graph.port_name(export_name(p.src))].queued
                   for p in self._pumps.values())

    async def progress(self) -> None:
        """Wait until a proxy moved something (a pump sent a batch, a delivery was made)."""
        self._delivered = trio.Event()
        await self._delivered.wait()

    # -- completion acks ----------------------------------------------------------------

    def _quiet(self) -> bool:
        if not (self.net.is_idle()
                and all(p.holding == 0 and p.waiting for p in self._pumps.values())
                and all(s.all_acked() for s in self.sessions)):
            return False
        if not self._pumps:
            return True
        # values an export holds have left the kernel's idle accounting: look at them
        outputs = self.net.statistics()["outputs"]
        return all(outputs[self.net.graph.port_name(export_name(p.src))].queued == 0
                   for p in self._pumps.values())

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
            # a pump is about to take (or send) values: it sets _delivered when done
            self._delivered = trio.Event()
            await self._delivered.wait()
