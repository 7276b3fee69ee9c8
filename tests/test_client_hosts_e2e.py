"""The real client given several ``--host`` addresses (the nodes of a cluster).

Two real ``twistd spartan`` servers, each with its own in-memory store (they do not share
messages, which is fine here: what is checked is which server the client is on).  Every
wait is bounded; every process is stopped in ``finally``.
"""

from __future__ import annotations

import signal
import subprocess
import time

from tests.client_support import E2E_TIMEOUT, REPO, ClientProcess, client_command, client_env
from tests.support import LineClient, TwistdServer, free_port

USER_PROMPT = "[Spartan] Enter username whom you want to chat with: "


def pushed_texts(port: int, user: str, conversation: str) -> list[str]:
    """The texts ``OPEN conversation`` gives ``user`` on the server at ``port``."""
    client = LineClient(port)
    try:
        assert client.command(f"LOGIN {user}")[1] == f"OK LOGIN {user}"
        pushed, _reply = client.command(f"OPEN {conversation}")
        return [line.split(" ", 6)[6] for line in pushed]
    finally:
        client.close()


def test_fails_over_to_the_next_host(tmp_path):
    dead = free_port()
    first = TwistdServer(tmp_path)
    second = TwistdServer(tmp_path)
    alice = None
    try:
        first.start()
        second.start()
        # --host 127.0.0.1 --port DEAD --host 127.0.0.1:FIRST --host 127.0.0.1:SECOND
        alice = ClientProcess(
            "alice", dead, "127.0.0.1",
            "--host", f"127.0.0.1:{first.port}", "--host", f"127.0.0.1:{second.port}",
        )  # fmt: skip
        alice.expect(f"[Spartan] Could not connect to Spartan Server at 127.0.0.1:{dead}: ")
        alice.expect(f"[Spartan] Connected to Spartan Server at port {first.port}.\r\n")
        alice.at_menu()
        alice.line("1", USER_PROMPT)
        alice.line("bob", "[alice] > ")
        alice.line("on the first", "on the first\r\n[alice] > ")
        for _ in range(50):  # bounded: until the first server stored it
            if pushed_texts(first.port, "bob", "alice") == ["on the first"]:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the first server never got the message")

        first.stop(signal.SIGKILL)  # a node dies
        alice.expect("[Spartan] Lost the connection to Spartan Server")
        # The next in the list is the second server.
        alice.expect(f"[Spartan] Reconnected to Spartan Server at 127.0.0.1:{second.port}.\r\n")
        alice.expect("[alice] > ")
        alice.line("on the second", "on the second\r\n[alice] > ")
        for _ in range(50):
            if pushed_texts(second.port, "bob", "alice") == ["on the second"]:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the second server never got the message")
        alice.line("/quit", "/quit\r\n")
        assert alice.wait_exit() == 0
    finally:
        if alice is not None:
            alice.close()
        first.stop()
        second.stop()


def test_start_skips_a_dead_host(tmp_path):
    dead = free_port()
    server = TwistdServer(tmp_path)
    try:
        server.start()
        done = subprocess.run(
            client_command("alice", dead, "127.0.0.1", "--host", f"127.0.0.1:{server.port}"),
            cwd=REPO, env=client_env(), input="/quit\n", capture_output=True, text=True,
            timeout=E2E_TIMEOUT,
        )  # fmt: skip
    finally:
        server.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[:2] == [
        f"[Spartan] Could not connect to Spartan Server at 127.0.0.1:{dead}: Connection refused."
        f" Trying 127.0.0.1:{server.port}...",
        f"[Spartan] Connected to Spartan Server at port {server.port}.",
    ]


def test_all_hosts_unreachable():
    one, two = free_port(), free_port()
    done = subprocess.run(
        client_command("alice", one, "127.0.0.1", "--host", f"[::1]:{two}"), cwd=REPO,
        env=client_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=E2E_TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0] == (
        f"[Spartan] Could not connect to Spartan Server at 127.0.0.1:{one}: Connection refused."
        f" Trying [::1]:{two}..."
    )
    assert lines[1].startswith(f"[Spartan] Could not connect to Spartan Server at [::1]:{two}: ")
    assert len(lines) == 2
