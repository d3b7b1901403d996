"""The partition worker process: ``python -m reflowpy.bridge.worker --listen unix:PATH``.

A :class:`~reflowpy.bridge.cluster.BridgedNetwork` spawns one per partition. The worker
listens on a Unix socket (or ``tcp://host:port``, or ``ws://host:port`` as a standalone
bridge peer without the rest of ``reflowpy serve``), checks every dialer's HELLO against
``REFLOWPY_TOKEN`` and hosts the graph part it is sent (:class:`~reflowpy.bridge.host.Host`).
It exits when its parent dies, or once the part it hosted has ended (bye or peer lost).
A core/Output node hosted here writes its lines to the worker's stdout, marked, and the
parent's :func:`relay_output` hands them to its own sink (``reflowpy run``'s JSON lines).
``--plugin module:function`` calls ``function(registry)`` first, to register components.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import ssl
import sys
from collections.abc import Sequence
from functools import partial
from typing import Any

import trio

from reflowpy.bridge.host import Host
from reflowpy.bridge.transport import serve_stream
from reflowpy.bridge.websocket import serve_websocket
from reflowpy.network.registry import Registry, default_registry

__all__ = ["main", "relay_output", "serve"]

#: How a worker's stdout line carries one core/Output line to its parent.
_OUTPUT = b"OUTPUT "
_encode = json.JSONEncoder(default=repr, ensure_ascii=False).encode


def _to_parent(node: str, value: Any, text: str) -> None:
    """core/Output's sink in a worker: the line goes to the parent (see relay_output)."""
    line = _encode({"node": node, "value": value, "text": text})
    sys.stdout.buffer.write(_OUTPUT + line.encode("utf-8", "backslashreplace") + b"\n")
    sys.stdout.flush()


async def relay_output(stream: trio.abc.ReceiveStream) -> None:
    """Read a partition worker's stdout until it closes and hand each core/Output line
    to this process's sink, as the node would if it ran here: ``reflowpy run``'s
    JSON-lines stdout, or the text on stdout in library use. Other lines are ignored.

    Cancelled (the network is stopping), it still hands on what the pipe holds: the
    worker writes a line before the node's output leaves it, so every line of a value
    that arrived here is in the pipe already and is read without waiting."""
    from reflowpy.components.core import output_sink

    def hand(data: bytes) -> bytes:
        *lines, rest = data.split(b"\n")
        for line in lines:
            if line.startswith(_OUTPUT):
                item = json.loads(line[len(_OUTPUT):])
                sink = output_sink.get()
                if sink is None:
                    print(item["text"], flush=True)
                else:
                    sink(item["node"], item["value"], item["text"])
        return rest

    rest = b""
    try:
        async for chunk in stream:
            rest = hand(rest + chunk)
    finally:
        fileno = getattr(stream, "fileno", None)
        if fileno is not None:
            with contextlib.suppress(OSError):  # BlockingIOError: the pipe is empty
                while data := os.read(fileno(), 1 << 16):
                    rest = hand(rest + data)


def _load_plugins(registry: Registry, plugins: Sequence[str]) -> None:
    for spec in plugins:
        module, _, func = spec.partition(":")
        getattr(importlib.import_module(module), func or "register")(registry)


async def serve(listen: str, *, local_id: str, token: str, plugins: Sequence[str] = (),
                deadline: float = 30.0, once: bool = True,
                allow: Sequence[str] | None = None,
                ssl_context: ssl.SSLContext | None = None) -> None:
    """Host graph parts on ``listen`` until the parent dies or (``once``) the hosted part
    ends. Prints ``LISTENING <address>`` on stdout once it accepts connections."""
    from reflowpy.components.core import output_sink

    output_sink.set(_to_parent)  # core/Output's lines reach the parent's stdout
    registry = default_registry()
    _load_plugins(registry, plugins)
    parent = os.getppid()
    async with trio.open_nursery() as nursery:
        host = Host(registry, nursery, local_id=local_id, token=token, deadline=deadline,
                    allow=allow)
        if listen.startswith(("ws://", "wss://")):
            scheme, _, rest = listen.partition("://")
            if (scheme == "wss") != (ssl_context is not None):
                raise SystemExit(f"--listen {listen!r}: wss:// needs --certfile/--keyfile"
                                 " and ws:// takes none")
            host_name, _, port = rest.partition("/")[0].rpartition(":")
            server = await nursery.start(partial(serve_websocket, ssl_context=ssl_context),
                                         host.handle, host_name, int(port))
            print(f"LISTENING {scheme}://{host_name}:{server.port}/bridge", flush=True)
            await trio.sleep_forever()
        if listen.startswith("unix:"):
            path = listen[5:]
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
            await sock.bind(path)
            sock.listen(16)
            listeners = [trio.SocketListener(sock)]
        elif listen.startswith("tcp://"):
            host_name, _, port = listen[6:].rpartition(":")
            listeners = await trio.open_tcp_listeners(int(port), host=host_name)
        else:
            raise SystemExit(f"--listen {listen!r}: expected unix:PATH or tcp://HOST:PORT")
        await nursery.start(serve_stream, listeners, host.handle)
        print(f"LISTENING {listen}", flush=True)
        hosted = False
        while True:
            await trio.sleep(0.2)
            if os.getppid() != parent:
                break
            if host.deployments:
                hosted = True
            elif hosted and once:
                break
        nursery.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reflowpy.bridge.worker")
    parser.add_argument("--listen", required=True)
    parser.add_argument("--id", default="worker")
    parser.add_argument("--deadline", type=float, default=30.0)
    parser.add_argument("--plugin", action="append", default=[])
    parser.add_argument("--allow", default=None,
                        help="comma-separated components peers may place here (default: any)")
    parser.add_argument("--serve", action="store_true",
                        help="keep serving after a hosted part ends (default for ws://)")
    parser.add_argument("--certfile", default=None, help="TLS certificate (wss://)")
    parser.add_argument("--keyfile", default=None, help="TLS private key (wss://)")
    args = parser.parse_args(argv)
    context = None
    if args.certfile:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.certfile, args.keyfile)
    logging.basicConfig(level=os.environ.get("REFLOWPY_LOG", "WARNING"),
                        format=f"[{args.id}] %(levelname)s %(name)s: %(message)s")
    token = os.environ.get("REFLOWPY_TOKEN", "")
    allow = None if args.allow is None else [a for a in args.allow.split(",") if a]
    trio.run(lambda: serve(args.listen, local_id=args.id, token=token,
                           plugins=args.plugin, deadline=args.deadline,
                           once=not args.serve, allow=allow, ssl_context=context))
    return 0


if __name__ == "__main__":
    sys.exit(main())
