"""Server figures (issue 6). Prints one JSON line per workload.

    python -m benchmarks server [--quick]

S1 health: GET /health, requests/s with 32 concurrent keep-alive clients.
S2 start: POST /executions of a 2-node graph with one input and ``until: idle``
   (parse, validate, build, start, deliver, record), requests/s with 8 concurrent clients.
S3 sse: one busy network (a source -> Repeat -> Drop chain at full speed) with 10 SSE
   subscribers on /executions/{id}/events; events/s delivered (sum over subscribers)
   and events dropped for slow subscribers.
``--baseline DIR`` runs the server of another checkout (main before a change) beside
this one, alternating rounds, and adds ``ratio_to_baseline`` (>1: this one is faster).
S0 bare: the same GET /health load against a bare Starlette + Hypercorn (trio) app with
   one JSON route, in the same run: ``server_health`` carries ``ratio_to_bare`` (the
   goal is >= 0.8: the guard, routing and JSON of the real server cost little).

The server runs in a subprocess (``python -m benchmarks.server --serve``) so client and
server do not share an interpreter; on a 2-core machine they still share the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from typing import Any

import httpx
import trio

import reflowpy as rf

GRAPH = {
    "processes": {"a": {"component": "bench/Repeat"}, "b": {"component": "bench/Repeat"}},
    "connections": [{"src": {"process": "a", "port": "out"}, "tgt": {"process": "b",
                                                                     "port": "in"}}],
    "inports": {"in": {"process": "a", "port": "in"}},
    "outports": {"out": {"process": "b", "port": "out"}},
}

BUSY = {
    "processes": {"s": {"component": "bench/Source"}, "r": {"component": "bench/Repeat"},
                  "d": {"component": "bench/Drop"}},
    "connections": [
        {"src": {"process": "s", "port": "out"}, "tgt": {"process": "r", "port": "in"}},
        {"src": {"process": "r", "port": "out"}, "tgt": {"process": "d", "port": "in"}},
    ],
}


@rf.actor(inports=["in"], outports=["out"])
def _repeat(ctx: Any) -> Any:
    return {"out": ctx.inputs["in"]}


@rf.actor(inports=["in"])
def _drop(ctx: Any) -> None:
    return None


class _Source(rf.Actor):
    outports = ["out"]

    async def run(self, ctx: Any) -> None:
        i = 0
        while True:
            await ctx.send("out", i)
            i += 1


def _registry() -> rf.Registry:
    registry = rf.Registry()
    registry.register("bench/Repeat", _repeat)
    registry.register("bench/Drop", _drop)
    registry.register("bench/Source", _Source)
    return registry


def _serve() -> None:
    import signal

    from reflowpy.server.serve import serve

    async def main() -> None:
        shutdown = trio.Event()
        async with trio.open_nursery() as nursery:
            async def on_signal() -> None:
                with trio.open_signal_receiver(signal.SIGTERM) as signals:
                    async for _ in signals:
                        shutdown.set()
                        return

            nursery.start_soon(on_signal)
            await serve(port=0, data_dir=None, registry=_registry(), shutdown=shutdown,
                        drain_timeout=1.0)
            nursery.cancel_scope.cancel()

    trio.run(main)


def _serve_bare() -> None:
    """A bare Starlette app on Hypercorn (trio): the floor ``/health`` is measured against."""
    from hypercorn.config import Config
    from hypercorn.trio import serve as hypercorn_serve
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app = Starlette(routes=[Route("/health", health)])
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None

    async def main() -> None:
        async def started(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            await hypercorn_serve(app, config, task_status=task_status)  # type: ignore[arg-type]

        async with trio.open_nursery() as nursery:
            binds = await nursery.start(started)
            print(f"listening on {binds[0]}", flush=True)

    trio.run(main)


def _emit(workload: str, n: int, seconds: float, server_rss: float, **extra: Any) -> None:
    print(json.dumps({
        "workload": workload, "n": n, "seconds": round(seconds, 4),
        "msgs_per_s": round(n / seconds) if seconds > 0 else None,
        "peak_rss_mb": round(max(server_rss,
                                 resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), 1),
        **extra}), flush=True)


def _server_rss(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _request(method: str, path: str, body: bytes = b"") -> bytes:
    head = (f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {len(body)}\r\n"
            "content-type: application/json\r\n\r\n")
    return head.encode() + body


async def _load(url: str, n: int, workers: int, request: bytes) -> float:
    """``n`` requests over ``workers`` keep-alive connections, with a minimal HTTP/1.1
    client (a general-purpose client costs more per request than the server does)."""
    host, port = url.split("//")[1].rsplit(":", 1)
    counter = iter(range(n))

    async def exchange(stream: trio.SocketStream, buf: bytes) -> bytes | None:
        """Send one request, read its response; ``None`` if the server closed the
        connection first (Hypercorn closes keep-alive connections after 1000 requests)."""
        await stream.send_all(request)
        while True:
            head_end = buf.find(b"\r\n\r\n")
            if head_end >= 0:
                head = buf[:head_end].lower()
                length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
                if len(buf) >= head_end + 4 + length:
                    status = int(head.split(b" ", 2)[1])
                    assert status < 300, buf
                    return buf[head_end + 4 + length:]
            chunk = await stream.receive_some(65536)
            if not chunk:
                return None
            buf += chunk

    async def worker() -> None:
        stream = await trio.open_tcp_stream(host, int(port))
        buf = b""
        for _ in counter:
            rest = await exchange(stream, buf)
            while rest is None:
                await stream.aclose()
                stream = await trio.open_tcp_stream(host, int(port))
                rest = await exchange(stream, b"")
            buf = rest
        await stream.aclose()

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(workers):
            nursery.start_soon(worker)
    return time.perf_counter() - start


async def _sse(url: str, seconds: float, subscribers: int) -> tuple[int, int, float]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        ex = (await client.post("/executions", json={"graph": BUSY})).json()["id"]
        received = [0] * subscribers
        dropped = [0] * subscribers
        ready = trio.Semaphore(0)

        async def subscriber(i: int) -> None:
            async with client.stream("GET", f"/executions/{ex}/events") as resp:
                ready.release()
                last_event = ""
                async for line in resp.aiter_lines():
                    if line.startswith("event: "):
                        last_event = line[7:]
                    elif line.startswith("data: "):
                        if last_event == "dropped":
                            dropped[i] += json.loads(line[6:])["dropped"]
                        else:
                            received[i] += 1

        async with trio.open_nursery() as nursery:
            for i in range(subscribers):
                nursery.start_soon(subscriber, i)
            for _ in range(subscribers):
                await ready.acquire()
            base = sum(received)
            start = time.perf_counter()
            await trio.sleep(seconds)
            total = sum(received) - base
            elapsed = time.perf_counter() - start
            nursery.cancel_scope.cancel()
        await client.post(f"/executions/{ex}/stop", json={"mode": "force"})
    return total, sum(dropped), elapsed


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks server")
    parser.add_argument("--quick", action="store_true", help="smaller counts (CI smoke)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--baseline", metavar="DIR", default=None,
                        help="also run the server of another checkout (e.g. main before a"
                        " change), alternating rounds with this one: before/after in one run")
    args = parser.parse_args(argv)
    if args.serve:
        _serve()
        return
    if args.serve_bare:
        _serve_bare()
        return
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    n_health = 2000 if args.quick else 20000
    bare = subprocess.Popen([sys.executable, "-m", "benchmarks", "server", "--serve-bare"],
                            stdout=subprocess.PIPE, text=True, env=env, cwd=root)
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks", "server", "--serve"],
                            stdout=subprocess.PIPE, text=True, env=env, cwd=root)
    procs = [bare, proc]
    if args.baseline:
        base_root = os.path.abspath(args.baseline)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "benchmarks", "server", "--serve"], stdout=subprocess.PIPE,
            text=True, cwd=base_root, env=dict(os.environ, PYTHONPATH=base_root)))
    try:
        urls = []
        for p in procs:
            assert p.stdout is not None
            match = re.search(r"listening on (http://\S+)", p.stdout.readline())
            if not match:
                raise SystemExit("a server did not start")
            urls.append(match.group(1))
        bare_url, url = urls[:2]
        base_url = urls[2] if args.baseline else None
        # alternate rounds against both, so load from other processes on the machine
        # hits both alike
        rounds = 5
        bare_secs = secs = base_secs = 0.0
        health = _request("GET", "/health")
        for _ in range(rounds):
            bare_secs += trio.run(_load, bare_url, n_health // rounds, 16, health)
            secs += trio.run(_load, url, n_health // rounds, 16, health)
            if base_url:
                base_secs += trio.run(_load, base_url, n_health // rounds, 16, health)
        _emit("server_health_bare_starlette", n_health, bare_secs, _server_rss(bare.pid),
              concurrency=16)
        bare.terminate()
        extra = {"ratio_to_baseline": round(base_secs / secs, 3)} if base_url else {}
        _emit("server_health", n_health, secs, _server_rss(proc.pid), concurrency=16,
              ratio_to_bare=round(bare_secs / secs, 3), **extra)
        if base_url:
            _emit("server_health_baseline", n_health, base_secs, _server_rss(procs[2].pid),
                  concurrency=16)
        n_start = 200 if args.quick else 2000
        seconds = 2.0 if args.quick else 10.0

        body = json.dumps({"graph": GRAPH, "inputs": {"in": [1]},
                           "policy": {"until": "idle"}}).encode()
        start = _request("POST", "/executions", body)
        secs = base_secs = 0.0
        for _ in range(rounds):
            secs += trio.run(_load, url, n_start // rounds, 8, start)
            if base_url:
                base_secs += trio.run(_load, base_url, n_start // rounds, 8, start)
        extra = {"ratio_to_baseline": round(base_secs / secs, 3)} if base_url else {}
        _emit("server_start_execution", n_start, secs, _server_rss(proc.pid), concurrency=8,
              **extra)
        if base_url:
            _emit("server_start_execution_baseline", n_start, base_secs,
                  _server_rss(procs[2].pid), concurrency=8)
            total, dropped, secs = trio.run(_sse, base_url, seconds, 10)
            _emit("server_sse_10_subscribers_baseline", total, secs, _server_rss(procs[2].pid),
                  subscribers=10, dropped=dropped)
        total, dropped, secs = trio.run(_sse, url, seconds, 10)
        _emit("server_sse_10_subscribers", total, secs, _server_rss(proc.pid),
              subscribers=10, dropped=dropped)
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)


if __name__ == "__main__":
    if "--serve" in sys.argv:
        _serve()
