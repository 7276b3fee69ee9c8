"""PasswordAuthenticator: who gets in, the answers others get, and backoff per address."""

import pytest
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from spartan import passwd
from spartan.core.auth import OpenDoor, PasswordAuthenticator, make_authenticator
from spartan.core.chat import Chat
from spartan.core.directory import ConfigError, Directory
from spartan.core.errors import ChatError
from spartan.net.limits import BackoffConfig
from spartan.store.memory import MemoryStore

FAST = dict(n=2**4, r=1, p=1)
ALICE_PW = "alice's secret"
HASHES = {"alice": passwd.hash_password(ALICE_PW, **FAST)}
DIRECTORY = Directory(users=("alice", "bob"), groups={}, password_hashes=HASHES)


class Recorder:
    """Runs verify_password inline and records what it was asked to check."""

    def __init__(self):
        self.calls = []

    def __call__(self, f, password, hashed):
        self.calls.append(hashed)
        return maybeDeferred(f, password, hashed)


def make(require=False, backoff=None, directory=DIRECTORY):
    clock = Clock()
    runner = Recorder()
    auth = PasswordAuthenticator(directory, clock, require, backoff, run_in_thread=runner)
    return auth, clock, runner


def result(d):
    out = []
    d.addBoth(out.append)
    assert out, "the check did not finish"
    value = out[0]
    if hasattr(value, "value") and isinstance(value.value, ChatError):
        return value.value.code
    return value


def test_right_password_gets_in():
    auth, clock, runner = make()
    assert result(auth.check("alice", ALICE_PW, "1.1.1.1")) is True
    assert runner.calls == [HASHES["alice"]]


def test_wrong_password_is_refused():
    auth, clock, _ = make()
    assert result(auth.check("alice", "guess", "1.1.1.1")) is False


def test_user_with_hash_needs_a_password():
    auth, clock, runner = make()
    assert result(auth.check("alice", None, "1.1.1.1")) == "password-required"
    assert runner.calls == []


def test_unknown_user_gets_the_same_answers_after_the_same_work():
    auth, clock, runner = make()
    assert result(auth.check("mallory", None, "1.1.1.1")) == "password-required"
    assert result(auth.check("mallory", "guess", "1.1.1.1")) is False
    # the password was still run through scrypt, against a stand-in hash
    assert runner.calls == [passwd.dummy_hash()]
    assert passwd.parse_hash(passwd.dummy_hash())[:3] == passwd.parse_hash(
        passwd.hash_password("x")
    )[:3]


def test_user_without_hash_gets_in_unless_passwords_are_required():
    auth, _, _ = make()
    assert result(auth.check("bob", None, "1.1.1.1")) is True
    assert result(auth.check("bob", "whatever", "1.1.1.1")) is True
    auth, _, runner = make(require=True)
    assert result(auth.check("bob", None, "1.1.1.1")) == "password-required"
    assert result(auth.check("bob", "whatever", "1.1.1.1")) is False
    assert runner.calls == [passwd.dummy_hash()]
    assert result(auth.check("alice", ALICE_PW, "1.1.1.1")) is True


def test_repeated_failures_from_one_address_are_slowed_down():
    auth, clock, runner = make(backoff=BackoffConfig(free_failures=2, base=1, cap=4))
    for _ in range(3):  # two free failures, then the third starts the backoff
        assert result(auth.check("alice", "guess", "6.6.6.6")) is False
    # The next try from that address is not even checked before a second has passed ...
    d = auth.check("alice", ALICE_PW, "6.6.6.6")
    out = []
    d.addBoth(out.append)
    assert out == [] and len(runner.calls) == 3
    clock.advance(1)
    assert out == [True]
    # ... while another address is not affected.
    assert result(auth.check("alice", ALICE_PW, "7.7.7.7")) is True


def test_backoff_doubles_and_is_capped():
    auth, clock, _ = make(backoff=BackoffConfig(free_failures=0, base=1, cap=4))
    waits = []
    for _ in range(5):
        d = auth.check("mallory", "guess", "6.6.6.6")
        out = []
        d.addBoth(out.append)
        waited = 0
        while not out and waited < 100:
            clock.advance(0.5)
            waited += 0.5
        waits.append(waited)
    assert waits == [0, 1, 2, 4, 4]


def test_no_password_or_hash_reaches_the_log():
    auth, clock, _ = make()
    chat = Chat(DIRECTORY, MemoryStore(), clock, authenticator=auth)
    with capturedLogs() as events:
        attempts = [
            chat.login("alice", "guess-1", client=None, peer="1.1.1.1"),
            chat.login("alice", ALICE_PW, client=None, peer="1.1.1.1"),
            chat.login("mallory", "guess-2", client=None, peer="1.1.1.1"),
        ]
    outcomes = [result(d) for d in attempts]  # the refusals are answers, not loose errors
    assert outcomes[0] == outcomes[2] == "bad-credentials"
    text = "\n".join(formatEvent(e) + repr(e) for e in events)
    assert "Failed login as alice from 1.1.1.1" in text
    assert "alice logged in" in text
    for secret in ("guess-1", "guess-2", ALICE_PW, HASHES["alice"], "scrypt$"):
        assert secret not in text


def test_chat_login_turns_refusal_into_bad_credentials():
    auth, clock, _ = make()
    chat = Chat(DIRECTORY, MemoryStore(), clock, authenticator=auth)
    assert result(chat.login("alice", "wrong", None, "1.1.1.1")) == "bad-credentials"
    assert result(chat.login("nobody", "wrong", None, "1.1.1.1")) == "bad-credentials"
    assert result(chat.login("nobody", None, None, "1.1.1.1")) == "password-required"


def test_bad_hash_in_directory_is_a_config_error_that_hides_it():
    directory = Directory(users=("alice",), groups={}, password_hashes={"alice": "plain-text"})
    with pytest.raises(ConfigError) as e:
        PasswordAuthenticator(directory, Clock())
    assert "plain-text" not in str(e.value)


def test_make_authenticator():
    plain = Directory(users=("alice",), groups={})
    assert isinstance(make_authenticator(plain, Clock()), OpenDoor)
    assert isinstance(make_authenticator(plain, Clock(), True), PasswordAuthenticator)
    assert isinstance(make_authenticator(DIRECTORY, Clock()), PasswordAuthenticator)


def test_default_runner_is_inline_on_a_test_clock_and_a_thread_pool_on_a_reactor():
    from twisted.internet import reactor

    from spartan.core.auth import _thread_runner

    assert result(_thread_runner(Clock())(lambda a: a + 1, 1)) == 2
    assert _thread_runner(reactor).__code__ is not _thread_runner(Clock()).__code__
