"""The line editor as a person meets it: the real client in a pty against a real
``twistd spartan``, its screen read by a terminal emulator (pyte).

The other side of each conversation is a `LineClient` on the line protocol, so that what
arrived is checked exactly.  Every wait is bounded (`E2E_TIMEOUT`).
"""

from __future__ import annotations

import pytest

from tests.client_support import ClientProcess, cursor_after
from tests.support import LineClient, TwistdServer

USER_PROMPT = "[Spartan] Enter username whom you want to chat with: "


@pytest.fixture
def spartan(tmp_path):
    server = TwistdServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(spartan):
    started: list[ClientProcess] = []

    def start(user: str) -> ClientProcess:
        process = ClientProcess(user, spartan.port)
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.close()


@pytest.fixture
def peer(spartan):
    opened: list[LineClient] = []

    def login(user: str) -> LineClient:
        line_client = LineClient(spartan.port)
        opened.append(line_client)
        line_client.ok(f"LOGIN {user}")
        return line_client

    try:
        yield login
    finally:
        for line_client in opened:
            line_client.close()


def chatting(process: ClientProcess, other: str) -> ClientProcess:
    process.at_menu()
    process.line("1", USER_PROMPT)
    process.send(f"{other}\r")
    process.wait_screen(lambda s: cursor_after(s, f"[{process_user(process)}] > "))
    return process


def process_user(process: ClientProcess) -> str:
    return process.child.args[3].decode()


def received(line_client: LineClient) -> str:
    return line_client.next_pushed("* MSG").split(" ", 6)[6]


def test_half_typed_line_survives_an_incoming_message(client, peer):
    eve = chatting(client("eve"), "charlie")
    charlie = peer("charlie")
    eve.send("half typed li")
    eve.wait_screen(lambda s: cursor_after(s, "[eve] > half typed li"))

    charlie.ok("SEND eve hello eve")
    screen = eve.wait_screen(lambda s: "[charlie] hello eve" in [r.rstrip() for r in s.display])
    rows = [row.rstrip() for row in screen.display]
    at = rows.index("[charlie] hello eve")
    assert rows[at + 1] == "[eve] > half typed li"  # drawn again below the message
    assert cursor_after(screen, "[eve] > half typed li")  # and the cursor where it was

    eve.send("ne finished\r")
    assert received(charlie) == "half typed line finished"
    screen = eve.wait_screen(lambda s: cursor_after(s, "[eve] > "))
    rows = [row.rstrip() for row in screen.display]
    assert "[eve] > half typed line finished" in rows
    assert not any(row.endswith("> ne finished") for row in rows)


def test_up_recalls_what_was_sent_and_me_is_an_action(client, peer):
    alice = chatting(client("alice"), "bob")
    bob = peer("bob")
    alice.send("first line\r")
    assert received(bob) == "first line"
    alice.send("second\r")
    assert received(bob) == "second"
    alice.send("\x1b[A\x1b[A")  # Up, Up
    alice.wait_screen(lambda s: cursor_after(s, "[alice] > first line"))
    alice.send("\x1b[D\x1b[D\x1b[D\x7fL\r")  # mend it on the way: Left x3, Backspace, L
    assert received(bob) == "first Line"

    alice.send("/me waves\r")
    assert received(bob) == "/me waves"
    bob.ok("SEND alice /me waves back")
    alice.wait_screen(lambda s: "* bob waves back" in [r.rstrip() for r in s.display])


def test_tab_completes_names_and_commands(client):
    alice = client("alice").at_menu()
    alice.line("1", USER_PROMPT)
    alice.send("ch\t")
    alice.wait_screen(lambda s: cursor_after(s, USER_PROMPT + "charlie "))
    alice.send("\r")
    alice.wait_screen(lambda s: cursor_after(s, "[alice] > "))
    alice.send("/sw\t")
    alice.wait_screen(lambda s: cursor_after(s, "[alice] > /switch "))
    alice.send("\r")
    alice.wait_screen(lambda s: cursor_after(s, "Your selection:: "))


def test_a_10_kib_paste_arrives_whole_and_in_order(client, peer):
    alice = chatting(client("alice"), "bob")
    bob = peer("bob")
    text = " ".join(f"wörd{i} 日本  ok" for i in range(520))  # 10 KiB of UTF-8, double spaces
    assert len(text.encode()) > 10 * 1024
    alice.paste(text + "\r")
    screen = alice.wait_screen(lambda s: "Long message sent in" in cursor_row_above(s))
    parts = int(cursor_row_above(screen).split(" in ")[1].split(" ")[0])
    assert parts == 3
    assert "".join(received(bob) for _ in range(parts)) == text
    assert cursor_after(screen, "[alice] > ")


def cursor_row_above(screen) -> str:
    return screen.display[screen.cursor.y - 1].rstrip()


def test_what_waits_is_said_at_login(client, peer):
    bob = peer("bob")
    bob.ok("SEND alice one")
    bob.ok("SEND #group1 for all")
    bob.ok("SEND alice two")
    alice = client("alice").at_menu()
    rows = [row.rstrip() for row in alice.visible().display]
    menu = rows.index("What do you want to do?")
    assert rows[menu - 1] == "[Spartan] Unread: bob (2), group1 (1)"
