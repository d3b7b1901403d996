"""The ``reflowpy`` command line: one subcommand per function.

Each subcommand is a function decorated with :func:`subcommand` that receives the
argparse sub-parsers object, adds its own parser and sets ``func`` to a handler
``handler(args) -> int`` (the exit status).

Exit status: 0 success, 1 the command found problems, 2 usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["main", "subcommand"]

SubParsers = Any  # argparse._SubParsersAction[argparse.ArgumentParser] (private type)
_SUBCOMMANDS: list[Callable[[SubParsers], None]] = []


def subcommand(configure: Callable[[SubParsers], None]) -> Callable[[SubParsers], None]:
    """Register a function that adds one subcommand to the ``reflowpy`` parser."""
    _SUBCOMMANDS.append(configure)
    return configure


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
