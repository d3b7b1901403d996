"""Bridges: throughput and latency across a loopback bridge, and partitions vs one process.

    python -m benchmarks bridge [--n N] [--only NAME,...]

Prints JSON lines (workload, n, seconds, msgs_per_s, peak_rss_mb, ...):

* ``bridge_oneway_small_{receipt,completion}``: small messages from this process to a
  ``core/Drop`` on a WebSocket peer process, until all are acked (goal >= 100k msgs/s);
* ``bridge_oneway_64k_{zstd,plain}``: 64 KiB messages (compressible text), with zstd
  above the 1 KiB threshold and with compression off;
* ``transport_rtt_{tcp,wsproto,trio-websocket,bridge-ws}``: baselines, a 16-byte
  message to a bare echo process and back over each transport alone;
* ``bridge_rtt``: one message at a time to a ``core/Repeat`` on a WebSocket peer and
  back (p50/p99 in microseconds; goal p50 <= 200 us), plus the session's own
  PING/PONG round trip on the same link (``ping_p50_us``); ``bridge_rtt_partition``
  the same to a partition worker over a Unix socket; ``bridge_rtt_serve`` to
  ``reflowpy serve``'s ``/bridge`` (Hypercorn + Starlette), ``bridge_rtt_serve_port``
  to the same server's ``--bridge-listen`` port (the bridge's own listener);
* ``chain4_cpu_one_process`` vs ``chain4_cpu_2_partitions`` vs
  ``chain4_cpu_local_plus_partition``: four stages of ~50 us CPU each, in one process,
  over two partition workers (the edge between them direct, partition to partition;
  ``_relayed``: through this process), or two stages here and two in one worker (goal
  >= 1.6x on 2 cores);
* ``--only inproc`` (a measuring tool, not in the default run): both ends in this
  process over a Unix socket (``--transport ws``: the bridge's WebSocket on loopback),
  ``bridge_rtt_inproc`` and ``chain4_inproc_{one,split}`` (CPU and task steps per
  message; under callgrind, instructions); ``--only inproc_rtt --n N``: only the
  round trips, timers out of the measured path (callgrind at two N, subtract).

The oneway lines also give each process' CPU per message and ``cpu_bound_msgs_per_s``
(what two free cores would sustain: the busier process sets the pace), as the wall
clock of a loaded machine cannot.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import trio

import reflowpy as rf
from reflowpy.bridge import BridgedNetwork, Peer, Peers

PLUGIN = "benchmarks._bridge_components:register"
TOKEN = "bench-token"


def _rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return own


def _emit(workload: str, n: int, seconds: float, **extra: Any) -> None:
    line = {"workload": workload, "n": n, "seconds": round(seconds, 4),
            "msgs_per_s": round(n / seconds, 1) if seconds > 0 else 0.0,
            "peak_rss_mb": round(_rss_mb(), 1), **extra}
    print(json.dumps(line), flush=True)


def _registry() -> rf.Registry:
    from benchmarks._bridge_components import register

    reg = rf.default_registry()
    register(reg)
    return reg


@contextlib.asynccontextmanager
async def _peer() -> AsyncIterator[str]:
    cmd = [sys.executable, "-m", "reflowpy.bridge.worker", "--listen", "ws://127.0.0.1:0",
           "--serve", "--plugin", PLUGIN, "--id", "bench-peer"]
    async with trio.open_nursery() as nursery:
        proc: trio.Process = await nursery.start(lambda task_status: trio.run_process(
            cmd, env={**os.environ, "REFLOWPY_TOKEN": TOKEN}, stdout=subprocess.PIPE,
            check=False, task_status=task_status))
        assert proc.stdout is not None
        line = b""
        while not line.endswith(b"\n"):
            chunk = await proc.stdout.receive_some(1)
            if not chunk:
                raise RuntimeError("bridge peer exited")
            line += chunk
        global _PEER_PID
        _PEER_PID = proc.pid
        try:
            yield line.split()[1].decode()
        finally:
            proc.kill()
            nursery.cancel_scope.cancel()


_PEER_PID = 0  # the live bench peer's process id (for its CPU time)


def _oneway_graph() -> rf.Graph:
    g = rf.Graph("oneway")
    g.add_node("src", "core/Repeat")
    g.add_node("sink", "core/Drop", {"remote": "peer"})
    g.add_edge("src", "out", "sink", "in")
    g.add_inport("in", "src", "in")
    return g


async def oneway(url: str, n: int, value: Any, workload: str, *, ack_on: str = "receipt",
                 compress_threshold: int | None = None) -> None:
    bn = BridgedNetwork(_oneway_graph(), _registry(), peers=Peers({"peer": Peer(url, TOKEN)}),
                        ack_on={"remote:peer": ack_on}, compress_threshold=compress_threshold)
    async with bn:
        peer0, cpu0 = _cpu_of(_PEER_PID), time.process_time()
        start = time.perf_counter()
        for _ in range(n):
            await bn.network.send("in", value)
        await bn.drain()
        seconds = time.perf_counter() - start
        local, peer = time.process_time() - cpu0, _cpu_of(_PEER_PID) - peer0
        s = bn.session("remote:peer").statistics()
    # The two processes run in parallel: on two free cores the busier one sets the pace
    # (what a loaded machine's wall clock cannot show).
    _emit(workload, n, seconds, ack_on=ack_on, bytes_out=s.bytes_out, frames_out=s.frames_out,
          msgs_per_frame=round(n / max(1, s.frames_out), 1),
          mb_per_s=round(s.bytes_out / seconds / 2**20, 1),
          local_cpu_us_per_msg=round(local / n * 1e6, 2),
          peer_cpu_us_per_msg=round(peer / n * 1e6, 2),
          cpu_bound_msgs_per_s=round(n / max(local, peer, 1e-9), 1))


def _percentiles(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {"p50_us": round(samples[len(samples) // 2] * 1e6, 1),
            "p99_us": round(samples[int(len(samples) * 0.99)] * 1e6, 1),
            "mean_us": round(statistics.fmean(samples) * 1e6, 1)}


def _rtt_graph(where: dict[str, Any]) -> rf.Graph:
    """``in`` -> a -> echo (placed by ``where``) -> z -> ``out``, all ``core/Repeat``."""
    g = rf.Graph("rtt")
    g.add_node("a", "core/Repeat")
    g.add_node("echo", "core/Repeat", where)
    g.add_node("z", "core/Repeat")
    g.add_edge("a", "out", "echo", "in")
    g.add_edge("echo", "out", "z", "in")
    g.add_inport("in", "a", "in")
    g.add_outport("out", "z", "out")
    return g


async def rtt(url: str | None, n: int, workload: str) -> None:
    """Two round trips on one live session (``url=None``: to a partition worker over a
    Unix socket). The *message* round trip: one value into this network, through
    ``core/Repeat`` on the peer and back out, one at a time (two bridge crossings, a
    node on each side, credits riding along). The *PING* round trip: the session's
    own PING/PONG frames on the same idle link (transport + one session hop each
    side), 200 samples 2 ms apart. Also the CPU this process spent per
    message round trip."""
    g = _rtt_graph({"remote": "peer"} if url is not None else {"partition": "p1"})
    where = "remote:peer" if url is not None else "partition:p1"
    bn = BridgedNetwork(g, _registry(), peers=Peers({"peer": Peer(url or "", TOKEN)}),
                        ack_on={where: "receipt"}, ping_interval=1.0)
    samples: list[float] = []
    async with bn:
        out = bn.network.outputs("out")
        for i in range(50):  # warm up
            await bn.network.send("in", i)
            await out.receive()
        cpu0 = time.process_time()
        for i in range(n):
            t = time.perf_counter()
            await bn.network.send("in", i)
            await out.receive()
            samples.append(time.perf_counter() - t)
        cpu = time.process_time() - cpu0
        session = bn.session(where)
        session.rtt_samples.clear()
        session.ping_interval = 0.002
        with trio.move_on_after(3):  # the pinger first sleeps out its old interval
            while len(session.rtt_samples) < 200:
                await trio.sleep(0.05)
        pings = list(session.rtt_samples)
        session.ping_interval = 1.0
    ping = _percentiles(pings) if pings else {}
    _emit(workload, n, sum(samples), **_percentiles(samples),
          local_cpu_us_per_rt=round(cpu / n * 1e6, 1),
          ping_p50_us=ping.get("p50_us"), ping_p99_us=ping.get("p99_us"),
          ping_samples=len(pings))


@contextlib.asynccontextmanager
async def _serve() -> AsyncIterator[tuple[str, str]]:
    """``reflowpy serve --bridge-listen 127.0.0.1:0`` in a child process; yields its
    ``/bridge`` URL (through Hypercorn) and its bridge port's URL."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="reflowpy-bench-") as tmp:
        cmd = [sys.executable, "-m", "reflowpy.cli", "serve", "--port", "0",
               "--data-dir", tmp, "--bridge-listen", "127.0.0.1:0"]
        env = {**os.environ, "REFLOWPY_TOKEN": TOKEN}
        async with trio.open_nursery() as nursery:
            proc: trio.Process = await nursery.start(lambda task_status: trio.run_process(
                cmd, env=env, stdout=subprocess.PIPE, check=False,
                task_status=task_status))
            assert proc.stdout is not None
            out = b""
            while out.count(b"listening on ") < 2 or not out.endswith(b"\n"):
                chunk = await proc.stdout.receive_some(4096)
                if not chunk:
                    raise RuntimeError(f"reflowpy serve exited: {out!r}")
                out += chunk
            http, port = (line.split(b"listening on ", 1)[1].split()[0].decode()
                          for line in out.splitlines() if b"listening on " in line)
            try:
                yield http.replace("http://", "ws://") + "/bridge", port
            finally:
                proc.terminate()
                nursery.cancel_scope.cancel()


def _chain(where: dict[str, str], work_us: float) -> rf.Graph:
    g = rf.Graph("chain4")
    g.add_node("src", "core/Repeat")
    prev = "src"
    for i in range(1, 5):
        meta: dict[str, Any] = {"work_us": work_us, "deterministic": True}
        loc = where.get(f"s{i}")
        if loc:
            meta["partition"] = loc
        g.add_node(f"s{i}", "bench/Burn", meta)
        g.add_edge(prev, "out", f"s{i}", "in")
        prev = f"s{i}"
    g.add_node("sink", "core/Repeat")
    g.add_edge(prev, "out", "sink", "in")
    g.add_inport("in", "src", "in")
    g.add_outport("out", "sink", "out")
    return g


async def _drive(net: Any, n: int) -> float:
    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        async def feed() -> None:
            for i in range(n):
                await net.send("in", i)

        nursery.start_soon(feed)
        got = 0
        async for _ in net.outputs("out"):
            got += 1
            if got == n:
                break
    return time.perf_counter() - start


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a live process has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def chain(n: int, work_us: float, rounds: int = 1) -> None:
    """``rounds`` interleaved rounds of one process vs partitions; each line has the
    round's speedup, the last line of each workload the median. ``cpu_us_per_msg``
    counts every process (this one and the workers): what the split costs in CPU,
    which a loaded machine does not distort as it does wall-clock time."""
    two = {"s1": "p1", "s2": "p1", "s3": "p2", "s4": "p2"}
    splits: tuple[tuple[str, dict[str, str], dict[str, Any]], ...] = (
        ("chain4_cpu_2_partitions", two, {"direct": True}),  # s2 -> s3 direct, p1 to p2
        ("chain4_cpu_2_partitions_relayed", two, {}),  # through here (the default)
        ("chain4_cpu_local_plus_partition", {"s3": "p1", "s4": "p1"}, {}))
    ratios: dict[str, list[float]] = {name: [] for name, _, _ in splits}
    for r in range(rounds):
        async with rf.Network(_chain({}, work_us), _registry()) as net:
            cpu0 = time.process_time()
            one = await _drive(net, n)
            one_cpu = time.process_time() - cpu0
        _emit("chain4_cpu_one_process", n, one, work_us=work_us, round=r,
              cpu_us_per_msg=round(one_cpu / n * 1e6, 1))
        for workload, where, options in splits:
            bn = BridgedNetwork(_chain(where, work_us), _registry(), worker_plugins=[PLUGIN],
                                **options)
            async with bn:
                workers = [p for p in (bn.process(f"partition:{x}") for x in ("p1", "p2"))
                           if p is not None]
                before = [_cpu_of(p.pid) for p in workers]
                cpu0 = time.process_time()
                seconds = await _drive(bn.network, n)
                own = time.process_time() - cpu0
                worker_cpu = [_cpu_of(p.pid) - b for p, b in zip(workers, before,
                                                                 strict=True)]
                frames = {loc: [st.frames_out, st.frames_in]
                          for loc, st in bn.statistics()["bridges"].items()}
            ratio = one / seconds
            ratios[workload].append(ratio)
            _emit(workload, n, seconds, work_us=work_us, round=r, speedup=round(ratio, 2),
                  cpu_us_per_msg=round((own + sum(worker_cpu)) / n * 1e6, 1),
                  local_cpu_us_per_msg=round(own / n * 1e6, 1),
                  worker_cpu_us_per_msg=[round(c / n * 1e6, 1) for c in worker_cpu],
                  frames_out_in=frames,
                  **({"median_speedup": round(statistics.median(ratios[workload]), 2)}
                     if r == rounds - 1 else {}))


@contextlib.asynccontextmanager
async def _echo_server(kind: str) -> AsyncIterator[int]:
    cmd = [sys.executable, "-m", "benchmarks._echo", kind]
    async with trio.open_nursery() as nursery:
        proc: trio.Process = await nursery.start(lambda task_status: trio.run_process(
            cmd, stdout=subprocess.PIPE, check=False, task_status=task_status))
        assert proc.stdout is not None
        line = b""
        while not line.endswith(b"\n"):
            chunk = await proc.stdout.receive_some(1)
            if not chunk:
                raise RuntimeError(f"echo server {kind} exited")
            line += chunk
        try:
            yield int(line.split()[1])
        finally:
            proc.kill()
            nursery.cancel_scope.cancel()


async def transport_rtt(kind: str, n: int) -> None:
    """One 16-byte message to a bare echo process and back, ``n`` times (baselines)."""
    import struct

    import trio_websocket
    import wsproto
    import wsproto.events as wse

    from reflowpy.bridge.websocket import WebSocketTransport

    payload = b"x" * 16
    samples: list[float] = []
    async with _echo_server(kind) as port:
        if kind == "tcp":
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            frame = struct.pack(">I", len(payload)) + payload
            for _ in range(n):
                t = time.perf_counter()
                await stream.send_all(frame)
                got = 0
                while got < len(frame):
                    got += len(await stream.receive_some(65536))
                samples.append(time.perf_counter() - t)
            await stream.aclose()
        elif kind == "wsproto":
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
            await stream.send_all(ws.send(wse.Request(host="127.0.0.1", target="/")))
            accepted = False
            while not accepted:
                ws.receive_data(await stream.receive_some(65536))
                accepted = any(isinstance(e, wse.AcceptConnection) for e in ws.events())
            for _ in range(n):
                t = time.perf_counter()
                await stream.send_all(ws.send(wse.Message(data=payload)))
                done = False
                while not done:
                    ws.receive_data(await stream.receive_some(65536))
                    done = any(isinstance(e, wse.BytesMessage) for e in ws.events())
                samples.append(time.perf_counter() - t)
            await stream.aclose()
        elif kind == "trio-websocket":
            async with trio_websocket.open_websocket_url(
                    f"ws://127.0.0.1:{port}/") as conn:
                for _ in range(n):
                    t = time.perf_counter()
                    await conn.send_message(payload)
                    await conn.get_message()
                    samples.append(time.perf_counter() - t)
        else:
            async with WebSocketTransport(f"ws://127.0.0.1:{port}/bridge").connect() as c:
                for _ in range(n):
                    t = time.perf_counter()
                    await c.send(payload)
                    await c.receive()
                    samples.append(time.perf_counter() - t)
    samples.sort()
    _emit(f"transport_rtt_{kind}", n, sum(samples),
          p50_us=round(samples[len(samples) // 2] * 1e6, 1),
          p99_us=round(samples[int(len(samples) * 0.99)] * 1e6, 1))


@contextlib.asynccontextmanager
async def _inproc_host(kind: str) -> AsyncIterator[Any]:
    """A bridge Host in this process behind a real socket; yields a transport to it:
    ``unix`` (length-prefixed frames over a Unix socket, as partitions use) or ``ws``
    (the bridge's own WebSocket listener on loopback TCP, as remote peers use)."""
    import tempfile

    from reflowpy.bridge.host import Host
    from reflowpy.bridge.transport import StreamTransport, serve_stream
    from reflowpy.bridge.websocket import WebSocketTransport, serve_websocket

    with tempfile.TemporaryDirectory(prefix="reflowpy-bench-") as tmp:
        async with trio.open_nursery() as nursery:
            host = Host(_registry(), nursery, local_id="peer", token=TOKEN)
            transport: Any
            if kind == "ws":
                server = await nursery.start(serve_websocket, host.handle, "127.0.0.1", 0)
                transport = WebSocketTransport(f"ws://127.0.0.1:{server.port}/bridge")
            else:
                path = os.path.join(tmp, "s")
                sock = trio.socket.socket(trio.socket.AF_UNIX)
                await sock.bind(path)
                sock.listen(16)
                nursery.start_soon(serve_stream, [trio.SocketListener(sock)], host.handle)
                transport = StreamTransport(f"unix:{path}")
            yield transport
            nursery.cancel_scope.cancel()


class _Steps(trio.abc.Instrument):
    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += 1


async def inproc_rtt(n: int, *, kind: str = "unix", timers: bool = True) -> None:
    """``n`` round trips with both ends of the bridge in this process, over a real
    socket (``kind``: ``unix`` or ``ws``, see :func:`_inproc_host`): one message at a
    time through a ``core/Repeat`` on the peer and back. What a round trip costs in
    CPU, all of it counted here (``cpu_us_per_rt``, task steps, frames each way),
    independent of how busy the machine is in instructions (run under ``valgrind
    --tool=callgrind`` at two ``--n`` and subtract). ``timers=False`` takes the
    ack-delay and ping timers out of the measured path (for callgrind: under valgrind
    a round trip outlasts the 2 ms ack delay, so idle credits would leave in frames of
    their own, which they do not at native speed)."""
    from reflowpy.bridge.session import Session

    defaults = Session.__init__.__kwdefaults__
    saved = dict(defaults)
    if not timers:
        defaults.update(ack_delay=10.0, ping_interval=100.0)
    try:
        async with _inproc_host(kind) as transport:
            bn = BridgedNetwork(_rtt_graph({"remote": "peer"}), _registry(),
                                transports={"remote:peer": transport},
                                peers=Peers({"peer": Peer("unix:", TOKEN)}),
                                ack_on={"remote:peer": "receipt"},
                                ping_interval=1.0 if timers else 100.0)
            async with bn:
                out = bn.network.outputs("out")
                for i in range(100):
                    await bn.network.send("in", i)
                    await out.receive()
                steps = _Steps()
                trio.lowlevel.add_instrument(steps)
                cpu0, start = time.process_time(), time.perf_counter()
                for i in range(n):
                    await bn.network.send("in", i)
                    await out.receive()
                seconds, cpu = time.perf_counter() - start, time.process_time() - cpu0
                trio.lowlevel.remove_instrument(steps)
                st = bn.session("remote:peer").statistics()
    finally:
        defaults.clear()
        defaults.update(saved)
    _emit(f"bridge_rtt_inproc{'' if kind == 'unix' else '_' + kind}"
          f"{'' if timers else '_timers_off'}", n, seconds,
          cpu_us_per_rt=round(cpu / n * 1e6, 1), task_steps_per_rt=round(steps.steps / n, 2),
          frames_out_in=[st.frames_out, st.frames_in])


async def inproc(n: int, kind: str = "unix") -> None:
    """The in-process measuring tool (see :func:`inproc_rtt`): ``bridge_rtt_inproc``
    (``max(500, n // 100)`` round trips), then ``chain4_inproc_*``: the 4-stage chain
    with no work per stage, in one network vs stages 3-4 on the peer (completion acks):
    the difference is what the split costs per message."""
    await inproc_rtt(max(500, n // 100), kind=kind)
    msgs = max(2000, n // 10)
    async with rf.Network(_chain({}, 0.0), _registry()) as net:
        await _drive(net, 1000)
        cpu0 = time.process_time()
        seconds = await _drive(net, msgs)
        one = time.process_time() - cpu0
    _emit("chain4_inproc_one", msgs, seconds, cpu_us_per_msg=round(one / msgs * 1e6, 1))
    g = _chain({}, 0.0)
    for node in ("s3", "s4"):
        g.nodes[node].metadata["remote"] = "peer"
    async with _inproc_host(kind) as transport:
        bn = BridgedNetwork(g, _registry(), transports={"remote:peer": transport},
                            peers=Peers({"peer": Peer("unix:", TOKEN)}))
        async with bn:
            await _drive(bn.network, 1000)
            cpu0 = time.process_time()
            seconds = await _drive(bn.network, msgs)
            split = time.process_time() - cpu0
            st = bn.session("remote:peer").statistics()
    _emit("chain4_inproc_split", msgs, seconds, cpu_us_per_msg=round(split / msgs * 1e6, 1),
          split_cost_us_per_msg=round((split - one) / msgs * 1e6, 1),
          frames_out=st.frames_out, frames_in=st.frames_in)


async def _main(n: int, only: set[str], rounds: int, transport: str = "unix") -> None:
    def want(name: str) -> bool:
        return not only or name in only

    if want("transport"):
        for kind in ("tcp", "wsproto", "trio-websocket", "bridge-ws"):
            await transport_rtt(kind, max(2000, n // 50))
    if want("oneway") or want("rtt"):
        async with _peer() as url:
            if want("oneway"):
                for ack in ("receipt", "completion"):
                    await oneway(url, n, 1, f"bridge_oneway_small_{ack}", ack_on=ack)
                big = (b'{"id": 12345, "name": "reflowpy", "tags": ["a", "b"]} ' * 1200)[:65536]
                nbig = max(200, n // 50)
                await oneway(url, nbig, big, "bridge_oneway_64k_zstd")
                await oneway(url, nbig, big, "bridge_oneway_64k_plain",
                             compress_threshold=1 << 30)
            if want("rtt"):
                await rtt(url, max(1000, n // 100), "bridge_rtt")
    if want("rtt"):
        await rtt(None, max(1000, n // 100), "bridge_rtt_partition")
        async with _serve() as (http_url, port_url):
            await rtt(http_url, max(1000, n // 100), "bridge_rtt_serve")
            await rtt(port_url, max(1000, n // 100), "bridge_rtt_serve_port")
    if want("chain"):
        await chain(max(2000, n // 20), 50.0, rounds=rounds)
    if "inproc" in only:  # not part of the default run: a measuring tool
        await inproc(n, transport)
    if "inproc_rtt" in only:  # likewise: for callgrind
        await inproc_rtt(n, kind=transport, timers=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks bridge")
    parser.add_argument("--n", type=int, default=200_000, help="small messages one way")
    parser.add_argument("--only", default="",
                        help="transport,oneway,rtt,chain (default: all); inproc, inproc_rtt")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds of the chain workloads (median reported)")
    parser.add_argument("--transport", choices=("unix", "ws"), default="unix",
                        help="inproc, inproc_rtt: the socket between the two ends")
    args = parser.parse_args(argv)
    trio.run(_main, args.n, {x for x in args.only.split(",") if x}, args.rounds,
             args.transport)
    return 0
