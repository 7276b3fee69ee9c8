"""
The bare IRC relay the benchmarks compare Spartan's IRC gateway with: a minimal Twisted
server that speaks just enough IRC to run the same scenarios, and does nothing else.

``NICK`` and ``USER`` -> ``001`` (no check of the nick, no directory); ``JOIN #a[,#b]`` ->
``JOIN`` to every member of the channel, the joiner included (any channel, anyone);
``PRIVMSG <nick|#channel> :<text>`` -> ``:nick!nick@relay PRIVMSG <target> :<text>`` to
every connection of the nick, or every other member of the channel; ``PING <token>`` ->
``PONG``; ``QUIT`` closes.  No store, no limits, no back-pressure.  Like benchmarks/relay.py
it splits a read into lines at once, writes once per connection per read, and sets
TCP_NODELAY as Spartan does (the same ``BatchingRelay``).

    python benchmarks/irc_relay.py --port 6668
"""

from __future__ import annotations

import argparse
import sys

from twisted.internet import protocol, reactor

from relay import BatchingRelay  # benchmarks/ is this script's directory

SERVER = b"relay"


class IRCRelay(BatchingRelay):
    nick = b""
    has_user = False
    registered = False

    def connectionMade(self):
        super().connectionMade()
        self.channels: list[bytes] = []

    def connectionLost(self, reason):
        factory = self.factory
        if self.registered:
            factory.nicks[self.nick].remove(self)
        for name in self.channels:
            factory.channels[name].remove(self)

    def lines_received(self, lines, out, others):
        factory = self.factory
        for line in lines:
            verb, _, rest = line.rstrip(b"\r").partition(b" ")
            verb = verb.upper()
            if verb == b"PRIVMSG" and self.registered:
                target, _, text = rest.partition(b" ")
                if text.startswith(b":"):
                    text = text[1:]
                line = b":%s!%s@%s PRIVMSG %s :%s\r\n" % (self.nick, self.nick, SERVER, target, text)
                if target.startswith(b"#"):
                    peers = [p for p in factory.channels.get(target, ()) if p is not self]
                else:
                    peers = factory.nicks.get(target, ())
                if not peers and target not in factory.channels and target not in factory.nicks:
                    out.append(b":%s 401 %s %s :No such nick/channel\r\n" % (SERVER, self.nick, target))
                for peer in peers:
                    others.setdefault(peer, []).append(line)
            elif verb == b"PING":
                out.append(b":%s PONG %s %s\r\n" % (SERVER, SERVER, rest))
            elif verb == b"JOIN" and self.registered:
                for name in rest.split(b" ")[0].split(b","):
                    members = factory.channels.setdefault(name, [])
                    if self in members:
                        continue
                    members.append(self)
                    self.channels.append(name)
                    joined = b":%s!%s@%s JOIN %s\r\n" % (self.nick, self.nick, SERVER, name)
                    for peer in members:
                        if peer is self:
                            out.append(joined)
                        else:
                            others.setdefault(peer, []).append(joined)
            elif verb == b"NICK" and not self.registered:
                self.nick = rest.split(b" ")[0].lstrip(b":")
                out += self._register()
            elif verb == b"USER" and not self.registered:
                self.has_user = True
                out += self._register()
            elif verb == b"QUIT":
                out.append(b"ERROR :Closing Link: %s (Quit)\r\n" % (self.nick or b"*"))
                self.transport.write(b"".join(out))
                out.clear()
                self.transport.loseConnection()
                return
            elif verb in (b"PONG", b""):
                pass
            elif not self.registered:
                out.append(b":%s 451 * :You have not registered\r\n" % SERVER)
            else:
                out.append(b":%s 421 %s %s :Unknown command\r\n" % (SERVER, self.nick, verb))

    def _register(self) -> list[bytes]:
        if not (self.nick and self.has_user):
            return []
        self.registered = True
        self.factory.nicks.setdefault(self.nick, []).append(self)
        return [b":%s 001 %s :Welcome to the bare IRC relay, %s\r\n" % (SERVER, self.nick, self.nick)]


class IRCRelayFactory(protocol.ServerFactory):
    protocol = IRCRelay
    noisy = False

    def __init__(self):
        self.nicks: dict = {}  # nick -> [connection]
        self.channels: dict = {}  # "#name" -> [connection]


def main(argv=None):
    parser = argparse.ArgumentParser(description="bare Twisted IRC relay for the benchmarks")
    parser.add_argument("--port", type=int, default=6668)
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--backlog", type=int, default=1024)
    args = parser.parse_args(argv)
    reactor.listenTCP(args.port, IRCRelayFactory(), backlog=args.backlog, interface=args.interface)
    print(f"IRC relay listening on {args.interface}:{args.port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    sys.exit(main())
