"""The log an operator reads: who logged in from where over which protocol, and why each
logged-in connection ended."""

from __future__ import annotations

from spartan.net.limits import RateConfig, ServerLimits
from tests.protocol_support import Server, login, register


def disconnects(log_lines: list[str]) -> list[str]:
    return [line for line in log_lines if " disconnected from " in line]


def test_logins_say_from_where_and_over_which_protocol(log_lines):
    server = Server()
    login(server.connect("10.0.0.5"), "alice")
    register(server.connect_irc("10.0.0.6"), "bob")
    assert "alice logged in from 10.0.0.5 (native)" in log_lines
    assert "bob logged in from 10.0.0.6 (irc)" in log_lines


def test_each_disconnect_says_why(log_lines):
    server = Server(
        limits=ServerLimits(rate=RateConfig(rate=10, burst=5), idle_timeout=100), max_pending=2000
    )
    quitter = login(server.connect("10.0.0.1"), "alice")
    quitter.send("QUIT")
    quitter.close()
    irc_quitter = register(server.connect_irc("10.0.0.2"), "alice")
    irc_quitter.send("QUIT :bye")
    irc_quitter.close()
    peer = login(server.connect("10.0.0.3"), "bob")
    peer.close()  # the client went away
    flooder = login(server.connect("10.0.0.4"), "charlie")
    flooder.send(*["PING"] * 200)
    for _ in range(100):
        server.clock.advance(0.1)
    assert flooder.closed
    flooder.close()
    idle = login(server.connect("10.0.0.5"), "eve")
    server.clock.advance(101)
    assert idle.closed
    idle.close()
    assert disconnects(log_lines) == [
        "alice disconnected from 10.0.0.1 (native): quit",
        "alice disconnected from 10.0.0.2 (irc): quit",
        "bob disconnected from 10.0.0.3 (native): closed by peer",
        "charlie disconnected from 10.0.0.4 (native): flood",
        "eve disconnected from 10.0.0.5 (native): idle timeout",
    ]


def test_a_slow_reader_and_a_server_shutdown_are_told_apart(log_lines):
    server = Server(max_pending=2000)
    sender, slow = login(server.connect("10.0.0.1"), "alice"), login(server.connect("10.0.0.2"), "bob")
    slow.transport.producer.pauseProducing()  # what the transport does: the peer stopped reading
    sender.send(*[f"SEND bob message number {n}" for n in range(40)])
    assert slow.closed
    slow.close()
    server.factory.shutting_down = True  # what the service sets when it stops
    sender.close()
    assert disconnects(log_lines) == [
        "bob disconnected from 10.0.0.2 (native): slow reader",
        "alice disconnected from 10.0.0.1 (native): server shutdown",
    ]
