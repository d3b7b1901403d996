"""Graph-layer workloads on freshly built n-node graphs (default 10,000).

The graph is a layered DAG: ``width`` nodes per layer, each node connected to two
nodes of the next layer (plus a few long edges), with IIPs on the first layer and
exported ports at both ends, so every analysis has real work. Each workload prints
one JSON line; ``msgs_per_s`` is nodes per second for graph work.

    python -m benchmarks graph [--nodes 10000] [--repeat 3]
    python -m benchmarks graph --file-mb 50 [--formats reflow,noflo,fbp,yaml]
        [--base DIR] [--rounds 1] [--files DIR]

``--file-mb`` instead writes, for each format, a file of about that size (the same
layered graph, scaled), and reads each in fresh child processes, two ways:

* ``graph.loads.file.FMT``: ``reflowpy.load(path)`` (format detected, as ``reflowpy
  run`` does); ``seconds`` and ``cpu_seconds`` are the load's wall and CPU time;
* ``graph.validate.file.FMT``: what a user feels, ``reflowpy validate FILE`` from the
  interpreter's start to its exit (imports, load, the analysis, the report);
  ``seconds``/``cpu_seconds`` are the whole process's.

``peak_rss_mb`` is the child's own peak (``VmHWM``), text included, ``n`` the node
count and ``msgs_per_s`` nodes/s. ``--files DIR`` keeps the files there and reuses
them on the next run (writing 50 MB of each format takes minutes).

``--base DIR`` (a directory holding another ``reflowpy`` package, e.g. ``git archive
REV reflowpy | tar -x -C DIR``) loads the same file with that version too, interleaved
with this one in each of ``--rounds`` rounds, so a before/after pair comes from one run
on one file (``variant`` is ``base`` or ``head``; the JSON line is as above).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from reflowpy.network import analysis
from reflowpy.network.graph import Graph


def build(n: int, width: int = 50, seed: int = 1) -> Graph:
    """A layered graph of ``n`` nodes, about 2 connections per node; every node but
    the first layer's has an upstream node."""
    rng = random.Random(seed)
    g = Graph(f"bench{n}")
    ids = [f"n{i}" for i in range(n)]
    for i, node_id in enumerate(ids):
        g.add_node(node_id, "bench/Step", {"label": f"step {i}"})
    for i in range(n - width):
        layer_end = (i // width + 1) * width
        for j in {i + width, rng.randrange(layer_end, min(layer_end + width, n))}:
            g.add_edge(ids[i], "out", ids[j], "in")
        if i % 97 == 0 and layer_end + 3 * width < n:
            g.add_edge(ids[i], "side", ids[layer_end + 2 * width + i % width], "aux")
    for i in range(min(width, n)):
        g.add_iip(i, ids[i], "in")
    g.add_inport("input", ids[0], "in")
    g.add_outport("output", ids[-1], "out")
    return g


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _measure(workload: str, n: int, repeat: int, fn: Callable[[], Any]) -> dict[str, Any]:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return {"workload": workload, "n": n, "seconds": round(best, 4),
            "msgs_per_s": round(n / best) if best > 0 else None,
            "peak_rss_mb": round(_rss_mb(), 1)}


_CHILD = """
import json, resource, sys, time
import reflowpy
t0, c0 = time.perf_counter(), time.process_time()
g = reflowpy.load(sys.argv[1])
dt, cpu = time.perf_counter() - t0, time.process_time() - c0
# VmHWM: this process's own peak. ru_maxrss would not do: Linux carries the parent's
# peak across fork and exec, and the parent held the big graph it wrote.
with open("/proc/self/status") as f:
    hwm = [line for line in f if line.startswith("VmHWM:")]
rss = (int(hwm[0].split()[1]) if hwm
       else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024.0
print(json.dumps({"nodes": len(g.nodes), "seconds": dt, "cpu": cpu, "rss": rss,
                  "package": __import__("reflowpy").__file__}))
"""

# ``reflowpy validate FILE`` as the console script runs it, timed from the process's
# start (the CPU clock counts from there; the wall clock is taken by the parent).
_VALIDATE = """
import contextlib, io, json, sys, time
from reflowpy import cli
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = cli.main(["validate", sys.argv[1]])
cpu = time.process_time()
with open("/proc/self/status") as f:
    hwm = [line for line in f if line.startswith("VmHWM:")]
print(json.dumps({"code": code, "cpu": cpu, "rss": int(hwm[0].split()[1]) / 1024.0,
                  "report": out.getvalue()[:200],
                  "package": __import__("reflowpy").__file__}))
"""


def _variants(base: str | None) -> list[tuple[str, dict[str, str]]]:
    """(name, environment) of each version to load with: this one, and ``base``."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = [("head", {**os.environ, "PYTHONPATH": here})]
    if base:
        out.insert(0, ("base", {**os.environ, "PYTHONPATH": os.path.abspath(base)}))
    return out


def _graph_file(directory: str, fmt: str, mb: float) -> tuple[str, int]:
    """(path, node count) of a file of about ``mb`` MB in ``fmt`` under ``directory``,
    written unless a file for that size is there already."""
    path = os.path.join(directory, f"graph-{mb:g}mb.{fmt}")
    meta = path + ".nodes"
    if os.path.exists(path) and os.path.exists(meta):
        with open(meta) as f:
            return path, int(f.read())
    probe = 2000
    size = len(build(probe).dumps(fmt))
    n = max(100, int(probe * mb * 1e6 / size))
    with open(path, "w", encoding="utf-8") as f:
        f.write(build(n).dumps(fmt))
    with open(meta, "w") as f:
        f.write(str(n))
    return path, n


def file_loads(mb: float, fmts: Sequence[str], base: str | None = None,
               rounds: int = 1, files: str | None = None) -> Iterator[dict[str, Any]]:
    """Load a ``mb``-megabyte file of each format in a child process, and validate it
    with the CLI in another; one line each, as each ends. ``cpu_seconds`` is the
    child's CPU time: on a shared machine it says what the wall-clock ``seconds``
    cannot. With ``base``, each round runs both versions, one after the other."""
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in fmts:
            path, n = _graph_file(files or tmp, fmt, mb)
            file_mb = os.path.getsize(path) / 1e6
            for _ in range(rounds):
                for variant, env in _variants(base):
                    # cwd=tmp: ``-c`` puts the working directory first on sys.path, where
                    # it would shadow the variant's PYTHONPATH.
                    proc = subprocess.run([sys.executable, "-c", _CHILD, path], cwd=tmp,
                                          capture_output=True, text=True, check=True, env=env)
                    r = json.loads(proc.stdout)
                    tag = {"variant": variant, "package": r["package"]} if base else {}
                    yield {"workload": f"graph.loads.file.{fmt}", "n": r["nodes"],
                           "seconds": round(r["seconds"], 3), "cpu_seconds": round(r["cpu"], 3),
                           "msgs_per_s": round(r["nodes"] / r["seconds"]),
                           "peak_rss_mb": round(r["rss"], 1),
                           "file_mb": round(file_mb, 1), **tag}
                    t0 = time.perf_counter()
                    proc = subprocess.run([sys.executable, "-c", _VALIDATE, path], cwd=tmp,
                                          capture_output=True, text=True, check=True, env=env)
                    dt = time.perf_counter() - t0
                    r = json.loads(proc.stdout)
                    if r["code"] != 0:
                        raise RuntimeError(f"reflowpy validate {path} failed: {r['report']}")
                    yield {"workload": f"graph.validate.file.{fmt}", "n": n,
                           "seconds": round(dt, 3), "cpu_seconds": round(r["cpu"], 3),
                           "msgs_per_s": round(n / dt), "peak_rss_mb": round(r["rss"], 1),
                           "file_mb": round(file_mb, 1), **tag}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks graph")
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--file-mb", type=float, default=None,
                        help="load a file of about this many MB per format instead")
    parser.add_argument("--formats", default="reflow,noflo,fbp,yaml")
    parser.add_argument("--base", default=None,
                        help="also load each file with the reflowpy package under DIR")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--files", default=None,
                        help="keep the generated files in DIR and reuse them")
    args = parser.parse_args(argv)
    if args.file_mb:
        if args.files:
            os.makedirs(args.files, exist_ok=True)
        for line in file_loads(args.file_mb, args.formats.split(","), args.base,
                               args.rounds, args.files):
            print(json.dumps(line), flush=True)
        return 0
    n, r = args.nodes, args.repeat
    g = build(n)
    texts = {fmt: g.dumps(fmt) for fmt in ("reflow", "noflo", "fbp", "yaml")}
    results = [_measure("graph.build", n, r, lambda: build(n))]
    for fmt in ("reflow", "noflo", "fbp", "yaml"):
        results.append(_measure(f"graph.dumps.{fmt}", n, r, lambda f=fmt: g.dumps(f)))
        results.append(_measure(f"graph.loads.{fmt}", n, r,
                                lambda f=fmt: Graph.loads(texts[f], f)))
    results += [
        _measure("graph.loads.detect", n, r, lambda: Graph.loads(texts["reflow"])),
        _measure("graph.copy", n, r, g.copy),
        _measure("analysis.validate", n, r, lambda: analysis.validate(g)),
        _measure("analysis.cycles", n, r, lambda: analysis.cycles(g)),
        _measure("analysis.topological_order", n, r, lambda: analysis.topological_order(g)),
        _measure("analysis.stages", n, r, lambda: analysis.stages(g)),
        _measure("analysis.orphans", n, r, lambda: analysis.orphans(g)),
        _measure("analysis.unreachable", n, r, lambda: analysis.unreachable(g)),
        _measure("analysis.reachable_from", n, r, lambda: analysis.reachable_from(g, "n0")),
        _measure("analysis.connected_components", n, r,
                 lambda: analysis.connected_components(g)),
        _measure("analysis.layout", n, r, lambda: analysis.layout(g)),
        _measure("graph.undo_layout", n, 1, g.undo),
    ]
    for line in results:
        print(json.dumps(line))
    sys.stdout.flush()
    return 0
