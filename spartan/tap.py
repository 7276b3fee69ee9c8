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
        ["redis", None, None, "Join a cluster: keep messages in Redis (redis://[:password@]host:port/db, "
         "rediss:// for TLS) and share delivery and presence with the other nodes."],
        ["node-name", None, None, "This node's name in the cluster. [default: hostname:pid]"],
        ["presence-ttl", None, 30.0, "Seconds before a dead node's users are shown offline.", float],
        ["redis-retention", None, 10_000, "Messages kept per conversation in Redis.", _positive],
        [
            "message-log",
            None,
            LOG_TEXT,
            f"Per-message log lines: {LOG_TEXT} (the spec's), {LOG_HIDDEN} (no text), {LOG_OFF}.",
        ],
    ]

    optFlags = [
        ["reuse-port", None, "Listen with SO_REUSEPORT, so several nodes share a port."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["ports"] = []

    def opt_port(self, description: str) -> None:
        """Where to listen: a port number or a Twisted endpoint (tcp:3000:interface=127.0.0.1,
        ssl:3443:privateKey=key.pem:certKey=cert.pem). Repeat for several listeners.
        [default: 3000]"""
        self["ports"].append(f"tcp:{description}" if description.isdigit() else description)

    opt_p = opt_port

    def postOptions(self) -> None:
        if not self["ports"]:
            self["ports"] = [DEFAULT_PORT]
        if self["redis"]:
            from spartan.store.redis import parse_redis_url

            try:
                self["redis-address"] = parse_redis_url(self["redis"])
            except ValueError as e:
                raise usage.UsageError(f"--redis: {e}") from None
        if self["presence-ttl"] <= 0:
            raise usage.UsageError("--presence-ttl must be positive")
        if self["message-log"] not in (LOG_TEXT, LOG_HIDDEN, LOG_OFF):
            raise usage.UsageError(f"--message-log must be {LOG_TEXT}, {LOG_HIDDEN} or {LOG_OFF}")
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
        for description, endpoint in self.listeners:
            try:
                port = yield endpoint.listen(self.factory)
            except Exception as e:
                self.log.critical("Cannot listen on {where}: {why}", where=description, why=e)
                self.reactor.stop()
                return
            self.ports.append(port)
            self.log.info("Started server started on port {port}", port=port.getHost().port)

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
    if options["redis"]:
        from spartan.cluster import join_cluster

        chat = join_cluster(directory, options, reactor)
    else:
        chat = Chat(directory, open_store(options), reactor, message_log=options["message-log"])
    factory = SpartanFactory(chat, max_line=options["max-line"], max_pending=options["max-pending"])
    listeners = []
    for description in options["ports"]:
        try:
            if options["reuse-port"]:
                from spartan.reuseport import endpoint_from_description

                endpoint = endpoint_from_description(reactor, description)
            else:
                endpoint = endpoints.serverFromString(reactor, description)
            listeners.append((description, endpoint))
        except (ValueError, TypeError) as e:
            raise usage.UsageError(f"--port {description}: {e}") from None
    return SpartanService(chat, factory, listeners, reactor)
