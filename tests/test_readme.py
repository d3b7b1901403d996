"""The README's Python tour runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import trio

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_tour_runs(capsys: object) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2
    namespace: dict[str, object] = {}
    exec(compile("\n".join(blocks), str(README), "exec"), namespace)
    trio.run(namespace["main"])  # type: ignore[arg-type]
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "{'result': [1, 2, 3]}" in out
    assert "[1]" in out  # a fresh network: a fresh Counter
