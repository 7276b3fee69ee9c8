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
  stream each message ends, and looks at the socket after writing (the next turn, then
  less and less often while something is still unacknowledged).  A reader dropped for not
  reading never gets those acknowledgements: what it did not receive stays unseen and
  comes again on its next connection.  Where the socket cannot say (TLS), a message
  counts once it has left Twisted's buffer.
* Channel presence (``JOIN``/``PART``/``QUIT`` lines, ``NAMES``) is the gateway's own, in
  the factory's `Roster`: the IRC connections that joined, plus members online only
  through the native protocol.
"""

from __future__ import annotations

import fnmatch
from collections import deque
from typing import NamedTuple

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.python.failure import Failure

from spartan.core.chat import Delivery
from spartan.core.errors import ChatError
from spartan.core.names import GROUP_PREFIX, is_name
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
ACK_RECHECK, ACK_RECHECK_MAX = 0.005, 0.5  # seconds between looks at the kernel's queue
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
_NAME_PARAMS = {"NICK", "PRIVMSG", "NOTICE", "JOIN", "PART", "NAMES", "TOPIC", "WHO", "MODE"}

# A refused message, in IRC's words: ChatError code -> numeric and its text.
_SEND_REFUSALS = {
    "unknown-user": (N.ERR_NOSUCHNICK, "No such nick/channel"),
    "bad-target": (N.ERR_NOSUCHNICK, "No such nick/channel"),
    "unknown-group": (N.ERR_NOSUCHCHANNEL, "No such channel"),
    "not-a-member": (N.ERR_CANNOTSENDTOCHAN, "Cannot send to channel (members only)"),
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
        self.caps: set[str] = set()
        self.channels: list[str] = []  # joined, in order of joining
        self._joining: set[str] = set()  # JOINs whose backlog is being read
        self.away: str | None = None
        self._out: list[bytes] | None = None  # what the handler running now says
        self._shown: dict[str, int] = {}  # conversation label -> newest id written
        # What was written and is acknowledged once out: (end offset, label, id), in order.
        self._marks: deque[tuple[int, str, int]] = deque()
        self._ack_call = None
        self._quit_reason: str | None = None
        self._dropped = False
        self._kernel_says = False  # the socket tells what its peer acknowledged

    # -- who --------------------------------------------------------------------------------

    @property
    def nick(self) -> str | None:
        return self.registration.nick

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

    def connection_ended(self) -> None:
        if self._ack_call is not None and self._ack_call.active():
            self._ack_call.cancel()
        self._ack_call = None
        if self.session is None:
            return
        if not (self._dropped or self._kernel_says or self.backlog.paused):
            self._flush_acks()  # no socket to ask: what left Twisted's buffer counts
        why = self._quit_reason or _QUIT_REASONS.get(self.close_reason, "Connection closed")
        self._leave_all("QUIT", why)
        self.factory.roster.unregister(self)
        self.session.logout()
        self.session = None

    def slow_reader_dropped(self) -> None:
        self._dropped = True
        if acknowledged(self.transport) is not None:
            self._flush_acks()  # what its peer did receive counts, the rest stays unseen
        if self._ack_call is not None and self._ack_call.active():
            self._ack_call.cancel()
        self._ack_call = None
        self._marks.clear()

    def output_drained(self) -> None:
        if self._marks and self.session is not None:
            if self._ack_call is not None and self._ack_call.active():
                self._ack_call.cancel()
            self._flush_acks()

    def writing_marked(self, data: bytes, offset: int) -> None:
        self._marks.extend((offset + end, label, id_) for end, label, id_ in data.marks)
        self._ack_once_out()

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
            for word, name in zip(wanted, names):
                if word.startswith("-"):
                    self.caps.discard(name)
                else:
                    self.caps.add(name)
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
        self.registration.nick = nick
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
        self.factory.roster.register(self)
        self._welcome()
        return self._direct_backlog()

    def _welcome(self) -> None:
        f = self.factory
        self._numeric(N.RPL_WELCOME, f"Welcome to the Spartan IRC gateway, {self.mask}")
        self._numeric(N.RPL_YOURHOST, f"Your host is {f.server_name}, running version {f.version}")
        self._numeric(N.RPL_CREATED, f"This server was created {f.created}")
        self._numeric(N.RPL_MYINFO, f.server_name, f.version, "o", "nt", trailing=False)
        self._numeric(
            N.RPL_ISUPPORT,
            "AWAYLEN=200",
            "CASEMAPPING=ascii",
            "CHANLIMIT=#:",
            "CHANMODES=,,,nt",
            "CHANNELLEN=33",
            "CHANTYPES=#",
            "NETWORK=Spartan",
            "NICKLEN=32",
            "PREFIX=()",
            f"MAXTARGETS={MAX_TARGETS}",
            "are supported by this server",
        )
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
        encoder = self.factory.encoder
        encode = encoder.tagged if "server-time" in self.caps else encoder.plain
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
        for target in targets:
            self._send_one(target, text, command)
        return None

    def irc_NOTICE(self, params):
        return self.irc_PRIVMSG(params, "NOTICE")

    def _send_one(self, target: str, text: str, command: str) -> None:
        if target == self.nick:  # IRC lets one talk to oneself; Spartan stores nothing
            self.say(format_line(self.mask, command, target, text))
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
        if is_channel(label):
            if label not in self.channels and label not in self._joining:
                return
        elif delivery.message.sender == self.nick and "echo-message" not in self.caps:
            return  # our own direct message from another session: IRC clients expect none
        if self.replies_waiting:
            self.push_in_order(lambda: self._render(delivery))
        else:
            self.push(self._render(delivery))

    def _render(self, delivery: Delivery) -> bytes:
        """A message as written right now: nothing if it was already written (a backlog
        and a live push of the same message); else its lines, to be acknowledged once
        they are out."""
        message, label = delivery.message, delivery.conversation
        if message.id <= self._shown.get(label, 0):
            return b""
        self._shown[label] = message.id
        encoder = self.factory.encoder
        data = delivery.encoded(encoder.tagged if "server-time" in self.caps else encoder.plain)
        self._marks.append((self.output_offset + len(data), label, message.id))
        self._ack_once_out()
        return data

    def _ack_once_out(self) -> None:
        transport = self.transport
        if hasattr(transport, "producerPaused"):
            # A socket transport resumes a producer it believes paused once its buffer is
            # empty: `output_drained` looks at the socket right after the write.
            transport.producerPaused = True
        if self._ack_call is None:
            self._ack_call = self.factory.clock.callLater(0, self._flush_acks)

    def _flush_acks(self, wait: float = ACK_RECHECK) -> None:
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
        marks, acks = self._marks, {}
        while marks and marks[0][0] <= through:
            _, label, upto = marks.popleft()
            acks[label] = upto
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
            self._joining.add(channel)
            d = self.session.open(channel)
            d.addBoth(self._join_read, channel)
            self._answer_later(d)
        return None

    def _join_read(self, result, channel: str):
        self._joining.discard(channel)
        if isinstance(result, Failure):
            return result  # the connection layer answers it
        label, unseen = result
        return self._collect(self._joined, channel, label, unseen)

    def _joined(self, channel: str, label: str, unseen) -> None:
        if channel in self.channels or self._closing:
            return
        roster = self.factory.roster
        announce = not roster.in_channel(channel, self.nick)
        self.channels.append(channel)
        roster.join(channel, self)
        line = format_line(self.mask, "JOIN", channel, trailing=False)
        if announce:
            roster.broadcast(channel, line, exclude=self.nick)
        self.say(line)  # no RPL_TOPIC: Spartan groups have no topic
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

    def _topic(self, channel: str) -> str:
        members = self.chat.members(channel[1:]) or ()
        return f"Spartan group {channel[1:]}: {', '.join(members)}"

    def irc_TOPIC(self, params):
        channel = params[0]
        if self._group_of(channel) is None:
            return None
        if channel not in self.channels:
            return self._numeric(N.ERR_NOTONCHANNEL, channel, "You're not on that channel")
        if len(params) > 1:
            return self._numeric(
                N.ERR_CHANOPRIVSNEEDED, channel, "Spartan groups have no topic to set"
            )
        self._numeric(N.RPL_NOTOPIC, channel, "No topic is set")
        return None

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
        self._numeric(N.RPL_LISTSTART, "Channel", "Users  Name")
        for group, _ in self.session.groups():
            channel = GROUP_PREFIX + group
            if wanted is None or channel in wanted:
                self._numeric(N.RPL_LIST, channel, str(len(self._visible(channel))), self._topic(channel))
        self._numeric(N.RPL_LISTEND, "End of /LIST")

    def irc_MODE(self, params):
        target = params[0]
        if is_channel(target):
            if self._group_of(target) is None:
                return None
            if len(params) == 1:
                return self._numeric(N.RPL_CHANNELMODEIS, target, "+nt", trailing=False)
            if params[1].lstrip("+") == "b":
                return self._numeric(N.RPL_ENDOFBANLIST, target, "End of channel ban list")
            return self._numeric(N.ERR_CHANOPRIVSNEEDED, target, "Channel modes cannot be changed")
        if target != self.nick:
            return self._numeric(N.ERR_USERSDONTMATCH, "Can't change mode for other users")
        if len(params) == 1:
            return self._numeric(N.RPL_UMODEIS, "+", trailing=False)
        return self._numeric(N.ERR_UMODEUNKNOWNFLAG, "Unknown MODE flag")

    # -- users --------------------------------------------------------------------------------

    def _who_line(self, channel: str, nick: str) -> None:
        f = self.factory
        flags = "G" if f.away_message(nick) is not None else "H"
        self._numeric(
            N.RPL_WHOREPLY, channel, f.roster.ident(nick), f.server_name, f.server_name,
            nick, flags, f"0 {f.roster.realname(nick)}",
        )  # fmt: skip

    def irc_WHO(self, params):
        mask = params[0] if params and params[0] else "*"
        if is_channel(mask):
            if self._is_member(mask):
                for nick in self._visible(mask):
                    self._who_line(mask, nick)
        else:
            pattern = mask.casefold()
            for user, online in self.chat.users():
                if online and fnmatch.fnmatchcase(user.casefold(), pattern):
                    self._who_line("*", user)
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
}
