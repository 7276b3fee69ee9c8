"""
The benchmark still works: ``benchmarks/run.py --quick`` starts a real ``twistd spartan``
and the bare relays, runs every scenario once with small counts over the native protocol,
over IRC and over the web port's WebSocket, finds every message delivered exactly once and
prints its figures; the exactly-once check does catch a server that loses a message; and
the WebSocket framing the generator uses reads what a server writes.  No speed is asserted
here: the machine running the tests may be busy; docs/performance.md holds the measured
figures.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quick_benchmark_runs_and_delivers_every_message_once(tmp_path):
    report_path = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--quick",
         "--connections", "300", "--json", str(report_path)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "every message delivered exactly once" in result.stdout
    for label in ("fan-out deliveries/s", "one-to-one messages/s", "connections held",
                  "server memory per connection", "light-load round trip p99",
                  "--message-log text", "registrations/s", "ping-pong round trip p50",
                  "| IRC fan-out deliveries/s |", "| IRC one-to-one messages/s |",
                  "| IRC registrations/s", "| IRC ping-pong round trip p99 (ms) |",
                  "Spartan IRC / native", "relay IRC / native",
                  "| WS fan-out deliveries/s |", "| WS one-to-one messages/s |",
                  "| WS registrations/s", "| WS ping-pong round trip p99 (ms) |",
                  "Spartan WS / native"):
        assert label in result.stdout

    report = json.loads(report_path.read_text())
    assert report["exactly_once"] and not report["failures"]
    by_key = {(r["key"], r["protocol"], r["server"]): r for r in report["results"]}
    for key in ("fanout", "direct", "held", "light", "register", "pingpong"):
        for protocol in ("native", "irc"):
            for server in ("spartan", "relay"):
                assert (key, protocol, server) in by_key, (key, protocol, server)
        assert (key, "ws", "spartan") in by_key, key
        assert (key, "ws", "relay") not in by_key  # no bare WebSocket relay
    for protocol in ("native", "irc", "ws"):
        for key in ("fanout", "direct"):
            spartan = by_key[key, protocol, "spartan"]
            assert spartan["exactly_once"] and spartan["deliveries"] > 0
        fanout = by_key["fanout", protocol, "spartan"]
        assert fanout["deliveries"] == 49 * fanout["messages"]
        assert by_key["held", protocol, "spartan"]["reached"] == 300
        registered = by_key["register", protocol, "spartan"]
        assert registered["registered"] > 0 and registered["registrations_per_s"] > 0
        assert by_key["pingpong", protocol, "spartan"]["samples"] == 300
    row = next(r for r in report["table"] if r["figure"] == "deliveries_per_s")
    assert row["protocol"] == "native"
    assert row["spartan"] > 0 and row["relay"] > 0 and row["ratio"] > 0
    assert row["ratio_irc_native"] is None  # only IRC rows compare with native
    irc = next(r for r in report["table"]
               if r["figure"] == "deliveries_per_s" and r["protocol"] == "irc")
    assert irc["spartan"] > 0 and irc["relay"] > 0 and irc["ratio"] > 0
    assert irc["ratio_irc_native"] > 0 and irc["ratio_relay_irc_native"] > 0
    ws = next(r for r in report["table"]
              if r["figure"] == "messages_per_s" and r["protocol"] == "ws")
    assert ws["spartan"] > 0 and ws["relay"] is None and ws["ratio_ws_native"] > 0


# The bare IRC relay, except that it swallows the first PRIVMSG line it reads (and still
# answers the PING after it): one message acknowledged and never delivered.
LOSSY_IRC_RELAY = """
import sys
sys.path.insert(0, sys.argv[1])
import irc_relay

class LosingOne(irc_relay.IRCRelay):
    lost = False

    def dataReceived(self, data):
        at = data.find(b"PRIVMSG ")
        if not LosingOne.lost and at >= 0 and b"\\n" in data[at:]:
            LosingOne.lost = True
            data = data[:at] + data[data.index(b"\\n", at) + 1 :]
        super().dataReceived(data)

irc_relay.IRCRelayFactory.protocol = LosingOne
irc_relay.main(["--port", sys.argv[2]])
"""


def test_the_exactly_once_check_catches_a_lost_irc_message():
    sys.path.insert(0, ROOT)
    from benchmarks import loadgen, run

    port = run.free_port()
    relay = subprocess.Popen(
        [sys.executable, "-c", LOSSY_IRC_RELAY, os.path.join(ROOT, "benchmarks"), str(port)],
        stdout=subprocess.PIPE,
    )
    try:
        assert b"listening" in relay.stdout.readline()
        lost_one = r"exactly-once check failed: d\d: 1 lost, 0 duplicated, 0 unexpected"
        with pytest.raises(loadgen.BenchError, match=lost_one):
            loadgen.direct("127.0.0.1", port, pairs=2, count=50, seconds=5, drain=1, timeout=20,
                           codec=loadgen.IRC)
        # The same relay, now that it has lost its one, passes the same check.
        result = loadgen.direct("127.0.0.1", port, pairs=2, count=50, seconds=5, timeout=20,
                                codec=loadgen.IRC)
        assert result["exactly_once"] and result["deliveries"] == 200
    finally:
        relay.kill()
        relay.wait()


def test_a_second_interpreter_and_the_durable_store_get_their_own_column(tmp_path):
    # How PyPy is compared (docs/performance.md): the same Spartan under --spartan-python, in
    # the same runs, with a ratio column; here the same interpreter stands in for PyPy.
    report_path = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--quick",
         "--scenarios", "light", "--protocol", "native",
         "--servers", "spartan", "--db", "fresh", "--sync", "normal",
         "--spartan-python", sys.executable, "--json", str(report_path)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| Spartan, --spartan-python |" in result.stdout
    assert "--spartan-python / Spartan" in result.stdout
    report = json.loads(report_path.read_text())
    servers = {r["server"] for r in report["results"]}
    assert servers == {"spartan", "spartan_alt"}
    row = next(r for r in report["table"] if r["figure"] == "p99_ms")
    assert row["spartan_alt"] > 0 and row["ratio_alt"] > 0


def test_the_irc_codec_counts_pong_acknowledgements_and_fails_on_errors():
    sys.path.insert(0, ROOT)
    from benchmarks.loadgen import IRC, STRIDE

    # A window of 8 goes out in batches of 2, each acknowledged by the PONG to its PING.
    sent = IRC.messages(b"#fan", 3 * STRIDE, 1234, 5, 8).split(b"\r\n")[:-1]
    verbs = [line.split(b" ")[0] for line in sent]
    assert verbs == [b"PRIVMSG", b"PRIVMSG", b"PING", b"PRIVMSG", b"PRIVMSG", b"PING",
                     b"PRIVMSG", b"PING"]
    assert sent[0] == b"PRIVMSG #fan :0030000000.0000000000001234"
    assert [line for line in sent if line.startswith(b"PING")] == [b"PING :a2", b"PING :a2", b"PING :a1"]

    pushed = [b":spartan PONG spartan :a2", b":f7!f7@spartan JOIN #fan",
              b":spartan 353 f0 = #fan :f0 f7", b":spartan 301 f0 f9 :Offline: messages wait",
              b"PING :42", b":spartan PONG spartan :p"]
    assert IRC.replies(pushed) == (2, 1, None)
    for refused in (b":spartan 404 f0 #fan :Cannot send to channel (members only)",
                    b":spartan NOTICE f0 :Message to f9 not delivered: too long",
                    b"ERROR :Closing Link: f0 (Excess Flood)"):
        assert IRC.replies([b":spartan PONG spartan :a2", refused])[2] == refused
    assert "473" in IRC.login_error(b":spartan 001 x :Welcome\r\n:spartan 473 x #fan :Cannot join\r\n")
    motd = b":spartan 001 x :Welcome\r\n:spartan 372 x :- ERROR 404 is not an error\r\n"
    assert IRC.login_error(motd) is None


def test_cpu_bench_measures_both_front_ends_through_the_servers_code():
    from benchmarks import cpu_bench

    figures = cpu_bench.measure(rounds=1, scale=0.05)
    assert set(figures) == {
        "native fan-out ns/delivery", "native one-to-one ns/message",
        "irc fan-out ns/delivery", "irc one-to-one ns/message",
    }  # fmt: skip
    assert all(0 < value < 1e6 for value in figures.values())  # ns: a message, not a stall


def test_with_metrics_runs_spartan_with_and_without_metrics_port_in_the_same_runs(tmp_path):
    report_path = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--quick",
         "--scenarios", "fanout,direct", "--protocol", "native", "--servers", "spartan",
         "--with-metrics", "--no-logtext", "--json", str(report_path)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for label in ("Spartan, --metrics-port", "with metrics / Spartan",
                  "fan-out server CPU per delivery (µs)", "one-to-one server CPU per message (µs)"):
        assert label in result.stdout
    report = json.loads(report_path.read_text())
    servers = {r["server"] for r in report["results"]}
    assert servers == {"spartan", "spartan_metrics"}
    assert all(r["server_cpu_us"] > 0 for r in report["results"])


def test_the_websocket_framing_holds_lines_until_the_upgrade_and_reads_frames_split_anywhere():
    sys.path.insert(0, ROOT)
    from benchmarks.ws_codec import WebSocketFraming

    framing = WebSocketFraming("127.0.0.1", 8080)
    request = framing.handshake_request()
    assert request.startswith(b"GET /ws HTTP/1.1\r\n")
    assert b"\r\nOrigin: http://127.0.0.1:8080\r\n" in request  # the page's own origin
    assert framing.outgoing(b"LOGIN alice\n") == b""  # held: the upgrade is not through
    assert framing.incoming(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n") == b""
    long_line = b"* MSG " + b"x" * 300
    server = (b"\r\n" + bytes((0x81, 7)) + b"* HELLO" + bytes((0x89, 0))  # and a ping
              + struct.pack("!BBH", 0x81, 126, len(long_line)) + long_line
              + bytes((0x81, 10)) + b"OK LOGIN a")
    lines = b""
    for at in range(0, len(server), 5):  # reads cut anywhere, inside heads and payloads
        lines += framing.incoming(server[at : at + 5])
    assert lines == b"* HELLO\r\n" + long_line + b"\r\nOK LOGIN a\r\n"
    # Released once open: a masked text frame (mask of zeros) holding the line without its end.
    assert framing.open and framing.release() == b"\x81\x8b\x00\x00\x00\x00LOGIN alice"
    assert framing.outgoing(b"PING p\r\nQUIT\n") == (b"\x81\x86\x00\x00\x00\x00PING p"
                                                     b"\x81\x84\x00\x00\x00\x00QUIT")
    with pytest.raises(ConnectionError, match="closed the WebSocket"):
        framing.incoming(bytes((0x88, 2)) + b"\x03\xe8")

    refused = WebSocketFraming("127.0.0.1", 8080)
    with pytest.raises(ConnectionError, match="403"):
        refused.incoming(b"HTTP/1.1 403 Forbidden\r\n\r\n")
