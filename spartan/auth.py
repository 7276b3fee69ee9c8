"""
Who may log in: checks a user's credentials before the chat core opens a session.

`OpenDoor` is the spec's behaviour: any known user gets in by name alone.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.defer import Deferred, fail, succeed

from spartan.directory import Directory
from spartan.errors import ChatError


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
