"""A real `twistd spartan` backed up while a client sends: `spartan-admin backup` signals
the server, waits for the new file and says what it holds; a server started on that file
serves the messages; a backup that cannot be made is reported, and changes nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.support import LineClient, TwistdServer, wait_for

SENDS_AT_MOST = 900  # HISTORY answers up to 1000: the whole run fits in one page


def spartan_admin(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spartan.admin", *args],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


class Sender(threading.Thread):
    """alice sends bob numbered messages, one at a time, each after the last was accepted
    (at most `SENDS_AT_MOST`, for at most 30 s)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.client = LineClient(port)
        self.client.ok("LOGIN alice")
        self.accepted = 0
        self.done = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + 30
        while not self.done.is_set() and self.accepted < SENDS_AT_MOST and time.monotonic() < deadline:
            self.client.ok(f"SEND bob message {self.accepted}")
            self.accepted += 1
            time.sleep(0.005)

    def stop(self) -> None:
        self.done.set()
        self.join(30)
        self.client.close()


def history_texts(port: int) -> list[str]:
    bob = LineClient(port)
    try:
        bob.ok("LOGIN bob")
        lines, reply = bob.command("HISTORY alice 1000")
        assert reply.startswith("OK HISTORY "), reply
        return [line.split(" ", 6)[6] for line in lines if line.startswith("* HISTORY ")]
    finally:
        bob.close()


def test_a_backup_taken_while_a_client_sends_is_served_by_a_server_started_on_it(tmp_path):
    db, pidfile = tmp_path / "chat.sqlite3", tmp_path / "spartan.pid"
    backup = f"{db}.backup"
    with TwistdServer(tmp_path, "--db", str(db)) as server:
        pidfile.write_text(f"{server.process.pid}\n")  # what twistd --pidfile writes
        sender = Sender(server.port)
        sender.start()
        try:
            wait_for(lambda: sender.accepted >= 50, what="50 messages accepted")
            accepted_before = sender.accepted
            result = spartan_admin("backup", "--pidfile", str(pidfile), "--db", str(db))
            accepted_after = sender.accepted
            wait_for(lambda: sender.accepted > accepted_after + 20, what="sending goes on")
        finally:
            sender.stop()
        assert result.returncode == 0, result.stderr
        prefix = f"Backup written to {backup} ("
        assert result.stdout.startswith(prefix) and result.stdout.endswith(" messages).\n")
        count = int(result.stdout[len(prefix):].split()[0])
        assert accepted_before <= count <= accepted_after + 1  # + the one on its way
        server.wait_for_log(f"Backup written to {backup} ({count} messages)")
        assert server.process.poll() is None
        assert len(history_texts(server.port)) == sender.accepted  # the live server has all
    assert not os.path.exists(backup + "-wal")

    with TwistdServer(tmp_path, "--db", backup, name="restored") as restored:
        assert history_texts(restored.port) == [f"message {i}" for i in range(count)]


def test_a_backup_the_server_cannot_write_is_a_clear_failure_and_the_server_serves_on(tmp_path):
    pidfile = tmp_path / "spartan.pid"
    nowhere = tmp_path / "no" / "such" / "dir" / "chat.backup"
    with TwistdServer(tmp_path, "--backup-path", str(nowhere)) as server:
        pidfile.write_text(f"{server.process.pid}\n")
        result = spartan_admin(
            "backup", "--pidfile", str(pidfile), "--backup-path", str(nowhere), "--timeout", "3"
        )
        assert result.returncode == 1
        assert result.stderr == (
            f"spartan-admin: the server (pid {server.process.pid}) wrote no backup to {nowhere} "
            "within 3 seconds; its log says why (a line 'Backup to ... failed: ...' or "
            "'SIGUSR2: ...').\n"
        )
        server.wait_for_log(
            f"Backup to {nowhere} failed: cannot write the backup {nowhere}: No such file or directory"
        )
        LineClient(server.port).ok("LOGIN alice")
    assert not nowhere.parent.exists()


def test_sigusr2_to_a_server_without_a_database_file_says_so_and_serves_on(tmp_path):
    with TwistdServer(tmp_path, "--db", ":memory:") as server:
        server.process.send_signal(signal.SIGUSR2)
        server.wait_for_log(
            "SIGUSR2: this server keeps no database file to back up (--db :memory:, or --redis: "
            "back up Redis itself); nothing written"
        )
        LineClient(server.port).ok("LOGIN alice")


@pytest.mark.parametrize("content", [None, "4194303\n", "not a pid\n"])
def test_backup_without_a_server_to_signal_fails_with_the_reason(tmp_path, content):
    pidfile = tmp_path / "spartan.pid"
    if content is not None:
        pidfile.write_text(content)
    result = spartan_admin("backup", "--pidfile", str(pidfile), "--db", str(tmp_path / "chat.sqlite3"))
    assert result.returncode == 1
    assert result.stderr.startswith("spartan-admin: cannot ")
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "chat.sqlite3.backup").exists()


def test_backup_takes_the_pid_itself_as_under_systemd(tmp_path):
    db = tmp_path / "chat.sqlite3"
    with TwistdServer(tmp_path, "--db", str(db)) as server:
        client = LineClient(server.port)
        client.ok("LOGIN alice")
        client.ok("SEND bob kept")
        result = spartan_admin("backup", "--pid", str(server.process.pid), "--db", str(db))
        assert (result.returncode, result.stdout) == (0, f"Backup written to {db}.backup (1 messages).\n")
        client.close()
