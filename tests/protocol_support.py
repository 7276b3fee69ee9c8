"""Helpers for protocol tests without a network or real time: a native listener and an IRC
listener over one chat core, sharing one connection count as `spartan.tap` wires them,
with StringTransport connections and a `task.Clock`."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from spartan.core.chat import Chat
from spartan.core.directory import DEMO
from spartan.irc import IRCGatewayFactory
from spartan.native.protocol import NativeFactory
from spartan.store.memory import MemoryStore

IRC_SERVER_NAME = "irc.test"


class Server:
    def __init__(self, limits=None, directory=DEMO, authenticator=None, store=None, **settings):
        """``settings``: the connection layer's (max_line, max_pending), for both ports."""
        self.clock = Clock()
        self.store = store or MemoryStore()
        self.chat = Chat(directory, self.store, self.clock, authenticator=authenticator)
        self.chat.start()
        self.factory = NativeFactory(self.chat, limits=limits, **settings)
        self.irc_factory = IRCGatewayFactory(
            self.chat,
            server_name=IRC_SERVER_NAME,
            limits=limits,
            connections=self.factory.connections,
            batch=self.factory.batch,
            **settings,
        )
        self.store.output_batch = self.factory.batch  # as spartan.tap wires them

    def connect(self, host="10.0.0.1", port=5000, factory=None):
        """A connection to the native port (or to ``factory``'s)."""
        addr = IPv4Address("TCP", host, port)
        protocol = (factory or self.factory).buildProtocol(addr)
        transport = StringTransport(peerAddress=addr)
        protocol.makeConnection(transport)
        return Conn(protocol, transport)

    def connect_irc(self, host="10.0.0.1", port=6000):
        """A connection to the IRC gateway."""
        return self.connect(host, port, self.irc_factory)


class Conn:
    def __init__(self, protocol, transport):
        self.protocol = protocol
        self.transport = transport

    def send(self, *lines: str) -> list[str]:
        """Send lines; return the lines the server wrote since the last call."""
        self.protocol.dataReceived(b"".join(line.encode() + b"\r\n" for line in lines))
        return self.read()

    def read(self) -> list[str]:
        data = self.transport.value().decode()
        self.transport.clear()
        return data.splitlines()

    def close(self):
        self.protocol.connectionLost(None)

    @property
    def closed(self):
        return self.transport.disconnecting or self.transport.disconnected


def login(conn, user, *password):
    """Log in on the native port."""
    assert conn.send(" ".join(("LOGIN", user) + password))[-1] == f"OK LOGIN {user}"
    return conn


def register(conn, nick):
    """Register on the IRC gateway (NICK and USER: two lines)."""
    lines = conn.send(f"NICK {nick}", f"USER {nick} 0 * :{nick.title()}")
    assert lines[0].startswith(f":{IRC_SERVER_NAME} 001 {nick} :Welcome"), lines
    return conn
