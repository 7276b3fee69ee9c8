"""
How far the peer has acknowledged a connection's byte stream.

Twisted says when its own buffer is empty, but not what the peer received: the kernel
holds what it sent and was not acknowledged, and what it could not send yet (a stalled
reader's window is closed).  A front end that counts what it wrote as read (IRC has no
ACK) asks how many bytes of the stream the peer's TCP has acknowledged -- on Linux,
``tcpi_bytes_acked`` of ``TCP_INFO`` -- so that dropping a stalled reader loses nothing it
counted.  For a transport without such a socket (TLS, tests) or elsewhere the answer is
None: nothing known beyond Twisted.
"""

from __future__ import annotations

import socket
import struct
import sys

# struct tcp_info (linux/tcp.h): tcpi_bytes_acked is the __u64 at byte 120 (Linux >= 4.1).
_BYTES_ACKED = struct.Struct("=Q")
_BYTES_ACKED_AT = 120
_TCP_INFO_SIZE = 232


def acknowledged(transport) -> int | None:
    """Bytes of the stream written on ``transport`` that its peer has acknowledged."""
    if not sys.platform.startswith("linux") or not hasattr(transport, "producerPaused"):
        return None  # not a plain socket transport (TLS wraps one; tests have none)
    try:
        info = transport.getHandle().getsockopt(
            socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE
        )
    except (AttributeError, OSError):  # closed, or not TCP
        return None
    if len(info) < _BYTES_ACKED_AT + 8:
        return None
    return _BYTES_ACKED.unpack_from(info, _BYTES_ACKED_AT)[0]
