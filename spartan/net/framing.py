"""
Lines out of a byte stream, with a size limit: the framing every line protocol shares.

Theory of operation
-------------------
* A line ends with LF.  A CR before it stays with the line: each codec decides what a CR
  means (the native format drops it; IRC strips it).
* A line longer than ``max_line`` bytes (its LF not counted) is not kept: it is reported
  once, as `TOO_LONG`, at its place among the lines, and the rest of it is discarded as it
  comes, however many reads that takes.  The lines after it are unaffected.
* A read is split in one go (``bytes.split``), never a line at a time: splitting the rest
  of the buffer once per line, as `LineReceiver` does, copies it each time and is quadratic
  on a big read.
* Nothing here does I/O or raises on input.
"""

from __future__ import annotations

from typing import Final

TOO_LONG: Final = None  # stands in the list of lines for a line over the limit


class LineFramer:
    __slots__ = ("max_line", "_partial", "_discarding")

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._partial = b""  # the start of a line whose LF has not come yet
        self._discarding = False  # inside the rest of a line over the limit

    def feed(self, data: bytes) -> list[bytes | None]:
        """The complete lines in ``data`` (after what was fed before), without their LF;
        `TOO_LONG` in place of each line over the limit."""
        if self._discarding:
            _, newline, data = data.partition(b"\n")
            if not newline:
                return []
            self._discarding = False
        if self._partial:
            data = self._partial + data
            self._partial = b""
        lines: list[bytes | None] = data.split(b"\n")
        rest = lines.pop()
        limit = self.max_line
        if len(data) > limit:  # only then can a line be over the limit
            lines = [TOO_LONG if len(line) > limit else line for line in lines]
        if len(rest) > limit:
            lines.append(TOO_LONG)
            self._discarding = True
        else:
            self._partial = rest
        return lines

    @property
    def partial(self) -> bytes:
        """The start of a line not yet ended (for tests and for a protocol switch)."""
        return self._partial
