"""
What an operator's monitoring reads: Prometheus metrics at /metrics and a health check at
/health, served on ``--metrics-port``.

Theory of operation
-------------------
* The hot path keeps plain int counters in the objects that already do the work: the chat
  core (logins, messages stored, deliveries), each listener's factory (connections open,
  closes by reason, rate-limit warnings) and the Redis store (errors).  `ServerCollector`
  reads them when Prometheus scrapes, so a message costs an addition: no lock, no call
  into prometheus_client.
* What happens once per commit (its latency and number of appends) or once per
  `LAG_INTERVAL` (the reactor's lag: how late a periodic call runs) goes to
  prometheus_client histograms directly; that is rare enough.
* /metrics is prometheus_client's own Twisted resource (it renders in the reactor's thread
  pool: the collector only reads ints and copies counters there).
* /health answers ``200 ok`` when every listener is up and the store takes a write now,
  else ``503`` and one line saying why; a load balancer or systemd watchdog can poll it.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from spartan.net.connection import CLOSE_REASONS, SLOW_READER

LAG_INTERVAL = 1.0  # seconds between two runs of the reactor-lag probe
FLOOD = CLOSE_REASONS["rate-limited"]

COMMIT_SECONDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
LAG_SECONDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ServerCollector:
    """Reads the counters of the chat core, the listeners' factories and a Redis store at
    scrape time (a prometheus_client custom collector)."""

    def __init__(self, chat, factories, redis_store=None) -> None:
        self.chat = chat
        self.factories = factories  # ConnectionFactory, one per protocol
        self.redis_store = redis_store

    def collect(self):
        chat = self.chat
        connections = GaugeMetricFamily(
            "spartan_connections_open", "Connections open now.", labels=["protocol"]
        )
        disconnects = CounterMetricFamily(
            "spartan_disconnects", "Connections closed, by why.", labels=["protocol", "reason"]
        )
        slow = CounterMetricFamily(
            "spartan_slow_readers_dropped",
            "Connections dropped because their peer stopped reading.",
            labels=["protocol"],
        )
        limited = CounterMetricFamily(
            "spartan_rate_limited",
            "Rate-limit events: a warning sent, or a connection dropped for flooding.",
            labels=["protocol", "action"],
        )
        for factory in self.factories:
            name = factory.protocol_name
            closes = dict(factory.closes)  # one C-level copy: the reactor thread adds to it
            connections.add_metric([name], factory.open)
            for reason, count in sorted(closes.items()):
                disconnects.add_metric([name, reason], count)
            slow.add_metric([name], closes.get(SLOW_READER, 0))
            limited.add_metric([name, "warned"], factory.rate_limit_warnings)
            limited.add_metric([name, "dropped"], closes.get(FLOOD, 0))
        yield connections
        yield disconnects
        yield slow
        yield limited
        yield CounterMetricFamily("spartan_logins", "Successful logins.", value=chat.logins)
        yield CounterMetricFamily(
            "spartan_login_failures", "Refused logins.", value=chat.failed_logins
        )
        stored = CounterMetricFamily(
            "spartan_messages_stored", "Messages stored by this node.", labels=["kind"]
        )
        stored.add_metric(["direct"], chat.stored_direct)
        stored.add_metric(["group"], chat.stored_group)
        yield stored
        yield CounterMetricFamily(
            "spartan_deliveries", "Messages pushed to a session of this node.",
            value=chat.deliveries,
        )  # fmt: skip
        if self.redis_store is not None:
            yield CounterMetricFamily(
                "spartan_redis_errors", "Redis commands that failed.",
                value=self.redis_store.errors,
            )  # fmt: skip


class ServerMetrics:
    """The registry and the histograms; observes the store's commits and the reactor."""

    def __init__(self, chat, factories, clock, redis_store=None) -> None:
        self.clock = clock
        self.registry = CollectorRegistry()
        self.registry.register(ServerCollector(chat, factories, redis_store))
        self.commit_seconds = Histogram(
            "spartan_store_commit_seconds", "Time from handing a batch of appends to the "
            "store to its commit.", buckets=COMMIT_SECONDS, registry=self.registry,
        )  # fmt: skip
        self.batch_size = Histogram(
            "spartan_store_batch_size", "Appends per commit.",
            buckets=BATCH_SIZES, registry=self.registry,
        )  # fmt: skip
        self.reactor_lag = Histogram(
            "spartan_reactor_lag_seconds", f"How late a call scheduled every "
            f"{LAG_INTERVAL:g} s runs.", buckets=LAG_SECONDS, registry=self.registry,
        )  # fmt: skip
        self._due = 0.0
        self._call = None
        chat.store.commit_observer = self.observe_commit

    def observe_commit(self, seconds: float, appends: int) -> None:
        self.commit_seconds.observe(seconds)
        self.batch_size.observe(appends)

    def start(self) -> None:
        """Start probing the reactor's lag."""
        self._due = self.clock.seconds() + LAG_INTERVAL
        self._call = self.clock.callLater(LAG_INTERVAL, self._probe)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _probe(self) -> None:
        now = self.clock.seconds()
        self.reactor_lag.observe(max(0.0, now - self._due))
        self._due = now + LAG_INTERVAL
        self._call = self.clock.callLater(LAG_INTERVAL, self._probe)


class HealthResource(Resource):
    """``GET /health``: 200 ``ok``, or 503 and why.  ``check`` fires with None when
    healthy, else the reason (a sentence)."""

    isLeaf = True

    def __init__(self, check: Callable[[], Deferred[str | None]]) -> None:
        super().__init__()
        self.check = check

    def render_GET(self, request):
        def answer(reason: str | None) -> None:
            request.setResponseCode(200 if reason is None else 503)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            request.setHeader(b"cache-control", b"no-store")
            request.write(f"{reason or 'ok'}\n".encode())
            request.finish()

        def failed(failure) -> str:
            return f"the health check failed: {failure.getErrorMessage()}"

        finished = request.notifyFinish()
        finished.addErrback(lambda _: None)  # the poller hung up: nothing to answer
        d = maybeDeferred(self.check).addErrback(failed)
        d.addCallback(lambda reason: None if finished.called else answer(reason))
        return NOT_DONE_YET


def service_health(service) -> Deferred[str | None]:
    """None if every listener of ``service`` listens and its store takes a write, else why."""
    expected = len(service.listeners)
    if not service.running or len(service.ports) < expected:
        return maybeDeferred(lambda: f"{len(service.ports)} of {expected} listeners are up")

    def cannot_write(failure) -> str:
        return f"the message store cannot take writes: {failure.getErrorMessage()}"

    d = maybeDeferred(service.chat.store.check_writable)
    return d.addCallbacks(lambda _: None, cannot_write)


def metrics_site(metrics: ServerMetrics, health: Callable[[], Deferred[str | None]]) -> Site:
    """The ``--metrics-port`` web site: /metrics and /health."""
    # Imported here: it imports the global reactor, which twistd has installed by now.
    from prometheus_client.twisted import MetricsResource

    root = Resource()
    root.putChild(b"metrics", MetricsResource(registry=metrics.registry))
    root.putChild(b"health", HealthResource(health))
    site = _QuietSite(root)
    site.noisy = False
    site.displayTracebacks = False
    return site


class _QuietSite(Site):
    """No access log line per request: a scrape every few seconds would flood the log."""

    def log(self, request) -> None:
        pass
