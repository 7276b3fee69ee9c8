"""
How much a socket still holds that its peer has not acknowledged.

Twisted says when its own buffer is empty, but the kernel holds more: what it sent and the
peer's TCP has not acknowledged, and what it could not send yet (a stalled reader's window
is closed).  A front end that counts what it wrote as read (IRC has no ACK) waits until
this is 0 too, so that dropping a stalled reader (a reset: the kernel discards its queue)
loses nothing it counted.  Linux answers with the ``SIOCOUTQ`` ioctl; elsewhere, or for a
transport without a socket (TLS, tests), the answer is None: nothing known beyond Twisted.
"""

from __future__ import annotations

import array
import fcntl
import sys

_SIOCOUTQ = 0x5411  # TIOCOUTQ: the same request number, for sockets on Linux


def unacknowledged(transport) -> int | None:
    """Bytes the kernel holds for ``transport``'s peer, or None if that cannot be known."""
    if not sys.platform.startswith("linux"):
        return None
    if not hasattr(transport, "producerPaused"):  # not a plain socket transport
        return None
    try:
        fileno = transport.getHandle().fileno()
        answer = array.array("i", [0])
        fcntl.ioctl(fileno, _SIOCOUTQ, answer, True)
    except (AttributeError, OSError, ValueError):  # closed already
        return None
    return answer[0]
