"""
The input line of the terminal client, as a pure state machine: keys in, the line to
draw and what the user did out.

Theory of operation
-------------------
* The editor owns one line: a prompt (set by the flow) and what the user typed so far.
  `LineEditor.feed` takes one key (a `Key`, or text to insert) and returns the actions it
  causes: `Submit` a line (Enter), `Leave` (Ctrl-D on an empty line), `Interrupt`
  (Ctrl-C), `Suspend` (Ctrl-Z), `ListChoices` (Tab with several possible completions,
  twice).  It never
  writes anything; the terminal adapter asks `LineEditor.view` for the line to draw after
  each read and draws it, so a message shown meanwhile can be printed above the line and
  the line drawn again as it was, cursor and all.
* Text is kept as grapheme clusters: a base character with the zero-width characters
  that follow it (combining accents, variation selectors, joiners).  The cursor moves,
  and Backspace and Delete remove, one cluster at a time; a cluster's width in terminal
  columns (2 for CJK and most emoji) comes from ``wcwidth``.
* A line wider than the terminal scrolls sideways: `view` shows the part around the
  cursor (the terminal never wraps the line being edited, so it can always be redrawn in
  place).  Nothing limits the length of the line.
* History: the lines entered in this session (not a password), Up and Down through them;
  what was being typed comes back after the newest.
* Completion: Tab completes the word before the cursor from the choices given (user and
  group names, commands); with several, it extends to their common start, and a second
  Tab lists them.
"""

from __future__ import annotations

import enum
import itertools
import os
from dataclasses import dataclass

from wcwidth import wcswidth, wcwidth

MAX_HISTORY = 500  # lines remembered for Up and Down


class Key(enum.Enum):
    ENTER = "enter"
    LEFT = "left"
    RIGHT = "right"
    HOME = "home"  # also Ctrl-A
    END = "end"  # also Ctrl-E
    BACKSPACE = "backspace"
    DELETE = "delete"
    UP = "up"
    DOWN = "down"
    TAB = "tab"
    KILL_TO_START = "ctrl-u"
    KILL_WORD = "ctrl-w"
    CTRL_C = "ctrl-c"
    CTRL_D = "ctrl-d"
    CTRL_Z = "ctrl-z"


# -- actions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Submit:
    """Enter: the line typed (the prompt's answer)."""

    line: str


@dataclass(frozen=True, slots=True)
class Leave:
    """Ctrl-D on an empty line: the end of input."""


@dataclass(frozen=True, slots=True)
class Interrupt:
    """Ctrl-C."""


@dataclass(frozen=True, slots=True)
class Suspend:
    """Ctrl-Z: stop the client for now (the shell's ``fg`` resumes it)."""


@dataclass(frozen=True, slots=True)
class ListChoices:
    """Tab twice with several completions: show them."""

    choices: tuple[str, ...]


Action = Submit | Leave | Interrupt | Suspend | ListChoices


@dataclass(frozen=True, slots=True)
class View:
    """The input line as drawn: ``text`` (prompt included) and the cursor's column."""

    text: str
    column: int


def width(text: str) -> int:
    """Columns ``text`` takes on a terminal (characters it cannot show count as 0)."""
    return max(wcswidth(text), 0) if text.isprintable() else sum(_char_width(c) for c in text)


def _char_width(char: str) -> int:
    return max(wcwidth(char), 0)


def _is_zero_width(char: str) -> bool:
    return wcwidth(char) == 0 and char not in "\t"


def fit_prompt(prompt: str, columns: int) -> str:
    """``prompt``, or its end after a ``<`` if it would take over half the terminal: the
    line being edited must never wrap, or it could not be drawn again in place."""
    room = max(columns // 2, 2)
    if width(prompt) <= room:
        return prompt
    kept: list[str] = []
    used = 1  # the "<"
    for char in reversed(prompt):  # bounded by room
        used += _char_width(char)
        if used > room:
            break
        kept.append(char)
    return "<" + "".join(reversed(kept))


def common_prefix(words: list[str]) -> str:
    return os.path.commonprefix(words) if words else ""


class LineEditor:
    def __init__(self) -> None:
        self.prompt = ""
        self.secret = False  # a password: not shown, not remembered
        self._clusters: list[str] = []
        self._cursor = 0  # in clusters
        self._scroll = 0  # the first cluster shown, for a line wider than the terminal
        self._history: list[str] = []
        self._recalled: int | None = None  # the history line shown, if any
        self._draft: list[str] = []  # what was typed before Up
        self._tabbed = False  # the last key was a Tab that could not decide

    # -- state ------------------------------------------------------------------------------

    @property
    def text(self) -> str:
        return "".join(self._clusters)

    @property
    def cursor(self) -> int:
        """The cursor's position, in characters of `text`."""
        return sum(len(c) for c in self._clusters[: self._cursor])

    def set_prompt(self, prompt: str, *, secret: bool = False) -> None:
        self.prompt = prompt
        self.secret = secret

    # -- keys -------------------------------------------------------------------------------

    def feed(self, key: Key | str, choices: list[str] | None = None) -> list[Action]:
        """One key, or text to insert; ``choices``: what Tab may complete to."""
        tabbed, self._tabbed = self._tabbed, False
        if isinstance(key, str):
            self._insert(key)
            return []
        match key:
            case Key.ENTER:
                return [self._submit()]
            case Key.LEFT:
                self._cursor = max(self._cursor - 1, 0)
            case Key.RIGHT:
                self._cursor = min(self._cursor + 1, len(self._clusters))
            case Key.HOME:
                self._cursor = 0
            case Key.END:
                self._cursor = len(self._clusters)
            case Key.BACKSPACE:
                if self._cursor > 0:
                    self._cursor -= 1
                    del self._clusters[self._cursor]
            case Key.DELETE:
                del self._clusters[self._cursor : self._cursor + 1]
            case Key.KILL_TO_START:
                del self._clusters[: self._cursor]
                self._cursor = 0
            case Key.KILL_WORD:
                start = self._word_start(self._cursor, spaces_first=True)
                del self._clusters[start : self._cursor]
                self._cursor = start
            case Key.UP:
                self._recall(-1)
            case Key.DOWN:
                self._recall(+1)
            case Key.TAB:
                return self._complete(choices or [], list_them=tabbed)
            case Key.CTRL_C:
                return [Interrupt()]
            case Key.CTRL_Z:
                return [Suspend()]
            case Key.CTRL_D:
                if not self._clusters:
                    return [Leave()]
                del self._clusters[self._cursor : self._cursor + 1]
        return []

    def _insert(self, text: str) -> None:
        for char in text:  # bounded by the text
            if not char.isprintable() and char != "\u200d":
                continue  # control characters never enter the line
            if _is_zero_width(char) and self._cursor > 0:
                self._clusters[self._cursor - 1] += char  # joins the character before
            else:
                self._clusters.insert(self._cursor, char)
                self._cursor += 1

    def _submit(self) -> Submit:
        line = self.text
        if line.strip() and not self.secret:
            if not self._history or self._history[-1] != line:
                self._history.append(line)
                del self._history[:-MAX_HISTORY]
        self._clusters = []
        self._cursor = 0
        self._scroll = 0
        self._recalled = None
        self._draft = []
        self.secret = False  # a password ends with its line
        return Submit(line)

    def _recall(self, step: int) -> None:
        if self.secret:
            return
        current = len(self._history) if self._recalled is None else self._recalled
        wanted = current + step
        if wanted < 0 or wanted > len(self._history):
            return
        if self._recalled is None:
            self._draft = self._clusters
        if wanted == len(self._history):
            self._recalled = None
            self._clusters = self._draft
        else:
            self._recalled = wanted
            self._clusters = []
            self._cursor = 0
            self._insert(self._history[wanted])
        self._cursor = len(self._clusters)

    def _word_start(self, end: int, *, spaces_first: bool = False) -> int:
        start = end
        if spaces_first:
            while start > 0 and self._clusters[start - 1] == " ":  # bounded by end
                start -= 1
        while start > 0 and self._clusters[start - 1] != " ":  # bounded by end
            start -= 1
        return start

    def _complete(self, choices: list[str], *, list_them: bool) -> list[Action]:
        if self.secret:
            return []
        start = self._word_start(self._cursor)
        word = "".join(self._clusters[start : self._cursor])
        matches = [c for c in choices if c.startswith(word) and c != word]
        if word in choices and not matches:
            return []
        if not matches:
            return []
        if len(matches) == 1:
            completion = matches[0][len(word) :]
            if self._cursor == len(self._clusters):
                completion += " "
            self._insert(completion)
            return []
        extension = common_prefix(matches)[len(word) :]
        if extension:
            self._insert(extension)
            return []
        if list_them:
            return [ListChoices(tuple(matches))]
        self._tabbed = True
        return []

    # -- drawing ----------------------------------------------------------------------------

    def view(self, columns: int, *, whole: bool = False) -> View:
        """The line to draw on a terminal ``columns`` wide, and where the cursor goes.

        ``whole``: all of it, however wide (the terminal wraps it), for a line being left.
        """
        if whole:
            if self.secret:
                return View(self.prompt, width(self.prompt))
            before = "".join(self._clusters[: self._cursor])
            return View(self.prompt + self.text, width(self.prompt) + width(before))
        prompt = fit_prompt(self.prompt, columns)
        if self.secret:
            return View(prompt, width(prompt))
        room = max(columns - width(prompt) - 1, 1)  # the last column stays free
        clusters = self._clusters
        # The first cluster that may be shown with the cursor still on screen: bounded by
        # the room, however long the line.
        lowest, used = self._cursor, 0
        while lowest > 0 and used + width(clusters[lowest - 1]) <= room:
            lowest -= 1
            used += width(clusters[lowest])
        if lowest == 0 and self._fits(room):
            self._scroll = 0
        self._scroll = min(max(self._scroll, lowest), self._cursor)
        shown, used = [], 0
        for cluster in itertools.islice(clusters, self._scroll, None):  # bounded by room
            used += width(cluster)
            if used > room:
                break
            shown.append(cluster)
        column = width(prompt) + width("".join(clusters[self._scroll : self._cursor]))
        return View(prompt + "".join(shown), column)

    def _fits(self, room: int) -> bool:
        """The whole line takes at most ``room`` columns (looks no further than that)."""
        used = 0
        for cluster in self._clusters:  # bounded: stops past room
            used += width(cluster)
            if used > room:
                return False
        return True

    @property
    def empty(self) -> bool:
        return not self._clusters
