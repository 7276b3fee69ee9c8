"""Group topics, notices and presence across the core, the native protocol and IRC
(StringTransport, task.Clock)."""

from __future__ import annotations

import pytest

from spartan.core.errors import ChatError
from spartan.native import wire
from spartan.store import Topic
from tests.test_irc import START, World, numerics

STAMP = wire.format_timestamp(START)


def native_lines(transport) -> list[bytes]:
    data = transport.value()
    transport.clear()
    return data.splitlines(keepends=True)


# -- the core -------------------------------------------------------------------------------


def test_a_member_sets_a_topic_and_the_other_sessions_are_told() -> None:
    world = World()
    alice, alice_inbox = world.native("alice")
    _, alice_elsewhere = world.native("alice")
    _, bob = world.native("bob")
    _, eve = world.native("eve")  # not a member of group1
    label, topic = alice.set_topic("#group1", "plans for friday").result
    assert (label, topic) == ("#group1", Topic("plans for friday", "alice", START))
    assert alice.topic("#group1").result == ("#group1", topic)
    assert ("topic", "#group1", topic) in bob.events
    assert ("topic", "#group1", topic) in alice_elsewhere.events
    assert not any(e[0] == "topic" for e in alice_inbox.events + eve.events)


@pytest.mark.parametrize(
    "target, text, code",
    [
        ("#staff", "mine now", "not-a-member"),
        ("bob", "a direct chat", "not-a-group"),
        ("#nosuch", "x", "unknown-group"),
        ("#group1", "x" * 301, "bad-topic"),
        ("#group1", "bell\x07", "bad-topic"),
    ],
)
def test_a_bad_topic_is_refused_and_changes_nothing(target, text, code) -> None:
    world = World()
    alice, _ = world.native("alice")
    with pytest.raises(ChatError) as refused:
        alice.set_topic(target, text)
    assert refused.value.code == code
    assert alice.topic("#group1").result == ("#group1", None)


def test_an_empty_topic_clears_it() -> None:
    world = World()
    alice, _ = world.native("alice")
    alice.set_topic("#group1", "something")
    alice.set_topic("#group1", "")
    assert alice.topic("#group1").result == ("#group1", None)


def test_presence_reaches_the_sessions_sharing_a_group() -> None:
    world = World()
    _, bob = world.native("bob")
    _, eve = world.native("eve")  # shares no group with alice
    alice, _ = world.native("alice")
    second, _ = world.native("alice")  # not a change: alice was online
    second.logout()
    alice.logout()
    assert [e for e in bob.events if e[0] == "presence"] == [
        ("presence", "alice", True),
        ("presence", "alice", False),
    ]
    assert eve.events == []


# -- the native protocol --------------------------------------------------------------------


def test_native_topic_query_set_and_push() -> None:
    world = World()
    bob, bob_wire = world.native_protocol("bob")
    alice, alice_wire = world.native_protocol("alice")
    alice.dataReceived(b"TOPIC #group1\r\n")
    assert native_lines(alice_wire) == [b"OK TOPIC #group1\r\n"]
    alice.dataReceived(b"TOPIC #group1   plans for friday  \r\n")
    assert native_lines(alice_wire) == [f"OK TOPIC #group1 alice {STAMP} plans for friday\r\n".encode()]
    (push,) = native_lines(bob_wire)
    line = wire.parse_server_line(push)
    assert (line.kind, line.rest) == ("TOPIC", f"#group1 alice {STAMP} plans for friday")
    assert wire.parse_topic(line.rest) == wire.TopicLine("#group1", "alice", START, "plans for friday")
    bob.dataReceived(b"TOPIC #group1\r\n")
    assert native_lines(bob_wire) == [f"OK TOPIC #group1 alice {STAMP} plans for friday\r\n".encode()]
    bob.dataReceived(b"TOPIC #staff hello\r\nTOPIC alice hello\r\nTOPIC #group1 a\tb\r\n")
    replies = [wire.parse_server_line(line) for line in native_lines(bob_wire)]
    assert [(r.ok, r.word) for r in replies] == [
        (False, "not-a-member"), (False, "not-a-group"), (False, "bad-topic"),
    ]  # fmt: skip


def test_native_topic_syntax() -> None:
    assert wire.parse_command(b"TOPIC #group1") == wire.Topic("#group1")
    assert wire.parse_command(b"topic #group1 a b  c") == wire.Topic("#group1", "a b  c")
    assert wire.parse_command(b"TOPIC").code == "bad-syntax"
    assert wire.parse_command(b"TOPIC #g,h x").code == "bad-name"
    for command in (wire.Topic("#group1"), wire.Topic("#group1", "new plans")):
        assert wire.parse_command(wire.format_command(command).rstrip(b"\r\n")) == command
    assert isinstance(wire.parse_topic("#g alice notatime x"), wire.WireError)
    assert wire.parse_topic("#g") == wire.TopicLine("#g")


# -- IRC ------------------------------------------------------------------------------------


def test_irc_join_shows_the_topic_and_who_set_it() -> None:
    world = World()
    bob, _ = world.native("bob")
    world.clock.advance(5)
    bob.set_topic("#group1", "plans for friday")
    alice = world.register("alice")
    lines = alice.ask("JOIN #group1")
    assert lines[1] == ":irc.test 332 alice #group1 :plans for friday"
    assert lines[2] == f":irc.test 333 alice #group1 bob!bob@irc.test {int(START) + 5}"
    assert numerics(alice.ask("TOPIC #group1")) == ["332", "333"]


def test_irc_topic_set_reaches_irc_and_native_members() -> None:
    world = World()
    native, native_wire = world.native_protocol("charlie")
    alice = world.register("alice")
    bob = world.register("bob")
    elsewhere = world.register("bob")  # bob's second connection, not in the channel
    alice.send("JOIN #group1")
    bob.send("JOIN #group1")
    alice.lines(), bob.lines(), elsewhere.lines(), native_lines(native_wire)
    assert bob.ask("TOPIC #group1 :\x02plans\x02 for friday") == [
        ":bob!bob@irc.test TOPIC #group1 :plans for friday"
    ]
    assert alice.lines() == [":bob!bob@irc.test TOPIC #group1 :plans for friday"]
    assert elsewhere.lines() == []
    assert native_lines(native_wire) == [f"* TOPIC #group1 bob {STAMP} plans for friday\r\n".encode()]
    assert numerics(alice.ask("TOPIC #staff :mine")) == ["442"]  # not on it (nor a member)


def test_irc_notice_stays_a_notice() -> None:
    world = World()
    alice = world.register("alice")
    bob = world.register("bob", caps="echo-message")
    bob.send("JOIN #group1")
    alice.send("JOIN #group1")
    bob.lines()
    assert alice.ask("NOTICE bob :do not answer") == []
    assert alice.ask("NOTICE #group1 :to all") == []
    assert bob.lines() == [
        ":alice!alice@irc.test NOTICE bob :do not answer",
        ":alice!alice@irc.test NOTICE #group1 :to all",
    ]
    assert bob.ask("NOTICE alice :back") == [":bob!bob@irc.test NOTICE alice :back"]  # the echo


def test_a_notice_waiting_offline_comes_as_a_notice() -> None:
    world = World()
    native, _ = world.native("bob")
    native.send("alice", "/notice the build is green")
    native.send("alice", "a question")
    alice = world.connect()
    alice.send("NICK alice", "USER a 0 * :A")
    assert [line for line in alice.lines() if line.startswith(":bob!")] == [
        ":bob!bob@irc.test NOTICE alice :the build is green",
        ":bob!bob@irc.test PRIVMSG alice :a question",
    ]


def test_native_users_coming_and_going_are_shown_in_irc_channels() -> None:
    world = World()
    alice = world.register("alice")
    alice.send("JOIN #group1")
    alice.lines()
    bob, _ = world.native("bob")
    assert alice.lines() == [":bob!bob@irc.test JOIN #group1"]
    assert "bob" in alice.ask("NAMES #group1")[0]
    bob.logout()
    assert alice.lines() == [":bob!bob@irc.test QUIT :Offline"]
    assert "bob" not in alice.ask("NAMES #group1")[0]
    world.native("eve")  # not in group1
    charlie = world.register("charlie")  # on IRC: in a channel once it joins it
    assert alice.lines() == []
    charlie.send("JOIN #group1")
    assert alice.lines() == [":charlie!charlie@irc.test JOIN #group1"]


def test_irc_list_shows_the_topic_or_the_members() -> None:
    world = World()
    alice = world.register("alice")
    assert alice.ask("LIST")[1] == ":irc.test 322 alice #group1 0 :Spartan group group1: alice, bob, charlie"
    alice.send("JOIN #group1", "TOPIC #group1 :plans for friday")
    assert alice.ask("LIST #group1") == [
        ":irc.test 321 alice Channel :Users  Name",
        ":irc.test 322 alice #group1 1 :plans for friday",
        ":irc.test 323 alice :End of /LIST",
    ]
