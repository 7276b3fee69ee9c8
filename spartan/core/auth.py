"""
Who may log in: checks a user's credentials before the chat core opens a session.

`OpenDoor` is the spec's behaviour: any known user gets in by name alone.
`PasswordAuthenticator` checks the password hashes of the directory (``[passwords]``):

* A user with a hash must give the password.  ``LOGIN <user>`` without one is answered
  ``password-required``, so that a client knows to ask for it.
* A wrong password, an unknown user, and (with ``--require-passwords``) a user without a
  hash all get the same ``bad-credentials`` answer after the same work: the password is
  checked against a stand-in hash when there is no real one, and hashes are compared in
  constant time.  ``LOGIN <user>`` without a password is answered ``password-required``
  for each of them alike.
* After a few failures from one address, every further attempt from it waits, twice as
  long after each failure (`spartan.net.limits.FailureBackoff`).
* The slow hash runs in the reactor's thread pool, never on the reactor thread.
* Passwords and hashes are never logged, nor put in an error.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from spartan.core.directory import Directory, check_password_hashes
from spartan.core.errors import ChatError
from spartan.net.limits import BackoffConfig, FailureBackoff
from spartan.passwd import dummy_hash, verify_password


class Authenticator(Protocol):
    def check(self, user: str, password: str | None, peer: str | None) -> Deferred[bool]:
        """Fire with True if ``user`` may log in with ``password`` from ``peer``."""


class OpenDoor:
    """Every user of the directory may log in without a password."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    def check(self, user: str, password: str | None, peer: str | None) -> Deferred[bool]:
        if not self.directory.is_user(user):
            # Without passwords the user list is no secret, so say plainly what is wrong.
            return fail(ChatError("unknown-user", f"There is no user {user!r}."))
        return succeed(True)


PASSWORD_REQUIRED = "password-required"


class PasswordAuthenticator:
    """Users with a password hash in the directory must give their password."""

    log = Logger(namespace="spartan")

    def __init__(
        self,
        directory: Directory,
        clock,
        require_passwords: bool = False,
        backoff: BackoffConfig | None = None,
        run_in_thread=None,
    ) -> None:
        check_password_hashes(directory)
        self.directory = directory
        self.clock = clock
        self.require_passwords = require_passwords
        self.backoff = FailureBackoff(backoff)
        self._run = run_in_thread or _thread_runner(clock)
        dummy_hash()  # made once now rather than during the first login

    def check(self, user: str, password: str | None, peer: str | None) -> Deferred[bool]:
        known = self.directory.is_user(user)
        hashed = self.directory.password_hashes.get(user) if known else None
        if known and hashed is None and not self.require_passwords:
            return succeed(True)  # an account without a password, as OpenDoor would
        if password is None:
            return fail(
                ChatError(PASSWORD_REQUIRED, "A password is needed: LOGIN <user> <password>.")
            )
        address = peer or "unknown"
        wait = self.backoff.delay(address, self.clock.seconds())

        def verify(_=None) -> Deferred[bool]:
            return self._run(verify_password, password, hashed or dummy_hash())

        def judged(matches: bool) -> bool:
            allowed = bool(matches) and hashed is not None
            if not allowed:
                self.backoff.failed(address, self.clock.seconds())
                self.log.info("Failed login as {user} from {peer}", user=user, peer=address)
            return allowed

        d = deferLater(self.clock, wait, verify) if wait > 0 else verify()
        return d.addCallback(judged)


def _thread_runner(clock):
    """Run a slow function in the reactor's thread pool (inline on a test clock)."""
    if IReactorThreads.providedBy(clock):
        return lambda f, *args: deferToThreadPool(clock, clock.getThreadPool(), f, *args)
    return lambda f, *args: maybeDeferred(f, *args)


def make_authenticator(directory: Directory, clock, require_passwords: bool = False):
    """`OpenDoor` when no user has a password and none is required, else passwords."""
    if not directory.password_hashes and not require_passwords:
        return OpenDoor(directory)
    return PasswordAuthenticator(directory, clock, require_passwords)
