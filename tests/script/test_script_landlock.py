"""The process sandbox's Landlock layer, tried from inside the worker.

Each attack runs twice where that proves the point: with Landlock (it must fail, with
the kernel's EACCES/EPERM) and with ``allow_weaker: [landlock]`` (the same code then
succeeds, so it is Landlock that contained it, not something else):

* without namespaces (``allow_weaker: [namespaces, seccomp]``, the weaker mode sharing the
  host's filesystem view): reading a world-readable file outside the interpreter's
  tree, writing next to it, listing another directory;
* with ``network: true`` under bubblewrap (the host's network namespace, so its
  abstract Unix sockets are reachable): connecting to one the host listens on;
* the node's start line names the layer and its ABI.
"""

from __future__ import annotations

import secrets
import socket
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from reflowpy.script import landlock, process
from reflowpy.script.process import ProcessHost

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(landlock.abi() < 1, reason="this kernel has no Landlock"),
]


@pytest.fixture
def outside() -> Iterator[Path]:
    """A world-readable directory outside anything the sandbox is granted."""
    base = Path(tempfile.mkdtemp(prefix="reflowpy-landlock-", dir="/var/tmp"))
    base.chmod(0o755)
    secret = base / "secret.txt"
    secret.write_text("host data")
    secret.chmod(0o644)
    yield base
    for p in base.iterdir():
        p.unlink()
    base.rmdir()


@pytest.fixture
def no_namespaces(monkeypatch: pytest.MonkeyPatch) -> None:
    """The weaker mode, as on a machine without bubblewrap."""
    monkeypatch.setattr(process, "_bwrap_problem", lambda: "disabled by this test")


async def _run(source: str, weaker: list[str], network: bool = False) -> str:
    """Run ``source`` once; with "landlock" in ``weaker`` the layer is switched off (as
    on a kernel without it) and explicitly allowed to be missing."""
    with pytest.MonkeyPatch.context() as patch:
        if "landlock" in weaker:
            patch.setattr(landlock, "problem", lambda: "switched off by this test")
        host = ProcessHost(node="n", source=textwrap.dedent(source), allow_weaker=weaker,
                           network=network)
        with trio.fail_after(60):
            async with host:
                result = await host.process({"in": 1}, {})
    layer = host.confinement["landlock"]
    assert layer.startswith("MISSING" if "landlock" in weaker else f"ABI {landlock.abi()}")
    return str(result.outputs["out"])


_FILES = """
    import os
    def process(inputs):
        out = []
        for what, fn in (("read", lambda: open({secret!r}).read()),
                         ("write", lambda: open({dir!r} + "/planted", "w").write("x")),
                         ("list", lambda: os.listdir({dir!r}))):
            try:
                fn()
                out.append(what + ":ok")
            except OSError as exc:
                out.append(what + ":" + type(exc).__name__)
        return {{"out": " ".join(out)}}
"""


async def test_without_namespaces_landlock_keeps_the_script_out_of_host_files(
        outside: Path, no_namespaces: None) -> None:
    source = _FILES.format(secret=str(outside / "secret.txt"), dir=str(outside))
    # network: true, the weakest case (no namespace of any kind)
    contained = await _run(source, ["namespaces", "seccomp"], network=True)
    assert contained == "read:PermissionError write:PermissionError list:PermissionError"
    assert not (outside / "planted").exists()
    # the same script without the layer: the read and the listing get through (the
    # write is refused by the uid drop alone, when the tests run as root)
    open_ = await _run(source, ["namespaces", "seccomp", "landlock"], network=True)
    assert open_.startswith("read:ok") and "list:ok" in open_, open_


async def test_the_private_dir_and_the_interpreter_still_work(
        monkeypatch: pytest.MonkeyPatch) -> None:
    source = """
        import json, os, tempfile, decimal
        def process(inputs):
            with tempfile.NamedTemporaryFile("w", delete=False) as f:
                f.write("mine")
            data = open(f.name).read()
            os.unlink(f.name)
            return {"out": data + str(decimal.Decimal("1.5")) + json.dumps([1])}
    """
    assert await _run(source, []) == "mine1.5[1]"
    monkeypatch.setattr(process, "_bwrap_problem", lambda: "disabled by this test")
    for network in (False, True):  # the weaker mode once failed to start (EPERM: the
        # worker dropped a uid that setpriv had already dropped)
        assert await _run(source, ["namespaces", "seccomp"], network=network) == "mine1.5[1]"


async def test_an_abstract_socket_of_the_host_is_out_of_reach_with_network() -> None:
    name = f"reflowpy-landlock-{secrets.token_hex(4)}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + name)
    listener.listen(4)
    source = f"""
        import socket
        def process(inputs):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect("\\0" + {name!r})
                return {{"out": "connected"}}
            except OSError as exc:
                return {{"out": type(exc).__name__}}
    """
    try:
        assert await _run(source, [], network=True) == "PermissionError"
        assert await _run(source, ["landlock"], network=True) == "connected"
    finally:
        listener.close()


def test_the_ruleset_grants_only_what_it_names() -> None:
    rules = landlock.ruleset(read=["/usr"], write=["/tmp"], network=False)
    assert rules["deny_tcp"] is True
    assert "/usr" in rules["read"] and "/" not in rules["read"]  # type: ignore[operator]
    assert rules["write"] == ["/tmp", "/dev/null", "/dev/full"]
    assert landlock.ruleset(read=[], write=[], network=True)["deny_tcp"] is False
