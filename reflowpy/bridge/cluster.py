"""BridgedNetwork: a graph whose nodes run here, in partition workers and on remote peers.

``async with BridgedNetwork(graph) as bn:`` places the graph
(:mod:`reflowpy.bridge.placement`), runs the local part as an ordinary
:class:`~reflowpy.Network` (``bn.network``: send to it, read its outputs, subscribe to
its events), spawns one worker process per partition and supervises it (restarting it
when it dies, within a budget), and keeps one bridge session to every partition and
remote peer. The local side always dials; workers listen on a Unix socket in a private
directory, remote peers on ``/bridge``.

**Restarts.** A worker that dies is started again and the session reconnects to it. The
new process announces a new incarnation; the channels then resume from where they are
known to be safe: into the worker, from the last *completed* message (partitions ack on
completion, so nothing the dead process held is lost: at-least-once); out of the
worker, a deterministic partition (every node ``"deterministic": true``) restarts its
sequence at the checkpoint recorded with that completion, so the replayed outputs carry
the same seqs and this side drops them as duplicates (exactly-once); a non-deterministic
one continues after what was received (replayed inputs may produce duplicates, which
``statistics()`` counts as ``replayed``).

**Stopping.** A clean exit waits until the local network is idle and every message sent
to a peer was acked, then stops the local network (draining), says bye to every peer
(which stops what it hosts) and stops the workers. Messages to a peer that is lost
become dead letters with the reason ``peer lost``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec
import trio

from reflowpy.bridge.binding import Binding
from reflowpy.bridge.events import BridgeStatus
from reflowpy.bridge.frames import MAX_FRAME, ChannelSpec
from reflowpy.bridge.peers import Peers, ssl_context_for, transport_for
from reflowpy.bridge.placement import LOCAL, Placement, place
from reflowpy.bridge.session import BridgeStatistics, Dialer, Session
from reflowpy.bridge.transport import Transport
from reflowpy.errors import BridgeAuthError, BridgeError
from reflowpy.network.graph import Graph
from reflowpy.network.network import Network, OutputStream
from reflowpy.network.registry import Registry
from reflowpy.network.supervision import DeadLetter, Policy

__all__ = ["BridgedNetwork", "network_for"]

_log = logging.getLogger("reflowpy.bridge")


class _Peer:
    def __init__(self, location: str, session: Session, token: str, address: str) -> None:
        self.location = location
        self.session = session
        self.token = token
        self.address = address
        self.dialer: Dialer | None = None
        self.process: trio.Process | None = None
        self.restarts = 0
        self.checkpoint: dict[int, int] = {}
        self.replayed = 0
        self.part_graph: dict[str, Any] = {}
        self.specs: list[ChannelSpec] = []
        self.deterministic = False
        self.nodes: list[str] = []
        #: Direct channels (partition to partition) by the other end's location.
        self.direct_out: dict[str, list[ChannelSpec]] = {}
        self.direct_in: dict[str, list[ChannelSpec]] = {}


class BridgedNetwork:
    """A graph spread over processes (see the module docstring).

    ``placement`` maps node ids to locations (``"partition:NAME"``, ``"remote:URL"`` or
    peer name, ``"local"``), on top of the nodes' own metadata. ``peers`` resolves peer
    names and tokens; ``token`` is what partition workers get (random by default).
    ``deadline`` is how long a peer may stay away before it is lost; ``restarts`` the
    budget of worker restarts per partition. ``worker_plugins`` are ``module:function``
    names each worker calls with its registry (to register extra components).
    ``channel_capacity`` is the receive buffer (the credit) of each bridged edge unless
    the edge declares a capacity: large enough to cover the round trip, as a network
    buffer; ``buffer_limit`` bounds each resend buffer.
    ``transports`` replaces the transport of a location (tests: in memory). ``ack_on``
    maps a location to ``"receipt"`` or ``"completion"`` (partitions default to
    completion: a restarted worker loses nothing; receipt is faster, at-most-once on
    process loss). ``max_frame`` is the largest decoded frame peers may send us (each
    side tells the other its limit in HELLO; senders split batches to fit).
    ``direct`` connects two partitions by a link of their own for the edges between
    them (else this process relays them); ``direct_route(sender, receiver, address)``
    gives the address the sending partition dials (tests: through a cutting proxy).
    """

    def __init__(self, graph: Graph, registry: Registry | None = None, *,
                 placement: Mapping[str, str] | None = None, peers: Peers | None = None,
                 capacity: int = 64, channel_capacity: int = 1024, buffer_limit: int = 4096,
                 output_capacity: int = 1024, policy: Policy | None = None,
                 deadline: float = 30.0, restarts: int = 5,
                 worker_plugins: Sequence[str] = (), ping_interval: float = 1.0,
                 liveness: float = 5.0, compress_threshold: int | None = None,
                 python: str = sys.executable, name: str | None = None,
                 transports: Mapping[str, Transport] | None = None,
                 ack_on: Mapping[str, str] | None = None,
                 max_frame: int = MAX_FRAME, direct: bool = False,
                 direct_route: Callable[[str, str, str], str] | None = None) -> None:
        self.graph = graph
        self.placement: Placement = place(graph, placement, capacity=channel_capacity,
                                          ack_on=ack_on, direct=direct and not any(
                                              loc.startswith("partition:")
                                              for loc in transports or {}))
        self.network = Network(self.placement.local.graph, registry, name=name or graph.name,
                               capacity=capacity, output_capacity=output_capacity,
                               policy=policy)
        self.peers = peers or Peers()
        self.deadline = deadline
        self.restart_budget = restarts
        self.buffer_limit = buffer_limit
        self.worker_plugins = list(worker_plugins)
        self.python = python
        self._transports = dict(transports or {})
        self._route = direct_route or (lambda _a, _b, address: address)
        self._token = secrets.token_hex(16)
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._stopping = False
        self._nursery_cm: Any = None
        self._nursery: trio.Nursery | None = None
        self.binding = Binding(self.network)
        self._peers: dict[str, _Peer] = {}
        receiver: dict[int, str] = {}
        for loc, part in self.placement.parts.items():
            for spec in part.channels:
                if spec.sender != loc:
                    receiver[spec.id] = loc
        session_kw: dict[str, Any] = {"ping_interval": ping_interval, "liveness": liveness,
                                      "max_frame": max_frame}
        if compress_threshold is not None:
            session_kw["compress_threshold"] = compress_threshold
        for loc in self.placement.remote_locations():
            part = self.placement.parts[loc]
            if loc.startswith("remote:"):
                address, token = self.peers.resolve(loc[len("remote:"):])
            else:
                address, token = "", self._token
            peer = _Peer(loc, Session(LOCAL, **session_kw), token, address)
            peer.part_graph = part.graph.to_dict("reflow")
            peer.specs = list(part.channels)
            peer.deterministic = part.deterministic
            peer.nodes = list(part.graph.nodes)
            peer.direct_out = dict(part.direct_out)
            peer.direct_in = dict(part.direct_in)
            self._peers[loc] = peer
        local = self.placement.local
        for spec in local.channels:
            if spec.sender == LOCAL:
                peer = self._peers[receiver[spec.id]]
                peer.session.add_out(spec, buffer_limit=buffer_limit)
                if not spec.src.startswith("relay:"):
                    self.binding.send_channel(peer.session, spec.id, spec.src)
            else:
                peer = self._peers[spec.sender]
                peer.session.add_in(spec)
                if not spec.tgt.startswith("relay:"):
                    self.binding.receive_channel(peer.session, spec.id, spec.tgt)
        for first, second in self.placement.relays.items():
            src = next(p for p in self._peers.values() if first in p.session.inc)
            dst = next(p for p in self._peers.values() if second in p.session.out)
            self.binding.relay(src.session, first, dst.session, second)
        #: One session id per direct link (sender, receiver), minted here.
        self._direct_sessions = {(a, b): secrets.token_hex(8)
                                 for a, p in self._peers.items() for b in p.direct_out}
        for peer in self._peers.values():
            nodes = peer.nodes
            self.binding.remote_nodes[id(peer.session)] = (nodes, self._policy_of)
            peer.session.on_checkpoint = self._checkpointer(peer)

    def _policy_of(self, node: str) -> str:
        meta = self.graph.nodes[node].metadata.get("policy")
        policy = Policy.from_config(meta, node=node) if meta is not None else None
        return (policy or self.network.default_policy).on_failure

    def _checkpointer(self, peer: _Peer) -> Any:
        def record(channel: int, acked: int, checkpoint: dict[int, int]) -> None:
            peer.checkpoint.update(checkpoint)
        return record

    # -- HELLO contents -----------------------------------------------------------------

    def _hello(self, peer: _Peer) -> Any:
        def hello() -> tuple[list[ChannelSpec], Any]:
            s = peer.session
            specs = []
            for spec in peer.specs:
                if spec.id in s.out:  # we send: a fresh receiver starts after what was acked
                    start = s.out[spec.id].acked + 1
                else:  # it sends: deterministic replays from its checkpoint
                    inc = s.inc[spec.id]
                    start = (peer.checkpoint.get(spec.id, 0) + 1 if peer.deterministic
                             else inc.received + 1)
                specs.append(ChannelSpec(spec.id, spec.sender, spec.src, spec.tgt,
                                         spec.capacity, start, spec.ack_on))
            part: dict[str, Any] = {"graph": peer.part_graph, "location": peer.location,
                                    "deterministic": peer.deterministic}
            if peer.direct_out:
                part["direct_out"] = [
                    {"session": self._direct_sessions[peer.location, b], "location": b,
                     "channels": msgspec.to_builtins(chans),
                     "address": self._route(peer.location, b, self._peers[b].address),
                     "token": self._peers[b].token}
                    for b, chans in peer.direct_out.items()]
            if peer.direct_in:
                part["direct_in"] = [
                    {"session": self._direct_sessions[a, peer.location], "location": a,
                     "channels": msgspec.to_builtins(chans)}
                    for a, chans in peer.direct_in.items()]
            return specs, part
        return hello

    def _on_incarnation(self, peer: _Peer) -> Any:
        def changed(previous: str, new: str) -> None:
            if previous:
                s = peer.session
                peer.replayed += sum(o.next_seq - 1 - o.acked for o in s.out.values())
                for out in s.out.values():  # the new process grants afresh
                    out.grant_upto = out.sent_upto = out.acked
                _log.warning("bridge: %s restarted (incarnation %s -> %s); resuming from"
                             " the last completed messages", peer.location, previous, new)
        return changed

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> BridgedNetwork:
        self._nursery_cm = trio.open_nursery()
        self._nursery = await self._nursery_cm.__aenter__()
        try:
            await self.network.start()
            if any(loc.startswith("partition:") for loc in self._peers):
                self._dir = tempfile.TemporaryDirectory(prefix="reflowpy-bridge-")
            socks: dict[str, str] = {}
            for peer in self._peers.values():  # every address first: HELLOs name them
                if (peer.location not in self._transports
                        and peer.location.startswith("partition:")):
                    assert self._dir is not None
                    socks[peer.location] = str(
                        Path(self._dir.name) / f"{secrets.token_hex(4)}.sock")
                    peer.address = f"unix:{socks[peer.location]}"
            for peer in self._peers.values():
                transport = self._transports.get(peer.location)
                if peer.location in socks:
                    await self._nursery.start(self._supervise, peer, socks[peer.location])
                if transport is None:
                    context = (ssl_context_for(self.peers, peer.location[len("remote:"):])
                               if peer.location.startswith("remote:") else None)
                    transport = transport_for(peer.address, ssl_context=context)
                peer.dialer = Dialer(peer.session, transport,
                                     token=peer.token, hello=self._hello(peer),
                                     on_incarnation=self._on_incarnation(peer),
                                     deadline=self.deadline)
                self._nursery.start_soon(peer.dialer.run, name=f"bridge dialer {peer.location}")
            self._nursery.start_soon(self.binding.run, name="bridge binding")
            for peer in self._peers.values():
                self._nursery.start_soon(self._report, peer)
            for peer in self._peers.values():
                assert peer.dialer is not None
                with trio.move_on_after(self.deadline):
                    while not peer.dialer.connected.is_set():
                        if peer.session.state == "lost":
                            break
                        await peer.session.changed()
                if not peer.dialer.connected.is_set():
                    kind = (BridgeAuthError if isinstance(
                        peer.dialer.last_error, BridgeAuthError) else BridgeError)
                    raise kind(f"cannot reach {peer.location} within {self.deadline} s:"
                               f" {peer.dialer.last_error}")
        except BaseException:
            # Stop the network first (its nursery was opened inside ours), then cancel
            # and leave ours with nothing in flight, so only the original error escapes.
            self._stopping = True
            try:
                with contextlib.suppress(Exception):
                    await self.network.stop(drain=False)
            finally:
                self._nursery.cancel_scope.cancel()
                await self._nursery_cm.__aexit__(None, None, None)
                await self._cleanup()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> bool:
        assert self._nursery is not None
        drained = False
        try:
            if exc_type is None:
                await self.drain()  # may be cancelled by the network failing meanwhile
                drained = True
        finally:
            try:
                # always stop the network here: its nursery was opened inside ours and
                # must close first (it raises the network's error, if it failed)
                await self.network.stop(drain=drained)
            finally:
                self._stopping = True
                with trio.CancelScope(shield=True), trio.move_on_after(3):
                    for peer in self._peers.values():
                        await peer.session.say_bye()
                self._nursery.cancel_scope.cancel()
                try:
                    await self._nursery_cm.__aexit__(None, None, None)
                finally:
                    await self._cleanup()
        return False

    async def drain(self) -> None:
        """Wait until the placed graph is quiet: the local network idle, no proxy holding
        a message, and every peer has acked all we sent (with completion acks: processed
        it completely, its outputs received here)."""
        net = self.network
        binding = self.binding
        while True:
            await net.idle()
            if binding.busy():
                with trio.move_on_after(1):  # a lost peer's pump may never report again
                    await binding.progress()
                continue
            for peer in self._peers.values():
                if peer.session.state not in ("lost", "closed"):
                    with contextlib.suppress(BridgeError):
                        await peer.session.wait_acked()
            await trio.lowlevel.checkpoint()
            if net.is_idle() and not binding.busy() and all(
                    p.session.all_acked() or p.session.state in ("lost", "closed")
                    for p in self._peers.values()):
                return

    async def _cleanup(self) -> None:
        for peer in self._peers.values():
            proc = peer.process
            if proc is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    async def _supervise(self, peer: _Peer, sock: str,
                         task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        cmd = [self.python, "-m", "reflowpy.bridge.worker", "--listen", f"unix:{sock}",
               "--id", peer.location, "--deadline", str(self.deadline)]
        for plugin in self.worker_plugins:
            cmd += ["--plugin", plugin]
        env = {**os.environ, "REFLOWPY_TOKEN": peer.token}
        started = False
        while not self._stopping:
            assert self._nursery is not None
            proc: trio.Process = await self._nursery.start(
                lambda task_status: trio.run_process(cmd, env=env, check=False,
                                                     stdout=subprocess.PIPE,
                                                     task_status=task_status))
            from reflowpy.bridge.worker import relay_output  # here: worker runs as __main__

            assert proc.stdout is not None
            self._nursery.start_soon(relay_output, proc.stdout)  # core/Output's lines
            peer.process = proc
            if not started:
                started = True
                task_status.started()
            await proc.wait()
            if self._stopping or peer.session.state in ("lost", "closed"):
                return
            peer.restarts += 1
            _log.warning("bridge: partition worker %s exited with %s (restart %d of %d)",
                         peer.location, proc.returncode, peer.restarts, self.restart_budget)
            if peer.restarts > self.restart_budget:
                peer.session.lose(BridgeError(
                    f"partition {peer.location}: worker died {peer.restarts} times (restart"
                    f" budget {self.restart_budget}); last exit code {proc.returncode}"))
                return

    async def _report(self, peer: _Peer) -> None:
        """Publish BridgeStatus on state changes and once per ping interval."""
        s = peer.session
        bus = self.network.bus
        last = ""
        while True:
            with trio.move_on_after(s.ping_interval):
                while s.state == last:
                    await s.changed()
            if bus.active and (s.state != last or s.state == "up"):
                st = s.statistics()
                bus.publish(BridgeStatus(
                    network=self.network.name, peer=st.peer, location=peer.location,
                    state=st.state, rtt_ms=st.rtt_ms, credits=st.credits,
                    resend_buffer=st.resend_buffer, receive_buffer=st.receive_buffer,
                    reconnects=st.reconnects, bytes_in=st.bytes_in, bytes_out=st.bytes_out,
                    msgs_in=st.msgs_in, msgs_out=st.msgs_out))
            last = s.state
            if last in ("lost", "closed"):
                return

    # -- the Network surface (so callers can use either) --------------------------------

    async def send(self, target: str | tuple[str, str], value: Any) -> None:
        """Send into the local network (see :meth:`reflowpy.Network.send`)."""
        await self.network.send(target, value)

    def outputs(self, name: str) -> OutputStream:
        """Values leaving an exported out-port (see :meth:`reflowpy.Network.outputs`)."""
        return self.network.outputs(name)

    async def idle(self) -> None:
        """Wait until the whole placed graph is quiet (see :meth:`drain`)."""
        await self.drain()

    def dead_letters(self) -> list[DeadLetter]:
        """Messages that could not be processed here (``peer lost`` ones included)."""
        return self.network.dead_letters()

    # -- inspection ---------------------------------------------------------------------

    def process(self, location: str) -> trio.Process | None:
        """The worker process of a partition (``"partition:NAME"``), if running."""
        peer = self._peers.get(location)
        return None if peer is None else peer.process

    def session(self, location: str) -> Session:
        """The bridge session to a partition or remote peer."""
        return self._peers[location].session

    def statistics(self) -> dict[str, Any]:
        """Per peer: bridge statistics, restarts and replayed messages; plus the network's."""
        bridges: dict[str, BridgeStatistics] = {
            loc: p.session.statistics() for loc, p in self._peers.items()}
        return {
            "network": self.network.statistics(),
            "bridges": bridges,
            "restarts": {loc: p.restarts for loc, p in self._peers.items()},
            "replayed": {loc: p.replayed for loc, p in self._peers.items()},
            "lost_letters": self.binding.lost_letters,
        }



def placed(graph: Graph) -> bool:
    """Whether any node of ``graph`` asks to run elsewhere (partition or remote)."""
    return any("partition" in n.metadata or "remote" in n.metadata
               for n in graph.nodes.values())


def network_for(graph: Graph, registry: Registry | None = None, **options: Any
                ) -> Network | BridgedNetwork:
    """A plain :class:`~reflowpy.Network`, or a :class:`BridgedNetwork` when some node
    is placed elsewhere (peers from the file named by ``REFLOWPY_PEERS``)."""
    if not placed(graph):
        return Network(graph, registry, **options)
    from reflowpy.bridge.peers import load_peers

    peers = load_peers(os.environ.get("REFLOWPY_PEERS") or None)
    return BridgedNetwork(graph, registry, peers=peers, **options)
