"""
Where messages and seen-positions are kept: one small interface, several stores.

Reads return a Deferred, so a store may do its I/O off the reactor thread (SQLite) or over
the network (Redis); the in-memory store answers at once.  Writing a message has one
primitive, `append_to`, which reports to a receiver instead of a Deferred: it is the
server's hot path, and a Deferred with its callbacks per message cost more than the rest of
a durable store's work.  A store that answers later (a commit, a round trip) reports a
whole batch inside its ``output_batch``, so every connection writes its replies and
deliveries once.  A store assigns message ids: positive integers, increasing in the order
`append_to` was called.

Session tokens (`spartan.core.tokens`) are kept here too, by their sha256 digest only, so that
they survive a restart and are shared by the nodes of a cluster.

Conversation keys are strings made by `spartan.core.chat`: ``dm:alice:bob`` (the two users,
sorted) or ``group:group1``.  A conversation may have a `Topic` (groups do): one per key,
replaced whole when set.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure


# Not frozen: a frozen dataclass's __init__ (object.__setattr__ per field) costs 2.5x this
# one, once per message.  Nothing changes a message; hashable and compared by value.
@dataclass(slots=True, unsafe_hash=True)
class StoredMessage:
    id: int
    timestamp: float  # seconds since the epoch, UTC
    conversation: str  # a conversation key
    sender: str
    text: str
    client_id: str | None = None


@dataclass(frozen=True, slots=True)
class Topic:
    text: str  # empty: no topic (it was cleared)
    setter: str
    timestamp: float  # seconds since the epoch, UTC


class StoreError(Exception):
    """The store could not do what was asked (disk full, database unreadable, ...).

    The message is for the operator and the user; nothing was changed.
    """


class AppendReceiver(Protocol):
    """Where a store reports one `append_to`: exactly one of the two, once."""

    def appended(self, message: StoredMessage, is_new: bool) -> None: ...

    def failed(self, reason: BaseException | Failure) -> None:
        """A `StoreError` when the store could not keep it; anything else is a bug."""


class MessageStore(Protocol):
    output_batch: AbstractContextManager
    """Opened around the reports of one batch of appends (`spartan.net.batch`)."""

    commit_observer: Callable[[float, int], None] | None
    """Called after each commit of appends with (seconds it took, appends in it): the
    metrics' histograms.  None: not observed.  A store without commits never calls it."""

    def start(self) -> Deferred[None]:
        """Open the store; fails with StoreError if it cannot be used."""

    def stop(self) -> Deferred[None]:
        """Finish pending writes and close."""

    def conversations(self) -> Deferred[set[str]]:
        """Keys of every conversation that holds at least one message."""

    def append_to(
        self,
        conversation: str,
        sender: str,
        text: str,
        timestamp: float,
        client_id: str | None,
        receiver: AppendReceiver,
    ) -> None:
        """Store a message; once it is durable, ``receiver.appended(message, is_new)``
        (maybe before this returns), or ``receiver.failed(reason)``.

        With a ``client_id`` that ``sender`` already used, nothing is stored and the
        earlier message comes back with ``is_new`` False.
        """

    def append(
        self,
        conversation: str,
        sender: str,
        text: str,
        timestamp: float,
        client_id: str | None = None,
    ) -> Deferred[tuple[StoredMessage, bool]]:
        """`append_to`, firing a Deferred with (message, is_new) (`StoreBase` has it)."""

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

    def topic(self, conversation: str) -> Deferred[Topic | None]:
        """The topic last set for ``conversation`` (None: never set)."""

    def set_topic(self, conversation: str, topic: Topic) -> Deferred[None]:
        """Replace the topic of ``conversation``; fires once it is durable."""

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
    def check_writable(self) -> Deferred[None]:
        """Fire once the store has shown it can take a write now (a health check), without
        changing what it holds; fail with `StoreError` saying why not."""


class DeferredReceiver:
    """An `AppendReceiver` that fires a Deferred with (message, is_new)."""

    __slots__ = ("deferred",)

    def __init__(self) -> None:
        self.deferred: Deferred[tuple[StoredMessage, bool]] = Deferred()

    def appended(self, message: StoredMessage, is_new: bool) -> None:
        self.deferred.callback((message, is_new))

    def failed(self, reason: BaseException | Failure) -> None:
        self.deferred.errback(reason)


class StoreBase:
    """What every store shares: no output batch until the service gives one, and
    `append` as the Deferred form of `append_to`."""

    output_batch: AbstractContextManager = nullcontext()
    commit_observer: Callable[[float, int], None] | None = None

    def append(self, conversation, sender, text, timestamp, client_id=None):
        receiver = DeferredReceiver()
        self.append_to(conversation, sender, text, timestamp, client_id, receiver)
        return receiver.deferred


class QueuedStore(StoreBase):
    """What a store that queues its work shares (SQLite's worker, Redis's batches): the
    work waiting (``_pending``), the batch in flight (``_in_flight``), the next batch's
    call (``_scheduled``), and waiting until all of it is done (to stop cleanly)."""

    _pending: list
    _in_flight: int | bool
    _scheduled: object

    def _until_idle(self) -> Deferred[None]:
        if self._is_idle():
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._idle_waiters.append(d)
        return d

    def _is_idle(self) -> bool:
        return not self._pending and not self._in_flight and self._scheduled is None

    def _wake_if_idle(self) -> None:
        if self._is_idle():
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(None)
