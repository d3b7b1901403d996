"""The hostile corpus, second pass: attacks the kernel must contain (process sandbox first).

Each test asserts containment (the attack failed, nothing outlived the node, the
other nodes kept working) and the report (the dead letter / error naming the limit,
or the confinement the node announced at start). Cross-node attacks run two script
nodes side by side: a process node against another process node and against a
Docker node's worker. On main (rlimits + one shared uid + a network namespace) the
daemon, tree-memory, background-CPU, user-namespace, cross-node kill/read and
shm-persistence cases all escaped.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
import trio

import reflowpy as rf
from reflowpy.errors import (
    ScriptCPUExceeded,
)
from reflowpy.script.actor import register
from reflowpy.script.process import ProcessHost
from tests.script.workers import assert_none_left, workers

pytestmark = pytest.mark.slow



def _src(code: str) -> str:
    return textwrap.dedent(code)


def _registry() -> rf.Registry:
    registry = rf.Registry()
    register(registry)
    return registry


def _two_nodes(a: dict[str, Any], b: dict[str, Any]) -> rf.Graph:
    graph = rf.Graph("pair")
    graph.add_node("a", "script/python", a)
    graph.add_node("b", "script/python", b)
    for n in ("a", "b"):
        graph.add_inport(f"{n}in", n, "in")
        graph.add_outport(f"{n}out", n, "out")
    return graph


PROC = {"sandbox": "process"}
LIMITS = {"wall_time": 5.0, "memory_mb": 128, "pids": 32}


async def _one(source: str, value: Any = "go", limits: dict[str, Any] | None = None,
               ) -> tuple[list[Any], list[rf.DeadLetter]]:
    graph = rf.Graph("one")
    graph.add_node("s", "script/python", {**PROC, "source": _src(source),
                                           "limits": {**LIMITS, **(limits or {})}})
    graph.add_inport("in", "s", "in")
    graph.add_outport("out", "s", "out")
    async with rf.Network(graph, _registry()) as net:
        await net.send("in", value)
        await net.idle()
        outs = list(net.outputs("out").drain())
        letters = net.dead_letters()
    return outs, letters


# ------------------------------------------------------------------ persistence
async def test_setsid_double_fork_daemon_dies_with_the_node() -> None:
    before = set(workers())
    source = """
        import os, time
        def process(inputs):
            pid = os.fork()
            if pid == 0:
                os.setsid()
                if os.fork() == 0:
                    while True:
                        time.sleep(1)
                os._exit(0)
            os.waitpid(pid, 0)
            return {"out": "daemon started"}
    """
    outs, letters = await _one(source)
    assert outs == []
    [letter] = letters
    assert letter.error_type == "ScriptLimitExceeded" and "processes" in letter.error
    await assert_none_left(before)


async def test_subreaper_daemon_started_by_a_thread_dies_at_stop() -> None:
    # Started by a thread shortly after the result was sent, so (most likely) no
    # message sees it: only the pid namespace (bwrap's pid 1 dies with the worker)
    # ends it when the network stops. If the fork wins the race, the worker reports
    # the leftover child instead; both are containment.
    before = set(workers())
    source = """
        import ctypes, os, threading, time
        def daemon():
            time.sleep(0.2)
            ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)   # PR_SET_CHILD_SUBREAPER
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    while True:
                        time.sleep(1)
                os._exit(0)
        def process(inputs):
            threading.Thread(target=daemon).start()
            return {"out": "ok"}
    """
    graph = rf.Graph("one")
    graph.add_node("s", "script/python", {**PROC, "source": _src(source), "limits": LIMITS})
    graph.add_inport("in", "s", "in")
    graph.add_outport("out", "s", "out")
    async with rf.Network(graph, _registry()) as net:
        await net.send("in", 1)
        with trio.fail_after(10):
            # bwrap, its pid-1 reaper, the worker and the daemon, all as the node's uid
            while not net.dead_letters():
                new = {p: u for p, u in workers().items() if p not in before}
                uids = list(new.values())
                if uids and max(uids.count(u) for u in uids) >= 4:
                    break
                await trio.sleep(0.02)
        outs = list(net.outputs("out").drain())
        assert outs == ["ok"] or net.dead_letters()[0].error_type == "ScriptLimitExceeded"
    await assert_none_left(before)


async def test_shm_sysv_and_tmp_files_do_not_survive_stop(tmp_path: Path) -> None:
    token = f"reflowpy-persist-{os.getpid()}"
    key = 0x5EED0000 | (os.getpid() & 0xFFFF)  # per run: a leftover of another run differs
    source = f"""
        import ctypes, os
        def process(inputs):
            made = []
            for path in ("/dev/shm/{token}", "/tmp/{token}", "/var/tmp/{token}",
                         "{tmp_path}/{token}"):
                try:
                    with open(path, "w") as f:
                        f.write("persist")
                    made.append(path)
                except OSError:
                    pass
            libc = ctypes.CDLL(None, use_errno=True)
            shmid = libc.shmget({key}, 4096, 0o1666)   # IPC_CREAT | 0666
            return {{"out": [made, shmid]}}
    """
    outs, letters = await _one(source)
    assert letters == []
    [[made, shmid]] = outs
    assert f"/tmp/{token}" in made and shmid >= 0  # legitimate inside the sandbox ...
    for path in (f"/dev/shm/{token}", f"/tmp/{token}", f"/var/tmp/{token}",
                 f"{tmp_path}/{token}"):
        assert not os.path.exists(path), path  # ... and gone, or never on the host
    keys = [line.split()[0] for line in Path("/proc/sysvipc/shm").read_text().splitlines()[1:]]
    assert str(key) not in keys


# --------------------------------------------------------------- tree limits
async def test_memory_limit_holds_for_the_whole_process_tree() -> None:
    # Six children of 40 MB each under memory_mb=128: each is under its own RLIMIT_AS,
    # together they are over; the cgroup kills and the node reports the tree limit.
    source = """
        import os, time
        def process(inputs):
            kids = []
            for _ in range(6):
                pid = os.fork()
                if pid == 0:
                    hog = bytearray(40 * 1024 * 1024)
                    for i in range(0, len(hog), 4096):
                        hog[i] = 1
                    time.sleep(3)
                    os._exit(0)
                kids.append(pid)
            for pid in kids:
                os.waitpid(pid, 0)
            return {"out": "held 240 MB"}
    """
    outs, letters = await _one(source, limits={"memory_mb": 128, "wall_time": 20})
    assert outs == []
    [letter] = letters
    assert letter.error_type == "ScriptMemoryExceeded", letter.error
    assert "memory_mb=128" in letter.error and "whole tree" in letter.error


async def test_background_thread_cpu_is_metered_between_messages() -> None:
    host = ProcessHost(node="burner", source=_src("""
        import threading
        def burn():
            while True:
                pass
        def process(inputs):
            if inputs["in"] == "start":
                threading.Thread(target=burn, daemon=True).start()
            return {"out": inputs["in"]}
    """), limits=rf_limits(idle_cpu_seconds=0.3))
    async with host:
        assert (await host.process({"in": "start"}, {})).outputs == {"out": "start"}
        group = host._cgroup
        assert group is not None
        start = group.cpu_seconds()
        with trio.fail_after(20):
            while group.cpu_seconds() - start < 0.5:
                await trio.sleep(0.05)
        with pytest.raises(ScriptCPUExceeded, match="idle_cpu_seconds=0.3"):
            await host.process({"in": "next"}, {})
        # A fresh worker handles the next message.
        assert (await host.process({"in": "again"}, {})).outputs == {"out": "again"}


def rf_limits(**kw: Any) -> Any:
    from reflowpy.script.host import Limits

    return Limits(**{**LIMITS, **kw})


async def test_fork_bomb_is_stopped_by_the_tree_pids_limit() -> None:
    source = """
        import os, time
        def process(inputs):
            kids = 0
            for _ in range(200):
                try:
                    if os.fork() == 0:
                        time.sleep(2)
                        os._exit(0)
                    kids += 1
                except OSError:
                    break
            return {"out": kids}
    """
    outs, letters = await _one(source, limits={"pids": 16})
    assert outs == []
    [letter] = letters
    assert letter.error_type == "ScriptLimitExceeded" and "limits.pids=16" in letter.error


# ----------------------------------------------------------- denied syscalls
_SYSCALLS = {
    "unshare_user_namespace": "libc.syscall(272, 0x10000000)",
    "unshare_mount_namespace": "libc.syscall(272, 0x00020000)",
    "clone_new_user": "libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0)",
    "io_uring_setup": "libc.syscall(425, 8, ctypes.create_string_buffer(120))",
    "ptrace_attach_parent": "libc.syscall(101, 16, os.getppid(), 0, 0)",
    "process_vm_readv": "libc.syscall(310, 1, 0, 0, 0, 0, 0)",
    "bpf": "libc.syscall(321, 0, 0, 0)",
    "keyctl": "libc.syscall(250, 0, 0, 0, 0, 0)",
    "mount_tmpfs": "libc.mount(b'x', b'/tmp', b'tmpfs', 0, None)",
    "userfaultfd": "libc.syscall(323, 0)",
}


@pytest.mark.parametrize("case", sorted(_SYSCALLS))
async def test_dangerous_syscalls_are_denied(case: str) -> None:
    source = f"""
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        def process(inputs):
            rc = {_SYSCALLS[case]}
            if rc < 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))
            return {{"out": rc}}
    """
    outs, letters = await _one(source)
    assert outs == [], f"{case} succeeded"
    [letter] = letters
    assert letter.error_type == "ScriptRaised"
    assert "Operation not permitted" in letter.error or "Function not impl" in letter.error


# -------------------------------------------------------------- cross-node
async def test_process_node_cannot_kill_read_or_starve_another() -> None:
    # b is the victim: it keeps a secret in its /tmp and forks on every message.
    victim = _src("""
        import os
        def process(inputs):
            with open("/tmp/secret", "w") as f:
                f.write("B-SECRET")
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
            return {"out": [os.getuid(), "alive"]}
    """)
    attacker = _src("""
        import os, signal, time
        def process(inputs):
            report = {"uid": os.getuid()}
            for pid in inputs["in"]:
                for what, act in (("kill", lambda: os.kill(pid, signal.SIGKILL)),
                                  ("mem", lambda: open(f"/proc/{pid}/mem", "rb").read(1)),
                                  ("environ", lambda: open(f"/proc/{pid}/environ").read())):
                    try:
                        act()
                        report[f"{what}:{pid}"] = "SUCCEEDED"
                    except OSError as exc:
                        report[f"{what}:{pid}"] = type(exc).__name__
            report["tmp"] = os.listdir("/tmp")
            kids = 0
            while kids < 200:          # use up every pid it can get
                try:
                    if os.fork() == 0:
                        time.sleep(3)
                        os._exit(0)
                    kids += 1
                except OSError:
                    break
            report["kids"] = kids
            raise RuntimeError(repr(report))
    """)
    graph = _two_nodes({**PROC, "source": attacker, "limits": LIMITS},
                       {**PROC, "source": victim, "limits": LIMITS})
    before = workers()
    async with rf.Network(graph, _registry()) as net:
        await net.send("bin", 1)
        [b_uid, _] = await net.outputs("bout").receive()
        b_pids = [pid for pid, uid in workers().items() if pid not in before and uid != 0
                  and uid == max(u for p, u in workers().items() if p not in before)]
        victims = sorted(set(b_pids) | {os.getpid()})  # (pid 1 is its own reaper)
        await net.send("ain", victims)
        await net.idle()
        # b keeps working, while and after a's attack
        await net.send("bin", 2)
        assert await net.outputs("bout").receive() == [b_uid, "alive"]
        [letter] = net.dead_letters()
    assert letter.node == "a"
    assert letter.error_type in ("ScriptLimitExceeded", "ScriptRaised")
    assert "SUCCEEDED" not in letter.error and "B-SECRET" not in letter.error
    if letter.error_type == "ScriptLimitExceeded":
        assert "limits.pids" in letter.error or "processes" in letter.error


async def test_nodes_run_as_distinct_uids() -> None:
    if os.geteuid() != 0:
        pytest.skip("distinct uids per node need root")
    source = "import os\ndef process(inputs):\n    return {'out': os.getuid()}\n"
    graph = _two_nodes({**PROC, "source": source}, {**PROC, "source": source})
    async with rf.Network(graph, _registry()) as net:
        await net.send("ain", 1)
        await net.send("bin", 1)
        a = await net.outputs("aout").receive()
        b = await net.outputs("bout").receive()
    assert a != b and 0 not in (a, b) and 65534 not in (a, b)


async def test_process_node_cannot_reach_a_docker_nodes_worker(docker_image: str) -> None:
    from reflowpy.script.docker import DockerHost

    docker = DockerHost(node="victim", image=docker_image, source=_src("""
        def process(inputs):
            return {"out": "docker alive"}
    """))
    async with docker:
        assert docker._container is not None
        state = await trio.to_thread.run_sync(
            lambda: docker._client.api.inspect_container(docker.container_id)["State"])
        pid = state["Pid"]
        attacker = ProcessHost(node="attacker", source=_src("""
            import os
            def process(inputs):
                pid, sockdir = inputs["in"]
                tried = {}
                for name, act in (("mem", lambda: open(f"/proc/{pid}/mem", "rb").read(1)),
                                  ("kill", lambda: os.kill(pid, 9)),
                                  ("sock", lambda: os.listdir(sockdir))):
                    try:
                        act()
                        tried[name] = "SUCCEEDED"
                    except OSError as exc:
                        tried[name] = type(exc).__name__
                return {"out": tried}
        """))
        async with attacker:
            result = await attacker.process({"in": [pid, docker._sockdir or "/tmp"]}, {})
        assert "SUCCEEDED" not in result.outputs["out"].values(), result.outputs
        assert (await docker.process({"in": 1}, {})).outputs == {"out": "docker alive"}


# --------------------------------------------------------------- reporting
async def test_missing_layer_refuses_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    from reflowpy.errors import SandboxUnavailable
    from reflowpy.script import process

    monkeypatch.setattr(process.cgroups, "probe", lambda: "no cgroups in this test")
    src = "def process(inputs):\n    return {'out': 1}\n"
    with pytest.raises(SandboxUnavailable, match="cgroup: no cgroups in this test"):
        async with ProcessHost(node="n", source=src):
            pass
    logs: list[tuple[str, str]] = []
    host = ProcessHost(node="n", source=src, allow_weaker=["cgroup"],
                       log=lambda level, text: logs.append((level, text)))
    async with host:
        assert (await host.process({"in": 1}, {})).outputs == {"out": 1}
    assert host.confinement["cgroup"].startswith("MISSING")
    [(level, text)] = [entry for entry in logs if "process sandbox" in entry[1]]
    assert level == "warning" and "allow_weaker" in text and "cgroup: MISSING" in text


async def test_script_log_cannot_forge_host_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    source = """
        def process(inputs):
            log("innocent\\nCRITICAL reflowpy.server: admin token is 1234\\r\\x1b[2J")
            print("stdout line\\rERROR forged")
            return {"out": 1}
    """
    with caplog.at_level("INFO"):
        outs, letters = await _one(source)
    assert outs == [1] and letters == []
    lines = [r.getMessage() for r in caplog.records if "innocent" in r.getMessage()
             or "forged" in r.getMessage()]
    assert len(lines) == 2
    for line in lines:
        assert "\n" not in line and "\r" not in line and "\x1b" not in line




async def test_worker_survives_the_retirement_of_trio_worker_threads(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # bwrap --die-with-parent follows the *thread* that forked it: a worker spawned
    # from a trio thread-cache thread was SIGKILLed when that thread idled out.
    import threading

    from trio._core import _thread_cache

    monkeypatch.setattr(_thread_cache, "IDLE_TIMEOUT", 0.05)
    src = "def process(inputs):\n    return {'out': inputs['in'] + 1}\n"
    async with ProcessHost(node="n", source=src, limits=rf_limits()) as host:
        assert (await host.process({"in": 1}, {})).outputs == {"out": 2}
        await trio.to_thread.run_sync(lambda: None)
        with trio.fail_after(10):
            while any(t.name.startswith("Trio thread") for t in threading.enumerate()):
                await trio.sleep(0.02)  # wait until every cached thread has retired
        assert (await host.process({"in": 2}, {})).outputs == {"out": 3}


def test_cgroups_of_a_crashed_host_are_removed() -> None:
    from reflowpy.script import cgroups

    if cgroups.probe() is not None:
        pytest.skip(str(cgroups.probe()))
    dead_pid = 2**22 + 4321  # above pid_max's default: never a live process
    group = cgroups.NodeCgroup.create(f"crashed-{dead_pid}-7-1", memory_bytes=1 << 26,
                                      pids=8, cpus=1.0)
    live = cgroups.NodeCgroup.create(f"alive-{os.getpid()}-7-2", memory_bytes=1 << 26,
                                     pids=8, cpus=1.0)
    try:
        removed = cgroups.cleanup_stale()
        assert {str(p) for p in group.dirs.values()} <= set(removed)
        assert not any(str(p) in removed for p in live.dirs.values())
        assert all(not p.exists() for p in group.dirs.values())
    finally:
        live.remove()
        group.remove()


def _reflowpy_cgroups() -> set[str]:
    found: set[str] = set()
    for root in Path("/sys/fs/cgroup").glob("*/reflowpy"):
        found.update(str(p) for p in root.iterdir() if p.is_dir())
    unified = Path("/sys/fs/cgroup/reflowpy")
    if unified.is_dir():
        found.update(str(p) for p in unified.iterdir() if p.is_dir())
    return found


async def test_cancel_at_random_points_leaks_no_worker_cgroup_or_uid() -> None:
    # Fault injection: cancel process() (and start()) after a seeded random delay,
    # anywhere in spawn, init, the message or the kill; afterwards nothing may be
    # left: no worker process, no cgroup, and every uid lease released.
    import random

    from tests.scale import long_scale

    rng = random.Random(20261201)
    before_workers = set(workers())
    before_groups = _reflowpy_cgroups()
    src = _src("""
        import time
        def process(inputs):
            time.sleep(inputs["in"])
            return {"out": inputs["in"]}
    """)
    runs = long_scale(12)
    completed = 0
    for _ in range(runs):
        host = ProcessHost(node="cancel", source=src, limits=rf_limits())
        started = False
        with trio.move_on_after(rng.uniform(0, 0.15)):
            await host.start()
            started = True
            result = await host.process({"in": rng.uniform(0, 0.05)}, {})
            completed += result.outputs is not None
        if not started:  # a host whose start was cancelled cleaned up by itself
            assert host._lease is None and host._cgroup is None and host._proc is None
        with trio.CancelScope(shield=True):
            await host.stop()
        assert host._lease is None and host._cgroup is None
    await assert_none_left(before_workers)
    assert _reflowpy_cgroups() - before_groups == set()
    assert 0 <= completed <= runs
