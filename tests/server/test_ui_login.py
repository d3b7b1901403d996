"""The dashboard's browser login, driven in headless Chromium over the DevTools
protocol: opening /ui/ on a server with a token leads to the login form; a wrong
token is refused; the right one (typed into the form, posted in the body) sets an
HttpOnly session cookie, and the page and its API calls work with no token in any
URL. Plain HTTP checks of the same flow run without a browser."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from tests.server.conftest import Served, start_server
from tests.server.test_browser import _chromium

TOKEN = "ui-l0gin-t0ken"


class _Cdp:
    """A minimal Chrome DevTools Protocol client on one page session."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.session: str | None = None

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
        if self.session is not None:
            msg["sessionId"] = self.session
        await self.ws.send_message(json.dumps(msg))
        while True:
            reply = json.loads(await self.ws.get_message())
            if reply.get("id") == msg_id:
                assert "error" not in reply, reply
                return reply["result"]  # type: ignore[no-any-return]

    async def eval(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression,
                                 awaitPromise=True, returnByValue=True)
        return result["result"].get("value")

    async def until(self, expression: str, expected: Any) -> None:
        with trio.fail_after(30):
            while await self.eval(expression) != expected:
                await trio.sleep(0.05)


async def _browser(tmp_path: Path, nursery: trio.Nursery) -> tuple[trio.Process, str]:
    proc = await trio.lowlevel.open_process(
        [_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu",
         "--disable-dev-shm-usage", "--no-first-run", "--remote-debugging-port=0",
         f"--user-data-dir={tmp_path / 'profile'}", "about:blank"],
        stderr=-1, stdout=-3)
    assert proc.stderr is not None
    seen = b""
    with trio.fail_after(60):
        while (match := re.search(rb"DevTools listening on (ws://\S+)", seen)) is None:
            chunk = await proc.stderr.receive_some(4096)
            assert chunk, seen.decode(errors="replace")
            seen += chunk

    async def drain() -> None:
        assert proc.stderr is not None
        async for _ in proc.stderr:
            pass

    nursery.start_soon(drain)
    return proc, match.group(1).decode()


@pytest.mark.slow
async def test_browser_login_sets_a_cookie_and_no_url_carries_the_token(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    served = await start_server(nursery, tmp_path / "d", token=TOKEN)
    proc, url = await _browser(tmp_path, nursery)
    try:
        async with open_websocket_url(url, max_message_size=64 << 20) as ws:
            cdp = _Cdp(ws)
            target = (await cdp.call("Target.createTarget", url="about:blank"))["targetId"]
            cdp.session = (await cdp.call("Target.attachToTarget", targetId=target,
                                          flatten=True))["sessionId"]
            await cdp.call("Page.enable")
            await cdp.call("Page.navigate", url=f"{served.url}/ui/")
            await cdp.until("location.pathname + ' ' + document.readyState",
                            "/ui/login complete")
            # a wrong token: the form again, 401, no cookie
            await cdp.eval("document.getElementById('token').value = 'wrong';"
                           " document.getElementById('submit').click(); true")
            await cdp.until("document.getElementById('message') &&"
                            " document.getElementById('message').textContent",
                            "Wrong token.")
            assert not served.state.sessions._sessions
            await cdp.eval(f"document.getElementById('token').value = {TOKEN!r};"
                           " document.getElementById('submit').click(); true")
            await cdp.until("location.pathname + ' ' + document.readyState",
                            "/ui/ complete")
            # the page's own API calls are authenticated by the cookie alone
            assert await cdp.eval("fetch('/ui/api/networks').then(r => r.status)") == 200
            assert await cdp.eval("fetch('/executions').then(r => r.status)") == 200
            assert await cdp.eval("document.cookie") == ""  # HttpOnly: scripts cannot read it
            history = await cdp.call("Page.getNavigationHistory")
            urls = [e["url"] for e in history["entries"]]
            assert any(u.endswith("/ui/") for u in urls), urls
            assert not any(TOKEN in u for u in urls), urls
            resources = await cdp.eval(
                "performance.getEntries().map(e => e.name).join(' ')")
            assert TOKEN not in resources
            # logging out ends the session: the dashboard asks for the token again
            await cdp.eval("fetch('/auth/logout', {method: 'POST'}).then(r => r.status)")
            assert await cdp.eval("fetch('/executions').then(r => r.status)") == 401
    finally:
        proc.kill()
        await proc.wait()
    served.shutdown.set()


async def test_login_flow_over_plain_http(nursery: trio.Nursery, tmp_path: Path) -> None:
    served: Served = await start_server(nursery, tmp_path / "d", token=TOKEN)
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as c:
        r = await c.get("/ui/", headers={"accept": "text/html"})
        assert r.status_code == 303 and r.headers["location"] == "/ui/login"
        assert (await c.get("/ui/api/networks")).status_code == 401  # APIs: no redirect
        form = await c.get("/ui/login")
        assert form.status_code == 200 and 'name="token"' in form.text
        assert "form-action 'self'" in form.headers["content-security-policy"]
        # a login posted from another site's page is refused by the Origin check
        r = await c.post("/auth/login", data={"token": TOKEN},
                         headers={"origin": "http://evil.example"})
        assert r.status_code == 403 and "reflowpy_session" not in r.headers.get(
            "set-cookie", "")
        r = await c.post("/auth/login", data={"token": "nope"})
        assert r.status_code == 401 and "Wrong token." in r.text
        r = await c.post("/auth/login", content=b"token=" + b"x" * 10_000,
                         headers={"content-type": "application/x-www-form-urlencoded"})
        assert r.status_code == 413
        r = await c.post("/auth/login", data={"token": TOKEN})
        assert r.status_code == 303 and r.headers["location"] == "/ui/"
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert (await c.get("/executions")).status_code == 200  # the cookie authenticates
        assert (await c.post("/auth/logout")).status_code == 303
        assert (await c.get("/executions")).status_code == 401
    served.shutdown.set()


async def test_without_a_token_login_goes_straight_to_the_page(server: Served) -> None:
    async with httpx.AsyncClient(base_url=server.url) as c:
        r = await c.get("/ui/login")
        assert r.status_code == 303 and r.headers["location"] == "/ui/"
