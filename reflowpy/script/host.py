"""One interface for every script sandbox: :class:`ScriptHost` (start / process / stop).

A script node does not care where its code runs. It holds a ``ScriptHost`` and calls
``await host.process(inputs, state, send)`` once per message; the host returns the
outputs the script returned and its new state, and calls ``send(port, value)`` for
every output the script streamed with ``send_output`` while it ran (awaiting it, so
a full downstream queue suspends the script: backpressure, never a deadlock).

Implementations: :class:`~reflowpy.script.process.ProcessHost` (local subprocess),
:class:`~reflowpy.script.docker.DockerHost` (container) and
:class:`~reflowpy.script.wasm.WasmHost` (wasmtime). The two worker-based ones share
:class:`WorkerHost`, which speaks :mod:`reflowpy.script.protocol` over a byte stream
and turns every way a worker can fail into a specific
:class:`~reflowpy.ScriptError` subclass; after any failure but a plain exception in
the user's code the worker is killed and a fresh one is started for the next message.
"""

from __future__ import annotations

import abc
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, NamedTuple

import msgspec
import trio

from reflowpy.errors import (
    ConfigError,
    MessageError,
    SandboxUnavailable,
    ScriptCrashed,
    ScriptError,
    ScriptLimitExceeded,
    ScriptMemoryExceeded,
    ScriptProtocolError,
    ScriptRaised,
    ScriptTimeout,
)
from reflowpy.script import protocol as P
from reflowpy.script.bounds import DEFAULT_MAX_DEPTH, DEFAULT_MAX_ITEMS

__all__ = [
    "HostStatistics",
    "Limits",
    "LogSink",
    "ProcessResult",
    "ScriptHost",
    "SendOutput",
    "WorkerHost",
    "sanitize_log",
]

#: ``await send(port, value)``: deliver one streamed output (may suspend: backpressure).
SendOutput = Callable[[str, Any], Awaitable[None]]
#: ``sink(level, message)``: where script logs and stdout/stderr lines go.
LogSink = Callable[[str, str], None]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Resource limits of one script node (node metadata ``limits``; all optional).

    ``wall_time``: seconds one message may take (time spent waiting on a full
    downstream queue does not count). ``memory_mb``: memory of the worker/container
    or WASM linear memory. ``cpus``: CPU share of a container. ``pids``: processes
    in a container / per sandbox user. ``cpu_seconds``: CPU time of one subprocess
    worker over its life (``None``: no limit). ``open_files``, ``file_size_mb``:
    subprocess rlimits. ``tmpfs_mb``: size of the container's ``/tmp``. ``fuel``:
    WASM instructions (roughly) per message. ``max_frame``: largest protocol frame.
    ``log_bytes``: script output forwarded to the log per message (the rest is
    counted and dropped). ``start_timeout``: seconds a worker may take to start.
    ``max_items`` / ``max_depth``: most values and deepest nesting the host decodes
    from one frame or WASM payload (see :mod:`reflowpy.script.bounds`).
    ``output_bytes``: WASM bytes of streamed outputs, state and returned outputs per
    message. ``idle_cpu_seconds``: CPU the process worker's tree may use between two
    messages (background threads/children); more is reported on the next message.
    """

    wall_time: float = 10.0
    memory_mb: int = 256
    cpus: float = 1.0
    pids: int = 64
    cpu_seconds: int | None = None
    open_files: int = 256
    file_size_mb: int = 64
    tmpfs_mb: int = 64
    fuel: int = 100_000_000
    max_frame: int = P.DEFAULT_MAX_FRAME
    log_bytes: int = 64 * 1024
    start_timeout: float = 30.0
    max_items: int = DEFAULT_MAX_ITEMS
    max_depth: int = DEFAULT_MAX_DEPTH
    output_bytes: int = 16 * 1024 * 1024
    idle_cpu_seconds: float = 1.0

    def __post_init__(self) -> None:
        for name in ("wall_time", "cpus", "start_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"limits.{name} must be > 0")
        for name in ("memory_mb", "pids", "open_files", "file_size_mb", "tmpfs_mb", "fuel",
                     "max_items", "max_depth", "output_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"limits.{name} must be >= 1")
        if self.max_frame < 1024:
            raise ValueError("limits.max_frame must be >= 1024 bytes")

    @classmethod
    def from_config(cls, value: Any, *, node: str = "") -> Limits:
        """Limits from node metadata ``limits``, naming node and key on error."""
        if value is None:
            return cls()
        if isinstance(value, Limits):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"node {node!r}: metadata key 'limits' must be an object")
        try:
            return msgspec.convert(dict(value), cls)
        except (msgspec.ValidationError, ValueError) as exc:
            raise ConfigError(f"node {node!r}: metadata key 'limits': {exc}") from None


class ProcessResult(NamedTuple):
    """What one message produced: the returned outputs and the script's state."""

    outputs: dict[str, Any]
    state: dict[str, Any]
    state_changed: bool


class HostStatistics(msgspec.Struct):
    """Counters of one host, for ``statistics()`` in the trio style."""

    sandbox: str
    messages: int = 0
    outputs: int = 0
    failures: int = 0
    starts: int = 0
    restarts: int = 0
    log_bytes_dropped: int = 0
    running: bool = False


class ScriptHost(abc.ABC):
    """Runs one node's script somewhere and calls it per message.

    ``start()`` loads the script (raising :class:`~reflowpy.ConfigError` if it cannot
    load and :class:`~reflowpy.SandboxUnavailable` if the sandbox cannot run);
    ``process()`` handles one message and raises a :class:`~reflowpy.ScriptError`
    subclass saying what went wrong; ``stop()`` releases everything and is safe to
    call more than once.
    """

    sandbox: ClassVar[str] = ""

    def __init__(self, *, node: str, limits: Limits, log: LogSink | None = None) -> None:
        self.node = node
        self.limits = limits
        self._log = log or _default_log(node)
        self._stats = HostStatistics(sandbox=self.sandbox)

    @abc.abstractmethod
    async def start(self) -> None:
        """Start the sandbox and load the script."""

    @abc.abstractmethod
    async def process(
        self,
        inputs: Mapping[str, Any],
        state: dict[str, Any],
        send: SendOutput | None = None,
    ) -> ProcessResult:
        """Run the script on one message's ``inputs`` with the node's ``state``."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop the sandbox; idempotent."""

    def statistics(self) -> HostStatistics:
        """Counters: messages, streamed outputs, failures, (re)starts, dropped log bytes."""
        return self._stats

    async def __aenter__(self) -> ScriptHost:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        with trio.CancelScope(shield=True):
            await self.stop()


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F) if c != 0x09}
_CONTROL.update({0x85: "\\x85", 0x2028: "\\u2028", 0x2029: "\\u2029"})


def sanitize_log(message: str) -> str:
    """A script's log text as one line: newlines and other control characters escaped.

    A script must not be able to forge a host log line (``"...\\nERROR reflowpy: ..."``)
    or drive the operator's terminal with escape sequences.
    """
    if message.isprintable():
        return message
    return message.translate(_CONTROL)


def _default_log(node: str) -> LogSink:
    logger = logging.getLogger(f"reflowpy.script.{node}")

    def sink(level: str, message: str) -> None:
        logger.log(_LEVELS.get(level, logging.INFO), "%s", message)

    return sink


class _WorkerGone(Exception):
    """The worker's output stream ended (it exited or was killed)."""


class WorkerHost(ScriptHost):
    """A :class:`ScriptHost` whose script runs in :mod:`reflowpy.script.worker`.

    Subclasses provide the transport: ``_spawn()`` starts a worker whose protocol
    bytes are read with ``_receive_some()`` and written with ``_send_all()``;
    ``_kill()`` ends it; ``_exit_error()`` explains an unexpected end (exit code,
    signal, OOM). Everything else — init handshake, state sync, streaming outputs,
    limits, logs, restarts — lives here, identical for every sandbox.
    """

    def __init__(
        self,
        *,
        node: str,
        source: str,
        entry: str = "process",
        config: Mapping[str, Any] | None = None,
        filename: str | None = None,
        limits: Limits | None = None,
        log: LogSink | None = None,
    ) -> None:
        super().__init__(node=node, limits=limits or Limits(), log=log)
        self.source = source
        self.entry = entry
        self.config = dict(config or {})
        self.filename = filename or f"<script {node}>"
        self._reader = P.FrameReader(self.limits.max_frame)
        self._alive = False
        self._next_id = 1
        self._worker_state: dict[str, Any] | None = None
        self._log_budget = self.limits.log_bytes
        self._stderr_tail = bytearray()
        self._stderr_partial = bytearray()
        self.pid: int | None = None
        self.python_version = ""

    # ------------------------------------------------------------------ transport
    @abc.abstractmethod
    async def _spawn(self) -> None:
        """Start a worker process/container; protocol I/O goes through the methods below."""

    @abc.abstractmethod
    async def _send_all(self, data: bytes) -> None: ...

    @abc.abstractmethod
    async def _receive_some(self) -> bytes:
        """Protocol bytes from the worker; ``b""`` once its output ended."""

    @abc.abstractmethod
    async def _kill(self) -> None:
        """End the worker now and release its resources (idempotent)."""

    @abc.abstractmethod
    async def _exit_error(self, during: str) -> ScriptError:
        """After the worker's output ended unexpectedly: why (exit code, signal, OOM)."""

    def _sandbox_spec(self) -> dict[str, Any]:
        """Confinement the worker applies to itself before loading the script."""
        return {}

    def _message_starts(self) -> ScriptError | None:
        """Before a message is sent: a limit the worker broke since the last one."""
        return None

    def _message_ended(self) -> ScriptError | None:
        """After a result or script error: a limit the worker's tree hit meanwhile."""
        return None

    def _sandbox_hint(self) -> str:
        """What a user can do when the sandbox cannot confine the worker."""
        return ""

    # ------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Start a worker and load the script; ``ConfigError`` if the script cannot load."""
        try:
            with trio.fail_after(self.limits.start_timeout):
                await self._start_worker()
        except SandboxUnavailable:
            await self._kill()
            raise
        except trio.TooSlowError:
            await self._kill()
            raise ConfigError(
                f"node {self.node!r}: the {self.sandbox} worker did not start within"
                f" {self.limits.start_timeout} s (limits.start_timeout)"
            ) from None
        except ScriptRaised as exc:
            await self._kill()
            raise ConfigError(
                f"node {self.node!r}: the script failed to load: {exc.remote_type}:"
                f" {exc}\n{exc.remote_traceback}".rstrip()
            ) from None
        except ScriptError as exc:
            await self._kill()
            raise ConfigError(f"node {self.node!r}: the {self.sandbox} worker failed to start:"
                              f" {exc}") from exc
        except BaseException:
            # Cancelled (or anything else) mid-start: nobody will call stop() for a
            # host that never started, so release the worker, its cgroup and uid now.
            self._alive = False
            with trio.CancelScope(shield=True):
                await self._kill()
            raise

    async def _start_worker(self) -> None:
        self._reader = P.FrameReader(self.limits.max_frame)
        self._stderr_tail.clear()
        await self._spawn()
        self._alive = True
        self._stats.starts += 1
        self._worker_state = {}
        init = P.Init(
            source=self.source,
            filename=self.filename,
            entry=self.entry,
            config=self.config,
            sandbox=self._sandbox_spec(),
        )
        await self._send_all(P.encode_frame(init, self.limits.max_frame))
        while True:
            message = await self._next_message("loading the script")
            if isinstance(message, P.Ready):
                self.pid = message.pid
                self.python_version = message.python
                self._stats.running = True
                return
            if isinstance(message, P.Error) and message.kind == "sandbox":
                raise SandboxUnavailable(
                    f"node {self.node!r}: the {self.sandbox} sandbox cannot confine the"
                    f" worker here: {message.exc_type}: {message.message}. {self._sandbox_hint()}"
                )
            if isinstance(message, P.Error):
                raise ScriptRaised(
                    message.message,
                    node=self.node,
                    sandbox=self.sandbox,
                    remote_type=message.exc_type,
                    remote_traceback=message.traceback,
                )
            if isinstance(message, P.Log):
                self._forward_log(message.level, message.message)
                continue
            raise ScriptProtocolError(
                f"node {self.node!r}: the worker sent {type(message).__name__} before Ready",
                node=self.node,
                sandbox=self.sandbox,
            )

    async def stop(self) -> None:
        """Kill the worker and release the sandbox; idempotent."""
        self._alive = False
        self._stats.running = False
        await self._kill()

    async def restart(self) -> None:
        """Replace the worker with a fresh one (state is re-sent with the next message)."""
        await self._kill()
        self._alive = False
        self._stats.restarts += 1
        try:
            with trio.fail_after(self.limits.start_timeout):
                await self._start_worker()
        except trio.TooSlowError:
            await self._kill()
            raise ScriptCrashed(
                f"node {self.node!r}: the {self.sandbox} worker did not restart within"
                f" {self.limits.start_timeout} s",
                node=self.node,
                sandbox=self.sandbox,
            ) from None
        except BaseException:
            self._alive = False
            with trio.CancelScope(shield=True):
                await self._kill()
            raise

    async def ping(self) -> P.Heartbeat:
        """Round-trip a heartbeat to the worker (health check)."""
        if not self._alive:
            raise ScriptCrashed(f"node {self.node!r}: the worker is not running",
                                node=self.node, sandbox=self.sandbox)
        mid = self._next_id
        self._next_id += 1
        with trio.fail_after(self.limits.wall_time):
            await self._send_all(P.encode_frame(P.Ping(mid)))
            while True:
                message = await self._next_message("answering a ping")
                if isinstance(message, P.Heartbeat) and message.id == mid:
                    return message
                if isinstance(message, P.Log):
                    self._forward_log(message.level, message.message)

    # --------------------------------------------------------------------- process
    async def process(
        self,
        inputs: Mapping[str, Any],
        state: dict[str, Any],
        send: SendOutput | None = None,
    ) -> ProcessResult:
        """Send one message to the worker and wait for its result.

        Raises :class:`~reflowpy.ScriptRaised` when the script raised (the worker
        lives on), and :class:`~reflowpy.ScriptTimeout`,
        :class:`~reflowpy.ScriptMemoryExceeded`, :class:`~reflowpy.ScriptCrashed` or
        :class:`~reflowpy.ScriptProtocolError` when the worker had to be killed; a
        fresh worker is started for the next message.
        """
        if not self._alive:
            await self.restart()
        stats = self._stats
        stats.messages += 1
        mid = self._next_id
        self._next_id += 1
        state_arg = None if state == self._worker_state else state
        try:
            frame = P.encode_frame(P.Process(mid, inputs, state_arg), self.limits.max_frame)
        except (TypeError, msgspec.EncodeError, OverflowError) as exc:
            stats.failures += 1
            raise MessageError(
                f"node {self.node!r}: the message or state cannot be sent to the script: {exc}"
            ) from None
        self._log_budget = self.limits.log_bytes
        wall = self.limits.wall_time
        clean = False
        broken = self._message_starts()
        if broken is not None:
            stats.failures += 1
            self._alive = False
            self._stats.running = False
            await self._kill()
            raise broken
        try:
            with trio.CancelScope(deadline=trio.current_time() + wall) as scope:
                await self._send_all(frame)
                while True:
                    message = await self._next_message("processing a message")
                    if type(message) is P.Output:
                        if message.id != mid:
                            raise self._protocol(f"output for message {message.id}, not {mid}")
                        stats.outputs += 1
                        if send is not None:
                            # Waiting on downstream backpressure is not the script's time.
                            remaining = scope.deadline - trio.current_time()
                            scope.deadline = math.inf
                            await send(message.port, message.value)
                            scope.deadline = trio.current_time() + remaining
                        continue
                    if type(message) is P.Result:
                        if message.id != mid:
                            raise self._protocol(f"result for message {message.id}, not {mid}")
                        hit = self._message_ended()
                        if hit is not None:
                            stats.failures += 1
                            raise hit
                        clean = True
                        if message.state is None:
                            new_state = state
                            if state_arg is not None:
                                self._worker_state = state
                        else:
                            new_state = message.state
                            self._worker_state = new_state
                        self._report_dropped_log()
                        return ProcessResult(
                            message.outputs or {}, new_state, message.state is not None
                        )
                    if type(message) is P.Log:
                        self._forward_log(message.level, message.message)
                        continue
                    if type(message) is P.Error:
                        stats.failures += 1
                        self._report_dropped_log()
                        if message.kind == "memory":
                            raise ScriptMemoryExceeded(
                                f"node {self.node!r}: the script ran out of memory (limit"
                                f" limits.memory_mb={self.limits.memory_mb}); worker restarted",
                                node=self.node,
                                sandbox=self.sandbox,
                            )
                        if message.kind == "processes":
                            leak = ScriptLimitExceeded(
                                f"node {self.node!r}: the script left processes running"
                                f" ({message.exc_type}: {message.message}); sandbox killed"
                                f" (limits.pids={self.limits.pids})",
                                node=self.node,
                                sandbox=self.sandbox,
                            )
                            leak.limit = "pids"
                            raise leak
                        if message.kind not in ("user", "encode"):
                            raise self._protocol(f"error of unexpected kind {message.kind!r}")
                        hit = self._message_ended()
                        if hit is not None:
                            raise hit
                        clean = True
                        if state_arg is not None:
                            self._worker_state = state
                        raise ScriptRaised(
                            f"node {self.node!r}: script raised {message.exc_type}:"
                            f" {message.message}",
                            node=self.node,
                            sandbox=self.sandbox,
                            remote_type=message.exc_type,
                            remote_traceback=message.traceback,
                        )
                    if type(message) is P.Heartbeat:
                        continue
                    raise self._protocol(f"unexpected {type(message).__name__} frame")
            stats.failures += 1
            raise ScriptTimeout(
                f"node {self.node!r}: the script ran longer than limits.wall_time={wall} s;"
                " worker killed and restarted",
                node=self.node,
                sandbox=self.sandbox,
            )
        finally:
            if not clean:
                # The worker is mid-message or broken: it must not see the next one.
                self._alive = False
                self._stats.running = False
                with trio.CancelScope(shield=True):
                    await self._kill()

    def _protocol(self, what: str) -> ScriptProtocolError:
        return self._restarted(f"the worker broke the protocol: {what}")

    def _restarted(self, what: str) -> ScriptProtocolError:
        """Count a failure and say the worker is restarted because of ``what``."""
        self._stats.failures += 1
        return ScriptProtocolError(
            f"node {self.node!r}: {what}; worker restarted",
            node=self.node,
            sandbox=self.sandbox,
        )

    async def _next_message(self, during: str) -> P.WorkerMessage:
        reader = self._reader
        while True:
            try:
                body = reader.next()
                if body is not None:
                    return P.decode_worker_message(
                        body, self.limits.max_items, self.limits.max_depth)
            except ScriptProtocolError as exc:
                raise self._restarted(str(exc)) from None
            data = await self._receive_some()
            if not data:
                self._alive = False
                self._stats.running = False
                self._stats.failures += 1
                raise await self._exit_error(during)
            reader.feed(data)

    # ------------------------------------------------------------------------ logs
    def _forward_log(self, level: str, message: str) -> None:
        size = len(message)
        if size > self._log_budget:
            self._stats.log_bytes_dropped += size
            return
        self._log_budget -= size
        self._log(level if level in _LEVELS else "info", sanitize_log(message))

    def _on_stderr(self, data: bytes) -> None:
        """Script stdout/stderr bytes: keep a tail for crash reports, log whole lines."""
        tail = self._stderr_tail
        tail += data[-4096:]
        if len(tail) > 4096:
            del tail[:-4096]
        if self._log_budget <= 0:
            self._stats.log_bytes_dropped += len(data)
            return
        partial = self._stderr_partial
        partial += data
        if len(partial) > self._log_budget:
            self._stats.log_bytes_dropped += len(partial) - self._log_budget
            del partial[self._log_budget :]
        *lines, rest = partial.split(b"\n")
        for line in lines:
            self._forward_log("info", line.decode("utf-8", "replace"))
        partial[:] = rest

    def _report_dropped_log(self) -> None:
        if self._stderr_partial and self._log_budget > 0:
            self._forward_log("info", self._stderr_partial.decode("utf-8", "replace"))
            self._stderr_partial.clear()
        if self._log_budget <= 0 and self._stats.log_bytes_dropped:
            self._log(
                "warning",
                f"script output over limits.log_bytes={self.limits.log_bytes} per message"
                f" dropped ({self._stats.log_bytes_dropped} bytes so far)",
            )

    def stderr_tail(self) -> str:
        """The last few KB the worker wrote to stdout/stderr (for crash reports)."""
        return self._stderr_tail.decode("utf-8", "replace")

    def _tail_note(self) -> str:
        tail = self.stderr_tail().strip().splitlines()[-5:]
        return ("; last output: " + " | ".join(tail)) if tail else ""

    def _crashed(self, during: str, how: str) -> ScriptCrashed:
        return ScriptCrashed(
            f"node {self.node!r}: the {self.sandbox} worker {how} while {during};"
            f" restarted for the next message{self._tail_note()}",
            node=self.node,
            sandbox=self.sandbox,
        )
