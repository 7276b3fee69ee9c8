"""
The chat domain's vocabulary, defined once: what a user or group name may be, how a user
names a conversation (``bob``, ``#group1``), and the keys conversations are stored under
(``dm:alice:bob`` with the two users sorted, ``group:group1``), and how an action reads.  Every front end and store
takes these words from here.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# Names of users and groups: short, no spaces, no '#', '=' or ',' (those separate fields).
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,31}\Z")
GROUP_PREFIX = "#"
# A message whose text starts with this is an action: "/me waves" is shown "* bob waves"
# (CTCP ACTION on IRC).
ACTION_PREFIX = "/me "
# A message whose text starts with this is a notice: shown marked, never answered
# automatically (a NOTICE on IRC).
NOTICE_PREFIX = "/notice "
DIRECT_KEY_PREFIX, GROUP_KEY_PREFIX = "dm:", "group:"


def is_name(text: str) -> bool:
    return NAME.match(text) is not None


def _is_target(text: str) -> bool:
    return is_name(text[1:] if text.startswith(GROUP_PREFIX) else text)


class RememberedYes:
    """A predicate that remembers the strings it said yes to (up to ``limit``, then it
    starts afresh): for a check asked again and again with the same few strings."""

    __slots__ = ("_check", "_yes", "_limit")

    def __init__(self, check: Callable[[str], bool], limit: int = 10_000) -> None:
        self._check = check
        self._yes: set[str] = set()
        self._limit = limit

    def __call__(self, text: str) -> bool:
        if text in self._yes:
            return True
        if not self._check(text):
            return False
        if len(self._yes) >= self._limit:
            self._yes.clear()
        self._yes.add(text)
        return True


# A conversation as a user names it: ``bob`` (a user) or ``#group1`` (a group).  Asked for
# every SEND, so the targets already seen are a set lookup instead of a regex.
is_target = RememberedYes(_is_target)


def direct_key(a: str, b: str) -> str:
    first, second = sorted((a, b))
    return f"{DIRECT_KEY_PREFIX}{first}:{second}"


def group_key(group: str) -> str:
    return GROUP_KEY_PREFIX + group


def direct_pair(key: str) -> tuple[str, str] | None:
    """The two users of a one-to-one conversation key; None for any other key."""
    if not key.startswith(DIRECT_KEY_PREFIX):
        return None
    first, _, second = key[len(DIRECT_KEY_PREFIX) :].partition(":")
    return first, second


def group_of_key(key: str) -> str | None:
    """The group of a group conversation key; None for any other key."""
    return key[len(GROUP_KEY_PREFIX) :] if key.startswith(GROUP_KEY_PREFIX) else None
