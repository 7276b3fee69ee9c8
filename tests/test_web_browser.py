"""
The web client in a real browser: headless Chromium (Debian) driven by Selenium, against a
real ``twistd spartan --web-port``, with native and IRC clients on the other side.

One browser and one server for the module (each test uses its own users); the restart
test comes last, as it kills the server and starts it again on the same ports.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from spartan.passwd import hash_password
from tests.browser_support import Page, chromium
from tests.support import TwistdServer, free_port
from tests.test_irc_e2e import LineSocket, irc_client, native_client

MAX_LINE = 300
PASSWORD = "open sesame"


class WebServer(TwistdServer):
    """twistd with a web port and an IRC port beside the native one."""

    def __init__(self, tmp_path, config):
        self.web_port = free_port()
        self.irc_port = free_port()
        super().__init__(
            tmp_path,
            "--config", str(config), "--max-line", str(MAX_LINE), "--server-name", "irc.test",
            "--burst", "0",  # the native clients here send more than a person types
            "--web-port", f"tcp:{self.web_port}:interface=127.0.0.1",
            "--irc-port", f"tcp:{self.irc_port}:interface=127.0.0.1",
        )  # fmt: skip

    def start(self, timeout: float = 20.0):
        super().start(timeout)
        self.wait_for_log(f"Started web client on port {self.web_port}", timeout)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}/"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("web")
    config = tmp_path / "team.toml"
    config.write_text(
        'users = ["alice", "bob", "carol", "dave", "erin", "frank", "gina", "hank", "ivy",'
        ' "pat", "quinn", "rita", "sam", "tom", "uma", "nina", "otto"]\n'
        '[groups]\nteam = ["dave", "erin", "frank", "gina"]\n'
        f'[passwords]\npat = "{hash_password(PASSWORD, n=2**10)}"\n'
    )
    running = WebServer(tmp_path, config).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser():
    driver = chromium()
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, server):
    page = Page(browser, server.url)
    page.open_fresh()
    return page


def logged_in(page: Page, user: str) -> Page:
    page.log_in(user)
    page.wait(lambda: page.conversations(), f"{user}'s conversation list")
    return page


def test_log_in_and_chat_with_a_native_client_both_ways(page, server, tmp_path):
    bob = native_client(server.port, "bob")
    bob.send("SEND alice hello from the terminal")
    bob.expect(r"^OK SENT ")
    logged_in(page, "alice")
    assert page.driver.find_element("id", "whoami").text == "Logged in as alice"
    entries = page.wait(lambda: page.conversations().get("bob", "").endswith("1 unread")
                        and page.conversations(), "bob's unread count")
    assert entries["bob"] == "bob online 1 unread"
    assert entries["carol"] == "carol offline"
    assert list(entries)[0] == "bob"  # the conversation with news comes first
    page.conversation("bob").click()
    page.wait(lambda: page.messages() == [("bob", "hello from the terminal")], "bob's message")
    page.wait(lambda: page.conversations()["bob"] == "bob online", "the count going")
    page.say("hi bob, from the browser")
    bob.expect(r"^\* MSG \d+ \S+ alice alice hi bob, from the browser$")
    page.wait(lambda: page.messages()[-1] == ("alice", "hi bob, from the browser")
              and not page.pending(), "the message confirmed")
    # Live, in the open conversation; and what OPEN returned was acknowledged.
    bob.send("SEND alice and live")
    page.wait(lambda: page.messages()[-1] == ("bob", "and live"), "the live message")
    # A message longer than a line allows is split, never cut.
    words = " ".join(f"word{i:03d}" for i in range(80))  # 639 bytes, lines hold 300
    page.say(words)
    received = [bob.expect(r"^\* MSG \d+ \S+ alice alice (.*)$").group(1) for _ in range(3)]
    assert " ".join(received) == words
    page.wait(lambda: [text for _, text in page.messages()[-3:]] == received, "the pieces")
    bob.send("OPEN alice")
    bob.expect(r"^OK OPEN alice ")
    bob.close()
    # The README's picture: SPARTAN_WEB_SCREENSHOT=docs/images/web-client.png makes it anew.
    shot = Path(os.environ.get("SPARTAN_WEB_SCREENSHOT") or tmp_path / "web-client.png")
    assert page.driver.save_screenshot(str(shot))
    assert shot.read_bytes().startswith(b"\x89PNG")


def test_group_chat_with_an_irc_client(page, server):
    erin = irc_client(server.irc_port, "erin")
    erin.send("JOIN #team")
    erin.expect(r"^:erin!erin@irc\.test JOIN #team$")
    logged_in(page, "dave")
    page.conversation("team").click()
    page.wait(lambda: page.driver.find_element("id", "conversation-title").text == "Group team",
              "the group open")
    erin.send("PRIVMSG #team :hello team, from IRC")
    page.wait(lambda: ("erin", "hello team, from IRC") in page.messages(), "erin's message")
    page.say("hello erin, from the browser")
    erin.expect(r"^(@\S+ )?:dave!dave@irc\.test PRIVMSG #team :hello erin, from the browser$")
    erin.close()
    # A message for another conversation: its count goes up and it moves to the top.
    alice = native_client(server.port, "alice")
    alice.send("SEND dave psst")
    page.wait(lambda: list(page.conversations().items())[0] == ("alice", "alice online 1 unread"),
              "alice's conversation first, with its count")
    assert ("alice", "psst") not in page.messages()  # the open conversation stays as it was
    alice.close()


def test_a_late_joiner_sees_the_group_history(page, server):
    frank = native_client(server.port, "frank")
    frank.send("SEND #team for whoever comes later")
    frank.expect(r"^OK SENT ")
    frank.close()
    logged_in(page, "gina")
    entries = page.conversations()
    assert entries["team"].startswith("team group")
    page.conversation("team").click()
    page.wait(lambda: ("frank", "for whoever comes later") in page.messages(), "the history")
    # Sent before gina ever logged in: the earlier tests' messages are there too, once each.
    shown = page.messages()
    assert ("erin", "hello team, from IRC") in shown and len(shown) == len(set(shown))


def test_reload_logs_in_again_and_shows_nothing_twice(page, server):
    ivy = native_client(server.port, "ivy")
    ivy.send(*(f"SEND hank note {n}" for n in range(3)))
    for _ in range(3):
        ivy.expect(r"^OK SENT ")
    logged_in(page, "hank")
    page.conversation("ivy").click()
    expected = [("ivy", f"note {n}") for n in range(3)]
    page.wait(lambda: page.messages() == expected, "the notes")
    page.say("got them")
    page.wait(lambda: page.messages()[-1] == ("hank", "got them") and not page.pending(), "sent")
    assert "open sesame" not in page.driver.execute_script("return JSON.stringify(localStorage)")
    for _ in range(2):
        page.driver.refresh()
        page.wait(lambda: page.messages() == expected + [("hank", "got them")], "the same, once")
        assert not page.driver.find_element("id", "login-view").is_displayed()
        assert page.conversations()["ivy"] == "ivy online"  # nothing unread again
    ivy.send("SEND hank after the reloads")
    page.wait(lambda: page.messages()[-1] == ("ivy", "after the reloads"), "a live one")
    ivy.close()


def test_network_text_is_shown_as_text_never_as_html(page, server):
    rita = native_client(server.port, "rita")
    attack = '<img src=x onerror="document.title=\'pwned\'"><b>bold</b>'
    rita.send(f"SEND sam {attack}")
    rita.expect(r"^OK SENT ")
    logged_in(page, "sam")
    page.conversation("rita").click()
    page.wait(lambda: page.messages() == [("rita", attack)], "the text")
    log = page.log()
    assert log.find_elements("css selector", "img, b") == []
    assert page.driver.title != "pwned"
    rita.close()


def test_a_wrong_password_is_refused_and_the_right_one_works(page, server):
    error = page.driver.find_element("id", "login-error")
    page.log_in("pat")
    page.wait(lambda: error.text == "This user needs a password.", "the password prompt")
    page.by_label("Password").send_keys("guess")
    page.button("Log in").click()
    page.wait(lambda: error.text == "Unknown user or wrong password.", "the refusal")
    assert page.driver.find_element("id", "login-view").is_displayed()
    page.by_label("Password").clear()
    page.by_label("Password").send_keys(PASSWORD)
    page.button("Log in").click()
    page.wait(lambda: page.conversations(), "the conversations")
    stored = page.driver.execute_script("return JSON.stringify(localStorage)")
    assert PASSWORD not in stored and "guess" not in stored


def test_log_out_revokes_the_token(page, server):
    logged_in(page, "quinn")
    token = page.driver.execute_script("return JSON.parse(localStorage['spartan.session']).token")
    page.button("Log out").click()
    page.wait(lambda: page.by_label("User name"), "the login form")
    client = LineSocket(server.port)
    client.expect(r"^\* HELLO ")
    client.send(f"RESUME quinn {token}")
    client.expect(r"^ERR bad-token ")
    client.close()


def test_phone_width_and_keyboard_only(page, server):
    page.driver.set_window_size(390, 800)
    try:
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        keys = ActionChains(page.driver)
        page.by_label("User name").click()
        keys.send_keys("carol", Keys.TAB, Keys.TAB, Keys.ENTER).perform()  # name, password, button
        page.wait(lambda: page.conversations(), "the list")
        width = page.driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390  # nothing wider than the phone
        page.conversation("alice").send_keys(Keys.ENTER)
        page.wait(lambda: page.by_label("Message").is_displayed(), "the conversation, alone")
        assert not page.driver.find_element("css selector", "nav").is_displayed()
        page.wait(lambda: page.driver.switch_to.active_element == page.by_label("Message"),
                  "the focus in the message box")
        ActionChains(page.driver).send_keys("typed without a mouse", Keys.ENTER).perform()
        try:
            page.wait(lambda: page.messages()[-1:] == [("carol", "typed without a mouse")], "sent")
        except AssertionError as e:
            box = page.by_label("Message").get_attribute("value")
            raise AssertionError(f"{e}; pending {page.pending()}, box {box!r}") from None
        page.button("Back to conversations").send_keys(Keys.ENTER)
        page.wait(lambda: page.driver.find_element("css selector", "nav").is_displayed(), "back")
    finally:
        page.driver.set_window_size(1100, 720)


def test_a_desktop_notification_when_the_tab_is_hidden_once_allowed(page, server):
    driver = page.driver
    driver.execute_cdp_cmd(
        "Browser.grantPermissions", {"origin": server.url.rstrip("/"), "permissions": ["notifications"]}
    )
    try:
        logged_in(page, "nina")
        # Granted beforehand, as if the button had been used (the next test clicks it).
        assert driver.execute_script("return Notification.permission") == "granted"
        assert not page.driver.find_element("id", "enable-notifications").is_displayed()
        driver.execute_script(
            """window.shown = [];
               window.Notification = class extends Notification {
                 constructor(title, options) { super(title, options); shown.push([title, options.body]); }
               };
               Object.defineProperty(document, "hidden", { get: () => window.tabHidden });
               window.tabHidden = false;"""
        )
        otto = native_client(server.port, "otto")
        otto.send("SEND nina while you look")
        page.wait(lambda: page.conversations()["otto"].endswith("1 unread"), "the count")
        assert driver.execute_script("return shown") == []  # the tab is seen: no notification
        driver.execute_script("window.tabHidden = true")
        otto.send("SEND nina while you are away")
        page.wait(lambda: driver.execute_script("return shown") == [["otto", "while you are away"]],
                  "the notification")
        otto.close()
    finally:
        driver.execute_cdp_cmd("Browser.resetPermissions", {})


def test_the_notification_button_asks_only_when_clicked(page, server):
    driver = page.driver
    logged_in(page, "otto")
    driver.execute_script(
        """window.asked = 0;
           Notification.requestPermission = async () => { asked += 1; return "denied"; };"""
    )
    assert driver.execute_script("return asked") == 0
    page.button("Enable notifications").click()
    page.wait(lambda: driver.execute_script("return asked") == 1, "the question")


def test_light_and_dark_themes_follow_the_system(page):
    def colours():
        return page.driver.execute_script(
            """const style = getComputedStyle(document.body);
               return [style.backgroundColor, style.color];"""
        )

    def luminance(colour):
        red, green, blue = (int(v) for v in re.findall(r"\d+", colour)[:3])
        return 0.2126 * red + 0.7152 * green + 0.0722 * blue

    try:
        for scheme in ("light", "dark"):
            page.driver.execute_cdp_cmd(
                "Emulation.setEmulatedMedia",
                {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
            )
            background, text = colours()
            contrast = luminance(text) - luminance(background)
            assert abs(contrast) > 150, (scheme, background, text)  # readable
            assert (contrast < 0) == (scheme == "light"), (scheme, background, text)
    finally:
        page.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


def test_a_failed_send_says_why_and_a_retry_sends_it_once(browser, tmp_path):
    def config(*users):
        path = tmp_path / f"{len(users)}.toml"
        path.write_text(f"users = {list(users)!r}\n[groups]\n".replace("'", '"'))
        return path

    # The same database under another directory: vic is gone for a while, then back.
    full, without_vic = config("walt", "vic"), config("walt")

    def restart(directory):
        server.stop()
        server.args = tuple(str(directory) if a in (str(full), str(without_vic)) else a
                            for a in server.args)
        server.start()

    server = WebServer(tmp_path, full).start()
    try:
        page = Page(browser, server.url)
        page.open_fresh()
        logged_in(page, "walt")
        page.conversation("vic").click()
        page.wait(lambda: page.by_label("Message").is_displayed(), "the conversation")
        server.stop()
        page.wait(lambda: "Connection lost" in page.banner(), "the banner")
        page.say("are you there, vic?")
        restart(without_vic)  # vic is unknown now: the waiting message is refused
        page.wait(lambda: "Not sent: There is no user 'vic'." in page.pending()[0], "the reason")
        restart(full)
        page.wait(lambda: page.banner() == "", "the reconnection", timeout=30)
        page.button("Retry").click()
        page.wait(lambda: page.messages() == [("walt", "are you there, vic?")]
                  and not page.pending(), "the message sent")
        vic = native_client(server.port, "vic")
        vic.send("OPEN walt")
        vic.expect(r"^\* MSG \d+ \S+ walt walt are you there, vic\?$")
        vic.expect(r"^OK OPEN walt 1$")
        vic.close()
    finally:
        server.stop()


def test_a_long_paste_keeps_under_the_flood_guard(browser, tmp_path):
    config = tmp_path / "two.toml"
    config.write_text('users = ["xena", "yann"]\n[groups]\n')
    server = WebServer(tmp_path, config)
    server.args = (*server.args, "--burst", "8", "--rate", "20")  # the last --burst counts
    server.start()
    try:
        yann = native_client(server.port, "yann")
        page = Page(browser, server.url)
        page.open_fresh()
        logged_in(page, "xena")
        page.conversation("yann").click()
        box = page.wait(lambda: page.by_label("Message"), "the message box")
        lines = [f"line {n:02d} of the paste" for n in range(40)]  # five bursts' worth
        page.driver.execute_script("arguments[0].value = arguments[1]", box, "\n".join(lines))
        from selenium.webdriver.common.keys import Keys

        box.send_keys(Keys.ENTER)
        received = [yann.expect(r"^\* MSG \d+ \S+ xena xena (.*)$").group(1) for _ in lines]
        assert received == lines
        page.wait(lambda: len(page.messages()) == 40 and not page.pending(), "all confirmed")
        assert page.banner() == "" and "rate-limited" not in server.log
        yann.close()
    finally:
        server.stop()


def test_server_killed_and_restarted_the_page_reconnects_and_nothing_is_lost(page, server):
    logged_in(page, "erin")
    page.conversation("frank").click()
    page.wait(lambda: page.by_label("Message").is_displayed(), "the conversation")
    page.say("before the crash")
    page.wait(lambda: page.messages() == [("erin", "before the crash")] and not page.pending(),
              "the first message")
    server.kill()
    page.wait(lambda: "Connection lost" in page.banner(), "the banner")
    page.say("typed while the server was down")
    page.wait(lambda: any("Sending" in p for p in page.pending()), "the message waiting")
    server.start()
    page.wait(lambda: page.banner() == "", "the reconnection", timeout=30)
    page.wait(lambda: page.messages() == [
        ("erin", "before the crash"), ("erin", "typed while the server was down")
    ] and not page.pending(), "the waiting message sent once")
    frank = native_client(server.port, "frank")
    frank.send("SEND erin after the restart")
    page.wait(lambda: page.messages()[-1] == ("frank", "after the restart"), "a live one")
    frank.send("HISTORY erin 10")
    frank.expect(r"^OK HISTORY erin 3$")
    texts = [line for line in frank.lines.seen if line.startswith("* HISTORY")]
    assert [re.sub(r"^(\S+ ){6}", "", t) for t in texts] == [
        "before the crash", "typed while the server was down", "after the restart"
    ]
    page.driver.refresh()
    page.wait(lambda: len(page.messages()) == 3, "the conversation after a reload")
    assert len(set(page.messages())) == 3
    frank.close()


def test_older_messages_load_as_you_scroll_up(page, server):
    tom = native_client(server.port, "tom")
    tom.send(*(f"SEND uma old {n:03d}" for n in range(120)))
    last = [tom.expect(r"^OK SENT (\d+) ").group(1) for _ in range(120)][-1]
    uma = native_client(server.port, "uma")  # uma reads them all elsewhere first
    uma.send(f"ACK tom {last}")
    uma.expect(rf"^OK ACK tom {last}$")
    uma.close()
    tom.close()
    logged_in(page, "uma")
    assert "unread" not in page.conversations()["tom"]  # nothing unseen
    page.conversation("tom").click()
    expected = [("tom", f"old {n:03d}") for n in range(120)]
    page.wait(lambda: page.messages() == expected[-50:], "the last page")
    for shown in (100, 120):
        page.driver.execute_script("document.getElementById('messages').scrollTop = 0")
        page.wait(lambda: page.messages() == expected[-shown:], f"{shown} messages")
    assert not page.driver.find_element("id", "load-older").is_displayed()  # all there


def test_long_text_is_split_on_character_boundaries(page):
    pieces = page.driver.execute_async_script(
        """const done = arguments[arguments.length - 1];
           import("./protocol.js").then((p) => done([
             p.splitMessage("é".repeat(10), 5),
             p.splitMessage("😀😀😀", 5),
             p.splitMessage("x".repeat(12), 5),
             p.splitMessage("a\\nb\\r\\n\\n c  ", 100),
             p.splitMessage("ab\\u0007cd\\tef", 100),
             p.splitMessage("one two three", 8),
             p.splitMessage("   ", 100),
           ]));"""
    )
    assert pieces == [
        ["éé"] * 5,
        ["😀"] * 3,
        ["xxxxx", "xxxxx", "xx"],
        ["a", "b", " c"],
        ["ab cd\tef"],
        ["one two", "three"],
        [],
    ]
    # Notifications are asked for with a click, never on load.
    assert page.driver.execute_script("return Notification.permission") == "default"
