"""
A store that keeps everything in this process: for tests, and for `--db :memory:`.

Each conversation is a list of messages with a parallel list of ids (for bisect).  Past
the retention limit the oldest messages are not removed one by one (every append would
shift the whole list): a start index moves forward, and the dead head is cut off in one
go once it is as long as what is kept, so an append stays O(1) amortized.
"""

from __future__ import annotations

import bisect

from twisted.internet.defer import Deferred, succeed

from spartan.store import StoreBase, StoredMessage, Topic


class _Conversation:
    __slots__ = ("messages", "ids", "start")

    def __init__(self) -> None:
        self.messages: list[StoredMessage] = []
        self.ids: list[int] = []
        self.start = 0  # messages before it are past retention

    def after(self, after_id: int) -> int:
        """The index of the first kept message with an id above ``after_id``."""
        return bisect.bisect_right(self.ids, after_id, self.start)


class MemoryStore(StoreBase):
    def __init__(self, max_per_conversation: int | None = None) -> None:
        self._max = max_per_conversation
        self._conversations: dict[str, _Conversation] = {}
        self._by_client_id: dict[tuple[str, str], StoredMessage] = {}
        self._seen: dict[tuple[str, str], int] = {}
        self._topics: dict[str, Topic] = {}
        self._last_id = 0
        self._tokens: dict[str, tuple[str, float]] = {}  # digest -> (user, expires)

    def start(self) -> Deferred[None]:
        return succeed(None)

    def stop(self) -> Deferred[None]:
        return succeed(None)

    def conversations(self) -> Deferred[set[str]]:
        return succeed(set(self._conversations))

    def check_writable(self) -> Deferred[None]:
        return succeed(None)  # memory takes writes while the process runs

    def append_to(self, conversation, sender, text, timestamp, client_id, receiver) -> None:
        receiver.appended(*self._append(conversation, sender, text, timestamp, client_id))

    def _append(self, key, sender, text, timestamp, client_id):
        if client_id is not None:
            earlier = self._by_client_id.get((sender, client_id))
            if earlier is not None:
                return earlier, False
        self._last_id += 1
        message = StoredMessage(self._last_id, timestamp, key, sender, text, client_id)
        conversation = self._conversations.get(key)
        if conversation is None:
            conversation = self._conversations[key] = _Conversation()
        messages = conversation.messages
        messages.append(message)
        conversation.ids.append(message.id)
        if client_id is not None:
            self._by_client_id[sender, client_id] = message
        if self._max is not None and len(messages) - conversation.start > self._max:
            old = messages[conversation.start]
            conversation.start += 1
            if old.client_id is not None:
                self._by_client_id.pop((old.sender, old.client_id), None)
            if conversation.start >= self._max:
                del messages[: conversation.start], conversation.ids[: conversation.start]
                conversation.start = 0
        return message, True

    def messages_after(self, conversation, after_id, limit):
        c = self._conversations.get(conversation)
        if c is None:
            return succeed([])
        start = c.after(after_id)
        return succeed(c.messages[start : start + limit])

    def recent(self, conversation, limit, before=None):
        c = self._conversations.get(conversation)
        if c is None or limit <= 0:
            return succeed([])
        end = len(c.messages) if before is None else bisect.bisect_left(c.ids, before, c.start)
        return succeed(c.messages[max(c.start, end - limit) : end])

    def seen(self, user, conversation):
        return succeed(self._seen.get((user, conversation), 0))

    def unseen_counts(self, user, conversations):
        counts = {}
        for key in conversations:
            c = self._conversations.get(key)
            if c is None:
                continue
            start = c.after(self._seen.get((user, key), 0))
            unseen = [m.id for m in c.messages[start:] if m.sender != user]
            if unseen:
                counts[key] = (len(unseen), unseen[0])
        return succeed(counts)

    def topic(self, conversation):
        return succeed(self._topics.get(conversation))

    def set_topic(self, conversation, topic):
        self._topics[conversation] = topic
        return succeed(None)

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
