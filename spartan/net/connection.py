"""
The connection base every front end stands on, and the factory base that counts them.

Theory of operation
-------------------
* Bytes become lines in a `LineFramer`; each line is admitted by the connection's `Guard`
  (flood control, timeouts) and handed to the front end's `handle_line`, which answers with
  a *reply*: bytes, a `Deferred` firing with bytes, a `ReplySlot` the core fills later, or
  None (nothing to say).  A front end is a codec and a command table; this class does the
  rest, the same way for every protocol.
* Pipelining: a connection handles every line it has, without waiting for earlier replies.
  Replies are written in the order the lines came: a reply that is not ready takes a slot
  in a queue, later replies queue behind it, and the queue drains as slots fill.  While too
  many replies wait (`MAX_WAITING_REPLIES`), the connection stops taking lines and reading.
* Pushes (messages the core delivers) are written at once by default; a front end whose
  pushes must not pass its pending replies (IRC: a channel's backlog, being read, before the
  messages that come after it) queues them with `push_in_order`, rendered when their turn
  comes.
* Output is gathered in the shared `OutputBatch` while one is open (a read; a commit) and
  written once per connection when it closes.
* A peer that stops reading is dropped once ``max_pending`` bytes wait for it (`Backlog`);
  ``slow_reader_dropped`` lets the front end keep unseen what never left the server.
* Closing: ``QUIT`` and refusals close once the replies before them are out; the guard's
  timeouts hang up at once.  Each front end words these in its own protocol (`IGuarded`).
* Nothing a peer sends makes this raise: a bug in a handler is logged and answered with the
  front end's internal-error reply.
* Every close has a reason (`CLOSE_REASONS`: quit, a timeout, a slow reader, flood, removed
  by a reload, server shutdown; else the peer closed it): a logged-in user's disconnection
  is logged with it, and the factory counts closes by reason for the metrics.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from spartan.core.errors import ChatError
from spartan.net.backlog import Backlog
from spartan.net.batch import OutputBatch
from spartan.net.framing import TOO_LONG, LineFramer
from spartan.net.guard import Guard, IGuarded
from spartan.net.limits import ConnectionCounter, ServerLimits

DEFAULT_MAX_LINE = 4096
DEFAULT_MAX_PENDING = 1 << 20
MAX_WAITING_REPLIES = 1024  # replies not yet written before a connection stops reading

_GUARD, _REPLIES = 1, 2  # why a connection takes no lines (bits of _paused)

# Why a connection closed, from the code the server closed it for; the log and the metrics
# use these words.
QUIT, PEER_CLOSED, SLOW_READER, SHUTDOWN = "quit", "closed by peer", "slow reader", "server shutdown"
CLOSE_REASONS = {
    "rate-limited": "flood",
    "login-timeout": "login timeout",
    "idle-timeout": "idle timeout",
    "removed": "removed",
}


class ReplySlot:
    """A reply's place in a connection's queue, filled later and written in order.  It is
    also what the chat core reports a SEND's outcome to (`spartan.core.chat.PostReply`):
    ``sent`` and ``refused`` fill it in the front end's words."""

    __slots__ = ("connection", "data", "render")

    def __init__(
        self,
        connection: LineConnection,
        data: bytes | None = None,
        render: Callable[[], bytes] | None = None,
    ) -> None:
        self.connection = connection
        self.data = data
        self.render = render  # a push queued in order: rendered when its turn comes

    def fill(self, data: bytes) -> None:
        self.data = data
        self.connection._drain()

    def sent(self, message) -> None:
        self.fill(self.connection.format_sent(message))

    def refused(self, reason) -> None:
        self.fill(self.connection.error_reply(reason))


@implementer(IGuarded)
class LineConnection(Protocol):
    """The shared connection; a front end subclasses it with its codec and commands."""

    log = Logger()
    factory: ConnectionFactory
    address: str | None = None  # the peer's host, counted by the factory
    session = None  # the core's Session once logged in
    close_reason: str | None = None  # why the server closed it (None: the peer did)

    def __init__(self) -> None:
        # Replies waiting for an earlier one, in order; made only when one has to wait
        # (an empty deque is 600 bytes: a third of an idle connection).
        self._replies: deque[ReplySlot] | None = None
        self._pending: list[bytes] | None = None  # output gathered in an open batch
        self._held_lines: list[bytes | None] | None = None  # lines taken while paused
        self._paused = 0  # _GUARD | _REPLIES: no lines are taken while set
        self._closing = False

    # -- what a front end provides ------------------------------------------------------------

    def greet(self) -> None:
        """Say hello when the connection is made (nothing by default)."""

    def handle_line(self, line: bytes):
        """One line (without its LF): its reply (bytes, Deferred, `ReplySlot`) or None."""
        raise NotImplementedError

    def line_too_long(self) -> bytes:
        """The reply to a line over the limit."""
        raise NotImplementedError

    def error_words(self, error: ChatError) -> bytes:
        """A `ChatError` as this protocol's reply."""
        raise NotImplementedError

    def internal_error(self) -> bytes:
        """The reply to a line whose handler failed (a bug, logged)."""
        raise NotImplementedError

    def format_sent(self, message) -> bytes:
        """The reply to a SEND once the store has it (front ends that post messages)."""
        raise NotImplementedError

    def notice_words(self, code: str, sentence: str) -> bytes:
        raise NotImplementedError

    def ping_words(self, token: str) -> bytes:
        raise NotImplementedError

    def refuse_words(self, code: str, sentence: str) -> bytes:
        """The reply to a line refused for ``code``, after which the connection closes."""
        raise NotImplementedError

    def hang_up_words(self, code: str, sentence: str) -> bytes:
        """The last lines before the server closes the connection at once for ``code``."""
        raise NotImplementedError

    def connection_ended(self) -> None:
        """The connection is gone: log the session out and forget it."""

    def slow_reader_dropped(self) -> None:
        """About to be aborted for not reading: what it was not sent is still unseen."""

    def output_drained(self) -> None:
        """The transport had to buffer output, and has now written all of it."""

    @property
    def who(self) -> str:
        return "a client"

    # -- connection ---------------------------------------------------------------------------

    def connectionMade(self) -> None:
        factory = self.factory
        # Output is gathered into one write per connection per read or commit, so Nagle
        # only delays it: a reply would wait for the peer's delayed ACK (~40 ms).
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            try:
                set_no_delay(True)
            except OSError:  # not a TCP socket (a UNIX socket endpoint)
                pass
        self.framer = LineFramer(factory.max_line)
        self.backlog = Backlog(factory.max_pending, self.output_drained)
        self.transport.registerProducer(self.backlog, True)
        self.guard = Guard(self, factory.limits, factory.clock)
        self.guard.start()
        self.greet()

    def connectionLost(self, reason=None) -> None:
        self._closing = True
        factory = self.factory
        why = self.close_reason or (SHUTDOWN if factory.shutting_down else PEER_CLOSED)
        factory.closes[why] += 1
        if self.session is not None:
            self.log.info(
                "{user} disconnected from {address} ({via}): {why}",
                user=self.session.user, address=self.address, via=factory.protocol_name, why=why,
            )  # fmt: skip
        factory.connection_lost(self)
        if hasattr(self, "guard"):
            self.guard.stop()
        self.connection_ended()
        self._replies = None
        self._pending = None
        self._held_lines = None

    # -- lines in -----------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        with self.factory.batch:
            lines = self.framer.feed(data)
            if self._held_lines is not None:
                self._held_lines.extend(lines)
                return
            self._take(lines)

    def _take(self, lines: list[bytes | None]) -> None:
        transport = self.transport
        for index, line in enumerate(lines):
            if self._closing or transport.disconnecting:
                return
            if self._paused:  # the rest waits until the connection is resumed
                self._held_lines = lines[index:]
                return
            if not self.guard.admit():
                continue  # refused by the guard: answered there
            if line is TOO_LONG:
                self.reply(self.line_too_long())
                continue
            try:
                reply = self.handle_line(line)
            except ChatError as e:
                reply = self.error_words(e)
            except Exception:
                self.log.failure("Error handling a line from {who}", who=self.who)
                reply = self.internal_error()
            if reply is not None:
                self.reply(reply)

    def _pause(self, why: int) -> None:
        if not self._paused and self.transport is not None:
            self.transport.pauseProducing()
        self._paused |= why

    def _resume(self, why: int) -> None:
        if not self._paused & why:
            return
        self._paused &= ~why
        if self._paused or self._closing or self.transport is None:
            return
        held, self._held_lines = self._held_lines, None
        if held:
            with self.factory.batch:
                self._take(held)
        if not (self._paused or self._closing or self.transport.disconnecting):
            self.transport.resumeProducing()

    # -- replies and pushes out ---------------------------------------------------------------

    def reply(self, reply) -> None:
        """Answer the line being handled: bytes now, or a Deferred / `ReplySlot` that is
        written when it fires, after the replies before it."""
        if isinstance(reply, bytes):
            if self._replies:
                self._queue(ReplySlot(self, reply))
            else:
                self._write(reply)
            return
        if isinstance(reply, ReplySlot):
            slot, d = reply, None
        elif isinstance(reply, Deferred):
            if reply.called and not reply.paused and not isinstance(reply.result, Failure):
                self.reply(reply.result)  # already answered: no slot, no callbacks
                return
            slot, d = ReplySlot(self), reply
        else:
            raise TypeError(f"not a reply: {reply!r}")
        self._queue(slot)
        if d is not None:  # after the slot is queued: a failure fills it at once
            d.addErrback(self.error_reply).addCallback(slot.fill)

    def _queue(self, slot: ReplySlot) -> None:
        replies = self._replies
        if replies is None:
            replies = self._replies = deque()
        replies.append(slot)
        if len(replies) >= MAX_WAITING_REPLIES:
            self._pause(_REPLIES)

    def error_reply(self, reason) -> bytes:
        error = reason.value if isinstance(reason, Failure) else reason
        if isinstance(error, ChatError):
            return self.error_words(error)
        self.log.failure(
            "Error answering {who}",
            reason if isinstance(reason, Failure) else Failure(reason),
            who=self.who,
        )
        return self.internal_error()

    def push(self, data: bytes) -> None:
        """Write a line the server sends on its own (a delivered message), at once."""
        pending = self._pending
        if pending is not None and not self.backlog.paused:
            pending.append(data)  # _write's common case inline: once per delivery
        else:
            self._write(data)

    def push_in_order(self, render: Callable[[], bytes]) -> None:
        """Write a push after the replies still waiting (rendered then), or now if none."""
        if self._replies:
            self._queue(ReplySlot(self, b"", render))
        else:
            self._write(render())

    @property
    def replies_waiting(self) -> bool:
        return bool(self._replies)

    def _drain(self) -> None:
        """Write the replies at the head of the queue that are ready, in order."""
        replies = self._replies
        if not replies or replies[0].data is None:
            return
        batch = self.factory.batch
        if batch.depth:  # a commit's answers: its batch is open already
            self._write_ready(replies)
        else:
            with batch:
                self._write_ready(replies)

    def _write_ready(self, replies: deque[ReplySlot]) -> None:
        while replies and replies[0].data is not None:
            slot = replies.popleft()
            data = slot.render() if slot.render is not None else slot.data
            if data:
                self._write(data)
        if self._paused & _REPLIES and len(replies) < MAX_WAITING_REPLIES // 2:
            self._resume(_REPLIES)
        self._close_when_answered()

    def _write(self, data: bytes) -> None:
        if self.transport is None:
            return
        backlog = self.backlog
        if backlog.paused and backlog.overflows(len(data)):
            self._drop_slow_reader()
            return
        batch = self.factory.batch
        if not batch.depth:
            self.transport.write(data)
        elif self._pending is None:
            self._pending = [data]
            batch.add(self)
        else:
            self._pending.append(data)

    def flush(self) -> None:
        """Write what a batch gathered for this connection, as one write."""
        pending = self._pending
        if pending:
            self._pending = None
            if self.transport is not None:
                self.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def _drop_slow_reader(self) -> None:
        if self._closing:
            return
        self._closing = True
        self.closing_because(SLOW_READER)
        self.log.warn(
            "Closing the connection of {who}: it stopped reading ({n} bytes waiting)",
            who=self.who,
            n=self.backlog.waiting,
        )
        self._pending = None
        self._replies = None
        self.slow_reader_dropped()
        self.transport.abortConnection()

    # -- closing ------------------------------------------------------------------------------

    def close_after_replies(self, reason: str | None = None) -> None:
        """Close the connection once the replies already queued are written."""
        self._closing = True
        if reason is not None:
            self.closing_because(reason)
        self._close_when_answered()

    def closing_because(self, reason: str) -> None:
        """Remember why the server closes this connection (the first reason given)."""
        if self.close_reason is None:
            self.close_reason = reason

    def _close_when_answered(self) -> None:
        if self._closing and not self._replies and self.transport is not None:
            self.flush()  # what a batch holds goes out before the close
            self.transport.loseConnection()

    # -- IGuarded: the guard, in the front end's words -------------------------------------------

    @property
    def logged_in(self) -> bool:
        return self.session is not None

    @property
    def closing(self) -> bool:
        return self._closing

    def send_notice(self, code: str, sentence: str) -> None:
        if code == "rate-limited":
            self.factory.rate_limit_warnings += 1
        self._write(self.notice_words(code, sentence))

    def send_ping(self, token: str) -> None:
        self._write(self.ping_words(token))

    def refuse(self, code: str, sentence: str) -> None:
        self.reply(self.refuse_words(code, sentence))
        self.close_after_replies(CLOSE_REASONS.get(code, code))

    def hang_up(self, code: str, sentence: str) -> None:
        self.closing_because(CLOSE_REASONS.get(code, code))
        self._write(self.hang_up_words(code, sentence))
        self._closing = True
        self.flush()
        self.transport.loseConnection()

    def pause_lines(self) -> None:
        self._pause(_GUARD)

    def resume_lines(self) -> None:
        self._resume(_GUARD)

    # -- the core's Client, where every front end does the same -----------------------------------

    def removed(self, sentence: str) -> None:
        """The user was removed from the directory: say why, in this protocol's words, and
        hang up (the core has closed the session already)."""
        if not self._closing and self.transport is not None:
            self.hang_up("removed", sentence)


class ConnectionFactory(ServerFactory):
    """What every listener has: the chat core, the limits, one count of connections (shared
    by all listeners of a server, so a per-address limit does not double by using two
    ports) and the output batch."""

    noisy = False  # the service logs the spec's own "Started ..." lines instead
    protocol_name = "?"  # for the log and the metrics: native, irc, ...

    def __init__(
        self,
        chat,
        max_line: int = DEFAULT_MAX_LINE,
        max_pending: int = DEFAULT_MAX_PENDING,
        limits: ServerLimits | None = None,
        clock=None,
        connections: ConnectionCounter | None = None,
        batch: OutputBatch | None = None,
    ) -> None:
        self.chat = chat
        self.max_line = max_line
        self.max_pending = max_pending
        self.limits = limits or ServerLimits()
        self.clock = clock or chat.clock
        if connections is None:
            connections = ConnectionCounter(
                self.limits.max_connections, self.limits.max_per_address
            )
        self.connections = connections
        self.batch = batch or OutputBatch()
        self.shutting_down = False  # set by the service: connections lost now are its doing
        # Counters, read by the metrics collector.
        self.open = 0  # connections open now
        self.closes: Counter[str] = Counter()  # closed connections by reason
        self.rate_limit_warnings = 0

    def refusal_words(self, sentence: str) -> bytes:
        """What a connection over the limits is told before it is closed."""
        raise NotImplementedError

    def buildProtocol(self, addr):
        address = str(getattr(addr, "host", None) or addr)
        refusal = self.connections.acquire(address)
        if refusal is not None:
            return _Refuse(self.refusal_words(refusal))
        protocol = super().buildProtocol(addr)
        protocol.address = address
        self.open += 1
        return protocol

    def connection_lost(self, protocol: LineConnection) -> None:
        if protocol.address is not None:
            self.connections.release(protocol.address)
            protocol.address = None
            self.open -= 1


class _Refuse(Protocol):
    """Over the connection limits: say so, then close."""

    def __init__(self, words: bytes) -> None:
        self.words = words

    def connectionMade(self) -> None:
        self.transport.write(self.words)
        self.transport.loseConnection()
