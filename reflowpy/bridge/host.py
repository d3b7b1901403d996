"""Host: the accepting side of bridges -- runs the parts of graphs other peers place here.

A :class:`Host` sits behind ``reflowpy serve``'s ``/bridge`` endpoint and in every
partition worker process. For each connection it runs the HELLO challenge, then:

* a HELLO naming a session it hosts resumes that session on the new connection;
* a HELLO with a graph part starts a **deployment**: the part's :class:`Network` plus a
  :class:`~reflowpy.bridge.binding.Binding` joining it to the session's channels --
  after checking every component against the allow-list and the registry;
* anything else (wrong token, replayed handshake, garbage, unknown session, component
  not allowed) is answered with REJECT and closes that connection only.

**Direct channels** (an edge between two partitions): the part's HELLO names them.
For ``direct_out`` the deployment keeps a session of its own to the receiving
partition (a :class:`~reflowpy.bridge.session.Dialer` with the token the placing
process gave, the session id it minted); for ``direct_in`` it waits for that dialer:
a HELLO naming such a session *attaches* to this deployment (:class:`_Attached`) if it
declares exactly the channels the placing process announced. A dialer with a new
incarnation (the sending partition restarted) restarts the channels' numbering where
it says; a receiving partition that restarted is told, by the HELLO, where to start.

A deployment whose peer stays away past ``deadline`` is stopped (its undelivered
messages become dead letters with the reason ``peer lost``); one whose peer says bye
stops at once.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec
import trio

from reflowpy.bridge.binding import Binding
from reflowpy.bridge.frames import MAX_FRAME, ChannelSpec, Hello
from reflowpy.bridge.peers import transport_for
from reflowpy.bridge.session import Dialer, Session, accept
from reflowpy.bridge.transport import Connection, LinkClosed
from reflowpy.errors import BridgeAuthError, BridgeError, GraphError, PeerLost, ReflowError
from reflowpy.network.graph import Graph
from reflowpy.network.network import Network
from reflowpy.network.registry import Registry

__all__ = ["Host"]

_log = logging.getLogger("reflowpy.bridge")


class _Direct(msgspec.Struct, forbid_unknown_fields=True):
    """One direct link in a part's HELLO: to (``direct_out``) or from (``direct_in``)
    another partition; ``address``/``token`` only for the dialing side."""

    session: str
    location: str
    channels: list[ChannelSpec]
    address: str = ""
    token: str = ""


class _Attached:
    """The receiving end of a direct link: a session of a deployment, dialed by the
    sending partition."""

    def __init__(self, dep: _Deployment, session: Session, sender: str) -> None:
        self.dep = dep
        self.session = session
        self.sender = sender
        self.incarnation = ""
        self.link: trio.CancelScope | None = None

    def adopt(self, hello: Hello) -> Session:
        s = self.session
        if s.state in ("lost", "closed"):
            raise BridgeAuthError(f"session {hello.session} has ended")
        declared = {c.id: c for c in hello.channels}
        if (set(declared) != set(s.inc) or any(
                c.tgt != s.inc[c.id].spec.tgt or c.sender != self.sender
                or c.start < 1 for c in declared.values())):
            raise BridgeAuthError(f"direct link {hello.session}: channels {sorted(declared)}"
                                  " are not the ones announced for it")
        if hello.incarnation != self.incarnation:  # a new sending process
            for c in declared.values():
                s.inc[c.id].reset(c.start)
            self.incarnation = hello.incarnation
        s.remote_id = hello.peer
        return s


class _Deployment:
    def __init__(self, host: Host, session: Session, graph: Graph, location: str,
                 specs: list[Any], deterministic: bool,
                 direct_out: Sequence[_Direct] = (), direct_in: Sequence[_Direct] = ()
                 ) -> None:
        self.host = host
        self.session = session
        self.graph = graph
        self.location = location
        self.net = Network(graph, host.registry, capacity=host.capacity,
                           output_capacity=host.capacity)
        self.binding = Binding(self.net)
        for spec in specs:
            if spec.sender == location:
                session.add_out(spec, start=spec.start, replay=deterministic,
                                buffer_limit=host.buffer_limit)
                self.binding.send_channel(session, spec.id, spec.src)
            else:
                session.add_in(spec, start=spec.start)
                self.binding.receive_channel(session, spec.id, spec.tgt)
        self.dialers: list[Dialer] = []
        #: Messages resent into a restarted receiving partition (direct channels).
        self.replayed = 0
        for d in direct_out:
            out = Session(host.local_id, session_id=d.session, max_frame=host.max_frame)
            for spec in d.channels:
                out.add_out(spec, buffer_limit=host.buffer_limit)
                self.binding.send_channel(out, spec.id, spec.src)
            self.dialers.append(Dialer(
                out, transport_for(d.address), token=d.token, hello=self._hello(out),
                on_incarnation=self._rewind(out), deadline=host.deadline,
                incarnation=host.incarnation, retry_refused=True))
        self.attached: dict[str, _Attached] = {}
        for d in direct_in:
            inc = Session(host.local_id, remote_id=d.location, session_id=d.session,
                          max_frame=host.max_frame)
            for spec in d.channels:
                inc.add_in(spec)
                self.binding.receive_channel(inc, spec.id, spec.tgt)
            self.attached[d.session] = _Attached(self, inc, d.location)
        self.links = 0
        self.link: trio.CancelScope | None = None
        self.down = trio.Event()
        self.done = trio.Event()
        self.scope = trio.CancelScope()

    @staticmethod
    def _hello(out: Session) -> Callable[[], tuple[list[ChannelSpec], Any]]:
        def hello() -> tuple[list[ChannelSpec], Any]:
            # a receiver new to us starts after what it acked (completion: nothing lost)
            return [msgspec.structs.replace(c.spec, start=c.acked + 1)
                    for c in out.out.values()], {"attach": True}
        return hello

    def _rewind(self, out: Session) -> Callable[[str, str], None]:
        def changed(previous: str, new: str) -> None:
            if previous:  # the receiving partition restarted: resend all unacked
                self.replayed += sum(o.next_seq - 1 - o.acked for o in out.out.values())
                for o in out.out.values():
                    o.grant_upto = o.sent_upto = o.acked
                _log.warning("bridge: direct link %s: receiver restarted; resending from"
                             " the last completed messages", out.session_id)
        return changed

    async def run(self) -> None:
        try:
            with self.scope:
                async with self.net, trio.open_nursery() as nursery:
                    nursery.start_soon(self.binding.run)
                    nursery.start_soon(self._watch)
                    for dialer in self.dialers:
                        nursery.start_soon(dialer.run, name=f"bridge direct {self.location}")
        except ReflowError as exc:
            _log.error("bridge deployment %s of peer %r failed: %s", self.location,
                       self.session.remote_id, exc)
        finally:
            self.session.close()
            for dialer in self.dialers:
                dialer.session.close()
            for sid, att in self.attached.items():
                att.session.close()
                if self.host.attached.get(sid) is att:
                    del self.host.attached[sid]
            self.done.set()
            self.host.deployments.pop(self.session.session_id, None)

    async def _watch(self) -> None:
        s = self.session
        while s.state not in ("lost", "closed"):
            if s.state == "up":
                await s.changed()
                continue
            with trio.move_on_after(self.host.deadline) as timer:
                while s.state not in ("up", "lost", "closed"):
                    await s.changed()
            if timer.cancelled_caught:
                s.lose(PeerLost(f"peer {s.remote_id!r} stayed away for {self.host.deadline}"
                                " s (peer lost)"))
        if s.state == "lost":
            _log.warning("bridge: peer %r lost; stopping what it placed here (%s)",
                         s.remote_id, self.location)
        self.scope.cancel()


class Host:
    """Runs graph parts for peers (see the module docstring).

    ``allow`` is the allow-list of components peers may place here (``None``: any
    registered component). ``token`` is what dialers must prove (``--token`` /
    ``REFLOWPY_TOKEN``). ``max_frame`` is the largest decoded frame a peer may send
    (told to it in HELLO, so its sender splits batches to fit).
    """

    def __init__(self, registry: Registry, nursery: trio.Nursery, *, local_id: str,
                 token: str, allow: Iterable[str] | None = None, deadline: float = 30.0,
                 capacity: int = 64, buffer_limit: int = 1024,
                 handshake_timeout: float = 10.0, max_frame: int = MAX_FRAME) -> None:
        self.registry = registry
        self.nursery = nursery
        self.local_id = local_id
        self.token = token
        self.allow = None if allow is None else frozenset(allow)
        self.deadline = deadline
        self.capacity = capacity
        self.buffer_limit = buffer_limit
        self.handshake_timeout = handshake_timeout
        self.max_frame = max_frame
        #: Changes with every process start: a dialer seeing a new one knows we restarted.
        self.incarnation = secrets.token_hex(6)
        self.deployments: dict[str, _Deployment] = {}
        #: Direct links into deployments here, by session id.
        self.attached: dict[str, _Attached] = {}
        self.refused = 0
        self.accepted = 0

    async def handle(self, conn: Connection) -> None:
        """Serve one connection until it ends. Never raises for what a peer sends."""
        try:
            session, hello = await accept(conn, local_id=self.local_id, token=self.token,
                                          on_hello=self._on_hello,
                                          timeout=self.handshake_timeout)
        except (BridgeError, LinkClosed, trio.TooSlowError) as exc:
            self.refused += 1
            level = logging.INFO if getattr(exc, "expected", False) else logging.WARNING
            _log.log(level, "bridge: refused %s: %s", conn.description, exc)
            return
        self.accepted += 1
        dep: _Deployment | _Attached | None = (self.deployments.get(hello.session)
                                               or self.attached.get(hello.session))
        if dep is None:
            return
        if dep.link is not None:
            dep.link.cancel()  # a reconnect before we noticed the old link died
        with trio.CancelScope() as scope:
            dep.link = scope
            try:
                await session.run_link(conn)
            except (LinkClosed, BridgeError) as exc:
                _log.info("bridge: link from %r down: %s", hello.peer, exc)
            finally:
                if dep.link is scope:
                    dep.link = None

    async def _on_hello(self, hello: Hello) -> tuple[Session, str]:
        dep = self.deployments.get(hello.session)
        if dep is not None:
            if dep.session.state in ("lost", "closed"):
                raise BridgeAuthError(f"session {hello.session} has ended")
            return dep.session, self.incarnation
        att = self.attached.get(hello.session)
        if att is not None:
            return att.adopt(hello), self.incarnation
        if isinstance(hello.graph, dict) and hello.graph.get("attach") is True:
            # a direct link before (or again, after a restart, before) the placing
            # process gave us the part it belongs to: the dialer retries
            error = BridgeAuthError(f"direct link {hello.session!r}: no such link (yet)")
            error.expected = True  # type: ignore[attr-defined]
            raise error
        if not isinstance(hello.graph, dict) or "graph" not in hello.graph:
            raise BridgeAuthError(f"unknown session {hello.session!r} and no graph to host")
        try:
            graph = Graph.from_dict(hello.graph["graph"])
        except (GraphError, TypeError, ValueError) as exc:
            raise BridgeError(f"the graph part from peer {hello.peer!r} is invalid: {exc}"
                              ) from None
        for node in graph.nodes.values():
            if self.allow is not None and node.component not in self.allow:
                raise BridgeAuthError(
                    f"node {node.id!r}: component {node.component!r} is not in this peer's"
                    f" allow-list ({', '.join(sorted(self.allow)) or 'empty'})")
            if node.component not in self.registry:
                raise BridgeError(f"node {node.id!r}: component {node.component!r} is not"
                                  " registered on this peer")
        try:
            direct_out = msgspec.convert(hello.graph.get("direct_out", []), list[_Direct])
            direct_in = msgspec.convert(hello.graph.get("direct_in", []), list[_Direct])
        except msgspec.ValidationError as exc:
            raise BridgeError(f"the direct links from peer {hello.peer!r} are invalid: {exc}"
                              ) from None
        location = str(hello.graph.get("location", ""))
        session = Session(self.local_id, remote_id=hello.peer, session_id=hello.session,
                          max_frame=self.max_frame)
        try:
            dep = _Deployment(self, session, graph, location, list(hello.channels),
                              bool(hello.graph.get("deterministic", False)),
                              direct_out, direct_in)
        except ReflowError as exc:
            raise BridgeError(f"cannot host the part from peer {hello.peer!r}: {exc}"
                              ) from None
        self.deployments[hello.session] = dep
        self.attached.update(dep.attached)
        self.nursery.start_soon(dep.run, name=f"bridge deployment {location}")
        return session, self.incarnation

    def statistics(self) -> list[dict[str, Any]]:
        """One entry per hosted deployment: its location and its bridge statistics."""
        return [{"location": d.location, "bridge": d.session.statistics()}
                for d in self.deployments.values()]
