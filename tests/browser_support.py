"""Headless Chromium from Debian (``chromium``, ``chromium-driver``) driven by Selenium, and
the page's parts found the way a person (or a screen reader) finds them: by their names.

Without the browser a test skips on a developer's machine and fails when ``CI`` is set."""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 15.0  # seconds any one expectation may take (a shared, busy machine)


def chromium(width: int = 1100, height: int = 720):
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        message = f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must provide it", pytrace=False)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-dev-shm-usage", "--no-first-run",
        f"--window-size={width},{height}",
    ):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's console
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver


class Page:
    """The web client in one browser tab."""

    def __init__(self, driver, url: str) -> None:
        self.driver = driver
        self.url = url

    # -- finding things ---------------------------------------------------------------

    def by_label(self, label: str):
        """The form field whose <label> reads ``label``."""
        from selenium.webdriver.common.by import By

        for element in self.driver.find_elements(By.CSS_SELECTOR, "input, textarea"):
            if element.is_displayed() and element.accessible_name == label:
                return element
        raise AssertionError(f"no visible field labelled {label!r}")

    def button(self, name: str):
        from selenium.webdriver.common.by import By

        for element in self.driver.find_elements(By.TAG_NAME, "button"):
            if element.is_displayed() and element.accessible_name == name:
                return element
        raise AssertionError(f"no visible button named {name!r}")

    def conversations(self) -> dict[str, str]:
        """The entries of the list named Conversations: name -> its whole accessible name."""
        from selenium.webdriver.common.by import By

        nav = self.driver.find_element(By.CSS_SELECTOR, "nav")
        assert nav.accessible_name == "Conversations"
        entries = {}
        for button in nav.find_elements(By.TAG_NAME, "button"):
            name = button.accessible_name
            entries[name.split(" ", 1)[0]] = name
        return entries

    def conversation(self, name: str):
        from selenium.webdriver.common.by import By

        nav = self.driver.find_element(By.CSS_SELECTOR, "nav[aria-label=Conversations]")
        for button in nav.find_elements(By.TAG_NAME, "button"):
            if button.accessible_name.split(" ", 1)[0] == name:
                return button
        raise AssertionError(f"no conversation {name!r} in {self.conversations()}")

    def log(self):
        from selenium.webdriver.common.by import By

        log = self.driver.find_element(By.CSS_SELECTOR, "[role=log]")
        assert log.accessible_name == "Messages"
        return log

    def messages(self) -> list[tuple[str, str]]:
        """(sender, text) of each message shown in the log, oldest first (sent ones only)."""
        shown = self.driver.execute_script(
            """return Array.from(document.querySelectorAll(
                   '[role=log] #message-list .message'),
                 (m) => [m.querySelector('.sender').textContent,
                         m.querySelector('.text').textContent]);"""
        )
        return [tuple(message) for message in shown]

    def pending(self) -> list[str]:
        return self.driver.execute_script(
            """return Array.from(document.querySelectorAll('#pending-list .message'),
                 (m) => m.querySelector('.meta').textContent);"""
        )

    def banner(self) -> str:
        return self.driver.execute_script(
            "const b = document.getElementById('banner'); return b.hidden ? '' : b.textContent;"
        )

    # -- doing things -----------------------------------------------------------------

    def open_fresh(self) -> None:
        """The page as a new visitor sees it: nothing kept from an earlier test."""
        self.driver.get(self.url)
        self.driver.execute_script("localStorage.clear(); sessionStorage.clear();")
        self.driver.get(self.url)
        self.wait(lambda: self.by_label("User name"), "the login form")

    def log_in(self, user: str, password: str = "") -> None:
        self.by_label("User name").send_keys(user)
        if password:
            self.by_label("Password").send_keys(password)
        self.button("Log in").click()

    def say(self, text: str) -> None:
        from selenium.webdriver.common.keys import Keys

        box = self.by_label("Message")
        box.send_keys(text)
        box.send_keys(Keys.ENTER)

    def wait(self, predicate, what: str, timeout: float = WAIT):
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.support.ui import WebDriverWait

        def attempt(_driver):
            try:
                return predicate()
            except (AssertionError, WebDriverException):
                return False

        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(attempt)
        except Exception as e:
            raise AssertionError(f"timed out waiting for {what}{self.console()}") from e

    def console(self) -> str:
        """What the page wrote to its console (errors first of all), for a failure."""
        try:
            entries = self.driver.get_log("browser")
        except Exception:
            return ""
        lines = [f"{entry['level']}: {entry['message']}" for entry in entries[-20:]]
        return "; the page's console:\n" + "\n".join(lines) if lines else ""
