"""Helpers for the web client's tests: a WebSocket line client (autobahn's, over a real
loopback socket) and a plain HTTP request that sends its path exactly as given."""

from __future__ import annotations

import socket

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, reactor
from twisted.internet.defer import DeferredQueue
from twisted.internet.endpoints import TCP4ClientEndpoint

TIMEOUT = 5.0


class _LinesProtocol(WebSocketClientProtocol):
    def onOpen(self):
        self.factory.opened.callback(self)

    def onMessage(self, payload, isBinary):
        self.factory.messages.put(payload.decode())

    def onClose(self, wasClean, code, reason):
        self.factory.closed_with = code
        if not self.factory.opened.called:
            self.factory.opened.errback(ConnectionError(f"refused: {code} {reason}"))
        self.factory.messages.put(None)


class WebSocketLines:
    """One WebSocket to ``/ws``: send lines, read messages (None once closed)."""

    def __init__(self, protocol, factory) -> None:
        self.protocol = protocol
        self.factory = factory

    @classmethod
    async def open(cls, port: int, origin: str | None = "same") -> WebSocketLines:
        origin = f"http://127.0.0.1:{port}" if origin == "same" else origin
        factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}/ws", origin=origin)
        factory.protocol = _LinesProtocol
        factory.opened = defer.Deferred()
        factory.messages = DeferredQueue()
        factory.closed_with = None
        await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory)
        protocol = await factory.opened.addTimeout(TIMEOUT, reactor)
        return cls(protocol, factory)

    def send(self, line: str | bytes, binary: bool = False) -> None:
        data = line.encode() if isinstance(line, str) else line
        self.protocol.sendMessage(data, isBinary=binary)

    async def message(self) -> str | None:
        return await self.factory.messages.get().addTimeout(TIMEOUT, reactor)

    async def reply(self, line: str | bytes | None = None, binary: bool = False) -> tuple[list[str], str]:
        """Send a line (if given); the ``*`` messages before the next reply, and the reply."""
        if line is not None:
            self.send(line, binary)
        pushed = []
        while True:
            message = await self.message()
            if message is None:
                raise EOFError(f"closed ({self.factory.closed_with}) after {len(pushed)} lines: {[p[:40] for p in pushed[-3:]]}")
            if message.startswith(("OK", "ERR")):
                return pushed, message
            pushed.append(message)

    async def closed(self) -> int | None:
        while (await self.message()) is not None:
            pass
        return self.factory.closed_with

    def close(self) -> None:
        self.protocol.sendClose(1000)


def http_get(port: int, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    """GET ``path`` exactly as given (no client normalises ``..`` away): status, headers, body.

    Blocking: for a server in another process, or in a thread."""
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for header in header_lines:
        name, _, value = header.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return int(status_line.split(" ")[1]), parsed, body
