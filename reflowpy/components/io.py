"""io/*: files, directories, stdin/stdout, CSV, JSON lines and SQLite.

Blocking calls run in worker threads (``trio.to_thread``), a bounded slice at a time
(about 1 MiB of text for the line readers, ``batch`` rows or ``chunk_size`` bytes for
the others); readers read the next slice while the current one is sent and hold at
most three. A slow consumer therefore stops the
reading (backpressure) and memory stays bounded whatever the file size. Writers
buffer up to ``buffer_size`` bytes and flush when that fills, ``flush_interval``
seconds after the first unflushed write, on a ``flush`` packet, and when the network
stops.

Paths come from config (``path``) or, for readers, from packets on ``in`` (one file
per packet). A missing or unreadable file is reported on ``error`` (or
dead-lettered); the network keeps running.
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import IO, Annotated, Any, Literal

import msgspec
import trio

import reflowpy as rf
from reflowpy.components._common import Config as ConfigReader
from reflowpy.components._common import load_config, report, report_in_loop
from reflowpy.components.expression import _to_str
from reflowpy.network.codec import decode_json

__all__ = [
    "CsvRead", "CsvWrite", "JsonLinesRead", "JsonLinesWrite", "ReadDir", "ReadFile",
    "SqliteInsert", "SqliteQuery", "Stdin", "Stdout", "Watch", "WriteFile",
]


# -- readers -----------------------------------------------------------------------------


class _Reader(rf.Actor):
    """Base of the file readers: reads ``path`` at start (if configured) and every path
    that arrives on ``in``; subclasses turn an open file into batches of packets."""

    inports = [rf.Port("in", type="string", required=False, description="Path of a file to read")]
    outports = [
        rf.Port("out", description="Records read"),
        rf.Port("done", type="object", required=False, description="{path, count} after each file"),
        rf.Port("error", type="object", required=False,
                description="Unreadable files, bad records"),
    ]
    binary = False

    class Config(msgspec.Struct, frozen=True, kw_only=True):
        path: Annotated[str | None, msgspec.Meta(
            description="File read at start (more paths may arrive on in)")] = None
        encoding: Annotated[str, msgspec.Meta(description="Text encoding")] = "utf-8"
        batch: Annotated[int, msgspec.Meta(
            ge=1, description="Records read per worker-thread hop (CSV rows; the line"
                              " readers take about 1 MiB of text per hop)")] = 512

    async def setup(self, ctx: rf.ActorContext) -> None:
        load_config(ctx, type(self).Config)  # types, with the field path in the error
        cfg = ConfigReader(ctx)
        self.path = cfg.get("path", "str", None)
        self.encoding = cfg.get("encoding", "str", "utf-8")
        self.batch = cfg.get("batch", "int", 512, minimum=1)
        self.configure(cfg)

    def configure(self, cfg: ConfigReader) -> None:
        """Read subclass-specific config."""

    def records(self, f: IO[Any]) -> Iterator[Any]:
        """Yield records from an open file (runs in a worker thread)."""
        raise NotImplementedError

    def puller(self, f: IO[Any]) -> Callable[[], list[Any]]:
        """What one worker-thread hop runs: the next records (``[]`` at the end).
        By default ``batch`` records from :meth:`records`."""
        records = self.records(f)
        return lambda: list(islice(records, self.batch))

    async def emit(self, ctx: rf.ActorContext, chunk: list[Any], first: int) -> None:
        """Send one chunk of records (``first`` is the index of its first record)."""
        await ctx.send_all("out", chunk)

    async def _prefetch(self, pull: Callable[[], list[Any]],
                        chunks: trio.MemorySendChannel[Any]) -> None:
        """Read chunks in a worker thread into ``chunks``; a read error is sent as the
        last item, the end of the file closes the channel."""
        async with chunks:
            while True:
                try:
                    chunk: Any = await trio.to_thread.run_sync(pull)
                except (OSError, ValueError, csv.Error) as exc:
                    chunk = exc
                if not isinstance(chunk, Exception) and not chunk:
                    return
                try:
                    await chunks.send(chunk)
                except trio.BrokenResourceError:  # the reader stopped (error or cancel)
                    return
                if isinstance(chunk, Exception):
                    return

    async def read(self, ctx: rf.ActorContext, path: Any) -> None:
        if not isinstance(path, str):
            await report_in_loop(ctx, TypeError(f"node {ctx.node_id!r}: a path must be a string,"
                                        f" got {type(path).__name__}"), path)
            return
        try:
            if self.binary:
                f: IO[Any] = await trio.to_thread.run_sync(open, path, "rb")
            else:
                f = await trio.to_thread.run_sync(
                    lambda: open(path, encoding=self.encoding, newline="")  # noqa: SIM115
                )
        except OSError as exc:
            await report_in_loop(ctx, exc, path)
            return
        count = 0
        try:
            pull = self.puller(f)
            # The worker thread reads the next chunk while this one is sent: the hop to
            # the thread and back is hidden behind the sending, and at most three
            # chunks are held (one read, one queued, one being sent).
            chunks_tx, chunks_rx = trio.open_memory_channel[Any](1)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._prefetch, pull, chunks_tx)
                async with chunks_rx:
                    async for chunk in chunks_rx:
                        if isinstance(chunk, Exception):
                            await report_in_loop(ctx, chunk, path, record=count)
                            break
                        await self.emit(ctx, chunk, count)
                        count += len(chunk)
        finally:
            await trio.to_thread.run_sync(f.close)
        if ctx.connected("done"):
            await ctx.send("done", {"path": path, "count": count})

    async def run(self, ctx: rf.ActorContext) -> None:
        if self.path is not None:
            await self.read(ctx, self.path)
        while True:
            _, path = await ctx.receive("in")
            await self.read(ctx, path)


#: Text a line reader takes per worker-thread hop, and the piece it decodes at a time
#: (as iterating a text file does, so a decode error costs no line decoded before it).
_HOP_CHARS = 1 << 20
_DECODE_CHARS = 8192


class _Lines:
    """The lines of a text file, about 1 MiB per call (one worker-thread hop).

    Splits as iterating a file opened with ``newline=""`` does, at ``\\n``, ``\\r\\n``
    and a lone ``\\r``, and drops the line ends; in C string operations, not a Python
    step per line, and with few hops (each hop hands the GIL back and forth). A read or
    decode error is raised on the call after the one returning the complete lines
    read before it, so those are still sent.
    """

    __slots__ = ("eof", "error", "f", "hold")

    def __init__(self, f: IO[str]) -> None:
        self.f = f
        self.hold = ""  # the start of a line whose end is not read yet
        self.error: Exception | None = None
        self.eof = False

    def __call__(self) -> list[str]:
        lines: list[str] = []
        while not lines:
            if self.error is not None:
                raise self.error
            if self.eof:
                return lines
            lines = self._hop()
        return lines

    def _hop(self) -> list[str]:
        parts = [self.hold]
        size = 0
        read = self.f.read
        try:
            while size < _HOP_CHARS:
                part = read(_DECODE_CHARS)
                if not part:
                    self.eof = True
                    break
                parts.append(part)
                size += len(part)
        except (OSError, ValueError) as exc:
            self.error = exc
        text = "".join(parts)
        cr = ""
        if not self.eof and self.error is None and text.endswith("\r"):
            # perhaps the first half of a \r\n: decided by the next hop
            text, cr = text[:-1], "\r"
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        lines = text.split("\n")
        rest = lines.pop()  # after the last line end: a line not ended yet, or ""
        if self.eof:
            if rest:
                lines.append(rest)
            self.hold = ""
        elif self.error is not None:
            self.hold = ""  # cut by the error: not a whole line
        else:
            self.hold = rest + cr
        return lines


class ReadFile(_Reader):
    """Stream a file: lines (default), byte chunks, or the whole text.

    Config: ``path`` (read at start; more paths may arrive on ``in``), ``mode``:
    ``"lines"`` (each line without its newline), ``"bytes"`` (chunks of
    ``chunk_size`` bytes, default 65536) or ``"text"`` (one string), ``encoding``
    (default utf-8). Then ``done`` gets ``{path, count}``.

    Example: ``{"component": "io/ReadFile", "metadata": {"path": "app.log"}}``.
    """

    description = "Streams a file as lines, byte chunks or one text"
    icon = "file-o"

    class Config(_Reader.Config, frozen=True, kw_only=True):
        mode: Annotated[Literal["lines", "bytes", "text"], msgspec.Meta(
            description="Lines (no newline), byte chunks or the whole text")] = "lines"
        chunk_size: Annotated[int, msgspec.Meta(ge=1, description="Bytes per chunk")] = 65536

    def configure(self, cfg: ConfigReader) -> None:
        self.mode = cfg.get("mode", "str", "lines", choices=("lines", "bytes", "text"))
        self.chunk_size = cfg.get("chunk_size", "int", 65536, minimum=1)
        self.binary = self.mode == "bytes"
        if self.binary:
            self.batch = 1

    def records(self, f: IO[Any]) -> Iterator[Any]:
        if self.mode == "bytes":
            return iter(lambda: f.read(self.chunk_size), b"")
        return iter([f.read()])

    def puller(self, f: IO[Any]) -> Callable[[], list[Any]]:
        return _Lines(f) if self.mode == "lines" else super().puller(f)


class CsvRead(_Reader):
    """Stream CSV rows: objects keyed by the header row (default) or arrays.

    Config: ``path``, ``header`` (default ``true``), ``delimiter`` (default ``,``),
    ``numbers`` (convert numeric-looking cells to numbers; default ``false``).
    """

    description = "Streams rows of a CSV file"
    icon = "table"

    class Config(_Reader.Config, frozen=True, kw_only=True):
        header: Annotated[bool, msgspec.Meta(description="First row names the keys")] = True
        delimiter: Annotated[str, msgspec.Meta(description="One character")] = ","
        numbers: Annotated[bool, msgspec.Meta(
            description="Convert numeric-looking cells")] = False

    def configure(self, cfg: ConfigReader) -> None:
        self.header = cfg.get("header", "bool", True)
        self.delimiter = cfg.get("delimiter", "str", ",")
        if len(self.delimiter) != 1:
            raise cfg.error("delimiter", f"must be one character, got {self.delimiter!r}")
        self.numbers = cfg.get("numbers", "bool", False)

    def _cell(self, text: str) -> Any:
        if not self.numbers:
            return text
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return text

    def records(self, f: IO[Any]) -> Iterator[Any]:
        if self.header:
            for row in csv.DictReader(f, delimiter=self.delimiter):
                yield {k: self._cell(v) if isinstance(v, str) else v for k, v in row.items()}
        else:
            for cells in csv.reader(f, delimiter=self.delimiter):
                yield [self._cell(c) for c in cells]


class JsonLinesRead(_Reader):
    """Stream a JSON-lines file: one value per line; blank lines are skipped.

    A line that is not JSON goes to ``error`` with its line number, and reading
    goes on.
    """

    description = "Streams values from a JSON-lines file"
    icon = "file-code-o"

    def puller(self, f: IO[Any]) -> Callable[[], list[Any]]:
        return _Lines(f)

    async def emit(self, ctx: rf.ActorContext, chunk: list[Any], first: int) -> None:
        send = ctx.send
        for index, record in enumerate(chunk, first):
            line = record.strip()
            if not line:
                continue
            try:
                value = decode_json(line)  # built immutable: no copy at send
            except ValueError as exc:
                await report_in_loop(ctx, ValueError(f"node {ctx.node_id!r}: line {index + 1}"
                                                     f" is not JSON: {exc}"), record,
                                     line=index + 1)
                continue
            await send("out", value)


# -- writers -----------------------------------------------------------------------------


class _Writer(rf.Actor):
    """Base of the file writers: buffer encoded records, write them from a thread."""

    inports = [
        rf.Port("in", description="Records to write"),
        rf.Port("flush", type="bang", required=False, description="Write the buffer out now"),
    ]
    outports = [
        rf.Port("written", type="object", required=False,
                description="{path, bytes, count} after each write to disk"),
        rf.Port("error", type="object", required=False,
                description="Records that cannot be written"),
    ]
    binary = False

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = ConfigReader(ctx)
        self.path = cfg.get("path", "str")
        self.append = cfg.get("append", "bool", False)
        self.encoding = cfg.get("encoding", "str", "utf-8")
        self.buffer_size = cfg.get("buffer_size", "int", 256 * 1024, minimum=1)
        self.flush_interval = cfg.get("flush_interval", "number", 0.05, minimum=0)
        self.configure(cfg)
        parent = Path(self.path).parent
        if not parent.is_dir():
            raise cfg.error("path", f"names a file in a missing directory: {str(parent)!r}")
        self.file: IO[bytes] | None = None
        self.buf = bytearray()
        self.count = 0

    def configure(self, cfg: ConfigReader) -> None:
        """Read subclass-specific config."""

    def encode(self, value: Any) -> bytes:
        raise NotImplementedError

    def header(self, value: Any) -> bytes:
        """Bytes written before the first record (CSV header)."""
        return b""

    async def _write(self, ctx: rf.ActorContext, buf: bytearray, count: int,
                     report_written: bool = True) -> None:
        if not buf:
            return
        data = bytes(buf)
        buf.clear()
        if self.file is None:
            mode = "ab" if self.append else "wb"
            self.file = await trio.to_thread.run_sync(open, self.path, mode)
        opened = self.file
        assert opened is not None

        def write() -> None:
            opened.write(data)
            opened.flush()

        await trio.to_thread.run_sync(write)
        if report_written and ctx.connected("written"):
            await ctx.send("written", {"path": self.path, "bytes": len(data), "count": count})

    async def run(self, ctx: rf.ActorContext) -> None:
        buf = self.buf = bytearray()
        first = True
        deadline = math.inf
        while True:
            got = None
            with trio.move_on_at(deadline):
                got = await ctx.receive()
            if got is not None and got[0] == "in":
                value = got[1]
                try:
                    data = self.encode(value)
                    if first:
                        data = self.header(value) + data
                except (TypeError, ValueError) as exc:
                    await report_in_loop(ctx, exc, value)
                    continue
                first = False
                buf += data
                self.count += 1
                if len(buf) < self.buffer_size:
                    if deadline == math.inf:
                        deadline = trio.current_time() + self.flush_interval
                    continue
            count, self.count = self.count, 0
            await self._write(ctx, buf, count)
            deadline = math.inf

    async def teardown(self, ctx: rf.ActorContext) -> None:
        if self.buf:
            await self._write(ctx, self.buf, self.count, report_written=False)
        if self.file is not None:
            file, self.file = self.file, None
            await trio.to_thread.run_sync(file.close)


class WriteFile(_Writer):
    """Write packets to a file: as lines (default), raw bytes, or text.

    Config: ``path`` (required; its directory must exist), ``mode``: ``"lines"``
    (each packet plus a newline; non-strings as JSON), ``"bytes"`` (bytes as they
    are, strings encoded) or ``"text"`` (strings as they are); ``append`` (default
    ``false``: the file is replaced on the first write).
    """

    description = "Writes packets to a file (lines, bytes or text), buffered"
    icon = "save"

    def configure(self, cfg: ConfigReader) -> None:
        self.mode = cfg.get("mode", "str", "lines", choices=("lines", "bytes", "text"))

    def encode(self, value: Any) -> bytes:
        if isinstance(value, bytes):
            return value + (b"\n" if self.mode == "lines" else b"")
        text = value if isinstance(value, str) else json.dumps(
            rf.thaw(value), ensure_ascii=False, default=_to_str)
        if self.mode == "lines":
            text += "\n"
        return text.encode(self.encoding)


class JsonLinesWrite(_Writer):
    """Write each packet as one line of JSON (``path``, ``append`` as for WriteFile)."""

    description = "Writes packets as JSON lines"
    icon = "file-code-o"

    def encode(self, value: Any) -> bytes:
        return (json.dumps(rf.thaw(value), ensure_ascii=False, default=_to_str,
                           separators=(",", ":")) + "\n").encode(self.encoding)


class CsvWrite(_Writer):
    """Write objects (or arrays) as CSV rows.

    Config: ``path``, ``columns`` (column order; default the keys of the first
    object), ``header`` (write a header row; default ``true``), ``delimiter``.
    Objects missing a column get an empty cell; extra keys are an error.
    """

    description = "Writes rows to a CSV file"
    icon = "table"

    def configure(self, cfg: ConfigReader) -> None:
        self.columns: list[str] | None = cfg.get("columns", "list", None)
        self.with_header = cfg.get("header", "bool", True)
        self.delimiter = cfg.get("delimiter", "str", ",")

    def _row(self, cells: list[Any]) -> bytes:
        out = _io.StringIO()
        csv.writer(out, delimiter=self.delimiter, lineterminator="\n").writerow(
            ["" if c is None else c for c in cells]
        )
        return out.getvalue().encode(self.encoding)

    def header(self, value: Any) -> bytes:
        if not self.with_header or self.columns is None or self.append:
            return b""
        return self._row(list(self.columns))

    def encode(self, value: Any) -> bytes:
        if isinstance(value, dict):
            if self.columns is None:
                self.columns = list(value)
            extra = set(value) - set(self.columns)
            if extra:
                raise ValueError(f"keys {sorted(extra)} are not columns {self.columns}")
            return self._row([value.get(c) for c in self.columns])
        if isinstance(value, (list, tuple)):
            return self._row(list(value))
        raise TypeError(f"a CSV row must be an object or array, got {type(value).__name__}")


# -- directories and std streams ---------------------------------------------------------


def _list_dir(path: str, pattern: str, recursive: bool) -> list[str]:
    base = Path(path)
    entries = base.rglob(pattern) if recursive else base.glob(pattern)
    return sorted(str(p) for p in entries if p.is_file())


class ReadDir(rf.Actor):
    """List the files of a directory, one path per packet, sorted.

    Config: ``path`` (listed at start; more directories may arrive on ``in``),
    ``pattern`` (glob, default ``*``), ``recursive`` (default ``false``). Then
    ``done`` gets ``{path, count}``.
    """

    description = "Lists files in a directory"
    icon = "folder-open-o"
    inports = [rf.Port("in", type="string", required=False, description="Directory to list")]
    outports = [
        rf.Port("out", type="string", description="File paths"),
        rf.Port("done", type="object", required=False, description="{path, count}"),
        rf.Port("error", type="object", required=False, description="Missing directories"),
    ]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = ConfigReader(ctx)
        self.path = cfg.get("path", "str", None)
        self.pattern = cfg.get("pattern", "str", "*")
        self.recursive = cfg.get("recursive", "bool", False)

    async def list(self, ctx: rf.ActorContext, path: Any) -> None:
        if not isinstance(path, str) or not os.path.isdir(path):
            await report_in_loop(ctx, NotADirectoryError(f"node {ctx.node_id!r}: not a directory:"
                                                 f" {path!r}"), path)
            return
        files = await trio.to_thread.run_sync(_list_dir, path, self.pattern, self.recursive)
        for name in files:
            await ctx.send("out", name)
        if ctx.connected("done"):
            await ctx.send("done", {"path": path, "count": len(files)})

    async def run(self, ctx: rf.ActorContext) -> None:
        if self.path is not None:
            await self.list(ctx, self.path)
        while True:
            _, path = await ctx.receive("in")
            await self.list(ctx, path)


class Watch(rf.Actor):
    """Watch a directory and send the path of every new file that appears.

    Polls every ``interval`` seconds (default 1.0) — portable, no OS notification
    API needed. Config: ``path`` (required), ``pattern`` (glob, default ``*``),
    ``existing`` (also send files present at start; default ``false``), ``max``
    (stop after this many files; default unlimited).
    """

    description = "Emits paths of new files in a directory (polling)"
    icon = "eye"
    inports = [rf.Port("stop", type="bang", required=False, description="Stop watching")]
    outports = [rf.Port("out", type="string", description="Paths of new files")]

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = ConfigReader(ctx)
        self.path = cfg.get("path", "str")
        if not os.path.isdir(self.path):
            raise cfg.error("path", f"is not a directory: {self.path!r}")
        self.pattern = cfg.get("pattern", "str", "*")
        self.interval = cfg.get("interval", "number", 1.0, minimum=0.001)
        self.existing = cfg.get("existing", "bool", False)
        self.max = cfg.get("max", "int", 0, minimum=0)
        # the snapshot is taken at start, so files created after start always count as new
        self.seen: set[str] = set()
        if not self.existing:
            self.seen.update(
                await trio.to_thread.run_sync(_list_dir, self.path, self.pattern, False))

    async def run(self, ctx: rf.ActorContext) -> None:
        seen = self.seen
        sent = 0
        while True:
            for name in await trio.to_thread.run_sync(_list_dir, self.path, self.pattern, False):
                if name not in seen:
                    seen.add(name)
                    await ctx.send("out", name)
                    sent += 1
                    if self.max and sent >= self.max:
                        return
            if await ctx.receive_until(trio.current_time() + self.interval, "stop"):
                return


class Stdin(rf.Actor):
    """Read standard input line by line (without newlines); ``done`` at end of input.

    Config: ``mode``: ``"lines"`` (default) or ``"json"`` (each line parsed; bad
    lines to ``error``).
    """

    description = "Streams lines from standard input"
    icon = "terminal"
    outports = [
        rf.Port("out", description="Lines (or parsed JSON values)"),
        rf.Port("done", type="integer", required=False, description="Line count at end of input"),
        rf.Port("error", type="object", required=False, description="Lines that are not JSON"),
    ]

    async def setup(self, ctx: rf.ActorContext) -> None:
        mode = ConfigReader(ctx).get("mode", "str", "lines", choices=("lines", "json"))
        self.json = mode == "json"

    async def run(self, ctx: rf.ActorContext) -> None:
        stream = sys.stdin
        count = 0
        while True:
            raw: str = await trio.to_thread.run_sync(stream.readline, abandon_on_cancel=True)
            if not raw:
                break
            line = raw.rstrip("\r\n")
            count += 1
            if self.json:
                try:
                    value = decode_json(line)
                except ValueError as exc:
                    await report_in_loop(ctx, exc, line, line=count)
                    continue
                await ctx.send("out", value)
            else:
                await ctx.send("out", line)
        if ctx.connected("done"):
            await ctx.send("done", count)


class Stdout(rf.Actor):
    """Write each packet to standard output as a line (strings as-is, others as JSON)."""

    description = "Writes packets to standard output"
    icon = "terminal"
    inports = [rf.Port("in", description="Packet to write")]
    outports = ()

    async def process(self, ctx: rf.ActorContext) -> None:
        value = ctx.inputs["in"]
        text = value if isinstance(value, str) else json.dumps(
            rf.thaw(value), ensure_ascii=False, default=_to_str)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


# -- SQLite ------------------------------------------------------------------------------


class _Sqlite(rf.Actor):
    """One connection per node, used from worker threads one call at a time."""

    async def setup(self, ctx: rf.ActorContext) -> None:
        cfg = ConfigReader(ctx)
        self.database = cfg.get("database", "str", alt=("path",))
        try:
            self.db = await trio.to_thread.run_sync(
                lambda: sqlite3.connect(self.database, check_same_thread=False)
            )
        except sqlite3.Error as exc:
            raise cfg.error("database", f"cannot be opened: {exc}") from None
        self.lock = trio.Lock()
        self.configure(cfg)

    def configure(self, cfg: ConfigReader) -> None:
        """Read subclass-specific config."""

    async def call(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        async with self.lock:
            return await trio.to_thread.run_sync(fn, self.db)

    async def teardown(self, ctx: rf.ActorContext) -> None:
        db = getattr(self, "db", None)
        if db is not None:
            await trio.to_thread.run_sync(db.close)


def _params(value: Any) -> Any:
    if value is None:
        return ()
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value,)


def _commit(db: sqlite3.Connection) -> int:
    db.commit()
    return db.total_changes


class SqliteQuery(_Sqlite):
    """Run a SQL statement per packet (its parameters) and send the result rows.

    Config: ``database`` (file path or ``:memory:``), ``query`` (required; ``?`` or
    ``:name`` parameters taken from the packet: an array, an object, or one value;
    ``null`` means none), ``output``: ``"rows"`` (each row an object; default) or
    ``"all"`` (one array per query). Statements that change data are committed;
    ``done`` gets ``{rows, changes}``. SQL errors go to ``error``.
    """

    description = "Runs a SQLite query per packet (stdlib sqlite3 in a worker thread)"
    icon = "database"
    inports = [rf.Port("in", description="Query parameters (array, object, value or null)")]
    outports = [
        rf.Port("out", description="Result rows as objects (or one array of them)"),
        rf.Port("done", type="object", required=False, description="{rows, changes} per query"),
        rf.Port("error", type="object", required=False, description="SQL errors"),
    ]

    def configure(self, cfg: ConfigReader) -> None:
        self.query = cfg.get("query", "str", alt=("sql",))
        if not sqlite3.complete_statement(self.query.rstrip().rstrip(";") + ";"):
            raise cfg.error("query", "is not a complete SQL statement")
        self.all = cfg.get("output", "str", "rows", choices=("rows", "all")) == "all"
        self.batch = cfg.get("batch", "int", 500, minimum=1)

    async def process(self, ctx: rf.ActorContext) -> None:
        value = ctx.inputs["in"]
        params = _params(value)
        try:
            cursor = await self.call(lambda db: db.execute(self.query, params))
            cols = [d[0] for d in cursor.description or ()]
            count = 0
            everything: list[dict[str, Any]] = []
            while cols:
                rows = await self.call(lambda db: cursor.fetchmany(self.batch))
                if not rows:
                    break
                count += len(rows)
                for row in rows:
                    obj = dict(zip(cols, row, strict=True))
                    if self.all:
                        everything.append(obj)
                    else:
                        await ctx.send("out", obj)
            changes = await self.call(_commit)
        except sqlite3.Error as exc:
            await report(ctx, exc, value)
            return
        if self.all:
            await ctx.send("out", everything)
        if ctx.connected("done"):
            await ctx.send("done", {"rows": count, "changes": changes})


class SqliteInsert(_Sqlite):
    """Insert each object on ``in`` as a row of ``table`` (columns = its keys).

    Config: ``database``, ``table`` (required; a plain identifier), ``create``
    (create the table from the first object's keys if missing; default ``false``).
    ``out`` gets the new row id. Rows are committed per packet.
    """

    description = "Inserts objects as rows into a SQLite table"
    icon = "database"
    inports = [rf.Port("in", type="object", description="Row to insert")]
    outports = [
        rf.Port("out", type="integer", required=False, description="Row id of each insert"),
        rf.Port("error", type="object", required=False, description="Rows that failed"),
    ]

    def configure(self, cfg: ConfigReader) -> None:
        self.table = cfg.get("table", "str")
        if not self.table.replace("_", "a").isalnum():
            raise cfg.error("table", f"must be a plain identifier, got {self.table!r}")
        self.create = cfg.get("create", "bool", False)

    async def process(self, ctx: rf.ActorContext) -> None:
        row = ctx.inputs["in"]
        if not isinstance(row, dict) or not row:
            await report(ctx, TypeError(f"node {ctx.node_id!r}: a row must be a non-empty"
                                        " object"), row)
            return
        bad = [k for k in row if not str(k).replace("_", "a").isalnum()]
        if bad:
            await report(ctx, ValueError(f"node {ctx.node_id!r}: column names must be plain"
                                         f" identifiers: {bad}"), row)
            return
        cols = ", ".join(f'"{k}"' for k in row)
        marks = ", ".join(f":{k}" for k in row)
        values = {k: (json.dumps(rf.thaw(v)) if isinstance(v, (dict, list)) else v)
                  for k, v in row.items()}

        def insert(db: sqlite3.Connection) -> int | None:
            if self.create:
                db.execute(f'CREATE TABLE IF NOT EXISTS "{self.table}" ({cols})')
            cur = db.execute(f'INSERT INTO "{self.table}" ({cols}) VALUES ({marks})', values)
            db.commit()
            return cur.lastrowid

        try:
            rowid = await self.call(insert)
        except sqlite3.Error as exc:
            await report(ctx, exc, row)
            return
        if ctx.connected("out"):
            await ctx.send("out", rowid)
