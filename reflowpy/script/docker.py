"""Python scripts in Docker (``sandbox: docker``): one long-lived container per node.

The container runs a stock ``python:3.x-slim``-style image (node metadata ``image``;
default ``$REFLOWPY_PYTHON_IMAGE`` or ``python:3.11-slim``) with the stdlib-only
worker passed on its command line (``python3 -I -c <worker>``), so users build no
image. It is created with:

* ``network_mode="none"`` unless the node grants ``network: true``;
* a read-only root filesystem, a ``tmpfs`` ``/tmp`` (``limits.tmpfs_mb``, noexec) as cwd,
  and a tmpfs over every ``VOLUME`` the image declares (no writable volume that
  outlives the container; removal also passes ``v=True``);
* a distinct uid per container (:mod:`reflowpy.script.uids`; ``user`` overrides it),
  all capabilities dropped, ``no-new-privileges``;
* the seccomp profile of :mod:`reflowpy.script.seccomp` (no io_uring, namespaces,
  ptrace, bpf, keyctl, mount...);
* ``mem_limit`` = ``memswap_limit`` (``limits.memory_mb``), ``nano_cpus``
  (``limits.cpus``), ``pids_limit`` (``limits.pids``), ``nofile``/``fsize``/``core``
  ulimits, a json-file log capped at 1 MiB (a stdout flood cannot fill the host disk);
* labels ``reflowpy.script``, ``reflowpy.owner`` (host:pid) and ``reflowpy.node``.

Two transports for the protocol, both driven from trio with no thread per message
(only the blocking SDK calls — create, start, inspect, remove — run in threads):

* ``socket`` (default with a local engine): the host listens on a Unix socket in a
  0700 directory owned by the container's uid, bind-mounted read-only at
  ``/run/reflowpy``; the worker connects to it, so frames bypass the engine (about
  twice the attach throughput). The channel is authenticated before a byte is sent:
  the peer's ``SO_PEERCRED`` must be the container's init process (its host pid and
  uid) and its first bytes the per-start nonce passed in the container's
  environment; anything else is refused, logged and counted
  (``statistics().rejected_peers``). The container's stdout/stderr still come through
  the attach stream, drained into the node's log.
* ``attach`` (``transport: attach``, or a remote ``DOCKER_HOST``): frames travel over
  the container's stdin/stdout through the engine's raw attach socket.

A timeout, crash or OOM removes the container and the next message starts a fresh
one. :meth:`DockerHost.stop` removes
the container; containers left behind by a crashed reflowpy process (their owner
pid is gone) are removed the first time this process starts one, or explicitly with
:func:`cleanup_containers`.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
import shutil
import socket
import struct
import tempfile
import threading
from collections.abc import Mapping
from typing import Any, ClassVar

import trio

from reflowpy.errors import (
    SandboxUnavailable,
    ScriptCrashed,
    ScriptError,
    ScriptMemoryExceeded,
)
from reflowpy.script import seccomp, uids
from reflowpy.script.host import Limits, LogSink, WorkerHost
from reflowpy.script.process import worker_source

__all__ = ["DEFAULT_IMAGE", "LABEL", "DockerHost", "cleanup_containers", "docker_available"]

#: Image used when node metadata names none.
DEFAULT_IMAGE = os.environ.get("REFLOWPY_PYTHON_IMAGE", "python:3.11-slim")
#: Label put on every container reflowpy starts.
LABEL = "reflowpy.script"

_OWNER = f"{socket.gethostname()}:{os.getpid()}"
_HEADER = struct.Struct(">BxxxI")
_PEERCRED = struct.Struct("3i")
_NONCE_BYTES = 32
_cleaned = False
_cleaned_lock = threading.Lock()


def _client(timeout: float = 30.0) -> Any:
    import docker

    return docker.from_env(timeout=int(timeout))


def docker_available(timeout: float = 5.0) -> str | None:
    """``None`` if a Docker engine answers, else the reason it does not (blocking)."""
    try:
        client = _client(timeout)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def cleanup_containers(*, all_owners: bool = False, client: Any = None) -> list[str]:
    """Remove reflowpy script containers whose owning process is gone (blocking).

    With ``all_owners=True`` every labelled container on the engine goes, also
    those of live processes on this or other machines. Returns the removed ids.
    """
    own = client is None
    client = client or _client()
    removed: list[str] = []
    try:
        for container in client.containers.list(all=True, filters={"label": LABEL}):
            owner = str(container.labels.get("reflowpy.owner", ""))
            if not all_owners and not _owner_gone(owner):
                continue
            try:
                container.remove(force=True)
                removed.append(container.id)
            except Exception:  # already gone / being removed
                pass
    finally:
        if own:
            client.close()
    return removed


def _image_volumes(client: Any, image: str) -> tuple[str, tuple[str, ...]]:
    """``(image id, its VOLUME paths)``: the container is created from the id, so the
    image whose volumes were covered is the image that runs (a tag can move)."""
    attrs = client.images.get(image).attrs
    volumes = tuple(str(p) for p in (attrs.get("Config") or {}).get("Volumes") or {})
    return str(attrs["Id"]), volumes


def _owner_gone(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's container: not ours to judge
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class DockerHost(WorkerHost):
    """Runs the script in a locked-down container (see the module docstring)."""

    sandbox: ClassVar[str] = "docker"

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
        image: str | None = None,
        network: bool = False,
        python: str = "python3",
        user: str | None = None,
        transport: str | None = None,
    ) -> None:
        super().__init__(
            node=node,
            source=source,
            entry=entry,
            config=config,
            filename=filename,
            limits=limits,
            log=log,
        )
        self.image = image or DEFAULT_IMAGE
        self.network = network
        self.python = python
        self._user_override = user
        self.user = user or ""
        self._lease: uids.UidLease | None = None
        self._uid = -1
        self._nonce = ""
        self._worker_pid = 0
        #: Connections to the worker socket refused (wrong peer or nonce).
        self.rejected_peers = 0
        self._client: Any = None
        self._container: Any = None
        self._response: Any = None
        self._stream: trio.SocketStream | None = None
        self._raw = bytearray()
        self._frame_stream = 0
        self._frame_left = 0
        self.container_id: str | None = None
        if transport is None:
            remote = os.environ.get("DOCKER_HOST", "unix://").split("://")[0] != "unix"
            transport = "attach" if remote else "socket"
        if transport not in ("socket", "attach"):
            raise ValueError(f"node {node!r}: transport must be 'socket' or 'attach'")
        self.transport = transport
        self._sockdir: str | None = None
        self._listener: trio.SocketListener | None = None
        self._log_stream: trio.SocketStream | None = None

    # ---------------------------------------------------------------- blocking part
    def _create_and_start(self) -> socket.socket:
        global _cleaned
        import docker.errors
        from docker.types import LogConfig, Ulimit

        try:
            if self._client is None:
                self._client = _client(max(self.limits.start_timeout, 10.0))
            client = self._client
            with _cleaned_lock:
                if not _cleaned:
                    cleanup_containers(client=client)
                    _cleaned = True
            lim = self.limits
            mem = f"{lim.memory_mb}m"
            command = [self.python, "-I", "-c", worker_source(), str(lim.max_frame)]
            volumes: dict[str, dict[str, str]] = {}
            environment = {"HOME": "/tmp", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
            if self._sockdir is not None:
                command.append("/run/reflowpy/worker.sock")
                volumes[self._sockdir] = {"bind": "/run/reflowpy", "mode": "ro"}
                environment["REFLOWPY_CHANNEL_NONCE"] = self._nonce
            scratch = f"rw,nosuid,nodev,noexec,size={lim.tmpfs_mb}m,mode=1777"
            tmpfs = {"/tmp": scratch}
            # A VOLUME in the image would become a writable, persistent volume.
            image_id, volumes_of_image = _image_volumes(client, self.image)
            for path in volumes_of_image:
                tmpfs[path] = scratch
            container = client.containers.create(
                image_id,
                command=command,
                volumes=volumes,
                stdin_open=self._sockdir is None,
                tty=False,
                detach=True,
                network_mode="bridge" if self.network else "none",
                read_only=True,
                tmpfs=tmpfs,
                working_dir="/tmp",
                user=self.user,
                environment=environment,
                mem_limit=mem,
                memswap_limit=mem,
                nano_cpus=int(lim.cpus * 1e9),
                pids_limit=lim.pids,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges", f"seccomp={seccomp.docker_profile()}"],
                ipc_mode="private",
                log_config=LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
                ulimits=[
                    Ulimit(name="nofile", soft=lim.open_files, hard=lim.open_files),
                    Ulimit(name="fsize", soft=lim.file_size_mb << 20, hard=lim.file_size_mb << 20),
                    Ulimit(name="core", soft=0, hard=0),
                ],
                labels={LABEL: "1", "reflowpy.owner": _OWNER, "reflowpy.node": self.node},
            )
        except docker.errors.ImageNotFound:
            raise SandboxUnavailable(
                f"node {self.node!r}: Docker image {self.image!r} is not on this engine;"
                " `docker pull` it, build the local one with `make docker`"
                " (scripts/docker-setup.sh), or set metadata 'image'"
            ) from None
        except docker.errors.DockerException as exc:
            raise SandboxUnavailable(
                f"node {self.node!r}: cannot create a Docker container: {exc}. Start a Docker"
                " engine (`make docker`) or use sandbox 'process'"
            ) from None
        self._container = container
        self.container_id = container.id
        try:
            # Attach before start: nothing the worker writes can be missed or buffered
            # inside the HTTP response reader.
            stdin = 1 if self._sockdir is None else 0
            raw = client.api.attach_socket(
                container.id, params={"stdin": stdin, "stdout": 1, "stderr": 1, "stream": 1}
            )
            self._response = raw
            inner = getattr(raw, "_sock", raw)
            if not isinstance(inner, socket.socket):
                raise SandboxUnavailable(
                    f"node {self.node!r}: the Docker attach stream is not a socket"
                    f" ({type(inner).__name__}); use a local Unix-socket engine"
                )
            sock = inner.dup()
            container.start()
            self._worker_pid = int(client.api.inspect_container(container.id)["State"]["Pid"])
        except docker.errors.DockerException as exc:
            self._remove_blocking()
            raise SandboxUnavailable(
                f"node {self.node!r}: cannot start the Docker container: {exc}"
            ) from None
        return sock

    def _remove_blocking(self) -> None:
        container, self._container = self._container, None
        response, self._response = self._response, None
        if response is not None:
            with contextlib.suppress(Exception):
                response.close()
        if container is not None:
            with contextlib.suppress(Exception):
                container.remove(force=True, v=True)

    def _inspect_blocking(self) -> tuple[bool, int | None]:
        container = self._container
        if container is None:
            return False, None
        with contextlib.suppress(Exception):
            container.wait(timeout=5)
        try:
            state = self._client.api.inspect_container(container.id)["State"]
        except Exception:
            return False, None
        return bool(state.get("OOMKilled")), state.get("ExitCode")

    # -------------------------------------------------------------------- transport
    async def _spawn(self) -> None:
        self._raw.clear()
        self._frame_left = 0
        if self._user_override is None:
            if self._lease is None:
                self._lease = uids.lease()
            if self._lease is not None:
                self._uid = self._lease.uid
            else:  # not root: no lock dir, a random uid of the range (collisions unlikely)
                start, count = uids.uid_range()
                self._uid = start + secrets.randbelow(count)
            self.user = f"{self._uid}:{self._uid}"
        else:
            self._uid = int(self._user_override.split(":")[0])
        if self.transport == "attach":
            sock = await trio.to_thread.run_sync(self._create_and_start)
            self._stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
            return
        self._nonce = secrets.token_hex(_NONCE_BYTES)
        self._sockdir = tempfile.mkdtemp(prefix="reflowpy-docker-")
        path = os.path.join(self._sockdir, "worker.sock")
        listen_sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        await listen_sock.bind(path)
        os.chmod(path, 0o600)
        if os.geteuid() == 0:
            os.chown(path, self._uid, self._uid)
            os.chown(self._sockdir, self._uid, self._uid)
        else:
            os.chmod(path, 0o666)  # without root the container's uid cannot own it
            os.chmod(self._sockdir, 0o711)
        listen_sock.listen(8)
        self._listener = trio.SocketListener(listen_sock)
        log_sock = await trio.to_thread.run_sync(self._create_and_start)
        self._log_stream = trio.SocketStream(trio.socket.from_stdlib_socket(log_sock))
        trio.lowlevel.spawn_system_task(
            self._drain_logs, self._log_stream, name=f"reflowpy script {self.node} logs"
        )
        while True:
            stream = await self._listener.accept()
            why = await self._authenticate(stream)
            if why is None:
                break
            self.rejected_peers += 1
            self._log("warning", f"node {self.node!r}: refused a connection to the worker"
                                 f" socket: {why}")
            await stream.aclose()
        self._stream = stream
        await self._listener.aclose()
        self._listener = None

    async def _authenticate(self, stream: trio.SocketStream) -> str | None:
        """``None`` if the peer is this start's container worker, else why not."""
        raw = stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        pid, uid, _ = _PEERCRED.unpack(raw)
        if pid != self._worker_pid or uid != self._uid:
            return (f"peer pid {pid} uid {uid} is not the container's worker (pid"
                    f" {self._worker_pid} uid {self._uid})")
        want = self._nonce.encode("ascii")
        got = bytearray()
        with trio.move_on_after(self.limits.start_timeout):
            while len(got) < len(want):
                data = await stream.receive_some(len(want) - len(got))
                if not data:
                    break
                got += data
        if not hmac.compare_digest(bytes(got), want):
            return "the peer did not present this start's nonce"
        return None

    async def _drain_logs(self, stream: trio.SocketStream) -> None:
        # Container stdout/stderr (multiplexed) -> the node's log, concurrently with the
        # protocol, so a script printing megabytes never blocks on a full buffer.
        buf = bytearray()
        try:
            while True:
                data = await stream.receive_some(1 << 16)
                if not data:
                    return
                buf += data
                while len(buf) >= 8:
                    _, size = _HEADER.unpack_from(buf, 0)
                    if len(buf) < 8 + size:
                        break
                    self._on_stderr(bytes(buf[8 : 8 + size]))
                    del buf[: 8 + size]
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return

    async def _send_all(self, data: bytes) -> None:
        stream = self._stream
        assert stream is not None
        # A gone container is reported by the next read, with its exit state.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(data)

    async def _receive_some(self) -> bytes:
        if self.transport == "socket":
            stream = self._stream
            if stream is None:
                return b""
            try:
                return bytes(await stream.receive_some(1 << 18))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return b""
        # Docker multiplexes stdout (1) and stderr (2) into 8-byte-header frames.
        raw = self._raw
        while True:
            if self._frame_left == 0:
                while len(raw) < 8:
                    if not await self._fill():
                        return b""
                self._frame_stream, self._frame_left = _HEADER.unpack_from(raw, 0)
                del raw[:8]
                continue
            if not raw and not await self._fill():
                return b""
            n = min(self._frame_left, len(raw))
            chunk = bytes(raw[:n])
            del raw[:n]
            self._frame_left -= n
            if self._frame_stream == 1:
                return chunk
            self._on_stderr(chunk)

    async def _fill(self) -> bool:
        stream = self._stream
        if stream is None:
            return False
        try:
            data = await stream.receive_some(1 << 18)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return False
        self._raw += data
        return bool(data)

    async def _kill(self) -> None:
        for attr in ("_stream", "_log_stream", "_listener"):
            resource = getattr(self, attr)
            setattr(self, attr, None)
            if resource is not None:
                with trio.CancelScope(shield=True):
                    await resource.aclose()
        if self._container is not None or self._response is not None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._remove_blocking)
        if self._sockdir is not None:
            shutil.rmtree(self._sockdir, ignore_errors=True)
            self._sockdir = None
        lease, self._lease = self._lease, None
        if lease is not None:
            lease.release()

    async def stop(self) -> None:
        await super().stop()
        if self._client is not None:
            client, self._client = self._client, None
            await trio.to_thread.run_sync(client.close)

    async def _exit_error(self, during: str) -> ScriptError:
        oom, code = await trio.to_thread.run_sync(self._inspect_blocking)
        await self._kill()
        if oom:
            return ScriptMemoryExceeded(
                f"node {self.node!r}: the container ran out of memory (limits.memory_mb="
                f"{self.limits.memory_mb}) while {during}; OOM-killed and restarted",
                node=self.node,
                sandbox=self.sandbox,
            )
        if code is None:
            return ScriptCrashed(
                f"node {self.node!r}: the container vanished while {during}",
                node=self.node,
                sandbox=self.sandbox,
            )
        if code > 128:
            return self._crashed(during, f"was killed by signal {code - 128} (exit {code})")
        return self._crashed(during, f"exited with code {code}")
