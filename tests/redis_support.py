"""
A real ``redis-server`` for tests: on a free loopback port, in a temporary directory, with
the append-only file on (``--appendonly yes --appendfsync always``), stopped by its PID.

``redis-server`` comes from Debian's package or from the ``redis-server`` PyPI wheel
(``.ci/run`` installs one).  When it is missing the tests that need it are skipped on a
developer's machine, but fail loudly when ``CI`` is set: a cluster that is never tested in
CI is not tested.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import free_port

_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')  # one argument in a MONITOR line


def find_redis_server() -> str | None:
    """The ``redis-server`` binary: $REDIS_SERVER, PATH, or the PyPI ``redis-server`` wheel."""
    explicit = os.environ.get("REDIS_SERVER")
    if explicit:
        return explicit
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redis_server  # the PyPI wheel that bundles a binary

        return str(redis_server.REDIS_SERVER_PATH)
    except Exception:
        return None


def require_redis_server() -> str:
    binary = find_redis_server()
    if binary is None:
        message = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must provide it", pytrace=False)
        pytest.skip(message)
    return binary


class RedisServer:
    """One ``redis-server`` process; ``kill()`` and ``start()`` again keep port and data."""

    def __init__(self, directory: Path, binary: str | None = None, port: int | None = None):
        self.binary = binary or require_redis_server()
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        self.log_path = self.directory / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        command = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--dir", str(self.directory),
            "--logfile", str(self.log_path),
            "--daemonize", "no",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self.process.poll() is not None:
                raise AssertionError(f"redis-server exited: {self.log}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"redis-server not ready after {timeout}s: {self.log}")
            time.sleep(0.02)
        return self

    @property
    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def command(self, *args: str | bytes, timeout: float = 2.0) -> bytes:
        """Send one command in RESP and return the raw reply (enough for tests)."""
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg.encode() if isinstance(arg, str) else arg
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(b"".join(parts))
            return s.recv(65536)

    def ping(self) -> bool:
        try:
            return self.command("PING", timeout=0.5).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            os.kill(process.pid, sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: what a crash looks like (the AOF keeps every acknowledged write)."""
        self.stop(signal.SIGKILL)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Monitor:
    """A ``MONITOR`` connection: the commands Redis ran, as Redis itself reports them."""

    def __init__(self, server: RedisServer) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=2.0)
        self.sock.sendall(b"*1\r\n$7\r\nMONITOR\r\n")
        self.buffer = b""
        while b"+OK\r\n" not in self.buffer:
            self.buffer += self.sock.recv(65536)
        self.buffer = self.buffer.split(b"+OK\r\n", 1)[1]

    def commands(self, quiet: float = 0.3) -> list[list[str]]:
        """The commands clients sent since the last call (read until ``quiet`` seconds
        pass with nothing new), each as its arguments, the name upper-cased:
        ``["EVALSHA", ...]``.  Commands run by scripts (``[0 lua]``) are left out."""
        self.sock.settimeout(quiet)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                self.buffer += data
        except TimeoutError:
            pass
        lines, _, self.buffer = self.buffer.rpartition(b"\r\n")
        commands = []
        # +1700000000.123456 [0 127.0.0.1:40000] "evalsha" "..." ...
        for line in lines.decode(errors="replace").split("\r\n"):
            if "] " not in line or " lua]" in line:
                continue
            arguments = _QUOTED.findall(line.split("] ", 1)[1])
            if arguments:
                commands.append([arguments[0].upper(), *arguments[1:]])
        return commands

    def names(self, prefix: str = "") -> list[str]:
        """The names of the commands since the last call that start with ``prefix``."""
        return [c[0] for c in self.commands() if c[0].startswith(prefix)]

    def close(self) -> None:
        self.sock.close()
