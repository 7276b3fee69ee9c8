"""
The bare relay the benchmarks compare Spartan with: a minimal Twisted server that speaks
just enough of the Spartan protocol to run the same scenarios, and does nothing else.

``LOGIN <user>`` -> ``OK LOGIN <user>``; ``SEND <user|#group> <text>`` -> ``OK SENT <id>
<time>`` and ``* MSG <id> <time> <conversation> <sender> <text>`` to every other session of
the conversation's users.  No store, no checks, no log, no back-pressure.  It does what any
careful Twisted server would: split a read into lines at once, and write once per
connection per read (the lines for each peer are gathered, then joined).

    python benchmarks/relay.py --port 3001 --config users.toml
"""

from __future__ import annotations

import argparse
import sys
import time

try:
    import tomllib
except ImportError:  # Python < 3.11 (Debian's PyPy is 3.9): the backport
    import tomli as tomllib

from twisted.internet import protocol, reactor

_stamp_ms = -1
_stamp = b""


def timestamp(seconds: float) -> bytes:
    global _stamp_ms, _stamp
    ms = int(seconds * 1000)
    if ms != _stamp_ms:
        _stamp_ms = ms
        _stamp = (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + ".%03dZ" % (ms % 1000)).encode()
    return _stamp


class BatchingRelay(protocol.Protocol):
    """What both bare relays (this one and benchmarks/irc_relay.py) do with bytes: split a
    read into lines at once, let ``lines_received`` gather what goes to this connection
    (``out``) and to others (``others``: connection -> [bytes]), write once to each."""

    def connectionMade(self):
        # Spartan sets TCP_NODELAY; the yardstick must have the same socket options.
        self.transport.setTcpNoDelay(True)
        self.buffer = b""

    def dataReceived(self, data):
        data = self.buffer + data if self.buffer else data
        lines = data.split(b"\n")
        self.buffer = lines.pop()
        out: list[bytes] = []
        others: dict = {}
        self.lines_received(lines, out, others)
        if out:
            self.transport.write(b"".join(out))
        for peer, chunks in others.items():
            peer.transport.write(b"".join(chunks))

    def lines_received(self, lines: list[bytes], out: list[bytes], others: dict) -> None:
        raise NotImplementedError


class Relay(BatchingRelay):
    user = b""

    def connectionMade(self):
        super().connectionMade()
        self.transport.write(b"* HELLO Spartan 1 relay bare-relay\r\n")

    def connectionLost(self, reason):
        if self.user:
            sessions = self.factory.sessions.get(self.user)
            if sessions and self in sessions:
                sessions.remove(self)

    def lines_received(self, lines, out, others):
        factory = self.factory
        stamp = timestamp(time.time())
        for line in lines:
            verb, _, rest = line.rstrip(b"\r").partition(b" ")
            if verb == b"SEND":
                target, _, text = rest.partition(b" ")
                factory.last_id += 1
                mid = b"%d" % factory.last_id
                out.append(b"OK SENT %s %s\r\n" % (mid, stamp))
                if target.startswith(b"#"):
                    users = factory.groups.get(target[1:], ())
                    line = b"* MSG %s %s %s %s %s\r\n" % (mid, stamp, target, self.user, text)
                    for user in users:
                        for peer in factory.sessions.get(user, ()):
                            if peer is not self:
                                others.setdefault(peer, []).append(line)
                else:
                    line = b"* MSG %s %s %s %s %s\r\n" % (mid, stamp, self.user, self.user, text)
                    for peer in factory.sessions.get(target, ()):
                        others.setdefault(peer, []).append(line)
                    for peer in factory.sessions.get(self.user, ()):
                        if peer is not self:
                            others.setdefault(peer, []).append(
                                b"* MSG %s %s %s %s %s\r\n" % (mid, stamp, target, self.user, text)
                            )
            elif verb == b"LOGIN":
                self.user = rest.split(b" ")[0]
                factory.sessions.setdefault(self.user, []).append(self)
                out.append(b"OK LOGIN %s\r\n" % self.user)
            elif verb in (b"PING", b"PONG"):
                out.append(b"OK PONG\r\n")
            else:
                out.append(b"ERR unknown-command the relay knows LOGIN and SEND\r\n")


class RelayFactory(protocol.ServerFactory):
    protocol = Relay
    noisy = False

    def __init__(self, groups):
        self.groups = groups
        self.sessions: dict = {}
        self.last_id = 0


def main(argv=None):
    parser = argparse.ArgumentParser(description="bare Twisted relay for the benchmarks")
    parser.add_argument("--port", type=int, default=3001)
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--config", help="Spartan TOML directory (only [groups] is used)")
    parser.add_argument("--backlog", type=int, default=1024)
    args = parser.parse_args(argv)
    groups = {}
    if args.config:
        with open(args.config, "rb") as f:
            data = tomllib.load(f)
        groups = {k.encode(): [m.encode() for m in v] for k, v in data.get("groups", {}).items()}
    reactor.listenTCP(args.port, RelayFactory(groups), backlog=args.backlog, interface=args.interface)
    print(f"relay listening on {args.interface}:{args.port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    sys.exit(main())
