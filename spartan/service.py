"""
The running server: opens the store, then starts every listener; stops them, then closes
the store.

A listener is any endpoint and factory the options asked for (the native protocol, the IRC
gateway, and whatever kinds come later): each one that cannot start is fatal.  The operator
asked for it, and a server that keeps running while listening on nothing looks healthy to
systemd and to a monitor.  So a store that cannot open, or a listener that cannot listen,
logs one critical sentence that names it and why, and the process exits with status 1
(`spartan.process.exit_with`).

SIGHUP calls `SpartanService.reload`.  Nothing can be reloaded yet; the handler is there so
that a hang-up no longer kills the daemon, and `reload` is where re-reading the directory
will go.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

from twisted.application import service
from twisted.internet.defer import DeferredList, inlineCallbacks, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from spartan import interpreter, process
from spartan.core.chat import Chat

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

    def add_listener(self, option: str, description: str, endpoint, factory, what: str) -> None:
        self.listeners.append(Listener(option, description, endpoint, factory, what))

    def startService(self) -> None:
        super().startService()
        interpreter.tune_for_serving()
        for notice in self.notices:
            self.log.warn("{notice}", notice=notice)
        process.on_hangup(self.reactor, self.reload)
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
        """SIGHUP: re-read what can change while running.  Nothing can yet."""
        self.log.info("Reloading is not configured: SIGHUP changes nothing; restart the "
                      "server to apply a changed --config.")  # fmt: skip

    @inlineCallbacks
    def stopService(self):
        super().stopService()
        yield self._started
        ports, self.ports = self.ports, []
        yield DeferredList([maybeDeferred(port.stopListening) for port in ports])
        yield self.chat.stop()
