"""
Reloading the directory while the server runs: SIGHUP re-reads ``--config``.

The new file is read and checked in full first (users, groups, password hashes); one that
cannot be used changes nothing, and the caller logs why in one sentence.  Then the chat
core switches to it (`spartan.core.chat.Chat.reload`): new users can log in at once,
removed users' sessions are told why and closed, users whose groups changed are told their
groups, and stored messages stay.  Logged-in users whose password changed stay logged in;
the new password holds from their next login.  In a cluster each node reloads its own
file: send SIGHUP to every node.

The SIGHUP handler itself is `spartan.process.on_hangup`; `spartan.service` calls this.
"""

from __future__ import annotations

from spartan.core.auth import PasswordAuthenticator, make_authenticator
from spartan.core.chat import Chat, Reloaded
from spartan.core.directory import load_directory


def reload_directory(chat: Chat, path: str, clock, require_passwords: bool = False) -> Reloaded:
    """Read ``path`` and apply it to ``chat``; `ConfigError` (nothing changed) if unusable."""
    directory = load_directory(path)
    authenticator = make_authenticator(directory, clock, require_passwords)  # checks the hashes
    old = chat.authenticator
    if isinstance(old, PasswordAuthenticator) and isinstance(authenticator, PasswordAuthenticator):
        authenticator.backoff = old.backoff  # a reload is no way around the login back-off
    return chat.reload(directory, authenticator)


def describe(reloaded: Reloaded) -> str:
    """What a reload changed, for its log line."""
    parts = [
        f"{len(reloaded.added)} user(s) added" + _names(reloaded.added),
        f"{len(reloaded.removed)} removed" + _names(reloaded.removed),
        f"{reloaded.closed} session(s) closed",
        f"groups changed for {len(reloaded.regrouped)} online user(s)" + _names(reloaded.regrouped),
    ]
    return "; ".join(parts)


def _names(names: tuple[str, ...]) -> str:
    return f" ({', '.join(names)})" if names else ""
