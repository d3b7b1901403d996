"""Every CLI command on hostile graph files: an exit status from the documented set and a
``reflowpy: error:`` line, never a traceback (seeded hypothesis, the fuzz seed corpus)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reflowpy.cli import main
from tests.network.test_formats_fuzz import SEEDS, _guard, mutated
from tests.scale import long_scale

COMMANDS = [
    ["validate"], ["validate", "--json"], ["validate", "--strict", "--registry", "default"],
    ["convert", "--to", "reflow"], ["convert", "--to", "noflo"], ["convert", "--to", "fbp"],
    ["convert", "--to", "yaml"],
    ["run", "--registry", "tests.safe_registry:SAFE", "--timeout", "5", "-i", "in=1"],
]
ALLOWED = {0, 1, 2, 3}


def _cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with _guard(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


def _check(command: list[str], path: Path, tmp: Path) -> int:
    args = [*command[:1], str(path), *command[1:]]
    if command[0] == "run":
        args += ["--cwd", str(tmp)]
    code, _, err = _cli(args)
    assert code in ALLOWED, (args, code, err)
    assert "Traceback" not in err, err
    if code in (2, 3):
        assert "reflowpy: error: " in err, err
    return code


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c[:3]) for c in COMMANDS])
def test_every_command_on_the_seed_corpus(command: list[str], tmp_path: Path) -> None:
    codes = [_check(command, path, tmp_path) for path in SEEDS if path.suffix != ".md"]
    if command[0] != "run":
        assert codes.count(3) >= 45  # the corpus is mostly refused, as it should be


@settings(max_examples=long_scale(400),
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=mutated(), command=st.sampled_from(COMMANDS),
       suffix=st.sampled_from([".json", ".fbp", ".yaml"]))
def test_every_command_on_mutated_files(text: bytes, command: list[str], suffix: str,
                                        tmp_path: Path) -> None:
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(text)
    _check(command, path, tmp_path)
