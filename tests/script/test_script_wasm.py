"""script/wasm: C plugins built with clang, WAT modules, limits and traps, in a network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

import reflowpy as rf
from reflowpy.errors import (
    ConfigError,
    ScriptCPUExceeded,
    ScriptMemoryExceeded,
    ScriptTimeout,
    WasmTrap,
)
from reflowpy.script.actor import register
from reflowpy.script.host import Limits
from reflowpy.script.wasm import WasmHost

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "script"


@rf.actor(inports=["in"], outports=["out"])
def double(ctx: Any) -> dict[str, Any]:
    return {"out": ctx.inputs["in"] * 2}


def _registry() -> rf.Registry:
    registry = rf.Registry()
    register(registry)
    registry.register("test/Double", double)
    return registry


def _graph(metadata: dict[str, Any], outports: tuple[str, ...] = ("out",)) -> rf.Graph:
    graph = rf.Graph("wasm")
    graph.add_node("plugin", "script/wasm", metadata)
    graph.add_node("healthy", "test/Double")
    graph.add_inport("in", "plugin", "in")
    graph.add_inport("hin", "healthy", "in")
    for port in outports:
        graph.add_outport(port, "plugin", port)
    graph.add_outport("hout", "healthy", "out")
    return graph


async def test_numeric_c_plugin(build_c: Any) -> None:
    wasm = build_c((EXAMPLES / "stats_plugin.c").read_text(), "stats")
    async with rf.Network(_graph({"wasm": wasm}), _registry()) as net:
        await net.send("in", [1, 2, 3.5, -0.5])
        await net.send("in", [])
        out = net.outputs("out")
        assert await out.receive() == {"sum": 6.0, "mean": 1.5, "n": 4}
        assert await out.receive() == {"sum": 0.0, "mean": 0.0, "n": 0}


COUNTER_C = r"""
#define RF_PLUGIN_INIT
#include "reflowpy_plugin.h"

static int64_t step = 1;

int rf_init(rf_reader *config) {
    int64_t n = rf_read_map(config);
    for (int64_t i = 0; i < n; i++) {
        size_t len; const char *key = rf_read_str(config, &len);
        if (rf_str_eq(key, len, "step")) step = (int64_t)rf_read_number(config);
        else rf_skip(config);
    }
    return config->error;
}

/* Keeps its count in the node's state (survives instance resets) and streams every
   word of the input string as its own output. */
int rf_process(rf_reader *in, rf_writer *out) {
    uint8_t buf[64];
    int32_t n = rf_get_state(buf, sizeof buf);
    int64_t count = 0;
    if (n > 0 && n <= (int32_t)sizeof buf) {
        rf_reader st = { buf, buf + n, 0 };
        int64_t keys = rf_read_map(&st);
        for (int64_t i = 0; i < keys; i++) {
            size_t len; const char *key = rf_read_str(&st, &len);
            if (rf_str_eq(key, len, "count")) count = (int64_t)rf_read_number(&st);
            else rf_skip(&st);
        }
    }
    count += step;
    rf_writer st = { 0, 0, 0 };
    rf_write_map(&st, 1); rf_write_str(&st, "count"); rf_write_int(&st, count);
    rf_set_state(st.buf, (int32_t)st.len);

    rf_read_map(in);
    size_t plen; rf_read_str(in, &plen);
    size_t len; const char *text = rf_read_str(in, &len);
    if (in->error) return 1;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || text[i] == ' ') {
            if (i > start) {
                rf_writer w = { 0, 0, 0 };
                rf_write_strn(&w, text + start, i - start);
                rf_send_output("words", w.buf, (int32_t)w.len);
            }
            start = i + 1;
        }
    }
    rf_log(RF_INFO, "split one message");
    rf_write_map(out, 1); rf_write_str(out, "count"); rf_write_int(out, count);
    return 0;
}
"""


async def test_stateful_streaming_c_plugin_with_backpressure(build_c: Any) -> None:
    wasm = build_c(COUNTER_C, "counter")
    meta = {"wasm": wasm, "config": {"step": 10}, "outports": ["words", "count"]}
    net = rf.Network(_graph(meta, ("words", "count")), _registry(), capacity=2,
                     output_capacity=2)
    text = " ".join(f"w{i}" for i in range(200))
    async with net:
        async def feed() -> None:
            for _ in range(3):
                await net.send("in", text)

        words: list[str] = []
        counts: list[int] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed)
            wout, cout = net.outputs("words"), net.outputs("count")
            while len(counts) < 3:
                words.append(await wout.receive())
                counts.extend(cout.drain())
        words.extend(wout.drain())
        assert net.statistics() is not None
    assert words == [f"w{i}" for i in range(200)] * 3
    assert counts == [10, 20, 30]


LOOP_WAT = """
(module
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "process") (param i32 i32) (result i64)
    (if (i32.eq (i32.load8_u (i32.add (local.get 0) (i32.const 5))) (i32.const 0x6c))
      (then (loop $forever (br $forever))))
    (if (i32.eq (i32.load8_u (i32.add (local.get 0) (i32.const 5))) (i32.const 0x74))
      (then unreachable))
    (if (i32.eq (i32.load8_u (i32.add (local.get 0) (i32.const 5))) (i32.const 0x67))
      (then (loop $grow
        (br_if $grow (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
        unreachable))
    (i64.const 0)))
"""
# Inputs are msgpack {"in": "<x>..."}: byte 5 is the first character of the value.


@pytest.mark.parametrize(
    ("value", "limits", "error"),
    [
        ("loop", {"fuel": 1_000_000}, ScriptCPUExceeded),
        ("loop", {"fuel": 10**15, "wall_time": 0.2}, ScriptTimeout),
        ("trap", {}, WasmTrap),
        ("grow", {"memory_mb": 4}, ScriptMemoryExceeded),
    ],
)
async def test_hostile_wasm_is_contained(value: str, limits: dict[str, Any],
                                         error: type[Exception]) -> None:
    meta = {"wasm": LOOP_WAT, "limits": limits}
    async with rf.Network(_graph(meta), _registry()) as net:
        await net.send("in", value)
        hout = net.outputs("hout")
        for i in range(10):
            await net.send("hin", i)
            assert await hout.receive() == 2 * i
        await net.idle()
        [letter] = net.dead_letters()
        # The instance was reset and serves the next message.
        await net.send("in", "fine")
        await net.idle()
        assert len(net.dead_letters()) == 1
    assert letter.error_type == error.__name__, letter.error
    assert letter.node == "plugin" and "instance reset" in letter.error


async def _start_error(metadata: dict[str, Any]) -> BaseException:
    try:
        async with rf.Network(_graph(metadata), _registry()):
            pass
    except BaseException as exc:
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        return exc
    raise AssertionError("the network started")


async def test_unknown_import_refuses_to_start() -> None:
    wat = """(module (import "env" "steal_secrets" (func $s))
      (memory (export "memory") 1)
      (func (export "alloc") (param i32) (result i32) (i32.const 0))
      (func (export "process") (param i32 i32) (result i64) (call $s) (i64.const 0)))"""
    error = await _start_error({"wasm": wat})
    assert isinstance(error, ConfigError)
    assert "env.steal_secrets" in str(error) and "'plugin'" in str(error)
    error = await _start_error({"wasm": b"\0asm garbage"})
    assert isinstance(error, ConfigError) and "not a valid WASM" in str(error)


async def test_host_reuses_the_instance_and_buffer(build_c: Any) -> None:
    wasm = build_c((EXAMPLES / "stats_plugin.c").read_text(), "stats")
    host = WasmHost(node="n", wasm=wasm, limits=Limits(memory_mb=2))
    await host.start()
    # Many messages within a 2 MiB memory: per-call scratch memory is reused.
    for i in range(5000):
        result = await host.process({"in": [i, i]}, {})
        assert result.outputs == {"out": {"sum": 2.0 * i, "mean": float(i), "n": 2}}
    assert host.statistics().restarts == 0
    await host.stop()


async def test_wasi_is_opt_in() -> None:
    wat = """(module
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (func (export "alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "process") (param i32 i32) (result i64) (i64.const 0)))"""
    error = await _start_error({"wasm": wat})
    assert isinstance(error, ConfigError) and "wasi: true" in str(error)
    async with rf.Network(_graph({"wasm": wat, "wasi": True}), _registry()) as net:
        await net.send("in", 1)
        await net.idle()
        assert net.dead_letters() == []
