"""
Two real ``twistd spartan --redis`` nodes over a real ``redis-server``, driven by raw sockets:
cross-node chat, cluster-wide presence, a node killed, Redis killed and restarted.
"""

from __future__ import annotations

import re

import pytest

from tests.cluster_support import LineClient, Node, wait_for
from tests.redis_support import Monitor, RedisServer, free_port

TTL = "1.5"  # --presence-ttl: a dead node's users go offline within this


@pytest.fixture
def redis(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def nodes(tmp_path, redis):
    started = []

    def start(name, *args, port=None):
        node = Node(tmp_path, redis.url, name, "--presence-ttl", TTL, *args, port=port)
        started.append(node)
        node.start()
        node.wait_for_log(f"Cluster node {name} joined")
        return node

    yield start
    for node in started:
        node.stop()


@pytest.fixture
def connect():
    clients = []

    def open_client(node, user=None):
        client = LineClient(node.port)
        clients.append(client)
        if user:
            client.ok(f"LOGIN {user}")
        return client

    yield open_client
    for client in clients:
        client.close()


def fields(msg_line: str) -> list[str]:
    """``* MSG <id> <time> <conversation> <sender> <text>``: [id, time, conversation, sender, text]."""
    return msg_line.split(" ", 6)[2:]


def presence(client) -> dict[str, str]:
    reply = client.ok("USERS")
    return dict(field.split("=") for field in reply.split()[2:])


def test_one_to_one_and_group_chat_across_nodes(nodes, connect):
    a, b = nodes("a"), nodes("b")
    alice, eve = connect(a, "alice"), connect(a, "eve")
    bob, charlie = connect(b, "bob"), connect(b, "charlie")
    alice_on_b = connect(b, "alice")

    sent = alice.ok("SEND bob hello from node a")
    message_id = sent.split()[2]
    line = bob.next_pushed()
    assert fields(line)[0] == message_id
    assert fields(line)[2:] == ["alice", "alice", "hello from node a"]
    # the sender's other session (on the other node) sees it too, named as she names it
    assert alice_on_b.next_pushed().endswith("bob alice hello from node a")

    bob.ok("SEND alice hi back")
    assert alice.next_pushed().endswith("bob bob hi back")

    bob.ok("SEND #group1 to the group")
    for reader in (alice, eve, charlie):
        assert reader.next_pushed().endswith("#group1 bob to the group")

    # the sending session never gets its own message: a PING answered right away proves
    # nothing is pending for it
    for client in (alice, bob):
        pushed, reply = client.command("PING x")
        assert reply == "OK PONG x" and not [p for p in pushed + client.pushed if p.startswith("* MSG")]

    pushed, reply = charlie.command("HISTORY #group1")
    assert reply == "OK HISTORY #group1 1" and pushed[0].endswith("bob to the group")
    # the log of the node that took a message has the spec's lines; the other does not repeat them
    assert "alice to bob: hello from node a" in a.log
    assert "alice to bob: hello from node a" not in b.log


def test_presence_is_cluster_wide(nodes, connect):
    a, b = nodes("a"), nodes("b")
    bob = connect(b, "bob")
    assert presence(bob)["alice"] == "offline"
    alice = connect(a, "alice")
    wait_for(lambda: presence(bob)["alice"] == "online", 5, "alice online on node b")
    assert presence(alice)["bob"] == "online"
    alice.ok("QUIT")
    wait_for(lambda: presence(bob)["alice"] == "offline", 5, "alice offline on node b")


def test_node_death_loses_nothing_and_its_users_resume_elsewhere(nodes, connect):
    a, b = nodes("a"), nodes("b")
    alice, bob = connect(a, "alice"), connect(b, "bob")
    ids = [bob.ok(f"SEND alice before {i}").split()[2] for i in range(3)]
    for i in range(3):
        assert alice.next_pushed().endswith(f"bob bob before {i}")
    alice.ok(f"ACK bob {ids[0]}")
    wait_for(lambda: presence(bob)["alice"] == "online", 5, "alice online")

    a.kill()
    with pytest.raises((EOFError, OSError)):
        alice.line()
    # node a cannot say goodbye: its presence entry expires
    wait_for(lambda: presence(bob)["alice"] == "offline", 10, "alice's presence expired")
    bob.ok("SEND alice while you were away")

    alice = connect(b, "alice")
    pushed, reply = alice.command("OPEN bob")
    assert reply == "OK OPEN bob 3"
    assert [fields(line)[4] for line in pushed] == [
        "before 1", "before 2", "while you were away",
    ]  # fmt: skip
    assert presence(bob)["alice"] == "online"


def test_redis_down_refuses_messages_then_recovers(nodes, connect, redis):
    a, b = nodes("a"), nodes("b")
    alice, bob = connect(a, "alice"), connect(b, "bob")
    alice.ok("SEND bob one")
    assert bob.next_pushed().endswith("alice one")

    redis.kill()
    _, reply = alice.command("SEND id=c-2 bob two")
    assert reply.startswith("ERR unavailable")
    a.wait_for_log("Redis unreachable:")
    b.wait_for_log("Redis unreachable:")
    # nothing that was refused appears later

    redis.start()
    a.wait_for_log("Redis is back", timeout=15)
    b.wait_for_log("Cluster subscription restored", timeout=15)
    a.wait_for_log("Cluster subscription restored", timeout=15)
    alice.ok("SEND id=c-2 bob two")
    assert bob.next_pushed().endswith("alice two")
    pushed, reply = bob.command("OPEN alice")
    assert [fields(line)[4] for line in pushed] == ["one", "two"]
    assert a.log.count("Redis unreachable:") == 1


def test_nodes_share_a_port_with_reuse_port(nodes, connect):
    port = free_port()
    a = nodes("a", "--reuse-port", port=port)
    b = nodes("b", "--reuse-port", port=port)
    assert a.port == b.port
    clients = [connect(a, None) for _ in range(24)]
    for i, client in enumerate(clients):
        client.ok(f"LOGIN {['alice', 'bob', 'charlie', 'eve'][i % 4]}")
    # the kernel spreads connections over both processes (all 24 on one: odds 2 ** -23)
    logins = lambda node: len(re.findall(r"\w+ logged in", node.log))  # noqa: E731
    wait_for(lambda: logins(a) + logins(b) == 24, 5, "24 logins")
    assert logins(a) > 0 and logins(b) > 0
    clients[0].ok("SEND bob across")
    assert clients[1].next_pushed().endswith("alice across")


def test_a_batch_of_messages_crosses_nodes_in_order_in_one_publish(nodes, connect, redis):
    a, b = nodes("a", "--burst", "0"), nodes("b", "--burst", "0")
    alice, bob, charlie = connect(a, "alice"), connect(b, "bob"), connect(b, "charlie")
    eve = connect(a, "eve")
    monitor = Monitor(redis)
    try:
        # 120 SENDs in one write: one reactor turn on node a, so one batch
        lines = [f"SEND bob n{i}" if i % 2 else f"SEND #group1 g{i}" for i in range(120)]
        alice.sock.sendall("".join(f"{line}\r\n" for line in lines).encode())
        ids = [int(alice.line().split()[2]) for _ in lines]
        assert ids == sorted(ids)
        to_bob = [line for line in (bob.next_pushed() for _ in lines)]
        assert [int(fields(line)[0]) for line in to_bob] == ids
        assert [fields(line)[4] for line in to_bob] == [line.split(" ", 2)[2] for line in lines]
        group = [fields(charlie.next_pushed()) for _ in range(60)]
        assert [(int(f[0]), f[4]) for f in group] == [(ids[i], f"g{i}") for i in range(0, 120, 2)]
        # eve is on alice's node: delivered there, not through Redis
        assert [fields(eve.next_pushed())[4] for _ in range(60)] == [f"g{i}" for i in range(0, 120, 2)]
        publishes = [c for c in monitor.commands() if c[:2] == ["PUBLISH", "spartan:0:messages"]]
        assert 1 <= len(publishes) <= 3, len(publishes)  # one per batch, not one per message
        for client in (bob, charlie, eve):  # exactly once: nothing more is pending
            pushed, reply = client.command("PING x")
            assert reply == "OK PONG x" and not [p for p in pushed + client.pushed if p.startswith("* MSG")]
    finally:
        monitor.close()
