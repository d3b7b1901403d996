"""Channel state machines under hostile links: drops, duplicates, reorders and cuts.

A simulated link carries the frames of one channel both ways; hypothesis chooses, step
by step, which frame arrives next (reordering), which is lost or doubled, when the
connection is cut, how fast the consumer is and how large the buffers are. Whatever
it picks, the consumer must see every message exactly once, in order, and neither
buffer may exceed its bound.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reflowpy.bridge.channel import InChannel, OutChannel
from reflowpy.bridge.frames import ChannelSpec, Credit, Data, Resume, decode_frame, encode_frame
from reflowpy.errors import BridgeProtocolError
from tests.scale import long_scale

STATS = {"examples": 0, "cuts": 0, "drops": 0, "dups": 0, "reorders": 0}


class _Link:
    def __init__(self, n: int, capacity: int, buffer_limit: int, ack_on: str) -> None:
        spec = ChannelSpec(1, "a", "src.out", "dst.in", capacity)
        self.out = OutChannel(spec, buffer_limit=buffer_limit)
        self.inc = InChannel(spec, ack_on=ack_on)
        self.n = n
        self.pushed = 0
        self.got: list[Any] = []
        self.to_rx: list[bytes] = []
        self.to_tx: list[bytes] = []
        self.max_out = 0

    def pump(self) -> None:
        while self.pushed < self.n and self.out.room() > 0:
            self.out.push(self.pushed)
            self.pushed += 1
        self.max_out = max(self.max_out, len(self.out.buffer))
        while (frame := self.out.take_data(max_batch=7)) is not None:
            self.to_rx.append(encode_frame(frame))
        if self.inc.resume_due:
            self.to_tx.append(encode_frame(self.inc.take_resume()))
        # an idle credit rides on another frame, or leaves once the link is quiet
        # (the session's ack delay)
        if self.inc.credit_due or (self.inc.credit_idle and (self.to_tx or not self.to_rx)):
            self.to_tx.append(encode_frame(self.inc.take_credit()))

    def consume(self, k: int) -> None:
        for _ in range(min(k, len(self.inc.buffer))):
            self.got.append(self.inc.pop())
        if self.inc.ack_on == "completion":
            self.inc.complete(self.inc.delivered)

    def arrive(self, to_rx: bool, index: int) -> None:
        queue = self.to_rx if to_rx else self.to_tx
        frame = decode_frame(queue.pop(index))
        if isinstance(frame, Data):
            self.inc.on_data(frame)
            assert len(self.inc.buffer) <= self.inc.capacity
        elif isinstance(frame, Credit):
            self.out.on_credit(frame)
        elif isinstance(frame, Resume):
            self.out.on_resume(frame)

    def cut(self) -> None:
        self.to_rx.clear()
        self.to_tx.clear()
        self.out.link_down()
        self.inc.link_down()

    def done(self) -> bool:
        return len(self.got) == self.n


@settings(max_examples=long_scale(120))
@given(st.data(), st.integers(1, 120), st.integers(1, 40), st.integers(1, 60),
       st.sampled_from(["receipt", "completion"]))
def test_exact_delivery_over_a_hostile_link(data: st.DataObject, n: int, capacity: int,
                                            buffer_limit: int, ack_on: str) -> None:
    link = _Link(n, capacity, buffer_limit, ack_on)
    STATS["examples"] += 1
    steps = 0
    while not link.done():
        steps += 1
        assert steps < 20_000, "no progress"
        link.pump()
        # 0 (the simplest draw) is the happy path: the oldest frame arrives
        choice = data.draw(st.integers(0, 12), label="action")
        queues = [q for q in (link.to_rx, link.to_tx) if q]
        if not queues or choice == 12:
            # a silent link: the liveness timeout cuts it and both sides resume
            link.cut()
            STATS["cuts"] += 1
            continue
        to_rx = bool(link.to_rx) and (not link.to_tx or not data.draw(st.booleans()))
        queue = link.to_rx if to_rx else link.to_tx
        if choice == 9:
            queue.pop(data.draw(st.integers(0, len(queue) - 1)))
            STATS["drops"] += 1
        elif choice == 10:
            queue.append(queue[data.draw(st.integers(0, len(queue) - 1))])
            STATS["dups"] += 1
        elif choice == 11:
            link.arrive(to_rx, data.draw(st.integers(0, len(queue) - 1)))
            STATS["reorders"] += 1
        else:
            link.arrive(to_rx, 0)
        link.consume(5 - data.draw(st.integers(0, 5)))
    assert link.got == list(range(n))
    assert link.max_out <= buffer_limit


def test_sender_cannot_overrun_the_credit() -> None:
    spec = ChannelSpec(3, "a", "s.out", "t.in", 2)
    inc = InChannel(spec)
    with pytest.raises(BridgeProtocolError, match="exceeds the credit"):
        inc.on_data(Data(3, 1, [1, 2, 3]))


def test_ack_of_unsent_seq_is_a_protocol_error() -> None:
    out = OutChannel(ChannelSpec(4, "a", "s.out", "t.in", 2))
    with pytest.raises(BridgeProtocolError, match="only 0 were sent"):
        out.on_credit(Credit(4, 5, 10))
    with pytest.raises(BridgeProtocolError, match="RESUME from seq 2"):
        out.on_resume(Resume(4, 2))


def test_completion_mode_keeps_unconfirmed_messages_for_resend() -> None:
    spec = ChannelSpec(5, "a", "s.out", "t.in", 10)
    out, inc = OutChannel(spec), InChannel(spec, ack_on="completion")
    out.on_credit(inc.take_credit())
    for v in range(5):
        out.push(v)
    frame = out.take_data()
    assert frame is not None
    inc.on_data(frame)
    for _ in range(5):
        inc.pop()
    out.on_credit(inc.take_credit())
    assert out.acked == 0 and len(out.buffer) == 5  # delivered, not completed
    inc.complete(3)
    out.on_credit(inc.take_credit())
    assert out.acked == 3 and list(out.buffer) == [3, 4]


class _Refused(Exception):
    pass


def _state(out: OutChannel, inc: InChannel) -> tuple[Any, ...]:
    return (out.next_seq, out.acked, list(out.buffer), out.messages, out.skipped,
            out.room(), inc.delivered, list(inc.buffer), inc.credit_due, inc.credit_idle,
            inc.grant_upto())


@settings(max_examples=long_scale(150))
@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 30),
       st.lists(st.tuples(st.sampled_from(["push", "deliver", "fail", "credit", "all"]),
                          st.integers(0, 50)), max_size=40))
def test_batch_operations_equal_one_at_a_time(capacity: int, buffer_limit: int,
                                              replayed: int, ops: list[Any]) -> None:
    """push_many / deliver / pop_all (the session's batch paths) leave both halves
    exactly as the same number of push / pop calls would, in every state (``deliver``
    with a ``put`` that refuses, or raises, after k values: what it refused stays
    first, uncounted): no credit, a full
    resend buffer, a replay (a restarted deterministic peer whose receiver already
    holds ``replayed`` seqs), an empty or partly taken receive buffer."""
    spec = ChannelSpec(6, "a", "s.out", "t.in", capacity)
    pairs = []
    for _ in range(2):  # [0] batch operations, [1] one at a time
        out = OutChannel(spec, buffer_limit=buffer_limit, replay=replayed > 0)
        if replayed:  # the receiver acks past what this fresh sender numbered
            out.on_credit(Credit(6, replayed, replayed + capacity))
            out.next_seq, out.acked = 1, replayed
        inc = InChannel(spec)
        out.on_credit(inc.take_credit())
        pairs.append((out, inc))
    pushed = 0
    for op, k in ops:
        (bout, binc), (sout, sinc) = pairs
        if op == "push":
            values = list(range(pushed, pushed + k))
            taken = bout.push_many(values, 0)
            single = 0
            while single < k and sout.room() > 0:
                sout.push(values[single])
                single += 1
            assert taken == single
            pushed += k
        elif op in ("deliver", "fail"):
            for o, i in pairs:
                frame = o.take_data()
                if frame is not None:
                    i.on_data(frame)
            n = min(k, len(binc.buffer))
            handed: list[Any] = []

            def put(value: Any, handed: list[Any] = handed, k: int = k, op: str = op) -> bool:
                if len(handed) == k:
                    if op == "fail":
                        raise _Refused
                    return False
                handed.append(value)
                return True

            try:
                assert binc.deliver(put) == n
            except _Refused:
                assert op == "fail" and len(handed) == n < len(handed) + len(binc.buffer)
            assert handed == [sinc.pop() for _ in range(n)]
        elif op == "all":
            assert binc.pop_all() == [sinc.pop() for _ in range(len(sinc.buffer))]
        else:
            for o, i in pairs:
                o.on_credit(i.take_credit())
        assert _state(bout, binc) == _state(sout, sinc)
        assert len(bout.buffer) <= buffer_limit and len(binc.buffer) <= capacity


def test_zz_fault_counts_are_reported(capsys: pytest.CaptureFixture[str]) -> None:
    """The hostile-link property really exercised every kind of fault (and says how many)."""
    if STATS["examples"]:
        assert min(STATS.values()) > 0, STATS
    with capsys.disabled():
        print(f"\nchannel faults: {STATS}")
