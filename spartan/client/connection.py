"""
The client's connection to the server: a line protocol, and connecting again with backoff.

`ServerConnection` owns at most one connection at a time.  It reports what happens to
a listener (`ConnectionListener`): connected, a line (already parsed by `spartan.native.wire`),
disconnected, or a failed attempt.  It never decides anything: the flow says which
address to dial (`Connect`: now; `Reconnect`: `reconnect()` waits the next `Backoff`
delay first), and an endpoint factory turns an address into a TCP or TLS endpoint.
A loss or failure is described in words, and marked ``fatal`` when retrying cannot help:
a TLS certificate that does not verify, or is not for the host dialled.
Commands go out in order, paced by a `Pacer` below the server's default line rate, so a
script piping hundreds of lines (or a resend after a reconnect) is not cut off by it.
The reactor (or a `task.Clock` in tests) and the endpoint factory are passed in.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from typing import Protocol as TypingProtocol

from twisted.internet import error
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from spartan.native import wire
from spartan.client.hosts import Address

try:
    from OpenSSL.SSL import Error as TLSError
except ImportError:  # pragma: no cover - twisted[tls] is a dependency
    TLSError = None  # type: ignore[assignment,misc]

MAX_SERVER_LINE = 1 << 20  # a server line longer than this ends the connection
STABLE = 10.0  # seconds: a connection that lasted this long resets the backoff


class ConnectionListener(TypingProtocol):
    def connected(self) -> None: ...

    def line_received(self, line: wire.ServerLine | wire.WireError) -> None: ...

    def disconnected(self, why: str, *, fatal: bool = False) -> None: ...

    def connect_failed(self, why: str, *, fatal: bool = False) -> None: ...


EndpointFactory = Callable[[Address], IStreamClientEndpoint]


def _verification_failed(value: BaseException) -> bool:
    """The server's TLS certificate was refused: not trusted, or not for the host dialled."""
    if type(value).__name__ in ("VerificationError", "CertificateError"):
        return True  # service_identity's (host name) and Twisted's own copy of it
    if TLSError is None or not isinstance(value, TLSError):
        return False
    return "certificate verify" in str(value)


def is_fatal(reason: Failure | BaseException) -> bool:
    """Would trying again be pointless (or unsafe)?  A certificate that does not verify."""
    return _verification_failed(reason.value if isinstance(reason, Failure) else reason)


def describe(
    reason: Failure | BaseException, host: str | None = None, *, greeted: bool = True
) -> str:
    """A short sentence for why a connection failed or ended (``host``: the one dialled;
    ``greeted``: the server had sent a line on it)."""
    value = reason.value if isinstance(reason, Failure) else reason
    if not greeted and isinstance(value, (error.ConnectionDone, error.ConnectionLost)):
        # A Spartan server greets first; a TLS port waits for a TLS hello and hangs up
        # on plain text.
        return (
            "The server closed the connection without a greeting"
            " (is it a TLS port? Then use --tls or --cafile)"
        )
    if _verification_failed(value):
        return (
            "the server's certificate could not be verified (not trusted, or not for"
            f" {host or 'this host'}); use --cafile for a self-signed certificate."
        )
    if TLSError is not None and isinstance(value, TLSError):
        return "TLS failed (is it a TLS port?)"
    if isinstance(value, error.ConnectionRefusedError):
        return "Connection refused"
    if isinstance(value, error.DNSLookupError):
        return "Unknown host"
    if isinstance(value, (error.TimeoutError, error.TCPTimedOutError)):
        return "Timed out"
    if isinstance(value, error.ConnectionDone):
        return "The server closed the connection"
    if isinstance(value, error.ConnectionLost):
        return "The connection was lost"
    text = str(value).strip() or type(value).__name__
    return text[:1].upper() + text[1:]


class Backoff:
    """Delays between reconnection attempts: doubling from ``initial`` up to ``maximum``.

    ``jitter`` spreads each delay by up to that fraction (down), so that many clients
    cut off together by a server restart do not all come back in the same instant.
    """

    def __init__(
        self,
        initial: float = 0.5,
        maximum: float = 30.0,
        factor: float = 2.0,
        jitter: float = 0.2,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self._rng = rng
        self._next = initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * self.factor, self.maximum)
        return delay * (1 - self.jitter * self._rng())

    def reset(self) -> None:
        self._next = self.initial


class Pacer:
    """A token bucket for the lines sent: ``burst`` at once, then ``rate`` a second.

    The server's defaults are 40 and 5 (``--burst``, ``--rate``); staying below them keeps
    the client from ever being throttled or dropped for sending too fast.
    """

    def __init__(self, rate: float = 4.0, burst: int = 30) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._updated: float | None = None

    def take(self, now: float) -> float:
        """0 if a line may go now (and count it), else the seconds to wait first."""
        if self._updated is not None:
            self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate

    def reset(self) -> None:
        self._tokens = float(self.burst)
        self._updated = None


class ServerLineProtocol(LineReceiver):
    """Lines from the server, parsed; commands to it, formatted.  LF ends a line, CR is dropped."""

    delimiter = b"\n"
    MAX_LENGTH = MAX_SERVER_LINE

    def __init__(self, owner: ServerConnection) -> None:
        self._owner = owner

    def connectionMade(self) -> None:
        self._owner._made(self)

    def lineReceived(self, line: bytes) -> None:
        self._owner._line(self, wire.parse_server_line(line.removesuffix(b"\r")))

    def lineLengthExceeded(self, line: bytes) -> None:
        self.transport.loseConnection()  # the server broke the protocol: start afresh

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._owner._lost(self, reason if reason is not None else Failure(error.ConnectionDone()))

    def send(self, command: wire.Command) -> None:
        self.transport.write(wire.format_command(command))


class ServerConnection:
    def __init__(
        self,
        reactor: IReactorTime,
        endpoints: EndpointFactory,
        listener: ConnectionListener,
        backoff: Backoff | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self._reactor = reactor
        self._endpoints = endpoints
        self.address: Address | None = None  # the last one dialled
        self._listener = listener
        self.backoff = backoff or Backoff()
        self.pacer = pacer or Pacer()
        self._outbox: deque[wire.Command] = deque()
        self._drain_call: IDelayedCall | None = None
        self._protocol: ServerLineProtocol | None = None
        self._attempt: Deferred | None = None
        self._delayed: IDelayedCall | None = None
        self._closing = False
        self._lost_waiters: list[Deferred[None]] = []
        self._since = 0.0
        self._greeted = False  # a line came on the current connection

    @property
    def connected(self) -> bool:
        return self._protocol is not None

    def connect(self, address: Address | None = None) -> None:
        """Start one connection attempt now, at ``address`` or the last one (no-op if
        connected or trying)."""
        if self._closing or self._protocol is not None or self._attempt is not None:
            return
        self._delayed = None
        self.address = address or self.address
        if self.address is None:
            raise ValueError("no address to connect to")
        factory = Factory.forProtocol(lambda: ServerLineProtocol(self))
        try:
            attempt = self._endpoints(self.address).connect(factory)
        except Exception:
            attempt = Deferred()
            attempt.errback()
        self._attempt = attempt
        attempt.addErrback(self._failed)

    def reconnect(self, address: Address | None = None) -> float | None:
        """Try again (at ``address``, or the last one) after the next backoff delay; returns
        the delay (None if an attempt is already pending)."""
        if self._closing or self._delayed is not None or self._attempt is not None:
            return None
        delay = self.backoff.next()
        self._delayed = self._reactor.callLater(delay, self.connect, address)
        return delay

    def send(self, command: wire.Command) -> None:
        """Send now, or as soon as the pace allows (dropped if not connected)."""
        if self._protocol is not None:
            self._outbox.append(command)
            self._drain()

    def _drain(self) -> None:
        self._drain_call = None
        while self._outbox and self._protocol is not None:  # bounded by the outbox
            wait = self.pacer.take(self._reactor.seconds())
            if wait > 0:
                self._drain_call = self._reactor.callLater(wait, self._drain)
                return
            self._protocol.send(self._outbox.popleft())

    def _stop_sending(self) -> None:
        self._outbox.clear()
        if self._drain_call is not None and self._drain_call.active():
            self._drain_call.cancel()
        self._drain_call = None

    def close(self) -> Deferred[None]:
        """Stop trying; close the connection after what was sent is written.  Fires when closed."""
        self._closing = True
        self._stop_sending()
        if self._delayed is not None and self._delayed.active():
            self._delayed.cancel()
        self._delayed = None
        if self._attempt is not None:
            self._attempt.cancel()
        if self._protocol is None:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._lost_waiters.append(waiter)
        self._protocol.transport.loseConnection()
        return waiter

    # -- from the protocol and the endpoint ------------------------------------------------

    def _made(self, protocol: ServerLineProtocol) -> None:
        self._attempt = None
        self._protocol = protocol
        self._greeted = False
        self._since = self._reactor.seconds()
        self.pacer.reset()  # the server counts per connection
        if self._closing:
            protocol.transport.loseConnection()
            return
        self._listener.connected()

    def _line(self, protocol: ServerLineProtocol, line: wire.ServerLine | wire.WireError) -> None:
        if protocol is self._protocol and not self._closing:
            self._greeted = True
            self._listener.line_received(line)

    def _lost(self, protocol: ServerLineProtocol, reason: Failure) -> None:
        if protocol is not self._protocol:
            return
        self._protocol = None
        self._stop_sending()
        if self._reactor.seconds() - self._since >= STABLE:
            self.backoff.reset()  # it had worked for a while: the next attempt comes soon
        waiters, self._lost_waiters = self._lost_waiters, []
        for waiter in waiters:
            waiter.callback(None)
        if not self._closing:
            why = describe(reason, self._host(), greeted=self._greeted)
            self._listener.disconnected(why, fatal=is_fatal(reason))

    def _failed(self, reason: Failure) -> None:
        self._attempt = None
        if self._closing or reason.check(error.ConnectingCancelledError):
            return None
        self._listener.connect_failed(describe(reason, self._host()), fatal=is_fatal(reason))
        return None

    def _host(self) -> str | None:
        return self.address.host if self.address else None
