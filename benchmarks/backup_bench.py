"""
How long an online backup of the SQLite store takes, and so how long appends wait for it.

Not a test.  For each size, makes a database of that many messages (rows written straight
with sqlite3, 100-character texts, in 50 conversations), opens it with `SQLiteStore` as the
server does, then asks for ``--repeat`` backups and, with each, one append made just
after it: the append is committed after the copy, so its wait is what a client sending
during a backup waits at most.  Prints the medians::

    .venv/bin/python benchmarks/backup_bench.py [--messages 10000,100000,500000] [--repeat 5]

The files go to a temporary folder (``--dir`` to choose the disk) and are deleted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import run  # benchmarks/ is this script's directory: its machine() description

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, task  # noqa: E402

from spartan.store import schema  # noqa: E402
from spartan.store.sqlite import SQLiteStore  # noqa: E402

TEXT = "x" * 100


def fill(path: str, messages: int) -> None:
    conn = schema.connect(path)
    try:
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO messages (id, timestamp, conversation, sender, text) VALUES (?, ?, ?, ?, ?)",
            ((i, 1e9 + i, f"group:g{i % 50}", "alice", TEXT) for i in range(1, messages + 1)),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


async def measure(reactor, path: str, target: str, repeat: int) -> tuple[list[float], list[float]]:
    store = SQLiteStore(path, reactor=reactor, prune_interval=3600)
    await store.start()
    copies, waits = [], []
    try:
        for _ in range(repeat):
            started = time.perf_counter()
            copied = store.backup(target)
            appended = store.append("dm:alice:bob", "alice", "during the backup", time.time())
            copied.addCallback(lambda _: copies.append(time.perf_counter() - started))
            appended.addCallback(lambda _: waits.append(time.perf_counter() - started))
            await defer.gatherResults([copied, appended])
    finally:
        await store.stop()
    return copies, waits


async def sizes(reactor, args) -> None:
    print(run.machine())
    print(f"{'messages':>9} {'database MB':>12} {'backup s':>9} {'MB/s':>7} {'append waited s':>16}")
    for messages in (int(n) for n in args.messages.split(",")):
        folder = tempfile.mkdtemp(prefix="spartan-backup-bench-", dir=args.dir)
        try:
            path, target = os.path.join(folder, "chat.sqlite3"), os.path.join(folder, "copy.sqlite3")
            fill(path, messages)
            copies, waits = await measure(reactor, path, target, args.repeat)
            size = os.path.getsize(target) / 1e6
            copy = statistics.median(copies)
            print(f"{messages:>9} {size:>12.1f} {copy:>9.3f} {size / copy:>7.0f} "
                  f"{statistics.median(waits):>16.3f}")  # fmt: skip
        finally:
            shutil.rmtree(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--messages", default="10000,100000,500000")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where the files go (default: a temporary folder)")
    args = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(sizes(reactor, args)))


if __name__ == "__main__":
    main()
