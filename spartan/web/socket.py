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
* Out: what the native protocol writes (whole CRLF-ended lines, often several at once)
  goes out as one text message per line, without the CRLF, framed here (`text_frame`)
  and written at once: a batch of lines stays one write.
* Back-pressure: the native protocol registers its producer on the `LineTransport`, which
  puts it on the TCP (or TLS) transport under the WebSocket in place of twisted.web's
  own; so a peer that stops reading trips the native slow-reader limit, and the flood
  guard pauses and resumes reading the socket itself.
"""

from __future__ import annotations

import struct

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

CRLF = b"\r\n"
# Messages up to this many times --max-line are read whole and refused with
# ``ERR line-too-long``; a bigger one closes the WebSocket (1009), as memory is at stake.
READ_LIMIT_LINES = 16


def text_frame(payload: bytes) -> bytes:
    """A whole, unmasked text message, as a server sends it (RFC 6455, 5.2).  No extension
    is ever negotiated (`LineSocketFactory`), so this is all a frame can be."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload


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
        lines = (self._partial + data).split(CRLF)
        self._partial = lines.pop()
        # One write of all the frames: what the native protocol batched stays batched
        # (autobahn's sendMessage would write, and log, once per line).
        self.socket.transport.write(b"".join(map(text_frame, lines)))

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
            super().dataReceived(data)

    def onOpen(self) -> None:
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
        limit = native.max_line * READ_LIMIT_LINES
        self.setProtocolOptions(
            maxMessagePayloadSize=limit,
            maxFramePayloadSize=limit,
            webStatus=False,
            perMessageCompressionAccept=lambda offers: None,  # text_frame writes plain frames
        )

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
