"""
``twistd spartan``: command-line options and the service they build.
"""

from __future__ import annotations

from twisted.application import service
from twisted.internet import endpoints
from twisted.internet.defer import DeferredList, inlineCallbacks, maybeDeferred
from twisted.logger import Logger
from twisted.python import usage

from spartan import interpreter, reload
from spartan.core.auth import make_authenticator
from spartan.core.chat import LOG_HIDDEN, LOG_OFF, LOG_TEXT, Chat
from spartan.core.directory import DEMO, ConfigError, Directory, load_directory
from spartan.irc import DEFAULT_SERVER_NAME, IRCGatewayFactory, is_server_name
from spartan.net.limits import RateConfig, ServerLimits
from spartan.passwd import BadHash, parse_hash
from spartan.native.protocol import NativeFactory
from spartan.net.connection import DEFAULT_MAX_LINE, DEFAULT_MAX_PENDING
from spartan.store import MessageStore, StoreError
from spartan.store.sqlite import check_database, store_from_options

DEFAULT_PORT = "tcp:3000"
DEFAULT_DB = "spartan.sqlite3"
MEMORY = ":memory:"


def _positive(options: usage.Options, name: str) -> int:
    value = options[name]
    if isinstance(value, str):
        value = int(value) if value.isdigit() else 0
    if value <= 0:
        raise usage.UsageError(f"--{name} must be a positive whole number, not {options[name]!r}")
    return value


def _not_negative(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise ValueError("must be a number >= 0")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be >= 0")
    return value


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run the Spartan chat server. Without --config it serves the demo users "
        "alice, bob, charlie, eve, foo, bar, baz, qux and group1 (alice, bob, charlie, eve)."
    )
    optParameters = [
        ["config", "c", None, "TOML file of users and groups (see README)."],
        [
            "db",
            None,
            DEFAULT_DB,
            f"The SQLite file where messages are kept ({MEMORY}: in memory, lost on exit).",
        ],
        [
            "sync",
            None,
            "full",
            "full: an accepted message survives a power cut; normal: it survives a crash of "
            "the server (faster on slow disks).",
        ],
        ["retention-messages", None, 10_000, "Messages kept per conversation, newest first."],
        ["retention-days", None, 0, "Days a message is kept (0: no age limit).", _not_negative],
        ["max-line", None, DEFAULT_MAX_LINE, "Longest line accepted, in bytes."],
        [
            "max-pending",
            None,
            DEFAULT_MAX_PENDING,
            "Bytes that may wait for a client that stopped reading before it is dropped.",
        ],
        ["redis", None, None, "Join a cluster: keep messages in Redis (redis://[:password@]host:port/db, "
         "rediss:// for TLS) and share delivery and presence with the other nodes."],
        ["node-name", None, None, "This node's name in the cluster. [default: hostname:pid]"],
        ["presence-ttl", None, 30.0, "Seconds before a dead node's users are shown offline.", float],
        [
            "message-log",
            None,
            LOG_TEXT,
            f"Per-message log lines: {LOG_TEXT} (the spec's), {LOG_HIDDEN} (no text), {LOG_OFF}.",
        ],
        ["server-name", None, DEFAULT_SERVER_NAME, "The server's name on IRC (see --irc-port)."],
        ["rate", None, 5.0, "Lines a second a connection may send once its burst is spent.",
         _not_negative],
        ["burst", None, 40, "Lines a connection may send at once (0: no rate limit).", _count],
        ["max-connections", None, 1000, "Connections at once, in total (0: no limit).", _count],
        ["max-per-address", None, 20, "Connections at once from one address (0: no limit).",
         _count],
        ["login-timeout", None, 60.0, "Seconds a connection has to log in (0: no limit).",
         _not_negative],
        ["idle-timeout", None, 600.0,
         "Seconds without a line before a connection is closed; a PING goes out half way "
         "(0: never).", _not_negative],
    ]
    optFlags = [
        ["require-passwords", None, "Users without a password hash cannot log in."],
        ["reuse-port", None, "Listen with SO_REUSEPORT, so several nodes share a port."],
    ]

    def opt_metrics_port(self, description: str) -> None:
        self["metrics-port"] = f"tcp:{description}" if description.isdigit() else description

    opt_metrics_port.__doc__ = (
        "Serve Prometheus metrics at /metrics and a health check at /health here: a port "
        "number or a Twisted endpoint (tcp:9100:interface=127.0.0.1). [default: none]"
    )

    def __init__(self) -> None:
        super().__init__()
        self["ports"] = []
        self["irc-ports"] = []
        self["metrics-port"] = None

    def opt_port(self, description: str) -> None:
        self["ports"].append(f"tcp:{description}" if description.isdigit() else description)

    # Set here, not as docstrings: usage keeps a docstring's indentation in --help.
    opt_port.__doc__ = (
        "Where to listen: a port number or a Twisted endpoint (tcp:3000:interface=127.0.0.1, "
        "ssl:3443:privateKey=key.pem:certKey=cert.pem). Repeat for several listeners. "
        "[default: 3000]"
    )

    opt_p = opt_port

    def opt_irc_port(self, description: str) -> None:
        self["irc-ports"].append(f"tcp:{description}" if description.isdigit() else description)

    opt_irc_port.__doc__ = (
        "Also accept IRC clients here: a port number or a Twisted endpoint, like --port. "
        "Repeat for several listeners. [default: none]"
    )

    def postOptions(self) -> None:
        if not self["ports"]:
            self["ports"] = [DEFAULT_PORT]
        for name in ("max-line", "max-pending", "retention-messages"):
            self[name] = _positive(self, name)
        if self["redis"]:
            from spartan.store.redis import parse_redis_url

            try:
                self["redis-address"] = parse_redis_url(self["redis"])
            except ValueError as e:
                raise usage.UsageError(f"--redis: {e}") from None
        if self["sync"] not in ("full", "normal"):
            raise usage.UsageError("--sync must be full or normal")
        if self["presence-ttl"] <= 0:
            raise usage.UsageError("--presence-ttl must be positive")
        if self["message-log"] not in (LOG_TEXT, LOG_HIDDEN, LOG_OFF):
            raise usage.UsageError(f"--message-log must be {LOG_TEXT}, {LOG_HIDDEN} or {LOG_OFF}")
        if not is_server_name(self["server-name"]):
            raise usage.UsageError("--server-name must be letters, digits, '.' and '-'")
        try:
            self["directory"] = load_directory(self["config"]) if self["config"] else DEMO
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None
        for user, encoded in self["directory"].password_hashes.items():
            try:
                parse_hash(encoded)
            except BadHash as e:
                raise usage.UsageError(f"the password hash of {user!r} is not usable: {e}") from None
        if self["burst"] and not self["rate"]:
            raise usage.UsageError("--rate must be above 0 (or turn rate limiting off: --burst 0)")
        self["limits"] = ServerLimits(
            rate=RateConfig(rate=self["rate"], burst=self["burst"]),
            max_connections=self["max-connections"],
            max_per_address=self["max-per-address"],
            login_timeout=self["login-timeout"],
            idle_timeout=self["idle-timeout"],
        )


class CannotStart(SystemExit):
    """What makeService cannot build: twistd exits with this one sentence, no traceback
    (it handles UsageError only while parsing options, not from makeService)."""

    def __init__(self, sentence: str) -> None:
        super().__init__(f"twistd spartan: {sentence}")
        self.sentence = sentence


def open_store(options: Options, reactor) -> MessageStore:
    if options["redis"]:
        # Imported only here: txredisapi imports the global reactor when it is imported.
        from spartan.store.redis import RedisStore

        return RedisStore(
            options["redis-address"], reactor, max_per_conversation=options["retention-messages"]
        )
    return store_from_options(
        options["db"],
        sync=options["sync"],
        max_messages=options["retention-messages"],
        max_age_days=options["retention-days"] or None,
        reactor=reactor,
    )


class SpartanService(service.Service):
    """Opens the store, then listens; stops listening, then closes the store."""

    log = Logger(namespace="spartan")

    def __init__(self, chat: Chat, factory: NativeFactory, listeners: list, reactor) -> None:
        self.chat = chat
        self.factory = factory
        self.listeners = listeners  # [(description, endpoint)]
        self.reactor = reactor
        self.ports: list = []
        self.gateways: list = []  # [(description, endpoint, factory, what)]: IRC, ...
        self.factories: list = [factory]  # every protocol's, told when the server stops
        self.config_path: str | None = None  # re-read at SIGHUP
        self.require_passwords = False
        self.metrics = None  # spartan.metrics.ServerMetrics with --metrics-port

    def startService(self) -> None:
        super().startService()
        interpreter.tune_for_serving()
        reload.on_hangup(self.reactor, self.reload)
        if self.metrics is not None:
            self.metrics.start()
        self._started = self._start()

    def reload(self) -> None:
        """SIGHUP: re-read --config and apply it without dropping anyone still in it."""
        if self.config_path is None:
            self.log.info("SIGHUP: no --config to re-read; nothing changed")
            return
        try:
            reloaded = reload.reload_directory(
                self.chat, self.config_path, self.reactor, self.require_passwords
            )
        except ConfigError as e:
            self.log.error("Reload failed, nothing changed: {why}", why=e)
            return
        self.log.info(
            "Reloaded {path}: {what}", path=self.config_path, what=reload.describe(reloaded)
        )

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
        for factory in self.factories:
            factory.shutting_down = True
        if self.metrics is not None:
            self.metrics.stop()
        yield self._started
        ports, self.ports = self.ports, []
        yield DeferredList([maybeDeferred(port.stopListening) for port in ports])
        yield self.chat.stop()


def makeService(options: Options, reactor=None) -> SpartanService:
    if reactor is None:
        from twisted.internet import reactor
    directory: Directory = options["directory"]
    if not options["redis"]:
        try:  # an unusable database stops twistd here, with one clear sentence
            check_database(options["db"], options["sync"])
        except StoreError as e:
            raise CannotStart(f"--db {options['db']}: {e}") from None
    authenticator = make_authenticator(directory, reactor, options["require-passwords"])
    chat = Chat(
        directory,
        open_store(options, reactor),
        reactor,
        message_log=options["message-log"],
        authenticator=authenticator,
    )
    if options["redis"]:
        from spartan.cluster.nodes import join_cluster

        chat.peers = join_cluster(chat, options, reactor)
    factory = NativeFactory(
        chat,
        max_line=options["max-line"],
        max_pending=options["max-pending"],
        limits=options["limits"],
    )
    # A store that answers later (a commit, off the reactor thread) reports a whole
    # commit inside the listeners' batch: one write per connection, not per message.
    chat.store.output_batch = factory.batch
    listeners = [
        (description, _endpoint(reactor, "--port", description, options["reuse-port"]))
        for description in options["ports"]
    ]
    service = SpartanService(chat, factory, listeners, reactor)
    service.config_path = options["config"]
    service.require_passwords = options["require-passwords"]
    if options["irc-ports"]:
        irc = IRCGatewayFactory(
            chat,
            server_name=options["server-name"],
            max_line=options["max-line"],
            max_pending=options["max-pending"],
            limits=options["limits"],
            connections=factory.connections,  # one count for both ports
            batch=factory.batch,  # and one output batch
        )
        for description in options["irc-ports"]:
            endpoint = _endpoint(reactor, "--irc-port", description, options["reuse-port"])
            service.gateways.append((description, endpoint, irc, "IRC gateway"))
        service.factories.append(irc)
    if options["metrics-port"]:
        _serve_metrics(service, options, reactor)
    return service


def _serve_metrics(service: SpartanService, options: Options, reactor) -> None:
    from spartan import metrics

    redis_store = service.chat.store if options["redis"] else None
    service.metrics = metrics.ServerMetrics(
        service.chat, service.factories, reactor, redis_store
    )
    site = metrics.metrics_site(service.metrics, lambda: metrics.service_health(service))
    description = options["metrics-port"]
    endpoint = _endpoint(reactor, "--metrics-port", description, False)
    service.gateways.append((description, endpoint, site, "metrics"))


def _endpoint(reactor, option: str, description: str, reuse_port: bool):
    try:
        if reuse_port:
            from spartan.net.reuseport import endpoint_from_description

            return endpoint_from_description(reactor, description)
        return endpoints.serverFromString(reactor, description)
    except (ValueError, TypeError) as e:
        raise CannotStart(f"{option} {description}: {e}") from None
