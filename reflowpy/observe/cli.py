"""``reflowpy trace ...`` and ``reflowpy run --trace FILE``: the trace store from a shell.

``reflowpy trace list | show EXEC | failures [EXEC] | lineage EXEC MSG | message EXEC MSG
| tail [EXEC] | replay [EXEC]``, each with ``--store FILE|postgresql://...`` (default:
``$REFLOWPY_TRACE`` or ``$REFLOWPY_DATA_DIR/traces.sqlite``, ``./.reflowpy/traces.sqlite``).
``EXEC`` may be omitted or ``last`` for the latest execution, or be a unique prefix.
``--json`` prints JSON lines instead of text. Exit status: 0, 1 (``failures`` found some,
``replay`` differs), 2 (bad store or execution: the message says which).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from reflowpy import options

__all__ = ["add_trace_parser", "default_store", "traced"]


def default_store() -> str:
    """Where ``reflowpy trace`` looks when ``--store`` is not given."""
    env = os.environ.get("REFLOWPY_TRACE")
    if env:
        return env
    data = os.environ.get("REFLOWPY_DATA_DIR") or ".reflowpy"
    return os.path.join(data, "traces.sqlite")


@asynccontextmanager
async def traced(net: Any, path: str | None, sample: int = 1) -> AsyncIterator[None]:
    """Record ``net`` into the store at ``path`` (no-op when ``path`` is ``None``)."""
    if path is None:
        yield
        return
    from reflowpy.observe.backends import open_store
    from reflowpy.observe.collector import Collector

    store = open_store(path)
    try:
        async with Collector(store, sample=sample).record(net) as rec:
            yield
        note = f", {rec.dropped} events dropped" if rec.dropped else ""
        print(f"reflowpy run: trace {rec.execution_id} in {path} ({rec.events} events{note});"
              f" see `reflowpy trace failures --store {path}`", file=sys.stderr)
    finally:
        store.close()


def _short(value: Any, width: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= width else text[: width - 3] + "..."


def _where(h: Any) -> str:
    if h.kind in ("input", "unknown"):
        return f"{'input' if h.kind == 'input' else 'queued before tracing'} -> {h.node}.{h.port}"
    to = f"{h.to_node}.{h.to_port}" if h.to_node else f"OUT {h.to_port}"
    return f"{h.node}.{h.port} -> {to}"


def _cmd_list(store: Any, args: argparse.Namespace) -> int:
    records = store.executions(args.limit)
    if args.json:
        for r in records:
            print(json.dumps(_todict(r, drop=("graph_json",))))
        return 0
    if not records:
        print("no executions recorded")
    for r in records:
        extra = f" dropped={r.dropped}" if r.dropped else ""
        extra += " lineage=inexact" if r.inexact else ""
        extra += f" sample=1/{r.sample}" if r.sample > 1 else ""
        print(f"{r.id}  {r.graph or '-':<20} {r.status:<12} {r.events:>8} events"
              f"  {_ts(r.started)}{extra}")
    return 0


def _ts(ms: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ms / 1000.0, datetime.UTC).strftime(
        "%Y-%m-%d %H:%M:%S")


def _todict(obj: Any, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    import msgspec

    d: dict[str, Any] = msgspec.to_builtins(obj)
    if isinstance(d, list):  # array_like rows
        d = dict(zip(obj.__struct_fields__, d, strict=True))
    for k in drop:
        d.pop(k, None)
    return d


def _header(r: Any) -> str:
    ended = f", ended {_ts(r.ended)}" if r.ended else ""
    return (f"execution {r.id}: graph {r.graph!r}, {r.status}, {r.events} events,"
            f" started {_ts(r.started)}{ended}"
            + (f", {r.dropped} events dropped" if r.dropped else "")
            + (f"; error: {r.error}" if r.error else ""))


def _print_row(row: Any) -> None:
    msg = f"#{row.msg}" if row.msg is not None else ""
    where = f"{row.node}.{row.port}" if row.port else row.node
    if row.kind in ("sent", "output"):
        to = f"{row.peer_node}.{row.peer_port}" if row.peer_node else f"OUT {row.peer_port}"
        where = f"{row.node}.{row.port} -> {to}"
    text = f"{row.seq:>7} {_ts(row.ts)} {row.kind:<15} {where:<32} {msg:<7}"
    if row.value is not None:
        text += " " + _short(row.value)
    if row.causes:
        text += f" <- {', '.join(f'#{c}' for c in row.causes[:8])}"
    if row.error:
        text += f" ERROR {row.error}"
    print(text.rstrip())


def _cmd_show(store: Any, args: argparse.Namespace) -> int:
    r = store.execution(args.execution)
    rows = store.events(r.id, kinds=args.kind or None, node=args.node, limit=args.limit)
    if args.json:
        for row in rows:
            print(json.dumps(_todict(row)))
        return 0
    print(_header(r))
    for row in rows:
        _print_row(row)
    return 0


def _cmd_failures(store: Any, args: argparse.Namespace) -> int:
    from reflowpy.observe import query

    r = store.execution(args.execution)
    found = query.failures(store, r.id, limit=args.limit)
    if args.json:
        for f in found:
            print(json.dumps(_todict(f)))
        return 1 if found else 0
    print(_header(r))
    if not found:
        print("no failures")
        return 0
    print(f"{len(found)} failure{'s' if len(found) != 1 else ''}:")
    for f in found:
        what = "dead-lettered" if f.kind == "dead" else "failed"
        attempt = f" (attempt {f.attempt})" if f.attempt else ""
        port = f" port {f.port!r}" if f.port else ""
        print(f"- node {f.node!r}{port} {what}{attempt}: {f.error}")
        if f.msg is not None:
            print(f"    on message #{f.msg} = {_short(f.value, 100)}")
        if f.path:
            chain = " <= ".join(f"{_where(h)} #{h.msg}" for h in f.path[:12])
            print(f"    path: {chain}")
        for h in f.inputs:
            print(f"    root cause: input #{h.msg} into {h.node}.{h.port} ="
                  f" {_short(h.value, 100)}")
    if r.inexact:
        print("note: events were dropped while recording; lineage may be incomplete")
    return 1


def _cmd_lineage(store: Any, args: argparse.Namespace) -> int:
    from reflowpy.observe import query

    r = store.execution(args.execution)
    hops, roots = query.lineage(store, r.id, args.msg)
    if args.json:
        print(json.dumps({"hops": [_todict(h) for h in hops],
                          "inputs": [_todict(h) for h in roots]}))
        return 0
    print(_header(r))
    print(f"message #{args.msg} came from:")
    for h in hops:
        causes = f" <- {', '.join(f'#{c}' for c in h.causes)}" if h.causes else ""
        print(f"  #{h.msg:<6} {_where(h):<40} {_short(h.value)}{causes}")
    print(f"inputs: {', '.join(f'#{h.msg} into {h.node}.{h.port}' for h in roots) or 'none'}")
    return 0


def _cmd_message(store: Any, args: argparse.Namespace) -> int:
    from reflowpy.observe import query

    r = store.execution(args.execution)
    rows, caused = query.history(store, r.id, args.msg)
    if args.json:
        print(json.dumps({"events": [_todict(x) for x in rows],
                          "caused": [_todict(h) for h in caused]}))
        return 0
    print(_header(r))
    print(f"what happened to message #{args.msg}:")
    for row in rows:
        _print_row(row)
    for h in caused:
        print(f"  caused #{h.msg}: {_where(h)} {_short(h.value)}")
    return 0


def _cmd_tail(store: Any, args: argparse.Namespace) -> int:
    import time

    r = store.execution(args.execution)
    rows = store.events(r.id, limit=args.limit, newest=True)
    for row in rows:
        print(json.dumps(_todict(row))) if args.json else _print_row(row)
    last = rows[-1].seq if rows else 0
    while args.follow:
        rows = store.events(r.id, after_seq=last, limit=10_000)
        for row in rows:
            print(json.dumps(_todict(row))) if args.json else _print_row(row)
            last = row.seq
        sys.stdout.flush()
        if not rows:
            if store.execution(r.id).ended is not None:
                return 0
            time.sleep(0.5)
    return 0


def _cmd_replay(store: Any, args: argparse.Namespace) -> int:
    from reflowpy.observe.replay import replay

    r = store.execution(args.execution)
    registry = None
    if args.registry:
        registry = args.load_registry(args.registry)
    result = replay(store, r.id, registry=registry, timeout=args.timeout)
    if args.json:
        print(json.dumps(_todict(result)))
    else:
        print(f"replayed execution {r.id}: {result.inputs} inputs sent,"
              f" {result.outputs} outputs compared")
        for d in result.differences:
            print(f"  differs: {d}")
        print("outputs identical" if result.same else "outputs DIFFER")
    return 0 if result.same else 1


def _main(args: argparse.Namespace) -> int:
    from reflowpy.errors import ReflowError
    from reflowpy.observe.backends import open_store

    path = args.store or default_store()
    if not path.startswith(("postgresql:", "postgres:")) and not os.path.exists(path):
        print(f"reflowpy trace: error: no trace store at {path!r} (record one with"
              " `reflowpy run --trace FILE`, or pass --store)", file=sys.stderr)
        return 2
    try:
        store = open_store(path)
    except ReflowError as exc:
        print(f"reflowpy trace: error: {exc}", file=sys.stderr)
        return 2
    try:
        handler = _COMMANDS[args.trace_command]
        return int(handler(store, args))
    except ReflowError as exc:
        print(f"reflowpy trace: error: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()


_COMMANDS = {
    "list": _cmd_list, "show": _cmd_show, "failures": _cmd_failures, "lineage": _cmd_lineage,
    "message": _cmd_message, "tail": _cmd_tail, "replay": _cmd_replay,
}


def add_trace_parser(sub: Any, load_registry: Any) -> None:
    """Add ``trace`` and its sub-commands to the ``reflowpy`` parser; ``load_registry``
    turns ``--registry SPEC`` into a registry (the command line's own loader)."""
    p = sub.add_parser("trace", help="query recorded traces: list, show, failures, lineage",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.set_defaults(load_registry=load_registry)
    tsub = p.add_subparsers(dest="trace_command", metavar="WHAT", required=True)

    def common(q: argparse.ArgumentParser, execution: bool = True) -> None:
        q.add_argument("--store", default=None, metavar="FILE|postgresql://...",
                       help=f"trace store (default: {default_store()})")
        q.add_argument("--json", action="store_true", help="print JSON lines")
        if execution:
            q.add_argument("execution", nargs="?", default=None,
                           help="execution id or unique prefix (default: the latest)")
        q.set_defaults(func=_main)

    q = tsub.add_parser("list", help="recorded executions, newest first")
    common(q, execution=False)
    q.add_argument("--limit", type=options.count(0), default=50)
    q = tsub.add_parser("show", help="the events of an execution")
    common(q)
    q.add_argument("--kind", action="append", help="only these kinds (repeatable)")
    q.add_argument("--node", help="only events of this node")
    q.add_argument("--limit", type=options.count(0), default=10_000)
    q = tsub.add_parser("failures", help="each failure with its message and root input")
    common(q)
    q.add_argument("--limit", type=options.count(0), default=100)
    for name, text in (("lineage", "which inputs produced message MSG"),
                       ("message", "what happened to message MSG")):
        q = tsub.add_parser(name, help=text)
        q.add_argument("--store", default=None, metavar="FILE|postgresql://...")
        q.add_argument("--json", action="store_true", help="print JSON")
        q.add_argument("execution", help="execution id, prefix or 'last'")
        q.add_argument("msg", type=options.count(0), help="message id (the #N in `trace show`)")
        q.set_defaults(func=_main)
    q = tsub.add_parser("tail", help="the newest events; --follow for live ones")
    common(q)
    q.add_argument("--limit", type=options.count(0), default=20)
    q.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    q = tsub.add_parser("replay", help="re-run on the recorded inputs and diff the outputs")
    common(q)
    q.add_argument("--registry", default=None, metavar="default|MODULE:ATTR")
    q.add_argument("--timeout", type=options.seconds(positive=True), default=60.0)
