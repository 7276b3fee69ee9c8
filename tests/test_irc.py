"""The IRC gateway over StringTransport: no reactor, no sockets, the clock is a task.Clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from spartan.native import wire
from spartan.core.chat import Chat
from spartan.core.directory import Directory
from spartan.irc import IRCGatewayFactory
from spartan.irc.gateway import ACK_INTERVAL
from spartan.irc.messages import MessageEncoder
from spartan.store import StoredMessage
from spartan.irc.lines import clean_text, format_line, parse_line, split_utf8
from spartan.native.protocol import NativeFactory
from spartan.net.connection import MAX_WAITING_REPLIES
from tests.store_support import HeldStore

DIRECTORY = Directory(
    users=("alice", "bob", "charlie", "eve"),
    groups={"group1": ("alice", "bob", "charlie"), "staff": ("eve",)},
)
START = 1_795_000_000.0  # 2026-11-18T...


class Recorder:
    """A native client as the core sees it: it records what is pushed."""

    def __init__(self) -> None:
        self.deliveries = []
        self.events = []

    def receive(self, delivery) -> None:
        self.deliveries.append(delivery)

    def topic_changed(self, group, topic) -> None:
        self.events.append(("topic", group, topic))

    def presence(self, user, online, session) -> None:
        self.events.append(("presence", user, online))


class World:
    def __init__(self, directory: Directory = DIRECTORY, **kwargs) -> None:
        self.clock = task.Clock()
        self.clock.advance(START)
        self.store = HeldStore()
        self.chat = Chat(directory, self.store, self.clock)
        self.chat.start()
        self.factory = IRCGatewayFactory(self.chat, server_name="irc.test", **kwargs)

    def connect(self):
        protocol = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        protocol.makeConnection(transport)
        return IRCClient(protocol, transport, self.clock)

    def register(self, nick: str, caps: str | None = None):
        client = self.connect()
        if caps:
            client.send("CAP LS 302", f"CAP REQ :{caps}")
        client.send(f"NICK {nick}", f"USER {nick} 0 * :{nick.title()} Example")
        if caps:
            client.send("CAP END")
        assert any(" 001 " in line for line in client.lines()), "not registered"
        return client

    def native(self, user: str):
        recorder = Recorder()
        session = self.chat.login(user, None, recorder).result
        return session, recorder

    def native_protocol(self, user: str):
        """A real native-protocol connection (NativeProtocol) over a StringTransport."""
        protocol = NativeFactory(self.chat).buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(f"LOGIN {user}\n".encode())
        transport.clear()
        return protocol, transport


class IRCClient:
    def __init__(self, protocol, transport, clock) -> None:
        self.protocol = protocol
        self.transport = transport
        self.clock = clock

    def send(self, *lines: str, end: bytes = b"\r\n") -> None:
        for line in lines:
            self.protocol.dataReceived(line.encode("utf-8") + end)
        self.clock.advance(0)

    def lines(self) -> list[str]:
        data = self.transport.value()
        self.transport.clear()
        assert data == b"" or data.endswith(b"\r\n")
        return data.decode("utf-8").split("\r\n")[:-1]

    def ask(self, *lines: str) -> list[str]:
        self.lines()
        self.send(*lines)
        return self.lines()


def numerics(lines: list[str]) -> list[str]:
    return [line.split(" ")[1] for line in lines]


# -- pure helpers -------------------------------------------------------------------------


def test_parse_line() -> None:
    assert parse_line(b"PRIVMSG #a :hello there\r") == ("PRIVMSG", ["#a", "hello there"])
    assert parse_line(b"@label=1 :me!x@y privmsg bob :hi") == ("PRIVMSG", ["bob", "hi"])
    assert parse_line(b"NICK   alice  ") == ("NICK", ["alice"])
    assert parse_line(b"TOPIC #a :") == ("TOPIC", ["#a", ""])
    assert parse_line(b"") is None and parse_line(b"   \r") is None and parse_line(b":pfx") is None
    assert parse_line("PRIVMSG bob :caf\xe9".encode("latin-1")) == ("PRIVMSG", ["bob", "café"])


def test_clean_text_and_split() -> None:
    assert clean_text("\x02bold\x02 \x0304,01red\x03 plain\x1f") == "bold red plain"
    assert clean_text("\x01ACTION waves\x01") == "/me waves"
    assert clean_text("\x01VERSION\x01") == ""
    pieces = split_utf8("é" * 300, 101)
    assert "".join(pieces) == "é" * 300 and all(len(p.encode()) <= 101 for p in pieces)
    assert format_line("s", "JOIN", "#a", trailing=False) == b":s JOIN #a\r\n"
    assert format_line("s", "PRIVMSG", "#a", "hi") == b":s PRIVMSG #a :hi\r\n"


# -- registration -------------------------------------------------------------------------


def test_registration_welcome_and_motd() -> None:
    world = World()
    client = world.connect()
    client.send("NICK alice", "USER alice 0 * :Alice Example")
    lines = client.lines()
    codes = numerics(lines)
    assert codes[:5] == ["001", "002", "003", "004", "005"]
    assert codes[-1] == "376" and "375" in codes and "372" in codes
    assert lines[0].startswith(":irc.test 001 alice :Welcome")
    assert "alice!alice@irc.test" in lines[0]
    assert world.chat.is_online("alice")


def test_registration_waits_for_cap_end() -> None:
    world = World()
    client = world.connect()
    client.send("CAP LS 302")
    assert client.lines() == [":irc.test CAP * LS :server-time echo-message"]
    client.send("NICK alice", "USER alice 0 * :A", "CAP REQ :server-time unknown-cap")
    assert client.lines() == [":irc.test CAP alice NAK :server-time unknown-cap"]
    client.send("CAP REQ :server-time")
    assert client.lines() == [":irc.test CAP alice ACK :server-time"]
    assert not world.chat.is_online("alice")
    client.send("CAP END")
    assert numerics(client.lines())[0] == "001"
    assert client.ask("CAP LIST") == [":irc.test CAP alice LIST :server-time"]


def test_nick_must_be_a_spartan_user() -> None:
    world = World()
    client = world.connect()
    assert client.ask("NICK mallory") == [":irc.test 432 * mallory :Not a Spartan user name"]
    assert numerics(client.ask("NICK bad,nick")) == ["432"]
    assert numerics(client.ask("NICK")) == ["431"]
    client.send("USER x 0 * :X", "NICK bob")
    assert numerics(client.lines())[0] == "001"


def test_commands_before_registration() -> None:
    world = World()
    client = world.connect()
    assert client.ask("JOIN #group1") == [":irc.test 451 * :You have not registered"]
    assert client.ask("PING :abc") == [":irc.test PONG irc.test :abc"]
    assert numerics(client.ask("USER x")) == ["461"]
    assert numerics(client.ask("NONSENSE")) == ["421"]


def test_reregistration_and_nick_change_refused() -> None:
    world = World()
    client = world.register("alice")
    assert numerics(client.ask("USER a 0 * :A")) == ["462"]
    assert numerics(client.ask("PASS secret")) == ["462"]
    assert client.ask("NICK bob")[0].startswith(":irc.test 432 alice bob :")
    assert client.ask("NICK alice") == []


def test_password_is_passed_to_login() -> None:
    world = World()
    seen = []

    class Checker:
        def check(self, user, password, peer):
            from twisted.internet.defer import succeed

            seen.append((user, password, peer))
            return succeed(password == "sesame")

    world.chat.authenticator = Checker()
    client = world.connect()
    client.send("PASS sesame", "NICK alice", "USER a 0 * :A")
    assert numerics(client.lines())[0] == "001"
    assert seen == [("alice", "sesame", "127.0.0.1")]

    wrong = world.connect()
    wrong.send("PASS nope", "NICK bob", "USER b 0 * :B")
    lines = wrong.lines()
    assert numerics(lines[:1]) == ["464"] and lines[1].startswith("ERROR :Closing Link: bob")
    assert wrong.transport.disconnecting
    assert not world.chat.is_online("bob")


def test_lines_wait_while_login_is_checked() -> None:
    from twisted.internet.defer import Deferred

    world = World()
    pending = Deferred()

    class Slow:
        def check(self, user, password, peer):
            return pending

    world.chat.authenticator = Slow()
    client = world.connect()
    client.send("NICK alice", "USER a 0 * :A", "PING :after")
    assert client.lines() == []
    pending.callback(True)
    lines = client.lines()
    assert numerics(lines)[0] == "001" and lines[-1] == ":irc.test PONG irc.test :after"


# -- channels -----------------------------------------------------------------------------


def test_join_names_topic_for_members() -> None:
    world = World()
    world.native("bob")
    alice = world.register("alice")
    lines = alice.ask("JOIN #group1")
    assert lines[0] == ":alice!alice@irc.test JOIN #group1"
    assert lines[1] == ":irc.test 353 alice = #group1 :alice bob"  # bob is online natively
    assert lines[2] == ":irc.test 366 alice #group1 :End of /NAMES list"
    assert numerics(alice.ask("TOPIC #group1")) == ["331"]
    assert alice.ask("TOPIC #group1 :new topic") == [":alice!alice@irc.test TOPIC #group1 :new topic"]
    assert alice.ask("JOIN #group1") == []  # already there
    assert numerics(alice.ask("NAMES #group1")) == ["353", "366"]


def test_join_refused_to_non_members_and_unknown_channels() -> None:
    world = World()
    alice = world.register("alice")
    assert alice.ask("JOIN #staff") == [
        ":irc.test 473 alice #staff :Cannot join channel (+i): members only"
    ]
    assert numerics(alice.ask("JOIN #nope")) == ["403"]
    assert numerics(alice.ask("JOIN nochannel")) == ["403"]
    assert numerics(alice.ask("JOIN")) == ["461"]
    assert numerics(alice.ask("PART #group1")) == ["442"]
    assert numerics(alice.ask("NAMES #staff")) == ["366"]  # no names for outsiders
    assert numerics(alice.ask("TOPIC #staff")) == ["442"]
    assert numerics(alice.ask("TOPIC #group1")) == ["442"]  # a member, but not joined


def test_join_part_quit_are_seen_by_other_irc_users() -> None:
    world = World()
    alice = world.register("alice")
    bob = world.register("bob")
    alice.send("JOIN #group1")
    alice.lines()
    bob.send("JOIN #group1")
    assert alice.lines() == [":bob!bob@irc.test JOIN #group1"]
    assert ":irc.test 353 bob = #group1 :alice bob" in bob.lines()
    bob.lines()
    bob.send("PART #group1 :later")
    assert alice.lines() == [":bob!bob@irc.test PART #group1 :later"]
    bob.send("JOIN #group1")
    alice.lines()
    assert bob.ask("QUIT :gone") == ["ERROR :Closing Link: bob (Quit: gone)"]
    bob.protocol.connectionLost(None)
    assert alice.lines() == [":bob!bob@irc.test QUIT :Quit: gone"]
    assert not world.chat.is_online("bob")


def test_list_who_whois_away() -> None:
    world = World()
    alice = world.register("alice")
    bob = world.register("bob")
    bob.send("JOIN #group1")
    lines = alice.ask("LIST")
    assert numerics(lines) == ["321", "322", "323"]
    assert lines[1].startswith(":irc.test 322 alice #group1 1 :")  # staff is not alice's
    assert alice.ask("WHO #group1") == [
        ":irc.test 352 alice #group1 bob irc.test irc.test bob H :0 Bob Example",
        ":irc.test 315 alice #group1 :End of WHO list",
    ]
    assert numerics(bob.ask("AWAY :lunch")) == ["306"]
    assert "G :0 Bob Example" in alice.ask("WHO bob")[0]
    whois = alice.ask("WHOIS bob")
    assert numerics(whois) == ["311", "312", "319", "301", "318"]
    assert whois[3] == ":irc.test 301 alice bob :lunch"
    assert alice.ask("PRIVMSG bob :hi")[0] == ":irc.test 301 alice bob :lunch"
    assert numerics(bob.ask("AWAY")) == ["305"]
    assert numerics(alice.ask("WHOIS nobody")) == ["401", "318"]
    assert numerics(alice.ask("WHOIS charlie"))[-2:] == ["301", "318"]  # offline
    assert [line.split(" ")[7] for line in alice.ask("WHO *")[:-1]] == ["alice", "bob"]
    assert numerics(alice.ask("WHO b*")) == ["352", "315"]


def test_names_are_matched_case_insensitively_when_unambiguous() -> None:
    world = World()
    alice = world.register("Alice")
    assert alice.ask("JOIN #GROUP1")[0] == ":alice!alice@irc.test JOIN #group1"
    assert numerics(alice.ask("WHOIS BOB"))[0] == "311"
    assert alice.ask("PRIVMSG ALICE :me") == [":alice!alice@irc.test PRIVMSG alice :me"]


# -- messages both ways -------------------------------------------------------------------


def test_privmsg_from_irc_reaches_native_users() -> None:
    world = World()
    native, transport = world.native_protocol("bob")
    alice = world.register("alice")
    assert alice.ask("PRIVMSG bob :hi bob") == []
    line = wire.parse_server_line(transport.value())
    assert (line.kind, line.conversation, line.sender, line.text) == ("MSG", "alice", "alice", "hi bob")
    transport.clear()
    alice.send("JOIN #group1")
    transport.clear()
    alice.send("PRIVMSG #group1 :hi all")
    line = wire.parse_server_line(transport.value())
    assert (line.conversation, line.sender, line.text) == ("#group1", "alice", "hi all")
    transport.clear()
    alice.send("NOTICE bob :\x02notice\x02")
    assert wire.parse_server_line(transport.value()).text == "/notice notice"  # a notice, marked


def test_native_messages_reach_irc_users() -> None:
    world = World()
    bob, _ = world.native("bob")
    alice = world.register("alice")
    plain = world.register("charlie")
    tagged = world.register("eve", caps="server-time")
    bob.send("alice", "hello alice")
    assert alice.lines() == [":bob!bob@irc.test PRIVMSG alice :hello alice"]
    # Group messages reach only the connections that joined the channel.
    alice.send("JOIN #group1")
    plain.send("JOIN #group1")
    alice.lines(), plain.lines()
    bob.send("#group1", "hi group")
    assert alice.lines() == [":bob!bob@irc.test PRIVMSG #group1 :hi group"]
    assert plain.lines() == [":bob!bob@irc.test PRIVMSG #group1 :hi group"]
    # eve's own message from another session: not shown without echo-message.
    world.native("eve")[0].send("bob", "x")
    assert tagged.lines() == []
    bob.send("eve", "to eve")
    assert tagged.lines() == [
        f"@time={wire.format_timestamp(START)} :bob!bob@irc.test PRIVMSG eve :to eve"
    ]


def test_delivery_is_encoded_once_per_format(monkeypatch) -> None:
    world = World()
    calls = []
    encode = MessageEncoder._encode
    monkeypatch.setattr(
        MessageEncoder, "_encode", lambda self, d, tags: calls.append(tags) or encode(self, d, tags)
    )
    bob, _ = world.native("bob")
    plain = [world.register("alice"), world.register("charlie")]
    tagged = world.register("alice", caps="server-time")
    for client in plain + [tagged]:
        client.send("JOIN #group1")
    for client in plain + [tagged]:
        client.lines()
    bob.send("#group1", "once")
    assert [c.lines() for c in plain] == [[":bob!bob@irc.test PRIVMSG #group1 :once"]] * 2
    assert tagged.lines()[0].startswith("@time=")
    assert len(calls) == 2  # one plain encoding, one tagged, for three connections


def test_irc_users_talk_to_each_other_and_own_messages_are_not_echoed() -> None:
    world = World()
    alice = world.register("alice")
    bob = world.register("bob")
    for c in (alice, bob):
        c.send("JOIN #group1")
    alice.lines(), bob.lines()
    assert alice.ask("PRIVMSG #group1 :hello") == []
    assert bob.lines() == [":alice!alice@irc.test PRIVMSG #group1 :hello"]
    alice.send("PRIVMSG bob :\x01ACTION waves\x01")
    assert bob.lines() == [":alice!alice@irc.test PRIVMSG bob :\x01ACTION waves\x01"]


def test_echo_message() -> None:
    world = World()
    alice = world.register("alice", caps="echo-message")
    world.native("bob")
    assert alice.ask("PRIVMSG bob :hi") == [":alice!alice@irc.test PRIVMSG bob :hi"]


def test_message_errors() -> None:
    world = World()
    alice = world.register("alice")
    assert numerics(alice.ask("PRIVMSG nobody :hi")) == ["401"]
    assert numerics(alice.ask("PRIVMSG #nope :hi")) == ["403"]
    assert numerics(alice.ask("PRIVMSG #staff :hi")) == ["404"]
    assert numerics(alice.ask("PRIVMSG")) == ["411"]
    assert numerics(alice.ask("PRIVMSG bob")) == ["412"]
    assert numerics(alice.ask("PRIVMSG bob :\x02\x02")) == ["412"]
    assert numerics(alice.ask("PRIVMSG a,b,c,d,e :x")) == ["407"]
    assert alice.ask("NOTICE nobody :hi") == []  # never an automatic reply to a NOTICE
    assert alice.ask("PRIVMSG alice :me") == [":alice!alice@irc.test PRIVMSG alice :me"]


def test_long_messages_are_split_to_fit_irc_lines() -> None:
    world = World()
    bob, _ = world.native("bob")
    alice = world.register("alice")
    text = "word " * 300
    bob.send("alice", text)
    lines = alice.lines()
    assert len(lines) > 1 and all(len(line.encode()) <= 510 for line in lines)
    assert "".join(line.split(" :", 1)[1] for line in lines) == text


# -- backlog ------------------------------------------------------------------------------


def test_unseen_direct_messages_on_connect_with_server_time() -> None:
    world = World()
    bob, _ = world.native("bob")
    charlie, _ = world.native("charlie")
    bob.send("alice", "first")
    world.clock.advance(60)
    charlie.send("alice", "second")
    world.clock.advance(60)
    client = world.connect()
    client.send("CAP LS", "CAP REQ :server-time", "NICK alice", "USER a 0 * :A", "CAP END")
    lines = client.lines()
    end = numerics(lines).index("376")
    assert lines[end + 1 :] == [
        f"@time={wire.format_timestamp(START)} :bob!bob@irc.test PRIVMSG alice :first",
        f"@time={wire.format_timestamp(START + 60)} :charlie!charlie@irc.test PRIVMSG alice :second",
    ]
    # Once acknowledged (a moment after writing), they count as seen: a native session of
    # alice finds nothing unseen.
    world.clock.advance(ACK_INTERVAL)
    session, _ = world.native("alice")
    assert session.open("bob").result == ("bob", [])
    assert session.open("charlie").result == ("charlie", [])
    again = world.register("alice")
    assert not any("PRIVMSG" in line for line in again.lines())


def test_unseen_group_messages_on_join() -> None:
    world = World()
    bob, _ = world.native("bob")
    alice = world.register("alice", caps="server-time")
    bob.send("#group1", "before join")  # alice has not joined: it waits
    assert alice.lines() == []
    lines = alice.ask("JOIN #group1")
    assert numerics(lines[1:3]) == ["353", "366"]
    assert lines[3] == (
        f"@time={wire.format_timestamp(START)} :bob!bob@irc.test PRIVMSG #group1 :before join"
    )
    world.clock.advance(ACK_INTERVAL)
    assert world.native("alice")[0].open("#group1").result == ("#group1", [])
    # Live messages in a joined channel count as seen once written (and acknowledged).
    bob.send("#group1", "live")
    assert world.native("alice")[0].open("#group1").result[1][0].text == "live"  # not yet
    world.clock.advance(ACK_INTERVAL)
    assert world.native("alice")[0].open("#group1").result == ("#group1", [])


def test_messages_pushed_during_a_pending_command_come_after_its_reply() -> None:
    from twisted.internet.defer import Deferred

    world = World()
    bob, _ = world.native("bob")
    alice = world.register("alice")
    bob.send("#group1", "old")
    gate = Deferred()
    original = world.store.seen

    def slow_seen(user, key):
        return gate.addCallback(lambda _: original(user, key))

    world.store.seen = slow_seen
    alice.send("JOIN #group1")
    world.store.seen = original
    bob.send("alice", "while joining")
    assert alice.lines() == []
    gate.callback(None)
    lines = alice.lines()
    assert lines[0].endswith("JOIN #group1") and lines[-2].endswith(":old")
    assert lines[-1].endswith("PRIVMSG alice :while joining")


# -- limits and robustness ----------------------------------------------------------------


def test_overlong_line_gets_417_and_the_connection_stays() -> None:
    world = World(max_line=100)
    alice = world.register("alice")
    lines = alice.ask("PRIVMSG bob :" + "x" * 200, "PING :still-here")
    assert lines == [
        ":irc.test 417 alice :Input line was too long",
        ":irc.test PONG irc.test :still-here",
    ]
    # An overlong line arriving in pieces: one 417, then the next line works.
    alice.protocol.dataReceived(b"PRIVMSG bob :" + b"y" * 150)
    alice.protocol.dataReceived(b"y" * 150)
    alice.protocol.dataReceived(b"yyy\r\nPING :x\r\n")
    assert alice.lines() == [
        ":irc.test 417 alice :Input line was too long",
        ":irc.test PONG irc.test :x",
    ]
    assert alice.transport.connected and not alice.transport.disconnecting


def test_garbage_never_drops_the_connection() -> None:
    world = World()
    alice = world.register("alice")
    for line in [b"\xff\xfe\xfd", b":onlyprefix", b"@tags-only", b"PRIVMSG", b"MODE", b"WHO",
                 b"12345", b"!!!", b"CAP", b"CAP FOO", b"JOIN ,,,", b"\x00\x01", b"PING"]:
        alice.protocol.dataReceived(line + b"\n")
    alice.send("PING :alive")
    assert alice.lines()[-1] == ":irc.test PONG irc.test :alive"
    assert not alice.transport.disconnecting


def test_unsupported_commands_get_421() -> None:
    world = World()
    alice = world.register("alice")
    for command in ("OPER a b", "KNOCK #x", "TAGMSG bob", "KILL bob :x", "WALLOPS :x"):
        assert numerics(alice.ask(command)) == ["421"], command


def test_internal_error_is_a_notice_not_a_drop(monkeypatch) -> None:
    world = World()
    alice = world.register("alice")

    def broken(*args):
        raise RuntimeError("bug")

    monkeypatch.setattr(type(alice.protocol), "irc_LIST", broken)
    lines = alice.ask("LIST", "PING :ok")
    assert lines[0].startswith(":irc.test NOTICE alice :The server failed")
    assert lines[1] == ":irc.test PONG irc.test :ok"


def test_slow_reader_is_dropped_past_max_pending() -> None:
    world = World(max_pending=1000)
    bob, _ = world.native("bob")
    alice = world.register("alice")
    alice.transport.producer.pauseProducing()  # the transport: the peer stopped reading
    for n in range(50):
        bob.send("alice", f"message {n} " + "z" * 40)
    assert alice.transport.disconnected or alice.transport.disconnecting
    alice.protocol.connectionLost(None)
    assert not world.chat.is_online("alice")


def test_reading_pauses_while_too_many_replies_wait() -> None:
    world = World()
    alice = world.register("alice")
    world.register("bob")
    world.store.holding = True
    many = MAX_WAITING_REPLIES + 10
    alice.protocol.dataReceived(b"PRIVMSG bob :held\r\n" + b"PING :p\r\n" * many)
    assert alice.transport.producerState == "paused"
    assert alice.lines() == []  # every PONG waits behind the PRIVMSG being stored
    world.store.holding = False
    world.store.release()
    assert alice.transport.producerState == "producing"
    assert alice.lines().count(":irc.test PONG irc.test :p") == many


def test_privmsgs_are_pipelined_into_one_commit_with_echoes_in_order() -> None:
    world = World()
    alice = world.register("alice", caps="echo-message")
    bob = world.register("bob")
    world.store.holding = True
    alice.protocol.dataReceived(
        b"".join(b"PRIVMSG bob :m%d\r\nPING :%d\r\n" % (i, i) for i in range(5))
    )
    assert len(world.store.held) == 5  # all five in flight at once, none waited for another
    assert alice.lines() == [] and bob.lines() == []
    world.store.release()
    expected = []
    for i in range(5):
        expected += [f":alice!alice@irc.test PRIVMSG bob :m{i}", f":irc.test PONG irc.test :{i}"]
    assert alice.lines() == expected
    assert bob.lines() == [f":alice!alice@irc.test PRIVMSG bob :m{i}" for i in range(5)]


@pytest.mark.parametrize("end", [b"\n", b"\r\n"])
def test_line_endings(end) -> None:
    world = World()
    client = world.connect()
    client.send("NICK alice", "USER a 0 * :A", end=end)
    assert numerics(client.lines())[0] == "001"


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=140), sender=st.sampled_from(["bob", "a" * 32]), tags=st.sampled_from(["", "time=x"]))
def test_a_message_encodes_alike_on_the_one_line_fast_path_and_the_general_one(text, sender, tags):
    encoder = MessageEncoder("irc.test")
    message = StoredMessage(1, 0.0, "dm:alice:bob", sender, clean_text(text))
    general = b"".join(
        format_line(encoder.mask(sender), "PRIVMSG", "alice", piece, tags=tags)
        for piece in encoder.pieces(message, "alice")
    )
    assert encoder.lines(message, "alice", "PRIVMSG", tags) == general
