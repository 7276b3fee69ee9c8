"""
`RedisStore` against a real ``redis-server``: the `MessageStore` contract (ids, order,
messages_after, recent, idempotency, monotonic seen positions, retention; the contract
suite of tests/test_store_contract.py runs here too), group commit (one script call per
reactor turn, counted by Redis's ``MONITOR``; a batch stored whole or not at all) and what
happens when Redis goes away and comes back.
"""

from __future__ import annotations

import os
import signal

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, gatherResults

from spartan.store import StoredMessage, StoreError
from spartan.store.redis import RedisStore, parse_redis_url
from tests import test_store_contract as contract
from tests.redis_support import Monitor, RedisServer

# The contract suite every store passes, run here over Redis (its tests take `make_store`).
globals().update({name: test for name, test in vars(contract).items() if name.startswith("test_")})

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


@pytest.fixture
def make_store(redis):
    """The contract suite's store factory, over Redis."""
    return lambda max_per_conversation=None: RedisStore(
        redis.url, reactor, max_per_conversation=max_per_conversation
    )


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


class Outcome:
    """An `append_to` receiver that records what it was told, and whether inside a batch."""

    def __init__(self, batches: list | None = None) -> None:
        self.batches = batches
        self.result = None
        self.done: Deferred = Deferred()

    def _record(self, result) -> None:
        assert self.result is None, "a receiver is called exactly once"
        self.result = result
        if self.batches is not None:
            self.batches[-1].append(result)
        self.done.callback(result)

    def appended(self, message: StoredMessage, is_new: bool) -> None:
        self._record((message, is_new))

    def failed(self, reason) -> None:
        self._record(reason)


def append_many(store, items, batches=None) -> list[Outcome]:
    """``append_to`` for each ``(conversation, sender, text, client_id)``, all in this turn."""
    outcomes = []
    for i, (conversation, sender, text, client_id) in enumerate(items):
        outcome = Outcome(batches)
        store.append_to(conversation, sender, text, 100.0 + i, client_id, outcome)
        outcomes.append(outcome)
    return outcomes


async def settled(outcomes: list[Outcome]) -> list:
    return await gatherResults([o.done for o in outcomes])


@pytest_twisted.ensureDeferred
async def test_one_turn_of_appends_is_one_round_trip_and_one_output_batch(redis):
    store = await opened(redis)
    batches: list[list] = []
    events: list[str] = []

    class OutputBatch:
        def __enter__(self):
            batches.append([])
            events.append("open")

        def __exit__(self, *exc_info):
            events.append("close")

    store.output_batch = OutputBatch()
    monitor = Monitor(redis)
    try:
        items = [
            (A if i % 3 else B, "alice" if i % 2 else "bob", f"m{i} é", f"c{i}" if i % 5 == 0 else None)
            for i in range(300)
        ]
        outcomes = append_many(store, items, batches)
        store.call_after_results(lambda: events.append("next turn"))  # no batch answered now
        # what a receiver hands over runs after every receiver, before the output goes out
        def hand_over(result):
            store.call_after_results(lambda: events.append(len(batches[0])))
            return result

        outcomes[0].done.addCallback(hand_over)
        results = await settled(outcomes)
        await task.deferLater(reactor, 0, lambda: None)
        assert monitor.names("EVAL") == ["EVAL"]
        # ids from one counter, consecutive in call order, each receiver told once, in order
        ids = [m.id for m, _ in results]
        assert ids == list(range(ids[0], ids[0] + 300)) and all(new for _, new in results)
        assert [m.text for m, _ in results] == [text for _, _, text, _ in items]
        assert batches == [results] and events == ["next turn", "open", 300, "close"]
        assert await store.messages_after(B, 0, 1000) == [m for m, _ in results if m.conversation == B]
        # the next turn's appends: the script is cached, a second call
        more = await settled(append_many(store, [(A, "alice", "next", None)]))
        assert more[0][0].id == ids[-1] + 1
        assert monitor.names("EVAL") == ["EVALSHA"]
    finally:
        monitor.close()
        await store.stop()


@pytest_twisted.ensureDeferred
async def test_appends_made_while_a_batch_is_in_flight_make_one_next_batch(redis):
    store = await opened(redis, timeout=5.0)
    monitor = Monitor(redis)
    try:
        first = append_many(store, [(A, "alice", "first", "once")])
        await settled(first)
        os.kill(redis.process.pid, signal.SIGSTOP)  # Redis holds the next batch in flight
        try:
            later = []
            for turn in range(5):  # turn 0 is sent at once; turns 1 to 4 wait for its answer
                later += append_many(store, [(A, "bob", f"later {turn}", None), (A, "alice", "again", "once")])
                await task.deferLater(reactor, 0.01, lambda: None)
        finally:
            os.kill(redis.process.pid, signal.SIGCONT)
        results = await settled(first + later)
        assert monitor.names("EVAL") == ["EVAL", "EVALSHA", "EVALSHA"]
        assert store.batches == 3
        (original, is_new), *rest = results
        assert is_new
        # the client id repeated in the next batch, five times: the first message every time
        assert [r for r in rest[1::2]] == [(original, False)] * 5
        assert [m.text for m, new in rest[0::2] if new] == [f"later {i}" for i in range(5)]
        assert [m.text for m in await store.messages_after(A, 0, 100)] == [
            "first", *(f"later {i}" for i in range(5))
        ]
    finally:
        monitor.close()
        await store.stop()


@pytest_twisted.ensureDeferred
async def test_redis_killed_with_a_batch_in_flight_fails_every_receiver_and_stores_nothing(redis):
    store = await opened(redis, timeout=1.0, health_interval=0.2)
    try:
        await store.append(A, "alice", "before", 1.0)
        os.kill(redis.process.pid, signal.SIGSTOP)  # the batch reaches Redis, unanswered
        outcomes = append_many(store, [(A if i % 2 else B, "alice", f"m{i}", f"k{i}") for i in range(50)])
        await task.deferLater(reactor, 0.1, lambda: None)
        redis.kill()
        results = await settled(outcomes)
        assert all(isinstance(r, StoreError) for r in results), results
        redis.start()
        await wait_until(lambda: store.available)
        assert [m.text for m in await store.messages_after(A, 0, 100)] == ["before"]
        assert await store.messages_after(B, 0, 100) == []
        # nothing of it was stored, so re-sending with the same client ids stores each once
        again = await settled(append_many(store, [(A, "alice", f"m{i}", f"k{i}") for i in range(3)]))
        assert [new for _, new in again] == [True] * 3
    finally:
        await store.stop()


@pytest_twisted.ensureDeferred
async def test_a_batch_that_cannot_be_stored_whole_stores_nothing(redis):
    store = await opened(redis)
    try:
        before, _ = await store.append(A, "alice", "before", 1.0)
        redis.command("SET", "spartan:c:group:broken", "not a stream")
        outcomes = append_many(
            store,
            [(A, "alice", "one", "c1"), ("group:broken", "alice", "two", None), (A, "alice", "three", None)],
        )
        results = await settled(outcomes)
        assert all(isinstance(r, StoreError) for r in results)
        assert "WRONGTYPE" in str(results[0])
        assert await store.messages_after(A, 0, 10) == [before]
        assert store.available  # Redis answered: no outage
        # no id, client id or conversation was spent on the failed batch
        (after, is_new), = await settled(append_many(store, [(A, "alice", "one", "c1")]))
        assert is_new and after.id == before.id + 1
        assert await store.conversations() == {A}
    finally:
        await store.stop()


@pytest_twisted.ensureDeferred
async def test_a_read_made_after_appends_in_the_same_turn_sees_them(redis):
    store = await opened(redis)
    try:
        outcomes = append_many(store, [(A, "alice", "x", None), (A, "bob", "y", None)])
        after, recent, seen = await gatherResults(
            [store.messages_after(A, 0, 10), store.recent(A, 10), store.mark_seen("bob", A, 10**9)]
        )
        stored = [m for m, _ in await settled(outcomes)]
        assert after == recent == stored
        assert seen == 10**9
    finally:
        await store.stop()


@pytest_twisted.ensureDeferred
async def test_stop_answers_every_queued_append_first(redis):
    store = await opened(redis)
    outcomes = append_many(store, [(A, "alice", f"m{i}", None) for i in range(10)])
    await store.stop()
    assert all(o.result is not None and o.result[1] for o in outcomes)


@pytest_twisted.ensureDeferred
async def test_replies_are_parsed_by_hiredis(redis):
    import txredisapi

    store = await opened(redis)
    try:
        connection = store._redis._factory.pool[0]
        assert isinstance(connection, txredisapi.HiredisProtocol)
    finally:
        await store.stop()


@pytest_twisted.ensureDeferred
async def test_a_batch_redis_cannot_be_sent_fails_whole(redis):
    store = await opened(redis)
    try:
        # a lone surrogate cannot be encoded as UTF-8: the batch fails, nothing is stored
        outcomes = append_many(store, [(A, "alice", "fine", None), (A, "alice", "bad \udc80", None)])
        results = await settled(outcomes)
        assert all(isinstance(r, StoreError) for r in results), results
        assert await store.messages_after(A, 0, 10) == [] and store.available
    finally:
        await store.stop()


@pytest_twisted.ensureDeferred
async def test_a_turn_of_more_than_a_thousand_appends_is_cut_into_pipelined_calls(redis):
    store = await opened(redis)
    monitor = Monitor(redis)
    try:
        results = await settled(append_many(store, [(A, "alice", f"m{i}", f"c{i}") for i in range(2500)]))
        # 1000 + 1000 + 500, all sent at once (as EVAL: the script is not known loaded yet)
        assert monitor.names("EVAL") == ["EVAL"] * 3
        ids = [m.id for m, new in results if new]
        assert len(ids) == 2500 and ids == list(range(ids[0], ids[0] + 2500))
        assert [m.text for m in await store.messages_after(A, 0, 3000)] == [f"m{i}" for i in range(2500)]
    finally:
        monitor.close()
        await store.stop()
