"""
``twistd spartan``: command-line options and the service they build.

How an operator hears of a mistake: a bad option is one line naming it and status 2 (under
twistd, `Options.parseOptions` says it itself: twistd would print the whole --help first);
what makeService cannot build (an endpoint it cannot parse, a database it cannot open) is
`CannotStart`, one sentence and status 1; what fails once running is the service's to
report (`spartan.service`).
"""

from __future__ import annotations

import os
import sys

from twisted.internet import endpoints
from twisted.python import usage

from spartan import __version__, logs
from spartan.core.auth import make_authenticator
from spartan.core.chat import LOG_HIDDEN, LOG_OFF, LOG_TEXT, Chat
from spartan.core.directory import DEMO, ConfigError, Directory, load_directory
from spartan.irc import DEFAULT_SERVER_NAME, IRCGatewayFactory, is_server_name
from spartan.native.protocol import NativeFactory
from spartan.net.connection import DEFAULT_MAX_LINE, DEFAULT_MAX_PENDING
from spartan.net.limits import RateConfig, ServerLimits
from spartan.service import SpartanService
from spartan.store import MessageStore, StoreError
from spartan.store.sqlite import check_database, default_backup_path, store_from_options

DEFAULT_PORT = "tcp:3000"
DEFAULT_LOCAL_PORT = "tcp:3000:interface=127.0.0.1"
LOG_FORMAT_TEXT = "text"
LOG_FORMAT_JSON = "json"
EXIT_USAGE = 2
DEFAULT_DB = "spartan.sqlite3"
MEMORY = ":memory:"


def _positive(options: usage.Options, name: str) -> int:
    value = options[name]
    if isinstance(value, str):
        value = int(value) if value.isdigit() else 0
    if value <= 0:
        raise usage.UsageError(f"--{name} must be a positive whole number, not {options[name]!r}")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError("must be a number") from None


def _not_negative(text: str) -> float:
    value = _number(text)
    if not value >= 0 or value == float("inf"):
        raise ValueError("must be a number >= 0")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError("must be a whole number") from None
    if value < 0:
        raise ValueError("must be >= 0")
    return value


def _naming_the_option(parameters: list[list]) -> list[list]:
    """usage.Options says "Parameter type enforcement failed" when a coercer refuses a
    value; wrap each coercer so that the error names the option and the value instead."""

    def named(name: str, coerce):
        def coerce_named(text: str):
            try:
                return coerce(text)
            except ValueError as e:
                raise usage.UsageError(f"--{name} {text}: {e}") from None

        coerce_named.coerceDoc = getattr(coerce, "coerceDoc", "")
        return coerce_named

    return [
        [*p[:4], named(p[0], p[4])] if len(p) > 4 and p[4] is not None else p for p in parameters
    ]


def _listening_address(option: str, description: str) -> str:
    """A bare number means a TCP port on every interface; anything else is an endpoint."""
    if not description.isdigit():
        return description
    if int(description) > 65535:
        raise usage.UsageError(f"--{option} {description}: a port number is 0 to 65535")
    return f"tcp:{description}"


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run the Spartan chat server. Without --config it serves the demo users "
        "alice, bob, charlie, eve, foo, bar, baz, qux and group1 (alice, bob, charlie, eve), "
        "on 127.0.0.1 only unless --port is given."
    )
    optParameters = _naming_the_option([
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
        ["backup-path", None, None,
         "Where SIGUSR2 (spartan-admin backup) writes an online backup of the database. "
         "[default: the --db path + .backup]"],
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
        ["presence-ttl", None, 30.0, "Seconds before a dead node's users are shown offline.",
         _number],
        [
            "message-log",
            None,
            LOG_TEXT,
            f"Per-message log lines: {LOG_TEXT} (the spec's), {LOG_HIDDEN} (no text), {LOG_OFF}.",
        ],
        ["log-format", None, LOG_FORMAT_TEXT,
         f"{LOG_FORMAT_TEXT}: twistd's log lines; {LOG_FORMAT_JSON}: one JSON object a line on "
         "standard output, for a log collector (with twistd -n)."],
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
    ])  # fmt: skip
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
        self["web-ports"] = []
        self["web-origins"] = []
        self["metrics-port"] = None

    def parseOptions(self, options=None) -> None:
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            if getattr(self, "parent", None) is None:
                raise  # not under twistd: the caller reports it
            # twistd would print the whole --help before the one line that matters.
            print(f"twistd spartan: {e}; see twistd spartan --help", file=sys.stderr)
            raise SystemExit(EXIT_USAGE) from None

    def opt_version(self) -> None:
        print(f"Spartan {__version__}")
        raise SystemExit(0)

    opt_version.__doc__ = "Print Spartan's version and exit."

    def opt_port(self, description: str) -> None:
        self["ports"].append(_listening_address("port", description))

    # Set here, not as docstrings: usage keeps a docstring's indentation in --help.
    opt_port.__doc__ = (
        "Where to listen: a port number or a Twisted endpoint (tcp:3000:interface=127.0.0.1, "
        "ssl:3443:privateKey=key.pem:certKey=cert.pem, systemd:domain=INET:name=spartan). "
        "Repeat for several listeners. [default: 3000; 127.0.0.1 only without --config]"
    )

    opt_p = opt_port

    def opt_irc_port(self, description: str) -> None:
        self["irc-ports"].append(_listening_address("irc-port", description))

    opt_irc_port.__doc__ = (
        "Also accept IRC clients here: a port number or a Twisted endpoint, like --port. "
        "Repeat for several listeners. [default: none]"
    )

    def opt_web_port(self, description: str) -> None:
        self["web-ports"].append(_listening_address("web-port", description))

    opt_web_port.__doc__ = (
        "Also serve the web client here (the page and its WebSocket at /ws): a port number "
        "or a Twisted endpoint, like --port (ssl: for HTTPS). Repeat for several listeners. "
        "[default: none]"
    )

    def opt_web_origin(self, origin: str) -> None:
        from spartan.web import parse_origin

        try:
            self["web-origins"].append(parse_origin(origin))
        except ValueError as e:
            raise usage.UsageError(f"--web-origin: {e}") from None

    opt_web_origin.__doc__ = (
        "Also let pages from this origin (https://host[:port]) use the web client's "
        "WebSocket; by default only the page the server serves itself may. Repeatable."
    )

    def postOptions(self) -> None:
        if not self["ports"]:
            # The demo directory has no passwords: anyone who can connect is anyone.
            self["ports"] = [DEFAULT_PORT if self["config"] else DEFAULT_LOCAL_PORT]
        for name in ("max-line", "max-pending", "retention-messages"):
            self[name] = _positive(self, name)
        if self["redis"]:
            from spartan.store.redis import parse_redis_url

            try:
                self["redis-address"] = parse_redis_url(self["redis"])
            except ValueError as e:
                raise usage.UsageError(f"--redis: {e}") from None
        self._check_backup_path()
        if self["sync"] not in ("full", "normal"):
            raise usage.UsageError("--sync must be full or normal")
        if self["presence-ttl"] <= 0:
            raise usage.UsageError("--presence-ttl must be positive")
        if self["message-log"] not in (LOG_TEXT, LOG_HIDDEN, LOG_OFF):
            raise usage.UsageError(f"--message-log must be {LOG_TEXT}, {LOG_HIDDEN} or {LOG_OFF}")
        self._choose_log_format()
        if not is_server_name(self["server-name"]):
            raise usage.UsageError("--server-name must be letters, digits, '.' and '-'")
        try:
            self["directory"] = load_directory(self["config"]) if self["config"] else DEMO
        except ConfigError as e:
            raise usage.UsageError(f"--config {e}") from None
        if self["burst"] and not self["rate"]:
            raise usage.UsageError("--rate must be above 0 (or turn rate limiting off: --burst 0)")
        self["limits"] = ServerLimits(
            rate=RateConfig(rate=self["rate"], burst=self["burst"]),
            max_connections=self["max-connections"],
            max_per_address=self["max-per-address"],
            login_timeout=self["login-timeout"],
            idle_timeout=self["idle-timeout"],
        )

    def _check_backup_path(self) -> None:
        if self["redis"] or self["db"] == MEMORY:
            if self["backup-path"]:
                instead = "--redis, back up Redis itself" if self["redis"] else "--db :memory: there is no file"
                raise usage.UsageError(f"--backup-path backs up an SQLite --db; with {instead}")
            return
        path = self["backup-path"] or default_backup_path(self["db"])
        if os.path.realpath(path) == os.path.realpath(self["db"]):
            raise usage.UsageError(f"--backup-path {path}: that is the database itself")
        self["backup-path"] = path

    def _choose_log_format(self) -> None:
        if self["log-format"] not in (LOG_FORMAT_TEXT, LOG_FORMAT_JSON):
            raise usage.UsageError(f"--log-format must be {LOG_FORMAT_TEXT} or {LOG_FORMAT_JSON}")
        twistd = getattr(self, "parent", None)
        if self["log-format"] != LOG_FORMAT_JSON or twistd is None:
            return
        # twistd chooses its log observer from its own --logger, after parsing the
        # subcommand's options and before it builds the service: set it here.
        if twistd.get("logger") not in (None, logs.JSON_OBSERVER):
            raise usage.UsageError("--log-format json replaces twistd's --logger: give one of them")
        if not twistd.get("nodaemon") or twistd.get("logfile") not in (None, "-"):
            raise usage.UsageError(
                "--log-format json writes to standard output: run twistd -n, without --logfile"
            )
        twistd["logger"] = logs.JSON_OBSERVER


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


def exposure_notices(options: Options) -> list[str]:
    """What the operator should know about who can log in, said once at start."""
    directory: Directory = options["directory"]
    if directory is DEMO:
        listeners = options["ports"] + options["irc-ports"]
        where = "127.0.0.1 only" if listeners == [DEFAULT_LOCAL_PORT] else ", ".join(listeners)
        return [
            f"Serving the demo users, who need no password, on {where}: "
            "give --config to serve your own users."
        ]
    without = directory.users_without_password()
    if not without:
        return []
    if options["require-passwords"]:
        return [f"{len(without)} of {len(directory.users)} users have no password and cannot "
                "log in (--require-passwords)."]  # fmt: skip
    return [f"{len(without)} of {len(directory.users)} users have no password: anyone who can "
            "connect may log in as them (add hashes, or --require-passwords)."]  # fmt: skip


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
    service = SpartanService(chat, factory, reactor, notices=exposure_notices(options))
    service.config_path = options["config"]
    service.require_passwords = options["require-passwords"]
    service.backup_path = options["backup-path"]
    for description in options["ports"]:
        endpoint = _endpoint(reactor, "--port", description, options["reuse-port"])
        service.add_listener("--port", description, endpoint, factory, "server started")
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
            service.add_listener("--irc-port", description, endpoint, irc, "IRC gateway")
        service.factories.append(irc)
    if options["web-ports"]:
        from spartan.web import web_site

        site = web_site(factory, options["web-origins"], options["require-passwords"])
        for description in options["web-ports"]:
            endpoint = _endpoint(reactor, "--web-port", description, options["reuse-port"])
            service.add_listener("--web-port", description, endpoint, site, "web client")
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
    service.add_listener("--metrics-port", description, endpoint, site, "metrics")


def _endpoint(reactor, option: str, description: str, reuse_port: bool):
    try:
        if reuse_port:
            from spartan.net.reuseport import endpoint_from_description

            return endpoint_from_description(reactor, description)
        return endpoints.serverFromString(reactor, description)
    except (ValueError, TypeError) as e:
        raise CannotStart(f"{option} {description}: {e}") from None
