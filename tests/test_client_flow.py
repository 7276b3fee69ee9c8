"""The client's menu and chat flow, driven without a terminal, a network or a reactor."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spartan.native import wire
from spartan.client.flow import (
    MAX_RECONNECT_ATTEMPTS,
    ClientFlow,
    ErasePrompt,
    Exit,
    Prompt,
    Send,
    State,
)
from spartan.client.hosts import Address
from spartan.client.text import clean_input, printable, split_message
from tests.client_support import (
    GROUPS_REPLY,
    MSG_TIME,
    SPEC_GROUP_ALICE,
    SPEC_GROUP_BOB,
    SPEC_GROUP_EVE,
    SPEC_ONE_TO_ONE_ALICE,
    SPEC_ONE_TO_ONE_BOB,
    AutoServer,
    FlowHarness,
    msg,
    screen_lines,
    sent_ids,
    spec_lines,
    users_reply,
)

GREETING_ALICE = spec_lines(SPEC_ONE_TO_ONE_ALICE)[:6]


def chatting(
    user="alice", with_="bob", unseen=(), **options
) -> tuple[FlowHarness, AutoServer]:
    """A harness logged in and in the conversation with ``with_`` (``#group1``: the group);
    ``unseen``: the messages its OPEN hands over."""
    h = FlowHarness(user, **options)
    server = AutoServer(h)
    server.unseen[with_] = list(unseen)
    h.login()
    if with_.startswith("#"):
        h.type("2")
    else:
        h.type("1", with_)
    server.answer()
    assert h.flow.state is State.CHAT
    return h, server


# -- the spec's sessions ---------------------------------------------------------------------


def test_greeting_and_menu_match_the_spec():
    h = FlowHarness("alice")
    h.login()
    assert h.screen() == GREETING_ALICE + ["Your selection:: "]


def test_spec_one_to_one_alice():
    h = FlowHarness("alice")
    server = AutoServer(h)
    h.login()
    h.type("1", "bob")
    assert server.answer() == ["OPEN bob"]
    h.type("hi")
    assert server.answer() == ["SEND id=c1 bob hi"]
    h.server(msg(11, "bob", "bob", "Hey"))
    assert server.answer() == ["ACK bob 11"]
    h.type("How r u?")
    h.server(msg(13, "bob", "bob", "I am fine. And, how r u doing?"))
    h.type("Good. Just busy with the classes")
    server.answer()
    assert h.screen() == spec_lines(SPEC_ONE_TO_ONE_ALICE) + ["[alice] > "]


def test_spec_one_to_one_bob():
    # Bob pressed Enter once more after "alice" (the empty line of the spec), then
    # alice's "hi" came while bob's conversation was open.
    h = FlowHarness("bob")
    server = AutoServer(h)
    h.login()
    h.type("1")
    h.type_ahead("alice", "")
    server.answer()
    h.server(msg(10, "alice", "alice", "hi"))
    h.type("Hey")
    h.server(msg(12, "alice", "alice", "How r u?"))
    h.type("I am fine. And, how r u doing?")
    h.server(msg(14, "alice", "alice", "Good. Just busy with the classes"))
    server.answer()
    assert h.screen() == spec_lines(SPEC_ONE_TO_ONE_BOB) + ["[bob] > "]


def test_spec_group_sessions():
    alice, server_a = chatting("alice", "#group1")
    alice.type("hi")
    server_a.answer()
    alice.server(msg(20, "#group1", "bob", "hello everyone"))
    alice.server(msg(21, "#group1", "eve", "hey, how r u guys doing?"))
    server_a.answer()
    assert alice.screen() == spec_lines(SPEC_GROUP_ALICE) + ["[alice] > "]

    bob = FlowHarness("bob")
    server_b = AutoServer(bob)
    server_b.unseen["#group1"] = [msg(19, "#group1", "alice", "hi")]
    bob.login()
    bob.type("2")
    assert server_b.answer() == ["TOPIC #group1", "OPEN #group1", "ACK #group1 19"]
    bob.type("hello everyone")
    bob.server(msg(21, "#group1", "eve", "hey, how r u guys doing?"))
    server_b.answer()
    assert bob.screen() == spec_lines(SPEC_GROUP_BOB) + ["[bob] > "]

    eve = FlowHarness("eve")
    server_e = AutoServer(eve)
    server_e.unseen["#group1"] = [
        msg(19, "#group1", "alice", "hi"),
        msg(20, "#group1", "bob", "hello everyone"),
    ]
    eve.login()
    eve.type("2")
    assert server_e.answer() == ["TOPIC #group1", "OPEN #group1", "ACK #group1 20"]
    eve.type("")
    eve.type("hey, how r u guys doing?")
    assert server_e.answer() == ["SEND id=c1 #group1 hey, how r u guys doing?"]
    assert eve.screen() == spec_lines(SPEC_GROUP_EVE)


def test_earlier_message_is_shown_when_the_conversation_opens():
    h = FlowHarness("bob")
    server = AutoServer(h)
    server.unseen["alice"] = [msg(10, "alice", "alice", "hi")]
    h.login()
    h.type("1", "alice")
    assert server.answer() == ["OPEN alice", "ACK alice 10"]
    assert h.screen()[-4:] == [
        "Your selection:: 1",
        "[Spartan] Enter username whom you want to chat with: alice",
        "[alice] hi",
        "[bob] > ",
    ]


# -- menu ---------------------------------------------------------------------------------


def test_bad_menu_choice_is_explained_and_asked_again():
    h = FlowHarness()
    h.login()
    h.type("3")
    h.type("")
    assert h.screen()[-4:] == [
        "Your selection:: 3",
        "[Spartan] Unknown choice '3': type 1 or 2.",
        "Your selection:: ",
        "Your selection:: ",
    ]
    assert h.flow.state is State.MENU


def test_unknown_user_and_self_are_refused():
    h = FlowHarness()
    h.login()
    h.type("1", "zed", "alice", "")
    assert h.screen()[-6:] == [
        "[Spartan] Enter username whom you want to chat with: zed",
        "[Spartan] Unknown username 'zed'. Try one of: bob, charlie, eve, foo, bar, baz, qux",
        "[Spartan] Enter username whom you want to chat with: alice",
        "[Spartan] That is you; choose somebody else.",
        "[Spartan] Enter username whom you want to chat with: ",
        "[Spartan] Enter username whom you want to chat with: ",
    ]
    assert h.take_sent() == []
    h.type("/switch")
    assert h.flow.state is State.MENU


def test_user_in_no_group_is_told_and_shown_the_menu_again():
    h = FlowHarness("foo")
    h.login(groups="OK GROUPS")
    assert "You are not a member of any group." in h.screen()
    h.type("2")
    assert h.screen()[-6:] == [
        "Your selection:: 2",
        "[Spartan] You are not a member of any group.",
        "What do you want to do?",
        "[1] One to one chatting OR",
        "[2] Group chatting",
        "Your selection:: ",
    ]


def test_user_in_several_groups_is_asked_which():
    h = FlowHarness("alice")
    server = AutoServer(h)
    h.login(groups="OK GROUPS group1=alice,bob group2=alice,eve")
    assert h.screen()[2:4] == [
        "You are member of group1: ['alice', 'bob']",
        "You are member of group2: ['alice', 'eve']",
    ]
    h.type("2", "group3", "#group2")
    assert h.screen()[-5:] == [
        "[Spartan] You are member of several groups: group1, group2",
        "[Spartan] Enter the group you want to chat in: group3",
        "[Spartan] You are not a member of a group 'group3'. Your groups: group1, group2",
        "[Spartan] Enter the group you want to chat in: #group2",
        "",
    ]
    assert server.answer() == ["TOPIC #group2", "OPEN #group2"]
    assert h.screen()[-1] == "[alice] > "


def test_input_before_the_menu_waits_for_it():
    h = FlowHarness()
    server = AutoServer(h)
    h.apply(h.flow.on_connected())
    h.type_ahead("1", "bob", "hello")
    assert h.take_sent() == ["LOGIN alice"]
    h.server("OK LOGIN alice")
    assert h.take_sent() == ["USERS", "GROUPS", "UNREAD"]
    h.server(users_reply(), GROUPS_REPLY, "OK UNREAD")
    assert h.take_sent() == ["OPEN bob"]  # "hello" waits until bob's conversation is open
    h.server("OK OPEN bob 0")
    assert h.take_sent() == ["SEND id=c1 bob hello"]
    server.answer()


# -- messages -------------------------------------------------------------------------------


def test_message_of_another_conversation_gets_a_notice_and_stays_unseen():
    h, server = chatting("alice", "bob")
    h.server(msg(30, "charlie", "charlie", "psst"))
    h.server(msg(31, "charlie", "charlie", "again"))
    h.server(msg(32, "#group1", "eve", "group news"))
    assert h.take_sent() == []  # not acknowledged: the server keeps them unseen
    assert h.screen()[-4:] == [
        "[alice] > ",
        "[Spartan] New message from charlie (type /switch to read it).",
        "[Spartan] New message from eve in group1 (type /switch to read it).",
        "[alice] > ",
    ]

    server.unseen["charlie"] = [
        msg(30, "charlie", "charlie", "psst"),
        msg(31, "charlie", "charlie", "again"),
    ]
    h.type("/switch")
    assert h.screen()[-6:-4] == [
        "[alice] > /switch",
        "[Spartan] Unread: charlie (2), group1 (1)",
    ]
    h.type("1", "charlie")
    assert server.answer() == ["OPEN charlie", "ACK charlie 31"]
    assert h.screen()[-3:] == ["[charlie] psst", "[charlie] again", "[alice] > "]


def test_notice_in_the_menu_then_the_question_again():
    h = FlowHarness()
    h.login()
    h.server(msg(5, "bob", "bob", "are you there?"))
    assert h.screen()[-3:] == [
        "Your selection:: ",
        "[Spartan] New message from bob.",
        "Your selection:: ",
    ]


def test_redrawn_prompt_is_replaced_not_repeated():
    h, server = chatting()
    h.server(msg(1, "bob", "bob", "one"), msg(2, "bob", "bob", "two"))
    h.server(msg(3, "bob", "bob", "three"))
    assert h.screen()[-5:] == ["[alice] > ", "[bob] one", "[bob] two", "[bob] three", "[alice] > "]
    line = wire.parse_server_line(msg(4, "bob", "bob", "x").encode())
    assert h.flow.on_server_line(line)[0] == ErasePrompt()


def test_live_push_also_in_the_open_reply_is_shown_once_in_order():
    h = FlowHarness("bob")
    h.login()
    h.type("1", "alice")
    assert h.take_sent() == ["OPEN alice"]
    h.server(msg(8, "alice", "alice", "third"))  # pushed while the OPEN is on its way
    h.server(msg(6, "alice", "alice", "first"), msg(7, "alice", "alice", "second"))
    h.server(msg(8, "alice", "alice", "third"), "OK OPEN alice 3")
    assert h.take_sent() == ["ACK alice 8"]
    assert h.screen()[-4:] == ["[alice] first", "[alice] second", "[alice] third", "[bob] > "]


def test_acknowledgements_are_coalesced_one_in_flight_per_conversation():
    h, server = chatting()
    h.server(msg(1, "bob", "bob", "one"))
    assert h.take_sent() == ["ACK bob 1"]
    h.server(msg(2, "bob", "bob", "two"), msg(3, "bob", "bob", "three"))
    assert h.take_sent() == []  # the first ACK is not answered yet
    h.server("OK ACK bob 1")
    assert h.take_sent() == ["ACK bob 3"]
    h.server(msg(4, "bob", "bob", "four"))
    h.type("/quit")  # leaving: what was shown is acknowledged before QUIT
    assert h.take_sent() == ["ACK bob 4", "QUIT"]


def test_quit_waits_as_long_as_the_server_answers():
    h, server = chatting()
    h.type("one", "two", "/quit")
    assert h.timers == [("quit", 3.0)]
    h.server("OK SENT 1 " + MSG_TIME)
    assert h.timers == [("quit", 3.0)] * 2  # restarted: the server is still answering
    h.apply(h.flow.on_timer("quit"))
    assert h.exits == [1]
    assert h.screen()[-3:] == ["[Spartan] Not sent to bob: two", "[Spartan] Goodbye.", ""]


def test_own_message_from_another_session():
    h, server = chatting()
    h.server(msg(40, "charlie", "alice", "typed on my phone"))
    assert h.screen()[-1] == "[alice] > " and "New message" not in h.raw
    h.server(msg(41, "bob", "alice", "to bob from my phone"))
    assert h.screen()[-2:] == ["[alice] to bob from my phone", "[alice] > "]


def test_escape_sequences_from_others_are_shown_harmlessly():
    h, server = chatting()
    h.server(msg(50, "bob", "bob", "\x1b[2J\x1b]0;pwned\x07 \u202eevil \x9b31m"))
    assert h.screen()[-2] == "[bob] ^[[2J^[]0;pwned^G \\u202eevil \\u009b31m"
    assert "\x1b[2J" not in h.raw and "\x07" not in h.raw


def test_control_characters_typed_are_not_sent():
    h, server = chatting()
    h.type("hi\x1b[A there\x07\x7f")
    assert h.take_sent() == ["SEND id=c1 bob hi there"]
    h.type("\x1b[A")  # nothing left: nothing sent
    assert h.take_sent() == []


# -- in-chat commands ------------------------------------------------------------------------


def test_help_users_and_unknown_command():
    h, server = chatting()
    h.type("/help")
    assert h.screen()[-10:-1] == [
        "[alice] > /help",
        "[Spartan] Commands:",
        "  /switch   back to the menu, to open another conversation",
        "  /users    who is online",
        "  /help     this list",
        "  /me text  an action: shown as * alice text",
        "  /topic    the group's topic; /topic text sets it",
        "  /quit     leave (Ctrl-D and Ctrl-C leave too)",
        "  //text    send a line that starts with /",
    ]
    h.type("/users")
    assert h.take_sent() == ["USERS"]
    assert h.screen()[-1] == ""  # no prompt until the answer is in
    h.server(users_reply(online=("alice", "bob", "eve")))
    assert h.screen()[-3:] == [
        "[Spartan] Online: bob, eve",
        "[Spartan] Offline: charlie, foo, bar, baz, qux",
        "[alice] > ",
    ]
    h.type("/shrug")
    assert h.screen()[-2].startswith("[Spartan] Unknown command '/shrug'.")
    assert h.take_sent() == []


def test_double_slash_sends_a_literal_slash():
    h, server = chatting()
    h.type("//shrug")
    assert h.take_sent() == ["SEND id=c1 bob /shrug"]


def test_switch_goes_back_to_the_menu():
    h, server = chatting()
    h.type("/switch")
    assert h.flow.state is State.MENU
    assert h.screen()[-5:] == [
        "[alice] > /switch",
        "What do you want to do?",
        "[1] One to one chatting OR",
        "[2] Group chatting",
        "Your selection:: ",
    ]
    h.server(msg(60, "bob", "bob", "back?"))  # bob is no longer on screen: a notice
    assert h.screen()[-2] == "[Spartan] New message from bob."
    assert h.take_sent() == []


# -- leaving ----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["/quit", "eof", "interrupt"])
def test_leaving_sends_what_was_typed_then_quits(how):
    h, server = chatting()
    h.type("bye now")
    if how == "/quit":
        h.type("/quit")
    elif how == "eof":
        h.apply(h.flow.on_eof())
    else:
        h.apply(h.flow.on_interrupt())
    assert h.take_sent() == ["SEND id=c1 bob bye now", "QUIT"]
    assert h.timers == [("quit", 3.0)]
    assert h.exits == []
    h.server("OK SENT 7 " + MSG_TIME, "OK BYE")
    assert h.exits == [0]
    # A goodbye, and the shell's prompt starts on a line of its own.
    assert h.screen()[-2:] == ["[Spartan] Goodbye.", ""]


def test_interrupt_sends_lines_typed_ahead_and_twice_leaves_at_once():
    h = FlowHarness()
    h.login()
    h.type("1", "bob")
    h.type_ahead("typed fast")  # waits for the OPEN reply
    h.apply(h.flow.on_interrupt())
    assert h.take_sent() == ["OPEN bob", "SEND id=c1 bob typed fast", "QUIT"]
    h.apply(h.flow.on_interrupt())
    assert h.exits == [1]  # the server never confirmed the line: it says so
    assert "[Spartan] Not sent to bob: typed fast" in h.screen()


def test_quit_timer_leaves_when_the_server_does_not_answer():
    h, server = chatting()
    h.type("/quit")
    h.apply(h.flow.on_timer("quit"))
    assert h.exits == [0]


def test_piped_input_is_echoed_and_end_of_input_waits_for_the_lines():
    h = FlowHarness("alice", echo=True, can_ask_password=False)
    server = AutoServer(h)
    h.apply(h.flow.on_connected())
    for line in ["1", "bob", "hello", "", "/quit"]:
        h.apply(h.flow.on_input(line))
    h.apply(h.flow.on_eof())
    server.answer()
    assert h.screen()[6:] == [
        "Your selection:: 1",
        "[Spartan] Enter username whom you want to chat with: bob",
        "[alice] > hello",
        "[alice] > ",
        "[alice] > /quit",
        "",
    ]
    assert h.exits == [0]


# -- connection trouble ---------------------------------------------------------------------


def test_unreachable_server():
    h = FlowHarness()
    h.apply(h.flow.on_connect_failed("Connection refused"))
    assert h.screen() == [
        "[Spartan] Could not connect to Spartan Server at localhost:3000: Connection refused",
        "",
    ]
    assert h.exits == [1]


def test_login_refused():
    h = FlowHarness("zed")
    h.apply(h.flow.on_connected())
    h.server("ERR unknown-user No user 'zed' here.")
    assert h.screen()[0] == "[Spartan] Could not log in as zed: No user 'zed' here."
    assert h.exits == [1]


def test_reconnect_resumes_with_nothing_lost_or_shown_twice():
    h, server = chatting()
    h.type("before")
    assert h.take_sent() == ["SEND id=c1 bob before"]  # no OK SENT: the connection drops
    h.server(msg(70, "bob", "bob", "shown once"))
    assert h.take_sent() == ["ACK bob 70"]  # its reply is lost too
    h.apply(h.flow.on_disconnected("The connection was lost"))
    assert h.reconnects == 1
    assert h.screen()[-3:] == [
        "[bob] shown once",
        "[Spartan] Lost the connection to Spartan Server (The connection was lost)."
        " Reconnecting...",
        "[alice] > ",
    ]
    h.type("while away")
    assert h.take_sent() == []
    h.apply(h.flow.on_connect_failed("Connection refused"))
    assert h.reconnects == 2
    h.apply(h.flow.on_connected())
    assert h.take_sent() == ["LOGIN alice"]
    server.unseen["bob"] = [msg(70, "bob", "bob", "shown once"), msg(71, "bob", "bob", "new")]
    server.unread = "OK UNREAD bob=2 #group1=3"  # bob's are shown by OPEN: not said again
    h.server("OK LOGIN alice")
    assert server.answer() == [
        "UNREAD",
        "OPEN bob",
        "SEND id=c1 bob before",  # same ids: the server stores each once
        "SEND id=c2 bob while away",
        "ACK bob 71",
    ]
    assert h.screen()[-4:] == [
        "[Spartan] Reconnected to Spartan Server at port 3000.",
        "[Spartan] Unread: group1 (3)",
        "[bob] new",
        "[alice] > ",
    ]
    assert h.screen().count("[bob] shown once") == 1


def test_restarted_server_reusing_ids_is_not_mistaken_for_duplicates():
    h, server = chatting()
    h.server(msg(1, "bob", "bob", "before restart", time="2026-11-24T11:00:00.000Z"))
    server.answer()
    h.apply(h.flow.on_disconnected("The server closed the connection"))
    h.apply(h.flow.on_connected())
    server.unseen["bob"] = [msg(1, "bob", "bob", "after restart", time="2026-11-24T11:05:00.000Z")]
    server.answer()
    assert h.screen()[-2:] == ["[bob] after restart", "[alice] > "]


def test_quit_while_disconnected_says_what_was_not_sent():
    h, server = chatting()
    h.apply(h.flow.on_disconnected("The connection was lost"))
    h.type("lost?")
    h.type("/quit")
    assert h.exits == [1]
    assert h.screen()[-3:] == ["[Spartan] Not sent to bob: lost?", "[Spartan] Goodbye.", ""]


def test_reconnecting_gives_up_eventually():
    h, server = chatting()
    h.apply(h.flow.on_disconnected("The connection was lost"))
    for _ in range(MAX_RECONNECT_ATTEMPTS + 5):
        if h.exits:
            break
        h.apply(h.flow.on_connect_failed("Connection refused"))
    assert h.exits == [1]
    assert h.reconnects == MAX_RECONNECT_ATTEMPTS



# -- several servers, and failures that must not be retried -----------------------------------

A = Address("node-a", 3000)
B = Address("node-b", 3001)
C = Address("::1", 3002)
BAD_CERT = (
    "the server's certificate could not be verified (not trusted, or not for node-a);"
    " use --cafile for a self-signed certificate."
)


def test_start_dials_the_first_server():
    h = FlowHarness(hosts=[A, B])
    h.apply(h.flow.on_start())
    assert h.dialled == [("now", A)]
    assert h.screen() == [""]


def test_start_tries_each_server_once_in_order_then_gives_up():
    h = FlowHarness(hosts=[A, B, C])
    h.apply(h.flow.on_start())
    h.apply(h.flow.on_connect_failed("Connection refused"))
    h.apply(h.flow.on_connect_failed("Timed out"))
    assert h.dialled == [("now", A), ("now", B), ("now", C)]
    assert h.exits == []
    h.apply(h.flow.on_connect_failed("Connection refused"))
    assert h.screen() == [
        "[Spartan] Could not connect to Spartan Server at node-a:3000: Connection refused."
        " Trying node-b:3001...",
        "[Spartan] Could not connect to Spartan Server at node-b:3001: Timed out."
        " Trying [::1]:3002...",
        "[Spartan] Could not connect to Spartan Server at [::1]:3002: Connection refused",
        "",
    ]
    assert h.exits == [1]
    assert h.reconnects == 0


def test_start_on_the_second_server_shows_the_spec_greeting_with_its_port():
    h = FlowHarness(hosts=[A, B])
    h.apply(h.flow.on_start())
    h.apply(h.flow.on_connect_failed("Connection refused"))
    h.login()
    assert h.screen()[1] == "[Spartan] Connected to Spartan Server at port 3001."
    assert (h.flow.host, h.flow.port) == ("node-b", 3001)


def test_lost_before_login_at_start_tries_the_next_server():
    h = FlowHarness(hosts=[A, B])
    h.apply(h.flow.on_connected())
    h.apply(h.flow.on_disconnected("The server closed the connection"))
    assert h.dialled == [("now", B)]
    h.apply(h.flow.on_connected())
    assert h.take_sent() == ["LOGIN alice", "LOGIN alice"]
    h.apply(h.flow.on_disconnected("The server closed the connection"))
    assert h.screen()[-2:] == [
        "[Spartan] Lost the connection to Spartan Server at node-b:3001:"
        " The server closed the connection",
        "",
    ]
    assert h.exits == [1]


def test_reconnect_cycles_through_the_servers_and_says_which_one():
    h, server = chatting(hosts=[A, B, C])
    h.type("unconfirmed")
    assert h.take_sent() == ["SEND id=c1 bob unconfirmed"]
    h.apply(h.flow.on_disconnected("The connection was lost"))
    h.apply(h.flow.on_connect_failed("Connection refused"))
    h.apply(h.flow.on_connect_failed("Connection refused"))
    h.apply(h.flow.on_connect_failed("Connection refused"))
    assert h.dialled == [("later", B), ("later", C), ("later", A), ("later", B)]
    assert h.exits == []  # after login, a whole round failing is no reason to stop
    h.apply(h.flow.on_connected())
    assert server.answer() == ["LOGIN alice", "UNREAD", "OPEN bob", "SEND id=c1 bob unconfirmed"]
    assert h.screen()[-2:] == [
        "[Spartan] Reconnected to Spartan Server at node-b:3001.",
        "[alice] > ",
    ]
    # Lost again: on to the next one (C), where the count of failures starts afresh.
    h.apply(h.flow.on_disconnected("The connection was lost"))
    assert h.dialled[-1] == ("later", C)


@pytest.mark.parametrize("when", ["connect", "handshake"])
def test_bad_certificate_at_start_is_refused_without_retrying(when):
    h = FlowHarness(hosts=[A, B])
    h.apply(h.flow.on_start())
    if when == "connect":
        h.apply(h.flow.on_connect_failed(BAD_CERT, fatal=True))
    else:  # TLS: connected first, then the handshake fails
        h.apply(h.flow.on_connected())
        h.apply(h.flow.on_disconnected(BAD_CERT, fatal=True))
    assert h.screen() == [
        f"[Spartan] Could not connect to Spartan Server at node-a:3000: {BAD_CERT}",
        "",
    ]
    assert h.exits == [1]
    assert h.dialled == [("now", A)]


def test_bad_certificate_on_reconnect_is_refused_without_retrying():
    h, server = chatting(hosts=[A, B])
    h.type("pending")
    h.take_sent()
    h.apply(h.flow.on_disconnected("The connection was lost"))
    h.apply(h.flow.on_connected())
    h.apply(h.flow.on_disconnected(BAD_CERT.replace("node-a", "node-b"), fatal=True))
    assert h.reconnects == 1
    assert h.exits == [1]
    assert h.screen()[-3:] == [
        "[Spartan] Could not connect to Spartan Server at node-b:3001:"
        f" {BAD_CERT.replace('node-a', 'node-b')}",
        "[Spartan] Not sent to bob: pending",
        "",
    ]


def test_one_server_keeps_the_reconnected_line_with_the_port():
    h, server = chatting()
    h.apply(h.flow.on_disconnected("The connection was lost"))
    assert h.dialled == [("later", Address("localhost", 3000))]
    h.apply(h.flow.on_connected())
    server.answer()
    assert "[Spartan] Reconnected to Spartan Server at port 3000." in h.screen()

def test_send_refused_is_reported():
    h, server = chatting()
    h.type("hello")
    h.take_sent()
    h.server("ERR unavailable The message store failed; nothing was stored, try again.")
    assert h.screen()[-2] == (
        "[Spartan] Not sent to bob"
        " (The message store failed; nothing was stored, try again.): hello"
    )


def test_server_ping_is_answered_and_notices_shown():
    h, server = chatting()
    h.server("* PING k1")
    assert server.answer() == ["PONG k1"]
    h.server("* NOTICE rate-limited You are sending too fast.")
    assert h.screen()[-2:] == ["[Spartan] The server says: You are sending too fast.", "[alice] > "]


def test_long_message_is_split():
    h, server = chatting()
    h.type("é" * 3000)
    sent = h.take_sent()
    assert len(sent) == 2 and sent_ids(sent) == ["c1", "c2"]
    assert all(len(line.encode()) < 4096 for line in sent)


def test_long_message_parts_fit_the_line_and_join_to_what_was_typed():
    h, server = chatting(with_="#group1")
    text = " ".join(f"wörd{i}  日本" for i in range(1000))  # 13 KiB, double spaces too
    h.type(text)
    sent = h.take_sent()
    assert len(sent) == 5 and sent_ids(sent) == ["c1", "c2", "c3", "c4", "c5"]
    assert all(len(line.encode()) + 2 <= 4096 for line in sent)  # with CR LF
    parsed = [wire.parse_command(line.encode()) for line in sent]
    assert "".join(command.text for command in parsed) == text  # the server's own parser
    assert h.screen()[-3:] == [
        "[alice] > " + text,
        "[Spartan] Long message sent in 5 parts.",
        "[alice] > ",
    ]


# -- actions, completion, leaving --------------------------------------------------------------


def test_me_sends_an_action_shown_with_a_star():
    h, server = chatting()
    h.type("/me waves")
    assert server.answer() == ["SEND id=c1 bob /me waves"]
    h.server(msg(12, "bob", "bob", "/me waves back"), msg(13, "bob", "bob", "/meh"))
    assert h.screen()[-3:] == ["* bob waves back", "[bob] /meh", "[alice] > "]
    server.answer()
    h.type("/me")
    assert h.take_sent() == []  # no action: an unknown command
    assert h.screen()[-2].startswith("[Spartan] Unknown command '/me'.")


def test_completions_follow_the_prompt():
    h = FlowHarness()
    server = AutoServer(h)
    h.login()
    commands = ["/switch", "/users", "/help", "/quit"]
    assert h.flow.completions() == commands
    h.type("1")
    others = ["bob", "charlie", "eve", "foo", "bar", "baz", "qux"]
    assert h.flow.completions() == others + commands
    h.type("/switch", "2")
    server.answer()
    assert h.flow.completions() == others + commands + ["/me", "/topic"]  # a group's chat
    h.type("/switch", "1", "bob")
    server.answer()
    assert h.flow.completions() == others + commands + ["/me"]


def test_unread_is_said_before_the_menu_in_the_servers_order():
    h = FlowHarness()
    h.login(unread="OK UNREAD #group1=5 bob=2")
    assert h.screen() == GREETING_ALICE[:3] + [
        "[Spartan] Unread: group1 (5), bob (2)",
        *GREETING_ALICE[3:],
        "Your selection:: ",
    ]
    h.type("1", "bob")
    AutoServer(h).answer()
    h.type("/switch")
    assert h.screen()[-5] == "[Spartan] Unread: group1 (5)"  # bob's were read


def test_a_server_without_unread_still_shows_the_menu():
    h = FlowHarness()
    h.login(unread="ERR unknown-command Unknown command 'UNREAD'; type HELP.")
    assert h.screen() == GREETING_ALICE + ["Your selection:: "]


def test_no_goodbye_with_piped_input():
    h, server = chatting(echo=True)  # the output stays as scripts expect it
    h.type("/quit")
    server.answer()
    assert "[Spartan] Goodbye." not in h.screen()


# -- password hook -----------------------------------------------------------------------------


def test_password_is_asked_without_echo_when_the_server_wants_one():
    h = FlowHarness()
    h.apply(h.flow.on_connected())
    h.take_sent()
    refusal = wire.parse_server_line(b"ERR password-required Log in with LOGIN <user> <password>.")
    effects = h.apply(h.flow.on_server_line(refusal))
    assert Prompt("[Spartan] Password for alice: ", secret=True) in effects
    h.type("s3cret")
    assert h.take_sent() == ["LOGIN alice s3cret"]
    h.server("OK LOGIN alice")
    assert h.take_sent() == ["USERS", "GROUPS", "UNREAD"]


def test_password_from_the_environment():
    h = FlowHarness(password="s3cret", can_ask_password=False)
    h.apply(h.flow.on_connected())
    assert h.take_sent() == ["LOGIN alice s3cret"]
    h.server("ERR bad-credentials Wrong user or password.")
    assert h.exits == [1]
    assert h.screen() == ["[Spartan] Wrong password for alice.", ""]  # one line, no other


def test_wrong_password_at_a_terminal_is_one_line_then_the_question_again():
    h = FlowHarness()
    h.apply(h.flow.on_connected())
    h.server("ERR password-required Log in with a password.")
    h.type("guess")
    assert h.take_sent() == ["LOGIN alice", "LOGIN alice guess"]
    h.server("ERR bad-credentials Unknown user or wrong password.")
    assert h.screen()[-2:] == [
        "[Spartan] Wrong password for alice.",
        "[Spartan] Password for alice: ",
    ]


def test_no_password_and_no_terminal():
    h = FlowHarness(can_ask_password=False)
    h.apply(h.flow.on_connected())
    h.server("ERR password-required Log in with a password.")
    assert h.screen()[0] == "[Spartan] The server wants a password: set SPARTAN_PASSWORD."
    assert h.exits == [1]


# -- text helpers --------------------------------------------------------------------------------


def test_printable_and_clean_input():
    fine = "plain text, tabs\tand émojis 👍🏽"
    assert printable(fine) == fine
    assert printable("\x1b[31mred\x00\x7f") == "^[[31mred^@^?"
    assert printable("a\u2028b\u202ec") == "a\\u2028b\\u202ec"
    assert clean_input("a\x1b[1;5Cb\x1b]0;title\x07c\x1bOAd\x9b2Je") == "abcde"


@given(st.text(max_size=200), st.integers(min_value=4, max_value=50))
def test_split_message_keeps_the_text_and_the_limit(text, limit):
    pieces = split_message(text, limit)
    assert "".join(pieces) == text
    assert all(len(p.encode()) <= limit for p in pieces)


_clusters = st.sampled_from(["a", "b", " ", "é", "日", "👍", "e\u0301", "a\u0301\u0301"])


@given(st.lists(_clusters, max_size=200).map("".join), st.integers(min_value=8, max_value=50))
def test_split_message_loses_no_space_and_splits_no_letter_from_its_accent(text, limit):
    pieces = split_message(text, limit)
    assert "".join(pieces) == text
    # The server drops the spaces that end a line: no piece with words may end with one.
    for piece, following in zip(pieces, pieces[1:]):
        if piece.strip(" \u0301"):
            assert not piece.endswith(" ")
            assert not following.startswith("\u0301")


def test_split_message_cuts_before_a_space_when_it_can():
    assert split_message("hello world this is a long message", 12) == [
        "hello world", " this is a", " long messag", "e",
    ]  # fmt: skip


@given(st.text(max_size=100))
def test_printable_never_lets_a_control_character_through(text):
    shown = printable(text)
    assert not any(c != "\t" and (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0) for c in shown)


# -- robustness --------------------------------------------------------------------------------

_server_lines = st.one_of(
    st.sampled_from(
        [
            "OK LOGIN alice", users_reply(), GROUPS_REPLY, "OK OPEN bob 0", "OK BYE",
            "OK SENT 3 " + MSG_TIME, "ERR unknown-user no", "ERR not-a-member no",
            "* PING", "* NOTICE restart soon", "* HELLO Spartan 1 x hi", "OK GROUPS", "OK",
            msg(1, "bob", "bob", "hi"), msg(2, "#group1", "eve", "yo"), "* MSG 1 bad",
        ]
    ),
    st.text(max_size=40),
)
_events = st.one_of(
    st.tuples(st.just("line"), _server_lines),
    st.tuples(
        st.just("input"),
        st.sampled_from(
            ["1", "2", "bob", "#group1", "", "/switch", "/users", "/help", "hi", "//x", "/quit"]
        ),
    ),
    st.tuples(st.just("input"), st.text(max_size=20)),
    st.tuples(st.sampled_from(["start", "connected", "eof", "interrupt", "timer"]), st.none()),
    st.tuples(
        st.sampled_from(["disconnected", "failed", "disconnected-fatal", "failed-fatal"]),
        st.just("gone"),
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_events, max_size=40))
def test_flow_never_raises_and_exits_at_most_once(events):
    flow = ClientFlow("alice", hosts=[A, B, C])
    exits = 0
    for kind, arg in events:
        match kind:
            case "line":
                effects = flow.on_server_line(wire.parse_server_line(arg.encode()))
            case "input":
                effects = flow.on_input(arg)
            case "connected":
                effects = flow.on_connected()
            case "eof":
                effects = flow.on_eof()
            case "interrupt":
                effects = flow.on_interrupt()
            case "timer":
                effects = flow.on_timer("quit")
            case "start":
                effects = flow.on_start()
            case "disconnected" | "disconnected-fatal":
                effects = flow.on_disconnected(arg, fatal=kind.endswith("fatal"))
            case _:
                effects = flow.on_connect_failed(arg, fatal=kind.endswith("fatal"))
        exits += sum(isinstance(e, Exit) for e in effects)
        for effect in effects:
            if isinstance(effect, Send):
                wire.format_command(effect.command)  # every command can be written
    assert exits <= 1


def test_screen_model():
    assert screen_lines("a\r\nb\rc\nxyz\r\x1b[Kq") == ["a", "c", "q"]


# -- group topics and notices ------------------------------------------------------------------

TOPIC_TIME = "2026-11-29T20:41:03.120Z"


def test_entering_a_group_chat_shows_its_topic_above_the_conversation():
    h = FlowHarness("bob")
    server = AutoServer(h)
    server.topics["#group1"] = f"alice {TOPIC_TIME} plans for friday"
    server.unseen["#group1"] = [msg(19, "#group1", "alice", "hi")]
    h.login()
    h.type("2")
    assert server.answer() == ["TOPIC #group1", "OPEN #group1", "ACK #group1 19"]
    assert h.screen()[-5:] == [
        "[2] Group chatting",
        "Your selection:: 2",
        "[Spartan] Topic of group1: plans for friday (set by alice)",
        "[alice] hi",
        "[bob] > ",
    ]


def test_no_topic_or_a_server_without_topics_shows_nothing_more():
    for answer in ("OK TOPIC #group1", "ERR unknown-command Unknown command 'TOPIC'."):
        h = FlowHarness("bob")
        h.login()
        h.type("2")
        assert h.take_sent() == ["TOPIC #group1", "OPEN #group1"]
        h.server(answer, "OK OPEN #group1 0")
        assert h.screen()[-2:] == ["Your selection:: 2", "[bob] > "]


def test_the_topic_of_a_group_left_before_it_came_is_not_shown():
    h = FlowHarness("bob")
    h.login()
    h.type("2")
    h.take_sent()
    h.apply(h.flow.on_interrupt())  # leaving: the topic's answer comes too late
    h.server(f"OK TOPIC #group1 alice {TOPIC_TIME} plans", "OK OPEN #group1 0")
    assert not any("plans" in line for line in h.screen())


def test_a_topic_push_is_shown_in_that_groups_chat_only():
    h, server = chatting("bob", "#group1")
    h.server(f"* TOPIC #group1 alice {TOPIC_TIME} plans for saturday")
    assert h.screen()[-3:] == [
        "[bob] > ",
        "[Spartan] alice set the topic of group1: plans for saturday",
        "[bob] > ",
    ]
    before = h.screen()
    h.server(f"* TOPIC #group2 eve {TOPIC_TIME} elsewhere", "* TOPIC garbage")
    assert h.screen() == before  # another group's topic, or an unreadable line: quiet
    h.type("/switch", "1", "alice")
    server.answer()
    before = h.screen()
    h.server(f"* TOPIC #group1 alice {TOPIC_TIME} again")
    assert h.screen() == before


def test_topic_command_sets_and_shows_the_groups_topic():
    h, server = chatting("bob", "#group1")
    h.type("/topic")
    assert server.answer() == ["TOPIC #group1"]
    assert h.screen()[-3:] == ["[bob] > /topic", "[Spartan] group1 has no topic.", "[bob] > "]
    h.type("/topic   plans for sunday ")
    assert h.take_sent() == ["TOPIC #group1 plans for sunday"]
    assert h.screen()[-1] == ""  # no prompt until the answer is in
    h.server(f"OK TOPIC #group1 bob {TOPIC_TIME} plans for sunday")
    assert h.screen()[-2:] == [
        "[Spartan] Topic of group1: plans for sunday (set by bob)",
        "[bob] > ",
    ]
    h.type("/topic " + "x" * 301)
    h.take_sent()
    h.server("ERR bad-topic A topic holds at most 300 characters.")
    assert h.screen()[-2:] == [
        "[Spartan] Could not set the topic of group1: A topic holds at most 300 characters.",
        "[bob] > ",
    ]
    h.type("/TOPIC")
    h.take_sent()
    h.server("ERR not-a-member You are not a member of #group1.")
    assert h.screen()[-2] == (
        "[Spartan] Could not read the topic of group1: You are not a member of #group1."
    )


def test_topic_command_outside_a_group_chat_sends_nothing():
    h, _server = chatting("bob", "alice")
    h.type("/topic hello")
    assert h.take_sent() == []
    assert h.screen()[-2:] == ["[Spartan] Only a group chat has a topic.", "[bob] > "]
    h.type("/switch", "/topic")
    assert h.take_sent() == []
    assert h.screen()[-2:] == ["[Spartan] Only a group chat has a topic.", "Your selection:: "]


def test_a_notice_is_shown_marked_live_and_when_the_conversation_opens():
    h, server = chatting("bob", "alice", [msg(9, "alice", "alice", "/notice the build is green")])
    h.server(msg(10, "alice", "alice", "/notice deploy at noon"))
    h.server(msg(11, "alice", "alice", "/noticed"))
    assert server.answer() == ["ACK alice 10", "ACK alice 11"]  # shown, so acknowledged
    assert h.screen()[-6:] == [
        "[Spartan] Enter username whom you want to chat with: alice",
        "-alice- the build is green",  # in the OPEN reply
        "[bob] > ",
        "-alice- deploy at noon",  # live
        "[alice] /noticed",
        "[bob] > ",
    ]


def test_a_notice_elsewhere_is_neither_announced_nor_counted():
    h, server = chatting("bob", "alice")
    before = h.screen()
    h.server(msg(30, "#group1", "eve", "/notice lunch is served"))
    assert h.screen() == before
    assert server.answer() == []  # not acknowledged: it waits for the group's chat
    h.server(msg(31, "#group1", "eve", "real question"))
    assert h.screen()[-2] == "[Spartan] New message from eve in group1 (type /switch to read it)."
    h.type("/switch")
    assert "[Spartan] Unread: group1 (1)" in h.screen()


def test_topic_is_asked_on_entering_only_not_on_a_reconnect():
    h, server = chatting("bob", "#group1")
    server.topics["#group1"] = f"alice {TOPIC_TIME} plans"
    h.apply(h.flow.on_disconnected("The connection was lost"))
    h.type("/topic")
    assert h.screen()[-2:] == ["[Spartan] Not connected to the server right now.", "[bob] > "]
    h.apply(h.flow.on_connected())
    sent = server.answer()
    assert "OPEN #group1" in sent and not any(line.startswith("TOPIC") for line in sent)
    assert not any("plans" in line for line in h.screen())
