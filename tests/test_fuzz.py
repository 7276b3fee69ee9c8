"""Property-based tests: arbitrary bytes, split at arbitrary points, never break the server."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from spartan.native import wire
from spartan.core.chat import Chat
from spartan.core.directory import DEMO
from spartan.net.limits import RateConfig, ServerLimits
from spartan.native.protocol import NativeFactory
from spartan.store.memory import MemoryStore

SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
MAX_LINE = 64

VERBS = ["HELP", "LOGIN", "USERS", "GROUPS", "SEND", "OPEN", "ACK", "HISTORY", "PING", "PONG",
         "login", "send", "Open", "QUIT", "NOPE", ""]  # fmt: skip
WORDS = ["alice", "bob", "eve", "#group1", "#nope", "id=x1", "id=", "42", "0", "-1", "1000",
         "99999999999999999999", "hello world", "\t", " ", "\xe9t\xe9", "\u202e", "\x00",
         "\x1b[2J", "#", "dm:alice:bob", "x" * 70]  # fmt: skip

command_lines = st.builds(
    lambda verb, words, end: " ".join([verb, *words]).encode("utf-8", "surrogatepass") + end,
    st.sampled_from(VERBS),
    st.lists(st.sampled_from(WORDS), max_size=4),
    st.sampled_from([b"\n", b"\r\n", b"\r", b""]),
)
raw_bytes = st.binary(max_size=300)
streams = st.lists(st.one_of(command_lines, raw_bytes), max_size=25).map(b"".join)


@SETTINGS
@given(st.binary(max_size=500))
def test_parse_command_never_raises(line):
    result = wire.parse_command(line)
    assert isinstance(result, (wire.WireError, *wire.Command.__args__))


@SETTINGS
@given(command_lines)
def test_parse_command_never_raises_on_command_like_lines(line):
    result = wire.parse_command(line.rstrip(b"\n"))
    assert isinstance(result, (wire.WireError, *wire.Command.__args__))


send_lines = st.builds(
    lambda spaces, words, tail: b"SEND" + spaces + " ".join(words).encode("utf-8", "surrogatepass")
    + tail,
    st.sampled_from([b" ", b"  ", b" \t"]),
    st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=8)), max_size=5),
    st.sampled_from([b"", b" ", b"\r", b"\xff", b"\xc3", b"  "]),
)


@SETTINGS
@given(st.one_of(send_lines, st.binary(max_size=80).map(lambda b: b"SEND " + b)))
def test_the_send_fast_path_parses_exactly_like_the_general_path(line):
    assert wire.parse_command(line) == wire.parse_command_general(line)


@SETTINGS
@given(st.binary(max_size=500))
def test_parse_server_line_never_raises(line):
    wire.parse_server_line(line)


def _expected_replies(data: bytes) -> int:
    """Lines in ``data`` that get a reply: all of them, up to and including a QUIT."""
    count = 0
    for line in data.split(b"\n")[:-1]:
        count += 1
        if len(line) <= MAX_LINE and isinstance(wire.parse_command(line), wire.Quit):
            break
    return count


def _connect(factory, port):
    addr = IPv4Address("TCP", "127.0.0.1", port)
    protocol = factory.buildProtocol(addr)
    transport = StringTransport(peerAddress=addr)
    protocol.makeConnection(transport)
    return protocol, transport


def _lines(transport) -> list[bytes]:
    data = transport.value()
    transport.clear()
    assert data == b"" or data.endswith(b"\r\n")
    return data.split(b"\r\n")[:-1]


@SETTINGS
@given(streams, st.data())
def test_live_protocol_replies_to_each_line_and_leaves_others_alone(stream, data):
    stream += b"\n"  # every line complete, so every line is owed its reply
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]

    clock = Clock()
    chat = Chat(DEMO, MemoryStore(), clock)
    chat.start()
    factory = NativeFactory(chat, max_line=MAX_LINE)
    bob, bob_transport = _connect(factory, 1)
    bob.dataReceived(b"LOGIN bob\r\n")
    assert _lines(bob_transport)[-1] == b"OK LOGIN bob"

    fuzzed, transport = _connect(factory, 2)
    _lines(transport)
    for chunk in chunks:
        fuzzed.dataReceived(chunk)  # an exception here fails the test
    out = _lines(transport)
    replies = [line for line in out if line.startswith((b"OK ", b"ERR "))]
    assert len(replies) == _expected_replies(stream)
    assert all(line.startswith((b"OK ", b"ERR ", b"* ")) for line in out)
    assert b"ERR internal-error" not in out
    if transport.disconnecting:
        assert replies[-1] == b"OK BYE"

    # bob got nothing but messages, and his session works as before
    assert all(line.startswith(b"* MSG ") for line in _lines(bob_transport))
    assert not bob_transport.disconnecting
    bob.dataReceived(b"PING still-here\r\nUSERS\r\n")
    ping, users = _lines(bob_transport)
    assert ping == b"OK PONG still-here" and b"bob=online" in users
    assert chat.is_online("bob")


@SETTINGS
@given(streams, st.data())
def test_live_protocol_under_rate_limit_never_raises_and_keeps_order(stream, data):
    stream += b"\n"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    clock = Clock()
    chat = Chat(DEMO, MemoryStore(), clock)
    chat.start()
    limits = ServerLimits(rate=RateConfig(rate=100, burst=5), login_timeout=30, idle_timeout=60)
    factory = NativeFactory(chat, max_line=MAX_LINE, limits=limits)
    other, other_transport = _connect(factory, 1)
    fuzzed, transport = _connect(factory, 2)
    for chunk in chunks:
        fuzzed.dataReceived(chunk)
        clock.advance(0.01)
    for _ in range(200):  # 2 s of clock: every slowed line is let through
        clock.advance(0.01)
    out = _lines(transport)
    replies = [line for line in out if line.startswith((b"OK ", b"ERR "))]
    expected = _expected_replies(stream)
    if b"ERR rate-limited" in out:  # dropped: the lines before it were all answered
        assert replies[-1].startswith(b"ERR rate-limited") and len(replies) <= expected
    else:
        assert len(replies) == expected
    # the other connection was never paused nor touched
    assert other_transport.producerState == "producing"
    other.dataReceived(b"PING\r\n")
    assert _lines(other_transport)[-1] == b"OK PONG"
