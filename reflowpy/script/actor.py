"""The script components ``script/python`` and ``script/wasm``: a sandbox as a graph node.

Each node gets its own actor instance, and the instance its own
:class:`~reflowpy.script.host.ScriptHost` (one container, subprocess or WASM
instance per node), started in ``setup`` and stopped in ``teardown``. Ports are
dynamic: node metadata ``inports`` / ``outports`` (lists of names, default
``["in"]`` / ``["out"]``), read by the kernel through :meth:`ports_for`.

``script/python`` metadata::

    source | file     the script text, or a path to it
    entry            function called per message (default "process")
    sandbox          "docker" (default) or "process"
    image            Docker image (default $REFLOWPY_PYTHON_IMAGE or python:3.11-slim)
    transport        Docker only: "socket" (default, local engine) or "attach"
    network          true to grant network access (default false)
    user, group      process sandbox: run the worker as this uid/gid (default: a leased
                     uid per worker when reflowpy runs as root)
    allow_weaker     process sandbox: layers it may run without (namespaces, uid,
                     seccomp, landlock, cgroup, or "all"); otherwise a missing one refuses to start
    limits           see reflowpy.script.host.Limits (wall_time, memory_mb, cpus, ...)
    config           passed to the function as ``config`` (default {})

The function is ``process(inputs, config, state)`` (or fewer leading parameters):
``inputs`` maps in-port -> value, ``state`` is a dict it may change and that is kept
between messages, and it returns ``{port: value}`` or ``None``; ``send_output(port,
value)`` and ``log(...)`` are available as globals (and from ``reflowpy_script``).

``script/wasm`` metadata: ``module`` (path to a .wasm/.wat file) or ``wasm`` (the
bytes), ``limits`` (``fuel``, ``memory_mb``, ``wall_time``), ``wasi`` (default
false), ``encoding`` ("msgpack" or "json"), ``config``; see :mod:`reflowpy.script.wasm`.

Every failure is raised from ``process()`` as a :class:`~reflowpy.ScriptError`
subclass, so the message follows the node's failure policy (retry, restart, dead
letter) and the rest of the network keeps running.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from reflowpy.errors import ConfigError
from reflowpy.network.actor import Actor, ActorContext, Port
from reflowpy.network.registry import Registry
from reflowpy.script.host import Limits, LogSink, ScriptHost

__all__ = ["PythonScript", "WasmScript", "register"]

_T = TypeVar("_T")

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "critical": 50}


def _port_list(config: Mapping[str, Any], key: str, default: str) -> list[str]:
    value = config.get(key, [default])
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError(f"metadata key {key!r} must be a list of port names, got {value!r}")
    names = [str(v) for v in value]
    if len(set(names)) != len(names):
        raise ConfigError(f"metadata key {key!r} names a port twice: {names}")
    return names


def _log_sink(ctx: ActorContext) -> LogSink:
    def sink(level: str, message: str) -> None:
        ctx.log.log(_LEVELS.get(level, 20), "%s", message)

    return sink


class _ScriptActor(Actor):
    """Shared part: dynamic ports, host lifecycle, per-message call."""

    inports: ClassVar[Sequence[str | Port]] = ("in",)
    outports: ClassVar[Sequence[str | Port]] = ("out",)

    host: ScriptHost | None = None

    @classmethod
    def ports_for(cls, config: Mapping[str, Any]) -> tuple[list[str], list[str]]:
        """In- and out-ports of one node, from its metadata ``inports``/``outports``."""
        return _port_list(config, "inports", "in"), _port_list(config, "outports", "out")

    def _make_host(self, ctx: ActorContext, limits: Limits) -> ScriptHost:
        raise NotImplementedError  # each subclass builds its own host

    async def setup(self, ctx: ActorContext) -> None:
        """Validate metadata and start the sandbox; ``ConfigError`` names node and key."""
        try:
            self.ports_for(ctx.config)
        except ConfigError as exc:
            raise ConfigError(f"node {ctx.node_id!r}: {exc}") from None
        limits = Limits.from_config(ctx.config.get("limits"), node=ctx.node_id)
        host = self._make_host(ctx, limits)
        await host.start()
        self.host = host

    async def process(self, ctx: ActorContext) -> Mapping[str, Any] | None:
        """Run the script on this message; outputs streamed via ``ctx.send`` or returned."""
        host = self.host
        if host is None:
            raise ConfigError(f"node {ctx.node_id!r}: the script host is not started")
        result = await host.process(ctx.inputs, ctx.state, ctx.send)
        if result.state_changed:
            state = ctx.state
            state.clear()
            state.update(result.state)
        return result.outputs or None

    async def teardown(self, ctx: ActorContext) -> None:
        """Stop the sandbox (removes the container / kills the worker)."""
        host, self.host = self.host, None
        if host is not None:
            await host.stop()


def _script_config(ctx: ActorContext, cfg: Mapping[str, Any] | None = None) -> dict[str, Any]:
    value = (ctx.config if cfg is None else cfg).get("config", {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"node {ctx.node_id!r}: metadata key 'config' must be an object")
    return dict(value)


def _read_metadata_file(
    node: str, key: str, value: object, read: Callable[[Path], _T]
) -> tuple[Path, _T]:
    """``read`` the file named by metadata ``key``; an unreadable file is a ConfigError."""
    path = Path(str(value))
    try:
        return path, read(path)
    except OSError as exc:
        raise ConfigError(
            f"node {node!r}: metadata key {key!r}: cannot read {str(path)!r}: {exc}"
        ) from None


def _read_utf8(path: Path) -> str:
    return path.read_text(encoding="utf-8")


class PythonScript(_ScriptActor):
    """Runs a user's Python function in a sandbox (Docker container or subprocess)."""

    description: ClassVar[str] = (
        "A Python function in a sandbox: metadata source|file, entry, sandbox"
        " (docker|process), image, network, limits, config, inports, outports."
    )

    def _make_host(self, ctx: ActorContext, limits: Limits) -> ScriptHost:
        return self._python_host(ctx, limits, ctx.config)

    def _python_host(
        self, ctx: ActorContext, limits: Limits, cfg: Mapping[str, Any]
    ) -> ScriptHost:
        """The host for metadata ``cfg`` (the node's, or what a subclass derives from it)."""
        node = ctx.node_id
        if "source" in cfg:
            source = cfg["source"]
            if not isinstance(source, str):
                raise ConfigError(f"node {node!r}: metadata key 'source' must be a string")
            filename = f"<script {node}>"
        elif "file" in cfg:
            path, source = _read_metadata_file(node, "file", cfg["file"], _read_utf8)
            filename = str(path)
        else:
            raise ConfigError(
                f"node {node!r}: script/python needs metadata 'source' (the code) or 'file'"
            )
        entry = str(cfg.get("entry", "process"))
        sandbox = cfg.get("sandbox", "docker")
        network = cfg.get("network", False)
        if not isinstance(network, bool):
            raise ConfigError(f"node {node!r}: metadata key 'network' must be true or false")
        common: dict[str, Any] = {
            "node": node,
            "source": source,
            "entry": entry,
            "config": _script_config(ctx, cfg),
            "filename": filename,
            "limits": limits,
            "log": _log_sink(ctx),
            "network": network,
        }
        if sandbox == "docker":
            from reflowpy.script.docker import DockerHost

            image = cfg.get("image")
            if image is not None and not isinstance(image, str):
                raise ConfigError(f"node {node!r}: metadata key 'image' must be a string")
            transport = cfg.get("transport")
            if transport not in (None, "socket", "attach"):
                raise ConfigError(
                    f"node {node!r}: metadata key 'transport' must be 'socket' or 'attach'"
                )
            return DockerHost(image=image, transport=transport, **common)
        if sandbox == "process":
            from reflowpy.script.process import ProcessHost

            extra: dict[str, Any] = {}
            for key in ("user", "group"):
                value = cfg.get(key)
                if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                          or value < 0):
                    raise ConfigError(f"node {node!r}: metadata key {key!r} must be a uid/gid"
                                      " number")
                extra[key] = value
            weaker = cfg.get("allow_weaker")
            try:
                return ProcessHost(**common, **extra, allow_weaker=weaker)
            except ValueError as exc:
                raise ConfigError(f"node {node!r}: metadata key 'allow_weaker': {exc}") from None
        raise ConfigError(
            f"node {node!r}: metadata key 'sandbox' must be 'docker' or 'process', got"
            f" {sandbox!r}"
        )


class WasmScript(_ScriptActor):
    """Runs a WebAssembly plugin in wasmtime (fuel, epoch deadline, memory limit)."""

    description: ClassVar[str] = (
        "A WebAssembly plugin in wasmtime: metadata module|wasm, limits (fuel, memory_mb,"
        " wall_time), wasi, encoding, config, inports, outports."
    )

    def _make_host(self, ctx: ActorContext, limits: Limits) -> ScriptHost:
        from reflowpy.script.wasm import WasmHost

        cfg = ctx.config
        node = ctx.node_id
        wasm: bytes | str
        if "wasm" in cfg:
            raw = cfg["wasm"]
            if not isinstance(raw, bytes | str):
                raise ConfigError(f"node {node!r}: metadata key 'wasm' must be bytes or WAT text")
            wasm = raw
        elif "module" in cfg:
            path, data = _read_metadata_file(node, "module", cfg["module"], Path.read_bytes)
            wasm = data.decode("utf-8") if path.suffix == ".wat" else data
        else:
            raise ConfigError(
                f"node {node!r}: script/wasm needs metadata 'module' (a path) or 'wasm' (bytes)"
            )
        encoding = cfg.get("encoding", "msgpack")
        if encoding not in ("msgpack", "json"):
            raise ConfigError(
                f"node {node!r}: metadata key 'encoding' must be 'msgpack' or 'json'"
            )
        return WasmHost(
            node=node,
            wasm=wasm,
            config=_script_config(ctx),
            limits=limits,
            log=_log_sink(ctx),
            wasi=bool(cfg.get("wasi", False)),
            encoding=encoding,
        )


def register(registry: Registry) -> None:
    """Register ``script/python`` and ``script/wasm`` in ``registry``."""
    registry.register("script/python", PythonScript, replace=True)
    registry.register("script/wasm", WasmScript, replace=True)
