"""Reloading the directory while running: the core, both front ends, and a bad file."""

from __future__ import annotations

import pytest

from spartan.core.auth import OpenDoor, PasswordAuthenticator
from spartan.core.chat import REMOVED
from spartan.core.directory import ConfigError, Directory
from spartan.passwd import hash_password
from spartan.reload import describe, reload_directory
from tests.protocol_support import IRC_SERVER_NAME, Server, login, register

BEFORE = Directory(
    users=("alice", "bob", "carol"),
    groups={"g1": ("alice", "bob", "carol"), "g2": ("alice", "carol")},
)
AFTER = Directory(  # bob removed, dave added, carol leaves g1, g2 unchanged
    users=("alice", "carol", "dave"),
    groups={"g1": ("alice", "dave"), "g2": ("alice", "carol")},
)


@pytest.fixture
def server():
    return Server(directory=BEFORE)


def test_removed_user_is_told_why_and_closed_others_stay(server):
    alice = login(server.connect(), "alice")
    bob = login(server.connect(), "bob")
    bob_again = login(server.connect(), "bob")
    reloaded = server.chat.reload(AFTER)
    assert bob.read() == [f"* NOTICE removed {REMOVED}"] and bob.closed
    assert bob_again.read() == [f"* NOTICE removed {REMOVED}"] and bob_again.closed
    assert not alice.closed
    assert reloaded.removed == ("bob",) and reloaded.added == ("dave",) and reloaded.closed == 2
    assert not server.chat.is_online("bob")
    # nothing reaches a removed session, even before its transport is gone
    assert alice.send("SEND #g1 still here")[-1].startswith("OK SENT")
    assert bob.read() == []


def test_new_user_logs_in_and_group_change_is_pushed(server):
    alice = login(server.connect(), "alice")
    carol = login(server.connect(), "carol")
    server.chat.reload(AFTER)
    # alice's group g1 changed members; carol left g1: both are told their groups now
    assert alice.read() == ["* GROUPS g1=alice,dave g2=alice,carol"]
    assert carol.read() == ["* GROUPS g2=alice,carol"]
    dave = login(server.connect(), "dave")
    assert dave.send("SEND #g1 hello")[-1].startswith("OK SENT")
    assert alice.read()[0].endswith(" #g1 dave hello")
    assert carol.send("SEND #g1 hi")[-1] == "ERR not-a-member You are not a member of 'g1'."
    assert carol.send("GROUPS")[-1] == "OK GROUPS g2=alice,carol"


def test_unchanged_groups_are_not_pushed(server):
    carol = login(server.connect(), "carol")
    server.chat.reload(Directory(BEFORE.users + ("zed",), dict(BEFORE.groups)))
    assert carol.read() == []


def test_stored_messages_are_kept(server):
    alice = login(server.connect(), "alice")
    carol = login(server.connect(), "carol")
    assert alice.send("SEND carol before the reload")[-1].startswith("OK SENT")
    assert alice.send("SEND #g2 to the group")[-1].startswith("OK SENT")
    carol.read()
    carol.close()
    server.chat.reload(AFTER)
    carol = login(server.connect(), "carol")
    pushed = carol.send("OPEN alice")
    assert pushed[-1] == "OK OPEN alice 1" and pushed[0].endswith("alice before the reload")
    assert carol.send("OPEN #g2")[-1] == "OK OPEN #g2 1"


def test_irc_removed_user_gets_notice_and_error_and_the_channel_sees_why(server):
    bob = register(server.connect_irc(), "bob")
    alice = register(server.connect_irc(), "alice")
    bob.send("JOIN #g1")
    alice.send("JOIN #g1")
    bob.read(), alice.read()
    server.chat.reload(AFTER)
    assert bob.read() == [
        f":{IRC_SERVER_NAME} NOTICE bob :{REMOVED}",
        "ERROR :Closing Link: bob (Removed from the server's users)",
    ]
    assert bob.closed
    bob.close()  # the transport reports the close
    quit_line = [line for line in alice.read() if " QUIT " in line]
    assert len(quit_line) == 1 and quit_line[0].startswith(":bob!")
    assert quit_line[0].endswith(" QUIT :Removed from the server's users")


def test_irc_group_change_parts_the_channel_and_says_the_groups(server):
    carol = register(server.connect_irc(), "carol")
    alice = register(server.connect_irc(), "alice")
    carol.send("JOIN #g1,#g2")
    alice.send("JOIN #g1")
    carol.read(), alice.read()
    server.chat.reload(AFTER)
    lines = carol.read()
    assert lines[0].startswith(":carol!") and lines[0].endswith(" PART #g1 :No longer a member of the group")
    assert lines[1] == f":{IRC_SERVER_NAME} NOTICE carol :Your groups are now: #g2 (alice carol)"
    assert any(" PART #g1 " in line for line in alice.read())  # the channel saw carol go
    assert carol.send("PRIVMSG #g2 :still in g2") == []


def test_reload_directory_reads_the_file_and_keeps_the_login_backoff(server, tmp_path):
    path = tmp_path / "spartan.toml"
    path.write_text(f'users = ["alice", "carol", "dave"]\n[passwords]\ndave = "{hash_password("pw")}"\n')
    server.chat.authenticator = first = PasswordAuthenticator(
        BEFORE, server.clock, run_in_thread=None
    )
    reloaded = reload_directory(server.chat, str(path), server.clock)
    assert server.chat.directory.users == ("alice", "carol", "dave")
    assert isinstance(server.chat.authenticator, PasswordAuthenticator)
    assert server.chat.authenticator.backoff is first.backoff
    assert describe(reloaded) == (
        "1 user(s) added (dave); 1 removed (bob); 0 session(s) closed; "
        "groups changed for 0 online user(s)"
    )


@pytest.mark.parametrize(
    "text, why",
    [
        ('users = ["alice",', "not valid TOML"),
        ('users = ["alice"]\n[groups]\ng = ["nobody"]\n', "unknown users: nobody"),
        ('users = ["alice"]\n[passwords]\nalice = "plain"\n', "password hash of 'alice'"),
    ],
)
def test_a_bad_file_changes_nothing(server, tmp_path, text, why):
    alice = login(server.connect(), "alice")
    path = tmp_path / "spartan.toml"
    path.write_text(text)
    authenticator = server.chat.authenticator
    with pytest.raises(ConfigError, match=why):
        reload_directory(server.chat, str(path), server.clock)
    assert server.chat.directory is BEFORE and server.chat.authenticator is authenticator
    assert isinstance(authenticator, OpenDoor) and alice.read() == [] and not alice.closed
    with pytest.raises(ConfigError, match="cannot read"):
        reload_directory(server.chat, str(tmp_path / "missing.toml"), server.clock)
