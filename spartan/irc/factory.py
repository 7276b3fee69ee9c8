"""
The IRC gateway's factory: the chat core for every IRC connection of a listener, and the
gateway's own view of who is where (registered nicks, joined channels), and the two
encodings of a delivered message (plain, and tagged with ``@time``).
"""

from __future__ import annotations

from spartan.core.names import GROUP_PREFIX

import time

from twisted.internet.protocol import Protocol, ServerFactory

from spartan import __version__
from spartan.core.chat import Chat, Delivery
from spartan.irc.gateway import IRCGateway
from spartan.irc.lines import (
    ACTION_PREFIX,
    MAX_BODY,
    dm_target,
    format_line,
    is_channel,
    server_time,
    split_utf8,
)
from spartan.net.limits import ConnectionCounter, ServerLimits

DEFAULT_SERVER_NAME = "spartan"
DEFAULT_MAX_LINE = 4096
DEFAULT_MAX_PENDING = 1 << 20

MOTD = (
    "Welcome to Spartan.",
    "Your nick is your Spartan user name; channels are your groups: JOIN #group.",
    "Messages you missed are delivered when you connect (direct) and when you join (groups).",
)


class IRCGatewayFactory(ServerFactory):
    protocol = IRCGateway
    noisy = False

    def __init__(
        self,
        chat: Chat,
        server_name: str = DEFAULT_SERVER_NAME,
        max_line: int = DEFAULT_MAX_LINE,
        max_pending: int = DEFAULT_MAX_PENDING,
        motd: tuple[str, ...] = MOTD,
        version: str = "",
        limits: ServerLimits | None = None,
        clock=None,
        connections: ConnectionCounter | None = None,
    ) -> None:
        """``connections`` is shared with the native listeners (`spartan.tap`), so that a
        per-address limit does not double by using both ports."""
        self.chat = chat
        self.server_name = server_name
        self.max_line = max_line
        self.max_pending = max_pending
        self.motd = motd
        self.version = "spartan-" + (version or __version__)
        self.created = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(chat.clock.seconds()))
        self.limits = limits or ServerLimits()
        self.clock = clock or chat.clock
        if connections is None:
            connections = ConnectionCounter(
                self.limits.max_connections, self.limits.max_per_address
            )
        self.connections = connections
        self.irc_users: dict[str, list[IRCGateway]] = {}  # registered connections per nick
        self.channels: dict[str, list[IRCGateway]] = {}  # joined connections per channel

    def buildProtocol(self, addr):
        address = str(getattr(addr, "host", None) or addr)
        refusal = self.connections.acquire(address)
        if refusal is not None:
            return _Refuse(self.server_name, refusal)
        protocol = super().buildProtocol(addr)
        protocol.address = address
        return protocol

    def connection_lost(self, protocol: IRCGateway) -> None:
        if protocol.address is not None:
            self.connections.release(protocol.address)
            protocol.address = None

    def canonical(self, name: str) -> str:
        """``name`` as the directory spells it, when it differs only in case from exactly
        one user (or ``#group``); otherwise unchanged."""
        directory = self.chat.directory
        channel = is_channel(name)
        bare = name[1:] if channel else name
        if (directory.is_group(bare) if channel else directory.is_user(bare)):
            return name
        names = directory.groups if channel else directory.users
        folded = bare.casefold()
        matches = [n for n in names if n.casefold() == folded]
        if len(matches) != 1:
            return name
        return (GROUP_PREFIX if channel else "") + matches[0]

    def mask(self, nick: str) -> str:
        return f"{nick}!{nick}@{self.server_name}"

    # The two encodings of a delivered message, cached per Delivery (bound methods are
    # equal and hash alike, so every connection shares the cached bytes).
    def encode_plain(self, delivery: Delivery) -> bytes:
        return self._encode(delivery, "")

    def encode_tagged(self, delivery: Delivery) -> bytes:
        return self._encode(delivery, server_time(delivery.message.timestamp))

    def _encode(self, delivery: Delivery, tags: str) -> bytes:
        m = delivery.message
        target = delivery.conversation if is_channel(delivery.conversation) else dm_target(delivery)
        source = self.mask(m.sender)
        return b"".join(
            format_line(source, "PRIVMSG", target, piece, tags=tags)
            for piece in self.privmsg_pieces(delivery, target)
        )

    def privmsg_pieces(self, delivery: Delivery, target: str) -> list[str]:
        """The message text in pieces that fit an IRC line (512 bytes), /me as ACTION."""
        text = delivery.message.text
        action = text.startswith(ACTION_PREFIX)
        if action:
            text = text[len(ACTION_PREFIX) :]
        overhead = len(f":{self.mask(delivery.message.sender)} PRIVMSG {target} :".encode()) + 2
        room = max(MAX_BODY - overhead - (9 if action else 0), 64)
        pieces = split_utf8(text, room)
        if action:
            pieces = [f"\x01ACTION {p}\x01" for p in pieces]
        return pieces

    # -- presence --------------------------------------------------------------------------

    def register(self, protocol: IRCGateway) -> None:
        self.irc_users.setdefault(protocol.nick, []).append(protocol)

    def unregister(self, protocol: IRCGateway) -> None:
        connections = self.irc_users.get(protocol.nick, [])
        if protocol in connections:
            connections.remove(protocol)
            if not connections:
                del self.irc_users[protocol.nick]

    def join(self, channel: str, protocol: IRCGateway) -> None:
        self.channels.setdefault(channel, []).append(protocol)

    def leave(self, channel: str, protocol: IRCGateway) -> None:
        joined = self.channels.get(channel, [])
        if protocol in joined:
            joined.remove(protocol)
            if not joined:
                del self.channels[channel]

    def channel_members(self, channel: str) -> list[IRCGateway]:
        return list(self.channels.get(channel, ()))

    def in_channel(self, channel: str, nick: str) -> bool:
        return any(p.nick == nick for p in self.channels.get(channel, ()))

    def channels_of(self, nick: str) -> list[str]:
        seen: list[str] = []
        for protocol in self.irc_users.get(nick, ()):
            seen.extend(c for c in protocol.channels if c not in seen)
        return seen

    def broadcast(self, channel: str, line: bytes, exclude: str) -> None:
        for protocol in self.channels.get(channel, ()):
            if protocol.nick != exclude:
                protocol._write(line)

    def ident(self, nick: str) -> str:
        """The user name an IRC connection of ``nick`` gave in USER (else the nick)."""
        for protocol in self.irc_users.get(nick, ()):
            if protocol.ident:
                return protocol.ident
        return nick

    def realname(self, nick: str) -> str:
        for protocol in self.irc_users.get(nick, ()):
            if protocol.realname:
                return protocol.realname
        return nick

    def away_message(self, nick: str) -> str | None:
        """Why ``nick`` may not answer: away on every IRC connection, or offline."""
        if not self.chat.is_online(nick):
            return "Offline: messages wait until they connect"
        connections = self.irc_users.get(nick)
        if connections and all(p.away for p in connections):
            return connections[0].away
        return None


class _Refuse(Protocol):
    """Over the connection limits: why, then ``ERROR`` and close, as an IRC server does."""

    def __init__(self, server_name: str, sentence: str) -> None:
        self.server_name = server_name
        self.sentence = sentence

    def connectionMade(self) -> None:
        self.transport.write(
            format_line(self.server_name, "NOTICE", "*", self.sentence)
            + format_line(None, "ERROR", "Closing Link: * (Too many connections)")
        )
        self.transport.loseConnection()
