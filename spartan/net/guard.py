"""
Applies `spartan.net.limits` to one connection: the Twisted side of flood control and timeouts.

The protocol calls `Guard.start` when connected, `Guard.admit` for every line before it is
handled, and `Guard.stop` when the connection is lost.  The guard speaks to the protocol
only through `IGuarded`, so the same rules hold on the native port and on the IRC gateway,
each in its own words.  The guard:

* feeds each line to the connection's token bucket; a line on credit pauses reading (the
  protocol takes no more lines from its buffer and the transport stops reading) until the
  debt is paid, a notice goes out once per streak (``send_notice("rate-limited", ...)``),
  and past the limit the line is refused (``refuse("rate-limited", ...)``: the connection
  closes once the replies before it are out);
* closes a connection that has not logged in within the login timeout, and one that has
  sent no line for the idle timeout, after a ping half way (any line, a pong included,
  counts as activity); each is told why (``hang_up``);
* aborts a connection it closed whose peer does not read the last lines.

Time comes from the factory's clock (the reactor, or a `task.Clock` in tests).
"""

from __future__ import annotations

from twisted.logger import Logger
from zope.interface import Attribute, Interface

from spartan.net.limits import LineRate, ServerLimits, Verdict


class IGuarded(Interface):
    """What a `Guard` needs of the connection it guards.

    Codes are the native protocol's error codes (``rate-limited``, ``login-timeout``,
    ``idle-timeout``); sentences are for people.  Each protocol words them its own way.
    """

    transport = Attribute("The connection's transport (aborted when a closed peer does not read).")
    logged_in = Attribute("True once the connection has logged in (registered, on IRC).")
    closing = Attribute("True once the connection is being closed: no more lines are handled.")
    who = Attribute("Who is connected, for log lines: the user, or 'a client'.")
    address = Attribute("The peer's address, for log lines (None if unknown).")

    def send_notice(code: str, sentence: str) -> None:
        """Tell the client something it should act on (slow down)."""

    def send_ping(token: str) -> None:
        """Ask the client to prove it is there; its answer, like any line, is activity."""

    def refuse(code: str, sentence: str) -> None:
        """Answer the line being admitted with an error, and close the connection once the
        replies to the lines before it are out.  Sets ``closing``."""

    def hang_up(code: str, sentence: str) -> None:
        """Tell the client why, and close now (pending replies are dropped).  Sets
        ``closing``."""

    def pause_lines() -> None:
        """Take no more lines from the input until `resume_lines`; stop reading the socket."""

    def resume_lines() -> None:
        """Read the socket again and handle the lines that waited."""


class Guard:
    """The limits of one connection; ``protocol`` provides `IGuarded`."""

    log = Logger(namespace="spartan")

    def __init__(self, protocol: IGuarded, limits: ServerLimits, clock) -> None:
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
        self._paused = False  # the protocol takes no lines until the debt is paid

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
        if not self.protocol.logged_in:
            self.close(
                "login-timeout",
                f"Not logged in after {self.limits.login_timeout:g} seconds; closing.",
            )

    def _idle_check(self) -> None:
        if self._stopped or self.protocol.closing:
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
                self.protocol.send_ping(str(self._pings))
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
                who=protocol.who,
                address=protocol.address,
            )
            self._begin_close()
            protocol.refuse("rate-limited", "You sent too many lines too fast; closing.")
            return False
        if verdict is Verdict.WARN:
            protocol.send_notice(
                "rate-limited",
                f"You are sending faster than {self.rate.rate:g} lines a second; "
                "slow down or you will be disconnected.",
            )
        self._pause_reading(self.rate.wait)
        return True

    def _pause_reading(self, seconds: float) -> None:
        if self._paused or seconds <= 0:
            return
        self._paused = True
        self.protocol.pause_lines()
        self._schedule("resume", seconds, self._resume_reading)

    def _resume_reading(self) -> None:
        if self._stopped or self.protocol.closing:
            return
        self._paused = False
        self.protocol.resume_lines()

    # -- closing -----------------------------------------------------------------------------

    def _begin_close(self) -> None:
        """The protocol is closing: abort it if its peer does not read the last lines."""
        if self.limits.close_grace > 0:
            self._schedule("abort", self.limits.close_grace, self._abort)

    def _abort(self) -> None:
        transport = self.protocol.transport
        if not self._stopped and transport is not None:
            transport.abortConnection()

    def close(self, code: str, sentence: str) -> None:
        """Tell the client why, then close (now: pending replies are dropped)."""
        if self.protocol.closing or self._stopped:
            return
        self._begin_close()
        self.protocol.hang_up(code, sentence)
