"""script/wasm: outputs streamed under backpressure, never buffered without bound.

The module below sends N outputs in one call and logs a progress line after every
1,000. The consumer takes them one at a time through an unbuffered channel, so:

* with streaming, the first output arrives while the call is still at its start (no
  progress line yet), and the host never holds more than INLINE_OUTPUTS of them;
* waiting for a slow consumer is not the module's time: a consumer slower in total
  than ``wall_time`` does not time the call out;
* a consumer that stops (its send raises) ends the call with that error, and the
  outputs delivered before it stay delivered.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

import reflowpy as rf
from reflowpy.script.host import Limits
from reflowpy.script.wasm import INLINE_OUTPUTS, WasmHost

pytestmark = pytest.mark.slow

N = 5000

STREAM = r"""(module
  (import "reflowpy" "send_output" (func $send (param i32 i32 i32 i32)))
  (import "reflowpy" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "out")
  (data (i32.const 16) "\a1x")
  (data (i32.const 32) "progress")
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "process") (param i32 i32) (result i64) (local $i i32)
    (loop $l
      (call $send (i32.const 0) (i32.const 3) (i32.const 16) (i32.const 2))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (if (i32.eqz (i32.rem_u (local.get $i) (i32.const 1000)))
        (then (call $log (i32.const 1) (i32.const 32) (i32.const 8))))
      (br_if $l (i32.lt_u (local.get $i) (i32.const N))))
    (i64.const 0)))""".replace("(i32.const N)", f"(i32.const {N})")


def _host(logs: list[str], **limits: Any) -> WasmHost:
    return WasmHost(node="w", wasm=STREAM, limits=Limits(**{"wall_time": 5.0, **limits}),
                    log=lambda level, text: logs.append(text))


async def test_outputs_reach_the_consumer_while_the_call_runs() -> None:
    logs: list[str] = []
    host = _host(logs)
    send_ch, recv_ch = trio.open_memory_channel[tuple[str, Any]](0)
    peak = 0

    async def send(port: str, value: Any) -> None:
        await send_ch.send((port, value))

    got: list[tuple[str, Any]] = []
    with trio.fail_after(60):
        async with host, trio.open_nursery() as nursery:
            async def call() -> None:
                await host.process({"in": 1}, {}, send)
                await send_ch.aclose()

            nursery.start_soon(call)
            async for item in recv_ch:
                if not got:
                    first_seen_progress = logs.count("progress")
                got.append(item)
                peak = max(peak, len(host._outputs))
    assert got == [("out", "x")] * N
    assert first_seen_progress == 0, "the first output came only after the call ended"
    assert logs.count("progress") == N // 1000
    assert peak <= INLINE_OUTPUTS and host.threaded
    assert host.statistics().outputs == N


async def test_waiting_for_a_slow_consumer_is_not_the_modules_time() -> None:
    # 500 outputs: the module's own work (500 host calls) stays far below its wall time
    # even on a loaded machine, while the consumer takes 2x that wall time in all
    few = STREAM.replace(f"(i32.const {N})", "(i32.const 500)")
    host = WasmHost(node="w", wasm=few, limits=Limits(wall_time=0.5))
    taken = 0

    async def slow(port: str, value: Any) -> None:
        nonlocal taken
        taken += 1
        if taken % 5 == 0:
            await trio.sleep(0.01)  # 100 waits of 10 ms: 1 s, twice the wall time

    with trio.fail_after(120):
        async with host:
            await host.process({"in": 1}, {}, slow)
    assert taken == 500 and host.statistics().outputs == 500


async def test_a_consumer_that_fails_ends_the_call_with_its_error() -> None:
    logs: list[str] = []
    host = _host(logs)
    seen = 0

    class Stop(Exception):
        pass

    async def failing(port: str, value: Any) -> None:
        nonlocal seen
        seen += 1
        if seen == 2000:
            raise Stop("downstream went away")

    with trio.fail_after(60):
        async with host:
            with pytest.raises(Stop, match="downstream went away"):
                await host.process({"in": 1}, {}, failing)
            # the node goes on: the next call starts a fresh instance
            delivered = 0

            async def count(port: str, value: Any) -> None:
                nonlocal delivered
                delivered += 1

            await host.process({"in": 2}, {}, count)
    assert seen == 2000 and delivered == N


async def test_in_a_network_a_small_port_holds_the_module_and_nothing_is_lost() -> None:
    registry = rf.default_registry()  # script/wasm and core/Repeat
    graph = rf.Graph("stream")
    graph.add_node("w", "script/wasm", {"wasm": STREAM, "limits": {"wall_time": 5.0}})
    graph.add_node("sink", "core/Repeat")
    graph.add_edge("w", "out", "sink", "in", capacity=2)
    graph.add_inport("in", "w", "in")
    graph.add_outport("out", "sink", "out")
    with trio.fail_after(120):
        async with rf.Network(graph, registry, output_capacity=4) as net:
            await net.send("in", 1)
            out = net.outputs("out")
            got = [await out.receive() for _ in range(N)]
            await net.idle()
            ledger = net.statistics().ledger
    assert got == ["x"] * N and not net.dead_letters()
    assert ledger.balanced and ledger.in_flight == 0, ledger
