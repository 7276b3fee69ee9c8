"""
Applies `spartan.limits` to one connection: the Twisted side of flood control and timeouts.

The protocol calls `Guard.start` when connected, `Guard.admit` for every line before it is
handled, and `Guard.stop` when the connection is lost.  The guard:

* feeds each line to the connection's token bucket; a line on credit pauses reading (the
  LineReceiver stops taking lines from its buffer and the transport stops reading) until
  the debt is paid, the notice ``* NOTICE rate-limited ...`` goes out once per streak, and
  past the limit the line is answered ``ERR rate-limited ...`` and the connection closed;
* closes a connection that has not logged in within the login timeout, and one that has
  sent no line for the idle timeout, after a ``* PING <n>`` half way (any line, ``PONG``
  included, counts as activity), each with a ``* NOTICE <code> ...`` line first;
* aborts a connection it closed whose peer does not read the last lines.

Time comes from the factory's clock (the reactor, or a `task.Clock` in tests).
"""

from __future__ import annotations

from twisted.logger import Logger

from spartan import wire
from spartan.limits import LineRate, ServerLimits, Verdict


class Guard:
    log = Logger(namespace="spartan")

    def __init__(self, protocol, limits: ServerLimits, clock) -> None:
        self.protocol = protocol
        self.limits = limits
        self.clock = clock
        now = clock.seconds()
        self.rate = LineRate(limits.rate, now) if limits.rate.enabled else None
        self.last_activity = now
        self._pinged_at: float | None = None
        self._pings = 0
        self._calls: dict[str, object] = {}  # name -> IDelayedCall
        self._stopped = False

    # -- timers ------------------------------------------------------------------------------

    def _schedule(self, name: str, delay: float, f) -> None:
        call = self._calls.get(name)
        if call is not None and call.active():
            call.cancel()
        self._calls[name] = self.clock.callLater(max(0.0, delay), f)

    def start(self) -> None:
        if self.limits.login_timeout > 0:
            self._schedule("login", self.limits.login_timeout, self._login_expired)
        if self.limits.idle_timeout > 0:
            self._schedule("idle", self.limits.idle_timeout / 2, self._idle_check)

    def stop(self) -> None:
        self._stopped = True
        for call in self._calls.values():
            if call.active():
                call.cancel()
        self._calls.clear()

    def _login_expired(self) -> None:
        if self.protocol.session is None:
            self.close(
                "login-timeout",
                f"Not logged in after {self.limits.login_timeout:g} seconds; closing.",
            )

    def _idle_check(self) -> None:
        if self._stopped or self.protocol._closing:
            return
        idle = self.limits.idle_timeout
        now = self.clock.seconds()
        silent = now - self.last_activity
        if silent >= idle:
            self.close("idle-timeout", f"No line for {idle:g} seconds; closing.")
            return
        if silent >= idle / 2:
            if self._pinged_at is None or self.last_activity >= self._pinged_at:
                self._pings += 1
                self._pinged_at = now
                self.protocol._write(wire.format_push("PING", str(self._pings)))
            self._schedule("idle", self.last_activity + idle - now, self._idle_check)
        else:
            self._schedule("idle", self.last_activity + idle / 2 - now, self._idle_check)

    # -- lines -------------------------------------------------------------------------------

    def admit(self) -> bool:
        """A line came in: True to handle it, False if it was answered here."""
        now = self.clock.seconds()
        self.last_activity = now
        if self.rate is None:
            return True
        verdict = self.rate.line(now)
        if verdict is Verdict.PASS:
            return True
        protocol = self.protocol
        if verdict is Verdict.DROP:
            self.log.warn(
                "Closing the connection of {who} from {address}: it sends too fast",
                who=protocol.session.user if protocol.session else "a client",
                address=getattr(protocol, "address", None),
            )
            protocol._reply(
                wire.format_error("rate-limited", "You sent too many lines too fast; closing.")
            )
            self._begin_close()
            protocol._close_when_answered()
            return False
        if verdict is Verdict.WARN:
            protocol._write(
                wire.format_push(
                    "NOTICE",
                    "rate-limited",
                    f"You are sending faster than {self.rate.rate:g} lines a second; "
                    "slow down or you will be disconnected.",
                )
            )
        self._pause_reading(self.rate.wait)
        return True

    def _pause_reading(self, seconds: float) -> None:
        protocol = self.protocol
        if protocol.paused or seconds <= 0:
            return
        protocol.paused = True  # LineReceiver takes no more lines from its buffer
        protocol.transport.pauseProducing()  # and the transport stops reading
        self._schedule("resume", seconds, self._resume_reading)

    def _resume_reading(self) -> None:
        protocol = self.protocol
        if self._stopped or protocol._closing:
            return
        protocol.paused = False
        protocol.transport.resumeProducing()
        protocol.dataReceived(b"")  # the lines that waited in the buffer

    # -- closing -----------------------------------------------------------------------------

    def _begin_close(self) -> None:
        self.protocol._closing = True
        if self.limits.close_grace > 0:
            self._schedule("abort", self.limits.close_grace, self._abort)

    def _abort(self) -> None:
        transport = self.protocol.transport
        if not self._stopped and transport is not None:
            transport.abortConnection()

    def close(self, code: str, sentence: str) -> None:
        """Tell the client why, then close (now: pending replies are dropped)."""
        protocol = self.protocol
        if protocol._closing or self._stopped:
            return
        protocol._write(wire.format_push("NOTICE", code, sentence))
        self._begin_close()
        protocol.transport.loseConnection()
