"""The real client over TLS (``--tls``, ``--cafile``) against a real ``twistd spartan``.

The server listens with a self-signed certificate made here for ``localhost`` and
127.0.0.1.  With that certificate as ``--cafile`` the client chats; with the system trust
store, or another certificate, it refuses the server with a clear message and exits 1
(never a reconnect loop).  Every wait is bounded.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.client_support import E2E_TIMEOUT, REPO, ClientProcess, client_command, client_env
from tests.support import LineClient, TwistdServer, free_port
from tests.tls_support import make_certificate

BAD_CERTIFICATE = (
    "the server's certificate could not be verified (not trusted, or not for localhost);"
    " use --cafile for a self-signed certificate."
)


@pytest.fixture
def tls_server(tmp_path):
    key, cert = make_certificate(str(tmp_path))
    _key, other = make_certificate(str(tmp_path), "impostor")
    tls_port = free_port()
    server = TwistdServer(
        tmp_path, "--port", f"ssl:{tls_port}:privateKey={key}:certKey={cert}:interface=127.0.0.1"
    )
    server.start()
    try:
        server.wait_for_log(f"Started server started on port {tls_port}")
        yield dict(server=server, tls_port=tls_port, cert=cert, other_cert=other)
    finally:
        server.stop()


def run_client(port: int, *options: str, host: str = "localhost") -> subprocess.CompletedProcess:
    return subprocess.run(
        client_command("alice", port, host, "--tls", *options), cwd=REPO, env=client_env(),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=E2E_TIMEOUT,
    )  # fmt: skip


def test_chat_over_tls_with_the_servers_certificate(tls_server):
    port = tls_server["tls_port"]
    alice = ClientProcess("alice", port, "localhost", "--cafile", tls_server["cert"])
    try:
        alice.expect(f"[Spartan] Connected to Spartan Server at port {port}.\r\n")
        alice.at_menu()
        alice.line("1", "[Spartan] Enter username whom you want to chat with: ")
        alice.line("bob", "[alice] > ")
        alice.line("over tls", "over tls\r\n[alice] > ")
        # Bob, on the plain listener of the same server, gets it.
        bob = LineClient(tls_server["server"].port)
        try:
            assert bob.command("LOGIN bob")[1] == "OK LOGIN bob"
            pushed, reply = bob.command("OPEN alice")
            # Stored while bob logged in, it may come live as well as in OPEN: one id.
            by_id = {line.split(" ")[2]: line.split(" ", 6)[6] for line in pushed}
            assert list(by_id.values()) == ["over tls"]
            assert bob.command("SEND alice back over plain tcp")[1].startswith("OK SENT")
        finally:
            bob.close()
        alice.expect("[bob] back over plain tcp\r\n[alice] > ")
        alice.line("/quit", "/quit\r\n")
        assert alice.wait_exit() == 0
    finally:
        alice.close()


def test_self_signed_certificate_refused_by_the_system_trust_store(tls_server):
    port = tls_server["tls_port"]
    done = run_client(port)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout == (
        f"[Spartan] Could not connect to Spartan Server at localhost:{port}: {BAD_CERTIFICATE}\n"
    )
    assert "Reconnect" not in done.stdout


def test_certificate_of_another_server_refused(tls_server):
    port = tls_server["tls_port"]
    done = run_client(port, "--cafile", tls_server["other_cert"])
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout == (
        f"[Spartan] Could not connect to Spartan Server at localhost:{port}: {BAD_CERTIFICATE}\n"
    )


def test_trusted_certificate_for_another_name_refused(tmp_path):
    # Trusted (it is the --cafile), but for localhost only: dialling 127.0.0.1 is refused.
    key, cert = make_certificate(str(tmp_path), ip=False)
    tls_port = free_port()
    server = TwistdServer(
        tmp_path, "--port", f"ssl:{tls_port}:privateKey={key}:certKey={cert}:interface=127.0.0.1"
    )
    try:
        server.start()
        server.wait_for_log(f"Started server started on port {tls_port}")
        done = run_client(tls_port, "--cafile", cert, host="127.0.0.1")
    finally:
        server.stop()
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout == (
        f"[Spartan] Could not connect to Spartan Server at 127.0.0.1:{tls_port}:"
        f" {BAD_CERTIFICATE.replace('for localhost', 'for 127.0.0.1')}\n"
    )


def test_tls_to_a_plain_port_fails_clearly(tls_server):
    done = run_client(tls_server["server"].port, "--cafile", tls_server["cert"])
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.startswith("[Spartan] ")
    assert "Traceback" not in done.stdout + done.stderr


def test_unusable_cafile_is_a_usage_error(tmp_path):
    missing = tmp_path / "missing.pem"
    junk = tmp_path / "junk.pem"
    junk.write_text("hello\n")
    for path in (missing, junk):
        done = subprocess.run(
            client_command("alice", free_port(), "localhost", "--cafile", str(path)), cwd=REPO,
            env=client_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=E2E_TIMEOUT,
        )  # fmt: skip
        assert done.returncode == 2
        assert done.stdout == ""
        assert "argument --cafile:" in done.stderr and str(path) in done.stderr


def test_plain_client_at_a_tls_port_is_told_to_use_tls(tls_server):
    port = tls_server["tls_port"]
    done = subprocess.run(
        client_command("alice", port, "localhost"), cwd=REPO, env=client_env(),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=E2E_TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout == (
        f"[Spartan] Lost the connection to Spartan Server at localhost:{port}: The server"
        " closed the connection without a greeting (is it a TLS port? Then use --tls or"
        " --cafile)\n"
    )
