"""WebAssembly plugins in wasmtime (``script/wasm``).

A module is compiled once per process (cached by content hash) and one instance per
node is reused across messages. Each call gets a fuel budget (``limits.fuel``, about
one unit per instruction) and an epoch deadline (``limits.wall_time``; a shared
ticker thread advances the epoch every 10 ms); linear memory is capped by store
limits (``limits.memory_mb``: ``memory.grow`` past it returns -1). A trap (including
running out of fuel or time) resets the instance — the module's own globals and
memory start over, the node's state kept by the host does not — and is raised as
:class:`~reflowpy.WasmTrap`, :class:`~reflowpy.ScriptCPUExceeded`,
:class:`~reflowpy.ScriptTimeout` or :class:`~reflowpy.ScriptMemoryExceeded`.

Calls start on the trio thread (a thread hop per message would cost more than the
call) under a short slice deadline (:data:`INLINE_SLICE`); a call that outlasts it is
re-run off the trio thread under the full ``limits.wall_time`` on a fresh instance
(its module memory starts over, as after a trap), and that node's calls stay off
the trio thread from then on. So no plugin holds the network for more than one
slice, and small fast calls keep their speed.

Every way out of the sandbox is metered: each host call costs fuel
(:data:`HOST_CALL_FUEL` plus one unit per byte moved), bytes streamed with
``send_output``, written with ``set_state`` and returned from ``process`` count
against ``limits.output_bytes`` per message, logs against ``limits.log_bytes``, and
every payload is pre-scanned for ``limits.max_items`` / ``limits.max_depth``
(:mod:`reflowpy.script.bounds`) before it is decoded. The store allows one memory,
at most 4 tables of :data:`TABLE_ELEMENTS` entries, and ``alloc``/``init`` get fresh
fuel and a fresh deadline like ``process``. WASI's ``poll_oneoff`` (sleep, wait on
clocks) answers ``ENOSYS``: a native sleep could not be interrupted by the deadline.

**Streamed outputs under backpressure.** Off the trio thread, each ``send_output``
is delivered at once (``trio.from_thread.run`` of the node's ``send``): a full
downstream port blocks the module's call, and that wait is not counted against its
wall time (as for the process sandbox). On the trio thread a call cannot block, so
its outputs are buffered up to :data:`INLINE_OUTPUTS`; a call that sends more is
re-run off the trio thread (fresh instance, nothing of the first run sent), and that
node's calls stay there -- so no call ever buffers more than that many outputs.

**ABI** (C declarations in ``reflowpy/script/include/reflowpy_plugin.h``). Payloads
are msgpack (default) or JSON (node metadata ``encoding``).

Exports:
  ``memory``                          linear memory
  ``alloc(size: i32) -> i32``         a buffer of ``size`` bytes the host writes input
                                      into; the host may reuse it for later messages
  ``process(ptr: i32, len: i32) -> i64``
                                      input: a map ``{in-port: value}``; returns
                                      ``(out_ptr << 32) | out_len`` of a map
                                      ``{out-port: value}`` (``0``: no outputs); the
                                      output must stay valid until the next call
  ``init(ptr: i32, len: i32) -> i32`` optional; the node's ``config`` map; non-zero
                                      refuses to start
Imports (module ``reflowpy``):
  ``send_output(port_ptr, port_len, value_ptr, value_len)``  stream an output now
  ``get_state(ptr, cap) -> i32``      writes the node's state map if it fits in
                                      ``cap`` bytes; returns its length either way
  ``set_state(ptr, len)``             replaces the node's state map
  ``log(level, ptr, len)``            level 0 debug, 1 info, 2 warning, 3 error

With ``wasi: true`` WASI preview 1 is linked too, with no preopened directories,
no environment and no arguments. A module importing anything else does not start
(:class:`~reflowpy.ConfigError` naming the import).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import msgspec
import trio
import wasmtime
from wasmtime import _ffi as _wffi  # the C API, for the per-message fast path
from wasmtime import _func as _wfunc

from reflowpy.errors import (
    ConfigError,
    MessageError,
    ScriptCPUExceeded,
    ScriptError,
    ScriptLimitExceeded,
    ScriptMemoryExceeded,
    ScriptTimeout,
    WasmTrap,
)
from reflowpy.script.bounds import PayloadTooComplex, check_json, check_msgpack
from reflowpy.script.host import (
    Limits,
    LogSink,
    ProcessResult,
    ScriptHost,
    SendOutput,
    sanitize_log,
)

__all__ = ["EPOCH_TICK", "HOST_CALL_FUEL", "INLINE_OUTPUTS", "INLINE_SLICE", "TABLE_ELEMENTS",
           "WasmHost", "compile_module"]

#: Seconds between epoch ticks (the granularity of the wall-time deadline).
EPOCH_TICK = 0.01
#: Longest a call runs on the trio thread (seconds; then it moves to a thread).
INLINE_SLICE = 0.03
#: Most outputs a call on the trio thread may buffer (then it moves off the thread).
INLINE_OUTPUTS = 256
#: Fuel one host import call costs, on top of one unit per byte it moves.
HOST_CALL_FUEL = 1000
#: Most elements of one table (``table.grow`` past it returns -1).
TABLE_ELEMENTS = 100_000
_WASI_ENOSYS = 52
_MAX_OUTPUTS_PER_CALL = 100_000

_engine: wasmtime.Engine | None = None
_engine_lock = threading.Lock()
_modules: dict[str, wasmtime.Module] = {}
_LOG_LEVELS = {0: "debug", 1: "info", 2: "warning", 3: "error"}


def _get_engine() -> wasmtime.Engine:
    global _engine
    with _engine_lock:
        if _engine is None:
            config = wasmtime.Config()
            config.consume_fuel = True
            config.epoch_interruption = True
            config.memory_may_move = False  # keeps the cached memory base valid
            engine = wasmtime.Engine(config)

            def tick() -> None:
                event = threading.Event()
                while not event.wait(EPOCH_TICK):
                    engine.increment_epoch()

            threading.Thread(target=tick, name="reflowpy-wasm-epoch", daemon=True).start()
            _engine = engine
        return _engine


def compile_module(wasm: bytes | str) -> wasmtime.Module:
    """Compile (or fetch from the cache) a module from binary WASM or WAT text."""
    data = wasm.encode("utf-8") if isinstance(wasm, str) else bytes(wasm)
    key = hashlib.sha256(data).hexdigest()
    module = _modules.get(key)
    if module is None:
        engine = _get_engine()
        module = wasmtime.Module(engine, wasm if isinstance(wasm, str) else data)
        _modules[key] = module
    return module


class _Codec:
    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        if encoding == "json":
            self.encode: Callable[[Any], bytes] = msgspec.json.Encoder().encode
            self.decode: Callable[[bytes], Any] = msgspec.json.Decoder().decode
            self.check: Callable[[bytes, int, int], None] = check_json
        else:
            self.encode = msgspec.msgpack.Encoder().encode
            self.decode = msgspec.msgpack.Decoder().decode
            self.check = check_msgpack


class _FastCall:
    """``process(ptr, len) -> i64`` through ``wasmtime_func_call_unchecked``.

    wasmtime-py's ``Func.__call__`` re-reads the function type and converts every
    argument per call (~30 us); the signature is checked once at instantiation here,
    so a call is one C call on preallocated buffers (~2 us).
    """

    __slots__ = ("_args", "_context", "_fuel", "_func", "_nargs", "_store", "_ticks", "_trap",
                 "_trap_ref")

    def __init__(self, store: wasmtime.Store, func: wasmtime.Func, fuel: int, ticks: int) -> None:
        ty = func.type(store)
        i32, i64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()
        if list(ty.params) != [i32, i32] or list(ty.results) != [i64]:
            raise TypeError(f"process has type {ty.params} -> {ty.results}, not (i32, i32) -> i64")
        self._store = store
        self._context = store._context()
        self._func = ctypes.byref(func._func)
        self._args = (_wffi.wasmtime_val_raw_t * 2)()
        self._nargs = 2
        self._trap = ctypes.POINTER(_wffi.wasm_trap_t)()
        self._trap_ref = ctypes.byref(self._trap)
        self._fuel = fuel
        self._ticks = ticks

    def __call__(self, ptr: int, length: int, ticks: int = 0) -> int:
        context = self._context
        # Fresh fuel and a wall-time deadline relative to the current epoch, per call.
        error = _wffi.wasmtime_context_set_fuel(context, self._fuel)
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)
        _wffi.wasmtime_context_set_epoch_deadline(context, ticks or self._ticks)
        args = self._args
        args[0].i32 = ptr
        args[1].i32 = length
        error = _wffi.wasmtime_func_call_unchecked(
            self._context, self._func, args, self._nargs, self._trap_ref
        )
        if self._trap:
            trap = wasmtime.Trap._from_ptr(self._trap)
            self._trap = ctypes.POINTER(_wffi.wasm_trap_t)()
            self._trap_ref = ctypes.byref(self._trap)
            _maybe_raise_host_exception()
            raise trap
        if error:
            _maybe_raise_host_exception()
            raise wasmtime.WasmtimeError._from_ptr(error)
        _maybe_raise_host_exception()
        return int(args[0].i64)


class _Outgrown(ScriptError):
    """A call on the trio thread sent more than INLINE_OUTPUTS: re-run it off the thread."""


def _no_poll_oneoff(in_ptr: int, out_ptr: int, count: int, nevents: int) -> int:
    return _WASI_ENOSYS


def _maybe_raise_host_exception() -> None:
    # A Python exception raised inside a host import is parked by wasmtime-py.
    if _wfunc.LAST_EXCEPTION is not None:
        _wfunc.maybe_raise_last_exn()


class WasmHost(ScriptHost):
    """Runs a WASM plugin (see the module docstring for limits and the ABI)."""

    sandbox: ClassVar[str] = "wasm"

    def __init__(
        self,
        *,
        node: str,
        wasm: bytes | str,
        config: Mapping[str, Any] | None = None,
        limits: Limits | None = None,
        log: LogSink | None = None,
        wasi: bool = False,
        encoding: str = "msgpack",
    ) -> None:
        super().__init__(node=node, limits=limits or Limits(), log=log)
        self.wasm = wasm
        self.config = dict(config or {})
        self.wasi = wasi
        self.codec = _Codec(encoding)
        self._module: wasmtime.Module | None = None
        self._store: wasmtime.Store | None = None
        self._memory: wasmtime.Memory | None = None
        self._process: wasmtime.Func | None = None
        self._alloc: wasmtime.Func | None = None
        self._buf_ptr = 0
        self._buf_cap = 0
        self._call: _FastCall | None = None
        self._base = 0
        self._size = 0
        self._outputs: list[tuple[str, Any]] = []
        self._state: dict[str, Any] = {}
        self._state_changed = False
        self._error: ScriptError | None = None
        self._ticks = max(1, int(self.limits.wall_time / EPOCH_TICK + 0.999))
        self._slice_ticks = min(self._ticks, max(2, int(INLINE_SLICE / EPOCH_TICK + 0.999)))
        #: Whether calls run off the trio thread (after one outlasted the inline slice).
        self.threaded = False
        self._out_budget = 0
        self._log_budget = 0
        self._state_bytes: bytes | None = None
        #: Delivers one output now (off the trio thread; None: buffer in _outputs).
        self._stream: Callable[[str, Any], None] | None = None
        #: Why the last streamed delivery failed (re-raised after the call).
        self._send_error: BaseException | None = None
        self._call_started = 0.0
        self._call_ticks = 0
        self._waited = 0.0

    # ------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Compile (cached), link and instantiate; ``ConfigError`` says what is wrong."""
        try:
            self._module = compile_module(self.wasm)
        except wasmtime.WasmtimeError as exc:
            raise ConfigError(f"node {self.node!r}: not a valid WASM/WAT module: {exc}") from None
        provided = {"send_output", "get_state", "set_state", "log"}
        for imp in self._module.imports:
            if imp.module == "reflowpy" and imp.name in provided:
                continue
            if self.wasi and imp.module == "wasi_snapshot_preview1":
                continue
            hint = "" if self.wasi or imp.module != "wasi_snapshot_preview1" else (
                "; set metadata wasi: true to link WASI preview 1")
            raise ConfigError(
                f"node {self.node!r}: the WASM module imports {imp.module}.{imp.name}, which"
                f" reflowpy does not provide (reflowpy.send_output, get_state, set_state,"
                f" log{', WASI' if self.wasi else ''}){hint}"
            )
        self._instantiate()
        self._stats.starts += 1
        self._stats.running = True

    def _instantiate(self) -> None:
        module = self._module
        assert module is not None
        engine = _get_engine()
        store = wasmtime.Store(engine)
        store.set_limits(memory_size=self.limits.memory_mb * 1024 * 1024,
                         table_elements=TABLE_ELEMENTS, tables=4, memories=1)
        linker = wasmtime.Linker(engine)
        i32 = wasmtime.ValType.i32()
        linker.define_func(
            "reflowpy", "send_output", wasmtime.FuncType([i32, i32, i32, i32], []),
            self._imp_send_output,
        )
        linker.define_func(
            "reflowpy", "get_state", wasmtime.FuncType([i32, i32], [i32]), self._imp_get_state
        )
        linker.define_func(
            "reflowpy", "set_state", wasmtime.FuncType([i32, i32], []), self._imp_set_state
        )
        linker.define_func("reflowpy", "log", wasmtime.FuncType([i32, i32, i32], []), self._imp_log)
        if self.wasi:
            linker.define_wasi()
            store.set_wasi(wasmtime.WasiConfig())  # no preopens, env or args
            # A native sleep in poll_oneoff would outlast the epoch deadline.
            linker.allow_shadowing = True
            linker.define_func(
                "wasi_snapshot_preview1", "poll_oneoff",
                wasmtime.FuncType([i32, i32, i32, i32], [i32]), _no_poll_oneoff)
        self._store = store
        store.set_fuel(self.limits.fuel)
        store.set_epoch_deadline(self._ticks)
        try:
            instance = linker.instantiate(store, module)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
            raise ConfigError(f"node {self.node!r}: the WASM module failed to instantiate:"
                              f" {exc}") from None
        exports = instance.exports(store)
        memory = exports.get("memory")
        process = exports.get("process")
        alloc = exports.get("alloc")
        missing = [name for name, obj, kind in (
            ("memory", memory, wasmtime.Memory),
            ("process", process, wasmtime.Func),
            ("alloc", alloc, wasmtime.Func),
        ) if not isinstance(obj, kind)]
        if missing:
            raise ConfigError(
                f"node {self.node!r}: the WASM module does not export {', '.join(missing)}"
                " (see reflowpy_plugin.h for the ABI)"
            )
        assert isinstance(memory, wasmtime.Memory)
        assert isinstance(process, wasmtime.Func) and isinstance(alloc, wasmtime.Func)
        self._memory, self._process, self._alloc = memory, process, alloc
        self._base = 0
        self._size = 0
        try:
            self._call = _FastCall(store, process, self.limits.fuel, self._ticks)
        except TypeError as exc:
            raise ConfigError(f"node {self.node!r}: the WASM export {exc}") from None
        self._buf_ptr = self._buf_cap = 0
        init = exports.get("init")
        if isinstance(init, wasmtime.Func):
            payload = self.codec.encode(self.config)
            try:
                ptr = self._input_buffer(len(payload))
                self._write(ptr, payload)
                self._fresh_budget()
                code = init(store, ptr, len(payload))
            except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
                raise ConfigError(f"node {self.node!r}: the WASM init() trapped: {exc}") from None
            if code:
                raise ConfigError(f"node {self.node!r}: the WASM init() refused the config"
                                  f" (returned {code})")

    async def stop(self) -> None:
        """Drop the instance; idempotent."""
        self._store = None
        self._memory = self._process = self._alloc = None
        self._stats.running = False

    # ---------------------------------------------------------------------- memory
    def _fresh_budget(self) -> None:
        """Full fuel and a wall-time deadline from now, before any call into the module."""
        assert self._store is not None
        self._store.set_fuel(self.limits.fuel)
        self._store.set_epoch_deadline(self._ticks)

    def _input_buffer(self, size: int) -> int:
        if size > self._buf_cap:
            assert self._alloc is not None and self._store is not None
            cap = max(size, 256, self._buf_cap * 2)
            self._fresh_budget()  # never the previous call's stale fuel and deadline
            ptr = self._alloc(self._store, cap)
            if not isinstance(ptr, int) or ptr <= 0:
                raise WasmTrap(
                    f"node {self.node!r}: the module's alloc({cap}) returned {ptr!r}",
                    node=self.node, sandbox=self.sandbox,
                )
            self._buf_ptr, self._buf_cap = ptr, cap
        return self._buf_ptr

    def _bounds(self, ptr: int, length: int) -> int:
        """Host address of ``[ptr, ptr+length)`` in linear memory, bounds-checked."""
        if ptr < 0 or length < 0 or ptr + length > self._size:
            # Memory only grows, and only inside calls: re-read the size on a miss.
            assert self._memory is not None and self._store is not None
            self._size = self._memory.data_len(self._store)
            if ptr < 0 or length < 0 or ptr + length > self._size:
                raise WasmTrap(
                    f"node {self.node!r}: the module passed a buffer [{ptr}, {ptr + length})"
                    f" outside its memory of {self._size} bytes",
                    node=self.node, sandbox=self.sandbox,
                )
        base = self._base
        if not base:
            # With memory_may_move off, the base is fixed for the instance's life.
            assert self._memory is not None and self._store is not None
            base = ctypes.cast(self._memory.data_ptr(self._store), ctypes.c_void_p).value or 0
            self._base = base
        return base + ptr

    def _write(self, ptr: int, data: bytes) -> None:
        ctypes.memmove(self._bounds(ptr, len(data)), data, len(data))

    def _read(self, ptr: int, length: int) -> bytes:
        return ctypes.string_at(self._bounds(ptr, length), length)

    # --------------------------------------------------------------------- imports
    def _fail_in_import(self, error: ScriptError) -> None:
        self._error = error
        raise RuntimeError(str(error))  # becomes a trap; the stored error is reported

    def _charge(self, nbytes: int) -> None:
        """Host calls cost fuel too: a loop of imports runs out like any other loop."""
        store = self._store
        assert store is not None
        fuel = store.get_fuel()
        cost = HOST_CALL_FUEL + nbytes
        if fuel < cost:
            self._fail_in_import(ScriptCPUExceeded(
                f"node {self.node!r}: the WASM call ran out of fuel in host calls"
                f" (limits.fuel={self.limits.fuel}, {HOST_CALL_FUEL} per call + 1 per byte);"
                " instance reset", node=self.node, sandbox=self.sandbox))
        store.set_fuel(fuel - cost)

    def _spend_output(self, nbytes: int, what: str) -> None:
        self._out_budget -= nbytes
        if self._out_budget < 0:
            error = ScriptLimitExceeded(
                f"node {self.node!r}: {what} went over limits.output_bytes="
                f"{self.limits.output_bytes} bytes in one message; instance reset",
                node=self.node, sandbox=self.sandbox)
            error.limit = "output_bytes"
            self._fail_in_import(error)

    def _decode(self, data: bytes, what: str) -> Any:
        """Decode a payload from the module, bounded in values and depth."""
        try:
            self.codec.check(data, self.limits.max_items, self.limits.max_depth)
            return self.codec.decode(data)
        except PayloadTooComplex as exc:
            error = WasmTrap(
                f"node {self.node!r}: {what}: a payload of {len(data)} bytes over"
                f" limits.{exc.limit}: {exc}", node=self.node, sandbox=self.sandbox)
        except (msgspec.DecodeError, RecursionError) as exc:
            error = WasmTrap(f"node {self.node!r}: {what}: undecodable value: {exc}",
                             node=self.node, sandbox=self.sandbox)
        raise error

    def _imp_send_output(self, port_ptr: int, port_len: int, val_ptr: int, val_len: int) -> None:
        try:
            self._charge(port_len + val_len)
            self._spend_output(port_len + val_len, "send_output")
            port = self._read(port_ptr, port_len).decode("utf-8")
            value = self._decode(self._read(val_ptr, val_len), "send_output")
        except ScriptError as exc:
            self._fail_in_import(exc)
        except UnicodeDecodeError as exc:
            self._fail_in_import(WasmTrap(
                f"node {self.node!r}: send_output got a port name that is not UTF-8: {exc}",
                node=self.node, sandbox=self.sandbox))
        if self._stream is not None:
            self._deliver(port, value)
            return
        if not self.threaded and len(self._outputs) >= INLINE_OUTPUTS:
            self._fail_in_import(_Outgrown(f"node {self.node!r}: over {INLINE_OUTPUTS}"
                                           " outputs on the trio thread"))
        if len(self._outputs) >= _MAX_OUTPUTS_PER_CALL:
            self._fail_in_import(WasmTrap(
                f"node {self.node!r}: more than {_MAX_OUTPUTS_PER_CALL} send_output calls in"
                " one message", node=self.node, sandbox=self.sandbox))
        self._outputs.append((port, value))

    def _deliver(self, port: str, value: Any) -> None:
        """Deliver a streamed output now; the wait for room downstream is not the
        module's time, so its epoch deadline moves by that long."""
        assert self._stream is not None and self._store is not None
        started = time.monotonic()
        try:
            self._stream(port, value)
        except BaseException as exc:  # cancelled, network stopped: ends the call
            self._send_error = exc
            raise RuntimeError("send_output: the output could not be delivered") from None
        self._stats.outputs += 1
        now = time.monotonic()
        self._waited += now - started
        used = int((now - self._call_started - self._waited) / EPOCH_TICK)
        self._store.set_epoch_deadline(max(1, self._call_ticks - used))

    def _imp_get_state(self, ptr: int, cap: int) -> int:
        data = self._state_bytes
        if data is None:
            data = self._state_bytes = self.codec.encode(self._state)
        try:
            self._charge(min(len(data), max(cap, 0)))
            if len(data) <= cap:
                self._write(ptr, data)
        except ScriptError as exc:
            self._fail_in_import(exc)
        return len(data)

    def _imp_set_state(self, ptr: int, length: int) -> None:
        try:
            self._charge(length)
            self._spend_output(length, "set_state")
            data = self._read(ptr, length)
            state = self._decode(data, "set_state")
        except ScriptError as exc:
            self._fail_in_import(exc)
        if not isinstance(state, dict):
            self._fail_in_import(WasmTrap(f"node {self.node!r}: set_state needs a map, got"
                                          f" {type(state).__name__}", node=self.node,
                                          sandbox=self.sandbox))
        self._state = state
        self._state_bytes = data
        self._state_changed = True

    def _imp_log(self, level: int, ptr: int, length: int) -> None:
        try:
            self._charge(length)
            if length > self._log_budget:
                self._stats.log_bytes_dropped += max(length, 0)
                self._log_budget = 0
                return
            self._log_budget -= length
            text = self._read(ptr, length).decode("utf-8", "replace")
        except ScriptError as exc:
            self._fail_in_import(exc)
        self._log(_LOG_LEVELS.get(level, "info"), sanitize_log(text))

    # --------------------------------------------------------------------- process
    async def process(
        self,
        inputs: Mapping[str, Any],
        state: dict[str, Any],
        send: SendOutput | None = None,
    ) -> ProcessResult:
        """Call the module's ``process`` on one message (see the module docstring)."""
        stats = self._stats
        stats.messages += 1
        try:
            payload = self.codec.encode(inputs)
        except (TypeError, msgspec.EncodeError) as exc:
            stats.failures += 1
            raise MessageError(
                f"node {self.node!r}: the message cannot be encoded: {exc}"
            ) from None
        dropped = stats.log_bytes_dropped
        try:
            if self.threaded:
                returned = await self._call_in_thread(payload, state, send)
            else:
                try:
                    returned = self._call_once(payload, state, self._slice_ticks)
                except (ScriptTimeout, _Outgrown) as exc:
                    if isinstance(exc, ScriptTimeout) and self._slice_ticks >= self._ticks:
                        raise  # the whole wall time, not a slice
                    # Longer than a slice, or more outputs than the trio thread may
                    # buffer: re-run on a fresh instance in a thread, with the full
                    # wall time and streamed outputs (and from now on).
                    self._reset()
                    self._instantiate()
                    self._stats.running = True
                    self.threaded = True
                    why = (f"took longer than {INLINE_SLICE} s" if isinstance(exc, ScriptTimeout)
                           else f"sent more than {INLINE_OUTPUTS} outputs")
                    self._log("info", f"node {self.node!r}: a WASM call {why}; its calls now"
                                      " run off the trio thread")
                    returned = await self._call_in_thread(payload, state, send)
        except ScriptError:
            stats.failures += 1
            raise
        outputs = self._outputs
        if stats.log_bytes_dropped > dropped:
            self._log("warning", f"WASM log output over limits.log_bytes={self.limits.log_bytes}"
                                 f" per message dropped ({stats.log_bytes_dropped} bytes so far)")
        if send is not None:
            for port, value in outputs:
                await send(port, value)
        stats.outputs += len(outputs)
        return ProcessResult(returned, self._state, self._state_changed)

    async def _call_in_thread(self, payload: bytes, state: dict[str, Any],
                              send: SendOutput | None) -> dict[str, Any]:
        """A call off the trio thread, its outputs streamed to ``send`` as they come."""
        if send is not None:
            token = trio.lowlevel.current_trio_token()
            self._stream = lambda port, value: trio.from_thread.run(
                send, port, value, trio_token=token)
        try:
            return await trio.to_thread.run_sync(
                functools.partial(self._call_once, payload, state, self._ticks))
        finally:
            self._stream = None
            error, self._send_error = self._send_error, None
            if error is not None:
                raise error

    def _call_once(self, payload: bytes, state: dict[str, Any], ticks: int) -> dict[str, Any]:
        """One ``process`` call with fresh budgets; any failure resets the instance."""
        if self._store is None:
            self._instantiate()
            self._stats.restarts += 1
            self._stats.running = True
        self._state = state
        self._state_bytes = None
        self._state_changed = False
        self._outputs = []
        self._error = None
        self._out_budget = self.limits.output_bytes
        self._log_budget = self.limits.log_bytes
        self._call_started, self._call_ticks, self._waited = time.monotonic(), ticks, 0.0
        try:
            ptr = self._input_buffer(len(payload))
            self._write(ptr, payload)
            call = self._call
            assert call is not None
            packed = call(ptr, len(payload), ticks)
            returned: dict[str, Any] = {}
            if packed:
                out_ptr, out_len = (packed >> 32) & 0xFFFFFFFF, packed & 0xFFFFFFFF
                if out_len:
                    self._out_budget -= out_len
                    if self._out_budget < 0:
                        over = ScriptLimitExceeded(
                            f"node {self.node!r}: process() returned {out_len} bytes, over"
                            f" limits.output_bytes={self.limits.output_bytes} with what it"
                            " streamed; instance reset", node=self.node, sandbox=self.sandbox)
                        over.limit = "output_bytes"
                        raise over
                    value = self._decode(self._read(out_ptr, out_len), "process() result")
                    if value is not None:
                        if not isinstance(value, dict):
                            raise WasmTrap(
                                f"node {self.node!r}: process() must return a map of"
                                f" outputs, got {type(value).__name__}",
                                node=self.node, sandbox=self.sandbox)
                        returned = value
        except wasmtime.Trap as exc:
            error = self._error or self._classify(exc)
            self._reset()
            raise error from None
        except ScriptError:
            self._reset()
            raise
        except Exception as exc:
            # A host import failed (its stored error says how) or the C API reported
            # an error; either way the instance is not trusted any more.
            error = self._error or WasmTrap(
                f"node {self.node!r}: {type(exc).__name__}: {exc}; instance reset",
                node=self.node, sandbox=self.sandbox)
            self._reset()
            raise error from None
        return returned

    def _classify(self, trap: wasmtime.Trap) -> ScriptError:
        code = trap.trap_code
        message = code.name.lower() if code is not None else "trap"
        node, sandbox = self.node, self.sandbox
        if code == wasmtime.TrapCode.OUT_OF_FUEL:
            return ScriptCPUExceeded(
                f"node {node!r}: the WASM call ran out of fuel (limits.fuel={self.limits.fuel});"
                " instance reset", node=node, sandbox=sandbox)
        if code == wasmtime.TrapCode.INTERRUPT:
            return ScriptTimeout(
                f"node {node!r}: the WASM call ran longer than limits.wall_time="
                f"{self.limits.wall_time} s; instance reset", node=node, sandbox=sandbox)
        # wasmtime does not say whether a memory.grow was refused; a trap with linear
        # memory in the top quarter of the limit is reported as the memory limit.
        limit = self.limits.memory_mb * 1024 * 1024
        if self._memory is not None and self._store is not None:
            size = self._memory.data_len(self._store)
            if size + max(65536, limit // 4) > limit:
                return ScriptMemoryExceeded(
                    f"node {node!r}: the WASM module trapped ({message}) with its memory at"
                    f" {size} bytes of limits.memory_mb={self.limits.memory_mb}; instance"
                    " reset", node=node, sandbox=sandbox)
        return WasmTrap(f"node {node!r}: the WASM module trapped: {message}; instance reset",
                        node=node, sandbox=sandbox)

    def _reset(self) -> None:
        self._store = None
        self._memory = self._process = self._alloc = None
        self._stats.running = False
