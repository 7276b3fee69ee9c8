"""The IRC commands and numerics an IRC server is expected to have (over StringTransport)."""

from __future__ import annotations

from tests.test_irc import START, World, numerics


def test_welcome_advertises_no_prefixes_and_counts_users() -> None:
    world = World()
    client = world.connect()
    client.send("NICK alice", "USER al 0 * :Alice")
    lines = client.lines()
    isupport = next(line for line in lines if " 005 " in line).split(" ")
    assert "PREFIX=" in isupport and "PREFIX=()" not in isupport
    assert "251" in numerics(lines) and numerics(lines).index("251") < numerics(lines).index("375")


def test_lusers_counts_users_unregistered_connections_and_the_peak() -> None:
    world = World()
    alice = world.register("alice")
    waiting = world.connect()
    waiting.send("NICK bob")
    lines = alice.ask("LUSERS")
    by = {line.split(" ")[1]: line for line in lines}
    assert "There are 1 users" in by["251"]
    assert by["253"].split(" ")[3] == "1"
    assert by["254"].split(" ")[3] == "2"  # group1 and staff
    assert by["265"].split(" ")[3:5] == ["1", "1"]
    waiting.send("USER bob 0 * :Bob")
    bob_lines = waiting.lines()
    assert " 001 " in bob_lines[0]
    waiting.protocol.connectionLost(None)
    by = {line.split(" ")[1]: line for line in alice.ask("LUSERS")}
    assert by["253"].split(" ")[3] == "0"
    assert by["266"].split(" ")[3:5] == ["1", "2"]  # now 1, at most 2


def test_native_sessions_count_as_users() -> None:
    world = World()
    world.native("bob")
    alice = world.register("alice")
    by = {line.split(" ")[1]: line for line in alice.ask("LUSERS")}
    assert "There are 2 users" in by["251"]


def test_time_gives_the_injected_clock() -> None:
    world = World()
    alice = world.register("alice")
    (line,) = alice.ask("TIME")
    assert line.startswith(f":irc.test 391 alice irc.test {int(START)} 0 :")
    assert "2026" in line


def test_userhost_shows_online_users_and_away() -> None:
    world = World()
    alice = world.register("alice")
    bob = world.register("bob")
    bob.send("AWAY :lunch")
    (line,) = alice.ask("USERHOST bob ALICE charlie nobody")
    assert line == ":irc.test 302 alice :bob=-bob@irc.test alice=+alice@irc.test"
    assert numerics(alice.ask("USERHOST")) == ["461"]


def test_whowas_lists_ended_connections_newest_first() -> None:
    world = World()
    alice = world.register("alice")
    assert numerics(alice.ask("WHOWAS bob")) == ["406", "369"]
    for ident in ("first", "second"):
        bob = world.connect()
        bob.send("NICK bob", f"USER {ident} 0 * :Bob B")
        world.clock.advance(60)
        bob.send("QUIT :bye")
        bob.protocol.connectionLost(None)
    lines = alice.ask("WHOWAS bob")
    assert numerics(lines) == ["314", "312", "314", "312", "369"]
    assert lines[0] == ":irc.test 314 alice bob second irc.test * :Bob B"
    assert lines[2].split(" ")[4] == "first"
    assert numerics(alice.ask("WHOWAS Bob 1")) == ["314", "312", "369"]
    assert numerics(alice.ask("WHOWAS bob 0")) == ["314", "312", "314", "312", "369"]
    assert numerics(alice.ask("WHOWAS")) == ["431"]


def test_channel_mode_gives_creation_time_and_empty_lists() -> None:
    world = World()
    alice = world.register("alice")
    lines = alice.ask("MODE #group1")
    assert numerics(lines) == ["324", "329"]
    assert lines[1] == f":irc.test 329 alice #group1 {int(START)}"
    assert numerics(alice.ask("MODE #group1 b")) == ["368"]
    assert numerics(alice.ask("MODE #group1 +e")) == ["349"]
    assert numerics(alice.ask("MODE #group1 I")) == ["347"]
    assert numerics(alice.ask("MODE #group1 +b bob!*@*")) == ["482"]
    assert numerics(alice.ask("MODE #group1 +k key")) == ["482"]


def test_user_mode_invisible_is_accepted() -> None:
    world = World()
    alice = world.register("alice")
    assert alice.ask("MODE alice +i") == [":alice!alice@irc.test MODE alice :+i"]
    assert alice.ask("MODE alice +i") == []  # nothing changed, nothing said
    assert alice.ask("MODE alice") == [":irc.test 221 alice +i"]
    assert alice.ask("MODE alice -i") == [":alice!alice@irc.test MODE alice :-i"]
    assert numerics(alice.ask("MODE alice +w")) == ["501"]
    assert numerics(alice.ask("MODE bob +i")) == ["502"]


def test_channel_message_needs_a_join() -> None:
    world = World()
    _, bob = world.native("bob")
    alice = world.register("alice")
    assert alice.ask("PRIVMSG #group1 :early") == [
        ":irc.test 404 alice #group1 :Cannot send to channel (JOIN it first)"
    ]
    assert alice.ask("NOTICE #group1 :early") == []  # a NOTICE is never answered
    assert bob.deliveries == []
    alice.send("JOIN #group1")
    alice.ask("PRIVMSG #group1 :joined")
    assert [d.message.text for d in bob.deliveries] == ["joined"]


def test_an_invisible_user_is_hidden_from_who_masks_of_strangers() -> None:
    world = World()
    alice = world.register("alice")
    bob = world.register("bob")
    bob.send("MODE bob +i")
    assert numerics(alice.ask("WHO b*")) == ["315"]
    assert numerics(alice.ask("WHO bob")) == ["352", "315"]  # by its nick: found
    by = {line.split(" ")[1]: line for line in alice.ask("LUSERS")}
    assert "There are 1 users and 1 invisible" in by["251"]
    alice.send("JOIN #group1")
    bob.send("JOIN #group1")
    assert numerics(alice.ask("WHO b*")) == ["352", "315"]  # they share a channel


def test_whox_gives_the_fields_asked_for_in_whox_order() -> None:
    world = World()
    alice = world.register("alice")
    world.register("bob").send("AWAY :out")
    lines = alice.ask("WHO bob %rnft,42")
    assert lines == [":irc.test 354 alice 42 bob G :Bob Example", ":irc.test 315 alice bob :End of WHO list"]
    (full, _) = alice.ask("WHO bob %tcuihsnfdlaor,7")
    assert full == ":irc.test 354 alice 7 * bob 255.255.255.255 irc.test irc.test bob G 0 0 0 n/a :Bob Example"
    assert alice.ask("WHO bob %n")[0] == ":irc.test 354 alice :bob"


def test_help_lists_the_commands_and_explains_one() -> None:
    world = World()
    alice = world.register("alice")
    lines = alice.ask("HELP")
    assert numerics(lines)[0] == "704" and numerics(lines)[-1] == "706"
    assert set(numerics(lines)[1:-1]) == {"705"} and any("TOPIC" in line for line in lines)
    lines = alice.ask("HELPOP topic")
    assert lines[0] == ":irc.test 704 alice TOPIC :TOPIC <#group> [:<text>]"
    assert numerics(lines) == ["704", "705", "706"]
    assert numerics(alice.ask("HELP FROB")) == ["524"]


def test_invite_nudges_a_member_and_kick_is_refused() -> None:
    world = World()
    alice = world.register("alice")
    bob = world.register("bob")
    eve = world.register("eve")
    assert numerics(alice.ask("INVITE bob #group1")) == ["442"]  # not on it
    alice.send("JOIN #group1")
    alice.lines()
    assert numerics(alice.ask("INVITE charlie #group1")) == ["401"]  # not online
    assert numerics(alice.ask("INVITE eve #group1")) == ["482"]  # not a member
    assert alice.ask("INVITE bob #group1") == [":irc.test 341 alice bob #group1"]
    assert bob.lines() == [":alice!alice@irc.test INVITE bob #group1"]
    assert eve.lines() == []
    bob.send("JOIN #group1")
    assert numerics(alice.ask("INVITE bob #group1")) == ["443"]
    assert numerics(alice.ask("KICK #group1 bob :bye")) == ["482"]
    assert numerics(alice.ask("KICK #group1 charlie")) == ["441"]
    assert numerics(alice.ask("KICK #nosuch bob")) == ["403"]
    assert numerics(eve.ask("KICK #group1 bob")) == ["442"]
