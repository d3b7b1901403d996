"""The ``reflowpy`` command line: one subcommand per function.

Each subcommand is a function decorated with :func:`subcommand` that receives the
argparse sub-parsers object, adds its own parser and sets ``func`` to a handler
``handler(args) -> int`` (the exit status)::

    @subcommand
    def _run(sub):
        p = sub.add_parser("run", help="run a graph until it is idle")
        p.add_argument("file")
        p.set_defaults(func=_run_main)

Exit status: 0 success, 1 the command found problems (``validate``), 2 usage
errors and unreadable graph files (the message goes to stderr, no traceback).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from reflowpy.errors import GraphFormatError, ReflowError

__all__ = ["cmd_serve", "main", "subcommand"]

SubParsers = Any  # argparse._SubParsersAction[argparse.ArgumentParser] (private type)
_SUBCOMMANDS: list[Callable[[SubParsers], None]] = []


def subcommand(configure: Callable[[SubParsers], None]) -> Callable[[SubParsers], None]:
    """Register a function that adds one subcommand to the ``reflowpy`` parser."""
    _SUBCOMMANDS.append(configure)
    return configure


def _error(message: str) -> int:
    print(f"reflowpy: error: {message}", file=sys.stderr)
    return 2


def _load_registry(spec: str | None) -> Any:
    """``None`` -> no registry; ``default`` -> ``rf.default_registry()``; ``module:attr``
    -> that Registry object (or a function returning one)."""
    if not spec:
        return None
    import reflowpy

    if spec == "default":
        return reflowpy.default_registry()
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise ReflowError(f"--registry {spec!r}: expected 'default' or MODULE:ATTR")
    obj = getattr(importlib.import_module(module_name), attr)
    registry = obj() if callable(obj) and not isinstance(obj, reflowpy.Registry) else obj
    if not isinstance(registry, reflowpy.Registry):
        raise ReflowError(f"--registry {spec!r} is a {type(registry).__name__}, not a Registry")
    return registry


# -- run ----------------------------------------------------------------------------------


def _parse_inputs(pairs: Sequence[str]) -> list[tuple[str, Any]]:
    inputs: list[tuple[str, Any]] = []
    for pair in pairs:
        port, sep, text = pair.partition("=")
        if not sep or not port:
            raise ReflowError(f"--input {pair!r}: expected PORT=JSON (e.g. numbers=[1,2])")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text  # a bare word is a string, as on a shell it is meant to be
        inputs.append((port, value))
    return inputs


async def _run_graph(graph: Any, registry: Any, inputs: list[tuple[str, Any]],
                     timeout: float | None) -> int:
    import math

    import trio

    from reflowpy.bridge.cluster import network_for  # remote/partition nodes placed

    net: Any = network_for(graph, registry)
    encode = json.JSONEncoder(default=repr, ensure_ascii=False).encode

    async def pump(name: str) -> None:
        async for value in net.outputs(name):
            sys.stdout.write(encode({"port": name, "value": value}) + "\n")
            sys.stdout.flush()

    with trio.move_on_after(math.inf if timeout is None else timeout) as scope:
        async with net, trio.open_nursery() as nursery:
            for name in graph.outports:
                nursery.start_soon(pump, name)
            for port, value in inputs:
                await net.send(port, value)
            await net.idle()
            nursery.cancel_scope.cancel()  # what is left is printed below
    for name in graph.outports:  # values taken after the pumps stopped, and stop-flushes
        for value in net.outputs(name).drain():
            sys.stdout.write(encode({"port": name, "value": value}) + "\n")
    if scope.cancelled_caught:
        print(f"reflowpy run: not idle after {timeout:g} s; stopped", file=sys.stderr)
        return 1
    for letter in net.dead_letters():
        print(f"reflowpy run: dead letter {letter.id}: node {letter.node!r} port"
              f" {letter.port!r}: {letter.error_type}: {letter.error}", file=sys.stderr)
    return 1 if net.dead_letters() else 0


def _run_main(args: argparse.Namespace) -> int:
    import trio

    import reflowpy as rf

    try:
        graph = rf.Graph.load(args.file)
        registry = _load_registry(args.registry or "default")
        inputs = _parse_inputs(args.input)
        return trio.run(_run_graph, graph, registry, inputs, args.timeout)
    except BaseException as exc:
        leaf = _single(exc)
        if isinstance(leaf, KeyboardInterrupt):
            print("reflowpy run: interrupted; network stopped", file=sys.stderr)
            return 130
        if isinstance(leaf, OSError):
            return _error(f"{args.file}: {leaf.strerror or leaf}")
        if isinstance(leaf, ReflowError):
            return _error(str(leaf))
        raise


def _single(exc: BaseException) -> BaseException:
    """The one exception inside nested single-member exception groups (else ``exc``)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


@subcommand
def _run(sub: SubParsers) -> None:
    p = sub.add_parser(
        "run", help="run a graph until it is idle, printing its outputs as JSON lines",
        description="Run a graph file (any format) until nothing is queued or running."
        " Each value leaving an exported out-port is printed as one JSON line"
        ' {"port": ..., "value": ...}. Exit 1 if messages were dead-lettered; Ctrl-C'
        " stops the network cleanly.")
    p.add_argument("file", help="graph file (.json Reflow/NoFlo, .fbp, .yaml)")
    p.add_argument("--input", "-i", action="append", default=[], metavar="PORT=JSON",
                   help="send JSON (or a bare string) to an exported in-port; repeatable,"
                   " sent in order")
    p.add_argument("--registry", default=None, metavar="default|MODULE:ATTR",
                   help="component registry (default: the standard library + plugins)")
    p.add_argument("--timeout", type=float, default=None,
                   help="stop with exit 1 if not idle after this many seconds")
    p.set_defaults(func=_run_main)


# -- validate ------------------------------------------------------------------------------


def _validate_main(args: argparse.Namespace) -> int:
    from reflowpy.network import analysis
    from reflowpy.network.graph import Graph

    try:
        graph = Graph.load(args.file, args.format)
        registry = _load_registry(args.registry)
    except (GraphFormatError, ReflowError, ImportError, AttributeError) as exc:
        return _error(str(exc))
    report = analysis.validate(graph, registry)
    failed = not report.ok or (args.strict and bool(report.problems))
    print(report, file=sys.stdout)
    return 1 if failed else 0


@subcommand
def _validate(sub: SubParsers) -> None:
    p = sub.add_parser("validate", help="check a graph file and print a report",
                       description="Check a graph file (any format). Exit status 1 when"
                       " the report has errors (or, with --strict, warnings).")
    p.add_argument("file", help="graph file: Reflow/NoFlo JSON, .fbp or YAML")
    p.add_argument("--format", choices=["reflow", "noflo", "fbp", "yaml"],
                   help="read as this format instead of detecting it")
    p.add_argument("--registry", metavar="default|MODULE:ATTR",
                   help="also check components, ports and port types against a registry")
    p.add_argument("--strict", action="store_true", help="fail on warnings too")
    p.set_defaults(func=_validate_main)


# -- convert -------------------------------------------------------------------------------


def _convert_main(args: argparse.Namespace) -> int:
    from reflowpy.network.formats import fbp
    from reflowpy.network.graph import Graph

    try:
        graph = Graph.load(args.file, args.source_format)
        text = graph.dumps(args.to)
    except GraphFormatError as exc:
        return _error(str(exc))
    if args.to == "fbp":
        for loss in fbp.losses(graph):
            print(f"reflowpy: warning: .fbp cannot hold {loss}", file=sys.stderr)
    if args.output and args.output != "-":
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            return _error(f"cannot write {args.output!r}: {exc.strerror}")
    else:
        sys.stdout.write(text)
    return 0


@subcommand
def _convert(sub: SubParsers) -> None:
    p = sub.add_parser("convert", help="convert a graph file to another format",
                       description="Read a graph (format detected) and write it in another"
                       " format to stdout or -o OUT.")
    p.add_argument("file", help="graph file: Reflow/NoFlo JSON, .fbp or YAML")
    p.add_argument("--to", required=True, choices=["reflow", "noflo", "fbp", "yaml"],
                   help="output format")
    p.add_argument("--from", dest="source_format",
                   choices=["reflow", "noflo", "fbp", "yaml"],
                   help="read as this format instead of detecting it")
    p.add_argument("-o", "--output", help="output file (default: stdout)")
    p.set_defaults(func=_convert_main)


# -- components ----------------------------------------------------------------------------


def _components_main(args: argparse.Namespace) -> int:
    import reflowpy as rf

    registry = rf.default_registry()
    names = [n for n in registry.names() if not args.prefix or n.startswith(args.prefix)]
    aliases: dict[str, list[str]] = {}
    for alias in registry.names(aliases=True):
        target = registry.resolve(alias)
        if target != alias:
            aliases.setdefault(target, []).append(alias)
    infos = [registry.describe(n) for n in names]
    if args.json:
        out = []
        for info in infos:
            entry: dict[str, Any] = {
                "name": info.name,
                "description": info.description.split("\n", 1)[0],
                "icon": info.icon,
                "subgraph": info.subgraph,
                "aliases": sorted(aliases.get(info.name, [])),
                "inports": [_port(p) for p in info.inports],
                "outports": [_port(p) for p in info.outports],
            }
            out.append(entry)
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    for info in infos:
        also = aliases.get(info.name)
        print(f"{info.name}" + (f"  (also: {', '.join(sorted(also))})" if also else ""))
        print(f"    {info.description.splitlines()[0] if info.description else ''}")
        for label, ports in (("in ", info.inports), ("out", info.outports)):
            if ports:
                shown = ", ".join(
                    f"{p.name}:{p.type}" + ("" if p.required else "?") for p in ports)
                print(f"    {label}  {shown}")
    print(f"{len(infos)} components, {sum(len(a) for a in aliases.values())} aliases")
    return 0


def _port(p: Any) -> dict[str, Any]:
    return {"name": p.name, "type": p.type, "description": p.description,
            "required": p.required, "addressable": p.addressable}


@subcommand
def _components(sub: SubParsers) -> None:
    p = sub.add_parser("components", help="list the registered components with their ports",
                       description="List every registered component (standard library and"
                       " entry-point plugins) with its ports, types and description.")
    p.add_argument("--json", action="store_true", help="print JSON (for the FBP component:list)")
    p.add_argument("prefix", nargs="?", default="",
                   help="only components whose name starts with this (e.g. flow/)")
    p.set_defaults(func=_components_main)


# -- serve ----------------------------------------------------------------------------------


@subcommand
def _serve(sub: SubParsers) -> None:
    p = sub.add_parser(
        "serve", help="serve graphs over HTTP/WebSocket (REST, FBP protocol, Reflow API)",
        description="Host graphs: REST API with OpenAPI at /openapi.json, the FBP Network"
        " Protocol at / and /fbp (WebSocket, subprotocol noflo), Reflow's /workflows and"
        " /ws. Prints one 'listening on ...' line when ready; SIGTERM/SIGINT drain the"
        " running networks and exit 0.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: loopback only)")
    p.add_argument("--port", type=int, default=3569, help="port (0: any free port)")
    p.add_argument("--data-dir", default=None,
                   help="directory of the SQLite store (default: $REFLOWPY_DATA_DIR or"
                   " ./.reflowpy)")
    p.add_argument("--token", default=None,
                   help="require this bearer token / FBP secret on every request"
                   " (default: $REFLOWPY_TOKEN)")
    p.add_argument("--max-frame", type=int, default=16 * 1024 * 1024,
                   help="largest WebSocket frame accepted, in bytes")
    p.add_argument("--max-body", type=int, default=16 * 1024 * 1024,
                   help="largest HTTP request body accepted, in bytes")
    p.add_argument("--no-setsource", action="store_true",
                   help="refuse FBP component:source (Python components sent by clients)")
    p.add_argument("--setsource-sandbox", choices=("process", "docker"), default="process",
                   help="where the code of FBP component:source components runs, per node:"
                   " 'process' (confined subprocess, default) or 'docker' (container);"
                   " never in the server process")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    """``reflowpy serve``: run the server until SIGTERM/SIGINT, then drain and exit 0."""
    import trio

    from reflowpy.server.serve import serve

    token = args.token or os.environ.get("REFLOWPY_TOKEN") or None
    data_dir = args.data_dir or os.environ.get("REFLOWPY_DATA_DIR") or ".reflowpy"
    limits: dict[str, Any] = {"max_body": args.max_body,
                              "setsource_sandbox": args.setsource_sandbox}
    if args.no_setsource:
        limits["allow_setsource"] = False

    async def main() -> None:
        shutdown = trio.Event()

        async def on_signal() -> None:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    shutdown.set()
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(on_signal)
            await serve(host=args.host, port=args.port, data_dir=data_dir, token=token,
                        shutdown=shutdown, max_frame=args.max_frame, **limits)
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    except OSError as exc:
        print(f"reflowpy serve: {exc}", file=sys.stderr)
        return 1
    return 0


# -- peers (reflowpy.bridge) ----------------------------------------------------------------


def _peers_main(args: argparse.Namespace) -> int:
    import trio

    from reflowpy.bridge.peers import PeerState, load_peers, probe_all

    try:
        peers = load_peers(args.peers or os.environ.get("REFLOWPY_PEERS") or None)
    except ReflowError as exc:
        return _error(str(exc))
    if args.no_probe:
        rows = [PeerState(n, p.url, "configured", "not probed") for n, p in
                sorted(peers.peers.items())]
    else:
        rows = trio.run(probe_all, peers, args.timeout)
    if args.json:
        import msgspec

        print(msgspec.json.encode(rows).decode())
    elif not rows:
        print("no peers configured (--peers FILE or REFLOWPY_PEERS)")
    for r in rows if not args.json else ():
        ms = "" if r.handshake_ms is None else f" {r.handshake_ms:.1f} ms"
        print(f"{r.name:<16} {r.state:<12} {r.url}{ms}  {r.detail}")
    return 0 if all(r.state in ("ok", "configured") for r in rows) else 1


@subcommand
def _peers(sub: SubParsers) -> None:
    p = sub.add_parser("peers", help="list the configured bridge peers and their state",
                       description="Read the peers file and run the HELLO challenge"
                       " with every peer (nothing is placed). Exit 1 if one is not ok.")
    p.add_argument("--peers", default=None, metavar="FILE",
                   help="peers file (YAML/JSON; default: $REFLOWPY_PEERS)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per peer")
    p.add_argument("--no-probe", action="store_true", help="only list, do not connect")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_peers_main)


# -- entry point ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``reflowpy`` argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(prog="reflowpy",
                                     description="reflowpy: actor-model dataflow runtime")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for configure in _SUBCOMMANDS:
        configure(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and usage errors
        return int(exc.code or 0) if isinstance(exc.code, int | None) else 2
    handler: Callable[[argparse.Namespace], int] = args.func
    return handler(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
