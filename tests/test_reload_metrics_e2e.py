"""A real `twistd spartan`: SIGHUP reloads --config, /metrics and /health answer over HTTP,
and the log says who logged in from where and why each left."""

from __future__ import annotations

import signal
import urllib.error
import urllib.request

from tests.redis_support import RedisServer
from tests.support import LineClient, TwistdServer, free_port, wait_for

FIRST = 'users = ["alice", "bob", "carol"]\n[groups]\ng1 = ["alice", "bob", "carol"]\n'
SECOND = 'users = ["alice", "carol", "dave"]\n[groups]\ng1 = ["alice", "dave"]\n'


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _sample(text: str, name: str) -> float:
    """The value of one sample line (``name`` with its labels, as printed)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in the metrics:\n{text}")


def test_sighup_applies_the_new_config_without_dropping_anyone(tmp_path):
    config = tmp_path / "spartan.toml"
    config.write_text(FIRST)
    with TwistdServer(tmp_path, "--config", str(config)) as server:
        alice, bob, carol = (LineClient(server.port) for _ in range(3))
        for client, user in ((alice, "alice"), (bob, "bob"), (carol, "carol")):
            client.ok(f"LOGIN {user}")
        server.wait_for_log("alice logged in from 127.0.0.1 (native)")
        alice.ok("SEND carol kept across the reload")
        config.write_text(SECOND)
        server.process.send_signal(signal.SIGHUP)
        assert bob.line() == "* NOTICE removed You were removed from this server's users; closing."
        assert bob.sock.recv(100) == b""  # closed by the server
        assert alice.line() == "* GROUPS g1=alice,dave"
        assert carol.next_pushed("* GROUPS") == "* GROUPS"  # carol has no group now
        server.wait_for_log(
            "Reloaded " + str(config) + ": 1 user(s) added (dave); 1 removed (bob); "
            "1 session(s) closed; groups changed for 2 online user(s) (alice, carol)"
        )
        server.wait_for_log("bob disconnected from 127.0.0.1 (native): removed")
        dave = LineClient(server.port)
        dave.ok("LOGIN dave")
        dave.ok("SEND #g1 hello")
        assert alice.next_pushed().endswith(" #g1 dave hello")
        pushed, reply = carol.command("OPEN alice")
        assert reply == "OK OPEN alice 1" and pushed[0].endswith("kept across the reload")
        assert LineClient(server.port).command("LOGIN bob")[1].startswith("ERR ")

        # A file that cannot be used changes nothing, and the server carries on.
        config.write_text('users = ["alice",')
        server.process.send_signal(signal.SIGHUP)
        server.wait_for_log("Reload failed, nothing changed: ")
        assert "not valid TOML" in server.log.split("Reload failed, nothing changed: ")[1]
        LineClient(server.port).ok("LOGIN dave")
        alice.ok("PING")
        alice.command("QUIT")
        server.wait_for_log("alice disconnected from 127.0.0.1 (native): quit")
        server.stop()
        assert "dave disconnected from 127.0.0.1 (native): server shutdown" in server.log
        for client in (alice, bob, carol, dave):
            client.close()


def test_sighup_without_a_config_keeps_the_server_running(tmp_path):
    with TwistdServer(tmp_path) as server:
        server.process.send_signal(signal.SIGHUP)
        server.wait_for_log("SIGHUP: no --config to re-read; nothing changed")
        LineClient(server.port).ok("LOGIN alice")
        assert server.process.poll() is None


def test_metrics_and_health_over_http(tmp_path):
    metrics_port = free_port()
    with TwistdServer(
        tmp_path, "--metrics-port", f"tcp:{metrics_port}:interface=127.0.0.1"
    ) as server:
        server.wait_for_log(f"Started metrics on port {metrics_port}")
        alice, bob = LineClient(server.port), LineClient(server.port)
        alice.ok("LOGIN alice")
        bob.ok("LOGIN bob")
        mallory = LineClient(server.port)
        assert mallory.command("LOGIN mallory")[1].startswith("ERR ")
        alice.ok("SEND bob hi")
        alice.ok("SEND #group1 all")
        assert bob.next_pushed().endswith(" alice hi")
        assert bob.next_pushed().endswith(" alice all")
        wait_for(lambda: "spartan_reactor_lag_seconds_count 0.0" not in _get(metrics_port, "/metrics")[1],
                 what="a reactor lag sample", timeout=10)  # fmt: skip
        status, text = _get(metrics_port, "/metrics")
        assert status == 200
        assert _sample(text, 'spartan_connections_open{protocol="native"}') == 3
        assert _sample(text, "spartan_logins_total") == 2
        assert _sample(text, "spartan_login_failures_total") == 1
        assert _sample(text, 'spartan_messages_stored_total{kind="direct"}') == 1
        assert _sample(text, 'spartan_messages_stored_total{kind="group"}') == 1
        assert _sample(text, "spartan_deliveries_total") == 2
        assert _sample(text, "spartan_store_batch_size_sum") == 2
        assert _sample(text, "spartan_store_commit_seconds_count") == 2
        assert _sample(text, "spartan_reactor_lag_seconds_count") >= 1
        assert _get(metrics_port, "/health") == (200, "ok\n")

        assert "GET /metrics" not in server.log  # no access log line per scrape
        for client in (alice, bob, mallory):
            client.close()


def test_health_is_503_while_the_store_cannot_take_writes(tmp_path):
    metrics_port = free_port()
    with RedisServer(tmp_path / "redis") as redis:
        server = TwistdServer(
            tmp_path, "--redis", redis.url, "--metrics-port", f"tcp:{metrics_port}:interface=127.0.0.1"
        )
        with server:
            server.wait_for_log(f"Started metrics on port {metrics_port}")
            assert _get(metrics_port, "/health") == (200, "ok\n")
            redis.kill()
            status, text = wait_for(
                lambda: (answer := _get(metrics_port, "/health"))[0] == 503 and answer,
                what="health turns 503", timeout=15,
            )  # fmt: skip
            assert text.startswith("the message store cannot take writes: Redis")
            errors = _sample(_get(metrics_port, "/metrics")[1], "spartan_redis_errors_total")
            assert errors >= 1
            redis.start()
            wait_for(lambda: _get(metrics_port, "/health") == (200, "ok\n"),
                     what="health is back", timeout=20)  # fmt: skip


def test_a_metrics_port_that_cannot_listen_stops_the_server(tmp_path):
    with TwistdServer(tmp_path) as first:
        busy = first.port
        server = TwistdServer(tmp_path, "--metrics-port", f"tcp:{busy}:interface=127.0.0.1")
        try:
            server.start(timeout=20)
        except AssertionError:
            pass  # it never got to "Started": what we want
        wait_for(lambda: server.process.poll() is not None, timeout=20, what="twistd exits")
        assert "Cannot listen on" in server.log
        server.stop()


def test_in_a_cluster_each_node_reloads_its_own_config(tmp_path):
    from tests.cluster_support import Node

    config_a, config_b = tmp_path / "a.toml", tmp_path / "b.toml"
    config_a.write_text(FIRST)
    config_b.write_text(FIRST)
    with RedisServer(tmp_path / "redis") as redis:
        a = Node(tmp_path, redis.url, "a", "--config", str(config_a)).start()
        b = Node(tmp_path, redis.url, "b", "--config", str(config_b)).start()
        try:
            bob_a, bob_b = LineClient(a.port), LineClient(b.port)
            bob_a.ok("LOGIN bob")
            bob_b.ok("LOGIN bob")
            config_a.write_text(SECOND)
            a.process.send_signal(signal.SIGHUP)  # node a only
            assert bob_a.line().startswith("* NOTICE removed ")
            a.wait_for_log("Reloaded ")
            bob_b.ok("PING")  # node b still has the old file: bob stays
            assert LineClient(a.port).command("LOGIN bob")[1].startswith("ERR ")
            assert LineClient(b.port).command("LOGIN dave")[1].startswith("ERR ")
            config_b.write_text(SECOND)
            b.process.send_signal(signal.SIGHUP)
            assert bob_b.line().startswith("* NOTICE removed ")
            dave = LineClient(b.port)
            dave.ok("LOGIN dave")
            for client in (bob_a, bob_b, dave):
                client.close()
        finally:
            a.stop()
            b.stop()
