"""
A store in Redis, shared by every node of a cluster (``twistd spartan --redis URL``).

Theory of operation
-------------------
* Keys (all under ``spartan:``):

  - ``next-id``: a counter; ``INCR`` gives every message its id, so ids are unique in the
    cluster and increase in the order Redis ran the appends, whichever node asked.
  - ``c:<conversation>``: one stream per conversation.  A message is the entry
    ``<id>-0`` with the fields ``t`` (timestamp), ``s`` (sender), ``x`` (text) and ``c``
    (client id, when given).  Using the global id as the stream id keeps both "ids increase
    in append order" and "ids increase within a conversation", and lets ``XRANGE`` answer
    ``messages_after`` directly; ``XADD ... MAXLEN`` enforces retention in the same call.
  - ``conversations``: a set of the conversation keys that hold messages.
  - ``cid:<sender>:<client id>``: the stream key and entry id of the message a client id
    produced (expires after `CLIENT_ID_TTL`; a client resends within minutes, not weeks).
  - ``seen:<user>``: a hash, conversation key -> seen position.
  - ``token:<digest>``: a session token's user and expiry (``<expires> <user>``), with a
    Redis expiry at the same time; the expiry is also checked against the injected clock.

* ``append`` is one Lua script: dedupe check, ``INCR``, ``XADD``, ``SADD``, ``SET`` run
  atomically, so an id cannot be assigned without its message being stored or a client id
  be recorded without its message.  A client id whose message retention already dropped is
  treated as new (as `MemoryStore` does).  ``mark_seen`` is a script too (never moves back).
* Durability is Redis's: the reply to ``append`` comes after Redis ran the script, and is
  on disk only with ``appendonly yes`` and ``appendfsync always`` (docs/cluster.md).
* Failures: txredisapi reconnects by itself (backing off up to `RECONNECT_MAX_DELAY`), but
  a command sent while it is disconnected would wait for the connection forever.  So every
  command fails at once with `StoreError` while there is no connection, and after
  ``timeout`` seconds when Redis does not answer.  The first failure logs
  "Redis unreachable: ..."; a health check (``PING`` every ``health_interval`` seconds on
  the injected clock) logs "Redis is back" once it answers again.
* Not for Redis Cluster: the scripts touch keys they compute (the client-id lookup), which
  needs one Redis (with replicas/Sentinel for failover if wanted).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from twisted.internet import task
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.logger import Logger

from spartan.store import StoreBase, StoredMessage, StoreError

PREFIX = "spartan:"
CLIENT_ID_TTL = 7 * 24 * 3600
DEFAULT_RETENTION = 10_000  # messages kept per conversation (the most one OPEN returns)
RECONNECT_MAX_DELAY = 2.0
UNSEEN_SCAN_LIMIT = 10_000  # messages read per conversation to count what is unseen

_APPEND = """
local stream, dedupe = KEYS[2], KEYS[4]
if dedupe then
  local earlier = redis.call('GET', dedupe)
  if earlier then
    local at = string.find(earlier, ' ', 1, true)
    local key, sid = string.sub(earlier, 1, at - 1), string.sub(earlier, at + 1)
    local found = redis.call('XRANGE', key, sid, sid)
    if #found > 0 then
      return {0, sid, key, found[1][2]}
    end
  end
end
local id = redis.call('INCR', KEYS[1])
local sid = id .. '-0'
local fields = {'t', ARGV[1], 's', ARGV[2], 'x', ARGV[3]}
if dedupe then
  fields[7] = 'c'
  fields[8] = ARGV[4]
end
local maxlen = tonumber(ARGV[5])
if maxlen > 0 then
  redis.call('XADD', stream, 'MAXLEN', maxlen, sid, unpack(fields))
else
  redis.call('XADD', stream, sid, unpack(fields))
end
redis.call('SADD', KEYS[3], ARGV[6])
if dedupe then
  redis.call('SET', dedupe, stream .. ' ' .. sid, 'EX', ARGV[7])
end
return {1, sid}
"""

_MARK_SEEN = """
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local upto = tonumber(ARGV[2])
if upto > current then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return upto
end
return current
"""


@dataclass(frozen=True)
class RedisAddress:
    host: str
    port: int
    db: int
    password: str | None
    username: str | None
    tls: bool

    def __str__(self) -> str:  # never shows the password
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{self.host}:{self.port}/{self.db}"


def parse_redis_url(url: str) -> RedisAddress:
    """``redis://[[user]:password@]host[:port][/db]``; ``rediss://`` for TLS."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"not a redis:// or rediss:// URL: {url!r}")
    try:
        port = parts.port or 6379
        db = int(parts.path.strip("/") or 0)
    except ValueError:
        raise ValueError(f"bad port or database number in {url!r}") from None
    return RedisAddress(
        host=parts.hostname or "localhost",
        port=port,
        db=db,
        password=unquote(parts.password) if parts.password else None,
        username=unquote(parts.username) if parts.username else None,
        tls=parts.scheme == "rediss",
    )


def _conversation_key(conversation: str) -> str:
    return f"{PREFIX}c:{conversation}"


def _message(sid: str, fields: list, conversation: str) -> StoredMessage:
    values = dict(zip(fields[::2], fields[1::2]))
    return StoredMessage(
        id=int(sid.split("-", 1)[0]),
        timestamp=float(values["t"]),
        conversation=conversation,
        sender=values["s"],
        text=values["x"],
        client_id=values.get("c"),
    )


class RedisStore(StoreBase):
    log = Logger(namespace="spartan")

    def __init__(
        self,
        address: RedisAddress | str,
        clock,
        max_per_conversation: int | None = DEFAULT_RETENTION,
        timeout: float = 2.0,
        health_interval: float = 1.0,
        connect: Callable | None = None,
    ) -> None:
        self.address = parse_redis_url(address) if isinstance(address, str) else address
        self.clock = clock
        self._max = max_per_conversation or 0
        self.timeout = timeout
        self.health_interval = health_interval
        self._connect = connect
        self._redis = None
        self._available = True
        self._stopping = False
        self._health: task.LoopingCall | None = None
        self._availability_watchers: list[Callable[[bool], None]] = []

    # -- connection ----------------------------------------------------------------------

    @inlineCallbacks
    def start(self):
        import txredisapi  # imported here: it imports the global reactor
        from twisted.internet.ssl import optionsForClientTLS

        address = self.address
        self._redis = txredisapi.lazyConnection(
            address.host,
            address.port,
            dbid=address.db,
            password=address.password,
            username=address.username,
            ssl_context_factory=optionsForClientTLS(address.host) if address.tls else False,
            connectTimeout=self.timeout,
            replyTimeout=self.timeout,
            convertNumbers=False,
        )
        self._redis._factory.maxDelay = RECONNECT_MAX_DELAY
        deadline = self.clock.seconds() + 5 * self.timeout
        while not self.connected:
            if self.clock.seconds() > deadline:
                yield self._redis.disconnect()
                raise StoreError(f"Redis unreachable at {address}")
            yield task.deferLater(self.clock, 0.05, lambda: None)
        self.log.info("Connected to Redis at {address}", address=str(address))
        self._health = task.LoopingCall(self._check_health)
        self._health.clock = self.clock
        self._health.start(self.health_interval, now=False)

    def stop(self) -> Deferred[None]:
        self._stopping = True  # commands cut short by the disconnection are no outage
        if self._health is not None and self._health.running:
            self._health.stop()
        redis, self._redis = self._redis, None
        if redis is None:
            return succeed(None)
        return redis.disconnect().addCallback(lambda _: None)

    @property
    def connected(self) -> bool:
        # txredisapi's pool size: connections up and ready (0 while reconnecting).
        return self._redis is not None and self._redis._factory.size > 0

    @property
    def available(self) -> bool:
        return self._available and self.connected

    def watch_availability(self, callback: Callable[[bool], None]) -> None:
        """Call ``callback(available)`` whenever Redis goes away or comes back."""
        self._availability_watchers.append(callback)

    def _set_available(self, available: bool, why: str = "") -> None:
        if available == self._available or self._stopping:
            return
        self._available = available
        if available:
            self.log.info("Redis is back at {address}", address=str(self.address))
        else:
            self.log.error("Redis unreachable: {why}", why=why)
        for callback in list(self._availability_watchers):
            callback(available)

    def _check_health(self):
        if not self.connected:
            self._set_available(False, f"no connection to {self.address}")
            return None

        def failed(failure):
            self._set_available(False, failure.getErrorMessage() or failure.type.__name__)

        return self._redis.ping().addCallbacks(lambda _: self._set_available(True), failed)

    def execute(self, method: str, *args) -> Deferred:
        """Run one txredisapi command; fails with StoreError (at once when disconnected)."""
        if not self.connected:
            self._set_available(False, f"no connection to {self.address}")
            raise_now: Deferred = Deferred()
            raise_now.errback(StoreError(f"Redis unreachable at {self.address}"))
            return raise_now
        d = getattr(self._redis, method)(*args)
        d.addTimeout(self.timeout, self.clock)

        def failed(failure):
            if failure.check(StoreError):
                return failure
            why = failure.getErrorMessage() or failure.type.__name__
            if not _is_reply_error(failure.value):
                self._set_available(False, why)
            raise StoreError(f"Redis: {why}")

        return d.addErrback(failed)

    # -- the MessageStore interface ------------------------------------------------------

    def conversations(self) -> Deferred[set[str]]:
        return self.execute("smembers", PREFIX + "conversations").addCallback(set)

    def append(self, conversation, sender, text, timestamp, client_id=None):
        keys = [PREFIX + "next-id", _conversation_key(conversation), PREFIX + "conversations"]
        if client_id is not None:
            keys.append(f"{PREFIX}cid:{sender}:{client_id}")
        args = [repr(timestamp), sender, text, client_id or "", self._max, conversation, CLIENT_ID_TTL]

        def stored(reply):
            if int(reply[0]) == 1:
                sid = reply[1]
                message = StoredMessage(
                    int(sid.split("-", 1)[0]), timestamp, conversation, sender, text, client_id
                )
                return message, True
            _, sid, key, fields = reply
            return _message(sid, fields, key[len(PREFIX) + 2 :]), False

        return self.execute("eval", _APPEND, keys, args).addCallback(stored)

    def append_to(self, conversation, sender, text, timestamp, client_id, receiver) -> None:
        def appended(result) -> None:
            with self.output_batch:
                receiver.appended(*result)

        def failed(reason) -> None:
            with self.output_batch:
                receiver.failed(reason)

        self.append(conversation, sender, text, timestamp, client_id).addCallbacks(appended, failed)

    def messages_after(self, conversation, after_id, limit):
        d = self.execute(
            "execute_command", "XRANGE", _conversation_key(conversation), f"{after_id + 1}-0", "+",
            "COUNT", limit,
        )  # fmt: skip
        return d.addCallback(lambda entries: [_message(s, f, conversation) for s, f in entries])

    def recent(self, conversation, limit, before=None):
        if before is not None and before <= 1:
            return succeed([])  # ids start at 1: nothing is older
        end = "+" if before is None else f"{before - 1}-0"
        d = self.execute(
            "execute_command", "XREVRANGE", _conversation_key(conversation), end, "-",
            "COUNT", limit,
        )  # fmt: skip
        return d.addCallback(
            lambda entries: [_message(s, f, conversation) for s, f in reversed(entries)]
        )

    def seen(self, user, conversation):
        d = self.execute("hget", f"{PREFIX}seen:{user}", conversation)
        return d.addCallback(lambda position: int(position or 0))

    @inlineCallbacks
    def unseen_counts(self, user, conversations):
        positions = yield self.execute("hgetall", f"{PREFIX}seen:{user}")
        counts = {}
        for conversation in conversations:
            after = int(positions.get(conversation, 0))
            messages = yield self.messages_after(conversation, after, UNSEEN_SCAN_LIMIT)
            unseen = [m.id for m in messages if m.sender != user]
            if unseen:
                counts[conversation] = (len(unseen), unseen[0])
        return counts

    def mark_seen(self, user, conversation, upto):
        d = self.execute("eval", _MARK_SEEN, [f"{PREFIX}seen:{user}"], [conversation, upto])
        return d.addCallback(int)

    def add_token(self, digest, user, expires, now):
        ttl = max(1, int(expires - now) + 1)  # Redis forgets it then; token_user checks too
        d = self.execute(
            "execute_command", "SET", f"{PREFIX}token:{digest}", f"{expires!r} {user}", "EX", ttl
        )
        return d.addCallback(lambda _: None)

    def token_user(self, digest, now):
        def found(value):
            if not value:
                return None
            expires, _, user = value.partition(" ")
            return user if float(expires) > now else None

        return self.execute("get", f"{PREFIX}token:{digest}").addCallback(found)

    def remove_token(self, digest):
        return self.execute("delete", f"{PREFIX}token:{digest}").addCallback(lambda _: None)


def _is_reply_error(error: Exception) -> bool:
    """An error Redis answered (a bug, a full disk), as opposed to no answer at all."""
    import txredisapi

    return isinstance(error, txredisapi.ResponseError)
