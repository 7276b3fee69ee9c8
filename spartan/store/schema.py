"""
The layout of a Spartan SQLite database, and how a database file is opened.

Theory of operation
-------------------
* A database is marked as Spartan's by ``PRAGMA application_id`` and carries its layout
  version in ``PRAGMA user_version``.  `MIGRATIONS` lists the steps from version 0 (an
  empty file) upwards; a new database runs every step, an older one runs the steps it
  lacks, all in one transaction, so a crash during a migration leaves the old version.
* A file written by a newer Spartan (a higher ``user_version``), a file marked by another
  application, or a non-empty file with no mark is refused with `StoreError` *before*
  anything is written to it.
* `connect` holds the database with ``locking_mode=EXCLUSIVE``: the server hands out ids
  from an in-memory counter, so a second server on the same file would hand out the same
  ids; the second one is refused instead.  Locks are released by the OS when the process
  dies, even by ``SIGKILL``.
* Everything here is synchronous and uses one connection; `spartan.store.sqlite` calls it
  on its worker thread.  Every ``sqlite3.Error`` becomes a `StoreError` with a sentence an
  operator can act on (`describe_error`).
"""

from __future__ import annotations

import os
import sqlite3

from spartan.store import StoreError

APPLICATION_ID = 0x5350_5254  # "SPRT"
CURRENT_VERSION = 4
SYNC_MODES = ("full", "normal")

# MIGRATIONS[n] takes a database from version n to version n + 1.
MIGRATIONS: list[tuple[str, ...]] = [
    # 0 -> 1: messages and per-user seen positions.
    (
        """CREATE TABLE messages (
               id           INTEGER PRIMARY KEY,  -- assigned by the server, increasing
               timestamp    REAL NOT NULL,        -- seconds since the epoch, UTC
               conversation TEXT NOT NULL,        -- dm:alice:bob or group:name
               sender       TEXT NOT NULL,
               text         TEXT NOT NULL)""",
        "CREATE INDEX messages_by_conversation ON messages (conversation, id)",
        """CREATE TABLE seen (
               user         TEXT NOT NULL,
               conversation TEXT NOT NULL,
               upto         INTEGER NOT NULL,
               PRIMARY KEY (user, conversation)) WITHOUT ROWID""",
    ),
    # 1 -> 2: client ids (idempotent sends) and the id high-water mark, which survives
    # retention deleting the newest messages, so that ids are never handed out twice.
    (
        "ALTER TABLE messages ADD COLUMN client_id TEXT",
        """CREATE UNIQUE INDEX messages_by_client_id ON messages (sender, client_id)
               WHERE client_id IS NOT NULL""",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
        "INSERT INTO meta VALUES ('last_id', (SELECT COALESCE(MAX(id), 0) FROM messages))",
    ),
    # 2 -> 3: session tokens (spartan.core.tokens), by their sha256 digest, never in clear.
    (
        """CREATE TABLE tokens (
               digest  TEXT PRIMARY KEY,  -- sha256 of the token, hex
               user    TEXT NOT NULL,
               expires REAL NOT NULL)     -- seconds since the epoch, UTC
               WITHOUT ROWID""",
    ),
    # 3 -> 4: conversation topics (a group's), the last one set.
    (
        """CREATE TABLE topics (
               conversation TEXT PRIMARY KEY,
               text         TEXT NOT NULL,        -- empty: cleared
               setter       TEXT NOT NULL,
               timestamp    REAL NOT NULL) WITHOUT ROWID""",
    ),
]
assert len(MIGRATIONS) == CURRENT_VERSION

# SQLite result codes (the primary code: extended codes are code & 0xff).
_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 6, 8, 10, 11, 13, 14, 26


def describe_error(error: sqlite3.Error, path: str) -> str:
    """A sentence for the operator (and, through ``ERR unavailable``, the user)."""
    code = getattr(error, "sqlite_errorcode", None)
    code = None if code is None else code & 0xFF
    if code == _FULL:
        return f"the disk holding the database {path} is full ({error})"
    if code == _CANTOPEN:
        return f"cannot open the database {path}: check that its directory exists and is writable ({error})"
    if code == _NOTADB:
        return f"{path} is not an SQLite database ({error})"
    if code in (_BUSY, _LOCKED):
        return f"the database {path} is in use by another process, another server on the same file? ({error})"
    if code == _READONLY:
        return f"the database {path} is read-only ({error})"
    if code == _IOERR:
        return f"input/output error on the database {path} ({error})"
    if code == _CORRUPT:
        return f"the database {path} is corrupt ({error})"
    return f"database error on {path}: {error}"


def check_header(conn: sqlite3.Connection, path: str) -> int:
    """Refuse a file that is not ours or is newer than this code; return its version.

    Reads only: nothing is written before the file is known to be safe to change.
    """
    application_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if application_id not in (0, APPLICATION_ID):
        raise StoreError(
            f"{path} is not a Spartan database (application id {application_id:#x}); refusing to use it"
        )
    if version > CURRENT_VERSION:
        raise StoreError(
            f"the database {path} was written by a newer version of Spartan (schema version "
            f"{version}, this version knows up to {CURRENT_VERSION}); refusing to open it. "
            "Run the newer Spartan, or point --db at another file."
        )
    if application_id == 0:
        has_tables = conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is not None
        if has_tables or version != 0:
            raise StoreError(f"{path} is an SQLite database of another application; refusing to use it")
    return version


def migrate(conn: sqlite3.Connection, path: str, target: int = CURRENT_VERSION) -> int:
    """Bring the database to ``target`` in one exclusive transaction; return the old version.

    Also takes the exclusive lock for the connection's lifetime (``locking_mode`` must be
    EXCLUSIVE already), even when there is nothing to migrate.
    """
    conn.execute("BEGIN EXCLUSIVE")
    try:
        version = check_header(conn, path)  # again, now under the lock
        for step in range(version, target):
            for statement in MIGRATIONS[step]:
                conn.execute(statement)
        if version < target:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {target}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return version


def connect(path: str, sync: str = "full", lock_timeout: float = 1.0) -> sqlite3.Connection:
    """Open, check, configure and migrate the database at ``path``; raise `StoreError`.

    ``sync`` is SQLite's ``synchronous`` setting: ``full`` survives power loss, ``normal``
    survives process crashes (including ``SIGKILL``) but may lose the last commits on
    power loss; both are safe against corruption in WAL mode.
    """
    if sync not in SYNC_MODES:
        raise StoreError(f"unknown sync mode {sync!r}; use one of {', '.join(SYNC_MODES)}")
    if os.path.isdir(path):
        raise StoreError(f"cannot open the database {path}: it is a directory")
    try:
        conn = sqlite3.connect(
            path, timeout=lock_timeout, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as error:
        raise StoreError(describe_error(error, path)) from None
    try:
        # First, so that a database already in WAL mode is never opened with a shared-memory
        # index: the locks are then taken at first use and held until close().
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")
        check_header(conn, path)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(f"cannot put the database {path} in WAL mode (it stays in {mode} mode)")
        conn.execute(f"PRAGMA synchronous = {sync.upper()}")
        migrate(conn, path)
        return conn
    except sqlite3.Error as error:
        conn.close()
        raise StoreError(describe_error(error, path)) from None
    except BaseException:
        conn.close()
        raise


def last_issued_id(conn: sqlite3.Connection) -> int:
    """The highest id that may have been handed out: messages, the mark, seen positions."""
    return conn.execute(
        """SELECT MAX((SELECT COALESCE(MAX(id), 0) FROM messages),
                      (SELECT value FROM meta WHERE key = 'last_id'),
                      (SELECT COALESCE(MAX(upto), 0) FROM seen))"""
    ).fetchone()[0]
