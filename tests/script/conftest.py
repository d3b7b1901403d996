"""Fixtures for the script sandboxes: a reachable Docker engine + image, a C->WASM compiler.

Docker tests skip only when no engine is reachable; with REFLOWPY_REQUIRE_DOCKER=1
(set by .ci/run) a missing engine or image is a failure instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from reflowpy.script.docker import docker_available

IMAGE = os.environ.get("REFLOWPY_TEST_PYTHON_IMAGE", "reflowpy/python:3.11-slim")
INCLUDE = Path(__file__).resolve().parents[2] / "reflowpy" / "script" / "include"
REQUIRE = os.environ.get("REFLOWPY_REQUIRE_DOCKER") == "1"


def _missing(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"REFLOWPY_REQUIRE_DOCKER=1 but {reason}; run `make docker`")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_image() -> str:
    """The local Python image name, once a Docker engine answers and has it."""
    reason = docker_available()
    if reason is not None:
        _missing(f"no Docker engine reachable ({reason})")
    found = subprocess.run(
        ["docker", "image", "inspect", IMAGE], capture_output=True, timeout=30
    ).returncode == 0
    if not found:
        _missing(f"Docker image {IMAGE} is missing (scripts/docker-setup.sh builds it)")
    return IMAGE


@pytest.fixture(scope="session")
def build_c(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], bytes]:
    """Compile a C plugin (including reflowpy_plugin.h) to wasm32 with clang + lld."""
    clang = shutil.which("clang")
    if clang is None or shutil.which("wasm-ld") is None:
        _missing("clang/wasm-ld not installed (apt-get install clang lld)")
    out_dir = tmp_path_factory.mktemp("wasm")

    def build(source: str, name: str = "plugin") -> bytes:
        src = out_dir / f"{name}.c"
        src.write_text(source)
        wasm = out_dir / f"{name}.wasm"
        subprocess.run(
            [clang, "--target=wasm32", "-O2", "-nostdlib", "-Wl,--no-entry",
             "-Wl,--export-dynamic", f"-I{INCLUDE}", str(src), "-o", str(wasm)],
            check=True, capture_output=True, timeout=120,
        )
        return wasm.read_bytes()

    return build
