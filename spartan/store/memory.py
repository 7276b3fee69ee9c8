"""A store that keeps everything in this process: for tests, and for `--db :memory:`."""

from __future__ import annotations

import bisect
from collections import defaultdict

from twisted.internet.defer import Deferred, succeed

from spartan.store import StoredMessage


class MemoryStore:
    def __init__(self, max_per_conversation: int | None = None) -> None:
        self._max = max_per_conversation
        self._messages: dict[str, list[StoredMessage]] = defaultdict(list)
        self._ids: dict[str, list[int]] = defaultdict(list)  # parallel to _messages, for bisect
        self._by_client_id: dict[tuple[str, str], StoredMessage] = {}
        self._seen: dict[tuple[str, str], int] = {}
        self._last_id = 0
        self._tokens: dict[str, tuple[str, float]] = {}  # digest -> (user, expires)

    def start(self) -> Deferred[None]:
        return succeed(None)

    def stop(self) -> Deferred[None]:
        return succeed(None)

    def conversations(self) -> Deferred[set[str]]:
        return succeed(set(self._messages))

    def append(self, conversation, sender, text, timestamp, client_id=None):
        if client_id is not None:
            earlier = self._by_client_id.get((sender, client_id))
            if earlier is not None:
                return succeed((earlier, False))
        self._last_id += 1
        message = StoredMessage(self._last_id, timestamp, conversation, sender, text, client_id)
        messages, ids = self._messages[conversation], self._ids[conversation]
        messages.append(message)
        ids.append(message.id)
        if client_id is not None:
            self._by_client_id[sender, client_id] = message
        if self._max is not None and len(messages) > self._max:
            for old in messages[: -self._max]:
                if old.client_id is not None:
                    self._by_client_id.pop((old.sender, old.client_id), None)
            del messages[: -self._max], ids[: -self._max]
        return succeed((message, True))

    def messages_after(self, conversation, after_id, limit):
        ids = self._ids.get(conversation, [])
        start = bisect.bisect_right(ids, after_id)
        return succeed(self._messages[conversation][start : start + limit] if ids else [])

    def recent(self, conversation, limit, before=None):
        if conversation not in self._messages or limit <= 0:
            return succeed([])
        end = len(self._ids[conversation])
        if before is not None:
            end = bisect.bisect_left(self._ids[conversation], before)
        return succeed(self._messages[conversation][max(0, end - limit) : end])

    def seen(self, user, conversation):
        return succeed(self._seen.get((user, conversation), 0))

    def unseen_counts(self, user, conversations):
        counts = {}
        for conversation in conversations:
            ids = self._ids.get(conversation)
            if not ids:
                continue
            start = bisect.bisect_right(ids, self._seen.get((user, conversation), 0))
            unseen = [m.id for m in self._messages[conversation][start:] if m.sender != user]
            if unseen:
                counts[conversation] = (len(unseen), unseen[0])
        return succeed(counts)

    def mark_seen(self, user, conversation, upto):
        position = max(self._seen.get((user, conversation), 0), upto)
        self._seen[user, conversation] = position
        return succeed(position)

    def add_token(self, digest, user, expires, now):
        for old in [d for d, (_, until) in self._tokens.items() if until <= now]:
            del self._tokens[old]
        self._tokens[digest] = (user, expires)
        return succeed(None)

    def token_user(self, digest, now):
        user, expires = self._tokens.get(digest, (None, 0.0))
        if user is not None and expires <= now:
            del self._tokens[digest]
            user = None
        return succeed(user)

    def remove_token(self, digest):
        self._tokens.pop(digest, None)
        return succeed(None)
