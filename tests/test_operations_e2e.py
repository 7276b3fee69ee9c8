"""
A real ``twistd spartan`` as an operator runs it: a listener that cannot start stops the
process with status 1 and one sentence; a usage error is one line; SIGHUP leaves a daemon
running; JSON logs; a socket inherited from systemd is served.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.support import TWISTD, LineClient, free_port, wait_for

STARTS_WITHIN = 15.0  # seconds: generous on a shared machine; a hang takes forever


def run_twistd(tmp_path, *args: str, twistd_args=("-n", "--pidfile=")):
    """Run twistd to its end; (exit status, stdout, stderr, seconds it took)."""
    started = time.monotonic()
    result = subprocess.run(
        [TWISTD, *twistd_args, "spartan", *args],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=STARTS_WITHIN,
    )
    return result.returncode, result.stdout, result.stderr, time.monotonic() - started


def critical_lines(log: str) -> list[str]:
    return [line.split("] ", 1)[1] for line in log.splitlines() if "#critical]" in line]


@pytest.fixture
def busy_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


@pytest.mark.parametrize("option", ["--port", "--irc-port"])
def test_a_busy_port_stops_the_server_with_status_1_and_one_sentence(tmp_path, busy_port, option):
    args = ["--db", ":memory:", option, f"tcp:{busy_port}:interface=127.0.0.1"]
    if option != "--port":
        args += ["--port", f"tcp:{free_port()}:interface=127.0.0.1"]
    status, out, err, seconds = run_twistd(tmp_path, *args)
    assert status == 1, out + err
    assert critical_lines(out) == [
        f"Cannot listen on {option} tcp:{busy_port}:interface=127.0.0.1: Address already in use."
    ]
    assert seconds < 10
    if option != "--port":  # the listener that did start was closed on the way out
        assert "Started server started on port" in out and "Closed" in out


def test_a_port_out_of_range_stops_the_server_with_status_1(tmp_path):
    status, out, err, _ = run_twistd(tmp_path, "--db", ":memory:", "--port", "tcp:99999")
    assert status == 1, out + err
    assert critical_lines(out) == ["Cannot listen on --port tcp:99999: bind(): port must be 0-65535."]


def test_a_port_number_out_of_range_is_a_one_line_usage_error(tmp_path):
    status, out, err, _ = run_twistd(tmp_path, "--port", "99999")
    assert status == 2
    assert out == ""
    assert err == "twistd spartan: --port 99999: a port number is 0 to 65535; see twistd spartan --help\n"


@pytest.mark.parametrize(
    "args, line",
    [
        (["--rate", "-1"], "--rate -1: must be a number >= 0"),
        (["--burst", "many"], "--burst many: must be a whole number"),
        (["--bogus"], "option --bogus not recognized"),
        (["--config", "nosuch.toml"], "--config cannot read nosuch.toml: "),
    ],
)
def test_a_usage_error_is_one_line_naming_the_option_not_the_whole_help(tmp_path, args, line):
    status, out, err, _ = run_twistd(tmp_path, *args)
    assert status == 2
    assert out == ""
    assert err.startswith(f"twistd spartan: {line}")
    assert err.endswith("; see twistd spartan --help\n") and err.count("\n") == 1


def test_a_database_that_cannot_open_stops_the_server_with_one_sentence(tmp_path):
    status, out, err, _ = run_twistd(tmp_path, "--db", str(tmp_path / "no" / "dir" / "x.sqlite3"))
    assert status == 1
    assert err.startswith("twistd spartan: --db ") and err.count("\n") == 1


def test_versions_are_spartans(tmp_path):
    from spartan import __version__

    status, out, _, _ = run_twistd(tmp_path, "--version", twistd_args=())
    assert (status, out) == (0, f"Spartan {__version__}\n")
    client = subprocess.run(
        [sys.executable, "-m", "spartan.client", "--version"],
        capture_output=True, text=True, timeout=STARTS_WITHIN,
    )  # fmt: skip
    assert (client.returncode, client.stdout) == (0, f"Spartan {__version__}\n")


def test_sighup_leaves_a_daemon_serving_and_its_pidfile_in_place(tmp_path):
    pidfile, logfile, port = tmp_path / "spartan.pid", tmp_path / "spartan.log", free_port()
    started = subprocess.run(
        [TWISTD, f"--pidfile={pidfile}", f"--logfile={logfile}", "spartan", "--db", ":memory:",
         "--port", f"tcp:{port}:interface=127.0.0.1"],
        cwd=tmp_path, timeout=STARTS_WITHIN,
    )  # fmt: skip
    assert started.returncode == 0  # the parent returns once the daemon is on its way
    wait_for(lambda: logfile.exists() and "Started server started" in logfile.read_text(),
             STARTS_WITHIN, "the daemon's start line")  # fmt: skip
    pid = int(pidfile.read_text())
    try:
        os.kill(pid, signal.SIGHUP)
        wait_for(lambda: "SIGHUP: no --config to re-read" in logfile.read_text(), 10, "the HUP line")
        os.kill(pid, 0)  # still there
        client = LineClient(port)
        assert client.greeting.startswith("* HELLO Spartan")
        assert client.ok("LOGIN alice") == "OK LOGIN alice"
        client.close()
        assert pidfile.exists()
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pidfile.exists(), 10, "the pidfile removed on SIGTERM")


def test_json_logs_are_one_object_a_line(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [TWISTD, "-n", "--pidfile=", "spartan", "--log-format", "json", "--db", ":memory:",
         "--port", f"tcp:{port}:interface=127.0.0.1"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        started = f"Started server started on port {port}"
        events = []
        while not any(event["text"] == started for event in events):
            line = process.stdout.readline()
            assert line, f"twistd ended: {process.wait()} {process.stderr.read()}"
            events.append(json.loads(line))
        client = LineClient(port)
        client.ok("LOGIN alice")
        client.close()
    finally:
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=10)
    events += [json.loads(line) for line in rest.splitlines()]
    assert process.returncode == -signal.SIGTERM  # twistd ends by the signal it got
    started_event = next(event for event in events if event["text"] == started)
    assert started_event["log_level"]["name"] == "info"
    assert started_event["log_namespace"] == "spartan.service.SpartanService"
    assert started_event["port"] == port and isinstance(started_event["log_time"], float)
    assert any(event["text"] == "Server Shut Down." for event in events)


BECOME_ACTIVATED = """
import os, sys
os.dup2(int(sys.argv[1]), 3)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[2], sys.argv[2:])
"""


def test_a_socket_inherited_from_systemd_is_served(tmp_path):
    """What systemd does for spartan.socket: the socket is fd 3, named by LISTEN_FDNAMES,
    for the process LISTEN_PID."""
    with socket.socket() as inherited:
        inherited.bind(("127.0.0.1", 0))
        inherited.listen()
        port = inherited.getsockname()[1]
        log = tmp_path / "twistd.log"
        with open(log, "wb") as output:
            # The wrapper does what systemd does after its fork: the socket becomes fd 3,
            # LISTEN_PID this process's pid; then it becomes twistd.
            process = subprocess.Popen(
                [sys.executable, "-c", BECOME_ACTIVATED, str(inherited.fileno()),
                 TWISTD, "-n", "--pidfile=", "spartan", "--db", ":memory:",
                 "--port", "systemd:domain=INET:name=spartan"],
                cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT,
                pass_fds=[inherited.fileno()],
                env={**os.environ, "LISTEN_FDS": "1", "LISTEN_FDNAMES": "spartan"},
            )  # fmt: skip
        try:
            wait_for(lambda: f"Started server started on port {port}" in log.read_text()
                     or process.poll() is not None, STARTS_WITHIN, "the start line")  # fmt: skip
            assert process.poll() is None, log.read_text()
        finally:
            inherited.close()  # only twistd holds it now
        try:
            client = LineClient(port)
            assert client.ok("LOGIN bob") == "OK LOGIN bob"
            client.close()
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(10) == -signal.SIGTERM


def read_unit(name: str) -> dict[str, dict[str, str]]:
    """A systemd unit file from contrib/: sections of keys (continuation lines joined)."""
    import configparser
    from pathlib import Path

    text = (Path(__file__).parents[1] / "contrib" / name).read_text()
    unit = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes="#")
    unit.optionxform = str
    unit.read_string(text.replace("\\\n", " "))
    return {section: dict(unit[section]) for section in unit.sections()}


def test_the_contrib_service_runs_a_command_line_twistd_accepts_on_the_socket_unit(tmp_path):
    from twisted.scripts.twistd import ServerOptions

    service, socket_unit = read_unit("spartan.service"), read_unit("spartan.socket")
    command = service["Service"]["ExecStart"].split()
    assert command[0].endswith("/twistd")
    team = tmp_path / "team.toml"
    team.write_text('users = ["ann"]\n')
    arguments = [str(team) if a == "/etc/spartan/team.toml" else a for a in command[1:]]
    twistd = ServerOptions()
    twistd.parseOptions(arguments)
    assert twistd["nodaemon"] and not twistd["pidfile"]
    spartan = twistd.subOptions
    [port] = spartan["ports"]
    name = socket_unit["Socket"]["FileDescriptorName"]
    assert port == f"systemd:domain=INET:name={name}"
    assert socket_unit["Socket"]["ListenStream"].startswith("0.0.0.0:")  # INET, as asked
    assert socket_unit["Socket"]["Service"] == "spartan.service"
    assert service["Service"]["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert spartan["db"].startswith(service["Service"]["WorkingDirectory"])


FAKE_PYTHON3 = """#!/bin/sh
# Stands in for python3 -m venv .venv: a venv whose pip and twistd say what they were asked.
echo "python3 $*" >> "$CALLS"
mkdir -p .venv/bin
printf '#!/bin/sh\\necho "pip $*" >> "$CALLS"\\n' > .venv/bin/pip
printf '#!/bin/sh\\necho "twistd $*" >> "$CALLS"\\n' > .venv/bin/twistd
chmod +x .venv/bin/pip .venv/bin/twistd
"""


def test_scripts_serve_installs_again_only_when_the_source_changed(tmp_path):
    import shutil
    from pathlib import Path

    root = Path(__file__).parents[1]
    tree = tmp_path / "tree"
    for name in ("scripts/serve", "setup.cfg", "pyproject.toml", "README.md",
                 "spartan/__init__.py", "twisted/plugins/spartan_plugin.py"):  # fmt: skip
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / name, tree / name)
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(FAKE_PYTHON3)
    (bin_dir / "python3").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "CALLS": str(calls)}

    def serve() -> list[str]:
        calls.write_text("")
        subprocess.run(["bash", "scripts/serve", "--port", "4000"], cwd=tree, env=env,
                       check=True, timeout=60)  # fmt: skip
        return calls.read_text().splitlines()

    installed = ["python3 -m venv .venv", "pip install -q --disable-pip-version-check ."]
    started = "twistd -n --pidfile= spartan --port 4000"
    assert serve() == [*installed, started]
    assert serve() == [started]  # nothing changed: straight to the server
    (tree / "spartan" / "__init__.py").write_text('__version__ = "0.2.0"\n')
    assert serve() == [*installed, started]
    assert serve() == [started]
