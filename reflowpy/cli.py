"""The ``reflowpy`` command line: one subcommand per function.

Each subcommand is a function decorated with :func:`subcommand` that receives the
argparse sub-parsers object, adds its own parser and sets ``func`` to a handler
``handler(args) -> int`` (the exit status)::

    @subcommand
    def _run(sub):
        p = sub.add_parser("run", help="run a graph until it is idle")
        p.add_argument("file")
        p.set_defaults(func=_run_main)

Exit status, the same for every subcommand:

====  ==========================================================================
0     success
1     the run failed (anything dead-lettered, sent to an error port nothing
      consumes, or not idle in time), or ``validate`` found errors
2     usage: unknown option, bad ``--input``, ``--registry`` or ``--map``
3     the graph file cannot be read or is not a graph (the message names the
      format, the place and what was expected)
130   interrupted (Ctrl-C); the network was stopped
141   stdout was closed early (``reflowpy run ... | head``); nothing is printed
====  ==========================================================================

Messages go to stderr as ``reflowpy: error: ...``, never as a Python traceback; a
traceback is shown only for the user's own code that failed in a node.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reflowpy import options
from reflowpy.errors import (
    ComponentError,
    GraphError,
    GraphFormatError,
    ReflowError,
    leaf_exception,
)

if TYPE_CHECKING:
    from reflowpy.network.graph import Graph

__all__ = ["EXIT_BAD_GRAPH", "EXIT_FAILED", "EXIT_USAGE", "cmd_serve", "main", "subcommand"]

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BAD_GRAPH = 3

SubParsers = Any  # argparse._SubParsersAction[argparse.ArgumentParser] (private type)
_SUBCOMMANDS: list[Callable[[SubParsers], None]] = []


def subcommand(configure: Callable[[SubParsers], None]) -> Callable[[SubParsers], None]:
    """Register a function that adds one subcommand to the ``reflowpy`` parser."""
    _SUBCOMMANDS.append(configure)
    return configure


class _Usage(ReflowError):
    """A command-line argument is wrong (exit 2)."""


def _error(message: str, code: int = EXIT_USAGE) -> int:
    print(f"reflowpy: error: {message}", file=sys.stderr)
    return code


def _exit_code(exc: BaseException) -> int:
    """The exit status of an error raised before or while running a graph."""
    if isinstance(exc, GraphError | ComponentError):
        return EXIT_BAD_GRAPH  # unreadable, malformed, or naming what the registry lacks
    if isinstance(exc, _Usage):
        return EXIT_USAGE
    return EXIT_FAILED


def _load_registry(spec: str | None) -> Any:
    """``None`` -> no registry; ``default`` -> ``rf.default_registry()``; ``module:attr``
    -> that Registry object (or a function returning one), importable from the
    current directory as ``python -m`` would."""
    if not spec:
        return None
    import reflowpy

    if spec == "default":
        return reflowpy.default_registry()
    module_name, _, attr = spec.partition(":")
    if not attr or not module_name:
        raise _Usage(f"--registry {spec!r}: expected 'default' or MODULE:ATTR")
    if not all(part.isidentifier() for part in module_name.split(".")):  # '../x', '.x'
        raise _Usage(f"--registry {spec!r}: {module_name!r} is not a module name (dotted"
                     " names, importable from the current directory)")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name is None or not (module_name + ".").startswith(exc.name + "."):  # inside it
            raise _Usage(_failed_in_user_code(
                f"--registry {spec!r}: importing {module_name!r}", exc)) from None
        raise _Usage(f"--registry {spec!r}: cannot import {module_name!r}: {exc}") from None
    except Exception as exc:  # the module's own code failed
        raise _Usage(_failed_in_user_code(f"--registry {spec!r}: importing {module_name!r}",
                                          exc)) from None
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise _Usage(f"--registry {spec!r}: module {module_name!r} has no {attr!r}") from None
    try:
        registry = obj() if callable(obj) and not isinstance(obj, reflowpy.Registry) else obj
    except Exception as exc:
        raise _Usage(_failed_in_user_code(f"--registry {spec!r}: calling {attr!r}", exc)
                     ) from None
    if not isinstance(registry, reflowpy.Registry):
        raise _Usage(f"--registry {spec!r} is a {type(registry).__name__}, not a Registry")
    return registry


def _read_graph(file: str, format: str | None = None, registry: Any = None) -> Any:
    """The graph in ``file`` (``-`` reads stdin; a folder is a workspace, composed, its
    NoFlo-style graphs registered in ``registry``); GraphFormatError names the file."""
    from reflowpy.network import formats

    if file != "-" and Path(file).is_dir():
        from reflowpy.network.formats import workspace

        return workspace.compose(file, registry)
    from reflowpy.network.formats._limits import read_limited

    if file == "-":
        try:
            return formats.loads(read_limited(sys.stdin.buffer, format or ""), format)
        except GraphFormatError as exc:
            where = f"<stdin>, {exc.where}" if exc.where else "<stdin>"
            raise GraphFormatError(exc.detail, format=exc.format, where=where) from None
    return formats.load(file, format)


def _add_map_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--map", metavar="MAP.yaml", default=None,
                   help="rename components and ports of a foreign graph (NoFlo, Reflow) to"
                   " reflowpy's: {components: {OLD: NEW | {component: NEW, inports: {..},"
                   " outports: {..}}}}")


def _apply_map(graph: Any, spec: str | None, registry: Any) -> Any:
    if not spec:
        return graph
    from reflowpy.network.formats import mapping

    return mapping.apply(graph, mapping.load(spec), registry)


# -- run ----------------------------------------------------------------------------------


def _parse_inputs(pairs: Sequence[str]) -> list[tuple[str, Any]]:
    inputs: list[tuple[str, Any]] = []
    for pair in pairs:
        port, sep, text = pair.partition("=")
        if not sep or not port:
            raise _Usage(f"--input {pair!r}: expected PORT=JSON (e.g. numbers=[1,2])")
        inputs.append((port, _input_value(port, text)))
    return inputs


def _input_value(port: str, text: str) -> Any:
    """An ``--input`` value: JSON, or a bare word as a string (as a shell user means it).

    Text that starts as JSON does (``[``, ``{``, ``"``) must be JSON; what no message can
    hold (lone surrogates, bytes that are not UTF-8, integers beyond 64 bits, nesting
    deeper than the interpreter's stack) is a usage error naming the port."""
    import msgspec

    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _Usage(f"--input {port}=...: not UTF-8 text") from None
    try:
        return msgspec.json.decode(text)
    except msgspec.ValidationError as exc:  # out-of-range numbers
        raise _Usage(f"--input {port}=...: {exc} (messages hold 64-bit integers and finite"
                     " floats; quote it to send text)") from None
    except RecursionError:
        raise _Usage(f"--input {port}=...: the JSON value is nested too deeply") from None
    except msgspec.DecodeError as exc:
        if text.lstrip()[:1] in ("[", "{", '"'):
            raise _Usage(f"--input {port}=...: not valid JSON: {exc}; to send it as text,"
                         f" quote it as a JSON string") from None
        return text


def _error_ports(graph: Any, registry: Any) -> dict[str, tuple[str, str]]:
    """Out-ports named ``error`` that nothing consumes, exported under a private name so
    what the graph sends there is shown and fails the run instead of vanishing."""
    taken = {(e.src.node, e.src.port) for e in graph.edges}
    taken |= {(x.node, x.port) for x in graph.outports.values()}
    found: dict[str, tuple[str, str]] = {}
    for node in graph.nodes.values():
        if node.metadata.get("partition") is not None or node.metadata.get("remote"):
            continue  # placed in another process: its error port is reported there
        try:
            info = registry.describe(node.component)
        except ReflowError:
            continue
        for port in info.outports:
            name = graph.port_name(port.name)
            if (name == "error" or port.type == "error") and (node.id, name) not in taken:
                public = f"{node.id}.{name}"
                if public not in graph.outports:
                    found[public] = (node.id, name)
    for public, (node_id, port) in found.items():
        graph.add_outport(public, node_id, port)
    return found


def _print_letter(letter: Any) -> None:
    print(f"reflowpy run: node {letter.node!r} failed on port {letter.port!r}"
          f" (dead letter {letter.id}, {letter.attempts} attempt(s)):"
          f" {letter.error_type}: {letter.error}", file=sys.stderr)
    trace = getattr(letter, "traceback", "") or getattr(letter, "remote_traceback", "")
    for line in _user_frames(str(trace)):
        print(f"    {line}", file=sys.stderr)


def _failed_in_user_code(what: str, exc: BaseException) -> str:
    """``WHAT failed: TYPE: MESSAGE`` and the user's frames, one per line."""
    import traceback

    frames = _user_frames("".join(traceback.format_exception(exc)))
    return "\n    ".join([f"{what} failed: {type(exc).__name__}: {exc}", *frames])


def _user_frames(trace: str) -> list[str]:
    """The frames of a formatted traceback that are the user's code: ``at FILE:LINE in
    FUNC: SOURCE`` lines, leaving out reflowpy's own and its libraries' frames (the
    exception type and message are already on the line above)."""
    import re
    import sysconfig

    here = str(Path(__file__).resolve().parent)
    stdlib = sysconfig.get_paths()["stdlib"]
    frame = re.compile(r'\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>.+)')
    out: list[str] = []
    lines = trace.splitlines()
    for i, text in enumerate(lines):
        m = frame.match(text)
        if m is None:
            continue
        file = m["file"]
        if (file.startswith((here, stdlib, "<frozen")) or "site-packages" in file):
            continue
        source = lines[i + 1].strip() if i + 1 < len(lines) else ""
        source = "" if frame.match(source) or set(source) <= set("^~ ") else source
        out.append(f"at {file}:{m['line']} in {m['func']}" + (f": {source}" if source else ""))
    return out


async def _run_graph(graph: Any, registry: Any, inputs: list[tuple[str, Any]],
                     timeout: float | None, trace: str | None = None,
                     trace_sample: int = 1) -> int:
    import math

    import trio

    from reflowpy.bridge.cluster import network_for  # remote/partition nodes placed

    errors = _error_ports(graph, registry)
    net: Any = network_for(graph, registry)
    encode = json.JSONEncoder(default=repr, ensure_ascii=False).encode
    failures = 0
    counts = {name: 0 for name in graph.outports if name not in errors}

    def show(name: str, value: Any) -> None:
        nonlocal failures
        if name in counts:
            counts[name] += 1
        if name in errors:
            failures += 1
            node, port = errors[name]
            print(f"reflowpy run: node {node!r} sent to its {port!r} port, which nothing"
                  f" consumes: {encode(value)}", file=sys.stderr)
            return
        sys.stdout.write(encode({"port": name, "value": value}) + "\n")

    def printed(node: str, value: Any, text: str) -> None:
        """core/Output's lines, through the same JSON-lines stdout as exported ports."""
        sys.stdout.write(encode({"node": node, "value": value, "text": text}) + "\n")
        sys.stdout.flush()

    from reflowpy.components.core import output_sink

    output_sink.set(printed)

    async def pump(name: str) -> None:
        async for value in net.outputs(name):
            show(name, value)
            sys.stdout.flush()

    async def progress() -> None:
        """One status line on stderr, rewritten every second (only on a terminal)."""
        start = trio.current_time()
        try:
            while True:
                await trio.sleep(1)
                elapsed = trio.current_time() - start
                nodes = net.statistics().nodes.values()
                done = sum(n.activations for n in nodes)
                shown = ", ".join(f"{k}: {v}" for k, v in counts.items()) or "no outputs"
                sys.stderr.write(f"\r\x1b[Kreflowpy run: {elapsed:.0f} s, {shown};"
                                 f" {done} messages processed ({done / elapsed:.0f}/s)")
                sys.stderr.flush()
        finally:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()

    interrupted = False

    async def on_ctrl_c(run: trio.CancelScope,
                        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # Ctrl-C cancels the run, so the network stops through its own cancellation path
        # (what is in flight is dead-lettered, teardowns run); a KeyboardInterrupt raised
        # at an arbitrary point of trio's or the kernel's cleanup could corrupt both.
        nonlocal interrupted
        with trio.open_signal_receiver(signal.SIGINT) as signals:
            task_status.started()
            async for _ in signals:
                interrupted = True
                run.cancel()
                return

    with trio.move_on_after(math.inf if timeout is None else timeout) as scope:
        from reflowpy.observe.cli import traced

        async with trio.open_nursery() as watch:
            await watch.start(on_ctrl_c, scope)
            async with traced(net, trace, trace_sample), net, trio.open_nursery() as nursery:
                if _progress_wanted():
                    nursery.start_soon(progress)
                for name in graph.outports:
                    nursery.start_soon(pump, name)
                for port, value in inputs:
                    await net.send(port, value)
                await net.idle()
                nursery.cancel_scope.cancel()  # what is left is printed below
            watch.cancel_scope.cancel()
    for name in graph.outports:  # values taken after the pumps stopped, and stop-flushes
        for value in net.outputs(name).drain():
            show(name, value)
    sys.stdout.flush()
    letters = net.dead_letters()
    for letter in letters:
        _print_letter(letter)
    if interrupted:
        raise KeyboardInterrupt  # reported once by the caller, exit 130
    if scope.cancelled_caught:
        print(f"reflowpy run: not idle after {timeout:g} s; stopped", file=sys.stderr)
        return EXIT_FAILED
    if letters or failures:
        print(f"reflowpy run: failed: {len(letters)} dead letter(s), {failures} message(s)"
              " on unconsumed error ports", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _progress_wanted() -> bool:
    """A progress line is for people watching: stderr is a terminal (and not dumb)."""
    try:
        return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


def _workdir(args: argparse.Namespace) -> str | None:
    """Where relative paths in node config resolve: the graph file's folder unless
    ``--cwd`` says otherwise (``--cwd .`` keeps the current directory)."""
    if args.cwd is not None:
        return str(args.cwd)
    if args.file == "-":
        return None
    folder = Path(args.file).parent
    return str(folder) if str(folder) not in ("", ".") else None


def _run_main(args: argparse.Namespace) -> int:
    import trio

    try:
        registry = _load_registry(args.registry or "default")
        if args.graphs:
            from reflowpy.network.formats import workspace

            workspace.register_graphs(registry, args.graphs)
        graph = _read_graph(args.file, registry=registry)
        graph = _apply_map(graph, args.map, registry)
        _warn_unknown_fields(graph)
        inputs = _parse_inputs(args.input)
        for port, _ in inputs:
            if graph.port_name(port) not in graph.inports:
                raise _Usage(f"--input {port}=...: the graph has no exported in-port"
                             f" {port!r}; it has {sorted(graph.inports) or 'none'}")
        workdir = _workdir(args)
        if args.trace and not args.trace.startswith(("postgresql:", "postgres:")):
            # a path on the command line is the caller's, not the graph folder's
            args.trace = os.path.abspath(args.trace)
        back = os.getcwd()
        if workdir is not None:
            try:
                os.chdir(workdir)
            except OSError as exc:
                raise _Usage(f"--cwd {workdir!r}: {exc.strerror}") from None
        try:
            return trio.run(_run_graph, graph, registry, inputs, args.timeout, args.trace,
                            args.trace_sample)
        finally:
            os.chdir(back)
    except BaseException as exc:
        leaf = leaf_exception(exc)
        if isinstance(leaf, KeyboardInterrupt):
            print("reflowpy run: interrupted; network stopped", file=sys.stderr)
            return 130
        if isinstance(leaf, BrokenPipeError):
            raise leaf from None
        if isinstance(leaf, ReflowError):
            return _error(str(leaf), _exit_code(leaf))
        if isinstance(leaf, OSError):
            return _error(f"{args.file}: {leaf.strerror or leaf}", EXIT_FAILED)
        raise


def _warn_unknown_fields(graph: Graph) -> None:
    """Say on stderr which top-level fields of the file a run ignores (a typo such as
    ``proceses:`` would otherwise run an empty graph and exit 0 without a word)."""
    from reflowpy.network import analysis

    for problem in analysis.unknown_fields(graph):
        print(f"reflowpy: warning: {problem.message}", file=sys.stderr)
    if not graph.nodes:
        print("reflowpy: warning: the graph declares no node; nothing will run",
              file=sys.stderr)


@subcommand
def _run(sub: SubParsers) -> None:
    p = sub.add_parser(
        "run", help="run a graph until it is idle, printing its outputs as JSON lines",
        description="Run a graph file (any format; '-' reads stdin), or a folder of graphs"
        " (a Reflow workspace or a NoFlo project's graphs/), until nothing is queued or"
        " running. Each value leaving an exported out-port is printed as one JSON line"
        ' {"port": ..., "value": ...}. Relative paths in node config resolve against the'
        " graph file's folder (override with --cwd). Exit 1 if anything was"
        " dead-lettered or sent to an error port nothing consumes (each failure is"
        " printed with its node, exception type and traceback), 3 for a bad graph file,"
        " 2 for bad arguments; Ctrl-C stops the network cleanly.")
    p.add_argument("file", help="graph file (.json Reflow/NoFlo, .fbp, .yaml), '-' for stdin,"
                   " or a workspace folder")
    p.add_argument("--input", "-i", action="append", default=[], metavar="PORT=JSON",
                   help="send JSON (or a bare string) to an exported in-port; repeatable,"
                   " sent in order")
    p.add_argument("--registry", default=None, metavar="default|MODULE:ATTR",
                   help="component registry (default: the standard library + plugins);"
                   " MODULE is imported from the current directory")
    p.add_argument("--graphs", metavar="DIR", default=None,
                   help="make every graph file in DIR a component named after the file"
                   " (as NoFlo projects' graphs/ folders are)")
    _add_map_option(p)
    p.add_argument("--cwd", metavar="DIR", default=None,
                   help="directory relative paths in node config resolve against"
                   " (default: the graph file's folder)")
    p.add_argument("--timeout", type=options.seconds(), default=None,
                   help="stop with exit 1 if not idle after this many seconds")
    p.add_argument("--trace", default=None, metavar="FILE|postgresql://...",
                   help="record every event into this trace store (see `reflowpy trace`)")
    p.add_argument("--trace-sample", type=options.count(1), default=1, metavar="N",
                   help="with --trace: record 1 in N messages (default 1: all)")
    p.set_defaults(func=_run_main)


# -- validate ------------------------------------------------------------------------------


def _validate_main(args: argparse.Namespace) -> int:
    from reflowpy.network import analysis

    try:
        registry = _load_registry(args.registry or ("default" if args.graphs else None))
        if args.graphs:
            from reflowpy.network.formats import workspace

            workspace.register_graphs(registry, args.graphs)
        graph = _read_graph(args.file, args.format, registry)
        graph = _apply_map(graph, args.map, registry)
    except ReflowError as exc:
        if args.json:
            _print_json({"file": args.file, "ok": False, "loaded": False,
                         "error": str(exc), "format": getattr(exc, "format", ""),
                         "where": getattr(exc, "where", ""), "problems": []})
        return _error(str(exc), _exit_code(exc))
    report = analysis.validate(graph, registry)
    failed = not report.ok or (args.strict and bool(report.problems))
    if args.json:
        _print_json({"file": args.file, "graph": report.graph, "ok": not failed,
                     "loaded": True, "problems": [
                         {"kind": p.kind, "severity": p.severity, "message": p.message,
                          "node": p.node, "port": p.port} for p in report.problems]})
    else:
        print(report, file=sys.stdout)
    return EXIT_FAILED if failed else 0


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


@subcommand
def _validate(sub: SubParsers) -> None:
    p = sub.add_parser("validate", help="check a graph file and print a report",
                       description="Check a graph file (any format; '-' reads stdin). Exit"
                       " status 1 when the report has errors (or, with --strict, warnings),"
                       " 3 when the file is not a graph.")
    p.add_argument("file", help="graph file: Reflow/NoFlo JSON, .fbp or YAML; '-' for stdin;"
                   " a workspace folder as run takes")
    p.add_argument("--format", choices=["reflow", "noflo", "fbp", "yaml"],
                   help="read as this format instead of detecting it")
    p.add_argument("--registry", metavar="default|MODULE:ATTR",
                   help="also check components, ports and port types against a registry")
    p.add_argument("--graphs", metavar="DIR", default=None,
                   help="make every graph file in DIR a component named after the file, as"
                   " run does (implies --registry default unless one is given)")
    _add_map_option(p)
    p.add_argument("--strict", action="store_true", help="fail on warnings too")
    p.add_argument("--json", action="store_true",
                   help="print the report as JSON (ok, problems with kind/severity/node/port)")
    p.set_defaults(func=_validate_main)


# -- convert -------------------------------------------------------------------------------


def _convert_main(args: argparse.Namespace) -> int:
    from reflowpy.network.formats import fbp

    try:
        graph = _read_graph(args.file, args.source_format)
        text = graph.dumps(args.to)
    except ReflowError as exc:
        return _error(str(exc), _exit_code(exc))
    if args.to == "fbp":
        for loss in fbp.losses(graph):
            print(f"reflowpy: warning: .fbp cannot hold {loss}", file=sys.stderr)
    if args.output and args.output != "-":
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            return _error(f"cannot write {args.output!r}: {exc.strerror}", EXIT_FAILED)
    else:
        sys.stdout.write(text)
    return 0


@subcommand
def _convert(sub: SubParsers) -> None:
    p = sub.add_parser("convert", help="convert a graph file to another format",
                       description="Read a graph (format detected; '-' reads stdin) and"
                       " write it in another format to stdout or -o OUT.")
    p.add_argument("file", help="graph file: Reflow/NoFlo JSON, .fbp or YAML; '-' for stdin;"
                   " a workspace folder as run takes")
    p.add_argument("--to", required=True, choices=["reflow", "noflo", "fbp", "yaml"],
                   help="output format")
    p.add_argument("--from", dest="source_format",
                   choices=["reflow", "noflo", "fbp", "yaml"],
                   help="read as this format instead of detecting it")
    p.add_argument("-o", "--output", help="output file (default: stdout)")
    p.set_defaults(func=_convert_main)


# -- components ----------------------------------------------------------------------------


def _config_of(component: Any) -> dict[str, Any] | None:
    """Keys, types, defaults and JSON Schema of a component's ``Config`` Struct, if any."""
    import msgspec

    config = getattr(component, "Config", None)
    if not (isinstance(config, type) and issubclass(config, msgspec.Struct)):
        return None
    keys = []
    for field in msgspec.structs.fields(config):
        entry: dict[str, Any] = {"name": field.encode_name, "type": _type_name(field.type),
                                 "required": field.required}
        doc = _unannotated(field.type)[1]
        if doc:
            entry["description"] = doc
        if field.default is not msgspec.NODEFAULT:
            entry["default"] = _jsonable(field.default)
        elif field.default_factory is not msgspec.NODEFAULT:
            entry["default"] = _jsonable(field.default_factory())
        keys.append(entry)
    try:
        schema = msgspec.json.schema(config)
    except (TypeError, ValueError) as exc:
        schema = {"error": f"no JSON Schema: {exc}"}
    return {"keys": keys, "schema": schema, "doc": (config.__doc__ or "").strip()}


def _type_name(tp: Any) -> str:
    tp = _unannotated(tp)[0]
    name = getattr(tp, "__name__", None)
    text = str(tp) if name is None or getattr(tp, "__args__", None) else name
    return text.replace("typing.", "")


def _unannotated(tp: Any) -> tuple[Any, str]:
    """``Annotated[T, msgspec.Meta(description=...)]`` -> (T, description)."""
    import typing

    import msgspec

    if typing.get_origin(tp) is typing.Annotated:
        base, *extras = typing.get_args(tp)
        doc = next((m.description for m in extras
                    if isinstance(m, msgspec.Meta) and m.description), "")
        return base, doc or ""
    return tp, ""


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def _component_entry(registry: Any, info: Any, aliases: list[str]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": info.name,
        "description": info.description.split("\n", 1)[0],
        "icon": info.icon,
        "subgraph": info.subgraph,
        "aliases": sorted(aliases),
        "inports": [_port(p) for p in info.inports],
        "outports": [_port(p) for p in info.outports],
    }
    config = None if info.subgraph else _config_of(registry.get(info.name))
    entry["config"] = config["keys"] if config else None
    entry["config_schema"] = config["schema"] if config else None
    return entry


def _components_main(args: argparse.Namespace) -> int:
    try:
        registry = _load_registry(args.registry or "default")
        if args.graphs:
            from reflowpy.network.formats import workspace

            workspace.register_graphs(registry, args.graphs)
    except ReflowError as exc:
        return _error(str(exc), _exit_code(exc))
    aliases: dict[str, list[str]] = {}
    for alias in registry.names(aliases=True):
        target = registry.resolve(alias)
        if target != alias:
            aliases.setdefault(target, []).append(alias)
    if args.prefix and args.prefix in registry:
        return _component_detail(registry, registry.resolve(args.prefix), aliases, args.json)
    names = [n for n in registry.names() if not args.prefix or n.startswith(args.prefix)]
    if not names and args.prefix:
        from reflowpy.network.formats.mapping import suggest

        hint = suggest(args.prefix, registry.names(aliases=True))
        return _error(f"no component named or starting with {args.prefix!r}{hint}",
                      EXIT_USAGE)
    infos = [registry.describe(n) for n in names]
    if args.json:
        _print_json([_component_entry(registry, i, aliases.get(i.name, [])) for i in infos])
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
        config = None if info.subgraph else _config_of(registry.get(info.name))
        if config and config["keys"]:
            shown = ", ".join(f"{k['name']}:{k['type']}" + (
                f"={json.dumps(k['default'])}" if "default" in k else "")
                for k in config["keys"])
            print(f"    cfg  {shown}")
    print(f"{len(infos)} components, {sum(len(a) for a in aliases.values())} aliases")
    return 0


def _component_detail(registry: Any, name: str, aliases: dict[str, list[str]],
                      as_json: bool) -> int:
    info = registry.describe(name)
    entry = _component_entry(registry, info, aliases.get(name, []))
    entry["description"] = info.description
    if as_json:
        _print_json(entry)
        return 0
    print(name + (f"  (also: {', '.join(entry['aliases'])})" if entry["aliases"] else ""))
    for line in info.description.splitlines() or [""]:
        print(f"    {line}")
    for label, ports in (("in-ports", info.inports), ("out-ports", info.outports)):
        print(f"{label}:")
        for p in ports or ():
            flags = [] if p.required else ["optional"]
            if p.addressable:
                flags.append("addressable")
            extra = f" ({', '.join(flags)})" if flags else ""
            print(f"    {p.name}: {p.type}{extra}  {p.description}".rstrip())
        if not ports:
            print("    (none)")
    print("config:")
    if entry["config"] is None:
        print("    not declared as a Config struct; the description above lists the keys")
    else:
        for key in entry["config"]:
            default = f" = {json.dumps(key['default'])}" if "default" in key else ""
            req = " (required)" if key["required"] else ""
            doc = f"  {key['description']}" if key.get("description") else ""
            print(f"    {key['name']}: {key['type']}{default}{req}{doc}")
        print("JSON Schema:")
        for line in json.dumps(entry["config_schema"], indent=2).splitlines():
            print(f"    {line}")
    return 0


def _port(p: Any) -> dict[str, Any]:
    return {"name": p.name, "type": p.type, "description": p.description,
            "required": p.required, "addressable": p.addressable}


@subcommand
def _components(sub: SubParsers) -> None:
    p = sub.add_parser("components", help="list the registered components with their ports",
                       description="List every registered component (standard library and"
                       " plugins of the 'reflowpy.components' entry-point group) with its"
                       " ports, types, config keys and description; with a full NAME, show"
                       " that one in full, config JSON Schema included.")
    p.add_argument("--json", action="store_true", help="print JSON (for the FBP component:list)")
    p.add_argument("--registry", default=None, metavar="default|MODULE:ATTR",
                   help="list this registry instead of the standard library + plugins")
    p.add_argument("--graphs", metavar="DIR", default=None,
                   help="also list the graph files in DIR as components")
    p.add_argument("prefix", nargs="?", default="",
                   help="a component NAME (shown in full) or a prefix such as flow/")
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
    p.add_argument("--port", type=options.port, default=3569, help="port (0: any free port)")
    p.add_argument("--data-dir", default=None,
                   help="directory of the SQLite store (default: $REFLOWPY_DATA_DIR or"
                   " ./.reflowpy)")
    p.add_argument("--token", default=None,
                   help="require this bearer token / FBP secret on every request; prefer"
                   " $REFLOWPY_TOKEN or --token-file (argv is readable by every local user)")
    p.add_argument("--token-file", default=None,
                   help="read the token from this file (mode 600)")
    p.add_argument("--insecure", action="store_true",
                   help="allow a non-loopback --host without a token (logged loudly)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="a Host name clients may use besides IP literals and localhost"
                   " (DNS-rebinding protection; '.example.com' allows its subdomains)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="a browser origin (e.g. https://app.flowhub.io) allowed to make"
                   " state-changing requests and WebSocket connections")
    p.add_argument("--cors", action="store_true",
                   help="send CORS headers to the --allow-origin origins (default off)")
    p.add_argument("--max-connections", type=options.count(1), default=1000,
                   help="most requests and WebSockets in flight")
    p.add_argument("--max-unauthenticated", type=options.count(1), default=64,
                   help="most FBP connections that have not yet sent the secret")
    p.add_argument("--max-per-peer", type=options.count(1), default=32,
                   help="most unauthenticated connections from one address")
    p.add_argument("--client-queue-bytes", type=options.count(1), default=8 * 1024 * 1024,
                   help="most bytes queued for one WebSocket client before it is dropped")
    p.add_argument("--max-frame", type=options.count(1), default=16 * 1024 * 1024,
                   help="largest WebSocket frame accepted, in bytes")
    p.add_argument("--max-body", type=options.count(1), default=16 * 1024 * 1024,
                   help="largest HTTP request body accepted, in bytes")
    p.add_argument("--no-setsource", action="store_true",
                   help="refuse FBP component:source (Python components sent by clients)")
    p.add_argument("--setsource-sandbox", choices=("process", "docker"), default="process",
                   help="where the code of FBP component:source components runs, per node:"
                   " 'process' (confined subprocess, default) or 'docker' (container);"
                   " never in the server process")
    p.add_argument("--allow-component", action="append", default=[], metavar="PATTERN",
                   help="components posted graphs may use (shell pattern, e.g. 'core/*';"
                   " default all)")
    p.add_argument("--deny-component", action="append", default=[], metavar="PATTERN",
                   help="components posted graphs may not use (e.g. 'io/*', 'net/*')")
    p.add_argument("--no-scripts", action="store_true",
                   help="refuse script/* nodes in posted graphs (implied by --no-setsource)")
    p.add_argument("--script-sandbox", action="append", choices=("process", "docker"),
                   default=None, help="sandboxes script nodes may use (default both)")
    p.add_argument("--script-network", action="store_true",
                   help="allow script nodes with network: true (default refused)")
    p.add_argument("--workspace", default=None, metavar="DIR",
                   help="every io/* and script file path must lie inside DIR (default"
                   " DATA_DIR/workspace)")
    p.add_argument("--no-workspace", action="store_true",
                   help="do not confine file paths (posted graphs can reach every file the"
                   " server can)")
    p.add_argument("--retention-count", type=options.count(0), default=1000,
                   help="ended executions kept (newest first; older ones are deleted)")
    p.add_argument("--retention-days", type=options.seconds(unit="days"), default=7.0,
                   help="ended executions older than this are deleted")
    p.add_argument("--allow-sandbox-option", action="append", default=[], metavar="KEY",
                   help="a sandbox-weakening script option posted graphs may set (allow_weaker,"
                   " user, group, image, wasi, limits, limits.NAME); default none")
    p.add_argument("--webhook-allow", action="append", default=[], metavar="CIDR",
                   help="non-public networks Reflow webhooks may be sent to (e.g."
                   " 127.0.0.1/32; '*' any); default public addresses only")
    p.add_argument("--api-tools", default=None, metavar="FILE",
                   help="service registry (JSON/YAML) for POST /register-api-tools")
    p.add_argument("--bridge-listen", default=None, metavar="HOST:PORT",
                   help="also serve the bridge on its own port with the bridge's own"
                   " WebSocket listener (faster than /bridge through HTTP; same token and"
                   " allow-list; port 0: any free port)")
    p.add_argument("--bridge-certfile", default=None,
                   help="TLS certificate of the --bridge-listen port (wss://)")
    p.add_argument("--bridge-keyfile", default=None,
                   help="TLS private key of the --bridge-listen port")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    """``reflowpy serve``: run the server until SIGTERM/SIGINT, then drain and exit 0."""
    import logging

    import trio

    from reflowpy.server.auth import load_token
    from reflowpy.server.serve import serve

    logging.basicConfig(level=logging.WARNING, format="reflowpy serve: %(message)s")
    try:
        token = load_token(argv_token=args.token, token_file=args.token_file)
    except ReflowError as exc:
        print(f"reflowpy serve: {exc}", file=sys.stderr)
        return 2
    data_dir = args.data_dir or os.environ.get("REFLOWPY_DATA_DIR") or ".reflowpy"
    limits: dict[str, Any] = {
        "max_body": args.max_body, "setsource_sandbox": args.setsource_sandbox,
        "insecure": args.insecure, "allow_hosts": args.allow_host,
        "allow_origins": args.allow_origin, "cors": args.cors,
        "max_connections": args.max_connections,
        "max_unauthenticated": args.max_unauthenticated,
        "max_per_peer": args.max_per_peer, "client_queue_bytes": args.client_queue_bytes,
        "allow_components": args.allow_component or ["*"],
        "deny_components": args.deny_component, "script_network": args.script_network,
        "script_sandboxes": args.script_sandbox or ["process", "docker"],
        "workspace": args.workspace, "confine_files": not args.no_workspace,
        "retention_count": args.retention_count,
        "retention_seconds": args.retention_days * 86400,
        "sandbox_options": args.allow_sandbox_option, "webhook_allow": args.webhook_allow,
        "api_tools": args.api_tools}
    if args.no_scripts or args.no_setsource:
        limits["scripts"] = False
    if args.no_setsource:
        limits["allow_setsource"] = False
    if args.bridge_listen is not None:
        limits["bridge_listen"] = args.bridge_listen
    if args.bridge_certfile or args.bridge_keyfile:
        import ssl

        if args.bridge_listen is None or not (args.bridge_certfile and args.bridge_keyfile):
            print("reflowpy serve: --bridge-certfile and --bridge-keyfile go together, with"
                  " --bridge-listen", file=sys.stderr)
            return 2
        try:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(args.bridge_certfile, args.bridge_keyfile)
        except (OSError, ssl.SSLError) as exc:
            print(f"reflowpy serve: --bridge-certfile/--bridge-keyfile: {exc}",
                  file=sys.stderr)
            return 2
        limits["bridge_ssl"] = context

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
    except (ReflowError, OSError, ExceptionGroup) as exc:
        # refused before serving: an insecure bind, a damaged store, an option that
        # cannot be used (exit 2); the system failing us later (exit 1)
        while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        if isinstance(exc, ReflowError):
            print(f"reflowpy serve: {exc}", file=sys.stderr)
            return 2
        if isinstance(exc, OSError):
            print(f"reflowpy serve: {exc}", file=sys.stderr)
            return 1
        raise
    return 0


# -- trace ----------------------------------------------------------------------------------


@subcommand
def _trace(sub: SubParsers) -> None:
    from reflowpy.observe.cli import add_trace_parser

    add_trace_parser(sub, _load_registry)


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
    p.add_argument("--timeout", type=options.seconds(positive=True), default=5.0,
                   help="seconds per peer")
    p.add_argument("--no-probe", action="store_true", help="only list, do not connect")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_peers_main)


# -- entry point ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``reflowpy`` argument parser with every registered subcommand."""
    from reflowpy import __version__

    parser = argparse.ArgumentParser(prog="reflowpy",
                                     description="reflowpy: actor-model dataflow runtime")
    parser.add_argument("--version", action="version", version=f"reflowpy {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more to stderr: -v info (node log() output, access log),"
                        " -vv debug")
    parser.add_argument("--log-level", default=None,
                        choices=["debug", "info", "warning", "error", "critical"],
                        help="log level on stderr (default warning; overrides -v)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for configure in _SUBCOMMANDS:
        configure(sub)
    return parser


def _setup_logging(args: argparse.Namespace) -> None:
    if args.log_level:
        level = getattr(logging, args.log_level.upper())
    else:
        level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("reflowpy").setLevel(level)


def _quiet_broken_pipe() -> int:
    """stdout's reader went away (``| head``): say nothing more, exit 141 like SIGPIPE."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 141


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help, --version and usage errors
        return int(exc.code or 0) if isinstance(exc.code, int | None) else EXIT_USAGE
    _setup_logging(args)
    handler: Callable[[argparse.Namespace], int] = args.func
    try:
        code = handler(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _quiet_broken_pipe()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
