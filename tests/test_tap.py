"""`twistd spartan`: the plugin is found, options parse, the service listens and logs."""

import gc
import sys

import pytest
from twisted.application.service import IServiceMaker
from twisted.internet.testing import MemoryReactor
from twisted.plugin import getPlugins
from twisted.python import usage

from spartan import tap
from spartan.core.directory import DEMO


def test_the_twistd_plugin_is_discovered():
    makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
    assert "spartan" in makers
    assert makers["spartan"].options is tap.Options


def parse(*args):
    options = tap.Options()
    options.parseOptions(list(args))
    return options


def test_defaults_serve_the_demo_directory_on_port_3000():
    options = parse()
    assert options["ports"] == ["tcp:3000"]
    assert options["directory"] is DEMO


def test_ports_take_numbers_or_endpoints_and_repeat():
    options = parse("--port", "4000", "-p", "tcp:4001:interface=127.0.0.1")
    assert options["ports"] == ["tcp:4000", "tcp:4001:interface=127.0.0.1"]


def test_config_file_gives_the_directory(tmp_path):
    config = tmp_path / "team.toml"
    config.write_text('users = ["ann", "ben", "cy"]\n[groups]\nops = ["ann", "cy"]\n')
    directory = parse("--config", str(config))["directory"]
    assert directory.users == ("ann", "ben", "cy")
    assert directory.groups == {"ops": ("ann", "cy")}


@pytest.mark.parametrize(
    "args, complaint",
    [
        (["--config", "/no/such/file.toml"], "cannot read /no/such/file.toml"),
        (["--message-log", "loud"], "--message-log must be"),
        (["--max-line", "0"], "max-line"),
        (["--max-line", "many"], "max-line"),
    ],
)
def test_bad_options_are_usage_errors(args, complaint):
    with pytest.raises(usage.UsageError) as error:
        parse(*args)
    assert complaint in str(error.value)


def test_bad_endpoint_stops_twistd_with_one_sentence():
    with pytest.raises(tap.CannotStart) as error:
        tap.makeService(parse("--port", "nonsense:1"), MemoryReactor())
    assert error.value.code.startswith("twistd spartan: --port nonsense:1: ")


def test_service_listens_on_every_port_and_logs_the_spec_line(log_lines):
    reactor = MemoryReactor()
    options = parse("--db", ":memory:", "--port", "3000", "--port", "tcp:3001:interface=127.0.0.1")
    service = tap.makeService(options, reactor)
    service.startService()
    assert [(port, interface) for port, _, _, interface in reactor.tcpServers] == [
        (3000, ""),
        (3001, "127.0.0.1"),
    ]
    assert "Started server started on port 3000" in log_lines
    assert "Started server started on port 3001" in log_lines
    service.stopService()
    assert service.ports == []


def test_a_started_service_tunes_the_collector_and_thread_switching_for_its_store():
    # The store's commits run on a worker thread that must get the GIL quickly, and
    # messages awaiting a commit must not be scanned by the collector every 700
    # allocations (docs/performance.md, "Durable store").
    cpython = sys.implementation.name == "cpython"
    sys.setswitchinterval(0.005)
    if cpython:
        gc.set_threshold(700, 10, 10)
    service = tap.makeService(parse("--db", ":memory:", "--port", "3000"), MemoryReactor())
    service.startService()
    assert sys.getswitchinterval() == pytest.approx(0.0005)
    if cpython:
        assert gc.get_threshold() == (20_000, 10, 10)
    service.stopService()


def test_messages_are_kept_in_sqlite_by_default_and_in_memory_on_request():
    from spartan.store.memory import MemoryStore
    from spartan.store.sqlite import SQLiteStore

    durable = tap.makeService(parse(), MemoryReactor())
    assert isinstance(durable.chat.store, SQLiteStore)
    assert durable.chat.store.output_batch is durable.factory.batch
    assert isinstance(tap.makeService(parse("--db", ":memory:"), MemoryReactor()).chat.store, MemoryStore)


def test_an_unusable_database_stops_twistd_with_one_sentence(tmp_path):
    with pytest.raises(tap.CannotStart) as error:
        tap.makeService(parse("--db", str(tmp_path / "no" / "such" / "dir" / "x.sqlite3")), MemoryReactor())
    assert error.value.code.startswith("twistd spartan: --db ")


def test_metrics_port_takes_a_number_or_an_endpoint():
    assert parse()["metrics-port"] is None
    assert parse("--metrics-port", "9100")["metrics-port"] == "tcp:9100"
    endpoint = "tcp:9100:interface=127.0.0.1"
    assert parse("--metrics-port", endpoint)["metrics-port"] == endpoint


def test_metrics_port_is_one_more_listener_and_a_bad_one_cannot_start():
    options = parse("--db", ":memory:", "--metrics-port", "tcp:9100:interface=127.0.0.1")
    service = tap.makeService(options, MemoryReactor())
    assert [(d, what) for d, _, _, what in service.gateways] == [
        ("tcp:9100:interface=127.0.0.1", "metrics")
    ]
    assert service.metrics is not None and service.chat.store.commit_observer is not None
    with pytest.raises(tap.CannotStart, match="--metrics-port nonsense:"):
        tap.makeService(parse("--db", ":memory:", "--metrics-port", "nonsense:1"), MemoryReactor())
