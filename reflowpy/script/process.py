"""Python scripts in a local subprocess (``sandbox: process``) — weaker isolation.

For machines without Docker. The worker (:mod:`reflowpy.script.worker`) runs under
``python -I`` (no user site, no ``PYTHON*`` variables) with a scrubbed environment,
a private temporary directory as cwd, its own process group, and confines itself
before loading the script:

* **network**: a new, empty network namespace (``unshare``; as root directly, else
  through an unprivileged user namespace). If the kernel refuses, the node does not
  start (:class:`~reflowpy.SandboxUnavailable`) unless its metadata grants
  ``network: true``.
* **user**: when reflowpy runs as root, the worker drops to ``nobody`` (65534; node
  metadata ``user``/``group`` override), so it cannot read ``/etc/shadow`` or write
  outside world-writable places.
* **rlimits**: address space (``limits.memory_mb``), processes (``limits.pids``,
  per sandbox user), open files, file size, core dumps off, and optionally CPU
  seconds over the worker's life (``limits.cpu_seconds``).

What this does **not** give you, compared with Docker: the host's world-readable
files stay readable, processes of the same sandbox user can signal each other,
``/tmp`` is shared, and a child that calls ``setsid()`` can outlive a kill of the
worker's process group. Use ``sandbox: docker`` for code you do not trust at all.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import trio

from reflowpy.errors import (
    SandboxUnavailable,
    ScriptCPUExceeded,
    ScriptError,
    ScriptMemoryExceeded,
)
from reflowpy.script.host import Limits, LogSink, WorkerHost

__all__ = ["ProcessHost", "worker_source"]

_NOBODY = 65534


def worker_source() -> str:
    """The source text of the in-sandbox worker, as injected into every sandbox."""
    return (Path(__file__).with_name("worker.py")).read_text(encoding="utf-8")


class ProcessHost(WorkerHost):
    """Runs the script in a confined local subprocess (see the module docstring)."""

    sandbox: ClassVar[str] = "process"

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
        network: bool = False,
        python: str | None = None,
        user: int | None = None,
        group: int | None = None,
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
        self.network = network
        is_root = os.geteuid() == 0
        self.user = user if user is not None else (_NOBODY if is_root else None)
        self.group = group if group is not None else (_NOBODY if is_root else None)
        self.python = python or _python_for(self.user)
        self._proc: trio.Process | None = None
        self._tmpdir: str | None = None

    def _sandbox_spec(self) -> dict[str, Any]:
        lim = self.limits
        rlimits: dict[str, int] = {
            "as": lim.memory_mb * 1024 * 1024,
            "nproc": lim.pids,
            "nofile": lim.open_files,
            "fsize": lim.file_size_mb * 1024 * 1024,
            "core": 0,
        }
        if lim.cpu_seconds is not None:
            rlimits["cpu"] = lim.cpu_seconds
        return {
            "unshare_network": not self.network,
            "uid": self.user if self.user != os.geteuid() else None,
            "gid": self.group if self.user != os.geteuid() else None,
            "rlimits": rlimits,
            "cwd": self._tmpdir,
        }

    def _sandbox_hint(self) -> str:
        return (
            "Network isolation needs root or unprivileged user namespaces; use sandbox"
            " 'docker', or grant the node network access with metadata network: true."
        )

    async def _spawn(self) -> None:
        self._tmpdir = tempfile.mkdtemp(prefix=f"reflowpy-script-{_safe(self.node)}-")
        if self.user is not None and self.user != os.geteuid():
            os.chown(self._tmpdir, self.user, self.group if self.group is not None else -1)
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": self._tmpdir,
            "TMPDIR": self._tmpdir,
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        self._proc = await trio.lowlevel.open_process(
            [self.python, "-I", "-c", worker_source(), str(self.limits.max_frame)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=self._tmpdir,
            start_new_session=True,
            close_fds=True,
        )
        assert self._proc.stderr is not None
        trio.lowlevel.spawn_system_task(
            self._drain_stderr, self._proc.stderr, name=f"reflowpy script {self.node} stderr"
        )

    async def _drain_stderr(self, stream: trio.abc.ReceiveStream) -> None:
        # A system task so that a script printing megabytes can never block on a full
        # pipe while the host waits for its result; it ends when the pipe closes.
        try:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return
                self._on_stderr(bytes(data))
        except (trio.ClosedResourceError, trio.BrokenResourceError, OSError):
            return

    async def _send_all(self, data: bytes) -> None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        # A gone worker is reported by the next read, with its exit status.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await proc.stdin.send_all(data)

    async def _receive_some(self) -> bytes:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        try:
            return bytes(await proc.stdout.receive_some(1 << 18))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return b""

    async def _kill(self) -> None:
        proc = self._proc
        if proc is not None:
            self._proc = None
            _killpg(proc.pid)
            with trio.CancelScope(shield=True):
                with trio.move_on_after(5):
                    await proc.wait()
                for stream in (proc.stdin, proc.stdout, proc.stderr):
                    if stream is not None:
                        await stream.aclose()
            _killpg(proc.pid)  # children that were forking while we waited
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    async def _exit_error(self, during: str) -> ScriptError:
        proc = self._proc
        code: int | None = None
        if proc is not None:
            with trio.move_on_after(2):
                code = await proc.wait()
        await self._kill()
        if code is not None and code < 0:
            sig = -code
            if sig == signal.SIGXCPU:
                return ScriptCPUExceeded(
                    f"node {self.node!r}: the worker used up limits.cpu_seconds="
                    f"{self.limits.cpu_seconds} while {during}; restarted",
                    node=self.node,
                    sandbox=self.sandbox,
                )
            if sig == signal.SIGKILL and "MemoryError" in self.stderr_tail():
                return ScriptMemoryExceeded(
                    f"node {self.node!r}: the worker was killed for memory while {during}",
                    node=self.node,
                    sandbox=self.sandbox,
                )
            return self._crashed(during, f"was killed by signal {signal.Signals(sig).name}")
        return self._crashed(during, f"exited with code {code}")


def _world_readable(path: str) -> bool:
    """Whether a user that owns nothing on the way can read ``path``."""
    path = os.path.realpath(path)
    parts = Path(path).parents
    try:
        if any(not os.stat(p).st_mode & stat.S_IXOTH for p in parts):
            return False
        return bool(os.stat(path).st_mode & stat.S_IROTH)
    except OSError:
        return False


def _python_for(user: int | None) -> str:
    """An interpreter whose stdlib the sandbox user can read.

    Our own ``sys.executable`` when we run as that user or it is world-readable;
    otherwise (e.g. a pyenv Python under ``/root`` with the worker dropping to
    ``nobody``) the system ``python3``.
    """
    if user is None or user == os.geteuid():
        return sys.executable
    candidates = [sys.executable, "/usr/local/bin/python3", "/usr/bin/python3"]
    for exe in candidates:
        if not os.path.exists(exe):
            continue
        stdlib = sysconfig.get_paths()["stdlib"] if exe == sys.executable else None
        if _world_readable(exe) and (stdlib is None or _world_readable(stdlib)):
            return exe
    raise SandboxUnavailable(
        f"no Python interpreter readable by the sandbox user {user} (tried"
        f" {', '.join(candidates)}); install python3 system-wide or pass 'python'"
    )


def _killpg(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:40]
