"""Python scripts in a local subprocess (``sandbox: process``), confined by the kernel.

For machines without Docker, and the default of ``reflowpy serve`` for FBP
``component:source``. The worker (:mod:`reflowpy.script.worker`, ``python -I``, a
scrubbed environment) runs inside these layers, each from the kernel, none from Python:

* **namespaces** (bubblewrap, Debian ``bubblewrap``): its own user, pid, mount, ipc,
  uts, cgroup and (unless the node has ``network: true``) network namespace. The pid
  namespace ends with the worker (``--die-with-parent``; pid 1 is bwrap's reaper), so
  no ``setsid``/double-fork/subreaper daemon outlives the node. The filesystem is an
  empty tmpfs root with ``/usr`` bound read-only, a private ``/proc``, a minimal
  ``/dev``, and size-capped private tmpfs ``/tmp`` (cwd) and ``/dev/shm``
  (``limits.tmpfs_mb``, charged to the node's memory); nothing the script writes
  survives it. SysV IPC lives in the private ipc namespace.
* **a uid per node** (when reflowpy runs as root; :mod:`reflowpy.script.uids`): nodes
  cannot signal, trace, read or starve each other; ``user``/``group`` override it.
* **seccomp** (:mod:`reflowpy.script.seccomp`): no new namespaces, ptrace,
  ``process_vm_*``, io_uring, bpf, keyctl, mount, modules; plus bwrap's
  ``--disable-userns``.
* **Landlock** (:mod:`reflowpy.script.landlock`, where the kernel has it): the worker
  restricts itself before loading the script -- files readable only beneath what the
  interpreter needs and writable only in its private dirs, no TCP without ``network:
  true``, no signals or abstract Unix sockets outside its domain.
* **a cgroup per worker** (:mod:`reflowpy.script.cgroups`, v2 or v1): memory
  (``limits.memory_mb``) and pids (``limits.pids``) over the whole tree, CPU share
  ``limits.cpus``, CPU time metered over the tree: ``limits.cpu_seconds`` over the
  worker's life and ``limits.idle_cpu_seconds`` between two messages (a background
  thread burning CPU is reported on the next message).
* **rlimits** as a second line: address space, processes, open files, file size, no
  core dumps, optional CPU seconds per process.

Which layers were used is logged when the node starts and kept in
:attr:`ProcessHost.confinement`. A missing layer is never silently skipped: the node
refuses to start (:class:`~reflowpy.SandboxUnavailable` naming it and how to get it)
unless it was explicitly allowed with node metadata ``allow_weaker`` (a list of
``namespaces``, ``uid``, ``seccomp``, ``landlock``, ``cgroup``, or ``"all"``) or the
environment variable ``REFLOWPY_SANDBOX_ALLOW_WEAKER`` (same values, comma-separated).

Without namespaces (``allow_weaker: [namespaces]``) the worker falls back to
``unshare(CLONE_NEWNET)`` plus the uid drop, rlimits and Landlock ruleset it applies
to itself; that mode shares the host's pid space, and Landlock is then what keeps
the script out of the host's files (read-only beneath the interpreter, ``/usr`` and
``/etc``; writable only in its private directory).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import trio

from reflowpy.errors import (
    SandboxUnavailable,
    ScriptCPUExceeded,
    ScriptError,
    ScriptLimitExceeded,
    ScriptMemoryExceeded,
)
from reflowpy.script import cgroups, landlock, seccomp, uids
from reflowpy.script.host import Limits, LogSink, WorkerHost

__all__ = ["LAYERS", "ProcessHost", "worker_source"]

#: The confinement layers a node may explicitly do without (``allow_weaker``).
LAYERS = ("namespaces", "uid", "seccomp", "landlock", "cgroup")
_HOW = {
    "namespaces": "install bubblewrap (scripts/setup-sandbox.sh: apt-get install bubblewrap)"
                  " and allow user namespaces",
    "uid": "run reflowpy as root so each node gets its own uid",
    "seccomp": "run on x86-64",
    "landlock": "run on Linux >= 5.13 with Landlock enabled",
    "cgroup": "run reflowpy as root on a machine with cgroup v2 or the v1 memory, pids"
              " and cpuacct controllers",
}
# The worker joins its cgroups before exec: ``sh -c CGROUP_JOIN sh N f1..fN cmd...``.
_CGROUP_JOIN = ('n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 97;'
                ' shift; n=$((n-1)); done; exec "$@"')


def worker_source() -> str:
    """The source text of the in-sandbox worker, as injected into every sandbox."""
    return (Path(__file__).with_name("worker.py")).read_text(encoding="utf-8")


def _allowed_weaker(value: Iterable[str] | str | None) -> frozenset[str]:
    names: set[str] = set()
    env = os.environ.get("REFLOWPY_SANDBOX_ALLOW_WEAKER", "")
    for item in [*env.split(","), *([value] if isinstance(value, str) else (value or ()))]:
        item = item.strip()
        if item == "all":
            names.update(LAYERS)
        elif item:
            if item not in LAYERS:
                known = ", ".join(LAYERS)
                raise ValueError(f"allow_weaker: unknown layer {item!r} (known: {known}, all)")
            names.add(item)
    return frozenset(names)


@functools.cache
def _bwrap_problem() -> str | None:
    """``None`` if bubblewrap can make the namespaces here, else why not (cached)."""
    exe = shutil.which("bwrap")
    if exe is None:
        return "bubblewrap (bwrap) is not installed"
    probe = [exe, "--unshare-all", "--unshare-user", "--die-with-parent",
             "--ro-bind", "/usr", "/usr", *_usr_links(), "--proc", "/proc", "/usr/bin/true"]
    try:
        done = subprocess.run(probe, capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap did not run: {exc}"
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip()
        return f"bwrap cannot create namespaces here: {why}"
    return None


@functools.cache
def _bwrap_has(option: str) -> bool:
    exe = shutil.which("bwrap") or "bwrap"
    try:
        text = subprocess.run([exe, "--help"], capture_output=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return option.encode() in text


def _usr_links() -> list[str]:
    """``/bin``, ``/lib``... as in the host's merged-/usr layout (symlink or ro bind)."""
    args: list[str] = []
    for name in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
        path = f"/{name}"
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


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
        allow_weaker: Iterable[str] | str | None = None,
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
        self.allow_weaker = _allowed_weaker(allow_weaker)
        self._user_override = user
        self._group_override = group
        self._python_override = python
        self.user: int | None = None
        self.group: int | None = None
        self.python = python or ""
        #: What confines the worker: layer -> what was used, or "MISSING: why".
        self.confinement: dict[str, str] = {}
        self._planned = False
        self._lease: uids.UidLease | None = None
        self._cgroup: cgroups.NodeCgroup | None = None
        self._cpu_mark = 0.0
        self._proc: _Child | None = None
        self._tmpdir: str | None = None
        self._seccomp_fd: int | None = None

    # ------------------------------------------------------------------ planning
    def _plan(self) -> None:
        """Decide the layers once: what is used, what is missing, refuse or say so."""
        if self._planned:
            return
        used: dict[str, str] = {}
        missing: dict[str, str] = {}
        problem = _bwrap_problem()
        if problem is None:
            net = "shared network" if self.network else "net"
            used["namespaces"] = f"bubblewrap: user, pid, mount, ipc, uts, cgroup, {net}"
        else:
            missing["namespaces"] = problem
        if self._user_override is not None:
            used["uid"] = f"{self._user_override} (metadata 'user')"
        elif os.geteuid() == 0:
            start, count = uids.uid_range()
            used["uid"] = f"a leased uid per worker (range {start}:{count})"
        else:
            missing["uid"] = (f"not root: every node runs as this user's uid {os.geteuid()}"
                              " and can signal the others")
        problem = seccomp.supported()
        if problem is None and "namespaces" in missing:
            problem = "the seccomp filter is loaded by bubblewrap, which is unavailable"
        if problem is None:
            used["seccomp"] = f"deny list of {len(seccomp.DENIED) + 2} syscalls" + (
                " + bwrap --disable-userns" if _bwrap_has("--disable-userns") else "")
        else:
            missing["seccomp"] = problem
        problem = landlock.problem()
        if problem is None:
            used["landlock"] = landlock.describe(network=self.network)
        else:
            missing["landlock"] = problem
        problem = cgroups.probe()
        if problem is None:
            _cleanup_stale_cgroups()
            used["cgroup"] = "per-worker cgroup (memory, pids, cpu over the whole tree)"
        else:
            missing["cgroup"] = problem
        refused = {k: v for k, v in missing.items() if k not in self.allow_weaker}
        if refused:
            detail = "; ".join(f"{k}: {v} (to get it: {_HOW[k]})" for k, v in refused.items())
            raise SandboxUnavailable(
                f"node {self.node!r}: the process sandbox cannot confine the worker here:"
                f" {detail}. Use sandbox 'docker', or accept the weaker sandbox explicitly"
                f" with metadata allow_weaker: {sorted(refused)} (or"
                f" REFLOWPY_SANDBOX_ALLOW_WEAKER)"
            )
        self.confinement = {**used, **{k: f"MISSING: {v}" for k, v in missing.items()}}
        self._planned = True
        summary = "; ".join(f"{k}: {v}" for k, v in self.confinement.items())
        self._log("warning" if missing else "info",
                  f"process sandbox for node {self.node!r}: {summary}"
                  + (" (allowed by allow_weaker)" if missing else ""))

    def _layer(self, name: str) -> bool:
        """Whether layer ``name`` is in use (planned and not missing)."""
        return name in self.confinement and not self.confinement[name].startswith("MISSING")

    @property
    def _bwrap(self) -> bool:
        return self._layer("namespaces")

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
        rules = None
        if self._layer("landlock"):
            read = ["/usr", "/etc", "/proc", _prefix_of(self.python)]
            if not self._bwrap:
                read += ["/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"]
            write = ["/tmp", "/dev/shm"] if self._bwrap else [self._tmpdir or "/nonexistent"]
            rules = landlock.ruleset(read=read, write=write, network=self.network)
        if self._bwrap:
            # Namespaces and the uid were set up before exec; the worker keeps rlimits.
            return {"unshare_network": False, "uid": None, "gid": None,
                    "rlimits": rlimits, "cwd": "/tmp", "landlock": rules}
        # setpriv dropped the uid and gid before exec (see _command): dropping them
        # again from the new uid would fail with EPERM
        return {
            "unshare_network": not self.network,
            "uid": None,
            "gid": None,
            "rlimits": rlimits,
            "cwd": self._tmpdir,
            "landlock": rules,
        }

    def _sandbox_hint(self) -> str:
        return (
            "Network isolation needs root or unprivileged user namespaces; use sandbox"
            " 'docker', or grant the node network access with metadata network: true."
        )

    # ------------------------------------------------------------------- spawning
    def _command(self) -> tuple[list[str], tuple[int, ...]]:
        worker = [self.python, "-I", "-c", worker_source(), str(self.limits.max_frame)]
        prefix: list[str] = []
        if self._cgroup is not None:
            files = self._cgroup.procs_files()
            prefix += ["/bin/sh", "-c", _CGROUP_JOIN, "sh", str(len(files)), *files]
        if self.user is not None and self.user != os.geteuid():
            group = self.group if self.group is not None else self.user
            prefix += ["setpriv", f"--reuid={self.user}", f"--regid={group}", "--clear-groups",
                       "--inh-caps=-all"]
        if not self._bwrap:
            return prefix + worker, ()
        tmp = str(self.limits.tmpfs_mb * 1024 * 1024)
        args = [shutil.which("bwrap") or "bwrap", "--unshare-all", "--unshare-user",
                "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        if self.network:
            args.append("--share-net")
        if _bwrap_has("--disable-userns"):
            args.append("--disable-userns")
        args += ["--ro-bind", "/usr", "/usr", *_usr_links()]
        prefix_dir = _prefix_of(self.python)
        if not prefix_dir.startswith("/usr"):
            args += ["--ro-bind", prefix_dir, prefix_dir]
        # Everything outside /tmp and /dev/shm is read-only: the root tmpfs is remounted
        # ro and /etc (holding only ld.so.cache) is 0555, so a write there fails.
        args += ["--perms", "0555", "--dir", "/etc",
                 "--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
                 "--proc", "/proc", "--dev", "/dev",
                 "--size", tmp, "--tmpfs", "/tmp", "--size", tmp, "--tmpfs", "/dev/shm",
                 "--hostname", "sandbox", "--chdir", "/tmp", "--remount-ro", "/"]
        fds: tuple[int, ...] = ()
        if self._layer("seccomp"):
            read_end, write_end = os.pipe()
            program = seccomp.bpf_program()
            os.write(write_end, program)  # < a pipe buffer: never blocks
            os.close(write_end)
            self._seccomp_fd = read_end
            args += ["--seccomp", str(read_end)]
            fds = (read_end,)
        return prefix + args + ["--", *worker], fds

    async def _spawn(self) -> None:
        self._plan()
        if self._user_override is not None:
            self.user = self._user_override
            self.group = self._group_override if self._group_override is not None else self.user
        elif os.geteuid() == 0:
            self._lease = uids.lease()
            assert self._lease is not None
            self.user = self.group = self._lease.uid
        self.python = self._python_override or (
            _system_python() if self._bwrap else _python_for(self.user))
        if not self._bwrap:
            self._tmpdir = tempfile.mkdtemp(prefix=f"reflowpy-script-{_safe(self.node)}-")
            os.chmod(self._tmpdir, 0o700)
            if self.user is not None and self.user != os.geteuid():
                os.chown(self._tmpdir, self.user, self.group if self.group is not None else -1)
        if self._layer("cgroup"):
            lim = self.limits
            name = f"{_safe(self.node)}-{os.getpid()}-{self.user}-{id(self):x}"
            self._cgroup = await trio.to_thread.run_sync(functools.partial(
                cgroups.NodeCgroup.create, name, memory_bytes=lim.memory_mb * 1024 * 1024,
                pids=lim.pids, cpus=lim.cpus))
        home = "/tmp" if self._bwrap or self._tmpdir is None else self._tmpdir
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": home,
            "TMPDIR": home,
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        command, fds = self._command()
        try:
            # Spawned from this (the trio) thread, not a worker thread: bwrap's
            # --die-with-parent follows the thread that forked it, so the worker dies
            # with the trio run, and not when a thread-cache thread retires.
            self._proc = _Child(subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=self._tmpdir or "/",
                start_new_session=True,
                close_fds=True,
                pass_fds=fds,
                bufsize=0,
            ))
        finally:
            if self._seccomp_fd is not None:
                os.close(self._seccomp_fd)
                self._seccomp_fd = None
        self._cpu_mark = 0.0
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

    # --------------------------------------------------------------- tree limits
    def _message_starts(self) -> ScriptError | None:
        group = self._cgroup
        if group is None:
            return None
        # OOM kills and refused forks between messages count for the next one.
        idle = group.cpu_seconds() - self._cpu_mark
        limit = self.limits.idle_cpu_seconds
        if self._cpu_mark and idle > limit:
            error = ScriptCPUExceeded(
                f"node {self.node!r}: the worker used {idle:.2f} s of CPU between messages"
                f" (limits.idle_cpu_seconds={limit}); killed and restarted",
                node=self.node, sandbox=self.sandbox)
            return error
        return None

    def _message_ended(self) -> ScriptError | None:
        group = self._cgroup
        if group is None:
            return None
        self._cpu_mark = group.cpu_seconds() or 1e-9
        ooms, refused = group.hits()
        if ooms:
            return ScriptMemoryExceeded(
                f"node {self.node!r}: {ooms} process(es) of the worker tree were killed for"
                f" memory (limits.memory_mb={self.limits.memory_mb} over the whole tree);"
                " worker restarted", node=self.node, sandbox=self.sandbox)
        if refused:
            error = ScriptLimitExceeded(
                f"node {self.node!r}: {refused} fork(s) refused at limits.pids="
                f"{self.limits.pids} (whole worker tree); worker restarted",
                node=self.node, sandbox=self.sandbox)
            error.limit = "pids"
            return error
        cpu = self.limits.cpu_seconds
        if cpu is not None and self._cpu_mark > cpu:
            return ScriptCPUExceeded(
                f"node {self.node!r}: the worker tree used {self._cpu_mark:.2f} s of CPU,"
                f" over limits.cpu_seconds={cpu}; restarted", node=self.node,
                sandbox=self.sandbox)
        return None

    # ------------------------------------------------------------------ teardown
    async def _kill(self) -> None:
        proc = self._proc
        if proc is not None:
            self._proc = None
            with trio.CancelScope(shield=True):
                if self._cgroup is not None:
                    # The whole tree (bwrap included), waiting until each has exited.
                    await trio.to_thread.run_sync(self._cgroup.kill)
                _killpg(proc.pid)
                with trio.move_on_after(5):
                    await proc.wait()
                for stream in (proc.stdin, proc.stdout, proc.stderr):
                    if stream is not None:
                        await stream.aclose()
            _killpg(proc.pid)  # children that were forking while we waited
        group, self._cgroup = self._cgroup, None
        if group is not None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(group.remove)
        lease, self._lease = self._lease, None
        if lease is not None:
            lease.release()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    async def _exit_error(self, during: str) -> ScriptError:
        proc = self._proc
        code: int | None = None
        if proc is not None:
            with trio.move_on_after(2):
                code = await proc.wait()
        tree = self._message_ended()
        await self._kill()
        if isinstance(tree, ScriptMemoryExceeded):
            return tree
        if code is not None and code > 128 and self._bwrap:
            code = -(code - 128)  # bwrap reports a signal death as 128 + signal
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
            if tree is not None:
                return tree
            return self._crashed(during, f"was killed by signal {signal.Signals(sig).name}")
        if tree is not None:
            return tree
        return self._crashed(during, f"exited with code {code}")


@functools.cache
def _cleanup_stale_cgroups() -> None:
    """Once per process: cgroups left by crashed hosts go (see cgroups.cleanup_stale)."""
    cgroups.cleanup_stale()


class _Child:
    """A subprocess with trio streams for its pipes and an awaitable exit (pidfd)."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid
        assert popen.stdin is not None and popen.stdout is not None
        assert popen.stderr is not None
        self.stdin = trio.lowlevel.FdStream(os.dup(popen.stdin.fileno()))
        self.stdout = trio.lowlevel.FdStream(os.dup(popen.stdout.fileno()))
        self.stderr = trio.lowlevel.FdStream(os.dup(popen.stderr.fileno()))
        for pipe in (popen.stdin, popen.stdout, popen.stderr):
            pipe.close()
        self._pidfd = os.pidfd_open(popen.pid)

    async def wait(self) -> int:
        """The exit code (negative: killed by that signal), once the child ended."""
        if self.popen.returncode is None:
            await trio.lowlevel.wait_readable(self._pidfd)
        code = self.popen.wait()
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1
        return code


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


def _prefix_of(python: str) -> str:
    """The installation prefix of the interpreter ``python`` (``/usr`` for the system one)."""
    return os.path.dirname(os.path.dirname(os.path.realpath(python)))


def _system_python() -> str:
    """The interpreter under ``/usr`` (the only tree bound into the namespace)."""
    for exe in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(exe):
            return exe
    return sys.executable


def _python_for(user: int | None) -> str:
    """An interpreter whose stdlib the sandbox user can read.

    Our own ``sys.executable`` when we run as that user or it is world-readable;
    otherwise (e.g. a pyenv Python under ``/root`` with the worker dropping to
    another uid) the system ``python3``.
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
