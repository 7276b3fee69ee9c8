"""
The running server: opens the store, then starts every listener; stops them, then closes
the store.

A listener is any endpoint and factory the options asked for (the native protocol, the IRC
gateway, and whatever kinds come later): each one that cannot start is fatal.  The operator
asked for it, and a server that keeps running while listening on nothing looks healthy to
systemd and to a monitor.  So a store that cannot open, or a listener that cannot listen,
logs one critical sentence that names it and why, and the process exits with status 1
(`spartan.process.exit_with`).

SIGHUP calls `SpartanService.reload`: the directory file (`--config`) is read again and
applied without dropping anyone still in it (`spartan.reload`); a file that cannot be used
changes nothing and says why in one line.

SIGUSR2 calls `SpartanService.backup`: the SQLite store copies its database to
``backup_path`` while serving (`spartan.store.sqlite.SQLiteStore.backup`) and one line says
where and how many messages, or why not.  ``spartan-admin backup`` sends it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

from twisted.application import service
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks, maybeDeferred, succeed
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from spartan import interpreter, process, reload
from spartan.core.chat import Chat
from spartan.core.directory import ConfigError
from spartan.store import StoreError

EXIT_CANNOT_START = 1


@dataclass(frozen=True)
class Listener:
    option: str  # the command-line option that asked for it: --port, --irc-port, ...
    description: str  # the endpoint, as the operator wrote it
    endpoint: object  # IStreamServerEndpoint
    factory: object  # the protocol factory it serves
    what: str  # for the start line: "Started {what} on port N"


def why_not_listening(error: BaseException) -> str:
    """The reason an endpoint could not listen, in the operating system's words."""
    if isinstance(error, CannotListenError) and error.socketError is not None:
        reason = getattr(error.socketError, "strerror", None) or str(error.socketError)
    else:
        reason = str(error) or type(error).__name__
    return reason.rstrip(".")


class SpartanService(service.Service):
    log = Logger(namespace="spartan")

    def __init__(
        self,
        chat: Chat,
        factory,
        reactor,
        *,
        notices: list[str] = (),
        stop_process: Callable[[int], None] | None = None,
    ) -> None:
        self.chat = chat
        self.factory = factory  # the native protocol's: its connections, its batching
        self.reactor = reactor
        self.listeners: list[Listener] = []
        self.notices = list(notices)  # warnings for the operator, logged at start
        self.stop_process = stop_process or functools.partial(process.exit_with, reactor)
        self.ports: list = []
        self.factories: list = [factory]  # every protocol's, told when the server stops
        self.config_path: str | None = None  # re-read at SIGHUP
        self.require_passwords = False
        self.metrics = None  # spartan.metrics.ServerMetrics with --metrics-port
        self.backup_path: str | None = None  # None: the store has no file to back up

    def add_listener(self, option: str, description: str, endpoint, factory, what: str) -> None:
        self.listeners.append(Listener(option, description, endpoint, factory, what))

    def startService(self) -> None:
        super().startService()
        interpreter.tune_for_serving()
        for notice in self.notices:
            self.log.warn("{notice}", notice=notice)
        process.on_hangup(self.reactor, self.reload)
        process.on_backup_signal(self.reactor, self.backup)
        if self.metrics is not None:
            self.metrics.start()
        self._started = self._start()

    @inlineCallbacks
    def _start(self):
        try:
            yield self.chat.start()
        except Exception as e:
            self._cannot_start(f"Cannot open the message store: {e}")
            return
        for listener in self.listeners:
            try:
                port = yield listener.endpoint.listen(listener.factory)
            except Exception as e:
                self._cannot_start(
                    f"Cannot listen on {listener.option} {listener.description}: "
                    f"{why_not_listening(e)}."
                )
                return
            self.ports.append(port)
            self.log.info("Started {what} on port {port}", what=listener.what,
                          port=port.getHost().port)  # fmt: skip

    def _cannot_start(self, sentence: str) -> None:
        self.log.critical("{sentence}", sentence=sentence)
        self.stop_process(EXIT_CANNOT_START)

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

    def backup(self) -> Deferred[None]:
        """SIGUSR2: copy the database to ``backup_path`` while serving; log the outcome."""
        if self.backup_path is None:
            self.log.warn(
                "SIGUSR2: this server keeps no database file to back up (--db :memory:, or "
                "--redis: back up Redis itself); nothing written"
            )
            return succeed(None)
        path = self.backup_path

        def written(count: int) -> None:
            self.log.info("Backup written to {path} ({count} messages)", path=path, count=count)

        def failed(failure) -> None:
            if failure.check(StoreError):
                self.log.error("Backup to {path} failed: {why}", path=path, why=failure.value)
            else:
                self.log.failure("Backup to {path} failed", failure, path=path)

        return maybeDeferred(self.chat.store.backup, path).addCallbacks(written, failed)

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
