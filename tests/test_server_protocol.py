"""The LineReceiver adapter over StringTransport: lines in, replies and pushes out."""

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.internet.error import ConnectionDone

from spartan.native import protocol as server
from spartan.core.chat import Chat
from spartan.core.directory import DEMO
from spartan.native.protocol import NativeFactory
from tests.store_support import HeldStore


class Connection:
    """One client connection: feed it bytes, read back the lines the server wrote."""

    def __init__(self, factory):
        self.protocol = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.greeting = self.lines()

    def feed(self, data: bytes):
        self.protocol.dataReceived(data)
        return self.lines()

    def say(self, *lines: str):
        return self.feed(b"".join(line.encode() + b"\r\n" for line in lines))

    def lines(self):
        data = self.transport.value()
        self.transport.clear()
        assert data == b"" or data.endswith(b"\r\n")
        return [line.decode() for line in data.split(b"\r\n")[:-1]]

    def close(self):
        self.protocol.connectionLost(Failure(ConnectionDone()))


@pytest.fixture
def factory():
    clock = Clock()
    clock.advance(1764000000)
    chat = Chat(DEMO, HeldStore(), clock)
    chat.start()
    return NativeFactory(chat, max_line=100, max_pending=2000, version="test")


@pytest.fixture
def connect(factory):
    def connect(user=None):
        connection = Connection(factory)
        if user:
            assert connection.say(f"LOGIN {user}") == [f"OK LOGIN {user}"]
        return connection

    return connect


def test_greets_on_connect(connect):
    assert connect().greeting == ["* HELLO Spartan 1 test Welcome to Spartan; type HELP."]


def test_every_line_gets_exactly_one_reply_in_order(connect):
    c = connect()
    replies = c.feed(b"PING a\r\nPING b\nBOGUS\n\nLOGIN alice\r\nGROUPS\n")
    assert replies == [
        "OK PONG a",
        "OK PONG b",
        "ERR unknown-command Unknown command 'BOGUS'; type HELP.",
        "ERR empty-line Empty line; type HELP for the list of commands.",
        "OK LOGIN alice",
        "OK GROUPS group1=alice,bob,charlie,eve",
    ]


def test_a_line_split_across_reads_is_one_command(connect):
    c = connect()
    assert c.feed(b"PI") == []
    assert c.feed(b"NG x") == []
    assert c.feed(b"\r") == []
    assert c.feed(b"\n") == ["OK PONG x"]


def test_help_lists_commands_before_its_reply(connect):
    lines = connect().say("HELP")
    assert lines[-1].startswith("OK HELP")
    assert any(line.startswith("* HELP SEND") for line in lines)


def test_commands_before_login_are_refused(connect):
    c = connect()
    for command in ["USERS", "GROUPS", "SEND bob hi", "OPEN bob", "ACK bob 1", "HISTORY bob"]:
        assert c.say(command) == ["ERR not-logged-in Log in first: LOGIN <user>."]


def test_login_errors(connect):
    c = connect()
    assert c.say("LOGIN zed") == ["ERR unknown-user There is no user 'zed'."]
    assert c.say("LOGIN alice") == ["OK LOGIN alice"]
    assert c.say("LOGIN bob") == ["ERR already-logged-in This connection is already logged in."]


def test_users_shows_who_is_online_in_directory_order(connect):
    alice = connect("alice")
    connect("eve")
    assert alice.say("USERS") == [
        "OK USERS alice=online bob=offline charlie=offline eve=online "
        "foo=offline bar=offline baz=offline qux=offline"
    ]
    assert connect("foo").say("GROUPS") == ["OK GROUPS"]


def test_one_to_one_chat_of_the_spec(connect):
    alice = connect("alice")
    [sent] = alice.say("SEND bob hi")
    assert sent.startswith("OK SENT 1 2025-11-24T16:00:00.000Z")
    bob = connect("bob")
    *pushed, reply = bob.say("OPEN alice")
    assert pushed == ["* MSG 1 2025-11-24T16:00:00.000Z alice alice hi"]
    assert reply == "OK OPEN alice 1"
    assert bob.say("ACK alice 1") == ["OK ACK alice 1"]
    assert bob.say("SEND alice Hey")[0].startswith("OK SENT 2 ")
    assert alice.lines() == ["* MSG 2 2025-11-24T16:00:00.000Z bob bob Hey"]
    assert bob.say("OPEN alice") == ["OK OPEN alice 0"]


def test_group_message_is_encoded_once_and_the_same_bytes_reach_every_member(
    connect, monkeypatch
):
    calls = []
    encode = server.encode_delivery

    def counting(delivery):
        calls.append(delivery)
        return encode(delivery)

    monkeypatch.setattr(server, "encode_delivery", counting)
    alice, bob, charlie, eve, foo = (connect(u) for u in ["alice", "bob", "charlie", "eve", "foo"])
    assert alice.say("SEND #group1 hi")[0].startswith("OK SENT")
    expected = ["* MSG 1 2025-11-24T16:00:00.000Z #group1 alice hi"]
    assert bob.lines() == charlie.lines() == eve.lines() == expected
    assert foo.lines() == [] and alice.lines() == []
    assert len(calls) == 1


def test_unread_names_what_waits_oldest_first_and_forgets_what_is_acknowledged(connect):
    alice, charlie = connect("alice"), connect("charlie")
    assert alice.say("UNREAD") == ["OK UNREAD"]
    charlie.say("SEND #group1 one")
    charlie.say("SEND alice two")
    charlie.say("SEND alice three")
    alice.say("SEND charlie mine")
    bob = connect("bob")
    bob.say("SEND alice four")
    assert alice.say("UNREAD")[-1] == "OK UNREAD #group1=1 charlie=2 bob=1"  # after live pushes
    alice.say("ACK charlie 3")
    assert alice.say("UNREAD") == ["OK UNREAD #group1=1 bob=1"]
    assert connect("foo").say("UNREAD") == ["OK UNREAD"]


def test_non_member_gets_an_error_for_every_group_command(connect):
    foo = connect("foo")
    for command in ["SEND #group1 hi", "OPEN #group1", "ACK #group1 1", "HISTORY #group1"]:
        assert foo.say(command) == ["ERR not-a-member You are not a member of 'group1'."]


def test_history_lines_come_before_their_reply(connect):
    alice = connect("alice")
    alice.say("SEND bob one", "SEND bob two")
    lines = alice.say("HISTORY bob 1")
    assert lines == ["* HISTORY 2 2025-11-24T16:00:00.000Z bob alice two", "OK HISTORY bob 1"]


@pytest.mark.parametrize(
    "data, code",
    [
        (b"SEND bob \xc3\x28\r\n", "bad-encoding"),
        (b"SEND bob \x1b]0;pwned\x07\r\n", "control-character"),
        (b"\xff\xfb\x1f\xff\xfd\x01\r\n", "telnet-negotiation"),
        (b"SEND nobody hi\r\n", "unknown-user"),
        (b"SEND #nogroup hi\r\n", "unknown-group"),
        (b"DANCE\r\n", "unknown-command"),
    ],
)
def test_bad_input_gets_an_error_and_changes_nothing(connect, data, code):
    alice = connect("alice")
    [reply] = alice.feed(data)
    assert reply.startswith(f"ERR {code} ")
    assert not alice.transport.disconnecting
    assert alice.say("HISTORY bob") == ["OK HISTORY bob 0"]
    assert alice.say("PING") == ["OK PONG"]


def test_overlong_line_is_refused_and_the_next_line_still_works(connect):
    c = connect("alice")
    replies = c.feed(b"SEND bob " + b"x" * 200 + b"\r\nPING after\r\n")
    assert replies == [
        "ERR line-too-long Lines are limited to 100 bytes; line discarded.",
        "OK PONG after",
    ]
    assert c.say("HISTORY bob") == ["OK HISTORY bob 0"]  # nothing of it was sent


def test_overlong_line_arriving_in_pieces_is_discarded_to_its_end(connect):
    c = connect("alice")
    assert c.feed(b"SEND bob " + b"x" * 150) == [
        "ERR line-too-long Lines are limited to 100 bytes; line discarded."
    ]
    assert c.feed(b"y" * 500) == []
    assert c.feed(b"z" * 50 + b" still the same line\nPING 1\nPING 2\n") == ["OK PONG 1", "OK PONG 2"]
    assert not c.transport.disconnecting


def test_an_exception_in_a_handler_is_an_error_reply_not_a_dropped_connection(connect, factory):
    c = connect("alice")

    def broken(*args):
        raise RuntimeError("boom")

    c.protocol.session.history = broken
    assert c.say("HISTORY bob") == [
        "ERR internal-error The server failed to handle that command; it has been logged."
    ]
    assert not c.transport.disconnecting
    assert c.say("PING") == ["OK PONG"]


def test_replies_stay_in_order_while_the_store_is_slow(connect, factory):
    alice = connect("alice")
    bob = connect("bob")
    store = factory.chat.store
    store.holding = True
    assert alice.say("SEND bob hi", "PING x") == []  # PING waits behind SEND
    assert bob.lines() == []  # not delivered before it is stored
    store.release()
    assert alice.lines() == [alice_sent(1), "OK PONG x"]
    assert bob.lines() == ["* MSG 1 2025-11-24T16:00:00.000Z alice alice hi"]


def alice_sent(message_id):
    return f"OK SENT {message_id} 2025-11-24T16:00:00.000Z"


def test_same_user_in_several_places_each_gets_live_messages(connect):
    alice = connect("alice")
    laptop, phone = connect("bob"), connect("bob")
    alice.say("SEND bob hi")
    assert laptop.lines() == phone.lines() == ["* MSG 1 2025-11-24T16:00:00.000Z alice alice hi"]
    laptop.say("SEND alice from the laptop")
    assert phone.lines() == ["* MSG 2 2025-11-24T16:00:00.000Z alice bob from the laptop"]


def test_a_client_that_stops_reading_is_dropped_and_its_messages_wait(connect):
    alice = connect("alice")
    bob = connect("bob")
    bob.transport.producer.pauseProducing()  # what the transport does: the peer stopped reading
    for n in range(40):
        alice.say(f"SEND bob message number {n}")
    assert bob.transport.disconnecting
    written = len(bob.transport.value())
    assert written <= 2000 + 200  # stopped at the limit, not at 40 messages
    bob.close()
    assert alice.say("USERS")[0].startswith("OK USERS alice=online bob=offline")
    again = connect("bob")
    *messages, reply = again.say("OPEN alice")
    assert reply == "OK OPEN alice 40"
    assert messages[0].endswith("message number 0") and messages[-1].endswith("number 39")


def test_a_reader_that_catches_up_is_not_dropped(connect):
    alice = connect("alice")
    bob = connect("bob")
    for _ in range(3):
        bob.transport.producer.pauseProducing()
        for n in range(10):
            alice.say(f"SEND bob message number {n}")
        bob.transport.producer.resumeProducing()
    assert not bob.transport.disconnecting


def test_quit_says_goodbye_and_closes(connect):
    c = connect("alice")
    assert c.say("QUIT") == ["OK BYE"]
    assert c.transport.disconnecting


def test_quit_waits_for_earlier_replies(connect, factory):
    c = connect("alice")
    factory.chat.store.holding = True
    assert c.say("SEND bob hi", "QUIT") == []
    assert not c.transport.disconnecting
    factory.chat.store.fail(Failure(RuntimeError("the disk caught fire")))
    assert c.lines()[0].startswith("ERR internal-error")
    assert c.transport.disconnecting


def test_disconnect_logs_the_session_out(connect, factory):
    c = connect("alice")
    c.close()
    assert not factory.chat.is_online("alice")
