"""The raw hop stream: what the trace collector records per message, and its replay.

Recording a traced message costs a call per hop on the network's own thread, so that
call does the least it can: :class:`HopTap` appends four slots to one flat list
(``code, depth, value, ts``) and nothing else. ``code`` names the port pair once per
recording (the ``ports`` table: a send ``node.port -> to_node.to_port`` or a receive at
``node.port``); a receive is not timed (``ts`` is ``None``). Three kinds of record are
rare and carry a payload in the ``value`` slot: an *event* (lifecycle, failure, dead
letter: the event struct), a *row* (an event row made by the collector itself:
``started``/``shutdown`` between sampling bursts, dead letters read from the network) and
a *model* record (a lineage model starts here: its firing rules, the queue depths when
it started and its first message id; a sampling burst starts with one).

Causality ids and causes are not computed while recording: the store keeps the stream
as it came (chunks of form ``hops``, :func:`encode`) and a reader replays it through the
same lineage model and row code the collector used to run per hop
(:class:`~reflowpy.observe.collector._TraceTap`, :mod:`reflowpy.observe.lineage`):
:class:`Replay` turns each chunk into the rows a recording of layout 2 would have
stored, with the same seqs, message ids, causes, values and kinds. Every record but a
model record takes one seq, as every tap call did. A row made from a receive (an
``input``, an ``unknown``) carries the time of the latest timed record before it.

The replay carries its state (the model, the last time) from chunk to chunk, so the
chunks of an execution are replayed in seq order from its first; :meth:`Replay.snapshot`
copies that state so a reader can resume at a chunk boundary.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from reflowpy.network import events as ev
from reflowpy.observe.lineage import Lineage

__all__ = ["EVENT", "MODEL", "ROW", "HopTap", "Hops", "Replay"]

#: Codes of the rare records (a port pair's code is >= 0).
EVENT = -1
ROW = -2
MODEL = -3

_time = time.time


class Hops(msgspec.Struct, array_like=True):
    """One chunk of the hop stream, as columns (the blob of a ``hops`` chunk row).

    ``ports[code]`` is ``[kind, node, port, to_node, to_port]`` (``kind`` ``s``: a send,
    ``r``: a receive) for every code of the recording so far; ``code``, ``depth``,
    ``vref``, ``ts`` have one entry per record; ``vref[i]`` indexes ``values`` (distinct
    message values, JSON) or is -1; ``extra`` holds, in order, the payloads of the
    records whose code is negative (``EVENT``: the event as msgpack, ``ROW``: the row's
    fields but execution and seq, its value as JSON text or None, ``MODEL``: rules,
    queue depths or None, first id)."""

    first_seq: int
    ports: list[tuple[str, str, str, str, str]]
    code: list[int]
    depth: list[int]
    vref: list[int]
    ts: list[float | None]
    values: list[str]
    extra: list[Any]


class HopTap:
    """The bus's :class:`~reflowpy.network.events.MessageTap` for a recording: appends
    raw records to ``buf`` (a list its owner replaces when it takes the records) and
    calls ``full()`` once ``buf`` holds ``limit`` slots (the owner takes them, or ends a
    sampling burst, and may set a new ``limit``). Kept flat: it runs once per hop."""

    __slots__ = ("_pairs", "_recv", "_sends", "buf", "full", "limit", "ports", "specials",
                 "watch")

    def __init__(self, ports: list[tuple[str, str, str, str, str]], full: Any,
                 limit: int) -> None:
        self.ports = ports
        self.buf: list[Any] = []
        #: Slot indexes (into ``buf``) of the records with a payload.
        self.specials: list[int] = []
        self.full = full
        self.limit = limit
        # out-port -> (its last target, that pair's code); (out, target) -> code;
        # in-port -> code
        self._sends: dict[Any, tuple[Any, int]] = {}
        self._pairs: dict[tuple[Any, Any], int] = {}
        self._recv: dict[Any, int] = {}
        #: Called with every event after it is recorded (None: nobody).
        self.watch: Any = None

    def _send_code(self, out: Any, target: Any) -> int:
        key = (out, target)
        code = self._pairs.get(key)  # (an out-port with several targets)
        if code is None:
            code = self._pairs[key] = len(self.ports)
            self.ports.append(("s", out.node, out.name,
                               target.node if target.runner is not None else "",
                               target.name))
        self._sends[out] = (target, code)
        return code

    def sent(self, out: Any, target: Any, value: Any, depth: int) -> None:
        try:
            t, code = self._sends[out]
            if t is not target:
                code = self._send_code(out, target)
        except KeyError:
            code = self._send_code(out, target)
        buf = self.buf
        buf += (code, depth, value, _time() * 1000.0)
        if len(buf) >= self.limit:
            self.full()

    def received(self, port: Any, value: Any, depth: int) -> None:
        try:
            code = self._recv[port]
        except KeyError:
            code = self._recv[port] = len(self.ports)
            self.ports.append(("r", port.node, port.name, "", ""))
        buf = self.buf
        buf += (code, depth, value, None)
        if len(buf) >= self.limit:
            self.full()

    def event(self, e: Any) -> None:
        self.special(EVENT, e, getattr(e, "timestamp", None))
        if self.watch is not None:
            self.watch(e)

    def special(self, code: int, payload: Any, ts: float | None) -> None:
        """A record with a payload (see the module docstring)."""
        buf = self.buf
        self.specials.append(len(buf))
        buf += (code, 0, payload, ts)
        if len(buf) >= self.limit:
            self.full()


_ENC = msgspec.msgpack.Encoder()
_EVENT_DEC = msgspec.msgpack.Decoder(ev.NetworkEvent)


def unique_values(vals: Sequence[Any], novalue: Any, encode_value: Any,
                  limit: int) -> tuple[list[int], list[Any]]:
    """Each distinct value of ``vals`` encoded once, and each slot's index into them
    (-1 for ``novalue``). The caller holds every value while this runs, so no id() is
    reused: equal ids are one object (a message passed on unchanged)."""
    ids = list(map(id, vals))
    objects = dict(zip(ids, vals, strict=True))
    objects.pop(id(novalue), None)
    pos = {k: i for i, k in enumerate(objects)}
    pos[id(novalue)] = -1
    return (list(map(pos.__getitem__, ids)),
            [encode_value(v, limit) for v in objects.values()])


def encode(first_seq: int, ports: list[tuple[str, str, str, str, str]], buf: list[Any],
           specials: list[int], limit: int, encode_value: Any, novalue: Any
           ) -> tuple[Hops, int]:
    """The records in ``buf`` (4 slots each) as one :class:`Hops` chunk, and how many
    seqs they take. Everything per record runs in C (slices, ``map``, a dict)."""
    code = buf[0::4]
    depth = buf[1::4]
    vals = buf[2::4]
    ts = buf[3::4]
    extra: list[Any] = []
    models = 0
    for slot in specials:
        i = slot // 4
        payload = vals[i]
        vals[i] = novalue
        c = code[i]
        if c == EVENT:
            try:
                extra.append(_ENC.encode(payload))
            except (TypeError, ValueError, OverflowError):  # not a kernel event: kept as
                code[i] = ROW  # the row the collector makes of an unknown event
                extra.append([ts[i], "event", getattr(payload, "actor_id", ""), "", "", "",
                              None, None, None, None, None])
        elif c == ROW:
            row = list(payload)
            v = row[8]
            row[8] = None if v is novalue else encode_value(v, limit)
            extra.append(row)
        else:
            models += 1
            extra.append(payload)
    vref, values = unique_values(vals, novalue, encode_value, limit)
    hops = Hops(first_seq=first_seq, ports=list(ports), code=code, depth=depth,
                vref=vref, ts=ts, values=values, extra=extra)
    return hops, len(code) - models


class _ReplaySink:
    """What a :class:`~reflowpy.observe.collector._TraceTap` writes its rows to, in a
    replay: the rows' columns of one chunk (``value`` holds a ``vref``)."""

    def __init__(self, ex: str) -> None:
        self.ex = ex
        self.seq = 0
        self.dead_seen = 0
        self.rows: list[tuple[Any, ...]] = []
        self.failures = 0
        self.lineage: Lineage | None = None
        self.mismatches = 0  # of the models already replaced

    def _add(self, row: tuple[Any, ...]) -> None:
        self.rows.append(row)

    def attach(self, lin: Lineage) -> None:
        if self.lineage is not None:
            self.mismatches += self.lineage.mismatches
        self.lineage = lin

    def model_failed(self, what: str, exc: Exception) -> None:
        self.failures += 1

    def note_lineage(self) -> None:
        pass

    def flush(self) -> None:
        pass


class Replay:
    """Replays one execution's hop chunks, in seq order, into event-row columns."""

    def __init__(self, execution: str) -> None:
        from reflowpy.observe.collector import _TraceTap  # (the collector imports us)

        self._tap_type: Any = _TraceTap
        self.sink = _ReplaySink(execution)
        self.tap: Any = None
        self.last_ts = 0.0

    @property
    def inexact(self) -> bool:
        """Whether the replay so far disagreed with the reported queue depths (or the
        model failed on a record)."""
        lin = self.sink.lineage
        return bool(self.sink.failures or self.sink.mismatches
                    or (lin is not None and lin.mismatches))

    def snapshot(self) -> Replay:
        """A copy of the replay's state, to resume from later."""
        return copy.deepcopy(self)

    def chunk(self, hops: Hops, novalue: Any) -> tuple[list[tuple[Any, ...]], list[str]]:
        """The rows of one chunk (tuples in EventRow order, ``value`` a ``vref`` or
        ``novalue``) and the chunk's values (JSON; rows' own values appended)."""
        sink = self.sink
        sink.rows = rows = []
        values = list(hops.values)
        ports = hops.ports
        extra = iter(hops.extra)
        seq = hops.first_seq
        last_ts = self.last_ts
        tap = self.tap
        for code, depth, vref, ts in zip(hops.code, hops.depth, hops.vref, hops.ts,
                                         strict=True):
            value = novalue if vref < 0 else vref
            if code >= 0:
                kind, node, port, to_node, to_port = ports[code]
                sink.seq = seq - 1
                seq += 1
                if tap is None:  # a stream without a model record: as a mid-stream start
                    tap = self._tap_type(sink, Lineage({}, {}))
                if kind == "s":
                    last_ts = ts if ts is not None else last_ts
                    tap.sent_row(node, port, to_node, to_port, value, depth, last_ts)
                else:
                    tap.received_row(node, port, value, depth, last_ts)
                continue
            payload = next(extra)
            if code == MODEL:
                rules, queued, first_id = payload
                tap = self._tap_type(sink, Lineage(
                    rules, None if queued is None else {(n, p): k for n, p, k in queued},
                    first_id))
                continue
            if ts is not None:
                last_ts = ts
            if code == EVENT:
                sink.seq = seq - 1
                seq += 1
                if tap is None:
                    tap = self._tap_type(sink, Lineage({}, {}))
                tap.event(_EVENT_DEC.decode(payload))
            else:
                row = list(payload)
                if row[0] is None:
                    row[0] = last_ts
                if row[8] is None:
                    row[8] = novalue
                else:
                    row[8] = len(values)
                    values.append(payload[8])
                rows.append((sink.ex, seq, *row))
                seq += 1
        self.tap = tap
        self.last_ts = last_ts
        return rows, values
