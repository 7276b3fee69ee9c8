"""
``python -m spartan.client <username> [--host HOST] [--port PORT]``: chat from a terminal.

The password, for a server that asks for one, comes from ``SPARTAN_PASSWORD`` or is asked
for at the terminal without echo.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IReactorCore
from twisted.internet.task import react

from spartan import wire
from spartan.client.app import ClientApp
from spartan.client.flow import ClientFlow
from spartan.client.terminal import is_terminal

CONNECT_TIMEOUT = 10  # seconds


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return port


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m spartan.client",
        description="Chat on a Spartan server: one to one, or with your group.",
        epilog="In a chat, type /help for the commands.  SPARTAN_PASSWORD gives the password.",
    )
    parser.add_argument("username", help="who you are on the server")
    parser.add_argument("--host", default="localhost", help="the server (default: localhost)")
    parser.add_argument("--port", type=_port, default=3000, help="its port (default: 3000)")
    options = parser.parse_args(argv)
    if not wire.is_name(options.username):
        parser.error(f"{options.username!r} is not a valid user name")
    return options


async def main(reactor: IReactorCore, options: argparse.Namespace) -> None:
    flow = ClientFlow(
        options.username,
        host=options.host,
        port=options.port,
        password=os.environ.get("SPARTAN_PASSWORD"),
        echo=not is_terminal(0),
        can_ask_password=is_terminal(0),
    )
    endpoint = HostnameEndpoint(reactor, options.host, options.port, timeout=CONNECT_TIMEOUT)
    app = ClientApp(reactor, flow, endpoint)

    def on_sigint(_signum, _frame) -> None:
        # Ctrl-C: leave cleanly (what was typed is sent first); twice: leave at once.
        reactor.callFromThread(app.interrupt)

    # After the reactor installed its own handlers, which would stop it without a word.
    reactor.callWhenRunning(signal.signal, signal.SIGINT, on_sigint)
    status = await app.start()
    if status:
        raise SystemExit(status)


def run(argv: list[str] | None = None) -> None:
    options = parse_args(sys.argv[1:] if argv is None else argv)
    react(main, [options])


if __name__ == "__main__":
    run()
