"""W6: a JSON-lines log pipeline, the workload a stream user runs first (issue 15).

    python -m benchmarks w6 [--lines 200000] [--path FILE] [--runs 3] [--only plain,std,expr]

200,000 log lines (one JSON object each; generated with seed 42 into a temporary file
unless ``--path`` is given) are read, parsed, filtered (``level == 'error' or
latency > 100``), mapped to ``{ts, service, latency}`` and counted per service in
tumbling 1000 ms event-time windows, then sunk. This is the same definition as
``shared/bench/peers2`` (bytewax, asyncio, streamz), so the figures compare; every
run checks the output digest (1,600 rows, 34,394 kept records, ``effe81edd3c9`` for
the default file) so a fast wrong pipeline cannot pass.

Variants (one JSON line each, the median of ``--runs``):

* ``plain``: a ``run()`` line source and four plain-``def`` ``@rf.actor`` stages;
* ``std``: the standard components ``io/ReadFile -> transform/JsonParse ->
  transform/Filter -> transform/Map -> time/Window``;
* ``expr``: one expression call against the equivalent Python lambda (ns per call;
  the goal is within 2x).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import random
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import trio

import reflowpy as rf

LEVELS = ["debug"] * 10 + ["info"] * 60 + ["warn"] * 20 + ["error"] * 10
SERVICES = ["auth", "billing", "cart", "catalog", "checkout", "gateway", "search", "users"]
TS0 = 1_700_000_000_000  # ms; one line per ms, so a 1000 ms window holds 1000 lines
WINDOW_MS = 1000
EOS = "\x00EOS"  # end of stream for the plain pipeline (the std one closes at stop)
FILTER = "level == 'error' or latency > 100"
MAP = "{'ts': ts, 'service': service, 'latency': latency}"


def generate(path: str, n: int, seed: int = 42) -> None:
    """The peers2 log file: same generator, same seed, so digests match across systems."""
    rnd = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            svc = rnd.choice(SERVICES)
            rec = {"ts": TS0 + i, "level": rnd.choice(LEVELS), "service": svc,
                   "host": f"{svc}-{rnd.randrange(4)}",
                   "path": f"/api/v1/{svc}/{rnd.randrange(10000)}",
                   "status": rnd.choice((200, 200, 200, 201, 204, 400, 404, 500)),
                   "latency": int(rnd.expovariate(1 / 40)), "msg": "request handled"}
            f.write(json.dumps(rec) + "\n")


def digest(rows: list[tuple[int, str, int]]) -> dict[str, Any]:
    ordered = sorted((int(s), str(k), int(c)) for s, k, c in rows)
    h = hashlib.md5(json.dumps(ordered).encode()).hexdigest()[:12]
    return {"windows": len(ordered), "kept": sum(r[2] for r in ordered), "digest": h}


def reference(path: str) -> dict[str, Any]:
    """The pipeline as one Python loop: the expected digest (and the floor)."""
    counts: dict[str, int] = {}
    cur: int | None = None
    rows: list[tuple[int, str, int]] = []
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if not (r["level"] == "error" or r["latency"] > 100):
                continue
            w = r["ts"] - r["ts"] % WINDOW_MS
            if w != cur:
                if cur is not None:
                    rows.extend((cur, k, c) for k, c in counts.items())
                cur, counts = w, {}
            counts[r["service"]] = counts.get(r["service"], 0) + 1
    if cur is not None:
        rows.extend((cur, k, c) for k, c in counts.items())
    return digest(rows)


# -- plain actors ----------------------------------------------------------------------


class _LineSource(rf.Actor):
    outports = ["out"]

    async def run(self, ctx: Any) -> None:
        send = ctx.send
        with open(ctx.config["path"]) as f:
            for line in f:
                await send("out", line)
        await send("out", EOS)


@rf.actor(inports=["in"], outports=["out"])
def _parse(ctx: Any) -> Any:
    line = ctx.inputs["in"]
    return {"out": EOS if line is EOS else json.loads(line)}


@rf.actor(inports=["in"], outports=["out"])
def _filter(ctx: Any) -> Any:
    r = ctx.inputs["in"]
    if r is EOS or r["level"] == "error" or r["latency"] > 100:
        return {"out": r}
    return None


@rf.actor(inports=["in"], outports=["out"])
def _map(ctx: Any) -> Any:
    r = ctx.inputs["in"]
    if r is EOS:
        return {"out": r}
    return {"out": {"ts": r["ts"], "service": r["service"], "latency": r["latency"]}}


@rf.actor(inports=["in"], outports=["out"])
def _window(ctx: Any) -> Any:
    r, st = ctx.inputs["in"], ctx.state
    cur = st.get("w")
    if r is EOS:
        return {"out": {"start": cur, "counts": st["c"]}} if cur is not None else None
    w = r["ts"] - r["ts"] % WINDOW_MS
    out = None
    if w != cur:
        if cur is not None:
            out = {"out": {"start": cur, "counts": st["c"]}}
        st["w"], st["c"] = w, {}
    c = st["c"]
    c[r["service"]] = c.get(r["service"], 0) + 1
    return out


class _Sink(rf.Actor):
    inports = ["in"]

    def __init__(self) -> None:
        self.rows: list[tuple[int, str, int]] = []

    async def process(self, ctx: Any) -> None:
        r = ctx.inputs["in"]
        if "counts" in r:  # plain window: one message per window
            self.rows.extend((r["start"], k, c) for k, c in r["counts"].items())
        else:  # time/Window: one message per (window, key)
            self.rows.append((r["start"], r["key"], r["count"]))


def _registry(std: bool) -> rf.Registry:
    reg = rf.default_registry() if std else rf.Registry()
    for name, cls in (("LineSource", _LineSource), ("Parse", _parse), ("Filter", _filter),
                      ("Map", _map), ("Window", _window), ("Sink", _Sink)):
        reg.register(f"bench/{name}", cls)
    return reg


def build(path: str, std: bool) -> rf.Graph:
    """The W6 graph, with the standard components or with plain actors."""
    g = rf.Graph("w6")
    if std:
        g.add_node("read", "io/ReadFile", {"path": path, "mode": "lines"})
        g.add_node("parse", "transform/JsonParse")
        g.add_node("filter", "transform/Filter", {"expression": FILTER})
        g.add_node("map", "transform/Map", {"expression": MAP})
        g.add_node("win", "time/Window", {"kind": "tumbling", "size": WINDOW_MS,
                                          "time_field": "ts", "key": "service",
                                          "items": False})
    else:
        g.add_node("read", "bench/LineSource", {"path": path})
        g.add_node("parse", "bench/Parse")
        g.add_node("filter", "bench/Filter")
        g.add_node("map", "bench/Map")
        g.add_node("win", "bench/Window")
    g.add_node("sink", "bench/Sink")
    for a, b in (("read", "parse"), ("parse", "filter"), ("filter", "map"), ("map", "win"),
                 ("win", "sink")):
        g.add_edge(a, "out", b, "in")
    return g


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_once(path: str, std: bool, reg: rf.Registry | None = None) -> tuple[float, dict[str, Any]]:
    """One timed run (start + drain + stop): seconds and the output digest (with the
    run's CPU seconds, all threads, under ``cpu_seconds``)."""
    graph = build(path, std)
    registry = reg if reg is not None else _registry(std)

    async def main() -> tuple[float, list[tuple[int, str, int]]]:
        t0 = time.perf_counter()
        async with rf.Network(graph, registry) as net:
            await net.idle()
        seconds = time.perf_counter() - t0
        if net.dead_letters():
            raise AssertionError(f"W6 dead-lettered {len(net.dead_letters())} messages")
        return seconds, net._runners["sink"].actor.rows  # type: ignore[attr-defined]

    gc.collect()
    cpu0 = _cpu()
    seconds, rows = trio.run(main)
    cpu = _cpu() - cpu0
    return seconds, {**digest(rows), "cpu_seconds": cpu}


def _emit(line: dict[str, Any]) -> None:
    line.setdefault("peak_rss_mb",
                    round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
    print(json.dumps(line), flush=True)


def pipeline(path: str, n: int, std: bool, runs: int, expected: dict[str, Any]) -> None:
    reg = _registry(std)
    times, cpus = [], []
    for _ in range(runs):
        seconds, got = run_once(path, std, reg)
        cpus.append(got.pop("cpu_seconds"))
        if got != expected:
            raise AssertionError(f"W6 {'std' if std else 'plain'}: output {got} != {expected}")
        times.append(seconds)
    seconds = statistics.median(times)
    _emit({"workload": "W6 log pipeline", "n": n, "seconds": round(seconds, 4),
           "msgs_per_s": round(n / seconds), "variant": "std" if std else "plain",
           "runs": [round(t, 4) for t in times],
           "cpu_seconds": round(statistics.median(cpus), 4), **expected})


def _per_call(fn: Callable[[Any], Any], value: Any, k: int) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(k):
            fn(value)
        best = min(best, time.perf_counter() - t0)
    return best / k * 1e9


def expression_micro(k: int = 200_000) -> None:
    """One expression evaluation against the equivalent Python lambda (ns per call)."""
    from reflowpy.components.expression import Expression

    rec = rf.freeze({"ts": TS0, "level": "info", "service": "auth", "host": "auth-1",
                     "path": "/api/v1/auth/1", "status": 200, "latency": 150,
                     "msg": "request handled"})
    cases: list[tuple[str, str, Callable[[Any], Any]]] = [
        ("filter", FILTER, lambda r: r["level"] == "error" or r["latency"] > 100),
        ("map", MAP, lambda r: {"ts": r["ts"], "service": r["service"],
                                "latency": r["latency"]}),
        ("arith", "latency * 2 + status // 100", lambda r: r["latency"] * 2 + r["status"] // 100),
    ]
    for name, source, py in cases:
        expr = Expression(source)
        if expr(rec) != py(rec):
            raise AssertionError(f"expression {source!r} disagrees with its lambda")
        # expr.call(msg) is what components call; expr(msg) adds the keyword handling
        # (and does not exist before expressions compiled: then both are expr(msg))
        call = getattr(expr, "call", expr)
        e_ns = _per_call(call, rec, k)
        c_ns = _per_call(expr, rec, k)
        p_ns = _per_call(py, rec, k)
        _emit({"workload": "W6 expression", "n": k, "seconds": round(e_ns * k / 1e9, 4),
               "msgs_per_s": round(1e9 / e_ns), "case": name, "expression": source,
               "expression_ns": round(e_ns), "expr_call_ns": round(c_ns),
               "lambda_ns": round(p_ns), "ratio_to_lambda": round(e_ns / p_ns, 2)})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks w6")
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--path", help="an existing log file (default: generate one)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="plain,std,expr")
    args = parser.parse_args(argv)
    only = {w.strip() for w in args.only.split(",")}
    with tempfile.TemporaryDirectory() as tmp:
        path = args.path
        if path is None:
            path = os.path.join(tmp, "logs.jsonl")
            generate(path, args.lines)
        with open(path) as f:
            n = sum(1 for _ in f)
        expected = reference(path)
        if "plain" in only:
            pipeline(path, n, False, args.runs, expected)
        if "std" in only:
            pipeline(path, n, True, args.runs, expected)
    if "expr" in only:
        expression_micro()


if __name__ == "__main__":
    main()
