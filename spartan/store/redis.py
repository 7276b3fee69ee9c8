"""
A store in Redis, shared by every node of a cluster (``twistd spartan --redis URL``).

Theory of operation
-------------------
* Keys (all under ``spartan:``):

  - ``next-id``: a counter; ``INCRBY`` gives every message its id, so ids are unique in the
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
  - ``topic:<conversation>``: a hash with the fields ``x`` (text), ``s`` (setter) and ``t``
    (timestamp) of the topic last set.

* **Group commit.**  `append_to` only queues a message; a call of ``_run`` scheduled with
  ``callLater(0)`` sends everything queued in that reactor turn as one script call
  (`_APPEND_BATCH`: dedupe checks, one ``INCRBY`` for the batch's ids, ``XADD ... MAXLEN``,
  ``SADD``, ``SET`` of the client ids), so a turn's messages cost one round trip.  While a
  batch is in flight the next one queues up, and is sent as soon as the answer comes back,
  before that answer's receivers are called: under load batches grow instead of round
  trips.  The script runs alone and checks everything before its first write, so a batch
  is stored whole or not at all; its receivers all get ``appended`` or all get ``failed``.
  They are called inside ``output_batch`` (the server's output batching), followed by what
  was handed to `call_after_results` meanwhile (the cluster's one publish per batch).
  Reads and ``mark_seen`` made while appends are queued queue behind them, so a read sees
  every append made before it.  A client id whose message retention already dropped is
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

import json
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from twisted.internet import task
from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from spartan.store import QueuedStore, StoredMessage, StoreError, Topic

PREFIX = "spartan:"
CLIENT_ID_TTL = 7 * 24 * 3600
DEFAULT_RETENTION = 10_000  # messages kept per conversation (the most one OPEN returns)
RECONNECT_MAX_DELAY = 2.0
UNSEEN_SCAN_LIMIT = 10_000  # messages read per conversation to count what is unseen
# Messages per script call at most: a longer script would hold Redis (and every other node)
# for longer at once; a larger batch is cut into several calls, pipelined.
_MAX_BATCH = 1000
_CALL = object()  # marks a read or seen-position update queued behind appends

# One batch of appends, atomically (a script runs alone, and its writes reach the AOF and the
# replicas as one transaction).  KEYS: the id counter, the set of conversations.  ARGV: the
# key prefix, the retention (0: none), the client-id lifetime, then the batch as JSON:
# ``[[conversation, sender, text, timestamp, client id or ""], ...]`` (one argument for the
# whole batch: building a RESP argument costs the node more than the JSON does).  Every
# check comes before the first write, and no write can fail, so a batch is stored whole or
# not at all.  Reply: ``{first id, duplicate...}``: the new messages got consecutive ids
# from ``first id`` in batch order; a duplicate is ``{i, j}`` (message i repeats message j
# of this batch) or ``{i, entry id, stream, fields}`` (it repeats a stored message).
_APPEND_BATCH = """
local prefix, maxlen, ttl = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local batch = cjson.decode(ARGV[4])
local reply, fresh, claimed, checked = {0}, {}, {}, {}
for i, m in ipairs(batch) do
  if not checked[m[1]] then  -- an XADD must not fail half-way through the batch
    checked[m[1]] = true
    local kind = redis.call('TYPE', prefix .. 'c:' .. m[1])['ok']
    if kind ~= 'stream' and kind ~= 'none' then
      return redis.error_reply('WRONGTYPE ' .. prefix .. 'c:' .. m[1] .. ' is not a stream')
    end
  end
  local duplicate = false
  if m[5] ~= '' then
    local key = prefix .. 'cid:' .. m[2] .. ':' .. m[5]
    local first = claimed[key]
    if first then
      reply[#reply + 1] = {i, first}
      duplicate = true
    else
      local earlier = redis.call('GET', key)
      if earlier then
        local at = string.find(earlier, ' ', 1, true)
        local stream, sid = string.sub(earlier, 1, at - 1), string.sub(earlier, at + 1)
        local found = redis.call('XRANGE', stream, sid, sid)
        if #found > 0 then
          reply[#reply + 1] = {i, sid, stream, found[1][2]}
          duplicate = true
        end
      end
      if not duplicate then
        claimed[key] = i
        m[6] = key
      end
    end
  end
  if not duplicate then
    fresh[#fresh + 1] = m
  end
end
if #fresh == 0 then
  return reply
end
local id = redis.call('INCRBY', KEYS[1], #fresh) - #fresh
reply[1] = id + 1
local known = {}
for _, m in ipairs(fresh) do
  id = id + 1
  local stream, sid = prefix .. 'c:' .. m[1], id .. '-0'
  local fields = {'t', m[4], 's', m[2], 'x', m[3]}
  if m[6] then
    fields[7] = 'c'
    fields[8] = m[5]
  end
  if maxlen > 0 then
    redis.call('XADD', stream, 'MAXLEN', maxlen, sid, unpack(fields))
  else
    redis.call('XADD', stream, sid, unpack(fields))
  end
  if not known[m[1]] then
    known[m[1]] = true
    redis.call('SADD', KEYS[2], m[1])
  end
  if m[6] then
    redis.call('SET', m[6], stream .. ' ' .. sid, 'EX', ttl)
  end
end
return reply
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


class RedisStore(QueuedStore):
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
        # Group commit (see the module's theory of operation).
        self._pending: list = []
        self._scheduled = None  # the call of _run, while one is scheduled
        self._in_flight = 0  # script calls sent, not answered
        self._answering: list[Callable[[], None]] | None = None  # call_after_results
        self._idle_waiters: list[Deferred[None]] = []
        self.batches = 0  # script calls sent (the tests count round trips with it)
        self.appended = 0  # messages in them
        self.errors = 0  # commands that failed (unreachable, timed out, refused)

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

    @inlineCallbacks
    def stop(self):
        """Answer every queued append, then disconnect."""
        if self._health is not None and self._health.running:
            self._health.stop()
        if self.connected:
            yield self._until_idle()
        if self.batches:
            self.log.info(
                "Redis store: {messages} messages appended in {batches} script calls",
                messages=self.appended,
                batches=self.batches,
            )
        self._stopping = True  # commands cut short by the disconnection are no outage
        redis, self._redis = self._redis, None
        if redis is not None:
            yield redis.disconnect()

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
            self.errors += 1
            raise_now: Deferred = Deferred()
            raise_now.errback(StoreError(f"Redis unreachable at {self.address}"))
            return raise_now
        try:
            d = getattr(self._redis, method)(*args)
        except Exception as error:  # txredisapi refused the arguments (it cannot encode them)
            return fail(StoreError(f"Redis: {error}"))
        d.addTimeout(self.timeout, self.clock)

        def failed(failure):
            if failure.check(StoreError):
                return failure
            self.errors += 1
            why = failure.getErrorMessage() or failure.type.__name__
            if not _is_reply_error(failure.value):
                self._set_available(False, why)
            raise StoreError(f"Redis: {why}")

        return d.addErrback(failed)

    # -- the MessageStore interface ------------------------------------------------------

    def check_writable(self) -> Deferred[None]:
        # A key that expires: a read-only replica or a full Redis refuses it, nothing stays.
        d = self.execute("set", PREFIX + "health-check", "1", None, 10_000)  # PX 10 s
        return d.addCallback(lambda _: None)

    def conversations(self) -> Deferred[set[str]]:
        return self._ordered("smembers", PREFIX + "conversations").addCallback(set)

    def append_to(self, conversation, sender, text, timestamp, client_id, receiver) -> None:
        """Queue a message for the next batch; once Redis ran the batch's script,
        ``receiver.appended(message, is_new)`` or ``receiver.failed(reason)``."""
        self._pending.append((conversation, sender, text, timestamp, client_id, receiver))
        if self._scheduled is None and not self._in_flight:
            self._scheduled = self.clock.callLater(0, self._run)

    def call_after_results(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once the receivers of the batch now being answered have all
        been called (or in the next reactor turn when no batch is being answered): how the
        cluster publishes a batch's messages once."""
        if self._answering is not None:
            self._answering.append(callback)
        else:
            self.clock.callLater(0, callback)

    def _ordered(self, method: str, *args) -> Deferred:
        """``execute`` after the appends already queued, so that a read sees every append
        made before it (they would otherwise overtake the queue on the connection)."""
        if not self._pending:
            return self.execute(method, *args)
        d: Deferred = Deferred()
        self._pending.append((_CALL, method, args, d))
        return d

    # -- group commit -----------------------------------------------------------------------

    def _run(self) -> None:
        """Send everything queued: each run of appends as one script call (at most
        `_MAX_BATCH` messages each), each read in its place; all in one write."""
        self._scheduled = None
        operations, self._pending = self._pending, []
        batch: list = []
        for operation in operations:
            if operation[0] is _CALL:
                self._send(batch)
                batch = []
                _, method, args, d = operation
                self.execute(method, *args).chainDeferred(d)
            else:
                batch.append(operation)
                if len(batch) == _MAX_BATCH:
                    self._send(batch)
                    batch = []
        self._send(batch)

    def _send(self, batch: list) -> None:
        if not batch:
            return
        self.batches += 1
        self.appended += len(batch)
        self._in_flight += 1
        payload = json.dumps(
            [[m[0], m[1], m[2], repr(m[3]), m[4] or ""] for m in batch],
            ensure_ascii=False,
            separators=(",", ":"),
        )
        keys = [PREFIX + "next-id", PREFIX + "conversations"]
        args = [PREFIX, self._max, CLIENT_ID_TTL, payload]
        d = self.execute("eval", _APPEND_BATCH, keys, args)
        d.addBoth(self._answer, batch, self.clock.seconds())

    def _answer(self, reply, batch: list, started: float) -> None:
        self._in_flight -= 1
        if self.commit_observer is not None:
            self.commit_observer(self.clock.seconds() - started, len(batch))
        if self._pending and not self._in_flight and self._scheduled is None:
            # Send what queued up meanwhile first: Redis works on it while this thread
            # answers the batch that just came back.
            self._run()
        outcomes = _outcomes(reply, batch)
        self._answering = after = []
        try:
            with self.output_batch:
                for operation, outcome in zip(batch, outcomes):
                    receiver = operation[5]
                    try:  # one receiver's bug must not stop the others
                        if type(outcome) is tuple:
                            receiver.appended(*outcome)
                        else:
                            receiver.failed(outcome)
                    except Exception:
                        self.log.failure("message store: a receiver of a stored message failed")
                for callback in after:
                    callback()
        finally:
            self._answering = None
        self._wake_if_idle()


    def messages_after(self, conversation, after_id, limit):
        d = self._ordered(
            "execute_command", "XRANGE", _conversation_key(conversation), f"{after_id + 1}-0", "+",
            "COUNT", limit,
        )  # fmt: skip
        return d.addCallback(lambda entries: [_message(s, f, conversation) for s, f in entries])

    def recent(self, conversation, limit, before=None):
        if before is not None and before <= 1:
            return succeed([])  # ids start at 1: nothing is older
        end = "+" if before is None else f"{before - 1}-0"
        d = self._ordered(
            "execute_command", "XREVRANGE", _conversation_key(conversation), end, "-",
            "COUNT", limit,
        )  # fmt: skip
        return d.addCallback(
            lambda entries: [_message(s, f, conversation) for s, f in reversed(entries)]
        )

    def seen(self, user, conversation):
        d = self._ordered("hget", f"{PREFIX}seen:{user}", conversation)
        return d.addCallback(lambda position: int(position or 0))

    @inlineCallbacks
    def unseen_counts(self, user, conversations):
        positions = yield self._ordered("hgetall", f"{PREFIX}seen:{user}")
        counts = {}
        for conversation in conversations:
            after = int(positions.get(conversation, 0))
            messages = yield self.messages_after(conversation, after, UNSEEN_SCAN_LIMIT)
            unseen = [m.id for m in messages if m.sender != user]
            if unseen:
                counts[conversation] = (len(unseen), unseen[0])
        return counts

    def topic(self, conversation):
        d = self._ordered("hgetall", f"{PREFIX}topic:{conversation}")
        return d.addCallback(
            lambda fields: Topic(fields["x"], fields["s"], float(fields["t"])) if fields else None
        )

    def set_topic(self, conversation, topic):
        fields = {"x": topic.text, "s": topic.setter, "t": repr(topic.timestamp)}
        d = self._ordered("hmset", f"{PREFIX}topic:{conversation}", fields)
        return d.addCallback(lambda _: None)

    def mark_seen(self, user, conversation, upto):
        d = self._ordered("eval", _MARK_SEEN, [f"{PREFIX}seen:{user}"], [conversation, upto])
        return d.addCallback(int)

    def add_token(self, digest, user, expires, now):
        ttl = max(1, int(expires - now) + 1)  # Redis forgets it then; token_user checks too
        d = self._ordered(
            "execute_command", "SET", f"{PREFIX}token:{digest}", f"{expires!r} {user}", "EX", ttl
        )
        return d.addCallback(lambda _: None)

    def token_user(self, digest, now):
        def found(value):
            if not value:
                return None
            expires, _, user = value.partition(" ")
            return user if float(expires) > now else None

        return self._ordered("get", f"{PREFIX}token:{digest}").addCallback(found)

    def remove_token(self, digest):
        return self._ordered("delete", f"{PREFIX}token:{digest}").addCallback(lambda _: None)


def _outcomes(reply, batch: list) -> list:
    """What each message of a batch became: ``(message, is_new)``, or the exception to fail
    it with (every message of a batch shares the outcome of its script)."""
    if isinstance(reply, Failure):
        error = reply.value
        if not isinstance(error, StoreError):
            error = StoreError(f"Redis: {reply.getErrorMessage()}")
        return [error] * len(batch)
    try:
        next_id = int(reply[0])
        outcomes: list = [None] * len(batch)
        for duplicate in reply[1:]:
            index = int(duplicate[0]) - 1
            if len(duplicate) == 2:
                outcomes[index] = int(duplicate[1]) - 1  # resolved below, once it has an id
            else:
                _, sid, key, fields = duplicate
                outcomes[index] = (_message(sid, fields, key[len(PREFIX) + 2 :]), False)
        for index, (conversation, sender, text, timestamp, client_id, _) in enumerate(batch):
            outcome = outcomes[index]
            if outcome is None:
                message = StoredMessage(next_id, timestamp, conversation, sender, text, client_id)
                outcomes[index] = (message, True)
                next_id += 1
            elif type(outcome) is int:
                outcomes[index] = (outcomes[outcome][0], False)
        return outcomes
    except (TypeError, ValueError, IndexError, KeyError) as error:  # not the script's reply
        return [StoreError(f"Redis: unexpected reply to an append ({error})")] * len(batch)


def _is_reply_error(error: Exception) -> bool:
    """An error Redis answered (a bug, a full disk) or a command txredisapi would not send
    (text it cannot encode), as opposed to no answer at all."""
    import txredisapi

    return isinstance(error, (txredisapi.ResponseError, txredisapi.InvalidData))
