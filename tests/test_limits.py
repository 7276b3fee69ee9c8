"""spartan.net.limits: pure policy, tested with plain numbers for time."""

from spartan.net.limits import (
    BackoffConfig,
    ConnectionCounter,
    FailureBackoff,
    LineRate,
    RateConfig,
    Verdict,
)


def test_burst_passes_at_once():
    bucket = LineRate(RateConfig(rate=2, burst=30), now=0)
    assert [bucket.line(0) for _ in range(30)] == [Verdict.PASS] * 30


def test_over_the_burst_is_slowed_then_told_then_dropped():
    bucket = LineRate(RateConfig(rate=2, burst=3), now=0)
    verdicts = [bucket.line(0) for _ in range(3)]
    now = 0.0
    for _ in range(7):
        verdicts.append(bucket.line(now))
        now += bucket.wait  # the adapter stops reading for this long
    assert verdicts == [Verdict.PASS] * 3 + [
        Verdict.SLOW,
        Verdict.SLOW,
        Verdict.WARN,  # the 3rd line in a row on credit (warn_after = burst)
        Verdict.SLOW,
        Verdict.SLOW,
        Verdict.SLOW,  # the 6th (drop_after = 2 * burst)
        Verdict.DROP,
    ]


def test_slowed_line_waits_for_its_token():
    bucket = LineRate(RateConfig(rate=4, burst=2), now=10)
    assert bucket.line(10) is Verdict.PASS
    assert bucket.line(10) is Verdict.PASS
    assert bucket.line(10) is Verdict.SLOW
    assert bucket.wait == 0.25


def test_a_client_within_the_rate_is_never_slowed():
    bucket = LineRate(RateConfig(rate=5, burst=10), now=0)
    assert all(bucket.line(i * 0.2) is Verdict.PASS for i in range(1000))


def test_slowing_down_ends_the_streak():
    bucket = LineRate(RateConfig(rate=1, burst=3), now=0)
    for _ in range(3):
        bucket.line(0)
    assert bucket.line(0) is Verdict.SLOW
    assert bucket.line(1) is Verdict.SLOW  # debt paid, but no spare token yet
    assert bucket.streak == 2
    assert bucket.line(10) is Verdict.PASS  # it waited: bucket refilled
    assert bucket.streak == 0


def test_bucket_never_holds_more_than_the_burst():
    bucket = LineRate(RateConfig(rate=100, burst=5), now=0)
    assert [bucket.line(1e6) for _ in range(6)][-1] is Verdict.SLOW


def test_rate_config_off():
    assert not RateConfig(burst=0).enabled
    assert RateConfig().enabled


def test_connection_counter_total_and_per_address():
    counter = ConnectionCounter(max_total=3, max_per_address=2)
    assert counter.acquire("a") is None
    assert counter.acquire("a") is None
    assert "your address" in counter.acquire("a")
    assert counter.acquire("b") is None
    assert "too many connections" in counter.acquire("c")
    counter.release("a")
    assert counter.acquire("c") is None
    assert counter.total == 3 and counter.by_address == {"a": 1, "b": 1, "c": 1}


def test_connection_counter_release_is_safe_and_cleans_up():
    counter = ConnectionCounter()
    counter.release("nobody")
    assert counter.acquire("x") is None
    counter.release("x")
    counter.release("x")
    assert counter.total == 0 and counter.by_address == {}


def test_connection_counter_unlimited():
    counter = ConnectionCounter(0, 0)
    assert all(counter.acquire("a") is None for _ in range(10_000))


def test_backoff_free_failures_then_doubling_then_cap():
    backoff = FailureBackoff(BackoffConfig(free_failures=2, base=1, cap=8))
    waits = []
    for _ in range(7):
        backoff.failed("1.2.3.4", now=100)
        waits.append(backoff.delay("1.2.3.4", now=100))
    assert waits == [0, 0, 1, 2, 4, 8, 8]
    assert backoff.delay("1.2.3.4", now=104) == 4
    assert backoff.delay("1.2.3.4", now=108) == 0
    assert backoff.delay("5.6.7.8", now=100) == 0  # other addresses are not affected


def test_backoff_forgets_quiet_addresses():
    backoff = FailureBackoff(BackoffConfig(free_failures=0, base=1, cap=60, forget_after=100))
    for _ in range(5):
        backoff.failed("a", now=0)
    assert backoff.delay("a", now=0) > 0
    backoff.failed("a", now=200)  # forgotten, so this is the first failure again
    assert backoff.delay("a", now=200) == 1


def test_backoff_table_is_bounded():
    backoff = FailureBackoff(BackoffConfig(free_failures=0, max_addresses=100))
    for i in range(1000):
        backoff.failed(f"10.0.{i // 256}.{i % 256}", now=0)
    assert len(backoff._failures) == 100
    assert backoff.delay("10.0.3.231", now=0) > 0  # the newest are kept
