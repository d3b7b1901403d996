"""One edge across a bridge: the sender's and the receiver's state machines, without I/O.

A channel carries the messages of one edge from a sender peer to a receiver peer, in
order, exactly once across connection loss. The two halves are plain objects a
session feeds with frames and asks for frames, so they can be tested frame by frame
(``tests/bridge/test_channel.py`` drives them through drops, duplicates, reorders
and cuts with hypothesis).

**Sequence numbers.** Every message gets the next ``seq`` (1, 2, ...; a channel may
start later, see ``start``). Gap-free: the receiver accepts only ``received + 1``.

**Credits (Flink).** The receiver owns a bounded buffer of ``capacity`` messages in
front of the real in-port. It grants ``grant_upto = delivered + capacity``: the
sender may send up to that seq and no further, so a slow consumer stops the
producer exactly as a full local queue would, and memory is bounded on both sides.
A CREDIT is due at once when the window or the acks moved by a quarter of the
capacity; a smaller move (the buffer drained) is *idle* and may wait a little for a
frame to ride on (delayed acks, as TCP's).

**Acks and the resend buffer (Akka reliable delivery).** A sent message stays in the
sender's resend buffer until a CREDIT acks it; the same CREDIT frame carries the ack
and the window. The resend buffer is bounded (``buffer_limit``), so the sender also
stops when acks lag.

**Resume (RSocket).** After a reconnect the receiver says ``RESUME(last_received)``
and the sender retransmits from ``last_received + 1``. A frame that arrives after a
gap (lost or reordered) is dropped and answered with one RESUME; duplicates (seq at or
below ``received``) are dropped and counted.

States of a channel (both halves share them; the session sets them)::

    open --link down--> resuming --RESUME/HELLO--> open
      \\--peer lost / closed--> closed   (undelivered messages become dead letters)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from reflowpy.bridge.frames import MAX_BATCH, ChannelSpec, Credit, Data, Resume
from reflowpy.errors import BridgeProtocolError

__all__ = ["ChannelStatistics", "InChannel", "OutChannel"]

#: The checkpoint of a CREDIT that carries none (shared: frames are never mutated).
_NO_CHECKPOINT: dict[int, int] = {}
#: The credits of a DATA frame that carries none (shared likewise).
_NO_CREDITS: list[Credit] = []


class ChannelStatistics(msgspec.Struct, frozen=True):
    """A snapshot of one channel half (see the module docstring for the terms)."""

    channel: int
    role: str
    state: str
    src: str
    tgt: str
    next_seq: int
    acked: int
    grant_upto: int
    buffered: int
    messages: int
    resent: int
    duplicates: int
    gaps: int


class OutChannel:
    """The sending half: assigns seqs, keeps the resend buffer, obeys the credit."""

    def __init__(self, spec: ChannelSpec, *, start: int = 1, buffer_limit: int = 8192,
                 replay: bool = False) -> None:
        if start < 1 or buffer_limit < 1:
            raise ValueError("start and buffer_limit must be >= 1")
        self.spec = spec
        self.id = spec.id
        self.state = "open"
        self.next_seq = start
        #: Highest seq the receiver confirmed; the resend buffer holds acked+1 .. next_seq-1.
        self.acked = start - 1
        #: Highest seq the receiver allows (its free buffer room).
        self.grant_upto = start - 1
        #: Highest seq transmitted on the current connection.
        self.sent_upto = start - 1
        self.high_sent = start - 1
        self.buffer: deque[Any] = deque()
        self.buffer_limit = buffer_limit
        self.messages = 0
        self.resent = 0
        #: A restarted peer replaying from its checkpoint: the receiver may already hold
        #: seqs past ``start``; those are skipped here (deterministic outputs, same seqs).
        self.replay = replay
        self.skipped = 0

    def room(self) -> int:
        """How many new messages may be pushed now (credit and resend-buffer bound)."""
        sent = self.next_seq - 1
        if sent < self.acked:  # replayed seqs the receiver holds need no credit
            return self.acked - sent
        credit = self.grant_upto - sent
        free = self.buffer_limit - len(self.buffer)
        return credit if credit < free else free

    def push(self, value: Any) -> int:
        """Queue ``value`` for sending and return its seq (the caller checked ``room``)."""
        if self.room() <= 0:
            raise RuntimeError(f"channel {self.id}: push without credit")
        seq = self.next_seq
        self.next_seq = seq + 1
        self.messages += 1
        if seq <= self.acked:  # replay: the receiver has this one already
            self.skipped += 1
            return seq
        self.buffer.append(value)
        return seq

    def push_many(self, values: list[Any], start: int = 0) -> int:
        """Queue ``values[start:]`` in order while there is room; returns how many
        were queued (one bound check for the lot: a batch costs one call, not one per
        message)."""
        if self.next_seq <= self.acked:  # replaying seqs the receiver holds: one by one
            done = start
            while done < len(values) and self.room() > 0:
                self.push(values[done])
                done += 1
            return done - start
        k = self.grant_upto - (self.next_seq - 1)  # (room(), inlined)
        free = self.buffer_limit - len(self.buffer)
        if free < k:
            k = free
        left = len(values) - start
        if left < k:
            k = left
        if k <= 0:
            return 0
        self.buffer.extend(values if k == left and not start else values[start:start + k])
        self.next_seq += k
        self.messages += k
        return k

    def pending(self) -> bool:
        """Whether a buffered message may be sent now (unsent on this connection, within
        the credit)."""
        sent = self.sent_upto
        return sent < self.next_seq - 1 and sent < self.grant_upto

    def take_data(self, max_batch: int = MAX_BATCH, credits: list[Credit] | None = None
                  ) -> Data | None:
        """The next DATA frame to transmit (from the first unsent seq), or None;
        ``credits`` ride along in it."""
        sent = self.sent_upto
        # never past the credit (after a receiver restart it grants afresh)
        last = self.next_seq - 1
        if last > self.grant_upto:
            last = self.grant_upto
        if last > sent + max_batch:
            last = sent + max_batch
        count = last - sent
        if count <= 0:
            return None
        offset = sent - self.acked  # of the first unsent one in the resend buffer
        buf = self.buffer
        if offset == 0 and count == len(buf):
            batch = list(buf)
        else:
            batch = [buf[i] for i in range(offset, offset + count)]
        high = self.high_sent
        if sent < high:
            self.resent += min(last, high) - sent
        if last > high:
            self.high_sent = last
        self.sent_upto = last
        return Data(self.id, sent + 1, batch, credits or _NO_CREDITS)

    def on_credit(self, frame: Credit) -> None:
        """Drop what ``frame`` acks from the resend buffer; widen the window."""
        acked = frame.acked
        if acked >= self.next_seq:
            if not self.replay:
                raise BridgeProtocolError(
                    f"channel {self.id}: CREDIT acks seq {acked}, but only"
                    f" {self.next_seq - 1} were sent")
            self.buffer.clear()
            self.acked = self.sent_upto = self.high_sent = acked
        n = acked - self.acked
        if n > 0:  # the buffer holds acked+1 .. next_seq-1: n of them go
            buffer = self.buffer
            if n == len(buffer):
                buffer.clear()
            else:
                for _ in range(n):
                    buffer.popleft()
            self.acked = acked
            if self.sent_upto < acked:
                self.sent_upto = acked
        if frame.grant_upto > self.grant_upto:
            self.grant_upto = frame.grant_upto

    def on_resume(self, frame: Resume) -> None:
        """Retransmit from ``frame.last_received + 1`` (never below what was acked)."""
        if frame.last_received > self.next_seq - 1 and not self.replay:
            raise BridgeProtocolError(
                f"channel {self.id}: RESUME from seq {frame.last_received}, but only"
                f" {self.next_seq - 1} were sent")
        self.sent_upto = max(frame.last_received, self.acked)

    def link_down(self) -> None:
        """The connection dropped: nothing is known to be in flight any more."""
        self.sent_upto = self.acked
        if self.state == "open":
            self.state = "resuming"

    def unacked(self) -> Iterator[Any]:
        """Messages sent or queued but not acked (what a lost peer never confirmed)."""
        return iter(self.buffer)

    def statistics(self) -> ChannelStatistics:
        return ChannelStatistics(
            channel=self.id, role="send", state=self.state, src=self.spec.src,
            tgt=self.spec.tgt, next_seq=self.next_seq, acked=self.acked,
            grant_upto=self.grant_upto, buffered=len(self.buffer), messages=self.messages,
            resent=self.resent, duplicates=self.skipped, gaps=0)


class InChannel:
    """The receiving half: drops duplicates, asks for resends, grants credit.

    ``ack_on="receipt"`` acks a message once it is in this buffer (link loss loses
    nothing, the process keeps it); ``ack_on="completion"`` acks only what
    :meth:`complete` confirmed (the session confirms once the message's whole effect
    downstream is safe), so a restarted peer process gets it again.
    """

    def __init__(self, spec: ChannelSpec, *, start: int = 1, ack_on: str = "receipt"
                 ) -> None:
        if ack_on not in ("receipt", "completion"):
            raise ValueError(f"ack_on must be 'receipt' or 'completion', got {ack_on!r}")
        self.spec = spec
        self.id = spec.id
        self.capacity = spec.capacity
        self.state = "open"
        self.ack_on = ack_on
        self._receipt = ack_on == "receipt"
        self.received = start - 1
        self.delivered = start - 1
        self.completed = start - 1
        #: The highest seq that is safe here (``received`` with receipt acks,
        #: ``completed`` with completion acks): what the next CREDIT acks.
        self.acked = start - 1
        #: A quarter of the capacity: a CREDIT is due once the window or the acks moved
        #: this far.
        self._threshold = max(1, self.capacity // 4)
        self.buffer: deque[Any] = deque()
        self.messages = 0
        self.duplicates = 0
        self.gaps = 0
        self._resume_asked = -1
        self._sent_acked = start - 1
        self._sent_grant = start - 1
        #: A CREDIT must go out now (window or acks moved by a quarter of the capacity,
        #: a duplicate arrived, a new link).
        self.credit_due = True
        #: A CREDIT may wait: the buffer drained with less than a quarter moved. It
        #: rides on the next frame the session writes, or leaves after the session's
        #: ``ack_delay`` (so a request/response exchange sends one frame each way).
        self.credit_idle = False
        self.resume_due = False

    def grant_upto(self) -> int:
        """The highest seq the sender may send now (``delivered + capacity``)."""
        return self.delivered + self.capacity

    def on_data(self, frame: Data) -> int:
        """Take the new messages of ``frame``; return how many were new."""
        batch = frame.batch
        n = len(batch)
        seq = frame.seq
        received = self.received
        end = seq + n - 1
        if end <= received:
            self.duplicates += n
            self.credit_due = True  # the sender may have missed our ack
            return 0
        if seq > received + 1:
            self.gaps += 1
            if self._resume_asked != received:
                self._resume_asked = received
                self.resume_due = True
            return 0
        if end > self.delivered + self.capacity:
            raise BridgeProtocolError(
                f"channel {self.id}: DATA up to seq {end} exceeds the credit granted"
                f" (up to {self.grant_upto()})")
        skip = received + 1 - seq
        if skip:
            self.duplicates += skip
            batch = batch[skip:]
        self.buffer.extend(batch)
        self.received = end
        self.messages += n - skip
        # (what _note would say: the window did not move and the buffer is not empty,
        # so only the acks can make a CREDIT due)
        if self._receipt:
            self.acked = end
            if end - self._sent_acked >= self._threshold:
                self.credit_due = True
        return n - skip

    def pop(self) -> Any:
        """The next message to deliver (the caller checked ``buffer``)."""
        value = self.buffer.popleft()
        self.delivered += 1
        self._note()
        return value

    def deliver(self, put: Callable[[Any], bool]) -> int:
        """Hand buffered messages to ``put`` in order while it accepts them (returns
        True); returns how many it took. Each counts as delivered *before* the call:
        a node answering inline writes from inside ``put``, and its DATA should carry
        the credit for what it answers. A message ``put`` refuses (or raises on) was
        not taken: it goes back first and the count with it."""
        buffer = self.buffer
        taken = 0
        while buffer:
            value = buffer.popleft()
            self.delivered += 1
            if not buffer:  # the last: its credit (idle now) may ride on the answer
                self._note()
            try:
                accepted = put(value)
            except BaseException:
                buffer.appendleft(value)
                self.delivered -= 1
                raise
            if not accepted:
                buffer.appendleft(value)
                self.delivered -= 1
                break
            taken += 1
        if taken and buffer:  # (all taken: the last one's note said it all)
            self._note()
        return taken

    def pop_all(self) -> list[Any]:
        """Every buffered message, delivered at once."""
        values = list(self.buffer)
        if values:
            self.buffer.clear()
            self.delivered += len(values)
            self._note()
        return values

    def complete(self, upto: int) -> None:
        """Everything up to ``upto`` (delivered) is fully processed and safe."""
        upto = min(upto, self.delivered)
        if upto > self.completed:
            self.completed = upto
            if not self._receipt:
                self.acked = upto
            self._note()

    def _note(self) -> None:
        grant = self.delivered + self.capacity
        acked = self.acked
        threshold = self._threshold
        if grant - self._sent_grant >= threshold or acked - self._sent_acked >= threshold:
            self.credit_due = True
        elif not self.buffer and (acked != self._sent_acked or grant != self._sent_grant):
            self.credit_idle = True

    def take_credit(self, checkpoint: dict[int, int] | None = None) -> Credit:
        """The CREDIT frame to send now (ack and window in one)."""
        self.credit_due = self.credit_idle = False
        acked = self._sent_acked = self.acked
        grant = self._sent_grant = self.delivered + self.capacity
        return Credit(self.id, acked, grant, checkpoint or _NO_CHECKPOINT)

    def take_resume(self) -> Resume:
        """The RESUME frame: resend from ``received + 1``."""
        self.resume_due = False
        return Resume(self.id, self.received)

    def reset(self, start: int) -> None:
        """A new sender process (direct channels): forget the old one's numbering and
        what it left buffered (its upstream replays it: completion acks), and expect
        ``start`` next."""
        self.buffer.clear()
        self.received = self.delivered = self.completed = self.acked = start - 1
        self._sent_acked = self._sent_grant = start - 1
        self._resume_asked = -1
        self.credit_due = self.resume_due = True
        self.credit_idle = False

    def link_down(self) -> None:
        """The connection dropped: on the next one, say where to resume and re-grant."""
        self.resume_due = True
        self.credit_due = True
        self._resume_asked = -1
        if self.state == "open":
            self.state = "resuming"

    def statistics(self) -> ChannelStatistics:
        return ChannelStatistics(
            channel=self.id, role="receive", state=self.state, src=self.spec.src,
            tgt=self.spec.tgt, next_seq=self.received + 1, acked=self.acked,
            grant_upto=self.grant_upto(), buffered=len(self.buffer),
            messages=self.messages, resent=0, duplicates=self.duplicates, gaps=self.gaps)
