"""
The IRC gateway's factory: builds an `IRCGateway` per connection and holds what they
share: the chat core, the server's name and MOTD, the `Roster` of who joined what, the
message encoder, and the case-insensitive lookup of names IRC clients expect.
"""

from __future__ import annotations

import time

from spartan import __version__
from spartan.core.names import GROUP_PREFIX
from spartan.irc.gateway import IRCGateway
from spartan.irc.lines import format_line, is_channel
from spartan.irc.messages import MessageEncoder
from spartan.irc.roster import Roster
from spartan.net.connection import ConnectionFactory

DEFAULT_SERVER_NAME = "spartan"

MOTD = (
    "Welcome to Spartan.",
    "Your nick is your Spartan user name; channels are your groups: JOIN #group.",
    "Messages you missed are delivered when you connect (direct) and when you join (groups).",
)


class IRCGatewayFactory(ConnectionFactory):
    protocol = IRCGateway
    protocol_name = "irc"

    def __init__(
        self,
        chat,
        server_name: str = DEFAULT_SERVER_NAME,
        motd: tuple[str, ...] = MOTD,
        version: str = "",
        **settings,
    ) -> None:
        """``settings`` are the connection layer's (`ConnectionFactory`); pass the native
        listener's ``connections`` and ``batch`` to share its count and its batch."""
        super().__init__(chat, **settings)
        self.server_name = server_name
        self.motd = motd
        self.version = "spartan-" + (version or __version__)
        self.started = chat.clock.seconds()  # what channels give as their creation time
        self.created = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        self.users_peak = 0  # the most users online at once that LUSERS saw
        self.roster = Roster()
        self.encoder = MessageEncoder(server_name)
        self._folded: dict[str, list[str]] = {}  # casefolded name -> names, for one directory
        self._folded_of = None

    def refusal_words(self, sentence: str) -> bytes:
        return format_line(self.server_name, "NOTICE", "*", sentence) + format_line(
            None, "ERROR", "Closing Link: * (Too many connections)"
        )

    def canonical(self, name: str) -> str:
        """``name`` as the directory spells it, when it differs only in case from exactly
        one user (or ``#group``); otherwise unchanged."""
        chat = self.chat
        channel = is_channel(name)
        bare = name[1:] if channel else name
        if chat.members(bare) is not None if channel else chat.is_user(bare):
            return name
        directory = chat.directory
        if self._folded_of is not directory:  # built once per directory, not per name
            self._folded = {}
            for user in directory.users:
                self._folded.setdefault(user.casefold(), []).append(user)
            for group in directory.groups:
                self._folded.setdefault(GROUP_PREFIX + group.casefold(), []).append(
                    GROUP_PREFIX + group
                )
            self._folded_of = directory
        matches = self._folded.get((GROUP_PREFIX if channel else "") + bare.casefold(), [])
        return matches[0] if len(matches) == 1 else name

    def away_message(self, nick: str) -> str | None:
        """Why ``nick`` may not answer: away on every IRC connection, or offline."""
        if not self.chat.is_online(nick):
            return "Offline: messages wait until they connect"
        return self.roster.away(nick)
