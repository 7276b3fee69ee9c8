"""The wire format: parsing never raises, bad input comes back as an error value."""

import pytest

from spartan.native import wire


@pytest.mark.parametrize(
    "line, command",
    [
        (b"HELP", wire.Help()),
        (b"help", wire.Help()),
        (b"LOGIN alice", wire.Login("alice")),
        (b"login alice s3cret", wire.Login("alice", "s3cret")),
        (b"LOGIN alice correct horse battery", wire.Login("alice", "correct horse battery")),
        (b"LOGIN alice\r", wire.Login("alice")),
        (b"USERS", wire.Users()),
        (b"GROUPS", wire.Groups()),
        (b"SEND bob hi", wire.Send("bob", "hi")),
        (b"SEND bob How r u?  ", wire.Send("bob", "How r u?")),  # trailing blanks dropped
        (b"SEND bob   two  spaces", wire.Send("bob", "  two  spaces")),
        (b"SEND #group1 hello everyone", wire.Send("#group1", "hello everyone")),
        (b"SEND id=c-1:7 bob hi", wire.Send("bob", "hi", "c-1:7")),
        ("SEND bob ça va? 👋".encode(), wire.Send("bob", "ça va? 👋")),
        (b"SEND bob a\tb", wire.Send("bob", "a\tb")),
        (b"OPEN bob", wire.Open("bob")),
        (b"OPEN #group1", wire.Open("#group1")),
        (b"ACK bob 42", wire.Ack("bob", 42)),
        (b"HISTORY #group1", wire.History("#group1", wire.DEFAULT_HISTORY)),
        (b"HISTORY bob 5", wire.History("bob", 5)),
        (b"PING", wire.Ping()),
        (b"PING abc", wire.Ping("abc")),
        (b"PONG abc", wire.Pong("abc")),
        (b"QUIT", wire.Quit()),
        (b"  QUIT  ", wire.Quit()),
    ],
)
def test_parses_commands(line, command):
    assert wire.parse_command(line) == command


@pytest.mark.parametrize(
    "line, code",
    [
        (b"", "empty-line"),
        (b"\r", "empty-line"),
        (b"FLY away", "unknown-command"),
        (b"\xc3\x28", "bad-encoding"),
        (b"SEND bob \xe2\x82", "bad-encoding"),
        (b"\xff\xfd\x18", "telnet-negotiation"),
        (b"SEND bob \x1b[2Jgotcha", "control-character"),
        (b"SEND bob a\rb", "control-character"),
        (b"SEND bob \xc2\x9b31m", "control-character"),  # C1 CSI
        (b"SEND bob", "bad-syntax"),
        (b"SEND bob    ", "bad-syntax"),
        (b"SEND id=bad/id bob hi", "bad-syntax"),
        (b"SEND b@d hi", "bad-name"),
        (b"SEND ## hi", "bad-name"),
        (b"LOGIN", "bad-syntax"),
        (b"LOGIN -x", "bad-name"),
        (b"USERS now", "bad-syntax"),
        (b"OPEN", "bad-syntax"),
        (b"OPEN bob alice", "bad-syntax"),
        (b"ACK bob", "bad-syntax"),
        (b"ACK bob -1", "bad-syntax"),
        (b"ACK bob \xd9\xa3", "bad-syntax"),  # an Arabic-Indic digit is not an id
        (b"HISTORY bob 0", "bad-syntax"),
        (b"HISTORY bob 1001", "bad-syntax"),
    ],
)
def test_refuses_bad_lines_with_a_code(line, code):
    error = wire.parse_command(line)
    assert isinstance(error, wire.WireError)
    assert error.code == code
    assert error.message


def test_unknown_command_message_is_bounded():
    error = wire.parse_command(b"X" * 3000)
    assert error.code == "unknown-command"
    assert len(error.message) < 80


@pytest.mark.parametrize(
    "command",
    [
        wire.Login("alice"),
        wire.Login("alice", "pw"),
        wire.Send("#group1", "hello  there", "id-1"),
        wire.Send("bob", "hi"),
        wire.Open("bob"),
        wire.Ack("#group1", 7),
        wire.History("bob", 3),
        wire.Ping("t1"),
        wire.Pong(),
        wire.Users(),
        wire.Quit(),
    ],
)
def test_client_commands_round_trip(command):
    line = wire.format_command(command)
    assert line.endswith(b"\r\n")
    assert wire.parse_command(line[:-1]) == command


def test_replies_are_crlf_terminated_lines():
    assert wire.format_ok("SENT", "3", "x") == b"OK SENT 3 x\r\n"
    assert wire.format_ok("GROUPS") == b"OK GROUPS\r\n"
    assert wire.format_error("unknown-user", "There is no user 'zed'.") == (
        b"ERR unknown-user There is no user 'zed'.\r\n"
    )


def test_timestamps_are_utc_milliseconds_and_parse_back():
    assert wire.format_timestamp(0) == "1970-01-01T00:00:00.000Z"
    assert wire.format_timestamp(1764000000.1234) == "2025-11-24T16:00:00.123Z"
    assert wire.format_timestamp(59.9996) == "1970-01-01T00:01:00.000Z"
    assert wire.parse_timestamp("2025-11-24T16:00:00.123Z") == pytest.approx(1764000000.123)
    assert wire.parse_timestamp("yesterday") is None


def test_message_lines_parse_back_for_clients():
    line = wire.format_message("MSG", 12, 1764000000.5, "#group1", "alice", "hi there  you")
    assert line == b"* MSG 12 2025-11-24T16:00:00.500Z #group1 alice hi there  you\r\n"
    assert wire.parse_server_line(line) == wire.Message(
        "MSG", 12, 1764000000.5, "#group1", "alice", "hi there  you"
    )


def test_server_lines_parse_for_clients():
    assert wire.parse_server_line(b"OK OPEN bob 2\r\n") == wire.Reply(True, "OPEN", "bob 2")
    error = wire.parse_server_line(b"ERR not-a-member You are not a member of 'g'.\r\n")
    assert error == wire.Reply(False, "not-a-member", "You are not a member of 'g'.")
    assert wire.parse_server_line(b"* PING k") == wire.Push("PING", "k")
    assert isinstance(wire.parse_server_line(b"* MSG x y"), wire.WireError)
    assert isinstance(wire.parse_server_line(b"garbage"), wire.WireError)


def test_users_and_groups_replies_parse_for_clients():
    users = wire.parse_server_line(b"OK USERS alice=online bob=offline")
    assert wire.parse_users(users) == [("alice", True), ("bob", False)]
    groups = wire.parse_server_line(b"OK GROUPS group1=alice,bob g2=eve")
    assert wire.parse_groups(groups) == {"group1": ["alice", "bob"], "g2": ["eve"]}
    assert wire.parse_groups(wire.parse_server_line(b"OK GROUPS")) == {}


def test_help_lists_every_command_then_one_reply():
    lines = wire.format_help()
    assert lines[-1] == f"OK HELP {len(wire.COMMANDS)}\r\n".encode()
    assert all(line.startswith(b"* HELP ") for line in lines[:-1])
    assert {line.split()[2].decode() for line in lines[:-1]} == set(wire.COMMANDS)
