"""A real `twistd spartan` process, spoken to over loopback sockets as telnet or nc would."""

import socket
import subprocess
import time

from tests.support import TWISTD, LineClient, TwistdServer


def in_order(log: str, lines: list[str]) -> bool:
    position = 0
    for line in lines:
        position = log.find(line, position)
        if position < 0:
            return False
        position += len(line)
    return True


def test_one_to_one_sample_run_of_the_spec(server, connect):
    alice, bob = connect(), connect()
    assert alice.greeting.startswith("* HELLO Spartan")
    assert alice.command("LOGIN alice")[1] == "OK LOGIN alice"
    assert bob.command("LOGIN bob")[1] == "OK LOGIN bob"
    assert alice.command("OPEN bob") == ([], "OK OPEN bob 0")
    assert alice.command("SEND bob hi")[1].startswith("OK SENT ")
    pushed, reply = bob.command("OPEN alice")
    assert reply == "OK OPEN alice 1" and pushed[0].endswith(" alice alice hi")
    conversation = [
        (bob, alice, "alice", "Hey"),
        (alice, bob, "bob", "How r u?"),
        (bob, alice, "alice", "I am fine. And, how r u doing?"),
        (alice, bob, "bob", "Good. Just busy with the classes"),
    ]
    for sender, receiver, target, text in conversation:
        assert sender.command(f"SEND {target} {text}")[1].startswith("OK SENT ")
        assert receiver.line().endswith(f" {text}")
    server.wait_for_log("alice to bob: Good. Just busy with the classes")
    assert in_order(
        server.log,
        [
            "Started server started on port",
            "Creating new buffer for key bob",
            "alice to bob: hi",
            "Sending to usr bob",
            "bob to alice: Hey",
            "Sending to usr alice",
            "alice to bob: How r u?",
            "Sending to usr bob",
            "bob to alice: I am fine. And, how r u doing?",
            "Sending to usr alice",
            "alice to bob: Good. Just busy with the classes",
            "Sending to usr bob",
        ],
    )


def test_group_sample_run_of_the_spec(server, connect):
    alice, bob, eve = connect(), connect(), connect()
    for client, user in [(alice, "alice"), (bob, "bob")]:
        client.command(f"LOGIN {user}")
    assert alice.command("OPEN #group1") == ([], "OK OPEN #group1 0")
    alice.command("SEND #group1 hi")
    assert bob.line().endswith(" #group1 alice hi")
    bob.command("SEND #group1 hello everyone")
    assert alice.line().endswith(" #group1 bob hello everyone")
    eve.command("LOGIN eve")  # eve arrives late and sees what the group said
    pushed, reply = eve.command("OPEN #group1")
    assert reply == "OK OPEN #group1 2"
    assert [line.split(" ", 5)[5] for line in pushed] == ["alice hi", "bob hello everyone"]
    eve.command("SEND #group1 hey, how r u guys doing?")
    assert alice.line().endswith("eve hey, how r u guys doing?")
    assert bob.line().endswith("eve hey, how r u guys doing?")
    server.wait_for_log("Sending to group group1\n", timeout=5)
    assert in_order(
        server.log,
        [
            "[Group] Creating new buffer for key group1",
            "alice to group1: hi",
            "Sending to group group1",
            "bob to group1: hello everyone",
            "Sending to group group1",
            "eve to group1: hey, how r u guys doing?",
            "Sending to group group1",
        ],
    )


def test_bad_input_does_not_disturb_other_users(server, connect):
    alice, mallory = connect(), connect()
    alice.command("LOGIN alice")
    mallory.command("LOGIN foo")
    mallory.sock.sendall(b"\xff\xfb\x01\xc3\x28\x1b[2J\n" + b"A" * 10000 + b"\nSEND #group1 hi\n")
    assert mallory.line().startswith("ERR ")
    assert mallory.line().startswith("ERR line-too-long")
    assert mallory.line().startswith("ERR not-a-member")
    assert alice.command("SEND bob still fine")[1].startswith("OK SENT ")


def test_server_starts_from_any_directory_with_a_config(tmp_path):
    config = tmp_path / "class.toml"
    config.write_text('users = ["ann", "ben"]\n[groups]\nstudy = ["ann", "ben"]\n')
    with TwistdServer(tmp_path, "--config", str(config)) as server:
        client = LineClient(server.port)
        client.command("LOGIN ann")
        assert client.command("USERS")[1] == "OK USERS ann=online ben=offline"
        assert client.command("GROUPS")[1] == "OK GROUPS study=ann,ben"
        client.close()


def test_a_bad_config_stops_twistd_with_a_clear_message(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('users = ["ann"]\n[groups]\nstudy = ["ann", "zed"]\n')
    result = subprocess.run(
        [TWISTD, "-n", "--pidfile=", "spartan", "--config", str(config)],
        cwd=tmp_path, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode != 0
    assert "group 'study' lists unknown users: zed" in result.stdout + result.stderr


def test_a_client_that_never_reads_is_dropped_and_loses_nothing(tmp_path):
    with TwistdServer(
        tmp_path, "--max-pending", "65536", "--message-log", "off", "--burst", "0"
    ) as server:
        alice = LineClient(server.port)
        alice.command("LOGIN alice")
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", server.port))
        stalled.sendall(b"LOGIN bob\r\n")  # and never reads again
        text = "x" * 3000
        sent = 0
        deadline = time.monotonic() + 30
        # Enough to fill the kernel's socket buffers and then the limit; bounded in count and time.
        while "stopped reading" not in server.log and sent < 6000 and time.monotonic() < deadline:
            for _ in range(100):
                alice.send(f"SEND bob {sent} {text}")
                sent += 1
            for _ in range(100):
                assert alice.line().startswith("OK SENT ")
        server.wait_for_log("Closing the connection of bob: it stopped reading")
        stalled.close()
        assert alice.command("PING")[1] == "OK PONG"  # everyone else is still served
        bob = LineClient(server.port)
        bob.command("LOGIN bob")
        pushed, reply = bob.command("OPEN alice")
        assert reply == f"OK OPEN alice {sent}"
        assert [int(line.split(" ")[6]) for line in pushed] == list(range(sent))
        alice.close()
        bob.close()
