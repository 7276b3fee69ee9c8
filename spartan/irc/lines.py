"""
IRC lines as text: parse what a client sends, format what the gateway writes, and clean and
cut message text to fit.  Pure functions, no Twisted, no I/O; nothing here raises on input.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from spartan.core.names import ACTION_PREFIX, GROUP_PREFIX, direct_pair
from spartan.native import wire

if TYPE_CHECKING:
    from spartan.core.chat import Delivery

MAX_BODY = 510  # RFC 1459: a line is at most 512 bytes with its CRLF, tags not counted

COMMAND = re.compile(r"[A-Za-z]+\Z|[0-9]{3}\Z")  # a command word, or a numeric
# Formatting codes IRC clients put in text: colours (with their numbers), bold, reset...
_COLOUR = re.compile(r"\x03(?:\d{1,2}(?:,\d{1,2})?)?|\x04(?:[0-9a-fA-F]{6}(?:,[0-9a-fA-F]{6})?)?")


def parse_line(line: bytes) -> tuple[str, list[str]] | None:
    """One line from a client (without its LF) as (COMMAND, params), None if empty.

    Message tags and the source prefix are dropped; text that is not UTF-8 is read as
    Latin-1, as many IRC servers do.  Never raises.
    """
    if line.endswith(b"\r"):
        line = line[:-1]
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        text = line.decode("latin-1")
    text = text.lstrip(" ")
    if text.startswith("@"):  # client tags: we negotiate none a client sends
        text = text.partition(" ")[2].lstrip(" ")
    if text.startswith(":"):
        text = text.partition(" ")[2].lstrip(" ")
    head, sep, trailing = text.partition(" :")
    params = head.split()
    if not params:
        return None
    if sep:
        params.append(trailing)
    return params[0].upper(), params[1:]


def clean_text(text: str) -> str:
    """Message text from IRC as Spartan stores it: no formatting or control characters.

    A CTCP ACTION (``/me waves``) is kept as ``/me waves``; other CTCP is dropped whole.
    """
    if text.isprintable():  # the common text: no CTCP, colours or control characters
        return text
    if text.startswith("\x01"):
        body = text.strip("\x01")
        if body.upper().startswith("ACTION "):
            text = ACTION_PREFIX + body[7:]
        else:
            return ""
    text = _COLOUR.sub("", text)
    return wire.CONTROL.sub("", text)


def split_utf8(text: str, size: int) -> list[str]:
    """``text`` in pieces of at most ``size`` bytes of UTF-8, cut between characters."""
    data = text.encode("utf-8")
    pieces = []
    while len(data) > size:
        cut = size
        while cut > 0 and (data[cut] & 0xC0) == 0x80:
            cut -= 1
        space = data.rfind(b" ", size // 2, cut)
        if space > 0:
            cut = space + 1
        pieces.append(data[:cut].decode("utf-8"))
        data = data[cut:]
    pieces.append(data.decode("utf-8"))
    return pieces


def format_line(
    source: str | None, command: str, *params: str, tags: str = "", trailing: bool = True
) -> bytes:
    """An IRC line.  The last parameter is sent as trailing (``:...``), as clients expect
    of text; with ``trailing=False`` only when it must be (empty, spaces, leading ``:``)."""
    parts = [command, *params]
    if params:
        last = params[-1]
        if trailing or not last or " " in last or last.startswith(":"):
            parts[-1] = ":" + last
    line = " ".join(parts)
    if source:
        line = f":{source} {line}"
    if tags:
        line = f"@{tags} {line}"
    return line.encode("utf-8") + b"\r\n"


def server_time(seconds: float) -> str:
    return "time=" + wire.format_timestamp(seconds)


def dm_target(delivery: Delivery) -> str:
    """The nick a one-to-one message is addressed to on IRC: the participant not sending."""
    m = delivery.message
    first, second = direct_pair(m.conversation)
    return second if m.sender == first else first


def is_server_name(name: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.\-]{0,62}", name) is not None


def is_channel(name: str) -> bool:
    return name.startswith(GROUP_PREFIX)

