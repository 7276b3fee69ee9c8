"""The server protocol under the security rules: passwords, authorization, flood control,
connection limits and timeouts.  No real network and no real time: StringTransport and Clock.
"""

import pytest
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from spartan import passwd
from spartan.core.auth import PasswordAuthenticator
from spartan.core.chat import Chat
from spartan.core.directory import Directory
from spartan.net.limits import RateConfig, ServerLimits
from spartan.store.memory import MemoryStore
from tests.protocol_support import Server, login

PASSWORD = "open sesame"
HASHED = passwd.hash_password(PASSWORD, n=2**4, r=1, p=1)


# -- passwords ----------------------------------------------------------------------------


@pytest.fixture
def password_server():
    directory = Directory(
        users=("alice", "bob", "charlie"), groups={}, password_hashes={"alice": HASHED}
    )
    server = Server(directory=directory)
    server.chat.authenticator = PasswordAuthenticator(
        directory, server.clock, require_passwords=False, run_in_thread=maybeDeferred
    )
    return server


def codes(lines):
    return [line.split(" ")[1] if line.startswith("ERR") else line for line in lines]


def test_login_with_password(password_server):
    conn = password_server.connect()
    conn.read()
    assert codes(conn.send("LOGIN alice")) == ["password-required"]
    assert codes(conn.send("LOGIN alice wrong")) == ["bad-credentials"]
    assert conn.send(f"LOGIN alice {PASSWORD}") == ["OK LOGIN alice"]


def test_unknown_user_and_wrong_password_read_the_same(password_server):
    conn = password_server.connect()
    conn.read()
    assert conn.send("LOGIN alice") == conn.send("LOGIN mallory")
    assert conn.send("LOGIN alice wrong") == conn.send("LOGIN mallory wrong")


def test_require_passwords_shuts_out_users_without_hash(password_server):
    server = password_server
    conn = server.connect()
    conn.read()
    assert conn.send("LOGIN bob") == ["OK LOGIN bob"]
    server.chat.authenticator.require_passwords = True
    other = server.connect()
    other.read()
    assert codes(other.send("LOGIN bob")) == ["password-required"]
    assert codes(other.send("LOGIN bob guess")) == ["bad-credentials"]


def test_password_never_logged_even_when_login_crashes(password_server, monkeypatch):
    def crash(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(password_server.chat, "login", crash)
    conn = password_server.connect()
    with capturedLogs() as events:
        assert codes(conn.send("LOGIN alice hunter2-secret")[-1:]) == ["internal-error"]
    text = "\n".join(formatEvent(e) + repr(e) for e in events)
    assert "boom" in text and "hunter2-secret" not in text


# -- authorization ------------------------------------------------------------------------

GROUPED = Directory(
    users=("alice", "bob", "charlie", "eve"),
    groups={"team": ("alice", "bob"), "other": ("charlie", "eve")},
)


@pytest.fixture
def three():
    server = Server(directory=GROUPED)
    alice, bob, charlie = (login(server.connect(), u) for u in ("alice", "bob", "charlie"))
    for conn in (alice, bob, charlie):
        conn.read()
    alice.send("SEND bob the dm secret")
    alice.send("SEND #team the team secret")
    bob.read()
    charlie.read()
    return server, alice, bob, charlie


@pytest.mark.parametrize(
    "line", ["SEND #team hi", "OPEN #team", "ACK #team 2", "HISTORY #team", "HISTORY #team 1000"]
)
def test_non_members_are_refused_on_every_command(three, line):
    server, alice, bob, charlie = three
    assert codes(charlie.send(line)) == ["not-a-member"]
    assert bob.read() == [] and alice.read() == []


def test_members_do_get_in(three):
    server, alice, bob, charlie = three
    assert bob.send("HISTORY #team")[-1] == "OK HISTORY #team 1"


def test_nobody_reads_someone_elses_direct_messages(three):
    server, alice, bob, charlie = three
    seen = []
    for target in ("alice", "bob"):
        seen += charlie.send(f"OPEN {target}", f"HISTORY {target} 1000", f"ACK {target} 99")
    assert seen == [
        "OK OPEN alice 0",
        "OK HISTORY alice 0",
        "OK ACK alice 0",
        "OK OPEN bob 0",
        "OK HISTORY bob 0",
        "OK ACK bob 0",
    ]
    assert not any("secret" in line for line in seen)
    # ... and what alice wrote to bob is still unseen for bob (charlie's ACK touched nothing)
    assert bob.send("OPEN alice")[-1] == "OK OPEN alice 1"


@pytest.mark.parametrize(
    "target", ["dm:alice:bob", "#dm:alice:bob", "group:team", "alice:bob", "#group:team", "#"]
)
def test_a_conversation_key_cannot_be_named(three, target):
    server, alice, bob, charlie = three
    for line in (f"OPEN {target}", f"HISTORY {target}", f"SEND {target} x", f"ACK {target} 1"):
        assert codes(charlie.send(line)) == ["bad-name"]


def test_direct_conversations_are_keyed_by_the_logged_in_user():
    chat = Chat(GROUPED, MemoryStore(), Clock())
    for user in GROUPED.users:
        for target in GROUPED.users:
            if target == user:
                continue
            conversation = chat.conversation(user, target)
            assert user in conversation.participants
            assert conversation.key.split(":")[1:] == sorted((user, target))


def test_not_logged_in_reads_nothing(three):
    server, *_ = three
    conn = server.connect()
    conn.read()
    for line in ("OPEN bob", "HISTORY #team", "SEND bob x", "ACK bob 1", "USERS", "GROUPS"):
        assert codes(conn.send(line)) == ["not-logged-in"]


# -- flood control ------------------------------------------------------------------------


def test_flooder_is_slowed_then_told_then_dropped_and_others_are_not_affected():
    server = Server(limits=ServerLimits(rate=RateConfig(rate=10, burst=5)))
    flooder = login(server.connect("10.0.0.6"), "eve")
    calm = login(server.connect("10.0.0.7"), "bob")
    flooder.read()
    calm.read()
    replies = flooder.send(*["PING x"] * 100)
    # the rest of the burst (LOGIN took a token) and one line on credit are answered;
    # then the connection stops being read
    assert replies == ["OK PONG x"] * 5
    assert flooder.transport.producerState == "paused"
    assert calm.send("PING calm") == ["OK PONG calm"]
    assert calm.transport.producerState == "producing"
    seen = []
    for _ in range(100):
        server.clock.advance(0.1)
        seen += flooder.read()
        assert calm.send("PING calm") == ["OK PONG calm"]
    notices = [line for line in seen if line.startswith("* NOTICE rate-limited")]
    assert len(notices) == 1
    assert seen.index(notices[0]) == 3  # told at the `burst`-th line in a row on credit
    assert seen[-1].startswith("ERR rate-limited")
    assert seen.count("OK PONG x") == 9  # 2 * burst lines on credit in all, then dropped
    assert flooder.closed and not calm.closed


def test_a_pasted_paragraph_within_the_burst_is_not_slowed():
    server = Server(limits=ServerLimits(rate=RateConfig(rate=5, burst=40)))
    alice = login(server.connect(), "alice")
    bob = login(server.connect(), "bob")
    alice.read()
    bob.read()
    replies = alice.send(*[f"SEND bob line {i}" for i in range(39)])
    assert len([r for r in replies if r.startswith("OK SENT")]) == 39
    assert alice.transport.producerState == "producing"
    assert len(bob.read()) == 39


def test_slowed_lines_are_answered_in_order_once_the_debt_is_paid():
    server = Server(limits=ServerLimits(rate=RateConfig(rate=2, burst=2)))
    conn = server.connect()
    conn.read()
    assert conn.send("PING 1", "PING 2", "PING 3", "PING 4") == [f"OK PONG {i}" for i in (1, 2, 3)]
    server.clock.advance(0.49)
    assert conn.read() == []
    server.clock.advance(0.01)
    notice, pong = conn.read()
    assert notice.startswith("* NOTICE rate-limited") and pong == "OK PONG 4"


def test_rate_limit_off():
    server = Server(limits=ServerLimits(rate=RateConfig(rate=5, burst=0)))
    conn = server.connect()
    conn.read()
    assert len(conn.send(*["PING"] * 2000)) == 2000


def test_overlong_lines_count_against_the_rate():
    server = Server(limits=ServerLimits(rate=RateConfig(rate=1, burst=2)))
    server.factory.max_line = 10
    conn = server.connect()
    conn.read()
    replies = conn.send(*["X" * 50] * 3, "PING")
    assert codes(replies) == ["line-too-long"] * 3
    assert conn.transport.producerState == "paused"
    server.clock.advance(1)
    assert conn.read()[-1] == "OK PONG"


# -- connection limits --------------------------------------------------------------------


def test_connections_per_address_and_total():
    server = Server(limits=ServerLimits(max_connections=3, max_per_address=2))
    a1, a2 = server.connect("10.0.0.1"), server.connect("10.0.0.1")
    refused = server.connect("10.0.0.1")
    assert refused.read() == [
        "ERR too-many-connections Too many connections from your address (at most 2)."
    ]
    assert refused.closed
    b1 = server.connect("10.0.0.2")
    assert b1.read()[0].startswith("* HELLO")
    full = server.connect("10.0.0.3")
    assert codes(full.read()) == ["too-many-connections"] and full.closed
    a1.close()
    a3 = server.connect("10.0.0.1")
    assert a3.read()[0].startswith("* HELLO") and not a3.closed
    assert a2.send("PING")[-1] == "OK PONG"
    assert server.factory.connections.total == 3


def test_connection_counts_go_back_to_zero():
    server = Server(limits=ServerLimits(max_connections=10, max_per_address=10))
    conns = [server.connect(f"10.0.0.{i % 3}") for i in range(9)]
    for conn in conns:
        conn.close()
        conn.close()  # twice is harmless
    assert server.factory.connections.total == 0
    assert server.factory.connections.by_address == {}


# -- timeouts -----------------------------------------------------------------------------


def test_login_timeout():
    server = Server(limits=ServerLimits(login_timeout=30))
    slow, quick = server.connect(), server.connect()
    login(quick, "alice")
    slow.send("PING")
    server.clock.advance(29)
    assert not slow.closed
    slow.read()
    server.clock.advance(1)
    assert codes(slow.read()) == ["* NOTICE login-timeout Not logged in after 30 seconds; closing."]
    assert slow.closed and not quick.closed


def test_idle_timeout_with_keepalive_ping():
    server = Server(limits=ServerLimits(idle_timeout=60))
    answers, silent = login(server.connect(), "alice"), login(server.connect(), "bob")
    for _ in range(10):  # ten minutes: a client that answers every PING stays
        server.clock.advance(30)
        pings = [line for line in answers.read() if line.startswith("* PING")]
        assert len(pings) == 1
        answers.send("PONG " + pings[0].split(" ")[2])
    assert not answers.closed
    assert silent.closed
    assert silent.read()[-2:] == ["* PING 1", "* NOTICE idle-timeout No line for 60 seconds; closing."]


def test_any_line_counts_as_activity():
    server = Server(limits=ServerLimits(idle_timeout=60))
    conn = login(server.connect(), "alice")
    conn.read()
    for _ in range(20):
        server.clock.advance(20)
        conn.send("USERS")
    assert not any(line.startswith("* PING") for line in conn.read())
    assert not conn.closed


# The guard is shared by the native port and the IRC gateway: these run on both.
BOTH_PORTS = pytest.mark.parametrize(
    "connect, ping", [("connect", "PING"), ("connect_irc", "PING :a")], ids=["native", "irc"]
)


@BOTH_PORTS
def test_closed_connection_that_does_not_read_is_aborted(connect, ping):
    server = Server(limits=ServerLimits(login_timeout=5, close_grace=10))
    conn = getattr(server, connect)()
    aborted = []
    conn.transport.abortConnection = lambda: aborted.append(True)
    server.clock.advance(5)
    assert conn.transport.disconnecting and not aborted
    server.clock.advance(10)
    assert aborted == [True]


@BOTH_PORTS
def test_timers_are_cancelled_when_the_connection_goes(connect, ping):
    server = Server(
        limits=ServerLimits(login_timeout=5, idle_timeout=60, rate=RateConfig(rate=1, burst=1))
    )
    conn = getattr(server, connect)()
    conn.send(ping, ping)
    conn.close()
    assert server.clock.getDelayedCalls() == []


# -- twistd options -----------------------------------------------------------------------


def _options(*args):
    from spartan.tap import Options

    options = Options()
    options.parseOptions(list(args))
    return options


def test_options_defaults_turn_the_limits_on():
    limits = _options()["limits"]
    assert limits.rate == RateConfig(rate=5.0, burst=40)
    assert (limits.max_connections, limits.max_per_address) == (1000, 20)
    assert (limits.login_timeout, limits.idle_timeout) == (60, 600)


def test_options_set_and_turn_off_limits():
    options = _options(
        "--rate", "2.5", "--burst", "0", "--max-connections", "0", "--max-per-address", "3",
        "--login-timeout", "0", "--idle-timeout", "30", "--require-passwords",
    )  # fmt: skip
    limits = options["limits"]
    assert not limits.rate.enabled and limits.rate.rate == 2.5
    assert (limits.max_connections, limits.max_per_address) == (0, 3)
    assert (limits.login_timeout, limits.idle_timeout) == (0, 30)
    assert options["require-passwords"]


@pytest.mark.parametrize(
    "args", [("--burst", "-1"), ("--rate", "nan"), ("--idle-timeout", "-5"), ("--rate", "0")]
)
def test_options_refuse_bad_values(args):
    from twisted.python.usage import UsageError

    with pytest.raises(UsageError):
        _options(*args)


def test_several_listeners():
    options = _options("--port", "tcp:0:interface=127.0.0.1", "--port", "3001")
    assert options["ports"] == ["tcp:0:interface=127.0.0.1", "tcp:3001"]


def test_bad_hash_in_config_is_a_usage_error_that_hides_it(tmp_path):
    from twisted.python.usage import UsageError

    config = tmp_path / "c.toml"
    config.write_text('users = ["alice"]\n[passwords]\nalice = "hunter2"\n')
    with pytest.raises(UsageError) as e:
        _options("--config", str(config))
    assert "alice" in str(e.value) and "hunter2" not in str(e.value)


def test_make_service_wires_passwords_and_limits(tmp_path):
    from twisted.internet.testing import MemoryReactorClock

    from spartan.tap import makeService

    config = tmp_path / "c.toml"
    config.write_text(f'users = ["alice", "bob"]\n[passwords]\nalice = "{HASHED}"\n')
    options = _options("--config", str(config), "--burst", "7", "--port", "tcp:0")
    service = makeService(options, MemoryReactorClock())
    assert isinstance(service.chat.authenticator, PasswordAuthenticator)
    assert service.factory.limits.rate.burst == 7
    plain = makeService(_options("--require-passwords"), MemoryReactorClock())
    assert plain.chat.authenticator.require_passwords
