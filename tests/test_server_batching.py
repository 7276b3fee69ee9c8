"""
The speed paths keep the server's behaviour: lines split in bulk, output batched
per read, already-fired Deferreds answered at once, timestamps cached per second.
"""

from __future__ import annotations

import random
import time

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from spartan.native import wire
from spartan.core.chat import Chat
from spartan.core.directory import DEMO
from spartan.native.protocol import NativeFactory
from tests.store_support import HeldStore


class CountingTransport(StringTransport):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        super().write(data)


def make_factory(**kwargs) -> NativeFactory:
    clock = Clock()
    clock.advance(1_790_000_000.25)
    chat = Chat(DEMO, HeldStore(), clock, message_log="off")
    chat.start()
    return NativeFactory(chat, **kwargs)


def connect(factory: NativeFactory, user: str | None = None):
    protocol = factory.buildProtocol(None)
    transport = CountingTransport()
    protocol.makeConnection(transport)
    if user:
        protocol.dataReceived(f"LOGIN {user}\n".encode())
    transport.clear()
    transport.writes = 0
    return protocol, transport


def lines(transport) -> list[bytes]:
    return transport.value().split(b"\r\n")[:-1]


def test_many_lines_in_one_read_one_write_per_connection():
    factory = make_factory()
    alice, a = connect(factory, "alice")
    bob, b = connect(factory, "bob")
    charlie, c = connect(factory, "charlie")
    alice.dataReceived(b"".join(b"SEND #group1 hello %d\n" % i for i in range(64)) + b"PING x\r\n")
    replies = lines(a)
    assert [r.split(b" ")[:2] for r in replies[:64]] == [[b"OK", b"SENT"]] * 64
    assert replies[64] == b"OK PONG x"
    for t in (b, c):
        got = lines(t)
        assert [g.rsplit(b" ", 1)[1] for g in got] == [b"%d" % i for i in range(64)]
        assert all(g.startswith(b"* MSG ") for g in got)
        assert t.writes == 1
    assert a.writes == 1


def test_lines_split_across_reads_and_crlf():
    factory = make_factory()
    alice, a = connect(factory)
    for piece in (b"PI", b"NG one\r", b"\nPING two\nPIN", b"G three\n"):
        alice.dataReceived(piece)
    assert lines(a) == [b"OK PONG one", b"OK PONG two", b"OK PONG three"]


def test_overlong_lines_answered_once_and_skipped():
    factory = make_factory(max_line=16)
    alice, a = connect(factory)
    alice.dataReceived(b"PING a\n" + b"x" * 40 + b"\nPING b\n")
    alice.dataReceived(b"y" * 20)  # partial line already too long
    alice.dataReceived(b"y" * 20)
    alice.dataReceived(b"yyy\nPING c\n" + b"z" * 16 + b"\n" + b"w" * 17 + b"\n")
    got = lines(a)
    assert got[0] == b"OK PONG a"
    assert got[1].startswith(b"ERR line-too-long")
    assert got[2] == b"OK PONG b"
    assert got[3].startswith(b"ERR line-too-long")
    assert got[4] == b"OK PONG c"
    assert got[5].startswith(b"ERR unknown-command")  # 16 bytes: at the limit, accepted
    assert got[6].startswith(b"ERR line-too-long")  # 17 bytes: over it
    assert len(got) == 7


def test_quit_flushes_then_closes_and_ignores_later_lines():
    factory = make_factory()
    alice, a = connect(factory, "alice")
    alice.dataReceived(b"PING 1\nQUIT\nPING 2\n")
    assert lines(a) == [b"OK PONG 1", b"OK BYE"]
    assert a.disconnecting


def test_slow_reader_dropped_during_a_batch_gets_nothing_more():
    factory = make_factory(max_pending=1000)
    alice, a = connect(factory, "alice")
    bob, b = connect(factory, "bob")
    b.producer.pauseProducing()  # what the transport does when the peer stops reading
    alice.dataReceived(b"".join(b"SEND bob %s\n" % (b"x" * 100) for _ in range(20)))
    assert b.disconnecting  # aborted: what it was not sent is dropped with the connection
    assert len(lines(a)) == 20


def test_replies_stay_in_order_around_a_waiting_deferred():
    factory = make_factory()
    alice, a = connect(factory, "alice")
    store = factory.chat.store
    store.holding = True
    alice.dataReceived(b"SEND bob one\nPING after\n")
    assert lines(a) == []
    store.release()
    got = lines(a)
    assert got[0].startswith(b"OK SENT 1 ") and got[1] == b"OK PONG after"


def test_cached_timestamps_match_strftime():
    def reference(seconds: float) -> str:
        whole, ms = divmod(int(round(seconds * 1000)), 1000)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{ms:03d}Z"

    rng = random.Random(6)
    values = [rng.uniform(0, 4e9) for _ in range(2000)]
    values += [1_790_000_000 + rng.random() * 3 for _ in range(2000)]
    values += [0.0, 0.0004, 0.9995, 1.9999, 59.9996]
    for value in values:
        assert wire.format_timestamp(value) == reference(value)
