"""
The WebSocket front end: the native protocol, one line per WebSocket text message.

Theory of operation
-------------------
* A `LineSocket` is an autobahn WebSocket.  When it opens, it asks the native factory for
  a protocol (`NativeFactory.buildProtocol`, which also counts the connection against
  the shared limits) and connects it to a `LineTransport`: the native protocol cannot
  tell it from TCP.
* In: a text message is one line, fed to the native protocol with its LF.  A binary
  message, or a text message holding a line break, is answered ``ERR`` in its turn
  (`SpartanProtocol.refuse_line`); a message over ``--max-line`` gets the native port's
  ``ERR line-too-long``.
* Reading fast: nearly every frame a client sends is a whole, masked, valid UTF-8 text
  message of one line.  `LineSocket.dataReceived` reads the run of such frames at the
  start of each read itself and hands their lines to the native protocol in one call, as
  the native port hands it the lines of a read; autobahn's reader (a dozen Python calls, a
  masker object and a copy of its buffer per frame) gets the first frame that is anything
  else, and all after it: binary, control, fragmented or invalid frames, line breaks,
  sizes past the limits, and every byte before the WebSocket is open or while autobahn is
  inside a frame.  So its checks and answers are unchanged.  An incomplete frame at the end
  of a read waits in autobahn's buffer, untouched, for the next read.  This relies on the
  factory's options: no compression, no automatic pings, no frame logging; and autobahn's
  traffic statistics do not count these frames (nothing here reads them).
* Out: what the native protocol writes (whole CRLF-ended lines, often several at once)
  goes out as one text message per line, without the CRLF, framed here (`text_frames`)
  and written at once: a batch of lines stays one write.  Frame heads come from a table
  by size, and the factory remembers the last batch it framed: a group's message reaches
  its members' connections as the same lines in the same turn, framed once.
* Back-pressure: the native protocol registers its producer on the `LineTransport`, which
  puts it on the TCP (or TLS) transport under the WebSocket in place of twisted.web's
  own; so a peer that stops reading trips the native slow-reader limit, and the flood
  guard pauses and resumes reading the socket itself.
"""

from __future__ import annotations

import struct

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

CRLF = b"\r\n"
# Messages up to this many times --max-line are read whole and refused with
# ``ERR line-too-long``; a bigger one closes the WebSocket (1009), as memory is at stake.
READ_LIMIT_LINES = 16


_from_bytes = int.from_bytes  # one lookup, not two, per frame


def unmask(payload: bytes, mask: bytes) -> bytes:
    """A client frame's payload XORed with its 4-byte key (RFC 6455, 5.3): one big-integer
    XOR, in C, instead of autobahn's masker object per frame."""
    size = len(payload)
    key = (mask * (size // 4 + 1))[:size]
    return (_from_bytes(payload, "little") ^ _from_bytes(key, "little")).to_bytes(size, "little")


def read_line_frames(buffer: bytes, limit: int) -> tuple[list[bytes], int, bool]:
    """The run of whole, masked, single-frame text messages of one line each at the start
    of ``buffer``, up to ``limit`` bytes of payload each: (their payloads unmasked, where
    the run ends, whether what follows is an incomplete frame that may still be one)."""
    lines = []
    at, size = 0, len(buffer)
    while size - at >= 2:
        second = buffer[at + 1]
        if buffer[at] != 0x81 or second < 0x80:  # not a final, masked text frame
            return lines, at, False
        length = second & 0x7F
        start = at + 6
        if length == 126:
            if size - at < 4:
                return lines, at, True
            length = (buffer[at + 2] << 8) | buffer[at + 3]
            if length < 126:  # not the shortest form: autobahn refuses it
                return lines, at, False
            start = at + 8
        elif length == 127:
            return lines, at, False
        if length > limit:
            return lines, at, False
        end = start + length
        if end > size:
            return lines, at, True
        line = unmask(buffer[start:end], buffer[start - 4 : start])
        if b"\n" in line or b"\r" in line[:-1]:
            return lines, at, False
        if not line.isascii():
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return lines, at, False
        lines.append(line)
        at = end
    return lines, at, True


class _FrameHeads(dict):
    """Size -> the head of a whole, unmasked text frame of that size (RFC 6455, 5.2); no
    extension is ever negotiated (`LineSocketFactory`), so this is all a head can be.
    Sizes are bounded by the line limit, so the table stays small."""

    def __missing__(self, size: int) -> bytes:
        if size < 126:
            head = bytes((0x81, size))
        elif size < 1 << 16:
            head = struct.pack("!BBH", 0x81, 126, size)
        else:
            return struct.pack("!BBQ", 0x81, 127, size)  # not kept: past any line limit
        self[size] = head
        return head


FRAME_HEADS = _FrameHeads()


def text_frame(payload: bytes) -> bytes:
    """A whole, unmasked text message, as a server sends it."""
    return FRAME_HEADS[len(payload)] + payload


def text_frames(lines: list[bytes]) -> bytes:
    """One text message per line, joined (heads and lines interleaved: no copy per line)."""
    heads = [FRAME_HEADS[len(line)] for line in lines]
    parts = heads + lines  # the right length; then filled in turn
    parts[::2] = heads
    parts[1::2] = lines
    return b"".join(parts)


class LineTransport:
    """The transport the native protocol writes to: lines become text messages."""

    disconnecting = False  # loseConnection was called: lines already written still go out
    closed = False  # the WebSocket is closing or gone: nothing more goes out

    def __init__(self, socket: LineSocket, clock) -> None:
        self.socket = socket
        self.clock = clock
        self._partial = b""  # a line the protocol has not finished writing (never, so far)

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        # One write of all the frames: what the native protocol batched stays batched
        # (autobahn's sendMessage would write, and log, once per line).
        if self._partial or not data.endswith(CRLF):
            lines = (self._partial + data).split(CRLF)
            self._partial = lines.pop()
            self.socket.transport.write(text_frames(lines))
        else:
            self.socket.transport.write(self.socket.factory.framed(data))

    def writeSequence(self, data) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        # Like TCP's: what is written until the end of this turn still goes out (the
        # native protocol flushes a batch after it decided to close), then the close.
        if not self.disconnecting:
            self.disconnecting = True
            self.clock.callLater(0, self._close)

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self.socket.sendClose(1000)

    def abortConnection(self) -> None:
        self.disconnecting = self.closed = True
        self.socket.transport.abortConnection()

    def getPeer(self):
        return self.socket.transport.getPeer()

    def getHost(self):
        return self.socket.transport.getHost()

    def setTcpNoDelay(self, enabled: bool) -> None:
        set_no_delay = getattr(self.socket.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(enabled)

    def registerProducer(self, producer, streaming: bool) -> None:
        transport = self.socket.transport
        # twisted.web's channel is still registered on the socket it handed over.
        transport.unregisterProducer()
        transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.socket.transport.unregisterProducer()

    def pauseProducing(self) -> None:
        self.socket.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.socket.transport.resumeProducing()

    def stopProducing(self) -> None:
        self.loseConnection()


class LineSocket(WebSocketServerProtocol):
    factory: LineSocketFactory
    line_protocol = None  # the native protocol, once open

    def onConnect(self, request):
        host = request.headers.get("host", "")  # request.host has lost the port
        if not self.factory.origin_allowed(request.headers.get("origin"), host):
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "This page's origin may not connect.")
        return None

    def dataReceived(self, data: bytes) -> None:
        # The messages of one read are one batch, as the lines of one read are on the
        # native port: their replies and deliveries go out in one write per connection.
        with self.factory.native.batch:
            if self.line_protocol is not None and self.current_frame is None and (
                self.state == WebSocketProtocol.STATE_OPEN
            ):
                if self.data:
                    data, self.data = self.data + data, b""
                lines, end, maybe_more = read_line_frames(data, self.read_limit)
                if lines and not self.line_transport.closed:
                    lines.append(b"")
                    self.line_protocol.dataReceived(b"\n".join(lines))
                data = data[end:]
                if maybe_more:  # nothing, or the start of a frame: autobahn's buffer keeps it
                    self.data = data
                    return
            super().dataReceived(data)

    def onOpen(self) -> None:
        limits = [n for n in (self.maxFramePayloadSize, self.maxMessagePayloadSize) if n > 0]
        self.read_limit = min(limits, default=1 << 16)  # past it, autobahn's reader decides
        self.line_transport = LineTransport(self, self.factory.native.clock)
        self.line_protocol = self.factory.native.buildProtocol(self.transport.getPeer())
        self.line_protocol.makeConnection(self.line_transport)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        protocol = self.line_protocol
        if protocol is None or self.line_transport.closed:
            return
        refuse = getattr(protocol, "refuse_line", None)  # not on a refused connection
        if isBinary:
            if refuse is not None:
                refuse("binary-frame", "Send text messages: one line of the protocol each.")
        elif b"\n" in payload or b"\r" in payload[:-1]:
            if refuse is not None:
                refuse("control-character", "A message is one line: no line breaks in it.")
        else:
            protocol.dataReceived(payload + b"\n")

    def onClose(self, wasClean: bool, code, reason) -> None:
        protocol, self.line_protocol = self.line_protocol, None
        if protocol is not None:
            self.line_transport.disconnecting = self.line_transport.closed = True
            protocol.connectionLost(Failure(ConnectionDone()))


class LineSocketFactory(WebSocketServerFactory):
    protocol = LineSocket

    def __init__(self, native, origins=()) -> None:
        super().__init__()
        self.native = native  # the NativeFactory whose protocol each WebSocket wraps
        self.origins = {origin.lower() for origin in origins}
        self._last_lines = self._last_frames = b""  # `framed`'s memory of one batch
        limit = native.max_line * READ_LIMIT_LINES
        self.setProtocolOptions(
            maxMessagePayloadSize=limit,
            maxFramePayloadSize=limit,
            webStatus=False,
            perMessageCompressionAccept=lambda offers: None,  # text_frame writes plain frames
        )

    def framed(self, data: bytes) -> bytes:
        """CRLF-ended lines as text frames; the same lines as last time, as they were."""
        if data != self._last_lines:
            lines = data.split(CRLF)
            lines.pop()
            self._last_lines, self._last_frames = data, text_frames(lines)
        return self._last_frames

    def origin_allowed(self, origin: str | None, host: str) -> bool:
        """Same origin (the Host the browser asked for), or one of ``--web-origin``.

        A request without Origin is not from a browser, so no page can forge it."""
        if origin is None or "*" in self.origins:
            return True
        origin = origin.lower()
        if origin in self.origins:
            return True
        scheme, _, rest = origin.partition("://")
        return scheme in ("http", "https") and rest == host.lower()
