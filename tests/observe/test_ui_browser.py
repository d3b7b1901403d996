"""The live page in headless Chromium (Debian ``chromium``, installed by
scripts/setup-chromium.sh): it loads with no console errors, shows the nodes of a running
graph, updates a counter live over SSE, follows a clicked node's packets in the packet
timeline, lists a real bridge peer connected to the server's ``/bridge``, and a
screenshot is saved as a test artifact (``$REFLOWPY_ARTIFACTS`` or ``test-artifacts/``
at the repository root)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import trio

import reflowpy as rf
from reflowpy.bridge import BridgedNetwork, Peer, Peers
from tests.observe.cdp import browser_page, chromium_path
from tests.observe.conftest import feed, start_doubler
from tests.server.conftest import Served

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    chromium_path() is None and not os.environ.get("CI"),
    reason="needs Debian chromium (scripts/setup-chromium.sh); required when CI is set")


def artifact_dir() -> Path:
    d = Path(os.environ.get("REFLOWPY_ARTIFACTS") or ROOT / "test-artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


# Resolves once the page shows ``n`` nodes; the page signals it (no polling from here).
_WAIT_NODES = """new Promise((resolve, reject) => {
  const t = setTimeout(() => reject(new Error('nodes never appeared')), 20000);
  const check = () => {
    const n = document.querySelectorAll('#graph g.node').length;
    if (n >= %d) { clearTimeout(t); resolve(n); return true; } return false; };
  if (!check()) new MutationObserver((_, obs) => { if (check()) obs.disconnect(); })
    .observe(document.body, {subtree: true, childList: true, characterData: true});
})"""


# Resolves once the counter shows ``text`` (at once if it already does: an update that
# landed before this promise started counts; the page is never reloaded meanwhile).
_WAIT_TEXT = """new Promise((resolve, reject) => {
  const t = setTimeout(() => reject(new Error('counter never showed ' + %s)), 20000);
  const check = () => {
    const el = document.querySelector('[data-counter="d"]');
    if (el && el.textContent.includes(%s)) {
      clearTimeout(t); resolve(el.textContent); return true; }
    return false; };
  if (!check()) new MutationObserver((_, obs) => { if (check()) obs.disconnect(); })
    .observe(document.body, {subtree: true, childList: true, characterData: true});
})"""


_TIMELINE_ROWS = "document.querySelectorAll('#timeline tbody tr').length"
_TIMELINE_TEXT = ("[...document.querySelectorAll('#timeline tbody tr')]"
                  ".map(tr => [...tr.children].map(td => td.textContent).join(' '))")

# Resolves with the peer rows once the (hidden until then) peers panel shows one up.
_WAIT_PEERS = """new Promise((resolve, reject) => {
  const t = setTimeout(() => reject(new Error('no bridge peer appeared')), 30000);
  const check = () => {
    const box = document.getElementById('peers');
    const rows = [...box.querySelectorAll('tbody tr')];
    if (!box.hidden && rows.length && box.querySelector('tbody td.up')) {
      clearTimeout(t); resolve(rows.map(r => r.textContent)); return true; }
    return false; };
  if (!check()) new MutationObserver((_, obs) => { if (check()) obs.disconnect(); })
    .observe(document.body, {subtree: true, childList: true, attributes: true});
})"""


def _wait_text(text: str) -> str:
    return _WAIT_TEXT % (json.dumps(text), json.dumps(text))


async def _check_page(served: Served, url: str) -> None:
    async with served.client() as client, browser_page() as page:
        ex = await start_doubler(client)
        await feed(client, ex, [1, 2, 3], 3)
        await page.navigate(url)
        assert await page.evaluate(_WAIT_NODES % 2) == 2
        ids = await page.evaluate(
            "[...document.querySelectorAll('#graph g.node')].map(g => g.dataset.node)")
        assert sorted(ids) == ["d", "r"]
        # the view is sampled a few times a second: wait for the one with all 3
        assert "in 3" in await page.evaluate(_wait_text("in 3"))
        # a live update: 7 more messages arrive; the same page's counter follows over SSE
        await feed(client, ex, [4, 5, 6, 7, 8, 9, 10], 10)
        assert "in 10" in await page.evaluate(_wait_text("in 10"))
        rows = await page.evaluate("document.querySelectorAll('#nodes tbody tr').length")
        assert rows == 2
        # the packet timeline: click node d, keep packets coming until the panel has some
        await page.evaluate("document.querySelector('#graph g.node[data-node=\"d\"]')"
                            ".dispatchEvent(new MouseEvent('click', {bubbles: true}))")
        k = 11
        with trio.fail_after(30):
            while await page.evaluate(_TIMELINE_ROWS) < 2:
                await feed(client, ex, [k], k)
                k += 1
                await trio.sleep(0.05)
        rows = await page.evaluate(_TIMELINE_TEXT)
        assert all(" d." in r or "d.in" in r for r in rows), rows
        seqs = [int(r.split()[0]) for r in rows]
        assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs), rows
        assert "node d" in await page.evaluate(
            "document.getElementById('timeline-title').textContent")
        # a bridge peer: a network with a node placed on this server's /bridge
        async with trio.open_nursery() as nursery:
            done = trio.Event()
            up = trio.Event()

            async def bridged() -> None:
                g = rf.Graph("bridged")
                g.add_node("a", "core/Repeat")
                g.add_node("b", "core/Repeat", {"remote": "srv"})
                g.add_node("c", "core/Repeat")
                g.add_edge("a", "out", "b", "in")
                g.add_edge("b", "out", "c", "in")
                g.add_inport("in", "a", "in")
                g.add_outport("out", "c", "out")
                peers = Peers({"srv": Peer(served.ws_url + "/bridge", served.token)})
                async with BridgedNetwork(g, peers=peers) as bn:
                    await bn.network.send("in", 1)
                    async for _ in bn.network.outputs("out"):
                        break
                    up.set()
                    await done.wait()

            nursery.start_soon(bridged)
            with trio.fail_after(60):
                await up.wait()
            peers = await page.evaluate(_WAIT_PEERS)
            assert len(peers) == 1 and "remote:srv" in peers[0] and "up" in peers[0], peers
            await page.screenshot(str(artifact_dir() / "live-page.png"))
            done.set()
        assert page.console_errors == [], page.console_errors
        await client.post(f"/executions/{ex}/stop", json={})


async def test_live_page_in_chromium(served: Served) -> None:
    await _check_page(served, f"{served.url}/ui/")
    png = artifact_dir() / "live-page.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


FAILER = {
    "properties": {"name": "failer"},
    "processes": {"f": {"component": "test/Fail"}},
    "connections": [],
    "inports": {"x": {"process": "f", "port": "in"}},
    "outports": {"y": {"process": "f", "port": "out"}},
}

_WAIT_ERRORS = """new Promise((resolve, reject) => {
  const t = setTimeout(() => reject(new Error('errors never reached %d')), 20000);
  const check = () => {
    const b = document.querySelectorAll('#errors button.resend');
    if (b.length >= %d) {
      clearTimeout(t); resolve([...b].map(x => x.dataset.letter)); return true; }
    return false; };
  if (!check()) new MutationObserver((_, obs) => { if (check()) obs.disconnect(); })
    .observe(document.body, {subtree: true, childList: true});
})"""


async def test_dead_letter_resend_button(served: Served) -> None:
    async with served.client() as client, browser_page() as page:
        r = await client.post("/executions", json={"graph": FAILER})
        ex = r.json()["id"]
        await client.post(f"/executions/{ex}/inputs/x", json={"value": "boom"})
        await page.navigate(f"{served.url}/ui/#network={ex}")
        assert await page.evaluate(_WAIT_ERRORS % (1, 1)) == ["1"]
        await page.evaluate("document.querySelector('#errors button.resend').click()")
        # the re-sent message fails again: a new letter replaces the old one
        assert await page.evaluate(_WAIT_ERRORS.replace(
            "b.length >= %d", "b.length >= 1 && b[0].dataset.letter === '2'") % (2,)) == ["2"]
        letters = (await client.get(f"/executions/{ex}/dead-letters")).json()
        assert [d["id"] for d in letters] == [2]
        assert page.console_errors == [], page.console_errors
        await client.post(f"/executions/{ex}/stop", json={})
