"""
The chat domain: who is online, conversations, buffers and delivery.  No sockets here.

Theory of operation
-------------------
* A *conversation* is either one-to-one (two users) or a group.  Its messages live in the
  store under a key (``dm:alice:bob``, ``group:group1``); the first time a conversation is
  used its *buffer* is created (and logged, in the spec's words).
* A *session* is one logged-in connection.  The same user may have several; each gets every
  live message.  Connections receive through the small `Client` interface, so the core never
  touches a transport (the shape of ``IChatClient.receive`` in twisted.words).
* A message is stored first; only when the store says it is durable is the sender told it
  was accepted and is it delivered.  It is delivered to the online sessions of every
  participant except the session that sent it.  Each distinct view of a message (a group's
  members all share one; a one-to-one message has two: the recipient's and the sender's
  other sessions') is one `Delivery`, so it is encoded once per wire format however many
  sessions receive it.
* *Unseen* is per user, not per session: a position per (user, conversation) that only moves
  forward, set by acknowledgements.  Opening a conversation returns what lies after it,
  less the user's own messages.
* Time comes from the injected clock (``IReactorTime``), so tests need no real time.
* A group has a topic that any member may set: stored (`MessageStore.set_topic`), then
  pushed to the members' other sessions (`Client.topic_changed`).  When a user's first
  session opens or its last one closes, the sessions of the users sharing a group with
  it are told (`Client.presence`), so a front end can show it (IRC: ``JOIN``/``QUIT``).
* A message's kind travels in its text, as ``/me`` does: a notice (which must never be
  answered automatically) starts with `spartan.core.names.NOTICE_PREFIX`.
* What other nodes must hear goes through ``Chat.peers`` (see `Peers`): a stored message,
  a user coming online or going offline.  Alone, a node is its own only peer (`SingleNode`);
  `spartan.cluster.nodes` puts a Redis-backed implementation there.
* The directory can be replaced while running (`Chat.reload`): every answer is looked up in
  ``self.directory`` (the caches are keyed by it), so the new one holds from the next line
  on.  Sessions of a user no longer in it are told why and closed; users whose groups
  changed are told their groups.  Stored messages are not touched.
* Counters (logins, messages stored, deliveries) are plain ints bumped where the work is
  done; a metrics collector reads them when scraped, so counting costs an addition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from spartan.core.auth import PASSWORD_REQUIRED, Authenticator, OpenDoor
from spartan.core.directory import Directory
from spartan.core.errors import ChatError
from spartan.store import MessageStore, StoredMessage, StoreError, Topic
from spartan.core.names import GROUP_PREFIX, direct_key, direct_pair, group_key, group_of_key

OPEN_LIMIT = 10_000  # unseen messages one OPEN returns at most (retention keeps buffers smaller)
CONVERSATION_CACHE = 100_000  # (user, target) -> Conversation entries kept; then start afresh

TOPIC_MAX = 300  # characters

# How message text appears in the log: the spec's lines, or without the text for privacy.
LOG_TEXT, LOG_HIDDEN, LOG_OFF = "text", "hidden", "off"


class Delivery:
    """One view of a message: the message and the conversation as its readers name it."""

    # The first wire format asked for is kept in two slots, any other in a dict made only
    # then: no dict per message when every reader speaks one format.
    __slots__ = ("message", "conversation", "_encoder", "_data", "_encoded")

    def __init__(self, message: StoredMessage, conversation: str) -> None:
        self.message = message
        self.conversation = conversation
        self._encoder: Callable[[Delivery], bytes] | None = None
        self._data = b""
        self._encoded: dict[Callable[[Delivery], bytes], bytes] | None = None

    def encoded(self, encoder: Callable[[Delivery], bytes]) -> bytes:
        """The message in one wire format, encoded once for every session that reads it."""
        if encoder is self._encoder or encoder == self._encoder:  # `is`: the common case, cheapest
            return self._data
        if self._encoder is None:
            self._encoder = encoder
            data = self._data = encoder(self)
            return data
        if self._encoded is None:
            self._encoded = {}
        data = self._encoded.get(encoder)
        if data is None:
            data = self._encoded[encoder] = encoder(self)
        return data


class Client(Protocol):
    """What the core needs of a connection: somewhere to push messages and events, and to
    hear that the directory changed under it."""

    def receive(self, delivery: Delivery) -> None: ...

    def topic_changed(self, group: str, topic: Topic) -> None:
        """``group`` (``#group1``) has a new topic, set from another session."""

    def presence(self, user: str, online: bool, session: Session) -> None:
        """``user``, who shares a group with this session's user, came online or went
        offline (on this node): ``session`` is the one that opened first or closed last."""

    def removed(self, sentence: str) -> None:
        """The user is no longer in the directory (its session is already closed): tell
        the peer ``sentence`` and hang up."""

    def groups_changed(self, groups: list[tuple[str, tuple[str, ...]]]) -> None:
        """The user's groups (name, members) are now ``groups``: tell the peer."""


REMOVED = "You were removed from this server's users; closing."


@dataclass(frozen=True)
class Reloaded:
    """What a `Chat.reload` changed, for the operator's log line."""

    added: tuple[str, ...]  # users new in the directory
    removed: tuple[str, ...]  # users gone from it
    closed: int  # sessions closed because their user was removed
    regrouped: tuple[str, ...]  # users still there whose groups or groupmates changed


@dataclass(frozen=True, slots=True)
class Conversation:
    key: str
    name: str  # the buffer's name in the log: the group, or the first recipient
    is_group: bool
    participants: tuple[str, ...]

    def label_for(self, user: str) -> str:
        """The conversation as ``user`` names it: ``#group1``, or the other user."""
        if self.is_group:
            return GROUP_PREFIX + self.name
        first, second = self.participants
        return second if user == first else first


class Peers(Protocol):
    """The other nodes of a cluster, as the core sees them."""

    def start(self) -> Deferred[None]: ...

    def stop(self) -> Deferred[None]: ...

    def publish(self, message: StoredMessage, conversation: Conversation, origin: Session) -> None:
        """A message is stored: deliver it to every session of the cluster but ``origin``."""

    def joined(self, user: str) -> None:
        """``user`` has its first session on this node."""

    def left(self, user: str) -> None:
        """``user`` has no session left on this node."""

    def is_online(self, user: str) -> bool:
        """Whether ``user`` has a session on another node."""

    def online_elsewhere(self) -> Iterable[str]:
        """The users with a session on another node."""


class SingleNode:
    """A node on its own: delivery is local and nobody is online elsewhere."""

    def __init__(self, chat: Chat) -> None:
        self.chat = chat

    def start(self) -> Deferred[None]:
        return succeed(None)

    def stop(self) -> Deferred[None]:
        return succeed(None)

    def publish(self, message, conversation, origin) -> None:
        self.chat._deliver(message, conversation, origin)

    def joined(self, user: str) -> None:
        pass

    def left(self, user: str) -> None:
        pass

    def is_online(self, user: str) -> bool:
        return False

    def online_elsewhere(self) -> Iterable[str]:
        return ()


class Chat:
    """The registry of users and sessions, over a store.  The factory holds one."""

    log = Logger(namespace="spartan")

    def __init__(
        self,
        directory: Directory,
        store: MessageStore,
        clock,
        message_log: str = LOG_TEXT,
        authenticator: Authenticator | None = None,
    ) -> None:
        self.directory = directory
        self.authenticator = authenticator or OpenDoor(directory)
        self.store = store
        self.clock = clock
        self.message_log = message_log
        self._sessions: dict[str, list[Session]] = {}
        self._buffers: set[str] = set()
        self._direct_keys: dict[str, set[str]] = {}  # user -> keys of their one-to-one buffers
        self.peers: Peers = SingleNode(self)
        # conversation() answers for (user, target), valid for one directory.
        self._conversations: dict[tuple[str, str], Conversation] = {}
        self._conversations_of: Directory | None = None
        # A group's online sessions and their receive methods, made at its first message
        # and forgotten at any login or logout: one flat loop per delivery.
        self._group_receivers: dict[str, list[tuple[Session, Callable[[Delivery], None]]]] = {}
        self._receivers_of: Directory | None = None
        # Counters, read by the metrics collector.
        self.logins = 0
        self.failed_logins = 0
        self.stored_direct = 0
        self.stored_group = 0
        self.deliveries = 0  # messages pushed to a session

    @inlineCallbacks
    def start(self):
        yield self.store.start()
        for key in (yield self.store.conversations()):
            self._add_buffer(key)
        yield self.peers.start()

    @inlineCallbacks
    def stop(self):
        yield self.peers.stop()
        yield self.store.stop()

    # -- sessions and presence ------------------------------------------------------------

    def login(
        self,
        user: str,
        password: str | None,
        client: Client,
        peer: str | None = None,
        via: str = "",
    ) -> Deferred[Session]:
        """Check credentials, then open a session for ``user`` that pushes to ``client``.
        ``peer`` (the address) and ``via`` (the protocol) are for the log."""

        def checked(allowed: bool) -> Session:
            if not allowed or not self.directory.is_user(user):
                raise ChatError("bad-credentials", "Unknown user or wrong password.")
            session = Session(self, user, client)
            self._sessions.setdefault(user, []).append(session)
            self._group_receivers.clear()
            if len(self._sessions[user]) == 1:
                self.peers.joined(user)
                self._tell_presence(session, True)
            self.logins += 1
            # The spec's words first ("alice logged in"), then where from, for operators.
            self.log.info(
                "{user} logged in from {peer} ({via})", user=user, peer=peer or "?", via=via or "?"
            )
            return session

        def refused(failure: Failure) -> Failure:
            # "password-required" is a question to the client (ask for it), not a failure.
            if getattr(failure.value, "code", None) != PASSWORD_REQUIRED:
                self.failed_logins += 1
            return failure

        d = self.authenticator.check(user, password, peer)
        return d.addCallback(checked).addErrback(refused)

    def _logout(self, session: Session) -> None:
        sessions = self._sessions.get(session.user, [])
        if session in sessions:
            sessions.remove(session)
            self._group_receivers.clear()
            if not sessions:
                del self._sessions[session.user]
                self.peers.left(session.user)
                self._tell_presence(session, False)

    def _tell_presence(self, changed: Session, online: bool) -> None:
        directory, user = self.directory, changed.user
        peers = {m for group in directory.groups_of(user) for m in directory.groups[group]}
        peers.discard(user)
        self.tell(self.sessions_of(peers), "presence", user, online, changed)

    def tell(self, sessions, event: str, *args) -> None:
        """Call the `Client` method ``event`` of each session's client: one front end's
        bug is logged, and fails neither the others nor the caller (a login, a topic)."""
        for session in sessions:
            try:
                getattr(session.client, event)(*args)
            except Exception:
                self.log.failure("Telling {user} {event}", user=session.user, event=event)

    def sessions_of(self, users) -> list[Session]:
        """The sessions on this node of ``users``."""
        return [session for user in users for session in self._sessions.get(user, ())]

    def reload(self, directory: Directory, authenticator: Authenticator | None = None) -> Reloaded:
        """Use ``directory`` and ``authenticator`` (as in the constructor: None means no
        passwords) from now on, without dropping anyone who is still in the directory:
        removed users' sessions are closed with `REMOVED`, users whose groups changed are
        told their groups."""
        old, self.directory = self.directory, directory
        self.authenticator = authenticator or OpenDoor(directory)
        self._group_receivers.clear()
        removed = tuple(u for u in old.users if not directory.is_user(u))
        added = tuple(u for u in directory.users if not old.is_user(u))
        closed, regrouped = 0, []
        for user in list(self._sessions):
            sessions = list(self._sessions[user])
            if not directory.is_user(user):
                for session in sessions:
                    self._logout(session)  # first: nothing more is delivered to it
                    session.client.removed(REMOVED)
                closed += len(sessions)
                self.log.info(
                    "{user} was removed from the users: closed {n} session(s)",
                    user=user, n=len(sessions),
                )  # fmt: skip
                continue
            groups = _groups_of(directory, user)
            if groups != _groups_of(old, user):
                regrouped.append(user)
                for session in sessions:
                    session.client.groups_changed(groups)
        return Reloaded(added, removed, closed, tuple(regrouped))

    def is_user(self, name: str) -> bool:
        return self.directory.is_user(name)

    def members(self, group: str) -> tuple[str, ...] | None:
        """The members of ``group``, None if there is no such group."""
        return self.directory.groups.get(group)

    def is_online(self, user: str) -> bool:
        return user in self._sessions or self.peers.is_online(user)

    def online_here(self) -> int:
        """How many users have a session on this node."""
        return len(self._sessions)

    def online_users(self) -> set[str]:
        """Everyone with a session, on any node (not a scan of the directory)."""
        return self._sessions.keys() | set(self.peers.online_elsewhere())

    def users(self) -> list[tuple[str, bool]]:
        """Every user, in directory order, with whether they are online (on any node)."""
        return [(user, self.is_online(user)) for user in self.directory.users]

    # -- conversations -------------------------------------------------------------------

    def conversation(self, user: str, target: str) -> Conversation:
        """The conversation ``user`` means by ``target`` (``bob`` or ``#group1``)."""
        # Asked for every SEND: remember the answers (errors are not kept, they raise).
        cache = self._conversations
        if self._conversations_of is not self.directory or len(cache) >= CONVERSATION_CACHE:
            cache.clear()
            self._group_receivers.clear()
            self._conversations_of = self.directory
        conversation = cache.get((user, target))
        if conversation is None:
            conversation = cache[user, target] = self._conversation(user, target)
        return conversation

    def conversation_for_key(self, key: str) -> Conversation | None:
        """The conversation stored under ``key``, if the directory still has it."""
        directory = self.directory
        group = group_of_key(key)
        if group is not None:
            if directory.is_group(group):
                return Conversation(key, group, True, directory.groups[group])
            return None
        pair = direct_pair(key)
        if pair is not None and all(directory.is_user(user) for user in pair):
            return Conversation(key, pair[1], False, pair)
        return None

    def _conversation(self, user: str, target: str) -> Conversation:
        if target.startswith(GROUP_PREFIX):
            group = target[len(GROUP_PREFIX) :]
            if not self.directory.is_group(group):
                raise ChatError("unknown-group", f"There is no group {group!r}.")
            members = self.directory.groups[group]
            if user not in members:
                raise ChatError("not-a-member", f"You are not a member of {group!r}.")
            return Conversation(group_key(group), group, True, members)
        if not self.directory.is_user(target):
            raise ChatError("unknown-user", f"There is no user {target!r}.")
        if target == user:
            raise ChatError("bad-target", "You cannot chat with yourself.")
        return Conversation(direct_key(user, target), target, False, (user, target))

    def _add_buffer(self, key: str) -> None:
        self._buffers.add(key)
        pair = direct_pair(key)
        if pair is not None:
            for user in pair:
                self._direct_keys.setdefault(user, set()).add(key)

    def keys_of(self, user: str) -> list[str]:
        """The keys of every conversation of ``user`` that holds messages: its groups and
        the one-to-one buffers it is in (an index, not a scan of the directory)."""
        directory = self.directory
        keys = [
            key
            for key in self._direct_keys.get(user, ())
            if all(directory.is_user(u) for u in direct_pair(key))
        ]
        keys.extend(
            key for key in map(group_key, directory.groups_of(user)) if key in self._buffers
        )
        return keys

    def label(self, key: str, user: str) -> str:
        """How ``user`` names the conversation ``key``: ``#group1``, or the other user."""
        pair = direct_pair(key)
        if pair is None:
            return GROUP_PREFIX + group_of_key(key)
        return pair[1] if pair[0] == user else pair[0]

    def _ensure_buffer(self, conversation: Conversation) -> None:
        if conversation.key not in self._buffers:
            self._add_buffer(conversation.key)
            prefix = "[Group] " if conversation.is_group else ""
            self.log.info(
                "{prefix}Creating new buffer for key {name}", prefix=prefix, name=conversation.name
            )

    def _unavailable(self, why: StoreError) -> ChatError:
        self.log.error("Message store failed: {why}", why=why)
        return ChatError("unavailable", "The message store is not available; try again.")

    def _store_failed(self, failure):
        failure.trap(StoreError)
        raise self._unavailable(failure.value)

    def _deliver(self, message: StoredMessage, conversation: Conversation, origin: Session) -> None:
        """A message this node stored: count it, log it, deliver it here."""
        if conversation.is_group:
            self.stored_group += 1
        else:
            self.stored_direct += 1
        self._log_message(message, conversation)
        self.deliver_local(message, conversation, origin)

    def deliver_local(
        self, message: StoredMessage, conversation: Conversation, origin: Session | None = None
    ) -> None:
        """Push a stored message to this node's sessions of its participants but ``origin``."""
        if conversation.is_group:
            # Every member names a group alike: one view, no lookups per member.
            delivery = Delivery(message, conversation.label_for(message.sender))
            if self._receivers_of is not self.directory:  # membership may have changed
                self._group_receivers.clear()
                self._receivers_of = self.directory
            receivers = self._group_receivers.get(conversation.key)
            if receivers is None:
                receivers = self._group_receivers[conversation.key] = [
                    (session, session.client.receive)
                    for user in conversation.participants
                    for session in self._sessions.get(user, ())
                ]
            for session, receive in receivers:
                if session is not origin:
                    receive(delivery)
            # The origin is among the receivers when it is a session of this node.
            self.deliveries += len(receivers) - (origin is not None)
            return
        views: dict[str, Delivery] = {}
        for user in conversation.participants:
            sessions = self._sessions.get(user)
            if not sessions or (len(sessions) == 1 and sessions[0] is origin):
                continue  # no view for the sender alone: one Delivery per message
            label = conversation.label_for(user)
            delivery = views.get(label)
            if delivery is None:
                delivery = views[label] = Delivery(message, label)
            for session in sessions:
                if session is not origin:
                    session.client.receive(delivery)
                    self.deliveries += 1

    def _log_message(self, message: StoredMessage, conversation: Conversation) -> None:
        if self.message_log == LOG_OFF:
            return
        text = message.text if self.message_log == LOG_TEXT else "(text hidden)"
        if conversation.is_group:
            self.log.info("{sender} to {group}: {text}", sender=message.sender, group=conversation.name, text=text)
            self.log.info("Sending to group {group}", group=conversation.name)
        else:
            recipient = conversation.label_for(message.sender)
            self.log.info("{sender} to {recipient}: {text}", sender=message.sender, recipient=recipient, text=text)
            self.log.info("Sending to usr {recipient}", recipient=recipient)


class PostReply(Protocol):
    """Where `Session.post` reports a SEND's outcome (the server's reply slot)."""

    def sent(self, message: StoredMessage) -> None: ...

    def refused(self, reason: ChatError | BaseException | Failure) -> None:
        """A `ChatError` for the user, or anything else (a bug: to be logged)."""


class _Posting:
    """One message between the store and its reply: the store's `AppendReceiver`.  One small
    object per message instead of a Deferred with its callback list and closures."""

    __slots__ = ("session", "conversation", "reply")

    def __init__(self, session: Session, conversation: Conversation, reply: PostReply) -> None:
        self.session = session
        self.conversation = conversation
        self.reply = reply

    def appended(self, message: StoredMessage, is_new: bool) -> None:
        if is_new:
            session = self.session
            try:
                session.chat.peers.publish(message, self.conversation, session)
            except Exception:
                self.reply.refused(Failure())
                return
        self.reply.sent(message)

    def failed(self, reason: BaseException | Failure) -> None:
        error = reason.value if isinstance(reason, Failure) else reason
        if isinstance(error, StoreError):
            self.reply.refused(self.session.chat._unavailable(error))
        else:
            self.reply.refused(reason)


class _DeferredReply:
    """A `PostReply` that fires a Deferred: for callers that want one (`Session.send`)."""

    __slots__ = ("deferred",)

    def __init__(self) -> None:
        self.deferred: Deferred[StoredMessage] = Deferred()

    def sent(self, message: StoredMessage) -> None:
        self.deferred.callback(message)

    def refused(self, reason) -> None:
        self.deferred.errback(reason)


class Session:
    """One logged-in connection of a user: everything a user can ask of the chat."""

    def __init__(self, chat: Chat, user: str, client: Client) -> None:
        self.chat = chat
        self.user = user
        self.client = client

    def logout(self) -> None:
        self.chat._logout(self)

    def groups(self) -> list[tuple[str, tuple[str, ...]]]:
        return _groups_of(self.chat.directory, self.user)

    def post(self, target: str, text: str, client_id: str | None, reply: PostReply) -> None:
        """Send a message: the one way in for every front end.

        A bad target raises `ChatError` at once.  Then the store keeps the message and,
        once it is durable, it is delivered and exactly one of ``reply.sent(message)`` or
        ``reply.refused(reason)`` is called, maybe before this returns (the in-memory
        store), else inside the store's output batch.
        """
        chat = self.chat
        conversation = chat.conversation(self.user, target)
        if conversation.key not in chat._buffers:
            chat._ensure_buffer(conversation)
        chat.store.append_to(
            conversation.key,
            self.user,
            text,
            chat.clock.seconds(),
            client_id,
            _Posting(self, conversation, reply),
        )

    def send(
        self, target: str, text: str, client_id: str | None = None
    ) -> Deferred[StoredMessage]:
        """`post`, firing a Deferred with the stored message (a `ChatError` if refused)."""
        reply = _DeferredReply()
        self.post(target, text, client_id, reply)
        return reply.deferred

    def unread(self) -> Deferred[list[tuple[str, int]]]:
        """The conversations with messages this user has not seen (sent by others):
        fires with [(label, how many)], the one waiting longest first."""
        chat, user = self.chat, self.user

        def labelled(counts: dict[str, tuple[int, int]]) -> list[tuple[str, int]]:
            waiting = sorted(counts.items(), key=lambda item: item[1][1])
            return [(chat.label(key, user), count) for key, (count, _) in waiting]

        keys = chat.keys_of(user)
        if not keys:  # a user with no conversation yet: no question for the store
            return succeed([])
        return chat.store.unseen_counts(user, keys).addCallbacks(labelled, chat._store_failed)

    @inlineCallbacks
    def open(self, target: str):
        """Open a conversation: fires with (label, its unseen messages, oldest first)."""
        chat = self.chat
        conversation = chat.conversation(self.user, target)
        chat._ensure_buffer(conversation)
        try:
            seen = yield chat.store.seen(self.user, conversation.key)
            messages = yield chat.store.messages_after(conversation.key, seen, OPEN_LIMIT)
        except StoreError as e:
            raise chat._unavailable(e) from None
        unseen = [m for m in messages if m.sender != self.user]
        return conversation.label_for(self.user), unseen

    @inlineCallbacks
    def ack(self, target: str, upto: int):
        """Mark a conversation seen up to ``upto``: fires with (label, new position).

        The position never passes the newest message, so an over-large id cannot hide
        messages that have not been sent yet.
        """
        chat = self.chat
        conversation = chat.conversation(self.user, target)
        try:
            newest = yield chat.store.recent(conversation.key, 1)
            upto = min(upto, newest[-1].id if newest else 0)
            position = yield chat.store.mark_seen(self.user, conversation.key, upto)
        except StoreError as e:
            raise chat._unavailable(e) from None
        return conversation.label_for(self.user), position

    def _group(self, target: str) -> Conversation:
        conversation = self.chat.conversation(self.user, target)
        if not conversation.is_group:
            raise ChatError("not-a-group", "Only groups have a topic.")
        return conversation

    def topic(self, target: str) -> Deferred[tuple[str, Topic | None]]:
        """A group's topic: fires with (label, the topic or None if there is none)."""
        conversation = self._group(target)
        d = self.chat.store.topic(conversation.key)
        d.addCallbacks(
            lambda topic: (conversation.label_for(self.user), topic if topic and topic.text else None),
            self.chat._store_failed,
        )
        return d

    def set_topic(self, target: str, text: str) -> Deferred[tuple[str, Topic]]:
        """Set a group's topic (empty text clears it); once stored, the members' other
        sessions are told.  Fires with (label, the topic)."""
        conversation = self._group(target)
        if len(text) > TOPIC_MAX:
            raise ChatError("bad-topic", f"A topic is at most {TOPIC_MAX} characters.")
        if any(c < " " or "\x7f" <= c <= "\x9f" for c in text):
            raise ChatError("bad-topic", "A topic cannot hold control characters.")
        chat = self.chat
        topic = Topic(text, self.user, chat.clock.seconds())
        label = conversation.label_for(self.user)

        def stored(_):
            others = [s for s in chat.sessions_of(conversation.participants) if s is not self]
            chat.tell(others, "topic_changed", label, topic)
            return label, topic

        return chat.store.set_topic(conversation.key, topic).addCallbacks(stored, chat._store_failed)

    def shown(self, target: str, upto: int) -> Deferred[int]:
        """A front end without acknowledgements (IRC) showed the conversation up to
        ``upto``, an id it was given: one store call, ordered before any read after it."""
        conversation = self.chat.conversation(self.user, target)
        d = self.chat.store.mark_seen(self.user, conversation.key, upto)
        return d.addErrback(self.chat._store_failed)

    @inlineCallbacks
    def history(self, target: str, count: int):
        """The last ``count`` messages: fires with (label, messages, oldest first)."""
        chat = self.chat
        conversation = chat.conversation(self.user, target)
        try:
            messages = yield chat.store.recent(conversation.key, count)
        except StoreError as e:
            raise chat._unavailable(e) from None
        return conversation.label_for(self.user), messages


def _groups_of(directory: Directory, user: str) -> list[tuple[str, tuple[str, ...]]]:
    """The groups of ``user`` with their members, in the order of the directory."""
    return [(group, directory.groups[group]) for group in directory.groups_of(user)]
