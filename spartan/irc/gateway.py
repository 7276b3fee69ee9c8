"""
The IRC gateway's protocol: one IRC connection, from registration to ``QUIT``.

Theory of operation
-------------------
* The gateway is a front end on the shared connection layer (`spartan.net.connection`),
  beside the native protocol: a nick is a Spartan user, a channel ``#group1`` is the group
  ``group1``, and ``PRIVMSG``/``NOTICE`` to a nick or a channel is a Spartan message, sent
  through the core's one send primitive (`Session.post`).  The connection layer gives it
  pipelining, write batching, back-pressure, flood control and timeouts; this module only
  speaks IRC.
* Lines are dispatched through a command table (`COMMANDS`: handler, minimum parameters,
  whether it is allowed before registration).  Registration (``CAP``/``PASS``/``NICK``/
  ``USER``) is a small state machine (`spartan.irc.registration`) ending in
  ``Chat.login(nick, password)``; then the welcome numerics, the MOTD, and the direct
  messages the user has not seen, oldest first.
* What a handler writes is gathered and becomes the reply to its line.  What comes later
  (a login, a message being stored, a channel's backlog being read) takes a place in the
  reply queue, so replies leave in the order the lines came while the next lines are
  already being handled: many PRIVMSGs are in flight at once and share a commit.
* Groups are not joined automatically.  ``JOIN`` is for members only (others get
  ERR_INVITEONLYCHAN); it answers with the names and the group's unseen messages.  Live
  group messages reach an IRC connection only for the channels it joined (or is joining);
  the others stay unseen and come with the ``JOIN``.  A pushed message waits behind the
  replies still queued and is written only if it was not already in a backlog.
* IRC has no ACK: a message counts as seen once the peer's TCP has acknowledged the bytes
  that carried it (`spartan.net.sendqueue`): the gateway remembers where in its output
  stream each message ends, and looks at the socket a little after writing (at most every
  `ACK_INTERVAL`, then less and less often while something is still unacknowledged),
  when the client quits, and when it is dropped.  A reader dropped for not
  reading never gets those acknowledgements: what it did not receive stays unseen and
  comes again on its next connection.  Where the socket cannot say (TLS), a message
  counts once it has left Twisted's buffer.
* Channel presence (``JOIN``/``PART``/``QUIT`` lines, ``NAMES``) is the gateway's own, in
  the factory's `Roster`: the IRC connections that joined, plus members online only
  through the native protocol.
"""

from __future__ import annotations

import bisect
import fnmatch
from operator import itemgetter
import time
from typing import NamedTuple

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.python.failure import Failure

from spartan.core.chat import TOPIC_MAX, Delivery
from spartan.core.errors import ChatError
from spartan.core.names import GROUP_PREFIX, NOTICE_PREFIX, is_name
from spartan.irc import numerics as N
from spartan.irc.lines import (
    MAX_BODY,
    clean_text,
    format_line,
    is_channel,
    parse_line,
    server_time,
)
from spartan.irc.registration import Registration
from spartan.net.connection import CLOSE_REASONS, QUIT, SLOW_READER, LineConnection, ReplySlot
from spartan.net.sendqueue import acknowledged

MAX_TARGETS = 4
# A connection acknowledges what it was shown at most this often (seconds), and looks
# again, less and less often, while its peer has not acknowledged everything.
ACK_INTERVAL, ACK_RECHECK_MAX = 0.05, 0.5
# How an IRC server words the guard's reasons for closing (ERROR :Closing Link: nick (...)).
_CLOSE_REASONS = {
    "rate-limited": "Excess Flood",
    "login-timeout": "Registration timed out",
    "idle-timeout": "Ping timeout",
    "removed": "Removed from the server's users",
}
# What the channels of a connection the server closed are told in its QUIT, by the
# connection layer's close reason.
_QUIT_REASONS = {CLOSE_REASONS[code]: words for code, words in _CLOSE_REASONS.items()}
_QUIT_REASONS[SLOW_READER] = "Max SendQ exceeded"
CAPABILITIES = ("server-time", "echo-message")

# Commands whose first parameter names nicks or channels (IRC compares them
# case-insensitively; Spartan names are exact, so they are mapped when unambiguous).
_NAME_PARAMS = {
    "NICK", "PRIVMSG", "NOTICE", "JOIN", "PART", "NAMES", "TOPIC", "WHO", "MODE", "WHOWAS",
    "KICK",
}  # fmt: skip

# A refused message, in IRC's words: ChatError code -> numeric and its text.
_SEND_REFUSALS = {
    "unknown-user": (N.ERR_NOSUCHNICK, "No such nick/channel"),
    "bad-target": (N.ERR_NOSUCHNICK, "No such nick/channel"),
    "unknown-group": (N.ERR_NOSUCHCHANNEL, "No such channel"),
    "not-a-member": (N.ERR_CANNOTSENDTOCHAN, "Cannot send to channel (members only)"),
}


_NONE: frozenset[str] = frozenset()
_END = itemgetter(0)  # where a mark's message ends in the output stream
_WHOX_ORDER = "tcuihsnfdlaor"  # WHOX replies hold the fields asked for in this order

# The list modes a client may ask for (MODE #chan b): the end of each (empty) list.
_LIST_MODES = {
    "b": (N.RPL_ENDOFBANLIST, "End of channel ban list"),
    "e": (N.RPL_ENDOFEXCEPTLIST, "End of channel exception list"),
    "I": (N.RPL_ENDOFINVITELIST, "End of channel invite list"),
}


class _Marked(bytes):
    """Lines holding messages, with where each ends: ``marks`` = [(end, label, id)]."""

    marks: list[tuple[int, str, int]]


def _marked(data: bytes, marks: list[tuple[int, str, int]]) -> bytes:
    marked = _Marked(data)
    marked.marks = marks
    return marked


def _join(pieces: list[bytes]) -> bytes:
    """``b"".join(pieces)``, keeping the marks of the marked pieces (at their new place)."""
    data = b"".join(pieces)
    marks, offset = [], 0
    for piece in pieces:
        if type(piece) is _Marked:
            marks.extend((offset + end, label, id_) for end, label, id_ in piece.marks)
        offset += len(piece)
    return _marked(data, marks) if marks else data


class Command(NamedTuple):
    handler: str  # the method's name
    min_params: int = 0  # fewer: ERR_NEEDMOREPARAMS
    before_registration: bool = False


class _Sending(ReplySlot):
    """One PRIVMSG/NOTICE target waiting for the store: the echo, or why it was refused."""

    __slots__ = ("target", "command")

    def __init__(self, connection: IRCGateway, target: str, command: str) -> None:
        super().__init__(connection)
        self.target = target
        self.command = command

    def sent(self, message) -> None:
        self.fill(self.connection._echo(message, self.target, self.command))

    def refused(self, reason) -> None:
        error = getattr(reason, "value", reason)
        if self.command == "NOTICE" or not isinstance(error, ChatError):
            self.fill(b"" if self.command == "NOTICE" else self.connection.error_reply(reason))
            return
        self.fill(self.connection._refusal(self.target, error))


class IRCGateway(LineConnection):
    def __init__(self) -> None:
        super().__init__()
        self.registration = Registration()
        self.nick: str | None = None  # as registration has it (read once per message)
        # Empty collections are shared until first changed: an idle connection is smaller.
        self.caps: frozenset[str] = _NONE  # replaced whole by CAP REQ
        self.channels: list[str] = []  # joined, in order of joining
        self._joining: frozenset[str] = _NONE  # JOINs whose backlog is being read
        self.away: str | None = None
        self.invisible = False  # user mode +i: hidden from WHO masks of users sharing no channel
        self._unregistered = False  # counted in the roster's unregistered connections
        self._out: list[bytes] | None = None  # what the handler running now says
        self._shown: dict[str, int] = {}  # conversation label -> newest id written
        # What was written and is acknowledged once out: (end offset, label, id), in order.
        self._marks: list[tuple[int, str, int]] | None = None
        self._ack_call = None
        self._quit_reason: str | None = None
        self._dropped = False
        self._kernel_says = False  # the socket tells what its peer acknowledged
        self.output_offset = 0  # bytes written to the connection so far

    # -- who --------------------------------------------------------------------------------

    @property
    def ident(self) -> str:
        return self.registration.ident

    @property
    def realname(self) -> str:
        return self.registration.realname

    @property
    def who(self) -> str:
        return self.nick or "a client"

    @property
    def mask(self) -> str:
        return self.factory.encoder.mask(self.nick or "*")

    @property
    def chat(self):
        return self.factory.chat

    # -- the connection layer's questions, in IRC's words ----------------------------------------

    def connectionMade(self) -> None:
        self._choose_encoding()
        super().connectionMade()
        self.factory.roster.unregistered += 1  # for LUSERS
        self._unregistered = True

    def _choose_encoding(self) -> None:
        """Messages with the ``@time`` tag or without: one bound method, kept, so that
        `Delivery.encoded` finds its cached bytes by identity."""
        encoder = self.factory.encoder
        self._encode = encoder.tagged if "server-time" in self.caps else encoder.plain

    def handle_line(self, line: bytes):
        return self._collect(self._dispatch, line) or None

    def line_too_long(self) -> bytes:
        return self._numeric_line(N.ERR_INPUTTOOLONG, "Input line was too long")

    def error_words(self, error: ChatError) -> bytes:
        return self._notice_line(f"{error.message} ({error.code})")

    def internal_error(self) -> bytes:
        return self._notice_line("The server failed to handle that command; it has been logged.")

    def notice_words(self, code: str, sentence: str) -> bytes:
        return self._notice_line(sentence)

    def ping_words(self, token: str) -> bytes:
        return format_line(None, "PING", token)

    def refuse_words(self, code: str, sentence: str) -> bytes:
        return self._closing_line(_CLOSE_REASONS.get(code, sentence))

    def hang_up_words(self, code: str, sentence: str) -> bytes:
        return self._notice_line(sentence) + self._closing_line(_CLOSE_REASONS.get(code, sentence))

    def _registered(self) -> None:
        if self._unregistered:
            self._unregistered = False
            self.factory.roster.unregistered -= 1

    def connection_ended(self) -> None:
        self._registered()  # no longer counted either way
        if self._ack_call is not None and self._ack_call.active():
            self._ack_call.cancel()
        self._ack_call = None
        if self.session is None:
            return
        if not (self._dropped or self._kernel_says or self.backlog.paused):
            self._flush_acks()  # no socket to ask: what left Twisted's buffer counts
        why = self._quit_reason or _QUIT_REASONS.get(self.close_reason, "Connection closed")
        self._leave_all("QUIT", why)
        self.factory.roster.unregister(self, self.factory.clock.seconds())
        self.session.logout()
        self.session = None

    def slow_reader_dropped(self) -> None:
        self._dropped = True
        if acknowledged(self.transport) is not None:
            self._flush_acks()  # what its peer did receive counts, the rest stays unseen
        if self._ack_call is not None and self._ack_call.active():
            self._ack_call.cancel()
        self._ack_call = None
        self._marks = None

    def output_drained(self) -> None:
        if self._marks and self._ack_call is None and self.session is not None:
            self._ack_call = self.factory.clock.callLater(ACK_INTERVAL, self._flush_acks)

    def _write(self, data: bytes) -> None:
        # Where each message ends in the output stream (`output_offset`), to acknowledge it
        # once the peer has the bytes: a reply holding messages carries their marks.
        if type(data) is _Marked:
            offset = self.output_offset
            for end, label, message_id in data.marks:
                self._mark(offset + end, label, message_id)
        self.output_offset += len(data)
        super()._write(data)

    push = _write  # every byte goes through the count above

    # -- saying things ----------------------------------------------------------------------

    def _collect(self, handler, *args):
        """Run ``handler``; what it says becomes bytes (or a Deferred of bytes, when the
        handler returns one for what it says later)."""
        outer, self._out = self._out, []
        try:
            later = handler(*args)
        finally:
            said, self._out = self._out, outer
        now = _join(said)
        if isinstance(later, Deferred):
            return later.addCallback(lambda rest: _join([now, rest or b""]))
        return now

    def say(self, data: bytes) -> None:
        """Part of the reply being made; outside a handler, a line of our own."""
        if self._out is not None:
            self._out.append(data)
        else:
            self.tell(data)

    def tell(self, line: bytes) -> None:
        """A line the server sends on its own (another's JOIN), after pending replies."""
        if not self._closing:
            self.push_in_order(lambda: line)

    def _answer_later(self, reply) -> None:
        """Inside a handler: what was said so far, then ``reply`` (a Deferred of bytes, or
        a `ReplySlot`) in its place in the queue; the handler may go on saying things."""
        said = self._out
        if said:
            self.reply(_join(said))
            said.clear()
        self.reply(reply)

    def _send(self, command: str, *params: str, source: str | None = None) -> None:
        self.say(format_line(source or self.factory.server_name, command, *params))

    def _numeric_line(self, code: str, *params: str, trailing: bool = True) -> bytes:
        return format_line(
            self.factory.server_name, code, self.nick or "*", *params, trailing=trailing
        )

    def _numeric(self, code: str, *params: str, trailing: bool = True) -> None:
        self.say(self._numeric_line(code, *params, trailing=trailing))

    def _notice_line(self, text: str) -> bytes:
        return format_line(self.factory.server_name, "NOTICE", self.nick or "*", text)

    def _notice(self, text: str) -> None:
        self.say(self._notice_line(text))

    def _closing_line(self, reason: str) -> bytes:
        return format_line(None, "ERROR", f"Closing Link: {self.nick or '*'} ({reason})")

    def _error_and_close(self, reason: str) -> None:
        self.say(self._closing_line(reason))
        self.close_after_replies()

    # -- dispatch ---------------------------------------------------------------------------

    def _dispatch(self, line: bytes):
        parsed = parse_line(line)
        if parsed is None:
            return None  # IRC ignores empty lines
        command, params = parsed
        spec = COMMANDS.get(command)  # the table's words are all COMMAND-shaped
        if command in _NAME_PARAMS and params:
            names, canonical = params[0], self.factory.canonical
            params[0] = (
                canonical(names) if "," not in names
                else ",".join(canonical(name) for name in names.split(","))
            )  # fmt: skip
        if spec is None:
            return self._numeric(N.ERR_UNKNOWNCOMMAND, command[:20], "Unknown command")
        if self.session is None and not spec.before_registration:
            return self._numeric(N.ERR_NOTREGISTERED, "You have not registered")
        if len(params) < spec.min_params:
            return self._numeric(N.ERR_NEEDMOREPARAMS, command, "Not enough parameters")
        try:
            return getattr(self, spec.handler)(params)
        except ChatError as e:
            self._notice(f"{e.message} ({e.code})")
        except Exception:
            self.log.failure("Error handling IRC {command}", command=command)
            self._notice(f"The server failed to handle {command}; it has been logged.")
        return None

    # -- registration -----------------------------------------------------------------------

    def irc_CAP(self, params):
        sub = params[0].upper()
        nick = self.nick or "*"
        if sub == "LS":
            self.registration.cap_started()
            self._send("CAP", nick, "LS", " ".join(CAPABILITIES))
        elif sub == "LIST":
            self._send("CAP", nick, "LIST", " ".join(sorted(self.caps)))
        elif sub == "REQ":
            self.registration.cap_started()
            wanted = params[1].split() if len(params) > 1 else []
            names = [w[1:] if w.startswith("-") else w for w in wanted]
            if not wanted or any(name not in CAPABILITIES for name in names):
                return self._send("CAP", nick, "NAK", " ".join(wanted))
            caps = set(self.caps)
            for word, name in zip(wanted, names):
                if word.startswith("-"):
                    caps.discard(name)
                else:
                    caps.add(name)
            self.caps = frozenset(caps)
            self._choose_encoding()
            self._send("CAP", nick, "ACK", " ".join(wanted))
        elif sub == "END":
            if self.registration.negotiating:
                self.registration.cap_ended()
                self._maybe_register()
        else:
            self._numeric(N.ERR_INVALIDCAPCMD, params[0], "Invalid CAP command")
        return None

    def irc_PASS(self, params):
        if not self.registration.open:
            return self._numeric(N.ERR_ALREADYREGISTERED, "You may not reregister")
        self.registration.password = params[0]
        return None

    def irc_NICK(self, params):
        if not params or not params[0]:
            return self._numeric(N.ERR_NONICKNAMEGIVEN, "No nickname given")
        nick = params[0]
        if not self.registration.open:
            if nick != self.nick:
                self._numeric(
                    N.ERR_ERRONEUSNICKNAME,
                    nick,
                    "Nicks are Spartan user names: reconnect to use another user",
                )
            return None
        if not is_name(nick) or not self.chat.is_user(nick):
            return self._numeric(N.ERR_ERRONEUSNICKNAME, nick, "Not a Spartan user name")
        self.registration.nick = self.nick = nick
        return self._maybe_register()

    def irc_USER(self, params):
        if not self.registration.open:
            return self._numeric(N.ERR_ALREADYREGISTERED, "You may not reregister")
        if not params[0] or not params[3]:
            return self._numeric(N.ERR_NEEDMOREPARAMS, "USER", "Not enough parameters")
        self.registration.user(params[0], params[3])
        return self._maybe_register()

    def _maybe_register(self) -> None:
        if not self.registration.ready():
            return
        peer = getattr(self.transport.getPeer(), "host", None)
        d = self.chat.login(self.nick, self.registration.password, self, peer, "irc")
        d.addCallbacks(
            lambda session: self._collect(self._logged_in, session),
            lambda failure: self._collect(self._login_refused, failure),
        )
        self._answer_later(d)

    def _login_refused(self, failure) -> None:
        self.registration.refused()
        if not failure.check(ChatError):
            self.log.failure("IRC login failed", failure)
        self._numeric(N.ERR_PASSWDMISMATCH, "Password incorrect")
        self._error_and_close("Bad user name or password")

    def _logged_in(self, session):
        if self._closing or not self.connected:
            session.logout()
            return None
        self.registration.logged_in()
        self.session = session
        self._registered()
        self.factory.roster.register(self)
        self._welcome()
        return self._direct_backlog()

    def _welcome(self) -> None:
        f = self.factory
        self._numeric(N.RPL_WELCOME, f"Welcome to the Spartan IRC gateway, {self.mask}")
        self._numeric(N.RPL_YOURHOST, f"Your host is {f.server_name}, running version {f.version}")
        self._numeric(N.RPL_CREATED, f"This server was created {f.created}")
        self._numeric(N.RPL_MYINFO, f.server_name, f.version, "i", "n", trailing=False)
        self._numeric(
            N.RPL_ISUPPORT,
            "AWAYLEN=200",
            "CASEMAPPING=ascii",
            "CHANLIMIT=#:",
            "CHANMODES=,,,n",
            "CHANNELLEN=33",
            "CHANTYPES=#",
            "NETWORK=Spartan",
            "NICKLEN=32",
            f"TOPICLEN={TOPIC_MAX}",
            "WHOX",
            "PREFIX=",
            f"MAXTARGETS={MAX_TARGETS}",
            "are supported by this server",
        )
        self.irc_LUSERS([])
        self._motd()

    def _motd(self) -> None:
        f = self.factory
        self._numeric(N.RPL_MOTDSTART, f"- {f.server_name} Message of the day - ")
        for line in f.motd:
            self._numeric(N.RPL_MOTD, f"- {line}")
        self._numeric(N.RPL_ENDOFMOTD, "End of /MOTD command.")

    @inlineCallbacks
    def _direct_backlog(self):
        """The direct messages the user has not seen, oldest first (as bytes)."""
        session = self.session
        unseen = []
        for label, _ in (yield session.unread()):
            if not is_channel(label):
                label, messages = yield session.open(label)
                unseen.extend((m, label) for m in messages)
        unseen.sort(key=lambda pair: pair[0].id)
        return self._collect(self._replay, unseen)

    def _replay(self, unseen) -> None:
        """Say messages read from the store, unless already written; each is marked, to
        be acknowledged once the reply holding it is out."""
        encode = self._encode
        for message, label in unseen:
            if message.id <= self._shown.get(label, 0):
                continue
            self._shown[label] = message.id
            data = Delivery(message, label).encoded(encode)
            self.say(_marked(data, [(len(data), label, message.id)]))

    def irc_MOTD(self, params):
        self._motd()

    # -- keepalive, quitting, away ------------------------------------------------------------

    def irc_PING(self, params):
        if not params:
            return self._numeric(N.ERR_NOORIGIN, "No origin specified")
        self._send("PONG", self.factory.server_name, params[0])
        return None

    def irc_PONG(self, params):
        return None

    def irc_QUIT(self, params):
        reason = params[0] if params else "Client quit"
        self._quit_reason = f"Quit: {reason}"
        self.closing_because(QUIT)
        if self._marks:
            self._flush_acks()  # what its peer has counts, while the socket can still say
        self._error_and_close(self._quit_reason)

    def irc_AWAY(self, params):
        if params and params[0]:
            self.away = params[0][:200]
            self._numeric(N.RPL_NOWAWAY, "You have been marked as being away")
        else:
            self.away = None
            self._numeric(N.RPL_UNAWAY, "You are no longer marked as being away")

    # -- messages -----------------------------------------------------------------------------

    def irc_PRIVMSG(self, params, command="PRIVMSG"):
        quiet = command == "NOTICE"  # RFC: never an automatic reply to a NOTICE
        if not params or not params[0]:
            if not quiet:
                self._numeric(N.ERR_NORECIPIENT, f"No recipient given ({command})")
            return None
        if len(params) < 2 or not params[1]:
            if not quiet:
                self._numeric(N.ERR_NOTEXTTOSEND, "No text to send")
            return None
        targets = [t for t in params[0].split(",") if t]
        if len(targets) > MAX_TARGETS:
            if not quiet:
                self._numeric(N.ERR_TOOMANYTARGETS, params[0], "Too many targets")
            return None
        text = clean_text(params[1])
        if not text.strip():
            if not quiet and not params[1].startswith("\x01"):
                self._numeric(N.ERR_NOTEXTTOSEND, "No text to send")
            return None
        if quiet and not text.startswith(NOTICE_PREFIX):
            text = NOTICE_PREFIX + text  # stored as a notice, shown as one everywhere
        for target in targets:
            self._send_one(target, text, command)
        return None

    def irc_NOTICE(self, params):
        return self.irc_PRIVMSG(params, "NOTICE")

    def _send_one(self, target: str, text: str, command: str) -> None:
        if target == self.nick:  # IRC lets one talk to oneself; Spartan stores nothing
            self.say(format_line(self.mask, command, target, text.removeprefix(NOTICE_PREFIX)))
            return
        if is_channel(target) and target not in self.channels and target not in self._joining:
            if self._is_member(target):  # +n: only what joined may speak in a channel
                if command != "NOTICE":
                    self._numeric(N.ERR_CANNOTSENDTOCHAN, target, "Cannot send to channel (JOIN it first)")
                return
        slot = _Sending(self, target, command)
        try:
            self.session.post(target, text, None, slot)
        except ChatError as error:
            if command != "NOTICE":
                self.say(self._refusal(target, error))
            return
        if command != "NOTICE" and not is_channel(target):
            away = self.factory.away_message(target)
            if away is not None:
                self._numeric(N.RPL_AWAY, target, away)
        if slot.data is not None:  # stored at once (the in-memory store)
            self.say(slot.data)
        else:
            self._answer_later(slot)

    def _echo(self, message, target: str, command: str) -> bytes:
        if "echo-message" not in self.caps:
            return b""
        tags = server_time(message.timestamp) if "server-time" in self.caps else ""
        return self.factory.encoder.lines(message, target, command, tags)

    def _refusal(self, target: str, error: ChatError) -> bytes:
        numeric = _SEND_REFUSALS.get(error.code)
        if numeric is None:
            return self._notice_line(f"Message to {target} not delivered: {error.message}")
        return self._numeric_line(numeric[0], target, numeric[1])

    def receive(self, delivery: Delivery) -> None:
        """The core pushes a message: written after pending replies, unless it is for a
        channel not joined (it stays unseen and comes with the JOIN)."""
        if self._closing:
            return
        label = delivery.conversation
        if label[:1] == GROUP_PREFIX:
            if label not in self.channels and label not in self._joining:
                return
        elif delivery.message.sender == self.nick and "echo-message" not in self.caps:
            return  # our own direct message from another session: IRC clients expect none
        if self._replies:
            self.push_in_order(lambda: self._render(delivery))
            return
        # `_render` and `_write` inline: once per delivery, the fan-out's hot spot.
        message = delivery.message
        if message.id <= self._shown.get(label, 0):
            return
        self._shown[label] = message.id
        data = delivery.encoded(self._encode)
        self.output_offset = end = self.output_offset + len(data)
        marks = self._marks  # `_mark` inline
        if marks is None:
            marks = self._marks = []
        marks.append((end, label, message.id))
        if self._ack_call is None:
            self._ack_call = self.factory.clock.callLater(ACK_INTERVAL, self._flush_acks)
        pending = self._pending
        if pending is not None and not self.backlog.paused:
            pending.append(data)
        else:
            LineConnection._write(self, data)

    def _render(self, delivery: Delivery) -> bytes:
        """A message as written right now: nothing if it was already written (a backlog
        and a live push of the same message); else its lines, to be acknowledged once
        they are out."""
        message, label = delivery.message, delivery.conversation
        if message.id <= self._shown.get(label, 0):
            return b""
        self._shown[label] = message.id
        data = delivery.encoded(self._encode)
        self._mark(self.output_offset + len(data), label, message.id)
        return data

    def _mark(self, end: int, label: str, message_id: int) -> None:
        """The message ``message_id`` of ``label`` ends at ``end`` in the output stream."""
        marks = self._marks
        if marks is None:
            marks = self._marks = []
        marks.append((end, label, message_id))  # each its own: the peer may stop mid-write
        if self._ack_call is None:
            self._ack_call = self.factory.clock.callLater(ACK_INTERVAL, self._flush_acks)

    def _flush_acks(self, wait: float = ACK_INTERVAL) -> None:
        self._ack_call = None
        if self.session is None:
            return
        through = acknowledged(self.transport)
        if through is not None:
            self._kernel_says = True
        elif self.backlog.paused:
            return  # not all out of Twisted's buffer: `output_drained` comes back here
        else:
            through = self.output_offset
        marks = self._marks or []
        out = bisect.bisect_right(marks, through, key=_END)  # marks are in stream order
        acks = {label: upto for _, label, upto in marks[:out]}  # the last of each label
        del marks[:out]
        if marks and through is not self.output_offset:  # the peer has not all yet
            self._ack_call = self.factory.clock.callLater(
                wait, self._flush_acks, min(wait * 2, ACK_RECHECK_MAX)
            )
        for label, upto in acks.items():
            self.session.shown(label, upto).addErrback(self._ack_failed, label)

    def _ack_failed(self, failure, label) -> None:
        if failure.check(ChatError):  # the store failed: the messages stay unseen
            self.log.warn("Could not mark {label} seen: {why}", label=label, why=failure.value.message)
        else:
            self.log.failure("Marking {label} seen", failure, label=label)

    # -- channels -----------------------------------------------------------------------------

    def groups_changed(self, groups) -> None:
        """The core's news that this user's groups changed: part the channels it may no
        longer be in, then a NOTICE with its groups now."""
        if self._closing:
            return
        members = dict(groups)
        for channel in list(self.channels):
            if self.nick not in members.get(channel[1:], ()):
                self._part(channel, "No longer a member of the group")
        now = ", ".join(f"{GROUP_PREFIX}{group} ({' '.join(m)})" for group, m in groups)
        self.tell(self._notice_line(f"Your groups are now: {now or 'none'}"))

    def _group_of(self, channel: str):
        """(group name, members) of a channel, or None after saying ERR_NOSUCHCHANNEL."""
        members = self.chat.members(channel[1:]) if is_channel(channel) else None
        if members is None:
            self._numeric(N.ERR_NOSUCHCHANNEL, channel, "No such channel")
            return None
        return channel[1:], members

    def _is_member(self, channel: str) -> bool:
        members = self.chat.members(channel[1:]) if is_channel(channel) else None
        return members is not None and self.nick in members

    def irc_JOIN(self, params):
        if not params[0]:
            return self._numeric(N.ERR_NEEDMOREPARAMS, "JOIN", "Not enough parameters")
        if params[0] == "0":
            for channel in list(self.channels):
                self._part(channel, "Left all channels")
            return None
        for channel in params[0].split(",")[: MAX_TARGETS * 4]:
            found = self._group_of(channel)
            if found is None or channel in self.channels or channel in self._joining:
                continue
            if self.nick not in found[1]:
                self._numeric(N.ERR_INVITEONLYCHAN, channel, "Cannot join channel (+i): members only")
                continue
            # The backlog is read first, so that nothing pushed meanwhile comes before it.
            self._joining = self._joining | {channel}
            d = self._read_channel(channel)
            d.addBoth(self._join_read, channel)
            self._answer_later(d)
        return None

    @inlineCallbacks
    def _read_channel(self, channel: str):
        """(label, unseen messages, topic) of a channel being joined."""
        label, unseen = yield self.session.open(channel)
        _, topic = yield self.session.topic(channel)
        return label, unseen, topic

    def _join_read(self, result, channel: str):
        self._joining = self._joining - {channel}
        if isinstance(result, Failure):
            return result  # the connection layer answers it
        return self._collect(self._joined, channel, *result)

    def _joined(self, channel: str, label: str, unseen, topic) -> None:
        if channel in self.channels or self._closing:
            return
        roster = self.factory.roster
        announce = not roster.in_channel(channel, self.nick)
        self.channels.append(channel)
        roster.join(channel, self)
        line = format_line(self.mask, "JOIN", channel, trailing=False)
        if announce:
            roster.broadcast(channel, line, exclude=self.nick)
        self.say(line)
        if topic is not None:
            self._topic_numerics(channel, topic)
        self._names(channel)
        self._replay([(m, label) for m in unseen])

    def irc_PART(self, params):
        if not params[0]:
            return self._numeric(N.ERR_NEEDMOREPARAMS, "PART", "Not enough parameters")
        reason = params[1] if len(params) > 1 else ""
        for channel in params[0].split(","):
            if channel in self.channels:
                self._part(channel, reason)
            elif self._group_of(channel) is not None:
                self._numeric(N.ERR_NOTONCHANNEL, channel, "You're not on that channel")
        return None

    def _part(self, channel: str, reason: str) -> None:
        line = format_line(self.mask, "PART", channel, *([reason] if reason else []))
        self.say(line)
        self.channels.remove(channel)
        roster = self.factory.roster
        roster.leave(channel, self)
        if not roster.in_channel(channel, self.nick):
            roster.broadcast(channel, line, exclude=self.nick)

    def _leave_all(self, command: str, reason: str) -> None:
        line = format_line(self.mask, command, reason)
        roster = self.factory.roster
        told = set()
        for channel in self.channels:
            roster.leave(channel, self)
            if not roster.in_channel(channel, self.nick):
                for peer in roster.members(channel):
                    if peer.nick != self.nick and peer not in told:
                        told.add(peer)
                        peer.tell(line)
        self.channels = []

    def _list_topic(self, channel: str) -> str:
        """What LIST says of a group without a topic: who is in it."""
        members = self.chat.members(channel[1:]) or ()
        return f"Spartan group {channel[1:]}: {', '.join(members)}"

    def _topic_numerics(self, channel: str, topic) -> None:
        self._numeric(N.RPL_TOPIC, channel, topic.text)
        self._numeric(N.RPL_TOPICWHOTIME, channel, self.factory.encoder.mask(topic.setter),
                      str(int(topic.timestamp)), trailing=False)  # fmt: skip

    def _topic_line(self, channel: str, topic) -> bytes:
        return format_line(self.factory.encoder.mask(topic.setter), "TOPIC", channel, topic.text)

    def irc_TOPIC(self, params):
        channel = params[0]
        if self._group_of(channel) is None:
            return None
        if channel not in self.channels:
            return self._numeric(N.ERR_NOTONCHANNEL, channel, "You're not on that channel")
        if len(params) == 1:
            d = self.session.topic(channel)
            d.addCallback(lambda found: self._collect(self._told_topic, channel, found[1]))
        else:
            d = self.session.set_topic(channel, clean_text(params[1]))
            d.addCallback(lambda done: self._topic_line(channel, done[1]))
        self._answer_later(d)
        return None

    def _told_topic(self, channel: str, topic) -> None:
        if topic is None:
            self._numeric(N.RPL_NOTOPIC, channel, "No topic is set")
        else:
            self._topic_numerics(channel, topic)

    def topic_changed(self, group: str, topic) -> None:
        """The core: a member set ``group``'s topic elsewhere; shown if it is joined."""
        if group in self.channels:
            self.tell(self._topic_line(group, topic))

    def presence(self, user: str, online: bool, session) -> None:
        """The core: ``user`` came online or went offline.  Users online only through the
        native protocol are in the channels of their groups (`_visible`): their coming
        and going is a JOIN or a QUIT there.  An IRC connection's own are its JOIN/PART."""
        roster = self.factory.roster
        if isinstance(session.client, IRCGateway) or roster.is_on_irc(user) or self._closing:
            return
        groups = self.chat.directory.groups_of(user)
        shared = [c for c in self.channels if c[1:] in groups]
        mask = self.factory.encoder.mask(user)
        if online:
            for channel in shared:
                self.tell(format_line(mask, "JOIN", channel, trailing=False))
        elif shared:
            self.tell(format_line(mask, "QUIT", "Offline"))

    def irc_INVITE(self, params):
        """A nudge to join: groups are the directory's, so only members can be invited,
        and the invitation adds nobody."""
        nick, channel = self.factory.canonical(params[0]), self.factory.canonical(params[1])
        found = self._group_of(channel)
        if found is None:
            return None
        if channel not in self.channels:
            return self._numeric(N.ERR_NOTONCHANNEL, channel, "You're not on that channel")
        roster = self.factory.roster
        if not roster.is_on_irc(nick) and not self.chat.is_online(nick):
            return self._numeric(N.ERR_NOSUCHNICK, nick, "No such nick/channel")
        if nick not in found[1]:
            return self._numeric(
                N.ERR_CHANOPRIVSNEEDED, channel, f"{nick} is not a member: the directory says who is"
            )
        if roster.in_channel(channel, nick):
            return self._numeric(N.ERR_USERONCHANNEL, nick, channel, "is already on channel")
        self._numeric(N.RPL_INVITING, nick, channel, trailing=False)
        line = format_line(self.mask, "INVITE", nick, channel, trailing=False)
        for connection in roster.nicks.get(nick, ()):
            connection.tell(line)
        return None

    def irc_KICK(self, params):
        channel, nick = params[0], self.factory.canonical(params[1])
        if self._group_of(channel) is None:
            return None
        if channel not in self.channels:
            return self._numeric(N.ERR_NOTONCHANNEL, channel, "You're not on that channel")
        if not self.factory.roster.in_channel(channel, nick):
            return self._numeric(N.ERR_USERNOTINCHANNEL, nick, channel, "They aren't on that channel")
        return self._numeric(N.ERR_CHANOPRIVSNEEDED, channel, "Spartan groups have no operators: nobody is kicked")

    def _visible(self, channel: str) -> list[str]:
        """Who is in a channel: members who joined over IRC or are online natively."""
        roster, chat = self.factory.roster, self.chat
        return [
            m
            for m in chat.members(channel[1:]) or ()
            if roster.in_channel(channel, m) or (chat.is_online(m) and not roster.is_on_irc(m))
        ]

    def _names(self, channel: str) -> None:
        names = self._visible(channel)
        head = len(self._numeric_line(N.RPL_NAMREPLY, "=", channel, ""))
        line: list[str] = []
        for name in names:
            if line and head + len(" ".join(line + [name])) > MAX_BODY:
                self._numeric(N.RPL_NAMREPLY, "=", channel, " ".join(line))
                line = []
            line.append(name)
        if line:
            self._numeric(N.RPL_NAMREPLY, "=", channel, " ".join(line))
        self._numeric(N.RPL_ENDOFNAMES, channel, "End of /NAMES list")

    def irc_NAMES(self, params):
        if not params or not params[0]:
            return self._numeric(N.RPL_ENDOFNAMES, "*", "End of /NAMES list")
        for channel in params[0].split(",")[:MAX_TARGETS]:
            if self._is_member(channel):
                self._names(channel)
            else:
                self._numeric(N.RPL_ENDOFNAMES, channel, "End of /NAMES list")
        return None

    def irc_LIST(self, params):
        wanted = set(params[0].split(",")) if params and params[0] else None
        channels = [GROUP_PREFIX + group for group, _ in self.session.groups()]
        self._answer_later(self._list([c for c in channels if wanted is None or c in wanted]))

    @inlineCallbacks
    def _list(self, channels: list[str]):
        """The LIST reply (bytes): each channel with its topic, read from the store."""
        topics = []
        for channel in channels:
            _, topic = yield self.session.topic(channel)
            topics.append(topic)
        return self._collect(self._listed, channels, topics)

    def _listed(self, channels: list[str], topics: list) -> None:
        self._numeric(N.RPL_LISTSTART, "Channel", "Users  Name")
        for channel, topic in zip(channels, topics):
            shown = topic.text if topic is not None else self._list_topic(channel)
            self._numeric(N.RPL_LIST, channel, str(len(self._visible(channel))), shown)
        self._numeric(N.RPL_LISTEND, "End of /LIST")

    def irc_MODE(self, params):
        target = params[0]
        if is_channel(target):
            return self._channel_mode(target, params[1:])
        if target != self.nick:
            return self._numeric(N.ERR_USERSDONTMATCH, "Can't change mode for other users")
        if len(params) == 1:
            return self._numeric(N.RPL_UMODEIS, "+i" if self.invisible else "+", trailing=False)
        adding, changed, unknown = True, [], False
        for flag in params[1]:
            if flag in "+-":
                adding = flag == "+"
            elif flag == "i":
                if self.invisible != adding:
                    self.invisible = adding
                    changed.append(("+" if adding else "-") + "i")
            else:
                unknown = True
        if unknown:
            self._numeric(N.ERR_UMODEUNKNOWNFLAG, "Unknown MODE flag")
        if changed:
            self.say(format_line(self.mask, "MODE", self.nick, "".join(changed)))
        return None

    def _channel_mode(self, channel: str, change: list[str]) -> None:
        if self._group_of(channel) is None:
            return None
        if not change:
            self._numeric(N.RPL_CHANNELMODEIS, channel, "+n", trailing=False)
            return self._numeric(N.RPL_CREATIONTIME, channel, str(int(self.factory.started)), trailing=False)
        end_of_list = _LIST_MODES.get(change[0].lstrip("+"))
        if end_of_list is not None and len(change) == 1:  # a list query: the lists are empty
            return self._numeric(end_of_list[0], channel, end_of_list[1])
        return self._numeric(N.ERR_CHANOPRIVSNEEDED, channel, "Channel modes cannot be changed")

    # -- users --------------------------------------------------------------------------------

    def _who_line(self, channel: str, nick: str, whox: tuple[str, str] | None) -> None:
        """One WHO reply: 352, or with WHOX (``%fields,token``) 354 holding the fields
        asked for, always in WHOX's order."""
        f = self.factory
        flags = "G" if f.away_message(nick) is not None else "H"
        ident, realname = f.roster.ident(nick), f.roster.realname(nick)
        if whox is None:
            return self._numeric(
                N.RPL_WHOREPLY, channel, ident, f.server_name, f.server_name, nick, flags,
                f"0 {realname}",
            )  # fmt: skip
        fields, token = whox
        values = {
            "t": token, "c": channel, "u": ident, "i": "255.255.255.255", "h": f.server_name,
            "s": f.server_name, "n": nick, "f": flags, "d": "0", "l": "0",
            "a": "0",  # no services account: the nick is the Spartan user
            "o": "n/a", "r": realname,
        }  # fmt: skip
        return self._numeric(N.RPL_WHOSPCRPL, *(values[c] for c in _WHOX_ORDER if c in fields))

    def irc_WHO(self, params):
        mask = params[0] if params and params[0] else "*"
        whox = None
        if len(params) > 1 and params[1].startswith("%"):
            fields, _, token = params[1][1:].partition(",")
            whox = (fields, token[:3] if token.isdigit() else "0")
        if is_channel(mask):
            if self._is_member(mask):
                for nick in self._visible(mask):
                    self._who_line(mask, nick, whox)
        else:
            pattern, roster = mask.casefold(), self.factory.roster
            wildcard = any(c in mask for c in "*?")
            mine = set(self.channels)
            for user, online in self.chat.users():
                if not online or not fnmatch.fnmatchcase(user.casefold(), pattern):
                    continue
                if wildcard and user != self.nick and roster.invisible(user):
                    if not mine.intersection(roster.channels_of(user)):
                        continue  # +i: found by its nick, or by who shares a channel
                self._who_line("*", user, whox)
        self._numeric(N.RPL_ENDOFWHO, mask, "End of WHO list")

    def irc_WHOIS(self, params):
        if not params or not params[-1]:
            return self._numeric(N.ERR_NONICKNAMEGIVEN, "No nickname given")
        f = self.factory
        nick = f.canonical(params[-1].split(",")[0])
        if not self.chat.is_user(nick):
            self._numeric(N.ERR_NOSUCHNICK, nick, "No such nick/channel")
            return self._numeric(N.RPL_ENDOFWHOIS, nick, "End of /WHOIS list")
        self._numeric(N.RPL_WHOISUSER, nick, f.roster.ident(nick), f.server_name, "*", f.roster.realname(nick))
        self._numeric(N.RPL_WHOISSERVER, nick, f.server_name, "Spartan chat server")
        channels = [c for c in f.roster.channels_of(nick) if self._is_member(c)]
        if channels:
            self._numeric(N.RPL_WHOISCHANNELS, nick, " ".join(channels))
        away = f.away_message(nick)
        if away is not None:
            self._numeric(N.RPL_AWAY, nick, away)
        self._numeric(N.RPL_ENDOFWHOIS, nick, "End of /WHOIS list")
        return None


    def irc_USERHOST(self, params):
        f, found = self.factory, []
        for nick in params[:5]:
            nick = f.canonical(nick)
            if self.chat.is_online(nick):
                here = "-" if f.roster.away(nick) is not None else "+"
                found.append(f"{nick}={here}{f.roster.ident(nick)}@{f.server_name}")
        self._numeric(N.RPL_USERHOST, " ".join(found))

    def irc_WHOWAS(self, params):
        if not params or not params[0]:
            return self._numeric(N.ERR_NONICKNAMEGIVEN, "No nickname given")
        f = self.factory
        count = int(params[1]) if len(params) > 1 and params[1].lstrip("-").isdigit() else 0
        for nick in params[0].split(",")[:MAX_TARGETS]:
            entries = f.roster.was(f.canonical(nick))
            if not entries:
                self._numeric(N.ERR_WASNOSUCHNICK, nick, "There was no such nickname")
            for entry in entries[:count] if count > 0 else entries:
                self._numeric(N.RPL_WHOWASUSER, entry.nick, entry.ident, f.server_name, "*", entry.realname)
                self._numeric(N.RPL_WHOISSERVER, entry.nick, f.server_name, _ctime(entry.when))
        self._numeric(N.RPL_ENDOFWHOWAS, params[0], "End of WHOWAS")
        return None

    # -- the server ---------------------------------------------------------------------------

    def irc_LUSERS(self, params):
        f, chat = self.factory, self.chat
        everywhere, here = len(chat.online_users()), chat.online_here()
        invisible = sum(1 for nick in f.roster.nicks if f.roster.invisible(nick))
        f.users_peak = peak = max(f.users_peak, everywhere)
        self._numeric(
            N.RPL_LUSERCLIENT,
            f"There are {everywhere - invisible} users and {invisible} invisible on 1 servers",
        )
        self._numeric(N.RPL_LUSERUNKNOWN, str(f.roster.unregistered), "unknown connection(s)")
        self._numeric(N.RPL_LUSERCHANNELS, str(len(chat.directory.groups)), "channels formed")
        self._numeric(N.RPL_LUSERME, f"I have {here} clients and 1 servers")
        self._numeric(N.RPL_LOCALUSERS, str(here), str(peak), f"Current local users {here}, max {peak}")
        self._numeric(
            N.RPL_GLOBALUSERS, str(everywhere), str(peak), f"Current global users {everywhere}, max {peak}"
        )

    def irc_HELP(self, params):
        subject = params[0].upper() if params and params[0] else ""
        if subject and subject not in HELP:
            return self._numeric(N.ERR_HELPNOTFOUND, params[0], "No help available on this topic")
        if subject:
            usage, what = HELP[subject]
            lines = [usage, what]
        else:
            subject = "index"
            lines = ["Spartan: your nick is your user name, channels are your groups.", "Commands:"]
            names = sorted(HELP)
            lines.extend(" ".join(names[i : i + 8]) for i in range(0, len(names), 8))
            lines.append("HELP <command> tells more.")
        self._numeric(N.RPL_HELPSTART, subject, lines[0])
        for line in lines[1:]:
            self._numeric(N.RPL_HELPTXT, subject, line)
        self._numeric(N.RPL_ENDOFHELP, subject, "End of /HELP")
        return None

    def irc_TIME(self, params):
        now = self.factory.clock.seconds()
        self._numeric(N.RPL_TIME, self.factory.server_name, str(int(now)), "0", _ctime(now))


def _ctime(when: float) -> str:
    """A time as IRC servers write it for people: ``Sun Nov 29 2026 -- 20:35:30 +00:00``."""
    return time.strftime("%A %B %d %Y -- %H:%M:%S +00:00", time.gmtime(when))


# The command table: handler, minimum parameters (else ERR_NEEDMOREPARAMS), and whether
# it may come before registration.  A command not here is ERR_UNKNOWNCOMMAND.
COMMANDS: dict[str, Command] = {
    "CAP": Command("irc_CAP", 1, True),
    "PASS": Command("irc_PASS", 1, True),
    "NICK": Command("irc_NICK", 0, True),
    "USER": Command("irc_USER", 4, True),
    "PING": Command("irc_PING", 0, True),
    "PONG": Command("irc_PONG", 0, True),
    "QUIT": Command("irc_QUIT", 0, True),
    "MOTD": Command("irc_MOTD"),
    "AWAY": Command("irc_AWAY"),
    "PRIVMSG": Command("irc_PRIVMSG"),
    "NOTICE": Command("irc_NOTICE"),
    "JOIN": Command("irc_JOIN", 1),
    "PART": Command("irc_PART", 1),
    "TOPIC": Command("irc_TOPIC", 1),
    "NAMES": Command("irc_NAMES"),
    "LIST": Command("irc_LIST"),
    "MODE": Command("irc_MODE", 1),
    "WHO": Command("irc_WHO"),
    "WHOIS": Command("irc_WHOIS"),
    "WHOWAS": Command("irc_WHOWAS"),
    "USERHOST": Command("irc_USERHOST", 1),
    "LUSERS": Command("irc_LUSERS"),
    "TIME": Command("irc_TIME"),
    "HELP": Command("irc_HELP"),
    "HELPOP": Command("irc_HELP"),
    "INVITE": Command("irc_INVITE", 2),
    "KICK": Command("irc_KICK", 2),
}

# What HELP says of each command: usage, then what it does.
HELP: dict[str, tuple[str, str]] = {
    "AWAY": ("AWAY [:<message>]", "Mark yourself away (no message: back)."),
    "CAP": ("CAP LS|REQ|LIST|END", "Capabilities: server-time, echo-message."),
    "HELP": ("HELP [<command>]", "This help."),
    "INVITE": ("INVITE <nick> <#group>", "Nudge a member of the group to join its channel."),
    "JOIN": ("JOIN <#group>[,<#group>...]", "Join a group's channel (members only); its unseen messages follow."),
    "KICK": ("KICK <#group> <nick>", "Refused: Spartan groups have no operators."),
    "LIST": ("LIST", "Your groups."),
    "LUSERS": ("LUSERS", "How many users are online."),
    "MODE": ("MODE <nick> [+i|-i] | MODE <#group> [b|e|I]", "User mode +i; channels are +n."),
    "MOTD": ("MOTD", "The message of the day."),
    "NAMES": ("NAMES <#group>", "Who is in a channel."),
    "NICK": ("NICK <user>", "Your Spartan user name (fixed once registered)."),
    "NOTICE": ("NOTICE <nick|#group> :<text>", "A message that must never be answered automatically."),
    "PART": ("PART <#group> [:<reason>]", "Leave a channel (you stay a member of the group)."),
    "PASS": ("PASS <password>", "Your Spartan password, before NICK and USER."),
    "PING": ("PING <token>", "Check the connection."),
    "PRIVMSG": ("PRIVMSG <nick|#group> :<text>", "Send a message; offline users get it when they connect."),
    "QUIT": ("QUIT [:<reason>]", "Leave."),
    "TIME": ("TIME", "The server's time."),
    "TOPIC": ("TOPIC <#group> [:<text>]", "The group's topic; any member may set it."),
    "USERHOST": ("USERHOST <nick> [<nick>...]", "Who of these is online, and away."),
    "WHO": ("WHO <#group|nick|mask> [%<fields>[,<token>]]", "Who is there (WHOX fields with %)."),
    "WHOIS": ("WHOIS <nick>", "About a user."),
    "WHOWAS": ("WHOWAS <nick> [<count>]", "The IRC connections of a nick that ended."),
}
