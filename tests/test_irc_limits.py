"""The native port's limits on the IRC gateway: flood control, registration and
idle timeouts, connection limits shared with the native port.  No network, no real time:
StringTransport and a task.Clock (tests/protocol_support.py)."""

from twisted.internet.testing import MemoryReactorClock
from zope.interface.verify import verifyObject

from spartan.net.guard import IGuarded
from spartan.net.limits import RateConfig, ServerLimits
from tests.protocol_support import Server, login, register

PONG = ":irc.test PONG irc.test :{}"


def test_both_protocols_provide_the_guards_interface():
    server = Server()
    verifyObject(IGuarded, server.connect().protocol)
    verifyObject(IGuarded, server.connect_irc().protocol)


# -- flood control ------------------------------------------------------------------------


def test_irc_flooder_is_slowed_then_told_then_dropped_and_others_are_not_affected():
    server = Server(limits=ServerLimits(rate=RateConfig(rate=10, burst=5)))
    flooder = register(server.connect_irc("10.0.0.6"), "eve")
    calm = register(server.connect_irc("10.0.0.7"), "bob")
    native = login(server.connect("10.0.0.8"), "alice")
    native.read()
    replies = flooder.send(*["PING x"] * 100)
    # the rest of the burst (NICK and USER took two tokens) and one line on credit are
    # answered; then the connection stops being read
    assert replies == [PONG.format("x")] * 4
    assert flooder.transport.producerState == "paused"
    assert calm.send("PING calm") == [PONG.format("calm")]
    assert native.send("PING calm") == ["OK PONG calm"]
    seen = []
    for _ in range(100):
        server.clock.advance(0.1)
        seen += flooder.read()
        assert calm.send("PING calm") == [PONG.format("calm")]
        assert native.send("PING calm") == ["OK PONG calm"]
    notices = [line for line in seen if line.startswith(":irc.test NOTICE eve :")]
    assert notices == [
        ":irc.test NOTICE eve :You are sending faster than 10 lines a second; "
        "slow down or you will be disconnected."
    ]
    assert seen.index(notices[0]) == 3  # told at the `burst`-th line in a row on credit
    assert seen.count(PONG.format("x")) == 9  # 2 * burst lines on credit in all
    assert seen[-1] == "ERROR :Closing Link: eve (Excess Flood)"
    assert flooder.closed and not calm.closed and not native.closed
    assert calm.transport.producerState == native.transport.producerState == "producing"


def test_irc_slowed_lines_are_answered_in_order_and_reading_resumes():
    server = Server(limits=ServerLimits(rate=RateConfig(rate=2, burst=2)))
    conn = server.connect_irc()  # PING works before registration
    lines = conn.send(*[f"PING :{i}" for i in (1, 2, 3, 4)])
    assert lines == [PONG.format(i) for i in (1, 2, 3)]
    assert conn.transport.producerState == "paused"
    server.clock.advance(0.49)
    assert conn.read() == []
    server.clock.advance(0.01)
    notice, pong = conn.read()
    assert notice.startswith(":irc.test NOTICE * :You are sending faster")
    assert pong == PONG.format(4)
    assert conn.transport.producerState == "paused"  # the 4th line was on credit too
    server.clock.advance(0.5)
    assert conn.transport.producerState == "producing"
    assert conn.send("PING :5") == [PONG.format(5)] and not conn.closed


def test_irc_overlong_lines_count_against_the_rate():
    server = Server(limits=ServerLimits(rate=RateConfig(rate=1, burst=2)))
    server.irc_factory.max_line = 10
    conn = server.connect_irc()
    assert conn.send(*["X" * 50] * 3, "PING :p") == [":irc.test 417 * :Input line was too long"] * 3
    assert conn.transport.producerState == "paused"
    server.clock.advance(1)
    notice, pong = conn.read()  # the 2nd line in a row on credit: told (burst 2)
    assert notice.startswith(":irc.test NOTICE * :You are sending faster")
    assert pong == PONG.format("p")


# -- timeouts -----------------------------------------------------------------------------


def test_irc_registration_timeout():
    server = Server(limits=ServerLimits(login_timeout=30))
    slow, quick = server.connect_irc(), server.connect_irc()
    register(quick, "bob")
    slow.send("NICK alice")  # never USER
    server.clock.advance(29)
    assert not slow.closed
    server.clock.advance(1)
    assert slow.read() == [
        ":irc.test NOTICE alice :Not logged in after 30 seconds; closing.",
        "ERROR :Closing Link: alice (Registration timed out)",
    ]
    assert slow.closed and not quick.closed


def test_irc_idle_ping_then_close_and_pong_keeps_alive():
    server = Server(limits=ServerLimits(idle_timeout=60))
    answers, silent = register(server.connect_irc(), "alice"), register(server.connect_irc(), "bob")
    for n in range(1, 11):  # ten minutes: a client that answers every PING stays
        server.clock.advance(30)
        assert answers.read() == [f"PING :{n}"]
        answers.send(f"PONG :{n}")
    assert not answers.closed
    assert silent.closed
    assert silent.read()[-3:] == [
        "PING :1",
        ":irc.test NOTICE bob :No line for 60 seconds; closing.",
        "ERROR :Closing Link: bob (Ping timeout)",
    ]


def test_any_irc_line_counts_as_activity():
    server = Server(limits=ServerLimits(idle_timeout=60))
    conn = register(server.connect_irc(), "alice")
    for _ in range(20):
        server.clock.advance(20)
        conn.send("AWAY")
    assert not any(line.startswith("PING") for line in conn.read())
    assert not conn.closed


# A non-reading closed connection and timers at disconnect: tested on both ports in
# test_security_protocol.py (BOTH_PORTS).


# -- connection limits --------------------------------------------------------------------


def test_connection_limits_count_native_and_irc_connections_together():
    server = Server(limits=ServerLimits(max_connections=3, max_per_address=2))
    native = server.connect("10.0.0.1")
    irc = server.connect_irc("10.0.0.1")
    refused_irc = server.connect_irc("10.0.0.1")
    assert refused_irc.read() == [
        ":irc.test NOTICE * :Too many connections from your address (at most 2).",
        "ERROR :Closing Link: * (Too many connections)",
    ]
    assert refused_irc.closed
    refused_native = server.connect("10.0.0.1")
    assert refused_native.read() == [
        "ERR too-many-connections Too many connections from your address (at most 2)."
    ]
    other = server.connect_irc("10.0.0.2")
    assert not other.closed and other.send("PING :x") == [PONG.format("x")]
    full = server.connect_irc("10.0.0.3")
    assert full.read()[-1] == "ERROR :Closing Link: * (Too many connections)" and full.closed
    irc.close()
    again = server.connect_irc("10.0.0.1")
    assert not again.closed and register(again, "alice")
    assert native.send("PING")[-1] == "OK PONG"
    for conn in (native, other, again, refused_irc, full):
        conn.close()
        conn.close()  # twice is harmless
    assert server.factory.connections.total == 0
    assert server.factory.connections.by_address == {}


def test_make_service_gives_the_irc_gateway_the_limits_and_the_shared_count():
    from spartan.tap import Options, makeService

    options = Options()
    options.parseOptions(["--irc-port", "tcp:0", "--burst", "7", "--max-per-address", "3"])
    service = makeService(options, MemoryReactorClock())
    gateway, = [listener.factory for listener in service.listeners if listener.option == "--irc-port"]
    assert gateway.limits is service.factory.limits and gateway.limits.rate.burst == 7
    assert gateway.connections is service.factory.connections
    assert gateway.connections.max_per_address == 3
