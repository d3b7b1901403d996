"""A real browser (headless Chromium) against the server: CORS and SSE with auth.

The page is served from another origin (another port), as a dashboard would be. It
posts an execution with the bearer token (a CORS preflight), gets a single-use ticket,
opens an ``EventSource`` on the outputs with it, and writes what happened into the
DOM, which ``--dump-dom`` prints. Chromium comes from scripts/setup-chromium.sh.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from tests.server.conftest import start_server
from tests.server.test_rest import GRAPH

TOKEN = "br0wser-t0ken"

PAGE = """<!doctype html><html><body><pre id="out">pending</pre><script>
const api = "%(api)s";
const out = document.getElementById("out");
const log = {};
function done() { out.textContent = "RESULT " + JSON.stringify(log); }
async function main() {
  try {
    const r = await fetch(api + "/executions", {method: "POST",
      headers: {"content-type": "application/json", "authorization": "Bearer %(token)s"},
      body: JSON.stringify({graph: %(graph)s, inputs: {x: [20, 21]}})});
    log.post = r.status;
    const ex = (await r.json()).id;
    const t = await fetch(api + "/auth/ticket", {method: "POST",
      headers: {"authorization": "Bearer %(token)s"}});
    const ticket = (await t.json()).ticket;
    const source = new EventSource(api + "/executions/" + ex +
                                   "/outputs/y?stream=true&ticket=" + ticket);
    log.values = [];
    source.addEventListener("value", (e) => {
      log.values.push(JSON.parse(e.data));
      if (log.values.length == 2) { source.close(); done(); }
    });
    source.onerror = () => { log.sse_error = true; source.close(); done(); };
  } catch (e) { log.error = String(e); done(); }
}
main();
</script></body></html>
"""


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: scripts/setup-chromium.sh installs it")
        pytest.skip("chromium is not installed (scripts/setup-chromium.sh)")
    return path


@pytest.fixture
def page_server(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    root = tmp_path / "site"
    root.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", "0", "--bind",
                             "127.0.0.1", "--directory", str(root)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"port (\d+)", line)
    assert match, line
    try:
        yield root, int(match.group(1))
    finally:
        proc.kill()
        proc.wait()


async def _browse(url: str) -> dict[str, object]:
    with trio.fail_after(90):
        result = await trio.run_process(
            [_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu",
             "--disable-dev-shm-usage", "--no-first-run", "--virtual-time-budget=15000",
             "--dump-dom", url], capture_stdout=True, capture_stderr=True, check=False)
    dom = result.stdout.decode(errors="replace")
    match = re.search(r"RESULT (\{.*?\})</pre>", dom)
    assert match, (dom[-2000:], result.stderr.decode(errors="replace")[-2000:])
    return json.loads(match.group(1).replace("&quot;", '"'))  # type: ignore[no-any-return]


@pytest.mark.slow
async def test_a_dashboard_on_an_allowed_origin_posts_and_streams(
        nursery: trio.Nursery, tmp_path: Path, page_server: tuple[Path, int]) -> None:
    root, page_port = page_server
    origin = f"http://127.0.0.1:{page_port}"
    served = await start_server(nursery, tmp_path / "d", token=TOKEN,
                                allow_origins=[origin], cors=True)
    (root / "page.html").write_text(PAGE % {"api": served.url, "token": TOKEN,
                                            "graph": json.dumps(GRAPH)})
    log = await _browse(f"{origin}/page.html")
    assert log == {"post": 201, "values": [40, 42]}, log
    served.shutdown.set()


@pytest.mark.slow
async def test_a_page_on_a_foreign_origin_is_stopped(
        nursery: trio.Nursery, tmp_path: Path, page_server: tuple[Path, int]) -> None:
    root, page_port = page_server
    served = await start_server(nursery, tmp_path / "d", token=TOKEN, cors=True,
                                allow_origins=["https://dash.example"])
    (root / "page.html").write_text(PAGE % {"api": served.url, "token": TOKEN,
                                            "graph": json.dumps(GRAPH)})
    log = await _browse(f"http://127.0.0.1:{page_port}/page.html")
    # the preflight is refused, so the browser never sends the POST
    assert "error" in log and "post" not in log, log
    assert served.state.executions.executions == {}
    assert served.state.guard.refused["cors_preflight"] >= 1
    served.shutdown.set()
