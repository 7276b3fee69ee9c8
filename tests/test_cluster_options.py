"""``twistd spartan`` options for the cluster: without --redis nothing changes."""

from __future__ import annotations

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage

from spartan.core.chat import SingleNode
from spartan.net.reuseport import ReusePortEndpoint, endpoint_from_description
from spartan.tap import Options, makeService


def service(*args):
    options = Options()
    options.parseOptions(list(args))
    return makeService(options, MemoryReactorClock())


def test_without_redis_the_node_is_alone():
    built = service("--port", "tcp:0")
    assert isinstance(built.chat.peers, SingleNode)
    assert type(built.chat.store).__name__ != "RedisStore"


def test_redis_makes_a_cluster_node():
    from spartan.cluster.nodes import RedisCluster
    from spartan.store.redis import RedisStore

    built = service("--redis", "redis://:secret@10.1.2.3:6380/2", "--node-name", "n1",
                    "--presence-ttl", "5", "--retention-messages", "50")  # fmt: skip
    store, peers = built.chat.store, built.chat.peers
    assert isinstance(store, RedisStore) and isinstance(peers, RedisCluster)
    assert (store.address.host, store.address.port, store.address.db) == ("10.1.2.3", 6380, 2)
    assert store.address.password == "secret" and store._max == 50
    assert (peers.node, peers.presence_ttl) == ("n1", 5.0)
    assert peers.message_channel == "spartan:2:messages"


def test_default_node_name_is_host_and_pid():
    import os

    built = service("--redis", "redis://127.0.0.1")
    assert built.chat.peers.node.endswith(f":{os.getpid()}")


@pytest.mark.parametrize("bad", [["--redis", "http://x"], ["--presence-ttl", "0"]])
def test_bad_cluster_options(bad):
    with pytest.raises(usage.UsageError):
        Options().parseOptions(bad)


def test_reuse_port_endpoints():
    reactor = MemoryReactorClock()
    e = endpoint_from_description(reactor, "tcp:3000:interface=127.0.0.1:backlog=10")
    assert isinstance(e, ReusePortEndpoint)
    assert (e.port, e.interface, e.backlog) == (3000, "127.0.0.1", 10)
    e6 = endpoint_from_description(reactor, r"tcp6:3000:interface=\:\:1")
    assert e6.interface == "::1"
    with pytest.raises(ValueError):
        endpoint_from_description(reactor, "ssl:3000:privateKey=k.pem")
    built = service("--reuse-port", "--port", "3001")
    assert isinstance(built.listeners[0].endpoint, ReusePortEndpoint)


def test_two_reuse_port_listeners_share_a_port():
    import socket

    from twisted.internet import reactor
    from twisted.internet.protocol import Factory

    first = endpoint_from_description(reactor, "tcp:0:interface=127.0.0.1")
    port_a = first.listen(Factory()).result
    try:
        number = port_a.getHost().port
        second = endpoint_from_description(reactor, f"tcp:{number}:interface=127.0.0.1")
        port_b = second.listen(Factory()).result
        try:
            assert port_b.getHost().port == number
            assert port_b.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        finally:
            port_b.stopListening()
    finally:
        port_a.stopListening()
