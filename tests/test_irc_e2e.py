"""End to end: a real ``twistd spartan --irc-port``, IRC clients and native clients over
loopback.  The IRC clients are a scripted socket and ``sic`` from Debian's ``sic`` package
(``apt-get install -y sic``): without it the sic test fails, it does not skip."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

TWISTD = str(Path(sys.executable).with_name("twistd"))
TIMEOUT = 15.0  # seconds any one expectation may take


class Lines:
    """Lines from a socket or a pipe, read by a thread, awaited with a deadline."""

    def __init__(self, read) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        thread = threading.Thread(target=self._pump, args=(read,), daemon=True)
        thread.start()

    def _pump(self, read) -> None:
        buffer = b""
        for _ in range(1_000_000):  # bounded: a test never reads this much
            try:
                data = read()
            except OSError:
                data = b""
            if not data:
                break
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                self.queue.put(line.rstrip(b"\r").decode("utf-8", "replace"))
        self.queue.put(None)

    def expect(self, pattern: str, timeout: float = TIMEOUT) -> re.Match:
        """The next line matching ``pattern`` (lines before it are kept in ``seen``)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                line = self.queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(f"closed while waiting for {pattern!r}; seen {self.seen[-20:]}")
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"timed out waiting for {pattern!r}; seen {self.seen[-20:]}")


class LineSocket:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.lines = Lines(lambda: self.sock.recv(65536))

    def send(self, *lines: str) -> None:
        self.sock.sendall(b"".join(line.encode("utf-8") + b"\r\n" for line in lines))

    def expect(self, pattern: str, timeout: float = TIMEOUT) -> re.Match:
        return self.lines.expect(pattern, timeout)

    def close(self) -> None:
        self.sock.close()


def end(proc: subprocess.Popen, sig: int) -> None:
    """Stop a process this test started (killed if it does not go), and close its pipes."""
    proc.send_signal(sig)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


@pytest.fixture
def server(tmp_path):
    """twistd with the demo directory, native and IRC ports on loopback: (native, irc)."""
    with running_server(tmp_path) as ports:
        yield ports


@contextlib.contextmanager
def running_server(tmp_path):
    """twistd in ``tmp_path`` (its database there) while the block runs: (native, irc)."""
    proc = subprocess.Popen(
        [
            TWISTD, "-n", "--pidfile=", "spartan",
            "--port", "tcp:0:interface=127.0.0.1",
            "--irc-port", "tcp:0:interface=127.0.0.1",
            "--server-name", "irc.test",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        log = Lines(lambda: os.read(proc.stdout.fileno(), 65536))
        native = int(log.expect(r"Started server started on port (\d+)").group(1))
        irc = int(log.expect(r"Started IRC gateway on port (\d+)").group(1))
        yield native, irc
    finally:
        end(proc, signal.SIGTERM)


@contextlib.contextmanager
def sic_client(irc_port: int, nick: str):
    """Debian's sic, the real IRC client, logged in as ``nick``: (its output, a typist)."""
    sic = shutil.which("sic")
    assert sic, "the real-IRC-client test needs Debian's sic package: apt-get install -y sic"
    proc = subprocess.Popen(
        [sic, "-h", "127.0.0.1", "-p", str(irc_port), "-n", nick],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        out = Lines(lambda: os.read(proc.stdout.fileno(), 65536))
        out.expect(r"End of /MOTD")

        def type_(line: str) -> None:
            proc.stdin.write(line.encode() + b"\n")
            proc.stdin.flush()

        yield out, type_
    finally:
        end(proc, signal.SIGTERM)


def native_client(port: int, user: str) -> LineSocket:
    client = LineSocket(port)
    client.expect(r"^\* HELLO ")
    client.send(f"LOGIN {user}")
    client.expect(rf"^OK LOGIN {user}$")
    return client


def irc_client(port: int, nick: str, caps: str | None = None) -> LineSocket:
    client = LineSocket(port)
    if caps:
        client.send("CAP LS 302")
        client.expect(r" CAP \* LS ")
        client.send(f"CAP REQ :{caps}")
        client.expect(r" CAP \S+ ACK ")
    client.send(f"NICK {nick}", f"USER {nick} 0 * :{nick} here")
    if caps:
        client.send("CAP END")
    client.expect(rf"^:irc\.test 001 {nick} ")
    client.expect(rf"^:irc\.test 376 {nick} ")
    return client


def test_scripted_irc_client_and_native_client(server) -> None:
    native_port, irc_port = server
    bob = native_client(native_port, "bob")
    # Messages waiting for alice before she connects: a direct one and a group one.
    bob.send("SEND alice while you were away", "SEND #group1 group news")
    bob.expect(r"^OK SENT ")
    bob.expect(r"^OK SENT ")
    alice = irc_client(irc_port, "alice", caps="server-time")
    alice.expect(
        r"^@time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z :bob!bob@irc\.test PRIVMSG alice :while you were away$"
    )
    alice.send("JOIN #group1")
    alice.expect(r"^:alice!alice@irc\.test JOIN #group1$")
    alice.expect(r"^:irc\.test 353 alice = #group1 :alice bob$")
    alice.expect(r"^:irc\.test 366 ")
    alice.expect(r"^@time=\S+ :bob!bob@irc\.test PRIVMSG #group1 :group news$")
    # Both ways, direct and group.
    alice.send("PRIVMSG bob :hi bob", "PRIVMSG #group1 :hi group")
    bob.expect(r"^\* MSG \d+ \S+ alice alice hi bob$")
    bob.expect(r"^\* MSG \d+ \S+ #group1 alice hi group$")
    bob.send("SEND alice hi alice", "SEND #group1 back to the group")
    alice.expect(r"^@time=\S+ :bob!bob@irc\.test PRIVMSG alice :hi alice$")
    alice.expect(r"^@time=\S+ :bob!bob@irc\.test PRIVMSG #group1 :back to the group$")
    # What alice was shown counts as seen: a native login of alice finds nothing unseen.
    # (once its TCP acknowledged the bytes: a moment after they were written)
    other = native_client(native_port, "alice")
    for _ in range(40):
        other.send("UNREAD")
        if other.expect(r"^OK UNREAD.*$").group(0) == "OK UNREAD":
            break
        time.sleep(0.05)
    other.send("OPEN bob", "OPEN #group1")
    other.expect(r"^OK OPEN bob 0$")
    other.expect(r"^OK OPEN #group1 0$")
    # Errors are numerics; the connection stays.
    alice.send("JOIN #nope", "FROB", "PRIVMSG nobody :x", "PING :end")
    alice.expect(r" 403 alice #nope ")
    alice.expect(r" 421 alice FROB ")
    alice.expect(r" 401 alice nobody ")
    alice.expect(r"^:irc\.test PONG irc\.test :end$")
    alice.send("QUIT :bye")
    alice.expect(r"^ERROR :Closing Link")
    for client in (alice, bob, other):
        client.close()


def test_sic_exchanges_messages_with_a_native_client(server) -> None:
    native_port, irc_port = server
    bob = native_client(native_port, "bob")
    with sic_client(irc_port, "alice") as (out, type_):
        type_(":m bob hello from sic")
        bob.expect(r"^\* MSG \d+ \S+ alice alice hello from sic$")
        bob.send("SEND alice hello from bob")
        out.expect(r"<bob> hello from bob")
        type_(":j #group1")
        out.expect(r"JOIN")
        type_(":m #group1 sic in the group")
        bob.expect(r"^\* MSG \d+ \S+ #group1 alice sic in the group$")
        bob.send("SEND #group1 bob in the group")
        out.expect(r"#group1.*<bob> bob in the group")
        bob.close()


def test_a_stalled_irc_reader_is_dropped_and_everything_it_did_not_get_comes_again(tmp_path):
    """A reader that stops reading is dropped past --max-pending; what never left the
    server stays unseen and is replayed at its next registration, in order, once each."""
    from tests.support import TwistdServer

    count = 8000  # under the retention limit and what one OPEN returns (10,000)
    with TwistdServer(tmp_path, "--irc-port", "tcp:0:interface=127.0.0.1", "--max-pending",
                      "20000", "--burst", "0", "--message-log", "off") as server:  # fmt: skip
        irc_port = int(re.search(r"Started IRC gateway on port (\d+)", server.log).group(1))
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window
        stalled.connect(("127.0.0.1", irc_port))
        stalled.sendall(b"NICK bob\r\nUSER bob 0 * :Bob\r\n")
        welcome = b""
        while b" 376 bob " not in welcome:  # read the welcome, then stop reading for good
            welcome += stalled.recv(65536)
        alice = native_client(server.port, "alice")
        for n in range(count):
            alice.send(f"SEND bob message {n:05d} " + "x" * 400)
            if n == 100:  # bob's window is full: let his TCP acknowledge what it holds
                time.sleep(0.3)
        server.wait_for_log("it stopped reading", timeout=30)
        alice.send("PING done")
        alice.expect(r"^OK PONG done$", timeout=30)  # every SEND before it is answered
        # The reader wakes up: it gets what its own kernel holds, then the reset.
        stalled.settimeout(2)
        try:
            while chunk := stalled.recv(65536):
                welcome += chunk
        except OSError:
            pass
        stalled.close()

        again = LineSocket(irc_port)
        again.send("NICK bob", "USER bob 0 * :Bob", "PING :end")
        got = []
        while True:
            line = again.expect(r"PRIVMSG bob :message (\d+)|PONG irc\.test :end|PONG \S+ :end")
            if "PONG" in line.group(0):
                break
            got.append(int(line.group(1)))
        again.close()
        complete = welcome[: welcome.rfind(b"\r\n") + 2]  # a cut line was not read
        read_before = {int(m) for m in re.findall(rb"message (\d+) ", complete)}
        assert got == sorted(got) and len(got) == len(set(got))  # in order, once each
        lost = set(range(count)) - set(got) - read_before
        assert got and not lost, f"{len(lost)} of {count} lost; {len(got)} replayed"
        assert not read_before & set(got)  # nothing it read comes again


def test_topics_notices_and_presence_over_real_sockets_and_a_restart(tmp_path) -> None:
    with running_server(tmp_path) as (native_port, irc_port):
        alice = irc_client(irc_port, "alice")
        alice.send("JOIN #group1")
        alice.expect(r"^:irc\.test 366 alice #group1 ")
        bob = native_client(native_port, "bob")
        alice.expect(r"^:bob!bob@irc\.test JOIN #group1$")  # bob came online natively
        bob.send("TOPIC #group1 plans for friday")
        bob.expect(r"^OK TOPIC #group1 bob \S+Z plans for friday$")
        alice.expect(r"^:bob!bob@irc\.test TOPIC #group1 :plans for friday$")
        alice.send("NOTICE bob :automatic: do not answer", "TOPIC #group1 :plans for saturday")
        bob.expect(r"^\* MSG \d+ \S+ alice alice /notice automatic: do not answer$")
        bob.expect(r"^\* TOPIC #group1 alice \S+Z plans for saturday$")
        bob.send("SEND alice /notice build is green")
        alice.expect(r"^:bob!bob@irc\.test NOTICE alice :build is green$")
        bob.send("QUIT")
        alice.expect(r"^:bob!bob@irc\.test QUIT :Offline$")
        alice.close()
    # The topic is in the database: a new server process shows it on JOIN.
    with running_server(tmp_path) as (native_port, irc_port):
        charlie = irc_client(irc_port, "charlie")
        charlie.send("JOIN #group1")
        charlie.expect(r"^:irc\.test 332 charlie #group1 :plans for saturday$")
        charlie.expect(r"^:irc\.test 333 charlie #group1 alice!alice@irc\.test \d+$")
        eve = native_client(native_port, "eve")
        eve.send("TOPIC #group1")
        eve.expect(r"^OK TOPIC #group1 alice \S+Z plans for saturday$")
        charlie.close(), eve.close()


def test_sic_sets_a_topic_gets_a_notice_and_acts(server) -> None:
    native_port, irc_port = server
    bob = native_client(native_port, "bob")
    with sic_client(irc_port, "alice") as (out, type_):
        type_(":j #group1")
        out.expect(r"JOIN")
        type_(":TOPIC #group1 :from sic")
        bob.expect(r"^\* TOPIC #group1 alice \S+Z from sic$")
        out.expect(r"TOPIC.*from sic")
        bob.send("SEND alice /notice automatic reply")
        out.expect(r"NOTICE.*automatic reply")
        bob.send("SEND #group1 /me waves")
        out.expect(r"#group1.*<bob> \x01ACTION waves\x01")
        type_(":m #group1 \x01ACTION nods\x01")
        bob.expect(r"^\* MSG \d+ \S+ #group1 alice /me nods$")
        bob.close()


def test_what_irc_clients_send_on_connect_is_answered_as_an_ircd_would(server) -> None:
    native_port, irc_port = server
    bob = native_client(native_port, "bob")
    alice = irc_client(irc_port, "alice")
    # irssi's first lines after registration, then a message before joining.
    alice.send("MODE alice +i", "MODE #group1", "MODE #group1 b", "MODE #group1 e", "MODE #group1 I")
    alice.expect(r"^:alice!alice@irc\.test MODE alice :\+i$")
    alice.expect(r"^:irc\.test 324 alice #group1 \+n$")
    alice.expect(r"^:irc\.test 329 alice #group1 \d+$")
    alice.expect(r"^:irc\.test 368 alice #group1 ")
    alice.expect(r"^:irc\.test 349 alice #group1 ")
    alice.expect(r"^:irc\.test 347 alice #group1 ")
    alice.send("PRIVMSG #group1 :not joined yet")
    alice.expect(r"^:irc\.test 404 alice #group1 ")
    alice.send("JOIN #group1", "PRIVMSG #group1 :\x02bold\x02 \x0304red\x03 and a bell\x07")
    bob.expect(r"^\* MSG \d+ \S+ #group1 alice bold red and a bell$")
    assert not any("not joined yet" in line for line in bob.lines.seen)
    alice.send("LUSERS", "TIME", "USERHOST bob", "WHOWAS charlie")
    alice.expect(r"^:irc\.test 251 alice :There are 1 users and 1 invisible on 1 servers$")
    alice.expect(r"^:irc\.test 391 alice irc\.test \d+ 0 :")
    alice.expect(r"^:irc\.test 302 alice :bob=\+bob@irc\.test$")
    alice.expect(r"^:irc\.test 406 alice charlie ")
    alice.expect(r"^:irc\.test 369 alice charlie ")
    alice.close(), bob.close()
