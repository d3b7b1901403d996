"""Option values on the command line: every numeric option takes only what it can honour.

Found by hand before this test: ``run --timeout -5`` and ``--timeout nan`` crashed with
a trio traceback, ``serve --port 70000`` with a socket one, and ``serve
--max-connections -5`` started a server that silently refused every request. A server
that cannot listen (a port in use, a name that does not resolve, a data dir that cannot
be made) printed a traceback too. Now each is a usage error (exit 2) naming the option,
and a server that cannot listen never prints its ``listening on`` line.
"""

from __future__ import annotations

import contextlib
import io
import math
import socket
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reflowpy.cli import build_parser, main
from tests.scale import long_scale

# (argv before the value, option, the check a parsed value must pass)
PORT = ("port", lambda v: isinstance(v, int) and 0 <= v <= 65535)
SECONDS = ("seconds", lambda v: isinstance(v, float) and math.isfinite(v) and v >= 0)
POSITIVE = ("positive seconds", lambda v: isinstance(v, float) and math.isfinite(v) and v > 0)


def _at_least(n: int) -> tuple[str, object]:
    return (f"integer >= {n}", lambda v: isinstance(v, int) and v >= n)


OPTIONS = [
    (["run", "g.json"], "--timeout", SECONDS),
    (["run", "g.json"], "--trace-sample", _at_least(1)),
    (["serve"], "--port", PORT),
    (["serve"], "--max-connections", _at_least(1)),
    (["serve"], "--max-unauthenticated", _at_least(1)),
    (["serve"], "--max-per-peer", _at_least(1)),
    (["serve"], "--client-queue-bytes", _at_least(1)),
    (["serve"], "--max-frame", _at_least(1)),
    (["serve"], "--max-body", _at_least(1)),
    (["serve"], "--retention-count", _at_least(0)),
    (["serve"], "--retention-days", SECONDS),
    (["peers"], "--timeout", POSITIVE),
    (["trace", "list"], "--limit", _at_least(0)),
    (["trace", "replay"], "--timeout", POSITIVE),
]

_values = st.one_of(
    st.integers(-(2 ** 70), 2 ** 70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "-nan", "inf", "-inf", "1e999", "-0", "0", "0.0", " 5 ", "5s",
                     "", "0x10", "1_000", "9" * 5000, "\u0661\u0662", "+3", "1e-400"]),
    st.text(max_size=8),
)


def _parse(argv: list[str]) -> tuple[object, int | None, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            return build_parser().parse_args(argv), None, err.getvalue()
        except SystemExit as exc:
            return None, int(exc.code or 0), err.getvalue()


@settings(max_examples=long_scale(600), deadline=None)
@given(case=st.sampled_from(OPTIONS), text=_values)
def test_a_numeric_option_is_in_range_or_a_usage_error(
        case: tuple[list[str], str, tuple[str, object]], text: str) -> None:
    before, option, (kind, holds) = case
    args, code, err = _parse([*before, f"{option}={text}"])
    assert "Traceback" not in err
    if args is None:
        assert code == 2, (option, text, code, err)
        assert f"argument {option}:" in err, err
    else:
        value = getattr(args, option.lstrip("-").replace("-", "_"))
        assert holds(value), (option, text, value, kind)  # type: ignore[operator]


def _serve(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["serve", *argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def taken_port() -> object:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_port_in_use_is_refused_without_a_traceback(taken_port: int, tmp_path: Path) -> None:
    code, out, err = _serve("--port", str(taken_port), "--data-dir", str(tmp_path / "d"))
    assert code == 2, err
    assert f"cannot listen on 127.0.0.1:{taken_port}: Address already in use" in err
    assert "Traceback" not in err and "listening on" not in out


def test_a_bridge_port_in_use_is_refused_before_anything_listens(
        taken_port: int, tmp_path: Path) -> None:
    code, out, err = _serve("--port", "0", "--data-dir", str(tmp_path / "d"),
                            "--bridge-listen", f"127.0.0.1:{taken_port}")
    assert code == 2, err
    assert f"--bridge-listen '127.0.0.1:{taken_port}': cannot listen" in err
    assert "Traceback" not in err and "listening on" not in out


@pytest.mark.parametrize("argv, message", [
    (["--data-dir", "{file}"], "data dir '{file}': cannot keep the store there"),
    (["--workspace", "{file}/w"], "workspace '{file}/w': cannot create it"),
    (["--webhook-allow", "not-a-network"], "'not-a-network' is not a CIDR network"),
    (["--host", "name.invalid", "--insecure"], "cannot listen on name.invalid:0"),
])
def test_an_unusable_server_option_is_a_usage_error(
        argv: list[str], message: str, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    filled = [a.replace("{file}", str(blocker)) for a in argv]
    if "--data-dir" not in filled:
        filled += ["--data-dir", str(tmp_path / "d")]
    code, out, err = _serve("--port", "0", *filled)
    assert code == 2, err
    assert message.replace("{file}", str(blocker)) in err, err
    assert "Traceback" not in err and "listening on" not in out
