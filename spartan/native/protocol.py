"""
Spartan's own protocol on the shared connection layer: the native port, and the browser's
WebSocket (which carries the same lines).

Each line is parsed by `spartan.native.wire`, handed to the core through the command table
below, and the result formatted back; `spartan.net.connection` does the rest (pipelining
with replies in order, batching, back-pressure, limits).  A command handler answers with
bytes, a Deferred firing with bytes, or the `ReplySlot` the core reports a SEND to.
"""

from __future__ import annotations

from spartan import __version__
from spartan.core.chat import Delivery
from spartan.core.errors import ChatError
from spartan.native import wire
from spartan.core.tokens import Token, session_tokens
from spartan.net.connection import QUIT, ConnectionFactory, LineConnection, ReplySlot


def encode_delivery(delivery: Delivery) -> bytes:
    """A delivered message as a ``* MSG`` line (one encoding shared by every recipient)."""
    m = delivery.message
    return wire.format_message("MSG", m.id, m.timestamp, delivery.conversation, m.sender, m.text)


def _message_lines(kind: str, label: str, messages) -> list[bytes]:
    return [
        wire.format_message(kind, m.id, m.timestamp, label, m.sender, m.text) for m in messages
    ]


_INTERNAL_ERROR = wire.format_error(
    "internal-error", "The server failed to handle that command; it has been logged."
)


class NativeProtocol(LineConnection):
    factory: NativeFactory
    _logging_in = False

    # -- the connection layer's questions, in this protocol's words ------------------------------

    def greet(self) -> None:
        self._write(wire.format_greeting(self.factory.version))

    def handle_line(self, line: bytes):
        command = wire.parse_command(line)
        if isinstance(command, wire.WireError):
            return wire.format_error(command.code, command.message)
        handler = _BEFORE_LOGIN.get(type(command))
        if handler is not None:
            return handler(self, command)
        session = self.session
        if session is None:
            return _NOT_LOGGED_IN
        return _AFTER_LOGIN[type(command)](self, session, command)

    def line_too_long(self) -> bytes:
        return wire.format_error(
            "line-too-long", f"Lines are limited to {self.factory.max_line} bytes; line discarded."
        )

    def error_words(self, error: ChatError) -> bytes:
        return wire.format_error(error.code, error.message)

    def internal_error(self) -> bytes:
        return _INTERNAL_ERROR

    def format_sent(self, m) -> bytes:
        # format_ok("SENT", ...) without its join and rstrip: once per SEND.
        return f"OK SENT {m.id} {wire.format_timestamp(m.timestamp)}\r\n".encode()

    def notice_words(self, code: str, sentence: str) -> bytes:
        return wire.format_push("NOTICE", code, sentence)

    def ping_words(self, token: str) -> bytes:
        return wire.format_push("PING", token)

    def refuse_words(self, code: str, sentence: str) -> bytes:
        return wire.format_error(code, sentence)

    hang_up_words = notice_words

    def connection_ended(self) -> None:
        if self.session is not None:
            self.session.logout()
            self.session = None

    @property
    def who(self) -> str:
        return self.session.user if self.session else "a client"

    # -- the core, from the client's side ---------------------------------------------------------

    def receive(self, delivery: Delivery) -> None:
        data = delivery.encoded(encode_delivery)
        pending = self._pending
        if pending is not None and not self.backlog.paused:
            pending.append(data)  # `push` inline: once per delivery, the fan-out's hot spot
        else:
            self._write(data)

    def refuse_line(self, code: str, sentence: str) -> None:
        """Answer, in its turn, a line that cannot be read as one (a WebSocket message that
        is not text): one ``ERR``, counted by the flood guard like any line."""
        if not self._closing and self.guard.admit():
            self.reply(wire.format_error(code, sentence))

    def topic_changed(self, group: str, topic) -> None:
        self.push_in_order(lambda: wire.format_push("TOPIC", *_topic_fields(group, topic)))

    def presence(self, user: str, online: bool, session) -> None:
        pass  # native clients ask (USERS) when they want to know

    def groups_changed(self, groups) -> None:
        if not self.closing:
            self.push_in_order(lambda: wire.format_push("GROUPS", *_group_fields(groups)))

    def _login(self, command: wire.Login):
        return self._log_in(command.user, command.password)

    def _log_in(self, user: str, credential):
        if self.session is not None or self._logging_in:
            raise ChatError("already-logged-in", "This connection is already logged in.")
        self._logging_in = True
        peer = getattr(self.transport.getPeer(), "host", None)

        def logged_in(session) -> bytes:
            if not self.connected:  # gone while the password was checked
                session.logout()
            else:
                self.session = session
            return wire.format_ok("LOGIN", session.user)

        def done(result):
            self._logging_in = False
            return result

        d = self.factory.chat.login(user, credential, self, peer, "native")
        return d.addCallback(logged_in).addBoth(done)


_NOT_LOGGED_IN = wire.format_error("not-logged-in", "Log in first: LOGIN <user>.")


def _help(protocol, command):
    return b"".join(wire.format_help())


def _ping(protocol, command):
    return wire.format_ok("PONG", *([command.token] if command.token else []))


def _quit(protocol, command):
    protocol.reply(wire.format_ok("BYE"))
    protocol.close_after_replies(QUIT)


def _users(protocol, session, command):
    fields = (f"{user}={'online' if online else 'offline'}" for user, online in session.chat.users())
    return wire.format_ok("USERS", *fields)


def _group_fields(groups) -> list[str]:
    """``group1=alice,bob``: a group and its members, in ``OK GROUPS`` and ``* GROUPS``."""
    return [f"{group}={','.join(members)}" for group, members in groups]


def _groups(protocol, session, command):
    return wire.format_ok("GROUPS", *_group_fields(session.groups()))


def _unread(protocol, session, command):
    return session.unread().addCallback(
        lambda waiting: wire.format_ok("UNREAD", *(f"{label}={count}" for label, count in waiting))
    )


def _send(protocol, session, command):
    slot = ReplySlot(protocol)
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


def _topic_fields(label: str, topic) -> list[str]:
    if topic is None:
        return wire.format_topic_fields(label, None, 0.0, "")
    return wire.format_topic_fields(label, topic.setter, topic.timestamp, topic.text)


def _topic(protocol, session, command):
    if command.text is None:
        d = session.topic(command.target)
    else:
        d = session.set_topic(command.target, command.text)
    return d.addCallback(lambda result: wire.format_ok("TOPIC", *_topic_fields(*result)))


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


# The command table: which commands need a login, and who handles each.
_BEFORE_LOGIN = {
    wire.Help: _help,
    wire.Login: NativeProtocol._login,
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
    wire.Topic: _topic,
}


class NativeFactory(ConnectionFactory):
    """The native port's listener: builds a `NativeProtocol` per connection."""

    protocol = NativeProtocol
    protocol_name = "native"

    def __init__(self, chat, version: str = "", **settings) -> None:
        super().__init__(chat, **settings)
        self.version = version or __version__

    def refusal_words(self, sentence: str) -> bytes:
        return wire.format_error("too-many-connections", sentence)
