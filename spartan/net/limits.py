"""
Limits that keep one client from crowding out the others: pure policy, no I/O, no clock.

Theory of operation
-------------------
* Every function takes the current time ``now`` (seconds) as an argument, so the rules are
  tested with plain numbers; the server adapter reads the reactor's clock and acts on the
  answers (pauses reading, writes the notice, closes the connection).
* `LineRate` is a token bucket per connection: ``burst`` lines may come at once (a pasted
  paragraph), then ``rate`` lines a second.  A line that finds the bucket empty is still
  answered, but takes its token on credit and the connection stops being read until the
  debt is paid: the client is *slowed*.  A client that keeps the bucket empty for
  ``warn_after`` lines in a row is *told*; after ``drop_after`` lines it is *dropped*.  A
  line that arrives with a token to spare ends the streak.
* `ConnectionCounter` counts open connections, in total and per address, and refuses those
  over either limit.
* `FailureBackoff` remembers failed logins per address: after a few free failures, every
  further attempt from that address must wait, twice as long after each failure.  A success
  does not reset the count (an attacker with one account could otherwise reset it between
  guesses); addresses are forgotten after a quiet while, and the table is bounded.
* A limit of 0 (or None) means "no limit" everywhere.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum


class Verdict(Enum):
    PASS = "pass"  # a token was there: answer at once
    SLOW = "slow"  # answer, then stop reading for `LineRate.wait` seconds
    WARN = "warn"  # as SLOW, and tell the client to slow down (once per streak)
    DROP = "drop"  # refuse the line and close the connection


@dataclass(frozen=True)
class RateConfig:
    rate: float = 5.0  # lines a second, once the burst is spent
    burst: int = 40  # lines at once; 0 turns rate limiting off
    warn_after: int | None = None  # lines in a row on credit before the notice (burst)
    drop_after: int | None = None  # ... before the connection is dropped (2 * burst)

    @property
    def enabled(self) -> bool:
        return self.burst > 0 and self.rate > 0


class LineRate:
    """The token bucket of one connection."""

    def __init__(self, config: RateConfig, now: float) -> None:
        self.rate = config.rate
        self.burst = config.burst
        self.warn_after = config.warn_after or config.burst
        self.drop_after = config.drop_after or 2 * config.burst
        self.tokens = float(config.burst)
        self.updated = now
        self.streak = 0  # lines in a row that found the bucket empty
        self.wait = 0.0  # after SLOW/WARN: seconds until the debt is paid

    def line(self, now: float) -> Verdict:
        elapsed = max(0.0, now - self.updated)
        self.updated = max(now, self.updated)
        self.tokens = min(float(self.burst), self.tokens + elapsed * self.rate)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            self.streak = 0
            self.wait = 0.0
            return Verdict.PASS
        self.streak += 1
        if self.streak > self.drop_after:
            return Verdict.DROP
        self.tokens -= 1.0
        self.wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        return Verdict.WARN if self.streak == self.warn_after else Verdict.SLOW


class ConnectionCounter:
    """Open connections, in total and per address."""

    def __init__(self, max_total: int = 0, max_per_address: int = 0) -> None:
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.total = 0
        self.by_address: dict[str, int] = {}

    def acquire(self, address: str) -> str | None:
        """Count a new connection, or say (as a sentence) why it is refused."""
        if self.max_total and self.total >= self.max_total:
            return "The server has too many connections; try again later."
        if self.max_per_address and self.by_address.get(address, 0) >= self.max_per_address:
            return f"Too many connections from your address (at most {self.max_per_address})."
        self.total += 1
        self.by_address[address] = self.by_address.get(address, 0) + 1
        return None

    def release(self, address: str) -> None:
        count = self.by_address.get(address, 0)
        if count <= 0:
            return
        self.total -= 1
        if count == 1:
            del self.by_address[address]
        else:
            self.by_address[address] = count - 1


@dataclass(frozen=True)
class BackoffConfig:
    free_failures: int = 3  # failures from an address before it has to wait
    base: float = 1.0  # the first wait, doubled by each further failure
    cap: float = 60.0  # the longest wait
    forget_after: float = 900.0  # an address quiet this long starts afresh
    max_addresses: int = 10_000  # the oldest entries are dropped beyond this


class FailureBackoff:
    """Failed logins per address, and how long an address must wait before its next try."""

    def __init__(self, config: BackoffConfig | None = None) -> None:
        self.config = config or BackoffConfig()
        # address -> (failures, time of the last failure); oldest first
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def _entry(self, address: str, now: float) -> tuple[int, float] | None:
        entry = self._failures.get(address)
        if entry is not None and now - entry[1] > self.config.forget_after:
            del self._failures[address]
            return None
        return entry

    def delay(self, address: str, now: float) -> float:
        """Seconds ``address`` must still wait before its next login is checked."""
        entry = self._entry(address, now)
        if entry is None:
            return 0.0
        failures, last = entry
        extra = failures - self.config.free_failures - 1
        if extra < 0:
            return 0.0
        wait = min(self.config.cap, self.config.base * 2 ** min(extra, 32))
        return max(0.0, last + wait - now)

    def failed(self, address: str, now: float) -> None:
        entry = self._entry(address, now)
        failures = entry[0] if entry else 0
        self._failures.pop(address, None)
        self._failures[address] = (failures + 1, now)
        while len(self._failures) > self.config.max_addresses:
            self._failures.popitem(last=False)


@dataclass(frozen=True)
class ServerLimits:
    """Every limit a listener applies; the defaults (all off) suit tests, `tap` sets real ones."""

    rate: RateConfig = RateConfig(burst=0)
    max_connections: int = 0
    max_per_address: int = 0
    login_timeout: float = 0.0  # seconds to log in after connecting
    idle_timeout: float = 0.0  # seconds without a line; a * PING goes out half way
    close_grace: float = 10.0  # a closed connection whose peer does not read is aborted then
