"""A minimal Chrome DevTools Protocol client for the browser tests (Debian ``chromium``).

Starts headless Chromium with the flags that work on this machine kind (no background
networking, a fresh profile), attaches to one page over the browser's DevTools WebSocket
(flattened sessions), records console errors and uncaught exceptions, and evaluates
JavaScript (``awaitPromise`` lets the page itself signal a condition: no sleeps).
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
from trio_websocket import WebSocketConnection, open_websocket_url

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--remote-debugging-port=0", "--window-size=1400,900"]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    """One attached page: ``call`` a CDP method, ``evaluate`` JavaScript."""

    def __init__(self, ws: WebSocketConnection, session: str) -> None:
        self.ws = ws
        self.session = session
        self._ids = itertools.count(1)
        self._waiting: dict[int, trio.MemorySendChannel[dict[str, Any]]] = {}
        self.console_errors: list[str] = []
        self.console: list[str] = []
        self._loaded = trio.Event()

    async def _reader(self) -> None:
        while True:
            msg = json.loads(await self.ws.get_message())
            if "id" in msg and msg["id"] in self._waiting:
                await self._waiting.pop(msg["id"]).send(msg)
                continue
            method = msg.get("method")
            params = msg.get("params", {})
            if method == "Page.loadEventFired":
                self._loaded.set()
            elif method == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", "")))
                                for a in params.get("args", []))
                self.console.append(f"{params.get('type')}: {text}")
                if params.get("type") in ("error", "assert"):
                    self.console_errors.append(text)
            elif method == "Runtime.exceptionThrown":
                d = params.get("exceptionDetails", {})
                self.console_errors.append(
                    str(d.get("exception", {}).get("description") or d.get("text")))
            elif method == "Log.entryAdded":
                entry = params.get("entry", {})
                if entry.get("level") == "error":
                    self.console_errors.append(f"{entry.get('source')}: {entry.get('text')}"
                                               f" {entry.get('url', '')}")

    async def call(self, method: str, params: dict[str, Any] | None = None,
                   session: bool = True) -> dict[str, Any]:
        i = next(self._ids)
        send, recv = trio.open_memory_channel[dict[str, Any]](1)
        self._waiting[i] = send
        msg: dict[str, Any] = {"id": i, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        await self.ws.send_message(json.dumps(msg))
        reply = await recv.receive()
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return dict(reply.get("result", {}))

    async def navigate(self, url: str) -> None:
        """Open ``url`` and return once its load event fired."""
        self._loaded = trio.Event()
        r = await self.call("Page.navigate", {"url": url})
        if r.get("errorText"):
            raise RuntimeError(f"navigate {url}: {r['errorText']}")
        with trio.fail_after(30):
            await self._loaded.wait()

    async def evaluate(self, expression: str) -> Any:
        r = await self.call("Runtime.evaluate", {"expression": expression,
                                                 "awaitPromise": True, "returnByValue": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"evaluate failed: {r['exceptionDetails']}")
        return r["result"].get("value")

    async def screenshot(self, path: str) -> None:
        r = await self.call("Page.captureScreenshot", {"format": "png"})
        with open(path, "wb") as f:
            f.write(base64.b64decode(r["data"]))


@asynccontextmanager
async def browser_page() -> AsyncIterator[Page]:
    exe = chromium_path()
    assert exe is not None
    profile = tempfile.mkdtemp(prefix="reflowpy-chromium-")
    proc = await trio.lowlevel.open_process(
        [exe, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = await _devtools_url(proc)
        async with open_websocket_url(url, max_message_size=64 * 1024 * 1024) as ws, \
                trio.open_nursery() as nursery:
            page = Page(ws, "")
            nursery.start_soon(page._reader)
            nursery.start_soon(_drain, proc)
            target = await page.call("Target.createTarget", {"url": "about:blank"},
                                     session=False)
            attached = await page.call("Target.attachToTarget",
                                       {"targetId": target["targetId"], "flatten": True},
                                       session=False)
            page.session = attached["sessionId"]
            for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
                await page.call(domain)
            yield page
            nursery.cancel_scope.cancel()
    finally:
        proc.terminate()
        with trio.move_on_after(10):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


async def _devtools_url(proc: trio.Process) -> str:
    assert proc.stderr is not None
    buf = b""
    with trio.fail_after(60):
        while b"DevTools listening on " not in buf or not buf.split(
                b"DevTools listening on ", 1)[1].count(b"\n"):
            chunk = await proc.stderr.receive_some(4096)
            if not chunk:
                raise RuntimeError(f"chromium exited before DevTools was up: {buf[-2000:]!r}")
            buf += chunk
    return buf.split(b"DevTools listening on ", 1)[1].split(b"\n", 1)[0].decode().strip()


async def _drain(proc: trio.Process) -> None:
    """Keep reading chromium's stderr so it never blocks on a full pipe."""
    assert proc.stderr is not None
    while await proc.stderr.receive_some(65536):
        pass
