"""Real peer processes and a TCP proxy that cuts connections, for the bridge tests."""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import trio

PLUGIN = "tests.bridge.components:register"


async def stream_with_kills(bn: Any, victim: str, n: int, kills: int
                            ) -> tuple[list[Any], list[int]]:
    """Feed ``[0, i]`` for ``i < n`` into ``bn``'s ``in`` and read ``out`` until every
    ``i`` was seen (duplicates may come on top), killing the worker process of
    ``victim`` (``kill -9``; the network restarts it) ``kills`` times, evenly spaced in
    outputs received; then drain. Returns everything received, in order, and the
    output counts at which the kills happened."""
    killed_at: list[int] = []
    got: list[Any] = []
    seen: set[int] = set()
    async with trio.open_nursery() as nursery:
        async def feed() -> None:
            for i in range(n):
                await bn.network.send("in", [0, i])

        nursery.start_soon(feed)
        async for v in bn.network.outputs("out"):
            got.append(v)
            seen.add(v[1])
            if len(killed_at) < kills and len(got) >= (len(killed_at) + 1) * n // (kills + 1):
                proc = bn.process(victim)
                assert proc is not None, victim
                proc.kill()
                await proc.wait()
                killed_at.append(len(got))
            if len(seen) == n:
                break
    await bn.drain()
    got.extend(bn.network.outputs("out").drain())
    return got, killed_at


@contextlib.asynccontextmanager
async def peer_process(token: str, *, peer_id: str = "peer", allow: str | None = None,
                       deadline: float = 30.0, host: str = "127.0.0.1",
                       prefix: list[str] | None = None, scheme: str = "ws",
                       extra: list[str] | None = None,
                       ) -> AsyncIterator[tuple[str, trio.Process]]:
    """A ``python -m reflowpy.bridge.worker --listen ws://HOST:0`` peer (run under
    ``prefix``, e.g. ``ip netns exec NS``); yields its bridge URL (read from its
    LISTENING line) and the process."""
    cmd = [*(prefix or []), sys.executable, "-m", "reflowpy.bridge.worker",
           "--listen", f"{scheme}://{host}:0", *(extra or []),
           "--id", peer_id, "--plugin", PLUGIN, "--serve", "--deadline", str(deadline)]
    if allow is not None:
        cmd += ["--allow", allow]
    env = {**os.environ, "REFLOWPY_TOKEN": token}
    async with trio.open_nursery() as nursery:
        proc: trio.Process = await nursery.start(lambda task_status: trio.run_process(
            cmd, env=env, stdout=subprocess.PIPE, check=False, task_status=task_status))
        assert proc.stdout is not None
        line = b""
        with trio.fail_after(30):
            while not line.endswith(b"\n"):
                chunk = await proc.stdout.receive_some(1)
                assert chunk, "peer process exited before listening"
                line += chunk
        assert line.startswith(b"LISTENING "), line
        try:
            yield line.split()[1].decode(), proc
        finally:
            proc.kill()
            nursery.cancel_scope.cancel()


class CuttingProxy:
    """Forwards TCP to ``target`` and cuts every live connection after a random number
    of forwarded bytes (``min_bytes``..``max_bytes``), ``cuts`` times at most."""

    def __init__(self, target_port: int, *, cuts: int, seed: int = 1,
                 min_bytes: int = 2_000, max_bytes: int = 60_000) -> None:
        self.target_port = target_port
        self.max_cuts = cuts
        self.cuts = 0
        self.rng = random.Random(seed)
        self.min_bytes, self.max_bytes = min_bytes, max_bytes
        self.port = 0
        self._budget = self.rng.randint(min_bytes, max_bytes)
        self._live: list[trio.CancelScope] = []
        self.connections = 0
        #: Forward to this Unix socket instead of ``target_port`` (set before dialing).
        self.target_unix: str | None = None

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    def _count(self, n: int) -> None:
        if self.cuts >= self.max_cuts:
            return
        self._budget -= n
        if self._budget <= 0:
            self._budget = self.rng.randint(self.min_bytes, self.max_bytes)
            self.cuts += 1
            for scope in self._live:
                scope.cancel()

    async def _handle(self, client: trio.SocketStream) -> None:
        self.connections += 1
        try:
            upstream = (await trio.open_unix_socket(self.target_unix) if self.target_unix
                        else await trio.open_tcp_stream("127.0.0.1", self.target_port))
        except OSError:
            await client.aclose()
            return
        with trio.CancelScope() as scope:
            self._live.append(scope)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pipe, client, upstream)
                    nursery.start_soon(self._pipe, upstream, client)
            except BaseExceptionGroup:
                pass
            finally:
                self._live.remove(scope)
        for s in (client, upstream):  # abrupt: no WebSocket close handshake
            with contextlib.suppress(Exception):
                s.socket.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_LINGER,
                                    b"\x01\x00\x00\x00\x00\x00\x00\x00")
            with contextlib.suppress(Exception):
                await s.aclose()

    async def _pipe(self, src: trio.SocketStream, dst: trio.SocketStream) -> None:
        try:
            while data := await src.receive_some(65536):
                await dst.send_all(data)
                self._count(len(data))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        raise trio.BrokenResourceError("closed")
