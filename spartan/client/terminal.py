"""
The terminal side of the client: a `twisted.internet.stdio.StandardIO` protocol.

It turns input bytes into lines for the flow and the flow's screen effects into bytes.
Everything shown goes through `spartan.client.text.printable`, so nothing a user or the
server sends can move the cursor or clear the screen; the only control sequences written
are the client's own (``CR`` + erase-line, to replace a redrawn prompt on a terminal).

Output is written straight to the file descriptor by the stdio transport (never through
``print()``), so a prompt appears at once whatever Python's buffering is.
"""

from __future__ import annotations

import array
import fcntl
import os
import termios
from collections.abc import Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from zope.interface import implementer

from spartan.client.flow import Effect, ErasePrompt, Newline, Prompt, Show
from spartan.client.text import printable

ERASE_LINE = "\r\x1b[K"  # back to column 0, erase to the end of the line
MAX_INPUT_LINE = 65536  # bytes; the rest of a longer line is dropped


def render(effects: list[Effect], *, tty: bool) -> bytes:
    """The bytes that show the screen effects among ``effects`` (others are skipped)."""
    parts = []
    for effect in effects:
        match effect:
            case Show(text):
                parts.append(printable(text) + "\n")
            case Prompt(text):
                parts.append(printable(text))
            case Newline():
                parts.append("\n")
            case ErasePrompt():
                parts.append(ERASE_LINE if tty else "\n")
    return "".join(parts).encode("utf-8", "replace")


@implementer(IHalfCloseableProtocol)
class TerminalProtocol(Protocol):
    """Lines from stdin to ``on_lines`` (those of one read together); end of stdin to
    ``on_eof``; effects to stdout.

    ``on_output_closed`` is called when stdout goes away (a closed pipe).
    """

    def __init__(
        self,
        on_lines: Callable[[list[str]], object],
        on_eof: Callable[[], object],
        on_output_closed: Callable[[], object],
        *,
        tty: bool,
        stdin_fd: int | None = None,
    ) -> None:
        self._on_lines = on_lines
        self._on_eof = on_eof
        self._on_output_closed = on_output_closed
        self.tty = tty
        self._stdin_fd = stdin_fd  # a terminal, for reading a password without echo
        self._buffer = b""
        self._discarding = False
        self._secret_attrs: list | None = None
        self._ended = False
        self.closed = False
        self._closed_waiters: list[Deferred[None]] = []

    # -- output ---------------------------------------------------------------------------

    def show(self, effects: list[Effect]) -> None:
        data = render(effects, tty=self.tty)
        for effect in effects:
            if isinstance(effect, Prompt) and effect.secret:
                self._echo_off()
        if data and self.transport is not None and not self.closed:
            self.transport.write(data)

    def _echo_off(self) -> None:
        if self._stdin_fd is None or self._secret_attrs is not None:
            return
        try:
            attrs = termios.tcgetattr(self._stdin_fd)
            quiet = list(attrs)
            quiet[3] &= ~termios.ECHO
            termios.tcsetattr(self._stdin_fd, termios.TCSANOW, quiet)
        except (termios.error, OSError):
            return
        self._secret_attrs = attrs

    def echo_on(self) -> None:
        """Undo `_echo_off` (also called on exit)."""
        attrs, self._secret_attrs = self._secret_attrs, None
        if attrs is not None and self._stdin_fd is not None:
            try:
                termios.tcsetattr(self._stdin_fd, termios.TCSANOW, attrs)
            except (termios.error, OSError):
                pass

    # -- input ----------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data + self._typed_ahead()
        lines = []
        while True:  # bounded: each turn removes a line from the buffer, or stops
            line, found, rest = self._buffer.partition(b"\n")
            if not found:
                if len(self._buffer) > MAX_INPUT_LINE:
                    if not self._discarding:
                        lines.append(self._buffer[:MAX_INPUT_LINE])
                    self._discarding = True
                    self._buffer = b""
                break
            self._buffer = rest
            if self._discarding:
                self._discarding = False  # the end of an overlong line
                continue
            lines.append(line[:MAX_INPUT_LINE])
        self._lines(lines)

    def _typed_ahead(self) -> bytes:
        """Lines already typed after the one just read, read now to go with it.

        A terminal in line mode gives one line per read, but echoes what is typed at once:
        lines typed ahead were all echoed before the client could answer the first, and
        the flow must know that to keep its picture of the screen right.
        """
        if self._stdin_fd is None:
            return b""
        more = []
        for _ in range(64):  # bounded; each read takes one line
            waiting = array.array("i", [0])
            try:
                fcntl.ioctl(self._stdin_fd, termios.FIONREAD, waiting, True)
                if waiting[0] <= 0:
                    break
                chunk = os.read(self._stdin_fd, waiting[0])
            except OSError:
                break
            if not chunk:
                break
            more.append(chunk)
        return b"".join(more)

    def _lines(self, lines: list[bytes]) -> None:
        if not lines:
            return
        if self._secret_attrs is not None:
            self.echo_on()
            self.show([Newline()])  # the user's Enter was not echoed
        self._on_lines([line.removesuffix(b"\r").decode("utf-8", "replace") for line in lines])

    def readConnectionLost(self) -> None:
        self._end_of_input()

    def writeConnectionLost(self) -> None:
        self.closed = True
        self._on_output_closed()

    def connectionLost(self, reason=None) -> None:
        self.closed = True
        waiters, self._closed_waiters = self._closed_waiters, []
        for waiter in waiters:
            waiter.callback(None)
        self._end_of_input()

    def when_closed(self) -> Deferred[None]:
        """Fires once the stdio transport is closed (output flushed)."""
        if self.closed:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._closed_waiters.append(waiter)
        return waiter

    def _end_of_input(self) -> None:
        if self._ended:
            return
        self._ended = True
        if self._buffer and not self._discarding:  # typed before Ctrl-D: still a line
            line, self._buffer = self._buffer, b""
            self._lines([line])
        self._on_eof()


class FileFlags:
    """Remember the flags of file descriptors, to put them back on exit.

    `StandardIO` makes stdin and stdout non-blocking; on a terminal those flags belong
    to the terminal, which the shell reads after the client exits.
    """

    def __init__(self, *fds: int) -> None:
        self._saved = {}
        for fd in fds:
            try:
                self._saved[fd] = fcntl.fcntl(fd, fcntl.F_GETFL)
            except OSError:
                pass

    def restore(self) -> None:
        for fd, flags in self._saved.items():
            try:
                fcntl.fcntl(fd, fcntl.F_SETFL, flags)
            except OSError:
                pass


def is_terminal(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False
