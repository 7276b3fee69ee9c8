import gc
import sys

import pytest

from tests.support import LineClient, TwistdServer


@pytest.fixture(autouse=True)
def _own_directory(tmp_path, monkeypatch):
    """Each test runs in its own directory: `twistd spartan` writes ./spartan.sqlite3."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def _own_interpreter_settings():
    """A started SpartanService tunes the process (spartan.interpreter): undo it after."""
    threshold = gc.get_threshold() if hasattr(gc, "get_threshold") else None  # not on PyPy
    interval = sys.getswitchinterval()
    yield
    if threshold is not None:
        gc.set_threshold(*threshold)
    sys.setswitchinterval(interval)


@pytest.fixture
def server(tmp_path):
    """A real `twistd spartan` on a free loopback port, stopped after the test."""
    with TwistdServer(tmp_path) as running:
        yield running


@pytest.fixture
def connect(server):
    clients = []

    def open_client() -> LineClient:
        client = LineClient(server.port)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()


@pytest.fixture
def log_lines():
    """What the server logs during the test, as formatted lines."""
    from twisted.logger import formatEvent, globalLogPublisher

    lines: list[str] = []

    def observe(event):
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)
