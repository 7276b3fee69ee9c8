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
        self._quiet = TerminalMode(stdin_fd)  # no echo while a password is typed
        self._ended = False
        self.closed = False
        self._closing = Closing()

    def stdio_protocol(self) -> TerminalProtocol:
        """The protocol to give `StandardIO`."""
        return self

    def restore(self) -> None:
        """Give the terminal back as it was (on exit)."""
        self._quiet.restore()

    # -- output ---------------------------------------------------------------------------

    def show(self, effects: list[Effect]) -> None:
        data = render(effects, tty=self.tty)
        for effect in effects:
            if isinstance(effect, Prompt) and effect.secret:
                self._quiet.change(_without_echo)
        if data and self.transport is not None and not self.closed:
            self.transport.write(data)

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
        if self._quiet.changed:
            self._quiet.restore()
            self.show([Newline()])  # the user's Enter was not echoed
        self._on_lines([line.removesuffix(b"\r").decode("utf-8", "replace") for line in lines])

    def readConnectionLost(self) -> None:
        self._end_of_input()

    def writeConnectionLost(self) -> None:
        self.closed = True
        self._on_output_closed()

    def connectionLost(self, reason=None) -> None:
        self.closed = True
        self._closing.fire()
        self._end_of_input()

    def when_closed(self) -> Deferred[None]:
        """Fires once the stdio transport is closed (output flushed)."""
        return self._closing.wait()

    def _end_of_input(self) -> None:
        if self._ended:
            return
        self._ended = True
        if self._buffer and not self._discarding:  # typed before Ctrl-D: still a line
            line, self._buffer = self._buffer, b""
            self._lines([line])
        self._on_eof()


class Closing:
    """Deferreds for those waiting for the stdio transport to close."""

    def __init__(self) -> None:
        self._done = False
        self._waiters: list[Deferred[None]] = []

    def fire(self) -> None:
        self._done = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def wait(self) -> Deferred[None]:
        if self._done:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        return waiter


def _without_echo(attrs: list) -> None:
    attrs[3] &= ~termios.ECHO


class TerminalMode:
    """A terminal's settings, changed for a while (`change`) and put back (`restore`)."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd
        self._saved: list | None = None

    @property
    def changed(self) -> bool:
        return self._saved is not None

    def change(self, edit: Callable[[list], None]) -> None:
        """Apply ``edit`` to a copy of the settings (``termios.tcgetattr``'s list)."""
        if self._fd is None or self._saved is not None:
            return
        try:
            saved = termios.tcgetattr(self._fd)
            attrs = [list(item) if isinstance(item, list) else item for item in saved]
            edit(attrs)
            termios.tcsetattr(self._fd, termios.TCSANOW, attrs)
        except (termios.error, OSError):
            return  # not a terminal after all: nothing to change
        self._saved = saved

    def restore(self) -> None:
        saved, self._saved = self._saved, None
        if saved is not None and self._fd is not None:
            try:
                termios.tcsetattr(self._fd, termios.TCSANOW, saved)
            except (termios.error, OSError):
                pass


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
