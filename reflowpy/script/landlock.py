"""The process sandbox's Landlock layer: what the kernel offers, and the ruleset to ask for.

Landlock lets an unprivileged process restrict itself and its future children. The
worker (:mod:`reflowpy.script.worker`, standard library only) applies the ruleset
to itself just before it loads the script; this module, on the host, probes the
kernel's ABI version once and builds the ruleset's description:

* **filesystem**: read (and execute) only beneath the paths the interpreter needs,
  write only beneath the private ``/tmp``/``/dev/shm`` (or the private directory,
  without namespaces) and a few device files. Under bubblewrap this is a second line
  behind the read-only mount namespace; without namespaces (``allow_weaker:
  [namespaces]``) it is what keeps a script out of the rest of the host's files.
* **TCP** (ABI >= 4): no bind or connect unless the node has ``network: true``.
* **scopes** (ABI >= 6): no signal to a process outside the worker's domain, and no
  connection to an abstract Unix socket created outside it -- which matters with
  ``network: true``, where the worker shares the host's network namespace (abstract
  sockets live there, D-Bus or X11 for instance).
"""

from __future__ import annotations

import ctypes
import functools

__all__ = ["abi", "describe", "problem", "ruleset"]

_CREATE_RULESET = 444  # landlock_create_ruleset: the same number on every architecture
_CREATE_RULESET_VERSION = 1

#: Device files a worker may read, and those it may also write.
_DEV_READ = ("/dev/urandom", "/dev/random", "/dev/zero")
_DEV_WRITE = ("/dev/null", "/dev/full")


@functools.cache
def abi() -> int:
    """The kernel's Landlock ABI version, or 0 when it has none (or it is disabled)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return 0
    libc.syscall.restype = ctypes.c_long
    version = libc.syscall(_CREATE_RULESET, None, ctypes.c_size_t(0),
                           ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(0, int(version))


def problem() -> str | None:
    """``None`` when Landlock can be used here, else why not."""
    if abi() >= 1:
        return None
    return ("the kernel has no Landlock (Linux >= 5.13 with 'landlock' in the lsm= boot"
            " list)")


def ruleset(*, read: list[str], write: list[str], network: bool) -> dict[str, object]:
    """What the worker restricts itself to (the ``landlock`` entry of its sandbox spec)."""
    return {"read": [*read, *_DEV_READ], "write": [*write, *_DEV_WRITE],
            "deny_tcp": not network}


def describe(*, network: bool) -> str:
    """The confinement line of the layer, for the node's start log."""
    version = abi()
    parts = [f"ABI {version}: files read-only outside the private dirs"]
    if version >= 4 and not network:
        parts.append("no TCP bind/connect")
    if version >= 6:
        parts.append("signals and abstract sockets scoped to the worker")
    return ", ".join(parts)
