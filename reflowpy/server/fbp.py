"""The FBP Network Protocol runtime: Flowhub/noflo-ui, fbp-protocol and fbp-spec drive
reflowpy over a WebSocket (subprotocol ``noflo``) at ``/`` and ``/fbp``.

Sub-protocols, as defined by the JSON schemas of the npm package ``fbp-protocol``:

* ``runtime``: ``getruntime`` -> ``runtime`` (+ ``ports`` of the main graph);
  ``packet`` into an exported in-port of a running graph -> ``packetsent``; values
  leaving exported out-ports come back as ``runtime:packet``.
* ``graph``: every editing command. Edits go through :class:`~reflowpy.Graph`
  methods; the graph's own events are translated back into protocol messages and
  sent to **every** connected client, so several editors see each other's changes.
  A graph whose network runs follows the edits live (the kernel subscribes to it).
  Graphs are the server's stored graphs: one uploaded over REST can be opened by id,
  and every edit is saved to the SQLite store, so the graphs survive a restart.
* ``component``: ``list`` (from the registry, with port types), ``getsource``
  (Python source of a component), ``source`` (define a Python component from source).
  A ``source`` component never runs in the server: its module is only parsed here
  (ports from literal ``inports``/``outports`` lists, description from the docstring,
  syntax errors reported at once) and each node runs it as a ``script/python``
  function ``process(inputs, config, state)`` in a sandbox, a subprocess or a Docker
  container (server option ``setsource_sandbox``; see :mod:`reflowpy.script`).
* ``network``: ``start``/``stop``/``getstatus``/``edges``; ``data`` events carry
  NoFlo edge ids (``A() OUT -> IN B()``, ``DATA -> IN B()`` for IIPs);
  ``processerror`` for failed activations; ``stopped`` when a network ends.
* ``trace``: ``start``/``stop``/``clear``/``dump`` (Flowtrace JSON of the messages the
  graph's networks moved while tracing, read from the trace store; ``buffersize``
  bounds a dump to the newest events that fit in that many bytes, the server's
  ``trace_limit`` to that many events; see :mod:`reflowpy.observe.flowtrace`).

Security: with a server token, a connection whose handshake carried the bearer
header (or a session cookie or ticket) is authorized; otherwise it is authorized by
the first message that carries the token as the FBP ``secret``. Until then it gets
nothing but ``error`` replies — no runtime description, no broadcast (graph edits,
packets, data are sent to authorized clients only) — and it is closed after
``auth_timeout`` seconds; such connections count against the guard's caps for
unauthenticated connections. The secret is stripped from every payload and never
sent back.

Robustness: a malformed frame, a frame nested deeper than ``max_depth``, an unknown
command or a failing command gets a protocol ``error`` message and the connection
stays open; each client has an outgoing queue bounded in messages and bytes
(:class:`~reflowpy.server.outbox.Outbox`): a client that sends without reading is no
longer read (so every packet it sent was delivered and acknowledged), and one that
falls behind on broadcasts is dropped and told why; an oversized frame closes that
connection (Hypercorn's frame limit).
"""

from __future__ import annotations

import ast
import contextlib
import datetime
import inspect
import logging
import textwrap
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec
import trio
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from reflowpy.errors import ReflowError
from reflowpy.network import events as ev
from reflowpy.network.actor import ActorContext
from reflowpy.network.graph import IIP, Edge, ExportedPort, Graph, GraphEvent, Group, Node
from reflowpy.network.network import Network
from reflowpy.script.actor import PythonScript
from reflowpy.script.host import Limits, ScriptHost
from reflowpy.server.auth import token_matches
from reflowpy.server.executions import Execution
from reflowpy.server.jsonio import decode_json
from reflowpy.server.outbox import Outbox
from reflowpy.server.schemas import ExecutionPolicy

if TYPE_CHECKING:
    from reflowpy.server.state import ServerState

__all__ = ["PROTOCOL_VERSION", "FbpRuntime", "edge_id", "routes"]

PROTOCOL_VERSION = "0.7"
_log = logging.getLogger("reflowpy.server.fbp")

_ALL_CAPABILITIES = [
    "protocol:runtime",
    "protocol:graph",
    "protocol:component",
    "protocol:network",
    "network:status",
    "network:data",
    "network:control",
    "protocol:trace",
    "component:getsource",
    "component:setsource",
]

_JSON = msgspec.json.Encoder()


class FbpError(Exception):
    """A command failed; the message goes back to the client as a protocol error."""


def edge_id(src: tuple[str, str] | None, tgt: tuple[str, str]) -> str:
    """NoFlo's textual edge id: ``A() OUT -> IN B()`` or ``DATA -> IN B()`` for an IIP."""
    head = "DATA" if src is None else f"{src[0]}() {src[1].upper()}"
    return f"{head} -> {tgt[1].upper()} {tgt[0]}()"


def _port(node: str, port: str, index: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"node": node, "port": port}
    if index is not None:
        out["index"] = index
    return out


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


def _jsonable(value: Any) -> Any:
    try:
        return msgspec.json.decode(_JSON.encode(value))
    except (TypeError, msgspec.EncodeError):
        return repr(value)


class _Client(Outbox):
    """One FBP connection: its :class:`~reflowpy.server.outbox.Outbox` and whether it
    is authorized (only authorized clients receive broadcasts)."""

    def __init__(self, authorized: bool, max_messages: int, max_bytes: int,
                 slot: Any = None) -> None:
        super().__init__(max_messages, max_bytes)
        self.authorized = authorized
        self.slot = slot
        #: ``runtime:packet`` data messages of this client that entered a graph.
        self.delivered = 0

    def authenticate(self) -> None:
        """The client proved the secret: it receives broadcasts from now on."""
        if not self.authorized:
            self.authorized = True
            if self.slot is not None:
                self.slot.authenticate()


class _GraphState:
    """A graph known to the runtime and its network (its trace is in the trace store:
    :class:`reflowpy.observe.flowtrace.FbpTraces`)."""

    def __init__(self, graph: Graph, main: bool) -> None:
        self.graph = graph
        self.main = main
        self.execution: Execution | None = None
        self.events: ev.EventSubscription | None = None
        self.unsubscribe: Callable[[], None] | None = None
        #: ``network:debug``: whether the client asked for debug mode (and whether any
        #: client ever used the command).
        self.debug = False
        self.debug_set = False
        #: ``network:edges``: the edges whose data clients want, as
        #: ``(src node, src port, tgt node, tgt port)``; ``None``: every edge.
        self.edges: set[tuple[str, str, str, str]] | None = None

    def wants(self, src: tuple[str, str] | None, tgt: tuple[str, str]) -> bool:
        """Whether data on this edge is sent (``src`` ``None``: an IIP)."""
        if self.edges is None:
            return True
        if src is None:
            return False
        return (src[0], src[1], tgt[0], tgt[1]) in self.edges


def routes(state: ServerState) -> list[BaseRoute]:
    """The FBP WebSocket routes, ``/`` and ``/fbp``, served by one new
    :class:`FbpRuntime` for ``state``."""
    runtime = FbpRuntime(state)
    return [WebSocketRoute("/", runtime.serve), WebSocketRoute("/fbp", runtime.serve)]


class FbpRuntime:
    """The runtime behind every FBP connection of one server. It drops its editing
    copy of a graph that REST replaced or deleted (``state.on_graph_replaced``)."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        state.on_graph_replaced.append(self.forget)
        self.id = str(uuid.uuid4())
        self.graphs: dict[str, _GraphState] = {}
        self.clients: set[_Client] = set()
        self.main_graph: str | None = None
        self._sources: dict[str, tuple[str, str]] = {}  # component -> (language, code)
        self._handlers: dict[tuple[str, str], Callable[[_Client, dict[str, Any]], Any]] = {
            ("runtime", "getruntime"): self._getruntime,
            ("runtime", "packet"): self._packet,
            ("component", "list"): self._component_list,
            ("component", "getsource"): self._getsource,
            ("component", "source"): self._setsource,
            ("network", "start"): self._start,
            ("network", "stop"): self._stop,
            ("network", "getstatus"): self._getstatus,
            ("network", "edges"): self._edges,
            ("network", "debug"): self._debug,
            ("trace", "start"): self._trace_start,
            ("trace", "stop"): self._trace_stop,
            ("trace", "clear"): self._trace_clear,
            ("trace", "dump"): self._trace_dump,
        }
        for command in ("clear", "addnode", "removenode", "renamenode", "changenode",
                        "addedge", "removeedge", "changeedge", "addinitial", "removeinitial",
                        "addinport", "removeinport", "renameinport", "addoutport",
                        "removeoutport", "renameoutport", "addgroup", "removegroup",
                        "renamegroup", "changegroup"):
            self._handlers[("graph", command)] = getattr(self, f"_graph_{command}")

    @property
    def capabilities(self) -> list[str]:
        """What this runtime can do (``component:setsource`` only when enabled)."""
        caps = list(_ALL_CAPABILITIES)
        if not self.state.allow_setsource:
            caps.remove("component:setsource")
        return caps

    # -- connection ---------------------------------------------------------------

    async def serve(self, websocket: WebSocket) -> None:
        """Run one WebSocket connection until it closes."""
        protocols = websocket.scope.get("subprotocols") or []
        await websocket.accept(subprotocol="noflo" if "noflo" in protocols else None)
        scope_state = websocket.scope.get("state", {})
        authorized = bool(scope_state.get("authorized", False))
        client = _Client(authorized, self.state.client_queue, self.state.client_queue_bytes,
                         scope_state.get("guard"))
        self.clients.add(client)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, websocket, client, nursery.cancel_scope)
                if not authorized and self.state.token is not None:
                    nursery.start_soon(self._auth_deadline, client)
                await self._reader(websocket, client)
                nursery.cancel_scope.cancel()
        finally:
            self.clients.discard(client)

    async def _auth_deadline(self, client: _Client) -> None:
        await trio.sleep(self.state.auth_timeout)
        if not client.authorized:
            client.drop(f"closed: no valid secret within {self.state.auth_timeout:g} s")

    async def _writer(self, websocket: WebSocket, client: _Client,
                      scope: trio.CancelScope) -> None:
        try:
            while True:
                batch = await client.next_batch()
                if batch is None:
                    break
                for data in batch:
                    await websocket.send_text(data.decode())
                    client.written(len(data))
        except (WebSocketDisconnect, OSError, RuntimeError):
            pass
        if client.dropped is not None:
            _log.info("FBP client dropped: %s", client.dropped)
            with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
                await websocket.send_text(_JSON.encode(_error("runtime", client.dropped)
                                                       ).decode())
                await websocket.close(code=1008, reason=client.dropped[:120])
        scope.cancel()

    async def _reader(self, websocket: WebSocket, client: _Client) -> None:
        while True:
            await client.wait_room()
            if client.dropped is not None:
                return
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                client.push(_error("runtime", "binary frames are not part of the FBP"
                                              " protocol; send JSON text"))
                continue
            await self.handle_text(client, text)

    def statistics(self) -> dict[str, Any]:
        """Connected clients, how many are authorized, and bytes queued for them."""
        return {"clients": len(self.clients),
                "authorized": sum(1 for c in self.clients if c.authorized),
                "queued_bytes": sum(c.queued_bytes for c in self.clients),
                "paused": sum(1 for c in self.clients if c.paused),
                "graphs": len(self.graphs)}

    async def handle_text(self, client: _Client, text: str) -> None:
        """Decode, authorize and dispatch one message."""
        try:
            msg = decode_json(text, self.state.max_depth, "the message")
        except msgspec.DecodeError as exc:
            client.push(_error("runtime", f"malformed JSON: {exc}"))
            return
        except ValueError as exc:
            client.push(_error("runtime", str(exc)))
            return
        if not isinstance(msg, dict):
            client.push(_error("runtime", "a message must be a JSON object with protocol,"
                                          " command and payload"))
            return
        protocol, command = msg.get("protocol"), msg.get("command")
        payload = msg.get("payload", {})
        if not isinstance(protocol, str) or not isinstance(command, str):
            client.push(_error("runtime", "a message needs string 'protocol' and 'command'"))
            return
        reply_protocol = protocol if protocol in ("runtime", "graph", "component", "network",
                                                  "trace") else "runtime"
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            client.push(_error(reply_protocol, f"{protocol}:{command}: payload must be an"
                                               " object"))
            return
        secret = msg.get("secret", payload.get("secret"))
        payload = {k: v for k, v in payload.items() if k != "secret"}
        if not client.authorized:
            if self.state.token is not None and token_matches(self.state.token, secret):
                client.authenticate()
            else:
                client.push(_error(reply_protocol, f"{protocol}:{command}: unauthorized;"
                                                   " send the runtime secret"))
                return
        handler = self._handlers.get((protocol, command))
        if handler is None:
            client.push(_error(reply_protocol, f"unknown command {protocol}:{command}"))
            return
        try:
            result = handler(client, payload)
            if inspect.isawaitable(result):
                await result
        except FbpError as exc:
            client.push(_error(reply_protocol, str(exc)))
        except (ReflowError, KeyError, ValueError, TypeError) as exc:
            client.push(_error(reply_protocol, f"{protocol}:{command}: {exc}"))

    def broadcast(self, message: dict[str, Any]) -> None:
        """Send to every authorized client (traces are recorded by the trace store)."""
        for client in list(self.clients):
            if client.authorized:
                client.push(message)

    # -- runtime ---------------------------------------------------------------------

    async def _getruntime(self, client: _Client, payload: dict[str, Any]) -> None:
        out: dict[str, Any] = {
            "type": "reflowpy",
            "version": PROTOCOL_VERSION,
            "capabilities": self.capabilities,
            "allCapabilities": self.capabilities,
            "id": self.id,
            "label": "reflowpy: actor-model dataflow runtime for Python",
        }
        if self.main_graph is not None:
            out["graph"] = self.main_graph
        client.push({"protocol": "runtime", "command": "runtime", "payload": out})
        if self.main_graph is not None:
            client.push(self._ports_message(self.main_graph))

    def _ports_message(self, graph_id: str) -> dict[str, Any]:
        graph = self.graphs[graph_id].graph

        def ports(table: dict[str, ExportedPort], inport: bool) -> list[dict[str, Any]]:
            out = []
            for public, exp in table.items():
                ptype = "any"
                node = graph.nodes.get(exp.node)
                if node is not None and node.component in self.state.registry:
                    info = self.state.registry.describe(node.component)
                    for spec in (info.inports if inport else info.outports):
                        if spec.name == exp.port:
                            ptype = spec.type
                out.append({"id": public, "type": ptype, "required": False,
                            "addressable": False})
            return out

        return {"protocol": "runtime", "command": "ports",
                "payload": {"graph": graph_id, "inPorts": ports(graph.inports, True),
                            "outPorts": ports(graph.outports, False)}}

    async def _packet(self, client: _Client, payload: dict[str, Any]) -> None:
        entry = self._entry(payload)
        port, event = payload.get("port"), payload.get("event")
        if not isinstance(port, str) or event not in ("connect", "begingroup", "data",
                                                      "endgroup", "disconnect"):
            raise FbpError("runtime:packet needs a string port and an event")
        if event == "data":
            ex = entry.execution
            if ex is None or not ex.running:
                raise FbpError(f"graph {payload['graph']!r} is not running; start its"
                               " network before sending packets")
            if entry.graph.port_name(port) not in entry.graph.inports:
                raise FbpError(f"graph {payload['graph']!r} has no exported in-port {port!r}")
            await ex.send(port, payload.get("payload"))
            client.delivered += 1
        ack = {k: payload[k] for k in ("port", "event", "type", "schema", "payload", "graph")
               if k in payload}
        client.push({"protocol": "runtime", "command": "packetsent", "payload": ack})

    # -- component ---------------------------------------------------------------------

    def _component_message(self, name: str) -> dict[str, Any]:
        info = self.state.registry.describe(name)

        def ports(specs: Any) -> list[dict[str, Any]]:
            return [{"id": p.name, "type": p.type, "description": p.description,
                     "required": p.required, "addressable": p.addressable} for p in specs]

        return {"protocol": "component", "command": "component", "payload": {
            "name": name, "description": info.description, "icon": info.icon,
            "subgraph": info.subgraph, "inPorts": ports(info.inports),
            "outPorts": ports(info.outports)}}

    def _component_list(self, client: _Client, payload: dict[str, Any]) -> None:
        names = self.state.registry.names(aliases=True)
        for name in names:
            client.push(self._component_message(name))
        client.push({"protocol": "component", "command": "componentsready",
                     "payload": len(names)})

    def _getsource(self, client: _Client, payload: dict[str, Any]) -> None:
        name = payload.get("name")
        if not isinstance(name, str):
            raise FbpError("component:getsource needs a component name")
        library, _, short = name.rpartition("/")
        graph_entry = None
        if name not in self._sources and name not in self.state.registry:
            try:
                graph_entry = self._entry({"graph": name})
            except FbpError:
                graph_entry = None
        if graph_entry is not None:
            # a graph is a component too: its source is the graph's JSON
            from reflowpy.server.graphs import graph_text

            language, code = "json", graph_text(graph_entry.graph)
        elif name in self._sources:
            language, code = self._sources[name]
        else:
            try:
                component = self.state.registry.get(name)
            except ReflowError as exc:
                raise FbpError(str(exc)) from None
            if isinstance(component, Graph):
                from reflowpy.server.graphs import graph_text

                language, code = "json", graph_text(component)
            else:
                language = "python"
                try:
                    code = textwrap.dedent(inspect.getsource(component))
                except (OSError, TypeError):
                    raise FbpError(f"component {name!r}: its source is not available") from None
        out: dict[str, Any] = {"name": short, "language": language, "code": code}
        if library:
            out["library"] = library
        client.push({"protocol": "component", "command": "source", "payload": out})

    def _setsource(self, client: _Client, payload: dict[str, Any]) -> None:
        if not self.state.allow_setsource:
            raise FbpError("component:source is disabled on this server")
        name, language, code = payload.get("name"), payload.get("language"), payload.get("code")
        if not (isinstance(name, str) and name and isinstance(code, str)):
            raise FbpError("component:source needs name, language and code")
        if language not in ("python", "py"):
            raise FbpError(f"component:source: language {language!r} is not supported;"
                           " send Python")
        library = payload.get("library")
        full = f"{library}/{name}" if isinstance(library, str) and library else name
        component = _source_component(full, code, self.state.setsource_sandbox)
        self.state.registry.register(full, component, replace=True)
        self._sources[full] = ("python", code)
        self.broadcast(self._component_message(full))

    # -- graph -------------------------------------------------------------------------

    def _entry(self, payload: dict[str, Any]) -> _GraphState:
        graph_id = payload.get("graph")
        if graph_id is None:
            raise FbpError("No graph specified")
        entry = self.graphs.get(graph_id) if isinstance(graph_id, str) else None
        if entry is None and isinstance(graph_id, str):
            entry = self._load_stored(graph_id)
        if entry is None:
            raise FbpError("Requested graph not found")
        return entry

    def _track(self, graph_id: str, entry: _GraphState) -> None:
        self.graphs[graph_id] = entry

        def on_event(event: GraphEvent) -> None:
            self._on_graph_event(graph_id, event)

        entry.unsubscribe = entry.graph.subscribe(on_event)

    def _load_stored(self, graph_id: str) -> _GraphState | None:
        """A graph stored through REST (or by an earlier FBP session), opened for editing."""
        from reflowpy.server.graphs import load_graph

        record = self.state.storage.get_graph(graph_id)
        if record is None:
            return None
        try:
            graph = load_graph(record.body, "noflo")
        except ReflowError as exc:
            raise FbpError(f"stored graph {graph_id!r} cannot be loaded: {exc}") from None
        entry = _GraphState(graph, main=False)
        self._track(graph_id, entry)
        return entry

    def _save(self, graph_id: str) -> None:
        from reflowpy.server.graphs import graph_text

        entry = self.graphs.get(graph_id)
        if entry is not None:
            self.state.storage.put_graph(graph_id, entry.graph.name or graph_id,
                                         graph_text(entry.graph))

    def forget(self, graph_id: str) -> None:
        """Drop the editing copy of a graph that REST replaced or deleted (a running
        network keeps its graph until it stops)."""
        entry = self.graphs.pop(graph_id, None)
        if entry is not None and entry.unsubscribe is not None:
            entry.unsubscribe()
        if self.main_graph == graph_id:
            self.main_graph = None

    def _edit(self, entry: _GraphState, fallback: Callable[[], dict[str, Any]] | None,
              action: Callable[[], Any]) -> None:
        """Run a graph edit; the graph events it emits are broadcast by the graph
        subscription. If it emitted nothing (a no-op: the graph layer records no step
        and emits no event for it), send ``fallback()``, since FBP clients wait for the
        echo of every edit they sent."""
        seen: list[GraphEvent] = []
        unsubscribe = entry.graph.subscribe(seen.append)
        try:
            action()
        finally:
            unsubscribe()
        if not seen and fallback is not None:
            self.broadcast(fallback())

    def _graph_clear(self, client: _Client, payload: dict[str, Any]) -> None:
        graph_id = payload.get("id")
        if not isinstance(graph_id, str) or not graph_id:
            raise FbpError("graph:clear needs a graph id")
        old = self.graphs.get(graph_id)
        if old is not None:
            if old.execution is not None and not old.execution.done.is_set():
                old.execution.request_stop("force")
            if old.unsubscribe is not None:
                old.unsubscribe()
        props = {k: payload[k] for k in ("library", "icon", "description")
                 if isinstance(payload.get(k), str)}
        graph = Graph(str(payload.get("name") or graph_id), properties=props)
        entry = _GraphState(graph, bool(payload.get("main", False)))
        self._track(graph_id, entry)
        self._save(graph_id)
        if entry.main:
            self.main_graph = graph_id
        out = {k: payload[k] for k in ("id", "name", "library", "main", "icon", "description")
               if k in payload}
        self.broadcast({"protocol": "graph", "command": "clear", "payload": out})

    def _on_graph_event(self, graph_id: str, event: GraphEvent) -> None:
        self._save(graph_id)
        message = _graph_event_message(graph_id, event)
        if message is not None:
            self.broadcast(message)
        if event.type.endswith(("Inport", "Outport")) and graph_id == self.main_graph:
            self.broadcast(self._ports_message(graph_id))

    def _graph_addnode(self, client: _Client, payload: dict[str, Any]) -> None:
        entry = self._entry(payload)
        node_id, component = payload.get("id"), payload.get("component")
        if not isinstance(node_id, str) or not isinstance(component, str):
            raise FbpError("graph:addnode needs string id and component")
        metadata = payload.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise FbpError("graph:addnode: metadata must be an object")
        self.state.policy.check_node(self.state.registry, node_id, component, metadata)
        self._edit(entry, None, lambda: entry.graph.add_node(node_id, component, metadata))

    def _graph_removenode(self, client: _Client, payload: dict[str, Any]) -> None:
        entry = self._entry(payload)
        self._edit(entry, None, lambda: entry.graph.remove_node(str(payload.get("id"))))

    def _graph_renamenode(self, client: _Client, payload: dict[str, Any]) -> None:
        entry = self._entry(payload)
        old, new = payload.get("from"), payload.get("to")
        if not isinstance(old, str) or not isinstance(new, str) or not new:
            raise FbpError("graph:renamenode needs string from and to")
        self._edit(entry, None, lambda: entry.graph.rename_node(old, new))

    def _graph_changenode(self, client: _Client, payload: dict[str, Any]) -> None:
        entry = self._entry(payload)
        node_id = str(payload.get("id"))
        metadata = payload.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise FbpError("graph:changenode: metadata must be an object")
        node = entry.graph.node(node_id)
        merged = {**node.metadata, **metadata}
        self.state.policy.check_node(self.state.registry, node_id, node.component,
                                     {k: v for k, v in merged.items() if v is not None})

        def unchanged() -> dict[str, Any]:
            node = entry.graph.node(node_id)
            return {"protocol": "graph", "command": "changenode", "payload": {
                "id": node.id, "metadata": _jsonable(node.metadata), "graph": payload["graph"]}}

        self._edit(entry, unchanged,
                   lambda: entry.graph.set_node_metadata(node_id, metadata))

    @staticmethod
    def _endpoint(value: Any, what: str) -> tuple[str, str, int | None]:
        if not isinstance(value, dict) or not isinstance(value.get("node"), str) \
                or not isinstance(value.get("port"), str):
            raise FbpError(f"{what} needs node and port")
        index = value.get("index")
        if isinstance(index, str) and index.isdigit():
            index = int(index)
        if index is not None and not isinstance(index, int):
            raise FbpError(f"{what}: index must be a number")
        return value["node"], value["port"], index

    def _graph_addedge(self, client: _Client, payload: dict[str, Any]) -> None:
        entry = self._entry(payload)
        s = self._endpoint(payload.get("src"), "src")
        t = self._endpoint(payload.get("tgt"), "tgt")
        metadata = payload.get("metadata") or {}
        def fallback() -> dict[str, Any]:
            return {"protocol": "graph", "command": "addedge", "payload": {
                "src": _port(*s), "tgt": _port(*t), "metadata": _jsonable(metadata),
                "graph": payload["graph"]}}

        self._edit(entry, fallback, lambda: entry.graph.add_edge(
            s[0], s[1], t[0], t[1], src_index=s[2], tgt_index=t[2], metadata=metadata))

    def _graph_removeedge(self, client: _Client, payload: dict[str, Any]) -> None:
        entry = self._entry(payload)
        s = self._endpoint(payload.get("src"), "src")
        t = self._endpoint(payload.get("tgt"), "tgt")
        self._edit(entry, None, lambda: entry.graph.remove_edge(
            s[0], s[1], t[0], t[1], src_index=s[2], tgt_index=t[2]))

    def _graph_changeedge(self, client: _Client, payload: dict[str, Any]) -> None:
        entry = self._entry(payload)
        s = self._endpoint(payload.get("src"), "src")
        t = self._endpoint(payload.get("tgt"), "tgt")
        metadata = payload.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise FbpError("graph:changeedge: metadata must be an object")

        def unchanged() -> dict[str, Any]:
            edge = entry.graph.find_edge(s[0], s[1], t[0], t[1], src_index=s[2],
                                         tgt_index=t[2])
            return {"protocol": "graph", "command": "changeedge", "payload": {
                "src": _port(*s), "tgt": _port(*t), "metadata": _jsonable(edge.metadata),
                "graph": payload["graph"]}}

        self._edit(entry, unchanged, lambda: entry.graph.set_edge_metadata(
            s[0], s[1], t[0], t[1], metadata, src_index=s[2], tgt_index=t[2]))

    def _graph_addinitial(self, client: _Client, payload: dict[str, Any]) -> None:
        entry = self._entry(payload)
        src = payload.get("src")
        if not isinstance(src, dict) or "data" not in src:
            raise FbpError("graph:addinitial needs src.data")
        t = self._endpoint(payload.get("tgt"), "tgt")
        metadata = payload.get("metadata") or {}
        self._edit(entry, None, lambda: entry.graph.add_iip(
            src["data"], t[0], t[1], index=t[2], metadata=metadata))

    def _graph_removeinitial(self, client: _Client, payload: dict[str, Any]) -> None:
        entry = self._entry(payload)
        t = self._endpoint(payload.get("tgt"), "tgt")
        self._edit(entry, None, lambda: entry.graph.remove_iip(t[0], t[1], index=t[2]))

    def _exported(self, payload: dict[str, Any], command: str) -> tuple[str, str, str]:
        public, node, port = payload.get("public"), payload.get("node"), payload.get("port")
        if not all(isinstance(v, str) and v for v in (public, node, port)):
            raise FbpError(f"graph:{command} needs public, node and port")
        return str(public), str(node), str(port)

    def _graph_addinport(self, client: _Client, payload: dict[str, Any]) -> None:
        entry = self._entry(payload)
        public, node, port = self._exported(payload, "addinport")
        meta = payload.get("metadata") or {}
        self._edit(entry, None, lambda: entry.graph.add_inport(public, node, port, metadata=meta))

    def _graph_addoutport(self, client: _Client, payload: dict[str, Any]) -> None:
        entry = self._entry(payload)
        public, node, port = self._exported(payload, "addoutport")
        meta = payload.get("metadata") or {}
        self._edit(entry, None,
                   lambda: entry.graph.add_outport(public, node, port, metadata=meta))

    def _graph_removeinport(self, client: _Client, payload: dict[str, Any]) -> None:
        entry = self._entry(payload)
        self._edit(entry, None, lambda: entry.graph.remove_inport(str(payload.get("public"))))

    def _graph_removeoutport(self, client: _Client, payload: dict[str, Any]) -> None:
        entry = self._entry(payload)
        self._edit(entry, None, lambda: entry.graph.remove_outport(str(payload.get("public"))))

    def _rename_exported(self, payload: dict[str, Any], kind: str) -> None:
        entry = self._entry(payload)
        old, new = payload.get("from"), payload.get("to")
        if not isinstance(old, str) or not isinstance(new, str) or not new:
            raise FbpError(f"graph:rename{kind} needs string from and to")
        rename = entry.graph.rename_inport if kind == "inport" else entry.graph.rename_outport
        self._edit(entry, None, lambda: rename(old, new))

    def _graph_renameinport(self, client: _Client, payload: dict[str, Any]) -> None:
        self._rename_exported(payload, "inport")

    def _graph_renameoutport(self, client: _Client, payload: dict[str, Any]) -> None:
        self._rename_exported(payload, "outport")

    def _graph_addgroup(self, client: _Client, payload: dict[str, Any]) -> None:
        entry = self._entry(payload)
        name, nodes = payload.get("name"), payload.get("nodes")
        if not isinstance(name, str) or not isinstance(nodes, list):
            raise FbpError("graph:addgroup needs name and nodes")
        meta = payload.get("metadata") or {}
        self._edit(entry, None, lambda: entry.graph.add_group(
            name, [str(n) for n in nodes], meta))

    def _graph_removegroup(self, client: _Client, payload: dict[str, Any]) -> None:
        entry = self._entry(payload)
        self._edit(entry, None, lambda: entry.graph.remove_group(str(payload.get("name"))))

    def _graph_renamegroup(self, client: _Client, payload: dict[str, Any]) -> None:
        entry = self._entry(payload)
        old, new = payload.get("from"), payload.get("to")
        if not isinstance(old, str) or not isinstance(new, str) or not new:
            raise FbpError("graph:renamegroup needs string from and to")
        self._edit(entry, None, lambda: entry.graph.rename_group(old, new))

    def _graph_changegroup(self, client: _Client, payload: dict[str, Any]) -> None:
        entry = self._entry(payload)
        meta = payload.get("metadata") or {}
        if not isinstance(meta, dict):
            raise FbpError("graph:changegroup: metadata must be an object")
        name = str(payload.get("name"))

        def unchanged() -> dict[str, Any]:
            return {"protocol": "graph", "command": "changegroup", "payload": {
                "name": name, "metadata": _jsonable(entry.graph.group(name).metadata),
                "graph": payload["graph"]}}

        self._edit(entry, unchanged, lambda: entry.graph.set_group_metadata(name, meta))

    # -- network -----------------------------------------------------------------------

    def _status(self, graph_id: str) -> dict[str, Any]:
        entry = self.graphs[graph_id]
        ex = entry.execution
        started = ex is not None and not ex.done.is_set()
        running = started and ex is not None and ex.net is not None and not ex.net.is_idle()
        out: dict[str, Any] = {"graph": graph_id, "running": running, "started": started}
        if entry.debug_set:
            # only for clients that use network:debug: fbp-protocol's suite compares
            # the status payload field by field
            out["debug"] = entry.debug
            if ex is not None:
                out["uptime"] = ex.uptime if started else ex.last_uptime
        return out

    async def _start(self, client: _Client, payload: dict[str, Any]) -> None:
        entry = self._entry(payload)
        graph_id = payload["graph"]
        if entry.execution is not None and not entry.execution.done.is_set():
            out = self._status(graph_id)
            out.pop("uptime", None)
            out.update(time=_now_iso())
            client.push({"protocol": "network", "command": "started", "payload": out})
            return

        self.state.policy.check_graph(entry.graph, self.state.registry)

        def subscribe(net: Network) -> None:
            entry.events = net.events(self.state.event_buffer)
            self._traces.network(graph_id, net)  # trace:start recordings (observe)

        try:
            ex = await self.state.executions.start(
                entry.graph, graph_id=graph_id, policy=ExecutionPolicy(),
                execution_id=f"fbp-{graph_id}-{uuid.uuid4().hex[:8]}", persist=False,
                on_network=subscribe)
        except ReflowError as exc:
            raise FbpError(f"graph {graph_id!r} could not start: {exc}") from None
        entry.execution = ex
        ex.on_output.append(lambda port, value: self.broadcast(
            {"protocol": "runtime", "command": "packet", "payload": {
                "port": port, "event": "data", "payload": _jsonable(value),
                "graph": graph_id}}))
        ex.on_done.append(lambda done: self._network_ended(graph_id, done))
        self.broadcast({"protocol": "network", "command": "started", "payload": {
            "graph": graph_id, "time": _now_iso(), "started": True, "running": True}})
        for iip in entry.graph.iips:
            if not entry.wants(None, (iip.tgt.node, iip.tgt.port)):
                continue
            self.broadcast({"protocol": "network", "command": "data", "payload": {
                "id": edge_id(None, (iip.tgt.node, iip.tgt.port)), "graph": graph_id,
                "tgt": _port(iip.tgt.node, iip.tgt.port, iip.tgt.index),
                "data": _jsonable(iip.data)}})
        if entry.events is not None:
            self.state.nursery.start_soon(self._forward_events, graph_id, entry, entry.events)

    async def _forward_events(self, graph_id: str, entry: _GraphState,
                              events: ev.EventSubscription) -> None:
        async for event in events:
            if isinstance(event, ev.MessageSent) and event.to_actor:
                if not entry.wants((event.from_actor, event.from_port),
                                   (event.to_actor, event.to_port)):
                    continue
                self.broadcast({"protocol": "network", "command": "data", "payload": {
                    "id": edge_id((event.from_actor, event.from_port),
                                  (event.to_actor, event.to_port)),
                    "graph": graph_id,
                    "src": _port(event.from_actor, event.from_port),
                    "tgt": _port(event.to_actor, event.to_port),
                    "data": _jsonable(event.message)}})
            elif isinstance(event, ev.ActorFailed) and not event.will_retry:
                self.broadcast({"protocol": "network", "command": "processerror", "payload": {
                    "id": event.actor_id, "error": event.error or event.error_type,
                    "graph": graph_id}})
            elif isinstance(event, ev.NetworkShutdown) and event.error:
                self.broadcast({"protocol": "network", "command": "error", "payload": {
                    "message": event.error, "graph": graph_id}})

    def _network_ended(self, graph_id: str, ex: Execution) -> None:
        entry = self.graphs.get(graph_id)
        if entry is not None and entry.execution is ex:
            entry.events = None
        self.broadcast({"protocol": "network", "command": "stopped", "payload": {
            "graph": graph_id, "time": _now_iso(), "uptime": ex.last_uptime,
            "running": False, "started": False}})

    async def _stop(self, client: _Client, payload: dict[str, Any]) -> None:
        entry = self._entry(payload)
        ex = entry.execution
        if ex is None or ex.done.is_set():
            client.push({"protocol": "network", "command": "stopped", "payload": {
                "graph": payload["graph"], "time": _now_iso(), "running": False,
                "started": False}})
            return
        await ex.stop("drain", timeout=self.state.stop_timeout)

    def _getstatus(self, client: _Client, payload: dict[str, Any]) -> None:
        self._entry(payload)
        client.push({"protocol": "network", "command": "status",
                     "payload": self._status(payload["graph"])})

    def _edges(self, client: _Client, payload: dict[str, Any]) -> None:
        entry = self._entry(payload)
        edges = payload.get("edges")
        if not isinstance(edges, list):
            raise FbpError("network:edges needs a list of edges")
        selected: set[tuple[str, str, str, str]] = set()
        for i, edge in enumerate(edges):
            if not isinstance(edge, dict):
                raise FbpError(f"network:edges: edge {i} must be an object with src and tgt")
            src = self._endpoint(edge.get("src"), f"network:edges: edge {i} src")
            tgt = self._endpoint(edge.get("tgt"), f"network:edges: edge {i} tgt")
            selected.add((src[0], src[1], tgt[0], tgt[1]))
        entry.edges = selected
        client.push({"protocol": "network", "command": "edges",
                     "payload": {"graph": payload["graph"], "edges": edges}})

    def _debug(self, client: _Client, payload: dict[str, Any]) -> None:
        entry = self._entry(payload)
        enable = payload.get("enable")
        if not isinstance(enable, bool):
            raise FbpError("network:debug needs enable: true or false")
        entry.debug = enable
        entry.debug_set = True
        client.push({"protocol": "network", "command": "status",
                     "payload": self._status(payload["graph"])})

    # -- trace -------------------------------------------------------------------------

    @property
    def _traces(self) -> Any:
        """The trace store's FBP backing (:class:`reflowpy.observe.flowtrace.FbpTraces`)."""
        return self.state.observe.fbp  # type: ignore[attr-defined]

    def _trace_start(self, client: _Client, payload: dict[str, Any]) -> None:
        entry = self._entry(payload)
        self._traces.start(payload["graph"], entry.execution.net if entry.execution else None,
                           buffersize=payload.get("buffersize"))
        client.push({"protocol": "trace", "command": "start",
                     "payload": {"graph": payload["graph"]}})

    def _trace_stop(self, client: _Client, payload: dict[str, Any]) -> None:
        self._entry(payload)
        self._traces.stop(payload["graph"])
        client.push({"protocol": "trace", "command": "stop",
                     "payload": {"graph": payload["graph"]}})

    async def _trace_clear(self, client: _Client, payload: dict[str, Any]) -> None:
        self._entry(payload)
        await self._traces.clear(payload["graph"])
        client.push({"protocol": "trace", "command": "clear",
                     "payload": {"graph": payload["graph"]}})

    async def _trace_dump(self, client: _Client, payload: dict[str, Any]) -> None:
        entry = self._entry(payload)
        from reflowpy.server.graphs import dump_graph

        flowtrace = {
            "header": {"runtime": {"id": self.id, "type": "reflowpy"},
                       "graphs": {payload["graph"]: dump_graph(entry.graph)},
                       "main": payload["graph"]},
            "events": await self._traces.dump(payload["graph"]),
        }
        client.push({"protocol": "trace", "command": "dump", "payload": {
            "graph": payload["graph"], "type": "flowtrace.json",
            "flowtrace": _JSON.encode(flowtrace).decode()}})


def _error(protocol: str, message: str) -> dict[str, Any]:
    return {"protocol": protocol, "command": "error", "payload": {"message": message}}


def _graph_event_message(graph_id: str, event: GraphEvent) -> dict[str, Any] | None:
    """The graph-protocol message that announces ``event``, if it has one."""
    kind, before, after = event.type, event.before, event.after
    payload: dict[str, Any]
    if kind == "AddNode" and isinstance(after, Node):
        payload = {"id": after.id, "component": after.component,
                   "metadata": _jsonable(after.metadata)}
    elif kind == "RemoveNode" and isinstance(before, Node):
        payload = {"id": before.id}
    elif kind == "RenameNode":
        payload = {"from": str(before), "to": str(after)}
    elif kind == "ChangeNode" and isinstance(after, Node):
        payload = {"id": after.id, "metadata": _jsonable(after.metadata)}
    elif kind in ("AddConnection", "ChangeConnection") and isinstance(after, Edge):
        payload = {"src": _port(after.src.node, after.src.port, after.src.index),
                   "tgt": _port(after.tgt.node, after.tgt.port, after.tgt.index),
                   "metadata": _jsonable(after.metadata)}
        kind = "addedge" if kind == "AddConnection" else "changeedge"
    elif kind == "RemoveConnection" and isinstance(before, Edge):
        payload = {"src": _port(before.src.node, before.src.port, before.src.index),
                   "tgt": _port(before.tgt.node, before.tgt.port, before.tgt.index)}
    elif kind == "AddInitial" and isinstance(after, IIP):
        payload = {"src": {"data": _jsonable(after.data)},
                   "tgt": _port(after.tgt.node, after.tgt.port, after.tgt.index),
                   "metadata": _jsonable(after.metadata)}
    elif kind == "RemoveInitial" and isinstance(before, IIP):
        payload = {"src": {"data": _jsonable(before.data)},
                   "tgt": _port(before.tgt.node, before.tgt.port, before.tgt.index)}
    elif kind in ("AddInport", "AddOutport"):
        public, exp = after
        payload = {"public": public, "node": exp.node, "port": exp.port}
        if exp.metadata:
            payload["metadata"] = _jsonable(exp.metadata)
    elif kind in ("RemoveInport", "RemoveOutport"):
        payload = {"public": before[0]}
    elif kind in ("RenameInport", "RenameOutport", "RenameGroup"):
        payload = {"from": str(before if isinstance(before, str) else before[0]),
                   "to": str(after if isinstance(after, str) else after[0])}
    elif kind == "AddGroup" and isinstance(after, Group):
        payload = {"name": after.name, "nodes": list(after.nodes),
                   "metadata": _jsonable(after.metadata)}
    elif kind == "RemoveGroup" and isinstance(before, Group):
        payload = {"name": before.name}
    elif kind == "ChangeGroup" and isinstance(after, Group):
        payload = {"name": after.name, "metadata": _jsonable(after.metadata)}
    else:
        return None
    payload["graph"] = graph_id
    command = {"RemoveConnection": "removeedge", "AddInitial": "addinitial",
               "RemoveInitial": "removeinitial"}.get(kind, kind.lower())
    return {"protocol": "graph", "command": command, "payload": payload}


_SOURCE_METADATA = ("limits", "config")  # what node metadata may set on a setsource node


class _SourceComponent(PythonScript):
    """A component defined over FBP ``component:source``: the client's Python module,
    run by :class:`~reflowpy.script.actor.PythonScript` in the server's setsource
    sandbox. Ports come from the module's ``inports``/``outports`` lists; node
    metadata may set only ``limits`` and ``config``."""

    code: ClassVar[str] = ""
    sandbox: ClassVar[str] = "process"

    @classmethod
    def ports_for(cls, config: Mapping[str, Any]) -> tuple[list[str], list[str]]:
        """The ports the source declared (node metadata cannot change them)."""
        return ([str(p) for p in cls.inports], [str(p) for p in cls.outports])

    def _make_host(self, ctx: ActorContext, limits: Limits) -> ScriptHost:
        cfg: dict[str, Any] = {k: ctx.config[k] for k in _SOURCE_METADATA if k in ctx.config}
        cfg.update(source=self.code, entry="process", sandbox=self.sandbox)
        return self._python_host(ctx, limits, cfg)


def _literal_ports(name: str, tree: ast.Module, key: str, default: str) -> list[str]:
    """The module-level literal list ``key = [...]`` of port names, or ``[default]``."""
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets, value = [stmt.target], stmt.value
        else:
            continue
        if not any(isinstance(t, ast.Name) and t.id == key for t in targets):
            continue
        try:
            ports = ast.literal_eval(value)
        except ValueError:
            ports = None
        if (not isinstance(ports, list | tuple) or not ports
                or not all(isinstance(p, str) and p for p in ports)):
            raise FbpError(f"component {name!r}: {key} must be a literal list of port"
                           f" names, e.g. {key} = [{default!r}] (line {stmt.lineno})")
        if len(set(ports)) != len(ports):
            raise FbpError(f"component {name!r}: {key} names a port twice: {list(ports)}")
        return list(ports)
    return [default]


def _defines(tree: ast.Module, name: str) -> bool:
    """Whether the module binds ``name`` at top level (def, assignment or import)."""
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef) and stmt.name == name:
            return True
        if isinstance(stmt, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in stmt.targets):
            return True
        if isinstance(stmt, ast.Import | ast.ImportFrom) and any(
                (a.asname or a.name.partition(".")[0]) == name for a in stmt.names):
            return True
    return False


def _source_component(name: str, code: str, sandbox: str) -> type[_SourceComponent]:
    """A sandboxed component class from the Python module ``code``.

    Nothing of ``code`` runs here: it is only parsed. The module defines
    ``process(inputs, config, state)`` (returning ``{port: value}``; ``send_output``
    and ``log`` are available), optionally literal ``inports``/``outports`` lists
    (default ``["in"]``/``["out"]``) and a docstring (the component's description).
    Every node of the component runs the module in its own ``sandbox`` (``process``
    or ``docker``) when its network starts.
    """
    try:
        tree = ast.parse(code, filename=f"<component {name}>")
    except SyntaxError as exc:
        raise FbpError(f"component {name!r}: syntax error at line {exc.lineno}:"
                       f" {exc.msg}") from None
    except ValueError as exc:  # e.g. NUL bytes in the source
        raise FbpError(f"component {name!r}: the source cannot be parsed: {exc}") from None
    if not _defines(tree, "process"):
        raise FbpError(f"component {name!r}: the source defines no top-level function"
                       " process(inputs, config, state) returning {port: value}")
    inports = _literal_ports(name, tree, "inports", "in")
    outports = _literal_ports(name, tree, "outports", "out")
    description = ast.get_docstring(tree) or (
        f"Python component {name!r} from component:source, run in a {sandbox} sandbox.")
    short = name.rpartition("/")[2]
    cls_name = short if short.isidentifier() else "SourceComponent"
    return type(cls_name, (_SourceComponent,), {
        "__module__": __name__, "__doc__": description, "description": description,
        "inports": tuple(inports), "outports": tuple(outports), "code": code,
        "sandbox": sandbox})
