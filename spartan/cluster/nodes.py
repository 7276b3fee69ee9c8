"""
Several nodes acting as one server over Redis: live delivery and presence across nodes.

Theory of operation
-------------------
* Messages are stored in Redis by `spartan.store.redis.RedisStore`, so any node can serve
  any user.  This module only carries what is *live*: new messages, and who is online.
* Delivery.  Once the store has a message, the node that took it delivers it to its own
  sessions at once (skipping the sending session, as a single node does) and gathers it;
  when the store has answered the whole batch (`RedisStore.call_after_results`), the
  gathered messages go out in one ``PUBLISH`` on the message channel
  (`spartan.cluster.batches`).  Every node subscribes to that channel, decodes a batch once
  and delivers it to its own sessions, inside one output batch; it ignores its own
  publications, which it has already delivered.  So a batch of messages costs one
  ``PUBLISH`` however many messages and recipients it has, and nothing needs to remember
  which session sent a message.
  A node whose subscription is down misses live messages; they stay unseen in Redis and
  its users get them with ``OPEN``, exactly as after a disconnection.
* Presence.  One sorted set holds ``"<user> <node>"`` members scored by the Redis time at
  which they expire.  A heartbeat (every ``ttl / 3`` on the injected clock) re-scores this
  node's online users, removes expired members (a dead node's users drop out within
  ``ttl``) and reads the whole set back: that read is the periodic resync of the cached
  set of users online elsewhere.  Between heartbeats, join and leave events on the
  presence channel keep the cache current, so ``USERS`` never waits for Redis.  Using
  Redis's own clock (``TIME`` in the script) means node clocks need not agree.
* Channels are named after the database number: pub/sub ignores ``SELECT``, and two
  clusters sharing one Redis on different databases must not hear each other.
"""

from __future__ import annotations

import json
from collections import defaultdict

from twisted.internet import task
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

from spartan.cluster.batches import batch_prefix, decode_batch, encode_batch
from spartan.core.chat import Chat, Conversation
from spartan.store import StoredMessage, StoreError
from spartan.store.redis import PREFIX, RedisStore

DEFAULT_PRESENCE_TTL = 30.0

_HEARTBEAT = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local expires = t + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], expires, ARGV[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""


class RedisCluster:
    """`spartan.core.chat.Peers` over Redis pub/sub and a presence sorted set."""

    log = Logger(namespace="spartan")

    def __init__(
        self,
        chat: Chat,
        store: RedisStore,
        node: str,
        clock,
        presence_ttl: float = DEFAULT_PRESENCE_TTL,
    ) -> None:
        self.chat = chat
        self.store = store
        self.node = node
        self.clock = clock
        self.presence_ttl = presence_ttl
        db = store.address.db
        self.message_channel = f"{PREFIX}{db}:messages"
        self.presence_channel = f"{PREFIX}{db}:presence"
        self.presence_key = f"{PREFIX}presence"
        self._local: set[str] = set()  # users with a session on this node
        self._remote: dict[str, set[str]] = defaultdict(set)  # user -> other nodes
        self._subscriber = None
        self._subscribed = False
        self._heartbeat: task.LoopingCall | None = None
        self._outgoing: list[StoredMessage] = []  # stored in this batch, to publish
        self._own_batches = batch_prefix(node)

    # -- lifecycle -------------------------------------------------------------------------

    @inlineCallbacks
    def start(self):
        self._subscriber = _subscribe(self)
        deadline = self.clock.seconds() + 5 * self.store.timeout
        while not self._subscribed:
            if self.clock.seconds() > deadline:
                raise StoreError("cannot subscribe to the Redis channels")
            yield task.deferLater(self.clock, 0.02, lambda: None)
        yield self.beat()
        self._heartbeat = task.LoopingCall(self.beat)
        self._heartbeat.clock = self.clock
        self._heartbeat.start(self.presence_ttl / 3, now=False)
        self.log.info("Cluster node {node} joined via {redis}", node=self.node, redis=str(self.store.address))

    @inlineCallbacks
    def stop(self):
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        members = [self._member(user) for user in self._local]
        if members and self.store.connected:
            try:
                yield self.store.execute("zrem", self.presence_key, *members)
                for user in sorted(self._local):
                    yield self._event("leave", user)
            except StoreError:
                pass  # the entries expire by themselves
        subscriber, self._subscriber = self._subscriber, None
        if subscriber is not None:
            yield subscriber.disconnect()

    # -- delivery -----------------------------------------------------------------------------

    def publish(self, message: StoredMessage, conversation: Conversation, origin) -> None:
        """Deliver to this node's sessions now; tell the others once per store batch."""
        self.chat._deliver(message, conversation, origin)
        if not self._outgoing:
            self.store.call_after_results(self._publish_batch)
        self._outgoing.append(message)

    def _publish_batch(self) -> None:
        messages, self._outgoing = self._outgoing, []
        d = self.store.execute("publish", self.message_channel, encode_batch(self.node, messages))
        d.addErrback(self._publish_failed, messages)

    def _publish_failed(self, failure, messages: list[StoredMessage]) -> None:
        failure.trap(StoreError)
        self.log.warn(
            "Messages {first} to {last} are stored but other nodes were not told: {why}",
            first=messages[0].id,
            last=messages[-1].id,
            why=failure.value,
        )

    def _message_received(self, data: str) -> None:
        if type(data) is str and data.startswith(self._own_batches):
            return  # delivered here when it was stored
        batch = decode_batch(data)
        if batch is None:
            self.log.warn("Ignoring a malformed cluster message: {data!r}", data=data[:200])
            return
        node, messages = batch
        if node == self.node:
            return  # delivered here when it was stored
        conversations: dict[str, Conversation | None] = {}
        # One output batch: a whole batch's deliveries go out in one write per connection.
        with self.store.output_batch:
            for message in messages:
                key = message.conversation
                if key in conversations:
                    conversation = conversations[key]
                else:
                    conversation = conversations[key] = self.chat.conversation_for_key(key)
                    if conversation is None:
                        self.log.warn("A message for an unknown conversation {key}", key=key)
                if conversation is not None:
                    self.chat.deliver_local(message, conversation)

    # -- presence -------------------------------------------------------------------------

    def _member(self, user: str) -> str:
        return f"{user} {self.node}"

    def joined(self, user: str) -> None:
        self._local.add(user)
        d = self.store.execute("eval", _HEARTBEAT, [self.presence_key], [self.presence_ttl, self._member(user)])
        d.addCallback(lambda _: self._event("join", user))
        d.addErrback(lambda f: f.trap(StoreError))  # the heartbeat adds it once Redis is back

    def left(self, user: str) -> None:
        self._local.discard(user)
        d = self.store.execute("zrem", self.presence_key, self._member(user))
        d.addCallback(lambda _: self._event("leave", user))
        d.addErrback(lambda f: f.trap(StoreError))  # it expires by itself

    def is_online(self, user: str) -> bool:
        return bool(self._remote.get(user))

    def online_elsewhere(self):
        return self._remote.keys()

    def _event(self, kind: str, user: str) -> Deferred:
        return self.store.execute(
            "publish", self.presence_channel, json.dumps({"e": kind, "u": user, "n": self.node})
        )

    def _presence_received(self, data: str) -> None:
        try:
            fields = json.loads(data)
            kind, user, node = fields["e"], fields["u"], fields["n"]
        except (ValueError, KeyError, TypeError):
            return
        if node == self.node:
            return
        if kind == "join":
            self._remote[user].add(node)
        elif kind == "leave":
            nodes = self._remote.get(user)
            if nodes is not None:
                nodes.discard(node)
                if not nodes:
                    del self._remote[user]

    def beat(self) -> Deferred:
        """Refresh this node's entries, drop expired ones, resync the cache."""
        members = [self._member(user) for user in sorted(self._local)]
        d = self.store.execute("eval", _HEARTBEAT, [self.presence_key], [self.presence_ttl, *members])

        def resync(everyone):
            remote: dict[str, set[str]] = defaultdict(set)
            for member in everyone:
                user, _, node = member.partition(" ")
                if node != self.node:
                    remote[user].add(node)
            self._remote = remote

        return d.addCallbacks(resync, lambda f: f.trap(StoreError))

    def _subscription_ready(self) -> None:
        first = not self._subscribed
        self._subscribed = True
        if not first:
            self.log.info("Cluster subscription restored")
            self.beat()  # join/leave events were missed meanwhile


def _subscribe(cluster: RedisCluster):
    """A reconnecting txredisapi subscriber that (re)subscribes on every connection."""
    import txredisapi  # imported here: it imports the global reactor
    from twisted.internet import reactor
    from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
    from twisted.internet.ssl import optionsForClientTLS

    class Subscriber(txredisapi.SubscriberProtocol):
        def connectionMade(self):
            d = super().connectionMade()
            d.addCallback(
                lambda _: self.subscribe([cluster.message_channel, cluster.presence_channel])
            )
            d.addCallbacks(lambda _: cluster._subscription_ready(), self._subscribe_failed)
            return d

        def _subscribe_failed(self, failure):
            cluster.log.error("Cannot subscribe: {why}", why=failure.getErrorMessage())
            self.transport.loseConnection()

        def messageReceived(self, pattern, channel, message):
            try:
                if channel == cluster.message_channel:
                    cluster._message_received(message)
                elif channel == cluster.presence_channel:
                    cluster._presence_received(message)
            except Exception:
                cluster.log.failure("Error handling a cluster message")

    address = cluster.store.address
    factory = txredisapi.SubscriberFactory(isLazy=True)
    factory.protocol = Subscriber
    factory.password = address.password
    factory.username = address.username
    factory.maxDelay = 2.0
    endpoint = HostnameEndpoint(reactor, address.host, address.port, timeout=cluster.store.timeout)
    if address.tls:
        endpoint = wrapClientTLS(optionsForClientTLS(address.host), endpoint)
    factory.startConnecting(endpoint)
    return factory


def default_node_name() -> str:
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def join_cluster(chat: Chat, options, reactor) -> RedisCluster:
    """The cluster side of a node (``twistd spartan --redis ...``), over its Redis store."""
    node = options["node-name"] or default_node_name()
    return RedisCluster(chat, chat.store, node, reactor, presence_ttl=options["presence-ttl"])
