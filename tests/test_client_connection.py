"""The client's adapters: the server connection (with backoff), the terminal, the wiring."""

from __future__ import annotations

import os

import pytest
import pytest_twisted
from twisted.internet import defer, error, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from spartan.native import wire
from spartan.client.__main__ import parse_args
from spartan.client.app import ClientApp
from spartan.client.connection import (
    STABLE,
    Backoff,
    Pacer,
    ServerConnection,
    describe,
    is_fatal,
)
from spartan.client.flow import ClientFlow, ErasePrompt, Newline, Prompt, Show
from spartan.client.hosts import Address, HostRotation, parse_address
from spartan.client.terminal import MAX_INPUT_LINE, TerminalProtocol, render

# -- backoff ------------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_maximum_and_resets():
    backoff = Backoff(initial=0.5, maximum=4, jitter=0)
    assert [backoff.next() for _ in range(6)] == [0.5, 1, 2, 4, 4, 4]
    backoff.reset()
    assert backoff.next() == 0.5


def test_backoff_jitter_only_shortens():
    backoff = Backoff(initial=10, maximum=10, jitter=0.2, rng=lambda: 1.0)
    assert backoff.next() == pytest.approx(8.0)


# -- the connection, with a fake endpoint and a Clock --------------------------------------------


class FakeEndpoint:
    """Each connect() is answered by the test: succeed() or fail()."""

    def __init__(self) -> None:
        self.attempts: list[tuple[defer.Deferred, protocol.Factory]] = []

    def connect(self, factory):
        d = defer.Deferred(lambda d: d.errback(error.ConnectingCancelledError(None)))
        self.attempts.append((d, factory))
        return d

    def succeed(self) -> tuple[protocol.Protocol, StringTransport]:
        d, factory = self.attempts[-1]
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        d.callback(proto)
        return proto, transport

    def fail(self, why=None) -> None:
        d, _factory = self.attempts[-1]
        d.errback(why or error.ConnectionRefusedError())


class Listener:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def connected(self):
        self.events.append(("connected",))

    def line_received(self, line):
        self.events.append(("line", line))

    def disconnected(self, why, *, fatal=False):
        self.events.append(("disconnected", why) + (("fatal",) if fatal else ()))

    def connect_failed(self, why, *, fatal=False):
        self.events.append(("failed", why) + (("fatal",) if fatal else ()))


def make_connection():
    clock, endpoint, listener = Clock(), FakeEndpoint(), Listener()
    backoff = Backoff(initial=1, maximum=8, jitter=0)
    connection = ServerConnection(clock, lambda address: endpoint, listener, backoff)
    connection.address = Address("localhost", 3000)
    return clock, endpoint, listener, connection


def test_lines_in_and_commands_out():
    clock, endpoint, listener, connection = make_connection()
    connection.connect()
    proto, transport = endpoint.succeed()
    assert listener.events == [("connected",)]
    proto.dataReceived(b"* HELLO Spartan 1 x hi\r\nOK LOG")
    proto.dataReceived(b"IN alice\n")
    assert listener.events[1:] == [
        ("line", wire.Push("HELLO", "Spartan 1 x hi")),
        ("line", wire.Reply(True, "LOGIN", "alice")),
    ]
    connection.send(wire.Send("bob", "hi there", "c1"))
    assert transport.value() == b"SEND id=c1 bob hi there\r\n"


def test_reconnect_waits_the_backoff_delay():
    clock, endpoint, listener, connection = make_connection()
    connection.connect()
    endpoint.fail()
    assert listener.events == [("failed", "Connection refused")]
    assert connection.reconnect() == 1
    assert connection.reconnect() is None  # one attempt at a time
    assert len(endpoint.attempts) == 1
    clock.advance(0.99)
    assert len(endpoint.attempts) == 1
    clock.advance(0.01)
    assert len(endpoint.attempts) == 2
    endpoint.fail()
    assert connection.reconnect() == 2
    clock.advance(2)
    proto, transport = endpoint.succeed()
    assert listener.events[-1] == ("connected",)

    # A connection that lasted resets the backoff; one that did not does not.
    proto.dataReceived(b"* HELLO Spartan 1 test hi\r\n")
    clock.advance(STABLE)
    proto.connectionLost(Failure(error.ConnectionDone()))
    assert listener.events[-1] == ("disconnected", "The server closed the connection")
    assert connection.reconnect() == 1
    clock.advance(1)
    proto, transport = endpoint.succeed()
    proto.connectionLost(Failure(error.ConnectionLost()))
    assert connection.reconnect() == 2
    # Closed before the greeting every Spartan server sends first: what a TLS port does.
    assert listener.events[-1] == (
        "disconnected",
        "The server closed the connection without a greeting"
        " (is it a TLS port? Then use --tls or --cafile)",
    )


def test_commands_are_paced_below_the_servers_rate():
    clock, endpoint, listener = Clock(), FakeEndpoint(), Listener()
    connection = ServerConnection(
        clock, lambda address: endpoint, listener, pacer=Pacer(rate=4, burst=3)
    )
    connection.connect(Address("localhost", 3000))
    proto, transport = endpoint.succeed()
    for n in range(6):
        connection.send(wire.Ping(str(n)))
    assert transport.value() == b"PING 0\r\nPING 1\r\nPING 2\r\n"
    clock.advance(0.25)
    assert transport.value().endswith(b"PING 3\r\n")
    clock.advance(0.5)
    assert transport.value().endswith(b"PING 4\r\nPING 5\r\n")
    connection.send(wire.Ping("6"))
    proto.connectionLost(Failure(error.ConnectionLost()))  # what waits is dropped
    clock.advance(10)
    assert b"PING 6" not in transport.value()
    assert clock.getDelayedCalls() == []


def test_pacer():
    pacer = Pacer(rate=2, burst=2)
    assert [pacer.take(0), pacer.take(0)] == [0, 0]
    assert pacer.take(0) == 0.5
    assert pacer.take(0.5) == 0
    pacer.reset()
    assert pacer.take(0.5) == 0


def test_close_stops_trying_and_fires_when_closed():
    clock, endpoint, listener, connection = make_connection()
    connection.connect()
    proto, transport = endpoint.succeed()
    closed = connection.close()
    assert transport.disconnecting and not closed.called
    proto.connectionLost(Failure(error.ConnectionDone()))
    assert closed.called
    assert listener.events == [("connected",)]  # closing on purpose is not a loss
    assert connection.reconnect() is None


def test_close_cancels_a_pending_attempt():
    clock, endpoint, listener, connection = make_connection()
    connection.connect()
    closed = connection.close()
    assert closed.called and endpoint.attempts[0][0].called
    assert listener.events == []


def test_overlong_server_line_drops_the_connection():
    clock, endpoint, listener, connection = make_connection()
    connection.connect()
    proto, transport = endpoint.succeed()
    proto.dataReceived(b"x" * (proto.MAX_LENGTH + 10))
    assert transport.disconnecting


def test_describe():
    assert describe(Failure(error.ConnectionRefusedError())) == "Connection refused"
    assert describe(Failure(error.DNSLookupError("nowhere"))) == "Unknown host"
    assert describe(error.TimeoutError()) == "Timed out"
    assert describe(ValueError("odd thing")) == "Odd thing"


# -- the terminal ---------------------------------------------------------------------------


def test_render_makes_text_safe_and_keeps_its_own_sequences():
    effects = [Show("[bob] \x1b[2Jhi"), Prompt("[alice] > "), ErasePrompt(), Newline()]
    assert render(effects, tty=True) == b"[bob] ^[[2Jhi\n[alice] > \r\x1b[K\n"
    assert render(effects, tty=False) == b"[bob] ^[[2Jhi\n[alice] > \n\n"


class TerminalRecorder:
    def __init__(self) -> None:
        self.lines: list[list[str]] = []
        self.eof = 0
        self.output_closed = 0
        self.proto = TerminalProtocol(
            self.lines.append, self._eof, self._closed, tty=False, stdin_fd=None
        )
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)

    def _eof(self):
        self.eof += 1

    def _closed(self):
        self.output_closed += 1


def test_terminal_lines_crlf_and_bad_utf8():
    t = TerminalRecorder()
    t.proto.dataReceived(b"one\r\ntw")
    t.proto.dataReceived(b"o\nthr\xffee\nfour\n")
    assert t.lines == [["one"], ["two", "thr\ufffdee", "four"]]


def test_terminal_end_of_input_keeps_a_last_line_without_newline():
    t = TerminalRecorder()
    t.proto.dataReceived(b"typed before ctrl-d")
    t.proto.readConnectionLost()
    t.proto.connectionLost()
    assert t.lines == [["typed before ctrl-d"]]
    assert t.eof == 1


def test_terminal_overlong_line_is_cut_and_the_rest_dropped():
    t = TerminalRecorder()
    t.proto.dataReceived(b"a" * (MAX_INPUT_LINE + 5))
    t.proto.dataReceived(b"b" * 10 + b"\nnext\n")
    assert t.lines == [["a" * MAX_INPUT_LINE], ["next"]]


def test_terminal_output_closed():
    t = TerminalRecorder()
    t.proto.writeConnectionLost()
    t.proto.show([Show("nobody reads this")])
    assert t.output_closed == 1 and t.transport.value() == b""


# -- the whole client in-process: pipes for stdio, a loopback server ---------------------------


class ScriptedServer(protocol.Protocol):
    """Answers like a Spartan server, just enough for one short session."""

    def connectionMade(self):
        self.factory.connections.append(self)
        self.buffer = b""
        self.transport.write(b"* HELLO Spartan 1 test hi\r\n")

    def dataReceived(self, data):
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            command = wire.parse_command(line)
            self.factory.received.append(command)
            match command:
                case wire.Login(user):
                    self.transport.write(wire.format_ok("LOGIN", user))
                case wire.Users():
                    self.transport.write(wire.format_ok("USERS", "alice=online", "bob=online"))
                case wire.Groups():
                    self.transport.write(wire.format_ok("GROUPS"))
                case wire.Unread():
                    self.transport.write(wire.format_ok("UNREAD"))
                case wire.Open(target):
                    self.transport.write(wire.format_message("MSG", 5, 0, target, target, "hi"))
                    self.transport.write(wire.format_ok("OPEN", target, "1"))
                case wire.Ack(target, upto):
                    self.transport.write(wire.format_ok("ACK", target, str(upto)))
                case wire.Send():
                    self.transport.write(wire.format_ok("SENT", "6", "2026-11-24T11:36:17.123Z"))
                case wire.Quit():
                    self.transport.write(wire.format_ok("BYE"))
                    self.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_app_runs_a_session_over_pipes():
    from twisted.internet import reactor

    factory = protocol.Factory.forProtocol(ScriptedServer)
    factory.connections, factory.received = [], []
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    in_read, in_write = os.pipe()
    out_read, out_write = os.pipe()
    try:
        flow = ClientFlow("alice", port=port.getHost().port, echo=True, can_ask_password=False)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port, timeout=5)
        app = ClientApp(reactor, flow, lambda address: endpoint, stdin=in_read, stdout=out_write)
        done = app.start()
        os.write(in_write, b"1\nbob\nhello\n")
        os.close(in_write)
        in_write = -1
        status = await done.addTimeout(10, reactor)
        assert status == 0
        output = b""
        for _ in range(100):  # bounded: until the pipe is drained
            chunk = os.read(out_read, 65536)
            output += chunk
            if len(chunk) < 65536:
                break
        lines = output.decode().splitlines()
        assert lines[0] == f"[Spartan] Connected to Spartan Server at port {port.getHost().port}."
        assert lines[-3:] == ["[bob] hi", "[alice] > hello", "[alice] > "]
        assert factory.received == [
            wire.Login("alice"), wire.Users(), wire.Groups(), wire.Unread(), wire.Open("bob"),
            wire.Ack("bob", 5), wire.Send("bob", "hello", factory.received[6].client_id),
            wire.Quit(),
        ]  # fmt: skip
    finally:
        await port.stopListening()
        for connection in factory.connections:
            connection.transport.abortConnection()
        for fd in (in_read, in_write, out_read, out_write):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass


# -- addresses, and the order servers are tried in ---------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("chat.lan", Address("chat.lan", 3000)),
        ("chat.lan:4000", Address("chat.lan", 4000)),
        ("127.0.0.1:1", Address("127.0.0.1", 1)),
        ("[::1]:3443", Address("::1", 3443)),
        ("[::1]", Address("::1", 3000)),
        ("::1", Address("::1", 3000)),
    ],
)
def test_parse_address(text, expected):
    assert parse_address(text, 3000) == expected


@pytest.mark.parametrize("text", ["", ":3000", "host:", "host:0", "host:70000", "host:x",
                                  "[::1", "[::1]x", "[]:3000", "a b", "host:٣"])  # fmt: skip
def test_parse_address_refuses(text):
    with pytest.raises(ValueError):
        parse_address(text, 3000)


def test_address_text():
    assert str(Address("localhost", 3000)) == "localhost:3000"
    assert str(Address("::1", 3000)) == "[::1]:3000"


def test_rotation_at_start_tries_each_once():
    a, b, c = Address("a", 1), Address("b", 2), Address("c", 3)
    rotation = HostRotation([a, b, c])
    assert rotation.current == a and rotation.several
    assert rotation.failed() == b
    assert rotation.failed() == c
    assert rotation.failed() is None  # a whole round failed
    assert rotation.current == a


def test_rotation_after_a_loss_moves_on_and_login_resets_the_count():
    a, b = Address("a", 1), Address("b", 2)
    rotation = HostRotation([a, b])
    rotation.succeeded()
    assert rotation.lost() == b
    assert rotation.failed() == a
    assert rotation.failed() is None
    rotation.succeeded()
    assert rotation.failed() == a  # b failed, once since the login
    single = HostRotation([a])
    assert not single.several and single.failed() is None and single.current == a
    with pytest.raises(ValueError):
        HostRotation([])


def test_each_attempt_dials_the_address_given():
    clock, endpoint, listener = Clock(), FakeEndpoint(), Listener()
    dialled = []

    def endpoints(address):
        dialled.append(address)
        return endpoint

    connection = ServerConnection(clock, endpoints, listener, Backoff(initial=1, jitter=0))
    connection.connect(Address("a", 1))
    endpoint.fail()
    connection.connect(Address("b", 2))
    endpoint.fail()
    connection.reconnect(Address("a", 1))
    clock.advance(1)
    endpoint.fail()
    connection.reconnect()  # the last address again
    clock.advance(2)
    assert dialled == [Address("a", 1), Address("b", 2), Address("a", 1), Address("a", 1)]


def test_an_endpoint_that_raises_is_a_failed_attempt():
    clock, listener = Clock(), Listener()

    def endpoints(address):
        raise ValueError("no such thing")

    connection = ServerConnection(clock, endpoints, listener)
    connection.connect(Address("a", 1))
    assert listener.events == [("failed", "No such thing")]


# -- TLS failures are described, and never retried ------------------------------------------------


def test_certificate_failures_are_fatal_and_described():
    from OpenSSL.SSL import Error as TLSError

    from twisted.internet._sslverify import VerificationError

    verify = TLSError([("SSL routines", "", "certificate verify failed")])
    for failure in (Failure(verify), Failure(VerificationError("name mismatch"))):
        assert is_fatal(failure)
        assert describe(failure, "chat.lan") == (
            "the server's certificate could not be verified (not trusted, or not for chat.lan);"
            " use --cafile for a self-signed certificate."
        )
    other = TLSError([("SSL routines", "", "wrong version number")])
    assert not is_fatal(other) and describe(other) == "TLS failed (is it a TLS port?)"
    assert not is_fatal(error.ConnectionRefusedError())


def test_a_certificate_failure_reaches_the_listener_as_fatal():
    from OpenSSL.SSL import Error as TLSError

    clock, endpoint, listener, connection = make_connection()
    connection.connect()
    proto, transport = endpoint.succeed()  # TLS: connected before the handshake
    proto.connectionLost(Failure(TLSError([("SSL routines", "", "certificate verify failed")])))
    assert listener.events[-1][0] == "disconnected" and listener.events[-1][-1] == "fatal"
    assert "not for localhost" in listener.events[-1][1]
    connection.connect()
    endpoint.fail(TLSError([("SSL routines", "", "certificate verify failed")]))
    assert listener.events[-1][0] == "failed" and listener.events[-1][-1] == "fatal"


# -- the command line -----------------------------------------------------------------------


def test_args_hosts_and_tls():
    options = parse_args(["alice"])
    assert options.hosts == [Address("localhost", 3000)] and not options.tls
    options = parse_args(
        ["alice", "--host", "a", "--host", "b:4000", "--host", "[::1]:5000", "--port", "3443"]
    )
    assert options.hosts == [Address("a", 3443), Address("b", 4000), Address("::1", 5000)]
    assert parse_args(["alice", "--tls"]).tls


def test_args_cafile_implies_tls(tmp_path):
    from tests.test_client_tls_e2e import make_certificate

    _key, cert = make_certificate(str(tmp_path))
    options = parse_args(["alice", "--cafile", cert])
    assert options.tls and options.trust is not None


BROKEN_PEM = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize("content", [None, b"", b"not a certificate\n", BROKEN_PEM])
def test_args_unusable_cafile(tmp_path, capsys, content):
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SystemExit) as exit_:
        parse_args(["alice", "--cafile", str(path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --cafile:" in err and str(path) in err


def test_args_bad_host(capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args(["alice", "--host", "a:0"])
    assert exit_.value.code == 2
    assert "argument --host:" in capsys.readouterr().err
