"""
Which server the client dials: ``--host`` addresses, and the order they are tried in (pure).

``HOST``, ``HOST:PORT`` or ``[IPv6]:PORT`` (a bare IPv6 address takes the default port).
`HostRotation` is the whole policy, with no I/O and no clock:

* at start the addresses are tried in the order given, each once; when every one has
  failed in a row, there is nothing left to try (the client says so and exits);
* a connection that is lost moves on to the next address (the node went away: another
  one is the better bet), and so does every failed attempt after that, round and round;
  the adapter waits its backoff delay before each of those attempts;
* logging in somewhere starts the count of failures in a row again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_port(text: str) -> int:
    """A port number 1-65535, or ValueError."""
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"{text!r} is not a port number (1-65535)")
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(f"{text!r} is not a port number (1-65535)")
    return port


def parse_address(text: str, default_port: int) -> Address:
    """``HOST``, ``HOST:PORT``, ``[IPV6]``, ``[IPV6]:PORT`` or a bare IPv6 address."""
    text = text.strip()
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed:
            raise ValueError(f"{text!r}: missing ']' after the IPv6 address")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected [ADDRESS]:PORT")
        port = parse_port(rest[1:]) if rest else default_port
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = parse_port(port_text)
    else:  # a name, or a bare IPv6 address (several colons)
        host, port = text, default_port
    if not host or any(c.isspace() or c in "[]/" for c in host):
        raise ValueError(f"{text!r} is not a host name or address")
    return Address(host, port)


class HostRotation:
    """The address to dial now, and which one comes after a failure or a loss."""

    def __init__(self, addresses: Sequence[Address]) -> None:
        if not addresses:
            raise ValueError("at least one address is needed")
        self.addresses = tuple(addresses)
        self._index = 0
        self._failures = 0  # attempts failed in a row since the last login

    @property
    def current(self) -> Address:
        return self.addresses[self._index]

    @property
    def several(self) -> bool:
        return len(self.addresses) > 1

    def failed(self) -> Address | None:
        """The attempt at `current` failed: move on.  The address to try next, or None
        once every address has failed in a row (a whole round)."""
        self._failures += 1
        self._advance()
        return None if self._failures >= len(self.addresses) else self.current

    def lost(self) -> Address:
        """The connection to `current` was lost after logging in: the next address."""
        self._advance()
        return self.current

    def succeeded(self) -> None:
        """Logged in at `current`."""
        self._failures = 0

    def _advance(self) -> None:
        self._index = (self._index + 1) % len(self.addresses)
