"""
WebSocket framing for the benchmarks' load generator, and a short comparison run.

Theory of operation
-------------------
* The web client's port carries Spartan's own lines, one per WebSocket text message
  (docs/web.md).  So a load generator that speaks the native protocol can drive it once
  its bytes pass through a framing: `WebSocketFraming.outgoing` turns CRLF-ended lines
  into client frames, `incoming` turns server frames back into CRLF-ended lines.
  `LineFraming` is the identity, for the native port: the same driver measures both.
* Client frames must be masked (RFC 6455); the mask is all zeros, a valid key that makes
  masking free, so the figures are the server's and not the generator's.
* `main` is a quick comparison, not a scenario of ``run.py``: one sender pipelines
  ``--count`` messages to one receiver over the native port, then over the WebSocket,
  against a fresh ``twistd`` (in memory, flood control off), and prints messages a
  second for each and their ratio.  Every loop is bounded in count and time.

    .venv/bin/python benchmarks/ws_codec.py --count 50000
"""

from __future__ import annotations

import argparse
import base64
import os
import selectors
import socket
import struct
import subprocess
import sys
import tempfile
import time

CRLF = b"\r\n"
_TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x1, 0x2, 0x8, 0x9, 0xA
_ZERO_MASK = b"\x00\x00\x00\x00"


class LineFraming:
    """The native port: lines as they are."""

    def handshake_request(self) -> bytes:
        return b""

    def outgoing(self, data: bytes) -> bytes:
        return data

    def incoming(self, data: bytes) -> bytes:
        return data


class WebSocketFraming:
    """One client connection's framing: lines out as text frames, frames in as lines."""

    def __init__(self, host: str, port: int, path: str = "/ws") -> None:
        self.host, self.port, self.path = host, port, path
        self._buffer = b""
        self._open = False  # the server's handshake response has been read

    def handshake_request(self) -> bytes:
        key = base64.b64encode(os.urandom(16)).decode()
        return (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()

    def outgoing(self, data: bytes) -> bytes:
        """CRLF-ended lines -> one masked text frame each."""
        frames = []
        for line in data.split(CRLF)[:-1]:
            size = len(line)
            if size < 126:
                head = struct.pack("!BB", 0x80 | _TEXT, 0x80 | size)
            elif size < 1 << 16:
                head = struct.pack("!BBH", 0x80 | _TEXT, 0x80 | 126, size)
            else:
                head = struct.pack("!BBQ", 0x80 | _TEXT, 0x80 | 127, size)
            frames.append(head + _ZERO_MASK + line)  # XOR with zeros: the line itself
        return b"".join(frames)

    def incoming(self, data: bytes) -> bytes:
        """Bytes from the server -> the lines of the whole text frames among them."""
        buffer = self._buffer + data
        if not self._open:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self._buffer = buffer
                return b""
            if not buffer.startswith(b"HTTP/1.1 101"):
                raise ConnectionError(buffer[: buffer.find(b"\r\n")].decode("latin-1"))
            self._open = True
            buffer = buffer[end + 4 :]
        lines, at, size = [], 0, len(buffer)
        while size - at >= 2:
            first, second = buffer[at], buffer[at + 1]
            length, start = second & 0x7F, at + 2
            if length == 126:
                if size - at < 4:
                    break
                (length,) = struct.unpack_from("!H", buffer, at + 2)
                start = at + 4
            elif length == 127:
                if size - at < 10:
                    break
                (length,) = struct.unpack_from("!Q", buffer, at + 2)
                start = at + 10
            if size < start + length:
                break
            opcode = first & 0x0F
            if opcode == _TEXT:
                lines.append(buffer[start : start + length])
            elif opcode == _CLOSE:
                raise EOFError("the server closed the WebSocket")
            at = start + length
        self._buffer = buffer[at:]
        return b"".join(line + CRLF for line in lines)


# -- the comparison run --------------------------------------------------------------------


def _connect(port: int, framing) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(framing.handshake_request())
    return sock


def _read_until(sock, framing, marker: bytes, deadline: float) -> bytes:
    seen = b""
    while marker not in seen:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {marker!r} from the server")
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("closed")
        seen += framing.incoming(chunk)
    return seen


def one_run(port: int, make_framing, count: int, window: int, limit: float) -> float:
    """Messages a second from one sender to one receiver, each delivery counted."""
    deadline = time.monotonic() + limit
    ends = []
    for user in ("alice", "bob"):
        framing = make_framing(port)
        sock = _connect(port, framing)
        _read_until(sock, framing, b"* HELLO", deadline)
        sock.sendall(framing.outgoing(f"LOGIN {user}\r\n".encode()))
        _read_until(sock, framing, b"OK LOGIN", deadline)
        sock.setblocking(False)
        ends.append((sock, framing))
    (sender, out), (receiver, inn) = ends
    selector = selectors.DefaultSelector()
    selector.register(sender, selectors.EVENT_READ, "sender")
    selector.register(receiver, selectors.EVENT_READ, "receiver")
    line = b"SEND bob " + b"x" * 40 + CRLF
    sent = acked = delivered = 0
    started = time.monotonic()
    try:
        while delivered < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{delivered} of {count} delivered in {limit} s")
            if sent < count and sent - acked < window:
                batch = min(window - (sent - acked), count - sent)
                sender.sendall(out.outgoing(line * batch))  # small: the window bounds it
                sent += batch
            for key, _ in selector.select(timeout=1.0):
                try:
                    data = key.fileobj.recv(1 << 20)
                except BlockingIOError:
                    continue
                if not data:
                    raise EOFError(f"{key.data} closed")
                if key.data == "sender":
                    acked += out.incoming(data).count(b"OK SENT")
                else:
                    delivered += inn.incoming(data).count(b"* MSG")
        return count / (time.monotonic() - started)
    finally:
        selector.close()
        for sock, _ in ends:
            sock.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=50_000, help="messages per run")
    parser.add_argument("--window", type=int, default=200, help="unacknowledged SENDs at most")
    parser.add_argument("--runs", type=int, default=3, help="runs of each; the median is shown")
    args = parser.parse_args(argv)
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    native, web = ports
    with tempfile.TemporaryDirectory() as where:
        server = subprocess.Popen(
            [twistd, "-n", "--pidfile=", "spartan", "--db", ":memory:", "--message-log", "off",
             "--burst", "0", "--port", f"tcp:{native}:interface=127.0.0.1",
             "--web-port", f"tcp:{web}:interface=127.0.0.1"],
            cwd=where, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            for _ in range(100):  # up to 10 s for both listeners
                try:
                    socket.create_connection(("127.0.0.1", web), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            figures = {}
            for name, port, make in (
                ("native", native, lambda port: LineFraming()),
                ("websocket", web, lambda port: WebSocketFraming("127.0.0.1", port)),
            ):
                rates = sorted(one_run(port, make, args.count, args.window, 120.0)
                               for _ in range(args.runs))
                figures[name] = rates[len(rates) // 2]
        finally:
            server.terminate()
            server.wait(timeout=10)
    print(f"one sender -> one receiver, {args.count} messages, window {args.window}, "
          f"median of {args.runs}")
    for name, rate in figures.items():
        print(f"  {name:<10} {rate:>10,.0f} messages/s")
    print(f"  websocket / native: {figures['websocket'] / figures['native']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
