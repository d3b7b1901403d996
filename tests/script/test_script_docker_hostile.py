"""The hostile corpus for the Docker sandbox: channel hijack, syscalls, logs, volumes, uids.

Each test asserts containment and the report. On main the worker socket was a 0777
socket in a 0755 directory and the first peer was accepted unchecked (a local
process read the node's source and forged its outputs), io_uring and user
namespaces were allowed, json-file logs grew without bound, an image ``VOLUME``
became a writable volume that outlived the container, and every container ran as
uid 65534.
"""

from __future__ import annotations

import contextlib
import os
import socket
import textwrap
from typing import Any

import pytest
import trio

import reflowpy as rf
from reflowpy.errors import ScriptRaised
from reflowpy.script.actor import register
from reflowpy.script.docker import DockerHost

pytestmark = pytest.mark.slow

SECRET_SOURCE = "SECRET = 'node-source-secret'\ndef process(inputs):\n    return {'out': 'real'}\n"


def _src(code: str) -> str:
    return textwrap.dedent(code)


class _Hijacked(DockerHost):
    """A host whose socket is connected to by an impostor before the container starts."""

    impostor: socket.socket | None = None

    def _create_and_start(self) -> socket.socket:
        assert self._sockdir is not None
        path = os.path.join(self._sockdir, "worker.sock")
        impostor = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        impostor.connect(path)  # root may connect; the credentials check must refuse it
        # A forged Ready + Result, as a hijacker answering for the worker would send.
        impostor.sendall(b"\x00\x00\x00\x0b\x93\xa5ready\x01\xa13")
        self.impostor = impostor
        return super()._create_and_start()


async def test_a_peer_that_connects_first_is_refused(docker_image: str) -> None:
    logs: list[str] = []
    host = _Hijacked(node="victim", image=docker_image, source=SECRET_SOURCE,
                     log=lambda level, text: logs.append(text))
    async with host:
        assert (await host.process({"in": 1}, {})).outputs == {"out": "real"}
        assert host.rejected_peers == 1
        assert host.impostor is not None
        host.impostor.settimeout(10)
        got = b""
        try:
            while chunk := host.impostor.recv(65536):
                got += chunk
        except ConnectionResetError:
            pass  # refused with its forged bytes unread
        host.impostor.close()
    assert b"node-source-secret" not in got and got == b""
    assert any("refused a connection to the worker socket" in line and "not the container"
               in line for line in logs)


async def test_socket_directory_is_private_to_the_containers_uid(docker_image: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("the socket is chowned to the container's uid only as root")
    host = DockerHost(node="n", image=docker_image, source=SECRET_SOURCE)
    async with host:
        assert host._sockdir is not None
        st = os.stat(host._sockdir)
        sock = os.stat(os.path.join(host._sockdir, "worker.sock"))
        assert st.st_mode & 0o777 == 0o700 and sock.st_mode & 0o777 == 0o600
        assert st.st_uid == sock.st_uid == int(host.user.split(":")[0]) >= 2_000_000_000


_SYSCALLS = {
    "io_uring_setup": "libc.syscall(425, 8, ctypes.create_string_buffer(120))",
    "unshare_user_namespace": "libc.syscall(272, 0x10000000)",
    "clone_new_user": "libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0)",
    "bpf": "libc.syscall(321, 0, 0, 0)",
    "keyctl": "libc.syscall(250, 0, 0, 0, 0, 0)",
    "userfaultfd": "libc.syscall(323, 0)",
}


@pytest.mark.parametrize("case", sorted(_SYSCALLS))
async def test_container_syscalls_are_denied(docker_image: str, case: str) -> None:
    source = _src(f"""
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        def process(inputs):
            rc = {_SYSCALLS[case]}
            if rc < 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))
            return {{"out": rc}}
    """)
    async with DockerHost(node="n", image=docker_image, source=source) as host:
        with pytest.raises(ScriptRaised, match="Operation not permitted|Function not impl"):
            await host.process({"in": 1}, {})


async def test_stdout_flood_does_not_fill_the_host_log(docker_image: str) -> None:
    source = _src("""
        import sys
        def process(inputs):
            line = "x" * 1023 + "\\n"
            for _ in range(8 * 1024):     # 8 MiB
                sys.stdout.write(line)
            sys.stdout.flush()
            return {"out": "flooded"}
    """)
    host = DockerHost(node="n", image=docker_image, source=source,
                      limits=_limits(log_bytes=4096, wall_time=60))
    async with host:
        assert (await host.process({"in": 1}, {})).outputs == {"out": "flooded"}
        info = await trio.to_thread.run_sync(
            lambda: host._client.api.inspect_container(host.container_id))
        log_config = info["HostConfig"]["LogConfig"]
        assert log_config["Config"]["max-size"] == "1m"
        path = info.get("LogPath")
        if path and os.path.exists(path):
            assert os.path.getsize(path) <= 2 * 1024 * 1024
        assert host.statistics().log_bytes_dropped > 7 * 1024 * 1024


def _limits(**kw: Any) -> Any:
    from reflowpy.script.host import Limits

    return Limits(**kw)


async def test_image_volumes_get_a_tmpfs_and_nothing_outlives_the_container(
        docker_image: str) -> None:
    import docker

    client = docker.from_env(timeout=60)
    tag = "reflowpy/python:volume-test"
    try:
        base = client.containers.create(docker_image, command=["python3", "-c", "pass"])
        base.commit(repository="reflowpy/python", tag="volume-test",
                    changes=["VOLUME /data"])
        base.remove(force=True)
        volumes_before = {v.id for v in client.volumes.list()}
        source = _src("""
            def process(inputs):
                with open("/data/persist", "w") as f:
                    f.write("x")
                mounts = [l.split()[1:3] for l in open("/proc/mounts")]
                return {"out": [m for m in mounts if m[0] == "/data"]}
        """)
        async with DockerHost(node="n", image=tag, source=source) as host:
            result = await host.process({"in": 1}, {})
        assert result.outputs == {"out": [["/data", "tmpfs"]]}
        assert {v.id for v in client.volumes.list()} - volumes_before == set()
    finally:
        with contextlib.suppress(docker.errors.DockerException):
            client.images.remove(tag, force=True)
        client.close()


async def test_each_container_runs_as_its_own_uid(docker_image: str) -> None:
    registry = rf.Registry()
    register(registry)
    graph = rf.Graph("uids")
    source = "import os\ndef process(inputs):\n    return {'out': os.getuid()}\n"
    for n in ("a", "b"):
        graph.add_node(n, "script/python", {"sandbox": "docker", "image": docker_image,
                                            "source": source})
        graph.add_inport(f"{n}in", n, "in")
        graph.add_outport(f"{n}out", n, "out")
    async with rf.Network(graph, registry) as net:
        await net.send("ain", 1)
        await net.send("bin", 1)
        a = await net.outputs("aout").receive()
        b = await net.outputs("bout").receive()
    assert a != b and 65534 not in (a, b) and 0 not in (a, b)
