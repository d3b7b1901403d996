"""The hostile corpus for the WASM sandbox: WAT modules that attack the host side.

Each test asserts containment and the report. On main: a long call held the trio
thread (the whole network froze for ``wall_time``), WASI ``poll_oneoff`` slept past
the deadline, host imports cost no fuel, ``log_bytes`` was ignored, streamed outputs
were unbounded, a returned buffer of empty arrays amplified ~150x, and ``alloc`` ran
on the previous call's stale deadline.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import reflowpy as rf
from reflowpy.errors import (
    ConfigError,
)
from reflowpy.script.actor import register
from reflowpy.script.host import Limits
from reflowpy.script.wasm import WasmHost

pytestmark = pytest.mark.slow

# msgpack {"out": <fixint at byte 5>} lives at 2048 in every module below.
RESULT = r'(data (i32.const 2048) "\81\a3out\00")'
RETURN_RESULT = "(i64.or (i64.shl (i64.const 2048) (i64.const 32)) (i64.const 6))"


def _graph(metadata: dict[str, Any]) -> rf.Graph:
    graph = rf.Graph("wasm")
    graph.add_node("plugin", "script/wasm", metadata)
    graph.add_node("healthy", "core/Repeat")
    graph.add_inport("in", "plugin", "in")
    graph.add_inport("hin", "healthy", "in")
    graph.add_outport("out", "plugin", "out")
    graph.add_outport("hout", "healthy", "out")
    return graph


def _registry() -> rf.Registry:
    registry = rf.Registry()
    register(registry)

    @rf.actor(inports=["in"], outports=["out"])
    def repeat(ctx: Any) -> dict[str, Any]:
        return {"out": ctx.inputs["in"]}

    registry.register("core/Repeat", repeat, replace=True)
    return registry


async def _run(wat: str, limits: dict[str, Any] | None = None, **meta: Any,
               ) -> tuple[list[Any], list[rf.DeadLetter]]:
    async with rf.Network(_graph({"wasm": wat, "limits": limits or {}, **meta}),
                          _registry()) as net:
        await net.send("in", 1)
        await net.idle()
        return list(net.outputs("out").drain()), net.dead_letters()


LOOP = """(module (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "process") (param i32 i32) (result i64) (loop $l (br $l)) (i64.const 0)))"""


async def test_a_long_call_does_not_freeze_the_network() -> None:
    # The plugin spins for its whole wall time; meanwhile the rest of the network
    # answers: on main the 2 s call held the trio thread and the healthy node's
    # outputs came only after the dead letter.
    meta = {"wasm": LOOP, "limits": {"wall_time": 2.0, "fuel": 10**15}}
    async with rf.Network(_graph(meta), _registry()) as net:
        await net.send("in", 1)
        # Let the plugin take its message and start the call. On main the call ran
        # right here on the trio thread: this returned 2 s later, after the dead letter.
        await trio.testing.wait_all_tasks_blocked()
        hout = net.outputs("hout")
        for i in range(20):
            await net.send("hin", i)
            assert await hout.receive() == i
        assert net.dead_letters() == []  # the plugin is still running, off the trio thread
        await net.idle()
        [letter] = net.dead_letters()
    assert letter.error_type == "ScriptTimeout" and "wall_time=2.0" in letter.error


POLL = r"""(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  RESULT
  ;; one clock subscription at 0: userdata, tag 0 (clock), clock id 1, timeout 1 hour
  (data (i32.const 0) "\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00"
                      "\01\00\00\00\00\00\00\00\00\18\3d\85\45\03\00\00")
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "process") (param i32 i32) (result i64)
    (i32.store8 (i32.const 2053) (call $poll (i32.const 0) (i32.const 512) (i32.const 1)
                                              (i32.const 768)))
    RETURN))""".replace("RESULT", RESULT).replace("RETURN", RETURN_RESULT)


async def test_wasi_poll_oneoff_cannot_sleep_past_the_deadline() -> None:
    with trio.fail_after(5):  # an hour's sleep on main
        outs, letters = await _run(POLL, {"wall_time": 1.0}, wasi=True)
    assert letters == [] and outs == [52]  # ENOSYS


STATE_LOOP = """(module
  (import "reflowpy" "get_state" (func $get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "process") (param i32 i32) (result i64)
    (loop $l (drop (call $get (i32.const 0) (i32.const 0))) (br $l)) (i64.const 0)))"""


async def test_host_calls_are_charged_fuel() -> None:
    with trio.fail_after(20):
        _, letters = await _run(STATE_LOOP, {"fuel": 2_000_000, "wall_time": 30})
    [letter] = letters
    assert letter.error_type == "ScriptCPUExceeded" and "host calls" in letter.error
    assert "limits.fuel=2000000" in letter.error


LOG_FLOOD = """(module
  (import "reflowpy" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 2)
  (data (i32.const 0) "line one\\nFORGED critical line")
  (func (export "alloc") (param i32) (result i32) (i32.const 100000))
  (func (export "process") (param i32 i32) (result i64) (local $i i32)
    (call $log (i32.const 1) (i32.const 0) (i32.const 29))
    (loop $l
      (call $log (i32.const 1) (i32.const 0) (i32.const 65536))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 500))))
    (i64.const 0)))"""


async def test_log_bytes_bound_wasm_logs_and_lines_are_sanitised() -> None:
    logs: list[tuple[str, str]] = []
    host = WasmHost(node="n", wasm=LOG_FLOOD, limits=Limits(log_bytes=4096),
                    log=lambda level, text: logs.append((level, text)))
    async with host:
        await host.process({"in": 1}, {})
    logged = sum(len(text) for level, text in logs if level == "info")
    assert logged <= 4096
    assert host.statistics().log_bytes_dropped >= 499 * 65536
    assert ("info", "line one\\x0aFORGED critical line") in logs
    assert any(level == "warning" and "limits.log_bytes=4096" in text for level, text in logs)


BIG_OUTPUTS = r"""(module
  (import "reflowpy" "send_output" (func $send (param i32 i32 i32 i32)))
  (memory (export "memory") 130)
  (data (i32.const 0) "out")
  (data (i32.const 1024) "\c6\00\7f\ff\fb")   ;; bin32 of 8 MiB - 5 bytes
  (func (export "alloc") (param i32) (result i32) (i32.const 512))
  (func (export "process") (param i32 i32) (result i64) (local $i i32)
    (loop $l
      (call $send (i32.const 0) (i32.const 3) (i32.const 1024) (i32.const 8388608))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 12))))
    (i64.const 0)))"""


async def test_streamed_outputs_are_bounded_in_bytes() -> None:
    outs, letters = await _run(BIG_OUTPUTS, {"memory_mb": 16, "fuel": 10**12})
    assert outs == []  # nothing of a failed call is delivered
    [letter] = letters
    assert letter.error_type == "ScriptLimitExceeded"
    assert "limits.output_bytes=16777216" in letter.error


AMPLIFY = """(module (memory (export "memory") 17)
  (func (export "alloc") (param i32) (result i32) (i32.const 64))
  (func (export "process") (param i32 i32) (result i64)
    ;; a map {"o": [ 1M empty arrays ]} at 4096
    (i32.store (i32.const 4096) (i32.const 0xdd6fa181))
    (i32.store (i32.const 4100) (i32.const 0x00000f00))
    (memory.fill (i32.const 4104) (i32.const 0x90) (i32.const 1000000))
    (i64.or (i64.shl (i64.const 4096) (i64.const 32)) (i64.const 1000008))))"""


async def test_returned_empty_array_bomb_is_refused_before_decoding() -> None:
    _, letters = await _run(AMPLIFY, {"memory_mb": 4})
    [letter] = letters
    assert letter.error_type == "WasmTrap" and "max_items" in letter.error


TABLE = """(module (memory (export "memory") 1) (table 1 funcref)
  RESULT
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "process") (param i32 i32) (result i64)
    (i32.store8 (i32.const 2053) (table.grow (ref.null func) (i32.const 10000000)))
    RETURN))""".replace("RESULT", RESULT).replace("RETURN", RETURN_RESULT)


async def test_table_growth_is_limited() -> None:
    outs, letters = await _run(TABLE)
    assert letters == [] and outs == [-1]  # table.grow refused


TWO_MEMORIES = """(module (memory (export "memory") 1) (memory $two 1000)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "process") (param i32 i32) (result i64) (i64.const 0)))"""


async def test_a_second_memory_is_refused() -> None:
    with pytest.raises(ConfigError, match="memor"):
        async with WasmHost(node="n", wasm=TWO_MEMORIES):
            pass


async def test_alloc_gets_a_fresh_deadline_after_idling() -> None:
    # Idle longer than wall_time, then a message big enough to need a new buffer:
    # on main alloc ran on the old deadline and failed with a false ScriptTimeout.
    echo = """(module (memory (export "memory") 2) (global $top (mut i32) (i32.const 4096))
      (func (export "alloc") (param i32) (result i32) (local $p i32)
        (local.set $p (global.get $top))
        (global.set $top (i32.add (global.get $top) (local.get 0))) (local.get $p))
      (func (export "process") (param i32 i32) (result i64)
        (i64.or (i64.shl (i64.extend_i32_u (local.get 0)) (i64.const 32))
                (i64.extend_i32_u (local.get 1)))))"""
    async with WasmHost(node="n", wasm=echo, limits=Limits(wall_time=0.05)) as host:
        assert (await host.process({"in": 1}, {})).outputs == {"in": 1}
        await trio.sleep(0.3)  # the condition under test: idle past wall_time
        big = {"in": "x" * 5000}
        assert (await host.process(big, {})).outputs == big
