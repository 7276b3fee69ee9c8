"""
The terminal side of the client when stdin and stdout are a terminal: the line editor.

The terminal is put in raw mode (no line buffering, no echo, Ctrl-C as a key; output
processing stays on, so ``\\n`` still starts a new line), and Twisted's
`twisted.conch.insults.insults.ServerProtocol` turns the bytes read into keys.  Each key
goes to the pure `spartan.client.editor.LineEditor`; a line entered goes to the flow at
once, and the flow's screen effects come back through `ConsoleTerminal.show`.

The input line is the last line of the screen.  A line the flow shows (a message, a
notice) is printed in its place, and the line is drawn again below it, with what was
typed so far and the cursor where it was.  Drawing writes only what changed when text is
added at the end (typing, or a paste), else the whole line once per read; everything
shown goes through `spartan.client.text.printable`, and the only control sequences
written are the client's own: CR, erase to the end of the line, cursor forward.
"""

from __future__ import annotations

import codecs
import os
import signal
import termios
from collections.abc import Callable

from twisted.conch.insults import insults
from twisted.internet.defer import Deferred

from spartan.client.editor import (
    Interrupt,
    Key,
    Leave,
    LineEditor,
    ListChoices,
    Submit,
    Suspend,
    View,
)
from spartan.client.editor import width as text_width
from spartan.client.flow import Effect, ErasePrompt, Newline, Prompt, Show
from spartan.client.terminal import Closing, TerminalMode
from spartan.client.text import printable

ERASE_LINE = "\r\x1b[K"
DEFAULT_COLUMNS = 80

_CONTROL_KEYS = {
    b"\r": Key.ENTER,
    b"\n": Key.ENTER,
    b"\x7f": Key.BACKSPACE,
    b"\x08": Key.BACKSPACE,
    b"\t": Key.TAB,
    b"\x01": Key.HOME,  # Ctrl-A
    b"\x05": Key.END,  # Ctrl-E
    b"\x02": Key.LEFT,  # Ctrl-B
    b"\x06": Key.RIGHT,  # Ctrl-F
    b"\x10": Key.UP,  # Ctrl-P
    b"\x0e": Key.DOWN,  # Ctrl-N
    b"\x15": Key.KILL_TO_START,  # Ctrl-U
    b"\x17": Key.KILL_WORD,  # Ctrl-W
    b"\x03": Key.CTRL_C,
    b"\x04": Key.CTRL_D,
    b"\x1a": Key.CTRL_Z,
}
_FUNCTION_KEYS = {
    insults.ServerProtocol.UP_ARROW: Key.UP,
    insults.ServerProtocol.DOWN_ARROW: Key.DOWN,
    insults.ServerProtocol.LEFT_ARROW: Key.LEFT,
    insults.ServerProtocol.RIGHT_ARROW: Key.RIGHT,
    insults.ServerProtocol.HOME: Key.HOME,
    insults.ServerProtocol.END: Key.END,
    insults.ServerProtocol.DELETE: Key.DELETE,
}
# Keys in the terminal's "application" mode (ESC O x), which insults does not name.
_APPLICATION_KEYS = {
    b"\x1b[OA": Key.UP,
    b"\x1b[OB": Key.DOWN,
    b"\x1b[OC": Key.RIGHT,
    b"\x1b[OD": Key.LEFT,
    b"\x1b[OH": Key.HOME,
    b"\x1b[OF": Key.END,
}


def paint(old: View | None, new: View) -> str:
    """What to write to turn the input line ``old`` (None: the cursor is at the start of an
    empty line) into ``new``, cursor included."""
    end = text_width(new.text)
    if old is None:
        out = new.text
    elif new.text.startswith(old.text) and old.column == text_width(old.text):
        out = new.text[len(old.text) :]  # typed at the end: just the new text
    else:
        out = "\r" + new.text + "\x1b[K"
    if new.column != end:
        out += "\r" + (f"\x1b[{new.column}C" if new.column else "")
    return out


def _raw(attrs: list) -> None:
    """Keys as they are typed, not echoed; Ctrl-C a key too.  Output processing stays."""
    attrs[0] &= ~(termios.ICRNL | termios.INLCR | termios.IXON)
    attrs[3] &= ~(termios.ICANON | termios.ECHO | termios.ISIG | termios.IEXTEN)
    attrs[6][termios.VMIN] = 1
    attrs[6][termios.VTIME] = 0


def terminal_columns(fd: int) -> int:
    try:
        return os.get_terminal_size(fd).columns or DEFAULT_COLUMNS
    except OSError:
        return DEFAULT_COLUMNS


class KeyReader(insults.ServerProtocol):
    """insults' key parser, telling the console when a read's keys are all in."""

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        if self.terminalProtocol is not None:
            self.terminalProtocol.keys_done()


class ConsoleTerminal(insults.TerminalProtocol):
    """The line editor on a terminal, with the same face to the app as `TerminalProtocol`:
    lines entered to ``on_lines``, Ctrl-D on an empty line to ``on_eof``, Ctrl-C to
    ``on_interrupt``; `show` for the flow's screen effects."""

    def __init__(
        self,
        on_lines: Callable[[list[str]], object],
        on_eof: Callable[[], object],
        on_interrupt: Callable[[], object],
        *,
        choices: Callable[[], list[str]] = list,
        stdin_fd: int | None = 0,
        columns: Callable[[], int] = lambda: terminal_columns(1),
        stop_process: Callable[[], object] = lambda: os.kill(os.getpid(), signal.SIGTSTP),
    ) -> None:
        self._on_lines = on_lines
        self._on_eof = on_eof
        self._on_interrupt = on_interrupt
        self._choices = choices
        self._stdin_fd = stdin_fd
        self._columns = columns
        self.terminal = None  # insults' transport, once connected
        self.editor = LineEditor()
        self._prompting = False  # the flow's prompt is the current one
        self._shown: View | None = None  # the input line as on screen
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._typed: list[str] = []  # text read, not yet given to the editor
        self._after_cr = False
        self._mode = TerminalMode(stdin_fd)
        self._stop_process = stop_process
        self._ended = False
        self.closed = False
        self._closing = Closing()

    def stdio_protocol(self) -> KeyReader:
        """The protocol to give `StandardIO`."""
        return KeyReader(lambda: self)

    # -- terminal mode ------------------------------------------------------------------

    def connectionMade(self) -> None:
        self._mode.change(_raw)

    def restore(self) -> None:
        """Give the terminal back as it was (on exit)."""
        self._mode.restore()

    # -- keys ---------------------------------------------------------------------------

    def keystrokeReceived(self, keyID, modifier) -> None:
        if modifier is not None:
            return  # Alt-something: no meaning here
        if keyID in _FUNCTION_KEYS:
            self._key(_FUNCTION_KEYS[keyID])
            return
        if not isinstance(keyID, bytes):
            return
        after_cr, self._after_cr = self._after_cr, keyID == b"\r"
        key = _CONTROL_KEYS.get(keyID)
        if key is not None:
            if not (keyID == b"\n" and after_cr):  # CR LF (a paste) is one Enter
                self._key(key)
        elif keyID >= b" ":
            self._typed.append(self._decoder.decode(keyID))

    def unhandledControlSequence(self, seq: bytes) -> None:
        key = _APPLICATION_KEYS.get(seq)
        if key is not None:
            self._key(key)

    def keys_done(self) -> None:
        """The end of a read: draw the line once for all of its keys."""
        self._insert_typed()
        self._draw()

    def _insert_typed(self) -> None:
        if self._typed:
            text, self._typed = "".join(self._typed), []
            self.editor.feed(text)

    def _key(self, key: Key) -> None:
        self._insert_typed()
        if key is Key.ENTER:
            self._leave_input_line()
        for action in self.editor.feed(key, self._choices() if key is Key.TAB else None):
            match action:
                case Submit(line):
                    self._on_lines([line])
                case Leave():
                    self._ended = True
                    self._on_eof()
                case Interrupt():
                    self._on_interrupt()
                case Suspend():
                    self._suspend()
                case ListChoices(choices):
                    self._erase()
                    self._write(printable("  ".join(choices)) + "\n")

    def _suspend(self) -> None:
        """Ctrl-Z, as the terminal would do it in its own mode: stop until ``fg``.

        The terminal goes back to the shell as it was; once the client runs again, raw
        mode comes back and the line is drawn again.
        """
        if self._stdin_fd is None:
            return  # not a real terminal: no job control to hand over to
        self.restore()
        self._stop_process()  # returns once continued
        self._mode.change(_raw)
        self._shown = None  # the shell wrote meanwhile: the line starts afresh
        self._draw()

    def _leave_input_line(self) -> None:
        """Enter: the whole line stays on screen, and the cursor goes below it."""
        self._draw()
        whole = self.editor.view(self._columns(), whole=True)
        if self._shown is not None and self._shown.text != whole.text:
            self._write("\r" + whole.text + "\x1b[K")
        self._write("\n")
        self._shown = None
        self._prompting = False

    # -- output -------------------------------------------------------------------------

    def show(self, effects: list[Effect]) -> None:
        for effect in effects:
            match effect:
                case Show(text):
                    self._erase()
                    self._write(printable(text) + "\n")
                case Prompt(text, secret):
                    self._erase()
                    self.editor.set_prompt(printable(text), secret=secret)
                    self._prompting = True
                case Newline():
                    # The prompt stays on screen above what comes, unless something was
                    # typed after it: that is drawn again below, not left half there.
                    if not self.editor.empty and not self.editor.secret:
                        self._erase()
                    elif self._shown is not None:
                        self._write("\n")
                        self._shown = None
                    self._prompting = False
                case ErasePrompt():
                    self._erase()
                    self._prompting = False
        self._draw()

    def resized(self) -> None:
        """The terminal changed size (SIGWINCH): draw the line again to fit."""
        self._erase()
        self._draw()

    def _draw(self) -> None:
        if not self._prompting:
            # A password being typed stays unseen, with or without its prompt.
            self.editor.set_prompt("", secret=self.editor.secret)
            if self.editor.empty:
                self._erase()
                return
        view = self.editor.view(self._columns())
        if view != self._shown:
            self._write(paint(self._shown, view))
            self._shown = view

    def _erase(self) -> None:
        if self._shown is not None:
            self._write(ERASE_LINE)
            self._shown = None

    def _write(self, text: str) -> None:
        if self.terminal is not None and not self.closed:
            # Past insults' own write, which adds a CR to each LF: the terminal's output
            # processing does that already.
            self.terminal.transport.write(text.encode("utf-8", "replace"))

    # -- closing ------------------------------------------------------------------------

    def connectionLost(self, reason=None) -> None:
        self.closed = True
        self._closing.fire()
        if not self._ended:
            self._ended = True
            self._on_eof()

    def when_closed(self) -> Deferred[None]:
        """Fires once the stdio transport is closed (output flushed)."""
        return self._closing.wait()
