"""
Wiring: the flow in the middle, the terminal and the server connection around it.

`ClientApp` feeds every event to the `ClientFlow` and carries out the effects it returns:
screen effects go to the terminal, commands to the connection, timers to the reactor.
It holds no chat logic of its own.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorCore
from twisted.internet.stdio import StandardIO

from spartan.client.console import ConsoleTerminal, terminal_columns
from spartan.client.connection import Backoff, EndpointFactory, ServerConnection
from spartan.client.flow import (
    ClientFlow,
    Connect,
    Effect,
    ErasePrompt,
    Exit,
    Newline,
    Prompt,
    Reconnect,
    Send,
    Show,
    StartTimer,
)
from spartan.client.terminal import FileFlags, TerminalProtocol, is_terminal
from spartan.native import wire

CLOSE_TIMEOUT = 2.0  # seconds to wait for the server connection, then stdout, to close


class ClientApp:
    def __init__(
        self,
        reactor: IReactorCore,
        flow: ClientFlow,
        endpoints: EndpointFactory,
        *,
        stdin: int = 0,
        stdout: int = 1,
        backoff: Backoff | None = None,
    ) -> None:
        self._reactor = reactor
        self.flow = flow
        self._stdin = stdin
        self._stdout = stdout
        self.done: Deferred[int] = Deferred()
        self._flags = FileFlags(stdin, stdout)
        self.terminal: TerminalProtocol | ConsoleTerminal
        if is_terminal(stdin) and is_terminal(stdout):
            self.terminal = ConsoleTerminal(
                self._on_lines, self._on_eof, self.interrupt,
                choices=flow.completions, stdin_fd=stdin, columns=lambda: terminal_columns(stdout),
            )  # fmt: skip
        else:  # piped: lines as they come, for scripts
            self.terminal = TerminalProtocol(
                self._on_lines,
                self._on_eof,
                self.interrupt,
                tty=is_terminal(stdout),
                stdin_fd=stdin if is_terminal(stdin) else None,
            )
        self.connection = ServerConnection(reactor, endpoints, self, backoff)
        self._timers: dict[str, IDelayedCall] = {}
        self._exiting = False
        self._stdio: StandardIO | None = None
        self._trigger: object | None = None

    def start(self) -> Deferred[int]:
        """Start reading the terminal and connecting; fires with the exit status."""
        self._stdio = StandardIO(self.terminal.stdio_protocol(), self._stdin, self._stdout, reactor=self._reactor)
        # Stopped some other way (SIGTERM): still give the terminal back as it was.
        self._trigger = self._reactor.addSystemEventTrigger(
            "before", "shutdown", self._restore_terminal
        )
        self._apply(self.flow.on_start())
        return self.done

    def interrupt(self) -> None:
        """Ctrl-C, or stdout went away."""
        self._apply(self.flow.on_interrupt())

    # -- ConnectionListener -----------------------------------------------------------------

    def connected(self) -> None:
        self._apply(self.flow.on_connected())

    def line_received(self, line: wire.ServerLine | wire.WireError) -> None:
        self._apply(self.flow.on_server_line(line))

    def disconnected(self, why: str, *, fatal: bool = False) -> None:
        self._apply(self.flow.on_disconnected(why, fatal=fatal))

    def connect_failed(self, why: str, *, fatal: bool = False) -> None:
        self._apply(self.flow.on_connect_failed(why, fatal=fatal))

    # -- terminal ---------------------------------------------------------------------------

    def _on_lines(self, lines: list[str]) -> None:
        self._apply(self.flow.on_input(*lines))

    def _on_eof(self) -> None:
        self._apply(self.flow.on_eof())

    # -- effects ----------------------------------------------------------------------------

    def _apply(self, effects: list[Effect]) -> None:
        screen: list[Effect] = []
        for effect in effects:
            if isinstance(effect, (Show, Prompt, Newline, ErasePrompt)):
                screen.append(effect)
                continue
            if screen:
                self.terminal.show(screen)
                screen = []
            match effect:
                case Send(command):
                    self.connection.send(command)
                case Connect(address):
                    self.connection.connect(address)
                case Reconnect(address):
                    self.connection.reconnect(address)
                case StartTimer(name, seconds):
                    self._start_timer(name, seconds)
                case Exit(status):
                    self._exit(status)
        if screen:
            self.terminal.show(screen)

    def _start_timer(self, name: str, seconds: float) -> None:
        old = self._timers.pop(name, None)
        if old is not None and old.active():
            old.cancel()
        self._timers[name] = self._reactor.callLater(seconds, self._timer, name)

    def _timer(self, name: str) -> None:
        self._timers.pop(name, None)
        self._apply(self.flow.on_timer(name))

    def _exit(self, status: int) -> None:
        if self._exiting:
            return
        self._exiting = True
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()
        closed = self.connection.close()
        closed.addTimeout(CLOSE_TIMEOUT, self._reactor)
        closed.addErrback(lambda _: None)
        closed.addCallback(lambda _: self._close_terminal())
        closed.addCallback(lambda _: self._finished(status))

    def _finished(self, status: int) -> None:
        if self._trigger is not None:
            self._reactor.removeSystemEventTrigger(self._trigger)
            self._trigger = None
        self.done.callback(status)

    def _close_terminal(self) -> Deferred[None]:
        self.terminal.restore()
        if self._stdio is None or self.terminal.closed:
            self._flags.restore()
            return succeed(None)
        flushed = self.terminal.when_closed()
        self._stdio.loseConnection()  # writes what is pending, then closes
        flushed.addTimeout(CLOSE_TIMEOUT, self._reactor)
        flushed.addErrback(lambda _: None)
        flushed.addCallback(lambda _: self._flags.restore())
        return flushed

    def _restore_terminal(self) -> None:
        self.terminal.restore()
        self._flags.restore()
