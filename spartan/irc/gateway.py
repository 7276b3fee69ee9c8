"""
The IRC gateway's protocol: one IRC connection, from registration to ``QUIT``.

Theory of operation
-------------------
* The gateway is one more adapter over the chat core, beside `spartan.native.protocol`: a nick is a
  Spartan user, a channel ``#group1`` is the group ``group1``, and ``PRIVMSG``/``NOTICE`` to
  a nick or a channel is a Spartan message.  The protocol knows only its factory; the
  factory knows only the `Chat`.
* Registration (``CAP``/``PASS``/``NICK``/``USER``) ends in ``Chat.login(nick, password)``;
  ``PASS`` is passed through as the password.  Then the welcome numerics, the MOTD, and
  the direct messages the user has not seen, oldest first; they then count as seen.
* Groups are not joined automatically.  ``JOIN`` is for members only (others get
  ERR_INVITEONLYCHAN); it answers with the names and the group's unseen messages.  Live
  group messages reach an IRC connection only for the channels it joined; the others stay
  unseen and come with the ``JOIN``.  What an IRC connection was shown is acknowledged
  (IRC has no ACK), in one batch per reactor turn.
* Every message goes out once per format: ``Delivery.encoded`` caches the plain IRC
  encoding and the one with the ``@time`` tag (``server-time``) for every reader.
* Input is bytes, parsed here, never by exceptions: an overlong line gets ERR_INPUTTOOLONG
  (417) and is discarded up to its end; an unknown command gets ERR_UNKNOWNCOMMAND (421);
  a bug answers with a NOTICE.  Nothing a client sends drops the connection but ``QUIT``
  and flooding.
* Lines are handled one at a time, in order: while one waits on the core (a login, a
  message being stored, a backlog being read), later lines wait in a queue, and reading
  from the socket pauses once the queue is long.  Messages pushed meanwhile are held and
  written after the reply, so a backlog is never interleaved with newer messages.
* A peer that stops reading is dropped once ``max_pending`` bytes wait for it, as on the
  native port; its messages stay unseen.
* The native port's limits hold here too (`spartan.net.guard`, which this protocol serves as
  an `IGuarded`): each line the queue hands out is admitted by the guard first; a slowed
  connection stops taking lines from the queue and reading the socket.  In IRC's words:
  ``NOTICE <nick>`` to slow down, ``PING :<n>`` half way to the idle timeout (a ``PONG``,
  like any line, is activity), ``ERROR :Closing Link: <nick> (<reason>)`` and close.
* Channel presence (``JOIN``/``PART``/``QUIT`` lines, ``NAMES``) is the gateway's own:
  the IRC connections that joined, plus members online only through the native protocol.
"""

from __future__ import annotations

from spartan.core.names import GROUP_PREFIX, is_name

import fnmatch
from collections import deque
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger
from twisted.words.protocols import irc
from zope.interface import implementer

from spartan.net.backlog import Backlog
from spartan.core.chat import Delivery, Session
from spartan.core.errors import ChatError
from spartan.net.guard import Guard, IGuarded
from spartan.irc.lines import (
    COMMAND,
    MAX_BODY,
    clean_text,
    format_line,
    is_channel,
    parse_line,
    server_time,
)
from spartan.irc.numerics import (
    ERR_ALREADYREGISTERED,
    ERR_CANNOTSENDTOCHAN,
    ERR_CHANOPRIVSNEEDED,
    ERR_ERRONEUSNICKNAME,
    ERR_INPUTTOOLONG,
    ERR_INVALIDCAPCMD,
    ERR_INVITEONLYCHAN,
    ERR_NEEDMOREPARAMS,
    ERR_NONICKNAMEGIVEN,
    ERR_NOORIGIN,
    ERR_NORECIPIENT,
    ERR_NOSUCHCHANNEL,
    ERR_NOSUCHNICK,
    ERR_NOTEXTTOSEND,
    ERR_NOTONCHANNEL,
    ERR_NOTREGISTERED,
    ERR_PASSWDMISMATCH,
    ERR_TOOMANYTARGETS,
    ERR_UMODEUNKNOWNFLAG,
    ERR_UNKNOWNCOMMAND,
    ERR_USERSDONTMATCH,
    RPL_AWAY,
    RPL_CHANNELMODEIS,
    RPL_CREATED,
    RPL_ENDOFBANLIST,
    RPL_ENDOFMOTD,
    RPL_ENDOFNAMES,
    RPL_ENDOFWHO,
    RPL_ENDOFWHOIS,
    RPL_ISUPPORT,
    RPL_LIST,
    RPL_LISTEND,
    RPL_LISTSTART,
    RPL_MOTD,
    RPL_MOTDSTART,
    RPL_MYINFO,
    RPL_NAMREPLY,
    RPL_NOTOPIC,
    RPL_NOWAWAY,
    RPL_UMODEIS,
    RPL_UNAWAY,
    RPL_WELCOME,
    RPL_WHOISCHANNELS,
    RPL_WHOISSERVER,
    RPL_WHOISUSER,
    RPL_WHOREPLY,
    RPL_YOURHOST,
)

if TYPE_CHECKING:
    from spartan.irc.factory import IRCGatewayFactory

MAX_TARGETS = 4
INPUT_QUEUE_PAUSE = 64  # stop reading the socket while this many lines wait
# How an IRC server words the guard's reasons for closing (ERROR :Closing Link: nick (...)).
_CLOSE_REASONS = {
    "rate-limited": "Excess Flood",
    "login-timeout": "Registration timed out",
    "idle-timeout": "Ping timeout",
}
CAPABILITIES = ("server-time", "echo-message")

# Commands whose first parameter names nicks or channels (IRC compares them
# case-insensitively; Spartan names are exact, so they are mapped when unambiguous).
_NAME_PARAMS = {"NICK", "PRIVMSG", "NOTICE", "JOIN", "PART", "NAMES", "TOPIC", "WHO", "MODE"}
_BEFORE_REGISTRATION = {"CAP", "PASS", "NICK", "USER", "PING", "PONG", "QUIT"}


@implementer(IGuarded)
class IRCGateway(irc.IRC):
    log = Logger()
    factory: IRCGatewayFactory
    address: str | None = None  # the peer's host, counted by the factory

    def __init__(self) -> None:
        self.nick: str | None = None
        self.realname = ""
        self.ident = ""
        self.password: str | None = None
        self.got_user = False
        self.negotiating = False  # CAP LS/REQ seen, CAP END not yet
        self.caps: set[str] = set()
        self.session: Session | None = None
        self.channels: list[str] = []  # joined, in order of joining
        self.away: str | None = None
        self._registering = False
        self._inbuf = b""
        self._discarding = False  # inside the tail of an overlong line
        self._input: deque[bytes | None] = deque()  # None: an overlong line
        self._busy = False  # a command is waiting on the core
        self._processing = False
        self._reading_paused = False
        self._lines_paused = False  # the guard slowed this connection (IGuarded)
        self._held: list[Delivery] | None = None  # pushes held while a reply is pending
        self._to_ack: dict[str, int] = {}
        self._ack_call = None
        self._closing = False

    # -- connection ------------------------------------------------------------------------

    def connectionMade(self) -> None:
        # irc.IRC.connectionMade would look up our FQDN (blocking DNS): not needed.
        self.hostname = self.factory.server_name
        self.backlog = Backlog(self.factory.max_pending)
        self.transport.registerProducer(self.backlog, True)
        self.guard = Guard(self, self.factory.limits, self.factory.clock)
        self.guard.start()

    def connectionLost(self, reason) -> None:
        self._closing = True
        self._input.clear()
        self.factory.connection_lost(self)
        if hasattr(self, "guard"):
            self.guard.stop()
        if self.session is not None:
            self._flush_acks()
            self._leave_all("QUIT", self._quit_reason or "Connection closed")
            self.factory.unregister(self)
            self.session.logout()
            self.session = None

    _quit_reason: str | None = None

    def _write(self, data: bytes) -> None:
        if self._closing and self.transport is None:
            return
        backlog = self.backlog
        if backlog.paused and backlog.overflows(len(data)):
            self._drop_slow_reader()
            return
        self.transport.write(data)

    def _drop_slow_reader(self) -> None:
        if not self._closing:
            self._closing = True
            self.log.warn(
                "Closing the IRC connection of {who}: it stopped reading ({n} bytes waiting)",
                who=self.nick or "a client",
                n=self.backlog.waiting,
            )
            self.transport.abortConnection()

    def sendLine(self, line) -> None:  # irc.IRC's senders end here
        if isinstance(line, str):
            line = line.encode("utf-8")
        self._write(line + b"\r\n")

    def _send(self, command: str, *params: str, source: str | None = None) -> None:
        self._write(format_line(source or self.factory.server_name, command, *params))

    def _numeric(self, code: str, *params: str, trailing: bool = True) -> None:
        self._write(
            format_line(self.factory.server_name, code, self.nick or "*", *params, trailing=trailing)
        )

    @property
    def mask(self) -> str:
        return self.factory.mask(self.nick or "*")

    # -- lines in --------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        lines = (self._inbuf + data).split(b"\n")
        self._inbuf = lines.pop()
        limit = self.factory.max_line
        for line in lines:
            if self._discarding:  # the end of an overlong line
                self._discarding = False
            elif len(line) > limit:
                self._input.append(None)
            else:
                self._input.append(line)
        if len(self._inbuf) > limit:
            if not self._discarding:
                self._input.append(None)
                self._discarding = True
            self._inbuf = b""
        self._process()

    def _process(self) -> None:
        if self._processing:
            return
        self._processing = True
        try:
            while self._input and not (self._busy or self._closing or self._lines_paused):
                line = self._input.popleft()
                if not self.guard.admit():  # flooding: refused, and the connection closes
                    break
                result = self._handle(line)
                if isinstance(result, Deferred):
                    self._busy = True
                    self._held = []
                    result.addErrback(self._failed).addBoth(self._finished)
        finally:
            self._processing = False
        self._flow()

    def _finished(self, _) -> None:
        self._busy = False
        held, self._held = self._held or [], None
        for delivery in held:
            self.receive(delivery)
        self._process()

    def _flow(self) -> None:
        """Stop reading the socket while lines pile up behind a slow command, or while
        the guard has slowed the connection."""
        if self.transport is None or self._closing:
            return
        hold = self._lines_paused or len(self._input) >= INPUT_QUEUE_PAUSE
        if hold and not self._reading_paused:
            self._reading_paused = True
            self.transport.pauseProducing()
        elif not hold and not self._input and self._reading_paused:
            self._reading_paused = False
            self.transport.resumeProducing()

    def _handle(self, line: bytes | None) -> Deferred | None:
        """One line: its reply is written, or a Deferred fires once it is.  Never raises."""
        if line is None:
            self._numeric(ERR_INPUTTOOLONG, "Input line was too long")
            return None
        parsed = parse_line(line)
        if parsed is None:
            return None  # IRC ignores empty lines
        command, params = parsed
        if command in _NAME_PARAMS and params:
            params[0] = ",".join(self.factory.canonical(p) for p in params[0].split(","))
        if not COMMAND.match(command):
            return self.irc_unknown("", command[:20], params)
        if self.session is None and command not in _BEFORE_REGISTRATION:
            method = getattr(self, "irc_" + command, None)
            if method is not None:
                self._numeric(ERR_NOTREGISTERED, "You have not registered")
                return None
        try:
            method = getattr(self, "irc_" + command, None)
            if method is None:
                return self.irc_unknown("", command, params)
            return method("", params)
        except ChatError as e:
            self._notice_error(e)
        except Exception:
            self.log.failure("Error handling IRC {command}", command=command)
            self._notice(f"The server failed to handle {command}; it has been logged.")
        return None

    def _failed(self, failure) -> None:
        if failure.check(ChatError):
            self._notice_error(failure.value)
        else:
            self.log.failure("Error answering an IRC command", failure)
            self._notice("The server failed to handle that command; it has been logged.")

    def _notice(self, text: str) -> None:
        self._send("NOTICE", self.nick or "*", text)

    def _notice_error(self, error: ChatError) -> None:
        self._notice(f"{error.message} ({error.code})")

    # -- IGuarded: the guard's words on IRC -------------------------------------------------

    @property
    def logged_in(self) -> bool:
        return self.session is not None

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def who(self) -> str:
        return self.nick or "a client"

    def send_notice(self, code: str, sentence: str) -> None:
        self._notice(sentence)

    def send_ping(self, token: str) -> None:
        self._write(format_line(None, "PING", token))

    def refuse(self, code: str, sentence: str) -> None:
        # Lines are handled one at a time: nothing is pending when a line is admitted.
        self._error_and_close(_CLOSE_REASONS.get(code, sentence))

    def hang_up(self, code: str, sentence: str) -> None:
        self._notice(sentence)
        self._error_and_close(_CLOSE_REASONS.get(code, sentence))

    def pause_lines(self) -> None:
        self._lines_paused = True
        self._flow()

    def resume_lines(self) -> None:
        self._lines_paused = False
        self._process()  # the lines that waited; reading resumes once they are handled

    def irc_unknown(self, prefix, command, params) -> None:
        self._numeric(ERR_UNKNOWNCOMMAND, command, "Unknown command")

    # -- registration ----------------------------------------------------------------------

    def irc_CAP(self, prefix, params):
        if not params:
            return self._numeric(ERR_NEEDMOREPARAMS, "CAP", "Not enough parameters")
        sub = params[0].upper()
        nick = self.nick or "*"
        if sub == "LS":
            if self.session is None:
                self.negotiating = True
            self._send("CAP", nick, "LS", " ".join(CAPABILITIES))
        elif sub == "LIST":
            self._send("CAP", nick, "LIST", " ".join(sorted(self.caps)))
        elif sub == "REQ":
            if self.session is None:
                self.negotiating = True
            wanted = params[1].split() if len(params) > 1 else []
            names = [w[1:] if w.startswith("-") else w for w in wanted]
            if not wanted or any(name not in CAPABILITIES for name in names):
                self._send("CAP", nick, "NAK", " ".join(wanted))
                return None
            for word, name in zip(wanted, names):
                if word.startswith("-"):
                    self.caps.discard(name)
                else:
                    self.caps.add(name)
            self._send("CAP", nick, "ACK", " ".join(wanted))
        elif sub == "END":
            if self.negotiating:
                self.negotiating = False
                return self._maybe_register()
        else:
            self._numeric(ERR_INVALIDCAPCMD, params[0], "Invalid CAP command")
        return None

    def irc_PASS(self, prefix, params):
        if self.session is not None or self._registering:
            return self._numeric(ERR_ALREADYREGISTERED, "You may not reregister")
        if not params:
            return self._numeric(ERR_NEEDMOREPARAMS, "PASS", "Not enough parameters")
        self.password = params[0]
        return None

    def irc_NICK(self, prefix, params):
        if not params or not params[0]:
            return self._numeric(ERR_NONICKNAMEGIVEN, "No nickname given")
        nick = params[0]
        if self.session is not None or self._registering:
            if nick != self.nick:
                self._numeric(
                    ERR_ERRONEUSNICKNAME,
                    nick,
                    "Nicks are Spartan user names: reconnect to use another user",
                )
            return None
        if not is_name(nick) or not self.factory.chat.directory.is_user(nick):
            return self._numeric(ERR_ERRONEUSNICKNAME, nick, "Not a Spartan user name")
        self.nick = nick
        return self._maybe_register()

    def irc_USER(self, prefix, params):
        if self.session is not None or self._registering:
            return self._numeric(ERR_ALREADYREGISTERED, "You may not reregister")
        if len(params) < 4 or not params[0] or not params[3]:
            return self._numeric(ERR_NEEDMOREPARAMS, "USER", "Not enough parameters")
        self.got_user = True
        self.ident = params[0][:32]
        self.realname = params[3]
        return self._maybe_register()

    def _maybe_register(self):
        if self.nick is None or not self.got_user or self.negotiating or self._registering:
            return None
        if self.session is not None:
            return None
        self._registering = True
        peer = getattr(self.transport.getPeer(), "host", None)
        d = self.factory.chat.login(self.nick, self.password, self, peer)
        d.addCallbacks(self._logged_in, self._login_refused)
        return d

    def _login_refused(self, failure) -> None:
        self._registering = False
        if not failure.check(ChatError):
            self.log.failure("IRC login failed", failure)
        self._numeric(ERR_PASSWDMISMATCH, "Password incorrect")
        self._error_and_close("Bad user name or password")

    def _error_and_close(self, reason: str) -> None:
        self._write(format_line(None, "ERROR", f"Closing Link: {self.nick or '*'} ({reason})"))
        self._closing = True
        self.transport.loseConnection()

    def _logged_in(self, session: Session):
        self._registering = False
        if self._closing or not self.connected:
            session.logout()
            return None
        self.session = session
        self.factory.register(self)
        self._welcome()
        return self._deliver_direct_backlog()

    def _welcome(self) -> None:
        f = self.factory
        self._numeric(RPL_WELCOME, f"Welcome to the Spartan IRC gateway, {self.mask}")
        self._numeric(RPL_YOURHOST, f"Your host is {f.server_name}, running version {f.version}")
        self._numeric(RPL_CREATED, f"This server was created {f.created}")
        self._numeric(RPL_MYINFO, f.server_name, f.version, "o", "nt", trailing=False)
        self._numeric(
            RPL_ISUPPORT,
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
        self._numeric(RPL_MOTDSTART, f"- {f.server_name} Message of the day - ")
        for line in f.motd:
            self._numeric(RPL_MOTD, f"- {line}")
        self._numeric(RPL_ENDOFMOTD, "End of /MOTD command.")

    @inlineCallbacks
    def _deliver_direct_backlog(self):
        """The direct messages the user has not seen, oldest first; then they are seen."""
        session = self.session
        unseen = []
        for label, _ in (yield session.unread()):
            if not is_channel(label):
                label, messages = yield session.open(label)
                unseen.extend((m, label) for m in messages)
        unseen.sort(key=lambda pair: pair[0].id)
        self._replay(unseen)

    def _replay(self, unseen) -> None:
        """Write messages read from the store, remember them as seen, and hold back
        the pushed copies of the same messages."""
        written = set()
        for message, label in unseen:
            self._write_delivery(Delivery(message, label))
            written.add(message.id)
        if self._held:
            self._held = [d for d in self._held if d.message.id not in written]

    def irc_MOTD(self, prefix, params):
        self._motd()

    # -- keepalive, quitting, away ---------------------------------------------------------

    def irc_PING(self, prefix, params):
        if not params:
            return self._numeric(ERR_NOORIGIN, "No origin specified")
        self._send("PONG", self.factory.server_name, params[0])
        return None

    def irc_PONG(self, prefix, params):
        return None

    def irc_QUIT(self, prefix, params):
        reason = params[0] if params else "Client quit"
        self._quit_reason = f"Quit: {reason}"
        self._error_and_close(self._quit_reason)

    def irc_AWAY(self, prefix, params):
        if params and params[0]:
            self.away = params[0][:200]
            self._numeric(RPL_NOWAWAY, "You have been marked as being away")
        else:
            self.away = None
            self._numeric(RPL_UNAWAY, "You are no longer marked as being away")

    # -- messages --------------------------------------------------------------------------

    def irc_PRIVMSG(self, prefix, params, command="PRIVMSG"):
        quiet = command == "NOTICE"  # RFC: never an automatic reply to a NOTICE
        if not params or not params[0]:
            if not quiet:
                self._numeric(ERR_NORECIPIENT, f"No recipient given ({command})")
            return None
        if len(params) < 2 or not params[1]:
            if not quiet:
                self._numeric(ERR_NOTEXTTOSEND, "No text to send")
            return None
        targets = [t for t in params[0].split(",") if t]
        if len(targets) > MAX_TARGETS:
            if not quiet:
                self._numeric(ERR_TOOMANYTARGETS, params[0], "Too many targets")
            return None
        text = clean_text(params[1])
        if not text.strip():
            if not quiet and not params[1].startswith("\x01"):
                self._numeric(ERR_NOTEXTTOSEND, "No text to send")
            return None
        sends = [self._send_one(target, text, quiet, command) for target in targets]
        pending = [d for d in sends if d is not None]
        if not pending:
            return None
        d = pending[0]
        for other in pending[1:]:
            d.addBoth(lambda _, o=other: o)
        return d

    def irc_NOTICE(self, prefix, params):
        return self.irc_PRIVMSG(prefix, params, "NOTICE")

    def _send_one(self, target: str, text: str, quiet: bool, command: str) -> Deferred | None:
        chat = self.factory.chat
        if target == self.nick:  # IRC lets one talk to oneself; Spartan stores nothing
            self._write(format_line(self.mask, command, target, text))
            return None
        if is_channel(target):
            group = target[1:]
            error = None
            if not chat.directory.is_group(group):
                error = (ERR_NOSUCHCHANNEL, target, "No such channel")
            elif self.nick not in chat.directory.groups[group]:
                error = (ERR_CANNOTSENDTOCHAN, target, "Cannot send to channel (members only)")
            if error:
                if not quiet:
                    self._numeric(*error)
                return None
        elif not is_name(target) or not chat.directory.is_user(target):
            if not quiet:
                self._numeric(ERR_NOSUCHNICK, target, "No such nick/channel")
            return None
        elif not quiet:
            away = self.factory.away_message(target)
            if away is not None:
                self._numeric(RPL_AWAY, target, away)

        def sent(message):
            if "echo-message" in self.caps:
                delivery = Delivery(message, target)
                tags = server_time(message.timestamp) if "server-time" in self.caps else ""
                for piece in self.factory.privmsg_pieces(delivery, target):
                    self._write(format_line(self.factory.mask(message.sender), command, target, piece, tags=tags))

        def failed(failure):
            failure.trap(ChatError)
            if not quiet:
                self._notice(f"Message to {target} not delivered: {failure.value.message}")

        return self.session.send(target, text).addCallbacks(sent, failed)

    def receive(self, delivery: Delivery) -> None:
        """The core pushes a message: write it, unless it is for a channel not joined."""
        if self._closing:
            return
        if is_channel(delivery.conversation):
            if delivery.conversation not in self.channels:
                return  # stays unseen; it comes with the JOIN
        elif delivery.message.sender == self.nick and "echo-message" not in self.caps:
            return  # our own direct message from another session: IRC clients expect none
        if self._held is not None:
            self._held.append(delivery)
            return
        self._write_delivery(delivery)

    def _write_delivery(self, delivery: Delivery) -> None:
        f = self.factory
        encoder = f.encode_tagged if "server-time" in self.caps else f.encode_plain
        self._write(delivery.encoded(encoder))
        self._seen(delivery.conversation, delivery.message.id)

    def _seen(self, label: str, message_id: int) -> None:
        if message_id > self._to_ack.get(label, 0):
            self._to_ack[label] = message_id
        if self._ack_call is None:
            self._ack_call = self.factory.chat.clock.callLater(0, self._flush_acks)

    def _flush_acks(self) -> None:
        if self._ack_call is not None and self._ack_call.active():
            self._ack_call.cancel()
        self._ack_call = None
        acks, self._to_ack = self._to_ack, {}
        if self.session is None:
            return
        for label, upto in acks.items():
            self.session.ack(label, upto).addErrback(self._ack_failed, label)

    def _ack_failed(self, failure, label) -> None:
        if failure.check(ChatError):  # the store failed: the messages stay unseen
            self.log.warn("Could not mark {label} seen: {why}", label=label, why=failure.value.message)
        else:
            self.log.failure("Marking {label} seen", failure, label=label)

    # -- channels --------------------------------------------------------------------------

    def _group_of(self, channel: str):
        """(group name, members) of a channel, or None after sending ERR_NOSUCHCHANNEL."""
        directory = self.factory.chat.directory
        group = channel[1:] if is_channel(channel) else None
        if group is None or not directory.is_group(group):
            self._numeric(ERR_NOSUCHCHANNEL, channel, "No such channel")
            return None
        return group, directory.groups[group]

    def irc_JOIN(self, prefix, params):
        if not params or not params[0]:
            return self._numeric(ERR_NEEDMOREPARAMS, "JOIN", "Not enough parameters")
        if params[0] == "0":
            for channel in list(self.channels):
                self._part(channel, "Left all channels")
            return None
        pending = []
        for channel in params[0].split(",")[:MAX_TARGETS * 4]:
            found = self._group_of(channel)
            if found is None or channel in self.channels:
                continue
            group, members = found
            if self.nick not in members:
                self._numeric(ERR_INVITEONLYCHAN, channel, "Cannot join channel (+i): members only")
                continue
            pending.append(channel)
        if not pending:
            return None
        return self._join_all(pending)

    @inlineCallbacks
    def _join_all(self, channels):
        for channel in channels:
            # Read the backlog first, so that nothing pushed meanwhile comes before it.
            label, unseen = yield self.session.open(channel)
            announce = not self.factory.in_channel(channel, self.nick)
            self.channels.append(channel)
            self.factory.join(channel, self)
            line = format_line(self.mask, "JOIN", channel, trailing=False)
            if announce:
                self.factory.broadcast(channel, line, exclude=self.nick)
            self._write(line)  # no RPL_TOPIC: Spartan groups have no topic
            self._names(channel)
            self._replay([(m, label) for m in unseen])

    def irc_PART(self, prefix, params):
        if not params or not params[0]:
            return self._numeric(ERR_NEEDMOREPARAMS, "PART", "Not enough parameters")
        reason = params[1] if len(params) > 1 else ""
        for channel in params[0].split(","):
            if channel in self.channels:
                self._part(channel, reason)
            elif self._group_of(channel) is not None:
                self._numeric(ERR_NOTONCHANNEL, channel, "You're not on that channel")
        return None

    def _part(self, channel: str, reason: str) -> None:
        line = format_line(self.mask, "PART", channel, *([reason] if reason else []))
        self._write(line)
        self.channels.remove(channel)
        self.factory.leave(channel, self)
        if not self.factory.in_channel(channel, self.nick):
            self.factory.broadcast(channel, line, exclude=self.nick)

    def _leave_all(self, command: str, reason: str) -> None:
        line = format_line(self.mask, command, reason)
        told = set()
        for channel in self.channels:
            self.factory.leave(channel, self)
            if not self.factory.in_channel(channel, self.nick):
                for peer in self.factory.channel_members(channel):
                    if peer.nick != self.nick and peer not in told:
                        told.add(peer)
                        peer._write(line)
        self.channels = []

    def _topic(self, channel: str) -> str:
        group, members = self._group_of(channel) or ("", ())
        return f"Spartan group {group}: {', '.join(members)}"

    def _topic_reply(self, channel: str) -> None:
        self._numeric(RPL_NOTOPIC, channel, "No topic is set")

    def irc_TOPIC(self, prefix, params):
        if not params:
            return self._numeric(ERR_NEEDMOREPARAMS, "TOPIC", "Not enough parameters")
        channel = params[0]
        found = self._group_of(channel)
        if found is None:
            return None
        if channel not in self.channels:
            return self._numeric(ERR_NOTONCHANNEL, channel, "You're not on that channel")
        if len(params) > 1:
            return self._numeric(
                ERR_CHANOPRIVSNEEDED, channel, "Spartan groups have no topic to set"
            )
        self._topic_reply(channel)
        return None

    def _visible(self, channel: str) -> list[str]:
        """Who is in a channel: members who joined over IRC or are online natively."""
        f = self.factory
        members = f.chat.directory.groups[channel[1:]]
        return [
            m
            for m in members
            if f.in_channel(channel, m) or (f.chat.is_online(m) and m not in f.irc_users)
        ]

    def _names(self, channel: str) -> None:
        names = self._visible(channel)
        head = len(format_line(self.factory.server_name, RPL_NAMREPLY, self.nick, "=", channel, ""))
        line: list[str] = []
        for name in names:
            if line and head + len(" ".join(line + [name])) > MAX_BODY:
                self._numeric(RPL_NAMREPLY, "=", channel, " ".join(line))
                line = []
            line.append(name)
        if line:
            self._numeric(RPL_NAMREPLY, "=", channel, " ".join(line))
        self._numeric(RPL_ENDOFNAMES, channel, "End of /NAMES list")

    def irc_NAMES(self, prefix, params):
        if not params or not params[0]:
            return self._numeric(RPL_ENDOFNAMES, "*", "End of /NAMES list")
        directory = self.factory.chat.directory
        for channel in params[0].split(",")[:MAX_TARGETS]:
            group = channel[1:]
            if is_channel(channel) and directory.is_group(group) and self.nick in directory.groups[group]:
                self._names(channel)
            else:
                self._numeric(RPL_ENDOFNAMES, channel, "End of /NAMES list")
        return None

    def irc_LIST(self, prefix, params):
        directory = self.factory.chat.directory
        wanted = set(params[0].split(",")) if params and params[0] else None
        self._numeric(RPL_LISTSTART, "Channel", "Users  Name")
        for group in directory.groups_of(self.nick):
            channel = GROUP_PREFIX + group
            if wanted is None or channel in wanted:
                self._numeric(RPL_LIST, channel, str(len(self._visible(channel))), self._topic(channel))
        self._numeric(RPL_LISTEND, "End of /LIST")

    def irc_MODE(self, prefix, params):
        if not params:
            return self._numeric(ERR_NEEDMOREPARAMS, "MODE", "Not enough parameters")
        target = params[0]
        if is_channel(target):
            found = self._group_of(target)
            if found is None:
                return None
            if len(params) == 1:
                return self._numeric(RPL_CHANNELMODEIS, target, "+nt", trailing=False)
            if params[1].lstrip("+") == "b":
                return self._numeric(RPL_ENDOFBANLIST, target, "End of channel ban list")
            return self._numeric(ERR_CHANOPRIVSNEEDED, target, "Channel modes cannot be changed")
        if target != self.nick:
            return self._numeric(ERR_USERSDONTMATCH, "Can't change mode for other users")
        if len(params) == 1:
            return self._numeric(RPL_UMODEIS, "+", trailing=False)
        return self._numeric(ERR_UMODEUNKNOWNFLAG, "Unknown MODE flag")

    # -- users -----------------------------------------------------------------------------

    def _who_line(self, channel: str, nick: str) -> None:
        away = self.factory.away_message(nick)
        flags = "G" if away is not None else "H"
        realname = self.factory.realname(nick)
        self._numeric(
            RPL_WHOREPLY, channel, self.factory.ident(nick), self.factory.server_name, self.factory.server_name,
            nick, flags, f"0 {realname}",
        )

    def irc_WHO(self, prefix, params):
        mask = params[0] if params and params[0] else "*"
        directory = self.factory.chat.directory
        if is_channel(mask):
            group = mask[1:]
            if directory.is_group(group) and self.nick in directory.groups[group]:
                for nick in self._visible(mask):
                    self._who_line(mask, nick)
        else:
            pattern = mask.casefold()
            for user, online in self.factory.chat.users():
                if online and fnmatch.fnmatchcase(user.casefold(), pattern):
                    self._who_line("*", user)
        self._numeric(RPL_ENDOFWHO, mask, "End of WHO list")

    def irc_WHOIS(self, prefix, params):
        if not params or not params[-1]:
            return self._numeric(ERR_NONICKNAMEGIVEN, "No nickname given")
        f = self.factory
        nick = f.canonical(params[-1].split(",")[0])
        if not f.chat.directory.is_user(nick):
            self._numeric(ERR_NOSUCHNICK, nick, "No such nick/channel")
            return self._numeric(RPL_ENDOFWHOIS, nick, "End of /WHOIS list")
        self._numeric(RPL_WHOISUSER, nick, f.ident(nick), f.server_name, "*", f.realname(nick))
        self._numeric(RPL_WHOISSERVER, nick, f.server_name, "Spartan chat server")
        channels = [c for c in f.channels_of(nick) if self.nick in f.chat.directory.groups[c[1:]]]
        if channels:
            self._numeric(RPL_WHOISCHANNELS, nick, " ".join(channels))
        away = f.away_message(nick)
        if away is not None:
            self._numeric(RPL_AWAY, nick, away)
        self._numeric(RPL_ENDOFWHOIS, nick, "End of /WHOIS list")
        return None
