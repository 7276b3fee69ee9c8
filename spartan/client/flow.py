"""
The terminal client's menu and chat flow, as a pure state machine.

Theory of operation
-------------------
* Everything that happens to the client is one method call: ``on_start()``,
  ``on_connected()``, ``on_connect_failed(why)``, ``on_server_line(parsed)``,
  ``on_disconnected(why)``, ``on_input(*lines)``, ``on_eof()``, ``on_interrupt()``,
  ``on_timer(name)``.  Each returns the list of effects the adapters must carry out, in
  order: `Show` a line, `Prompt`, `Newline`, `ErasePrompt`, `Send` a command, `Connect`,
  `Reconnect`, `StartTimer`, `Exit`.
  Nothing here does I/O, reads a clock or draws a random number (client ids come from an
  injected function), and nothing here raises on what the server or the user sends.
* Input lines are queued and taken one at a time, only while the state asks for input: a
  line typed (or piped) before the menu is shown, or while a conversation opens, waits its
  turn, and end of input waits behind the lines before it.
* Each command sent is remembered in a FIFO; the server answers every command exactly once
  and in order, so a reply belongs to the oldest pending command.  ``*`` lines are events.
* The screen is a line printer with one open line at most: the prompt, after which the user
  types.  `Prompt` leaves the cursor there; a line the user enters ends it (the terminal
  echoes it; with piped input the flow echoes it).  Output that is not the answer to what
  the user typed (a message, a notice) first ends the prompt's line with `Newline`, or, if
  that prompt was only redrawn after earlier such output and nothing was typed since,
  replaces it (`ErasePrompt`); then it redraws the prompt.  That is how the spec's sessions
  look: ``[alice] >`` stays on screen once after a sent line, never twice in a row.
  (On a terminal the line editor, `spartan.client.console`, keeps what was typed after
  the prompt and draws it again after such output; the flow need not know.)
* What waits: at login, and after a reconnect, ``UNREAD`` says which conversations hold
  unseen messages; the menu says so (``[Spartan] Unread: bob (2), group1 (5)``), and
  so does the line after a reconnect.  A server without ``UNREAD`` refuses it: then
  nothing is said.
* A message longer than one ``SEND`` line may hold is sent as several, cut so that they
  join to exactly what was typed; a message that starts with ``/me `` is an action,
  shown ``* bob waves``; one that starts with ``/notice `` is a notice, shown
  ``-bob- text`` as IRC clients do.  A notice never asks for an answer, so one in another
  conversation is not announced nor counted: it waits there, shown when that opens.
* Topics: entering a group's chat asks ``TOPIC`` before ``OPEN``, so a topic that is set
  shows above the conversation.  A ``* TOPIC`` push is shown only in that group's chat
  (anywhere else it would only interrupt); ``/topic`` asks again, ``/topic text`` sets it.
* Delivery: a message of the conversation on screen is shown, then acknowledged (``ACK``
  is cumulative; one is in flight per conversation at a time, later ones merge into the
  next); a message of any other conversation gets a notice line (once per conversation)
  and stays unacknowledged, so the server hands it over again with ``OPEN``.
  A message is shown once per (conversation, id, time): a live push that is also in an
  ``OPEN`` reply, or that comes again after a reconnect, is skipped.  Ids are only ever
  acknowledged as received on the current connection, so a restarted server that reuses
  ids never gets an acknowledgement for messages not shown.
* Sending: each line gets a client id and stays "unconfirmed" until ``OK SENT``.  After a
  reconnect the flow logs in again, re-opens the conversation and sends the unconfirmed
  lines again with the same ids, which the server stores once.
* Servers: which address to dial is `spartan.client.hosts.HostRotation`'s business.  At
  start each address is tried once, in order (`Connect`: at once); after a loss the next
  ones are tried round and round (`Reconnect`: after the adapter's backoff delay).  A
  failure the adapter marks ``fatal`` (a certificate that does not verify) is never
  retried: the client says so and exits.
"""

from __future__ import annotations

import enum
import itertools
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from spartan.client.hosts import Address, HostRotation
from spartan.client.text import clean_input, split_message
from spartan.core.names import ACTION_PREFIX, NOTICE_PREFIX
from spartan.native import wire

# -- effects -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Show:
    """Show one line (the adapter adds the line end and makes the text safe)."""

    text: str


@dataclass(frozen=True, slots=True)
class Prompt:
    """Show a prompt and leave the cursor after it.  ``secret``: the next line is not echoed."""

    text: str
    secret: bool = False


@dataclass(frozen=True, slots=True)
class Newline:
    """End the line the cursor is on (after a prompt)."""


@dataclass(frozen=True, slots=True)
class ErasePrompt:
    """Remove the prompt the cursor is after (on a terminal; elsewhere end its line)."""


@dataclass(frozen=True, slots=True)
class Send:
    command: wire.Command


@dataclass(frozen=True, slots=True)
class Connect:
    """Connect to the server at ``address`` now."""

    address: Address


@dataclass(frozen=True, slots=True)
class Reconnect:
    """Connect to the server again (at ``address``), after the adapter's backoff delay."""

    address: Address | None = None


@dataclass(frozen=True, slots=True)
class StartTimer:
    """Call ``on_timer(name)`` after ``seconds``."""

    name: str
    seconds: float


@dataclass(frozen=True, slots=True)
class Exit:
    status: int


Effect = Show | Prompt | Newline | ErasePrompt | Send | Connect | Reconnect | StartTimer | Exit

# -- wording ------------------------------------------------------------------------------

SPARTAN = "[Spartan]"
MENU_LINES = ("What do you want to do?", "[1] One to one chatting OR", "[2] Group chatting")
MENU_PROMPT = "Your selection:: "
USER_PROMPT = f"{SPARTAN} Enter username whom you want to chat with: "
GROUP_PROMPT = f"{SPARTAN} Enter the group you want to chat in: "
HELP_LINES = (
    f"{SPARTAN} Commands:",
    "  /switch   back to the menu, to open another conversation",
    "  /users    who is online",
    "  /help     this list",
    "  /me text  an action: shown as * {user} text",
    "  /topic    the group's topic; /topic text sets it",
    "  /quit     leave (Ctrl-D and Ctrl-C leave too)",
    "  //text    send a line that starts with /",
)

QUIT_TIMEOUT = 3.0  # seconds to wait for the server's OK BYE before leaving anyway
MAX_RECONNECT_ATTEMPTS = 100  # with the backoff capped at 30 s: about 50 minutes
MAX_LINE = 4096  # bytes: the server's --max-line, for a whole command line
MAX_CLIENT_ID = 64  # characters, the protocol's limit
COMMANDS = ("/switch", "/users", "/help", "/quit")
TOPIC_COMMAND = "/topic"  # in a group's chat only
REMEMBERED = 10_000  # message keys kept to skip duplicates


class State(enum.Enum):
    CONNECTING = "connecting"  # no login yet (first connection)
    LOGGING_IN = "logging in"
    PASSWORD = "password"  # waiting for the password line
    LOADING = "loading"  # USERS and GROUPS sent, menu not shown yet
    MENU = "menu"
    ASK_USER = "ask user"
    ASK_GROUP = "ask group"
    CHAT = "chat"
    QUITTING = "quitting"  # QUIT sent, waiting for OK BYE
    DONE = "done"


_EOF = object()  # marks end of input in the input queue


def _default_ids() -> Callable[[], str]:
    prefix = uuid.uuid4().hex[:12]
    counter = itertools.count(1)
    return lambda: f"{prefix}-{next(counter)}"


def _is_text(line: str) -> bool:
    """A chat line that starts with / but is a message: //text, or an action (/me waves)."""
    return line.startswith("//") or line.startswith(ACTION_PREFIX)


def _display(conversation: str) -> str:
    return conversation[1:] if conversation.startswith(wire.GROUP_PREFIX) else conversation


def _topic_line(topic: wire.TopicLine) -> str:
    return f"{SPARTAN} Topic of {_display(topic.group)}: {topic.text} (set by {topic.setter})"


class ClientFlow:
    """The state of one terminal client, from connection to exit."""

    def __init__(
        self,
        user: str,
        *,
        host: str = "localhost",
        port: int = 3000,
        hosts: list[Address] | None = None,
        password: str | None = None,
        echo: bool = False,
        can_ask_password: bool = True,
        new_id: Callable[[], str] | None = None,
    ) -> None:
        """
        ``echo``: input is not echoed by a terminal (piped stdin), so the flow shows each
        line it takes after its prompt.  ``can_ask_password``: a password may be read from
        the user (stdin is a terminal); otherwise only ``password`` is tried.  ``hosts``:
        the servers to try, in order (default: ``host`` and ``port``).
        """
        self.user = user
        self._hosts = HostRotation(hosts or [Address(host, port)])
        self.state = State.CONNECTING
        self._password = password
        self._echo = echo
        self._can_ask_password = can_ask_password
        self._new_id = new_id or _default_ids()

        # connection
        self._connected = False
        self._logged_in = False
        self._ever_logged_in = False
        self._attempts = 0
        self._pending: deque[tuple[str, object]] = deque()  # commands awaiting their reply

        # directory
        self._users: list[tuple[str, bool]] = []
        self._groups: dict[str, list[str]] = {}
        self._loaded: set[str] = set()

        # conversation on screen
        self._conversation: str | None = None
        self._opening = False  # OPEN sent, its reply not yet in
        self._prompted = False  # the conversation's first prompt was shown
        self._batch: list[wire.Message] = []  # messages that came while opening
        self._busy = False  # waiting for the reply to a user's command (/users)

        # delivery
        self._unconfirmed: dict[str, tuple[str, str]] = {}  # client id -> (target, text)
        self._shown: set[tuple[str, int, float]] = set()
        self._shown_order: deque[tuple[str, int, float]] = deque()
        self._unread: Counter[str] = Counter()
        self._notified: set[str] = set()
        # acknowledgements, on this connection only: one in flight per conversation
        self._ack_wanted: dict[str, int] = {}
        self._ack_sent: dict[str, int] = {}
        self._ack_in_flight: set[str] = set()

        # input and screen
        self._input: deque[object] = deque()
        self._prompt: str | None = None  # the prompt the cursor is after, if any
        self._redrawn = False  # that prompt was redrawn after an event
        self._before_password: State | None = None  # the state a password question interrupted
        self._leaving = False  # the user asked to leave
        self._out: list[Effect] = []

    @property
    def host(self) -> str:
        """The server being dialled, or connected to."""
        return self._hosts.current.host

    @property
    def port(self) -> int:
        return self._hosts.current.port

    # -- inputs ---------------------------------------------------------------------------

    def on_start(self) -> list[Effect]:
        """The client starts: dial the first server."""
        if self.state is not State.DONE:
            self._out.append(Connect(self._hosts.current))
        return self._flush()

    def on_connected(self) -> list[Effect]:
        self._connected = True
        self._new_connection()
        if self.state is State.DONE:
            return self._flush()
        if self.state in (State.CONNECTING, State.PASSWORD):
            self.state, self._before_password = self._before_password or State.LOGGING_IN, None
        self._send(wire.Login(self.user, self._password), "login")
        return self._flush()

    def on_connect_failed(self, why: str, *, fatal: bool = False) -> list[Effect]:
        """An attempt failed; ``fatal``: trying again cannot help (a bad certificate)."""
        if self.state is State.DONE:
            return self._flush()
        if fatal:
            self._refused(why)
        elif not self._ever_logged_in:
            self._next_at_start(f"Could not connect to Spartan Server at {self._where()}: {why}")
        elif self.state is State.QUITTING:
            self._finish()
        else:
            self._hosts.failed()
            self._reconnect(why)
        return self._flush()

    def on_disconnected(self, why: str, *, fatal: bool = False) -> list[Effect]:
        self._connected = False
        self._new_connection()
        self._batch = []
        if self.state is State.DONE:
            return self._flush()
        if self.state is State.QUITTING:
            self._finish()
        elif fatal:
            self._refused(why)
        elif not self._ever_logged_in:
            where = self._where()
            self._next_at_start(f"Lost the connection to Spartan Server at {where}: {why}")
        else:
            self._busy = False
            self._event(f"{SPARTAN} Lost the connection to Spartan Server ({why}). Reconnecting...")
            self._hosts.lost()
            self._reconnect(why)
            self._pump()
        return self._flush()

    def _next_at_start(self, sentence: str) -> None:
        """Not logged in yet: try the next server at once, or say why and exit."""
        following = self._hosts.failed()
        if following is None:
            self._show(f"{SPARTAN} {sentence}")
            self._exit(1)
        else:
            self._show(f"{SPARTAN} {sentence}. Trying {following}...")
            self._out.append(Connect(following))

    def _refused(self, why: str) -> None:
        """A failure no retry can mend: say so, and leave."""
        self._show(f"{SPARTAN} Could not connect to Spartan Server at {self._where()}: {why}")
        self._finish(1)

    def _new_connection(self) -> None:
        """Forget what belonged to the last connection: its replies will never come, and
        its message ids mean nothing to a restarted server."""
        self._logged_in = False
        self._pending.clear()
        self._ack_wanted.clear()
        self._ack_sent.clear()
        self._ack_in_flight.clear()

    def _where(self) -> str:
        return str(self._hosts.current)

    def _reconnect(self, why: str) -> None:
        self._attempts += 1  # back to 0 once logged in again
        if self._attempts > MAX_RECONNECT_ATTEMPTS:
            self._event(f"{SPARTAN} Giving up: could not reconnect to Spartan Server: {why}")
            self._finish(1)
        else:
            self._out.append(Reconnect(self._hosts.current))

    def on_server_line(self, line: wire.ServerLine | wire.WireError) -> list[Effect]:
        if self.state is State.DONE:
            return self._flush()
        match line:
            case wire.Message(kind="MSG"):
                self._on_message(line)
            case wire.Push(kind="PING", rest=token):
                self._send(wire.Pong(token or None), "pong")
            case wire.Push(kind="NOTICE", rest=text):  # "<code> <sentence>"
                self._event(f"{SPARTAN} The server says: {text.partition(' ')[2] or text}")
            case wire.Push(kind="TOPIC", rest=rest):
                self._on_topic_push(wire.parse_topic(rest))
            case wire.Reply():
                if self._pending:
                    kind, arg = self._pending.popleft()
                    self._on_reply(kind, arg, line)
            case _:
                pass  # greetings, HISTORY lines, unreadable lines: nothing to do
        if self.state is State.QUITTING:
            self._out.append(StartTimer("quit", QUIT_TIMEOUT))  # the server is still answering
        self._pump()
        return self._flush()

    def on_input(self, *lines: str) -> list[Effect]:
        """Lines the user entered (without line ends), as they came in one read.

        A terminal echoed them all before the client could answer the first.
        """
        if not self._echo and lines:
            self._prompt = None  # the terminal echoed the lines: the cursor is on a new line
        if self.state is not State.DONE:
            self._input.extend(lines)
            self._pump()
        return self._flush()

    def on_eof(self) -> list[Effect]:
        if self.state is not State.DONE:
            self._input.append(_EOF)
            self._pump()
        return self._flush()

    def on_interrupt(self) -> list[Effect]:
        """Ctrl-C: leave now; lines already entered for the conversation are sent first."""
        if self.state is State.QUITTING:
            self._finish()
        elif self.state is not State.DONE:
            if self.state is State.CHAT and self._conversation is not None:
                for item in self._input:
                    if isinstance(item, str):
                        text = self._message_text(item)
                        if text is not None:
                            self._queue_message(text)
            self._quit()
        return self._flush()

    def on_timer(self, name: str) -> list[Effect]:
        if name == "quit" and self.state is State.QUITTING:
            self._finish()
        return self._flush()

    # -- screen ---------------------------------------------------------------------------

    def _flush(self) -> list[Effect]:
        out, self._out = self._out, []
        return out

    def _end_prompt_line(self) -> None:
        if self._prompt is not None:
            self._out.append(ErasePrompt() if self._redrawn else Newline())
            self._prompt = None

    def _show(self, *lines: str) -> None:
        """Lines that answer what the user did."""
        self._end_prompt_line()
        self._out.extend(Show(line) for line in lines)

    def _event(self, *lines: str) -> None:
        """Lines nobody asked for (messages, notices): the prompt moves below them."""
        self._show(*lines)
        prompt = self._current_prompt()
        if prompt is not None and self.state is not State.PASSWORD:
            self._ask(prompt, redrawn=True)

    def _ask(self, prompt: str, *, redrawn: bool = False, secret: bool = False) -> None:
        self._end_prompt_line()
        self._out.append(Prompt(prompt, secret))
        self._prompt = prompt
        self._redrawn = redrawn

    def _ensure_prompt(self) -> None:
        prompt = self._current_prompt()
        if prompt is not None and self._prompt is None:
            self._ask(prompt)

    def _current_prompt(self) -> str | None:
        if not self._accepting():
            return None
        return {
            State.MENU: MENU_PROMPT,
            State.ASK_USER: USER_PROMPT,
            State.ASK_GROUP: GROUP_PROMPT,
            State.CHAT: f"[{self.user}] > ",
        }.get(self.state)

    def completions(self) -> list[str]:
        """What Tab may complete to at the current prompt: names, and the commands."""
        names = [name for name, _online in self._users if name != self.user]
        match self.state:
            case State.ASK_USER:
                return names + list(COMMANDS)
            case State.ASK_GROUP:
                return list(self._groups) + list(COMMANDS)
            case State.CHAT if self._in_group():
                return names + list(COMMANDS) + [ACTION_PREFIX.strip(), TOPIC_COMMAND]
            case State.CHAT:
                return names + list(COMMANDS) + [ACTION_PREFIX.strip()]
            case State.MENU:
                return list(COMMANDS)
        return []

    def _show_menu(self) -> None:
        if self._unread:
            self._show(self._unread_line())
        self._show(*MENU_LINES)
        self.state = State.MENU
        self._ask(MENU_PROMPT)

    # -- commands and replies ---------------------------------------------------------

    def _send(self, command: wire.Command, kind: str, arg: object = None) -> None:
        self._out.append(Send(command))
        self._pending.append((kind, arg))

    def _on_reply(self, kind: str, arg: object, reply: wire.Reply) -> None:
        handler = getattr(self, f"_reply_{kind}", None)
        if handler is not None:
            handler(arg, reply)

    def _reply_login(self, _arg: object, reply: wire.Reply) -> None:
        if not reply.ok:
            self._login_refused(reply)
            return
        self._logged_in = True
        self._attempts = 0
        self._hosts.succeeded()
        if not self._ever_logged_in:
            self._ever_logged_in = True
            self.state = State.LOADING
            self._load()
            return
        # With several servers, which one matters; with one, the port is enough.
        where = self._where() if self._hosts.several else f"port {self.port}"
        self._event(f"{SPARTAN} Reconnected to Spartan Server at {where}.")
        if self.state is State.LOADING:
            self._load()
        if self.state is not State.LOADING:
            self._send(wire.Unread(), "unread", "reconnect")
        if self.state is State.CHAT and self._conversation is not None:
            self._open_conversation()
        for client_id, (target, text) in self._unconfirmed.items():
            self._send(wire.Send(target, text, client_id), "send", client_id)

    def _login_refused(self, reply: wire.Reply) -> None:
        if reply.word in ("password-required", "bad-credentials"):
            if reply.word == "bad-credentials":
                self._show(f"{SPARTAN} Wrong password for {self.user}.")
            if self._can_ask_password:
                if self.state not in (State.LOGGING_IN, State.PASSWORD):
                    self._before_password = self.state  # a reconnect: resume there after
                self.state = State.PASSWORD
                self._input.clear()  # nothing typed before the question is the password
                self._ask(f"{SPARTAN} Password for {self.user}: ", secret=True)
                return
            if self._password is None:
                self._show(f"{SPARTAN} The server wants a password: set SPARTAN_PASSWORD.")
            self._exit(1)  # the wrong password was said: nothing more to say
            return
        self._show(f"{SPARTAN} Could not log in as {self.user}: {reply.rest or reply.word}")
        self._exit(1)

    def _load(self) -> None:
        self._loaded.clear()
        self._send(wire.Users(), "directory", "users")
        self._send(wire.Groups(), "directory", "groups")
        self._send(wire.Unread(), "unread", "login")

    def _reply_unread(self, when: str, reply: wire.Reply) -> None:
        """What waits, said before the menu (at login) or after the reconnect line.

        A server without UNREAD refuses it: then nothing is said.
        """
        waiting: Counter[str] = Counter()
        if reply.ok:
            for label, _, count in (field.rpartition("=") for field in reply.fields):
                if label and count.isdigit() and label != self._conversation:
                    waiting[label] = int(count)
        self._unread = waiting
        if when == "login":
            self._loaded.add("unread")
            self._greet()
        elif waiting:
            self._event(self._unread_line())

    def _unread_line(self) -> str:
        return f"{SPARTAN} Unread: " + ", ".join(
            f"{_display(conversation)} ({count})" for conversation, count in self._unread.items()
        )

    def _reply_directory(self, which: str, reply: wire.Reply) -> None:
        if not reply.ok:
            self._show(f"{SPARTAN} The server refused to list {which}: {reply.rest}")
            self._exit(1)
            return
        if which == "users":
            self._users = wire.parse_users(reply)
        else:
            self._groups = wire.parse_groups(reply)
        self._loaded.add(which)
        self._greet()

    def _greet(self) -> None:
        """Once the directory and what waits are in: who is there, and the menu."""
        if self._loaded == {"users", "groups", "unread"} and self.state is State.LOADING:
            others = [name for name, _online in self._users if name != self.user]
            self._show(
                f"{SPARTAN} Connected to Spartan Server at port {self.port}.",
                f"{SPARTAN} User list: {others!r}",
            )
            if self._groups:
                self._show(*(f"You are member of {g}: {m!r}" for g, m in self._groups.items()))
            else:
                self._show("You are not a member of any group.")
            self._show_menu()

    def _reply_open(self, conversation: str, reply: wire.Reply) -> None:
        if conversation != self._conversation or self.state is not State.CHAT:
            return  # the user left that conversation meanwhile
        batch, self._batch = self._batch, []
        self._opening = False
        if not reply.ok:
            self._conversation = None
            self._show(f"{SPARTAN} Could not open {_display(conversation)}: {reply.rest}")
            self._show_menu()
            return
        lines, last = self._take(sorted(batch, key=lambda m: m.id))
        if last is not None:
            self._ack(conversation, last)
        if self._prompted:  # re-opened after a reconnect: the prompt is already there
            if lines:
                self._event(*lines)
        else:
            self._prompted = True
            self._show(*lines)
            self._ask(self._current_prompt() or "")

    def _reply_send(self, client_id: str, reply: wire.Reply) -> None:
        if reply.ok or reply.word != "not-logged-in":
            target_text = self._unconfirmed.pop(client_id, None)
            if not reply.ok and target_text is not None:
                target, text = target_text
                self._event(f"{SPARTAN} Not sent to {_display(target)} ({reply.rest}): {text}")

    def _reply_who(self, _arg: object, reply: wire.Reply) -> None:
        self._busy = False
        if not reply.ok:
            self._show(f"{SPARTAN} Could not list the users: {reply.rest}")
        else:
            users = [(n, on) for n, on in wire.parse_users(reply) if n != self.user]
            online = ", ".join(n for n, on in users if on) or "nobody"
            offline = ", ".join(n for n, on in users if not on) or "nobody"
            self._show(f"{SPARTAN} Online: {online}", f"{SPARTAN} Offline: {offline}")
        self._ensure_prompt()

    def _reply_quit(self, _arg: object, _reply: wire.Reply) -> None:
        self._finish()

    # -- messages -------------------------------------------------------------------------

    def _on_message(self, message: wire.Message) -> None:
        conversation = message.conversation
        if self.state is State.QUITTING:
            return
        if self.state is State.CHAT and conversation == self._conversation:
            if self._opening:
                self._batch.append(message)
                return
            lines, last = self._take([message])
            if lines:
                self._event(*lines)
            if last is not None:
                self._ack(conversation, last)
            return
        if message.sender == self.user:
            return  # sent from another session of mine: never unread
        if message.text.startswith(NOTICE_PREFIX):
            return  # asks for no answer: it waits, unacknowledged, for that conversation
        self._unread[conversation] += 1
        if conversation not in self._notified:
            self._notified.add(conversation)
            where = "" if conversation == message.sender else f" in {_display(conversation)}"
            hint = " (type /switch to read it)" if self.state is State.CHAT else ""
            self._event(f"{SPARTAN} New message from {message.sender}{where}{hint}.")

    def _ack(self, conversation: str, upto: int) -> None:
        """Acknowledge up to ``upto``: now, or when the ACK in flight is answered."""
        self._ack_wanted[conversation] = max(self._ack_wanted.get(conversation, 0), upto)
        if conversation not in self._ack_in_flight:
            self._send_ack(conversation)

    def _send_ack(self, conversation: str) -> None:
        wanted = self._ack_wanted.get(conversation, 0)
        if wanted > self._ack_sent.get(conversation, 0) and self._logged_in:
            self._ack_sent[conversation] = wanted
            self._ack_in_flight.add(conversation)
            self._send(wire.Ack(conversation, wanted), "ack", conversation)

    def _reply_ack(self, conversation: str, _reply: wire.Reply) -> None:
        self._ack_in_flight.discard(conversation)
        self._send_ack(conversation)

    def _take(self, messages: list[wire.Message]) -> tuple[list[str], int | None]:
        """The lines to show for messages not shown before, and the last id to ACK."""
        lines = []
        last = None
        for message in messages:
            key = (message.conversation, message.id, message.timestamp)
            last = message.id if last is None else max(last, message.id)
            if key in self._shown:
                continue
            self._shown.add(key)
            self._shown_order.append(key)
            if len(self._shown_order) > REMEMBERED:
                self._shown.discard(self._shown_order.popleft())
            if message.text.startswith(ACTION_PREFIX):
                lines.append(f"* {message.sender} {message.text[len(ACTION_PREFIX):]}")
            elif message.text.startswith(NOTICE_PREFIX):
                lines.append(f"-{message.sender}- {message.text[len(NOTICE_PREFIX):]}")
            else:
                lines.append(f"[{message.sender}] {message.text}")
        return lines, last

    # -- input ----------------------------------------------------------------------------

    def _accepting(self) -> bool:
        if self._busy:
            return False
        if self.state is State.CHAT:
            return not self._opening
        return self.state in (State.MENU, State.ASK_USER, State.ASK_GROUP, State.PASSWORD)

    def _pump(self) -> None:
        """Take queued input while the state asks for it (each step consumes one item)."""
        while self._input and self._accepting() and self.state is not State.DONE:
            item = self._input.popleft()
            if item is _EOF:
                self._quit()
                break
            assert isinstance(item, str)
            if self.state is State.PASSWORD:
                self._prompt = None
                self._take_password(item)
                continue
            if self._echo and self._prompt is not None:
                self._out.append(Show(item))
                self._prompt = None
            self._take_line(item)

    def _take_password(self, line: str) -> None:
        self._password = line
        self.state, self._before_password = self._before_password or State.LOGGING_IN, None
        if self._connected:
            self._send(wire.Login(self.user, line), "login")

    def _take_line(self, line: str) -> None:
        command = line.strip()
        if command.startswith("/") and not (self.state is State.CHAT and _is_text(line)):
            self._chat_command(command)
            return
        match self.state:
            case State.MENU:
                self._take_choice(command)
            case State.ASK_USER:
                self._take_user(command)
            case State.ASK_GROUP:
                self._take_group(command)
            case State.CHAT:
                text = self._message_text(line)
                if text is not None:
                    self._queue_message(text)
                self._ensure_prompt()

    def _chat_command(self, command: str) -> None:
        verb = command.split(" ", 1)[0].lower()
        if verb == "/quit":
            self._quit()
        elif verb == "/help":
            self._show(*(line.format(user=self.user) for line in HELP_LINES))
            self._ensure_prompt()
        elif verb == "/switch":
            self._conversation = None
            self._opening = False
            self._show_menu()
        elif verb == TOPIC_COMMAND:
            self._topic_command(command[len(TOPIC_COMMAND) :].strip())
        elif verb == "/users":
            self._ask_server(wire.Users(), "who")
        else:
            self._show(
                f"{SPARTAN} Unknown command {verb!r}. Type /help for the commands,"
                " or // to send a line that starts with /."
            )
            self._ensure_prompt()

    def _take_choice(self, choice: str) -> None:
        if choice == "1":
            self.state = State.ASK_USER
            self._ask(USER_PROMPT)
        elif choice == "2":
            if not self._groups:
                self._show(f"{SPARTAN} You are not a member of any group.")
                self._show_menu()
            elif len(self._groups) == 1:
                self._start_chat(wire.GROUP_PREFIX + next(iter(self._groups)))
            else:
                self._show(f"{SPARTAN} You are member of several groups: {', '.join(self._groups)}")
                self.state = State.ASK_GROUP
                self._ask(GROUP_PROMPT)
        else:
            if choice:
                self._show(f"{SPARTAN} Unknown choice {choice!r}: type 1 or 2.")
            self._ask(MENU_PROMPT)

    def _take_user(self, name: str) -> None:
        names = [n for n, _online in self._users if n != self.user]
        if name in names:
            self._start_chat(name)
            return
        if name == self.user:
            self._show(f"{SPARTAN} That is you; choose somebody else.")
        elif name:
            self._show(f"{SPARTAN} Unknown username {name!r}. Try one of: {', '.join(names)}")
        self._ask(USER_PROMPT)

    def _take_group(self, name: str) -> None:
        name = name.removeprefix(wire.GROUP_PREFIX)
        if name in self._groups:
            self._start_chat(wire.GROUP_PREFIX + name)
            return
        if name:
            self._show(
                f"{SPARTAN} You are not a member of a group {name!r}."
                f" Your groups: {', '.join(self._groups)}"
            )
        self._ask(GROUP_PROMPT)

    def _start_chat(self, conversation: str) -> None:
        self.state = State.CHAT
        self._conversation = conversation
        self._prompted = False
        self._unread.pop(conversation, None)
        self._notified.discard(conversation)
        self._open_conversation()

    def _open_conversation(self) -> None:
        self._opening = True
        self._batch = []
        if self._logged_in:
            if self._in_group() and not self._prompted:  # entering: the topic comes first
                self._send(wire.Topic(self._conversation), "topic", (self._conversation, "enter"))
            self._send(wire.Open(self._conversation), "open", self._conversation)

    def _in_group(self) -> bool:
        """In a group's chat, where ``/topic`` applies."""
        return self.state is State.CHAT and (self._conversation or "").startswith(
            wire.GROUP_PREFIX
        )

    # -- topics ---------------------------------------------------------------------------

    def _topic_command(self, text: str) -> None:
        """``/topic``: show the group's topic; ``/topic text``: set it."""
        if not self._in_group():
            self._show(f"{SPARTAN} Only a group chat has a topic.")
            self._ensure_prompt()
        else:
            group = self._conversation
            why = "set" if text else "show"
            self._ask_server(wire.Topic(group, text or None), "topic", (group, why))

    def _ask_server(self, command: wire.Command, kind: str, arg: object = None) -> None:
        """A user's command the server answers: the prompt waits for the answer."""
        if self._logged_in:
            self._busy = True
            self._send(command, kind, arg)
        else:
            self._show(f"{SPARTAN} Not connected to the server right now.")
            self._ensure_prompt()

    def _reply_topic(self, arg: tuple[str, str], reply: wire.Reply) -> None:
        conversation, why = arg
        topic = wire.parse_topic(reply.rest) if reply.ok else None
        line = None
        if isinstance(topic, wire.TopicLine) and topic.setter is not None:
            line = _topic_line(topic)
        if why == "enter":
            # Quiet when none is set, or when the server knows no topics: the spec's screens.
            if line and conversation == self._conversation and self.state is State.CHAT:
                self._show(line)
            return
        self._busy = False
        group = _display(conversation)
        if not reply.ok:
            doing = "set" if why == "set" else "read"
            reason = reply.rest or reply.word
            self._show(f"{SPARTAN} Could not {doing} the topic of {group}: {reason}")
        else:
            self._show(line or f"{SPARTAN} {group} has no topic.")
        self._ensure_prompt()

    def _on_topic_push(self, topic: wire.TopicLine | wire.WireError) -> None:
        if not isinstance(topic, wire.TopicLine) or topic.setter is None:
            return
        if topic.group == self._conversation and self.state is State.CHAT:
            group = _display(topic.group)
            if topic.text:
                self._event(f"{SPARTAN} {topic.setter} set the topic of {group}: {topic.text}")
            else:
                self._event(f"{SPARTAN} {topic.setter} cleared the topic of {group}.")

    def _message_text(self, line: str) -> str | None:
        """What to send for a chat line, or None for nothing (empty line, command)."""
        if line.startswith("//"):
            line = line[1:]
        elif line.strip().startswith("/") and not _is_text(line):
            return None
        text = clean_input(line)
        return text if text.strip() else None

    def _queue_message(self, text: str) -> None:
        target = self._conversation
        assert target is not None
        # The whole SEND line must fit the server's line limit: "SEND id=<id> <target> <text>".
        room = MAX_LINE - len(f"SEND id={'i' * MAX_CLIENT_ID} {target} \r".encode())
        pieces = split_message(text, room)
        for piece in pieces:
            client_id = self._new_id()
            self._unconfirmed[client_id] = (target, piece)
            if self._logged_in:
                self._send(wire.Send(target, piece, client_id), "send", client_id)
        if len(pieces) > 1:
            self._show(f"{SPARTAN} Long message sent in {len(pieces)} parts.")

    # -- leaving --------------------------------------------------------------------------

    def _quit(self) -> None:
        self._leaving = True
        self._input.clear()
        if self._logged_in and self._connected:
            for conversation in list(self._ack_wanted):
                self._send_ack(conversation)  # even with one in flight: QUIT comes next
            if len(self._unconfirmed) >= 10:
                self._show(
                    f"{SPARTAN} Sending {len(self._unconfirmed)} more messages before leaving"
                    " (Ctrl-C to leave now)."
                )
            self.state = State.QUITTING
            self._send(wire.Quit(), "quit")
            self._out.append(StartTimer("quit", QUIT_TIMEOUT))
        else:
            self._finish()

    def _finish(self, status: int = 0) -> None:
        """Leave now, saying which lines the server has not confirmed."""
        if self._unconfirmed:
            unsent = self._unconfirmed.values()
            self._show(*(f"{SPARTAN} Not sent to {_display(t)}: {text}" for t, text in unsent))
            status = status or 1
        if self._leaving and not self._echo:
            self._show(f"{SPARTAN} Goodbye.")
        self._exit(status)

    def _exit(self, status: int) -> None:
        self._end_prompt_line()
        self.state = State.DONE
        self._input.clear()
        self._out.append(Exit(status))
