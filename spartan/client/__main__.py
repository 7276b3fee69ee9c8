"""
``spartan-chat <username> [--host HOST[:PORT]]... [--port PORT] [--tls] [--cafile PEM]``
(or ``python -m spartan.client ...``): chat from a terminal.

The password, for a server that asks for one, comes from ``SPARTAN_PASSWORD`` or is asked
for at the terminal without echo.  With ``--tls`` (implied by ``--cafile``) the server's
certificate is verified against the system's trust store, or the certificates in
``--cafile``, and must be for the host name dialled.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys

from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IReactorCore, IStreamClientEndpoint
from twisted.internet.task import react

from spartan import __version__
from spartan.native import wire
from spartan.client.app import ClientApp
from spartan.client.connection import EndpointFactory
from spartan.client.console import ConsoleTerminal
from spartan.client.flow import ClientFlow
from spartan.client.hosts import Address, parse_address, parse_port
from spartan.client.terminal import is_terminal

CONNECT_TIMEOUT = 10  # seconds, with one server
CONNECT_TIMEOUT_SEVERAL = 3  # seconds, with several: soon on to the next one
MAX_CAFILE = 1 << 20  # bytes
PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)


def _port(text: str) -> int:
    try:
        return parse_port(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def load_trust(path: str) -> object:
    """The certificates of a PEM file as a Twisted trust root; ValueError if unusable."""
    from twisted.internet import ssl

    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CAFILE + 1)
    except OSError as e:
        raise ValueError(f"cannot read {path!r}: {e.strerror or e}") from None
    if len(data) > MAX_CAFILE:
        raise ValueError(f"{path!r} is too large for a certificate file")
    certificates = []
    for pem in PEM_CERTIFICATE.findall(data):  # bounded by the file's size
        try:
            certificates.append(ssl.Certificate.loadPEM(pem))
        except Exception:
            raise ValueError(f"{path!r} holds a certificate that cannot be read") from None
    if not certificates:
        raise ValueError(f"{path!r} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    return ssl.trustRootFromCertificates(certificates)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        # "spartan-chat" as the console script, else how it was run
        prog=None if sys.argv[0].endswith("spartan-chat") else "python -m spartan.client",
        description="Chat on a Spartan server: one to one, or with your group.",
        epilog="In a chat, type /help for the commands.  SPARTAN_PASSWORD gives the password.",
    )
    parser.add_argument("username", help="who you are on the server")
    parser.add_argument("--version", action="version", version=f"Spartan {__version__}")
    parser.add_argument(
        "--host", action="append", metavar="HOST[:PORT]",
        help="the server (default: localhost); give it several times for the nodes of a"
        " cluster: they are tried in order, and the next one when one goes away",
    )  # fmt: skip
    parser.add_argument(
        "--port", type=_port, default=3000, help="the port of a --host without one (default: 3000)"
    )
    parser.add_argument(
        "--tls", action="store_true",
        help="connect with TLS and verify the server's certificate (system trust store)",
    )  # fmt: skip
    parser.add_argument(
        "--cafile", metavar="PEM",
        help="trust the certificates in this file instead (a self-signed one, a private CA);"
        " implies --tls",
    )  # fmt: skip
    options = parser.parse_args(argv)
    if not wire.is_name(options.username):
        parser.error(f"{options.username!r} is not a valid user name")
    try:
        options.hosts = [parse_address(h, options.port) for h in options.host or ["localhost"]]
    except ValueError as e:
        parser.error(f"argument --host: {e}")
    options.trust = None
    if options.cafile is not None:
        options.tls = True
        try:
            options.trust = load_trust(options.cafile)
        except ValueError as e:
            parser.error(f"argument --cafile: {e}")
    return options


def endpoint_factory(reactor: IReactorCore, options: argparse.Namespace) -> EndpointFactory:
    """An address to the endpoint dialling it: TCP, or TLS verified as the options say."""
    timeout = CONNECT_TIMEOUT_SEVERAL if len(options.hosts) > 1 else CONNECT_TIMEOUT
    trust = None
    if options.tls:
        from twisted.internet import ssl

        trust = options.trust if options.trust is not None else ssl.platformTrust()

    def endpoint_for(address: Address) -> IStreamClientEndpoint:
        endpoint = HostnameEndpoint(reactor, address.host, address.port, timeout=timeout)
        if trust is None:
            return endpoint
        from twisted.internet import ssl
        from twisted.internet.endpoints import wrapClientTLS

        return wrapClientTLS(ssl.optionsForClientTLS(address.host, trustRoot=trust), endpoint)

    return endpoint_for


async def main(reactor: IReactorCore, options: argparse.Namespace) -> None:
    flow = ClientFlow(
        options.username,
        hosts=options.hosts,
        password=os.environ.get("SPARTAN_PASSWORD"),
        echo=not is_terminal(0),
        can_ask_password=is_terminal(0),
    )
    app = ClientApp(reactor, flow, endpoint_factory(reactor, options))

    def on_sigint(_signum, _frame) -> None:
        # Ctrl-C: leave cleanly (what was typed is sent first); twice: leave at once.
        reactor.callFromThread(app.interrupt)

    # After the reactor installed its own handlers, which would stop it without a word.
    reactor.callWhenRunning(signal.signal, signal.SIGINT, on_sigint)
    if isinstance(app.terminal, ConsoleTerminal):
        resized = app.terminal.resized
        signal.signal(signal.SIGWINCH, lambda _signum, _frame: reactor.callFromThread(resized))
    status = await app.start()
    if status:
        raise SystemExit(status)


def run(argv: list[str] | None = None) -> None:
    options = parse_args(sys.argv[1:] if argv is None else argv)
    react(main, [options])


if __name__ == "__main__":
    run()
