"""
``twistd spartan``: command-line options and the service they build.
"""

from __future__ import annotations

from twisted.application import service
from twisted.internet import endpoints
from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.logger import Logger
from twisted.python import usage

from spartan.chat import LOG_HIDDEN, LOG_OFF, LOG_TEXT, Chat
from spartan.directory import DEMO, ConfigError, Directory, load_directory
from spartan.irc import DEFAULT_SERVER_NAME, IRCGatewayFactory, is_server_name
from spartan.server import DEFAULT_MAX_LINE, DEFAULT_MAX_PENDING, SpartanFactory
from spartan.store import MessageStore
from spartan.store.memory import MemoryStore

DEFAULT_PORT = "tcp:3000"
MEMORY = ":memory:"


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("must be positive")
    return value


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run the Spartan chat server. Without --config it serves the demo users "
        "alice, bob, charlie, eve, foo, bar, baz, qux and group1 (alice, bob, charlie, eve)."
    )
    optParameters = [
        ["config", "c", None, "TOML file of users and groups (see README)."],
        ["db", None, MEMORY, f"Where messages are kept ({MEMORY} keeps them in memory)."],
        ["max-line", None, DEFAULT_MAX_LINE, "Longest line accepted, in bytes.", _positive],
        [
            "max-pending",
            None,
            DEFAULT_MAX_PENDING,
            "Bytes that may wait for a client that stopped reading before it is dropped.",
            _positive,
        ],
        [
            "message-log",
            None,
            LOG_TEXT,
            f"Per-message log lines: {LOG_TEXT} (the spec's), {LOG_HIDDEN} (no text), {LOG_OFF}.",
        ],
        ["server-name", None, DEFAULT_SERVER_NAME, "The server's name on IRC (see --irc-port)."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["ports"] = []
        self["irc-ports"] = []

    def opt_port(self, description: str) -> None:
        """Where to listen: a port number or a Twisted endpoint (tcp:3000:interface=127.0.0.1,
        ssl:3443:privateKey=key.pem:certKey=cert.pem). Repeat for several listeners.
        [default: 3000]"""
        self["ports"].append(f"tcp:{description}" if description.isdigit() else description)

    opt_p = opt_port

    def opt_irc_port(self, description: str) -> None:
        """Also accept IRC clients here: a port number or a Twisted endpoint, like --port.
        Repeat for several listeners. [default: none]"""
        self["irc-ports"].append(f"tcp:{description}" if description.isdigit() else description)

    def postOptions(self) -> None:
        if not self["ports"]:
            self["ports"] = [DEFAULT_PORT]
        if self["message-log"] not in (LOG_TEXT, LOG_HIDDEN, LOG_OFF):
            raise usage.UsageError(f"--message-log must be {LOG_TEXT}, {LOG_HIDDEN} or {LOG_OFF}")
        if not is_server_name(self["server-name"]):
            raise usage.UsageError("--server-name must be letters, digits, '.' and '-'")
        try:
            self["directory"] = load_directory(self["config"]) if self["config"] else DEMO
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None


def open_store(options: Options) -> MessageStore:
    return MemoryStore()


class SpartanService(service.Service):
    """Opens the store, then listens; stops listening, then closes the store."""

    log = Logger(namespace="spartan")

    def __init__(self, chat: Chat, factory: SpartanFactory, listeners: list, reactor) -> None:
        self.chat = chat
        self.factory = factory
        self.listeners = listeners  # [(description, endpoint)]
        self.reactor = reactor
        self.ports: list = []
        self.gateways: list = []  # [(description, endpoint, factory, what)]: IRC, ...

    def startService(self) -> None:
        super().startService()
        self._started = self._start()

    @inlineCallbacks
    def _start(self):
        try:
            yield self.chat.start()
        except Exception as e:
            self.log.critical("Cannot open the message store: {why}", why=e)
            self.reactor.stop()
            return
        listeners = [(d, e, self.factory, "server started") for d, e in self.listeners]
        for description, endpoint, factory, what in listeners + self.gateways:
            try:
                port = yield endpoint.listen(factory)
            except Exception as e:
                self.log.critical("Cannot listen on {where}: {why}", where=description, why=e)
                self.reactor.stop()
                return
            self.ports.append(port)
            self.log.info("Started {what} on port {port}", what=what, port=port.getHost().port)

    @inlineCallbacks
    def stopService(self):
        super().stopService()
        yield self._started
        ports, self.ports = self.ports, []
        yield DeferredList([port.stopListening() for port in ports])
        yield self.chat.stop()


def makeService(options: Options, reactor=None) -> SpartanService:
    if reactor is None:
        from twisted.internet import reactor
    directory: Directory = options["directory"]
    chat = Chat(directory, open_store(options), reactor, message_log=options["message-log"])
    factory = SpartanFactory(chat, max_line=options["max-line"], max_pending=options["max-pending"])
    listeners = []
    for description in options["ports"]:
        try:
            listeners.append((description, endpoints.serverFromString(reactor, description)))
        except (ValueError, TypeError) as e:
            raise usage.UsageError(f"--port {description}: {e}") from None
    service = SpartanService(chat, factory, listeners, reactor)
    if options["irc-ports"]:
        irc = IRCGatewayFactory(
            chat,
            server_name=options["server-name"],
            max_line=options["max-line"],
            max_pending=options["max-pending"],
        )
        for description in options["irc-ports"]:
            try:
                endpoint = endpoints.serverFromString(reactor, description)
            except (ValueError, TypeError) as e:
                raise usage.UsageError(f"--irc-port {description}: {e}") from None
            service.gateways.append((description, endpoint, irc, "IRC gateway"))
    return service
