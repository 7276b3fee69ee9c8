"""
Who is on the IRC gateway, and in which channels: the gateway's own presence.

Spartan's presence (who is online, on any port or node) is the core's; IRC adds channel
membership, which exists only for IRC connections (a group's members do not all join its
channel), the connections not yet registered (``LUSERS`` counts them), and who was here
(``WHOWAS``: the newest `WHOWAS_KEPT` registered connections that ended).  The roster keeps it, and speaks to connections only through their public
`tell` (a line written after their pending replies), so it reads no protocol's private
state.  The factory holds one roster for every connection of its listeners.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple, Protocol

WHOWAS_KEPT = 1000  # ended connections remembered for WHOWAS, newest first


class Departed(NamedTuple):
    """A registered IRC connection that ended, as WHOWAS tells it."""

    nick: str
    ident: str
    realname: str
    when: float  # seconds since the epoch


class RosterMember(Protocol):
    nick: str | None
    ident: str
    realname: str
    away: str | None
    invisible: bool
    channels: list[str]

    def tell(self, line: bytes) -> None: ...


class Roster:
    def __init__(self) -> None:
        self.unregistered = 0  # connections open that have not registered yet
        self.departed: deque[Departed] = deque(maxlen=WHOWAS_KEPT)  # newest first
        self.nicks: dict[str, list[RosterMember]] = {}  # registered connections per nick
        self.channels: dict[str, list[RosterMember]] = {}  # joined connections per channel

    def register(self, member: RosterMember) -> None:
        self.nicks.setdefault(member.nick, []).append(member)

    def unregister(self, member: RosterMember, when: float) -> None:
        """``member``'s connection ended: it is remembered for WHOWAS."""
        _remove(self.nicks, member.nick, member)
        self.departed.appendleft(Departed(member.nick, member.ident, member.realname, when))

    def was(self, nick: str) -> list[Departed]:
        """The ended connections of ``nick``, newest first."""
        return [d for d in self.departed if d.nick == nick]

    def join(self, channel: str, member: RosterMember) -> None:
        self.channels.setdefault(channel, []).append(member)

    def leave(self, channel: str, member: RosterMember) -> None:
        _remove(self.channels, channel, member)

    def is_on_irc(self, nick: str) -> bool:
        return nick in self.nicks

    def in_channel(self, channel: str, nick: str) -> bool:
        return any(m.nick == nick for m in self.channels.get(channel, ()))

    def members(self, channel: str) -> list[RosterMember]:
        return list(self.channels.get(channel, ()))

    def channels_of(self, nick: str) -> list[str]:
        joined: list[str] = []
        for member in self.nicks.get(nick, ()):
            joined.extend(c for c in member.channels if c not in joined)
        return joined

    def broadcast(self, channel: str, line: bytes, exclude: str) -> None:
        """Tell every connection in ``channel`` but ``exclude``'s."""
        for member in self.channels.get(channel, ()):
            if member.nick != exclude:
                member.tell(line)

    def ident(self, nick: str) -> str:
        """The user name an IRC connection of ``nick`` gave in USER (else the nick)."""
        return next((m.ident for m in self.nicks.get(nick, ()) if m.ident), nick)

    def realname(self, nick: str) -> str:
        return next((m.realname for m in self.nicks.get(nick, ()) if m.realname), nick)

    def invisible(self, nick: str) -> bool:
        """Whether ``nick`` set user mode +i (on any of its IRC connections)."""
        return any(m.invisible for m in self.nicks.get(nick, ()))

    def away(self, nick: str) -> str | None:
        """The away message of ``nick`` if it is away on every IRC connection."""
        members = self.nicks.get(nick)
        if members and all(m.away for m in members):
            return members[0].away
        return None


def _remove(table: dict[str, list[RosterMember]], key: str, member: RosterMember) -> None:
    members = table.get(key, [])
    if member in members:
        members.remove(member)
        if not members:
            del table[key]
