"""The chat core, with the in-memory store and a fake clock: no sockets, no reactor."""

import pytest

from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from spartan.core.chat import LOG_HIDDEN, LOG_OFF, Chat
from spartan.core.names import direct_key
from spartan.core.directory import DEMO, Directory
from spartan.core.errors import ChatError
from spartan.store import StoreError
from spartan.store.memory import MemoryStore


class Inbox:
    """A connection as the core sees it: it records what it receives."""

    def __init__(self):
        self.deliveries = []
        self.events = []

    def receive(self, delivery):
        self.deliveries.append(delivery)

    def topic_changed(self, group, topic):
        self.events.append(("topic", group, topic))

    def presence(self, user, online, session):
        self.events.append(("presence", user, online))

    @property
    def texts(self):
        return [(d.conversation, d.message.sender, d.message.text) for d in self.deliveries]


def result(d):
    """The result of a Deferred that has already fired (the memory store answers at once)."""
    box = []
    d.addBoth(box.append)
    assert box, "the Deferred has not fired"
    if hasattr(box[0], "raiseException"):
        box[0].raiseException()
    return box[0]


@pytest.fixture
def clock():
    clock = Clock()
    clock.advance(1764000000)
    return clock


@pytest.fixture
def chat(clock):
    chat = Chat(DEMO, MemoryStore(), clock)
    result(chat.start())
    return chat


def login(chat, user):
    inbox = Inbox()
    return result(chat.login(user, None, inbox)), inbox


def test_message_to_online_user_is_delivered_with_id_time_sender_conversation(chat, clock):
    alice, _ = login(chat, "alice")
    bob, bob_inbox = login(chat, "bob")
    clock.advance(2.5)
    sent = result(alice.send("bob", "hi"))
    [delivery] = bob_inbox.deliveries
    assert delivery.message == sent
    assert delivery.conversation == "alice"  # bob names the conversation by the other user
    assert (sent.sender, sent.text, sent.timestamp) == ("alice", "hi", 1764000002.5)
    assert sent.id > 0


def test_buffered_messages_wait_until_the_conversation_is_opened_in_order(chat):
    alice, _ = login(chat, "alice")
    for text in ["hi", "How r u?", "Good. Just busy with the classes"]:
        result(alice.send("bob", text))
    bob, _ = login(chat, "bob")  # logs in later
    label, messages = result(bob.open("alice"))
    assert label == "alice"
    assert [m.text for m in messages] == ["hi", "How r u?", "Good. Just busy with the classes"]
    assert [m.id for m in messages] == sorted(m.id for m in messages)


def test_acknowledged_messages_are_not_returned_again(chat):
    alice, _ = login(chat, "alice")
    first = result(alice.send("bob", "one"))
    result(alice.send("bob", "two"))
    bob, _ = login(chat, "bob")
    assert result(bob.ack("alice", first.id)) == ("alice", first.id)
    _, messages = result(bob.open("alice"))
    assert [m.text for m in messages] == ["two"]


def test_ack_never_moves_back_and_never_past_the_newest_message(chat):
    alice, _ = login(chat, "alice")
    one = result(alice.send("bob", "one"))
    two = result(alice.send("bob", "two"))
    bob, _ = login(chat, "bob")
    assert result(bob.ack("alice", 10**12)) == ("alice", two.id)
    assert result(bob.ack("alice", one.id)) == ("alice", two.id)
    three = result(alice.send("bob", "three"))  # arrives after the over-large ack
    _, messages = result(bob.open("alice"))
    assert [m.id for m in messages] == [three.id]


def test_seen_state_belongs_to_the_user_not_the_session(chat):
    alice, _ = login(chat, "alice")
    sent = result(alice.send("bob", "hi"))
    bob_laptop, laptop = login(chat, "bob")
    bob_phone, phone = login(chat, "bob")
    result(alice.send("bob", "both see this"))
    assert [t for _, _, t in laptop.texts] == ["both see this"]
    assert [t for _, _, t in phone.texts] == ["both see this"]
    result(bob_phone.ack("alice", sent.id))
    _, messages = result(bob_laptop.open("alice"))
    assert [m.text for m in messages] == ["both see this"]


def test_own_messages_reach_the_senders_other_sessions_but_are_never_unseen(chat):
    alice_here, here = login(chat, "alice")
    alice_there, there = login(chat, "alice")
    result(alice_here.send("bob", "hi"))
    assert here.texts == []  # the sending session already knows
    assert there.texts == [("bob", "alice", "hi")]
    assert result(alice_there.open("bob")) == ("bob", [])


def test_group_messages_reach_members_only_and_share_one_delivery(chat):
    inboxes = {user: login(chat, user) for user in ["alice", "bob", "charlie", "eve", "foo"]}
    sent = result(inboxes["alice"][0].send("#group1", "hi"))
    received = {user: inbox.deliveries for user, (_, inbox) in inboxes.items()}
    assert received["alice"] == [] and received["foo"] == []
    deliveries = received["bob"] + received["charlie"] + received["eve"]
    assert len(deliveries) == 3
    assert all(d is deliveries[0] for d in deliveries)  # encoded once, written to all
    assert deliveries[0].conversation == "#group1" and deliveries[0].message == sent


def test_group_delivery_follows_logins_and_logouts_between_messages(chat):
    alice, _ = login(chat, "alice")
    bob, bob_inbox = login(chat, "bob")
    result(alice.send("#group1", "one"))  # the group's sessions are remembered here
    charlie, charlie_inbox = login(chat, "charlie")
    bob.logout()
    result(alice.send("#group1", "two"))
    assert [t for _, _, t in bob_inbox.texts] == ["one"]
    assert [t for _, _, t in charlie_inbox.texts] == ["two"]


def test_delivery_encodes_once_per_format(chat):
    alice, _ = login(chat, "alice")
    _, bob_inbox = login(chat, "bob")
    result(alice.send("bob", "hi"))
    calls = []

    def encoder(delivery):
        calls.append(delivery)
        return b"encoded"

    delivery = bob_inbox.deliveries[0]
    assert delivery.encoded(encoder) == delivery.encoded(encoder) == b"encoded"
    assert len(calls) == 1


def test_late_group_member_sees_what_the_group_said(chat):
    alice, _ = login(chat, "alice")
    bob, _ = login(chat, "bob")
    result(alice.send("#group1", "hi"))
    result(bob.send("#group1", "hello everyone"))
    eve, _ = login(chat, "eve")
    label, messages = result(eve.open("#group1"))
    assert label == "#group1"
    assert [(m.sender, m.text) for m in messages] == [("alice", "hi"), ("bob", "hello everyone")]
    _, for_alice = result(alice.open("#group1"))
    assert [m.text for m in for_alice] == ["hello everyone"]


@pytest.mark.parametrize("action", ["send", "open", "ack", "history"])
def test_non_members_cannot_touch_a_group(chat, action):
    foo, _ = login(chat, "foo")
    call = {
        "send": lambda: foo.send("#group1", "let me in"),
        "open": lambda: foo.open("#group1"),
        "ack": lambda: foo.ack("#group1", 1),
        "history": lambda: foo.history("#group1", 5),
    }[action]
    with pytest.raises(ChatError) as error:
        result(call())
    assert error.value.code == "not-a-member"


@pytest.mark.parametrize(
    "target, code",
    [("zed", "unknown-user"), ("#nope", "unknown-group"), ("alice", "bad-target")],
)
def test_unknown_and_invalid_targets_are_refused(chat, target, code):
    alice, _ = login(chat, "alice")
    with pytest.raises(ChatError) as error:
        result(alice.send(target, "hi"))
    assert error.value.code == code


def test_unknown_user_cannot_log_in(chat):
    with pytest.raises(ChatError) as error:
        result(chat.login("zed", None, Inbox()))
    assert error.value.code == "unknown-user"


def test_presence_follows_sessions(chat):
    alice, _ = login(chat, "alice")
    second, _ = login(chat, "alice")
    assert chat.users()[:2] == [("alice", True), ("bob", False)]
    alice.logout()
    assert chat.is_online("alice")
    second.logout()
    assert not chat.is_online("alice")
    assert [user for user, _ in chat.users()] == list(DEMO.users)


def test_history_returns_recent_messages_seen_or_not(chat):
    alice, _ = login(chat, "alice")
    for n in range(5):
        result(alice.send("bob", f"m{n}"))
    label, messages = result(alice.history("bob", 3))
    assert label == "bob" and [m.text for m in messages] == ["m2", "m3", "m4"]


def test_resend_with_the_same_client_id_is_stored_and_delivered_once(chat):
    alice, _ = login(chat, "alice")
    _, bob_inbox = login(chat, "bob")
    first = result(alice.send("bob", "hi", client_id="c1"))
    again = result(alice.send("bob", "hi", client_id="c1"))
    assert again == first
    assert len(bob_inbox.deliveries) == 1
    assert len(result(chat.store.recent(direct_key("alice", "bob"), 10))) == 1


def test_store_failure_is_reported_and_nothing_is_delivered(chat):
    alice, _ = login(chat, "alice")
    _, bob_inbox = login(chat, "bob")
    chat.store.append_to = lambda *args: args[-1].failed(StoreError("disk full"))
    with pytest.raises(ChatError) as error:
        result(alice.send("bob", "hi"))
    assert error.value.code == "unavailable"
    assert bob_inbox.deliveries == []


def test_logs_buffers_and_messages_in_the_words_of_the_spec(chat, log_lines):
    alice, _ = login(chat, "alice")
    bob, _ = login(chat, "bob")
    result(alice.send("bob", "hi"))
    result(bob.send("alice", "Hey"))
    result(alice.send("#group1", "hi all"))
    expected = [
        "Creating new buffer for key bob",
        "alice to bob: hi",
        "Sending to usr bob",
        "bob to alice: Hey",
        "Sending to usr alice",
        "[Group] Creating new buffer for key group1",
        "alice to group1: hi all",
        "Sending to group group1",
    ]
    assert [line for line in log_lines if "logged in" not in line] == expected


@pytest.mark.parametrize("mode", [LOG_HIDDEN, LOG_OFF])
def test_message_text_can_be_kept_out_of_the_log(clock, log_lines, mode):
    chat = Chat(DEMO, MemoryStore(), clock, message_log=mode)
    result(chat.start())
    alice, _ = login(chat, "alice")
    result(alice.send("bob", "my secret plan"))
    assert not any("secret" in line for line in log_lines)
    assert ("alice to bob: (text hidden)" in log_lines) == (mode == LOG_HIDDEN)


def test_buffers_known_to_the_store_are_not_created_again(clock, log_lines):
    store = MemoryStore()
    first = Chat(DEMO, store, clock)
    result(first.start())
    result(login(first, "alice")[0].send("bob", "hi"))
    restarted = Chat(DEMO, store, clock)
    result(restarted.start())
    log_lines.clear()
    result(login(restarted, "alice")[0].send("bob", "again"))
    assert "Creating new buffer for key bob" not in log_lines


def test_a_user_in_several_groups_sees_each(clock):
    directory = Directory(("a", "b", "c"), {"g1": ("a", "b"), "g2": ("a", "c")})
    chat = Chat(directory, MemoryStore(), clock)
    result(chat.start())
    a, _ = login(chat, "a")
    b, _ = login(chat, "b")
    assert a.groups() == [("g1", ("a", "b")), ("g2", ("a", "c"))]
    assert b.groups() == [("g1", ("a", "b"))]


def test_a_failing_presence_hook_does_not_fail_a_login():
    class Broken(Inbox):
        def presence(self, user, online, session):
            raise RuntimeError("a front end's bug")

    chat = Chat(DEMO, MemoryStore(), Clock())
    result(chat.login("bob", None, Broken()))
    logged = []
    globalLogPublisher.addObserver(logged.append)
    try:
        session = result(chat.login("alice", None, Inbox()))
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert session.user == "alice" and chat.is_online("alice")
    assert any(event.get("log_failure") for event in logged)
