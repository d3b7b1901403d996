"""A cgroup per process-sandbox worker: memory, pids and CPU over the whole process tree.

rlimits are per process (six processes each under ``RLIMIT_AS`` hold six times the
limit) and ``RLIMIT_NPROC`` counts a uid, not a tree; a cgroup counts everything the
worker and its descendants use, wherever they fork to. Both hierarchies are
supported and :attr:`NodeCgroup.kind` says which one was used:

* **v2** (``/sys/fs/cgroup`` with ``memory`` and ``pids`` in ``cgroup.controllers``):
  ``memory.max``, ``memory.swap.max=0``, ``pids.max``, ``cpu.max``; ``memory.events``
  ``oom_kill``, ``pids.events`` ``max`` and ``cpu.stat`` ``usage_usec`` as counters;
  ``cgroup.kill`` ends the tree.
* **v1** (one mount per controller, as on this project's CI machines):
  ``memory.limit_in_bytes`` (+ ``memsw`` when swap accounting is on),
  ``pids.max``, ``cpu.cfs_quota_us``; ``memory.oom_control`` ``oom_kill``,
  ``pids.events``, ``cpuacct.usage``; the tree is frozen, killed and thawed.

The worker joins its cgroups between ``fork`` and ``exec`` (:meth:`NodeCgroup.procs_files`
are written by the child itself), so not one instruction of it runs outside.
:func:`probe` says what is missing when neither works (not root, no controllers).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

__all__ = ["NodeCgroup", "cleanup_stale", "probe"]

_ROOT = Path("/sys/fs/cgroup")
_V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "freezer")


def _v2_ok() -> bool:
    try:
        controllers = (_ROOT / "cgroup.controllers").read_text().split()
    except OSError:
        return False
    return "memory" in controllers and "pids" in controllers


def _v1_dirs() -> dict[str, Path]:
    found = {}
    for name in _V1_CONTROLLERS:
        path = _ROOT / name
        if (path / "cgroup.procs").exists() and (path / "tasks").exists():
            found[name] = path
    return found


def probe() -> str | None:
    """``None`` if per-node cgroups can be made here, else why not."""
    if os.geteuid() != 0:
        return "per-node cgroups need root (the host cannot create cgroups as this user)"
    if _v2_ok():
        return None
    dirs = _v1_dirs()
    missing = [c for c in ("memory", "pids", "cpuacct") if c not in dirs]
    if missing:
        return f"no cgroup v2 with memory+pids and no cgroup v1 {'/'.join(missing)} controller"
    return None


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (an exited, unreaped process)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:][:1] not in (b"Z", b"X")


def cleanup_stale() -> list[str]:
    """Remove the cgroups of reflowpy processes that are gone (named ``*-<pid>-<uid>-<id>``).

    A host that crashed leaves its workers' cgroups behind (its workers died with it:
    ``--die-with-parent``); the next host on the machine removes them.
    """
    removed = []
    roots = [_ROOT / "reflowpy"] if _v2_ok() else [p / "reflowpy" for p in _v1_dirs().values()]
    for root in roots:
        try:
            entries = list(root.iterdir())
        except OSError:
            continue
        for path in entries:
            parts = path.name.rsplit("-", 3)
            if not path.is_dir() or len(parts) != 4 or not parts[1].isdigit():
                continue
            try:
                os.kill(int(parts[1]), 0)
                continue
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
            kind = "v2" if root.parent == _ROOT else "v1"
            controller = "unified" if kind == "v2" else root.parent.name
            NodeCgroup(kind, {controller: path}).remove()
            removed.append(str(path))
    return removed


class NodeCgroup:
    """The cgroup(s) of one worker; create with :meth:`create`, end with :meth:`remove`."""

    def __init__(self, kind: str, dirs: dict[str, Path]) -> None:
        self.kind = kind
        self.dirs = dirs
        self.cpu_limited = "cpu" in dirs
        self._oom0 = 0
        self._pids0 = 0
        self._fds: dict[tuple[str, str], int] = {}

    @classmethod
    def create(cls, name: str, *, memory_bytes: int, pids: int, cpus: float) -> NodeCgroup:
        """Make ``reflowpy/<name>`` under every controller and set its limits."""
        if _v2_ok():
            path = _ROOT / "reflowpy" / name
            with contextlib.suppress(OSError):
                (_ROOT / "cgroup.subtree_control").write_text("+memory +pids +cpu")
            (_ROOT / "reflowpy").mkdir(exist_ok=True)
            with contextlib.suppress(OSError):
                (_ROOT / "reflowpy" / "cgroup.subtree_control").write_text("+memory +pids +cpu")
            path.mkdir()
            group = cls("v2", {"unified": path})
            (path / "memory.max").write_text(str(memory_bytes))
            with contextlib.suppress(OSError):
                (path / "memory.swap.max").write_text("0")
            (path / "pids.max").write_text(str(pids))
            try:
                (path / "cpu.max").write_text(f"{int(cpus * 100_000)} 100000")
            except OSError:
                group.cpu_limited = False
            return group
        dirs: dict[str, Path] = {}
        for controller, root in _v1_dirs().items():
            path = root / "reflowpy" / name
            path.mkdir(parents=True)
            dirs[controller] = path
        group = cls("v1", dirs)
        try:
            mem = dirs["memory"]
            (mem / "memory.limit_in_bytes").write_text(str(memory_bytes))
            if (mem / "memory.memsw.limit_in_bytes").exists():
                (mem / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
            with contextlib.suppress(OSError):
                (mem / "memory.swappiness").write_text("0")
            (dirs["pids"] / "pids.max").write_text(str(pids))
            if "cpu" in dirs:
                period = int((dirs["cpu"] / "cpu.cfs_period_us").read_text())
                (dirs["cpu"] / "cpu.cfs_quota_us").write_text(str(max(1000, int(cpus * period))))
        except BaseException:
            group.remove()
            raise
        group.mark()
        return group

    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files the worker writes its pid into before ``exec``."""
        return [str(path / "cgroup.procs") for path in self.dirs.values()]

    # ---------------------------------------------------------------- counters
    def _read(self, controller: str, file: str) -> str:
        # Counters are read around every message: keep the files open and pread them
        # (an open + read + close on cgroupfs costs ~90 us on a loaded machine).
        key = (controller, file)
        fd = self._fds.get(key)
        try:
            if fd is None:
                fd = self._fds[key] = os.open(self.dirs[controller] / file,
                                              os.O_RDONLY | os.O_CLOEXEC)
            return os.pread(fd, 4096, 0).decode()
        except (OSError, KeyError):
            return ""

    def _close(self) -> None:
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)

    @staticmethod
    def _field(text: str, key: str) -> int:
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
        return 0

    def oom_kills(self) -> int:
        """Processes of the tree the kernel killed for memory so far."""
        if self.kind == "v2":
            return self._field(self._read("unified", "memory.events"), "oom_kill")
        return self._field(self._read("memory", "memory.oom_control"), "oom_kill")

    def pids_refused(self) -> int:
        """Forks refused by ``pids.max`` so far."""
        key = "unified" if self.kind == "v2" else "pids"
        return self._field(self._read(key, "pids.events"), "max")

    def cpu_seconds(self) -> float:
        """CPU time of the whole tree so far."""
        if self.kind == "v2":
            return self._field(self._read("unified", "cpu.stat"), "usage_usec") / 1e6
        text = self._read("cpuacct", "cpuacct.usage").strip()
        return int(text) / 1e9 if text else 0.0

    def peak_memory(self) -> int:
        """Highest memory use of the tree (bytes; 0 if the kernel does not say)."""
        if self.kind == "v2":
            text = self._read("unified", "memory.peak").strip()
        else:
            text = self._read("memory", "memory.max_usage_in_bytes").strip()
        return int(text) if text.isdigit() else 0

    def mark(self) -> None:
        """Remember the OOM and pids counters: :meth:`hits` reports what came after."""
        self._oom0 = self.oom_kills()
        self._pids0 = self.pids_refused()

    def hits(self) -> tuple[int, int]:
        """``(oom kills, refused forks)`` since the last call (or :meth:`mark`)."""
        oom, refused = self.oom_kills(), self.pids_refused()
        hits = oom - self._oom0, refused - self._pids0
        self._oom0, self._pids0 = oom, refused
        return hits

    # ---------------------------------------------------------------- teardown
    def pids(self) -> list[int]:
        key = "unified" if self.kind == "v2" else "pids"
        text = self._read(key, "cgroup.procs")
        return [int(p) for p in text.split()]

    def kill(self) -> None:
        """SIGKILL every process in the tree (none can fork away meanwhile)."""
        if self.kind == "v2":
            with contextlib.suppress(OSError):
                (self.dirs["unified"] / "cgroup.kill").write_text("1")
                return
        freezer = self.dirs.get("freezer")
        killed: set[int] = set()
        for _ in range(50):
            if freezer is not None:
                with contextlib.suppress(OSError):
                    (freezer / "freezer.state").write_text("FROZEN")
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
            if freezer is not None:
                with contextlib.suppress(OSError):
                    (freezer / "freezer.state").write_text("THAWED")
            time.sleep(0.002)
        # Gone from the cgroup is not yet gone: wait (bounded) until the killed
        # processes have finished exiting, so "stopped" means no process is left.
        deadline = time.monotonic() + 2.0
        while killed and time.monotonic() < deadline:
            killed = {pid for pid in killed if _running(pid)}
            if killed:
                time.sleep(0.005)

    def remove(self) -> None:
        """Kill what is left and delete the cgroup directories (idempotent)."""
        self._close()
        self.kill()
        for path in self.dirs.values():
            for _ in range(100):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)  # the last killed processes are still exiting
        self.dirs = {}
