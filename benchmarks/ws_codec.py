"""
WebSocket framing for the benchmarks' load generator (`loadgen.WebSocketCodec`).

Theory of operation
-------------------
* The web client's port carries Spartan's own lines, one per WebSocket text message
  (docs/web.md).  So the load generator drives it with the native codec once its bytes
  pass through a framing: `WebSocketFraming.outgoing` turns lines into client frames,
  `incoming` turns server frames back into CRLF-ended lines, and the generator counts and
  checks them as it does on the native port.
* A connection opens with the HTTP upgrade to ``/ws``, with the ``Origin`` of the
  server's own page (the same-origin rule of spartan/web/socket.py).
* Client frames must be masked (RFC 6455); the mask is all zeros, a valid key that makes
  masking free, so the figures are the server's and not the generator's.  Incoming, the
  common frame (a short text message) is sliced in one step, so that the generator stays
  well under a microsecond a line.
"""

from __future__ import annotations

import base64
import os
import struct

CRLF = b"\r\n"
_TEXT, _CLOSE = 0x1, 0x8
_ZERO_MASK = b"\x00\x00\x00\x00"


class WebSocketFraming:
    """One client connection's framing: lines out as text frames, frames in as lines.

    What is written before the server's handshake response is held (`outgoing` returns
    nothing) and handed back by `release` once it is read: twisted.web reads the upgrade
    request as HTTP, so a frame sent behind it in the same packet would be read as HTTP too.
    """

    def __init__(self, host: str, port: int, path: str = "/ws") -> None:
        self.host, self.port, self.path = host, port, path
        self._buffer = b""
        self.open = False  # the server's handshake response has been read
        self._held: list[bytes] = []

    def handshake_request(self) -> bytes:
        key = base64.b64encode(os.urandom(16)).decode()
        where = f"{self.host}:{self.port}"
        # The page's own origin, as a browser on the server's page would send it.
        return (
            f"GET {self.path} HTTP/1.1\r\nHost: {where}\r\nOrigin: http://{where}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()

    def outgoing(self, data: bytes) -> bytes:
        """LF- or CRLF-ended lines -> one masked text frame each (held until open)."""
        frames = []
        for line in data.split(b"\n")[:-1]:
            if line.endswith(b"\r"):
                line = line[:-1]
            size = len(line)
            if size < 126:
                head = bytes((0x80 | _TEXT, 0x80 | size))
            elif size < 1 << 16:
                head = struct.pack("!BBH", 0x80 | _TEXT, 0x80 | 126, size)
            else:
                head = struct.pack("!BBQ", 0x80 | _TEXT, 0x80 | 127, size)
            frames.append(head + _ZERO_MASK + line)  # XOR with zeros: the line itself
        if not self.open:
            self._held += frames
            return b""
        return b"".join(frames)

    def release(self) -> bytes:
        """The frames held until the handshake response, once it is read."""
        held, self._held = b"".join(self._held), []
        return held

    def incoming(self, data: bytes) -> bytes:
        """Bytes from the server -> the CRLF-ended lines of the whole text frames among them."""
        buffer = self._buffer + data if self._buffer else data
        if not self.open:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self._buffer = buffer
                return b""
            if not buffer.startswith(b"HTTP/1.1 101"):
                raise ConnectionError(buffer[: buffer.find(b"\r\n")].decode("latin-1"))
            self.open = True
            buffer = buffer[end + 4 :]
        lines, at, size = [], 0, len(buffer)
        append = lines.append
        while size - at >= 2:
            length = buffer[at + 1]
            if length < 126 and buffer[at] == 0x81:  # nearly every frame: a short text message
                end = at + 2 + length
                if end > size:
                    break
                append(buffer[at + 2 : end])
                at = end
                continue
            first, length, start = buffer[at], length & 0x7F, at + 2
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
                append(buffer[start : start + length])
            elif opcode == _CLOSE:
                raise ConnectionError("the server closed the WebSocket")
            at = start + length  # a ping, pong or binary frame: not a line
        self._buffer = buffer[at:]
        if not lines:
            return b""
        lines.append(b"")
        return CRLF.join(lines)
