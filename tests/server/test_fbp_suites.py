"""fbp-protocol's own test suite (fbp-test) and fbp-spec, run against `reflowpy serve`.

Both are the npm packages pinned in tests/js/package-lock.json; the server is a real
subprocess on an ephemeral port, stopped with SIGTERM (which must exit 0).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.server._proc import node_package, run_node, served_process

pytestmark = [pytest.mark.npm, pytest.mark.slow]

SPECS = Path(__file__).parent / "fbpspec"


def _counts(output: str) -> tuple[int, int]:
    passing = re.search(r"(\d+) passing", output)
    failing = re.search(r"(\d+) failing", output)
    return (int(passing.group(1)) if passing else 0, int(failing.group(1)) if failing else 0)


@pytest.mark.parametrize("secret", [None, "fbp-s3cret-token"])
async def test_fbp_protocol_suite_passes_22_of_22(tmp_path: Path, secret: str | None) -> None:
    suite = node_package("fbp-protocol")
    args = ["--data-dir", str(tmp_path / "data")]
    if secret:
        args += ["--token", secret]
    async with served_process(*args) as served:
        (tmp_path / "fbp-config.json").write_text(json.dumps({
            "name": "reflowpy", "host": "127.0.0.1", "port": served.port,
            "collection": "core", "version": "0.7"}))
        env = {"PROJECT_HOME": str(tmp_path)}
        if secret:
            env["FBP_PROTOCOL_SECRET"] = secret
        code, output = await run_node([str(suite / "bin" / "fbp-test")], env=env)
    assert _counts(output) == (22, 0), output
    assert code == 0
    if secret:
        assert secret not in served.output


async def test_fbp_protocol_suite_fails_with_a_wrong_secret(tmp_path: Path) -> None:
    suite = node_package("fbp-protocol")
    async with served_process("--data-dir", str(tmp_path / "data"), "--token", "right"
                              ) as served:
        (tmp_path / "fbp-config.json").write_text(json.dumps({
            "name": "reflowpy", "host": "127.0.0.1", "port": served.port,
            "collection": "core", "version": "0.7"}))
        code, output = await run_node([str(suite / "bin" / "fbp-test")],
                                      env={"PROJECT_HOME": str(tmp_path),
                                           "FBP_PROTOCOL_SECRET": "wrong"})
    assert code != 0
    assert _counts(output)[1] > 0


def _spec_files() -> list[Path]:
    return sorted(SPECS.glob("*.yaml"))


async def test_fbp_spec_suites_pass(tmp_path: Path) -> None:
    spec = node_package("fbp-spec")
    files = _spec_files()
    async with served_process("--data-dir", str(tmp_path / "data"), "--token", "spec"
                              ) as served:
        code, output = await run_node(
            [str(spec / "bin" / "fbp-spec"), "--address", f"ws://127.0.0.1:{served.port}/",
             "--secret", "spec", "--command-timeout", "10", *map(str, files)],
            timeout=300)
    assert code == 0, output
    passed = output.count(": ✓")
    assert "✗" not in output, output
    assert passed >= sum(1 for _ in files), output
