"""Script sandboxes: messages/s through one script node, and cold start time.

    python -m benchmarks script [--n N] [--sandbox process,docker,wasm]

Prints JSON lines (workload, n, seconds, msgs_per_s, peak_rss_mb). ``*_cold_start``
lines time ``setup`` of one node (container/process start + script load, or module
compile + instantiate); ``n`` is 1 and ``msgs_per_s`` is left at 0.
Targets (issue 5): WASM >= 50,000 msgs/s; Docker and subprocess >= 5,000 msgs/s with
small messages; Docker cold start < 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

import reflowpy as rf
from reflowpy.script.actor import register
from reflowpy.script.docker import docker_available

ROOT = Path(__file__).resolve().parents[1]
PY_SOURCE = "def process(inputs):\n    return {'out': inputs['in'] + 1}\n"
WASM_C = r"""
#include "reflowpy_plugin.h"
int rf_process(rf_reader *in, rf_writer *out) {
    rf_read_map(in); size_t n; rf_read_str(in, &n);
    double v = rf_read_number(in);
    rf_write_map(out, 1); rf_write_str(out, "out"); rf_write_double(out, v + 1);
    return in->error;
}
"""
WASM_WAT = """(module (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "process") (param i32 i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get 0)) (i64.const 32))
            (i64.extend_i32_u (local.get 1)))))"""


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _line(workload: str, n: int, seconds: float, rate: float) -> None:
    print(json.dumps({"workload": workload, "n": n, "seconds": round(seconds, 4),
                      "msgs_per_s": round(rate, 1), "peak_rss_mb": round(_rss_mb(), 1)}),
          flush=True)


def _wasm_module() -> bytes | str:
    clang = shutil.which("clang")
    if clang is None:
        return WASM_WAT  # echo module: still one full call per message
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp, "p.c"), Path(tmp, "p.wasm")
        src.write_text(WASM_C)
        subprocess.run([clang, "--target=wasm32", "-O2", "-nostdlib", "-Wl,--no-entry",
                        "-Wl,--export-dynamic", f"-I{ROOT / 'reflowpy/script/include'}",
                        str(src), "-o", str(out)], check=True, timeout=120)
        return out.read_bytes()


async def _through_node(component: str, meta: dict[str, Any], n: int, name: str) -> None:
    registry = rf.Registry()
    register(registry)
    graph = rf.Graph(name)
    graph.add_node("s", component, meta)
    graph.add_inport("in", "s", "in")
    graph.add_outport("out", "s", "out")
    net = rf.Network(graph, registry)
    t0 = time.perf_counter()
    async with net:
        _line(f"{name}_cold_start", 1, time.perf_counter() - t0, 0.0)
        out = net.outputs("out")
        await net.send("in", 0)  # warm up
        await out.receive()
        t0 = time.perf_counter()

        async def feed() -> None:
            for i in range(n):
                await net.send("in", i)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed)
            for _ in range(n):
                await out.receive()
        seconds = time.perf_counter() - t0
    _line(f"{name}_msgs_through_node", n, seconds, n / seconds)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks script")
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--sandbox", default="process,docker,wasm")
    parser.add_argument("--image", default=os.environ.get(
        "REFLOWPY_TEST_PYTHON_IMAGE", "reflowpy/python:3.11-slim"))
    args = parser.parse_args(argv)
    wanted = args.sandbox.split(",")

    async def run() -> None:
        if "wasm" in wanted:
            await _through_node("script/wasm", {"wasm": _wasm_module()}, args.n * 5, "wasm")
        if "process" in wanted:
            meta = {"sandbox": "process", "source": PY_SOURCE}
            await _through_node("script/python", meta, args.n, "process")
        if "docker" in wanted:
            reason = docker_available()
            if reason is not None:
                print(json.dumps({"workload": "docker", "skipped": reason}))
            else:
                meta = {"sandbox": "docker", "image": args.image, "source": PY_SOURCE}
                await _through_node("script/python", meta, args.n, "docker")

    trio.run(run)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
