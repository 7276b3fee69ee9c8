"""The metrics read from the counters the server keeps, the histograms, and /health."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import fail, succeed
from twisted.web.test.requesthelper import DummyRequest

from spartan.metrics import HealthResource, ServerMetrics
from spartan.net.limits import RateConfig, ServerLimits
from spartan.store import StoreError
from spartan.store.sqlite import SQLiteStore
from tests.protocol_support import Server, login, register


def value(metrics: ServerMetrics, name: str, **labels) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


@pytest.fixture
def server():
    return Server(limits=ServerLimits(rate=RateConfig(rate=10.0, burst=5)), max_pending=2000)


@pytest.fixture
def metrics(server):
    return ServerMetrics(server.chat, [server.factory, server.irc_factory], server.clock)


def test_connections_logins_messages_and_deliveries(server, metrics):
    alice = login(server.connect("10.0.0.1"), "alice")
    bob = login(server.connect("10.0.0.2"), "bob")
    charlie = register(server.connect_irc(), "charlie")
    charlie.send("JOIN #group1")
    stranger = server.connect()
    assert stranger.send("LOGIN nobody")[-1].startswith("ERR unknown-user")
    assert value(metrics, "spartan_connections_open", protocol="native") == 3
    assert value(metrics, "spartan_connections_open", protocol="irc") == 1
    assert value(metrics, "spartan_logins_total") == 3
    assert value(metrics, "spartan_login_failures_total") == 1
    assert alice.send("SEND bob hi")[-1].startswith("OK SENT")
    server.clock.advance(2)
    assert alice.send("SEND #group1 all")[-1].startswith("OK SENT")
    assert value(metrics, "spartan_messages_stored_total", kind="direct") == 1
    assert value(metrics, "spartan_messages_stored_total", kind="group") == 1
    # bob gets both; charlie (IRC) the group's; alice, the sender, none
    assert value(metrics, "spartan_deliveries_total") == 3
    assert bob.read()[-1].endswith("alice all") and charlie.read()[-1].endswith(":all")
    stranger.close()
    assert value(metrics, "spartan_connections_open", protocol="native") == 2


def test_disconnects_by_reason_rate_limits_and_slow_readers(server, metrics):
    quitter = login(server.connect(), "alice")
    quitter.send("QUIT")
    quitter.close()
    flooder = server.connect()
    flooder.send(*["PING"] * 200)
    for _ in range(100):
        server.clock.advance(0.1)
    assert flooder.closed
    flooder.close()
    assert value(metrics, "spartan_rate_limited_total", protocol="native", action="warned") == 1
    assert value(metrics, "spartan_rate_limited_total", protocol="native", action="dropped") == 1
    assert value(metrics, "spartan_disconnects_total", protocol="native", reason="quit") == 1
    assert value(metrics, "spartan_disconnects_total", protocol="native", reason="flood") == 1
    gone = server.connect()
    gone.close()
    assert value(metrics, "spartan_disconnects_total", protocol="native", reason="closed by peer") == 1


def test_slow_readers_dropped():
    server = Server(max_pending=2000)
    metrics = ServerMetrics(server.chat, [server.factory, server.irc_factory], server.clock)
    sender, slow = login(server.connect(), "alice"), login(server.connect(), "bob")
    slow.transport.producer.pauseProducing()  # what the transport does: the peer stopped reading
    sender.send(*[f"SEND bob message number {n}" for n in range(40)])
    assert slow.closed
    slow.close()
    assert value(metrics, "spartan_slow_readers_dropped_total", protocol="native") == 1
    assert value(metrics, "spartan_slow_readers_dropped_total", protocol="irc") == 0


def test_reactor_lag_is_how_late_the_probe_runs(server, metrics):
    metrics.start()
    server.clock.advance(1.0)  # on time
    server.clock.advance(1.25)  # a turn that took 0.25 s too long
    metrics.stop()
    server.clock.advance(10)
    assert value(metrics, "spartan_reactor_lag_seconds_count") == 2
    assert value(metrics, "spartan_reactor_lag_seconds_sum") == pytest.approx(0.25)
    assert value(metrics, "spartan_reactor_lag_seconds_bucket", le="0.001") == 1


@pytest_twisted.ensureDeferred
async def test_sqlite_commits_are_observed_with_their_size(tmp_path):
    store = SQLiteStore(str(tmp_path / "s.sqlite3"), reactor=reactor)
    seen = []
    store.commit_observer = lambda seconds, appends: seen.append((seconds, appends))
    await store.start()
    try:
        from twisted.internet.defer import gatherResults

        await gatherResults([store.append("dm:a:b", "a", f"m{i}", 1000.0) for i in range(5)])
        await store.check_writable()  # no appends: not a commit to observe
    finally:
        await store.stop()
    assert [appends for _, appends in seen] == [5]
    assert 0 <= seen[0][0] < 5


def test_store_commits_feed_the_histograms(server, metrics):
    metrics.observe_commit(0.003, 40)
    assert value(metrics, "spartan_store_commit_seconds_bucket", le="0.005") == 1
    assert value(metrics, "spartan_store_commit_seconds_bucket", le="0.002") == 0
    assert value(metrics, "spartan_store_batch_size_bucket", le="64.0") == 1
    assert server.store.commit_observer == metrics.observe_commit


def _get(resource) -> tuple[int, str]:
    request = DummyRequest([b""])
    resource.render(request)
    assert request.finished
    return request.responseCode or 200, b"".join(request.written).decode()


def test_health_says_ok_or_why_not():
    assert _get(HealthResource(lambda: succeed(None))) == (200, "ok\n")
    assert _get(HealthResource(lambda: succeed("1 of 2 listeners are up"))) == (
        503,
        "1 of 2 listeners are up\n",
    )
    code, text = _get(HealthResource(lambda: fail(StoreError("disk full"))))
    assert code == 503 and "disk full" in text


def test_a_password_question_is_not_a_failed_login():
    from spartan.core.auth import PasswordAuthenticator
    from spartan.core.directory import Directory
    from spartan.passwd import hash_password

    directory = Directory(("alice", "bob"), {}, {"alice": hash_password("secret", n=2)})
    server = Server(directory=directory)
    server.chat.authenticator = PasswordAuthenticator(directory, server.clock)
    metrics = ServerMetrics(server.chat, [server.factory], server.clock)
    conn = server.connect()
    assert conn.send("LOGIN alice")[-1].startswith("ERR password-required")
    assert conn.send("LOGIN alice wrong")[-1].startswith("ERR bad-credentials")
    assert conn.send("LOGIN alice secret")[-1] == "OK LOGIN alice"
    assert value(metrics, "spartan_login_failures_total") == 1
    assert value(metrics, "spartan_logins_total") == 1


def test_health_needs_every_listener_up_and_a_writable_store():
    from twisted.internet.testing import MemoryReactorClock

    from spartan import tap
    from spartan.metrics import service_health

    options = tap.Options()
    options.parseOptions(["--db", ":memory:", "--irc-port", "6667", "--metrics-port", "9100"])
    reactor = MemoryReactorClock()
    service = tap.makeService(options, reactor)

    def health():
        box = []
        service_health(service).addBoth(box.append)
        return box[0]

    assert health() == "0 of 3 listeners are up"
    service.startService()
    try:
        assert [listening[0] for listening in reactor.tcpServers] == [3000, 6667, 9100]
        assert health() is None
        service.ports.pop()  # as if the metrics port had not come up
        assert health() == "2 of 3 listeners are up"
        service.ports.append(object())
        service.chat.store.check_writable = lambda: fail(StoreError("disk full"))
        assert health() == "the message store cannot take writes: disk full"
    finally:
        service.chat.store.check_writable = lambda: succeed(None)
        service.ports = []
        service.stopService()
