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


def test_defaults_serve_the_demo_directory_on_port_3000_of_loopback_only():
    options = parse()
    assert options["ports"] == ["tcp:3000:interface=127.0.0.1"]
    assert options["directory"] is DEMO


def test_a_config_file_without_a_port_serves_every_interface(tmp_path):
    config = tmp_path / "team.toml"
    config.write_text('users = ["ann"]\n')
    assert parse("--config", str(config))["ports"] == ["tcp:3000"]


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


def test_a_coercer_refusal_names_the_option_and_the_value():
    with pytest.raises(usage.UsageError) as error:
        parse("--rate", "-1")
    assert str(error.value) == "--rate -1: must be a number >= 0"
    with pytest.raises(usage.UsageError) as error:
        parse("--presence-ttl", "soon")
    assert str(error.value) == "--presence-ttl soon: must be a number"


def test_a_port_number_out_of_range_is_refused_while_parsing():
    with pytest.raises(usage.UsageError) as error:
        parse("--irc-port", "70000")
    assert str(error.value) == "--irc-port 70000: a port number is 0 to 65535"


def test_under_twistd_a_usage_error_is_one_line_and_exit_status_2(capsys):
    from twisted.scripts.twistd import ServerOptions

    with pytest.raises(SystemExit) as exit:
        ServerOptions().parseOptions(["-n", "spartan", "--max-line", "0"])
    assert exit.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "twistd spartan: --max-line must be a positive whole number, not '0'; "
        "see twistd spartan --help\n"
    )


def test_log_format_json_becomes_twistds_logger_and_wants_standard_output():
    from twisted.scripts.twistd import ServerOptions

    from spartan.logs import json_observer

    twistd = ServerOptions()
    twistd.parseOptions(["-n", "spartan", "--log-format", "json"])
    assert twistd["logger"] is json_observer  # twistd resolves the dotted name
    for daemon in (["spartan"], ["-n", "--logfile", "x.log", "spartan"]):
        with pytest.raises(SystemExit):
            ServerOptions().parseOptions([*daemon, "--log-format", "json"])


def test_the_demo_directory_says_it_serves_loopback_only():
    assert tap.exposure_notices(parse()) == [
        "Serving the demo users, who need no password, on 127.0.0.1 only: "
        "give --config to serve your own users."
    ]
    assert "on tcp:4000:" in tap.exposure_notices(parse("--port", "4000"))[0]
    irc_too = tap.exposure_notices(parse("--irc-port", "6667"))[0]
    assert "on tcp:3000:interface=127.0.0.1, tcp:6667:" in irc_too


def test_users_without_passwords_are_counted_in_one_warning(tmp_path):
    from spartan.passwd import hash_password

    config = tmp_path / "team.toml"
    config.write_text(
        f'users = ["ann", "ben", "cy"]\n[passwords]\nann = "{hash_password("pw", n=2**4)}"\n'
    )
    assert tap.exposure_notices(parse("--config", str(config))) == [
        "2 of 3 users have no password: anyone who can connect may log in as them "
        "(add hashes, or --require-passwords)."
    ]
    assert "cannot log in" in tap.exposure_notices(
        parse("--config", str(config), "--require-passwords")
    )[0]
    config.write_text(f'users = ["ann"]\n[passwords]\nann = "{hash_password("pw", n=2**4)}"\n')
    assert tap.exposure_notices(parse("--config", str(config))) == []


class RefusingEndpoint:
    def listen(self, factory):
        from twisted.internet.defer import fail
        from twisted.internet.error import CannotListenError

        return fail(CannotListenError("", 3177, OSError(98, "Address already in use")))


def test_a_listener_that_cannot_listen_logs_one_sentence_and_stops_with_status_1(log_lines):
    service = tap.makeService(parse("--db", ":memory:", "--port", "3000"), MemoryReactor())
    statuses = []
    service.stop_process = statuses.append
    service.add_listener("--web-port", "tcp:3177", RefusingEndpoint(), None, "web server")
    service.startService()
    assert statuses == [1]
    assert "Cannot listen on --web-port tcp:3177: Address already in use." in log_lines
    assert "Started server started on port 3000" in log_lines  # the ones before it started
    service.stopService()
    assert service.ports == []


def test_a_store_that_cannot_open_stops_with_status_1(log_lines):
    service = tap.makeService(parse("--db", ":memory:"), MemoryReactor())
    statuses = []
    service.stop_process = statuses.append

    def broken():
        raise OSError("disk on fire")

    service.chat.store.start = broken
    service.startService()
    assert statuses == [1]
    assert "Cannot open the message store: disk on fire" in log_lines
    assert not any(line.startswith("Started") for line in log_lines)


def test_sighup_once_the_reactor_runs_calls_reload_and_changes_nothing_yet(log_lines):
    import os
    import signal

    from twisted.internet.testing import MemoryReactorClock

    class Reactor(MemoryReactorClock):
        def callFromThread(self, f, *args):  # what a signal handler may call
            self.callLater(0, f, *args)

    reactor = Reactor()
    service = tap.makeService(parse("--db", ":memory:"), reactor)
    before = signal.getsignal(signal.SIGHUP)
    try:
        service.startService()
        assert signal.getsignal(signal.SIGHUP) == before  # not before the reactor runs
        reactor.run()
        os.kill(os.getpid(), signal.SIGHUP)
        reactor.advance(0)
    finally:
        signal.signal(signal.SIGHUP, before)
    assert "SIGHUP: no --config to re-read; nothing changed" in log_lines
    service.stopService()


def test_metrics_port_takes_a_number_or_an_endpoint():
    assert parse()["metrics-port"] is None
    assert parse("--metrics-port", "9100")["metrics-port"] == "tcp:9100"
    endpoint = "tcp:9100:interface=127.0.0.1"
    assert parse("--metrics-port", endpoint)["metrics-port"] == endpoint


def test_metrics_port_is_one_more_listener_and_a_bad_one_cannot_start():
    options = parse("--db", ":memory:", "--metrics-port", "tcp:9100:interface=127.0.0.1")
    service = tap.makeService(options, MemoryReactor())
    assert [(l.description, l.what) for l in service.listeners if l.option == "--metrics-port"] == [
        ("tcp:9100:interface=127.0.0.1", "metrics")
    ]
    assert service.metrics is not None and service.chat.store.commit_observer is not None
    with pytest.raises(tap.CannotStart, match="--metrics-port nonsense:"):
        tap.makeService(parse("--db", ":memory:", "--metrics-port", "nonsense:1"), MemoryReactor())


def test_the_backup_goes_beside_the_database_unless_told_where(tmp_path):
    db = str(tmp_path / "chat.sqlite3")
    service = tap.makeService(parse("--db", db), MemoryReactor())
    assert service.backup_path == db + ".backup"
    elsewhere = str(tmp_path / "nightly.sqlite3")
    assert tap.makeService(parse("--db", db, "--backup-path", elsewhere), MemoryReactor()).backup_path == elsewhere
    assert tap.makeService(parse("--db", ":memory:"), MemoryReactor()).backup_path is None


@pytest.mark.parametrize(
    "args, complaint",
    [
        (["--db", ":memory:", "--backup-path", "x"], "--backup-path backs up an SQLite --db; with --db :memory: there is no file"),
        (["--redis", "redis://127.0.0.1:6379/0", "--backup-path", "x"], "--backup-path backs up an SQLite --db; with --redis, back up Redis itself"),
        (["--db", "chat.sqlite3", "--backup-path", "./chat.sqlite3"], "--backup-path ./chat.sqlite3: that is the database itself"),
    ],
)
def test_a_backup_path_that_cannot_be_is_a_usage_error(args, complaint):
    with pytest.raises(usage.UsageError) as error:
        parse(*args)
    assert str(error.value) == complaint
