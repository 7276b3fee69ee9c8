"""The input line: the pure editor (keys in, line out), and its terminal adapter driven
through a `StringTransport`, with what it draws read back by a terminal emulator (pyte)."""

from __future__ import annotations

import os
import subprocess
import sys
import termios

import pyte
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport

from spartan.client.console import ConsoleTerminal, paint
from spartan.client.editor import Interrupt, Key, Leave, LineEditor, ListChoices, Submit, View
from spartan.client.flow import ErasePrompt, Newline, Prompt, Show
from tests.client_support import REPO as ROOT
from tests.client_support import pyte_width


def typed(*keys, prompt: str = "> ", choices=None) -> tuple[LineEditor, list]:
    editor = LineEditor()
    editor.set_prompt(prompt)
    actions = []
    for key in keys:
        actions += editor.feed(key, choices)
    return editor, actions


# -- editing ---------------------------------------------------------------------------------


def test_keys_move_and_edit_where_the_cursor_is():
    editor, _ = typed("helo world", Key.HOME, Key.RIGHT, Key.RIGHT, Key.RIGHT, "l")
    assert (editor.text, editor.cursor) == ("hello world", 4)
    editor.feed(Key.END)
    editor.feed(Key.BACKSPACE)
    assert (editor.text, editor.cursor) == ("hello worl", 10)
    editor.feed(Key.HOME)
    editor.feed(Key.DELETE)
    assert (editor.text, editor.cursor) == ("ello worl", 0)
    editor.feed(Key.LEFT)  # at the start: stays
    editor.feed(Key.BACKSPACE)
    assert (editor.text, editor.cursor) == ("ello worl", 0)


def test_ctrl_w_removes_the_word_before_the_cursor_and_ctrl_u_all_before_it():
    editor, _ = typed("send it now  ", Key.KILL_WORD)
    assert editor.text == "send it "
    editor.feed(Key.LEFT)
    editor.feed(Key.LEFT)
    editor.feed(Key.KILL_TO_START)
    assert (editor.text, editor.cursor) == ("t ", 0)


def test_enter_gives_the_line_and_starts_a_new_one():
    editor, actions = typed("hi there", Key.LEFT, Key.ENTER)
    assert actions == [Submit("hi there")]  # all of it, wherever the cursor was
    assert (editor.text, editor.cursor) == ("", 0)


def test_ctrl_d_leaves_on_an_empty_line_and_deletes_on_a_full_one():
    assert typed(Key.CTRL_D)[1] == [Leave()]
    editor, actions = typed("ab", Key.HOME, Key.CTRL_D)
    assert (editor.text, actions) == ("b", [])
    assert typed("ab", Key.CTRL_C)[1] == [Interrupt()]


def test_control_characters_never_enter_the_line():
    editor, _ = typed("a\x1b[31mb\x07c\x00")
    assert editor.text == "a[31mbc"  # the ESC itself is gone: nothing can drive the terminal


# -- wide and combining characters -------------------------------------------------------------


def test_a_letter_and_its_accent_are_one_step_and_one_column():
    editor, _ = typed("cafe\u0301!", Key.LEFT, Key.LEFT)
    assert editor.cursor == 3  # before "e" + combining acute, not between them
    assert editor.view(80).column == len("> caf")
    editor.feed(Key.DELETE)
    assert editor.text == "caf!"
    editor, _ = typed("e\u0301", Key.BACKSPACE)
    assert editor.text == ""


def test_wide_characters_take_two_columns():
    editor, _ = typed("日本語", Key.LEFT)
    assert editor.view(80) == View("> 日本語", 2 + 4)
    editor.feed(Key.HOME)
    assert editor.view(80).column == 2


# -- a line wider than the terminal ------------------------------------------------------------


@given(st.text(alphabet="ab日\u0301 ", min_size=0, max_size=300), st.integers(0, 300))
def test_a_long_line_scrolls_sideways_and_the_cursor_stays_on_screen(text, lefts):
    editor, _ = typed(text, *[Key.LEFT] * lefts)
    view = editor.view(40)
    assert pyte_width(view.text) <= 39  # the last column stays free: no wrap
    assert 2 <= view.column <= 39
    assert editor.feed(Key.ENTER) == [Submit(text)]


def test_a_long_prompt_on_a_narrow_terminal_keeps_its_end():
    editor, _ = typed("bo", prompt="[Spartan] Enter username whom you want to chat with: ")
    assert editor.view(40) == View("<want to chat with: bo", 22)  # half the width at most
    assert editor.view(200).text == "[Spartan] Enter username whom you want to chat with: bo"


def test_the_whole_line_is_drawn_when_it_is_left():
    editor, _ = typed("x" * 100)
    assert editor.view(40).text == "> " + "x" * 37
    assert editor.view(40, whole=True).text == "> " + "x" * 100


# -- history -----------------------------------------------------------------------------------


def test_up_and_down_go_through_the_lines_sent_and_back_to_the_draft():
    editor, _ = typed("first", Key.ENTER, "second", Key.ENTER, "draft", Key.UP)
    assert editor.text == "second"
    editor.feed(Key.UP)
    assert editor.text == "first"
    editor.feed(Key.UP)  # no older line: stays
    assert editor.text == "first"
    editor.feed(Key.DOWN)
    editor.feed(Key.DOWN)
    assert (editor.text, editor.cursor) == ("draft", 5)
    editor.feed(Key.UP)
    editor.feed(" again")
    assert editor.feed(Key.ENTER) == [Submit("second again")]


def test_a_password_is_neither_shown_nor_remembered():
    editor = LineEditor()
    editor.set_prompt("Password: ", secret=True)
    editor.feed("s3cret")
    assert editor.view(80) == View("Password: ", 10)
    assert editor.feed(Key.ENTER) == [Submit("s3cret")]
    editor.set_prompt("> ")
    editor.feed(Key.UP)
    assert editor.text == ""


# -- completion --------------------------------------------------------------------------------

NAMES = ["bob", "charlie", "chuck", "/switch", "/users"]


def test_tab_completes_a_name_or_a_command():
    assert typed("ch", Key.TAB, "a", Key.TAB, choices=NAMES)[0].text == "charlie "
    assert typed("/sw", Key.TAB, choices=NAMES)[0].text == "/switch "
    editor, _ = typed("hi bo, ok", *[Key.LEFT] * 4, Key.TAB, choices=NAMES)
    assert editor.text == "hi bob, ok"  # in the middle: no space added


def test_tab_extends_to_the_common_start_then_lists_the_choices():
    editor, actions = typed("c", Key.TAB, choices=NAMES)
    assert (editor.text, actions) == ("ch", [])
    assert editor.feed(Key.TAB, NAMES) == []  # nothing more in common: the next Tab lists
    assert editor.feed(Key.TAB, NAMES) == [ListChoices(("charlie", "chuck"))]
    assert typed("zed", Key.TAB, Key.TAB, choices=NAMES)[0].text == "zed"


# -- the terminal adapter ----------------------------------------------------------------------


class Console:
    """A `ConsoleTerminal` on a fake terminal 60 columns wide, read back with pyte."""

    columns = 60

    def __init__(self, **options) -> None:
        self.lines: list[list[str]] = []
        self.eofs = 0
        self.interrupts = 0
        self.term = ConsoleTerminal(
            self.lines.append, self._eof, self._interrupt,
            choices=lambda: ["bob", "charlie"], columns=lambda: self.columns,
            **{"stdin_fd": None, **options},
        )  # fmt: skip
        self.transport = StringTransport()
        self.reader = self.term.stdio_protocol()
        self.reader.makeConnection(self.transport)

    def _eof(self) -> None:
        self.eofs += 1

    def _interrupt(self) -> None:
        self.interrupts += 1

    def keys(self, data: bytes) -> None:
        self.reader.dataReceived(data)

    def screen(self) -> pyte.Screen:
        screen = pyte.Screen(self.columns, 10)
        # The terminal's output processing turns LF into CR LF; pyte's LNM mode does that.
        screen.set_mode(pyte.modes.LNM)
        pyte.ByteStream(screen).feed(self.transport.value())
        return screen

    def rows(self) -> list[str]:
        return [row.rstrip() for row in self.screen().display if row.strip()]


def test_half_typed_line_survives_a_message_cursor_and_all():
    console = Console()
    console.term.show([Prompt("[eve] > ")])
    console.keys(b"half typed lXne\x1b[D\x1b[D\x7fi")  # a typo mended after Left
    assert console.rows() == ["[eve] > half typed line"]
    # A message comes: the flow ends the prompt's line, shows it, asks again.
    console.term.show([Newline(), Show("[charlie] hello"), Prompt("[eve] > ")])
    assert console.rows() == ["[charlie] hello", "[eve] > half typed line"]
    screen = console.screen()
    assert (screen.cursor.y, screen.cursor.x) == (1, len("[eve] > half typed li"))
    console.keys(b"\x1b[F finished\r")
    assert console.lines == [["half typed line finished"]]
    assert console.rows() == ["[charlie] hello", "[eve] > half typed line finished"]


def test_a_password_stays_unseen_when_a_notice_comes_while_it_is_typed():
    console = Console()
    console.term.show([Prompt("Password: ", secret=True)])
    console.keys(b"s3c")
    console.term.show([Newline(), Show("[Spartan] The server says: restart soon")])
    console.keys(b"ret")
    assert "s3c" not in console.transport.value().decode()
    console.keys(b"\r")
    assert console.lines == [["s3cret"]]
    console.keys(b"visible")  # the next line is shown again
    assert console.rows()[-1] == "visible"


def test_an_empty_prompt_stays_above_a_message_as_in_the_spec():
    console = Console()
    console.term.show([Prompt("[alice] > ")])
    console.term.show([Newline(), Show("[bob] Hey"), Prompt("[alice] > ")])
    console.term.show([ErasePrompt(), Show("[bob] again"), Prompt("[alice] > ")])
    assert console.rows() == ["[alice] >", "[bob] Hey", "[bob] again", "[alice] >"]


def test_typing_at_the_end_writes_only_what_was_typed():
    console = Console()
    console.term.show([Prompt("[alice] > ")])
    console.keys(b"hi")
    console.keys(b"\r")
    assert console.transport.value() == b"[alice] > hi\n"
    assert console.lines == [["hi"]]


def test_tab_up_and_keys_reach_the_flow():
    console = Console()
    console.term.show([Prompt("user: ")])
    console.keys(b"ch\t\r")
    assert console.lines == [["charlie "]]
    console.keys(b"\x1b[A\r")  # Up, Enter: the same again
    assert console.lines[-1] == ["charlie "]
    console.keys(b"x\x04")  # Ctrl-D on a full line leaves nothing
    assert console.eofs == 0
    console.keys(b"\x15\x04\x03")  # Ctrl-U, then Ctrl-D on the empty line; Ctrl-C
    assert (console.eofs, console.interrupts) == (1, 1)


def test_ctrl_z_gives_the_terminal_back_while_stopped_and_takes_it_again_after():
    leader, follower = os.openpty()  # a real terminal for the modes
    try:
        modes = []

        def stop_process():  # the shell's view while the client is stopped
            modes.append(termios.tcgetattr(follower)[3] & termios.ICANON)

        console = Console(stdin_fd=follower, stop_process=stop_process)
        assert termios.tcgetattr(follower)[3] & termios.ICANON == 0  # raw while running
        console.term.show([Prompt("> ")])
        console.keys(b"typed")
        console.keys(b"\x1a")
        assert modes == [termios.ICANON]  # the shell got its line mode back
        assert termios.tcgetattr(follower)[3] & termios.ICANON == 0
        assert console.transport.value().endswith(b"> typed")  # drawn again on resuming
        console.term.restore()
        assert termios.tcgetattr(follower)[3] & termios.ICANON
    finally:
        os.close(leader)
        os.close(follower)


def test_utf8_split_between_reads_and_a_pasted_crlf():
    console = Console()
    console.term.show([Prompt("> ")])
    data = "é日\r\n".encode()
    for i in range(len(data)):  # one byte a read
        console.keys(data[i : i + 1])
    assert console.lines == [["é日"]]  # one Enter for CR LF


def test_a_narrower_terminal_gets_the_line_drawn_to_fit():
    console = Console()
    console.term.show([Prompt("> ")])
    console.keys(b"x" * 50)
    console.columns = 30
    console.term.resized()
    assert console.rows()[-1] == "> " + "x" * 27  # the end, with the cursor, in view


def test_paint_moves_the_cursor_only_when_it_is_not_at_the_end():
    assert paint(None, View("> ab", 4)) == "> ab"
    assert paint(View("> ab", 4), View("> abc", 5)) == "c"
    assert paint(View("> abc", 5), View("> abc", 3)) == "\r\x1b[3C"
    assert paint(View("> abc", 3), View("> aXbc", 4)) == "\r> aXbc\x1b[K\r\x1b[4C"


def test_the_paste_benchmark_runs_and_the_line_is_whole():
    """``benchmarks/client_paste.py`` still works (no speed asserted: see its figures)."""
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "client_paste.py"), "--sizes", "5000"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("paste     5000 bytes:")
