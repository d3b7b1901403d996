"""Binding a non-loopback address, in a network namespace the test creates.

The namespace has its own ``lo`` with a second, non-loopback address (10.200.0.1), so
the server really binds a routable address without exposing anything on the host.
Needs root and ``ip``/``unshare`` (iproute2, util-linux; present in CI, which runs as root).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server._proc import ROOT

ADDRESS = "10.200.0.1"


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        if os.environ.get("CI"):
            pytest.fail("the bind tests need root and iproute2 in CI")
        pytest.skip("needs root and iproute2 (ip netns)")
    name = f"rfpy-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", name, "addr", "add", f"{ADDRESS}/24", "dev", "lo"],
                       check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def _serve(ns: str, tmp: Path, *args: str, env: dict[str, str] | None = None
           ) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "tests.server.testkit",
         "--host", ADDRESS, "--port", "0", "--data-dir", str(tmp / "data"), *args],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
                       **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _in_ns(ns: str, code: str) -> str:
    out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()


def _listening(proc: subprocess.Popen[str]) -> int:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.fullmatch(rf"listening on http://{re.escape(ADDRESS)}:(\d+)\n", line)
    assert match, (line, proc.stderr.read() if proc.poll() is not None and proc.stderr
                   else "")
    return int(match.group(1))


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return err


def test_non_loopback_bind_without_token_is_refused(netns: str, tmp_path: Path) -> None:
    proc = _serve(netns, tmp_path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, (out, err)
    assert "listening" not in out
    assert f"refusing to serve '{ADDRESS}' without a token" in err
    assert "Traceback" not in err


def test_insecure_overrides_the_refusal_loudly(netns: str, tmp_path: Path) -> None:
    proc = _serve(netns, tmp_path, "--insecure")
    try:
        port = _listening(proc)
        status = _in_ns(netns, f"import httpx; print(httpx.get('http://{ADDRESS}:{port}"
                               "/health').status_code)")
        assert status == "200"
    finally:
        err = _stop(proc)
    assert "INSECURE" in err and ADDRESS in err


def test_non_loopback_bind_with_a_token_from_the_environment(netns: str,
                                                             tmp_path: Path) -> None:
    token = uuid.uuid4().hex
    proc = _serve(netns, tmp_path, env={"REFLOWPY_TOKEN": token})
    try:
        port = _listening(proc)
        code = (f"import httpx; u='http://{ADDRESS}:{port}/health';"
                f" print(httpx.get(u).status_code,"
                f" httpx.get(u, headers={{'authorization': 'Bearer {token}'}}).status_code)")
        assert _in_ns(netns, code) == "401 200"
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert token.encode() not in cmdline
    finally:
        err = _stop(proc)
    assert token not in err and "INSECURE" not in err
