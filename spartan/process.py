"""
The server as a process under twistd: its exit status and its signals.

twistd starts the services before the reactor runs and exits with status 0 whenever the
reactor stops, whatever stopped it; and it leaves SIGHUP alone, so a hang-up kills a
daemon without a word and leaves its pidfile behind.  `exit_with` stops the reactor once
it runs and makes the process end with a status of our choosing *after* twistd has
cleaned up (pidfile removed, log closed): an ``atexit`` hook is the only point twistd
leaves us past that.  `on_hangup` calls back in the reactor's thread on SIGHUP (reload),
`on_backup_signal` on SIGUSR2 (an online backup of the database, sent by
``spartan-admin backup``).

Both act only once the reactor runs (``callWhenRunning``): stopping a reactor that has not
started raises, and signal handlers installed earlier would be replaced by the reactor's.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
from typing import Callable

from twisted.internet.error import ReactorNotRunning

BACKUP_SIGNAL = signal.SIGUSR2

_exit_statuses: list[int] = []


def exit_with(reactor, status: int) -> None:
    """Stop ``reactor`` as soon as it runs; the process then exits with ``status``."""

    def stop() -> None:
        if not _exit_statuses:
            atexit.register(_exit)
        _exit_statuses.append(status)
        try:
            reactor.stop()
        except ReactorNotRunning:  # already on its way down
            pass

    reactor.callWhenRunning(stop)


def _exit() -> None:
    # Last of all: twistd has returned, so only the status is left to set.
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    os._exit(max(_exit_statuses))


def on_signal(reactor, signum: int, callback: Callable[[], object]) -> None:
    """Call ``callback`` in the reactor's thread whenever the process gets ``signum``."""

    def handle(signum, frame) -> None:
        reactor.callFromThread(callback)

    reactor.callWhenRunning(signal.signal, signum, handle)


def on_hangup(reactor, callback: Callable[[], object]) -> None:
    """SIGHUP: the operator's "read your configuration again"."""
    on_signal(reactor, signal.SIGHUP, callback)


def on_backup_signal(reactor, callback: Callable[[], object]) -> None:
    """SIGUSR2 (free: twistd takes SIGUSR1 to reopen its log): "back up the database"."""
    on_signal(reactor, BACKUP_SIGNAL, callback)
