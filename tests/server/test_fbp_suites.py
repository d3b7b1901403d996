"""fbp-protocol's own test suite (fbp-test) and fbp-spec, run against `reflowpy serve`.

Both are the npm packages pinned in tests/js/package-lock.json; the server is a real
subprocess on an ephemeral port, stopped with SIGTERM (which must exit 0).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.server._proc import node_package, run_node, served_process
from tests.server.testkit import test_registry

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
    async with served_process(*args, token=secret) as served:
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
    async with served_process("--data-dir", str(tmp_path / "data"), token="right"
                              ) as served:
        (tmp_path / "fbp-config.json").write_text(json.dumps({
            "name": "reflowpy", "host": "127.0.0.1", "port": served.port,
            "collection": "core", "version": "0.7"}))
        code, output = await run_node([str(suite / "bin" / "fbp-test")],
                                      env={"PROJECT_HOME": str(tmp_path),
                                           "FBP_PROTOCOL_SECRET": "wrong"})
    assert code != 0
    assert _counts(output)[1] > 0


def _components_of(suite: dict[str, Any]) -> set[str]:
    names = {suite["topic"]}
    data = (suite.get("fixture") or {}).get("data", "")
    names |= set(re.findall(r"\(([\w-]+/[\w-]+)", data))
    names |= set(re.findall(r'"component":\s*"([^"]+)"', data))
    return names


def _suites(tmp_path: Path) -> tuple[Path, set[str]]:
    """Copy every suite into one directory (fbp-spec takes one file or directory);
    returns it and the topics covered. Each suite's components must be registered."""
    registry = test_registry()
    out = tmp_path / "specs"
    out.mkdir()
    topics: set[str] = set()
    for path in sorted(SPECS.glob("*.yaml")):
        for i, suite in enumerate(yaml.safe_load_all(path.read_text())):
            if not suite:
                continue
            missing = sorted(n for n in _components_of(suite) if n not in registry)
            assert not missing, f"{path.name} suite {i} needs unregistered {missing}"
            (out / f"{path.stem}-{i}.yaml").write_text(yaml.safe_dump(suite))
            topics.add(suite["topic"])
    return out, topics


async def test_fbp_spec_suites_pass(tmp_path: Path) -> None:
    spec = node_package("fbp-spec")
    specs, topics = _suites(tmp_path)
    assert len(topics) >= 10, topics  # at least 10 standard components are exercised
    async with served_process("--data-dir", str(tmp_path / "data"), token="spec"
                              ) as served:
        code, output = await run_node(
            [str(spec / "bin" / "fbp-spec"), "--address", f"ws://127.0.0.1:{served.port}/",
             "--secret", "spec", "--command-timeout", "30", str(specs)],
            timeout=300)
    assert code == 0, output
    assert "✗" not in output, output
    for topic in topics:
        assert topic in output, (topic, output)
