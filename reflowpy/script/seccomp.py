"""The sandboxes' seccomp policy: one deny list, as a BPF program and as a Docker profile.

What a script never needs and an attacker wants: creating or entering namespaces
(``unshare``, ``setns``, ``clone``/``clone3`` with ``CLONE_NEW*`` flags), tracing or
reading other processes (``ptrace``, ``process_vm_readv/writev``, ``kcmp``,
``pidfd_getfd``), io_uring (its own syscall surface, outside seccomp's view), eBPF,
the kernel keyring, ``userfaultfd``, ``perf_event_open``, mounting, modules, kexec,
swap, reboot and clock changes. Everything else stays allowed: the filesystem, pid
and network views come from namespaces, not from syscall filtering.

:func:`bpf_program` compiles the list to a classic-BPF filter (``struct sock_filter``
array, x86-64 only; other architectures get :class:`~reflowpy.SandboxUnavailable`)
for ``bwrap --seccomp``; :func:`docker_profile` writes the same list as a Docker
seccomp profile (JSON) for ``security_opt``. A denied call fails with ``EPERM``;
``clone3`` with ``ENOSYS`` so that libc falls back to ``clone``, whose flags the
filter can inspect.
"""

from __future__ import annotations

import json
import platform
import struct

__all__ = ["CLONE_NS_FLAGS", "DENIED", "bpf_program", "docker_profile", "supported"]

#: Syscalls refused with EPERM, by x86-64 number.
DENIED: dict[str, int] = {
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312,
    "pidfd_getfd": 438, "process_madvise": 440,
    "unshare": 272, "setns": 308,
    "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
    "fspick": 433, "mount_setattr": 442,
    "open_by_handle_at": 304, "name_to_handle_at": 303,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "bpf": 321, "keyctl": 250, "add_key": 248, "request_key": 249,
    "userfaultfd": 323, "perf_event_open": 298,
    "kexec_load": 246, "kexec_file_load": 320,
    "init_module": 175, "finit_module": 313, "delete_module": 176,
    "swapon": 167, "swapoff": 168, "reboot": 169, "acct": 163, "quotactl": 179,
    "iopl": 172, "ioperm": 173, "syslog": 103, "uselib": 134, "vhangup": 153,
    "settimeofday": 164, "clock_settime": 227, "adjtimex": 159, "clock_adjtime": 305,
    "sethostname": 170, "setdomainname": 171,
}
_CLONE = 56
_CLONE3 = 435
#: CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET.
CLONE_NS_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 \
    | 0x20000000 | 0x40000000

_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_BIT = 0x40000000
_EPERM, _ENOSYS = 1, 38
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_RET_KILL_PROCESS = 0x80000000
_LD_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET = 0x06  # BPF_RET | BPF_K
_NR, _ARCH, _ARG0 = 0, 4, 16  # offsets in struct seccomp_data (arg0 low word, LE)


def supported() -> str | None:
    """``None`` if :func:`bpf_program` can filter this machine's syscalls, else why not."""
    machine = platform.machine()
    if machine not in ("x86_64", "AMD64"):
        return f"the seccomp filter knows x86-64 syscall numbers only (this is {machine})"
    return None


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def bpf_program() -> bytes:
    """The deny list as a ``struct sock_filter[]`` for ``bwrap --seccomp FD``.

    Another architecture's syscalls (and the x32 ABI) kill the process: their numbers
    mean other calls, so no deny list could be right for them.
    """
    prog = [
        _op(_LD_ABS, _ARCH),
        _op(_JEQ, _AUDIT_ARCH_X86_64, 1, 0),
        _op(_RET, _RET_KILL_PROCESS),
        _op(_LD_ABS, _NR),
        _op(_JGE, _X32_BIT, 0, 1),
        _op(_RET, _RET_KILL_PROCESS),
    ]
    for nr in sorted(set(DENIED.values())):
        prog += [_op(_JEQ, nr, 0, 1), _op(_RET, _RET_ERRNO | _EPERM)]
    prog += [_op(_JEQ, _CLONE3, 0, 1), _op(_RET, _RET_ERRNO | _ENOSYS)]
    prog += [
        _op(_JEQ, _CLONE, 0, 4),
        _op(_LD_ABS, _ARG0),
        _op(_JSET, CLONE_NS_FLAGS, 0, 1),
        _op(_RET, _RET_ERRNO | _EPERM),
        _op(_RET, _RET_ALLOW),
    ]
    prog.append(_op(_RET, _RET_ALLOW))
    return b"".join(prog)


def docker_profile() -> str:
    """The deny list as a Docker seccomp profile (JSON text for ``seccomp=...``)."""
    rules: list[dict[str, object]] = [
        {"names": sorted(DENIED), "action": "SCMP_ACT_ERRNO", "errnoRet": _EPERM},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": _ENOSYS},
    ]
    # "(flags & F) == F" per namespace flag: seccomp compares masked values for
    # equality only, so "any of the flags" is one rule per flag.
    bit = 1
    while bit <= CLONE_NS_FLAGS:
        if CLONE_NS_FLAGS & bit:
            rules.append({
                "names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": _EPERM,
                "args": [{"index": 0, "value": bit, "valueTwo": bit,
                          "op": "SCMP_CMP_MASKED_EQ"}],
            })
        bit <<= 1
    return json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": rules,
    })
