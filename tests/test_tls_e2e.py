"""End to end over TLS: a real ``twistd spartan`` with a TLS listener and a plain one, a
certificate made here, and clients that verify it (Python's ssl, and Twisted's own TLS
client built the way the terminal client is meant to build it).
"""

import os
import queue
import re
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest
import pytest_twisted

from spartan.passwd import hash_password
from tests.tls_support import make_certificate

PASSWORD = "tls pass phrase"
TIMEOUT = 20


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls")
    key, cert = make_certificate(str(tmp))
    _, other_cert = make_certificate(str(tmp), "impostor")
    config = tmp / "spartan.toml"
    config.write_text(
        'users = ["alice", "bob"]\n[passwords]\n' f'alice = "{hash_password(PASSWORD)}"\n'
    )
    command = [
        sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
        "-n", "--pidfile=", "spartan",
        "--config", str(config),
        "--port", f"ssl:0:privateKey={key}:certKey={cert}:interface=127.0.0.1",
        "--port", "tcp:0:interface=127.0.0.1",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        command, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
    )
    output: queue.Queue = queue.Queue()
    log: list[str] = []

    def pump():
        for raw in process.stdout:
            output.put(raw.decode("utf-8", "replace"))

    threading.Thread(target=pump, daemon=True).start()
    try:
        ports = []
        deadline = time.monotonic() + TIMEOUT
        while len(ports) < 2:
            remaining = deadline - time.monotonic()
            assert remaining > 0 and process.poll() is None, "twistd did not start:\n" + "".join(log)
            try:
                line = output.get(timeout=remaining)
            except queue.Empty:
                continue
            log.append(line)
            match = re.search(r"Started server started on port (\d+)", line)
            if match:
                ports.append(int(match.group(1)))
        yield dict(tls=ports[0], plain=ports[1], cert=cert, other_cert=other_cert, log=log,
                   output=output)  # fmt: skip
    finally:
        process.terminate()
        try:
            process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=TIMEOUT)


class LineClient:
    def __init__(self, sock):
        self.sock = sock
        self.sock.settimeout(TIMEOUT)
        self.buffer = b""

    def line(self) -> str:
        while b"\n" not in self.buffer:
            data = self.sock.recv(4096)
            if not data:
                raise EOFError(self.buffer)
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode().rstrip("\r")

    def ask(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.line()

    def close(self):
        self.sock.close()


def tls_client(port, cafile=None, hostname="localhost") -> LineClient:
    context = ssl.create_default_context(cafile=cafile)  # system trust store without cafile
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    try:
        return LineClient(context.wrap_socket(raw, server_hostname=hostname))
    except BaseException:
        raw.close()
        raise


def test_tls_login_with_password(server):
    client = tls_client(server["tls"], cafile=server["cert"])
    try:
        assert client.sock.version() in ("TLSv1.2", "TLSv1.3")
        assert client.line().startswith("* HELLO Spartan")
        assert client.ask("LOGIN alice").startswith("ERR password-required")
        assert client.ask("LOGIN alice wrong").startswith("ERR bad-credentials")
        assert client.ask("LOGIN mallory wrong").startswith("ERR bad-credentials")
        assert client.ask(f"LOGIN alice {PASSWORD}") == "OK LOGIN alice"
        assert client.ask("USERS").startswith("OK USERS alice=online")
    finally:
        client.close()


def test_plain_listener_alongside(server):
    raw = socket.create_connection(("127.0.0.1", server["plain"]), timeout=TIMEOUT)
    client = LineClient(raw)
    try:
        assert client.line().startswith("* HELLO Spartan")
        assert client.ask("LOGIN bob") == "OK LOGIN bob"
    finally:
        client.close()


def test_untrusted_certificate_is_refused(server):
    # Not in the system trust store: a self-signed certificate is refused.
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_client(server["tls"])
    # Trusting another certificate does not help either.
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_client(server["tls"], cafile=server["other_cert"])


def test_wrong_host_name_is_refused(server):
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch|match"):
        tls_client(server["tls"], cafile=server["cert"], hostname="chat.example.com")


def test_no_password_reaches_the_log(server):
    client = tls_client(server["tls"], cafile=server["cert"])
    try:
        client.line()
        client.ask("LOGIN alice not-the-password-xyz")
        client.ask(f"LOGIN alice {PASSWORD}")
    finally:
        client.close()
    deadline = time.monotonic() + TIMEOUT
    log = server["log"]
    while time.monotonic() < deadline and not any("Failed login as alice" in l for l in log):
        try:
            log.append(server["output"].get(timeout=0.5))
        except queue.Empty:
            pass
    text = "".join(log)
    assert "Failed login as alice from 127.0.0.1" in text
    assert "not-the-password-xyz" not in text and PASSWORD not in text and "scrypt$" not in text


# -- the recipe for the terminal client's --tls / --cafile --------------------------------


def client_tls_endpoint(reactor, host, port, cafile=None):
    """What the client should do: verify against --cafile, or the system trust store."""
    from twisted.internet import ssl as tssl
    from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS

    if cafile:
        with open(cafile, "rb") as f:
            trust = tssl.Certificate.loadPEM(f.read())
    else:
        trust = tssl.platformTrust()
    options = tssl.optionsForClientTLS(host, trustRoot=trust)
    return wrapClientTLS(options, HostnameEndpoint(reactor, host, port))


def _twisted_exchange(server, cafile):
    from twisted.internet import defer, protocol, reactor
    from twisted.protocols.basic import LineReceiver

    class Client(LineReceiver):
        delimiter = b"\n"

        def connectionMade(self):
            self.lines = []
            self.done = defer.Deferred()

        def lineReceived(self, line):
            self.lines.append(line.decode().rstrip("\r"))
            if len(self.lines) == 1:
                self.sendLine(f"LOGIN alice {PASSWORD}".encode())
            else:
                self.transport.loseConnection()

        def connectionLost(self, reason):
            self.done.callback((self.lines, reason))

    endpoint = client_tls_endpoint(reactor, "localhost", server["tls"], cafile)
    factory = protocol.Factory.forProtocol(Client)
    return endpoint.connect(factory).addCallback(lambda p: p.done)


@pytest_twisted.inlineCallbacks
def test_twisted_client_recipe_trusts_cafile(server):
    lines, reason = yield _twisted_exchange(server, server["cert"])
    assert lines[0].startswith("* HELLO") and lines[1] == "OK LOGIN alice"


@pytest_twisted.inlineCallbacks
def test_twisted_client_recipe_refuses_unknown_certificate(server):
    from OpenSSL.SSL import Error as TLSError

    lines, reason = yield _twisted_exchange(server, None)  # system trust: self-signed refused
    assert lines == []
    assert reason.check(TLSError)
    assert "certificate verify failed" in str(reason.value)
