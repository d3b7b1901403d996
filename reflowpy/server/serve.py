"""Serving: Hypercorn on trio, in the same trio run as the networks it hosts.

:func:`serve` opens one nursery that holds both the HTTP server and every hosted
network, resumes the ``restart: always`` executions recorded in the data dir, prints
one ``listening on http://HOST:PORT`` line to stdout when the socket is bound, and
runs until ``shutdown`` is set (the CLI sets it on SIGTERM/SIGINT). Shutting down
stops accepting connections, drains every running network (forced after
``drain_timeout`` seconds) and returns normally, so the process exits 0.

Hypercorn's access log is off (a request line would carry query strings) and its
error log goes to the ``reflowpy.server`` logger; the token is never logged.

Binding an address other than loopback without a token is refused
(:class:`InsecureBind`): anyone who can reach the port could run graphs. ``insecure=True``
(``--insecure``) overrides that, with a warning on every start.

``bridge_listen="HOST:PORT"`` (``--bridge-listen``) also serves the bridge on a port of
its own, with the bridge's own WebSocket listener instead of Hypercorn (faster per
frame; :func:`reflowpy.bridge.endpoint.serve_port`), under the same
rules: the same token and allow-list as ``/bridge``, the loopback-or-token rule above,
TLS when ``bridge_ssl`` is given. It prints ``bridge listening on ws://HOST:PORT/bridge``
after the ``listening on`` line.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from reflowpy.errors import ReflowError, ServerConfigError
from reflowpy.network.registry import Registry, default_registry
from reflowpy.server.app import create_app
from reflowpy.server.hypercorn_fix import apply_hypercorn_fix
from reflowpy.server.state import ServerState

__all__ = ["InsecureBind", "serve", "server_registry"]

_log = logging.getLogger("reflowpy.server")


class InsecureBind(ReflowError):
    """A non-loopback address was to be bound without a token (and without
    ``insecure=True``)."""

DEFAULT_PORT = 3569


def server_registry() -> Registry:
    """The registry a server starts with: the standard components and plugins."""
    return default_registry()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve(
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    data_dir: str | Path | None = None,
    token: str | None = None,
    registry: Registry | None = None,
    shutdown: trio.Event | None = None,
    max_frame: int = 16 * 1024 * 1024,
    drain_timeout: float = 10.0,
    announce: bool = True,
    insecure: bool = False,
    on_state: Callable[[ServerState], None] | None = None,
    bridge_listen: str | None = None,
    bridge_ssl: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
    **limits: Any,
) -> None:
    """Serve until ``shutdown`` is set, then drain and return.

    ``task_status.started((host, port))`` reports the bound address (``port=0`` binds
    an ephemeral port). ``limits`` are passed to :class:`ServerState` (``max_body``,
    ``max_connections``, ``client_queue``, ``event_buffer``, ...). Components sent
    as Python source by FBP clients (``component:setsource``) are enabled on loopback
    or with a token, unless ``allow_setsource`` says otherwise; their code never runs
    in the server but in a sandbox per node, ``setsource_sandbox="process"`` (default,
    a confined subprocess) or ``"docker"`` (a container; stronger isolation).
    """
    if not _is_loopback(host) and token is None:
        if not insecure:
            raise InsecureBind(
                f"refusing to serve {host!r} without a token: anyone who reaches that"
                " address could run graphs on this machine. Set $REFLOWPY_TOKEN or"
                " --token-file, bind 127.0.0.1, or pass --insecure to accept the risk")
        _log.warning("INSECURE: serving %s without a token (--insecure); every client that"
                     " reaches it may run graphs with this server's rights", host)
    bridge_at: tuple[str, int] | None = None
    if bridge_listen is not None:
        from reflowpy.bridge.endpoint import parse_listen

        bridge_at = parse_listen(bridge_listen)
        if not _is_loopback(bridge_at[0]) and token is None:
            if not insecure:
                raise InsecureBind(
                    f"refusing to serve the bridge on {bridge_at[0]!r} without a token:"
                    " anyone who reaches that address could place nodes here. Set"
                    " $REFLOWPY_TOKEN or --token-file, bind 127.0.0.1, or pass --insecure")
            _log.warning("INSECURE: bridge listener on %s without a token (--insecure)",
                         bridge_at[0])
    if shutdown is None:
        shutdown = trio.Event()
    registry = registry if registry is not None else server_registry()
    limits.setdefault("allow_setsource", _is_loopback(host) or token is not None)
    apply_hypercorn_fix()
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("reflowpy.server.http")
    config.websocket_max_message_size = max_frame
    config.graceful_timeout = 2.0
    config.keep_alive_timeout = 30.0
    async with trio.open_nursery() as nursery:
        state = ServerState(registry, nursery, data_dir=data_dir, token=token,
                            stop_timeout=drain_timeout, **limits)
        await state.executions.resume()
        app = create_app(state)
        if on_state is not None:
            on_state(state)
        http_done = trio.Event()

        listening = False

        async def run_http(task_status: trio.TaskStatus[list[str]]) -> None:
            try:
                await hypercorn_serve(app, config, shutdown_trigger=shutdown.wait,  # type: ignore[arg-type]
                                      task_status=task_status)
            except* OSError as group:  # a name that does not resolve, a port in use
                if listening:
                    raise
                exc = _first_leaf(group)
                raise ServerConfigError(f"cannot listen on {config.bind[0]}:"
                                        f" {getattr(exc, 'strerror', None) or exc}") from None
            finally:
                http_done.set()

        binds: list[str] = await nursery.start(run_http)
        listening = True
        bound = binds[0]
        bound_host, _, bound_port = bound.rpartition("://")[2].rpartition(":")
        bridge_scope = trio.CancelScope()
        if bridge_at is not None:
            from reflowpy.bridge.endpoint import serve_port

            async def run_bridge(task_status: trio.TaskStatus[Any]) -> None:
                with bridge_scope:
                    await serve_port(state, *bridge_at, ssl_context=bridge_ssl,
                                     max_frame=max_frame, task_status=task_status)

            try:
                server = await nursery.start(run_bridge)
            except* OSError as group:  # refused before it listened
                exc = _first_leaf(group)
                raise ServerConfigError(
                    f"--bridge-listen {bridge_listen!r}: cannot listen:"
                    f" {getattr(exc, 'strerror', None) or exc}") from None
            scheme = "wss" if bridge_ssl is not None else "ws"
            name = f"[{bridge_at[0]}]" if ":" in bridge_at[0] else bridge_at[0]
            bridge_line = f"bridge listening on {scheme}://{name}:{server.port}/bridge"
        if announce:  # once everything listens: a refused bridge port prints no 'listening'
            print(f"listening on {bound}", flush=True)
            if bridge_at is not None:
                print(bridge_line, flush=True)
            sys.stdout.flush()
        task_status.started((bound_host.strip("[]"), int(bound_port)))
        await shutdown.wait()
        bridge_scope.cancel()  # stop accepting bridge links, as HTTP does
        with trio.move_on_after(config.graceful_timeout + 1):
            await http_done.wait()
        await state.executions.drain(drain_timeout)
        state.storage.close()
        nursery.cancel_scope.cancel()


def _first_leaf(group: BaseException) -> BaseException:
    """The first exception inside (possibly nested) exception groups."""
    while isinstance(group, BaseExceptionGroup) and group.exceptions:
        group = group.exceptions[0]
    return group
