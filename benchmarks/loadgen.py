"""
Load generator for the Spartan benchmarks: raw non-blocking sockets on one ``selectors`` loop.

Theory of operation
-------------------
* One loop, several protocols: a codec knows the bytes of one protocol (how to log in,
  send a batch of messages, ping, quit; which lines are deliveries, acknowledgements,
  errors) and the ``Loop`` knows only sockets, windows and counting.  ``NativeCodec`` speaks
  Spartan's line protocol (``SEND`` answered by ``OK SENT``), ``IRCCodec`` speaks IRC
  (``PRIVMSG``, which has no acknowledgement: each batch of a window ends with
  ``PING :a<n>`` and its ``PONG`` acknowledges the ``n`` messages before it, since a server
  answers a connection's lines in order).  ``WebSocketCodec`` is the native codec through
  a framing (benchmarks/ws_codec.py): each connection gets its own framing object, opens
  with its handshake, and the ``Loop`` passes the bytes it writes and reads through it
  (``_send``, ``_received``: the only places).  Another protocol is one more codec in
  ``CODECS``.
* Every message text is ``<code>.<sent>``: ``code`` (10 digits) is ``sender * STRIDE + seq``
  and ``sent`` (16 digits) the sender's ``time.monotonic_ns() // 1000``.  Both have fixed
  widths and end the delivered line in both protocols (``* MSG ... <text>``, ``:nick!...
  PRIVMSG <target> :<text>``), so a receiver finds them by slicing the end of each line: no
  parsing per field, no regex.  CLOCK_MONOTONIC is system-wide, so latencies hold across
  processes.
* Lines are handled in bulk: one ``split`` per read, one list comprehension for the codes
  of a whole read, latency from every ``LATENCY_SAMPLE``-th line only.  This keeps the
  generator at well under a microsecond per delivered line so that the server, not the
  generator, is the bottleneck (the runner pins the two to different CPUs).
* A sender keeps at most ``window`` messages unacknowledged; each reply read lets it
  write that many more, in one ``send``.  It stops after ``count`` messages or ``seconds``,
  whichever comes first; the receivers then get ``drain`` seconds to see the rest.
* Exactly once: each receiver keeps every code it saw; at the end its sorted codes must equal
  exactly the codes it should have got (every acknowledged message of every sender that
  writes to it).  A lost, duplicated or foreign message fails the run.

Every loop here is bounded in count and in time.
"""

from __future__ import annotations

import os
import resource
import selectors
import socket
import struct
import sys
import time
from array import array

if not __package__:  # run as a script: the checkout's root makes ``benchmarks`` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.ws_codec import WebSocketFraming  # noqa: E402

STRIDE = 10_000_000  # codes: sender * STRIDE + seq (so seq < 10 M, senders < 1000)
LATENCY_SAMPLE = 8  # one latency sample every N delivered lines of a read
RECV_SIZE = 1 << 18
LOGIN_BATCH = 400  # connections opened (and logged in) at a time: stays under the backlog

_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


def now_us() -> int:
    return time.monotonic_ns() // 1000


def raise_file_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def percentile(values, p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(p / 100 * (len(ordered) - 1)))))
    return ordered[index]


class BenchError(Exception):
    pass


class NativeCodec:
    """Spartan's line protocol (docs/protocol.md)."""

    name = "native"
    framing = None  # lines as they are on the socket
    delivery_marker = b"* MSG "
    ping_line, quit_line = b"PING p\n", b"QUIT\n"
    ready = b"OK LOGIN"

    def login(self, user: str, channels=()) -> bytes:
        return b"LOGIN %s\n" % user.encode()  # a native session gets every group's messages

    def login_error(self, chunk: bytes) -> str | None:
        return chunk.decode(errors="replace") if b"ERR" in chunk else None

    def messages(self, target: bytes, first: int, sent_us: int, count: int, window: int) -> bytes:
        return b"".join([b"SEND %s %010d.%016d\n" % (target, first + i, sent_us) for i in range(count)])

    @staticmethod
    def is_delivery(line: bytes) -> bool:
        return line.startswith(b"* MSG ")

    def replies(self, lines: list[bytes]):
        """(messages acknowledged, pongs, the first error line or None)."""
        acked = pongs = 0
        for line in lines:
            if line.startswith(b"OK SENT "):
                acked += 1
            elif line.startswith(b"OK PONG"):
                pongs += 1
            elif line.startswith(b"ERR "):
                return acked, pongs, line
            # other pushed lines (* PING, * NOTICE) are ignored
        return acked, pongs, None


class IRCCodec:
    """IRC as Spartan's gateway and benchmarks/irc_relay.py speak it: nick = user, channel
    ``#group``; acknowledgements by ``PING``/``PONG`` (see the theory of operation)."""

    name = "irc"
    framing = None
    delivery_marker = b" PRIVMSG "
    ping_line, quit_line = b"PING :p\r\n", b"QUIT :bench\r\n"
    ready = b":spartan-bench-ready"
    ACK_BATCHES = 4  # PINGs per window: its first batch is acknowledged before its last is sent

    def login(self, user: str, channels=()) -> bytes:
        name = user.encode()
        joins = b"".join(b"JOIN #%s\r\n" % c.encode() for c in channels)
        return b"NICK %s\r\nUSER %s 0 * :%s\r\n%sPING %s\r\n" % (name, name, name, joins, self.ready)

    def login_error(self, chunk: bytes) -> str | None:
        for line in chunk.split(b"\r\n"):
            if self._is_error(line):
                return line.decode(errors="replace")
        return None

    def messages(self, target: bytes, first: int, sent_us: int, count: int, window: int) -> bytes:
        batch = max(1, window // self.ACK_BATCHES)
        out = []
        for start in range(0, count, batch):
            n = min(batch, count - start)
            base = first + start
            out += [b"PRIVMSG %s :%010d.%016d\r\n" % (target, base + i, sent_us) for i in range(n)]
            out.append(b"PING :a%d\r\n" % n)
        return b"".join(out)

    @staticmethod
    def is_delivery(line: bytes) -> bool:
        return b" PRIVMSG " in line

    @staticmethod
    def _is_error(line: bytes) -> bool:
        if line.startswith(b"ERROR"):
            return True
        words = line.split(b" ", 3)
        if len(words) < 3:
            return False
        command = words[1]
        # 4xx/5xx numerics are errors (301 RPL_AWAY and the like are not); Spartan tells of
        # a message it could not deliver with a NOTICE.
        if len(command) == 3 and command.isdigit() and command[:1] in (b"4", b"5"):
            return True
        return command == b"NOTICE" and b"not delivered" in line

    def replies(self, lines: list[bytes]):
        acked = pongs = 0
        for line in lines:
            words = line.split(b" ")
            if len(words) > 2 and words[1] == b"PONG":
                token = words[-1].lstrip(b":")
                if token.startswith(b"a"):
                    acked += int(token[1:])
                elif token == b"p":
                    pongs += 1
            elif self._is_error(line):
                return acked, pongs, line
            # JOIN of other members, NAMES, MOTD, PING from the server: nothing to count
        return acked, pongs, None


class WebSocketCodec(NativeCodec):
    """The native protocol over the web port's WebSocket: one line per text message."""

    name = "ws"

    @staticmethod
    def framing(host: str, port: int) -> WebSocketFraming:
        return WebSocketFraming(host, port)


NATIVE, IRC, WS = NativeCodec(), IRCCodec(), WebSocketCodec()
CODECS = {codec.name: codec for codec in (NATIVE, IRC, WS)}


class Conn:
    __slots__ = (
        "sock", "user", "framing", "rbuf", "wbuf", "logged_in", "closed",
        # receiving
        "codes", "latencies", "expect_from",
        # sending
        "sender", "target", "window", "limit", "sent", "acked", "errors", "stop_at",
        "ack_latencies", "sent_times",
        # ping-pong
        "pongs", "ping_limit", "ping_at",
    )

    def __init__(self, sock: socket.socket, user: str, framing=None) -> None:
        self.sock = sock
        self.user = user
        self.framing = framing  # bytes in and out pass through it (WebSocket), or None
        self.rbuf = b""
        self.wbuf = b""
        self.logged_in = False
        self.closed = False
        self.codes = array("q")
        self.latencies: list[int] = []
        self.expect_from: list[Conn] = []
        self.sender = -1
        self.target = b""
        self.window = 0
        self.limit = 0
        self.sent = 0
        self.acked = 0
        self.errors = 0
        self.stop_at = 0.0
        self.ack_latencies: list[int] = []
        self.sent_times: list[int] | None = None
        self.pongs = 0
        self.ping_limit = 0
        self.ping_at = 0


class Loop:
    """One selector over many connections; the only place that reads and writes sockets."""

    def __init__(self, host: str, port: int, codec=NATIVE,
                 source_hosts: list[str] | None = None) -> None:
        self.host, self.port = host, port
        self.codec = codec
        self.source_hosts = source_hosts or []
        self.sel = selectors.DefaultSelector()
        self.conns: list[Conn] = []
        self.last_delivery_us = 0
        self.delivered = 0

    # -- connections ------------------------------------------------------------------------

    def open(self, users: list[str], deadline: float, per_source: int = 20_000,
             channels=()) -> list[Conn]:
        """Connect and log in ``users`` (one connection each, joined to ``channels`` where
        the protocol has joining), a batch at a time."""
        opened: list[Conn] = []
        for start in range(0, len(users), LOGIN_BATCH):
            batch = []
            for i, user in enumerate(users[start : start + LOGIN_BATCH], start):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                if self.source_hosts:
                    sock.bind((self.source_hosts[(len(self.conns) // per_source) % len(self.source_hosts)], 0))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.settimeout(max(0.1, deadline - time.monotonic()))
                try:
                    sock.connect((self.host, self.port))
                except OSError as e:
                    sock.close()
                    raise BenchError(f"connect: {e}") from None
                sock.setblocking(False)
                framing = self.codec.framing and self.codec.framing(self.host, self.port)
                conn = Conn(sock, user, framing)
                self.conns.append(conn)
                self.sel.register(sock, _READ, conn)
                if framing is not None:
                    self._write(conn, framing.handshake_request())
                self._send(conn, self.codec.login(user, channels))
                batch.append(conn)
            self.run(lambda: all(c.logged_in for c in batch), deadline)
            if not all(c.logged_in for c in batch):
                raise BenchError(f"login timed out ({sum(c.logged_in for c in batch)}/{len(batch)} of a batch)")
            opened.extend(batch)
        return opened

    def close_all(self) -> None:
        for conn in self.conns:
            if not conn.closed:
                self.sel.unregister(conn.sock)
                # Reset rather than close: no TIME_WAIT left behind on the generator's side,
                # so repeated runs of 10,000 connections do not run out of ephemeral ports.
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.sock.close()
                conn.closed = True
        self.conns.clear()
        self.sel.close()

    # -- the loop ---------------------------------------------------------------------------

    def run(self, done, deadline: float, tick=None) -> bool:
        """Serve sockets until ``done()`` or ``deadline`` (time.monotonic); True if done."""
        select = self.sel.select
        while not done():
            now = time.monotonic()
            if now >= deadline:
                return False
            if tick is not None:
                tick()
            for key, events in select(min(0.05, deadline - now)):
                conn = key.data
                if events & _READ:
                    try:
                        data = conn.sock.recv(RECV_SIZE)
                    except BlockingIOError:
                        data = None
                    except OSError as e:
                        raise BenchError(f"{conn.user}: {e}") from None
                    if data is not None:
                        if not data:
                            raise BenchError(f"{conn.user}: the server closed the connection")
                        self._received(conn, data)
                if events & _WRITE and conn.wbuf:
                    self._flush(conn)
        return True

    def _send(self, conn: Conn, data: bytes) -> None:
        if conn.framing is not None:
            data = conn.framing.outgoing(data)
        self._write(conn, data)

    def _write(self, conn: Conn, data: bytes) -> None:
        if not data:
            return
        if conn.wbuf:
            conn.wbuf += data
            return
        try:
            n = conn.sock.send(data)
        except BlockingIOError:
            n = 0
        if n < len(data):
            conn.wbuf = data[n:]
            self.sel.modify(conn.sock, _READ | _WRITE, conn)

    def _flush(self, conn: Conn) -> None:
        try:
            n = conn.sock.send(conn.wbuf)
        except BlockingIOError:
            return
        conn.wbuf = conn.wbuf[n:]
        if not conn.wbuf:
            self.sel.modify(conn.sock, _READ, conn)

    # -- lines in, in bulk ------------------------------------------------------------------

    def _received(self, conn: Conn, data: bytes) -> None:
        framing = conn.framing
        if framing is not None:
            was_open = framing.open
            data = framing.incoming(data)
            if framing.open and not was_open:  # the handshake is through: what waited goes out
                self._write(conn, framing.release())
            if not data:
                return
        buf = conn.rbuf + data if conn.rbuf else data
        end = buf.rfind(b"\n") + 1
        if not end:
            conn.rbuf = buf
            return
        conn.rbuf = buf[end:]
        chunk = buf[:end]
        codec = self.codec
        if not conn.logged_in:
            at = chunk.find(codec.ready)
            error = codec.login_error(chunk if at < 0 else chunk[:at])
            if error:
                raise BenchError(f"login {conn.user}: {error}")
            if at < 0:
                return
            conn.logged_in = True
            chunk = chunk[chunk.index(b"\n", at) + 1 :]
            if not chunk:
                return
        lines = chunk.split(b"\r\n")
        lines.pop()  # after the last CRLF
        n_msg = chunk.count(codec.delivery_marker)
        if n_msg != len(lines):
            is_delivery = codec.is_delivery
            replies = [line for line in lines if not is_delivery(line)]
            lines = [line for line in lines if is_delivery(line)]
            self._replies(conn, replies)
        if lines:
            now = now_us()
            conn.codes.extend(map(int, [line[-27:-17] for line in lines]))
            conn.latencies.extend([now - int(line[-16:]) for line in lines[::LATENCY_SAMPLE]])
            self.delivered += len(lines)
            self.last_delivery_us = now

    def _replies(self, conn: Conn, replies: list[bytes]) -> None:
        ok, pongs, error = self.codec.replies(replies)
        if error is not None:
            conn.errors += 1
            raise BenchError(f"{conn.user}: {error.decode(errors='replace')}")
        if pongs:
            conn.pongs += pongs
            if conn.ping_at:  # ping-pong: one PING in flight, the next when its PONG is back
                now = now_us()
                conn.ack_latencies.append(now - conn.ping_at)
                conn.ping_at = 0
                if conn.pongs < conn.ping_limit:
                    self.ping(conn)
        if ok:
            if conn.sent_times is not None:  # light load: one in flight, RTT of OK SENT
                now = now_us()
                conn.ack_latencies.extend(now - t for t in conn.sent_times[:ok])
                del conn.sent_times[:ok]
            conn.acked += ok
            self._refill(conn)

    def _refill(self, conn: Conn) -> None:
        room = min(conn.window - (conn.sent - conn.acked), conn.limit - conn.sent)
        if room <= 0 or time.monotonic() >= conn.stop_at:
            return
        t = now_us()
        first = conn.sender * STRIDE + conn.sent
        self._send(conn, self.codec.messages(conn.target, first, t, room, conn.window))
        if conn.sent_times is not None:
            conn.sent_times.extend([t] * room)
        conn.sent += room

    def ping(self, conn: Conn) -> None:
        conn.ping_at = now_us()
        self._send(conn, self.codec.ping_line)


# -- scenarios ------------------------------------------------------------------------------


def _start_senders(loop: Loop, senders: list[tuple[Conn, bytes]], window: int, count: int, seconds: float):
    start = time.monotonic()
    for index, (conn, target) in enumerate(senders):
        conn.sender, conn.target, conn.window, conn.limit = index, target, window, count
        conn.stop_at = start + seconds
    for conn, _ in senders:
        loop._refill(conn)
    return start


def _finish(loop: Loop, senders: list[Conn], receivers: list[Conn], drain: float, deadline: float):
    """Wait for every reply and every delivery, then check exactly-once; return elapsed s."""

    def expected(conn: Conn) -> int:
        return sum(s.acked for s in conn.expect_from)

    def all_acked():
        return all(s.acked == s.sent for s in senders)

    def sending_done():
        return all(s.acked == s.sent and (s.sent >= s.limit or time.monotonic() >= s.stop_at) for s in senders)

    # Senders re-check their time limit on each reply; a tick makes sure idle ones stop too.
    loop.run(sending_done, deadline)
    if not all_acked():
        missing = sum(s.sent - s.acked for s in senders)
        raise BenchError(f"{missing} SENDs never got their OK SENT")
    loop.run(lambda: all(len(r.codes) >= expected(r) for r in receivers), time.monotonic() + drain)
    # Allow a moment for duplicates to show up, then check.
    loop.run(lambda: False, time.monotonic() + 0.05)
    problems = []
    for r in receivers:
        want = array("q")
        for s in r.expect_from:
            want.extend(range(s.sender * STRIDE, s.sender * STRIDE + s.acked))
        got = sorted(r.codes)
        if got != sorted(want):
            got_set, want_set = set(got), set(want)
            lost = len(want_set - got_set)
            extra = len(got_set - want_set)
            dups = len(got) - len(got_set)
            problems.append(f"{r.user}: {lost} lost, {dups} duplicated, {extra} unexpected")
    if problems:
        raise BenchError("exactly-once check failed: " + "; ".join(problems[:5]))


def _latency_summary(conns: list[Conn]) -> dict:
    lat = [v for c in conns for v in c.latencies]
    return {"p50_ms": percentile(lat, 50) / 1000, "p99_ms": percentile(lat, 99) / 1000, "samples": len(lat)}


def fanout(host, port, members=50, senders=5, window=64, count=200_000, seconds=3.0, drain=10.0,
           timeout=60.0, group="fan", prefix="f", codec=NATIVE) -> dict:
    deadline = time.monotonic() + timeout
    loop = Loop(host, port, codec)
    try:
        conns = loop.open([f"{prefix}{i}" for i in range(members)], deadline, channels=[group])
        sending = conns[:senders]
        for r in conns:
            r.expect_from = [s for s in sending if s is not r]
        cpu = time.process_time()
        start = _start_senders(loop, [(c, b"#" + group.encode()) for c in sending], window, count, seconds)
        start_us = now_us()
        _finish(loop, sending, conns, drain, deadline)
        elapsed = (loop.last_delivery_us - start_us) / 1e6
        cpu = time.process_time() - cpu
        delivered = sum(len(c.codes) for c in conns)
        sent = sum(c.acked for c in sending)
        return {
            "scenario": "fanout", "members": members, "senders": senders, "window": window,
            "messages": sent, "deliveries": delivered, "seconds": round(elapsed, 3),
            "deliveries_per_s": delivered / elapsed, "exactly_once": True,
            **_latency_summary(conns), "started": start,
            "generator_cpu": round(cpu / elapsed, 2),  # near 1.0: the generator was the limit
        }
    finally:
        loop.close_all()


def direct(host, port, pairs=50, window=32, count=200_000, seconds=3.0, drain=10.0, timeout=60.0,
           prefix="d", codec=NATIVE) -> dict:
    deadline = time.monotonic() + timeout
    loop = Loop(host, port, codec)
    try:
        conns = loop.open([f"{prefix}{i}" for i in range(2 * pairs)], deadline)
        plan = []
        for i in range(pairs):
            a, b = conns[2 * i], conns[2 * i + 1]
            a.expect_from, b.expect_from = [b], [a]
            plan += [(a, b.user.encode()), (b, a.user.encode())]
        cpu = time.process_time()
        _start_senders(loop, plan, window, count, seconds)
        start_us = now_us()
        _finish(loop, conns, conns, drain, deadline)
        elapsed = (loop.last_delivery_us - start_us) / 1e6
        cpu = time.process_time() - cpu
        delivered = sum(len(c.codes) for c in conns)
        return {
            "scenario": "direct", "pairs": pairs, "window": window,
            "messages": sum(c.acked for c in conns), "deliveries": delivered,
            "seconds": round(elapsed, 3), "messages_per_s": delivered / elapsed,
            "exactly_once": True, **_latency_summary(conns),
            "generator_cpu": round(cpu / elapsed, 2),
        }
    finally:
        loop.close_all()


def light(host, port, count=3000, seconds=10.0, timeout=60.0, users=("l0", "l1"),
          codec=NATIVE) -> dict:
    """One message in flight: a message from one user to the other, the next when it is
    acknowledged; latency = send to the other's receipt."""
    deadline = time.monotonic() + timeout
    loop = Loop(host, port, codec)
    try:
        a, b = loop.open(list(users), deadline)
        b.expect_from = [a]
        a.sent_times = []
        _start_senders(loop, [(a, users[1].encode())], 1, count, seconds)
        # window 1: the next SEND goes out when the OK SENT comes back; wait for delivery
        # of every message before measuring (MSG to b and OK SENT to a race, both count).
        _finish(loop, [a], [b], 10.0, deadline)
        lat = b.latencies
        return {
            "scenario": "light", "messages": a.acked, "exactly_once": True,
            "p50_ms": percentile(lat, 50) / 1000, "p99_ms": percentile(lat, 99) / 1000,
            "samples": len(lat),
            "ok_p50_ms": percentile(a.ack_latencies, 50) / 1000,
            "ok_p99_ms": percentile(a.ack_latencies, 99) / 1000,
        }
    finally:
        loop.close_all()


def held(host, port, server_pid: int, connections=10_000, timeout=120.0, prefix="h",
         source_hosts=None, settle=1.0, codec=NATIVE) -> dict:
    """Idle logged-in connections: how many are reached, and server memory per connection."""
    deadline = time.monotonic() + timeout
    loop = Loop(host, port, codec, source_hosts)
    try:
        # Warm up: one login and logout so lazily-built code paths are in the baseline.
        loop.open([f"{prefix}0"], deadline)
        loop.close_all()
        loop = Loop(host, port, codec, source_hosts)
        time.sleep(settle)
        before = rss_kib(server_pid)
        reached = 0
        error = None
        try:
            loop.open([f"{prefix}{i}" for i in range(connections)], deadline)
            reached = len(loop.conns)
        except (BenchError, OSError) as e:
            reached = sum(c.logged_in for c in loop.conns)
            error = str(e)
        loop.run(lambda: False, time.monotonic() + settle)
        after = rss_kib(server_pid)
        return {
            "scenario": "held", "wanted": connections, "reached": reached,
            "rss_before_kib": before, "rss_after_kib": after,
            "bytes_per_conn": (after - before) * 1024 / reached if reached else float("nan"),
            "error": error,
        }
    finally:
        loop.close_all()


def register(host, port, users=10_000, seconds=20.0, timeout=60.0, prefix="h", codec=NATIVE) -> dict:
    """Logins (native ``LOGIN``, IRC ``NICK``/``USER`` to the ``001`` welcome) one batch of
    connections at a time, each batch quitting before the next: registrations per second.
    Stops after ``seconds`` if not all ``users`` are through, and counts those that were."""
    start = time.monotonic()
    stop = start + min(seconds, timeout)
    names = [f"{prefix}{i}" for i in range(users)]
    registered = 0
    error = None
    while registered < users and time.monotonic() < stop:
        loop = Loop(host, port, codec)
        try:
            batch = names[registered : registered + LOGIN_BATCH]
            try:
                loop.open(batch, stop)
            except BenchError as e:
                done = sum(c.logged_in for c in loop.conns)
                if time.monotonic() < stop:  # not the time bound: a real failure
                    raise
                registered += done
                error = str(e)
                break
            registered += len(batch)
            for conn in loop.conns:
                loop._send(conn, codec.quit_line)
        finally:
            loop.close_all()
    elapsed = time.monotonic() - start
    return {
        "scenario": "register", "wanted": users, "registered": registered,
        "finished": registered == users, "seconds": round(elapsed, 3),
        "registrations_per_s": registered / elapsed, "stopped_by": error and "time bound",
    }


def pingpong(host, port, count=3000, timeout=60.0, user="l0", codec=NATIVE) -> dict:
    """One PING in flight on one logged-in connection: the round trip to its PONG."""
    deadline = time.monotonic() + timeout
    loop = Loop(host, port, codec)
    try:
        (conn,) = loop.open([user], deadline)
        conn.ping_limit = count
        loop.ping(conn)
        if not loop.run(lambda: conn.pongs >= count, deadline):
            raise BenchError(f"ping-pong: {conn.pongs} of {count} PONGs before the timeout")
        lat = conn.ack_latencies
        return {
            "scenario": "pingpong", "pings": count, "samples": len(lat),
            "p50_ms": percentile(lat, 50) / 1000, "p99_ms": percentile(lat, 99) / 1000,
        }
    finally:
        loop.close_all()


if __name__ == "__main__":  # a manual run against a server that is already up
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("scenario", choices=["fanout", "direct", "light", "pingpong"])
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--protocol", choices=sorted(CODECS), default="native")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    raise_file_limit()
    run = {"fanout": fanout, "direct": direct, "light": light, "pingpong": pingpong}[args.scenario]
    kwargs = {"seconds": args.seconds} if args.scenario in ("fanout", "direct") else {}
    print(json.dumps(run("127.0.0.1", args.port, codec=CODECS[args.protocol], **kwargs), indent=1))
