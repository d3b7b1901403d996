"""Finding the sandbox workers a test left behind, robustly on a loaded, shared machine.

A worker is any process whose command line carries the injected worker's docstring
(fork-bomb children included). Two things made the old "set difference right after
stop" check flaky: a killed pid namespace takes a moment to die on a loaded machine,
and another test run on the same machine has workers of its own. So:

* :func:`foreign` tells a process-sandbox worker of *another* reflowpy process (its
  cgroup is named after that process' pid) -- those are not ours to judge;
* :func:`assert_none_left` waits, with pidfds (an event, not a sleep), up to a bound
  for each new worker to exit, and fails naming those that did not.
"""

from __future__ import annotations

import os
from pathlib import Path

import trio

MARK = b"in-sandbox worker of reflowpy"


def workers() -> dict[int, int]:
    """Host pid -> uid of every running worker process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if MARK in (entry / "cmdline").read_bytes():
                    found[int(entry.name)] = entry.stat().st_uid
            except OSError:
                continue
    return found


def foreign(pid: int) -> bool:
    """Whether ``pid`` is a process-sandbox worker of another reflowpy process: its
    cgroup is ``reflowpy/<node>-<owner pid>-<uid>-<id>``."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        path = line.rpartition(":")[2]
        if "/reflowpy/" in path:
            parts = path.rsplit("/", 1)[-1].rsplit("-", 3)
            return len(parts) == 4 and parts[1] != str(os.getpid())
    return False


async def assert_none_left(before: set[int] | dict[int, int], timeout: float = 20.0) -> None:
    """Every worker started since ``before`` is gone, or goes within ``timeout``."""
    new = [p for p in workers() if p not in before and not foreign(p)]
    left = []
    with trio.move_on_after(timeout):
        for pid in new:
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            try:
                await trio.lowlevel.wait_readable(fd)  # readable once it has exited
            finally:
                os.close(fd)
    for pid in new:
        try:
            if MARK in Path(f"/proc/{pid}/cmdline").read_bytes():
                left.append(pid)
        except OSError:
            continue
    assert not left, f"sandbox workers still running {timeout} s after stop: {left}"
