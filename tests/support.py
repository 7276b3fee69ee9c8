"""Helpers for end-to-end tests: a real `twistd spartan` and a line client over loopback."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

TWISTD = shutil.which("twistd", path=os.path.dirname(sys.executable)) or "twistd"
READY = "Started server started on port"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 10.0, what: str = "condition", interval: float = 0.05):
    """Poll ``predicate`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met after {timeout}s")
        time.sleep(interval)


class TwistdServer:
    """``twistd -n spartan`` in its own process; the log is read from its stdout."""

    def __init__(
        self, tmp_path: Path, *args: str, port: int | None = None, name: str | None = None
    ) -> None:
        self.port = port or free_port()
        self.tmp_path = tmp_path
        if "--db" not in args:  # the durable default, one file per server
            args = (*args, "--db", str(tmp_path / f"spartan-{self.port}.sqlite3"))
        self.args = args
        self.log_path = tmp_path / f"{name or 'twistd'}-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> TwistdServer:
        command = [
            TWISTD, "-n", "--pidfile=", "spartan",
            "--port", f"tcp:{self.port}:interface=127.0.0.1", *self.args,
        ]  # fmt: skip
        self._log_file = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            command, cwd=self.tmp_path, stdout=self._log_file, stderr=subprocess.STDOUT
        )
        self.wait_for_log(f"{READY} {self.port}", timeout)
        return self

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log:
            if self.process.poll() is not None:
                raise AssertionError(f"twistd exited ({self.process.returncode}):\n{self.log}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the log after {timeout}s:\n{self.log}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        if self.process is not None:
            self._log_file.close()
            return self.process.returncode
        return 0

    def kill(self) -> int:
        """SIGKILL: what a crash looks like."""
        return self.stop(signal.SIGKILL)

    def __enter__(self) -> TwistdServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class LineClient:
    """A socket speaking the line protocol, as a script or `nc` would."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""
        self.pushed: list[str] = []  # '*' lines read by `ok` while waiting for replies
        self.greeting = self.line()

    def send(self, line: str | bytes) -> None:
        data = line.encode() if isinstance(line, str) else line
        self.sock.sendall(data + b"\r\n")

    def line(self) -> str:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the server closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.rstrip(b"\r").decode()

    def command(self, line: str | bytes) -> tuple[list[str], str]:
        """Send a command; return the ``*`` lines that came before its reply, and the reply."""
        self.send(line)
        pushed = []
        while True:
            received = self.line()
            if received.startswith(("OK", "ERR")):
                return pushed, received
            pushed.append(received)

    def ok(self, line: str) -> str:
        """Send a command that must succeed; keep the ``*`` lines that came first."""
        pushed, reply = self.command(line)
        self.pushed.extend(pushed)
        assert reply.startswith("OK"), f"{line!r} -> {reply!r}"
        return reply

    def next_pushed(self, prefix: str = "* MSG") -> str:
        """The next pushed line starting with ``prefix`` (waits up to the socket timeout)."""
        while True:
            for i, line in enumerate(self.pushed):
                if line.startswith(prefix):
                    return self.pushed.pop(i)
            self.pushed.append(self.line())

    def close(self) -> None:
        self.sock.close()
