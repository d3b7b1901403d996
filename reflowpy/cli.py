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
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from reflowpy.errors import GraphFormatError, ReflowError

__all__ = ["main", "subcommand"]

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
        factory = getattr(reflowpy, "default_registry", None)
        if factory is None:
            raise ReflowError("this reflowpy has no default registry yet; pass MODULE:ATTR")
        return factory()
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise ReflowError(f"--registry {spec!r}: expected 'default' or MODULE:ATTR")
    obj = getattr(importlib.import_module(module_name), attr)
    registry = obj() if callable(obj) and not isinstance(obj, reflowpy.Registry) else obj
    if not isinstance(registry, reflowpy.Registry):
        raise ReflowError(f"--registry {spec!r} is a {type(registry).__name__}, not a Registry")
    return registry


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
