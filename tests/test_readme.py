"""The README runs as written: its Python tour, and every ``reflowpy`` command it shows."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TEXT = README.read_text()


def test_readme_tour_runs_exactly_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", TEXT, flags=re.S)
    assert len(blocks) >= 2
    namespace: dict[str, object] = {}
    exec(compile("\n".join(blocks), str(README), "exec"), namespace)  # nothing added
    out = capsys.readouterr().out
    assert "{'result': [1, 2, 3]}" in out
    assert "[1]" in out  # a fresh network: a fresh Counter
    assert "['c', 'd']" in out


def _commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", TEXT, flags=re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("reflowpy ")]


def test_readme_names_no_place_outside_the_repository() -> None:
    assert "http://" not in TEXT and "https://" not in TEXT
    assert "../" not in TEXT
    for path in re.findall(r"`((?:docs|examples|tests|reflowpy|scripts)/[^`\s]*)`", TEXT):
        assert (ROOT / path.rstrip("/")).exists(), path
    assert "reflowpy.components" in TEXT  # the entry-point group is named


@pytest.mark.parametrize("command", _commands())
def test_readme_commands_run(command: str) -> None:
    if command.startswith("reflowpy serve"):
        pytest.skip("serve runs until stopped; tested in tests/server")
    args = shlex.split(command)[1:]
    proc = subprocess.run([sys.executable, "-m", "reflowpy.cli", *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, (command, proc.stderr)
    assert proc.stdout.strip(), command
    assert "Traceback" not in proc.stderr


def test_readme_commands_cover_the_cli() -> None:
    shown = {shlex.split(c)[1] for c in _commands()}
    assert {"run", "validate", "convert", "components"} <= shown
