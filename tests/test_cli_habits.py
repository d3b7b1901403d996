"""CLI habits: exit codes, stdin, --version, logging, validate --json, broken pipes, plugin
errors, component config, relative paths, tracebacks of failing nodes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import reflowpy as rf
from reflowpy.cli import main

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "graphs"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _cli(*args: str, cwd: Path = ROOT, stdin: str | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reflowpy.cli", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd, input=stdin, env=env or ENV)


def _repeat_graph(tmp_path: Path, name: str = "g.json") -> Path:
    g = rf.Graph("cli")
    g.add_node("repeat", "core/Repeat")
    g.add_inport("numbers", "repeat", "in")
    g.add_outport("repeated", "repeat", "out")
    path = tmp_path / name
    g.save(path)
    return path


def test_version_and_log_levels(tmp_path: Path) -> None:
    proc = _cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"reflowpy {rf.__version__}"
    g = rf.Graph("log")
    g.add_node("log", "util/Log")
    g.add_inport("in", "log", "in")
    path = tmp_path / "log.json"
    g.save(path)
    quiet = _cli("run", str(path), "-i", "in=41")
    loud = _cli("-v", "run", str(path), "-i", "in=42")
    level = _cli("--log-level", "info", "run", str(path), "-i", "in=43")
    assert quiet.returncode == loud.returncode == level.returncode == 0
    assert "41" not in quiet.stderr
    assert "INFO" in loud.stderr and "42" in loud.stderr
    assert "43" in level.stderr
    assert _cli("--log-level", "loud", "run", str(path)).returncode == 2


def test_dash_reads_stdin_for_every_command(tmp_path: Path) -> None:
    text = _repeat_graph(tmp_path).read_text()
    proc = _cli("validate", "-", stdin=text)
    assert proc.returncode == 0 and "graph 'cli': ok" in proc.stdout
    proc = _cli("convert", "-", "--to", "fbp", stdin=text)
    assert proc.returncode == 0 and "repeat(core/Repeat)" in proc.stdout
    proc = _cli("run", "-", "-i", "numbers=7", stdin=text)
    assert proc.returncode == 0 and json.loads(proc.stdout) == {"port": "repeated",
                                                                "value": 7}
    proc = _cli("validate", "-", stdin="{nope")
    assert proc.returncode == 3 and "<stdin>, line 1, column 2" in proc.stderr


def test_validate_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--json", str(FIXTURES / "reflow_pipeline.json")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["loaded"] and report["graph"] == "pipeline"
    lonely = tmp_path / "w.fbp"
    lonely.write_text("lonely(x)\n")
    assert main(["validate", "--json", "--strict", str(lonely)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["ok"] and report["problems"][0]["kind"] == "orphan"
    bad = tmp_path / "bad.yaml"
    bad.write_text("processes:\n  a: {component: x}\n  a: {component: y}\n")
    assert main(["validate", "--json", str(bad)]) == 3
    report = json.loads(capsys.readouterr().out)
    assert report == {"file": str(bad), "ok": False, "loaded": False,
                      "error": report["error"], "format": "yaml",
                      "where": f"{bad}, line 3, column 3", "problems": []}
    assert "defined twice" in report["error"]


def test_exit_codes_are_distinct(tmp_path: Path) -> None:
    good = _repeat_graph(tmp_path)
    assert _cli("run", str(good), "-i", "nonsense").returncode == 2
    assert _cli("run", str(good), "--registry", "nomodule:X").returncode == 2
    assert _cli("run", str(good), "--bogus").returncode == 2
    (tmp_path / "bad.fbp").write_text("A(B) -> -> C\n")
    assert _cli("run", str(tmp_path / "bad.fbp")).returncode == 3
    assert _cli("convert", str(tmp_path / "bad.fbp"), "--to", "yaml").returncode == 3
    assert _cli("validate", str(tmp_path / "missing.json")).returncode == 3
    unknown = rf.Graph("u")
    unknown.add_node("x", "no/Such")
    unknown.save(tmp_path / "unknown.json")
    proc = _cli("run", str(tmp_path / "unknown.json"))
    assert proc.returncode == 3 and "no component 'no/Such'" in proc.stderr


def test_messages_on_an_unconsumed_error_port_fail_the_run(tmp_path: Path) -> None:
    g = rf.Graph("parse")
    g.add_node("parse", "transform/JsonParse")
    g.add_inport("text", "parse", "in")
    g.add_outport("value", "parse", "out")
    g.save(tmp_path / "parse.json")
    ok = _cli("run", str(tmp_path / "parse.json"), "-i", 'text="[1]"')
    assert ok.returncode == 0 and json.loads(ok.stdout)["value"] == [1]
    proc = _cli("run", str(tmp_path / "parse.json"), "-i", 'text="[1"')
    assert proc.returncode == 1, proc.stderr
    assert "node 'parse' sent to its 'error' port, which nothing consumes" in proc.stderr
    assert proc.stdout == ""  # the error is not an output of the graph


def test_a_failing_node_is_reported_with_its_exception_type(tmp_path: Path) -> None:
    (tmp_path / "mynodes.py").write_text(
        "import reflowpy as rf\n"
        "@rf.actor(inports=['in'], outports=['out'])\n"
        "def lookup(ctx):\n"
        "    return {'out': {'a': 1}[ctx.inputs['in']]}\n"
        "REGISTRY = rf.default_registry()\n"
        "REGISTRY.register('demo/Lookup', lookup)\n")
    g = rf.Graph("lookup")
    g.add_node("usr", "demo/Lookup")
    g.add_inport("key", "usr", "in")
    g.add_outport("value", "usr", "out")
    g.save(tmp_path / "lookup.json")
    # --registry imports from the current directory, as `python -m` would
    proc = _cli("run", "lookup.json", "--registry", "mynodes:REGISTRY", "-i", "key=zzz",
                cwd=tmp_path, env={k: v for k, v in ENV.items() if k != "PYTHONPATH"}
                | {"PYTHONPATH": str(ROOT)})
    assert proc.returncode == 1, proc.stderr
    assert "node 'usr' failed on port 'in'" in proc.stderr
    assert "KeyError: 'zzz'" in proc.stderr
    # the traceback shows the user's frame and line, not the runtime's own frames
    assert "mynodes.py:4 in lookup" in proc.stderr
    assert "return {'out': {'a': 1}[ctx.inputs['in']]}" in proc.stderr
    assert f"{os.sep}reflowpy{os.sep}network" not in proc.stderr


def test_broken_pipe_is_quiet(tmp_path: Path) -> None:
    g = rf.Graph("many")
    g.add_node("tick", "time/Interval", {"interval": 0.0005, "max": 100000})
    g.add_outport("tick", "tick", "out")
    g.save(tmp_path / "many.json")
    child = subprocess.Popen([sys.executable, "-m", "reflowpy.cli", "run",
                              str(tmp_path / "many.json")], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=ENV)
    assert child.stdout is not None and child.stderr is not None
    assert child.stdout.readline()  # it runs and prints
    child.stdout.close()  # as `| head -1` does
    err = child.stderr.read().decode()
    assert child.wait(timeout=60) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_relative_paths_resolve_against_the_graph_folder() -> None:
    proc = _cli("run", "examples/word_count.json")
    assert proc.returncode == 0, proc.stderr
    assert '"the": 3' in proc.stdout and "FileNotFoundError" not in proc.stderr
    proc = _cli("run", "examples/word_count.json", "--cwd", ".")  # overridden: not found
    assert proc.returncode == 1 and "data/words.txt" in proc.stderr + proc.stdout


def test_a_broken_plugin_is_reported_once_and_skipped(tmp_path: Path) -> None:
    dist = tmp_path / "brokenplugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[reflowpy.components]\nbroken = no_such_module_xyz:Thing\n")
    env = {**ENV, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
    proc = _cli("components", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "core/Repeat" in proc.stdout
    assert proc.stderr.count("WARNING") == 1 and "plugin 'broken' skipped" in proc.stderr
    assert "No module named 'no_such_module_xyz'" in proc.stderr
    assert "Traceback" not in proc.stderr
    with pytest.raises(rf.ComponentError, match="no_such_module_xyz"):
        sys.path.insert(0, str(tmp_path))
        try:
            rf.Registry().load_entry_points()
        finally:
            sys.path.remove(str(tmp_path))


def test_components_show_config_structs(tmp_path: Path) -> None:
    (tmp_path / "cfgreg.py").write_text(
        "import msgspec\nimport reflowpy as rf\n"
        "class Chunk(rf.Actor):\n"
        "    '''Cuts text into chunks.'''\n"
        "    inports = ['in']; outports = ['out']\n"
        "    class Config(msgspec.Struct):\n"
        "        size: int = 10\n"
        "        mode: str = 'lines'\n"
        "        path: str | None = None\n"
        "REGISTRY = rf.Registry()\n"
        "REGISTRY.register('demo/Chunk', Chunk)\n"
        "REGISTRY.register('demo/Plain', rf.actor(inports=['in'])(lambda ctx: None))\n")
    proc = _cli("components", "--registry", "cfgreg:REGISTRY", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert 'cfg  size:int=10, mode:str="lines", path:str | None=null' in proc.stdout
    proc = _cli("components", "--registry", "cfgreg:REGISTRY", "--json", cwd=tmp_path)
    entries = {e["name"]: e for e in json.loads(proc.stdout)}
    assert entries["demo/Chunk"]["config"][0] == {"name": "size", "type": "int",
                                                  "required": False, "default": 10}
    assert entries["demo/Chunk"]["config_schema"]["$defs"]["Config"]["properties"]["size"] \
        == {"type": "integer", "default": 10}
    assert entries["demo/Plain"]["config"] is None
    proc = _cli("components", "--registry", "cfgreg:REGISTRY", "demo/Chunk", cwd=tmp_path)
    assert proc.returncode == 0
    assert "Cuts text into chunks." in proc.stdout and "size: int = 10" in proc.stdout
    assert "JSON Schema:" in proc.stdout
    proc = _cli("components", "--registry", "cfgreg:REGISTRY", "demo/Chnk", cwd=tmp_path)
    assert proc.returncode == 2 and "did you mean 'demo/Chunk'" in proc.stderr


def test_progress_line_on_a_terminal_only(tmp_path: Path) -> None:
    import pty

    g = rf.Graph("slow")
    g.add_node("tick", "time/Interval", {"interval": 0.05, "max": 50})
    g.add_outport("tick", "tick", "out")
    g.save(tmp_path / "slow.json")
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "reflowpy.cli", "run",
                               str(tmp_path / "slow.json")], stdout=subprocess.PIPE,
                              stderr=follower, timeout=120, env={**ENV, "TERM": "xterm"})
        os.close(follower)
        follower = -1
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    assert proc.returncode == 0
    assert len(proc.stdout.splitlines()) == 50
    assert b"reflowpy run: " in seen and b"tick: " in seen and b"messages processed" in seen
    plain = _cli("run", str(tmp_path / "slow.json"))  # stderr is a pipe: no progress line
    assert plain.returncode == 0 and "messages processed" not in plain.stderr


def test_the_api_under_asyncio_says_how_instead_of_crashing() -> None:
    import asyncio

    g = rf.Graph("x")
    g.add_node("r", "core/Repeat")
    g.add_inport("i", "r", "in")
    g.add_outport("o", "r", "out")
    registry = rf.default_registry()

    async def main() -> dict[str, list[int]]:
        with pytest.raises(rf.NetworkError, match="asyncio.to_thread"):
            async with rf.Network(g, registry):
                pass  # pragma: no cover - refused on entry
        net = rf.Network(g, registry)
        with pytest.raises(rf.NetworkError, match="asyncio.to_thread"):
            await net.start()  # (trio's "must be called from async context")
        for call in (lambda: net.send("i", 1), net.idle):
            with pytest.raises(rf.NetworkError):
                await call()
        await net.stop()  # (a network never started stops at once, under any loop)
        return await asyncio.to_thread(rf.run, g, {"i": [1, 2]}, registry)  # the way

    assert asyncio.run(main()) == {"o": [1, 2]}


def test_endless_and_oversized_files_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                 ) -> None:
    # /dev/zero never ends: reading stops one byte past the limit (it read until memory ran
    # out); a regular file, stdin and a map file over the limit are refused the same way
    proc = _cli("validate", "/dev/zero")
    assert proc.returncode == 3, proc.stderr
    assert "/dev/zero" in proc.stderr and "MiB" in proc.stderr and "Traceback" not in proc.stderr
    from reflowpy.network.formats import _limits

    monkeypatch.setattr(_limits, "MAX_TEXT_BYTES", 100)
    big = tmp_path / "big.fbp"
    big.write_text("a(core/Repeat) OUT -> IN b(core/Repeat)\n" * 3)
    with pytest.raises(rf.GraphFormatError, match="big.fbp.*longer than"):
        rf.load(big)
    with pytest.raises(rf.GraphFormatError, match="map.*longer than"):
        from reflowpy.network.formats import mapping
        mapping.load(big)
    small = tmp_path / "small.fbp"
    small.write_text("a(core/Repeat) OUT -> IN b(core/Repeat)\n")
    assert set(rf.load(small).nodes) == {"a", "b"}


@pytest.mark.parametrize("fmt", ["reflow", "noflo", "yaml", "fbp"])
def test_a_byte_order_mark_is_not_part_of_the_graph(tmp_path: Path, fmt: str) -> None:
    g = rf.Graph("bom")
    g.add_node("r", "core/Repeat")
    g.add_inport("numbers", "r", "in")
    text = rf.network.formats.dumps(g, fmt)
    path = tmp_path / f"g.{'fbp' if fmt == 'fbp' else 'yaml' if fmt == 'yaml' else 'json'}"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert rf.load(path).nodes.keys() == g.nodes.keys()
    proc = _cli("validate", str(path))
    assert proc.returncode == 0, proc.stderr
    for encoding in ("utf-16", "utf-16-le", "utf-16-be"):
        bom = "\ufeff" if encoding != "utf-16" else ""
        path.write_bytes((bom + text).encode(encoding))
        assert rf.load(path).nodes.keys() == g.nodes.keys()
    path.write_bytes(b"\xff\xfe" + b"\x00\xd8")  # a lone surrogate in UTF-16
    with pytest.raises(rf.GraphFormatError, match="not UTF-16 text"):
        rf.load(path)


@pytest.mark.parametrize(("value", "expected"), [
    ("9" * 5000, "out of range"), ("1e999", "out of range"),
    ('"\\ud800"', "not valid JSON"), ("{bad", "not valid JSON"), ("[1,", "not valid JSON"),
    ("[" * 900 + "]" * 900, "nested more deeply"), ("[" * 60000 + "]" * 60000, "nested"),
])
def test_input_values_no_message_can_hold_are_refused(tmp_path: Path, value: str,
                                                      expected: str) -> None:
    # each of these printed a traceback (UnicodeEncodeError, RecursionError in freeze)
    # or sent something else than was written (1e999 as inf)
    proc = _cli("run", str(_repeat_graph(tmp_path)), "--input", f"numbers={value}")
    assert proc.returncode in (1, 2) and expected in proc.stderr, proc.stderr[-500:]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_input_bare_words_and_json_values(tmp_path: Path) -> None:
    proc = _cli("run", str(_repeat_graph(tmp_path)), "-i", "numbers=plain", "-i",
                "numbers=", "-i", 'numbers="x"', "-i", "numbers=[1, {\"a\": null}]",
                "-i", "numbers=18446744073709551615", "-i", "numbers=NaN")
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(x)["value"] for x in proc.stdout.splitlines()] == [
        "plain", "", "x", [1, {"a": None}], 18446744073709551615, "NaN"]


def test_registry_modules_that_are_no_names_or_fail_are_usage_errors(tmp_path: Path) -> None:
    # '../x' raised TypeError from importlib; a module or factory that fails showed a
    # traceback instead of its own line
    (tmp_path / "badmod.py").write_text("x = 1 / 0\n")
    (tmp_path / "badcall.py").write_text("def make():\n    return {}['k']\n")
    # TypeError/ValueError/ImportError raised inside a module were "not a module name"
    # or "cannot import" the module itself
    (tmp_path / "badtype.py").write_text("x = len(5)\n")
    (tmp_path / "badvalue.py").write_text("x = int('five')\n")
    (tmp_path / "baddep.py").write_text("import no_such_dependency_here\n")
    graph = str(_repeat_graph(tmp_path))
    env = {k: v for k, v in ENV.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(ROOT)
    for spec, expected in (("../x:y", "is not a module name"), (".x:y", "is not a module name"),
                           ("badmod:x", "ZeroDivisionError"), ("badcall:make", "KeyError"),
                           ("badtype:x", "badtype.py:1 in <module>: x = len(5)"),
                           ("badvalue:x", "ValueError: invalid literal"),
                           ("baddep:x", "ModuleNotFoundError: No module named"
                                        " 'no_such_dependency_here'\n    at "),
                           ("nosuchmodule:x", "cannot import 'nosuchmodule'")):
        proc = _cli("validate", graph, "--registry", spec, cwd=tmp_path, env=env)
        assert proc.returncode == 2 and expected in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    proc = _cli("validate", graph, "--registry", "badmod:x", cwd=tmp_path, env=env)
    assert f"at {tmp_path / 'badmod.py'}:1 in <module>: x = 1 / 0" in proc.stderr
    assert "importlib" not in proc.stderr


def test_a_recursive_subgraph_is_refused_by_run_and_validate(tmp_path: Path) -> None:
    # 'reflowpy run' of a graph whose subgraph used itself hung, nesting networks
    graphs = tmp_path / "graphs"
    graphs.mkdir()
    (graphs / "A.fbp").write_text("INPORT=x.IN:IN\nOUTPORT=x.OUT:OUT\nx(B)\n")
    (graphs / "B.fbp").write_text("INPORT=x.IN:IN\nOUTPORT=x.OUT:OUT\nx(A)\n")
    proc = _cli("run", str(graphs / "A.fbp"), "--graphs", str(graphs), "-i", "in=1")
    assert proc.returncode == 3 and "contains itself (B -> A -> B)" in proc.stderr
    proc = _cli("validate", str(graphs / "A.fbp"), "--graphs", str(graphs), "--json")
    assert proc.returncode == 1
    [problem] = json.loads(proc.stdout)["problems"]
    assert problem["kind"] == "recursive_subgraph" and problem["node"] == "x"


def test_validate_and_convert_take_a_workspace_folder_as_run_does() -> None:
    # both said "cannot read ...: Is a directory" for the folder run composes
    folder = ROOT / "tests" / "fixtures" / "foreign" / "reflow-workspace"
    proc = _cli("validate", str(folder), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["graph"] == "reflow-workspace"
    proc = _cli("convert", str(folder), "--to", "reflow")
    assert proc.returncode == 0, proc.stderr
    composed = rf.network.formats.loads(proc.stdout)
    assert any(node.startswith("collector/") for node in composed.nodes)
