"""A distinct host uid per sandboxed worker, leased from a range with file locks.

Two nodes that run as the same uid can signal, trace and read each other's
processes and files (``/proc/<pid>/mem``, private dirs, a shared ``RLIMIT_NPROC``), so
every process worker and every container gets its own uid for as long as it runs.
The range is ``$REFLOWPY_SANDBOX_UIDS`` (``START:COUNT``, default
``2100000000:65536``: far above any login or subordinate-uid range). A lease is an
``flock`` on ``<lock dir>/<uid>``, held open by the host: several reflowpy processes
on one machine never hand out the same uid, and a lease dies with its holder, so a
crash leaks nothing. Only root can run workers as other uids; :func:`lease` returns
``None`` otherwise and the caller says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets

__all__ = ["UidLease", "lease", "uid_range"]

_DEFAULT = (2_100_000_000, 65_536)
_LOCK_DIR = "/run/reflowpy/uids"


def uid_range() -> tuple[int, int]:
    """``(start, count)`` of the sandbox uids (``$REFLOWPY_SANDBOX_UIDS``)."""
    raw = os.environ.get("REFLOWPY_SANDBOX_UIDS")
    if not raw:
        return _DEFAULT
    start, _, count = raw.partition(":")
    try:
        first, n = int(start), int(count or "1")
    except ValueError:
        raise ValueError(f"REFLOWPY_SANDBOX_UIDS={raw!r}: expected START:COUNT") from None
    if first < 1000 or n < 1 or first + n > 2**32 - 2:
        raise ValueError(f"REFLOWPY_SANDBOX_UIDS={raw!r}: the range must lie in [1000, 2^32-2)")
    return first, n


class UidLease:
    """One leased uid (also used as the gid); :meth:`release` frees it."""

    __slots__ = ("_fd", "uid")

    def __init__(self, uid: int, fd: int) -> None:
        self.uid = uid
        self._fd: int | None = fd

    def release(self) -> None:
        """Give the uid back (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:
        self.release()


def lease() -> UidLease | None:
    """A free uid from the range, or ``None`` when not running as root.

    Probes from a random offset so concurrent hosts rarely contend for one lock.
    """
    if os.geteuid() != 0:
        return None
    start, count = uid_range()
    os.makedirs(_LOCK_DIR, mode=0o700, exist_ok=True)
    offset = secrets.randbelow(count)
    for i in range(count):
        uid = start + (offset + i) % count
        fd = os.open(os.path.join(_LOCK_DIR, str(uid)), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        return UidLease(uid, fd)
    raise RuntimeError(f"all {count} sandbox uids from {start} are in use")
