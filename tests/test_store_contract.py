"""
The `MessageStore` contract, run against every store: what the chat core may rely on.

Ids are only required to increase in call order, not to be consecutive (the SQLite store
skips an id for a duplicate client id).  Retention is enforced at once by `MemoryStore`
and by a pruning pass in `SQLiteStore`: `_enforce_retention` runs that pass.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import gatherResults

from spartan.store import StoredMessage, Topic
from spartan.store.memory import MemoryStore
from spartan.store.sqlite import SQLiteStore

A, B = "dm:alice:bob", "group:group1"


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request, tmp_path):
    def make(max_per_conversation=None):
        if request.param == "memory":
            return MemoryStore(max_per_conversation=max_per_conversation)
        return SQLiteStore(
            str(tmp_path / "store.sqlite3"),
            reactor=reactor,
            max_per_conversation=max_per_conversation,
            prune_interval=3600,
        )

    return make


@asynccontextmanager
async def opened(store):
    await store.start()
    try:
        yield store
    finally:
        await store.stop()


async def _enforce_retention(store):
    if isinstance(store, SQLiteStore):
        await store.prune()


async def _append_all(store, conversation, texts, sender="alice", t0=1000.0):
    """Append every text in one reactor turn; the (message, is_new) results in order."""
    return await gatherResults(
        [store.append(conversation, sender, text, t0 + i) for i, text in enumerate(texts)]
    )


@pytest_twisted.ensureDeferred
async def test_append_returns_the_stored_message(make_store):
    async with opened(make_store()) as store:
        message, is_new = await store.append(A, "alice", "hello there", 1234.5)
        assert is_new is True
        assert message == StoredMessage(message.id, 1234.5, A, "alice", "hello there", None)
        assert message.id > 0
        assert await store.messages_after(A, 0, 10) == [message]


@pytest_twisted.ensureDeferred
async def test_ids_increase_in_call_order_within_one_turn(make_store):
    async with opened(make_store()) as store:
        results = await gatherResults(
            [store.append(A if i % 3 else B, "alice", f"m{i}", 1000.0) for i in range(50)]
        )
        ids = [message.id for message, _ in results]
        assert ids == sorted(ids) and len(set(ids)) == 50
        assert [m.text for m, _ in results] == [f"m{i}" for i in range(50)]
        later, _ = await store.append(A, "bob", "later", 1001.0)
        assert later.id > ids[-1]


@pytest_twisted.ensureDeferred
async def test_messages_after(make_store):
    async with opened(make_store()) as store:
        a = [m for m, _ in await _append_all(store, A, ["a1", "a2", "a3", "a4"])]
        await _append_all(store, B, ["b1", "b2"])
        assert await store.messages_after(A, 0, 100) == a
        assert await store.messages_after(A, a[1].id, 100) == a[2:]
        assert await store.messages_after(A, a[0].id, 2) == a[1:3]
        assert await store.messages_after(A, a[-1].id, 100) == []
        assert await store.messages_after("dm:nobody:nothing", 0, 10) == []
        assert [m.text for m in await store.messages_after(B, 0, 10)] == ["b1", "b2"]


@pytest_twisted.ensureDeferred
async def test_recent(make_store):
    async with opened(make_store()) as store:
        a = [m for m, _ in await _append_all(store, A, [f"a{i}" for i in range(6)])]
        await _append_all(store, B, ["b1"])
        assert await store.recent(A, 3) == a[-3:]
        assert await store.recent(A, 1) == a[-1:]
        assert await store.recent(A, 100) == a
        assert await store.recent("group:empty", 5) == []


@pytest_twisted.ensureDeferred
async def test_conversations(make_store):
    async with opened(make_store()) as store:
        assert await store.conversations() == set()
        await _append_all(store, A, ["x"])
        await _append_all(store, B, ["y", "z"])
        assert await store.conversations() == {A, B}


@pytest_twisted.ensureDeferred
async def test_a_resent_client_id_is_not_stored_twice(make_store):
    async with opened(make_store()) as store:
        first, is_new = await store.append(A, "alice", "hi", 1000.0, "c-1")
        assert is_new and first.client_id == "c-1"
        again, is_new = await store.append(A, "alice", "hi (resent)", 2000.0, "c-1")
        assert is_new is False
        assert again == first  # the original text, time and id
        assert await store.messages_after(A, 0, 10) == [first]
        # Client ids belong to the sender: bob may use the same one.
        bobs, is_new = await store.append(A, "bob", "hello", 1001.0, "c-1")
        assert is_new and bobs.id > first.id
        assert await store.messages_after(A, 0, 10) == [first, bobs]


@pytest_twisted.ensureDeferred
async def test_duplicate_client_ids_in_one_turn(make_store):
    async with opened(make_store()) as store:
        results = await gatherResults(
            [
                store.append(A, "alice", "one", 1000.0, "dup"),
                store.append(A, "alice", "plain", 1000.0),
                store.append(A, "alice", "one again", 1000.0, "dup"),
                store.append(B, "alice", "one elsewhere", 1000.0, "dup"),
            ]
        )
        (first, new1), (plain, new2), (again, new3), (elsewhere, new4) = results
        assert (new1, new2, new3, new4) == (True, True, False, False)
        assert again == first and elsewhere == first
        assert await store.messages_after(A, 0, 10) == [first, plain]
        assert await store.messages_after(B, 0, 10) == []


@pytest_twisted.ensureDeferred
async def test_seen_positions(make_store):
    async with opened(make_store()) as store:
        messages = [m for m, _ in await _append_all(store, A, ["1", "2", "3", "4"])]
        await _append_all(store, B, ["g"])
        assert await store.seen("bob", A) == 0
        assert await store.mark_seen("bob", A, messages[1].id) == messages[1].id
        assert await store.seen("bob", A) == messages[1].id
        # Never backwards.
        assert await store.mark_seen("bob", A, messages[0].id) == messages[1].id
        assert await store.seen("bob", A) == messages[1].id
        assert await store.mark_seen("bob", A, messages[3].id) == messages[3].id
        # Per user and per conversation.
        assert await store.seen("alice", A) == 0
        assert await store.seen("bob", B) == 0


@pytest_twisted.ensureDeferred
async def test_a_fired_append_is_visible_to_every_read(make_store):
    async with opened(make_store()) as store:
        message, _ = await store.append(A, "alice", "now", 1000.0)
        after, recent, conversations = await gatherResults(
            [store.messages_after(A, 0, 5), store.recent(A, 5), store.conversations()]
        )
        assert after == recent == [message]
        assert A in conversations


@pytest_twisted.ensureDeferred
async def test_retention_keeps_the_newest_messages_per_conversation(make_store):
    async with opened(make_store(max_per_conversation=3)) as store:
        a = [m for m, _ in await _append_all(store, A, [f"a{i}" for i in range(7)])]
        b = [m for m, _ in await _append_all(store, B, ["b0", "b1"])]
        await _enforce_retention(store)
        assert await store.messages_after(A, 0, 100) == a[-3:]
        assert await store.recent(A, 100) == a[-3:]
        assert await store.messages_after(B, 0, 100) == b
        more, _ = await store.append(A, "alice", "a7", 2000.0)
        await _enforce_retention(store)
        assert await store.recent(A, 100) == a[-2:] + [more]
        assert more.id > a[-1].id


@pytest_twisted.ensureDeferred
async def test_a_client_id_is_remembered_as_long_as_its_message_is_kept(make_store):
    async with opened(make_store(max_per_conversation=1)) as store:
        old, _ = await store.append(A, "alice", "old", 1000.0, "c-old")
        await store.append(A, "alice", "newer", 1001.0)
        await _enforce_retention(store)
        again, is_new = await store.append(A, "alice", "old, resent", 1002.0, "c-old")
        assert is_new is True and again.id > old.id


@pytest_twisted.ensureDeferred
async def test_unseen_counts_count_what_others_sent_after_the_seen_position(make_store):
    async with opened(make_store()) as store:
        [(a1, _), *_] = await _append_all(store, A, ["a1", "a2", "a3"], sender="bob")
        await store.append(A, "alice", "mine", 2000.0)
        await _append_all(store, B, ["g1", "g2"], sender="charlie")
        await store.mark_seen("alice", A, a1.id)
        counts = await store.unseen_counts("alice", [A, B, "dm:alice:eve"])
        assert counts == {A: (2, a1.id + 1), B: (2, counts[B][1])}
        assert counts[B][1] > a1.id + 1  # group1's oldest unseen came after a3
        await store.mark_seen("alice", B, 10**6)
        assert await store.unseen_counts("alice", [A, B]) == {A: (2, a1.id + 1)}
        assert await store.unseen_counts("bob", [A]) == {A: (1, counts[B][1] - 1)}


# -- paging back, session tokens and topics ----------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_recent_before_an_id_pages_back(make_store):
    async with opened(make_store()) as store:
        results = await _append_all(store, A, [f"m{i}" for i in range(6)])
        await store.append(B, "alice", "elsewhere", 2000.0)
        stored = [message for message, _ in results]
        assert await store.recent(A, 2, before=stored[4].id) == stored[2:4]
        assert await store.recent(A, 10, before=stored[2].id) == stored[:2]
        assert await store.recent(A, 10, before=stored[0].id) == []
        assert await store.recent(A, 3, before=stored[-1].id + 100) == stored[-3:]
        assert await store.recent(A, 3, before=None) == stored[-3:]
        assert await store.recent("dm:x:y", 3, before=10) == []


@pytest_twisted.ensureDeferred
async def test_tokens_are_kept_until_they_expire_or_are_removed(make_store):
    async with opened(make_store()) as store:
        await store.add_token("d1", "alice", 2000.0, 1000.0)
        await store.add_token("d2", "bob", 3000.0, 1600.0)
        assert await store.token_user("d1", 1999.0) == "alice"
        assert await store.token_user("d2", 1999.0) == "bob"
        assert await store.token_user("nope", 1999.0) is None
        assert await store.token_user("d1", 2000.0) is None  # expired
        await store.remove_token("d2")
        await store.remove_token("never-there")
        assert await store.token_user("d2", 1999.0) is None


@pytest_twisted.ensureDeferred
async def test_topics_are_kept_per_conversation_and_replaced_whole(make_store):
    async with opened(make_store()) as store:
        assert await store.topic(B) is None
        await store.set_topic(B, Topic("plans for friday", "alice", 1000.5))
        await store.set_topic("group:other", Topic("elsewhere", "bob", 1001.0))
        assert await store.topic(B) == Topic("plans for friday", "alice", 1000.5)
        await store.set_topic(B, Topic("", "bob", 1002.25))
        assert await store.topic(B) == Topic("", "bob", 1002.25)
        assert await store.topic("group:other") == Topic("elsewhere", "bob", 1001.0)
        assert await store.topic(A) is None
@pytest_twisted.ensureDeferred
async def test_check_writable_succeeds_and_changes_nothing(make_store):
    async with opened(make_store()) as store:
        await store.check_writable()
        assert await store.conversations() == set()
        (first, _), = await _append_all(store, A, ["after the check"])
        assert first.id == 1 and await store.recent(A, 10) == [first]
