"""
What a connection wrote while its peer was not reading: the limit on a slow reader.

`transport.write` never blocks; it buffers.  The transport tells its registered streaming
producer when its buffer fills (the peer stopped reading) and when it drains.  A `Backlog`
is that producer for one connection: it counts the bytes written while paused, and says
when they pass the limit, so the protocol can close the connection instead of letting the
server's memory grow.  Undelivered messages stay unacknowledged in the store.  When the
transport has written everything out (it resumes its producer), ``drained`` is called: a
front end that counts what it wrote as read (IRC) learns that it has left the server.
"""

from __future__ import annotations

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer


@implementer(IPushProducer)
class Backlog:
    __slots__ = ("limit", "paused", "waiting", "drained")

    def __init__(self, limit: int, drained=None) -> None:
        self.limit = limit
        self.drained = drained
        self.paused = False  # the peer stopped reading; writes pile up in the transport
        self.waiting = 0  # bytes written since then

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.waiting = 0
        if self.drained is not None:
            self.drained()

    def stopProducing(self) -> None:
        pass

    def overflows(self, size: int) -> bool:
        """Count ``size`` bytes written while paused; True once they pass the limit."""
        self.waiting += size
        return self.waiting > self.limit
