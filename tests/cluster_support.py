"""Real ``twistd spartan --redis`` nodes and a raw line client, for the cluster tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.redis_support import free_port

TWISTD = shutil.which("twistd", path=os.path.dirname(sys.executable)) or "twistd"
READY = "Started server started on port"


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


class Node:
    """``twistd -n spartan --redis URL`` in its own process; its log is its stdout."""

    def __init__(self, tmp_path: Path, redis_url: str, name: str, *args: str, port: int | None = None):
        self.port = port or free_port()
        self.name = name
        self.tmp_path = tmp_path
        self.args = ["--redis", redis_url, "--node-name", name, *args]
        self.log_path = tmp_path / f"node-{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> Node:
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
        def found():
            if self.process.poll() is not None and text not in self.log:
                raise AssertionError(f"twistd exited ({self.process.returncode}):\n{self.log}")
            return text in self.log

        try:
            wait_for(found, timeout, repr(text))
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.log}") from None

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
        self._log_file.close()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


class LineClient:
    """A socket speaking the line protocol, as a script or ``nc`` would."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""
        self.pushed: list[str] = []  # '*' lines read while waiting for replies
        self.greeting = self.line()

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def line(self) -> str:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the server closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.rstrip(b"\r").decode()

    def command(self, line: str) -> tuple[list[str], str]:
        """Send a command; return the ``*`` lines before its reply, and the reply."""
        self.send(line)
        pushed = []
        while True:
            received = self.line()
            if received.startswith(("OK", "ERR")):
                return pushed, received
            pushed.append(received)

    def ok(self, line: str) -> str:
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
