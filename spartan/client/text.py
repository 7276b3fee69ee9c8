"""
Text safety for the terminal client: what may reach the screen, and what may be sent.

Pure functions, no I/O.  `printable` is applied by the terminal adapter to every line it
shows, so a message holding escape sequences (from another user, or from a misbehaving
server) is shown as harmless text instead of moving the cursor or clearing the screen.
`clean_input` is applied by the flow to what the user typed, so an arrow key pressed by
mistake (``ESC [ A``) or a stray backspace in piped input is not sent as a message.
"""

from __future__ import annotations

import re
import unicodedata

# Characters that change how a terminal draws text: bidirectional overrides and isolates,
# line and paragraph separators.  Shown escaped, like control characters.
_REORDERING = frozenset("\u061c\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e"
                        "\u2066\u2067\u2068\u2069")

# Escape sequences as a terminal reads them: CSI (ESC [ ... final), OSC (ESC ] ... BEL or
# ESC \), and two-character escapes (ESC x).  The 8-bit CSI (0x9b) too.
_ESCAPE_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?"  # CSI
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC
    r"|\x1b[NO].?"  # SS2, SS3 (function keys: ESC O A)
    r"|\x1b.?"  # any other escape
    r"|\x9b[0-?]*[ -/]*[@-~]?",  # 8-bit CSI
    re.DOTALL,
)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def _escaped(char: str) -> str:
    code = ord(char)
    if code < 0x20 or code == 0x7F:
        return "^" + chr(code ^ 0x40)  # caret notation: ESC -> ^[, BEL -> ^G, DEL -> ^?
    return f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every character that could drive the terminal made visible instead.

    Control characters (TAB excepted) are shown in caret notation (``^[`` for ESC), C1
    controls, bidi overrides and line separators as ``\\uXXXX``.
    """
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char == "\t" or (char.isprintable() and char not in _REORDERING):
            out.append(char)
        elif unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in _REORDERING:
            out.append(_escaped(char))
        else:
            out.append(char)  # other format characters (ZWJ in emoji, soft hyphen) are safe
    return "".join(out)


def clean_input(text: str) -> str:
    """A typed line as it may be sent: escape sequences removed, other controls dropped."""
    if text.isprintable():
        return text
    return _CONTROL.sub("", _ESCAPE_SEQUENCE.sub("", text))


def split_message(text: str, max_bytes: int) -> list[str]:
    """``text`` cut into pieces of at most ``max_bytes`` bytes of UTF-8 that, joined in
    order, are ``text`` again.

    The server drops the spaces that end a line, so a piece never ends with a space (it
    ends before a run of spaces, which starts the next piece); a cut falls between two
    characters, never before a combining one (an accent stays with its letter), and at
    a space when there is one in the second half of the piece.
    """
    if len(text.encode("utf-8", "surrogatepass")) <= max_bytes:
        return [text]
    sizes = [len(c.encode("utf-8", "surrogatepass")) for c in text]
    pieces = []
    start = 0
    while start < len(text):  # bounded: start grows by at least one character each time
        end, used = start, 0
        while end < len(text) and used + sizes[end] <= max_bytes:  # bounded by the text
            used += sizes[end]
            end += 1
        if end == len(text):
            pieces.append(text[start:])
            break
        cut = _cut(text, start + 1, max(end, start + 1))
        pieces.append(text[start:cut])
        start = cut
    return pieces


def _cut(text: str, lowest: int, highest: int) -> int:
    """Where to end a piece, between ``lowest`` and ``highest`` (both included)."""

    def fits(at: int) -> bool:
        return text[at - 1] != " " and unicodedata.combining(text[at]) == 0

    middle = (lowest + highest) // 2
    for at in range(highest, middle - 1, -1):  # a space starts the next piece
        if text[at] == " " and fits(at):
            return at
    for at in range(highest, lowest - 1, -1):
        if fits(at):
            return at
    return highest  # only spaces or marks: nothing better to do
