"""Run ``reflowpy serve`` (with the test registry) as a real subprocess."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "tests" / "js"


def node_package(name: str) -> Path:
    """``tests/js/node_modules/<name>``; skips (or fails under CI) when not installed."""
    path = JS / "node_modules" / name
    if not path.exists() or shutil.which("node") is None:
        if os.environ.get("CI") or os.environ.get("REFLOWPY_REQUIRE_DOCKER"):
            pytest.fail(f"{name} is not installed: run `npm ci` in tests/js (make js)")
        pytest.skip(f"{name} is not installed under tests/js (run `make js`)")
    return path


class ServedProcess:
    def __init__(self, process: trio.Process, port: int) -> None:
        self.process = process
        self.port = port
        self.output = ""
        #: Set when a test kills the server on purpose (no exit-code check then).
        self.killed = False


@asynccontextmanager
async def served_process(*args: str, startup: float = 20.0, token: str | None = None
                         ) -> AsyncIterator[ServedProcess]:
    """Start the server on an ephemeral port, yield it, then SIGTERM it and check it
    exits 0 (drained). ``token`` is passed as ``$REFLOWPY_TOKEN`` (never on argv)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    if token is not None:
        env["REFLOWPY_TOKEN"] = token
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tests.server.testkit", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=str(ROOT), env=env)
    assert process.stdout is not None
    buffer = b""
    try:
        with trio.fail_after(startup):
            while b"\n" not in buffer:
                chunk = await process.stdout.receive_some(4096)
                if not chunk:
                    raise AssertionError(f"server exited early: {buffer.decode()}")
                buffer += chunk
        line = buffer.split(b"\n", 1)[0].decode()
        match = re.fullmatch(r"listening on http://127\.0\.0\.1:(\d+)", line)
        assert match, f"unexpected first line {line!r}"
        served = ServedProcess(process, int(match.group(1)))
        async with trio.open_nursery() as nursery:
            async def drain_output() -> None:
                assert process.stdout is not None
                async for chunk in process.stdout:
                    served.output += chunk.decode(errors="replace")

            nursery.start_soon(drain_output)
            try:
                yield served
            finally:
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
                with trio.fail_after(20):
                    await process.wait()
        assert served.killed or process.returncode == 0, served.output
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def run_node(args: list[str], *, env: dict[str, str] | None = None,
                   timeout: float = 120.0) -> tuple[int, str]:
    """Run ``node args`` in tests/js with a timeout; returns (exit code, output)."""
    node = shutil.which("node")
    assert node is not None
    with trio.fail_after(timeout):
        result = await trio.run_process([node, *args], cwd=str(JS), check=False,
                                        capture_stdout=True, capture_stderr=True,
                                        env=dict(os.environ, **(env or {})))
    return result.returncode, (result.stdout + result.stderr).decode(errors="replace")
