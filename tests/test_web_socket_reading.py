"""
How the WebSocket reads what a client sends, in memory (StringTransport, task.Clock): the
run of plain one-line text frames that spartan/web/socket.py reads itself must come out
exactly as autobahn's reader would have it, however the bytes are cut into reads, with
every odd frame among them still answered in its turn, and a frame that breaks the
protocol still failing the WebSocket.  And how it frames what it writes.
"""

from __future__ import annotations

import os
import struct

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from spartan.core.chat import Chat
from spartan.core.directory import DEMO
from spartan.native.protocol import NativeFactory
from spartan.store.memory import MemoryStore
from spartan.web.socket import LineSocketFactory, read_line_frames, text_frame, unmask

MAX_LINE = 200
UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nOrigin: http://127.0.0.1:8080\r\n"
    b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def client_frame(payload: bytes, opcode: int = 0x1, fin: bool = True, mask: bytes | None = None) -> bytes:
    """A masked client frame, as a browser sends it (a random key unless one is given)."""
    mask = os.urandom(4) if mask is None else mask
    size = len(payload)
    first = (0x80 if fin else 0) | opcode
    if size < 126:
        head = bytes((first, 0x80 | size))
    elif size < 1 << 16:
        head = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, size)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each whole unmasked frame in ``data``."""
    frames, at = [], 0
    while at + 2 <= len(data):
        opcode, size, start = data[at] & 0x0F, data[at + 1] & 0x7F, at + 2
        if size == 126:
            (size,) = struct.unpack_from("!H", data, at + 2)
            start += 2
        elif size == 127:
            (size,) = struct.unpack_from("!Q", data, at + 2)
            start += 8
        frames.append((opcode, data[start : start + size]))
        at = start + size
    return frames


class Socket:
    """One WebSocket on the web port's factory, over a StringTransport."""

    def __init__(self):
        self.clock = Clock()
        chat = Chat(DEMO, MemoryStore(), self.clock)
        chat.start()
        native = NativeFactory(chat, max_line=MAX_LINE, clock=self.clock)
        self.protocol = LineSocketFactory(native).buildProtocol(None)
        self.transport = StringTransport()
        # As under twisted.web: the HTTP channel is the socket's producer until the upgrade.
        self.transport.registerProducer(object(), True)
        self.protocol.makeConnection(self.transport)
        self.protocol.dataReceived(UPGRADE)
        response, _, frames = self.transport.value().partition(b"\r\n\r\n")
        assert response.startswith(b"HTTP/1.1 101 "), response
        self.transport.clear()
        self.transport.write(frames)
        assert self.messages()[0].startswith("* HELLO ")

    def send(self, data: bytes, cut: int | None = None) -> None:
        """``data`` in one read, or in reads of ``cut`` bytes."""
        cut = cut or len(data)
        for at in range(0, len(data), cut):
            self.protocol.dataReceived(data[at : at + cut])

    def messages(self) -> list[str]:
        frames = server_frames(self.transport.value())
        self.transport.clear()
        assert all(opcode == 0x1 for opcode, _ in frames), frames
        return [payload.decode() for _, payload in frames]

    def dropped_for(self) -> str | None:
        """Why autobahn dropped the connection (it fails a WebSocket by dropping it), if it did."""
        if not self.transport.disconnecting:
            return None
        return self.protocol.wasNotCleanReason


def test_pipelined_frames_are_answered_alike_however_the_reads_cut_them():
    # A 150-byte line has a 16-bit length; a trailing CR is allowed, as on the native port.
    lines = [b"PING a", b"NOSUCH " + b"b" * 150, b"PING b", b"\xc3\xa9t\xc3\xa9", b"PING c\r"]
    data = b"".join(client_frame(line) for line in lines)
    for cut in (None, 1, 2, 3, 7, 64):
        socket = Socket()
        socket.send(data, cut)
        replies = socket.messages()
        assert len(replies) == 5, (cut, replies)
        assert replies[1].startswith("ERR unknown-command "), cut
        assert replies[3].startswith("ERR unknown-command "), cut  # valid UTF-8, not ASCII
        assert replies[0::2] == ["OK PONG a", "OK PONG b", "OK PONG c"], cut
        assert socket.dropped_for() is None


def test_odd_frames_among_plain_ones_are_answered_in_their_turn():
    socket = Socket()
    socket.send(
        client_frame(b"PING 1")
        + client_frame(b"SEND bob two\nlines")
        + client_frame(b"PING 2")
        + client_frame(b"SEND bob hi", opcode=0x2)  # binary
        + client_frame(b"PING 3")
        + client_frame(b"PI", fin=False) + client_frame(b"NG 4", opcode=0x0)  # fragmented
        + client_frame(b"", opcode=0x9)  # a ping: answered by a pong frame, not a line
        + client_frame(b"PING 5")
    )
    frames = server_frames(socket.transport.value())
    assert (0xA, b"") in frames
    replies = [payload.decode() for opcode, payload in frames if opcode == 0x1]
    assert replies[0] == "OK PONG 1" and replies[2] == "OK PONG 2"
    assert replies[1].startswith("ERR control-character ")
    assert replies[3].startswith("ERR binary-frame ")
    assert replies[4:] == ["OK PONG 3", "OK PONG 4", "OK PONG 5"]


def test_invalid_utf8_fails_the_websocket_after_the_lines_before_it():
    socket = Socket()
    socket.send(client_frame(b"PING before") + client_frame(b"PING \xed\xa0\x80")  # a surrogate
                + client_frame(b"PING after"))
    frames = server_frames(socket.transport.value())
    assert frames[0] == (0x1, b"OK PONG before")
    assert (0x1, b"OK PONG after") not in frames
    assert "invalid UTF-8" in socket.dropped_for()


def test_an_unmasked_client_frame_fails_the_websocket():
    socket = Socket()
    socket.send(client_frame(b"PING masked") + b"\x81\x08PING raw")
    assert server_frames(socket.transport.value())[0] == (0x1, b"OK PONG masked")
    assert "unmasked client-to-server frame" in socket.dropped_for()


def test_a_frame_past_the_socket_limit_is_refused_by_autobahn():
    socket = Socket()
    socket.send(client_frame(b"PING ok") + client_frame(b"SEND bob " + b"y" * (MAX_LINE * 20)))
    assert server_frames(socket.transport.value())[0] == (0x1, b"OK PONG ok")
    assert "exceeds payload limit" in socket.dropped_for()


def test_read_line_frames_stops_at_what_it_does_not_read_itself():
    mask = b"\x01\x02\x03\x04"
    plain = client_frame(b"PING x", mask=mask)
    assert unmask(plain[6:], mask) == b"PING x"
    assert read_line_frames(plain * 2, 1000) == ([b"PING x", b"PING x"], 2 * len(plain), True)
    # An incomplete frame at the end may still be a plain one: left for the next read.
    assert read_line_frames(plain + plain[:5], 1000) == ([b"PING x"], len(plain), True)
    # A 126-form length that would fit in 7 bits is refused by autobahn: its to judge.
    short_in_long_form = struct.pack("!BBH", 0x81, 0x80 | 126, 6) + mask + plain[6:]
    assert read_line_frames(plain + short_in_long_form, 1000) == ([b"PING x"], len(plain), False)
    assert read_line_frames(plain + client_frame(b"x" * 300), 299) == ([b"PING x"], len(plain), False)


def test_a_batch_of_lines_is_framed_as_one_text_message_each_and_a_repeated_batch_alike():
    factory = Socket().protocol.factory
    sizes = (0, 1, 125, 126, 65535, 65536)
    batch = b"".join(b"x" * n + b"\r\n" for n in sizes)
    framed = factory.framed(batch)
    assert [(opcode, len(payload)) for opcode, payload in server_frames(framed)] == [(1, n) for n in sizes]
    assert framed == b"".join(text_frame(b"x" * n) for n in sizes)
    other = b"* MSG one\r\n* MSG two\r\n"
    assert server_frames(factory.framed(other)) == [(1, b"* MSG one"), (1, b"* MSG two")]
    assert factory.framed(bytearray(batch).decode().encode()) == framed  # equal, not the same object
    assert factory.framed(other) == text_frame(b"* MSG one") + text_frame(b"* MSG two")
