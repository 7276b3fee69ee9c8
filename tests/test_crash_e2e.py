"""
Kill a real ``twistd spartan`` with SIGKILL while messages stream in, restart it on the
same database, and check that nothing accepted was lost, duplicated, reordered or
delivered again after it was acknowledged.

Three rounds, each: start the server, check what the previous round left, log in, send
messages (with client ids) to a user and to a group, acknowledge part of them, then
stream SENDs and SIGKILL the server at a random moment in the middle of the stream --
while SENDs are waiting for their commit.  Readiness is the log line ``Started server
started on port N``: the server listens on port 0 and the test reads the port from it.

Also: a database written by a newer version makes ``twistd spartan`` refuse to start,
with a sentence and no traceback, and leaves the file as it was.
"""

from __future__ import annotations

import os
import queue
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from spartan.store import schema

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
READY = re.compile(rb"Started server started on port (\d+)")
DEADLINE = 30.0  # seconds any single wait may take before the test fails
ROUNDS = 3
STREAM = 3000  # SENDs written per round
KILL_WITHIN = 0.02  # seconds after the first reply at most

pytestmark = pytest.mark.skipif(not os.path.exists(TWISTD), reason="twistd is not installed")


class Server:
    """One ``twistd -n spartan`` process; its output is read by a thread into a queue."""

    def __init__(self, db: str, cwd: str, sync: str) -> None:
        self.output: list[bytes] = []
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self.process = subprocess.Popen(
            # --burst 0: no rate limit, the test streams SENDs as fast as it can; retention
            # well above what the test sends, so every accepted message must still be there.
            [TWISTD, "-n", "--pidfile=", "spartan", "--port", "tcp:0:interface=127.0.0.1",
             "--db", db, "--sync", sync, "--retention-messages", "1000000",
             "--message-log", "off", "--burst", "0"],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = self._wait_ready()

    def _read(self) -> None:
        for line in self.process.stdout:  # ends at EOF, when the process is gone
            self._lines.put(line)
        self._lines.put(None)

    def _wait_ready(self) -> int:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                self.process.wait(timeout=DEADLINE)
                raise AssertionError(f"the server exited before it was ready:\n{self.log()}")
            self.output.append(line)
            match = READY.search(line)
            if match:
                return int(match.group(1))
        raise AssertionError(f"the server was not ready within {DEADLINE} s:\n{self.log()}")

    def log(self) -> str:
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.output.append(line)
        return b"".join(self.output).decode("utf-8", "replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=DEADLINE)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reader.join(DEADLINE)  # it stops at EOF, now that the process is gone
        self.process.stdout.close()


class Client:
    """A blocking line client for the wire protocol, with a deadline on every read."""

    def __init__(self, port: int, user: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.buffer = b""
        self.events: list[str] = []  # '*' lines not claimed by a reply
        assert self.read_line().startswith("* HELLO")
        assert self.command(f"LOGIN {user}")[1] == f"OK LOGIN {user}"

    def close(self) -> None:
        self.sock.close()

    def write(self, lines: list[str]) -> None:
        self.sock.sendall("".join(line + "\n" for line in lines).encode("utf-8"))

    def read_line(self) -> str:
        """The next line; ConnectionError when the server is gone."""
        while b"\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8")

    def reply(self) -> tuple[list[str], str]:
        """The ``*`` lines before the next reply, and the reply."""
        stars = []
        while True:
            line = self.read_line()
            if not line.startswith("*"):
                return stars, line
            stars.append(line)

    def command(self, line: str) -> tuple[list[str], str]:
        self.write([line])
        return self.reply()

    def open(self, target: str) -> list[tuple[int, str]]:
        """OPEN: the unseen messages as (id, text), in the order they came."""
        stars, reply = self.command(f"OPEN {target}")
        assert reply.startswith("OK OPEN"), reply
        messages = []
        for line in stars:
            if line.startswith("* MSG "):
                _, _, msg_id, _time, _conversation, _sender, text = line.split(" ", 6)
                messages.append((int(msg_id), text))
        assert reply == f"OK OPEN {target} {len(messages)}", (reply, len(messages))
        return messages

    def ack(self, target: str, upto: int) -> int:
        _, reply = self.command(f"ACK {target} {upto}")
        match = re.fullmatch(rf"OK ACK {re.escape(target)} (\d+)", reply)
        assert match, reply
        return int(match.group(1))


class Ledger:
    """What the senders know: which messages were accepted (OK SENT), and with which id."""

    def __init__(self) -> None:
        self.accepted: dict[str, dict[str, int]] = {"alice": {}, "#group1": {}}  # text -> id
        self.attempted: dict[str, set[str]] = {"alice": set(), "#group1": set()}
        self.acked: dict[str, int] = {"alice": 0, "#group1": 0}  # bob's durable positions


# The conversations, as (what alice sends to, what bob calls it = the ledger's key).
CONVERSATIONS = (("bob", "alice"), ("#group1", "#group1"))


def send(sender: Client, to: str, conversation: str, texts: list[str], ledger: Ledger) -> None:
    """Pipelined SENDs; the text doubles as the client id (both are unique)."""
    ledger.attempted[conversation].update(texts)
    sender.write([f"SEND id={text} {to} {text}" for text in texts])


def send_until_killed(
    server: Server, sender: Client, to: str, conversation: str, ledger: Ledger, round_: int
) -> int:
    """Stream SENDs from a thread; SIGKILL the server at a random moment after the first
    reply, while later SENDs are in its socket buffer, its pending batch or its commit.

    Returns how many were accepted (answered ``OK SENT``) before the kill.
    """
    texts = [f"r{round_}-stream-{i}" for i in range(STREAM)]
    ledger.attempted[conversation].update(texts)
    rng = random.Random(round_)
    kill_after, delay = rng.randrange(1, STREAM // 2), rng.uniform(0.0, KILL_WITHIN)
    first_reply, enough = threading.Event(), threading.Event()

    def write() -> None:
        try:
            for start in range(0, STREAM, 50):
                sender.write([f"SEND id={text} {to} {text}" for text in texts[start : start + 50]])
        except OSError:
            pass  # the server is gone

    def kill() -> None:
        # The moment of the crash: ``delay`` after the first reply, or once ``kill_after``
        # replies came, whichever is first.  (Not a wait for readiness.)
        if first_reply.wait(DEADLINE):
            enough.wait(delay)
        server.kill()

    writer = threading.Thread(target=write, daemon=True)
    killer = threading.Thread(target=kill, daemon=True)
    writer.start()
    killer.start()
    accepted = 0
    try:
        for text in texts:  # what the server sent before it died is still read
            _, reply = sender.reply()
            match = re.fullmatch(r"OK SENT (\d+) \S+", reply)
            assert match, reply
            ledger.accepted[conversation][text] = int(match.group(1))
            accepted += 1
            first_reply.set()
            if accepted >= kill_after:
                enough.set()
    except (ConnectionError, OSError):
        pass
    finally:
        first_reply.set()
        enough.set()
        killer.join(DEADLINE)
        writer.join(DEADLINE)
    assert server.process.poll() is not None, "the server was never killed"
    return accepted


def check_after_restart(bob: Client, alice: Client, ledger: Ledger) -> None:
    for to, target in CONVERSATIONS:
        accepted = ledger.accepted[target]
        unseen = bob.open(target)
        ids = [msg_id for msg_id, _ in unseen]
        texts = [text for _, text in unseen]
        assert ids == sorted(ids) and len(set(ids)) == len(ids), "out of order or repeated"
        assert len(set(texts)) == len(texts), "a message was stored twice"
        assert all(msg_id > ledger.acked[target] for msg_id in ids), "an acknowledged message came back"
        assert set(texts) <= ledger.attempted[target], "a message nobody sent"
        expected = {text: msg_id for text, msg_id in accepted.items() if msg_id > ledger.acked[target]}
        unknown = set(texts) - set(accepted)
        if unknown:
            print(f"{target}: {len(unknown)} messages stored whose sender never heard back")
        missing = set(expected) - set(texts)
        assert not missing, f"{len(missing)} accepted messages were lost, e.g. {sorted(missing)[:3]}"
        assert all(dict(zip(texts, ids))[text] == msg_id for text, msg_id in expected.items())
        # Resending an accepted message stores nothing new and answers with its first id.
        some = sorted(accepted)[:: max(1, len(accepted) // 5)]
        send(alice, to, target, some, ledger)
        for text in some:
            _, reply = alice.reply()
            assert re.fullmatch(rf"OK SENT {accepted[text]} \S+", reply), (text, reply)
        assert bob.open(target) == unseen, "a resend was stored again"


@pytest.mark.parametrize("sync", ["full", "normal"])
def test_sigkill_loses_nothing_accepted_and_redelivers_nothing_acknowledged(tmp_path, sync):
    db = str(tmp_path / "spartan.sqlite3")
    ledger = Ledger()
    servers: list[Server] = []
    clients: list[Client] = []
    try:
        for round_ in range(ROUNDS + 1):
            server = Server(db, str(tmp_path), sync)
            servers.append(server)
            alice, bob = Client(server.port, "alice"), Client(server.port, "bob")
            clients += [alice, bob]
            if round_:
                check_after_restart(bob, alice, ledger)
            if round_ == ROUNDS:
                break
            # Some traffic, then bob acknowledges part of it, durably, before the crash.
            for to, conversation in CONVERSATIONS:
                texts = [f"r{round_}-pre-{conversation.lstrip('#')}-{i}" for i in range(20)]
                send(alice, to, conversation, texts, ledger)
                for text in texts:
                    _, reply = alice.reply()
                    assert reply.startswith("OK SENT "), reply
                    ledger.accepted[conversation][text] = int(reply.split()[2])
                position = ledger.accepted[conversation][texts[9]]
                assert bob.ack(conversation, position) == position
                ledger.acked[conversation] = position
            # Kill while messages are being committed, in each conversation in turn.
            to, conversation = CONVERSATIONS[round_ % 2]
            accepted = send_until_killed(server, alice, to, conversation, ledger, round_)
            print(f"round {round_}: killed after {accepted} of {STREAM} SENDs were accepted")
            for client in (alice, bob):
                client.close()
    except AssertionError:
        print("\n".join(f"--- server {i} ---\n{s.log()}" for i, s in enumerate(servers)))
        raise
    finally:
        for client in clients:
            client.close()
        for server in servers:
            server.stop()


def test_a_database_from_a_newer_version_is_refused_with_a_clear_message(tmp_path):
    db = tmp_path / "spartan.sqlite3"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA application_id = {schema.APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {schema.CURRENT_VERSION + 1}")
    conn.execute("CREATE TABLE messages_from_the_future (x)")
    conn.commit()
    conn.close()
    before = db.read_bytes()
    done = subprocess.run(
        [TWISTD, "-n", "--pidfile=", "spartan", "--port", "tcp:0:interface=127.0.0.1", "--db", str(db)],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=DEADLINE,
    )
    output = (done.stdout + done.stderr).decode("utf-8", "replace")
    assert done.returncode != 0, output
    assert "newer version of Spartan" in output, output
    assert "Traceback" not in output, output
    assert db.read_bytes() == before
