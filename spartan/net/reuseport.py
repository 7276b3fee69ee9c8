"""
TCP listening with ``SO_REUSEPORT``, so several node processes can share one port.

The kernel (Linux 3.9+) then spreads incoming connections over the processes, which lets a
single host use all its cores: run one ``twistd spartan --redis ... --reuse-port`` per core
on the same ``--port``.  Twisted's own TCP port does not set the option, so this is a
`tcp.Port` that sets it on the socket before ``bind``, and an endpoint for it.
"""

from __future__ import annotations

import socket

from twisted.internet import defer, tcp
from twisted.internet.interfaces import IStreamServerEndpoint
from zope.interface import implementer


class ReusePort(tcp.Port):
    def createInternetSocket(self):
        s = super().createInternetSocket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        return s


@implementer(IStreamServerEndpoint)
class ReusePortEndpoint:
    def __init__(self, reactor, port: int, backlog: int = 50, interface: str = "") -> None:
        self.reactor = reactor
        self.port = port
        self.backlog = backlog
        self.interface = interface

    def listen(self, factory):
        port = ReusePort(self.port, factory, self.backlog, self.interface, self.reactor)
        return defer.execute(lambda: (port.startListening(), port)[1])


def _split(description: str) -> list[str]:
    """Split an endpoint description on ``:``, honouring ``\\:`` escapes (IPv6)."""
    parts, current, chars = [], [], iter(description)
    for char in chars:
        if char == "\\":
            current.append(next(chars, ""))
        elif char == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def endpoint_from_description(reactor, description: str) -> ReusePortEndpoint:
    """``tcp:PORT[:interface=ADDR][:backlog=N]`` (or ``tcp6:``) as a reuse-port endpoint."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("SO_REUSEPORT is not available on this system")
    kind, *parts = _split(description)
    if kind not in ("tcp", "tcp6") or not parts:
        raise ValueError("--reuse-port works with tcp:PORT endpoints only")
    port, options = parts[0], {}
    for part in parts[1:]:
        key, equals, value = part.partition("=")
        if not equals or key not in ("interface", "backlog"):
            raise ValueError(f"unsupported option {part!r}")
        options[key] = value
    interface = options.get("interface", "::" if kind == "tcp6" else "")
    return ReusePortEndpoint(reactor, int(port), int(options.get("backlog", 50)), interface)
