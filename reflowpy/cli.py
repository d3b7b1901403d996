"""The ``reflowpy`` command line: ``reflowpy <command> ...``.

Each command is one function ``cmd_<name>(args) -> int`` registered in :func:`main`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

__all__ = ["cmd_serve", "main"]


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve", help="serve graphs over HTTP/WebSocket (REST, FBP protocol, Reflow API)",
        description="Host graphs: REST API with OpenAPI at /openapi.json, the FBP Network"
        " Protocol at / and /fbp (WebSocket, subprotocol noflo), Reflow's /workflows and"
        " /ws. Prints one 'listening on ...' line when ready; SIGTERM/SIGINT drain the"
        " running networks and exit 0.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: loopback only)")
    p.add_argument("--port", type=int, default=3569, help="port (0: any free port)")
    p.add_argument("--data-dir", default=None,
                   help="directory of the SQLite store (default: $REFLOWPY_DATA_DIR or"
                   " ./.reflowpy)")
    p.add_argument("--token", default=None,
                   help="require this bearer token / FBP secret on every request"
                   " (default: $REFLOWPY_TOKEN)")
    p.add_argument("--max-frame", type=int, default=16 * 1024 * 1024,
                   help="largest WebSocket frame accepted, in bytes")
    p.add_argument("--max-body", type=int, default=16 * 1024 * 1024,
                   help="largest HTTP request body accepted, in bytes")
    p.add_argument("--no-setsource", action="store_true",
                   help="refuse FBP component:source (Python sources run in the server)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    """``reflowpy serve``: run the server until SIGTERM/SIGINT, then drain and exit 0."""
    import trio

    from reflowpy.server.serve import serve

    token = args.token or os.environ.get("REFLOWPY_TOKEN") or None
    data_dir = args.data_dir or os.environ.get("REFLOWPY_DATA_DIR") or ".reflowpy"
    limits = {"max_body": args.max_body}
    if args.no_setsource:
        limits["allow_setsource"] = False

    async def main() -> None:
        shutdown = trio.Event()

        async def on_signal() -> None:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    shutdown.set()
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(on_signal)
            await serve(host=args.host, port=args.port, data_dir=data_dir, token=token,
                        shutdown=shutdown, max_frame=args.max_frame, **limits)
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    except OSError as exc:
        print(f"reflowpy serve: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``reflowpy`` script."""
    parser = argparse.ArgumentParser(prog="reflowpy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_serve(sub)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
