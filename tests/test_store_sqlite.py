"""
What only the SQLite store does: files, schema versions, failures, group commit, restarts.

The interface itself is covered for every store by test_store_contract.py.
"""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import threading
from contextlib import asynccontextmanager

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import DeferredList, gatherResults
from twisted.internet.task import deferLater

from spartan.store import StoreError, Topic
from spartan.store import schema
from spartan.store import sqlite as sqlite_module
from spartan.store.memory import MemoryStore
from spartan.store.sqlite import SQLiteStore, check_database, store_from_options

A, B = "dm:alice:bob", "group:group1"


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "spartan.sqlite3")


def make(path, **options):
    options.setdefault("prune_interval", 3600)
    return SQLiteStore(path, reactor=reactor, **options)


@asynccontextmanager
async def opened(path, **options):
    store = make(path, **options)
    await store.start()
    try:
        yield store
    finally:
        await store.stop()


def in_worker(store, function, *args):
    """Run ``function(connection, *args)`` on the store's worker, in queue order."""
    return store._call(function, *args)


def raw(path):
    """A plain connection to a closed store's file, for looking inside."""
    return sqlite3.connect(path, isolation_level=None)


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


async def failure_of(d):
    """The exception a Deferred fails with (the test fails if it succeeds)."""
    try:
        result = await d
    except Exception as e:
        return e
    raise AssertionError(f"expected a failure, got {result!r}")


# -- the file ---------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_new_database_is_current_in_wal_mode(db):
    async with opened(db):
        pass
    conn = raw(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.CURRENT_VERSION
        assert conn.execute("PRAGMA application_id").fetchone()[0] == schema.APPLICATION_ID
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


@pytest_twisted.ensureDeferred
async def test_reopening_keeps_messages_seen_positions_and_client_ids(db):
    async with opened(db) as store:
        first = [m for m, _ in await gatherResults(
            [store.append(A, "alice", f"m{i}", 1000.0 + i, f"c{i}") for i in range(5)]
        )]
        await store.append(B, "eve", "to the group", 1010.0)
        await store.mark_seen("bob", A, first[2].id)
    async with opened(db) as store:
        assert await store.messages_after(A, 0, 100) == first
        assert await store.conversations() == {A, B}
        assert await store.seen("bob", A) == first[2].id
        again, is_new = await store.append(A, "alice", "m0 resent", 2000.0, "c0")
        assert (again, is_new) == (first[0], False)
        newer, _ = await store.append(A, "bob", "after restart", 2001.0)
        assert newer.id > max(m.id for m in first)


@pytest_twisted.ensureDeferred
async def test_stop_finishes_the_calls_already_made(db):
    store = make(db)
    await store.start()
    appends = [store.append(A, "alice", f"m{i}", 1000.0) for i in range(20)]
    await store.stop()
    assert all(d.called for d in appends)
    async with opened(db) as store:
        assert [m.text for m in await store.recent(A, 100)] == [f"m{i}" for i in range(20)]


@pytest_twisted.ensureDeferred
async def test_a_closed_store_refuses_calls(db):
    store = make(db)
    with pytest.raises(StoreError):
        await store.append(A, "alice", "before start", 1000.0)
    await store.start()
    await store.stop()
    for d in (store.append(A, "alice", "after stop", 1000.0), store.recent(A, 1), store.seen("a", A)):
        assert isinstance(await failure_of(d), StoreError)
    await store.stop()  # twice is harmless


# -- schema versions --------------------------------------------------------------------------


def _write_version_1(path):
    """A database as version 1 of the layout left it (no client ids, no id mark)."""
    conn = raw(path)
    try:
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")
        schema.migrate(conn, path, target=1)
        conn.executemany(
            "INSERT INTO messages (id, timestamp, conversation, sender, text) VALUES (?, ?, ?, ?, ?)",
            [(1, 100.0, A, "alice", "old one"), (2, 101.0, A, "bob", "old two"), (5, 102.0, B, "eve", "g")],
        )
        conn.execute("INSERT INTO seen VALUES ('bob', ?, 1)", (A,))
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    finally:
        conn.close()


@pytest_twisted.ensureDeferred
async def test_an_older_database_is_migrated_on_start(db):
    _write_version_1(db)
    async with opened(db) as store:
        old = await store.messages_after(A, 0, 10)
        assert [(m.id, m.text, m.client_id) for m in old] == [(1, "old one", None), (2, "old two", None)]
        assert await store.seen("bob", A) == 1
        message, _ = await store.append(A, "alice", "new", 200.0, "cid")
        assert message.id > 5
        assert (await store.append(A, "alice", "new again", 201.0, "cid"))[1] is False
        assert await store.topic(B) is None  # the topics table came with the migration
        await store.set_topic(B, Topic("kept", "eve", 202.0))
        assert await store.topic(B) == Topic("kept", "eve", 202.0)
    conn = raw(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.CURRENT_VERSION
    finally:
        conn.close()


@pytest_twisted.ensureDeferred
async def test_a_version_2_database_gains_the_token_and_topic_tables(db):
    conn = raw(db)
    try:
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")
        schema.migrate(conn, db, target=2)
        conn.execute("INSERT INTO messages VALUES (7, 100.0, ?, 'alice', 'kept', 'c7')", (A,))
    finally:
        conn.close()
    async with opened(db) as store:
        assert [m.text for m in await store.recent(A, 5)] == ["kept"]
        await store.add_token("digest", "alice", 500.0, 300.0)
        assert await store.token_user("digest", 400.0) == "alice"
    conn = raw(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.CURRENT_VERSION == 4
        assert conn.execute("SELECT user FROM tokens").fetchall() == [("alice",)]
        assert conn.execute("SELECT * FROM topics").fetchall() == []
    finally:
        conn.close()


@pytest_twisted.ensureDeferred
async def test_adding_a_token_forgets_the_expired_ones(db):
    async with opened(db) as store:
        await store.add_token("old", "alice", 1500.0, 1000.0)
        await store.add_token("new", "alice", 3000.0, 1600.0)  # "old" has expired by then
    conn = raw(db)
    try:
        assert conn.execute("SELECT digest FROM tokens").fetchall() == [("new",)]
    finally:
        conn.close()


@pytest_twisted.ensureDeferred
async def test_a_database_from_a_newer_version_is_refused_untouched(db):
    async with opened(db) as store:
        await store.append(A, "alice", "hi", 1000.0)
    conn = raw(db)
    conn.execute(f"PRAGMA user_version = {schema.CURRENT_VERSION + 1}")
    conn.close()
    before = digest(db)
    error = await failure_of(make(db).start())
    assert isinstance(error, StoreError)
    assert "newer version of Spartan" in str(error) and "refusing" in str(error)
    with pytest.raises(StoreError, match="newer version"):
        check_database(db)
    assert digest(db) == before
    assert not os.path.exists(db + "-wal")


@pytest_twisted.ensureDeferred
async def test_another_applications_database_is_refused(db):
    conn = raw(db)
    conn.execute("CREATE TABLE accounts (id INTEGER)")
    conn.close()
    error = await failure_of(make(db).start())
    assert isinstance(error, StoreError) and "another application" in str(error)


# -- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "where, expected",
    [
        ("missing-dir/spartan.sqlite3", "cannot open the database"),
        ("a-directory", "it is a directory"),
        ("junk.sqlite3", "is not an SQLite database"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_an_unusable_path_gives_a_clear_error(tmp_path, where, expected):
    (tmp_path / "a-directory").mkdir()
    (tmp_path / "junk.sqlite3").write_bytes(b"this is not a database\n" * 200)
    path = str(tmp_path / where)
    store = make(path)
    error = await failure_of(store.start())
    assert isinstance(error, StoreError) and expected in str(error), error
    assert path in str(error)
    assert store._pool is None  # the worker thread is gone
    await store.stop()
    with pytest.raises(StoreError, match=expected):
        check_database(path)


@pytest_twisted.ensureDeferred
async def test_a_second_server_on_the_same_file_is_refused(db):
    async with opened(db) as store:
        await store.append(A, "alice", "mine", 1000.0)
        error = await failure_of(make(db, lock_timeout=0.05).start())
        assert isinstance(error, StoreError) and "in use by another process" in str(error)
        with pytest.raises(StoreError, match="in use"):
            check_database(db)
        assert len(await store.recent(A, 5)) == 1


@pytest_twisted.ensureDeferred
async def test_a_full_disk_fails_the_batch_and_the_store_recovers(db):
    async with opened(db) as store:
        kept, _ = await store.append(A, "alice", "before", 1000.0)

        def limit(conn, extra):
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            return conn.execute(f"PRAGMA max_page_count = {pages + extra}").fetchone()[0]

        await in_worker(store, limit, 2)
        big = "x" * 20_000  # several overflow pages each
        batch = [store.append(A, "alice", big, 1001.0 + i) for i in range(5)]
        seen = store.mark_seen("bob", A, kept.id)  # same transaction: fails with it
        read = store.recent(A, 10)  # a read after the batch still works
        results = await DeferredList(batch + [seen, read], consumeErrors=True)
        errors = [result for ok, result in results[:6]]
        assert all(not ok for ok, _ in results[:6])
        for failure in errors:
            assert failure.check(StoreError)
            assert "disk holding the database" in str(failure.value) and "full" in str(failure.value)
        assert results[6] == (True, [kept])
        # Space comes back: the next batch is stored, with ids above the failed ones.
        await in_worker(store, limit, 10_000)
        after, _ = await store.append(A, "alice", "after", 1010.0)
        assert [m.text for m in await store.recent(A, 10)] == ["before", "after"]
        assert after.id > kept.id + 5
    async with opened(db) as store:
        assert [m.text for m in await store.recent(A, 10)] == ["before", "after"]


@pytest.mark.parametrize("bad", [{"sync": "off"}, {"max_per_conversation": 0}, {"max_age_seconds": 0}])
def test_bad_options_are_refused(db, bad):
    with pytest.raises(StoreError):
        make(db, **bad)


# -- group commit and ordering ----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_appends_of_one_turn_share_one_transaction(db):
    async with opened(db) as store:
        await store.append(A, "alice", "warm up", 1000.0)
        jobs, transactions = store.jobs, store.transactions
        committed_when_fired = []
        ds = []
        for i in range(200):
            d = store.append(A if i % 2 else B, "alice", f"m{i}", 1000.0, f"c{i}" if i % 5 == 0 else None)
            d.addCallback(lambda r: committed_when_fired.append(store.transactions) or r)
            ds.append(d)
        ds.append(store.mark_seen("bob", A, 1))
        await gatherResults(ds)
        assert store.jobs == jobs + 1
        assert store.transactions == transactions + 1
        assert committed_when_fired == [transactions + 1] * 200  # fired only after COMMIT


@pytest_twisted.ensureDeferred
async def test_appends_made_while_the_worker_is_busy_go_in_one_transaction(db):
    async with opened(db) as store:
        release = threading.Event()
        busy = in_worker(store, lambda conn: release.wait(10))
        await deferLater(reactor, 0, lambda: None)  # the blocking job is on the worker now
        transactions = store.transactions
        appends = []
        for turn in range(5):  # five reactor turns while the worker is busy
            appends += [store.append(A, "alice", f"t{turn}-{i}", 1000.0) for i in range(10)]
            await deferLater(reactor, 0, lambda: None)
        assert not any(d.called for d in appends)
        release.set()
        assert await busy is True
        await gatherResults(appends)
        assert store.transactions == transactions + 1
        assert len(await store.recent(A, 100)) == 50


@pytest_twisted.ensureDeferred
async def test_a_read_sees_exactly_the_calls_made_before_it(db):
    async with opened(db) as store:
        store.append(A, "alice", "one", 1000.0)
        before = store.messages_after(A, 0, 10)
        store.append(A, "alice", "two", 1000.0)
        after = store.messages_after(A, 0, 10)
        seen_before = store.seen("bob", A)
        store.mark_seen("bob", A, 10**9)
        seen_after = store.seen("bob", A)
        assert [m.text for m in await before] == ["one"]
        assert [m.text for m in await after] == ["one", "two"]
        assert await seen_before == 0
        assert await seen_after == 2  # clamped to the last id handed out


@pytest_twisted.ensureDeferred
async def test_a_seen_position_never_passes_the_ids_handed_out_even_after_restart(db):
    async with opened(db) as store:
        message, _ = await store.append(A, "alice", "one", 1000.0)
        await store.append(A, "alice", "dup", 1000.0, "x")
        await store.append(A, "alice", "dup", 1000.0, "x")  # uses up an id
        position = await store.mark_seen("bob", A, 10**6)
        assert position > message.id
    async with opened(db) as store:
        later, _ = await store.append(A, "alice", "later", 1001.0)
        assert later.id > position
        assert await store.messages_after(A, await store.seen("bob", A), 10) == [later]


# -- retention --------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_age_retention(db):
    async with opened(db, max_age_seconds=100.0) as store:
        old = [store.append(A, "alice", f"old{i}", 1000.0 + i) for i in range(5)]
        young = [store.append(B, "eve", f"young{i}", 1200.0 + i) for i in range(3)]
        await gatherResults(old + young)
        assert await store.prune(now=1250.0) == 5
        assert await store.recent(A, 10) == []
        assert [m.text for m in await store.recent(B, 10)] == ["young0", "young1", "young2"]
        assert await store.prune(now=1250.0) == 0
        # Everything can go; ids still never come back, even after a restart.
        assert await store.prune(now=10_000.0) == 3
        last = (await young[-1])[0].id
    async with opened(db) as store:
        message, _ = await store.append(A, "alice", "new", 20_000.0)
        assert message.id > last


@pytest_twisted.ensureDeferred
async def test_retention_runs_in_small_transactions(db, monkeypatch):
    monkeypatch.setattr(sqlite_module, "_PRUNE_BATCH", 7)
    async with opened(db, max_per_conversation=2) as store:
        await gatherResults([store.append(A, "alice", f"a{i}", 1000.0) for i in range(30)])
        await gatherResults([store.append(B, "eve", f"b{i}", 1000.0) for i in range(10)])
        steps = store.prune_steps
        assert await store.prune() == 28 + 8
        assert store.prune_steps - steps == 6  # 36 rows, 7 at a time
        assert [m.text for m in await store.recent(A, 100)] == ["a28", "a29"]
        assert [m.text for m in await store.recent(B, 100)] == ["b8", "b9"]


@pytest_twisted.ensureDeferred
async def test_retention_applies_on_start(db):
    async with opened(db) as store:
        await gatherResults([store.append(A, "alice", f"a{i}", 1000.0) for i in range(10)])
    async with opened(db, max_per_conversation=4) as store:
        # The first pass was queued by start(), so it runs before this read.
        assert [m.text for m in await store.recent(A, 100)] == ["a6", "a7", "a8", "a9"]


@pytest_twisted.ensureDeferred
async def test_retention_runs_periodically(db):
    async with opened(db, max_per_conversation=4, prune_interval=0.05) as store:
        await gatherResults([store.append(A, "alice", f"a{i}", 1000.0) for i in range(10)])
        for _ in range(200):  # at most about 4 s
            if len(await store.recent(A, 100)) == 4:
                break
            await deferLater(reactor, 0.02, lambda: None)
        assert [m.text for m in await store.recent(A, 100)] == ["a6", "a7", "a8", "a9"]


# -- options and the differential check -------------------------------------------------------


def test_store_from_options(db):
    memory = store_from_options(":memory:", max_messages=5)
    assert isinstance(memory, MemoryStore)
    store = store_from_options(db, sync="normal", max_messages=10, max_age_days=2)
    assert isinstance(store, SQLiteStore)
    assert (store.path, store.sync, store.max_per_conversation, store.max_age_seconds) == (
        db, "normal", 10, 172800.0)
    check_database(":memory:")  # nothing to check
    check_database(db)
    assert os.path.exists(db)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest_twisted.ensureDeferred
async def test_same_answers_as_the_memory_store(db, seed):
    """A random mix of calls, made in bursts, gives the same answers from both stores.

    Ids may differ (SQLite skips one for a duplicate client id), so messages are compared
    by their place in the sequence.
    """
    rng = random.Random(seed)
    memory = MemoryStore()
    async with opened(db, sync="normal") as sqlite:
        stores = (memory, sqlite)
        numbers = ({}, {})  # store index -> {id: message number}
        ids = ([], [])  # message number -> id, per store
        conversations = [A, B, "dm:bob:eve"]
        for _burst in range(30):
            calls = []
            for _ in range(rng.randrange(1, 15)):
                conversation = rng.choice(conversations)
                choice = rng.random()
                if choice < 0.5:
                    client_id = rng.choice([None, None, f"c{rng.randrange(6)}"])
                    sender = rng.choice(["alice", "bob"])
                    calls.append(("append", conversation, sender, f"t{rng.random()}", 1000.0, client_id))
                elif choice < 0.65 and ids[0]:
                    calls.append(("mark_seen", rng.choice(["bob", "eve"]), conversation, rng.randrange(len(ids[0]))))
                elif choice < 0.8:
                    calls.append(("seen", rng.choice(["bob", "eve"]), conversation))
                elif choice < 0.9 and ids[0]:
                    calls.append(("messages_after", conversation, rng.randrange(len(ids[0])), rng.randrange(1, 6)))
                else:
                    calls.append(("recent", conversation, rng.randrange(1, 6)))
            answers = []
            for s, store in enumerate(stores):
                ds = []
                for name, *args in calls:
                    if name == "mark_seen":
                        args = [args[0], args[1], ids[s][args[2]]]
                    elif name == "messages_after":
                        args = [args[0], ids[s][args[1]], args[2]]
                    ds.append(getattr(store, name)(*args))
                results = await gatherResults(ds)
                normal = []
                for (name, *_), result in zip(calls, results):
                    if name == "append":
                        message, is_new = result
                        if is_new:
                            numbers[s][message.id] = len(ids[s])
                            ids[s].append(message.id)
                        result = (numbers[s][message.id], message.text, message.client_id, is_new)
                    elif name in ("messages_after", "recent"):
                        result = [(numbers[s][m.id], m.conversation, m.sender, m.text) for m in result]
                    elif result:  # a seen position: the id of a message
                        result = ("message", numbers[s][result])
                    normal.append(result)
                answers.append(normal)
            assert answers[0] == answers[1]


@pytest_twisted.ensureDeferred
async def test_the_results_of_a_job_fire_inside_one_output_batch(db):
    events = []

    class Batch:
        def __enter__(self):
            events.append("open")

        def __exit__(self, *exc_info):
            events.append("close")

    async with opened(db) as store:
        store.output_batch = Batch()
        ds = [store.append(A, "alice", f"m{i}", 1000.0) for i in range(3)]
        for d in ds:
            d.addCallback(lambda result: events.append(result[0].text))
        await gatherResults(ds)  # this resumes inside the batch, when the last one fires
        await store.seen("bob", A)  # a job of its own: a batch of its own
    assert events == ["open", "m0", "m1", "m2", "close", "open", "close"]


@pytest_twisted.ensureDeferred
async def test_session_tokens_survive_a_restart(db):
    async with opened(db) as store:
        await store.add_token("d1", "alice", 2000.0, 1000.0)
    async with opened(db) as again:
        assert await again.token_user("d1", 1000.0) == "alice"


# -- online backup ----------------------------------------------------------------------------


def backup_contents(path):
    """What a backup file holds, read with plain sqlite3: (message ids, seen rows, topics)."""
    conn = raw(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one plain file
        ids = [row[0] for row in conn.execute("SELECT id FROM messages ORDER BY id")]
        seen = conn.execute("SELECT user, conversation, upto FROM seen").fetchall()
        topics = [row[0] for row in conn.execute("SELECT text FROM topics")]
        return ids, seen, topics
    finally:
        conn.close()


@pytest_twisted.ensureDeferred
async def test_a_backup_under_concurrent_appends_holds_exactly_what_came_before_it(db, tmp_path):
    target = str(tmp_path / "copy.sqlite3")
    async with opened(db) as store:
        committed = await gatherResults([store.append(A, "alice", f"a{i}", 1000.0) for i in range(300)])
        in_flight = [store.append(B, "eve", f"b{i}", 1001.0, f"c{i}") for i in range(300)]
        await deferLater(reactor, 0, lambda: None)  # that batch is on the worker now
        assert store._in_flight
        more = [store.append(A, "bob", f"c{i}", 1002.0) for i in range(100)]
        store.set_topic(B, Topic("before the backup", "eve", 1003.0))
        store.mark_seen("bob", A, committed[-1][0].id)
        copied = store.backup(target)
        after = [store.append(A, "alice", f"d{i}", 1004.0) for i in range(200)]
        store.set_topic(B, Topic("after the backup", "eve", 1005.0))
        before = [m for m, _ in committed] + [m for m, _ in await gatherResults(in_flight + more)]
        assert await copied == len(before) == 700
        later = [m for m, _ in await gatherResults(after)]
        assert await store.recent(A, 1000)  # the store carries on as before
        ids, seen, topics = backup_contents(target)
        assert ids == sorted(m.id for m in before)
        assert not set(ids) & {m.id for m in later}
        assert seen == [("bob", A, committed[-1][0].id)]
        assert topics == ["before the backup"]
        assert not os.path.exists(target + "-wal")
        assert [name for name in os.listdir(tmp_path) if name.endswith(".tmp")] == []


@pytest_twisted.ensureDeferred
async def test_a_store_started_on_a_backup_serves_it_and_goes_on_numbering(db, tmp_path):
    target = str(tmp_path / "copy.sqlite3")
    async with opened(db) as store:
        stored = [m for m, _ in await gatherResults(
            [store.append(A, "alice", f"m{i}", 1000.0 + i, f"c{i}") for i in range(5)]
        )]
        await store.mark_seen("bob", A, stored[1].id)
        assert await store.backup(target) == 5
    async with opened(target) as restored:
        assert await restored.messages_after(A, 0, 100) == stored
        assert await restored.seen("bob", A) == stored[1].id
        again, is_new = await restored.append(A, "alice", "m0 resent", 2000.0, "c0")
        assert (again, is_new) == (stored[0], False)
        newer, _ = await restored.append(A, "alice", "new", 2001.0)
        assert newer.id > stored[-1].id


@pytest_twisted.ensureDeferred
async def test_a_new_backup_replaces_the_old_one_and_a_failed_one_leaves_it(db, tmp_path, monkeypatch):
    target = str(tmp_path / "copy.sqlite3")
    async with opened(db) as store:
        await store.append(A, "alice", "one", 1000.0)
        assert await store.backup(target) == 1
        await store.append(A, "alice", "two", 1001.0)
        assert await store.backup(target) == 2
        kept = digest(target)

        nowhere = str(tmp_path / "no" / "such" / "dir" / "copy.sqlite3")
        error = await failure_of(store.backup(nowhere))
        assert isinstance(error, StoreError)
        assert str(error) == f"cannot write the backup {nowhere}: No such file or directory"

        def full_disk(source, destination):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "replace", full_disk)
        await store.append(A, "alice", "three", 1002.0)
        error = await failure_of(store.backup(target))
        assert str(error) == f"cannot write the backup {target}: No space left on device"
        monkeypatch.undo()
        assert digest(target) == kept
        assert [name for name in os.listdir(tmp_path) if name.endswith(".tmp")] == []

        error = await failure_of(store.backup(db))
        assert str(error) == f"the backup cannot overwrite the database itself ({db})"
        assert [m.text for m in await store.recent(A, 10)] == ["one", "two", "three"]
