"""The real client (in a pty, as a person uses it) against a real ``twistd spartan``.

Every wait is bounded (`E2E_TIMEOUT`); every process is stopped in the fixtures' teardown.
No client here has PYTHONUNBUFFERED set, so each prompt waited for proves it was flushed.
What the line editor draws is read by a terminal emulator (pyte, `ClientProcess.visible`);
the other side of those conversations is a `LineClient`, so what arrived is checked exactly.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.client_support import (
    E2E_TIMEOUT,
    REPO,
    SPEC_GROUP_ALICE,
    SPEC_GROUP_BOB,
    SPEC_GROUP_EVE,
    SPEC_ONE_TO_ONE_ALICE,
    SPEC_ONE_TO_ONE_BOB,
    ClientProcess,
    client_command,
    cursor_after,
    client_env,
    spec_lines,
)
from tests.support import LineClient, TwistdServer, free_port

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


def with_unread(lines: list[str], waiting: str) -> list[str]:
    menu = lines.index("What do you want to do?")
    return lines[:menu] + [f"[Spartan] Unread: {waiting}"] + lines[menu:]


def open_chat(process: ClientProcess, user: str, *, typed_after: str = "") -> ClientProcess:
    process.at_menu()
    process.line("1", USER_PROMPT)
    process.send(f"{user}\n{typed_after}")
    return process


def test_spec_one_to_one_session(spartan, client):
    alice = open_chat(client("alice"), "bob")
    alice.expect("[alice] > ")
    # Bob presses Enter twice after "alice": the empty line of the spec's session.
    bob = open_chat(client("bob"), "alice", typed_after="\n")
    bob.expect("[bob] > ")

    alice.line("hi", "hi\r\n[alice] > ")
    bob.expect("\r\n[alice] hi\r\n[bob] > ")
    bob.line("Hey", "Hey\r\n[bob] > ")
    alice.expect("\r\n[bob] Hey\r\n[alice] > ")
    alice.line("How r u?", "How r u?\r\n[alice] > ")
    bob.expect("\r\n[alice] How r u?\r\n[bob] > ")
    bob.line("I am fine. And, how r u doing?", "doing?\r\n[bob] > ")
    alice.expect("\r\n[bob] I am fine. And, how r u doing?\r\n[alice] > ")
    alice.line("Good. Just busy with the classes", "classes\r\n[alice] > ")
    bob.expect("\r\n[alice] Good. Just busy with the classes\r\n[bob] > ")

    assert alice.screen() == spec_lines(SPEC_ONE_TO_ONE_ALICE, spartan.port) + ["[alice] > "]
    assert bob.screen() == spec_lines(SPEC_ONE_TO_ONE_BOB, spartan.port) + ["[bob] > "]


def test_spec_group_session(spartan, client):
    alice = client("alice").at_menu()
    alice.line("2", "[alice] > ")
    alice.line("hi", "hi\r\n[alice] > ")

    bob = client("bob").at_menu()
    bob.line("2", "[alice] hi\r\n[bob] > ")  # what the group said before bob came
    bob.line("hello everyone", "hello everyone\r\n[bob] > ")
    alice.expect("\r\n[bob] hello everyone\r\n[alice] > ")

    eve = client("eve").at_menu()
    eve.line("2", "[alice] hi\r\n[bob] hello everyone\r\n[eve] > ")
    eve.line("", "\r\n[eve] > ")
    eve.line("hey, how r u guys doing?", "doing?\r\n[eve] > ")
    alice.expect("[eve] hey, how r u guys doing?\r\n[alice] > ")
    bob.expect("\r\n[eve] hey, how r u guys doing?\r\n[bob] > ")

    # Bob and eve come after the group spoke: one line more than the spec, before the
    # menu, says what waits for them.
    assert alice.screen() == spec_lines(SPEC_GROUP_ALICE, spartan.port) + ["[alice] > "]
    assert bob.screen() == with_unread(spec_lines(SPEC_GROUP_BOB, spartan.port), "group1 (1)") + [
        "[bob] > "
    ]
    assert eve.screen() == with_unread(spec_lines(SPEC_GROUP_EVE, spartan.port), "group1 (2)")


def test_earlier_messages_shown_once_across_restarts_of_the_client(spartan, client):
    alice = open_chat(client("alice"), "charlie")
    alice.expect("[alice] > ")
    alice.line("are you there?", "there?\r\n[alice] > ")
    bob = open_chat(client("bob"), "charlie")  # bob writes to charlie too: a notice for him
    bob.expect("[bob] > ")
    bob.line("lunch?", "lunch?\r\n[bob] > ")

    charlie = open_chat(client("charlie"), "alice")
    charlie.expect("[alice] are you there?\r\n[charlie] > ")
    bob.line("now!", "now!\r\n[bob] > ")
    charlie.expect("[Spartan] New message from bob (type /switch to read it).\r\n[charlie] > ")
    charlie.line("/quit", "/quit\r\n")
    assert charlie.wait_exit() == 0

    # Next time, alice's message was seen; bob's were not: they are shown, in order.
    charlie = client("charlie").at_menu()
    charlie.line("1", USER_PROMPT)
    charlie.line("alice", "alice\r\n[charlie] > ")
    charlie.line("/switch", "Your selection:: ")
    charlie.line("1", USER_PROMPT)
    charlie.line("bob", "[bob] lunch?\r\n[bob] now!\r\n[charlie] > ")
    screen = charlie.screen()
    assert "[alice] are you there?" not in screen
    assert screen.count("[bob] lunch?") == 1


def test_in_chat_commands(spartan, client):
    bob = open_chat(client("bob"), "alice")
    bob.expect("[bob] > ")
    alice = open_chat(client("alice"), "bob")
    alice.expect("[alice] > ")
    alice.line("/help", "//text    send a line that starts with /\r\n[alice] > ")
    alice.line("/users", "[Spartan] Online: bob\r\n")
    alice.expect("[Spartan] Offline: charlie, eve, foo, bar, baz, qux\r\n[alice] > ")
    alice.line("//shrug", "[alice] > ")
    bob.expect("[alice] /shrug\r\n")
    alice.line("/nope", "Type /help for the commands, or // to send a line that starts with /.\r\n")
    alice.line("/switch", "Your selection:: ")
    alice.line("2", "[alice] > ")
    bob.send("/quit\n")
    assert bob.wait_exit() == 0


@pytest.mark.parametrize("how", ["/quit", "ctrl-d", "ctrl-c"])
def test_leaving_sends_what_was_typed_first(spartan, client, how):
    alice = open_chat(client("alice"), "bob")
    alice.expect("[alice] > ")
    if how == "/quit":
        alice.send("last words\n/quit\n")
    elif how == "ctrl-d":
        alice.send("last words\n")  # Ctrl-D on the empty line after it
        alice.child.sendeof()
    else:
        alice.line("last words", "last words\r\n[alice] > ")  # read: Ctrl-C flushes unread input
        alice.child.sendintr()
    assert alice.wait_exit() == 0
    assert alice.screen()[-2:] == ["[Spartan] Goodbye.", ""]  # the shell's prompt on a new line

    bob = LineClient(spartan.port)
    try:
        assert bob.command("LOGIN bob")[1] == "OK LOGIN bob"
        pushed, reply = bob.command("OPEN alice")
        assert [line.split(" ", 6)[6] for line in pushed] == ["last words"]
        assert reply == "OK OPEN alice 1"
    finally:
        bob.close()


@pytest.mark.parametrize("script", [False, True], ids=["python -m", "spartan-chat"])
def test_unreachable_server(script):
    port = free_port()
    command = client_command("alice", port)
    if script:  # the console script, installed next to the interpreter
        command = [os.path.join(os.path.dirname(sys.executable), "spartan-chat"), *command[3:]]
    done = subprocess.run(
        command, cwd=REPO, env=client_env(), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=E2E_TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stdout == (
        f"[Spartan] Could not connect to Spartan Server at 127.0.0.1:{port}: Connection refused\n"
    )


def test_piped_input_for_scripts(spartan):
    done = subprocess.run(
        client_command("alice", spartan.port), cwd=REPO, env=client_env(),
        input="1\nbob\nhello from a script\n\n/users\n", capture_output=True, text=True,
        timeout=E2E_TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[6:] == [
        "Your selection:: 1",
        "[Spartan] Enter username whom you want to chat with: bob",
        "[alice] > hello from a script",
        "[alice] > ",
        "[alice] > /users",
        "[Spartan] Online: nobody",
        "[Spartan] Offline: bob, charlie, eve, foo, bar, baz, qux",
        "[alice] > ",
    ]
    bob = LineClient(spartan.port)
    try:
        bob.command("LOGIN bob")
        pushed, _reply = bob.command("OPEN alice")
        assert [line.split(" ", 6)[6] for line in pushed] == ["hello from a script"]
    finally:
        bob.close()


def test_control_characters_cannot_corrupt_the_screen(spartan, client):
    alice = open_chat(client("alice"), "bob")
    alice.expect("[alice] > ")
    bob = LineClient(spartan.port)
    try:
        bob.command("LOGIN bob")
        # The server refuses raw escapes; what it lets through is shown escaped.
        refused = bob.command("SEND alice \x1b[2J\x1b[31mgotcha")[1]
        assert refused.startswith("ERR control-character")
        assert bob.command("SEND alice \u202eevil\u2028twin")[1].startswith("OK SENT")
        alice.expect("[bob] \\u202eevil\\u2028twin\r\n[alice] > ")
        # Escape sequences that are not editing keys (Ctrl-Right, colours) are dropped.
        alice.line("up\x1b[1;5C and \x1b[31mred", "[alice] > ")
        assert bob.next_pushed("* MSG").split(" ", 6)[6] == "up and red"
    finally:
        bob.close()
    assert "\x1b[2J" not in alice.output.getvalue()
    assert "\u202e" not in alice.output.getvalue()


def test_server_restart_mid_chat(tmp_path, spartan, client):
    alice = open_chat(client("alice"), "bob")
    alice.expect("[alice] > ")
    bob = open_chat(client("bob"), "alice")
    bob.expect("[bob] > ")
    alice.line("before", "before\r\n[alice] > ")
    bob.expect("[alice] before\r\n[bob] > ")

    spartan.stop()
    alice.expect("[Spartan] Lost the connection to Spartan Server")
    bob.expect("[Spartan] Lost the connection to Spartan Server")
    alice.line("typed while it was down", "[alice] > ")

    restarted = TwistdServer(tmp_path, port=spartan.port).start()
    try:
        alice.expect(f"[Spartan] Reconnected to Spartan Server at port {spartan.port}.\r\n")
        bob.expect(f"[Spartan] Reconnected to Spartan Server at port {spartan.port}.\r\n")
        bob.expect("[alice] typed while it was down\r\n[bob] > ")
        bob.line("after", "after\r\n[bob] > ")
        alice.expect("[bob] after\r\n[alice] > ")
        alice.line("/quit", "/quit\r\n")
        assert alice.wait_exit() == 0
    finally:
        restarted.stop()
    for screen in (alice.screen(), bob.screen()):
        for text in ("[alice] before", "[alice] typed while it was down", "[bob] after"):
            assert screen.count(text) <= 1
    assert bob.screen().count("[alice] typed while it was down") == 1
    assert alice.screen().count("[bob] after") == 1


def test_password_asked_without_echo_or_taken_from_the_environment(tmp_path):
    from spartan.passwd import hash_password

    config = tmp_path / "users.toml"
    config.write_text(
        'users = ["alice", "bob"]\n[groups]\ngroup1 = ["alice", "bob"]\n'
        f'[passwords]\nalice = "{hash_password("open sesame", n=2**10)}"\n'
    )
    server = TwistdServer(tmp_path, "--config", str(config)).start()
    alice = ClientProcess("alice", server.port)
    try:
        alice.expect("[Spartan] Password for alice: ")
        alice.line("guess", "\r\n[Spartan] Wrong password for alice.\r\n")
        alice.expect("[Spartan] Password for alice: ")
        alice.line("open sesame", "\r\n[Spartan] Connected to Spartan Server")
        alice.at_menu()
        # One line for the wrong password, between the question and the question again.
        assert alice.screen()[:4] == [
            "[Spartan] Password for alice: ",
            "[Spartan] Wrong password for alice.",
            "[Spartan] Password for alice: ",
            f"[Spartan] Connected to Spartan Server at port {server.port}.",
        ]
        alice.line("/quit", "/quit\r\n")
        assert alice.wait_exit() == 0
        assert "guess" not in alice.output.getvalue()
        assert "sesame" not in alice.output.getvalue()

        done = subprocess.run(
            client_command("alice", server.port), cwd=REPO,
            env=client_env(SPARTAN_PASSWORD="open sesame"), input="/quit\n",
            capture_output=True, text=True, timeout=E2E_TIMEOUT,
        )  # fmt: skip
        assert done.returncode == 0
        assert done.stdout.startswith("[Spartan] Connected to Spartan Server")
        for password, said in [
            (None, "[Spartan] The server wants a password: set SPARTAN_PASSWORD.\n"),
            ("guess", "[Spartan] Wrong password for alice.\n"),  # that alone
        ]:
            env = client_env(**({"SPARTAN_PASSWORD": password} if password else {}))
            done = subprocess.run(
                client_command("alice", server.port), cwd=REPO, env=env, input="",
                capture_output=True, text=True, timeout=E2E_TIMEOUT,
            )  # fmt: skip
            assert done.returncode == 1
            assert done.stdout == said
    finally:
        alice.close()
        server.stop()


# -- the line editor ---------------------------------------------------------------------------


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


def chatting(process: ClientProcess, user: str, other: str) -> ClientProcess:
    open_chat(process, other)
    process.wait_screen(lambda s: cursor_after(s, f"[{user}] > "))
    return process


def received(line_client: LineClient) -> str:
    return line_client.next_pushed("* MSG").split(" ", 6)[6]


def test_half_typed_line_survives_an_incoming_message(client, peer):
    eve = chatting(client("eve"), "eve", "charlie")
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
    alice = chatting(client("alice"), "alice", "bob")
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
    alice = chatting(client("alice"), "alice", "bob")
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


def test_group_topic_on_entering_its_chat_and_when_it_changes(client, peer):
    alice = peer("alice")
    alice.ok("TOPIC #group1 plans for friday")
    alice.ok("SEND #group1 who is in?")
    bob = client("bob").at_menu()
    bob.send("2\r")
    screen = bob.wait_screen(lambda s: cursor_after(s, "[bob] > "))
    rows = [row.rstrip() for row in screen.display if row.strip()]
    assert rows[-4:] == [
        "Your selection:: 2",
        "[Spartan] Topic of group1: plans for friday (set by alice)",
        "[alice] who is in?",
        "[bob] >",
    ]

    alice.ok("TOPIC #group1 plans for saturday")
    alice.ok("SEND #group1 /notice the room is booked")
    screen = bob.wait_screen(lambda s: "-alice- the room is booked" in cursor_row_above(s))
    rows = [row.rstrip() for row in screen.display if row.strip()]
    assert rows[-3:] == [
        "[Spartan] alice set the topic of group1: plans for saturday",
        "-alice- the room is booked",
        "[bob] >",
    ]
    assert cursor_after(screen, "[bob] > ")

    bob.send("/topic plans for sunday\r")
    pushed = alice.next_pushed("* TOPIC").split(" ", 5)
    assert (pushed[2], pushed[3], pushed[5]) == ("#group1", "bob", "plans for sunday")
    bob.wait_screen(lambda s: "(set by bob)" in cursor_row_above(s))
