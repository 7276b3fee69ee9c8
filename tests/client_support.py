"""Helpers for the client tests: the spec's sessions, a screen model, a flow harness."""

from __future__ import annotations

import io
import itertools
import os
import re
import sys
import time
from collections.abc import Callable

import pexpect
import pyte

from spartan.native import wire
from spartan.client.flow import ClientFlow, Connect, Exit, Reconnect, Send, StartTimer
from spartan.client.terminal import render

DEMO_USERS = ["alice", "bob", "charlie", "eve", "foo", "bar", "baz", "qux"]
GROUP1 = ["alice", "bob", "charlie", "eve"]

# The client sessions of the spec (seed), verbatim; "3000" is replaced by the real port.
SPEC_ONE_TO_ONE_ALICE = """\
[Spartan] Connected to Spartan Server at port 3000.
[Spartan] User list: ['bob', 'charlie', 'eve', 'foo', 'bar', 'baz', 'qux']
You are member of group1: ['alice', 'bob', 'charlie', 'eve']
What do you want to do?
[1] One to one chatting OR
[2] Group chatting
Your selection:: 1
[Spartan] Enter username whom you want to chat with: bob
[alice] > hi
[alice] > 
[bob] Hey
[alice] > How r u?
[alice] > 
[bob] I am fine. And, how r u doing?
[alice] > Good. Just busy with the classes
"""

SPEC_ONE_TO_ONE_BOB = """\
[Spartan] Connected to Spartan Server at port 3000.
[Spartan] User list: ['alice', 'charlie', 'eve', 'foo', 'bar', 'baz', 'qux']
You are member of group1: ['alice', 'bob', 'charlie', 'eve']
What do you want to do?
[1] One to one chatting OR
[2] Group chatting
Your selection:: 1
[Spartan] Enter username whom you want to chat with: alice

[bob] > 
[alice] hi
[bob] > Hey
[bob] > 
[alice] How r u?
[bob] > I am fine. And, how r u doing?
[bob] > 
[alice] Good. Just busy with the classes
"""

SPEC_GROUP_ALICE = """\
[Spartan] Connected to Spartan Server at port 3000.
[Spartan] User list: ['bob', 'charlie', 'eve', 'foo', 'bar', 'baz', 'qux']
You are member of group1: ['alice', 'bob', 'charlie', 'eve']
What do you want to do?
[1] One to one chatting OR
[2] Group chatting
Your selection:: 2
[alice] > hi
[alice] > 
[bob] hello everyone
[eve] hey, how r u guys doing?
"""

SPEC_GROUP_BOB = """\
[Spartan] Connected to Spartan Server at port 3000.
[Spartan] User list: ['alice', 'charlie', 'eve', 'foo', 'bar', 'baz', 'qux']
You are member of group1: ['alice', 'bob', 'charlie', 'eve']
What do you want to do?
[1] One to one chatting OR
[2] Group chatting
Your selection:: 2
[alice] hi
[bob] > hello everyone
[bob] > 
[eve] hey, how r u guys doing?
"""

SPEC_GROUP_EVE = """\
[Spartan] Connected to Spartan Server at port 3000.
[Spartan] User list: ['alice', 'bob', 'charlie', 'foo', 'bar', 'baz', 'qux']
You are member of group1: ['alice', 'bob', 'charlie', 'eve']
What do you want to do?
[1] One to one chatting OR
[2] Group chatting
Your selection:: 2
[alice] hi
[bob] hello everyone
[eve] > 
[eve] > hey, how r u guys doing?
[eve] > 
"""


def spec_lines(session: str, port: int = 3000) -> list[str]:
    """The lines of a spec session, with the real port; a last line may be a bare prompt."""
    text = session.replace("at port 3000.", f"at port {port}.")
    lines = text.split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def screen_lines(raw: str) -> list[str]:
    """What a terminal shows for ``raw`` output: CR, LF and erase-line (ESC [ K) applied.

    Other escape sequences stay as they are, so a test sees any that slip through.  The
    last item is the line the cursor is on (often a prompt, or empty).
    """
    lines: list[list[str]] = [[]]
    col = 0
    i = 0
    while i < len(raw):  # bounded: i grows every turn
        if raw.startswith("\x1b[K", i):
            del lines[-1][col:]
            i += 3
            continue
        char = raw[i]
        if char == "\r":
            col = 0
        elif char == "\n":
            lines.append([])
            col = 0
        else:
            line = lines[-1]
            if col < len(line):
                line[col] = char
            else:
                line.append(char)
            col += 1
        i += 1
    return ["".join(line) for line in lines]


def cursor_row(screen: pyte.Screen) -> str:
    """The line the cursor is on, as shown (no trailing blanks)."""
    return screen.display[screen.cursor.y].rstrip()


def cursor_after(screen: pyte.Screen, text: str) -> bool:
    """The cursor's line reads ``text`` and the cursor is right after it."""
    return cursor_row(screen) == text.rstrip() and screen.cursor.x == pyte_width(text)


def pyte_width(text: str) -> int:
    screen = pyte.Screen(4 * len(text) + 1, 1)
    pyte.Stream(screen).feed(text)
    return screen.cursor.x


def strip_trailing_prompt(lines: list[str], prompt: str) -> list[str]:
    return lines[:-1] if lines and lines[-1] in ("", prompt) else lines


MSG_TIME = "2026-11-24T11:36:17.123Z"


def msg(message_id: int, conversation: str, sender: str, text: str, time: str = MSG_TIME) -> str:
    return f"* MSG {message_id} {time} {conversation} {sender} {text}"


def users_reply(online: tuple[str, ...] = ()) -> str:
    return "OK USERS " + " ".join(
        f"{u}={'online' if u in online else 'offline'}" for u in DEMO_USERS
    )


GROUPS_REPLY = "OK GROUPS group1=" + ",".join(GROUP1)


class FlowHarness:
    """Drives a `ClientFlow` as a terminal and a server would, recording what it does.

    The screen is rendered exactly as the terminal adapter renders it (tty mode), and a
    typed line is echoed first, as a terminal in line mode does (unless ``echo``: then the
    flow shows the line itself, as with piped input).
    """

    def __init__(self, user: str = "alice", *, echo: bool = False, **options) -> None:
        ids = itertools.count(1)
        options.setdefault("new_id", lambda: f"c{next(ids)}")
        self.flow = ClientFlow(user, host="localhost", port=3000, echo=echo, **options)
        self.echo = echo
        self.raw = ""
        self.sent: list[wire.Command] = []
        self.exits: list[int] = []
        self.reconnects = 0
        self.dialled: list[tuple[str, object]] = []  # ("now" | "later", address)
        self.timers: list[tuple[str, float]] = []

    def apply(self, effects):
        self.raw += render(effects, tty=True).decode()
        for effect in effects:
            match effect:
                case Send(command):
                    self.sent.append(command)
                case Exit(status):
                    self.exits.append(status)
                case Connect(address):
                    self.dialled.append(("now", address))
                case Reconnect(address):
                    self.reconnects += 1
                    self.dialled.append(("later", address))
                case StartTimer(name, seconds):
                    self.timers.append((name, seconds))
        return effects

    # -- events ---------------------------------------------------------------------------

    def type(self, *lines: str) -> None:
        """The user types lines (each followed by Enter); a terminal echoes them at once."""
        for line in lines:
            if not self.echo:
                self.raw += line + "\n"
            self.apply(self.flow.on_input(line))

    def type_ahead(self, *lines: str) -> None:
        """Lines typed in one go: all echoed before the client reacts to the first."""
        if not self.echo:
            self.raw += "".join(line + "\n" for line in lines)
        self.apply(self.flow.on_input(*lines))

    def server(self, *lines: str) -> None:
        for line in lines:
            self.apply(self.flow.on_server_line(wire.parse_server_line(line.encode())))

    def take_sent(self) -> list[str]:
        out = [wire.format_command(c).decode().rstrip("\r\n") for c in self.sent]
        self.sent.clear()
        return out

    def screen(self) -> list[str]:
        return screen_lines(self.raw)

    def login(
        self, online: tuple[str, ...] = (), groups: str = GROUPS_REPLY, unread: str = "OK UNREAD"
    ) -> None:
        """Connect and answer LOGIN, USERS, GROUPS and UNREAD like the demo server."""
        self.apply(self.flow.on_connected())
        assert self.take_sent() == [f"LOGIN {self.flow.user}"]
        self.server(f"OK LOGIN {self.flow.user}")
        assert self.take_sent() == ["USERS", "GROUPS", "UNREAD"]
        self.server(users_reply(online), groups, unread)


def sent_ids(sent: list[str]) -> list[str]:
    return [m.group(1) for line in sent if (m := re.match(r"SEND id=(\S+) ", line))]


class AutoServer:
    """Answers what a `FlowHarness` sent, the way the server does (one reply per command)."""

    def __init__(self, harness: FlowHarness) -> None:
        self.h = harness
        self.next_id = 100
        self.unseen: dict[str, list[str]] = {}  # conversation -> MSG lines for the next OPEN
        self.unread = "OK UNREAD"  # the answer to UNREAD
        self.topics: dict[str, str] = {}  # group -> "<setter> <time> <text>"; none set: none

    def answer(self) -> list[str]:
        """Answer every command sent so far; return them."""
        answered = []
        for _ in range(100):  # replies may make the flow send more (ACK after OPEN)
            sent = self.h.take_sent()
            if not sent:
                return answered
            answered += sent
            for line in sent:
                self.h.server(*self.reply(line))
        raise AssertionError("the flow keeps sending")

    def reply(self, line: str) -> list[str]:
        verb, _, rest = line.partition(" ")
        if verb == "LOGIN":
            return [f"OK LOGIN {rest.split(' ')[0]}"]
        if verb == "USERS":
            return [users_reply()]
        if verb == "GROUPS":
            return [GROUPS_REPLY]
        if verb == "UNREAD":
            return [self.unread]
        if verb == "OPEN":
            messages = self.unseen.pop(rest, [])
            return messages + [f"OK OPEN {rest} {len(messages)}"]
        if verb == "SEND":
            self.next_id += 1
            return [f"OK SENT {self.next_id} {MSG_TIME}"]
        if verb == "TOPIC":
            group, _, text = rest.partition(" ")
            if text:
                self.topics[group] = f"{self.h.flow.user} {MSG_TIME} {text}"
            return [f"OK TOPIC {group} {self.topics.get(group, '')}".rstrip()]
        if verb == "ACK":
            return [f"OK ACK {rest}"]
        if verb == "QUIT":
            return ["OK BYE"]
        if verb in ("PING", "PONG"):
            return [f"OK PONG {rest}".rstrip()]
        raise AssertionError(f"unexpected command {line!r}")


# -- end-to-end: the real client in a pseudo-terminal ------------------------------------------

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
E2E_TIMEOUT = 10  # seconds, for every single wait on a client
ROWS, COLUMNS = 50, 200  # the pseudo-terminal's size


def client_env(**extra: str) -> dict[str, str]:
    """The environment of a client: PYTHONUNBUFFERED unset, so prompts must flush themselves."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED", "SPARTAN_PASSWORD")}
    env["TERM"] = "xterm"
    env.update(extra)
    return env


def client_command(user: str, port: int, host: str = "127.0.0.1", *extra: str) -> list[str]:
    """The client's command line; ``extra``: more options (``--tls``, more ``--host``)."""
    return [
        sys.executable, "-m", "spartan.client", user, "--host", host, "--port", str(port), *extra
    ]  # fmt: skip


class ClientProcess:
    """``python -m spartan.client`` in a pty, driven like a person at a terminal."""

    def __init__(self, user: str, port: int, host: str = "127.0.0.1", *extra: str) -> None:
        command = client_command(user, port, host, *extra)
        self.output = io.StringIO()
        self.child = pexpect.spawn(
            command[0], command[1:], cwd=REPO, env=client_env(), encoding="utf-8",
            timeout=E2E_TIMEOUT, dimensions=(ROWS, COLUMNS),
        )  # fmt: skip
        self.child.logfile_read = self.output

    def expect(self, text: str) -> None:
        """Wait for ``text`` in the raw output (line ends there are CR LF)."""
        self.child.expect_exact(text)

    def send(self, text: str) -> None:
        self.child.send(text)

    def line(self, text: str, then: str) -> None:
        """Type ``text`` and Enter, then wait for ``then``."""
        self.child.send(text + "\n")
        self.expect(then)

    def screen(self) -> list[str]:
        return screen_lines(self.output.getvalue())

    def visible(self) -> pyte.Screen:
        """The terminal as a person sees it now, by a terminal emulator (pyte)."""
        screen = pyte.Screen(COLUMNS, ROWS)
        pyte.Stream(screen).feed(self.output.getvalue())
        return screen

    def wait_screen(self, check: Callable[[pyte.Screen], bool]) -> pyte.Screen:
        """Read output until ``check(visible screen)`` holds (at most `E2E_TIMEOUT`)."""
        deadline = time.monotonic() + E2E_TIMEOUT
        while True:  # bounded by the deadline
            screen = self.visible()
            if check(screen):
                return screen
            if time.monotonic() > deadline:
                rows = "\n".join(row.rstrip() for row in screen.display if row.strip())
                raise AssertionError(f"the screen never got there; it shows:\n{rows}")
            try:
                self.child.read_nonblocking(65536, timeout=0.1)  # logged into self.output
            except pexpect.TIMEOUT:
                pass

    def paste(self, text: str) -> None:
        """Write ``text`` to the terminal all at once, as a paste does."""
        data = text.encode()
        while data:  # bounded: each write takes at least one byte
            data = data[os.write(self.child.child_fd, data[:4096]) :]

    def wait_exit(self) -> int:
        self.child.expect(pexpect.EOF)
        self.child.close()
        return self.child.exitstatus

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)
        self.child.close(force=True)

    def at_menu(self) -> ClientProcess:
        self.expect("Your selection:: ")
        return self
