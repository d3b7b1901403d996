"""Bounded decoding of sandbox payloads: the pre-scan agrees with msgspec and stops bombs.

Property tests (any value within limits passes and decodes unchanged; any byte string
either passes the scan or is refused with a named limit, never another exception),
the checked-in corpus of forged frames in ``tests/script/corpus/`` (each refused
with the limit its name says, with the host's allocation during the refusal bounded),
and the worker-frame path that turns every refusal into ScriptProtocolError.
"""

from __future__ import annotations

import contextlib
import struct
import tracemalloc
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reflowpy.errors import ScriptProtocolError
from reflowpy.script import protocol as P
from reflowpy.script.bounds import PayloadTooComplex, check_json, check_msgpack
from reflowpy.script.host import sanitize_log
from tests.scale import long_scale

CORPUS = Path(__file__).with_name("corpus")

values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda children: st.lists(children, max_size=20)
    | st.dictionaries(st.text(max_size=10), children, max_size=20),
    max_leaves=80,
)


def _depth(value: Any) -> int:
    # Nesting of non-empty containers: an empty one holds nothing and costs one value.
    if isinstance(value, list) and value:
        return 1 + max(map(_depth, value))
    if isinstance(value, dict) and value:
        return 1 + max(map(_depth, value.values()))
    return 0


@settings(max_examples=long_scale(100))
@given(values)
def test_values_within_limits_pass_both_scanners(value: Any) -> None:
    check_msgpack(msgspec.msgpack.encode(value))
    check_json(msgspec.json.encode(value))


@settings(max_examples=long_scale(100))
@given(values, st.integers(min_value=1, max_value=6))
def test_depth_limit_is_exact(value: Any, max_depth: int) -> None:
    data = msgspec.msgpack.encode(value)
    deep = _depth(value) > max_depth and len(data) > max_depth
    try:
        check_msgpack(data, max_depth=max_depth)
    except PayloadTooComplex as exc:
        assert exc.limit == "max_depth" and deep
    else:
        assert not deep


@settings(max_examples=long_scale(1000))
@given(st.binary(max_size=200))
def test_random_bytes_never_escape_as_another_exception(data: bytes) -> None:
    for check in (check_msgpack, check_json):
        try:
            check(data, 50, 4)
        except PayloadTooComplex as exc:
            assert exc.limit in ("max_items", "max_depth", "truncated")
    with contextlib.suppress(ScriptProtocolError):
        P.decode_worker_message(data, 50, 4)


def _corpus() -> list[Path]:
    return sorted(CORPUS.glob("*.bin"))


@pytest.mark.parametrize("path", _corpus(), ids=lambda p: p.stem)
def test_forged_frame_corpus_is_refused_cheaply(path: Path) -> None:
    # Name: <limit>--<what>.bin. The refusal allocates almost nothing: the scan runs
    # before msgspec builds any object (on main the 2 MiB one cost ~150 MB).
    body = path.read_bytes()
    limit = path.stem.split("--")[0]
    tracemalloc.start()
    try:
        with pytest.raises(ScriptProtocolError) as info:
            P.decode_worker_message(body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert limit in str(info.value)
    assert peak < 1 << 20, f"refusing {path.name} allocated {peak} bytes"


def test_corpus_is_present() -> None:
    assert len(_corpus()) >= 5


def test_recursion_error_is_a_protocol_error() -> None:
    # A frame deeper than msgspec's own recursion guard, with the depth limit raised.
    body = b"\x94\xa6output\x01\xa3out" + b"\x91" * 20000 + b"\xc0"
    with pytest.raises(ScriptProtocolError, match="RecursionError|malformed"):
        P.decode_worker_message(body, max_depth=100_000)


def test_log_lines_cannot_forge_host_lines() -> None:
    forged = "fine\n2026-12-01 ERROR reflowpy.server: token=abc\r\x1b[2J"
    clean = sanitize_log(forged)
    assert "\n" not in clean and "\r" not in clean and "\x1b" not in clean
    assert "\\x0a2026-12-01 ERROR" in clean
    assert sanitize_log("tab\tand unicode é") == "tab\tand unicode é"


def _write_corpus() -> None:  # pragma: no cover - regenerates the checked-in files
    CORPUS.mkdir(exist_ok=True)
    many = 270_000  # just over the default max_items; the live test forges 2 MiB
    files = {
        "max_items--empty-arrays": b"\x94\xa6output\x01\xa3out\xdd"
        + struct.pack(">I", many) + b"\x90" * many,
        "max_items--empty-maps-in-result": b"\x94\xa6result\x01\x81\xa3out\xdd"
        + struct.pack(">I", many) + b"\x80" * many,
        "max_depth--5000-deep": b"\x94\xa6output\x01\xa3out" + b"\x91" * 5000 + b"\xc0",
        "max_depth--deep-maps-in-state": b"\x94\xa6result\x01\xc0" + b"\x81\xa1k" * 3000
        + b"\xc0",
        "truncated--array-of-4g": b"\x94\xa6output\x01\xa3out\xdd\xff\xff\xff\xff\x90",
        "max_items--log-of-small-ints": b"\x93\xa3log\xa4info\xdd"
        + struct.pack(">I", 300_000) + b"\x01" * 300_000,
    }
    for name, data in files.items():
        (CORPUS / f"{name}.bin").write_bytes(data)


if __name__ == "__main__":  # pragma: no cover
    _write_corpus()
