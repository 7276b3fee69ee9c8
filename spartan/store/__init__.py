"""
Where messages and seen-positions are kept: one small interface, several stores.

Every method returns a Deferred, so a store may do its I/O off the reactor thread (SQLite)
or over the network (Redis); the in-memory store answers at once.  A store assigns message
ids: positive integers, increasing in the order `append` was called.

Session tokens (`spartan.tokens`) are kept here too, by their sha256 digest only, so that
they survive a restart and are shared by the nodes of a cluster.

Conversation keys are strings made by `spartan.core.chat`: ``dm:alice:bob`` (the two users,
sorted) or ``group:group1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Iterable
from typing import Protocol

from twisted.internet.defer import Deferred


# Not frozen: a frozen dataclass's __init__ (object.__setattr__ per field) costs 2.5x this
# one, once per message (issue 6).  Nothing changes a message; hashable and compared by value.
@dataclass(slots=True, unsafe_hash=True)
class StoredMessage:
    id: int
    timestamp: float  # seconds since the epoch, UTC
    conversation: str  # a conversation key
    sender: str
    text: str
    client_id: str | None = None


class StoreError(Exception):
    """The store could not do what was asked (disk full, database unreadable, ...).

    The message is for the operator and the user; nothing was changed.
    """


class MessageStore(Protocol):
    def start(self) -> Deferred[None]:
        """Open the store; fails with StoreError if it cannot be used."""

    def stop(self) -> Deferred[None]:
        """Finish pending writes and close."""

    def conversations(self) -> Deferred[set[str]]:
        """Keys of every conversation that holds at least one message."""

    def append(
        self,
        conversation: str,
        sender: str,
        text: str,
        timestamp: float,
        client_id: str | None = None,
    ) -> Deferred[tuple[StoredMessage, bool]]:
        """Store a message; fire once it is durable with (message, is_new).

        With a ``client_id`` that ``sender`` already used, nothing is stored and the
        earlier message comes back with ``is_new`` False.
        """

    def messages_after(
        self, conversation: str, after_id: int, limit: int
    ) -> Deferred[list[StoredMessage]]:
        """Up to ``limit`` messages with id > ``after_id``, oldest first."""

    def recent(
        self, conversation: str, limit: int, before: int | None = None
    ) -> Deferred[list[StoredMessage]]:
        """The last ``limit`` messages (with id < ``before``, if given), oldest first."""

    def seen(self, user: str, conversation: str) -> Deferred[int]:
        """The id up to which ``user`` has seen ``conversation`` (0: nothing)."""

    def mark_seen(self, user: str, conversation: str, upto: int) -> Deferred[int]:
        """Move the seen position forward (never back); fire with the new position."""

    def unseen_counts(
        self, user: str, conversations: Iterable[str]
    ) -> Deferred[dict[str, tuple[int, int]]]:
        """For each of ``conversations`` holding messages after ``user``'s seen position
        that others sent: (how many, the id of the oldest).  Conversations with none are
        left out.  One question for all of them: a login asks it."""

    def add_token(self, digest: str, user: str, expires: float, now: float) -> Deferred[None]:
        """Keep a session token's digest for ``user`` until ``expires`` (epoch seconds);
        tokens expired at ``now`` may be forgotten."""

    def token_user(self, digest: str, now: float) -> Deferred[str | None]:
        """The user of a token that is kept and has not expired at ``now``; else None."""

    def remove_token(self, digest: str) -> Deferred[None]:
        """Forget a token (revoked); nothing happens for an unknown one."""
