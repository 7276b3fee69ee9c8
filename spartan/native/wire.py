"""
The Spartan wire format: plain UTF-8 text lines that a person can type in telnet.

Theory of operation
-------------------
* A client sends one command per line.  A line ends with LF; a CR before it is dropped,
  so telnet (CRLF) and nc (LF) both work.  The verb is case-insensitive.
* The server answers every line with exactly one reply line, in the order the lines came.
  A reply starts with ``OK`` (then the verb it answers) or ``ERR`` (then a short
  machine-readable code and a sentence for people).
* Lines the server sends on its own, or that belong to a reply (the messages of an
  ``OPEN``), start with ``*``.  They always come before the reply they belong to.
* Nothing here does I/O and nothing here raises on input: a line that is not a valid
  command comes back as a `WireError` value, which the caller turns into an ``ERR`` reply.

Both directions live here, so the server and the client share one definition of the
format: `parse_command`/`format_*` for what the server reads and writes,
`parse_server_line`/`format_command` for the client.
"""

from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass, field

from spartan.core import names
from spartan.core.names import is_name, is_target

CRLF = b"\r\n"
PROTOCOL_VERSION = "1"

GROUP_PREFIX = names.GROUP_PREFIX  # clients name groups as the core does
CLIENT_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,64}\Z")
TOKEN = re.compile(r"[\x21-\x7e]{1,64}\Z")
# C0 and C1 control characters and DEL; TAB is allowed inside message text.
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
TELNET_IAC = b"\xff"


# -- commands (client -> server) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Help:
    pass


@dataclass(frozen=True, slots=True)
class Login:
    user: str
    password: str | None = field(default=None, repr=False)  # never in a log line


@dataclass(frozen=True, slots=True)
class Users:
    pass


@dataclass(frozen=True, slots=True)
class Groups:
    pass


# Not frozen: a frozen dataclass's __init__ goes through object.__setattr__, 2.5x the cost
# of this one, once per SEND.  Still hashable, compared and matched by value.
@dataclass(slots=True, unsafe_hash=True)
class Send:
    target: str
    text: str
    client_id: str | None = None


@dataclass(frozen=True, slots=True)
class Unread:
    pass


@dataclass(frozen=True, slots=True)
class Open:
    target: str


@dataclass(frozen=True, slots=True)
class Ack:
    target: str
    upto: int


@dataclass(frozen=True, slots=True)
class History:
    target: str
    count: int = 20  # DEFAULT_HISTORY
    before: int | None = None  # only messages older than this id (paging back)


@dataclass(frozen=True, slots=True)
class Topic:
    """``TOPIC #group`` asks for a group's topic; with text, sets it."""

    target: str
    text: str | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    token: str | None = None


@dataclass(frozen=True, slots=True)
class Pong:
    token: str | None = None


@dataclass(frozen=True, slots=True)
class Quit:
    pass


# Session tokens: a browser logs in again after a reload without keeping a password.


@dataclass(frozen=True, slots=True)
class Resume:
    """``RESUME <user> <token>``: log in with a session token (a verb of its own, so a
    token can never be taken for a password or the other way round)."""

    user: str
    token: str = field(repr=False)  # never in a log line


@dataclass(frozen=True, slots=True)
class IssueToken:
    pass


@dataclass(frozen=True, slots=True)
class Revoke:
    token: str = field(repr=False)


Command = (
    Help | Login | Users | Groups | Unread | Send | Open | Ack | History | Topic | Ping | Pong
    | Quit | Resume | IssueToken | Revoke
)


@dataclass(frozen=True, slots=True)
class WireError:
    """A line that is not a valid command: the ``ERR`` reply to give, as a value."""

    code: str
    message: str


MAX_HISTORY = 1000
DEFAULT_HISTORY = 20

# What HELP prints, one entry per command: (usage, what it does).
COMMANDS: dict[str, tuple[str, str]] = {
    "HELP": ("HELP", "list the commands"),
    "LOGIN": ("LOGIN <user> [<password>]", "log in as a user"),
    "USERS": ("USERS", "list the users and who is online"),
    "GROUPS": ("GROUPS", "list my groups and their members"),
    "UNREAD": ("UNREAD", "the conversations with messages I have not seen, and how many"),
    "SEND": (
        "SEND [id=<client-id>] <user|#group> <text>",
        "send a message; a resend with the same id is stored once",
    ),
    "OPEN": ("OPEN <user|#group>", "open a conversation: get its unseen messages, in order"),
    "ACK": ("ACK <user|#group> <id>", "mark the messages of a conversation seen, up to id"),
    "HISTORY": (
        f"HISTORY <user|#group> [<1-{MAX_HISTORY}> [<before-id>]]",
        "recent messages of a conversation (older than before-id)",
    ),
    "TOPIC": ("TOPIC <#group> [<text>]", "a group's topic; with text, set it"),
    "PING": ("PING [<token>]", "check the connection"),
    "PONG": ("PONG [<token>]", "answer a keepalive PING from the server"),
    "QUIT": ("QUIT", "close the connection"),
    "RESUME": ("RESUME <user> <token>", "log in with a session token from TOKEN"),
    "TOKEN": ("TOKEN", "get a session token, to log in again with RESUME"),
    "REVOKE": ("REVOKE <token>", "end a session token, on every connection that used it"),
}


def _syntax(verb: str) -> WireError:
    return WireError("bad-syntax", f"Usage: {COMMANDS[verb][0]}")


def _bad_target(target: str) -> WireError:
    return WireError("bad-name", f"{target!r} is not a user name or a #group name.")


def _no_args(verb: str, cls):
    def parse(rest: str):
        return cls() if not rest else _syntax(verb)

    return parse


def _parse_login(rest: str):
    # The password is the rest of the line, so a passphrase may hold spaces.
    user, _, password = rest.partition(" ")
    password = password.lstrip(" ")
    if not user:
        return _syntax("LOGIN")
    if not is_name(user):
        return WireError("bad-name", f"{user!r} is not a valid user name.")
    return Login(user, password or None)


def _parse_send(rest: str):
    client_id = None
    if rest.startswith("id="):
        client_id, _, rest = rest[3:].partition(" ")
        if not CLIENT_ID.match(client_id):
            return WireError("bad-syntax", "A client id is 1-64 letters, digits or _ . : -")
    target, sep, text = rest.partition(" ")
    if not sep or not text.strip():
        return _syntax("SEND")
    if not is_target(target):
        return _bad_target(target)
    return Send(target, text, client_id)


def _parse_target(verb: str, cls):
    def parse(rest: str):
        if not rest or " " in rest:
            return _syntax(verb)
        return cls(rest) if is_target(rest) else _bad_target(rest)

    return parse


def _parse_ack(rest: str):
    target, sep, upto = rest.partition(" ")
    if not sep or not upto.isascii() or not upto.isdigit() or len(upto) > 18:
        return _syntax("ACK")
    return Ack(target, int(upto)) if is_target(target) else _bad_target(target)


def _is_number(text: str, digits: int) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= digits


def _parse_history(rest: str):
    target, sep, count = rest.partition(" ")
    count, _, before = count.partition(" ")
    if not target or (sep and not _is_number(count, 5)) or (before and not _is_number(before, 18)):
        return _syntax("HISTORY")
    if not is_target(target):
        return _bad_target(target)
    number = int(count) if sep else DEFAULT_HISTORY
    if not 1 <= number <= MAX_HISTORY:
        return _syntax("HISTORY")
    return History(target, number, int(before) if before else None)


# A session token as TOKEN hands it out: URL-safe base64 (`spartan.core.tokens` makes them).
SESSION_TOKEN = re.compile(r"[A-Za-z0-9_\-]{20,128}\Z")


def _parse_resume(rest: str):
    user, _, token = rest.partition(" ")
    if not user or not token:
        return _syntax("RESUME")
    if not is_name(user):
        return WireError("bad-name", f"{user!r} is not a valid user name.")
    return Resume(user, token) if SESSION_TOKEN.match(token) else _syntax("RESUME")


def _parse_revoke(rest: str):
    return Revoke(rest) if SESSION_TOKEN.match(rest) else _syntax("REVOKE")


def _parse_topic(rest: str):
    target, _, text = rest.partition(" ")
    if not target:
        return _syntax("TOPIC")
    if not is_target(target):
        return _bad_target(target)
    return Topic(target, text.strip(" ") or None)


def _parse_token(verb: str, cls):
    def parse(rest: str):
        if not rest:
            return cls()
        return cls(rest) if TOKEN.match(rest) else _syntax(verb)

    return parse


_PARSERS = {
    "HELP": _no_args("HELP", Help),
    "LOGIN": _parse_login,
    "USERS": _no_args("USERS", Users),
    "GROUPS": _no_args("GROUPS", Groups),
    "UNREAD": _no_args("UNREAD", Unread),
    "SEND": _parse_send,
    "OPEN": _parse_target("OPEN", Open),
    "ACK": _parse_ack,
    "HISTORY": _parse_history,
    "TOPIC": _parse_topic,
    "PING": _parse_token("PING", Ping),
    "PONG": _parse_token("PONG", Pong),
    "QUIT": _no_args("QUIT", Quit),
    "RESUME": _parse_resume,
    "TOKEN": _no_args("TOKEN", IssueToken),
    "REVOKE": _parse_revoke,
}


def decode_line(line: bytes) -> str | WireError:
    """Bytes of one line (without its LF) to text, or the error that refuses them."""
    if line.endswith(b"\r"):
        line = line[:-1]
    if TELNET_IAC in line:
        return WireError(
            "telnet-negotiation", "Telnet option negotiation is not supported; send plain lines."
        )
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return WireError("bad-encoding", "Lines must be valid UTF-8.")
    # isprintable() (C, one pass) is False for every control character: the regex only
    # for the rare line that has a TAB or another non-printable character.
    if not text.isprintable() and CONTROL.search(text):
        return WireError("control-character", "Lines must not contain control characters.")
    return text


def parse_command(line: bytes) -> Command | WireError:
    """Parse one line from a client.  Never raises."""
    if line.startswith(b"SEND ") and not line.endswith(b"\r") and TELNET_IAC not in line:
        # The common line, in fewer steps; the same result as the general path.
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            text = ""
        if text and text.isprintable():
            return _parse_send(text[5:].strip(" "))
    return parse_command_general(line)


def parse_command_general(line: bytes) -> Command | WireError:
    """`parse_command` without its SEND fast path: what the fast path must equal."""
    text = decode_line(line)
    if isinstance(text, WireError):
        return text
    verb, _, rest = text.strip(" ").partition(" ")
    if not verb:
        return WireError("empty-line", "Empty line; type HELP for the list of commands.")
    upper = verb.upper()
    parser = _PARSERS.get(upper)
    if parser is None:
        shown = verb if len(verb) <= 20 else verb[:20] + "..."
        return WireError("unknown-command", f"Unknown command {shown!r}; type HELP.")
    return parser(rest.strip(" ") if upper != "SEND" else rest.lstrip(" "))


def format_command(command: Command) -> bytes:
    """The line a client sends for a command (the inverse of `parse_command`)."""
    match command:
        case Login(user, password):
            words = ["LOGIN", user] + ([password] if password is not None else [])
        case Send(target, text, client_id):
            words = ["SEND"] + ([f"id={client_id}"] if client_id else []) + [target, text]
        case Open(target):
            words = ["OPEN", target]
        case Ack(target, upto):
            words = ["ACK", target, str(upto)]
        case History(target, count, before):
            words = ["HISTORY", target, str(count)] + ([str(before)] if before is not None else [])
        case Topic(target, text):
            words = ["TOPIC", target] + ([text] if text else [])
        case Resume(user, token):
            words = ["RESUME", user, token]
        case IssueToken():
            words = ["TOKEN"]
        case Revoke(token):
            words = ["REVOKE", token]
        case Ping(token) | Pong(token):
            words = [type(command).__name__.upper()] + ([token] if token else [])
        case _:
            words = [type(command).__name__.upper()]
    return " ".join(words).encode("utf-8") + CRLF


# -- server lines (server -> client) ------------------------------------------------------


def format_ok(*fields: str) -> bytes:
    return ("OK " + " ".join(fields)).rstrip(" ").encode("utf-8") + CRLF


def format_error(code: str, message: str) -> bytes:
    return f"ERR {code} {message}".encode("utf-8") + CRLF


def format_push(*fields: str) -> bytes:
    return ("* " + " ".join(fields)).encode("utf-8") + CRLF


class TimestampFormatter:
    """UTC, millisecond precision: ``2026-11-24T11:36:17.123Z``, cheaply.

    It remembers the last whole second it formatted (strftime(gmtime()) was the largest
    single cost per message, and its result changes once a second) and the last
    timestamp (a message's time is formatted twice in a row: ``OK SENT``, then ``* MSG``).
    Each is a tuple replaced whole, so a value is never paired with another's text.
    """

    __slots__ = ("_second", "_stamp")

    # ".000Z" to ".999Z": an f-string's "{ms:03d}" cost half of a timestamp.
    _MILLIS = [f".{ms:03d}Z" for ms in range(1000)]

    def __init__(self) -> None:
        self._second: tuple[int, str] = (-1, "")
        self._stamp: tuple[float, str] = (-1.0, "")

    def __call__(self, seconds: float) -> str:
        last_value, stamp = self._stamp
        if seconds == last_value:
            return stamp
        whole, ms = divmod(round(seconds * 1000), 1000)
        cached_whole, text = self._second
        if whole != cached_whole:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
            self._second = (whole, text)
        stamp = text + self._MILLIS[ms]
        self._stamp = (seconds, stamp)
        return stamp


format_timestamp = TimestampFormatter()


def parse_timestamp(text: str) -> float | None:
    try:
        whole = time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
        ms = int(text[20:23])
    except ValueError:
        return None
    return calendar.timegm(whole) + ms / 1000


def format_message(
    kind: str, message_id: int, timestamp: float, conversation: str, sender: str, text: str
) -> bytes:
    """A message line: ``* MSG <id> <time> <conversation> <sender> <text>``.

    ``conversation`` is named as the reader sees it: the other user of a one-to-one
    conversation, or ``#group``.  ``kind`` is ``MSG`` (delivered, not yet acknowledged)
    or ``HISTORY`` (part of a HISTORY reply).
    """
    return (
        f"* {kind} {message_id} {format_timestamp(timestamp)} {conversation} {sender} {text}"
    ).encode("utf-8") + CRLF


def format_topic_fields(label: str, setter: str | None, timestamp: float, text: str) -> list[str]:
    """``<#group> <setter> <time> <text>`` (a topic) or ``<#group>`` alone (none is set),
    as ``OK TOPIC`` and the ``* TOPIC`` push carry it."""
    if setter is None:
        return [label]
    return [label, setter, format_timestamp(timestamp), text]


@dataclass(frozen=True, slots=True)
class TopicLine:
    """The fields of ``OK TOPIC`` or ``* TOPIC``: no setter when no topic is set."""

    group: str
    setter: str | None = None
    timestamp: float | None = None
    text: str = ""


def parse_topic(rest: str) -> TopicLine | WireError:
    """``#group1 alice 2026-...Z plans`` (or ``#group1``) -> a `TopicLine`.  Never raises."""
    parts = rest.split(" ", 3)
    if len(parts) == 1 and parts[0]:
        return TopicLine(parts[0])
    timestamp = parse_timestamp(parts[2]) if len(parts) >= 3 else None
    if timestamp is None:
        return WireError("bad-server-line", f"Malformed topic: {rest[:80]!r}")
    return TopicLine(parts[0], parts[1], timestamp, parts[3] if len(parts) == 4 else "")


def format_greeting(version: str) -> bytes:
    return format_push("HELLO", "Spartan", PROTOCOL_VERSION, version, "Welcome to Spartan; type HELP.")


def format_help() -> list[bytes]:
    lines = [format_push("HELP", f"{usage:<48} {what}") for usage, what in COMMANDS.values()]
    return lines + [format_ok("HELP", str(len(COMMANDS)))]


@dataclass(frozen=True, slots=True)
class Reply:
    """``OK <verb> <fields...>`` or ``ERR <code> <sentence>``."""

    ok: bool
    word: str  # the verb answered (OK) or the error code (ERR)
    rest: str

    @property
    def fields(self) -> list[str]:
        return self.rest.split(" ") if self.rest else []


@dataclass(frozen=True, slots=True)
class Message:
    """A ``* MSG`` or ``* HISTORY`` line."""

    kind: str
    id: int
    timestamp: float
    conversation: str
    sender: str
    text: str


@dataclass(frozen=True, slots=True)
class Push:
    """Any other ``*`` line: ``* HELLO ...``, ``* HELP ...``, ``* PING ...``, ``* NOTICE ...``."""

    kind: str
    rest: str


ServerLine = Reply | Message | Push


def parse_server_line(line: bytes) -> ServerLine | WireError:
    """Parse one line from the server (for clients).  Never raises."""
    text = line.rstrip(b"\r\n").decode("utf-8", "replace")
    head, _, rest = text.partition(" ")
    if head in ("OK", "ERR"):
        word, _, rest = rest.partition(" ")
        return Reply(head == "OK", word, rest)
    if head != "*":
        return WireError("bad-server-line", f"Unexpected line from the server: {text[:80]!r}")
    kind, _, rest = rest.partition(" ")
    if kind in ("MSG", "HISTORY"):
        parts = rest.split(" ", 4)
        if len(parts) == 5 and parts[0].isdigit():
            timestamp = parse_timestamp(parts[1])
            if timestamp is not None:
                return Message(kind, int(parts[0]), timestamp, parts[2], parts[3], parts[4])
        return WireError("bad-server-line", f"Malformed message line: {text[:80]!r}")
    return Push(kind, rest)


def parse_users(reply: Reply) -> list[tuple[str, bool]]:
    """``OK USERS alice=online bob=offline`` -> [("alice", True), ("bob", False)]."""
    pairs = (field.partition("=") for field in reply.fields)
    return [(name, state == "online") for name, _, state in pairs]


def parse_groups(reply: Reply) -> dict[str, list[str]]:
    """``OK GROUPS group1=alice,bob`` -> {"group1": ["alice", "bob"]}."""
    pairs = (field.partition("=") for field in reply.fields)
    return {name: members.split(",") if members else [] for name, _, members in pairs}
