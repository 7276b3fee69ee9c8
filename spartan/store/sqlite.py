"""
The durable message store: one SQLite file in WAL mode, written with group commit.

Theory of operation
-------------------
* **One worker thread owns the connection.**  Every database call runs on a private
  1-thread `ThreadPool` (via `deferToThreadPool`), so calls run one at a time, in the order
  they were handed over, and the reactor thread never waits on the disk.  (`adbapi` does
  not fit: its pool runs each call in its own transaction on any of several connections,
  so it can neither batch a reactor turn's appends into one commit nor keep them ordered.)
* **Ids are assigned at once, on the reactor thread**, from a counter read at start
  (`schema.last_issued_id`), so they increase in `append` call order even though the rows
  reach the disk later.  An id may be skipped (a failed batch, a duplicate client id); an
  id is never handed out twice, and a gap is harmless.
* **Group commit.**  Every call (append, mark_seen, read) is put on ``_pending``; at most
  one job at a time runs on the worker and takes all of ``_pending`` with it.  A job is
  scheduled with ``callLater(0)``, so everything that arrived in one reactor turn -- plus
  everything that arrived while the previous job was committing -- goes in one job; that
  next job is handed over as soon as the previous one returns, before its Deferreds
  fire, so the disk works while the reactor thread delivers.  In a job, each run of
  consecutive writes is one transaction; a read between two writes comes after the
  commit of the writes before it, so a read sees exactly the calls made before it, like
  `MemoryStore`.  Deferreds fire only after the commit returned, in call order, inside
  ``output_batch`` (the server's output batching): an ``OK SENT`` means the row is
  committed.
* **Durability.**  WAL, with ``synchronous=FULL`` by default (``--sync full``: each commit
  fsyncs the WAL, so an ``OK SENT`` survives power loss) or ``NORMAL`` (``--sync normal``:
  survives the process dying, ``SIGKILL`` included, not power loss).  Group commit pays
  one fsync per batch; docs/performance.md has the figures.  The file is held with an
  exclusive lock while the store is open (`schema.connect`).
* **Failure is per transaction.**  A failed commit (disk full, I/O error) is rolled back,
  every Deferred of that transaction fails with `StoreError`, and the next job starts
  afresh.  Errors are logged at most once per `_LOG_EVERY` seconds, not once per message.
* **Idempotency** is the ``UNIQUE (sender, client_id)`` index.  A batch's rows go in with
  one multi-row ``INSERT ... ON CONFLICT DO NOTHING`` (`_insert_rows` says why not
  ``executemany``), which alone is a transaction in autocommit mode.  If fewer rows went
  in than were given, each row is looked up after the commit (`_resolve`): so a
  duplicate in the same batch is caught as well as an older one.
* **Seen positions** only move forward (``MAX`` in the upsert), and never past the last id
  handed out: an acknowledgement of an id that does not exist yet cannot hide a future
  message.
* **Retention** (``max_per_conversation``, ``max_age_seconds``) runs every
  ``prune_interval`` seconds as its own small transactions (at most `_PRUNE_BATCH` rows
  each) between the batches, never inside one.  The age limit deletes the oldest messages
  up to the first one younger than the limit (timestamps come from the server's clock and
  follow id order), so it never scans the table.  Only conversations that received a
  message since the last pass are counted.
* **Online backup** (`SQLiteStore.backup`) is one more queued call: no other process can
  read the file while the store holds its lock, so the worker copies it with SQLite's
  backup API on its own connection, between two jobs, to a temporary file that then
  replaces the destination.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import stat
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.defer import Deferred, fail, inlineCallbacks
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from spartan.files import replacing
from spartan.store import QueuedStore, StoredMessage, StoreError, Topic
from spartan.store import schema

_PRUNE_BATCH = 2000  # rows deleted per retention transaction
_PRUNE_STEPS = 1000  # retention transactions per pass at most
_LOG_EVERY = 60.0  # seconds between two logged write failures

# Operation kinds on the queue.
_APPEND, _MARK, _CALL = 0, 1, 2

_COLUMNS = "id, timestamp, conversation, sender, text, client_id"
_MAX_ROWS_PER_INSERT = 1000
_BY_CLIENT_ID = f"SELECT {_COLUMNS} FROM messages WHERE sender = ? AND client_id = ?"
_MARK_SEEN = """INSERT INTO seen (user, conversation, upto) VALUES (?, ?, ?)
                ON CONFLICT (user, conversation) DO UPDATE SET upto = MAX(upto, excluded.upto)"""
_SEEN = "SELECT upto FROM seen WHERE user = ? AND conversation = ?"
_UNSEEN = """SELECT COUNT(*), MIN(id) FROM messages WHERE conversation = ? AND id > COALESCE(
    (SELECT upto FROM seen WHERE conversation = ? AND user = ?), 0) AND sender != ?"""
_AFTER = f"""SELECT {_COLUMNS} FROM messages WHERE conversation = ? AND id > ?
             ORDER BY id LIMIT ?"""
_RECENT = f"""SELECT * FROM (SELECT {_COLUMNS} FROM messages WHERE conversation = ?
              ORDER BY id DESC LIMIT ?) ORDER BY id"""
_RECENT_BEFORE = f"""SELECT * FROM (SELECT {_COLUMNS} FROM messages WHERE conversation = ?
                     AND id < ? ORDER BY id DESC LIMIT ?) ORDER BY id"""


# The outcome of an append stored as given: the reactor thread makes ``(message, True)``.
_STORED = object()


class _Failed:
    """The outcome of an operation that failed (a plain value means success).

    Holds the exception, not a `Failure`: each Deferred's ``errback`` makes its own.
    """

    __slots__ = ("reason",)

    def __init__(self, reason: BaseException | Failure) -> None:
        self.reason = reason


def _message(row: tuple) -> StoredMessage:
    return StoredMessage(*row)


@functools.lru_cache(maxsize=64)
def _insert_rows(count: int) -> str:
    """``INSERT`` of ``count`` rows that skips a row whose client id is already used.

    One multi-row statement, not ``executemany``: that steps once per row, and every
    step gives up the GIL and must win it back from the reactor thread, which a busy
    server holds for a whole switch interval (5 ms) at a time.
    """
    values = ", ".join(["(?, ?, ?, ?, ?, ?)"] * count)
    return f"INSERT INTO messages ({_COLUMNS}) VALUES {values} ON CONFLICT DO NOTHING"


class SQLiteStore(QueuedStore):
    log = Logger(namespace="spartan")

    def __init__(
        self,
        path: str,
        *,
        reactor: Any = None,
        sync: str = "full",
        max_per_conversation: int | None = None,
        max_age_seconds: float | None = None,
        prune_interval: float = 60.0,
        lock_timeout: float = 1.0,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor  # type: ignore[no-redef]
        if sync not in schema.SYNC_MODES:
            raise StoreError(f"unknown sync mode {sync!r}; use one of {', '.join(schema.SYNC_MODES)}")
        if max_per_conversation is not None and max_per_conversation < 1:
            raise StoreError("the retention limit must be at least 1 message per conversation")
        if max_age_seconds is not None and max_age_seconds <= 0:
            raise StoreError("the retention age must be positive")
        self.path = path
        self.sync = sync
        self.max_per_conversation = max_per_conversation
        self.max_age_seconds = max_age_seconds
        self._reactor = reactor
        self._prune_interval = prune_interval
        self._lock_timeout = lock_timeout
        self._state = "new"  # new -> starting -> open -> stopping -> closed
        self._conn: sqlite3.Connection | None = None  # used on the worker thread only
        self._pool: ThreadPool | None = None
        self._shutdown_trigger: Any = None
        self._last_id = 0
        self._pending: list[tuple[int, Any, Any]] = []  # (kind, payload, Deferred or receiver)
        self._scheduled: Any = None  # the IDelayedCall of the next job
        self._in_flight = False
        self._idle_waiters: list[Deferred] = []
        self._dirty: set[str] = set()  # conversations that may be over the count limit
        self._pruner: LoopingCall | None = None
        self._pruning = False
        self._last_logged = float("-inf")
        self._suppressed = 0
        # Statistics, for tests and the benchmark.
        self.jobs = 0  # worker jobs run
        self.transactions = 0  # batches of writes committed
        self.prune_steps = 0  # retention transactions committed

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> Deferred[None]:
        if self._state != "new":
            return fail(StoreError("the store was already started"))
        self._state = "starting"
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="spartan-sqlite")
        self._pool.start()
        # If the reactor stops without stop(), at least let the worker thread end.
        self._shutdown_trigger = self._reactor.addSystemEventTrigger(
            "during", "shutdown", self._pool.stop
        )
        d = deferToThreadPool(self._reactor, self._pool, self._open)
        d.addCallbacks(self._opened, self._failed_to_open)
        return d

    def _open(self) -> tuple[int, set[str]]:  # worker thread
        self._conn = schema.connect(self.path, self.sync, self._lock_timeout)
        variables = self._conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self._max_rows = max(1, min(_MAX_ROWS_PER_INSERT, variables // 6))
        try:
            last_id = schema.last_issued_id(self._conn)
            conversations = self._conversations(self._conn) if self.max_per_conversation else set()
        except sqlite3.Error as error:
            self._conn.close()
            self._conn = None
            raise StoreError(schema.describe_error(error, self.path)) from None
        return last_id, conversations

    def _opened(self, result: tuple[int, set[str]]) -> None:
        self._last_id, self._dirty = result
        self._state = "open"
        if self.max_per_conversation is not None or self.max_age_seconds is not None:
            self._pruner = LoopingCall(self._prune_quietly)
            self._pruner.clock = self._reactor
            self._pruner.start(self._prune_interval, now=True)

    def _failed_to_open(self, failure: Failure) -> Failure:
        self._state = "closed"
        self._release_pool()
        return failure

    def _release_pool(self) -> None:
        if self._shutdown_trigger is not None:
            self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
            self._shutdown_trigger = None
        if self._pool is not None:
            self._pool.stop()  # the worker is idle here: this joins at once
            self._pool = None

    @inlineCallbacks
    def stop(self):
        """Finish every call already made, close the database, end the worker thread."""
        if self._state in ("new", "closed"):
            self._state = "closed"
            return
        if self._state == "starting":
            raise StoreError("the store is still starting")
        if self._state == "stopping":
            raise StoreError("the store is already stopping")
        self._state = "stopping"
        if self._pruner is not None and self._pruner.running:
            self._pruner.stop()
        try:
            yield self._until_idle()
            yield deferToThreadPool(self._reactor, self._pool, self._close)
        finally:
            self._state = "closed"
            self._release_pool()

    def _close(self) -> None:  # worker thread
        if self._conn is not None:
            self._conn.close()  # checkpoints the WAL into the database file
            self._conn = None


    # -- the interface ----------------------------------------------------------------------

    def append_to(self, conversation, sender, text, timestamp, client_id, receiver) -> None:
        if self._state != "open":
            receiver.failed(StoreError("the message store is not open"))
            return
        self._last_id += 1
        message = StoredMessage(self._last_id, timestamp, conversation, sender, text, client_id)
        if self.max_per_conversation is not None:
            self._dirty.add(conversation)
        self._pending.append((_APPEND, message, receiver))
        if self._scheduled is None and not self._in_flight:
            self._scheduled = self._reactor.callLater(0, self._run)

    def mark_seen(self, user, conversation, upto):
        if self._state != "open":
            return self._closed()
        # Never past the last id handed out; never below 0 (the position of nothing seen).
        return self._queue(_MARK, (user, conversation, max(0, min(upto, self._last_id))))

    def seen(self, user, conversation):
        return self._call(self._seen, user, conversation)

    def messages_after(self, conversation, after_id, limit):
        return self._call(self._messages_after, conversation, after_id, limit)

    def recent(self, conversation, limit, before=None):
        return self._call(self._recent, conversation, limit, before)

    def conversations(self):
        return self._call(self._conversations)

    def topic(self, conversation):
        return self._call(self._topic, conversation)

    def set_topic(self, conversation, topic):
        return self._call(self._set_topic, conversation, topic)
    def check_writable(self):
        return self._call(self._check_writable)

    @staticmethod
    def _check_writable(conn) -> None:  # worker thread
        # Takes the write lock (a locked or read-only database fails here), writes nothing.
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")

    def unseen_counts(self, user, conversations):
        return self._call(self._unseen_counts, user, list(conversations))

    def backup(self, path: str) -> Deferred[int]:
        """Copy the database to ``path`` while the server runs; fire with the number of
        messages in the copy, or fail with `StoreError` (``path`` is then left as it was).

        Queued like every other call, so the copy holds exactly what was committed for the
        calls made before this one, and nothing after it.
        """
        return self._call(self._backup, path)

    def _backup(self, conn, path: str) -> int:  # worker thread
        """SQLite's online backup from this connection (the only one that can read the
        file: it holds the exclusive lock) into a file beside ``path``, which then
        replaces ``path`` (`spartan.files.replacing`): a backup is whole or absent.

        The copy is made in one step, so appends wait for it; a step-by-step copy would
        not be a snapshot of one moment.  The copy is a plain rollback-journal database
        (no ``-wal`` beside it) with the database's file mode.
        """
        if os.path.realpath(path) == os.path.realpath(self.path):
            raise StoreError(f"the backup cannot overwrite the database itself ({self.path})")
        try:
            with replacing(path) as temporary:
                os.chmod(temporary, stat.S_IMODE(os.stat(self.path).st_mode))
                target = sqlite3.connect(temporary, isolation_level=None)
                try:
                    conn.backup(target)
                    target.execute("PRAGMA journal_mode = DELETE")
                    return target.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
                finally:
                    target.close()
        except sqlite3.Error as error:
            raise StoreError(f"cannot write the backup {path}: {error}") from None
        except OSError as error:
            raise StoreError(f"cannot write the backup {path}: {error.strerror or error}") from None

    def prune(self, now: float | None = None) -> Deferred[int]:
        """Apply the retention limits now, in small transactions; fire with rows deleted."""
        return self._prune(self._reactor.seconds() if now is None else now)

    # -- reads (worker thread) ------------------------------------------------------------

    @staticmethod
    def _seen(conn, user, conversation):
        row = conn.execute(_SEEN, (user, conversation)).fetchone()
        return 0 if row is None else row[0]

    @staticmethod
    def _topic(conn, conversation):
        row = conn.execute(
            "SELECT text, setter, timestamp FROM topics WHERE conversation = ?", (conversation,)
        ).fetchone()
        return None if row is None else Topic(*row)

    @staticmethod
    def _set_topic(conn, conversation, topic):  # one statement: its own transaction
        conn.execute(
            "INSERT OR REPLACE INTO topics VALUES (?, ?, ?, ?)",
            (conversation, topic.text, topic.setter, topic.timestamp),
        )

    @staticmethod
    def _messages_after(conn, conversation, after_id, limit):
        if limit <= 0:
            return []
        return [_message(row) for row in conn.execute(_AFTER, (conversation, after_id, limit))]

    @staticmethod
    def _recent(conn, conversation, limit, before=None):
        if limit <= 0:
            return []
        if before is None:
            return [_message(row) for row in conn.execute(_RECENT, (conversation, limit))]
        rows = conn.execute(_RECENT_BEFORE, (conversation, before, limit))
        return [_message(row) for row in rows]

    # -- session tokens: rare, so plain calls in autocommit (one statement each) ----------

    def add_token(self, digest, user, expires, now):
        return self._call(self._add_token, digest, user, expires, now)

    def token_user(self, digest, now):
        return self._call(self._token_user, digest, now)

    def remove_token(self, digest):
        return self._call(self._remove_token, digest)

    @staticmethod
    def _add_token(conn, digest, user, expires, now):  # worker thread
        conn.execute("DELETE FROM tokens WHERE expires <= ?", (now,))  # expired: keep it small
        conn.execute("INSERT OR REPLACE INTO tokens VALUES (?, ?, ?)", (digest, user, expires))

    @staticmethod
    def _token_user(conn, digest, now):  # worker thread
        row = conn.execute(
            "SELECT user FROM tokens WHERE digest = ? AND expires > ?", (digest, now)
        ).fetchone()
        return None if row is None else row[0]

    @staticmethod
    def _remove_token(conn, digest):  # worker thread
        conn.execute("DELETE FROM tokens WHERE digest = ?", (digest,))

    @staticmethod
    def _unseen_counts(conn, user, conversations):
        counts = {}
        for conversation in conversations:  # each an index range scan from the seen position
            count, oldest = conn.execute(_UNSEEN, (conversation, conversation, user, user)).fetchone()
            if count:
                counts[conversation] = (count, oldest)
        return counts

    @staticmethod
    def _conversations(conn):
        return {row[0] for row in conn.execute("SELECT DISTINCT conversation FROM messages")}

    # -- the queue and group commit -------------------------------------------------------

    def _closed(self) -> Deferred:
        return fail(StoreError("the message store is not open"))

    def _call(self, function: Callable[..., Any], *args: Any) -> Deferred:
        if self._state != "open":
            return self._closed()
        return self._queue(_CALL, (function, args))

    def _queue(self, kind: int, payload: Any) -> Deferred:
        d: Deferred = Deferred()
        self._pending.append((kind, payload, d))
        if self._scheduled is None and not self._in_flight:
            self._scheduled = self._reactor.callLater(0, self._run)
        return d

    def _run(self) -> None:
        self._scheduled = None
        operations, self._pending = self._pending, []
        self._in_flight = True
        self.jobs += 1
        d = deferToThreadPool(self._reactor, self._pool, self._execute, operations)
        d.addBoth(self._finished, operations, self._reactor.seconds())

    def _finished(self, outcomes: list | Failure, operations: list, started: float) -> None:
        self._in_flight = False
        observer = self.commit_observer
        if observer is not None:
            appends = sum(1 for operation in operations if operation[0] == _APPEND)
            if appends:
                observer(self._reactor.seconds() - started, appends)
        if self._pending:
            # Hand over what arrived during that job first, so that the worker commits it
            # while this thread fires the callbacks below (they all come after it in the
            # queue, so the order of calls is kept).
            self._run()
        if isinstance(outcomes, Failure):  # a bug in _execute: fail everything it had
            outcomes = [_Failed(outcomes)] * len(operations)
        with self.output_batch:
            for (kind, payload, d), outcome in zip(operations, outcomes):
                if kind != _APPEND:
                    if type(outcome) is _Failed:
                        d.errback(outcome.reason)
                    else:
                        d.callback(outcome)
                    continue
                try:  # d is an append_to receiver; its bug must not stop the others
                    if outcome is _STORED:
                        d.appended(payload, True)
                    elif type(outcome) is _Failed:
                        d.failed(outcome.reason)
                    else:
                        d.appended(*outcome)
                except Exception:
                    self.log.failure("message store: a receiver of a stored message failed")
        self._wake_if_idle()

    def _execute(self, operations: list) -> list:  # worker thread
        """Run a job: each operation's outcome, in order (see `_STORED`, `_Failed`)."""
        conn = self._conn
        outcomes: list = [_STORED] * len(operations)
        start, count = 0, len(operations)
        while start < count:
            if operations[start][0] == _CALL:
                function, args = operations[start][1]
                outcomes[start] = self._guarded(function, conn, *args)
                start += 1
                continue
            end = start
            while end < count and operations[end][0] != _CALL:
                end += 1
            self._write(conn, operations, start, end, outcomes)
            start = end
        return outcomes

    def _guarded(self, function, conn, *args) -> Any:  # worker thread
        try:
            return function(conn, *args)
        except sqlite3.Error as error:
            return _Failed(StoreError(schema.describe_error(error, self.path)))
        except Exception as error:  # StoreError, or a bug: the caller gets it either way
            return _Failed(error)

    def _write(self, conn, operations, start, end, outcomes) -> None:  # worker thread
        """One transaction for operations[start:end] (appends and seen marks).

        The appends go in with ``INSERT ... ON CONFLICT DO NOTHING``: a row whose client
        id was used before (or earlier in this batch) is skipped.  A batch of appends
        alone is one statement, and one statement is one transaction in autocommit mode:
        no BEGIN/COMMIT round trips.  Only when fewer rows went in than were given are the
        rows looked at again, after the commit, to find the earlier messages.
        """
        messages = [operations[i][1] for i in range(start, end) if operations[i][0] == _APPEND]
        marks = [i for i in range(start, end) if operations[i][0] == _MARK]
        explicit = bool(marks) or len(messages) > self._max_rows
        try:
            if explicit:
                conn.execute("BEGIN IMMEDIATE")
            before = conn.total_changes
            for first in range(0, len(messages), self._max_rows):
                chunk = messages[first : first + self._max_rows]
                conn.execute(
                    _insert_rows(len(chunk)),
                    [v for m in chunk for v in (m.id, m.timestamp, m.conversation, m.sender, m.text, m.client_id)],
                )
            inserted = conn.total_changes - before
            for index in marks:
                payload = operations[index][1]
                conn.execute(_MARK_SEEN, payload)
                outcomes[index] = conn.execute(_SEEN, payload[:2]).fetchone()[0]
            if explicit:
                conn.execute("COMMIT")
        except Exception as error:
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the transaction is gone either way
            if isinstance(error, sqlite3.Error):
                error = StoreError(schema.describe_error(error, self.path))
            outcomes[start:end] = [_Failed(error)] * (end - start)
            self._reactor.callFromThread(self._log_failure, error)
            return
        self.transactions += 1
        if inserted != len(messages):  # rare: some rows were skipped
            for index in range(start, end):
                if operations[index][0] == _APPEND:
                    outcomes[index] = self._guarded(self._resolve, conn, operations[index][1])

    def _resolve(self, conn, m: StoredMessage) -> Any:  # worker
        """After a batch that skipped rows: was ``m`` stored, or an earlier message?"""
        if m.client_id is not None:
            row = conn.execute(_BY_CLIENT_ID, (m.sender, m.client_id)).fetchone()
            if row is not None:
                return _STORED if row[0] == m.id else (_message(row), False)
        else:
            row = conn.execute(f"SELECT {_COLUMNS} FROM messages WHERE id = ?", (m.id,)).fetchone()
            if row is not None and _message(row) == m:
                return _STORED
        # Only an id clash skips a row otherwise, and ids come from a counter that starts
        # above every id in the database: this is a bug, or the file was changed under us.
        raise StoreError(f"message id {m.id} was already in use in {self.path}; message not stored")

    def _log_failure(self, error: Exception) -> None:
        now = self._reactor.seconds()
        if now - self._last_logged < _LOG_EVERY:
            self._suppressed += 1
            return
        more = f" ({self._suppressed} more failures since the last report)" if self._suppressed else ""
        self.log.error("message store: could not store a batch: {error}{more}", error=error, more=more)
        self._last_logged, self._suppressed = now, 0

    # -- retention --------------------------------------------------------------------------

    def _prune_quietly(self) -> None:
        """The periodic pass: a failure is logged (once a pass, no traceback for a
        StoreError such as a full disk), and the next pass tries again."""
        if self._pruning:
            return

        def failed(failure: Failure) -> None:
            if not failure.check(StoreError):
                self.log.failure("message store: retention failed", failure)
            elif self._state == "open":
                self.log.error("message store: retention failed: {error}", error=failure.value)

        self.prune().addErrback(failed)

    @inlineCallbacks
    def _prune(self, now: float):
        if self.max_per_conversation is None and self.max_age_seconds is None:
            return 0
        self._pruning = True
        total = 0
        try:
            for _step in range(_PRUNE_STEPS):
                conversations, self._dirty = self._dirty, set()
                try:
                    deleted, more_old, leftover = yield self._call(
                        self._prune_step, now, sorted(conversations), self._last_id
                    )
                except BaseException:
                    self._dirty |= conversations
                    raise
                self._dirty |= set(leftover)
                total += deleted
                if not (more_old or leftover):
                    break
            return total  # what is left, if anything, is for the next pass
        finally:
            self._pruning = False

    def _prune_step(self, conn, now, conversations: Iterable[str], last_id: int):  # worker
        budget = _PRUNE_BATCH
        more_old = False
        leftover: list[str] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Deleting the newest messages must not let their ids be handed out again.
            conn.execute(
                "UPDATE meta SET value = MAX(value, ?) WHERE key = 'last_id'", (last_id,)
            )
            if self.max_age_seconds is not None:
                young = conn.execute(
                    "SELECT id FROM messages WHERE timestamp >= ? ORDER BY id LIMIT 1",
                    (now - self.max_age_seconds,),
                ).fetchone()
                bound = young[0] if young is not None else last_id + 1
                deleted = conn.execute(
                    """DELETE FROM messages WHERE id IN
                       (SELECT id FROM messages WHERE id < ? ORDER BY id LIMIT ?)""",
                    (bound, budget),
                ).rowcount
                budget -= deleted
                more_old = budget == 0
            for conversation in conversations if self.max_per_conversation else ():
                if budget == 0:
                    leftover.append(conversation)
                    continue
                newest_to_drop = conn.execute(
                    """SELECT id FROM messages WHERE conversation = ?
                       ORDER BY id DESC LIMIT 1 OFFSET ?""",
                    (conversation, self.max_per_conversation),
                ).fetchone()
                if newest_to_drop is None:
                    continue
                deleted = conn.execute(
                    """DELETE FROM messages WHERE id IN (SELECT id FROM messages
                       WHERE conversation = ? AND id <= ? ORDER BY id LIMIT ?)""",
                    (conversation, newest_to_drop[0], budget),
                ).rowcount
                if deleted == budget:
                    leftover.append(conversation)  # there may be more
                budget -= deleted
            conn.execute("COMMIT")
            self.prune_steps += 1
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return _PRUNE_BATCH - budget, more_old, leftover


def store_from_options(
    db_path: str,
    sync: str = "full",
    max_messages: int | None = None,
    max_age_days: float | None = None,
    reactor: Any = None,
):
    """The store the server runs on: `MemoryStore` for ``:memory:``, SQLite otherwise.

    Does no I/O: the database is opened by ``start()``.  Call `check_database` first to
    turn an unusable file into an error message before the server starts.
    """
    if db_path == ":memory:":
        from spartan.store.memory import MemoryStore

        return MemoryStore(max_per_conversation=max_messages)
    return SQLiteStore(
        db_path,
        reactor=reactor,
        sync=sync,
        max_per_conversation=max_messages,
        max_age_seconds=None if max_age_days is None else max_age_days * 86400.0,
    )


def default_backup_path(db_path: str) -> str:
    """Where SIGUSR2 writes the backup without ``--backup-path``: beside the database."""
    return db_path + ".backup"


def check_database(db_path: str, sync: str = "full") -> None:
    """Open, check and migrate the database synchronously, then close it.

    Raises `StoreError` with a sentence for the operator (unopenable path, not a Spartan
    database, written by a newer version, in use by another server, disk full).  Meant
    for ``makeService``, before the reactor runs.
    """
    if db_path == ":memory:":
        return
    schema.connect(db_path, sync, lock_timeout=0.0).close()
