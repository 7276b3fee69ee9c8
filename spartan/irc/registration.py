"""
IRC registration as a small state machine: CAP negotiation, PASS, NICK and USER, until
the connection may log in, then logged in.  Pure: the gateway feeds it what the client
said and asks whether to log in now.

    UNREGISTERED --(NICK and USER given, no CAP negotiation open)--> LOGGING_IN
    LOGGING_IN --(the core accepted the login)--> REGISTERED
    LOGGING_IN --(refused)--> CLOSED
"""

from __future__ import annotations

import enum


class State(enum.Enum):
    UNREGISTERED = "unregistered"
    LOGGING_IN = "logging in"
    REGISTERED = "registered"
    CLOSED = "closed"


class Registration:
    __slots__ = ("state", "nick", "ident", "realname", "password", "negotiating", "got_user")

    def __init__(self) -> None:
        self.state = State.UNREGISTERED
        self.nick: str | None = None
        self.ident = ""  # USER's user name
        self.realname = ""
        self.password: str | None = None
        self.negotiating = False  # CAP LS or REQ seen, CAP END not yet
        self.got_user = False

    @property
    def open(self) -> bool:
        """Registration commands (PASS, USER, a first NICK) are still taken."""
        return self.state is State.UNREGISTERED

    def user(self, ident: str, realname: str) -> None:
        self.ident, self.realname = ident[:32], realname
        self.got_user = True

    def cap_started(self) -> None:
        if self.open:
            self.negotiating = True

    def cap_ended(self) -> None:
        self.negotiating = False

    def ready(self) -> bool:
        """True once, when the connection should log in now (the state moves on)."""
        if self.open and self.nick and self.got_user and not self.negotiating:
            self.state = State.LOGGING_IN
            return True
        return False

    def logged_in(self) -> None:
        self.state = State.REGISTERED

    def refused(self) -> None:
        self.state = State.CLOSED
