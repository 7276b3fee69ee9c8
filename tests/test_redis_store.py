"""
`RedisStore` against a real ``redis-server``: the `MessageStore` contract (ids, order,
messages_after, recent, idempotency, monotonic seen positions, retention) and what happens
when Redis goes away and comes back.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.defer import gatherResults

from spartan.store import StoreError
from spartan.store.redis import RedisStore, parse_redis_url
from tests.redis_support import RedisServer

A, B = "dm:alice:bob", "group:group1"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis(redis_server):
    if redis_server.process is None:  # a test killed it
        redis_server.start()
    redis_server.command("FLUSHALL")
    return redis_server


async def opened(redis, **kwargs) -> RedisStore:
    store = RedisStore(redis.url, reactor, **kwargs)
    await store.start()
    return store


async def wait_until(predicate, timeout=10.0):
    deadline = reactor.seconds() + timeout
    while not predicate():
        assert reactor.seconds() < deadline, "condition not met in time"
        await task.deferLater(reactor, 0.05, lambda: None)


def test_parse_url():
    a = parse_redis_url("rediss://user:p%40ss@example.net:6380/3")
    assert (a.host, a.port, a.db, a.username, a.password, a.tls) == (
        "example.net", 6380, 3, "user", "p@ss", True,
    )  # fmt: skip
    assert "p@ss" not in str(a)
    b = parse_redis_url("redis://10.0.0.1")
    assert (b.port, b.db, b.password, b.tls) == (6379, 0, None, False)
    with pytest.raises(ValueError):
        parse_redis_url("http://x")


@pytest_twisted.ensureDeferred
async def test_ids_increase_in_append_order_across_conversations(redis):
    store = await opened(redis)
    try:
        results = await gatherResults(
            [store.append(A if i % 2 else B, "alice", f"m{i}", 1000.0 + i) for i in range(20)]
        )
        ids = [m.id for m, is_new in results]
        assert all(is_new for _, is_new in results)
        assert ids == sorted(ids) and len(set(ids)) == 20 and ids[0] > 0
        assert await store.conversations() == {A, B}
        in_a = await store.messages_after(A, 0, 100)
        assert [m.text for m in in_a] == [f"m{i}" for i in range(1, 20, 2)]
        m = in_a[0]
        assert (m.conversation, m.sender, m.timestamp, m.client_id) == (A, "alice", 1001.0, None)
    finally:
        await store.stop()


@pytest_twisted.ensureDeferred
async def test_messages_after_and_recent(redis):
    store = await opened(redis)
    try:
        stored = [(await store.append(A, "bob", f"t {i} é", 2000.0 + i))[0] for i in range(10)]
        after = await store.messages_after(A, stored[3].id, 4)
        assert after == stored[4:8]
        assert await store.messages_after(A, stored[-1].id, 10) == []
        assert await store.messages_after("dm:x:y", 0, 10) == []
        assert await store.recent(A, 3) == stored[-3:]
        assert await store.recent(A, 100) == stored
        assert await store.recent("dm:x:y", 5) == []
        assert await store.recent(A, 3, before=stored[5].id) == stored[2:5]
        assert await store.recent(A, 3, before=stored[1].id) == stored[:1]
        assert await store.recent(A, 3, before=stored[0].id) == []
    finally:
        await store.stop()


@pytest_twisted.ensureDeferred
async def test_tokens_expire_and_are_removed(redis):
    store = await opened(redis)
    try:
        now = reactor.seconds()
        await store.add_token("d1", "alice", now + 60, now)
        await store.add_token("d2", "bob", now + 60, now)
        assert await store.token_user("d1", now) == "alice"
        assert await store.token_user("d1", now + 60) is None  # expired on the given clock
        assert await store.token_user("nope", now) is None
        await store.remove_token("d2")
        assert await store.token_user("d2", now) is None
        assert 0 < int(redis.command("TTL", "spartan:token:d1")[1:]) <= 61  # Redis drops it too
    finally:
        await store.stop()


@pytest_twisted.ensureDeferred
async def test_client_ids_are_idempotent_per_sender(redis):
    store = await opened(redis)
    try:
        first, new = await store.append(A, "alice", "hello", 1.5, client_id="c-1")
        again, new_again = await store.append(A, "alice", "hello (resent)", 9.0, client_id="c-1")
        assert new and not new_again
        assert again == first and again.text == "hello" and again.client_id == "c-1"
        other, other_new = await store.append(A, "bob", "hi", 2.0, client_id="c-1")
        assert other_new and other.id > first.id
        assert [m.id for m in await store.messages_after(A, 0, 10)] == [first.id, other.id]
        # concurrent resends store one message
        results = await gatherResults(
            [store.append(B, "eve", "x", 3.0, client_id="same") for _ in range(10)]
        )
        assert sum(is_new for _, is_new in results) == 1
        assert len({m.id for m, _ in results}) == 1
    finally:
        await store.stop()


@pytest_twisted.ensureDeferred
async def test_seen_positions_only_move_forward(redis):
    store = await opened(redis)
    try:
        assert await store.seen("bob", A) == 0
        assert await store.mark_seen("bob", A, 5) == 5
        assert await store.mark_seen("bob", A, 3) == 5
        assert await store.seen("bob", A) == 5
        assert await store.seen("alice", A) == 0
        assert await store.mark_seen("bob", A, 9) == 9
    finally:
        await store.stop()


@pytest_twisted.ensureDeferred
async def test_retention_keeps_the_newest(redis):
    store = await opened(redis, max_per_conversation=5)
    try:
        stored = [(await store.append(A, "alice", str(i), 1.0, client_id=f"k{i}"))[0] for i in range(12)]
        assert await store.recent(A, 100) == stored[-5:]
        assert await store.messages_after(A, 0, 100) == stored[-5:]
        # a client id whose message retention dropped is new again
        _, is_new = await store.append(A, "alice", "0", 1.0, client_id="k0")
        assert is_new
        _, is_new = await store.append(A, "alice", "11", 1.0, client_id="k11")
        assert not is_new
    finally:
        await store.stop()


@pytest_twisted.ensureDeferred
async def test_data_survives_a_redis_crash_with_aof(redis):
    store = await opened(redis)
    try:
        message, _ = await store.append(A, "alice", "durable", 5.0)
        await store.mark_seen("bob", A, message.id)
    finally:
        await store.stop()
    redis.kill()
    redis.start()
    store = await opened(redis)
    try:
        assert await store.recent(A, 10) == [message]
        assert await store.seen("bob", A) == message.id
        later, _ = await store.append(A, "alice", "after", 6.0)
        assert later.id > message.id
    finally:
        await store.stop()


@pytest_twisted.ensureDeferred
async def test_unreachable_redis_fails_fast_then_recovers(redis):
    store = await opened(redis, timeout=1.0, health_interval=0.2)
    changes = []
    store.watch_availability(changes.append)
    try:
        redis.kill()
        await wait_until(lambda: not store.connected)
        started = reactor.seconds()
        with pytest.raises(StoreError):
            await store.append(A, "alice", "lost?", 1.0)
        assert reactor.seconds() - started < 0.5
        assert changes == [False]
        redis.start()
        await wait_until(lambda: store.available)
        message, is_new = await store.append(A, "alice", "back", 2.0)
        assert is_new and [m.text for m in await store.recent(A, 10)] == ["back"]
        assert changes == [False, True]
    finally:
        await store.stop()


@pytest_twisted.ensureDeferred
async def test_start_fails_when_redis_is_absent(tmp_path):
    from tests.redis_support import free_port

    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", reactor, timeout=0.2)
    with pytest.raises(StoreError):
        await store.start()
