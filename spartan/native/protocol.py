"""
The Twisted adapter between connections and the chat core: a LineReceiver and its factory.

Each line is parsed by `spartan.native.wire`, handed to the core, and the result formatted back.
Replies go out in the order the lines came even when the core answers later (a SEND
waits for the store): each reply takes a slot in a queue that is written in order.

Speed (issue 6, see docs/performance.md): a read is split into lines in one go, and while
its lines are handled every connection's output is gathered and written once at the end of
the read (`SpartanFactory` batches; `_write` keeps the back-pressure rule).  A Deferred that
has already fired (the in-memory store answers at once) is used at once, with no slot.
"""

from __future__ import annotations

from collections import deque

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.python.failure import Failure
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer

from spartan import __version__
from spartan.native import wire
from spartan.net.backlog import Backlog
from spartan.core.chat import Chat, ChatError, Delivery, Session
from spartan.net.guard import Guard, IGuarded
from spartan.net.limits import ConnectionCounter, ServerLimits
from spartan.tokens import Token, session_tokens

DEFAULT_MAX_LINE = 4096
DEFAULT_MAX_PENDING = 1 << 20


def encode_delivery(delivery: Delivery) -> bytes:
    """A delivered message as a ``* MSG`` line (one encoding shared by every recipient)."""
    m = delivery.message
    return wire.format_message("MSG", m.id, m.timestamp, delivery.conversation, m.sender, m.text)


def _message_lines(kind: str, label: str, messages) -> list[bytes]:
    return [
        wire.format_message(kind, m.id, m.timestamp, label, m.sender, m.text) for m in messages
    ]


@implementer(IGuarded)
class SpartanProtocol(LineReceiver):
    # Bare LF ends a line, so nc and scripts work as well as telnet; wire drops the CR.
    delimiter = b"\n"

    log = Logger()
    factory: SpartanFactory
    session: Session | None = None
    _logging_in = False
    address: str | None = None  # the peer's host, counted by the factory

    def __init__(self) -> None:
        # Slots (_Slot, data None until answered), written in order; made when a reply has
        # to wait (an empty deque is 600 bytes, a third of an idle connection: issue 6).
        self._replies: deque[_Slot] | None = None
        self._discarding = False  # inside the tail of an overlong line
        self._closing = False
        self._pending: list[bytes] | None = None  # output gathered during a batch (_write)

    # -- connection -------------------------------------------------------------------------

    def connectionMade(self) -> None:
        self.MAX_LENGTH = self.factory.max_line
        # Output is already gathered into one write per connection per read or commit, so
        # Nagle only delays it: with a store that answers later, a reply waited for the
        # peer's delayed ACK of the previous write (~30 ms a round trip; issue 6).
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            try:
                set_no_delay(True)
            except OSError:  # not a TCP socket (a UNIX socket endpoint)
                pass
        self.backlog = Backlog(self.factory.max_pending)
        self.transport.registerProducer(self.backlog, True)
        self.guard = Guard(self, self.factory.limits, self.factory.clock)
        self.guard.start()
        self._write(wire.format_greeting(self.factory.version))

    def connectionLost(self, reason) -> None:
        self.factory.connection_lost(self)
        if hasattr(self, "guard"):
            self.guard.stop()
        if self.session is not None:
            self.session.logout()
            self.session = None
        self._replies = None
        self._pending = None

    def _write(self, data: bytes) -> None:
        backlog = self.backlog
        if backlog.paused and backlog.overflows(len(data)):
            self._drop_slow_reader()
            return
        batch = self.factory._batch
        if batch is None:
            self.transport.write(data)
        elif self._pending is None:
            # Inside a read (SpartanFactory.batch): keep it for one write at the end.
            self._pending = [data]
            batch.append(self)
        else:
            self._pending.append(data)

    def _flush(self) -> None:
        """Write what a batch gathered for this connection, as one write."""
        pending = self._pending
        if pending:
            self._pending = None
            self.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def _drop_slow_reader(self) -> None:
        if not self._closing:
            self._closing = True
            who = self.session.user if self.session else "a client"
            self.log.warn(
                "Closing the connection of {who}: it stopped reading ({n} bytes waiting)",
                who=who,
                n=self.backlog.waiting,
            )
            # Its undelivered messages are unacknowledged: they wait in the buffers.
            self._pending = None
            self.transport.abortConnection()

    # -- lines in ---------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        # What LineReceiver.dataReceived did, faster (issue 6): it splits the remaining
        # buffer once per line, copying the rest each time (quadratic on a big read); here
        # a read is split once.  Same lines, same limits: a line (without its LF) longer
        # than MAX_LENGTH is answered with one ERR and skipped, and so is a partial line
        # that already passed it (the rest of it is discarded as it comes).  The whole read
        # is one batch: output is written once per connection at its end.
        batch = self.factory.batch()
        try:
            self._lines_received(data)
        finally:
            batch.close()

    def _lines_received(self, data: bytes) -> None:
        if self._discarding:
            _, newline, data = data.partition(b"\n")
            if not newline:
                return
            self._discarding = False
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        lines = data.split(b"\n")
        rest = lines.pop()
        limit = self.MAX_LENGTH
        for index, line in enumerate(lines):
            if self._closing or self.transport.disconnecting:
                return
            if self.paused:  # the guard slowed this connection: the rest waits its turn
                self._buffer = b"\n".join(lines[index:] + [rest])
                return
            if len(line) > limit:
                self._line_too_long()
            else:
                self.lineReceived(line)
        if self._closing or self.transport.disconnecting:
            return
        if len(rest) > limit:
            self._line_too_long()
            self._discarding = True
        else:
            self._buffer = rest

    def lineLengthExceeded(self, data: bytes) -> None:
        # LineReceiver's hook, kept for callers of the LineReceiver API: answer once, skip
        # to the end of that line, and go on with the lines after it.
        self._line_too_long()
        _, newline, rest = data.partition(b"\n")
        if newline:
            self._lines_received(rest)
        else:
            self._discarding = True

    def _line_too_long(self) -> None:
        self.refuse_line(
            "line-too-long", f"Lines are limited to {self.MAX_LENGTH} bytes; line discarded."
        )

    def lineReceived(self, line: bytes) -> None:
        if self._closing or not self.guard.admit():
            return
        command = wire.parse_command(line)
        try:
            reply = self._handle(command)
        except ChatError as e:
            reply = wire.format_error(e.code, e.message)
        except Exception:
            self.log.failure("Error handling {command!r}", command=command)
            reply = _INTERNAL_ERROR
        self._reply(reply)
        if isinstance(command, wire.Quit):
            self._closing = True
            self._close_when_answered()

    # -- replies out ------------------------------------------------------------------------

    def _reply(self, reply: bytes | Deferred[bytes] | _Slot) -> None:
        if type(reply) is bytes:
            if self._replies:
                self._replies.append(_Slot(self, reply))
            else:
                self._write(reply)
            return
        if isinstance(reply, Deferred):
            if reply.called and not reply.paused and not isinstance(reply.result, Failure):
                # Already answered (the in-memory store): no slot, no callbacks (issue 6).
                self._reply(reply.result)
                return
            slot = _Slot(self)
        else:
            slot, reply = reply, None  # a SEND's slot, filled by the chat core (Session.post)
        if self._replies is None:
            self._replies = deque()
        self._replies.append(slot)
        if reply is not None:  # after the slot is queued: a failure fills it at once
            reply.addErrback(self._error_reply).addCallback(slot.fill)

    def _error_reply(self, reason) -> bytes:
        error = reason.value if isinstance(reason, Failure) else reason
        if isinstance(error, ChatError):
            return wire.format_error(error.code, error.message)
        self.log.failure(
            "Error answering a command", reason if isinstance(reason, Failure) else Failure(reason)
        )
        return _INTERNAL_ERROR

    def _drain(self) -> None:
        """Write the replies at the head of the queue that are answered, in order."""
        replies = self._replies
        while replies and replies[0].data is not None:
            self._write(replies.popleft().data)
        self._close_when_answered()

    def _close_when_answered(self) -> None:
        if self._closing and not self._replies and self.transport is not None:
            self._flush()  # what a batch holds goes out before the close
            self.transport.loseConnection()

    # -- IGuarded: the guard's words on the native port -----------------------------------------

    @property
    def logged_in(self) -> bool:
        return self.session is not None

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def who(self) -> str:
        return self.session.user if self.session else "a client"

    def send_notice(self, code: str, sentence: str) -> None:
        self._write(wire.format_push("NOTICE", code, sentence))

    def send_ping(self, token: str) -> None:
        self._write(wire.format_push("PING", token))

    def refuse(self, code: str, sentence: str) -> None:
        self._reply(wire.format_error(code, sentence))
        self._closing = True
        self._close_when_answered()

    def hang_up(self, code: str, sentence: str) -> None:
        self._write(wire.format_push("NOTICE", code, sentence))
        self._closing = True
        self.transport.loseConnection()

    def pause_lines(self) -> None:
        self.paused = True  # _lines_received takes no more lines from the buffer
        self.transport.pauseProducing()  # and the transport stops reading

    def resume_lines(self) -> None:
        self.paused = False
        self.transport.resumeProducing()
        self.dataReceived(b"")  # the lines that waited in the buffer

    # -- the core, from the client's side -----------------------------------------------------

    def receive(self, delivery: Delivery) -> None:
        data = delivery.encoded(encode_delivery)
        pending = self._pending
        if pending is not None and not self.backlog.paused:
            pending.append(data)  # _write's common case inline: once per delivery (issue 6)
        else:
            self._write(data)

    def _handle(self, command) -> bytes | Deferred[bytes]:
        if isinstance(command, wire.WireError):
            return wire.format_error(command.code, command.message)
        handler = _BEFORE_LOGIN.get(type(command))
        if handler is not None:
            return handler(self, command)
        if self.session is None:
            return wire.format_error("not-logged-in", "Log in first: LOGIN <user>.")
        return _AFTER_LOGIN[type(command)](self, self.session, command)

    def _login(self, command: wire.Login):
        return self._log_in(command.user, command.password)

    def _log_in(self, user: str, credential):
        if self.session is not None or self._logging_in:
            raise ChatError("already-logged-in", "This connection is already logged in.")
        self._logging_in = True
        peer = getattr(self.transport.getPeer(), "host", None)

        def logged_in(session: Session) -> bytes:
            if not self.connected:  # gone while the password was checked
                session.logout()
            else:
                self.session = session
            return wire.format_ok("LOGIN", session.user)

        def done(result):
            self._logging_in = False
            return result

        d = self.factory.chat.login(user, credential, self, peer)
        return d.addCallback(logged_in).addBoth(done)

    def refuse_line(self, code: str, sentence: str) -> None:
        """Answer, in its turn, a line that cannot be read (too long, or a WebSocket frame
        that is not text): one ``ERR``, counted by the flood guard like any line."""
        if not self._closing and self.guard.admit():
            self._reply(wire.format_error(code, sentence))


_INTERNAL_ERROR = wire.format_error(
    "internal-error", "The server failed to handle that command; it has been logged."
)


def _help(protocol, command):
    return b"".join(wire.format_help())


def _ping(protocol, command):
    return wire.format_ok("PONG", *([command.token] if command.token else []))


def _quit(protocol, command):
    return wire.format_ok("BYE")


def _users(protocol, session, command):
    fields = (f"{user}={'online' if online else 'offline'}" for user, online in session.chat.users())
    return wire.format_ok("USERS", *fields)


def _groups(protocol, session, command):
    return wire.format_ok("GROUPS", *(f"{g}={','.join(members)}" for g, members in session.groups()))


def _unread(protocol, session, command):
    return session.unread().addCallback(
        lambda waiting: wire.format_ok("UNREAD", *(f"{label}={count}" for label, count in waiting))
    )


def _sent(m) -> bytes:
    # format_ok("SENT", ...) without its join and rstrip: once per SEND (issue 6).
    return f"OK SENT {m.id} {wire.format_timestamp(m.timestamp)}\r\n".encode()


class _Slot:
    """A reply's place in a connection's queue; filled later, written in order.  For a
    SEND it is also what the chat core reports to (`PostReply`): no Deferred (issue 6)."""

    __slots__ = ("protocol", "data")

    def __init__(self, protocol: SpartanProtocol, data: bytes | None = None) -> None:
        self.protocol = protocol
        self.data = data

    def fill(self, data: bytes) -> None:
        self.data = data
        self.protocol._drain()

    def sent(self, message) -> None:
        self.fill(_sent(message))

    def refused(self, reason) -> None:
        self.fill(self.protocol._error_reply(reason))


def _send(protocol, session, command):
    slot = _Slot(protocol)
    session.post(command.target, command.text, command.client_id, slot)
    # Answered at once (the in-memory store): the bytes, no place in the queue.
    return slot.data if slot.data is not None else slot


def _open(protocol, session, command):
    def answer(result):
        label, messages = result
        lines = _message_lines("MSG", label, messages)
        return b"".join(lines + [wire.format_ok("OPEN", label, str(len(messages)))])

    return session.open(command.target).addCallback(answer)


def _ack(protocol, session, command):
    return session.ack(command.target, command.upto).addCallback(
        lambda result: wire.format_ok("ACK", result[0], str(result[1]))
    )


def _history(protocol, session, command):
    def answer(result):
        label, messages = result
        lines = _message_lines("HISTORY", label, messages)
        return b"".join(lines + [wire.format_ok("HISTORY", label, str(len(messages)))])

    if command.before is not None:
        return _history_before(session, command).addCallback(answer)
    return session.history(command.target, command.count).addCallback(answer)


# -- paging back and session tokens (the browser client's commands) ------------------------


def _history_before(session, command):
    """HISTORY with a before-id: the page of messages older than what a client shows."""
    chat = session.chat
    conversation = chat.conversation(session.user, command.target)
    label = conversation.label_for(session.user)
    d = chat.store.recent(conversation.key, command.count, command.before)
    return d.addCallbacks(lambda messages: (label, messages), chat._store_failed)


def _resume(protocol, command):
    token = Token(command.token)

    def resumed(reply: bytes) -> bytes:
        session_tokens(protocol.factory.chat).attach(token, protocol)
        return wire.format_ok("RESUME", command.user)

    session_tokens(protocol.factory.chat)  # so that the chat's login knows a Token
    return protocol._log_in(command.user, token).addCallback(resumed)


def _issue_token(protocol, session, command):
    def issued(result) -> bytes:
        token, expires = result
        return wire.format_ok("TOKEN", token, wire.format_timestamp(expires))

    return session_tokens(session.chat).issue(session.user).addCallback(issued)


def _revoke(protocol, session, command):
    d = session_tokens(session.chat).revoke(session.user, command.token, keep=protocol)
    return d.addCallback(lambda _: wire.format_ok("REVOKE"))


_BEFORE_LOGIN = {
    wire.Help: _help,
    wire.Login: SpartanProtocol._login,
    wire.Ping: _ping,
    wire.Pong: _ping,
    wire.Quit: _quit,
    wire.Resume: _resume,
}
_AFTER_LOGIN = {
    wire.Users: _users,
    wire.Groups: _groups,
    wire.Unread: _unread,
    wire.Send: _send,
    wire.Open: _open,
    wire.Ack: _ack,
    wire.History: _history,
    wire.IssueToken: _issue_token,
    wire.Revoke: _revoke,
}


class SpartanFactory(ServerFactory):
    """Holds the chat core (registry, buffers) for every connection of a listener."""

    protocol = SpartanProtocol
    noisy = False  # the service logs the spec's own "Started server" line instead

    def __init__(
        self,
        chat: Chat,
        max_line: int = DEFAULT_MAX_LINE,
        max_pending: int = DEFAULT_MAX_PENDING,
        version: str = "",
        limits: ServerLimits | None = None,
        clock=None,
    ) -> None:
        self.chat = chat
        self.max_line = max_line
        self.max_pending = max_pending
        self.version = version or __version__
        self.limits = limits or ServerLimits()
        self.clock = clock or chat.clock
        self.connections = ConnectionCounter(
            self.limits.max_connections, self.limits.max_per_address
        )
        self._batch: list[SpartanProtocol] | None = None  # connections with gathered output

    def buildProtocol(self, addr):
        address = str(getattr(addr, "host", None) or addr)
        refusal = self.connections.acquire(address)
        if refusal is not None:
            return _Refuse(refusal)
        protocol = super().buildProtocol(addr)
        protocol.address = address
        return protocol

    def connection_lost(self, protocol: SpartanProtocol) -> None:
        if protocol.address is not None:
            self.connections.release(protocol.address)
            protocol.address = None

    def batch(self) -> _Batch:
        """Gather every connection's output until ``close()``, then write it, one write per
        connection (issue 6: a read of 64 SENDs to a group of 50 made 3,200 writes, now 50).
        Batches nest: only the outermost one writes.  Call ``close()`` in a ``finally``.
        """
        if self._batch is not None:
            return _NESTED
        self._batch = []
        return _Batch(self)


class _Batch:
    __slots__ = ("factory",)

    def __init__(self, factory: SpartanFactory) -> None:
        self.factory = factory

    def close(self) -> None:
        factory = self.factory
        protocols, factory._batch = factory._batch, None
        for protocol in protocols:
            if protocol._pending and protocol.transport is not None:
                protocol._flush()


class _Nested:
    __slots__ = ()

    def close(self) -> None:
        pass


_NESTED = _Nested()


class _Refuse(Protocol):
    """Over the connection limits: one line saying so, then close."""

    def __init__(self, sentence: str) -> None:
        self.sentence = sentence

    def connectionMade(self) -> None:
        self.transport.write(wire.format_error("too-many-connections", self.sentence))
        self.transport.loseConnection()
