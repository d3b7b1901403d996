"""Cost of observing W1 (issue 14). Prints one JSON line per variant, all in one run.

    python -m benchmarks observe [--n 200000] [--runs 3] [--only unobserved,live,trace,sampled]
        [--base DIR]

W1 is the kernel benchmark's pipeline: source -> 10 plain-``def`` pass-through actors ->
sink, ``n`` messages. Variants:

* ``unobserved``: nothing watches the network;
* ``live``: metrics + a live-page client: the server's observability routes on a real
  loopback HTTP server (Hypercorn, same trio run, as in ``reflowpy serve``), the monitor
  ticking at 4 Hz, one client following ``/ui/events`` (SSE) and a Prometheus-style
  scrape of ``/metrics`` every second, both in a child process (a browser and a scraper
  are other processes): the CPU figures are the network's process only;
* ``trace``: the trace store (SQLite file, WAL, writer thread) records every message
  (its ``events`` are hop records: a send and a receive per hop; lineage is derived
  when the trace is read, not here);
* ``sampled``: the trace store records 1 % of the messages (``sample=100``);
* ``subscriber``: one subscriber that drains ``net.events()`` and does nothing else: the
  kernel's own cost of per-message events, the ceiling for any full trace.

``run_cpu_ratio`` is the same from the CPU of the run alone: from entering the
network (the recording, for ``trace``/``sampled``: its writer thread's start and its
last write are in) to its stop. It leaves out what a process pays once, not per run:
importing and starting the HTTP server for ``live`` (``reflowpy serve`` starts it once
for all its networks), the graph's loading, the interpreter's start. Both figures are
printed; with ``--n`` small the fixed part weighs on ``cpu_ratio``.

Rounds are interleaved (every variant once per round, ``--runs`` rounds) so a machine
whose load drifts treats all variants alike; each figure is the median over rounds.
Each line has ``ratio``: msgs/s of the variant over msgs/s of ``unobserved`` in the
same run (the goals: live >= 0.95, trace >= 0.40, sampled >= 0.90), and ``cpu_ratio``,
the same from the process's CPU time (all threads), steadier on a shared machine.

``--base DIR`` (a directory holding another ``reflowpy`` package, e.g. ``git archive
main reflowpy | tar -x -C DIR``) measures that version too: every run of every variant
of both versions is a fresh child process, interleaved round by round, and each line
says its ``version`` (``base`` or ``head``); ``ratio``/``cpu_ratio`` are against the
same version's ``unobserved``, and a head line adds ``cpu_vs_base`` (head CPU seconds
over base CPU seconds for that variant: above 1 is slower).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

import reflowpy as rf
from benchmarks.kernel import _chain, _registry
from reflowpy.observe import Collector, SqliteStore
from reflowpy.observe.asgi import Observability


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _run_plain(net: rf.Network) -> dict[str, Any]:
    c0 = time.process_time()
    async with net:
        await net.idle()
    return {"run_cpu_seconds": time.process_time() - c0}


async def _run_traced(net: rf.Network, store: SqliteStore, sample: int) -> dict[str, Any]:
    c0 = time.process_time()
    async with Collector(store, sample=sample).record(net) as rec, net:
        await net.idle()
    # the recording's end (last batch written, writer thread joined) included
    return {"events": rec.events, "dropped": rec.dropped, "bursts": rec.bursts,
            "run_cpu_seconds": time.process_time() - c0}


_CLIENT = """
import sys, threading, time, httpx
url = sys.argv[1]
got = {"views": 0, "scrapes": 0}
def scrape():
    with httpx.Client(base_url=url, timeout=30) as c:
        while True:
            r = c.get("/metrics")
            assert "reflowpy_node_activations_total" in r.text
            got["scrapes"] += 1
            time.sleep(1.0)
with httpx.Client(base_url=url, timeout=30) as c, \\
        c.stream("GET", "/ui/events", params={"network": "w1"}) as r:
    print("connected", flush=True)
    threading.Thread(target=scrape, daemon=True).start()
    for line in r.iter_lines():
        if line.startswith("event: view"):
            got["views"] += 1
            print("views", got["views"], "scrapes", got["scrapes"], flush=True)
"""


async def _run_live(net: rf.Network) -> dict[str, Any]:
    """The server side in this process (as ``reflowpy serve`` runs it: Hypercorn, the
    monitor at 4 Hz); the live-page client (SSE) and the scraper in another process, as
    a browser and Prometheus are: this process's CPU is what observing costs the
    network's process."""
    from hypercorn.config import Config
    from hypercorn.trio import serve
    from starlette.applications import Starlette

    obs = Observability(lambda: {"w1": net}, interval=0.25)
    app = Starlette(routes=obs.routes())
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    shutdown = trio.Event()
    got: dict[str, Any] = {"views": 0, "scrapes": 0}
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(lambda task_status: serve(
            app, config, shutdown_trigger=shutdown.wait, task_status=task_status))  # type: ignore[arg-type]
        url = binds[0]
        nursery.start_soon(obs.monitor.run)
        client = await trio.lowlevel.open_process(
            [sys.executable, "-c", _CLIENT, url], stdout=subprocess.PIPE)
        assert client.stdout is not None
        lines = _lines(client.stdout)
        line = await lines.__anext__()
        if line != "connected":
            raise AssertionError(f"live client: {line!r}")
        last = ""

        async def follow() -> None:
            nonlocal last
            async for text in lines:
                last = text

        nursery.start_soon(follow)
        t0, c0 = time.perf_counter(), time.process_time()
        async with net:
            await net.idle()
        got["seconds"] = time.perf_counter() - t0
        got["run_cpu_seconds"] = time.process_time() - c0
        # the client's last report (views of the live page, scrapes of /metrics)
        parts = last.split()
        if len(parts) == 4:
            got["views"], got["scrapes"] = int(parts[1]), int(parts[3])
        client.kill()
        await client.wait()
        shutdown.set()
        nursery.cancel_scope.cancel()
    return got


async def _lines(stream: trio.abc.ReceiveStream) -> Any:
    buf = b""
    async for data in stream:
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield line.decode().strip()


def _once(variant: str, n: int, tmp: Path, i: int) -> tuple[float, dict[str, Any]]:
    cpu0 = time.process_time()
    seconds, extra = _once_wall(variant, n, tmp, i)
    extra["cpu_seconds"] = round(time.process_time() - cpu0, 4)
    return seconds, extra


def _once_wall(variant: str, n: int, tmp: Path, i: int) -> tuple[float, dict[str, Any]]:
    reg = _registry()
    net = rf.Network(_chain(n, 10, "bench/Pass"), reg)
    extra: dict[str, Any] = {}
    gc.collect()

    async def main() -> float:
        nonlocal extra
        t0 = time.perf_counter()
        if variant == "unobserved":
            extra = await _run_plain(net)
        elif variant == "subscriber":
            async with trio.open_nursery() as nursery:
                sub = net.events(10_000)

                async def drain() -> None:
                    async for _ in sub:
                        extra["events"] = extra.get("events", 0) + 1

                nursery.start_soon(drain)
                async with net:
                    await net.idle()
            extra["dropped"] = sub.dropped
        elif variant == "live":
            extra = await _run_live(net)
            return float(extra.pop("seconds"))
        else:
            store = SqliteStore(tmp / f"{variant}-{i}.sqlite")
            try:
                extra = await _run_traced(net, store, 1 if variant == "trace" else 100)
            finally:
                store.close()
        return time.perf_counter() - t0

    seconds = trio.run(main)
    got = net._runners["sink"].actor.n  # type: ignore[attr-defined]
    if got != n:
        raise AssertionError(f"{variant}: sink received {got} of {n} messages")
    return seconds, extra


def _child(variant: str, n: int, root: str | None, tmp: Path, i: int
           ) -> tuple[float, dict[str, Any]]:
    """One run in a fresh process, with ``reflowpy`` from ``root`` (None: this tree) and
    this tree's ``benchmarks`` (the same harness measures both versions, even when
    ``root`` holds a ``benchmarks`` package of its own)."""
    here = str(Path(__file__).resolve().parent.parent)
    pkg = os.path.abspath(root) if root else here
    out = subprocess.run(
        [sys.executable, "-c", "import sys, json; sys.path.insert(0, sys.argv[5]);"
         " import reflowpy; sys.path[0] = sys.argv[6];"
         " from benchmarks.observe import _once, _peak_rss_mb; from pathlib import Path;"
         " s, e = _once(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]),"
         " int(sys.argv[4])); e['peak_rss_mb'] = _peak_rss_mb();"
         " e['reflowpy'] = reflowpy.__file__; print(json.dumps([s, e]))",
         variant, str(n), str(tmp), str(i), pkg, here],
        cwd=str(tmp), capture_output=True, text=True, timeout=3600, check=True)
    seconds, extra = json.loads(out.stdout.strip().splitlines()[-1])
    if not extra.pop("reflowpy").startswith(pkg):
        raise AssertionError(f"the {variant} run did not import reflowpy from {pkg}")
    return float(seconds), extra


def _ab(args: argparse.Namespace, variants: list[str]) -> int:
    versions = [("base", args.base), ("head", None)]
    results: dict[tuple[str, str], list[tuple[float, dict[str, Any]]]] = {
        (ver, v): [] for ver, _ in versions for v in variants}
    with tempfile.TemporaryDirectory() as d:
        for i in range(args.runs):
            for variant in variants:
                for ver, root in versions:
                    results[(ver, variant)].append(
                        _child(variant, args.n, root, Path(d), i))
    for ver, _ in versions:
        base = args.n / statistics.median(r[0] for r in results[(ver, "unobserved")])
        base_cpu = statistics.median(
            r[1]["cpu_seconds"] for r in results[(ver, "unobserved")])
        for variant in variants:
            rs = results[(ver, variant)]
            seconds = statistics.median(r[0] for r in rs)
            cpu = statistics.median(r[1]["cpu_seconds"] for r in rs)
            line = {"workload": f"W1 observe {variant}", "version": ver, "n": args.n,
                    "seconds": round(seconds, 4), "msgs_per_s": round(args.n / seconds),
                    "peak_rss_mb": round(max(r[1]["peak_rss_mb"] for r in rs), 1),
                    "ratio": round(args.n / seconds / base, 3),
                    "cpu_ratio": round(base_cpu / cpu, 3), "cpu_seconds": round(cpu, 4)}
            run_cpu = _median_of(rs, "run_cpu_seconds")
            base_run = _median_of(results[(ver, "unobserved")], "run_cpu_seconds")
            if run_cpu and base_run:
                line["run_cpu_ratio"] = round(base_run / run_cpu, 3)
                line["run_cpu_seconds"] = round(run_cpu, 4)
            if ver == "head":
                base_cpu_v = statistics.median(
                    r[1]["cpu_seconds"] for r in results[("base", variant)])
                line["cpu_vs_base"] = round(cpu / base_cpu_v, 3)
            print(json.dumps(line), flush=True)
    return 0


def _median_of(rs: list[tuple[float, dict[str, Any]]], key: str) -> float | None:
    got = [r[1][key] for r in rs if key in r[1]]
    return statistics.median(got) if got else None


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks observe")
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--only", default="unobserved,live,trace,sampled,subscriber")
    p.add_argument("--base", default=None,
                   help="a directory holding another reflowpy package to compare with")
    args = p.parse_args(argv)
    variants = ["unobserved", *[v for v in args.only.split(",") if v and v != "unobserved"]]
    if args.base:
        return _ab(args, variants)
    results: dict[str, list[tuple[float, dict[str, Any]]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for i in range(args.runs):
            for variant in variants:
                results[variant].append(_once(variant, args.n, tmp, i))
    base = args.n / statistics.median(r[0] for r in results["unobserved"])
    base_cpu = statistics.median(r[1]["cpu_seconds"] for r in results["unobserved"])
    for variant in variants:
        seconds = statistics.median(r[0] for r in results[variant])
        cpu = statistics.median(r[1]["cpu_seconds"] for r in results[variant])
        rate = args.n / seconds
        line = {"workload": f"W1 observe {variant}", "n": args.n,
                "seconds": round(seconds, 4), "msgs_per_s": round(rate),
                "peak_rss_mb": round(_peak_rss_mb(), 1), "ratio": round(rate / base, 3),
                "cpu_ratio": round(base_cpu / cpu, 3), **results[variant][-1][1],
                "cpu_seconds": round(cpu, 4)}
        run_cpu = _median_of(results[variant], "run_cpu_seconds")
        base_run = _median_of(results["unobserved"], "run_cpu_seconds")
        if run_cpu and base_run:
            line["run_cpu_ratio"] = round(base_run / run_cpu, 3)
            line["run_cpu_seconds"] = round(run_cpu, 4)
        print(json.dumps(line), flush=True)
    return 0


