"""A session: everything two peers share, across the connections that come and go.

One :class:`Session` per pair of peers holds the channels (edges) between them, in
both directions, and outlives any single connection. :meth:`Session.run_link` drives
one live connection: a reader task dispatches frames to the channels, a writer task
sends what the channels have to say (control frames first: RESUME, CREDIT, PONG; then
DATA, one frame per channel per round so channels share the link fairly), and a
pinger measures round-trip time and declares the link dead after ``liveness``
seconds of silence. When the link ends, for whatever reason, every channel goes to
``resuming``; the next :meth:`run_link` resumes them (receivers say where they are,
senders retransmit from there).

:func:`dial` and :func:`accept` add the HELLO handshake (:mod:`reflowpy.bridge.auth`)
on each side; :class:`Dialer` keeps one session connected with exponential backoff
and gives up after ``deadline`` seconds away (the session is then **lost**: waiting
senders and receivers get :class:`~reflowpy.PeerLost`).

Session states: ``connecting`` -> ``up`` <-> ``down`` -> ``lost`` | ``closed``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import trio
import zstandard

from reflowpy.bridge import auth
from reflowpy.bridge.channel import ChannelStatistics, InChannel, OutChannel
from reflowpy.bridge.frames import (
    MAX_BATCH,
    MAX_FRAME,
    PROTOCOL_VERSION,
    ChannelSpec,
    Credit,
    Data,
    Frame,
    Hello,
    Ping,
    Pong,
    Reject,
    Resume,
    decode_frame,
    encode_frame,
)
from reflowpy.bridge.transport import Connection, LinkClosed, Transport
from reflowpy.errors import BridgeAuthError, BridgeError, BridgeProtocolError, PeerLost
from reflowpy.network import codec

__all__ = [
    "BridgeStatistics",
    "Dialer",
    "Session",
    "accept",
    "dial",
]

_log = logging.getLogger("reflowpy.bridge")


class _Signal:
    """Wake every current waiter; a waiter that checks then waits never misses a fire."""

    __slots__ = ("_armed", "_event")

    def __init__(self) -> None:
        self._event = trio.Event()
        self._armed = False

    def fire(self) -> None:
        if self._armed:  # nobody waits: firing costs nothing (the hot path)
            self._armed = False
            self._event.set()
            self._event = trio.Event()

    def wait(self) -> Awaitable[None]:
        self._armed = True
        return self._event.wait()

    def current(self) -> trio.Event:
        """The event the next ``fire`` sets (grab it before checking, await it after)."""
        self._armed = True
        return self._event


def _decoded_size(frame: bytes) -> int:
    """The payload size a receiver sees after decompression (zstd frames declare it)."""
    if frame[:1] == b"\x01":
        declared = zstandard.frame_content_size(frame[1:])
        if declared >= 0:
            return int(declared)
    return len(frame)


def _link_error(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The error that ended a link (its sibling tasks' Cancelled are only the echo)."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            inner = _link_error(exc)
            if inner is not None:
                return inner
        elif isinstance(exc, (BridgeError, OSError, trio.BrokenResourceError)):
            return exc
    return None


class BridgeStatistics(msgspec.Struct, frozen=True):
    """A snapshot of one bridge (session): link state, RTT, credits, buffers, totals."""

    peer: str
    session: str
    state: str
    rtt_ms: float | None
    reconnects: int
    credits: int
    resend_buffer: int
    receive_buffer: int
    bytes_in: int
    bytes_out: int
    frames_in: int
    frames_out: int
    msgs_in: int
    msgs_out: int
    duplicates: int
    channels: list[ChannelStatistics]


class Session:
    """The channels between this peer and one other, and the link that carries them.

    ``send(channel, value)`` waits for credit (backpressure from the remote bounded
    buffer); ``receive(channel)`` waits for the next message. Both raise
    :class:`~reflowpy.PeerLost` once the session is lost or closed.
    """

    # (more attributes than a shared-key instance dict holds: slots keep every access
    # on the per-frame path a direct load)
    __slots__ = ("_arrival", "_arrived", "_batch_hint", "_control", "_deferred",
                 "_dispatching", "_flush_due", "_inline", "_inline_error",
                 "_ping_nonce", "_pings", "_progress", "_reply_due", "_room",
                 "_room_hooks", "_send_nowait", "_sleep", "_state_changed",
                 "_timer_armed", "_timer_due", "_timer_mark", "_writer", "_wrote",
                 "ack_delay", "bytes_in", "bytes_out", "checkpoint",
                 "compress_threshold", "error", "frames_in", "frames_out", "inc",
                 "links", "liveness", "local_id", "max_batch", "max_frame",
                 "on_checkpoint", "out", "peer_max_frame", "ping_interval",
                 "reconnects", "remote_id", "remote_incarnation", "rtt", "rtt_samples",
                 "session_id", "state")

    def __init__(self, local_id: str, *, remote_id: str = "", session_id: str = "",
                 ping_interval: float = 1.0, liveness: float = 5.0,
                 max_batch: int = MAX_BATCH, max_frame: int = MAX_FRAME,
                 compress_threshold: int = codec.DEFAULT_COMPRESS_THRESHOLD,
                 ack_delay: float = 0.002) -> None:
        self.local_id = local_id
        self.remote_id = remote_id
        self.session_id = session_id or secrets.token_hex(8)
        #: The remote process' incarnation seen at the last HELLO (a restart changes it).
        self.remote_incarnation = ""
        self.ping_interval = ping_interval
        self.liveness = liveness
        self.max_batch = max_batch
        #: The largest decoded frame this side accepts (told to the peer in HELLO).
        self.max_frame = max_frame
        #: The largest decoded frame the peer accepts (from its HELLO): what we send by.
        self.peer_max_frame = MAX_FRAME
        self.compress_threshold = compress_threshold
        #: How long an idle credit (see :class:`~reflowpy.bridge.channel.InChannel`)
        #: waits for a frame to ride on before it is sent alone.
        self.ack_delay = ack_delay
        self.out: dict[int, OutChannel] = {}
        self.inc: dict[int, InChannel] = {}
        self.state = "connecting"
        self.error: BaseException | None = None
        self.rtt: float | None = None
        #: The most recent PING round trips (seconds), newest last.
        self.rtt_samples: deque[float] = deque(maxlen=256)
        self.reconnects = 0
        self.links = 0
        self.bytes_in = self.bytes_out = self.frames_in = self.frames_out = 0
        #: Called for each CREDIT carrying a checkpoint (completion acks).
        self.on_checkpoint: Callable[[int, int, dict[int, int]], None] | None = None
        #: Returns the checkpoint to put in CREDIT frames (completion acks).
        self.checkpoint: Callable[[], dict[int, int]] | None = None
        self._writer = _Signal()
        self._room: dict[int, _Signal] = {}
        self._arrived: dict[int, _Signal] = {}
        self._state_changed = _Signal()
        self._progress = _Signal()
        self._control: deque[Frame] = deque()
        self._pings: dict[int, float] = {}
        self._ping_nonce = 0
        self._batch_hint: dict[int, int] = {}
        self._sleep: trio.CancelScope | None = None  # the writer's, while it sleeps
        #: The writer's sleep has the ack-delay deadline (see :meth:`_arm_timer`), set
        #: when ``frames_out`` was ``_timer_mark``.
        self._timer_armed = False
        self._timer_mark = 0
        #: The live connection's ``send_frames_nowait``, if its transport has one.
        self._send_nowait: Callable[[list[bytes]], bool] | None = None
        self._flush_due = False  # bytes a non-waiting write left for the writer
        #: Written since the last frame arrived (a stream, not an exchange: see
        #: :meth:`_kick`).
        self._wrote = False
        #: Per out-channel: called when it may have room again (a CREDIT, a state change).
        self._room_hooks: dict[int, Callable[[], None]] = {}
        #: Called by the writer before it collects its next round (see :meth:`defer`).
        self._deferred: list[Callable[[], None]] = []
        self._inline = False
        #: The reader is dispatching a frame (see :meth:`_credit_moved`).
        self._dispatching = False
        self._timer_due = False
        #: The reader's dispatch produced frames for a transport that must wait to
        #: write: the reader writes them next (see :meth:`_reply`).
        self._reply_due = False
        self._inline_error: BridgeError | None = None
        #: Per in-channel: called by the reader right after new messages arrived, to
        #: deliver what it can without waiting (see :meth:`on_arrival`).
        self._arrival: dict[int, Callable[[], bool]] = {}

    # -- channels ---------------------------------------------------------------------

    def add_out(self, spec: ChannelSpec, *, start: int = 1, buffer_limit: int = 8192,
                replay: bool = False) -> OutChannel:
        """Declare a channel this peer sends on."""
        ch = OutChannel(spec, start=start, buffer_limit=buffer_limit, replay=replay)
        self.out[spec.id] = ch
        self._room[spec.id] = _Signal()
        self._writer.fire()
        return ch

    def add_in(self, spec: ChannelSpec, *, start: int = 1) -> InChannel:
        """Declare a channel this peer receives on (its capacity is the credit)."""
        ch = InChannel(spec, start=start, ack_on=spec.ack_on)
        self.inc[spec.id] = ch
        self._arrived[spec.id] = _Signal()
        self._writer.fire()
        return ch

    def _halves(self) -> list[OutChannel | InChannel]:
        return [*self.out.values(), *self.inc.values()]

    def _check_open(self) -> None:
        if self.state in ("lost", "closed"):
            raise PeerLost(f"peer {self.remote_id or '?'} (session {self.session_id}):"
                           f" {self.state}: {self.error or 'peer lost'}")

    async def send(self, channel: int, value: Any) -> None:
        """Queue ``value`` on ``channel``; waits while the remote has no room for it."""
        out = self.out[channel]
        while out.room() <= 0:
            self._check_open()
            await self._room[channel].wait()
        self._check_open()
        out.push(value)
        await self._write_now()

    async def send_many(self, channel: int, values: list[Any]) -> int:
        """Queue ``values`` in order, as credit allows (one writer wake per batch);
        returns how many were queued -- all of them, unless the session ends (then
        :class:`~reflowpy.PeerLost` is raised on the next call, and the caller owns the
        rest)."""
        out = self.out[channel]
        done = 0
        total = len(values)
        while done < total:
            room = out.room()
            if room <= 0:
                if self.state in ("lost", "closed"):
                    return done
                await self._room[channel].wait()
                continue
            if self.state in ("lost", "closed"):
                return done
            done += out.push_many(values, done)
            await self._write_now()
        return done

    def push_nowait(self, channel: int, values: list[Any]) -> int:
        """Queue ``values`` in order as far as credit and the resend buffer allow,
        without waiting, and write them now from this task when the transport can
        (else the writer task does); returns how many were queued."""
        n = self.out[channel].push_many(values)
        if n:
            self._kick()
        return n

    def quiet(self) -> bool:
        """Whether a push now would be written at once, not by the writer task: the
        link is up, the writer sleeps, the peer said something since our last write,
        and either the transport writes without waiting (from the pushing task) or
        the reader is dispatching (it writes the answer next, see :meth:`_reply`).
        Otherwise a producer had better :meth:`defer`."""
        return (self._sleep is not None and not self._inline and not self._wrote
                and (self._send_nowait is not None or self._dispatching))

    def defer(self, hook: Callable[[], None]) -> None:
        """Have the writer call ``hook`` (which pushes) before it collects its next
        round: a producer that finds the link busy leaves its values queued, and they
        all leave in the writer's next write (one frame per batch, not per message).
        The hook runs on this or a later link; the caller keeps it from being deferred
        twice, and calls it itself if the session ends first."""
        self._deferred.append(hook)
        self._writer.fire()

    def on_room(self, channel: int, hook: Callable[[], None] | None) -> None:
        """Call ``hook`` (in the reader's task, must not wait) whenever ``channel``
        may have room again: a CREDIT arrived, or the session changed state (then
        :meth:`push_nowait` may refuse everything, e.g. once lost). ``None`` removes it."""
        if hook is None:
            self._room_hooks.pop(channel, None)
        else:
            self._room_hooks[channel] = hook

    async def receive(self, channel: int) -> Any:
        """The next message of ``channel`` (waits for one)."""
        inc = self.inc[channel]
        while not inc.buffer:
            self._check_open()
            await self._arrived[channel].wait()
        value = inc.pop()
        self._credit_moved(inc)
        return value

    def take(self, channel: int) -> Any:
        """The next buffered message of ``channel`` (the caller checked there is one)."""
        inc = self.inc[channel]
        value = inc.pop()
        self._credit_moved(inc)
        return value

    def receive_nowait(self, channel: int) -> list[Any]:
        """Every message of ``channel`` buffered right now (maybe none)."""
        inc = self.inc[channel]
        values = inc.pop_all()
        if values:
            self._credit_moved(inc)
        return values

    async def wait_arrival(self, channel: int) -> None:
        """Wait until ``channel`` holds a message (or the session ends)."""
        inc = self.inc[channel]
        while not inc.buffer:
            self._check_open()
            await self._arrived[channel].wait()

    def on_arrival(self, channel: int, hook: Callable[[], bool] | None) -> None:
        """Let ``hook`` take what arrives on ``channel`` in the reader's task, before
        any receiver is woken (``None`` removes it). The hook must not wait: it takes
        what it can (:meth:`take_nowait`) and returns True when the buffer is empty, or
        False to wake the receivers for the rest. One task switch less per message on a
        quiet link: the message reaches its in-port straight from the socket read."""
        if hook is None:
            self._arrival.pop(channel, None)
        else:
            self._arrival[channel] = hook

    def take_nowait(self, channel: int, put: Callable[[Any], bool]) -> int:
        """Hand buffered messages of ``channel`` to ``put`` in order while it accepts
        them (returns True); returns how many it took. A refused message stays first.
        (:meth:`InChannel.deliver`: each is counted before ``put`` runs, so an answer
        written from inside ``put`` carries its credit.)"""
        inc = self.inc[channel]
        before = inc.delivered
        try:
            return inc.deliver(put)
        finally:  # also when ``put`` raised: what it took is delivered
            if inc.delivered != before:
                self._credit_moved(inc)

    def complete(self, channel: int, upto: int) -> None:
        """Completion acks: everything up to ``upto`` on ``channel`` is safe."""
        inc = self.inc[channel]
        inc.complete(upto)
        self._credit_moved(inc)

    def _credit_moved(self, inc: InChannel) -> None:
        """``inc`` may owe a CREDIT: wake the writer if it is due; if it is only idle,
        give the writer's sleep a deadline (no wakeup now: the next frame written
        carries it, or the writer sends it when the ack delay runs out)."""
        if inc.credit_due:
            self._writer.fire()
        elif inc.credit_idle:
            if self._dispatching:  # the reader's frame: its answer usually carries it
                self._timer_due = True
            elif not self._timer_armed:
                self._arm_timer()

    def _arm_timer(self) -> None:
        """An idle credit waits (and, after the reader's dispatch, no answer carried
        it): give the writer's sleep the ack-delay deadline, unless it has one. The
        deadline is set once per ack delay, not per frame, and never cleared when a
        later frame carries the credit: when it runs out, the writer sends the idle
        credits alone only if nothing was written since it was set (else they are
        younger than the delay, and the writer's next sleep gives them a new one). So
        an idle credit waits at most twice the ack delay, and an exchange pays for no
        timer per message."""
        sleep = self._sleep
        if sleep is not None and not self._timer_armed and self._idle_credit():
            self._timer_armed = True
            self._timer_mark = self.frames_out
            sleep.deadline = trio.current_time() + self.ack_delay

    async def wait_acked(self) -> None:
        """Wait until every out-channel's messages are all acked (or the session ends)."""
        while any(ch.buffer or ch.next_seq - 1 > ch.acked for ch in self.out.values()):
            self._check_open()
            await self._progress.wait()

    def all_acked(self) -> bool:
        return not any(ch.buffer or ch.next_seq - 1 > ch.acked for ch in self.out.values())

    def changed(self) -> Awaitable[None]:
        """Fires on every state change (``up``, ``down``, ``lost``, ...)."""
        return self._state_changed.wait()

    def progressed(self) -> Awaitable[None]:
        """Fires on every ack and every write to the link, and on state changes (for
        completion tracking). Separate from :meth:`changed`, so state watchers do not
        wake for every frame."""
        return self._progress.wait()

    # -- lifecycle ----------------------------------------------------------------------

    def _set_state(self, state: str) -> None:
        if self.state in ("lost", "closed"):
            return
        self.state = state
        self._wake_all()

    def _wake_all(self) -> None:
        self._state_changed.fire()
        self._progress.fire()
        self._writer.fire()
        for sig in (*self._room.values(), *self._arrived.values()):
            sig.fire()
        for hook in list(self._room_hooks.values()):
            hook()

    def lose(self, error: BaseException | None = None) -> None:
        """The peer is gone for good: waiting senders/receivers get ``PeerLost``."""
        self.error = error or self.error
        self._set_state("lost")
        for ch in self._halves():
            ch.state = "closed"

    async def say_bye(self, timeout: float = 2.0) -> None:
        """Tell the peer this session ends on purpose (it stops what it hosts), then close."""
        if self.state == "up":
            self._control.append(Reject("bye", "the network stopped"))
            sent = self.frames_out
            self._writer.fire()
            with trio.move_on_after(timeout):
                while self.frames_out == sent and self.state == "up":
                    await self._progress.wait()
        self.close()

    def close(self) -> None:
        """Close the session on purpose (the network stopped)."""
        self._set_state("closed")
        for ch in self._halves():
            ch.state = "closed"

    # -- one link -----------------------------------------------------------------------

    async def run_link(self, conn: Connection) -> None:
        """Carry the channels over ``conn`` until it fails (then return or raise
        ``LinkClosed``/``BridgeProtocolError``); every channel is then ``resuming``."""
        self._check_open()
        for inc in self.inc.values():
            inc.link_down()  # say where to resume and grant again on this link
        for ch in self._halves():
            ch.state = "open"
        self.links += 1
        self._send_nowait = getattr(conn, "send_frames_nowait", None)
        self._flush_due = self._wrote = False
        self._inline_error = None
        self._control.clear()
        self._pings.clear()
        self._set_state("up")
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._reader, conn)
                nursery.start_soon(self._writer_loop, conn)
                nursery.start_soon(self._pinger)
        except BaseExceptionGroup as group:
            reason = _link_error(group)
            if reason is None:
                raise
            raise reason from None
        finally:
            self._send_nowait = None
            for ch in self.out.values():
                ch.link_down()
            for inc in self.inc.values():
                inc.link_down()
            self._set_state("down")

    async def _reader(self, conn: Connection) -> None:
        receive = conn.receive
        while True:
            raw = await receive()
            self._wrote = False
            self.bytes_in += len(raw)
            self.frames_in += 1  # (the pinger's sign of life)
            self._dispatching = True
            try:
                self._dispatch(decode_frame(raw, self.max_frame))
            except BridgeProtocolError as exc:
                self._dispatching = False
                with trio.move_on_after(1):
                    await conn.send(encode_frame(Reject("protocol", str(exc))))
                raise
            finally:
                self._dispatching = False
            if self._reply_due:  # (first: the answer usually carries the idle credit)
                self._reply_due = False
                await self._reply(conn)
            if self._timer_due:
                self._timer_due = False
                if not self._timer_armed:
                    self._arm_timer()

    def _dispatch(self, frame: Frame) -> None:
        if isinstance(frame, Data):
            for credit in frame.credits:  # riding along: window first, then the data
                self._on_credit(credit)
            inc = self.inc.get(frame.channel)
            if inc is None:
                raise BridgeProtocolError(f"DATA on unknown channel {frame.channel}")
            if inc.on_data(frame):
                hook = self._arrival.get(frame.channel)
                if hook is None or not hook():
                    self._arrived[frame.channel].fire()
            if inc.resume_due or inc.credit_due:
                self._writer.fire()
        elif isinstance(frame, Credit):
            self._on_credit(frame)
        elif isinstance(frame, Resume):
            out = self.out.get(frame.channel)
            if out is None:
                raise BridgeProtocolError(f"RESUME for unknown channel {frame.channel}")
            out.on_resume(frame)
            self._writer.fire()
        elif isinstance(frame, Ping):
            self._control.append(Pong(frame.nonce, {i: c.received for i, c in self.inc.items()}))
            self._writer.fire()
        elif isinstance(frame, Pong):
            sent = self._pings.pop(frame.nonce, None)
            if sent is not None:
                self.rtt = trio.current_time() - sent
                self.rtt_samples.append(self.rtt)
        elif isinstance(frame, Reject) and frame.code == "bye":
            self.close()
            raise LinkClosed(f"peer {self.remote_id!r} closed the session")
        elif isinstance(frame, Reject):
            raise BridgeError(f"peer {self.remote_id!r} rejected the link: {frame.code}:"
                              f" {frame.reason}")
        else:
            raise BridgeProtocolError("HELLO after the handshake")

    def _on_credit(self, frame: Credit) -> None:
        out = self.out.get(frame.channel)
        if out is None:
            raise BridgeProtocolError(f"CREDIT for unknown channel {frame.channel}")
        out.on_credit(frame)
        if frame.checkpoint and self.on_checkpoint is not None:
            self.on_checkpoint(frame.channel, frame.acked, dict(frame.checkpoint))
        room = self._room[frame.channel]
        if room._armed:  # (fire() inlined: nobody waits, most of the time)
            room.fire()
        hook = self._room_hooks.get(frame.channel)
        if hook is not None:
            hook()
        if self._progress._armed:
            self._progress.fire()
        if out.pending():  # data held back for want of credit may go now
            self._writer.fire()

    def _collect(self, flush: bool = False) -> list[bytes]:
        """The frames to write now: control, resumes and due credits first, then data
        (one frame per channel per round). Idle credits ride along, ahead of the data,
        when anything is written, or go alone with ``flush`` (the ack delay ran out)."""
        frames: list[bytes] = []
        control = self._control
        while control:
            frames.append(encode_frame(control.popleft()))
        idle: list[InChannel] = []
        for inc in self.inc.values():
            if inc.resume_due:
                frames.append(encode_frame(inc.take_resume()))
            if inc.credit_due:
                frames.append(self._credit_frame(inc))
            elif inc.credit_idle:
                idle.append(inc)
        # data: one frame per channel per round, a bounded number of rounds; idle
        # credits ride inside the first DATA (its peer takes them before the batch)
        for _ in range(4):
            progressed = False
            for out in self.out.values():
                if not out.pending():
                    continue
                riders = list(map(self._credit, idle)) if idle else None
                idle = []
                frame = self._data_frame(out, riders)
                if frame is not None:
                    frames.append(frame)
                    progressed = True
                elif riders:  # no DATA after all: the credits go alone
                    frames.extend(map(encode_frame, riders))
            if not progressed:
                break
        if idle and (frames or flush):
            frames.extend(self._credit_frame(inc) for inc in idle)
        return frames

    def _credit(self, inc: InChannel) -> Credit:
        if inc.ack_on == "completion" and self.checkpoint is not None:
            return inc.take_credit(self.checkpoint())
        return inc.take_credit()

    def _credit_frame(self, inc: InChannel) -> bytes:
        return encode_frame(self._credit(inc))

    def _idle_credit(self) -> bool:
        return any(inc.credit_idle for inc in self.inc.values())

    def _data_frame(self, out: OutChannel, credits: list[Credit] | None) -> bytes | None:
        hint = self._batch_hint.get(out.id, self.max_batch)
        while True:
            resent, high = out.resent, out.high_sent
            data = out.take_data(hint, credits)
            if data is None:
                return None
            encoded = encode_frame(data, compress_threshold=self.compress_threshold)
            # the receiver limits the decompressed size
            size = len(encoded) if encoded[0] == 0 else _decoded_size(encoded)
            limit = self.peer_max_frame
            if size <= limit // 2 or len(data.batch) == 1:
                if size > limit:
                    raise BridgeError(
                        f"channel {out.id} ({out.spec.src} -> {out.spec.tgt}): one message"
                        f" encodes to {size} bytes, above the peer's frame limit of {limit}")
                if size < limit // 8 and hint < self.max_batch:
                    self._batch_hint[out.id] = min(self.max_batch, hint * 2)
                return encoded
            out.sent_upto = data.seq - 1  # too large: split and try again
            out.resent, out.high_sent = resent, high
            hint = max(1, len(data.batch) // 2)
            self._batch_hint[out.id] = hint

    async def _writer_loop(self, conn: Connection) -> None:
        while True:
            wake = self._writer.current()
            if self._inline_error is not None:
                raise self._inline_error
            if self._inline:  # the reader writes its answer (_reply): after it, not amid
                await wake.wait()
                continue
            if self._flush_due:  # what a non-waiting write could not send
                self._flush_due = False
                await conn.send_frames([])
            if self._deferred:
                deferred, self._deferred = self._deferred, []
                self._inline = True  # the pushes' writes are this round's
                try:
                    for hook in deferred:
                        hook()
                finally:
                    self._inline = False
            frames = self._collect()
            if not frames:
                # Sleep until woken; an idle credit (now, or set while we sleep: see
                # _arm_timer) puts a deadline on the sleep instead of waking us.
                idle = self._idle_credit()
                with trio.CancelScope(deadline=trio.current_time() + self.ack_delay
                                      if idle else math.inf) as sleep:
                    self._sleep = sleep
                    self._timer_armed, self._timer_mark = idle, self.frames_out
                    await wake.wait()
                self._sleep = None
                self._timer_armed = False
                # the ack delay ran out, and nothing left since it was set (else the
                # credits idle now are younger: the next sleep's deadline is theirs)
                if sleep.cancelled_caught and self.frames_out == self._timer_mark:
                    frames = self._collect(flush=True)
            if not frames:
                if not any(out.pending() for out in self.out.values()):
                    # Woken for credit only: let the tasks woken with us run first. A
                    # delivery that freed credit is usually followed by its node's
                    # output, and both then leave in one write (one syscall, one
                    # wakeup on the other side) instead of two.
                    await trio.lowlevel.checkpoint()
                continue
            await self._flush(conn, frames)

    async def _flush(self, conn: Connection, frames: list[bytes]) -> None:
        self._wrote = True
        await conn.send_frames(frames)
        self.bytes_out += sum(map(len, frames))
        self.frames_out += len(frames)
        self._progress.fire()

    def _kick(self) -> None:
        """After a push: if the writer sleeps, the transport can write without waiting
        and the peer said something since our last write (an exchange, not a stream:
        Nagle's rule with "heard from" for "acked", as completion acks come late; in
        an exchange the answer carries the question's credit, see
        :meth:`InChannel.deliver`), write this round's frames from here (the message
        leaves from the task that produced it: no task switch, no wait); otherwise
        wake the writer, which runs once the producer yields and sends all it
        produced meanwhile in one write (batching a stream: one frame per burst, not
        one per message). What the socket did not take is left for the writer; a
        round that cannot be written (a message above the peer's frame limit) ends
        the link from the writer."""
        send = self._send_nowait
        if send is None or self._sleep is None or self._inline or self._wrote:
            if send is None and self._dispatching and self._sleep is not None:
                self._reply_due = True  # the reader writes it (no writer round trip)
            else:
                self._writer.fire()
            return
        self._inline = True
        try:
            frames = self._collect()
            if frames:
                self._wrote = True
                if send(frames):
                    self._flush_due = True
                    self._writer.fire()
                self.bytes_out += sum(map(len, frames))
                self.frames_out += len(frames)
                if self._progress._armed:
                    self._progress.fire()
        except BridgeError as exc:  # e.g. a message above the peer's frame limit
            self._inline_error = exc
            self._writer.fire()
        finally:
            self._inline = False

    async def _reply(self, conn: Connection) -> None:
        """After the reader's dispatch, on a transport that cannot write without
        waiting (``reflowpy serve``'s ``/bridge`` through ASGI): the reader writes what
        the dispatch produced (the answer of a node that ran inline), one task switch
        less per answer than waking the writer. The writer, if woken meanwhile, waits
        for this write to finish, so frames never interleave."""
        if self._sleep is None or self._inline:  # the writer is awake: its round takes them
            self._writer.fire()
            return
        self._inline = True
        try:
            frames = self._collect()
            if frames:
                await self._flush(conn, frames)
        finally:
            self._inline = False
            if self._sleep is None:  # the writer woke meanwhile and waits for us
                self._writer.fire()

    async def _write_now(self) -> None:
        """After a push from a task that may wait: :meth:`_kick`, and a checkpoint. (A
        transport that cannot write without waiting is written by the writer task.)"""
        self._kick()
        await trio.lowlevel.checkpoint_if_cancelled()

    async def _pinger(self) -> None:
        """Ping every ``ping_interval``; end the link after ``liveness`` seconds without
        a frame from the peer. A frame is noticed at the next tick (the reader only
        counts it: no clock read per frame), so a dead link is declared between
        ``liveness`` and ``liveness + ping_interval`` after the last frame."""
        heard = self.frames_in
        last_heard = trio.current_time()
        while True:
            await trio.sleep(self.ping_interval)
            now = trio.current_time()
            if self.frames_in != heard:
                heard, last_heard = self.frames_in, now
            elif now - last_heard > self.liveness:
                raise LinkClosed(f"peer {self.remote_id!r}: nothing heard for"
                                 f" {now - last_heard:.1f} s")
            self._ping_nonce += 1
            self._pings[self._ping_nonce] = now
            if len(self._pings) > 16:
                self._pings.pop(next(iter(self._pings)))
            self._control.append(Ping(self._ping_nonce))
            self._writer.fire()

    # -- statistics ---------------------------------------------------------------------

    def statistics(self) -> BridgeStatistics:
        """State, RTT, credits, buffers and totals of this bridge right now."""
        return BridgeStatistics(
            peer=self.remote_id, session=self.session_id, state=self.state,
            rtt_ms=None if self.rtt is None else self.rtt * 1000,
            reconnects=self.reconnects,
            credits=sum(max(0, c.room()) for c in self.out.values()),
            resend_buffer=sum(len(c.buffer) for c in self.out.values()),
            receive_buffer=sum(len(c.buffer) for c in self.inc.values()),
            bytes_in=self.bytes_in, bytes_out=self.bytes_out, frames_in=self.frames_in,
            frames_out=self.frames_out,
            msgs_in=sum(c.messages for c in self.inc.values()),
            msgs_out=sum(c.messages for c in self.out.values()),
            duplicates=sum(c.duplicates for c in self.inc.values()),
            channels=[c.statistics() for c in self._halves()])


# -- handshake ------------------------------------------------------------------------------


async def _receive_frame(conn: Connection, timeout: float) -> Frame:
    with trio.fail_after(timeout):
        raw = await conn.receive()
    return decode_frame(raw, max_size=MAX_FRAME)


async def dial(conn: Connection, *, local_id: str, token: str, session: str,
               incarnation: str = "", channels: list[ChannelSpec] | None = None,
               graph: Any = None, timeout: float = 10.0, max_frame: int = MAX_FRAME) -> Hello:
    """The dialer's side of the handshake; returns the acceptor's HELLO.

    ``max_frame`` is the largest decoded frame we accept; the acceptor's own limit is
    in the returned HELLO (``max_frame``, 0 for the default).

    Raises :class:`~reflowpy.BridgeAuthError` when the acceptor rejects us or cannot
    prove it holds the token.
    """
    try:
        first = await _receive_frame(conn, timeout)
    except trio.TooSlowError:
        raise LinkClosed(f"{conn.description}: no HELLO within {timeout} s") from None
    if isinstance(first, Reject):
        raise BridgeAuthError(f"{conn.description} refused us: {first.code}: {first.reason}")
    if not isinstance(first, Hello) or first.version != PROTOCOL_VERSION:
        raise BridgeProtocolError(f"{conn.description}: expected HELLO version"
                                  f" {PROTOCOL_VERSION}, got {first!r:.80}")
    nonce = auth.new_nonce()
    proof = auth.proof(token, "dial", first.nonce, nonce, local_id, session)
    await conn.send(encode_frame(Hello(
        PROTOCOL_VERSION, local_id, nonce, proof, session, incarnation,
        list(channels or []), graph, max_frame,
    ), compress_threshold=codec.DEFAULT_COMPRESS_THRESHOLD))
    try:
        reply = await _receive_frame(conn, timeout)
    except trio.TooSlowError:
        raise LinkClosed(f"{conn.description}: no HELLO reply within {timeout} s") from None
    if isinstance(reply, Reject):
        error = BridgeAuthError(f"{conn.description} refused us: {reply.code}: {reply.reason}")
        error.code = reply.code  # type: ignore[attr-defined]
        raise error
    if not isinstance(reply, Hello) or not auth.verify(
            token, "accept", nonce, first.nonce, reply.peer, session, reply.proof):
        raise BridgeAuthError(f"{conn.description}: the peer could not prove it holds the"
                              " bridge token (wrong token on one side?)")
    return reply


async def accept(conn: Connection, *, local_id: str, token: str,
                 on_hello: Callable[[Hello], Awaitable[tuple[Session, str]]],
                 timeout: float = 10.0) -> tuple[Session, Hello]:
    """The acceptor's side of the handshake.

    ``on_hello`` gets the dialer's verified HELLO and returns its session and this
    process' incarnation (it may raise :class:`~reflowpy.BridgeAuthError` to refuse,
    e.g. for a component outside the allow-list). A wrong proof, a replayed
    handshake or a bad frame is answered with REJECT and raises.
    """
    nonce = auth.new_nonce()
    await conn.send(encode_frame(Hello(PROTOCOL_VERSION, local_id, nonce)))
    try:
        hello = await _receive_frame(conn, timeout)
    except trio.TooSlowError:
        raise LinkClosed(f"{conn.description}: no HELLO within {timeout} s") from None
    except BridgeProtocolError as exc:
        await _reject(conn, "protocol", str(exc))
        raise
    if not isinstance(hello, Hello):
        await _reject(conn, "protocol", f"expected HELLO, got {type(hello).__name__}")
        raise BridgeProtocolError(f"{conn.description}: expected HELLO first")
    if hello.version != PROTOCOL_VERSION:
        await _reject(conn, "version", f"protocol version {hello.version} unsupported;"
                                       f" this peer speaks {PROTOCOL_VERSION}")
        raise BridgeAuthError(f"{conn.description}: version {hello.version}")
    if not auth.verify(token, "dial", nonce, hello.nonce, hello.peer, hello.session,
                       hello.proof):
        await _reject(conn, "auth", "bad token proof (wrong token or replayed handshake)")
        raise BridgeAuthError(f"{conn.description}: peer {hello.peer!r} gave a bad token"
                              " proof (wrong token or replayed handshake)")
    try:
        session, incarnation = await on_hello(hello)
    except BridgeError as exc:
        await _reject(conn, "refused", str(exc))
        raise
    session.peer_max_frame = hello.max_frame or MAX_FRAME
    proof = auth.proof(token, "accept", hello.nonce, nonce, local_id, hello.session)
    await conn.send(encode_frame(Hello(PROTOCOL_VERSION, local_id, nonce, proof,
                                       hello.session, incarnation,
                                       max_frame=session.max_frame)))
    return session, hello


async def _reject(conn: Connection, code: str, reason: str) -> None:
    with trio.move_on_after(1):
        with contextlib.suppress(LinkClosed):
            await conn.send(encode_frame(Reject(code, reason)))


class Dialer:
    """Keeps one session connected to ``transport``: handshake, backoff, resume.

    ``hello()`` supplies the channels and graph for each HELLO (they may change after
    a restart of the remote process: ``on_incarnation`` is told of every new
    incarnation before the link runs). After ``deadline`` seconds without a link the
    session is lost.
    """

    def __init__(self, session: Session, transport: Transport, *, token: str,
                 hello: Callable[[], tuple[list[ChannelSpec], Any]],
                 on_incarnation: Callable[[str, str], None] | None = None,
                 deadline: float = 30.0, backoff: tuple[float, float] = (0.02, 1.0),
                 handshake_timeout: float = 10.0, incarnation: str = "",
                 retry_refused: bool = False) -> None:
        self.session = session
        #: This process' incarnation, told in HELLO (a direct channel's receiver
        #: restarts its numbering when the sending process is a new one).
        self.incarnation = incarnation
        #: Keep dialing while the peer refuses the session (a direct link to a
        #: partition that has not yet been given its part by the placing process).
        self.retry_refused = retry_refused
        self.transport = transport
        self.token = token
        self.hello = hello
        self.on_incarnation = on_incarnation
        self.deadline = deadline
        self.backoff = backoff
        self.handshake_timeout = handshake_timeout
        self.connected = trio.Event()
        self.last_error: BaseException | None = None
        #: Consecutive links the peer refused with REJECT before the session is lost.
        self.max_refusals = 5
        self._refusals = 0

    async def run(self) -> None:
        """Connect, run the link, reconnect, ... until lost or closed (then return)."""
        s = self.session
        delay = self.backoff[0]
        down_since = trio.current_time()
        while s.state not in ("lost", "closed"):
            linked = False
            started = trio.current_time()
            try:
                async with self.transport.connect() as conn:
                    channels, graph = self.hello()
                    reply = await dial(conn, local_id=s.local_id, token=self.token,
                                       session=s.session_id, channels=channels,
                                       incarnation=self.incarnation,
                                       graph=graph, timeout=self.handshake_timeout,
                                       max_frame=s.max_frame)
                    s.remote_id = reply.peer
                    s.peer_max_frame = reply.max_frame or MAX_FRAME
                    if reply.incarnation != s.remote_incarnation:
                        previous, s.remote_incarnation = s.remote_incarnation, reply.incarnation
                        if self.on_incarnation is not None:
                            self.on_incarnation(previous, reply.incarnation)
                    if s.links:
                        s.reconnects += 1
                    delay = self.backoff[0]
                    linked = True
                    self.connected.set()
                    await s.run_link(conn)
            except BridgeAuthError as exc:
                self.last_error = exc
                if not (self.retry_refused and getattr(exc, "code", "") == "refused"):
                    s.lose(exc)
                    return
            except (LinkClosed, OSError, BridgeError) as exc:
                self.last_error = exc
                _log.info("bridge to %s: link down: %s", self.transport.address, exc)
                # the same protocol failure on every new link is a bug, not a flaky link
                lasted = trio.current_time() - started
                refused = isinstance(exc, BridgeError) and not isinstance(exc, LinkClosed)
                self._refusals = self._refusals + 1 if refused and lasted < 60 else 0
                if self._refusals >= self.max_refusals:
                    s.lose(BridgeError(f"peer {s.remote_id!r}: {self._refusals} links in a row"
                                       f" failed on the protocol; giving up: {exc}"))
                    return
            if s.state in ("lost", "closed"):
                return
            now = trio.current_time()
            if linked:
                down_since = now
            if now - down_since > self.deadline:
                s.lose(PeerLost(f"peer {s.remote_id or self.transport.address!r}: no link"
                                f" for {self.deadline} s (peer lost); last error:"
                                f" {self.last_error}"))
                return
            await trio.sleep(delay * (0.5 + random.random()))
            delay = min(self.backoff[1], delay * 2)
