"""script/python in a real network, for every Python sandbox (process, docker).

Working scripts (stateful counter, streaming splitter under backpressure) and the
hostile-code corpus: each attack is contained, reported on the node as a specific
ScriptError (dead letter), the rest of the network keeps running meanwhile, and the
node works again for the next message.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

import reflowpy as rf
from reflowpy.errors import (
    ConfigError,
    ScriptCrashed,
    ScriptLimitExceeded,
    ScriptMemoryExceeded,
    ScriptProtocolError,
    ScriptRaised,
    ScriptTimeout,
)
from reflowpy.script.actor import register
from tests.script.workers import assert_none_left, workers

pytestmark = pytest.mark.slow


@rf.actor(inports=["in"], outports=["out"])
def double(ctx: Any) -> dict[str, Any]:
    return {"out": ctx.inputs["in"] * 2}


@pytest.fixture(params=["process", "docker"])
def sandbox(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "docker":
        image = request.getfixturevalue("docker_image")
        return {"sandbox": "docker", "image": image}
    return {"sandbox": "process"}


def _registry() -> rf.Registry:
    registry = rf.Registry()
    register(registry)
    registry.register("test/Double", double)
    return registry


def _graph(metadata: dict[str, Any]) -> rf.Graph:
    graph = rf.Graph("scripts")
    graph.add_node("script", "script/python", metadata)
    graph.add_node("healthy", "test/Double")
    graph.add_inport("in", "script", "in")
    graph.add_inport("hin", "healthy", "in")
    for port in metadata.get("outports", ["out"]):
        graph.add_outport(port, "script", port)
    graph.add_outport("hout", "healthy", "out")
    return graph


async def _network(metadata: dict[str, Any], **kw: Any) -> AsyncIterator[rf.Network]:
    net = rf.Network(_graph(metadata), _registry(), **kw)
    async with net:
        yield net


def _src(code: str) -> str:
    return textwrap.dedent(code)


async def test_stateful_counter(sandbox: dict[str, Any]) -> None:
    source = _src("""
        def process(inputs, config, state):
            state["n"] = state.get("n", 0) + inputs["in"]
            return {"out": [state["n"], config["label"]]}
    """)
    meta = {**sandbox, "source": source, "config": {"label": "total"}}
    async with rf.Network(_graph(meta), _registry()) as net:
        for i in range(1, 6):
            await net.send("in", i)
        outs = net.outputs("out")
        got = [await outs.receive() for _ in range(5)]
    assert got == [[1, "total"], [3, "total"], [6, "total"], [10, "total"], [15, "total"]]


async def test_streaming_splitter_with_backpressure(sandbox: dict[str, Any]) -> None:
    # 3 x 2000 outputs through queues of 4: the worker is suspended by the full
    # downstream (no deadlock, nothing lost, order kept), and waiting on backpressure
    # does not count against the wall-time limit.
    source = _src("""
        def process(inputs):
            for i in range(inputs["in"]):
                send_output("out", i)
            return {"done": inputs["in"]}
    """)
    meta = {**sandbox, "source": source, "outports": ["out", "done"],
            "limits": {"wall_time": 30}}
    net = rf.Network(_graph(meta), _registry(), capacity=4, output_capacity=4)
    async with net:
        async def feed() -> None:
            for _ in range(3):
                await net.send("in", 2000)

        got: list[int] = []
        done: list[int] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed)
            outs, dones = net.outputs("out"), net.outputs("done")
            while len(done) < 3:
                got.append(await outs.receive())
                done.extend(dones.drain())
        got.extend(outs.drain())
    assert got == list(range(2000)) * 3
    assert done == [2000, 2000, 2000]


async def test_script_exception_is_dead_lettered_with_traceback(sandbox: dict[str, Any]) -> None:
    source = _src("""
        def helper(x):
            return 1 / x

        def process(inputs):
            return {"out": helper(inputs["in"])}
    """)
    async with rf.Network(_graph({**sandbox, "source": source}), _registry()) as net:
        await net.send("in", 0)
        await net.send("in", 4)
        assert await net.outputs("out").receive() == 0.25
        await net.idle()
        [letter] = net.dead_letters()
    assert letter.error_type == "ScriptRaised"
    assert "ZeroDivisionError: division by zero" in letter.error
    assert letter.value == 0
    # The user's frames come from the sandbox, with their lines (the host's own frames
    # alone said nothing about where the script failed).
    sandboxed = letter.traceback.split("Raised in the sandbox:", 1)[1]
    assert "line 3, in helper" in sandboxed and "return 1 / x" in sandboxed
    assert 'return {"out": helper(inputs["in"])}' in sandboxed


def _leaf(exc: BaseException) -> BaseException:
    # The kernel may report a start failure inside an ExceptionGroup.
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


async def _start_error(metadata: dict[str, Any]) -> BaseException:
    try:
        async with rf.Network(_graph(metadata), _registry()):
            pass
    except BaseException as exc:
        return _leaf(exc)
    raise AssertionError("the network started")


async def test_script_that_does_not_load_refuses_to_start(sandbox: dict[str, Any]) -> None:
    error = await _start_error({**sandbox, "source": "def process(:\n"})
    assert isinstance(error, ConfigError) and "SyntaxError" in str(error)
    error = await _start_error({**sandbox, "source": "def process(i): pass", "entry": "handle"})
    assert isinstance(error, ConfigError) and "no function 'handle'" in str(error)


# --------------------------------------------------------------------- hostile corpus
def _hostile(attack: str) -> str:
    return _src("""
        import os, sys, socket, time

        def process(inputs, config, state):
            if inputs["in"] == "attack":
        %s
            return {"out": "ok"}
    """) % textwrap.indent(textwrap.dedent(attack), " " * 8)


FORGE = """
    import struct
    body = b'\\x94\\xa6output\\x01\\xa3out' + %s
    frame = struct.pack('>I', len(body)) + body
    for fd in range(3, 16):
        try:
            view = memoryview(frame)
            while view:
                view = view[os.write(fd, view):]
        except OSError:
            pass
    time.sleep(5)
"""

HOSTILE: dict[str, tuple[str, tuple[type[Exception], ...] | type[Exception], str]] = {
    "infinite_loop": ("while True: pass", ScriptTimeout, "wall_time"),
    "sleep_past_timeout": ("time.sleep(3600)", ScriptTimeout, "wall_time"),
    "memory_bomb": ("""
        hog = []
        while True:
            hog.append(bytearray(16 * 1024 * 1024))
    """, ScriptMemoryExceeded, "memory"),
    "fork_bomb": ("""
        while True:
            try:
                os.fork()
            except OSError:
                time.sleep(0.05)
    """, (ScriptTimeout, ScriptLimitExceeded), "killed"),
    # Every process dies when its fork fails, so this bomb may burn out by itself
    # (the script then raised BlockingIOError) or be killed by a limit.
    "fork_bomb_raw": ("while True: os.fork()",
                      (ScriptTimeout, ScriptLimitExceeded, ScriptRaised), ""),
    # PermissionError (Docker, uid drop) or FileNotFoundError (not in the namespace).
    "read_shadow": ("return {'out': open('/etc/shadow').read()}", ScriptRaised,
                    "[Errno"),
    "write_outside_tmp": ("open('/usr/reflowpy-pwned', 'w').write('x')", ScriptRaised,
                          "Error"),
    "network_connection": ("""
        s = socket.create_connection((config["host"], config["port"]), timeout=2)
        return {"out": "connected"}
    """, ScriptRaised, "Error"),
    "protocol_garbage": ("""
        for fd in range(3, 16):
            try:
                os.write(fd, b"\\xff" * 64 + b"garbage on the protocol channel")
            except OSError:
                pass
        time.sleep(5)
    """, ScriptProtocolError, "protocol"),
    "exit_worker": ("os._exit(7)", ScriptCrashed, "code 7"),
    # Forged frames on the protocol channel that would amplify on the host: 2 MiB of
    # empty arrays (~150 MB of Python lists on main) and 5000-deep nesting
    # (RecursionError on main). Refused by the pre-scan, named by the limit.
    "forged_2mib_frame": (FORGE % "b'\\xdd' + struct.pack('>I', 2 << 20) + b'\\x90' * (2 << 20)",
                          ScriptProtocolError, "max_items"),
    "forged_deep_frame": (FORGE % "b'\\x91' * 5000 + b'\\xc0'", ScriptProtocolError,
                          "max_depth"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_hostile_code_is_contained(sandbox: dict[str, Any], case: str) -> None:
    attack, error_type, fragment = HOSTILE[case]
    before = set(workers())  # workers of other processes on a shared machine
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    meta = {
        **sandbox,
        "source": _hostile(attack),
        "config": {"host": "127.0.0.1", "port": port},
        "limits": {"wall_time": 2.0, "memory_mb": 128, "pids": 32},
    }
    async with rf.Network(_graph(meta), _registry()) as net:
        await net.send("in", "attack")
        # The rest of the network keeps running while the script misbehaves.
        hout = net.outputs("hout")
        for i in range(20):
            await net.send("hin", i)
            assert await hout.receive() == 2 * i
        await net.idle()
        [letter] = net.dead_letters()
        # The node itself recovers: a fresh worker handles the next message.
        await net.send("in", "fine")
        assert await net.outputs("out").receive() == "ok"
    await listener.aclose()
    names = [t.__name__ for t in (error_type if isinstance(error_type, tuple) else (error_type,))]
    assert letter.error_type in names, letter.error
    assert fragment in letter.error
    assert letter.node == "script" and letter.value == "attack"
    assert not Path("/usr/reflowpy-pwned").exists()
    await assert_none_left(before)


async def test_host_files_are_out_of_reach(sandbox: dict[str, Any], tmp_path: Path) -> None:
    if sandbox["sandbox"] == "process" and os.geteuid() != 0:
        pytest.skip("the process sandbox only hides files when it can drop to another user")
    secret = tmp_path / "private" / "secret.txt"
    secret.parent.mkdir(mode=0o700)
    secret.write_text("TOP SECRET")
    secret.chmod(0o600)
    source = _src("""
        def process(inputs):
            return {"out": open(inputs["in"]).read()}
    """)
    async with rf.Network(_graph({**sandbox, "source": source}), _registry()) as net:
        await net.send("in", str(secret))
        await net.idle()
        [letter] = net.dead_letters()
    assert letter.error_type == "ScriptRaised"
    assert "PermissionError" in letter.error or "FileNotFoundError" in letter.error
    assert "TOP SECRET" not in letter.error


async def test_printing_100_mb_is_bounded(sandbox: dict[str, Any]) -> None:
    source = _src("""
        import sys
        def process(inputs):
            chunk = "x" * (1024 * 1024 - 1) + "\\n"
            for _ in range(100):
                sys.stdout.write(chunk)
            return {"out": "survived"}
    """)
    meta = {**sandbox, "source": source, "limits": {"wall_time": 60, "log_bytes": 4096}}
    async with rf.Network(_graph(meta), _registry()) as net:
        await net.send("in", 1)
        assert await net.outputs("out").receive() == "survived"
        await net.send("hin", 21)
        assert await net.outputs("hout").receive() == 42
        assert net.dead_letters() == []


async def test_docker_attach_transport_and_leftover_cleanup(docker_image: str) -> None:
    import socket as _socket

    import docker

    from reflowpy.script.docker import LABEL, cleanup_containers

    source = _src("""
        def process(inputs, config, state):
            state["n"] = state.get("n", 0) + 1
            print("via attach")
            return {"out": state["n"]}
    """)
    meta = {"sandbox": "docker", "image": docker_image, "transport": "attach", "source": source}
    async with rf.Network(_graph(meta), _registry()) as net:
        for _ in range(3):
            await net.send("in", None)
        out = net.outputs("out")
        assert [await out.receive() for _ in range(3)] == [1, 2, 3]

    # A container whose owning process died is removed; one of a live owner is kept.
    client = docker.from_env(timeout=30)
    try:
        dead = client.containers.create(docker_image, command=["python3", "-c", "pass"], labels={
            LABEL: "1", "reflowpy.owner": f"{_socket.gethostname()}:{2**22 + 12345}"})
        alive = client.containers.create(docker_image, command=["python3", "-c", "pass"], labels={
            LABEL: "1", "reflowpy.owner": f"{_socket.gethostname()}:{os.getpid()}"})
        removed = await trio.to_thread.run_sync(cleanup_containers)
        assert dead.id in removed and alive.id not in removed
        alive.remove(force=True)
    finally:
        client.close()
