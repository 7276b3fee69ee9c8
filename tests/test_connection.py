"""
The connection layer, once for every front end: each test runs over the native port and
over the IRC gateway (`Native` and `IRC` say the same things in each protocol's words).
"""

from __future__ import annotations

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from spartan.net.limits import ServerLimits
from tests.protocol_support import IRC_SERVER_NAME, Server, login, register
from tests.store_support import HeldStore


class Native:
    name = "native"

    @staticmethod
    def connect(server, user):
        conn = server.connect()
        conn.read()  # the greeting
        return login(conn, user)

    @staticmethod
    def message(target, text):
        return f"SEND {target} {text}"

    @staticmethod
    def ping(token):
        return f"PING {token}"

    @staticmethod
    def pong(token):
        return f"OK PONG {token}"

    @staticmethod
    def is_message(line, text):
        return line.startswith("* MSG ") and line.endswith(" " + text)

    @staticmethod
    def too_long(line):
        return line.startswith("ERR line-too-long ")


class IRC:
    name = "irc"

    @staticmethod
    def connect(server, user):
        conn = register(server.connect_irc(), user)
        conn.read()
        return conn

    @staticmethod
    def message(target, text):
        return f"PRIVMSG {target} :{text}"

    @staticmethod
    def ping(token):
        return f"PING :{token}"

    @staticmethod
    def pong(token):
        return f":{IRC_SERVER_NAME} PONG {IRC_SERVER_NAME} :{token}"

    @staticmethod
    def is_message(line, text):
        return " PRIVMSG " in line and line.endswith(":" + text)

    @staticmethod
    def too_long(line):
        return f":{IRC_SERVER_NAME} 417 " in line


@pytest.fixture(params=[Native, IRC], ids=["native", "irc"])
def speak(request):
    return request.param


def test_replies_keep_the_order_of_the_lines_while_the_store_is_slow(speak):
    server = Server(store=HeldStore())
    sender, reader = speak.connect(server, "alice"), Native.connect(server, "bob")
    server.store.holding = True
    assert sender.send(speak.message("bob", "one"), speak.ping("after")) == []
    assert len(server.store.held) == 1 and reader.read() == []  # not delivered before stored
    server.store.release()
    assert sender.read()[-1] == speak.pong("after")
    assert [Native.is_message(line, "one") for line in reader.read()] == [True]


def test_output_is_one_write_per_connection_per_read(speak):
    server = Server()
    sender = speak.connect(server, "alice")
    members = [Native.connect(server, user) for user in ("bob", "charlie", "eve")]
    if speak is IRC:
        sender.send("JOIN #group1")
    writes = []
    for member in members + [sender]:
        original = member.transport.write
        member.transport.write = lambda data, original=original, who=member: (
            writes.append(who) or original(data)
        )
    sender.send(*[speak.message("#group1", f"m{i}") for i in range(10)])
    writers = members + ([sender] if speak is Native else [])  # IRC: no echo asked for
    assert sorted(map(id, writes)) == sorted(map(id, writers))  # one write each
    for member in members:
        assert sum(Native.is_message(line, "m9") for line in member.read()) == 1


def test_an_overlong_line_is_refused_and_the_next_line_is_answered(speak):
    server = Server(max_line=100)
    conn = speak.connect(server, "alice")
    lines = conn.send("x" * 300, speak.ping("still-here"))
    assert speak.too_long(lines[0]) and lines[-1] == speak.pong("still-here")
    assert not conn.closed


def test_a_reader_that_stops_reading_is_dropped_and_loses_nothing(speak):
    server = Server(max_pending=2000)
    sender = Native.connect(server, "alice")
    stalled = speak.connect(server, "bob")
    stalled.transport.producer.pauseProducing()  # what the transport does: the peer stopped
    for n in range(60):
        sender.send(f"SEND bob number {n}")
    server.clock.advance(1)
    assert stalled.closed
    assert len(stalled.transport.value()) <= 2000 + 300  # stopped at the limit
    stalled.close()
    again = speak.connect(server, "bob") if speak is Native else None
    if speak is Native:
        lines = again.send("OPEN alice")
    else:  # IRC replays what was not seen at registration
        again = server.connect_irc()
        lines = again.send("NICK bob", "USER bob 0 * :Bob")
    got = [n for n in range(60) if any(line.endswith(f"number {n}") for line in lines)]
    assert got == list(range(60))


def test_a_reader_that_catches_up_is_not_dropped(speak):
    server = Server(max_pending=2000)
    sender = Native.connect(server, "alice")
    reader = speak.connect(server, "bob")
    for _ in range(3):
        reader.transport.producer.pauseProducing()
        for n in range(10):
            sender.send(f"SEND bob message number {n}")
        reader.transport.producer.resumeProducing()
        reader.read()
    assert not reader.closed


def test_connections_over_the_limit_are_refused_in_their_protocol(speak):
    limits = ServerLimits(max_connections=1, max_per_address=1)
    server = Server(limits=limits)
    speak.connect(server, "alice")
    refused = server.connect() if speak is Native else server.connect_irc()
    words = refused.read()
    assert refused.closed
    assert (words[0].startswith("ERR too-many-connections") if speak is Native
            else words[-1].startswith("ERROR :Closing Link"))  # fmt: skip


class NoDelayTransport(StringTransport):
    """A transport that records what is asked of Nagle's algorithm, as TCP offers it."""

    no_delay = False

    def setTcpNoDelay(self, enabled):
        self.no_delay = enabled


def test_every_connection_turns_nagle_off(speak):
    # Output is already one write per connection per turn: Nagle would only hold a reply
    # until the peer's delayed ACK (docs/performance.md, "Where each speed trick lives").
    server = Server()
    factory = server.factory if speak is Native else server.irc_factory
    protocol = factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 5000))
    transport = NoDelayTransport()
    protocol.makeConnection(transport)
    assert transport.no_delay is True


def test_a_connection_with_nothing_waiting_keeps_no_reply_queue(speak):
    # An empty deque is 600 bytes, a third of an idle connection: made only when needed.
    server = Server(store=HeldStore())
    conn = speak.connect(server, "alice")
    assert conn.protocol._replies is None
    server.store.holding = True
    conn.send(speak.message("bob", "waits"))
    assert conn.protocol._replies  # a reply waits for the store
    server.store.release()
    assert not conn.protocol._replies
