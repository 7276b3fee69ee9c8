"""
Spartan messages as IRC lines: ``PRIVMSG`` from the sender's mask, cut to fit a 512-byte
line, ``/me`` as a CTCP ACTION, a notice (text starting ``/notice ``) as ``NOTICE``, with
or without the ``@time`` tag (``server-time``).

A `MessageEncoder`'s two bound methods are the encoders `Delivery.encoded` caches by, so
a message is encoded once per form for every IRC reader.
"""

from __future__ import annotations

from spartan.core.chat import Delivery
from spartan.core.names import ACTION_PREFIX, NOTICE_PREFIX
from spartan.irc.lines import (
    MAX_BODY,
    dm_target,
    format_line,
    is_channel,
    server_time,
    split_utf8,
)


class MessageEncoder:
    def __init__(self, server_name: str) -> None:
        self.server_name = server_name

    def mask(self, nick: str) -> str:
        return f"{nick}!{nick}@{self.server_name}"

    def plain(self, delivery: Delivery) -> bytes:
        return self._encode(delivery, "")

    def tagged(self, delivery: Delivery) -> bytes:
        return self._encode(delivery, server_time(delivery.message.timestamp))

    def _encode(self, delivery: Delivery, tags: str) -> bytes:
        target = delivery.conversation if is_channel(delivery.conversation) else dm_target(delivery)
        return self.lines(delivery.message, target, "PRIVMSG", tags)

    def lines(self, message, target: str, command: str = "PRIVMSG", tags: str = "") -> bytes:
        """``message`` as ``command`` lines to ``target``, from its sender."""
        source = self.mask(message.sender)
        command, text = _kind(command, message.text)
        # Most messages: one line, short enough however many bytes a character takes.
        if len(text) * 4 + len(source) + len(target) + 24 <= MAX_BODY and not text.startswith(
            ACTION_PREFIX
        ):
            line = f":{source} {command} {target} :{text}\r\n"
            return (f"@{tags} {line}" if tags else line).encode()
        return b"".join(
            format_line(source, command, target, piece, tags=tags)
            for piece in self.pieces(message, target, command)
        )

    def pieces(self, message, target: str, command: str = "PRIVMSG") -> list[str]:
        """The message text in pieces that fit an IRC line (512 bytes), /me as ACTION."""
        command, text = _kind(command, message.text)
        action = text.startswith(ACTION_PREFIX)
        if action:
            text = text[len(ACTION_PREFIX) :]
        overhead = len(f":{self.mask(message.sender)} {command} {target} :".encode()) + 2
        room = max(MAX_BODY - overhead - (9 if action else 0), 64)
        pieces = split_utf8(text, room)
        if action:
            pieces = [f"\x01ACTION {p}\x01" for p in pieces]
        return pieces


def _kind(command: str, text: str) -> tuple[str, str]:
    """The IRC command a message is sent as, and its text without the notice marker."""
    if text.startswith(NOTICE_PREFIX):
        return "NOTICE", text[len(NOTICE_PREFIX) :]
    return command, text
